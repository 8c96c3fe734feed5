//! Greedy, beam and sample-N on hand-built and random trees, checked by enumeration.

mod common;

use common::*;
use envs::{Env, EnvRng};
use proptest::prelude::*;
use rand::SeedableRng;
use search::testing::{TreeEnv, TreeNode};
use search::*;
use std::collections::HashSet;

fn log_softmax(l: &[f32]) -> Vec<f32> {
    let m = l.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let z: f32 = l.iter().map(|x| (x - m).exp()).sum();
    l.iter().map(|x| x - m - z.ln()).collect()
}

/// Every complete chain of `env` with its log-probability under `logits`, best first.
fn enumerate(env: &TreeEnv, logits: &[Vec<f32>]) -> Vec<(Vec<usize>, f32)> {
    let mut out: Vec<(Vec<usize>, f32)> = env
        .enumerate_paths()
        .into_iter()
        .map(|(path, _)| {
            let mut node = 0;
            let mut lp = 0.0;
            for &a in &path {
                lp += log_softmax(&logits[node])[a];
                node = env.nodes()[node].children[a].unwrap();
            }
            (path, lp)
        })
        .collect();
    out.sort_by(|x, y| y.1.total_cmp(&x.1));
    out
}

/// The textbook beam: extend every beam by every action, keep the `k` best extensions,
/// retire the finished ones; return the `k` best finished chains.
fn reference_beam(env: &TreeEnv, logits: &[Vec<f32>], k: usize) -> Vec<(Vec<usize>, f32)> {
    let nodes = env.nodes();
    let mut beams = vec![(Vec::<usize>::new(), 0.0f32, 0usize)];
    let mut finished = Vec::new();
    while !beams.is_empty() {
        let mut ext = Vec::new();
        for (path, lp, node) in &beams {
            let ls = log_softmax(&logits[*node]);
            for (a, c) in nodes[*node].children.iter().enumerate() {
                if let Some(c) = *c {
                    let mut p = path.clone();
                    p.push(a);
                    ext.push((p, lp + ls[a], c));
                }
            }
        }
        ext.sort_by(|x, y| y.1.total_cmp(&x.1));
        ext.truncate(k);
        beams.clear();
        for e in ext {
            if nodes[e.2].terminal {
                finished.push((e.0, e.1));
            } else {
                beams.push(e);
            }
        }
    }
    finished.sort_by(|x, y| y.1.total_cmp(&x.1));
    finished.truncate(k);
    finished
}

fn beam_candidates(
    env: &TreeEnv,
    logits: &[Vec<f32>],
    values: &[f32],
    k: usize,
) -> Vec<(Vec<usize>, f32)> {
    let mut beam = Beam::new(BeamConfig {
        width: k,
        score: BeamScore::LogProb,
    })
    .unwrap();
    let mut eval = by_node(values.to_vec(), logits.to_vec());
    let out = beam
        .search(
            std::slice::from_ref(env),
            &mut eval,
            10_000,
            &mut EnvRng::seed_from_u64(0),
        )
        .unwrap();
    out[0]
        .candidates
        .iter()
        .map(|c| (c.actions.clone(), c.log_prob))
        .collect()
}

fn assert_same_chains(got: &[(Vec<usize>, f32)], want: &[(Vec<usize>, f32)]) {
    assert_eq!(got.len(), want.len(), "got {got:?}\nwant {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.0, w.0, "got {got:?}\nwant {want:?}");
        assert!((g.1 - w.1).abs() < 1e-4, "{g:?} vs {w:?}");
    }
}

#[test]
fn wide_beam_returns_the_exact_top_k_by_enumeration() {
    for seed in 0..10 {
        let (env, logits, values) = random_tree(3, 3, 0.3, seed);
        let all = enumerate(&env, &logits);
        // Width 27 >= every level of a 3-ary depth-3 tree: beam search is exhaustive.
        for k in [1, 3, 27] {
            let k_top: Vec<_> = all.iter().take(k).cloned().collect();
            let got = beam_candidates(&env, &logits, &values, 27);
            assert_same_chains(&got[..k.min(got.len())], &k_top);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn beam_matches_the_textbook_beam(seed in 0u64..10_000, k in 1usize..6, depth in 2usize..5) {
        let (env, logits, values) = random_tree(depth, 3, 0.25, seed);
        let got = beam_candidates(&env, &logits, &values, k);
        let want = reference_beam(&env, &logits, k);
        assert_same_chains(&got, &want);
        // And its best chain is at least as likely as greedy's.
        let mut g = Greedy::new();
        let mut eval = by_node(values.clone(), logits.clone());
        let greedy = g.search(std::slice::from_ref(&env), &mut eval, 10_000, &mut EnvRng::seed_from_u64(0)).unwrap();
        prop_assert!(got[0].1 >= greedy[0].candidates[0].log_prob - 1e-5);
    }
}

/// Root: action 0 (p = 0.6) leads to three equally likely leaves (0.2 each); action 1
/// (p = 0.4) to a node with a single leaf (0.4).
fn greedy_trap() -> (TreeEnv, Vec<Vec<f32>>) {
    let nodes = vec![
        TreeNode::branch(vec![Some(1), Some(2)]),
        TreeNode::branch(vec![Some(3), Some(4), Some(5)]),
        TreeNode::branch(vec![Some(6)]),
        TreeNode::leaf(0.0),
        TreeNode::leaf(0.0),
        TreeNode::leaf(0.0),
        TreeNode::leaf(0.0),
    ];
    let logits = vec![
        vec![0.6f32.ln(), 0.4f32.ln(), 0.0],
        vec![0.0, 0.0, 0.0],
        vec![0.0, 0.0, 0.0],
    ];
    (TreeEnv::new(3, nodes).unwrap(), logits)
}

#[test]
fn beam_beats_greedy_on_the_greedy_trap() {
    let (env, logits) = greedy_trap();
    let mut eval = by_node(vec![], logits.clone());
    let g = Greedy::new()
        .search(
            std::slice::from_ref(&env),
            &mut eval,
            100,
            &mut EnvRng::seed_from_u64(0),
        )
        .unwrap();
    assert_eq!(g[0].actions, vec![0, 0]);
    assert!((g[0].candidates[0].log_prob - 0.2f32.ln()).abs() < 1e-5);
    assert!(g[0].done);
    assert_eq!(g[0].evals, 2);
    let b = Beam::new(BeamConfig {
        width: 2,
        score: BeamScore::LogProb,
    })
    .unwrap()
    .search(&[env], &mut eval, 100, &mut EnvRng::seed_from_u64(0))
    .unwrap();
    assert_eq!(b[0].actions, vec![1, 0]);
    assert!((b[0].candidates[0].log_prob - 0.4f32.ln()).abs() < 1e-5);
    assert_eq!(b[0].policy, vec![0.0, 1.0, 0.0]);
}

#[test]
fn beam_by_value_keeps_the_most_valued_states() {
    let (env, logits) = greedy_trap();
    // Leaf 4 (chain [0, 1]) is the one the value head likes.
    let values = vec![0.0, 0.1, 0.2, 0.3, 0.95, 0.5, 0.6];
    let mut eval = CountingEvaluator::new(by_node(values, logits));
    let out = Beam::new(BeamConfig {
        width: 1,
        score: BeamScore::Value { candidates: 3 },
    })
    .unwrap()
    .search(&[env], &mut eval, 100, &mut EnvRng::seed_from_u64(0))
    .unwrap();
    // Depth 1 keeps node 2 (0.2 > 0.1), so [0, 1] is out of reach at width 1: [1, 0] with 0.6.
    assert_eq!(out[0].actions, vec![1, 0]);
    assert!((out[0].value - 0.6).abs() < 1e-6);
    // Root + 2 children + 1 grandchild.
    assert_eq!(out[0].evals, 4);
}

#[test]
fn greedy_costs_one_evaluation_per_step_and_stops_at_the_budget() {
    // A line of five steps.
    let mut nodes: Vec<TreeNode> = (1..=5).map(|i| TreeNode::branch(vec![Some(i)])).collect();
    nodes.push(TreeNode::leaf(1.0));
    let env = TreeEnv::new(1, nodes).unwrap();
    let mut eval = UniformEvaluator::default();
    let mut g = Greedy::new();
    let full = g
        .search(
            std::slice::from_ref(&env),
            &mut eval,
            5,
            &mut EnvRng::seed_from_u64(0),
        )
        .unwrap();
    assert_eq!(
        (full[0].actions.len(), full[0].evals, full[0].done),
        (5, 5, true)
    );
    let cut = g
        .search(&[env], &mut eval, 3, &mut EnvRng::seed_from_u64(0))
        .unwrap();
    assert_eq!(
        (cut[0].actions.len(), cut[0].evals, cut[0].done),
        (3, 3, false)
    );
}

/// Three "thoughts" (p = 0.4, 0.3, 0.3), then an answer 0 or 1: after thought 0, answer 0 is
/// likely (0.9); after thoughts 1 and 2, answer 1 is (0.9). The most likely chain answers 0,
/// the most likely answer is 1 (0.58).
fn vote_tree() -> (TreeEnv, Vec<Vec<f32>>) {
    let nodes = vec![
        TreeNode::branch(vec![Some(1), Some(2), Some(3)]),
        TreeNode::branch(vec![Some(4), Some(5), None]),
        TreeNode::branch(vec![Some(6), Some(7), None]),
        TreeNode::branch(vec![Some(8), Some(9), None]),
    ]
    .into_iter()
    .chain((0..6).map(|_| TreeNode::leaf(0.0)))
    .collect();
    let ln = |p: f32| p.ln();
    let logits = vec![
        vec![ln(0.4), ln(0.3), ln(0.3)],
        vec![ln(0.9), ln(0.1), 0.0],
        vec![ln(0.1), ln(0.9), 0.0],
        vec![ln(0.1), ln(0.9), 0.0],
    ];
    (TreeEnv::new(3, nodes).unwrap(), logits)
}

fn sample(select: SampleSelect, n: usize) -> Sample<TreeEnv> {
    Sample::new(SampleConfig {
        num_samples: n,
        temperature: 1.0,
        select,
    })
    .unwrap()
}

#[test]
fn vote_likelihood_and_value_pick_what_they_should() {
    let (env, logits) = vote_tree();
    let values = vec![0.0, 0.0, 0.0, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.99];
    let roots = vec![env.clone(), env];
    let mut eval = by_node(values, logits);
    let mut rng = EnvRng::seed_from_u64(11);
    let vote = sample(SampleSelect::Vote, 200)
        .search(&roots, &mut eval, 10_000, &mut rng)
        .unwrap();
    for o in &vote {
        assert_eq!(o.actions[1], 1, "{:?}", o.actions);
        assert!((o.value - 0.58).abs() < 0.1, "vote share {}", o.value);
        assert!(o.policy[1] + o.policy[2] > 0.85, "{:?}", o.policy);
        assert!((o.policy.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        // 1 root + one thought state per chain.
        assert_eq!(o.evals, 201);
        assert_eq!(o.candidates.len(), 200);
    }
    let lik = sample(SampleSelect::BestLikelihood, 200)
        .search(&roots, &mut eval, 10_000, &mut rng)
        .unwrap();
    assert_eq!(lik[0].actions, vec![0, 0]);
    assert!((lik[0].candidates[0].log_prob - 0.36f32.ln()).abs() < 1e-5);
    let val = sample(SampleSelect::BestValue, 200)
        .search(&roots, &mut eval, 10_000, &mut rng)
        .unwrap();
    assert_eq!(val[0].actions, vec![2, 1]);
    assert!((val[0].value - 0.99).abs() < 1e-6);
    // The final states cost one evaluation each with BestValue.
    assert_eq!(val[0].evals, 401);
}

#[test]
fn vote_groups_by_the_answer_extractor() {
    let (env, logits) = vote_tree();
    let mut eval = by_node(vec![], logits);
    // Grouping by the whole chain makes [0, 0] (0.36) the largest group.
    let mut s = sample(SampleSelect::Vote, 300).with_answer(WholeChain);
    let out = s
        .search(&[env], &mut eval, 10_000, &mut EnvRng::seed_from_u64(4))
        .unwrap();
    assert_eq!(out[0].actions, vec![0, 0]);
}

#[test]
fn sampling_at_temperature_zero_is_greedy() {
    let (env, logits) = vote_tree();
    let mut eval = by_node(vec![], logits);
    let mut s = Sample::new(SampleConfig {
        num_samples: 4,
        temperature: 0.0,
        select: SampleSelect::Vote,
    })
    .unwrap();
    let out = s
        .search(&[env], &mut eval, 100, &mut EnvRng::seed_from_u64(0))
        .unwrap();
    assert!(out[0].candidates.iter().all(|c| c.actions == vec![0, 0]));
    assert_eq!(out[0].value, 1.0);
}

#[test]
fn sampling_cuts_chains_at_the_budget() {
    let (env, logits) = vote_tree();
    let mut eval = CountingEvaluator::new(by_node(vec![], logits));
    let out = sample(SampleSelect::Vote, 8)
        .search(&[env], &mut eval, 5, &mut EnvRng::seed_from_u64(0))
        .unwrap();
    assert_eq!(out[0].evals, 5);
    assert_eq!(eval.per_root[0], 5);
    let finished = out[0].candidates.iter().filter(|c| c.terminated).count();
    assert_eq!(finished, 4, "root + 4 thought states fit in 5 evaluations");
}

#[test]
fn no_searcher_exceeds_its_budget() {
    for seed in 0..4 {
        let (env, logits, values) = random_tree(4, 3, 0.3, seed);
        let mut second = env.clone();
        let a = (0..3).find(|&a| !env.nodes()[env.nodes()[0].children[a].unwrap()].terminal);
        let roots = match a {
            Some(a) => {
                second.step(a).unwrap();
                vec![env.clone(), second, env.clone()]
            }
            None => vec![env.clone(), env.clone()],
        };
        for budget in [1, 2, 3, 5, 8, 13, 40] {
            for mut s in all_searchers() {
                let mut eval = CountingEvaluator::new(by_node(values.clone(), logits.clone()));
                let out = s
                    .search(&roots, &mut eval, budget, &mut EnvRng::seed_from_u64(seed))
                    .unwrap();
                for (b, o) in out.iter().enumerate() {
                    assert!(o.evals <= budget, "{}: {} > {budget}", s.name(), o.evals);
                    assert_eq!(eval.per_root[b], o.evals, "{} root {b}", s.name());
                    // Every returned chain replays legally from its root.
                    let (end, _) = replay(&roots[b], &o.actions);
                    assert_eq!(end.is_done(), o.done, "{}: {:?}", s.name(), o);
                }
            }
        }
    }
}

#[test]
fn every_searcher_is_deterministic_given_the_seed() {
    let (env, logits, values) = random_tree(4, 3, 0.2, 9);
    for mut s in all_searchers() {
        let mut run = |seed| {
            let mut eval = by_node(values.clone(), logits.clone());
            s.search(
                &[env.clone(), env.clone()],
                &mut eval,
                30,
                &mut EnvRng::seed_from_u64(seed),
            )
            .unwrap()
        };
        let (a, b) = (run(3), run(3));
        assert_eq!(a, b);
    }
}

#[test]
fn requests_name_their_root_and_an_already_evaluated_parent() {
    let (env, logits, values) = random_tree(4, 3, 0.2, 5);
    let mut moved = env.clone();
    moved.step(1).unwrap();
    let roots = vec![env.clone(), moved];
    for mut s in all_searchers() {
        // (root, node) -> (tree node, depth) for every evaluated state of this search.
        let mut seen: std::collections::HashMap<(usize, u32), (usize, usize)> = Default::default();
        let mut ok = true;
        let nodes = env.nodes().to_vec();
        let root_nodes: Vec<usize> = roots.iter().map(|r| r.node()).collect();
        let mut eval = ScriptedEvaluator::new(|req: &EvalRequest<'_, TreeEnv>, row: &mut [f32]| {
            let here = req.env.node();
            match (req.parent, req.action) {
                (None, None) => {
                    ok &= req.node == 0 && req.depth == 0 && here == root_nodes[req.root]
                }
                (Some(p), Some(a)) => match seen.get(&(req.root, p)) {
                    Some(&(pn, pd)) => {
                        ok &= nodes[pn].children[a] == Some(here) && req.depth == pd + 1;
                    }
                    None => ok = false,
                },
                _ => ok = false,
            }
            ok &= seen
                .insert((req.root, req.node), (here, req.depth))
                .is_none();
            row[..3].copy_from_slice(&logits[here]);
            values[here]
        });
        s.search(&roots, &mut eval, 25, &mut EnvRng::seed_from_u64(1))
            .unwrap();
        assert!(ok, "{} broke the request contract", s.name());
        let per_root: HashSet<usize> = seen.keys().map(|k| k.0).collect();
        assert_eq!(per_root.len(), 2);
    }
}
