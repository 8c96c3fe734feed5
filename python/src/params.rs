//! Python values to env parameters and difficulty samplers, specs to Python dicts, and Rust
//! errors to Python exceptions.

use envs::registry::{self, AnyEnv, ParamValue};
use envs::{Difficulty, DifficultySampler, EnvError, EnvParams, EnvSpec};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyList, PyString};
use std::sync::{Mutex, MutexGuard, TryLockError};

/// An [`EnvError`] as a Python exception: calls out of order (`step` before `reset`, after the
/// end) are `RuntimeError`s, everything else (parameters, actions, difficulties) `ValueError`s.
pub fn env_err(e: EnvError) -> PyErr {
    match e {
        EnvError::NotReset | EnvError::EpisodeOver => PyRuntimeError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// A `ValueError` in the envs crate's wording: "invalid parameter `name` = value: allowed".
pub fn invalid(
    name: &str,
    value: impl std::fmt::Display,
    allowed: impl std::fmt::Display,
) -> PyErr {
    PyValueError::new_err(format!("invalid parameter `{name}` = {value}: {allowed}"))
}

/// Reads keyword arguments into [`EnvParams`]. `None` values are left out (the parameter
/// takes its default); bools, integers, reals and strings map to [`ParamValue`]s; anything
/// else is a `ValueError` naming the parameter.
pub fn to_params(params: Option<&Bound<'_, PyDict>>) -> PyResult<EnvParams> {
    let mut out = EnvParams::new();
    let Some(params) = params else {
        return Ok(out);
    };
    for (key, value) in params.iter() {
        let name: String = key.extract().map_err(|_| {
            PyValueError::new_err(format!("parameter names must be strings, got {key}"))
        })?;
        if value.is_none() {
            continue;
        }
        let v = if value.is_instance_of::<PyBool>() {
            ParamValue::Bool(value.extract()?)
        } else if value.is_instance_of::<PyString>() {
            ParamValue::Str(value.extract()?)
        } else if value.is_instance_of::<PyFloat>() {
            ParamValue::Float(value.extract()?)
        } else if let Ok(i) = value.extract::<i64>() {
            ParamValue::Int(i)
        } else if let Ok(b) = value.extract::<bool>() {
            // numpy.bool_ and other bool-likes.
            ParamValue::Bool(b)
        } else if let Ok(x) = value.extract::<f64>() {
            ParamValue::Float(x)
        } else {
            return Err(invalid(
                &name,
                value.repr().map(|r| r.to_string()).unwrap_or_default(),
                "a bool, an integer, a number or a string",
            ));
        };
        out = out.with(&name, v);
    }
    Ok(out)
}

/// Builds the env `name` with the keyword arguments `params` (`envs::registry::make`).
pub fn make_env(name: &str, params: Option<&Bound<'_, PyDict>>) -> PyResult<AnyEnv> {
    registry::make(name, &to_params(params)?).map_err(env_err)
}

/// The difficulty sampler for `levels` (every level of the env's range when `None`), checked
/// against the range; errors name the `difficulty` parameter. A single level draws nothing
/// from the RNG, so `reset(seed=s)` at one level is exactly the Rust `env.reset(rng(s), d)`.
pub fn sampler(spec: &EnvSpec, levels: Option<Vec<i64>>) -> PyResult<DifficultySampler> {
    let range = spec.difficulty;
    let levels: Vec<Difficulty> = match levels {
        None => (range.min..=range.max).collect(),
        Some(levels) => {
            if levels.is_empty() {
                return Err(invalid("difficulty", "[]", "at least one difficulty level"));
            }
            levels
                .iter()
                .map(|&d| {
                    Difficulty::try_from(d)
                        .ok()
                        .filter(|d| range.contains(*d))
                        .ok_or_else(|| {
                            invalid(
                                "difficulty",
                                d,
                                format!(
                                    "every level in {}..={} (the range of {})",
                                    range.min, range.max, spec.name
                                ),
                            )
                        })
                })
                .collect::<PyResult<_>>()?
        }
    };
    match levels.as_slice() {
        [d] => Ok(DifficultySampler::Fixed(*d)),
        _ => DifficultySampler::uniform(levels).map_err(env_err),
    }
}

/// The env's static description as a dict: `name`, `tokens`, `features`, `token_fields`
/// (a list of `(name, offset, len, vocab)`), `feature_fields` (`(name, offset, len)`),
/// `num_actions`, `max_episode_steps`, `difficulty` (`(min, max)`) and `reward_range`.
pub fn spec_dict<'py>(py: Python<'py>, spec: &EnvSpec) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &spec.name)?;
    d.set_item("tokens", spec.obs.tokens)?;
    d.set_item("features", spec.obs.features)?;
    let tokens = PyList::empty(py);
    for f in &spec.obs.token_fields {
        tokens.append((&f.name, f.offset, f.len, f.vocab))?;
    }
    d.set_item("token_fields", tokens)?;
    let features = PyList::empty(py);
    for f in &spec.obs.feature_fields {
        features.append((&f.name, f.offset, f.len))?;
    }
    d.set_item("feature_fields", features)?;
    d.set_item("num_actions", spec.num_actions)?;
    d.set_item("max_episode_steps", spec.max_episode_steps)?;
    d.set_item("difficulty", (spec.difficulty.min, spec.difficulty.max))?;
    d.set_item("reward_range", spec.reward_range)?;
    Ok(d)
}

/// `env_spec(name, **params) -> dict`: the spec of the env `name` built with `params`
/// (see [`spec_dict`] for the keys); bad names and parameters raise `ValueError`.
#[pyfunction]
#[pyo3(signature = (name, **params))]
pub fn env_spec<'py>(
    py: Python<'py>,
    name: &str,
    params: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let env = make_env(name, params)?;
    spec_dict(py, envs::Env::spec(&env))
}

/// Checks an action from Python: a non-negative integer (the env checks its range and mask).
pub fn action_index(action: i64) -> PyResult<usize> {
    usize::try_from(action).map_err(|_| {
        PyValueError::new_err(format!("illegal action {action}: actions are non-negative"))
    })
}

/// Locks the state of a Python object. The envs of the registry may hold user envs that are
/// `Send` but not `Sync`, so every object keeps its state behind a mutex. Calls never wait on
/// it: a second call while one runs (from the evaluator of a running search, or from another
/// thread) is a `RuntimeError`.
pub fn lock<'a, T>(m: &'a Mutex<T>, what: &str) -> PyResult<MutexGuard<'a, T>> {
    m.try_lock().map_err(|e| match e {
        TryLockError::WouldBlock => PyRuntimeError::new_err(format!(
            "this {what} is in use by another call (re-entrant or concurrent use is not supported)"
        )),
        TryLockError::Poisoned(_) => {
            PyRuntimeError::new_err(format!("this {what} is unusable after an internal error"))
        }
    })
}
