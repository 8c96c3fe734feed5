//! Prints problem-generation and VecEnv token-step rates, one thread, as JSON lines; used by
//! `scripts/bench/envs_vs_jax.sh`. The measuring code is [`envs::throughput`], which
//! `factorexe bench envs` uses too.
//!
//! `cargo run --release -p factorexe-envs --example bench_rates -- [batch] [seconds] [only]`
//! (`only`: run the cases whose name contains it, e.g. `cvpr100`).

use envs::throughput::{problem_rate, token_step_rate, Rate};
use envs::{Cvpr, Cycle, EnvError, Task};

/// Problems/s, then token-steps/s on one thread and on rayon's pool.
fn rates<T: Task>(task: T, batch: usize, secs: f64) -> Result<(Rate, Rate, Rate), EnvError> {
    Ok((
        problem_rate(&task, batch, secs)?,
        token_step_rate(task.clone(), batch, secs, false)?,
        token_step_rate(task, batch, secs, true)?,
    ))
}

fn main() -> Result<(), EnvError> {
    let args: Vec<String> = std::env::args().collect();
    let batch: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(4096);
    let secs: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let only = args.get(3).cloned().unwrap_or_default();
    let cases: [(&str, usize); 3] = [("cycle", 40), ("cycle", 100), ("cvpr", 100)];
    for (name, l) in cases {
        if !format!("{name}{l}").contains(&only) {
            continue;
        }
        let (p, s, sp) = if name == "cycle" {
            rates(Cycle::new(l)?, batch, secs)?
        } else {
            rates(Cvpr::new(l)?, batch, secs)?
        };
        println!(
            "{{\"task\":\"{name}\",\"length\":{l},\"batch\":{batch},\"problems_per_s\":{:.0},\
             \"problems_per_cpu_s\":{:.0},\"token_steps_per_s\":{:.0},\
             \"token_steps_per_s_rayon\":{:.0},\"rayon_threads\":{}}}",
            p.per_s,
            p.per_cpu_s,
            s.per_s,
            sp.per_s,
            rayon::current_num_threads()
        );
    }
    Ok(())
}
