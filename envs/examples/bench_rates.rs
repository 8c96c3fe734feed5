//! Prints problem-generation and VecEnv token-step rates, one thread, as JSON lines; used by
//! `scripts/bench/envs_vs_jax.sh` (the Criterion bench `envs` measures the same loops).
//!
//! `cargo run --release -p factorexe-envs --example bench_rates -- [batch] [seconds] [only]`
//! (`only`: run the cases whose name contains it, e.g. `cvpr100`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use envs::{CotEnv, Cvpr, Cycle, DifficultySampler, Env, EnvRng, Problem, Task, VecEnv};
use rand::{Rng, SeedableRng};

/// CPU time of the calling thread (Linux `/proc/thread-self/schedstat`, nanoseconds), so
/// that rates on a shared machine count the time this thread actually ran.
fn thread_cpu_secs() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns * 1e-9)
}

/// Runs `f` (one batch) until `secs` of wall time have passed; returns batches per second of
/// wall time and per second of this thread's CPU time (same as wall time where unavailable).
fn rate(secs: f64, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let start = Instant::now();
    let cpu0 = thread_cpu_secs();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs_f64(secs) {
        f();
        n += 1;
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = match (cpu0, thread_cpu_secs()) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => wall,
    };
    (n as f64 / wall, n as f64 / cpu)
}

fn problems<T: Task>(task: &T, batch: usize, secs: f64) -> (f64, f64) {
    let l = task.spec().difficulty.max;
    let mut rng = EnvRng::seed_from_u64(0);
    let mut out: Vec<Problem> = vec![Problem::default(); batch];
    let r = rate(secs, || {
        for p in out.iter_mut() {
            let h = rng.random_range(1..=l);
            task.sample_into(h, &mut rng, p).expect("hops in range");
        }
        black_box(&out);
    });
    (r.0 * batch as f64, r.1 * batch as f64)
}

fn token_steps<T: Task>(task: T, batch: usize, secs: f64, parallel: bool) -> f64 {
    let max = task.spec().difficulty.max;
    let env = CotEnv::new(task).expect("valid task");
    let levels = (1..=max).collect();
    let sampler = DifficultySampler::uniform(levels).expect("non-empty");
    let mut v = VecEnv::new(env, batch, sampler).expect("valid batch");
    v.set_parallel(parallel);
    v.reset(0).expect("reset");
    let mut actions = vec![0usize; batch];
    let r = rate(secs, || {
        for (a, e) in actions.iter_mut().zip(v.envs()) {
            *a = e.oracle_action().unwrap_or(0);
        }
        v.step(&actions).expect("oracle actions are legal");
        black_box(v.tokens());
    });
    r.0 * batch as f64
}

fn main() {
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
            let t = Cycle::new(l).expect("valid length");
            (
                problems(&t, batch, secs),
                token_steps(t.clone(), batch, secs, false),
                token_steps(t, batch, secs, true),
            )
        } else {
            let t = Cvpr::new(l).expect("valid length");
            (
                problems(&t, batch, secs),
                token_steps(t.clone(), batch, secs, false),
                token_steps(t, batch, secs, true),
            )
        };
        println!(
            "{{\"task\":\"{name}\",\"length\":{l},\"batch\":{batch},\"problems_per_s\":{:.0},\
             \"problems_per_cpu_s\":{:.0},\"token_steps_per_s\":{s:.0},\
             \"token_steps_per_s_rayon\":{sp:.0},\"rayon_threads\":{}}}",
            p.0,
            p.1,
            rayon::current_num_threads()
        );
    }
}
