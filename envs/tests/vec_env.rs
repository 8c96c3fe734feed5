//! VecEnv: buffers, next-step autoreset, seeds, mixed difficulties, threads.

use envs::{CotEnv, Cvpr, Cycle, DifficultySampler, Env, EnvError, Observation, VecEnv};

fn cycle_vec(b: usize, sampler: DifficultySampler) -> VecEnv<CotEnv<Cycle>> {
    VecEnv::new(CotEnv::new(Cycle::new(6).unwrap()).unwrap(), b, sampler).unwrap()
}

/// Each env's oracle action (ANSWER-less envs pick 0 when reset is pending).
fn oracle_actions<E: Env>(v: &VecEnv<E>) -> Vec<usize> {
    v.envs().map(|e| e.oracle_action().unwrap_or(0)).collect()
}

#[test]
fn buffers_match_each_env_observation() {
    let mut v = cycle_vec(5, DifficultySampler::uniform(vec![1, 3, 5]).unwrap());
    v.reset(7).unwrap();
    for _ in 0..12 {
        for i in 0..v.num_envs() {
            let obs: Observation = v.env(i).observation();
            assert_eq!(v.tokens().row(i).to_vec(), obs.tokens);
            assert_eq!(v.action_mask().row(i).to_vec(), obs.action_mask);
        }
        let a = oracle_actions(&v);
        v.step(&a).unwrap();
    }
    assert_eq!(v.tokens().shape(), &[5, 6 + 1 + 5 + 2]);
    assert_eq!(v.features().shape(), &[5, 0]);
}

#[test]
fn next_step_autoreset() {
    let mut v = cycle_vec(1, DifficultySampler::Fixed(2));
    v.reset(1).unwrap();
    // Oracle: 2 chain tokens, ANSWER, answer = 4 steps; the 4th terminates.
    for _ in 0..3 {
        let a = oracle_actions(&v);
        v.step(&a).unwrap();
        assert!(!v.done(0));
    }
    let a = oracle_actions(&v);
    v.step(&a).unwrap();
    assert!(v.terminated()[0] && !v.truncated()[0] && !v.autoreset()[0]);
    assert_eq!(v.rewards()[0], 1.0);
    assert_eq!(v.info(0).solved, Some(true), "the finished episode's info");
    // The next step ignores the action (even an out-of-range one) and resets.
    v.step(&[999]).unwrap();
    assert!(v.autoreset()[0] && !v.done(0));
    assert_eq!(v.rewards()[0], 0.0);
    assert_eq!(v.info(0).steps, 0);
    assert_eq!(v.info(0).solved, None);
}

#[test]
fn illegal_actions_name_the_env_and_step_nothing() {
    let mut v = cycle_vec(3, DifficultySampler::Fixed(2));
    v.reset(0).unwrap();
    let before = v.tokens().clone();
    let err = v.step(&[0, 99, 0]).unwrap_err();
    assert!(matches!(err, EnvError::InBatch { index: 1, .. }), "{err}");
    assert_eq!(v.tokens(), &before);
    assert!(v.step(&[0, 0]).is_err());
    let mut fresh = cycle_vec(1, DifficultySampler::Fixed(2));
    assert_eq!(fresh.step(&[0]), Err(EnvError::NotReset));
}

#[test]
fn same_seed_same_run_and_seeds_differ_between_envs() {
    let run = |seed: u64, parallel: bool| {
        let mut v = cycle_vec(8, DifficultySampler::uniform(vec![1, 2, 3, 4, 5]).unwrap());
        v.set_parallel(parallel);
        v.reset(seed).unwrap();
        let mut trace = Vec::new();
        for _ in 0..20 {
            let a = oracle_actions(&v);
            v.step(&a).unwrap();
            trace.extend(v.tokens().iter().copied());
        }
        trace
    };
    assert_eq!(run(5, false), run(5, false));
    assert_eq!(run(5, false), run(5, true), "threads do not change results");
    assert_ne!(run(5, false), run(6, false));
    let mut v = cycle_vec(8, DifficultySampler::Fixed(3));
    v.reset(0).unwrap();
    let first: Vec<_> = v.tokens().row(0).to_vec();
    assert!((1..8).any(|i| v.tokens().row(i).to_vec() != first));
}

#[test]
fn cvpr_batches_mix_hop_counts() {
    let env = CotEnv::new(Cvpr::new(20).unwrap()).unwrap();
    let mut v = VecEnv::new(env, 64, DifficultySampler::uniform(vec![2, 5, 9]).unwrap()).unwrap();
    v.reset(11).unwrap();
    let mut seen: Vec<u32> = v.envs().map(|e| e.info().difficulty).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, vec![2, 5, 9]);
    let mut episodes = 0;
    let mut solved = 0;
    for _ in 0..30 {
        let a = oracle_actions(&v);
        v.step(&a).unwrap();
        for i in 0..v.num_envs() {
            if v.done(i) {
                episodes += 1;
                solved += usize::from(v.info(i).solved == Some(true));
            }
        }
    }
    assert!(episodes > 64);
    assert_eq!(
        solved, episodes,
        "the oracle solves every mixed-hop problem"
    );
}

#[test]
fn sampler_outside_the_env_range_is_an_error() {
    let env = CotEnv::new(Cycle::new(6).unwrap()).unwrap();
    let err = VecEnv::new(env.clone(), 2, DifficultySampler::Fixed(6)).unwrap_err();
    assert!(err.to_string().contains("1..=5"), "{err}");
    assert!(VecEnv::new(env.clone(), 0, DifficultySampler::Fixed(1)).is_err());
    assert!(DifficultySampler::uniform(vec![]).is_err());
}
