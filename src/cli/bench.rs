//! `factorexe bench`: quick throughput figures of this build on this machine, one thread.
//!
//! Output is one `key=value` line per measurement (`envs ...`, `search ...`) after `#`
//! comment lines describing the setting, so that scripts can parse it. The measuring code
//! lives in the crates (`envs::throughput`, `search::bench`) and is shared with their
//! examples behind `scripts/bench/`.

use ::envs::throughput::{problem_rate, token_step_rate, Rate};
use ::envs::{Cvpr, Cycle, Task};
use ::search::bench::{self as search_bench, SearchBench};
use clap::{Subcommand, ValueEnum};
use std::path::PathBuf;

use super::train::RuntimeArgs;

mod train;

/// Arguments of `factorexe bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Problems generated per second and VecEnv token-steps per second (oracle actions,
    /// hops uniform in 1..=L-1) of the pointer tasks.
    ///
    /// Example: factorexe bench envs --length 100 --batch 4096
    Envs(EnvsArgs),
    /// Simulations per second of MCTS and Gumbel MuZero with a tiny plain-Rust MLP evaluator
    /// on a hashed-state env (the setting of scripts/bench/search_vs_mctx).
    ///
    /// Example: factorexe bench search --batch 64 --sims 64
    Search(SearchArgs),
    /// Profile of a config's training updates: examples/s and episodes/s, one update split
    /// into rollout (sampling the chains), forward, backward, optimizer and the rest, with
    /// each phase's analytic FLOPs against this machine's measured fp32 matmul peak (MFU)
    /// and the time above what the FLOPs need at that peak (host overhead: Rust, op
    /// dispatch, memory-bound ops). Builds the config's env and agent as `train` does, with
    /// no run directory, and plays the run's first updates (same seeds).
    ///
    /// Example: factorexe bench train --config configs/cycle10_rl.toml --steps 20 --threads 2
    Train(TrainArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PointerTask {
    Cycle,
    Cvpr,
}

#[derive(Debug, clap::Args)]
struct EnvsArgs {
    /// Tasks to measure, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [PointerTask::Cycle, PointerTask::Cvpr])]
    task: Vec<PointerTask>,
    /// Sequence length L, 2..=2^20.
    #[arg(long, default_value_t = 100)]
    length: usize,
    /// Problems per batch (and envs in the VecEnv), 1..=2^20.
    #[arg(long, default_value_t = 4096, value_parser = in_range::<{ 1 << 20 }>)]
    batch: usize,
    /// Seconds per figure.
    #[arg(long, default_value_t = 1.0, value_parser = seconds)]
    seconds: f64,
}

#[derive(Debug, clap::Args)]
struct SearchArgs {
    /// Roots searched together, 1..=4096.
    #[arg(long, default_value_t = 64, value_parser = in_range::<4096>)]
    batch: usize,
    /// Simulations per root, 1..=4096 (the budget is sims + 1 evaluator calls).
    #[arg(long, default_value_t = 64, value_parser = in_range::<4096>)]
    sims: usize,
    /// Actions of the env, 1..=4096.
    #[arg(long, default_value_t = 40, value_parser = in_range::<4096>)]
    actions: usize,
    /// Hidden width of the MLP evaluator, 1..=4096.
    #[arg(long, default_value_t = 64, value_parser = in_range::<4096>)]
    hidden: usize,
    /// Seconds of searches per searcher (at least 3 searches).
    #[arg(long, default_value_t = 1.0, value_parser = seconds)]
    seconds: f64,
}

#[derive(Debug, clap::Args)]
struct TrainArgs {
    /// The run's config (e.g. configs/cycle10_rl.toml).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Override a config value: --set model.decoder_layers=3 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Updates measured, 1..=100000 (after the warm-up ones).
    #[arg(long, default_value_t = 20, value_parser = in_range::<100_000>)]
    steps: usize,
    /// Updates played first and not measured (allocator and caches warming up), 0..=1000.
    #[arg(long, default_value_t = 3, value_parser = up_to::<1000>)]
    warmup: usize,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// An integer in `0..=MAX`.
fn up_to<const MAX: usize>(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n <= MAX => Ok(n),
        _ => Err(format!("expected an integer in 0..={MAX}, got `{text}`")),
    }
}

/// An integer in `1..=MAX`: the bounds keep a benchmark's buffers within memory.
fn in_range<const MAX: usize>(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX).contains(&n) => Ok(n),
        _ => Err(format!("expected an integer in 1..={MAX}, got `{text}`")),
    }
}

fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if (0.0..=3600.0).contains(&s) => Ok(s),
        _ => Err(format!("expected seconds in 0..=3600, got `{text}`")),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Envs(a) => envs(&a),
        Command::Search(a) => search(&a),
        Command::Train(a) => train::profile(&a),
    }
}

/// The `#` lines every report starts with: what was measured, the build and the machine.
fn header(what: &str) {
    println!("# factorexe bench {what}: one thread; rates per second of wall time and per CPU-second of the measuring thread");
    machine_line();
}

/// The `#` line with the build and the machine's CPUs and load.
fn machine_line() {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "n/a".to_string());
    let build = if cfg!(debug_assertions) {
        "debug (unoptimized: build with --release for representative figures)"
    } else {
        "release"
    };
    println!("# build {build}; {cpus} CPUs, load average {load}");
}

/// A built pointer task.
enum Built {
    Cycle(Cycle),
    Cvpr(Cvpr),
}

fn envs(a: &EnvsArgs) -> anyhow::Result<()> {
    // Build every task first, so that a bad length fails before anything is printed.
    let tasks = a
        .task
        .iter()
        .map(|t| {
            Ok(match t {
                PointerTask::Cycle => Built::Cycle(Cycle::new(a.length)?),
                PointerTask::Cvpr => Built::Cvpr(Cvpr::new(a.length)?),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    header("envs");
    for task in tasks {
        let (name, (problems, steps)) = match task {
            Built::Cycle(t) => ("cycle", rates(t, a)?),
            Built::Cvpr(t) => ("cvpr", rates(t, a)?),
        };
        println!(
            "envs task={name} length={} batch={} problems_per_s={:.0} problems_per_cpu_s={:.0} \
             token_steps_per_s={:.0} token_steps_per_cpu_s={:.0}",
            a.length, a.batch, problems.per_s, problems.per_cpu_s, steps.per_s, steps.per_cpu_s
        );
    }
    Ok(())
}

/// Problems/s and one-thread token-steps/s of `task`.
fn rates<T: Task>(task: T, a: &EnvsArgs) -> anyhow::Result<(Rate, Rate)> {
    let problems = problem_rate(&task, a.batch, a.seconds)?;
    let steps = token_step_rate(task, a.batch, a.seconds, false)?;
    Ok((problems, steps))
}

fn search(a: &SearchArgs) -> anyhow::Result<()> {
    header("search");
    let config = SearchBench {
        batch: a.batch,
        sims: a.sims,
        actions: a.actions,
        hidden: a.hidden,
        seconds: a.seconds,
        reps: None,
    };
    println!(
        "# MlpEvaluator {} bit-features -> {h} -> {h} -> {} logits + value; default MCTS and \
         Gumbel configs",
        ::search::testing::BENCH_FEATURES,
        a.actions,
        h = a.hidden
    );
    for t in search_bench::run(&config)? {
        println!(
            "search algo={} batch={} sims={} sims_per_s={:.0} sims_per_cpu_s={} ms_per_search={:.3}",
            t.algo,
            t.batch,
            t.sims,
            t.sims_per_s(),
            t.sims_per_cpu_s()
                .map_or("n/a".to_string(), |r| format!("{r:.0}")),
            t.wall_per_search * 1e3
        );
    }
    Ok(())
}
