//! Simulations per second of [`Mcts`] and [`GumbelMuZero`] (default configs) with the tiny
//! plain-Rust [`MlpEvaluator`] on [`BenchEnv`], on the calling thread. Shared by
//! `factorexe bench search` and the `search_bench` example, the Rust half of
//! `scripts/bench/search_vs_mctx`.
//!
//! A simulation rate counts every root's own simulations, as mctx's does:
//! `sims_per_s = batch * sims / seconds per search`.

use std::time::Instant;

use envs::throughput::thread_cpu_secs;
use envs::EnvRng;
use rand::SeedableRng;

use crate::error::SearchError;
use crate::gumbel::{GumbelConfig, GumbelMuZero};
use crate::mcts::{Mcts, MctsConfig};
use crate::output::Searcher;
use crate::testing::{BenchEnv, MlpEvaluator, BENCH_FEATURES};

/// What to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchBench {
    /// Roots searched together (one evaluator call per search step covers them all).
    pub batch: usize,
    /// Simulations per root; the budget is `sims + 1` evaluator calls (the root's too).
    pub sims: usize,
    /// Actions of the [`BenchEnv`], all legal.
    pub actions: usize,
    /// Hidden width of the [`MlpEvaluator`].
    pub hidden: usize,
    /// Time searches for at least this many seconds (and at least 3 searches).
    pub seconds: f64,
    /// Time exactly this many searches instead (e.g. for cycle counts under `perf stat`).
    pub reps: Option<u32>,
}

impl Default for SearchBench {
    /// The mctx comparison's setting: 64 roots, 64 simulations, 40 actions, hidden 64, 2 s.
    fn default() -> Self {
        SearchBench {
            batch: 64,
            sims: 64,
            actions: 40,
            hidden: 64,
            seconds: 2.0,
            reps: None,
        }
    }
}

/// The timing of one searcher.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchTiming {
    /// `"mcts"` or `"gumbel"`.
    pub algo: &'static str,
    /// Roots per search.
    pub batch: usize,
    /// Simulations per root.
    pub sims: usize,
    /// Wall seconds per search.
    pub wall_per_search: f64,
    /// CPU seconds of the searching thread per search, where the platform reports it (and
    /// the run was long enough to register).
    pub cpu_per_search: Option<f64>,
}

impl SearchTiming {
    /// Simulations per second of wall time, all roots counted.
    pub fn sims_per_s(&self) -> f64 {
        (self.batch * self.sims) as f64 / self.wall_per_search
    }

    /// Simulations per CPU-second of the searching thread.
    pub fn sims_per_cpu_s(&self) -> Option<f64> {
        self.cpu_per_search
            .map(|c| (self.batch * self.sims) as f64 / c)
    }
}

/// Times MCTS, then Gumbel MuZero (default configs) on `config.batch` [`BenchEnv`] roots.
pub fn run(config: &SearchBench) -> Result<Vec<SearchTiming>, SearchError> {
    if config.batch == 0 {
        return Err(SearchError::NoRoots);
    }
    let mut eval = MlpEvaluator::new(BENCH_FEATURES, config.hidden, config.actions, 0);
    let roots: Vec<BenchEnv> = (0..config.batch as u32)
        .map(|i| BenchEnv::new(config.actions, 10_000, i))
        .collect();
    let searchers: [(&'static str, Box<dyn Searcher<BenchEnv>>); 2] = [
        ("mcts", Box::new(Mcts::new(MctsConfig::default())?)),
        (
            "gumbel",
            Box::new(GumbelMuZero::new(GumbelConfig::default())?),
        ),
    ];
    let mut out = Vec::with_capacity(searchers.len());
    for (algo, mut searcher) in searchers {
        let (wall, cpu) = time_search(searcher.as_mut(), &roots, &mut eval, config)?;
        out.push(SearchTiming {
            algo,
            batch: config.batch,
            sims: config.sims,
            wall_per_search: wall,
            cpu_per_search: cpu,
        });
    }
    Ok(out)
}

/// Wall and CPU seconds per search, after one warm-up search.
fn time_search(
    searcher: &mut dyn Searcher<BenchEnv>,
    roots: &[BenchEnv],
    eval: &mut MlpEvaluator,
    config: &SearchBench,
) -> Result<(f64, Option<f64>), SearchError> {
    let budget = config.sims + 1;
    let mut rng = EnvRng::seed_from_u64(0);
    searcher.search(roots, eval, budget, &mut rng)?;
    let cpu_start = thread_cpu_secs();
    let start = Instant::now();
    let mut reps = 0u32;
    loop {
        let more = match config.reps {
            Some(n) => reps < n.max(1),
            None => reps < 3 || start.elapsed().as_secs_f64() < config.seconds,
        };
        if !more {
            break;
        }
        let out = searcher.search(roots, eval, budget, &mut rng)?;
        std::hint::black_box(&out);
        reps += 1;
    }
    let wall = start.elapsed().as_secs_f64() / f64::from(reps);
    // The scheduler updates a thread's CPU time at its own ticks: a run too short to see one
    // reports none rather than an infinite rate.
    let cpu = cpu_start
        .zip(thread_cpu_secs())
        .map(|(a, b)| (b - a) / f64::from(reps))
        .filter(|&c| c > 0.0);
    Ok((wall, cpu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_both_searchers() {
        let config = SearchBench {
            batch: 2,
            sims: 3,
            actions: 4,
            hidden: 4,
            seconds: 0.0,
            reps: Some(1),
        };
        let t = run(&config).unwrap();
        let algos: Vec<_> = t.iter().map(|t| t.algo).collect();
        assert_eq!(algos, ["mcts", "gumbel"]);
        for t in &t {
            assert!(t.sims_per_s().is_finite() && t.sims_per_s() > 0.0, "{t:?}");
            assert_eq!((t.batch, t.sims), (2, 3));
        }
    }

    #[test]
    fn no_roots_is_an_error() {
        let config = SearchBench {
            batch: 0,
            ..SearchBench::default()
        };
        assert!(matches!(run(&config), Err(SearchError::NoRoots)));
    }
}
