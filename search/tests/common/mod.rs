//! Helpers shared by the integration tests: scripted evaluators over `TreeEnv` node ids,
//! random trees, and one of each searcher.
#![allow(dead_code)]

use envs::{Env, EnvRng};
use rand::{Rng, SeedableRng};
use search::testing::{TreeEnv, TreeNode};
use search::*;

/// A scripted evaluator giving node `i` the value `values[i]` and logits `logits[i]` (zeros
/// when `logits` is shorter).
pub fn by_node(
    values: Vec<f32>,
    logits: Vec<Vec<f32>>,
) -> ScriptedEvaluator<impl FnMut(&EvalRequest<'_, TreeEnv>, &mut [f32]) -> f32> {
    ScriptedEvaluator::new(move |req: &EvalRequest<'_, TreeEnv>, row: &mut [f32]| {
        let n = req.env.node();
        if let Some(l) = logits.get(n) {
            row[..l.len()].copy_from_slice(l);
        }
        values.get(n).copied().unwrap_or(0.0)
    })
}

/// A random tree: each interior node has `branching` children, a child below the root is a
/// leaf with probability `p_leaf` (always at `depth`); leaf rewards and per-node logits and
/// values are random. Returns the env and, per node, (logits, value).
pub fn random_tree(
    depth: usize,
    branching: usize,
    p_leaf: f64,
    seed: u64,
) -> (TreeEnv, Vec<Vec<f32>>, Vec<f32>) {
    let mut rng = EnvRng::seed_from_u64(seed);
    let mut nodes = vec![TreeNode::branch(Vec::new())];
    let mut frontier = vec![(0usize, 0usize)];
    while let Some((p, d)) = frontier.pop() {
        let mut children = Vec::new();
        for _ in 0..branching {
            let id = nodes.len();
            let leaf = d + 1 == depth || rng.random_bool(p_leaf);
            nodes.push(if leaf {
                TreeNode::leaf(rng.random::<f32>())
            } else {
                TreeNode::branch(Vec::new())
            });
            if !leaf {
                frontier.push((id, d + 1));
            }
            children.push(Some(id));
        }
        nodes[p].children = children;
    }
    let logits = (0..nodes.len())
        .map(|_| {
            (0..branching)
                .map(|_| rng.random_range(-2.0..2.0))
                .collect()
        })
        .collect();
    let values = (0..nodes.len()).map(|_| rng.random::<f32>()).collect();
    (
        TreeEnv::new(branching, nodes).expect("valid random tree"),
        logits,
        values,
    )
}

/// One searcher of each kind, at test-friendly settings.
pub fn all_searchers() -> Vec<Box<dyn Searcher<TreeEnv>>> {
    vec![
        Box::new(Greedy::new()),
        Box::new(
            Beam::new(BeamConfig {
                width: 3,
                score: BeamScore::LogProb,
            })
            .unwrap(),
        ),
        Box::new(
            Beam::new(BeamConfig {
                width: 2,
                score: BeamScore::Value { candidates: 4 },
            })
            .unwrap(),
        ),
        Box::new(Sample::new(SampleConfig::default()).unwrap()),
        Box::new(
            Sample::new(SampleConfig {
                num_samples: 5,
                temperature: 1.0,
                select: SampleSelect::BestValue,
            })
            .unwrap(),
        ),
        Box::new(
            Sample::new(SampleConfig {
                num_samples: 4,
                temperature: 0.7,
                select: SampleSelect::BestLikelihood,
            })
            .unwrap(),
        ),
        Box::new(Mcts::new(MctsConfig::default()).unwrap()),
        Box::new(GumbelMuZero::new(GumbelConfig::default()).unwrap()),
    ]
}

/// Replays `actions` from `root` and returns the final env and the summed reward.
pub fn replay<E: Env>(root: &E, actions: &[usize]) -> (E, f32) {
    let mut env = root.clone();
    let mut ret = 0.0;
    for &a in actions {
        ret += env
            .step(a)
            .expect("searcher returned an illegal chain")
            .reward;
    }
    (env, ret)
}
