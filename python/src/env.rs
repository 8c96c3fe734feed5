//! [`RawEnv`]: one env of the registry, its RNG and its difficulty sampler.

use std::sync::Mutex;

use envs::registry::AnyEnv;
use envs::{DifficultySampler, Env, EnvRng, ObsMut};
use numpy::{PyArray1, PyArrayMethods};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rand::SeedableRng;

use crate::params::{action_index, env_err, lock, make_env, sampler, spec_dict};

/// One env built by name, with its own RNG: `reset(seed)` seeds it exactly as the Rust side's
/// `EnvRng::seed_from_u64(seed)` (so `factorexe envs show NAME --seed S --hops D` prints the
/// same problem as `reset(seed=S, difficulty=D)`); a reset without a seed goes on drawing from
/// the same stream. A reset draws the difficulty from the sampler first (nothing when there
/// is one level), then the problem, as each env of a `VecEnv` does.
#[pyclass(module = "factorexe._native", frozen)]
pub struct RawEnv {
    state: Mutex<State>,
}

/// What a [`RawEnv`] holds.
#[derive(Clone)]
pub(crate) struct State {
    pub(crate) env: AnyEnv,
    rng: EnvRng,
    sampler: DifficultySampler,
    pub(crate) started: bool,
}

#[pymethods]
impl RawEnv {
    /// `RawEnv(name, difficulty=None, **params)`: the env `name` built with `params`; resets
    /// draw their difficulty uniformly from the levels `difficulty` (default: the env's whole
    /// range).
    #[new]
    #[pyo3(signature = (name, difficulty=None, **params))]
    fn new(
        name: &str,
        difficulty: Option<Vec<i64>>,
        params: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let env = make_env(name, params)?;
        let sampler = sampler(env.spec(), difficulty)?;
        Ok(RawEnv::from_state(State {
            env,
            rng: EnvRng::seed_from_u64(0),
            sampler,
            started: false,
        }))
    }

    /// The spec as a dict (see `env_spec`).
    fn spec<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        spec_dict(py, self.lock()?.env.spec())
    }

    /// Starts an episode: reseeds the RNG when `seed` is given, then resets at a level drawn
    /// from `difficulty` (a list of levels; one level draws nothing) or from the sampler.
    #[pyo3(signature = (seed=None, difficulty=None))]
    fn reset(&self, seed: Option<u64>, difficulty: Option<Vec<i64>>) -> PyResult<()> {
        let mut guard = self.lock()?;
        let st = &mut *guard;
        // Checked before anything changes, so a bad difficulty leaves the env as it was.
        let asked = match difficulty {
            Some(levels) => Some(sampler(st.env.spec(), Some(levels))?),
            None => None,
        };
        if let Some(seed) = seed {
            st.rng = EnvRng::seed_from_u64(seed);
        }
        let d = asked.as_ref().unwrap_or(&st.sampler).sample(&mut st.rng);
        st.env.reset(&mut st.rng, d).map_err(env_err)?;
        st.started = true;
        Ok(())
    }

    /// Applies `action`; returns `(reward, terminated, truncated)`.
    fn step(&self, action: i64) -> PyResult<(f32, bool, bool)> {
        let a = action_index(action)?;
        let s = self.lock()?.env.step(a).map_err(env_err)?;
        Ok((s.reward, s.terminated, s.truncated))
    }

    /// The current observation in new arrays: `(tokens int64, features float32, mask bool)`.
    #[allow(clippy::type_complexity)]
    fn observe<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(
        Bound<'py, PyArray1<i64>>,
        Bound<'py, PyArray1<f32>>,
        Bound<'py, PyArray1<bool>>,
    )> {
        let st = self.lock()?;
        check_started(&st)?;
        let spec = st.env.spec();
        let tokens = PyArray1::<i64>::zeros(py, spec.obs.tokens, false);
        let features = PyArray1::<f32>::zeros(py, spec.obs.features, false);
        let mask = PyArray1::<bool>::zeros(py, spec.num_actions, false);
        {
            let mut t = tokens.readwrite();
            let mut f = features.readwrite();
            let mut m = mask.readwrite();
            st.env.observe(ObsMut {
                tokens: t.as_slice_mut()?,
                features: f.as_slice_mut()?,
                action_mask: m.as_slice_mut()?,
            });
        }
        Ok((tokens, features, mask))
    }

    /// `(difficulty, steps, solved)` of the current episode; `solved` is `None` while it runs
    /// (or for envs without a notion of correctness).
    fn info(&self) -> PyResult<(u32, usize, Option<bool>)> {
        let i = self.lock()?.env.info();
        Ok((i.difficulty, i.steps, i.solved))
    }

    /// True once the episode has terminated or been truncated.
    fn is_done(&self) -> PyResult<bool> {
        Ok(self.lock()?.env.is_done())
    }

    /// The oracle's action (the known solution), or `None` off its path or when there is none.
    fn oracle_action(&self) -> PyResult<Option<usize>> {
        let st = self.lock()?;
        Ok(if st.started {
            st.env.oracle_action()
        } else {
            None
        })
    }

    /// A readable picture of the current state.
    fn render(&self) -> PyResult<String> {
        let st = self.lock()?;
        check_started(&st)?;
        Ok(st.env.render())
    }

    /// A copy of this env in its current state (a search root, a snapshot), with a copy of
    /// its RNG.
    fn copy(&self) -> PyResult<Self> {
        Ok(RawEnv::from_state(self.lock()?.clone()))
    }
}

impl RawEnv {
    /// A `RawEnv` holding `state`.
    fn from_state(state: State) -> Self {
        RawEnv {
            state: Mutex::new(state),
        }
    }

    /// A started `RawEnv` around `env` (a state taken from a `VecEnv`).
    pub(crate) fn started_from(env: AnyEnv, sampler: DifficultySampler) -> Self {
        RawEnv::from_state(State {
            env,
            rng: EnvRng::seed_from_u64(0),
            sampler,
            started: true,
        })
    }

    /// The locked state.
    pub(crate) fn lock(&self) -> PyResult<std::sync::MutexGuard<'_, State>> {
        lock(&self.state, "env")
    }
}

fn check_started(st: &State) -> PyResult<()> {
    if st.started {
        Ok(())
    } else {
        Err(PyRuntimeError::new_err(
            "the env has not been reset yet; call reset first",
        ))
    }
}
