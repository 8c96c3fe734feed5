//! `factorexe search`: test-time search over a trained run's policy.

use std::path::{Path, PathBuf};

use agents::checkpoint;
use agents::compare::{compare, CompareConfig, Tally, PLOT_TAG};
use agents::config::RunConfig;
use agents::logging::{Logger, CONFIG_FILE, METRICS_FILE};
use agents::search_eval::ValueSource;
use agents::searchers::{self, SearchPurpose, SearchSpec};
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
    /// policy, against the compute each actually spent: a table, CSV files, a PNG plot and
    /// TensorBoard scalars, with 95% intervals and paired tests against greedy and between
    /// searchers of similar compute.
    ///
    /// The budget k is nominal: vote samples k chains and takes the majority answer, beam
    /// keeps k beams, mcts and gumbel spend up to k evaluator calls on the search before each
    /// action (k = 1 is greedy). What each spent (evaluator calls, wall time, model tokens
    /// per problem) is measured and is the plot's x-axis. Searches read only the policy,
    /// never the answer or the env's rewards.
    Compare(Box<CompareArgs>),
    /// The registered searchers, with their settings at test time and in training.
    List,
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
    /// Searchers to compare (any registered ones: `factorexe search list`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "greedy,vote,beam,mcts,gumbel",
        value_name = "LIST"
    )]
    algos: Vec<String>,
    /// Nominal budgets k (what each searcher makes of k: `factorexe search list`; what it
    /// spent is measured and reported).
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
    /// Let `--value head` read a value head the run never trained (its values are then
    /// noise, which value-guided search follows): for measuring exactly that.
    #[arg(long)]
    allow_untrained_value: bool,
    /// Bootstrap resamples of the paired intervals.
    #[arg(long, default_value_t = 2000)]
    resamples: usize,
    /// A searcher's setting, `SEARCHER.KEY=VALUE` (repeatable), e.g. `gumbel.max_considered=8`.
    #[arg(long = "searcher-set", value_name = "SEARCHER.KEY=VALUE")]
    searcher_set: Vec<String>,
    /// Sampling temperature of `vote` (same as `--searcher-set vote.temperature=T`).
    #[arg(long)]
    temperature: Option<f32>,
    /// Root actions Gumbel MuZero considers (same as `--searcher-set gumbel.max_considered=M`).
    #[arg(long)]
    gumbel_m: Option<usize>,
    /// Normalize Q-values min-max over each node's children (mctx's default) instead of by
    /// their known bounds [0, 1].
    #[arg(long)]
    sibling_q: bool,
    /// Output directory for compare.csv, paired.csv, problems.csv, compare.png and the
    /// TensorBoard events (default: RUN_DIR/search).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Compare(a) => run_compare(*a),
        Command::List => list(),
    }
}

fn list() -> anyhow::Result<()> {
    let all = searchers::searchers();
    let w = all.iter().map(|e| e.name.len()).max().unwrap_or(0);
    for e in all {
        let plays = match e.plays {
            searchers::Plays::EachAction => "one action per search",
            searchers::Plays::WholeChain => "the whole chain per search",
        };
        println!("{:<w$}  {} ({plays})", e.name, e.summary);
        for (label, purpose) in [
            ("test time", SearchPurpose::Evaluate),
            ("training", SearchPurpose::Train),
        ] {
            let d = e.defaults(purpose).map_err(anyhow::Error::msg)?;
            if !d.is_empty() {
                let parts: Vec<String> = d.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!("{:<w$}  {label}: {}", "", parts.join(", "));
            }
        }
    }
    Ok(())
}

/// The searchers of `--algos` with the settings of `--searcher-set`, `--temperature` and
/// `--gumbel-m`.
fn searcher_specs(args: &CompareArgs) -> anyhow::Result<Vec<SearchSpec>> {
    let purpose = SearchPurpose::Evaluate;
    let mut specs = args
        .algos
        .iter()
        .map(|s| SearchSpec::parse(s, purpose))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--algos: {e}"))?;
    let mut sets: Vec<(String, String, String)> = Vec::new();
    if let Some(t) = args.temperature {
        sets.push(("vote".into(), "temperature".into(), t.to_string()));
    }
    if let Some(m) = args.gumbel_m {
        sets.push(("gumbel".into(), "max_considered".into(), m.to_string()));
    }
    for item in &args.searcher_set {
        let parsed = item
            .split_once('=')
            .and_then(|(k, v)| k.split_once('.').map(|(s, k)| (s, k, v)));
        let Some((searcher, key, value)) = parsed else {
            bail!("--searcher-set {item:?}: expected SEARCHER.KEY=VALUE, e.g. gumbel.max_considered=8");
        };
        sets.push((
            searcher.trim().into(),
            key.trim().into(),
            value.trim().into(),
        ));
    }
    for (searcher, key, value) in sets {
        let Some(spec) = specs.iter_mut().find(|s| s.name == searcher) else {
            bail!(
                "--searcher-set {searcher}.{key}: `{searcher}` is not among the compared searchers (--algos {})",
                args.algos.join(",")
            );
        };
        spec.set(&key, &value, purpose)
            .map_err(|e| anyhow::anyhow!("--searcher-set {searcher}.{key}={value}: {e}"))?;
    }
    Ok(specs)
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
    let searchers = searcher_specs(&args)?;
    let device = args.runtime.apply()?;
    let env = cfg.env.build()?;
    let mut agent = agents::registry::build(&cfg, &env, device)?;
    let untrained = !agent.value_head_trained();
    let value = match args.value {
        ValueArg::Head if untrained && !args.allow_untrained_value => bail!(
            "--value head: agent `{}` never trains its value head, so its values are noise \
             and value-guided search (mcts, gumbel) follows them. Use --value auto or \
             likelihood, calibrate the head first (e.g. configs/cycle10_value.toml), or pass \
             --allow-untrained-value to measure exactly that",
            agent.name()
        ),
        ValueArg::Head => ValueSource::Head,
        ValueArg::Likelihood => ValueSource::Likelihood,
        ValueArg::Auto if !untrained => ValueSource::Head,
        ValueArg::Auto => ValueSource::Likelihood,
    };
    let untrained_head = value == ValueSource::Head && untrained;
    if untrained_head {
        eprintln!(
            "WARNING: --value head on agent `{}`, whose value head was never trained: \
             value-guided searchers will follow noise",
            agent.name()
        );
    }
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
        searchers,
        budgets: args.budgets.clone(),
        levels,
        episodes: args.episodes,
        seed: args.seed,
        batch_size: args.batch,
        value,
        bounded_values: !args.sibling_q,
        resamples: args.resamples,
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
    if let Some(kept) = keep_earlier_results(&out)? {
        println!(
            "the earlier results in {} are kept in {}",
            out.display(),
            kept.display()
        );
    }
    let env_name = env_label(&cfg);
    println!(
        "run {} | {} | step {} | {} | value: {}{} | {} problems per difficulty, seed {}",
        args.run.display(),
        env_name,
        loaded.checkpoint.step,
        agent.name(),
        value,
        if untrained_head { " (UNTRAINED)" } else { "" },
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
        let (lo, hi) = c.interval();
        eprintln!(
            "  {:>6} {:>5} d{}: {:5.1}% [{:.1}, {:.1}]  ({:.1} evals/problem, {:.2} ms/problem, {:.1} s)",
            c.searcher,
            if c.budget_free {
                "-".to_string()
            } else {
                format!("k={}", c.budget)
            },
            c.difficulty,
            100.0 * c.accuracy(),
            100.0 * lo,
            100.0 * hi,
            c.evals_per_problem(),
            c.ms_per_problem(),
            c.seconds
        );
    })?;
    println!(
        "accuracy (%) with 95% Wilson intervals per difficulty, {} problems each, {:.1} s; \
         compute per problem (evaluator calls, wall time, model tokens), and the paired \
         difference to the reference (points, 95% bootstrap interval, McNemar's p):",
        ccfg.episodes,
        start.elapsed().as_secs_f64()
    );
    print!("{}", report.table());
    println!();
    print!("{}", report.verdicts());
    let csvs = report.write_csvs(&out)?;
    let csv_list: Vec<String> = csvs.iter().map(|p| p.display().to_string()).collect();
    let png = out.join("compare.png");
    let run_name = args.run.file_name().map_or_else(
        || args.run.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let title = format!(
        "{run_name}: {} on {env_name}, step {} | values: {}{} | {} problems per difficulty",
        agent.name(),
        loaded.checkpoint.step,
        value,
        if untrained_head {
            " (UNTRAINED head)"
        } else {
            ""
        },
        ccfg.episodes
    );
    let mut logger = Logger::create(&out)?;
    report.log(&mut logger)?;
    // The plot needs a system font (fontconfig); a machine without one still gets the CSVs
    // and the TensorBoard events, which hold the same numbers.
    match report.plot(&png, &title) {
        Ok(()) => {
            // The same picture in TensorBoard's IMAGES tab, next to the scalars it draws.
            let bytes = std::fs::read(&png)
                .with_context(|| format!("reading back the plot {}", png.display()))?;
            logger.image(PLOT_TAG, &bytes, 0)?;
            logger.flush()?;
            println!(
                "wrote {}, {} and TensorBoard events (the plot as image `{PLOT_TAG}`) in {}",
                csv_list.join(", "),
                png.display(),
                out.display()
            )
        }
        Err(e) => {
            // A half-drawn image would pass for a result.
            let _ = std::fs::remove_file(&png);
            eprintln!(
                "warning: no plot: {e}; the CSVs and the TensorBoard events hold the same numbers"
            );
            println!(
                "wrote {} and TensorBoard events in {}",
                csv_list.join(", "),
                out.display()
            );
        }
    }
    Ok(())
}

/// The files a comparison writes into its output directory.
fn is_result_file(name: &str) -> bool {
    matches!(
        name,
        "compare.csv" | "paired.csv" | "problems.csv" | "compare.png" | METRICS_FILE
    ) || name.starts_with("events.out.tfevents.")
}

/// Moves an earlier comparison's files out of `out` into `out/earlier/<n>` (the first free
/// `n` from 1), so that a second comparison into the same directory replaces nothing: the
/// newest results are always at `out`, every earlier set under `earlier/`. Returns where the
/// earlier set went, `None` when `out` held none.
fn keep_earlier_results(out: &Path) -> anyhow::Result<Option<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(out).with_context(|| format!("reading {}", out.display()))? {
        let entry = entry.with_context(|| format!("reading {}", out.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_result_file(&name) && entry.path().is_file() {
            found.push(name);
        }
    }
    if found.is_empty() {
        return Ok(None);
    }
    let earlier = out.join("earlier");
    let dest = (1..)
        .map(|n| earlier.join(n.to_string()))
        .find(|d| !d.exists())
        .unwrap_or_else(|| earlier.join("next"));
    std::fs::create_dir_all(&dest).with_context(|| format!("creating {}", dest.display()))?;
    for name in found {
        std::fs::rename(out.join(&name), dest.join(&name))
            .with_context(|| format!("moving {} into {}", name, dest.display()))?;
    }
    Ok(Some(dest))
}

/// The env as the run's config names it, with its parameters: `cycle(length=10,
/// max_chain_len=4)`.
fn env_label(cfg: &RunConfig) -> String {
    let params: Vec<String> = cfg
        .env
        .params
        .0
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if params.is_empty() {
        cfg.env.name.clone()
    } else {
        format!("{}({})", cfg.env.name, params.join(", "))
    }
}
