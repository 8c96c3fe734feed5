//! Property tests of the tasks, CotEnv and VecEnv.

use envs::{
    check_env_with, CheckOptions, CotConfig, CotEnv, Cvpr, Cycle, DifficultySampler, Env, EnvRng,
    OnCap, Problem, RewardConfig, Task, VecEnv,
};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

/// A pointer task, a length and a hop count in its range.
fn pointer_case() -> impl Strategy<Value = (bool, usize, u32, u64)> {
    (
        any::<bool>(),
        prop_oneof![2usize..40, 100usize..300],
        any::<u64>(),
    )
        .prop_flat_map(|(cvpr, l, seed)| (Just(cvpr), Just(l), 1..l as u32, Just(seed)))
}

fn sample(cvpr: bool, l: usize, hops: u32, seed: u64) -> Problem {
    let mut rng = EnvRng::seed_from_u64(seed);
    if cvpr {
        Cvpr::new(l).unwrap().sample(hops, &mut rng).unwrap()
    } else {
        Cycle::new(l).unwrap().sample(hops, &mut rng).unwrap()
    }
}

/// Plays `actions` on a fresh episode of `p`; returns the total reward and `solved`.
fn play<T: Task>(env: &mut CotEnv<T>, p: &Problem, actions: &[usize]) -> (f32, Option<bool>) {
    env.reset_to(p.clone()).unwrap();
    let mut total = 0.0;
    for &a in actions {
        total += env.step(a).unwrap().reward;
    }
    assert!(env.is_done());
    (total, env.info().solved)
}

fn oracle_reward(cvpr: bool, l: usize, p: &Problem, wrong: Option<u32>) -> (f32, Option<bool>) {
    let fix = |mut a: Vec<usize>| {
        if let Some(w) = wrong {
            let last = a.len() - 1;
            a[last] = w as usize;
        }
        a
    };
    if cvpr {
        let mut env = CotEnv::new(Cvpr::new(l).unwrap()).unwrap();
        env.reset_to(p.clone()).unwrap();
        let a = fix(env.oracle_actions());
        play(&mut env, p, &a)
    } else {
        let mut env = CotEnv::new(Cycle::new(l).unwrap()).unwrap();
        env.reset_to(p.clone()).unwrap();
        let a = fix(env.oracle_actions());
        play(&mut env, p, &a)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn problems_are_well_formed((cvpr, l, hops, seed) in pointer_case()) {
        let p = sample(cvpr, l, hops, seed);
        prop_assert_eq!(p.input.len(), l);
        prop_assert!(p.input.iter().all(|&t| (t as usize) < l));
        prop_assert_eq!(p.chain.len(), hops as usize);
        prop_assert_eq!(p.difficulty, hops);
        // chain = f^1(0) .. f^H(0), answer = f^(H+1)(0).
        let mut node = 0usize;
        for &c in &p.chain {
            node = p.input[node] as usize;
            prop_assert_eq!(c as usize, node);
        }
        prop_assert_eq!(p.answer.clone(), vec![p.input[node]]);
        if cvpr {
            // An increasing chain that stops right after pH (the original's get_num_hops).
            prop_assert!(p.chain.windows(2).all(|w| w[0] < w[1]));
            let mut pos = 0usize;
            let mut count = 0;
            while (p.input[pos] as usize) > pos {
                pos = p.input[pos] as usize;
                count += 1;
            }
            prop_assert_eq!(count, hops);
        } else {
            // One cycle through every node: L reads from 0 return to 0, none earlier.
            let mut node = 0usize;
            for k in 1..=l {
                node = p.input[node] as usize;
                prop_assert_eq!(node == 0, k == l);
            }
        }
    }

    #[test]
    fn same_seed_same_problem((cvpr, l, hops, seed) in pointer_case()) {
        prop_assert_eq!(sample(cvpr, l, hops, seed), sample(cvpr, l, hops, seed));
    }

    #[test]
    fn oracle_earns_one_and_any_wrong_answer_zero((cvpr, l, hops, seed) in pointer_case(), off in 1u32..1000) {
        let p = sample(cvpr, l, hops, seed);
        prop_assert_eq!(oracle_reward(cvpr, l, &p, None), (1.0, Some(true)));
        let wrong = (p.answer[0] + off % l as u32) % l as u32;
        prop_assume!(wrong != p.answer[0]);
        prop_assert_eq!(oracle_reward(cvpr, l, &p, Some(wrong)), (0.0, Some(false)));
    }

    #[test]
    fn masks_match_legality_under_any_config(
        l in 2usize..10,
        seed in any::<u64>(),
        cap in prop::option::of(0usize..12),
        fixed in any::<bool>(),
        truncate in any::<bool>(),
        token_cost in 0f32..0.5,
        shaping in 0f32..2.0,
    ) {
        let cfg = CotConfig {
            max_chain_len: cap,
            fixed_chain_len: fixed,
            on_cap: if truncate { OnCap::Truncate } else { OnCap::ForceAnswer },
            reward: RewardConfig { token_cost, shaping },
        };
        let built = CotEnv::with_config(Cycle::new(l).unwrap(), cfg);
        if fixed && truncate {
            prop_assert!(built.is_err());
            return Ok(());
        }
        let mut env = built.unwrap();
        let mut rng = EnvRng::seed_from_u64(seed);
        let hops = rng.random_range(1..l as u32);
        env.reset(&mut rng, hops).unwrap();
        let (lo, hi) = env.spec().reward_range;
        let mut steps = 0;
        while !env.is_done() {
            let obs = env.observation();
            for a in 0..=env.spec().num_actions {
                let legal = a < obs.action_mask.len() && obs.action_mask[a];
                prop_assert_eq!(env.clone().step(a).is_ok(), legal, "action {}", a);
            }
            let legal = obs.legal_actions();
            prop_assert!(!legal.is_empty());
            let a = legal[rng.random_range(0..legal.len())];
            let r = env.step(a).unwrap().reward;
            prop_assert!(r.is_finite() && lo <= r && r <= hi);
            steps += 1;
            prop_assert!(steps <= env.spec().max_episode_steps);
        }
    }

    #[test]
    fn oracle_reaches_one_whenever_the_cap_allows_it(
        l in 2usize..12, seed in any::<u64>(), cap in 0usize..12, fixed in any::<bool>()
    ) {
        let cfg = CotConfig { max_chain_len: Some(cap), fixed_chain_len: fixed, ..CotConfig::default() };
        let mut env = CotEnv::with_config(Cycle::new(l).unwrap(), cfg).unwrap();
        let mut rng = EnvRng::seed_from_u64(seed);
        let hops = rng.random_range(1..l as u32);
        env.reset(&mut rng, hops).unwrap();
        prop_assert_eq!(env.oracle_feasible(), hops as usize <= cap);
        let mut total = 0.0;
        while let Some(a) = env.oracle_action() {
            total += env.step(a).unwrap().reward;
        }
        if env.oracle_feasible() {
            prop_assert_eq!(total, 1.0);
            prop_assert_eq!(env.emitted().len(), env.oracle_actions().len());
            if fixed {
                prop_assert_eq!(env.chain_len(), cap);
            }
        } else {
            prop_assert_eq!(env.emitted().len(), 0);
        }
    }

    #[test]
    fn checker_passes_random_configs(
        l in 2usize..7, cvpr in any::<bool>(), cap in prop::option::of(0usize..8),
        fixed in any::<bool>(), seed in any::<u64>()
    ) {
        let cfg = CotConfig { max_chain_len: cap, fixed_chain_len: fixed, ..CotConfig::default() };
        let opts = CheckOptions { seed, episodes_per_difficulty: 1, max_difficulties: 3 };
        if cvpr {
            let mut env = CotEnv::with_config(Cvpr::new(l).unwrap(), cfg).unwrap();
            prop_assert!(check_env_with(&mut env, &opts).is_ok());
        } else {
            let mut env = CotEnv::with_config(Cycle::new(l).unwrap(), cfg).unwrap();
            prop_assert!(check_env_with(&mut env, &opts).is_ok());
        }
    }

    #[test]
    fn vec_env_rows_equal_single_env_observations(
        l in 2usize..9, b in 1usize..6, seed in any::<u64>(), steps in 1usize..30
    ) {
        let env = CotEnv::new(Cvpr::new(l).unwrap()).unwrap();
        let levels: Vec<u32> = (1..l as u32).collect();
        let mut v = VecEnv::new(env, b, DifficultySampler::uniform(levels).unwrap()).unwrap();
        v.reset(seed).unwrap();
        let mut rng = EnvRng::seed_from_u64(seed);
        for _ in 0..steps {
            let actions: Vec<usize> = (0..b).map(|i| {
                let legal: Vec<usize> = (0..v.spec().num_actions)
                    .filter(|&a| v.action_mask()[(i, a)]).collect();
                if legal.is_empty() { 0 } else { legal[rng.random_range(0..legal.len())] }
            }).collect();
            v.step(&actions).unwrap();
            for i in 0..b {
                let obs = v.env(i).observation();
                prop_assert_eq!(v.tokens().row(i).to_vec(), obs.tokens);
                prop_assert_eq!(v.action_mask().row(i).to_vec(), obs.action_mask);
                prop_assert_eq!(v.done(i), v.env(i).is_done() && !v.autoreset()[i]);
            }
        }
    }
}
