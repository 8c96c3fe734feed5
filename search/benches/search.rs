//! Criterion bench `search`: simulations per second of MCTS and Gumbel MuZero over
//! [`BenchEnv`] with the tiny plain-Rust MLP evaluator (32 → 64 → 64 → 40 + 1), 64 simulations,
//! batches of 64 and 1024 roots. `scripts/bench/search_vs_mctx` compares the same setting with
//! DeepMind's mctx.
//!
//! `cargo bench -p factorexe-search --bench search`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use envs::EnvRng;
use rand::SeedableRng;
use search::testing::{BenchEnv, MlpEvaluator, BENCH_FEATURES};
use search::{GumbelConfig, GumbelMuZero, Mcts, MctsConfig, Searcher};
use std::hint::black_box;

const ACTIONS: usize = 40;
const HIDDEN: usize = 64;
const SIMS: usize = 64;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("search");
    group.sample_size(10);
    for batch in [64usize, 1024] {
        let roots: Vec<BenchEnv> = (0..batch as u32)
            .map(|i| BenchEnv::new(ACTIONS, 10_000, i))
            .collect();
        group.throughput(Throughput::Elements((batch * SIMS) as u64));
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
        for (name, mut searcher) in searchers {
            let mut eval = MlpEvaluator::new(BENCH_FEATURES, HIDDEN, ACTIONS, 0);
            let mut rng = EnvRng::seed_from_u64(0);
            group.bench_function(BenchmarkId::new(name, batch), |b| {
                b.iter(|| {
                    let out = searcher
                        .search(&roots, &mut eval, SIMS + 1, &mut rng)
                        .expect("bench search");
                    black_box(out)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
