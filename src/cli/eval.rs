//! `factorexe eval`: accuracy per difficulty of a trained run on fresh problems.

use std::path::PathBuf;

use agents::checkpoint;
use agents::config::RunConfig;
use agents::eval::evaluate;
use agents::logging::CONFIG_FILE;
use agents::{ActMode, Agent};
use anyhow::Context;

use super::train::RuntimeArgs;

/// Probes `factorexe eval --probe` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Probe {
    /// The chain faithfulness probe (agents::probe).
    Chain,
}

/// Arguments of `factorexe eval`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run directory (runs/<name>).
    #[arg(long, value_name = "RUN_DIR")]
    run: PathBuf,
    /// A checkpoint file of the run (default: the latest).
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Fresh problems per difficulty, 1..=1000000.
    #[arg(
        long,
        default_value_t = 1000,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000)
    )]
    episodes: u32,
    /// Difficulties to evaluate, e.g. 1,2,3 (default: the run's eval levels, else its
    /// training levels).
    #[arg(long, value_delimiter = ',', value_name = "LEVELS")]
    levels: Vec<u32>,
    /// Seed of the problems; the default differs from every seed used in training and in
    /// the run's own evaluations, so the problems are fresh.
    #[arg(long, default_value_t = 0x00e7_a100)]
    seed: u64,
    /// Greedy chains only (skip the sampled ones).
    #[arg(long)]
    greedy_only: bool,
    /// Also run a probe: `chain` alters each greedy chain (replace token k with a random
    /// legal token, or shuffle chains across the batch) and reports how often the answer
    /// changes and the accuracy after the intervention, per difficulty.
    #[arg(long, value_enum, value_name = "PROBE")]
    probe: Option<Probe>,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    super::train::passive_openmp();
    let config_path = args.run.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&config_path).with_context(|| {
        format!(
            "reading {} (is {} a run directory made by `factorexe train`?)",
            config_path.display(),
            args.run.display()
        )
    })?;
    let cfg = RunConfig::from_resolved(&text, &config_path.display().to_string())?;
    let device = args.runtime.apply()?;
    let env = cfg.env.build()?;
    let mut agent = agents::registry::build(&cfg, &env, device)?;
    let loaded = match &args.checkpoint {
        Some(p) => checkpoint::load(p)?,
        None => checkpoint::load_latest(&args.run)?,
    };
    agent.load_state(&loaded.tensors)?;

    let levels = if !args.levels.is_empty() {
        args.levels.clone()
    } else if !cfg.eval.levels.is_empty() {
        cfg.eval.levels.clone()
    } else {
        cfg.train.sampler()?.levels()
    };
    let spec_range = envs::Env::spec(&env).difficulty;
    if let Some(bad) = levels.iter().find(|&&d| !spec_range.contains(d)) {
        anyhow::bail!(
            "--levels: difficulty {bad} is outside the env's range {}..={}",
            spec_range.min,
            spec_range.max
        );
    }
    let mut eval_cfg = cfg.eval.clone();
    eval_cfg.episodes = args.episodes as usize;
    eval_cfg.examples = 0;
    let modes: &[ActMode] = if args.greedy_only {
        &[ActMode::Greedy]
    } else {
        &[ActMode::Greedy, ActMode::Sample]
    };
    let start = std::time::Instant::now();
    let report = evaluate(&env, &mut agent, &levels, &eval_cfg, args.seed, modes)?;
    println!(
        "run {} | {} | step {} | {} fresh problems per difficulty, seed {} | {:.1} s",
        args.run.display(),
        envs::Env::spec(&env).name,
        loaded.checkpoint.step,
        eval_cfg.episodes,
        args.seed,
        start.elapsed().as_secs_f64()
    );
    print!("{}", report.table());
    if let Some(extra) = agent.extra_eval(
        &env,
        &levels,
        eval_cfg.episodes,
        eval_cfg.batch_size,
        args.seed,
    )? {
        print!("{extra}");
    }
    if let Some(Probe::Chain) = args.probe {
        let start = std::time::Instant::now();
        let rep = agents::probe::chain_probe(
            &env,
            &mut agent,
            &levels,
            eval_cfg.episodes,
            eval_cfg.batch_size,
            args.seed,
        )?;
        println!(
            "chain probe (greedy chains altered, answer decoded again) | {:.1} s",
            start.elapsed().as_secs_f64()
        );
        print!("{}", rep.table());
    }
    Ok(())
}
