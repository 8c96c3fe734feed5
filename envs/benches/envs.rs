//! Criterion bench `envs`: problems generated per second and VecEnv token-steps per second,
//! for Cycle L=40, L=100 and C-VPR L=100 at batch 4096, one thread (hops uniform in 1..=L-1).
//!
//! `cargo bench -p factorexe-envs --bench envs`; `scripts/bench/envs_vs_jax.sh` compares the
//! same loops with the original's JAX samplers.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use envs::{CotEnv, Cvpr, Cycle, DifficultySampler, Env, EnvRng, Problem, Task, VecEnv};
use rand::{Rng, SeedableRng};

const BATCH: usize = 4096;

fn problems<T: Task>(c: &mut Criterion, label: &str, task: &T) {
    let mut g = c.benchmark_group("problems");
    g.throughput(Throughput::Elements(BATCH as u64));
    let max = task.spec().difficulty.max;
    let mut rng = EnvRng::seed_from_u64(0);
    let mut out = vec![Problem::default(); BATCH];
    g.bench_function(label, |b| {
        b.iter(|| {
            for p in out.iter_mut() {
                let h = rng.random_range(1..=max);
                task.sample_into(h, &mut rng, p).expect("hops in range");
            }
            black_box(&out);
        })
    });
    g.finish();
}

fn token_steps<T: Task + 'static>(c: &mut Criterion, label: &str, task: T, parallel: bool) {
    let mut g = c.benchmark_group(if parallel {
        "token_steps_rayon"
    } else {
        "token_steps"
    });
    g.throughput(Throughput::Elements(BATCH as u64));
    let max = task.spec().difficulty.max;
    let env = CotEnv::new(task).expect("valid task");
    let sampler = DifficultySampler::uniform((1..=max).collect()).expect("non-empty");
    let mut v = VecEnv::new(env, BATCH, sampler).expect("valid batch");
    v.set_parallel(parallel);
    v.reset(0).expect("reset");
    let mut actions = vec![0usize; BATCH];
    g.bench_function(label, |b| {
        b.iter(|| {
            for (a, e) in actions.iter_mut().zip(v.envs()) {
                *a = e.oracle_action().unwrap_or(0);
            }
            v.step(&actions).expect("oracle actions are legal");
            black_box(v.tokens());
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let cycle40 = Cycle::new(40).expect("valid");
    let cycle100 = Cycle::new(100).expect("valid");
    let cvpr100 = Cvpr::new(100).expect("valid");
    problems(c, "cycle_L40", &cycle40);
    problems(c, "cycle_L100", &cycle100);
    problems(c, "cvpr_L100", &cvpr100);
    token_steps(c, "cycle_L40", cycle40, false);
    token_steps(c, "cycle_L100", cycle100.clone(), false);
    token_steps(c, "cvpr_L100", cvpr100, false);
    token_steps(c, "cycle_L100", cycle100, true);
}

criterion_group! {
    name = envs_benches;
    config = Criterion::default().sample_size(20);
    targets = benches
}
criterion_main!(envs_benches);
