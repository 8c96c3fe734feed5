//! Test-time search must not read the env's rewards: only the labelled oracle evaluator may.

mod common;

use common::*;
use envs::{Env, EnvRng};
use rand::{Rng, SeedableRng};
use search::testing::{TreeEnv, TreeNode};
use search::*;

/// The same tree with every reward redrawn.
fn with_other_rewards(env: &TreeEnv, seed: u64) -> TreeEnv {
    let mut rng = EnvRng::seed_from_u64(seed);
    let nodes: Vec<TreeNode> = env
        .nodes()
        .iter()
        .map(|n| TreeNode {
            reward: rng.random_range(-5.0..5.0),
            ..n.clone()
        })
        .collect();
    TreeEnv::new(env.spec().num_actions, nodes).unwrap()
}

#[test]
fn default_searches_do_not_depend_on_rewards() {
    for seed in 0..5 {
        let (env, logits, values) = random_tree(4, 3, 0.3, seed);
        let other = with_other_rewards(&env, seed + 100);
        for mut s in all_searchers() {
            let mut run = |root: &TreeEnv| {
                let mut eval = by_node(values.clone(), logits.clone());
                s.search(
                    std::slice::from_ref(root),
                    &mut eval,
                    40,
                    &mut EnvRng::seed_from_u64(seed),
                )
                .unwrap()
            };
            assert_eq!(run(&env), run(&other), "{} read the rewards", s.name());
        }
    }
}

/// A bandit whose true rewards favour arm 0 while the value head favours arm 1: node 1 is
/// arm 0's terminal state, node 2 arm 1's.
fn disagreement() -> (TreeEnv, Vec<f32>) {
    (TreeEnv::bandit(&[1.0, 0.0]).unwrap(), vec![0.5, 0.2, 0.8])
}

fn value_searchers() -> Vec<Box<dyn Searcher<TreeEnv>>> {
    vec![
        Box::new(Mcts::new(MctsConfig::evaluation()).unwrap()),
        Box::new(
            GumbelMuZero::new(GumbelConfig {
                gumbel_scale: 0.0,
                ..GumbelConfig::default()
            })
            .unwrap(),
        ),
        Box::new(
            Beam::new(BeamConfig {
                width: 1,
                score: BeamScore::Value { candidates: 2 },
            })
            .unwrap(),
        ),
        Box::new(
            Sample::new(SampleConfig {
                num_samples: 16,
                temperature: 1.0,
                select: SampleSelect::BestValue,
            })
            .unwrap(),
        ),
    ]
}

#[test]
fn honest_search_follows_the_value_head_and_the_oracle_follows_the_reward() {
    let (env, values) = disagreement();
    for mut s in value_searchers() {
        let mut honest = by_node(values.clone(), vec![]);
        assert_eq!(honest.reward_use(), RewardUse::Ignore);
        let out = s
            .search(
                std::slice::from_ref(&env),
                &mut honest,
                20,
                &mut EnvRng::seed_from_u64(0),
            )
            .unwrap();
        assert_eq!(out[0].actions, vec![1], "{} (honest)", s.name());
        assert!(
            (out[0].value - 0.8).abs() < 0.35,
            "{}: {}",
            s.name(),
            out[0].value
        );

        let mut oracle = OracleEvaluator::new(by_node(values.clone(), vec![]));
        assert_eq!(oracle.reward_use(), RewardUse::Oracle);
        let out = s
            .search(
                std::slice::from_ref(&env),
                &mut oracle,
                20,
                &mut EnvRng::seed_from_u64(0),
            )
            .unwrap();
        assert_eq!(out[0].actions, vec![0], "{} (oracle)", s.name());
    }
}

#[test]
fn the_oracle_skips_evaluating_terminated_states() {
    // It knows their value (the rewards collected), so a bandit costs only the root.
    let (env, values) = disagreement();
    let mut oracle = CountingEvaluator::new(OracleEvaluator::new(by_node(values, vec![])));
    let out = Mcts::new(MctsConfig::evaluation())
        .unwrap()
        .search(&[env], &mut oracle, 20, &mut EnvRng::seed_from_u64(0))
        .unwrap();
    assert_eq!(out[0].evals, 1);
    assert_eq!(oracle.per_root[0], 1);
    // The root's value converges to the best arm's reward.
    assert!(out[0].value > 0.8, "{}", out[0].value);
}

#[test]
fn oracle_backs_up_intermediate_rewards_and_honest_search_does_not() {
    // Action 0 pays 1 on the way, then ends with 0; action 1 pays nothing, then ends with 0.5.
    let nodes = vec![
        TreeNode::branch(vec![Some(1), Some(2)]),
        TreeNode {
            children: vec![Some(3)],
            reward: 1.0,
            terminal: false,
        },
        TreeNode::branch(vec![Some(4)]),
        TreeNode::leaf(0.0),
        TreeNode::leaf(0.5),
    ];
    let env = TreeEnv::new(2, nodes).unwrap();
    let mut mcts = Mcts::new(MctsConfig::evaluation()).unwrap();
    let mut oracle = OracleEvaluator::new(UniformEvaluator::new(0.0));
    let out = mcts
        .search(
            std::slice::from_ref(&env),
            &mut oracle,
            30,
            &mut EnvRng::seed_from_u64(0),
        )
        .unwrap();
    assert_eq!(out[0].actions, vec![0]);
    assert!((out[0].value - 1.0).abs() < 0.1, "{}", out[0].value);
    // Honest, with a value head that (correctly) rates the states after the first step alike,
    // nothing separates the two actions but the terminal values it gives.
    let mut honest = by_node(vec![0.0, 0.3, 0.3, 0.1, 0.6], vec![]);
    let out = mcts
        .search(&[env], &mut honest, 30, &mut EnvRng::seed_from_u64(0))
        .unwrap();
    assert_eq!(out[0].actions, vec![1]);
}
