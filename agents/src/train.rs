//! The one public way to train, used by `factorexe train` and by user code alike: it checks
//! everything (config, env, agent, device) before touching the run directory, guards the
//! directory (a run is continued with `resume` or replaced with `overwrite`, never mixed),
//! makes libtorch's OpenMP threads sleep rather than spin, stops on SIGINT or SIGTERM
//! after the current update with a checkpoint, shows progress, and logs to TensorBoard and
//! `metrics.jsonl`.
//!
//! ```no_run
//! use agents::config::RunConfig;
//! use agents::train::{train, TrainOptions};
//!
//! let cfg = RunConfig::load("configs/cycle40_cot.toml".as_ref(), &[])?;
//! let summary = train(TrainOptions::new(cfg))?;
//! println!("{} steps", summary.steps);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tch::Device;

use crate::agent::{Agent, AnyAgent};
use crate::config::RunConfig;
use crate::logging::{CONFIG_FILE, METRICS_FILE};
use crate::runner::{RunError, Runner, TrainSummary};

/// What [`train`] does besides training.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The run's config.
    pub config: RunConfig,
    /// The run directory; `None`: `<log.dir>/<name>`.
    pub run_dir: Option<PathBuf>,
    /// Continue the run in the directory from its latest checkpoint.
    pub resume: bool,
    /// Replace a run already in the directory (checked before anything is deleted).
    pub overwrite: bool,
    /// Where the model lives.
    pub device: Device,
    /// libtorch intra-op threads (`None`: libtorch's choice).
    pub threads: Option<usize>,
    /// A progress bar on stderr (when it is a terminal); log lines otherwise.
    pub progress: bool,
    /// Print the run's header, summary and accuracy table on stdout.
    pub print: bool,
    /// Re-execute the process with `OMP_WAIT_POLICY=PASSIVE` when it is not set (see
    /// [`passive_openmp`]).
    pub passive_openmp: bool,
}

impl TrainOptions {
    /// Defaults: `<log.dir>/<name>`, a fresh run, CPU, progress shown, passive OpenMP.
    pub fn new(config: RunConfig) -> Self {
        TrainOptions {
            config,
            run_dir: None,
            resume: false,
            overwrite: false,
            device: Device::Cpu,
            threads: None,
            progress: true,
            print: true,
            passive_openmp: true,
        }
    }

    /// The run directory these options train in.
    pub fn dir(&self) -> PathBuf {
        self.run_dir
            .clone()
            .unwrap_or_else(|| Path::new(&self.config.log.dir).join(&self.config.name))
    }
}

/// Makes libtorch's OpenMP threads sleep, not spin, while they wait for work.
///
/// libgomp's default wait policy busy-waits between parallel regions. On a small CPU shared
/// with anything else (a second run, a build, the test harness) the spinning threads starve
/// the one doing the work: 60 training steps of `configs/cycle40_cot.toml` took 44 s with
/// the default policy and 1.9 s with `OMP_WAIT_POLICY=PASSIVE` on 2 shared cores. libgomp
/// reads the variable when it is loaded, before `main`, so the process re-executes itself
/// once with it set; a value the user set is left alone.
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

/// Files and folders a run writes (what `overwrite` removes).
pub fn is_run_output(name: &str) -> bool {
    name == "checkpoints"
        || name == METRICS_FILE
        || name == CONFIG_FILE
        || name.starts_with("events.out.tfevents.")
}

/// Whether `dir` holds a run's files.
pub fn holds_a_run(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut it| {
        it.any(|e| e.is_ok_and(|e| is_run_output(&e.file_name().to_string_lossy())))
    })
}

fn clear_run_dir(dir: &Path) -> Result<(), RunError> {
    let io = |p: &Path, e: std::io::Error| RunError::RunDir(format!("{}: {e}", p.display()));
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        if !is_run_output(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        }
        .map_err(|e| io(&path, e))?;
    }
    Ok(())
}

/// The process-wide stop flag SIGINT and SIGTERM set (the handler is installed once).
static STOP: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));
static HANDLER: OnceLock<Result<(), String>> = OnceLock::new();

fn install_signal_handler() -> Result<(), RunError> {
    HANDLER
        .get_or_init(|| {
            let stop = Arc::clone(&STOP);
            ctrlc::set_handler(move || {
                if stop.swap(true, Ordering::SeqCst) {
                    // A second signal: the user does not want to wait for the checkpoint.
                    std::process::exit(130);
                }
                eprintln!(
                    "\ninterrupted: finishing this update, then saving a checkpoint \
                     (interrupt again to quit now)"
                );
            })
            .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| RunError::RunDir(format!("installing the signal handler: {e}")))
}

/// Builds the agent the config names and trains it; see the module doc.
pub fn train(opts: TrainOptions) -> Result<TrainSummary, RunError> {
    if opts.passive_openmp {
        passive_openmp();
    }
    let mut cfg = opts.config.clone();
    cfg.validate()?;
    crate::registry::resolve(&mut cfg)?;
    if let Some(n) = opts.threads {
        if n == 0 {
            return Err(RunError::RunDir(
                "threads = 0: expected at least 1 thread".into(),
            ));
        }
        tch::set_num_threads(n as i32);
    }
    let env = cfg.env.build()?;
    let agent = crate::registry::build(&cfg, &env, opts.device)?;
    train_agent(opts, cfg, env, agent)
}

/// Trains `agent` (built by the caller, e.g. an agent not in the registry) as [`train`]
/// does.
pub fn train_agent(
    opts: TrainOptions,
    cfg: RunConfig,
    env: envs::AnyEnv,
    agent: AnyAgent,
) -> Result<TrainSummary, RunError> {
    let run_dir = opts.dir();
    let runner = Runner::new(cfg, env, agent)?;
    if !opts.resume && holds_a_run(&run_dir) {
        if !opts.overwrite {
            return Err(RunError::RunDir(format!(
                "{} already holds a run: continue it with --resume, start over with \
                 --overwrite, or pick another name with --set name=...",
                run_dir.display()
            )));
        }
        clear_run_dir(&run_dir)?;
    }
    let steps = runner.config().train.steps;
    if opts.print {
        println!(
            "run {} | env {} | agent {} ({} parameters) | device {:?}, {} threads | {} steps x {} problems",
            run_dir.display(),
            envs::Env::spec(runner.env()).name,
            runner.agent().name(),
            runner.agent().num_parameters(),
            opts.device,
            tch::get_num_threads(),
            steps,
            runner.config().train.batch_size,
        );
    }
    let mut runner = if opts.resume {
        let r = runner.resume(&run_dir)?;
        if opts.print {
            println!("resumed at step {}", r.step());
        }
        r
    } else {
        runner.with_run_dir(&run_dir)?
    };
    install_signal_handler()?;
    STOP.store(false, Ordering::SeqCst);
    runner.set_stop_flag(Arc::clone(&STOP));

    let bar = if opts.progress {
        let bar = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} steps ({per_sec}, eta {eta}) {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(250));
        bar.set_position(runner.step());
        bar
    } else {
        ProgressBar::hidden()
    };
    let quiet_bar = bar.is_hidden();
    let print = opts.print;
    let shown = bar.clone();
    let log_every = runner.config().log.every;
    runner.set_progress(Box::new(move |step, total, loss, acc| {
        let acc = acc.map_or(String::new(), |a| {
            format!(" | eval greedy {:.1}%", 100.0 * a)
        });
        shown.set_position(step);
        shown.set_message(format!("loss {loss:.4}{acc}"));
        if print && quiet_bar && (step % log_every == 0 || step == total) {
            println!("step {step}/{total} loss {loss:.4}{acc}");
        }
    }));
    let summary = runner.train();
    bar.finish_and_clear();
    let summary = summary?;
    if opts.print {
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
    }
    Ok(summary)
}
