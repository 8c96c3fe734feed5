//! `factorexe sweep`: run a study (a sweep spec's points, each an ordinary run) on this
//! machine or as a Slurm job array, show its status, and report its results.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context};
use studies::local::{self, RunOptions};
use studies::plot::PlotSpec;
use studies::report;
use studies::slurm::{self, SlurmOptions};
use studies::{Spec, SweepDir};

/// Arguments of `factorexe sweep`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: SweepCommand,
}

#[derive(Debug, clap::Subcommand)]
enum SweepCommand {
    /// Run every point of a sweep spec not yet done (resuming interrupted ones).
    Run(RunArgs),
    /// Show each point: done, running (its run directory is locked), failed or pending.
    Status(DirArgs),
    /// Collect final metrics into report/runs.csv and report/summary.csv, print a table
    /// (mean ± std over seeds) and draw the spec's plots.
    Report(ReportArgs),
    /// Run one point in the foreground (what each Slurm array task runs).
    #[command(hide = true)]
    Task(TaskArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    /// Processes on this machine.
    Local,
    /// One sbatch job array.
    Slurm,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The sweep spec (e.g. configs/sweeps/scaling_cycle.toml).
    spec: PathBuf,
    /// The sweep directory (default sweeps/<name>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Runs at once (default: the cores divided by each run's threads).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=4096))]
    jobs: Option<u16>,
    /// Run the points whose last attempt failed again.
    #[arg(long)]
    retry_failed: bool,
    /// No progress bar (a line per finished run instead).
    #[arg(long)]
    no_progress: bool,
    /// Check every point's config (`train --dry-run`) and start nothing.
    #[arg(long, conflicts_with = "backend")]
    check: bool,
    /// Where the runs execute.
    #[arg(long, value_enum, default_value = "local")]
    backend: Backend,
    /// Slurm partition.
    #[arg(long, value_name = "P")]
    partition: Option<String>,
    /// Slurm time limit of each run (e.g. 02:00:00); the run checkpoints and is requeued
    /// before it.
    #[arg(long, value_name = "T")]
    time: Option<String>,
    /// Slurm CPUs per run (default: the spec's run.threads).
    #[arg(long, value_name = "C", value_parser = clap::value_parser!(u16).range(1..))]
    cpus_per_run: Option<u16>,
    /// Slurm GPUs per run.
    #[arg(long, value_name = "G")]
    gpus_per_run: Option<u16>,
    /// Seconds before the Slurm time limit at which a run is told to checkpoint.
    #[arg(long, value_name = "S", default_value_t = 120)]
    signal_lead: u32,
}

#[derive(Debug, clap::Args)]
struct DirArgs {
    /// The sweep directory.
    dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// The sweep directory.
    dir: PathBuf,
    /// A plot besides the spec's: x=AXIS,y=TAG[,lines=AXIS][,threshold=V]
    /// [,compute=updates|samples][,fit][,log_x][,log_y][,select.AXIS=VALUE][,file=NAME].
    /// x may also be params, examples or updates (repeatable).
    #[arg(long, value_name = "SPEC")]
    plot: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct TaskArgs {
    /// The sweep directory.
    dir: PathBuf,
    /// The point's index in the spec's order.
    #[arg(long)]
    index: usize,
}

/// Set by the first SIGINT/SIGTERM/SIGHUP; the driver then forwards SIGTERM to its runs.
static STOP: AtomicBool = AtomicBool::new(false);

fn catch_signals() -> anyhow::Result<()> {
    ctrlc::set_handler(|| {
        if !STOP.swap(true, Ordering::SeqCst) {
            eprintln!("\nsweep: stopping: each run saves a checkpoint, then exits");
        }
    })
    .context("cannot install the signal handler")
}

fn binary() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot find the factorexe binary to start runs with")
}

/// The binary to start runs on this machine with: on Linux `/proc/self/exe`, the very file
/// this process runs even after a rebuild has replaced it on disk (every run of the sweep
/// then uses one build, and none fails to start); elsewhere the path this process started
/// from.
fn local_binary() -> anyhow::Result<PathBuf> {
    let own = std::path::Path::new("/proc/self/exe");
    if own.exists() {
        return Ok(own.to_path_buf());
    }
    binary()
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        SweepCommand::Run(a) => run_sweep(a),
        SweepCommand::Status(a) => status(a),
        SweepCommand::Report(a) => report(a),
        SweepCommand::Task(a) => task(a),
    }
}

fn run_sweep(a: RunArgs) -> anyhow::Result<()> {
    let spec = Spec::load(&a.spec)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("sweeps").join(&spec.name));
    let dir = SweepDir::new(out);
    if a.backend == Backend::Slurm {
        let opts = SlurmOptions {
            binary: binary()?,
            partition: a.partition,
            time: a.time,
            cpus_per_run: a.cpus_per_run,
            gpus_per_run: a.gpus_per_run,
            retry_failed: a.retry_failed,
            signal_lead_s: a.signal_lead,
        };
        match slurm::submit(&spec, &dir, &opts)? {
            (Some(id), n) => println!(
                "submitted job {id}: {n} array task(s), script {}; follow with: factorexe sweep status {}",
                dir.dir.join("slurm/array.sbatch").display(),
                dir.dir.display()
            ),
            (None, _) => println!("nothing to run: every point is done, running or failed"),
        }
        return Ok(());
    }
    if a.partition.is_some()
        || a.time.is_some()
        || a.cpus_per_run.is_some()
        || a.gpus_per_run.is_some()
    {
        bail!("--partition, --time, --cpus-per-run and --gpus-per-run need --backend slurm");
    }
    catch_signals()?;
    let opts = RunOptions {
        binary: local_binary()?,
        jobs: a.jobs.map(usize::from),
        retry_failed: a.retry_failed,
        progress: !a.no_progress,
        check_only: a.check,
    };
    let summary = local::run(&spec, &dir, &opts, &STOP)?;
    if a.check {
        println!(
            "sweep {}: the configs of {} point(s) to run are valid ({} done)",
            dir.dir.display(),
            summary.pending,
            summary.done
        );
        return Ok(());
    }
    println!(
        "sweep {}: {} done, {} pending, {} failed, {} running elsewhere",
        dir.dir.display(),
        summary.done,
        summary.pending,
        summary.failed.len(),
        summary.busy.len()
    );
    for (p, e) in &summary.failed {
        println!("  failed {p}: {e}");
    }
    if summary.interrupted {
        println!(
            "interrupted: continue with: factorexe sweep run {} --out {}",
            a.spec.display(),
            dir.dir.display()
        );
        std::process::exit(super::train::INTERRUPTED_STATUS);
    }
    if !summary.failed.is_empty() {
        bail!(
            "{} point(s) failed (logs in {}); rerun them with --retry-failed",
            summary.failed.len(),
            dir.dir.join("logs").display()
        );
    }
    Ok(())
}

fn status(a: DirArgs) -> anyhow::Result<()> {
    let dir = SweepDir::new(&a.dir);
    let state = dir.load()?;
    let queue = if state.slurm_jobs.is_empty() {
        Default::default()
    } else {
        slurm::queue_states(&state.slurm_jobs)?
    };
    print!("{}", studies::status_text(&dir, &queue)?);
    if !state.slurm_jobs.is_empty() {
        println!(
            "slurm jobs {}: {} array task(s) queued or running",
            state.slurm_jobs.join(","),
            queue.len()
        );
    }
    Ok(())
}

fn report(a: ReportArgs) -> anyhow::Result<()> {
    let dir = SweepDir::new(&a.dir);
    let extra = a
        .plot
        .iter()
        .map(|p| PlotSpec::parse_arg(p).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let r = report::collect(&dir)?;
    if r.tags.is_empty() {
        eprintln!(
            "no run has the metrics {:?} yet (report.metrics in the spec selects them)",
            if r.spec.report.metrics.is_empty() {
                vec![report::DEFAULT_METRICS.to_string()]
            } else {
                r.spec.report.metrics.clone()
            }
        );
    }
    print!("{}", r.table());
    let (files, notes) = r.write(&dir, &extra)?;
    for note in notes {
        println!("{note}");
    }
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
}

fn task(a: TaskArgs) -> anyhow::Result<()> {
    catch_signals()?;
    let dir = SweepDir::new(&a.dir);
    let code = slurm::run_task(&dir, a.index, &local_binary()?, &STOP)?;
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}
