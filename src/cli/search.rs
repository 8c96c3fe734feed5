//! `factorexe search`: test-time search over a trained run's policy.

use std::path::PathBuf;

use agents::checkpoint;
use agents::compare::{compare, CompareConfig, SearchAlgo};
use agents::config::RunConfig;
use agents::logging::{Logger, CONFIG_FILE};
use agents::search_eval::ValueSource;
use agents::Agent;
use anyhow::{bail, Context};

use super::train::RuntimeArgs;

/// Arguments of `factorexe search`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Accuracy per difficulty of several searchers at several budgets over a trained
    /// policy: a table, a CSV file, a PNG plot and TensorBoard scalars.
    ///
    /// A budget k is about k times greedy decoding's evaluator calls: vote samples k chains
    /// and takes the majority answer, beam keeps k beams, mcts and gumbel spend k evaluator
    /// calls on the search before each action (k = 1 is greedy). Searches read only the
    /// policy, never the answer or the env's rewards.
    Compare(CompareArgs),
}

/// How the evaluator values states (`--value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ValueArg {
    /// `head` when the run trained its value head (expert_iteration, reinforce with the
    /// value baseline), else `likelihood`.
    Auto,
    /// The model's value head.
    Head,
    /// The chain's probability under the policy (policy only).
    Likelihood,
}

#[derive(Debug, clap::Args)]
struct CompareArgs {
    /// The run directory (runs/<name>).
    #[arg(long, value_name = "RUN_DIR")]
    run: PathBuf,
    /// A checkpoint file of the run (default: the latest).
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Searchers to compare.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "greedy,vote,beam,mcts,gumbel",
        value_name = "LIST"
    )]
    algos: Vec<String>,
    /// Budgets (multiples of greedy's evaluator calls).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,2,4,8,16,32,64",
        value_name = "LIST"
    )]
    budgets: Vec<usize>,
    /// Fresh problems per difficulty.
    #[arg(long, default_value_t = 200)]
    episodes: usize,
    /// Difficulties (default: the run's eval levels, else its training levels).
    #[arg(long, value_delimiter = ',', value_name = "LEVELS")]
    levels: Vec<u32>,
    /// Seed of the problems and of the searchers' randomness (the default is apart from
    /// every training and evaluation stream).
    #[arg(long, default_value_t = 0x5ea7_c400)]
    seed: u64,
    /// Problems searched together.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Where search values come from.
    #[arg(long, value_enum, default_value = "auto")]
    value: ValueArg,
    /// Sampling temperature of `vote`.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Root actions Gumbel MuZero considers.
    #[arg(long, default_value_t = 16)]
    gumbel_m: usize,
    /// Normalize Q-values min-max over each node's children (mctx's default) instead of by
    /// their known bounds [0, 1].
    #[arg(long)]
    sibling_q: bool,
    /// Output directory for compare.csv, compare.png and the TensorBoard events
    /// (default: RUN_DIR/search).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Compare(a) => run_compare(a),
    }
}

fn run_compare(args: CompareArgs) -> anyhow::Result<()> {
    let config_path = args.run.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&config_path).with_context(|| {
        format!(
            "reading {} (is {} a run directory made by `factorexe train`?)",
            config_path.display(),
            args.run.display()
        )
    })?;
    let cfg = RunConfig::from_resolved(&text, &config_path.display().to_string())?;
    let algos = args
        .algos
        .iter()
        .map(|s| s.trim().parse::<SearchAlgo>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--algos: {e}"))?;
    let device = args.runtime.apply()?;
    let env = cfg.env.build()?;
    let mut agent = agents::registry::build(&cfg, &env, device)?;
    let value = match args.value {
        ValueArg::Head => ValueSource::Head,
        ValueArg::Likelihood => ValueSource::Likelihood,
        ValueArg::Auto if agent.value_head_trained() => ValueSource::Head,
        ValueArg::Auto => ValueSource::Likelihood,
    };
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
    let ccfg = CompareConfig {
        algos,
        budgets: args.budgets.clone(),
        levels,
        episodes: args.episodes,
        seed: args.seed,
        batch_size: args.batch,
        value,
        temperature: args.temperature,
        max_considered: args.gumbel_m,
        bounded_values: !args.sibling_q,
    };
    ccfg.validate()?;
    let out = args.out.clone().unwrap_or_else(|| args.run.join("search"));
    if out.join(CONFIG_FILE).exists() {
        bail!(
            "{} holds a training run; give --out a directory of its own",
            out.display()
        );
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    println!(
        "run {} | {} | step {} | {} | value: {} | {} problems per difficulty, seed {}",
        args.run.display(),
        envs::Env::spec(&env).name,
        loaded.checkpoint.step,
        agent.name(),
        value,
        ccfg.episodes,
        ccfg.seed
    );
    let start = std::time::Instant::now();
    let policy = agent.policy().ok_or_else(|| {
        anyhow::anyhow!(
            "agent `{}` has no chain-of-thought policy network to search over",
            agent.name()
        )
    })?;
    let report = compare(&env, policy, &ccfg, |c| {
        eprintln!(
            "  {:>6} budget {:>3} d{}: {:5.1}%  ({:.1} evals/problem, {:.1} s)",
            c.algo.name(),
            c.budget,
            c.difficulty,
            100.0 * c.accuracy(),
            c.evals_per_problem(),
            c.seconds
        );
    })?;
    println!(
        "accuracy (%) per difficulty, {} problems each, {:.1} s:",
        ccfg.episodes,
        start.elapsed().as_secs_f64()
    );
    print!("{}", report.table());
    let csv = out.join("compare.csv");
    report.write_csv(&csv)?;
    let png = out.join("compare.png");
    let title = format!(
        "{} | {} step {} | value {}",
        envs::Env::spec(&env).name,
        agent.name(),
        loaded.checkpoint.step,
        value
    );
    let mut logger = Logger::create(&out)?;
    report.log(&mut logger)?;
    // The plot needs a system font (fontconfig); a machine without one still gets the CSV
    // and the TensorBoard events, which hold the same numbers.
    match report.plot(&png, &title) {
        Ok(()) => println!(
            "wrote {}, {} and TensorBoard events in {}",
            csv.display(),
            png.display(),
            out.display()
        ),
        Err(e) => {
            // A half-drawn image would pass for a result.
            let _ = std::fs::remove_file(&png);
            eprintln!(
                "warning: no plot: {e}; the CSV and the TensorBoard events hold the same numbers"
            );
            println!(
                "wrote {} and TensorBoard events in {}",
                csv.display(),
                out.display()
            );
        }
    }
    Ok(())
}
