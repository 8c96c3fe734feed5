//! [`RawVecEnv`]: a Rust [`VecEnv`] whose batched buffers numpy reads in place.

use std::sync::{Mutex, MutexGuard};

use envs::registry::AnyEnv;
use envs::{DifficultySampler, Env, EnvRng, VecEnv};
use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rand::SeedableRng;

use crate::env::RawEnv;
use crate::params::{env_err, invalid, lock, make_env, sampler, spec_dict};

/// `num_envs` copies of an env stepped in lockstep by one Rust call (an [`envs::VecEnv`]:
/// Gymnasium's next-step autoreset, env `i` seeded with `derive_seed(seed, i)`).
///
/// `buffers()` returns numpy arrays that *are* the `VecEnv`'s buffers (no
/// copy): every `step` and `reset` rewrites them in place. They are allocated once, when the
/// `VecEnv` is built, and never reallocated, and each array keeps this object alive, so the
/// views stay valid as long as they exist.
#[pyclass(module = "factorexe._native", frozen)]
pub struct RawVecEnv {
    state: Mutex<State>,
}

/// What a [`RawVecEnv`] holds.
struct State {
    vec: VecEnv<AnyEnv>,
    default_sampler: DifficultySampler,
    actions: Vec<usize>,
    /// A reset has succeeded: the envs hold episodes.
    started: bool,
}

/// The buffers of a [`RawVecEnv`]: tokens, features, action mask, rewards, terminated,
/// truncated, autoreset.
type Buffers<'py> = (
    Bound<'py, PyArray2<i64>>,
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray2<bool>>,
    Bound<'py, PyArray1<f32>>,
    Bound<'py, PyArray1<bool>>,
    Bound<'py, PyArray1<bool>>,
    Bound<'py, PyArray1<bool>>,
);

/// What [`RawVecEnv::final_infos`] returns: difficulty, steps, solved, ended.
type FinalInfos<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<bool>>,
    Bound<'py, PyArray1<bool>>,
);

#[pymethods]
impl RawVecEnv {
    /// `RawVecEnv(name, num_envs, difficulty=None, parallel=False, **params)`: `num_envs`
    /// copies of the env `name` built with `params`; resets draw their difficulty uniformly
    /// from the levels `difficulty` (default: the env's whole range); `parallel` steps them on
    /// rayon's thread pool (same results).
    #[new]
    #[pyo3(signature = (name, num_envs, difficulty=None, parallel=false, **params))]
    fn new(
        name: &str,
        num_envs: i64,
        difficulty: Option<Vec<i64>>,
        parallel: bool,
        params: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let n = usize::try_from(num_envs)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| invalid("num_envs", num_envs, ">= 1"))?;
        let env = make_env(name, params)?;
        let default_sampler = sampler(env.spec(), difficulty)?;
        let mut vec = VecEnv::new(env, n, default_sampler.clone()).map_err(env_err)?;
        vec.set_parallel(parallel);
        Ok(RawVecEnv {
            state: Mutex::new(State {
                vec,
                default_sampler,
                actions: Vec::with_capacity(n),
                started: false,
            }),
        })
    }

    /// The spec shared by all the envs, as a dict (see `env_spec`).
    fn spec<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        spec_dict(py, self.lock()?.vec.spec())
    }

    /// The number of envs `B`.
    #[getter]
    fn num_envs(&self) -> PyResult<usize> {
        Ok(self.lock()?.vec.num_envs())
    }

    /// Whether steps run on rayon's thread pool.
    #[getter]
    fn get_parallel(&self) -> PyResult<bool> {
        Ok(self.lock()?.vec.parallel())
    }

    /// Steps on rayon's thread pool when true (results are identical either way).
    #[setter]
    fn set_parallel(&self, on: bool) -> PyResult<()> {
        self.lock()?.vec.set_parallel(on);
        Ok(())
    }

    /// The batched buffers as read-only numpy arrays that share the `VecEnv`'s memory:
    /// `tokens (B, T)` int64, `features (B, F)` float32, `action_mask (B, A)` bool,
    /// `rewards (B,)` float32, `terminated`, `truncated`, `autoreset` `(B,)` bool. Rewritten by
    /// every step and reset.
    fn buffers<'py>(slf: Bound<'py, Self>) -> PyResult<Buffers<'py>> {
        let this = slf.get();
        let st = this.lock()?;
        let v = &st.vec;
        let owner = || slf.clone().into_any();
        // SAFETY: the arrays are fields of the `VecEnv` owned by `slf`, allocated once in
        // `VecEnv::new` and never reallocated (steps and resets write into them in place, and
        // nothing replaces the `VecEnv`); each numpy array holds a reference to `slf`, so the
        // memory outlives every view. The views are made read-only before Python sees them
        // (Python cannot write a bool other than 0 or 1 into Rust's memory), Python reads them
        // only while it holds the GIL, and Rust writes them only from methods that hold it.
        let b = unsafe {
            (
                PyArray2::borrow_from_array(v.tokens(), owner()),
                PyArray2::borrow_from_array(v.features(), owner()),
                PyArray2::borrow_from_array(v.action_mask(), owner()),
                PyArray1::borrow_from_array(v.rewards(), owner()),
                PyArray1::borrow_from_array(v.terminated(), owner()),
                PyArray1::borrow_from_array(v.truncated(), owner()),
                PyArray1::borrow_from_array(v.autoreset(), owner()),
            )
        };
        for a in [
            b.0.as_any(),
            b.1.as_any(),
            b.2.as_any(),
            b.3.as_any(),
            b.4.as_any(),
            b.5.as_any(),
            b.6.as_any(),
        ] {
            a.getattr("flags")?.setattr("writeable", false)?;
        }
        Ok(b)
    }

    /// Resets every env and rewrites the buffers. `seed`: env `i` is seeded with
    /// `derive_seed(seed, i)` (the Rust `VecEnv::reset(seed)`); `seeds`: env `i` is seeded with
    /// `seeds[i]` (then it plays exactly as a single env after `reset(seed=seeds[i])`);
    /// neither: each env goes on drawing from its own RNG. `difficulty`: the levels this reset
    /// and the autoresets after it draw from, until the next reset (default: the levels given
    /// at construction).
    #[pyo3(signature = (seed=None, seeds=None, difficulty=None))]
    fn reset(
        &self,
        seed: Option<u64>,
        seeds: Option<Vec<u64>>,
        difficulty: Option<Vec<i64>>,
    ) -> PyResult<()> {
        let mut st = self.lock()?;
        // Everything is checked before anything changes.
        let s = match difficulty {
            Some(levels) => sampler(st.vec.spec(), Some(levels))?,
            None => st.default_sampler.clone(),
        };
        let n = st.vec.num_envs();
        match (&seed, &seeds) {
            (Some(_), Some(_)) => {
                return Err(PyValueError::new_err(
                    "give either one `seed` for the batch or a list `seeds`, not both",
                ))
            }
            (None, Some(seeds)) if seeds.len() != n => {
                return Err(invalid(
                    "seed",
                    format!("a list of {} seeds", seeds.len()),
                    format!("one seed per env ({n})"),
                ))
            }
            _ => {}
        }
        let vec = &mut st.vec;
        vec.set_sampler(s.clone()).map_err(env_err)?;
        let result = match (seed, seeds) {
            (Some(seed), _) => vec.reset(seed),
            (None, Some(seeds)) => vec.reset_with(|i, env, rng| {
                *rng = EnvRng::seed_from_u64(seeds[i]);
                let d = s.sample(rng);
                env.reset(rng, d)
            }),
            (None, None) => vec.reset_with(|_, env, rng| {
                let d = s.sample(rng);
                env.reset(rng, d)
            }),
        };
        st.started = result.is_ok();
        result.map_err(env_err)
    }

    /// Steps every env with its action (an int64 array of `B`); envs that ended on the
    /// previous step are reset instead and their actions ignored. Returns how many envs ended
    /// on this step. An illegal action steps nothing and raises `ValueError` naming the env.
    fn step(&self, actions: PyReadonlyArray1<'_, i64>) -> PyResult<usize> {
        let a = actions.as_slice()?;
        let mut guard = self.lock()?;
        let st = &mut *guard;
        let n = st.vec.num_envs();
        if a.len() != n {
            return Err(invalid(
                "actions",
                format!("{} actions", a.len()),
                format!("exactly one per env ({n})"),
            ));
        }
        st.actions.clear();
        for (i, &x) in a.iter().enumerate() {
            match usize::try_from(x) {
                Ok(x) => st.actions.push(x),
                // The action of an env about to be reset is ignored, whatever it is.
                Err(_) if st.vec.done(i) => st.actions.push(0),
                Err(_) => {
                    return Err(PyValueError::new_err(format!(
                        "env {i} of the batch: illegal action {x}: actions are non-negative"
                    )))
                }
            }
        }
        st.vec.step(&st.actions).map_err(env_err)?;
        Ok((0..n).filter(|&i| st.vec.done(i)).count())
    }

    /// Facts about the episodes that ended on the last step, as `(B,)` arrays:
    /// `(difficulty int64, steps int64, solved bool, ended bool)`; rows where `ended` is false
    /// hold zeros.
    fn final_infos<'py>(&self, py: Python<'py>) -> PyResult<FinalInfos<'py>> {
        let st = self.lock()?;
        let n = st.vec.num_envs();
        let difficulty = PyArray1::<i64>::zeros(py, n, false);
        let steps = PyArray1::<i64>::zeros(py, n, false);
        let solved = PyArray1::<bool>::zeros(py, n, false);
        let ended = PyArray1::<bool>::zeros(py, n, false);
        {
            let mut d = difficulty.readwrite();
            let mut s = steps.readwrite();
            let mut ok = solved.readwrite();
            let mut e = ended.readwrite();
            let (d, s, ok, e) = (
                d.as_slice_mut()?,
                s.as_slice_mut()?,
                ok.as_slice_mut()?,
                e.as_slice_mut()?,
            );
            for i in 0..n {
                if st.vec.done(i) {
                    let info = st.vec.info(i);
                    d[i] = i64::from(info.difficulty);
                    s[i] = info.steps as i64;
                    ok[i] = info.solved == Some(true);
                    e[i] = true;
                }
            }
        }
        Ok((difficulty, steps, solved, ended))
    }

    /// The difficulty of each env's current episode, `(B,)` int64.
    fn difficulties<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let v: Vec<i64> = self
            .lock()?
            .vec
            .envs()
            .map(|e| i64::from(e.info().difficulty))
            .collect();
        Ok(PyArray1::from_vec(py, v))
    }

    /// The oracle's action in each env, `(B,)` int64, -1 where it has none (off the oracle's
    /// path, or an episode that ended).
    fn oracle_actions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let v: Vec<i64> = self
            .lock()?
            .vec
            .envs()
            .map(|e| e.oracle_action().map_or(-1, |a| a as i64))
            .collect();
        Ok(PyArray1::from_vec(py, v))
    }

    /// A readable picture of env `index`.
    fn render(&self, index: usize) -> PyResult<String> {
        let st = self.lock()?;
        check_index(&st, index)?;
        Ok(st.vec.env(index).render())
    }

    /// A copy of env `index` in its current state, as a single env.
    fn state(&self, index: usize) -> PyResult<RawEnv> {
        let st = self.lock()?;
        check_index(&st, index)?;
        Ok(RawEnv::started_from(
            st.vec.env(index).clone(),
            st.vec.sampler().clone(),
        ))
    }
}

impl RawVecEnv {
    /// Copies of the envs at `indices` (all of them when `None`), for search roots.
    pub(crate) fn states(&self, indices: Option<Vec<usize>>) -> PyResult<Vec<AnyEnv>> {
        let st = self.lock()?;
        check_started(&st)?;
        match indices {
            None => Ok(st.vec.envs().cloned().collect()),
            Some(indices) => indices
                .into_iter()
                .map(|i| {
                    check_index(&st, i)?;
                    Ok(st.vec.env(i).clone())
                })
                .collect(),
        }
    }

    fn lock(&self) -> PyResult<MutexGuard<'_, State>> {
        lock(&self.state, "vector env")
    }
}

/// Checks that env `index` exists and holds an episode.
fn check_index(st: &State, index: usize) -> PyResult<()> {
    check_started(st)?;
    let n = st.vec.num_envs();
    if index < n {
        Ok(())
    } else {
        Err(invalid("index", index, format!("0..{n}")))
    }
}

fn check_started(st: &State) -> PyResult<()> {
    if st.started {
        Ok(())
    } else {
        Err(PyRuntimeError::new_err(
            "the vector env has not been reset yet; call reset first",
        ))
    }
}
