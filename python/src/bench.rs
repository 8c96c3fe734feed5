//! Pure-Rust timing loops, the baselines that `scripts/bench/python_vec_env.py` compares the
//! Python side with. They run with the GIL released.

use envs::registry::AnyEnv;
use envs::throughput::measure;
use envs::{derive_seed, Env, EnvError, EnvRng, VecEnv};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rand::{Rng, SeedableRng};
use search::{GumbelConfig, GumbelMuZero, Mcts, MctsConfig, Searcher, UniformEvaluator};

use crate::params::{env_err, invalid, make_env, sampler};

/// Uniform draws tried before falling back to the first legal action; the numpy policy of the
/// benchmark script draws the same way.
pub const RANDOM_TRIES: usize = 2;

/// `bench_vec_env(name, num_envs, seconds=1.0, policy="random", seed=0, parallel=False,
/// difficulty=None, **params) -> dict`: token-steps per second of a Rust `VecEnv` stepped in
/// a Rust loop, no Python involved.
///
/// `policy="random"` draws each action uniformly up to `RANDOM_TRIES` times until it is legal,
/// else takes the first legal action (the benchmark's numpy policy does the same);
/// `policy="oracle"` plays the oracle's actions (as `factorexe bench envs`). Returns
/// `token_steps_per_s` (wall time) and `token_steps_per_cpu_s` (this thread's CPU time).
#[pyfunction]
#[pyo3(signature = (name, num_envs, seconds=1.0, policy="random", seed=0, parallel=false, difficulty=None, **params))]
#[allow(clippy::too_many_arguments)]
pub fn bench_vec_env<'py>(
    py: Python<'py>,
    name: &str,
    num_envs: usize,
    seconds: f64,
    policy: &str,
    seed: u64,
    parallel: bool,
    difficulty: Option<Vec<i64>>,
    params: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let oracle = match policy {
        "random" => false,
        "oracle" => true,
        other => return Err(invalid("policy", other, "random or oracle")),
    };
    if num_envs == 0 {
        return Err(invalid("num_envs", 0, ">= 1"));
    }
    let env = make_env(name, params)?;
    let s = sampler(env.spec(), difficulty)?;
    let mut vec = VecEnv::new(env, num_envs, s).map_err(env_err)?;
    vec.set_parallel(parallel);
    let rate = py
        .detach(move || -> Result<_, EnvError> {
            vec.reset(seed)?;
            let mut rng = EnvRng::seed_from_u64(derive_seed(seed, usize::MAX));
            let mut actions = vec![0usize; num_envs];
            let na = vec.spec().num_actions;
            measure(seconds, || {
                if oracle {
                    for (a, e) in actions.iter_mut().zip(vec.envs()) {
                        *a = e.oracle_action().unwrap_or(0);
                    }
                } else {
                    let mask = vec.action_mask();
                    for (i, a) in actions.iter_mut().enumerate() {
                        let row = mask.row(i);
                        let mut pick = None;
                        for _ in 0..RANDOM_TRIES {
                            let x = rng.random_range(0..na);
                            if row[x] {
                                pick = Some(x);
                                break;
                            }
                        }
                        *a = pick.or_else(|| row.iter().position(|&l| l)).unwrap_or(0);
                    }
                }
                vec.step(&actions)?;
                std::hint::black_box(vec.tokens());
                Ok(())
            })
        })
        .map_err(env_err)?
        .times(num_envs as f64);
    let d = PyDict::new(py);
    d.set_item("token_steps_per_s", rate.per_s)?;
    d.set_item("token_steps_per_cpu_s", rate.per_cpu_s)?;
    Ok(d)
}

/// `bench_search(name, batch, sims, algo="gumbel", seconds=1.0, seed=0, difficulty=None,
/// **params) -> dict`: simulations per second (all roots counted, as mctx counts) of a search
/// from `batch` roots of the env `name` with the Rust uniform evaluator (zero logits, value
/// 0): the searcher's own cost, with no Python callback. Returns `sims_per_s` and
/// `sims_per_cpu_s`.
#[pyfunction]
#[pyo3(signature = (name, batch, sims, algo="gumbel", seconds=1.0, seed=0, difficulty=None, **params))]
#[allow(clippy::too_many_arguments)]
pub fn bench_search<'py>(
    py: Python<'py>,
    name: &str,
    batch: usize,
    sims: usize,
    algo: &str,
    seconds: f64,
    seed: u64,
    difficulty: Option<Vec<i64>>,
    params: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    if batch == 0 {
        return Err(invalid("batch", 0, ">= 1"));
    }
    let mut searcher: Box<dyn Searcher<AnyEnv> + Send> = match algo {
        "mcts" => Box::new(Mcts::new(MctsConfig::default()).map_err(to_value_err)?),
        "gumbel" => Box::new(GumbelMuZero::new(GumbelConfig::default()).map_err(to_value_err)?),
        other => return Err(invalid("algo", other, "mcts or gumbel")),
    };
    let env = make_env(name, params)?;
    let s = sampler(env.spec(), difficulty)?;
    let mut roots = Vec::with_capacity(batch);
    for i in 0..batch {
        let mut rng = EnvRng::seed_from_u64(derive_seed(seed, i));
        let mut e = env.clone();
        let d = s.sample(&mut rng);
        e.reset(&mut rng, d).map_err(env_err)?;
        roots.push(e);
    }
    let rate = py
        .detach(move || {
            let mut rng = EnvRng::seed_from_u64(seed);
            let mut eval = UniformEvaluator::new(0.0);
            measure(seconds, || {
                let out = searcher.search(&roots, &mut eval, sims + 1, &mut rng)?;
                std::hint::black_box(out);
                Ok::<(), search::SearchError>(())
            })
        })
        .map_err(to_value_err)?
        .times((batch * sims) as f64);
    let d = PyDict::new(py);
    d.set_item("sims_per_s", rate.per_s)?;
    d.set_item("sims_per_cpu_s", rate.per_cpu_s)?;
    Ok(d)
}

fn to_value_err(e: search::SearchError) -> PyErr {
    PyValueError::new_err(e.to_string())
}
