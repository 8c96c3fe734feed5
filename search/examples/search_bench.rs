//! Simulations per second of MCTS and Gumbel MuZero with a tiny plain-Rust MLP evaluator on
//! [`BenchEnv`]: the Rust half of `scripts/bench/search_vs_mctx`.
//!
//! ```text
//! cargo run --release -p factorexe-search --example search_bench -- [--batch 64,1024]
//!     [--sims 64] [--actions 40] [--hidden 64] [--seconds 2] [--reps N]
//! ```
//!
//! Prints one line per (algorithm, batch): `rust <algo> batch=<B> sims=<S> sims_per_sec=<x>
//! ms_per_search=<t> cpu_ms_per_search=<c>`, where `sims_per_sec = B * S / wall seconds per
//! search` (each root counts its own simulations, as for mctx) and `c` is the CPU time of the
//! (single) search thread, which differs from the wall time when the machine is shared.

use envs::EnvRng;
use rand::SeedableRng;
use search::testing::{BenchEnv, MlpEvaluator, BENCH_FEATURES};
use search::{GumbelConfig, GumbelMuZero, Mcts, MctsConfig, Searcher};
use std::time::Instant;

struct Args {
    batches: Vec<usize>,
    sims: usize,
    actions: usize,
    hidden: usize,
    seconds: f64,
    /// Fixed number of timed searches (overrides `seconds`), for cycle counts under `perf stat`.
    reps: Option<u32>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        batches: vec![64, 1024],
        sims: 64,
        actions: 40,
        hidden: 64,
        seconds: 2.0,
        reps: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--batch" => {
                args.batches = value
                    .split(',')
                    .map(|s| s.parse::<usize>().map_err(|e| bad(&e)))
                    .collect::<Result<_, _>>()?
            }
            "--sims" => args.sims = value.parse().map_err(|e| bad(&e))?,
            "--actions" => args.actions = value.parse().map_err(|e| bad(&e))?,
            "--hidden" => args.hidden = value.parse().map_err(|e| bad(&e))?,
            "--seconds" => args.seconds = value.parse().map_err(|e| bad(&e))?,
            "--reps" => args.reps = Some(value.parse().map_err(|e| bad(&e))?),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(args)
}

/// Nanoseconds this thread has run on a CPU (Linux `schedstat`), to report CPU time apart from
/// wall time on a shared machine; `None` elsewhere.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Wall and CPU seconds per search, from repeated searches over at least `seconds` (or exactly
/// `fixed_reps`) after one warm-up.
fn time_search(
    searcher: &mut dyn Searcher<BenchEnv>,
    roots: &[BenchEnv],
    eval: &mut MlpEvaluator,
    budget: usize,
    seconds: f64,
    fixed_reps: Option<u32>,
) -> Result<(f64, Option<f64>), search::SearchError> {
    let mut rng = EnvRng::seed_from_u64(0);
    searcher.search(roots, eval, budget, &mut rng)?;
    let cpu_start = thread_cpu_ns();
    let start = Instant::now();
    let mut reps = 0u32;
    loop {
        let more = match fixed_reps {
            Some(n) => reps < n,
            None => reps < 3 || start.elapsed().as_secs_f64() < seconds,
        };
        if !more {
            break;
        }
        let out = searcher.search(roots, eval, budget, &mut rng)?;
        std::hint::black_box(&out);
        reps += 1;
    }
    let wall = start.elapsed().as_secs_f64() / reps as f64;
    let cpu = cpu_start
        .zip(thread_cpu_ns())
        .map(|(a, b)| (b - a) as f64 * 1e-9 / reps as f64);
    Ok((wall, cpu))
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("search_bench: {e}");
            std::process::exit(2);
        }
    };
    let mut eval = MlpEvaluator::new(BENCH_FEATURES, args.hidden, args.actions, 0);
    for &batch in &args.batches {
        let roots: Vec<BenchEnv> = (0..batch as u32)
            .map(|i| BenchEnv::new(args.actions, 10_000, i))
            .collect();
        let searchers: Vec<(&str, Box<dyn Searcher<BenchEnv>>)> = vec![
            (
                "mcts",
                Box::new(Mcts::new(MctsConfig::default()).expect("default config")),
            ),
            (
                "gumbel",
                Box::new(GumbelMuZero::new(GumbelConfig::default()).expect("default config")),
            ),
        ];
        for (name, mut s) in searchers {
            // The budget counts the root evaluation too: `sims` simulations need `sims + 1`.
            let timed = time_search(
                s.as_mut(),
                &roots,
                &mut eval,
                args.sims + 1,
                args.seconds,
                args.reps,
            );
            match timed {
                Ok((t, cpu)) => println!(
                    "rust {name} batch={batch} sims={} sims_per_sec={:.0} ms_per_search={:.3} \
                     cpu_ms_per_search={}",
                    args.sims,
                    (batch * args.sims) as f64 / t,
                    t * 1e3,
                    cpu.map_or("n/a".to_string(), |c| format!("{:.3}", c * 1e3)),
                ),
                Err(e) => {
                    eprintln!("search_bench: {name} failed: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
}
