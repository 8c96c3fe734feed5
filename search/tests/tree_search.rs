//! MCTS and Gumbel MuZero on hand-built trees and bandits with known answers.

mod common;

use common::*;
use envs::EnvRng;
use rand::SeedableRng;
use search::testing::{BenchEnv, MlpEvaluator, TreeEnv, TreeNode, BENCH_FEATURES};
use search::*;

/// Root actions: 0 → a node that looks good (0.6) but leads to leaves worth 0.2 and 0.1;
/// 1 → a node that looks bad (0.3) but leads to 0.9 and 0.2; 2 → a leaf worth 0.5.
/// The best first action is 1.
fn trap() -> (TreeEnv, Vec<f32>) {
    let nodes = vec![
        TreeNode::branch(vec![Some(1), Some(2), Some(3)]),
        TreeNode::branch(vec![Some(4), Some(5)]),
        TreeNode::branch(vec![Some(6), Some(7)]),
        TreeNode::leaf(0.0),
        TreeNode::leaf(0.0),
        TreeNode::leaf(0.0),
        TreeNode::leaf(0.0),
        TreeNode::leaf(0.0),
    ];
    let values = vec![0.4, 0.6, 0.3, 0.5, 0.2, 0.1, 0.9, 0.2];
    (TreeEnv::new(3, nodes).unwrap(), values)
}

#[test]
fn mcts_concentrates_on_the_best_action_as_the_budget_grows() {
    let (env, values) = trap();
    let mut mcts = Mcts::new(MctsConfig::evaluation()).unwrap();
    let mut shares = Vec::new();
    for budget in [16, 64, 128, 256, 512, 1024] {
        let mut eval = by_node(values.clone(), vec![]);
        let out = mcts
            .search(
                std::slice::from_ref(&env),
                &mut eval,
                budget,
                &mut EnvRng::seed_from_u64(0),
            )
            .unwrap();
        let v = &out[0].visit_counts;
        shares.push(v[1] as f32 / v.iter().sum::<u32>() as f32);
        // A small search settles for the safe 0.5 leaf; a large one finds the 0.9 behind the
        // bad-looking node.
        let expected = if budget >= 128 { 1 } else { 2 };
        assert_eq!(
            out[0].actions,
            vec![expected],
            "budget {budget}: visits {v:?}"
        );
    }
    assert!(shares.windows(2).all(|w| w[1] >= w[0]), "{shares:?}");
    assert!(shares[0] < 0.2 && shares[5] > 0.9, "{shares:?}");
}

#[test]
fn gumbel_finds_the_best_action_behind_the_trap() {
    let (env, values) = trap();
    let cfg = GumbelConfig {
        gumbel_scale: 0.0,
        ..GumbelConfig::default()
    };
    let mut g = GumbelMuZero::new(cfg).unwrap();
    let mut eval = by_node(values, vec![]);
    let out = g
        .search(&[env], &mut eval, 65, &mut EnvRng::seed_from_u64(0))
        .unwrap();
    assert_eq!(out[0].actions, vec![1], "{:?}", out[0]);
    let p = &out[0].policy;
    assert!(p[1] > p[0] && p[1] > p[2], "{p:?}");
}

#[test]
fn gumbel_improved_policy_matches_its_formula_on_a_bandit() {
    let logits = vec![0.5f32, 0.0, -0.5, 1.0];
    let q = [0.2f32, 0.8, 0.5, 0.1];
    let env = TreeEnv::bandit(&[0.0; 4]).unwrap();
    let root_value = 0.3f32;
    // Node 0 is the root, node 1 + a the leaf of arm a.
    let mut values = vec![root_value];
    values.extend_from_slice(&q);
    for (m, budget) in [(2usize, 5usize), (4, 7), (16, 20)] {
        let cfg = GumbelConfig {
            max_num_considered_actions: m,
            ..GumbelConfig::default()
        };
        let mut g = GumbelMuZero::new(cfg).unwrap();
        let mut eval = by_node(values.clone(), vec![logits.clone()]);
        let out = &g
            .search(
                std::slice::from_ref(&env),
                &mut eval,
                budget,
                &mut EnvRng::seed_from_u64(m as u64),
            )
            .unwrap()[0];
        let n: Vec<f32> = out.visit_counts.iter().map(|&v| v as f32).collect();
        let total: f32 = n.iter().sum();
        assert_eq!(total as usize, budget - 1);
        if m == 2 {
            // Sequential halving with 2 considered actions over 4 simulations: 2 visits each.
            assert_eq!(out.visit_counts.iter().filter(|&&v| v == 2).count(), 2);
            assert_eq!(out.visit_counts.iter().filter(|&&v| v == 0).count(), 2);
        }
        // The formula, written out: prior, mixed value, completed Q, rescale, σ, softmax.
        let z: f32 = logits.iter().map(|l| l.exp()).sum();
        let prior: Vec<f32> = logits.iter().map(|l| l.exp() / z).collect();
        let visited: Vec<usize> = (0..4).filter(|&a| n[a] > 0.0).collect();
        let sum_p: f32 = visited.iter().map(|&a| prior[a]).sum();
        let wq: f32 = visited.iter().map(|&a| prior[a] * q[a]).sum::<f32>() / sum_p;
        let mixed = (root_value + total * wq) / (total + 1.0);
        let completed: Vec<f32> = (0..4)
            .map(|a| if n[a] > 0.0 { q[a] } else { mixed })
            .collect();
        let lo = completed.iter().cloned().fold(f32::INFINITY, f32::min);
        let hi = completed.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let max_n = n.iter().cloned().fold(0.0, f32::max);
        let sigma: Vec<f32> = completed
            .iter()
            .map(|c| (50.0 + max_n) * 0.1 * (c - lo) / (hi - lo).max(1e-8))
            .collect();
        let zz: f32 = (0..4).map(|a| (logits[a] + sigma[a]).exp()).sum();
        for a in 0..4 {
            let expected = (logits[a] + sigma[a]).exp() / zz;
            assert!(
                (out.policy[a] - expected).abs() < 1e-5,
                "m={m} a={a}: {} vs {expected}",
                out.policy[a]
            );
        }
        // The value is the root's running mean: raw value plus one return per simulation.
        let v = (root_value + (0..4).map(|a| n[a] * q[a]).sum::<f32>()) / (total + 1.0);
        assert!((out.value - v).abs() < 1e-5, "{} vs {v}", out.value);
        // The action is among the most visited.
        assert_eq!(n[out.actions[0]], max_n);
    }
}

#[test]
fn gumbel_interior_selection_follows_the_prior_when_visited_q_values_tie() {
    // A full binary tree of depth 3: node i has children 2i + 1 (action 0) and 2i + 2 (action
    // 1), nodes 7..=14 are terminal leaves. Node 1 is valued 1 but both its children 0, so once
    // both are visited their Q-values tie below the mixed value; its logits favour action 1,
    // towards node 4 and the leaf 9 worth 1. Following softmax(logits + σ) there reveals that
    // leaf and makes root action 0 the best. Picking node 1's first action instead (as a
    // selection that lets the mixed value into its scores does, all scores becoming NaN) never
    // finds it and flips the root's choice to action 1.
    let nodes: Vec<TreeNode> = (0..15)
        .map(|i| {
            if i < 7 {
                TreeNode::branch(vec![Some(2 * i + 1), Some(2 * i + 2)])
            } else {
                TreeNode::leaf(0.0)
            }
        })
        .collect();
    let env = TreeEnv::new(2, nodes).unwrap();
    let mut values = vec![0.0f32; 15];
    values[1] = 1.0;
    values[2] = 0.5;
    values[6] = 0.5;
    values[9] = 1.0;
    let logits = vec![vec![-1.0, 1.0], vec![0.0, 1.0]];
    let cfg = GumbelConfig {
        gumbel_scale: 0.0,
        ..GumbelConfig::default()
    };
    let mut g = GumbelMuZero::new(cfg).unwrap();
    let mut eval = by_node(values, logits);
    let out = &g
        .search(&[env], &mut eval, 10, &mut EnvRng::seed_from_u64(0))
        .unwrap()[0];
    // What mctx's gumbel_muzero_policy returns on the same tree (terminal leaves keep their
    // value when revisited).
    assert_eq!(out.actions, vec![0], "{out:?}");
    assert_eq!(out.visit_counts, vec![5, 4], "{out:?}");
    assert!((out.value - 0.4).abs() < 1e-6, "{out:?}");
    for (p, want) in out.policy.iter().zip([0.970_687_75f32, 0.029_312_23]) {
        assert!((p - want).abs() < 1e-5, "{out:?}");
    }
}

#[test]
fn gumbel_sequential_halving_spends_visits_by_the_table() {
    let env = TreeEnv::bandit(&[0.0; 6]).unwrap();
    let values = vec![0.0, 0.1, 0.9, 0.3, 0.5, 0.2, 0.7];
    let cfg = GumbelConfig {
        max_num_considered_actions: 4,
        ..GumbelConfig::default()
    };
    let mut g = GumbelMuZero::new(cfg).unwrap();
    for seed in 0..5 {
        let mut eval = by_node(values.clone(), vec![]);
        let out = &g
            .search(
                std::slice::from_ref(&env),
                &mut eval,
                9,
                &mut EnvRng::seed_from_u64(seed),
            )
            .unwrap()[0];
        // considered_visits(4, 8) = [0,0,0,0,1,1,2,2]: four actions once, then two of them twice
        // more.
        let mut v = out.visit_counts.clone();
        v.sort_unstable();
        assert_eq!(v, vec![0, 0, 1, 1, 3, 3], "seed {seed}");
    }
}

/// With `whole_rounds`, a budget that ends partway through a Sequential Halving round stops
/// at that round's start: the two survivors keep equal visits, and the rest is not spent.
#[test]
fn gumbel_whole_rounds_stop_at_the_last_complete_round() {
    let env = TreeEnv::bandit(&[0.0; 6]).unwrap();
    let values = vec![0.0, 0.1, 0.9, 0.3, 0.5, 0.2, 0.7];
    for (whole_rounds, expected) in [
        (false, vec![0, 0, 1, 1, 2, 3]),
        (true, vec![0, 0, 1, 1, 2, 2]),
    ] {
        let cfg = GumbelConfig {
            max_num_considered_actions: 4,
            whole_rounds,
            ..GumbelConfig::default()
        };
        let mut g = GumbelMuZero::new(cfg).unwrap();
        for seed in 0..5 {
            let mut eval = by_node(values.clone(), vec![]);
            // 7 simulations: considered_visits(4, 7) = [0,0,0,0,1,1,2], the last round cut.
            let out = &g
                .search(
                    std::slice::from_ref(&env),
                    &mut eval,
                    8,
                    &mut EnvRng::seed_from_u64(seed),
                )
                .unwrap()[0];
            let mut v = out.visit_counts.clone();
            v.sort_unstable();
            assert_eq!(v, expected, "whole_rounds {whole_rounds}, seed {seed}");
            let chosen = out.actions[0];
            assert_eq!(out.visit_counts[chosen], 2 + u32::from(!whole_rounds));
        }
    }
}

#[test]
fn mcts_with_dirichlet_noise_is_seeded() {
    let (env, values) = trap();
    let run = |seed: u64| {
        let mut mcts = Mcts::<TreeEnv>::new(MctsConfig::default()).unwrap();
        let mut eval = by_node(values.clone(), vec![]);
        mcts.search(
            &[env.clone(), env.clone()],
            &mut eval,
            30,
            &mut EnvRng::seed_from_u64(seed),
        )
        .unwrap()
    };
    assert_eq!(run(5), run(5));
    let differs = (0..10).any(|s| run(s)[0].visit_counts != run(s + 10)[0].visit_counts);
    assert!(differs, "root noise never changed the search");
}

#[test]
fn tree_searches_spend_exactly_one_evaluation_per_new_node() {
    // An env that never ends within the search, so every simulation adds a node: evals ==
    // budget, and one evaluator call per simulation for all roots together.
    let roots: Vec<BenchEnv> = (0..3).map(|s| BenchEnv::new(6, 1000, s)).collect();
    for budget in [1, 2, 17, 50] {
        let searchers: Vec<Box<dyn Searcher<BenchEnv>>> = vec![
            Box::new(Mcts::new(MctsConfig::default()).unwrap()),
            Box::new(GumbelMuZero::new(GumbelConfig::default()).unwrap()),
        ];
        for mut s in searchers {
            let mut eval = CountingEvaluator::new(MlpEvaluator::new(BENCH_FEATURES, 16, 6, 0));
            let out = s
                .search(&roots, &mut eval, budget, &mut EnvRng::seed_from_u64(1))
                .unwrap();
            for (b, o) in out.iter().enumerate() {
                assert_eq!(o.evals, budget, "{} root {b}", s.name());
                assert_eq!(eval.per_root[b], budget);
                assert_eq!(o.visit_counts.iter().sum::<u32>() as usize, budget - 1);
            }
            assert_eq!(eval.calls, budget, "{}: one call per simulation", s.name());
            assert_eq!(eval.max_batch, roots.len());
        }
    }
}

#[test]
fn revisiting_terminal_nodes_costs_nothing() {
    // A 3-armed bandit has 4 states: however large the budget, at most 4 evaluations.
    let env = TreeEnv::bandit(&[0.0; 3]).unwrap();
    let mut mcts = Mcts::new(MctsConfig::evaluation()).unwrap();
    let mut eval = CountingEvaluator::new(by_node(vec![0.0, 0.2, 0.9, 0.4], vec![]));
    let out = mcts
        .search(&[env], &mut eval, 100, &mut EnvRng::seed_from_u64(0))
        .unwrap();
    assert_eq!(out[0].evals, 4);
    assert_eq!(out[0].visit_counts.iter().sum::<u32>(), 99);
    assert_eq!(out[0].actions, vec![1]);
    assert!(out[0].done);
    assert!(out[0].visit_counts[1] > 80, "{:?}", out[0].visit_counts);
}

#[test]
fn illegal_actions_are_never_selected() {
    let nodes = vec![
        TreeNode::branch(vec![None, Some(1), None, Some(2)]),
        TreeNode::leaf(0.0),
        TreeNode::leaf(0.0),
    ];
    let env = TreeEnv::new(4, nodes).unwrap();
    // The evaluator strongly prefers the illegal actions.
    let logits = vec![vec![9.0, 0.0, 9.0, 0.0]];
    for mut s in all_searchers() {
        let mut eval = by_node(vec![0.0, 0.3, 0.6], logits.clone());
        let out = s
            .search(
                std::slice::from_ref(&env),
                &mut eval,
                20,
                &mut EnvRng::seed_from_u64(2),
            )
            .unwrap();
        let o = &out[0];
        assert!(
            o.actions[0] == 1 || o.actions[0] == 3,
            "{}: {:?}",
            s.name(),
            o
        );
        assert_eq!(o.policy[0] + o.policy[2], 0.0, "{}", s.name());
        assert!(
            (o.policy.iter().sum::<f32>() - 1.0).abs() < 1e-5,
            "{}",
            s.name()
        );
    }
}

/// A budget whose tree, beam or sample set cannot fit in memory is refused with an error,
/// not a failed allocation or an overflow.
#[test]
fn an_impossible_budget_is_an_error() {
    let mut rng = EnvRng::seed_from_u64(0);
    let mut env = envs::CotEnv::new(envs::Cycle::new(6).unwrap()).unwrap();
    envs::Env::reset(&mut env, &mut rng, 2).unwrap();
    let roots = vec![env];
    let mut ev = UniformEvaluator::new(0.0);
    for budget in [usize::MAX, 1 << 40] {
        let mut mcts = Mcts::new(MctsConfig::default()).unwrap();
        let err = mcts.search(&roots, &mut ev, budget, &mut rng).unwrap_err();
        assert!(err.to_string().contains("tree edges"), "{err}");
        let mut gumbel = GumbelMuZero::new(GumbelConfig::default()).unwrap();
        let err = gumbel
            .search(&roots, &mut ev, budget, &mut rng)
            .unwrap_err();
        assert!(err.to_string().contains("tree edges"), "{err}");
    }
    for width in [usize::MAX, 1 << 30] {
        let mut beam = Beam::new(BeamConfig {
            width,
            score: BeamScore::LogProb,
        })
        .unwrap();
        let err = beam.search(&roots, &mut ev, 100, &mut rng).unwrap_err();
        assert!(err.to_string().contains("chains in all"), "{err}");
        let mut sample = Sample::<envs::CotEnv<envs::Cycle>>::new(SampleConfig {
            num_samples: width,
            ..SampleConfig::default()
        })
        .unwrap();
        let err = sample.search(&roots, &mut ev, 100, &mut rng).unwrap_err();
        assert!(err.to_string().contains("chains in all"), "{err}");
    }
    // A budget per root: one for each root, each at least 1.
    for budgets in [&[4, 4][..], &[][..], &[0][..]] {
        let mut mcts = Mcts::new(MctsConfig::default()).unwrap();
        let mut gumbel = GumbelMuZero::new(GumbelConfig::default()).unwrap();
        assert!(mcts
            .search_each(&roots, &mut ev, budgets, &mut rng)
            .is_err());
        assert!(gumbel
            .search_each(&roots, &mut ev, budgets, &mut rng)
            .is_err());
    }
}

/// The tree searchers at test time (no noise, the best action), with `early_stop`.
fn test_time_tree_searchers(early_stop: Option<EarlyStop>) -> Vec<Box<dyn Searcher<BenchEnv>>> {
    vec![
        Box::new(
            Mcts::new(MctsConfig {
                early_stop,
                ..MctsConfig::evaluation()
            })
            .unwrap(),
        ),
        Box::new(
            GumbelMuZero::new(GumbelConfig {
                gumbel_scale: 0.0,
                early_stop,
                ..GumbelConfig::default()
            })
            .unwrap(),
        ),
    ]
}

#[test]
fn a_budget_per_root_searches_each_root_as_alone_in_one_batch() {
    let roots: Vec<BenchEnv> = (0..4).map(|s| BenchEnv::new(6, 1000, s)).collect();
    let budgets = [3, 17, 1, 40];
    for (mut batched, mut alone) in test_time_tree_searchers(None)
        .into_iter()
        .zip(test_time_tree_searchers(None))
    {
        let mut eval = CountingEvaluator::new(MlpEvaluator::new(BENCH_FEATURES, 16, 6, 0));
        let out = batched
            .search_each(&roots, &mut eval, &budgets, &mut EnvRng::seed_from_u64(1))
            .unwrap();
        // One evaluator call per simulation step for all roots still simulating.
        assert_eq!(eval.calls, 40, "{}", batched.name());
        for (b, o) in out.iter().enumerate() {
            assert_eq!(o.evals, budgets[b], "{} root {b}", batched.name());
            assert_eq!(eval.per_root[b], budgets[b]);
            let single = alone
                .search(
                    std::slice::from_ref(&roots[b]),
                    &mut MlpEvaluator::new(BENCH_FEATURES, 16, 6, 0),
                    budgets[b],
                    &mut EnvRng::seed_from_u64(1),
                )
                .unwrap();
            assert_eq!(o, &single[0], "{} root {b}", batched.name());
        }
    }
    // A budget list of the wrong length is an error naming it.
    let mut mcts = Mcts::new(MctsConfig::evaluation()).unwrap();
    let mut eval = MlpEvaluator::new(BENCH_FEATURES, 16, 6, 0);
    let err = mcts
        .search_each(&roots, &mut eval, &[4, 4], &mut EnvRng::seed_from_u64(1))
        .unwrap_err();
    assert!(err.to_string().contains("budgets"), "{err}");
}

#[test]
fn early_stop_ends_a_root_once_it_is_confident_and_never_before_the_minimum() {
    let roots: Vec<BenchEnv> = (0..32).map(|s| BenchEnv::new(6, 1000, s)).collect();
    let budget = 65;
    let stop = EarlyStop {
        confidence: 0.9,
        min_simulations: 8,
    };
    for (mut anytime, mut fixed) in test_time_tree_searchers(Some(stop))
        .into_iter()
        .zip(test_time_tree_searchers(None))
    {
        let name = anytime.name();
        let mut eval = CountingEvaluator::new(MlpEvaluator::new(BENCH_FEATURES, 16, 6, 0));
        let out = anytime
            .search(&roots, &mut eval, budget, &mut EnvRng::seed_from_u64(2))
            .unwrap();
        let full = fixed
            .search(
                &roots,
                &mut MlpEvaluator::new(BENCH_FEATURES, 16, 6, 0),
                budget,
                &mut EnvRng::seed_from_u64(2),
            )
            .unwrap();
        let mut stopped = 0;
        for (b, o) in out.iter().enumerate() {
            // Every new node is evaluated in this env: simulations = evals - 1.
            let sims = o.visit_counts.iter().sum::<u32>() as usize;
            assert_eq!(o.evals, sims + 1, "{name} root {b}");
            assert_eq!(eval.per_root[b], o.evals);
            assert!(sims >= stop.min_simulations, "{name} root {b}: {sims}");
            let confidence = if name == "mcts" {
                *o.visit_counts.iter().max().unwrap() as f32 / sims as f32
            } else {
                o.policy.iter().copied().fold(0.0, f32::max)
            };
            if sims < budget - 1 {
                stopped += 1;
                assert!(
                    confidence >= stop.confidence,
                    "{name} root {b}: {confidence}"
                );
            } else {
                // A root that ran its whole budget is the fixed-budget search.
                assert_eq!(o, &full[b], "{name} root {b}");
            }
        }
        // The threshold is met by some roots and not by others on these problems.
        assert!(
            stopped > 0 && stopped < roots.len(),
            "{name}: {stopped} of {} roots stopped early",
            roots.len()
        );
    }
    // A threshold outside (0, 1] is refused, naming it.
    let bad = EarlyStop {
        confidence: 1.5,
        min_simulations: 1,
    };
    let err = Mcts::<BenchEnv>::new(MctsConfig {
        early_stop: Some(bad),
        ..MctsConfig::evaluation()
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains("early_stop.confidence"), "{err}");
}
