//! `factorexe train`: train an agent from a TOML config into `runs/<name>/`.

use std::path::{Path, PathBuf};

use agents::config::{Override, RunConfig};
use agents::device::DeviceChoice;
use agents::logging::CONFIG_FILE;
use agents::train::{train, TrainOptions};
use agents::Agent as _;
use anyhow::bail;

/// Device and threading flags shared by `train` and `eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeArgs {
    /// Device: auto (CUDA when present, else CPU), cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// libtorch intra-op threads, 1..=1024. The default, 1, is the fastest for this
    /// project's model sizes (a second thread halves RL's speed, see docs/performance.md);
    /// raise it for wide models and large batches, where a second thread pays 1.25-1.6x.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u16).range(1..=1024)
    )]
    pub threads: u16,
}

impl RuntimeArgs {
    /// Applies the thread count and resolves the device.
    pub fn apply(&self) -> anyhow::Result<tch::Device> {
        tch::set_num_threads(i32::from(self.threads));
        Ok(self.device.resolve()?)
    }
}

pub use agents::train::passive_openmp;

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
    /// With --resume: continue from this checkpoint of the run instead of its latest, a
    /// step number or a checkpoint file (e.g. when the newest is damaged); checkpoint files
    /// of later steps are moved to superseded/<n>/ in the run directory, not deleted.
    #[arg(long, value_name = "STEP|FILE", requires = "resume")]
    from_checkpoint: Option<agents::train::CheckpointChoice>,
    /// Start afresh in a run directory that already holds a run (its checkpoints, event
    /// files and metrics are deleted).
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// No progress bar (log lines instead); automatic when stderr is not a terminal.
    #[arg(long)]
    no_progress: bool,
    /// Check the config, env, levels and agent (built on the CPU), print one line and exit
    /// without touching the run directory.
    #[arg(long, conflicts_with_all = ["resume", "overwrite"])]
    dry_run: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
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
    if args.dry_run {
        return dry_run(cfg, &run_dir);
    }
    let device = args.runtime.apply()?;
    let mut opts = TrainOptions::new(cfg);
    opts.run_dir = Some(run_dir);
    opts.resume = args.resume.is_some();
    opts.resume_from = args.from_checkpoint;
    opts.overwrite = args.overwrite;
    opts.device = device;
    opts.threads = Some(usize::from(args.runtime.threads));
    opts.progress = !args.no_progress;
    let summary = train(opts)?;
    if summary.interrupted {
        // Saved, but not finished: a distinct status tells a script or scheduler (Slurm
        // requeues on it) that `--resume` has more to do.
        std::process::exit(INTERRUPTED_STATUS);
    }
    Ok(())
}

/// Builds everything `train` would before its first write (env, agent, runner), on the CPU.
fn dry_run(mut cfg: RunConfig, run_dir: &Path) -> anyhow::Result<()> {
    agents::registry::resolve(&mut cfg)?;
    let env = cfg.env.build()?;
    let agent = agents::registry::build(&cfg, &env, tch::Device::Cpu)?;
    let params = agent.num_parameters();
    agents::Runner::new(cfg, env, agent)?;
    println!("ok: {} ({params} parameters)", run_dir.display());
    Ok(())
}

/// Exit status of a run stopped by a signal after it saved its checkpoint (128 + SIGINT, as
/// a shell reports an interrupted program).
pub const INTERRUPTED_STATUS: i32 = 130;
