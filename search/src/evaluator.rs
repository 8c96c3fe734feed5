//! The batched [`Evaluator`] trait (prior logits and a value for a batch of env states), the
//! [`RewardUse`] rule that keeps test-time search from reading the true reward, and the simple
//! evaluators: uniform, scripted, counting and the labelled oracle.

use crate::error::SearchError;
use crate::util::NO_PARENT;
use envs::Env;

/// Identifies a state within one root's search: unique per root for the duration of one
/// `search` call, starting at 0 for the root itself.
pub type NodeId = u32;

/// Whether a search may read the env's rewards.
///
/// The env is the search's model of the world: searchers step clones of it to get the next
/// state, the end flags and the legal actions. Its *rewards*, though, can reveal what the agent
/// must not know at test time: in `CotEnv` the reward of the final step says whether the answer
/// is correct (and dense shaping compares the chain with the oracle chain). So:
///
/// - [`RewardUse::Ignore`] (the default, and the only honest choice at test time): every edge
///   reward is taken as 0 and the value of every state, terminal states included, comes from
///   the evaluator. At a terminal state the evaluator's value is its own estimate of the
///   episode's outcome (for `CotEnv`: "is this answer right"), so the search backs up
///   `Q(s, a) = V(s')` along the tree. This is exact when, as in `CotEnv`'s default reward, the
///   whole return is paid at the end; intermediate rewards are left to the value head.
/// - [`RewardUse::Oracle`]: an **upper bound for training-time use only**. Edge rewards are the
///   env's rewards, `Q(s, a) = r + discount * V(s')`, and a terminated state's value is 0 (the
///   exact return), so the search sees the truth at terminal states. Only
///   [`OracleEvaluator`] declares it; a searcher never switches it on by itself.
///
/// The rule is the evaluator's (see [`Evaluator::reward_use`]), so that an honest policy
/// evaluator can never be paired with reward reading by a config slip. Note that an evaluator
/// receives env references and could read an env's hidden fields (e.g. `CotEnv::problem`);
/// honest evaluators read states only through [`Env::observe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RewardUse {
    /// Never read env rewards: values come from the evaluator only (test-time default).
    #[default]
    Ignore,
    /// Read the true rewards (labelled upper bound, training-time only).
    Oracle,
}

/// Where one requested state sits in the search: its root, its node and its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EvalItem {
    pub(crate) root: u32,
    pub(crate) node: u32,
    pub(crate) parent: u32,
    pub(crate) action: u32,
    pub(crate) depth: u32,
    pub(crate) slot: u32,
}

/// One state to evaluate, with its place in the search.
pub struct EvalRequest<'a, E> {
    /// Which root (index into the `roots` slice given to the search) this state descends from:
    /// an evaluator can encode each root's problem once (in [`Evaluator::begin_search`]) and
    /// reuse it for every state of that root.
    pub root: usize,
    /// This state's id within its root's search (0 = the root state itself).
    pub node: NodeId,
    /// The node this state was reached from by one action, `None` for the root. The parent was
    /// itself evaluated earlier in the same search, so a decoder can extend the parent's cached
    /// keys and values by one token instead of re-encoding the prefix.
    pub parent: Option<NodeId>,
    /// The action taken from the parent, `None` for the root.
    pub action: Option<usize>,
    /// Number of actions from the root to this state.
    pub depth: usize,
    /// The state. Read it with [`Env::observe`] into the evaluator's own buffers; it may be
    /// terminal (then only the value is used).
    pub env: &'a E,
}

impl<E> Clone for EvalRequest<'_, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for EvalRequest<'_, E> {}

/// A batch of states to evaluate in one call: all the states one step of a batched search
/// needs, across all roots. Requests are views into the search's own storage, so building a
/// batch allocates nothing.
pub struct EvalBatch<'a, E> {
    envs: &'a [E],
    items: &'a [EvalItem],
    num_roots: usize,
}

impl<'a, E> EvalBatch<'a, E> {
    pub(crate) fn new(envs: &'a [E], items: &'a [EvalItem], num_roots: usize) -> Self {
        EvalBatch {
            envs,
            items,
            num_roots,
        }
    }

    /// Number of states in the batch.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when the batch holds no state.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Number of roots of the running search (request roots are in `0..num_roots`).
    pub fn num_roots(&self) -> usize {
        self.num_roots
    }

    /// The `i`-th request. Panics if `i >= len()`.
    pub fn get(&self, i: usize) -> EvalRequest<'a, E> {
        let it = self.items[i];
        EvalRequest {
            root: it.root as usize,
            node: it.node,
            parent: (it.parent != NO_PARENT).then_some(it.parent),
            action: (it.action != NO_PARENT).then_some(it.action as usize),
            depth: it.depth as usize,
            env: &self.envs[it.slot as usize],
        }
    }

    /// The `i`-th state. Panics if `i >= len()`.
    pub fn env(&self, i: usize) -> &'a E {
        &self.envs[self.items[i].slot as usize]
    }

    /// The root of the `i`-th state. Panics if `i >= len()`.
    pub fn root(&self, i: usize) -> usize {
        self.items[i].root as usize
    }

    /// The requests in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = EvalRequest<'a, E>> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }
}

/// States queued for one evaluator call, for searchers written outside this crate (the
/// built-in ones keep their states in their own arenas). Push each state with where it sits
/// in its root's search, then [`evaluate`](EvalQueue::evaluate) them all in one call.
#[derive(Debug, Clone)]
pub struct EvalQueue<E> {
    envs: Vec<E>,
    items: Vec<EvalItem>,
}

impl<E> Default for EvalQueue<E> {
    fn default() -> Self {
        EvalQueue {
            envs: Vec::new(),
            items: Vec::new(),
        }
    }
}

impl<E: Env> EvalQueue<E> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Empties the queue, keeping its storage.
    pub fn clear(&mut self) {
        self.envs.clear();
        self.items.clear();
    }

    /// States queued.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The `i`-th queued state.
    pub fn env(&self, i: usize) -> &E {
        &self.envs[i]
    }

    /// Queues `env`, a state of root `root`'s search: `node` is its id in that search (0 for
    /// the root), `from` the parent node and the action that led here (`None` for the root),
    /// `depth` the actions from the root.
    pub fn push(
        &mut self,
        root: usize,
        node: NodeId,
        from: Option<(NodeId, usize)>,
        depth: usize,
        env: E,
    ) {
        let (parent, action) = from.map_or((NO_PARENT, NO_PARENT), |(p, a)| (p, a as u32));
        self.items.push(EvalItem {
            root: root as u32,
            node,
            parent,
            action,
            depth: depth as u32,
            slot: self.envs.len() as u32,
        });
        self.envs.push(env);
    }

    /// One evaluator call over the queued states of a search with `num_roots` roots: prior
    /// logits into `logits[i * num_actions..]` and values into `values[i]` for state `i`.
    /// Slices shorter than the queue needs are an error.
    pub fn evaluate(
        &self,
        evaluator: &mut dyn Evaluator<E>,
        num_roots: usize,
        logits: &mut [f32],
        values: &mut [f32],
    ) -> Result<(), SearchError> {
        let n = self.len();
        let na = self.envs.first().map_or(0, |e| e.spec().num_actions);
        if logits.len() < n * na || values.len() < n {
            return Err(SearchError::invalid(
                "eval_queue output",
                format!("{} logits, {} values", logits.len(), values.len()),
                format!("at least {} logits and {n} values", n * na),
            ));
        }
        let batch = EvalBatch::new(&self.envs, &self.items, num_roots);
        evaluator.evaluate(&batch, &mut logits[..n * na], &mut values[..n])
    }
}

/// A batched model of the world's values and policy: for each state of a batch, prior logits
/// over the env's actions and a scalar value.
///
/// Searchers call [`evaluate`](Evaluator::evaluate) once per search step with every state that
/// step needs across all roots (one call per simulation for MCTS and Gumbel, one per depth for
/// beam and sampling). Each state in a batch costs one unit of the per-root budget.
pub trait Evaluator<E: Env> {
    /// Called once at the start of each search with its roots, before any `evaluate`. A policy
    /// network can encode each root's input here and reset its per-node caches. Default: no-op.
    fn begin_search(&mut self, roots: &[E]) -> Result<(), SearchError> {
        let _ = roots;
        Ok(())
    }

    /// Writes, for each request `i` of `batch`, prior logits over all `num_actions` actions into
    /// `logits[i * num_actions..(i + 1) * num_actions]` and a value into `values[i]`. Logits of
    /// illegal actions are ignored (searchers mask with the env's action mask); legal logits and
    /// values must be finite. Values estimate the return from the state on, in the units of the
    /// env's reward; at a terminal state, the outcome of the episode (see [`RewardUse`]).
    fn evaluate(
        &mut self,
        batch: &EvalBatch<'_, E>,
        logits: &mut [f32],
        values: &mut [f32],
    ) -> Result<(), SearchError>;

    /// Whether searches with this evaluator may read env rewards. Default [`RewardUse::Ignore`];
    /// only [`OracleEvaluator`] (a labelled upper bound) returns [`RewardUse::Oracle`].
    fn reward_use(&self) -> RewardUse {
        RewardUse::Ignore
    }
}

impl<E: Env, V: Evaluator<E> + ?Sized> Evaluator<E> for &mut V {
    fn begin_search(&mut self, roots: &[E]) -> Result<(), SearchError> {
        (**self).begin_search(roots)
    }

    fn evaluate(
        &mut self,
        batch: &EvalBatch<'_, E>,
        logits: &mut [f32],
        values: &mut [f32],
    ) -> Result<(), SearchError> {
        (**self).evaluate(batch, logits, values)
    }

    fn reward_use(&self) -> RewardUse {
        (**self).reward_use()
    }
}

impl<E: Env, V: Evaluator<E> + ?Sized> Evaluator<E> for Box<V> {
    fn begin_search(&mut self, roots: &[E]) -> Result<(), SearchError> {
        (**self).begin_search(roots)
    }

    fn evaluate(
        &mut self,
        batch: &EvalBatch<'_, E>,
        logits: &mut [f32],
        values: &mut [f32],
    ) -> Result<(), SearchError> {
        (**self).evaluate(batch, logits, values)
    }

    fn reward_use(&self) -> RewardUse {
        (**self).reward_use()
    }
}

/// Equal logits for every action and a constant value: search guided by nothing but the env's
/// dynamics (and, with [`OracleEvaluator`], its rewards).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct UniformEvaluator {
    /// The value given to every state.
    pub value: f32,
}

impl UniformEvaluator {
    /// A uniform evaluator that values every state at `value`.
    pub fn new(value: f32) -> Self {
        UniformEvaluator { value }
    }
}

impl<E: Env> Evaluator<E> for UniformEvaluator {
    fn evaluate(
        &mut self,
        _batch: &EvalBatch<'_, E>,
        logits: &mut [f32],
        values: &mut [f32],
    ) -> Result<(), SearchError> {
        logits.fill(0.0);
        values.fill(self.value);
        Ok(())
    }
}

/// An evaluator scripted by a closure, for tests and hand-built problems: the closure receives
/// each request and its logits row (pre-filled with zeros) and returns the state's value.
pub struct ScriptedEvaluator<F> {
    f: F,
}

impl<F> ScriptedEvaluator<F> {
    /// Wraps `f(request, logits_row) -> value`.
    pub fn new(f: F) -> Self {
        ScriptedEvaluator { f }
    }
}

impl<E, F> Evaluator<E> for ScriptedEvaluator<F>
where
    E: Env,
    F: FnMut(&EvalRequest<'_, E>, &mut [f32]) -> f32,
{
    fn evaluate(
        &mut self,
        batch: &EvalBatch<'_, E>,
        logits: &mut [f32],
        values: &mut [f32],
    ) -> Result<(), SearchError> {
        let n = batch.len();
        if n == 0 {
            return Ok(());
        }
        let num_actions = logits.len() / n;
        for (i, req) in batch.iter().enumerate() {
            let row = &mut logits[i * num_actions..(i + 1) * num_actions];
            row.fill(0.0);
            values[i] = (self.f)(&req, row);
        }
        Ok(())
    }
}

/// **Upper bound, training-time use only.** Wraps an evaluator (which still gives the priors and
/// the values of non-terminal states) and declares [`RewardUse::Oracle`], so searches read the
/// env's true rewards: a terminated state is worth exactly the rewards collected on the way to
/// it. At test time this reads the answer's correctness and is not a legitimate searcher; use
/// it only to bound what a perfect value function would give, or to make training targets.
#[derive(Debug, Clone, Default)]
pub struct OracleEvaluator<V> {
    inner: V,
}

impl<V> OracleEvaluator<V> {
    /// Wraps `inner`; see the type's documentation for what this allows.
    pub fn new(inner: V) -> Self {
        OracleEvaluator { inner }
    }

    /// The wrapped evaluator.
    pub fn into_inner(self) -> V {
        self.inner
    }
}

impl<E: Env, V: Evaluator<E>> Evaluator<E> for OracleEvaluator<V> {
    fn begin_search(&mut self, roots: &[E]) -> Result<(), SearchError> {
        self.inner.begin_search(roots)
    }

    fn evaluate(
        &mut self,
        batch: &EvalBatch<'_, E>,
        logits: &mut [f32],
        values: &mut [f32],
    ) -> Result<(), SearchError> {
        self.inner.evaluate(batch, logits, values)
    }

    fn reward_use(&self) -> RewardUse {
        RewardUse::Oracle
    }
}

/// Wraps an evaluator and counts what it is asked: states per root (reset at each
/// `begin_search`), states in all and `evaluate` calls. For budget tests and reports.
#[derive(Debug, Clone, Default)]
pub struct CountingEvaluator<V> {
    inner: V,
    /// States evaluated per root in the current (or last) search.
    pub per_root: Vec<usize>,
    /// States evaluated since construction.
    pub states: usize,
    /// `evaluate` calls since construction.
    pub calls: usize,
    /// Largest batch seen.
    pub max_batch: usize,
}

impl<V> CountingEvaluator<V> {
    /// Wraps `inner` with zeroed counters.
    pub fn new(inner: V) -> Self {
        CountingEvaluator {
            inner,
            per_root: Vec::new(),
            states: 0,
            calls: 0,
            max_batch: 0,
        }
    }

    /// The wrapped evaluator.
    pub fn inner(&self) -> &V {
        &self.inner
    }
}

impl<E: Env, V: Evaluator<E>> Evaluator<E> for CountingEvaluator<V> {
    fn begin_search(&mut self, roots: &[E]) -> Result<(), SearchError> {
        self.per_root.clear();
        self.per_root.resize(roots.len(), 0);
        self.inner.begin_search(roots)
    }

    fn evaluate(
        &mut self,
        batch: &EvalBatch<'_, E>,
        logits: &mut [f32],
        values: &mut [f32],
    ) -> Result<(), SearchError> {
        if self.per_root.len() < batch.num_roots() {
            self.per_root.resize(batch.num_roots(), 0);
        }
        for i in 0..batch.len() {
            self.per_root[batch.root(i)] += 1;
        }
        self.states += batch.len();
        self.calls += 1;
        self.max_batch = self.max_batch.max(batch.len());
        self.inner.evaluate(batch, logits, values)
    }

    fn reward_use(&self) -> RewardUse {
        self.inner.reward_use()
    }
}
