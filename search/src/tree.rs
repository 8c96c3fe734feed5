//! The batched search tree and the one generic simulation loop (mctx's `search.py`): simulate
//! (descend by a pluggable selection rule), expand (step a clone of the parent's env), evaluate
//! (one evaluator call for all trees), backward (update means and visit counts).
//!
//! The tree is a struct of flat arrays indexed `[root, node]` (stride `cap`) and
//! `[root, node, action]` (stride `cap * num_actions`), allocated once and reused by later
//! searches; a node's rows are written when it is created, so nothing is cleared between
//! searches. Node `i` of a root is the `i`-th node created in that root's tree.

use crate::anytime::EarlyStop;
use crate::error::SearchError;
use crate::evaluator::{EvalBatch, EvalItem, Evaluator, RewardUse};
use crate::qtransform::NodeStats;
use crate::util::{masked_log_softmax, masked_softmax, NO_PARENT, UNVISITED};
use envs::{Env, EnvRng, Observation};

/// The statistics of all trees of a batched search.
#[derive(Debug, Default)]
pub(crate) struct TreeStats {
    pub(crate) batch: usize,
    pub(crate) cap: usize,
    pub(crate) na: usize,
    pub(crate) discount: f32,
    /// Edge rewards enter Q (oracle evaluator); otherwise `reward` is neither written nor read.
    pub(crate) use_rewards: bool,
    /// Nodes created per root.
    pub(crate) num_nodes: Vec<u32>,
    // Per node, `[root * cap + node]`.
    pub(crate) visits: Vec<u32>,
    pub(crate) raw_value: Vec<f32>,
    pub(crate) value: Vec<f32>,
    pub(crate) parent: Vec<u32>,
    pub(crate) action: Vec<u32>,
    /// Terminated, truncated or without legal action: selection stops here.
    pub(crate) leaf_end: Vec<bool>,
    pub(crate) num_legal: Vec<u32>,
    /// Index of the node's env in the env arena.
    pub(crate) slot: Vec<u32>,
    // Per edge, `[(root * cap + node) * na + action]`.
    pub(crate) child: Vec<u32>,
    pub(crate) prior: Vec<f32>,
    pub(crate) legal: Vec<bool>,
    pub(crate) child_value: Vec<f32>,
    pub(crate) child_visits: Vec<u32>,
    /// The env reward of the edge, written and read only when `use_rewards` (the oracle).
    pub(crate) reward: Vec<f32>,
    /// Per root edge, `[root * na + action]`: log prior probabilities of the root's actions
    /// (selection below the root needs only `prior`).
    pub(crate) root_log_prior: Vec<f32>,
}

impl TreeStats {
    pub(crate) fn prepare(&mut self, batch: usize, cap: usize, na: usize, discount: f32) {
        self.batch = batch;
        self.cap = cap;
        self.na = na;
        self.discount = discount;
        let nodes = batch * cap;
        let edges = nodes * na;
        self.num_nodes.clear();
        self.num_nodes.resize(batch, 0);
        grow(&mut self.visits, nodes, 0);
        grow(&mut self.raw_value, nodes, 0.0);
        grow(&mut self.value, nodes, 0.0);
        grow(&mut self.parent, nodes, NO_PARENT);
        grow(&mut self.action, nodes, NO_PARENT);
        grow(&mut self.leaf_end, nodes, true);
        grow(&mut self.num_legal, nodes, 0);
        grow(&mut self.slot, nodes, 0);
        grow(&mut self.child, edges, UNVISITED);
        grow(&mut self.root_log_prior, batch * na, 0.0);
        grow(&mut self.prior, edges, 0.0);
        grow(&mut self.legal, edges, false);
        grow(&mut self.child_value, edges, 0.0);
        grow(&mut self.child_visits, edges, 0);
        grow(&mut self.reward, edges, 0.0);
    }

    /// Flat index of node `node` of root `b`.
    #[inline]
    pub(crate) fn idx(&self, b: usize, node: u32) -> usize {
        b * self.cap + node as usize
    }

    /// Writes `Q(s, a) = r + discount * V(child)` for the visited edges of node `idx` into `q`.
    #[inline]
    pub(crate) fn fill_q(&self, idx: usize, q: &mut [f32]) {
        let base = idx * self.na;
        for (a, q) in q.iter_mut().enumerate().take(self.na) {
            *q = if self.child_visits[base + a] > 0 {
                self.q(base + a)
            } else {
                0.0
            };
        }
    }

    /// `Q(s, a) = r + discount * V(child)` of edge `e` (meaningful once visited).
    #[inline(always)]
    pub(crate) fn q(&self, e: usize) -> f32 {
        if self.use_rewards {
            self.reward[e] + self.discount * self.child_value[e]
        } else {
            self.discount * self.child_value[e]
        }
    }

    /// The q-transform view of node `idx`, with its Q-values written into `q`.
    #[inline]
    pub(crate) fn node_stats<'a>(&'a self, idx: usize, q: &'a mut [f32]) -> NodeStats<'a> {
        self.fill_q(idx, q);
        let r = idx * self.na..(idx + 1) * self.na;
        NodeStats {
            q,
            visits: &self.child_visits[r.clone()],
            prior: &self.prior[r.clone()],
            legal: &self.legal[r],
            node_value: self.value[idx],
            raw_value: self.raw_value[idx],
        }
    }

    /// Visit counts of the root's children.
    pub(crate) fn root_visits(&self, b: usize) -> &[u32] {
        let base = self.idx(b, 0) * self.na;
        &self.child_visits[base..base + self.na]
    }

    /// The legal mask of the root.
    pub(crate) fn root_legal(&self, b: usize) -> &[bool] {
        let base = self.idx(b, 0) * self.na;
        &self.legal[base..base + self.na]
    }

    fn init_node(
        &mut self,
        idx: usize,
        parent: u32,
        action: u32,
        slot: usize,
        mask: Option<&[bool]>,
    ) {
        self.parent[idx] = parent;
        self.action[idx] = action;
        self.slot[idx] = slot as u32;
        self.visits[idx] = 0;
        let base = idx * self.na;
        let edges = base..base + self.na;
        // `child_value` is written by the first backup through an edge before anything reads
        // it, and `reward` is read only with `use_rewards`: neither needs clearing otherwise.
        self.child[edges.clone()].fill(UNVISITED);
        self.child_visits[edges.clone()].fill(0);
        if self.use_rewards {
            self.reward[edges.clone()].fill(0.0);
        }
        match mask {
            Some(m) => self.legal[edges].copy_from_slice(m),
            None => self.legal[edges].fill(false),
        }
        let n = mask.map_or(0, |m| m.iter().filter(|&&x| x).count());
        self.num_legal[idx] = n as u32;
        self.leaf_end[idx] = n == 0;
    }
}

fn grow<T: Clone>(v: &mut Vec<T>, len: usize, fill: T) {
    if v.len() < len {
        v.resize(len, fill);
    }
}

/// The pluggable part of a tree search: how actions are chosen while descending.
pub(crate) trait Rule {
    /// Called once after the roots are evaluated (root noise, Gumbel draws, schedules), with
    /// the most simulations each root may run.
    fn begin(&mut self, tree: &mut TreeStats, sims: &[usize], rng: &mut EnvRng);

    /// How settled root `b`'s choice is, in `[0, 1]`, for [`EarlyStop`].
    fn confidence(&mut self, tree: &TreeStats, b: usize) -> f32;

    /// Whether root `b` should stop after `done` simulations although its budget allows
    /// more (the rule's own schedule ends there).
    fn finished(&self, _tree: &TreeStats, _b: usize, _done: usize) -> bool {
        false
    }

    /// The action to take at node `idx` (of root `b`, at `depth`) during simulation `sim`;
    /// `None` only if the node has no legal action.
    fn select(
        &mut self,
        tree: &TreeStats,
        b: usize,
        idx: usize,
        depth: u32,
        sim: usize,
        rng: &mut EnvRng,
    ) -> Option<usize>;
}

/// Writes into `sims` the simulations each root may run: its budget less the root's own
/// evaluation. A budget of 0, or not one budget per root, is an error.
fn simulations(
    searcher: String,
    roots: usize,
    budgets: &[usize],
    sims: &mut Vec<usize>,
) -> Result<(), SearchError> {
    if budgets.len() != roots {
        return Err(SearchError::invalid(
            "budgets",
            budgets.len(),
            format!("one per root ({roots})"),
        ));
    }
    if let Some(&budget) = budgets.iter().find(|&&b| b == 0) {
        return Err(SearchError::BudgetTooSmall {
            searcher,
            budget,
            min: 1,
        });
    }
    sims.clear();
    sims.extend(budgets.iter().map(|&b| b - 1));
    Ok(())
}

/// Checks the roots and returns their number of actions.
pub(crate) fn check_roots<E: Env>(roots: &[E]) -> Result<usize, SearchError> {
    let first = roots.first().ok_or(SearchError::NoRoots)?;
    let na = first.spec().num_actions;
    for (root, env) in roots.iter().enumerate() {
        let got = env.spec().num_actions;
        if got != na {
            return Err(SearchError::ActionCountMismatch {
                root,
                expected: na,
                got,
            });
        }
        if env.is_done() {
            return Err(SearchError::RootDone { root });
        }
    }
    Ok(na)
}

/// The most edges (roots x nodes x actions) a batched tree search allocates: about 5 GB of
/// statistics.
pub(crate) const MAX_TREE_EDGES: usize = 1 << 28;

/// Reusable storage of a batched tree search.
pub(crate) struct TreeSearch<E> {
    pub(crate) stats: TreeStats,
    envs: Vec<E>,
    items: Vec<EvalItem>,
    logits: Vec<f32>,
    values: Vec<f32>,
    obs: Option<Observation>,
    leaves: Vec<u32>,
    /// Roots still simulating.
    active: Vec<bool>,
    /// Evaluator calls per root in the last search.
    pub(crate) evals: Vec<usize>,
    /// Simulations per root in the current search: its budget less the root's evaluation.
    sims: Vec<usize>,
}

impl<E> Default for TreeSearch<E> {
    fn default() -> Self {
        TreeSearch {
            stats: TreeStats::default(),
            envs: Vec::new(),
            items: Vec::new(),
            logits: Vec::new(),
            values: Vec::new(),
            obs: None,
            leaves: Vec::new(),
            active: Vec::new(),
            evals: Vec::new(),
            sims: Vec::new(),
        }
    }
}

impl<E: Env> TreeSearch<E> {
    /// Spends at most `budgets[b]` evaluator calls on root `b`: its own evaluation, then up
    /// to `budgets[b] - 1` simulations (fewer when `stop` says it is confident), each step one
    /// evaluator call for all trees still simulating. `searcher` names the caller in errors.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run<R: Rule>(
        &mut self,
        searcher: String,
        roots: &[E],
        evaluator: &mut dyn Evaluator<E>,
        budgets: &[usize],
        stop: Option<EarlyStop>,
        discount: f32,
        rule: &mut R,
        rng: &mut EnvRng,
    ) -> Result<(), SearchError> {
        let mut sims = std::mem::take(&mut self.sims);
        let result = simulations(searcher, roots.len(), budgets, &mut sims)
            .and_then(|()| self.simulate(roots, evaluator, &sims, stop, discount, rule, rng));
        self.sims = sims;
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn simulate<R: Rule>(
        &mut self,
        roots: &[E],
        evaluator: &mut dyn Evaluator<E>,
        sims: &[usize],
        stop: Option<EarlyStop>,
        discount: f32,
        rule: &mut R,
        rng: &mut EnvRng,
    ) -> Result<(), SearchError> {
        let na = check_roots(roots)?;
        let batch = roots.len();
        let num_sims = sims.iter().copied().max().unwrap_or(0);
        let oracle = evaluator.reward_use() == RewardUse::Oracle;
        // The tree is allocated up front, a row of edges per node: refuse what cannot fit
        // rather than fail inside the allocator.
        let edges = num_sims
            .checked_add(1)
            .and_then(|cap| cap.checked_mul(batch))
            .and_then(|nodes| nodes.checked_mul(na));
        if edges.is_none_or(|e| e > MAX_TREE_EDGES) {
            return Err(SearchError::invalid(
                "budget",
                num_sims.saturating_add(1),
                format!(
                    "at most {MAX_TREE_EDGES} tree edges in all (roots x (budget) x actions = \
                     {batch} x {} x {na})",
                    num_sims.saturating_add(1)
                ),
            ));
        }
        let cap = num_sims + 1;
        self.stats.prepare(batch, cap, na, discount);
        self.stats.use_rewards = oracle;
        self.envs.clear();
        self.evals.clear();
        self.evals.resize(batch, 0);
        self.leaves.clear();
        self.leaves.resize(batch, 0);
        let spec = roots[0].spec();
        let fits = self.obs.as_ref().is_some_and(|o| {
            o.tokens.len() == spec.obs.tokens
                && o.features.len() == spec.obs.features
                && o.action_mask.len() == na
        });
        if !fits {
            self.obs = Some(Observation::zeros(spec));
        }
        evaluator.begin_search(roots)?;

        self.items.clear();
        for (b, root) in roots.iter().enumerate() {
            let slot = self.envs.len();
            self.envs.push(root.clone());
            self.stats.num_nodes[b] = 1;
            let idx = self.stats.idx(b, 0);
            let obs = observe(&mut self.obs, root);
            self.stats
                .init_node(idx, NO_PARENT, NO_PARENT, slot, Some(obs));
            if self.stats.leaf_end[idx] {
                return Err(SearchError::RootDone { root: b });
            }
            self.items.push(EvalItem {
                root: b as u32,
                node: 0,
                parent: NO_PARENT,
                action: NO_PARENT,
                depth: 0,
                slot: slot as u32,
            });
        }
        self.evaluate(evaluator, batch)?;
        rule.begin(&mut self.stats, sims, rng);
        self.active.clear();
        self.active.extend(sims.iter().map(|&n| n > 0));

        for sim in 0..num_sims {
            self.items.clear();
            for b in 0..batch {
                if !self.active[b] {
                    continue;
                }
                let mut node = 0u32;
                let mut depth = 0u32;
                let leaf = loop {
                    let idx = self.stats.idx(b, node);
                    let chosen = if self.stats.leaf_end[idx] {
                        None
                    } else {
                        rule.select(&self.stats, b, idx, depth, sim, rng)
                    };
                    let Some(a) = chosen else {
                        // A terminal node already in the tree: its value is known, so the
                        // simulation backs it up again at no evaluator cost.
                        self.stats.visits[idx] += 1;
                        break node;
                    };
                    let child = self.stats.child[idx * na + a];
                    if child == UNVISITED {
                        break self.expand(b, node, a, depth + 1, oracle)?;
                    }
                    node = child;
                    depth += 1;
                };
                self.leaves[b] = leaf;
            }
            if !self.items.is_empty() {
                self.evaluate(evaluator, batch)?;
            }
            let done = sim + 1;
            let mut any_active = false;
            for b in 0..batch {
                if !self.active[b] {
                    continue;
                }
                self.backward(b, self.leaves[b]);
                let stops = done >= sims[b]
                    || rule.finished(&self.stats, b, done)
                    || stop.is_some_and(|s| {
                        done >= s.min_simulations && rule.confidence(&self.stats, b) >= s.confidence
                    });
                self.active[b] = !stops;
                any_active |= !stops;
            }
            if !any_active {
                break;
            }
        }
        Ok(())
    }

    /// Creates the child of `parent` by `action` in root `b`'s tree and queues its evaluation
    /// (unless the oracle already knows its value). Returns the new node.
    fn expand(
        &mut self,
        b: usize,
        parent: u32,
        action: usize,
        depth: u32,
        oracle: bool,
    ) -> Result<u32, SearchError> {
        let st = &mut self.stats;
        let node = st.num_nodes[b];
        st.num_nodes[b] += 1;
        let pidx = st.idx(b, parent);
        let e = pidx * st.na + action;
        let mut env = self.envs[st.slot[pidx] as usize].clone();
        let step = env.step(action)?;
        let slot = self.envs.len();
        self.envs.push(env);
        st.child[e] = node;
        // The one place env rewards enter the tree, and only for the oracle.
        if oracle {
            st.reward[e] = step.reward;
        }
        let idx = st.idx(b, node);
        if step.done() {
            st.init_node(idx, parent, action as u32, slot, None);
        } else {
            let obs = observe(&mut self.obs, &self.envs[slot]);
            st.init_node(idx, parent, action as u32, slot, Some(obs));
        }
        if oracle && step.terminated {
            st.raw_value[idx] = 0.0;
            st.value[idx] = 0.0;
            st.visits[idx] = 1;
        } else {
            self.items.push(EvalItem {
                root: b as u32,
                node,
                parent,
                action: action as u32,
                depth,
                slot: slot as u32,
            });
        }
        Ok(node)
    }

    /// Evaluates the queued items in one call and writes priors and values into their nodes.
    fn evaluate(
        &mut self,
        evaluator: &mut dyn Evaluator<E>,
        num_roots: usize,
    ) -> Result<(), SearchError> {
        let n = self.items.len();
        let na = self.stats.na;
        if self.logits.len() < n * na {
            self.logits.resize(n * na, 0.0);
        }
        if self.values.len() < n {
            self.values.resize(n, 0.0);
        }
        let batch = EvalBatch::new(&self.envs, &self.items, num_roots);
        evaluator.evaluate(&batch, &mut self.logits[..n * na], &mut self.values[..n])?;
        let st = &mut self.stats;
        for (i, it) in self.items.iter().enumerate() {
            let b = it.root as usize;
            self.evals[b] += 1;
            let idx = st.idx(b, it.node);
            let v = self.values[i];
            if !v.is_finite() {
                return Err(SearchError::NonFinite {
                    what: "value",
                    root: b,
                });
            }
            st.raw_value[idx] = v;
            st.value[idx] = v;
            st.visits[idx] = 1;
            if !st.leaf_end[idx] {
                let r = idx * na..(idx + 1) * na;
                let logits = &self.logits[i * na..(i + 1) * na];
                let ok = if it.node == 0 {
                    masked_log_softmax(
                        logits,
                        &st.legal[r.clone()],
                        &mut st.root_log_prior[b * na..(b + 1) * na],
                        &mut st.prior[r],
                    )
                } else {
                    masked_softmax(logits, &st.legal[r.clone()], &mut st.prior[r])
                };
                if !ok {
                    return Err(SearchError::NonFinite {
                        what: "logit",
                        root: b,
                    });
                }
            }
        }
        Ok(())
    }

    /// Backs the value of `leaf` up to root `b`'s root.
    fn backward(&mut self, b: usize, leaf: u32) {
        let st = &mut self.stats;
        let na = st.na;
        let mut idx = st.idx(b, leaf);
        let mut node = leaf;
        let mut ret = st.value[idx];
        while node != 0 {
            let parent = st.parent[idx];
            let pidx = st.idx(b, parent);
            let e = pidx * na + st.action[idx] as usize;
            ret = if st.use_rewards {
                st.reward[e] + st.discount * ret
            } else {
                st.discount * ret
            };
            let count = st.visits[pidx] as f32;
            st.value[pidx] = (st.value[pidx] * count + ret) / (count + 1.0);
            st.visits[pidx] += 1;
            st.child_value[e] = st.value[idx];
            st.child_visits[e] += 1;
            idx = pidx;
            node = parent;
        }
    }
}

/// Writes `env`'s observation into the scratch buffers and returns its action mask.
fn observe<'a, E: Env>(obs: &'a mut Option<Observation>, env: &E) -> &'a [bool] {
    let obs = obs.get_or_insert_with(|| Observation::zeros(env.spec()));
    env.observe(obs.as_mut());
    &obs.action_mask
}
