//! Simulations per second of MCTS and Gumbel MuZero with a tiny plain-Rust MLP evaluator on
//! [`search::testing::BenchEnv`]: the Rust half of `scripts/bench/search_vs_mctx`. The
//! measuring code is [`search::bench`], which `factorexe bench search` uses too.
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

use search::bench::{run, SearchBench};

/// The batches to run and the rest of the setting.
fn parse() -> Result<(Vec<usize>, SearchBench), String> {
    let mut batches = vec![64, 1024];
    let mut config = SearchBench::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--batch" => {
                batches = value
                    .split(',')
                    .map(|s| s.parse::<usize>().map_err(|e| bad(&e)))
                    .collect::<Result<_, _>>()?
            }
            "--sims" => config.sims = value.parse().map_err(|e| bad(&e))?,
            "--actions" => config.actions = value.parse().map_err(|e| bad(&e))?,
            "--hidden" => config.hidden = value.parse().map_err(|e| bad(&e))?,
            "--seconds" => config.seconds = value.parse().map_err(|e| bad(&e))?,
            "--reps" => config.reps = Some(value.parse().map_err(|e| bad(&e))?),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok((batches, config))
}

fn main() {
    let (batches, mut config) = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("search_bench: {e}");
            std::process::exit(2);
        }
    };
    for batch in batches {
        config.batch = batch;
        let timings = match run(&config) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("search_bench: batch {batch} failed: {e}");
                std::process::exit(1);
            }
        };
        for t in timings {
            println!(
                "rust {} batch={} sims={} sims_per_sec={:.0} ms_per_search={:.3} \
                 cpu_ms_per_search={}",
                t.algo,
                t.batch,
                t.sims,
                t.sims_per_s(),
                t.wall_per_search * 1e3,
                t.cpu_per_search
                    .map_or("n/a".to_string(), |c| format!("{:.3}", c * 1e3)),
            );
        }
    }
}
