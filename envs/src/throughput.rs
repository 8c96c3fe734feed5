//! Quick throughput figures: problems generated per second and [`VecEnv`] token-steps per
//! second, on the calling thread. Shared by `factorexe bench envs` and the `bench_rates`
//! example behind `scripts/bench/envs_vs_jax.sh` (the Criterion bench `envs` times the same
//! loops more carefully).
//!
//! Rates are given per second of wall time and per second of the measuring thread's CPU
//! time: on a shared machine the second is the steadier figure to compare.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::cot::CotEnv;
use crate::difficulty::DifficultySampler;
use crate::env::{Env, EnvRng};
use crate::error::EnvError;
use crate::task::{Problem, Task};
use crate::vec_env::VecEnv;

/// CPU time the calling thread has run, in seconds (Linux `/proc/thread-self/schedstat`);
/// `None` where that is unavailable.
pub fn thread_cpu_secs() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns * 1e-9)
}

/// A rate: units per second of wall time and per second of the measuring thread's CPU time
/// (the wall-time rate where CPU time is unavailable).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Units per second of wall time.
    pub per_s: f64,
    /// Units per second of this thread's CPU time.
    pub per_cpu_s: f64,
}

impl Rate {
    /// The rate of `k` units per call when `self` counts calls.
    pub fn times(self, k: f64) -> Rate {
        Rate {
            per_s: self.per_s * k,
            per_cpu_s: self.per_cpu_s * k,
        }
    }
}

/// Calls `f` once to warm up, then again until `seconds` of wall time have passed (at least
/// once); returns calls per second. The first error of `f` stops the measurement.
pub fn measure<E>(seconds: f64, mut f: impl FnMut() -> Result<(), E>) -> Result<Rate, E> {
    f()?;
    let limit = Duration::from_secs_f64(seconds.max(0.0));
    let cpu0 = thread_cpu_secs();
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        f()?;
        n += 1;
        if start.elapsed() >= limit {
            break;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = match (cpu0, thread_cpu_secs()) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => wall,
    };
    Ok(Rate {
        per_s: n as f64 / wall,
        per_cpu_s: n as f64 / cpu,
    })
}

/// Problems per second that `task` generates into a batch of `batch` reused buffers, each at
/// a difficulty drawn uniformly from the task's range (seed 0).
pub fn problem_rate<T: Task>(task: &T, batch: usize, seconds: f64) -> Result<Rate, EnvError> {
    check_batch(batch)?;
    let range = task.spec().difficulty;
    let mut rng = EnvRng::seed_from_u64(0);
    let mut out: Vec<Problem> = vec![Problem::default(); batch];
    let rate = measure(seconds, || {
        for p in out.iter_mut() {
            let d = rng.random_range(range.min..=range.max);
            task.sample_into(d, &mut rng, p)?;
        }
        black_box(&out);
        Ok::<(), EnvError>(())
    })?;
    Ok(rate.times(batch as f64))
}

/// Token-steps per second of a [`VecEnv`] of `batch` [`CotEnv`]s over `task` playing the
/// oracle's actions, difficulties uniform over the task's range, with automatic resets; on
/// rayon's pool when `parallel` (then the CPU-time rate counts only the calling thread and
/// means little).
pub fn token_step_rate<T: Task>(
    task: T,
    batch: usize,
    seconds: f64,
    parallel: bool,
) -> Result<Rate, EnvError> {
    check_batch(batch)?;
    let range = task.spec().difficulty;
    let env = CotEnv::new(task)?;
    let sampler = DifficultySampler::uniform((range.min..=range.max).collect())?;
    let mut v = VecEnv::new(env, batch, sampler)?;
    v.set_parallel(parallel);
    v.reset(0)?;
    let mut actions = vec![0usize; batch];
    let rate = measure(seconds, || {
        for (a, e) in actions.iter_mut().zip(v.envs()) {
            // A finished env is reset by this step whatever the action.
            *a = e.oracle_action().unwrap_or(0);
        }
        v.step(&actions)?;
        black_box(v.tokens());
        Ok::<(), EnvError>(())
    })?;
    Ok(rate.times(batch as f64))
}

fn check_batch(batch: usize) -> Result<(), EnvError> {
    if batch == 0 {
        return Err(EnvError::invalid("batch", 0, ">= 1"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::{Cvpr, Cycle};

    #[test]
    fn rates_are_positive_and_finite() {
        let p = problem_rate(&Cycle::new(6).unwrap(), 3, 0.0).unwrap();
        let s = token_step_rate(Cvpr::new(6).unwrap(), 3, 0.0, false).unwrap();
        for r in [p, s] {
            assert!(r.per_s.is_finite() && r.per_s > 0.0, "{r:?}");
            assert!(r.per_cpu_s.is_finite() && r.per_cpu_s > 0.0, "{r:?}");
        }
    }

    #[test]
    fn an_empty_batch_is_an_error() {
        assert!(problem_rate(&Cycle::new(6).unwrap(), 0, 0.0).is_err());
        assert!(token_step_rate(Cycle::new(6).unwrap(), 0, 0.0, false).is_err());
    }

    #[test]
    fn measure_stops_at_the_first_error() {
        let mut calls = 0;
        let r = measure(10.0, || {
            calls += 1;
            if calls == 3 {
                Err("stop")
            } else {
                Ok(())
            }
        });
        assert_eq!(r, Err("stop"));
        assert_eq!(calls, 3);
    }
}
