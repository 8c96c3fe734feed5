//! `factorexe train`: train an agent from a TOML config into `runs/<name>/`.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use agents::algos::AnyAgent;
use agents::config::{Override, RunConfig};
use agents::device::DeviceChoice;
use agents::logging::CONFIG_FILE;
use agents::runner::Runner;
use agents::Agent;
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Device and threading flags shared by `train` and `eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeArgs {
    /// Device: auto (CUDA when present, else CPU), cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// libtorch intra-op threads (default: libtorch's choice, one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

impl RuntimeArgs {
    /// Applies the thread count and resolves the device.
    pub fn apply(&self) -> anyhow::Result<tch::Device> {
        if let Some(n) = self.threads {
            if n == 0 {
                bail!("--threads 0: expected at least 1 thread");
            }
            tch::set_num_threads(n as i32);
        }
        Ok(self.device.resolve()?)
    }
}

/// Makes libtorch's OpenMP threads sleep, not spin, while they wait for work.
///
/// libgomp's default wait policy busy-waits between parallel regions. On a small CPU shared
/// with anything else (a second run, a build, the test harness) the spinning threads starve
/// the one doing the work: 60 training steps of `configs/cycle40_cot.toml` took 44 s with the
/// default policy and 1.9 s with `OMP_WAIT_POLICY=PASSIVE` on this project's 2 shared cores.
/// libgomp reads the variable when it is loaded, before `main`, so the process re-executes
/// itself once with it set; a value the user set is left alone.
pub fn passive_openmp() {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        const VAR: &str = "OMP_WAIT_POLICY";
        if std::env::var_os(VAR).is_some() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let err = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(VAR, "PASSIVE")
            .exec();
        // `exec` returns only when it failed: carry on with the default policy.
        eprintln!("note: could not re-execute with {VAR}=PASSIVE ({err}); continuing");
    }
}

/// Arguments of `factorexe train`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run's config (e.g. configs/cycle40_cot.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override a config value: --set model.heads=4 --set optim.schedule=cosine (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Continue a run from its latest checkpoint (weights, optimizer, step, curriculum).
    /// With --config the run is <log.dir>/<name>; without, give its directory.
    #[arg(long, value_name = "RUN_DIR", num_args = 0..=1)]
    resume: Option<Option<PathBuf>>,
    /// Start afresh in a run directory that already holds a run (its checkpoints, event
    /// files and metrics are deleted).
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// No progress bar (log lines instead); automatic when stderr is not a terminal.
    #[arg(long)]
    no_progress: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// Files and folders a run writes (what --overwrite removes).
fn is_run_output(name: &str) -> bool {
    name == "checkpoints"
        || name == agents::logging::METRICS_FILE
        || name == CONFIG_FILE
        || name.starts_with("events.out.tfevents.")
}

fn clear_run_dir(dir: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_run_output(&name) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        }
        .with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

fn holds_a_run(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut it| {
        it.any(|e| e.is_ok_and(|e| is_run_output(&e.file_name().to_string_lossy())))
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    passive_openmp();
    let overrides = args
        .set
        .iter()
        .map(|s| Override::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let (cfg, run_dir) = match (&args.config, &args.resume) {
        (Some(path), resume) => {
            let cfg = RunConfig::load(path, &overrides)?;
            let dir = match resume {
                Some(Some(dir)) => dir.clone(),
                _ => Path::new(&cfg.log.dir).join(&cfg.name),
            };
            (cfg, dir)
        }
        (None, Some(Some(dir))) => {
            let path = dir.join(CONFIG_FILE);
            let cfg = RunConfig::load(&path, &overrides)?;
            (cfg, dir.clone())
        }
        (None, _) => bail!("give --config FILE (or --resume RUN_DIR to continue a run)"),
    };
    let resume = args.resume.is_some();
    if !resume && holds_a_run(&run_dir) {
        if args.overwrite {
            clear_run_dir(&run_dir)?;
        } else {
            bail!(
                "{} already holds a run: continue it with --resume, start over with \
                 --overwrite, or pick another name with --set name=...",
                run_dir.display()
            );
        }
    }
    let device = args.runtime.apply()?;
    let env = cfg.env.build()?;
    let agent = AnyAgent::from_config(&cfg, &env, device)?;
    let steps = cfg.train.steps;
    println!(
        "run {} | env {} | agent {} ({} parameters) | device {:?}, {} threads | {} steps x {} problems",
        run_dir.display(),
        envs::Env::spec(&env).name,
        agent.name(),
        agent.num_parameters(),
        device,
        tch::get_num_threads(),
        steps,
        cfg.train.batch_size,
    );
    let runner = Runner::new(cfg, env, agent)?;
    let mut runner = if resume {
        let r = runner.resume(&run_dir)?;
        println!("resumed at step {}", r.step());
        r
    } else {
        runner.with_run_dir(&run_dir)?
    };

    let stop = runner.stop_flag();
    ctrlc::set_handler(move || {
        if stop.swap(true, Ordering::SeqCst) {
            // A second Ctrl-C: the user does not want to wait for the checkpoint.
            std::process::exit(130);
        }
        eprintln!(
            "\nCtrl-C: finishing this update, then saving a checkpoint (Ctrl-C again to quit now)"
        );
    })
    .context("installing the Ctrl-C handler")?;

    let bar = if args.no_progress {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} steps ({per_sec}, eta {eta}) {msg}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(250));
        bar.set_position(runner.step());
        bar
    };
    let quiet_bar = args.no_progress || bar.is_hidden();
    let shown = bar.clone();
    let log_every = runner.config().log.every;
    runner.set_progress(Box::new(move |step, total, loss, acc| {
        let acc = acc.map_or(String::new(), |a| {
            format!(" | eval greedy {:.1}%", 100.0 * a)
        });
        shown.set_position(step);
        shown.set_message(format!("loss {loss:.4}{acc}"));
        if quiet_bar && (step % log_every == 0 || step == total) {
            println!("step {step}/{total} loss {loss:.4}{acc}");
        }
    }));
    let summary = runner.train();
    bar.finish_and_clear();
    let summary = summary?;

    let verb = if summary.interrupted {
        "interrupted"
    } else if summary.timed_out {
        "stopped at the time limit"
    } else {
        "done"
    };
    println!(
        "{verb}: step {} | {} problems in {:.1} s ({:.0} problems/s)",
        summary.steps,
        summary.examples,
        summary.seconds,
        summary.examples as f64 / summary.seconds.max(1e-9)
    );
    if let Some(report) = &summary.eval {
        println!(
            "accuracy per difficulty ({} fresh problems each, eval seed {}):",
            runner.config().eval.episodes,
            report.seed
        );
        print!("{}", report.table());
    }
    if let Some(path) = &summary.checkpoint {
        println!("checkpoint {}", path.display());
    }
    if summary.interrupted {
        println!(
            "continue with: factorexe train --resume {}",
            run_dir.display()
        );
    }
    Ok(())
}
