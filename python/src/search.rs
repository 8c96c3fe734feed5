//! [`RawSearcher`]: MCTS and Gumbel MuZero from the `search` crate over a Python evaluator.

use std::sync::Mutex;

use envs::registry::AnyEnv;
use envs::{Env, EnvRng, ObsMut};
use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rand::SeedableRng;
use search::{
    EvalBatch, Evaluator, GumbelConfig, GumbelMuZero, Mcts, MctsConfig, MixValue, QTransform,
    SearchError, SearchOutput, Searcher,
};

use crate::env::RawEnv;
use crate::params::{env_err, invalid, lock};
use crate::vec_env::RawVecEnv;

enum Algo {
    Mcts(Mcts<AnyEnv>),
    Gumbel(GumbelMuZero<AnyEnv>),
}

/// A tree searcher (MCTS with PUCT, or Gumbel MuZero) that keeps its tree storage between
/// searches. Build it with `RawSearcher.mcts(...)` or `RawSearcher.gumbel(...)` (Python).
#[pyclass(module = "factorexe._native", frozen)]
pub struct RawSearcher {
    algo: Mutex<Algo>,
}

#[pymethods]
impl RawSearcher {
    /// MCTS with PUCT (mctx's `muzero_policy`); the defaults are mctx's (root noise on,
    /// actions sampled from the visit counts). `qtransform` is `"parent_and_siblings"`
    /// (default), `"min_max"` (by the known bounds `value_min..value_max`) or `"mix_value"`.
    #[staticmethod]
    #[pyo3(signature = (
        pb_c_init=1.25, pb_c_base=19652.0, dirichlet_alpha=0.3, dirichlet_fraction=0.25,
        temperature=1.0, discount=1.0, qtransform="parent_and_siblings", value_min=0.0,
        value_max=1.0
    ))]
    #[allow(clippy::too_many_arguments)]
    fn mcts(
        pb_c_init: f32,
        pb_c_base: f32,
        dirichlet_alpha: f32,
        dirichlet_fraction: f32,
        temperature: f32,
        discount: f32,
        qtransform: &str,
        value_min: f32,
        value_max: f32,
    ) -> PyResult<Self> {
        let qtransform = match qtransform {
            "parent_and_siblings" => QTransform::default(),
            "min_max" => {
                if !(value_min.is_finite() && value_max.is_finite() && value_min < value_max) {
                    return Err(invalid(
                        "value_max",
                        value_max,
                        format!("finite and above value_min = {value_min}"),
                    ));
                }
                QTransform::MinMax {
                    min: value_min,
                    max: value_max,
                }
            }
            "mix_value" => QTransform::CompletedByMixValue(MixValue::default()),
            other => {
                return Err(invalid(
                    "qtransform",
                    other,
                    "parent_and_siblings, min_max or mix_value",
                ))
            }
        };
        let config = MctsConfig {
            pb_c_init,
            pb_c_base,
            dirichlet_alpha,
            dirichlet_fraction,
            temperature,
            qtransform,
            discount,
            early_stop: None,
        };
        let m = Mcts::new(config).map_err(|e| search_err(e, None))?;
        Ok(RawSearcher {
            algo: Mutex::new(Algo::Mcts(m)),
        })
    }

    /// Gumbel MuZero (mctx's `gumbel_muzero_policy`); the defaults are mctx's. The last four
    /// parameters are those of the completed-Q transform σ.
    #[staticmethod]
    #[pyo3(signature = (
        max_num_considered_actions=16, gumbel_scale=1.0, discount=1.0, value_scale=0.1,
        maxvisit_init=50.0, rescale_values=true, use_mixed_value=true
    ))]
    fn gumbel(
        max_num_considered_actions: i64,
        gumbel_scale: f32,
        discount: f32,
        value_scale: f32,
        maxvisit_init: f32,
        rescale_values: bool,
        use_mixed_value: bool,
    ) -> PyResult<Self> {
        let m = usize::try_from(max_num_considered_actions)
            .ok()
            .filter(|&m| m >= 1)
            .ok_or_else(|| {
                invalid(
                    "max_num_considered_actions",
                    max_num_considered_actions,
                    ">= 1",
                )
            })?;
        let config = GumbelConfig {
            max_num_considered_actions: m,
            gumbel_scale,
            qtransform: MixValue {
                value_scale,
                maxvisit_init,
                rescale_values,
                use_mixed_value,
                ..MixValue::default()
            },
            discount,
            whole_rounds: false,
            early_stop: None,
        };
        let g = GumbelMuZero::new(config).map_err(|e| search_err(e, None))?;
        Ok(RawSearcher {
            algo: Mutex::new(Algo::Gumbel(g)),
        })
    }

    /// A short name, e.g. `"mcts"` or `"gumbel(m=16)"`.
    #[getter]
    fn name(&self) -> PyResult<String> {
        Ok(match &*lock(&self.algo, "searcher")? {
            Algo::Mcts(m) => Searcher::<AnyEnv>::name(m),
            Algo::Gumbel(g) => Searcher::<AnyEnv>::name(g),
        })
    }

    /// Searches from `roots` (a `RawVecEnv`, optionally restricted to `indices`, or a sequence
    /// of `RawEnv`s; all live, with the same action count) with at most `budget` evaluator
    /// calls per root, randomness seeded by `seed`.
    ///
    /// `evaluator(tokens, features, action_mask)` receives `(N, T)` int64, `(N, F)` float32
    /// and `(N, A)` bool arrays (one row per state of this search step, across all roots) and
    /// must return `(logits, values)` as C-contiguous float32 arrays of shapes `(N, A)` and
    /// `(N,)`. An exception it raises propagates unchanged.
    ///
    /// Returns a dict of arrays, one row per root: `actions (B,)` int64, `policy (B, A)`
    /// float32 (the improved policy), `value (B,)` float32, `evals (B,)` int64 (states
    /// evaluated for that root), `visit_counts (B, A)` int64, `done (B,)` bool (the action
    /// ends the episode); and `calls`, the number of evaluator calls.
    #[pyo3(signature = (roots, evaluator, budget, seed=0, indices=None))]
    fn search<'py>(
        &self,
        py: Python<'py>,
        roots: &Bound<'py, PyAny>,
        evaluator: Bound<'py, PyAny>,
        budget: i64,
        seed: u64,
        indices: Option<Vec<usize>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let budget = usize::try_from(budget)
            .ok()
            .filter(|&b| b >= 1)
            .ok_or_else(|| invalid("budget", budget, ">= 1 evaluator call per root"))?;
        let roots = root_states(roots, indices)?;
        let first = roots
            .first()
            .ok_or_else(|| PyValueError::new_err("no root states given"))?;
        let spec = first.spec();
        // The evaluator's buffers follow root 0's layout: every root must share it.
        if let Some(i) = roots
            .iter()
            .position(|r| r.spec().obs != spec.obs || r.spec().num_actions != spec.num_actions)
        {
            return Err(PyValueError::new_err(format!(
                "root {i} has another observation layout or action count than root 0 ({}); \
                 search needs roots of one env",
                spec.name
            )));
        }
        let mut eval = PyEvaluator {
            f: evaluator,
            tokens: spec.obs.tokens,
            features: spec.obs.features,
            actions: spec.num_actions,
            calls: 0,
            error: None,
        };
        let mut rng = EnvRng::seed_from_u64(seed);
        let mut algo = lock(&self.algo, "searcher")?;
        let result = match &mut *algo {
            Algo::Mcts(m) => m.search(&roots, &mut eval, budget, &mut rng),
            Algo::Gumbel(g) => g.search(&roots, &mut eval, budget, &mut rng),
        };
        let outputs = result.map_err(|e| search_err(e, eval.error.take()))?;
        outputs_dict(py, &outputs, eval.actions, eval.calls)
    }
}

/// The root states of a search: copies of a `RawVecEnv`'s envs or of `RawEnv`s.
fn root_states(roots: &Bound<'_, PyAny>, indices: Option<Vec<usize>>) -> PyResult<Vec<AnyEnv>> {
    if let Ok(vec) = roots.cast::<RawVecEnv>() {
        return vec.get().states(indices);
    }
    if indices.is_some() {
        return Err(PyValueError::new_err(
            "`indices` applies to a vector env's roots; pass the envs themselves instead",
        ));
    }
    let mut out = Vec::new();
    for item in roots.try_iter()? {
        let item = item?;
        let env: PyRef<'_, RawEnv> = item.extract().map_err(|_| {
            PyValueError::new_err(format!(
                "roots must be factorexe envs (or a vector env); got {}",
                item.get_type()
            ))
        })?;
        let st = env.lock()?;
        if !st.started {
            return Err(PyValueError::new_err(format!(
                "root {} has not been reset; search needs a live state",
                out.len()
            )));
        }
        out.push(st.env.clone());
    }
    Ok(out)
}

/// The per-root outputs as a dict of arrays (see [`RawSearcher::search`]).
fn outputs_dict<'py>(
    py: Python<'py>,
    outputs: &[SearchOutput],
    num_actions: usize,
    calls: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let b = outputs.len();
    let mut policy = Vec::with_capacity(b * num_actions);
    let mut visits = Vec::with_capacity(b * num_actions);
    for o in outputs {
        policy.extend_from_slice(&o.policy);
        visits.extend(o.visit_counts.iter().map(|&v| i64::from(v)));
    }
    let d = PyDict::new(py);
    let actions = outputs
        .iter()
        .map(|o| o.actions.first().map_or(-1, |&a| a as i64));
    d.set_item("actions", PyArray1::from_iter(py, actions))?;
    d.set_item(
        "policy",
        PyArray1::from_vec(py, policy).reshape([b, num_actions])?,
    )?;
    d.set_item(
        "value",
        PyArray1::from_iter(py, outputs.iter().map(|o| o.value)),
    )?;
    d.set_item(
        "evals",
        PyArray1::from_iter(py, outputs.iter().map(|o| o.evals as i64)),
    )?;
    d.set_item(
        "visit_counts",
        PyArray1::from_vec(py, visits).reshape([b, num_actions])?,
    )?;
    d.set_item(
        "done",
        PyArray1::from_iter(py, outputs.iter().map(|o| o.done)),
    )?;
    d.set_item("calls", calls)?;
    Ok(d)
}

/// A [`SearchError`] as a Python exception: the evaluator's own exception when it raised one,
/// else a `ValueError` (or the env error's exception) with the Rust message.
fn search_err(e: SearchError, raised: Option<PyErr>) -> PyErr {
    if let Some(err) = raised {
        return err;
    }
    match e {
        SearchError::Env(e) => env_err(e),
        other => PyValueError::new_err(other.to_string()),
    }
}

/// The Python evaluator as an [`Evaluator`]: each call observes the batch's states into new
/// numpy arrays, calls the function and copies its logits and values back.
struct PyEvaluator<'py> {
    f: Bound<'py, PyAny>,
    tokens: usize,
    features: usize,
    actions: usize,
    calls: usize,
    /// The exception the function raised, re-raised once the search has stopped.
    error: Option<PyErr>,
}

impl PyEvaluator<'_> {
    fn call(
        &mut self,
        batch: &EvalBatch<'_, AnyEnv>,
        logits: &mut [f32],
        values: &mut [f32],
    ) -> PyResult<()> {
        let py = self.f.py();
        let n = batch.len();
        let (nt, nf, na) = (self.tokens, self.features, self.actions);
        let tokens = PyArray2::<i64>::zeros(py, [n, nt], false);
        let features = PyArray2::<f32>::zeros(py, [n, nf], false);
        let mask = PyArray2::<bool>::zeros(py, [n, na], false);
        {
            let mut t = tokens.readwrite();
            let mut f = features.readwrite();
            let mut m = mask.readwrite();
            let (t, f, m) = (t.as_slice_mut()?, f.as_slice_mut()?, m.as_slice_mut()?);
            for i in 0..n {
                batch.env(i).observe(ObsMut {
                    tokens: &mut t[i * nt..(i + 1) * nt],
                    features: &mut f[i * nf..(i + 1) * nf],
                    action_mask: &mut m[i * na..(i + 1) * na],
                });
            }
        }
        let out = self.f.call1((tokens, features, mask))?;
        self.calls += 1;
        let (lg, vl): (PyReadonlyArray2<'_, f32>, PyReadonlyArray1<'_, f32>) =
            out.extract().map_err(|_| {
                PyValueError::new_err(
                    "the evaluator must return (logits, values) as float32 numpy arrays",
                )
            })?;
        if lg.shape() != [n, na] || vl.shape() != [n] {
            return Err(PyValueError::new_err(format!(
                "the evaluator returned logits of shape {:?} and values of shape {:?}; \
                 expected ({n}, {na}) and ({n},)",
                lg.shape(),
                vl.shape()
            )));
        }
        if logits.len() != n * na || values.len() != n {
            return Err(PyValueError::new_err(
                "internal error: the searcher's buffers do not match its batch",
            ));
        }
        let not_contiguous =
            |_| PyValueError::new_err("the evaluator's arrays must be C-contiguous");
        logits.copy_from_slice(lg.as_slice().map_err(not_contiguous)?);
        values.copy_from_slice(vl.as_slice().map_err(not_contiguous)?);
        Ok(())
    }
}

impl Evaluator<AnyEnv> for PyEvaluator<'_> {
    fn evaluate(
        &mut self,
        batch: &EvalBatch<'_, AnyEnv>,
        logits: &mut [f32],
        values: &mut [f32],
    ) -> Result<(), SearchError> {
        self.call(batch, logits, values).map_err(|e| {
            let message = e.to_string();
            self.error = Some(e);
            SearchError::Evaluator(message.into())
        })
    }
}
