//! Think<E>: returns preserved without thoughts, thoughts priced and bounded, observation
//! layout, checker on wrapped envs.

use envs::binpack::{BinPack, BinPackConfig, BINPACK_DIFFICULTY};
use envs::{
    check_env, CotEnv, Cycle, Difficulty, Env, EnvError, EnvRng, Multiplication, Think, ThinkConfig,
};
use rand::{Rng, SeedableRng};

fn config(k: usize, v: usize, penalty: f32) -> ThinkConfig {
    ThinkConfig {
        max_thoughts: k,
        vocab: v,
        penalty,
    }
}

/// Plays the same seeded episodes on `env` and on `Think(env)`; the wrapped agent emits
/// `thoughts_per_step` random thoughts before each real action (the real actions are the
/// same random legal ones). Returns (inner return, wrapped return, thoughts emitted) summed.
fn paired_returns<E: Env>(
    env: E,
    think: ThinkConfig,
    thoughts_per_step: usize,
    difficulty: Difficulty,
    episodes: u64,
) -> (f64, f64, usize) {
    let mut plain = env.clone();
    let mut wrapped = Think::new(env, think).unwrap();
    let n_inner = plain.spec().num_actions;
    let (mut r_plain, mut r_wrapped, mut thoughts) = (0.0f64, 0.0f64, 0);
    for seed in 0..episodes {
        plain
            .reset(&mut EnvRng::seed_from_u64(seed), difficulty)
            .unwrap();
        wrapped
            .reset(&mut EnvRng::seed_from_u64(seed), difficulty)
            .unwrap();
        let mut rng = EnvRng::seed_from_u64(1000 + seed);
        while !plain.is_done() {
            for _ in 0..thoughts_per_step {
                let t = rng.random_range(0..think.vocab);
                r_wrapped += f64::from(wrapped.step(wrapped.thought_action(t)).unwrap().reward);
                thoughts += 1;
            }
            let obs = plain.observation();
            let wobs = wrapped.observation();
            // The inner part of the wrapped observation is the inner observation.
            assert_eq!(&wobs.tokens[..obs.tokens.len()], &obs.tokens[..]);
            assert_eq!(wobs.features, obs.features);
            assert_eq!(&wobs.action_mask[..n_inner], &obs.action_mask[..]);
            let legal = obs.legal_actions();
            let a = legal[rng.random_range(0..legal.len())];
            let s = plain.step(a).unwrap();
            let w = wrapped.step(a).unwrap();
            assert_eq!(s, w);
            r_plain += f64::from(s.reward);
            r_wrapped += f64::from(w.reward);
        }
        assert!(wrapped.is_done());
        assert_eq!(wrapped.info().solved, plain.info().solved);
    }
    (r_plain, r_wrapped, thoughts)
}

#[test]
fn no_thoughts_preserve_returns() {
    let cycle = CotEnv::new(Cycle::new(8).unwrap()).unwrap();
    let binpack = BinPack::new(BinPackConfig::default()).unwrap();
    for k in [0, 1, 3] {
        let (a, b, _) = paired_returns(cycle.clone(), config(k, 4, 0.5), 0, 3, 50);
        assert_eq!(a, b);
        let (a, b, _) = paired_returns(
            binpack.clone(),
            config(k, 4, 0.5),
            0,
            BINPACK_DIFFICULTY,
            20,
        );
        assert_eq!(a, b);
    }
}

#[test]
fn thoughts_cost_their_penalty_and_nothing_else() {
    let cycle = CotEnv::new(Cycle::new(8).unwrap()).unwrap();
    let (a, b, n) = paired_returns(cycle, config(2, 5, 0.25), 2, 4, 30);
    assert!(n > 0);
    assert!((b - (a - 0.25 * n as f64)).abs() < 1e-6, "{a} {b} {n}");
    let binpack = BinPack::new(BinPackConfig::toy(10, 8)).unwrap();
    let (a, b, n) = paired_returns(binpack, config(3, 2, 0.0), 3, BINPACK_DIFFICULTY, 20);
    assert!(n > 0);
    assert!((a - b).abs() < 1e-9, "free thoughts changed the return");
}

#[test]
fn at_most_k_thoughts_then_a_real_action() {
    let inner = CotEnv::new(Cycle::new(6).unwrap()).unwrap();
    let n_inner = inner.spec().num_actions;
    let mut env = Think::new(inner, config(2, 3, 0.1)).unwrap();
    let spec = env.spec().clone();
    assert_eq!(spec.num_actions, n_inner + 3);
    let field = spec.obs.token_field("thoughts").unwrap();
    assert_eq!((field.len, field.vocab), (2, 4));
    assert_eq!(field.offset + field.len, spec.obs.tokens);
    assert_eq!(
        spec.max_episode_steps,
        3 * CotEnv::new(Cycle::new(6).unwrap())
            .unwrap()
            .spec()
            .max_episode_steps
    );
    assert_eq!(spec.reward_range.0, -0.1);

    assert_eq!(env.step(env.thought_action(0)), Err(EnvError::NotReset));
    env.reset(&mut EnvRng::seed_from_u64(0), 2).unwrap();
    let thoughts = |e: &Think<CotEnv<Cycle>>| {
        let obs = e.observation();
        obs.tokens[field.offset..field.offset + field.len].to_vec()
    };
    assert_eq!(thoughts(&env), [3, 3]);
    assert!(env.observation().action_mask[n_inner..].iter().all(|&m| m));
    let s = env.step(env.thought_action(2)).unwrap();
    assert_eq!(s.reward, -0.1);
    assert!(!s.done());
    env.step(env.thought_action(0)).unwrap();
    assert_eq!(thoughts(&env), [2, 0]);
    assert_eq!(env.thoughts(), [2, 0]);
    let obs = env.observation();
    assert!(obs.action_mask[n_inner..].iter().all(|&m| !m), "K reached");
    assert!(
        obs.action_mask[..n_inner].iter().any(|&m| m),
        "a real action stays legal"
    );
    let before = env.observation();
    assert!(matches!(
        env.step(env.thought_action(1)),
        Err(EnvError::IllegalAction { .. })
    ));
    assert!(matches!(
        env.step(spec.num_actions),
        Err(EnvError::IllegalAction { .. })
    ));
    assert_eq!(
        env.observation(),
        before,
        "a rejected thought changed the state"
    );
    assert_eq!(env.info().steps, 2);
    let a = env.oracle_action().unwrap();
    assert!(a < n_inner, "the oracle takes real actions");
    env.step(a).unwrap();
    assert_eq!(thoughts(&env), [3, 3], "thoughts clear after a real action");
    assert_eq!(env.info().steps, 3);
    while let Some(a) = env.oracle_action() {
        env.step(a).unwrap();
    }
    assert!(env.is_done());
    assert_eq!(env.info().solved, Some(true));
    assert_eq!(env.step(env.thought_action(0)), Err(EnvError::EpisodeOver));
    assert!(env.observation().action_mask.iter().all(|&m| !m));
}

#[test]
fn invalid_configs_are_errors() {
    let inner = CotEnv::new(Cycle::new(6).unwrap()).unwrap();
    for (bad, name) in [
        (config(1, 0, 0.0), "thought_vocab"),
        (config(1, 4, -1.0), "thought_penalty"),
        (config(1, 4, f32::NAN), "thought_penalty"),
        (config(1 << 20, 4, 0.0), "max_thoughts"),
    ] {
        match Think::new(inner.clone(), bad) {
            Err(EnvError::InvalidParameter { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn checker_passes_on_wrapped_envs() {
    let cycle = CotEnv::new(Cycle::new(8).unwrap()).unwrap();
    check_env(&mut Think::new(cycle.clone(), config(2, 4, 0.01)).unwrap()).unwrap();
    check_env(&mut Think::new(cycle, config(0, 1, 0.0)).unwrap()).unwrap();
    // The default BinPack passes in binpack_env.rs; a small one keeps this test fast.
    let binpack = BinPack::new(BinPackConfig::toy(8, 6)).unwrap();
    check_env(&mut Think::new(binpack, config(3, 8, 0.0)).unwrap()).unwrap();
    let mult = CotEnv::new(Multiplication::new(4).unwrap()).unwrap();
    check_env(&mut Think::new(mult, ThinkConfig::default()).unwrap()).unwrap();
}

#[test]
fn registry_wraps_any_env() {
    use envs::registry;
    for name in ["cycle", "binpack", "multiplication"] {
        let mut p = envs::EnvParams::new();
        if name == "binpack" {
            p.set_text("items", "6");
            p.set_text("ems", "12");
        }
        let plain = registry::make(name, &p).unwrap();
        p.set_text("thoughts", "2");
        p.set_text("thought-vocab", "5");
        p.set_text("thought_penalty", "0.01");
        let mut env = registry::make(name, &p).unwrap();
        assert!(matches!(env, envs::AnyEnv::Think(_)));
        assert_eq!(env.spec().num_actions, plain.spec().num_actions + 5);
        assert!(
            env.spec().name.starts_with("think(K=2, V=5"),
            "{}",
            env.spec().name
        );
        check_env(&mut env).unwrap();
    }
    let mut p = envs::EnvParams::new();
    p.set_text("thought_vocab", "5");
    let err = registry::make("cycle", &p).unwrap_err();
    assert!(err.to_string().contains("thoughts"), "{err}");
}

#[test]
fn binpack_and_think_run_in_a_vec_env() {
    use envs::{DifficultySampler, VecEnv};
    let binpack = BinPack::new(BinPackConfig::toy(10, 8)).unwrap();
    let think = Think::new(binpack.clone(), config(2, 3, 0.0)).unwrap();
    fn run<E: Env>(env: E) -> (usize, f64) {
        let mut v = VecEnv::new(env, 4, DifficultySampler::Fixed(BINPACK_DIFFICULTY)).unwrap();
        v.reset(7).unwrap();
        let mut rng = EnvRng::seed_from_u64(0);
        let (mut episodes, mut total) = (0, 0.0f64);
        for _ in 0..120 {
            let done: Vec<bool> = v.terminated().iter().copied().collect();
            let actions: Vec<usize> = v
                .action_mask()
                .rows()
                .into_iter()
                .zip(done)
                .map(|(row, done)| {
                    // An ended env autoresets on this step and ignores its action.
                    let legal: Vec<usize> = (0..row.len()).filter(|&a| row[a]).collect();
                    assert_eq!(legal.is_empty(), done);
                    if done {
                        0
                    } else {
                        legal[rng.random_range(0..legal.len())]
                    }
                })
                .collect();
            v.step(&actions).unwrap();
            episodes += v.terminated().iter().filter(|&&t| t).count();
            total += v.rewards().iter().map(|&r| f64::from(r)).sum::<f64>();
        }
        (episodes, total)
    }
    let (episodes, total) = run(binpack);
    assert!(episodes > 10 && total > 0.0 && total <= episodes as f64 + 4.0);
    let (episodes, total) = run(think);
    assert!(episodes > 3 && total > 0.0 && total <= episodes as f64 + 4.0);
}
