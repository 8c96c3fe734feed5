//! CotEnv on hand-checked Cycle examples, config rules and the observation layout.

use envs::{
    CotConfig, CotEnv, Cycle, Env, EnvError, EnvRng, OnCap, Phase, Problem, RewardConfig, Task,
};
use rand::SeedableRng;

/// A Cycle problem worked by hand (L = 8, H = 4): f = input, 0 -> 2 -> 3 -> 6 -> 5 -> 7, so
/// the chain is the 4 visited nodes after 0 and the answer is the fifth, 7.
fn worked_example() -> Problem {
    Problem {
        input: vec![2, 4, 3, 6, 0, 7, 5, 1],
        chain: vec![2, 3, 6, 5],
        answer: vec![7],
        difficulty: 4,
    }
}

fn run(env: &mut CotEnv<Cycle>, actions: &[usize]) -> (f32, bool, bool) {
    let mut total = 0.0;
    for &a in actions {
        let s = env.step(a).expect("legal action");
        total += s.reward;
        if s.done() {
            return (total, s.terminated, s.truncated);
        }
    }
    (total, false, false)
}

#[test]
fn worked_example_oracle_earns_one_and_wrong_answer_zero() {
    let mut env = CotEnv::new(Cycle::new(8).unwrap()).unwrap();
    env.reset_to(worked_example()).unwrap();
    assert_eq!(env.oracle_actions(), vec![2, 3, 6, 5, 8, 7]);
    let oracle = env.oracle_actions();
    assert_eq!(run(&mut env, &oracle), (1.0, true, false));
    assert_eq!(env.info().solved, Some(true));
    assert_eq!(env.step(0), Err(EnvError::EpisodeOver));

    env.reset_to(worked_example()).unwrap();
    assert_eq!(run(&mut env, &[2, 3, 8, 6]), (0.0, true, false));
    assert_eq!(env.info().solved, Some(false));
    // Answering straight away with the right node still counts: the chain is optional.
    env.reset_to(worked_example()).unwrap();
    assert_eq!(run(&mut env, &[8, 7]), (1.0, true, false));
}

#[test]
fn sampled_problems_match_their_own_pointers() {
    let task = Cycle::new(10).unwrap();
    let mut rng = EnvRng::seed_from_u64(3);
    for hops in 1..10 {
        let p = task.sample(hops, &mut rng).unwrap();
        let mut node = 0usize;
        for &c in &p.chain {
            node = p.input[node] as usize;
            assert_eq!(c as usize, node);
        }
        assert_eq!(p.answer, vec![p.input[node]]);
        assert_eq!(p.chain.len(), hops as usize);
    }
}

#[test]
fn observation_layout_and_masks() {
    let mut env = CotEnv::new(Cycle::new(8).unwrap()).unwrap();
    let spec = env.spec().clone();
    assert_eq!(spec.num_actions, 9);
    assert_eq!(spec.max_episode_steps, 7 + 1 + 1);
    assert_eq!(spec.obs.tokens, 8 + 1 + 9);
    env.reset_to(worked_example()).unwrap();
    let obs = env.observation();
    assert_eq!(&obs.tokens[..8], &[2, 4, 3, 6, 0, 7, 5, 1]);
    assert_eq!(obs.tokens[8], 3, "difficulty 4 - min 1");
    assert!(obs.tokens[9..].iter().all(|&t| t == 9), "PAD = vocab + 1");
    assert!(obs.action_mask.iter().all(|&m| m));
    env.step(2).unwrap();
    env.step(8).unwrap();
    let obs = env.observation();
    assert_eq!(&obs.tokens[9..12], &[2, 8, 9]);
    assert_eq!(env.phase(), Phase::Answer);
    assert!(obs.action_mask[..8].iter().all(|&m| m) && !obs.action_mask[8]);
}

#[test]
fn cap_force_answer_fixed_and_truncate() {
    let task = Cycle::new(8).unwrap();
    let cfg = CotConfig {
        max_chain_len: Some(2),
        ..CotConfig::default()
    };
    let mut env = CotEnv::with_config(task.clone(), cfg).unwrap();
    env.reset_to(worked_example()).unwrap();
    env.step(2).unwrap();
    env.step(3).unwrap();
    let mask = env.observation().action_mask;
    assert_eq!(mask.iter().filter(|&&m| m).count(), 1);
    assert!(mask[8]);
    assert!(matches!(env.step(6), Err(EnvError::IllegalAction { .. })));

    let fixed = CotConfig {
        max_chain_len: Some(2),
        fixed_chain_len: true,
        ..CotConfig::default()
    };
    let mut env = CotEnv::with_config(task.clone(), fixed).unwrap();
    env.reset_to(worked_example()).unwrap();
    assert!(!env.observation().action_mask[8]);
    assert!(env.step(8).is_err());

    let trunc = CotConfig {
        max_chain_len: Some(2),
        on_cap: OnCap::Truncate,
        ..CotConfig::default()
    };
    let mut env = CotEnv::with_config(task.clone(), trunc).unwrap();
    env.reset_to(worked_example()).unwrap();
    assert_eq!(run(&mut env, &[2, 3]), (0.0, false, true));
    assert_eq!(env.info().solved, Some(false));

    let bad = CotConfig {
        fixed_chain_len: true,
        on_cap: OnCap::Truncate,
        ..CotConfig::default()
    };
    let err = CotEnv::with_config(task.clone(), bad).unwrap_err();
    assert!(err.to_string().contains("on_cap"), "{err}");
    let bad = CotConfig {
        reward: RewardConfig {
            token_cost: -1.0,
            shaping: 0.0,
        },
        ..CotConfig::default()
    };
    let err = CotEnv::with_config(task, bad).unwrap_err();
    assert!(err.to_string().contains("reward.token_cost"), "{err}");
}

#[test]
fn shaping_and_token_cost() {
    let cfg = CotConfig {
        reward: RewardConfig {
            token_cost: 0.01,
            shaping: 0.5,
        },
        ..CotConfig::default()
    };
    let mut env = CotEnv::with_config(Cycle::new(8).unwrap(), cfg).unwrap();
    env.reset_to(worked_example()).unwrap();
    let r = env.step(2).unwrap().reward;
    assert!((r - (0.5 / 4.0 - 0.01)).abs() < 1e-6);
    let r = env.step(0).unwrap().reward;
    assert!((r + 0.01).abs() < 1e-6);
    let (lo, hi) = env.spec().reward_range;
    assert!(lo <= -0.01 && hi >= 1.0);
}

#[test]
fn bad_problems_and_difficulties_are_errors() {
    let mut env = CotEnv::new(Cycle::new(8).unwrap()).unwrap();
    assert_eq!(env.step(0), Err(EnvError::NotReset));
    let mut p = worked_example();
    p.input.push(0);
    assert!(env.reset_to(p).is_err());
    let mut p = worked_example();
    p.answer = vec![8];
    assert!(env.reset_to(p).is_err());
    let mut rng = EnvRng::seed_from_u64(0);
    let err = env.reset(&mut rng, 8).unwrap_err();
    assert!(
        err.to_string().contains("hops") && err.to_string().contains("1..=7"),
        "{err}"
    );
    let err = Cycle::new(1).unwrap_err();
    assert!(err.to_string().contains("length"), "{err}");
}

#[test]
fn oracle_action_follows_the_oracle_until_left() {
    let mut env = CotEnv::new(Cycle::new(8).unwrap()).unwrap();
    env.reset_to(worked_example()).unwrap();
    let mut taken = Vec::new();
    while let Some(a) = env.oracle_action() {
        taken.push(a);
        env.step(a).unwrap();
    }
    assert_eq!(taken, env.oracle_actions());
    env.reset_to(worked_example()).unwrap();
    env.step(1).unwrap();
    assert_eq!(env.oracle_action(), None);
}

/// A task whose problems break its spec (an answer token out of range).
#[derive(Debug, Clone)]
struct Liar(envs::TaskSpec);

impl Task for Liar {
    fn spec(&self) -> &envs::TaskSpec {
        &self.0
    }
    fn sample_into(
        &self,
        d: envs::Difficulty,
        _: &mut EnvRng,
        out: &mut Problem,
    ) -> Result<(), EnvError> {
        *out = Problem {
            input: vec![0; 8],
            chain: vec![],
            answer: vec![99],
            difficulty: d,
        };
        Ok(())
    }
}

#[test]
fn a_task_breaking_its_spec_is_an_error_at_reset() {
    let spec = Cycle::new(8).unwrap().spec().clone();
    let mut env = CotEnv::new(Liar(spec)).unwrap();
    let err = env.reset(&mut EnvRng::seed_from_u64(0), 1).unwrap_err();
    assert!(err.to_string().contains("problem.answer"), "{err}");
    assert!(envs::check_env(&mut env).is_err());
}
