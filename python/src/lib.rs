//! `factorexe._native`: the Rust half of the `factorexe` Python package.
//!
//! It exposes the token-MDP envs of the `envs` crate and the tree searchers of the `search`
//! crate with as little Python-side work as possible:
//!
//! - [`RawEnv`](env::RawEnv): one env built by name (`envs::registry::make`), observed into fresh numpy
//!   arrays (the Gymnasium `Env` in `factorexe/envs.py` wraps it);
//! - [`RawVecEnv`](vec_env::RawVecEnv): a Rust [`envs::VecEnv`] whose batched buffers are shared with numpy
//!   without copies (the Gymnasium `VectorEnv` in `factorexe/vector.py` wraps it);
//! - [`RawSearcher`](search::RawSearcher): MCTS or Gumbel MuZero over a Python evaluator callback;
//! - [`bench_vec_env`](bench::bench_vec_env) and [`bench_search`](bench::bench_search): pure-Rust timing loops, the baselines of
//!   `scripts/bench/python_vec_env.py`.
//!
//! Errors never cross into Python as panics: every Rust error becomes a `ValueError` (bad
//! parameters, actions, difficulties, search settings) or a `RuntimeError` (calls out of
//! order), with the Rust message, which names the parameter and its allowed range.

#![warn(missing_docs)]

pub mod bench;
pub mod env;
pub mod params;
pub mod search;
pub mod vec_env;

use pyo3::prelude::*;

/// The extension module `factorexe._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<env::RawEnv>()?;
    m.add_class::<vec_env::RawVecEnv>()?;
    m.add_class::<search::RawSearcher>()?;
    m.add_function(wrap_pyfunction!(params::env_spec, m)?)?;
    m.add_function(wrap_pyfunction!(bench::bench_vec_env, m)?)?;
    m.add_function(wrap_pyfunction!(bench::bench_search, m)?)?;
    Ok(())
}
