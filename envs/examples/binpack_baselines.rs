//! Mean utilization of the BinPack baselines (random legal, greedy, oracle) on fresh
//! instances of Jumanji's BinPack-v2 config (20 items, 40 EMS, twenty-foot container).
//!
//! ```text
//! cargo run --release -p factorexe-envs --example binpack_baselines -- [EPISODES] [SEED]
//! ```
//! Defaults: 1000 episodes, seed 0. Instance `k` comes from seed `SEED + k`, the same for
//! every policy.

use envs::binpack::{evaluate, Baseline, BinPackConfig};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let parse = |arg: Option<String>, default: u64, what: &str| -> u64 {
        match arg {
            None => default,
            Some(s) => s.parse().unwrap_or_else(|_| {
                eprintln!("{what} must be a non-negative integer, got `{s}`");
                std::process::exit(2)
            }),
        }
    };
    let episodes = parse(args.next(), 1000, "EPISODES") as usize;
    let seed = parse(args.next(), 0, "SEED");
    let config = BinPackConfig::default();
    println!(
        "BinPack baselines: {} items max, {} EMS shown, container {:?}, {episodes} instances, seed {seed}",
        config.generator.max_num_items, config.obs_num_ems, config.generator.container
    );
    println!(
        "{:<8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "policy", "mean", "std", "min", "max", "perfect", "seconds"
    );
    for policy in Baseline::ALL {
        let start = Instant::now();
        match evaluate(&config, policy, episodes, seed) {
            Ok(s) => println!(
                "{:<8} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>9.2}",
                policy.name(),
                s.mean,
                s.std,
                s.min,
                s.max,
                s.perfect,
                start.elapsed().as_secs_f64()
            ),
            Err(e) => {
                eprintln!("{}: {e}", policy.name());
                std::process::exit(1)
            }
        }
    }
}
