//! Small envs and evaluators for tests, examples and benchmarks: [`TreeEnv`], an explicit
//! hand-built tree MDP (bandits, traps, random trees with known answers), and [`BenchEnv`] with
//! [`MlpEvaluator`], the hashed-state env and tiny plain-Rust MLP of the mctx comparison.

use crate::error::SearchError;
use crate::evaluator::{EvalBatch, Evaluator};
use envs::{
    Difficulty, DifficultyRange, Env, EnvError, EnvRng, EnvSpec, FeatureField, Info, ObsLayout,
    ObsMut, Step, TokenField,
};
use rand::{Rng, SeedableRng};
use std::sync::Arc;

/// One node of a [`TreeEnv`].
#[derive(Debug, Clone, PartialEq)]
pub struct TreeNode {
    /// `children[a]`: the node action `a` leads to; `None` makes `a` illegal here.
    pub children: Vec<Option<usize>>,
    /// Reward of the step that enters this node.
    pub reward: f32,
    /// Entering this node terminates the episode.
    pub terminal: bool,
}

impl TreeNode {
    /// An interior node with `children[a]` as in [`TreeNode::children`].
    pub fn branch(children: Vec<Option<usize>>) -> Self {
        TreeNode {
            children,
            reward: 0.0,
            terminal: false,
        }
    }

    /// A terminal node whose entering step pays `reward`.
    pub fn leaf(reward: f32) -> Self {
        TreeNode {
            children: Vec::new(),
            reward,
            terminal: true,
        }
    }
}

#[derive(Debug)]
struct TreeShared {
    spec: EnvSpec,
    nodes: Vec<TreeNode>,
}

/// An explicit tree- (or DAG-) shaped MDP: node 0 is the start, actions follow
/// [`TreeNode::children`], entering a node pays its reward and may terminate. The observation
/// is the node id (token field `"node"`) and the mask of its children. Cloning is one `Arc`
/// increment.
#[derive(Debug, Clone)]
pub struct TreeEnv {
    shared: Arc<TreeShared>,
    node: usize,
    steps: usize,
    done: bool,
}

impl TreeEnv {
    /// A tree env over `nodes` with `num_actions` actions, positioned at node 0. Checks that
    /// children exist, that every non-terminal node has a legal action and that the graph has
    /// no cycle (so episodes are bounded).
    pub fn new(num_actions: usize, nodes: Vec<TreeNode>) -> Result<Self, EnvError> {
        if nodes.is_empty() || nodes[0].terminal {
            return Err(EnvError::invalid(
                "nodes",
                nodes.len(),
                "a non-terminal root node 0",
            ));
        }
        for (i, n) in nodes.iter().enumerate() {
            if n.children.len() > num_actions {
                return Err(EnvError::invalid(
                    "children",
                    format!("{} at node {i}", n.children.len()),
                    format!("at most num_actions = {num_actions}"),
                ));
            }
            if let Some(&bad) = n.children.iter().flatten().find(|&&c| c >= nodes.len()) {
                return Err(EnvError::invalid(
                    "children",
                    format!("{bad} at node {i}"),
                    format!("a node index below {}", nodes.len()),
                ));
            }
            if !n.terminal && n.children.iter().all(Option::is_none) {
                return Err(EnvError::invalid(
                    "children",
                    format!("none at node {i}"),
                    "a legal action at every non-terminal node",
                ));
            }
        }
        let depth = longest_path(&nodes)
            .ok_or_else(|| EnvError::invalid("nodes", "a cycle", "an acyclic graph"))?;
        let (lo, hi) = nodes.iter().fold((0.0f32, 0.0f32), |(lo, hi), n| {
            (lo.min(n.reward), hi.max(n.reward))
        });
        let spec = EnvSpec {
            name: format!("tree(nodes={},A={num_actions})", nodes.len()),
            obs: ObsLayout {
                tokens: 1,
                features: 0,
                token_fields: vec![TokenField {
                    name: "node".to_string(),
                    offset: 0,
                    len: 1,
                    vocab: nodes.len(),
                }],
                feature_fields: Vec::new(),
            },
            num_actions,
            max_episode_steps: depth,
            difficulty: DifficultyRange { min: 0, max: 0 },
            reward_range: (lo, hi),
        };
        Ok(TreeEnv {
            shared: Arc::new(TreeShared { spec, nodes }),
            node: 0,
            steps: 0,
            done: false,
        })
    }

    /// A one-step bandit: arm `a` terminates with reward `rewards[a]`.
    pub fn bandit(rewards: &[f32]) -> Result<Self, EnvError> {
        let mut nodes = vec![TreeNode::branch((1..=rewards.len()).map(Some).collect())];
        nodes.extend(rewards.iter().map(|&r| TreeNode::leaf(r)));
        TreeEnv::new(rewards.len(), nodes)
    }

    /// A complete tree of the given depth and branching with a uniform random reward in [0, 1)
    /// at each leaf (nodes in breadth-first order).
    pub fn random(depth: usize, branching: usize, seed: u64) -> Result<Self, EnvError> {
        let mut rng = EnvRng::seed_from_u64(seed);
        let mut nodes = Vec::new();
        let mut level = vec![0usize];
        nodes.push(TreeNode::branch(Vec::new()));
        for d in 0..depth {
            let mut next = Vec::new();
            for &p in &level {
                let mut children = Vec::with_capacity(branching);
                for _ in 0..branching {
                    let id = nodes.len();
                    nodes.push(if d + 1 == depth {
                        TreeNode::leaf(rng.random::<f32>())
                    } else {
                        TreeNode::branch(Vec::new())
                    });
                    children.push(Some(id));
                    next.push(id);
                }
                nodes[p].children = children;
            }
            level = next;
        }
        TreeEnv::new(branching, nodes)
    }

    /// The current node.
    pub fn node(&self) -> usize {
        self.node
    }

    /// All nodes.
    pub fn nodes(&self) -> &[TreeNode] {
        &self.shared.nodes
    }

    /// Every action sequence from the current node to a terminal node, with its summed reward
    /// (for checking searchers by enumeration).
    pub fn enumerate_paths(&self) -> Vec<(Vec<usize>, f32)> {
        let mut out = Vec::new();
        let mut path = Vec::new();
        self.walk(self.node, 0.0, &mut path, &mut out);
        out
    }

    fn walk(&self, node: usize, ret: f32, path: &mut Vec<usize>, out: &mut Vec<(Vec<usize>, f32)>) {
        let n = &self.shared.nodes[node];
        if n.terminal && !path.is_empty() {
            out.push((path.clone(), ret));
            return;
        }
        for (a, c) in n.children.iter().enumerate() {
            if let Some(c) = *c {
                path.push(a);
                self.walk(c, ret + self.shared.nodes[c].reward, path, out);
                path.pop();
            }
        }
    }
}

fn longest_path(nodes: &[TreeNode]) -> Option<usize> {
    // Depth-first with colours: 0 unseen, 1 on the stack, 2 done.
    fn visit(i: usize, nodes: &[TreeNode], colour: &mut [u8], memo: &mut [usize]) -> Option<usize> {
        match colour[i] {
            1 => return None,
            2 => return Some(memo[i]),
            _ => {}
        }
        colour[i] = 1;
        let mut best = 0;
        if !nodes[i].terminal {
            for &c in nodes[i].children.iter().flatten() {
                best = best.max(1 + visit(c, nodes, colour, memo)?);
            }
        }
        colour[i] = 2;
        memo[i] = best;
        Some(best)
    }
    let mut colour = vec![0u8; nodes.len()];
    let mut memo = vec![0usize; nodes.len()];
    visit(0, nodes, &mut colour, &mut memo)
}

impl Env for TreeEnv {
    fn spec(&self) -> &EnvSpec {
        &self.shared.spec
    }

    fn reset(&mut self, _rng: &mut EnvRng, difficulty: Difficulty) -> Result<(), EnvError> {
        if difficulty != 0 {
            return Err(EnvError::DifficultyOutOfRange {
                env: self.shared.spec.name.clone(),
                difficulty,
                min: 0,
                max: 0,
            });
        }
        self.node = 0;
        self.steps = 0;
        self.done = false;
        Ok(())
    }

    fn step(&mut self, action: usize) -> Result<Step, EnvError> {
        if self.done {
            return Err(EnvError::EpisodeOver);
        }
        let child = self.shared.nodes[self.node]
            .children
            .get(action)
            .copied()
            .flatten()
            .ok_or_else(|| EnvError::IllegalAction {
                action,
                reason: format!("no child at node {}", self.node),
            })?;
        self.node = child;
        self.steps += 1;
        let n = &self.shared.nodes[child];
        self.done = n.terminal;
        Ok(Step {
            reward: n.reward,
            terminated: n.terminal,
            truncated: false,
        })
    }

    fn observe(&self, obs: ObsMut<'_>) {
        obs.tokens[0] = self.node as i64;
        let children = &self.shared.nodes[self.node].children;
        for (a, m) in obs.action_mask.iter_mut().enumerate() {
            *m = !self.done && children.get(a).is_some_and(Option::is_some);
        }
    }

    fn info(&self) -> Info {
        Info {
            difficulty: 0,
            steps: self.steps,
            solved: None,
        }
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn render(&self) -> String {
        format!(
            "node {}{}",
            self.node,
            if self.done { " (done)" } else { "" }
        )
    }
}

/// Number of features of a [`BenchEnv`] observation (the bits of its 32-bit state).
pub const BENCH_FEATURES: usize = 32;

/// The benchmark env: a 32-bit hashed state, `num_actions` actions all legal, no reward,
/// truncation after `horizon` steps. `step` is `state = fmix32(state ^ (a + 1) * 0x9e3779b9)`
/// and the observation is the state's 32 bits as ±1 features; the mctx side of
/// `scripts/bench/search_vs_mctx` runs the same dynamics in JAX.
#[derive(Debug, Clone)]
pub struct BenchEnv {
    spec: Arc<EnvSpec>,
    state: u32,
    steps: u32,
    horizon: u32,
}

/// murmur3's 32-bit finalizer.
pub fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

impl BenchEnv {
    /// A bench env with `num_actions` actions, truncating after `horizon` steps, at state
    /// `fmix32(seed)`.
    pub fn new(num_actions: usize, horizon: usize, seed: u32) -> Self {
        let spec = EnvSpec {
            name: format!("bench(A={num_actions})"),
            obs: ObsLayout {
                tokens: 0,
                features: BENCH_FEATURES,
                token_fields: Vec::new(),
                feature_fields: vec![FeatureField {
                    name: "bits".to_string(),
                    offset: 0,
                    len: BENCH_FEATURES,
                }],
            },
            num_actions,
            max_episode_steps: horizon,
            difficulty: DifficultyRange { min: 0, max: 0 },
            reward_range: (0.0, 0.0),
        };
        BenchEnv {
            spec: Arc::new(spec),
            state: fmix32(seed),
            steps: 0,
            horizon: horizon as u32,
        }
    }

    /// The hashed state.
    pub fn state(&self) -> u32 {
        self.state
    }
}

impl Env for BenchEnv {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    fn reset(&mut self, rng: &mut EnvRng, _difficulty: Difficulty) -> Result<(), EnvError> {
        self.state = fmix32(rng.random());
        self.steps = 0;
        Ok(())
    }

    fn step(&mut self, action: usize) -> Result<Step, EnvError> {
        if self.steps >= self.horizon {
            return Err(EnvError::EpisodeOver);
        }
        if action >= self.spec.num_actions {
            return Err(EnvError::IllegalAction {
                action,
                reason: format!("only {} actions", self.spec.num_actions),
            });
        }
        self.state = fmix32(self.state ^ (action as u32 + 1).wrapping_mul(0x9e37_79b9));
        self.steps += 1;
        Ok(Step {
            reward: 0.0,
            terminated: false,
            truncated: self.steps >= self.horizon,
        })
    }

    fn observe(&self, obs: ObsMut<'_>) {
        for (i, f) in obs.features.iter_mut().enumerate() {
            *f = if (self.state >> i) & 1 == 1 {
                1.0
            } else {
                -1.0
            };
        }
        obs.action_mask.fill(self.steps < self.horizon);
    }

    fn info(&self) -> Info {
        Info {
            difficulty: 0,
            steps: self.steps as usize,
            solved: None,
        }
    }

    fn is_done(&self) -> bool {
        self.steps >= self.horizon
    }

    fn render(&self) -> String {
        format!("state {:08x} step {}", self.state, self.steps)
    }
}

/// Outputs of a dense layer are computed in register blocks of this many.
const BLOCK: usize = 16;

/// A dense layer's weights, `w[k * stride + j]` for input `k`, output `j`; `stride` rounds the
/// outputs up to a whole number of blocks (the padding weights are zero).
#[derive(Debug, Clone)]
struct Dense {
    w: Vec<f32>,
    b: Vec<f32>,
    inputs: usize,
    outputs: usize,
    stride: usize,
}

impl Dense {
    fn new(inputs: usize, outputs: usize, rng: &mut EnvRng) -> Self {
        let bound = 1.0 / (inputs as f32).sqrt();
        let stride = outputs.div_ceil(BLOCK) * BLOCK;
        let mut w = vec![0.0; inputs * stride];
        for k in 0..inputs {
            for j in 0..outputs {
                w[k * stride + j] = rng.random_range(-bound..bound);
            }
        }
        let mut b = vec![0.0; stride];
        for bj in b.iter_mut().take(outputs) {
            *bj = rng.random_range(-bound..bound);
        }
        Dense {
            w,
            b,
            inputs,
            outputs,
            stride,
        }
    }

    /// Multiply-adds per row (padding excluded).
    fn macs(&self) -> usize {
        self.inputs * self.outputs
    }

    /// `y = x W + b` for `n` rows of `inputs` values (`x_stride` apart) into rows of `stride`
    /// values, optionally followed by ReLU. Each block of 16 outputs is accumulated in registers over the inputs,
    /// so every weight is loaded once per row and the loop vectorizes.
    fn forward(&self, x: &[f32], x_stride: usize, n: usize, y: &mut [f32], relu: bool) {
        let (ni, no) = (self.inputs, self.stride);
        for i in 0..n {
            let xi = &x[i * x_stride..i * x_stride + ni];
            let row = &mut y[i * no..(i + 1) * no];
            for j0 in (0..no).step_by(BLOCK) {
                let mut acc = [0.0f32; BLOCK];
                acc.copy_from_slice(&self.b[j0..j0 + BLOCK]);
                for (k, &xk) in xi.iter().enumerate() {
                    let w = &self.w[k * no + j0..k * no + j0 + BLOCK];
                    for t in 0..BLOCK {
                        acc[t] += xk * w[t];
                    }
                }
                let out = &mut row[j0..j0 + BLOCK];
                for t in 0..BLOCK {
                    out[t] = if relu { acc[t].max(0.0) } else { acc[t] };
                }
            }
        }
    }
}

/// A tiny MLP evaluator in plain Rust (f32 loops over the batch, no BLAS, no libtorch):
/// features → `hidden` → `hidden` (ReLU) → `num_actions` logits and a `tanh` value. Reads each
/// state's features with [`Env::observe`]. Used by the search benchmark against mctx.
#[derive(Debug, Clone)]
pub struct MlpEvaluator {
    l1: Dense,
    l2: Dense,
    head: Dense,
    num_actions: usize,
    x: Vec<f32>,
    h1: Vec<f32>,
    h2: Vec<f32>,
    y: Vec<f32>,
    obs: Option<envs::Observation>,
}

impl MlpEvaluator {
    /// A randomly initialized MLP (uniform ±1/√fan_in, seeded).
    pub fn new(features: usize, hidden: usize, num_actions: usize, seed: u64) -> Self {
        let mut rng = EnvRng::seed_from_u64(seed);
        MlpEvaluator {
            l1: Dense::new(features, hidden, &mut rng),
            l2: Dense::new(hidden, hidden, &mut rng),
            head: Dense::new(hidden, num_actions + 1, &mut rng),
            num_actions,
            x: Vec::new(),
            h1: Vec::new(),
            h2: Vec::new(),
            y: Vec::new(),
            obs: None,
        }
    }

    /// Multiply-adds per evaluated state.
    pub fn macs_per_state(&self) -> usize {
        self.l1.macs() + self.l2.macs() + self.head.macs()
    }
}

impl<E: Env> Evaluator<E> for MlpEvaluator {
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
        let (fi, na) = (self.l1.inputs, self.num_actions);
        let spec = batch.env(0).spec();
        if spec.obs.features != fi || spec.num_actions != na {
            return Err(SearchError::invalid(
                "mlp input",
                format!(
                    "{} features, {} actions",
                    spec.obs.features, spec.num_actions
                ),
                format!("{fi} features and {na} actions"),
            ));
        }
        let obs = self
            .obs
            .get_or_insert_with(|| envs::Observation::zeros(spec));
        self.x.resize(n * fi, 0.0);
        for i in 0..n {
            batch.env(i).observe(obs.as_mut());
            self.x[i * fi..(i + 1) * fi].copy_from_slice(&obs.features);
        }
        self.h1.resize(n * self.l1.stride, 0.0);
        self.h2.resize(n * self.l2.stride, 0.0);
        let out = self.head.stride;
        self.y.resize(n * out, 0.0);
        self.l1.forward(&self.x, fi, n, &mut self.h1, true);
        self.l2
            .forward(&self.h1, self.l1.stride, n, &mut self.h2, true);
        self.head
            .forward(&self.h2, self.l2.stride, n, &mut self.y, false);
        for i in 0..n {
            let row = &self.y[i * out..(i + 1) * out];
            logits[i * na..(i + 1) * na].copy_from_slice(&row[..na]);
            values[i] = row[na].tanh();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_env_matches_the_jax_dynamics_of_the_mctx_script() {
        // Values computed by scripts/bench/search_vs_mctx.py's `fmix32` and `recurrent_fn`.
        for (seed, action, root, next) in [
            (0u32, 0usize, 0u32, 2_462_723_854u32),
            (1, 5, 1_364_076_727, 2_400_168_771),
            (2, 39, 821_347_078, 1_899_401_834),
        ] {
            let mut env = BenchEnv::new(40, 10, seed);
            assert_eq!(env.state(), root);
            env.step(action).unwrap();
            assert_eq!(env.state(), next);
        }
        let mut env = BenchEnv::new(40, 10, 0);
        env.step(0).unwrap();
        let obs = env.observation();
        assert_eq!(
            &obs.features[..8],
            &[-1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0]
        );
    }

    #[test]
    fn tree_env_rejects_cycles_and_dead_ends() {
        let cyclic = vec![
            TreeNode::branch(vec![Some(1)]),
            TreeNode::branch(vec![Some(0)]),
        ];
        assert!(TreeEnv::new(1, cyclic).is_err());
        let dead = vec![
            TreeNode::branch(vec![Some(1)]),
            TreeNode::branch(vec![None]),
        ];
        assert!(TreeEnv::new(1, dead).is_err());
        let env = TreeEnv::random(2, 3, 0).unwrap();
        assert_eq!(env.nodes().len(), 13);
        assert_eq!(env.enumerate_paths().len(), 9);
        assert_eq!(env.spec().max_episode_steps, 2);
    }

    #[test]
    fn mlp_evaluator_is_deterministic_and_finite() {
        let roots: Vec<BenchEnv> = (0..5).map(|s| BenchEnv::new(40, 10, s)).collect();
        let items: Vec<crate::evaluator::EvalItem> = (0..5)
            .map(|i| crate::evaluator::EvalItem {
                root: i,
                node: 0,
                parent: crate::util::NO_PARENT,
                action: crate::util::NO_PARENT,
                depth: 0,
                slot: i,
            })
            .collect();
        let batch = EvalBatch::new(&roots, &items, 5);
        let run = || {
            let mut mlp = MlpEvaluator::new(BENCH_FEATURES, 24, 40, 3);
            let (mut l, mut v) = (vec![0.0; 200], vec![0.0; 5]);
            Evaluator::<BenchEnv>::evaluate(&mut mlp, &batch, &mut l, &mut v).unwrap();
            (l, v)
        };
        let (l, v) = run();
        assert_eq!((l.clone(), v.clone()), run());
        assert!(l.iter().chain(&v).all(|x| x.is_finite()));
        assert!(v.iter().all(|x| x.abs() < 1.0));
        // Different states, different outputs.
        assert_ne!(l[..40], l[40..80]);
    }
}
