//! BinPack: oracle packing, EMS invariants, masks, rewards and error paths.

use envs::binpack::{
    evaluate, Baseline, BinPack, BinPackConfig, Cuboid, Instance, OnIllegal, RandomGenerator,
    RewardKind, BINPACK_DIFFICULTY,
};
use envs::{Env, EnvError, EnvRng};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

fn reset(env: &mut BinPack, seed: u64) {
    env.reset(&mut EnvRng::seed_from_u64(seed), BINPACK_DIFFICULTY)
        .unwrap();
}

/// Runs the oracle; returns the episode return.
fn run_oracle(env: &mut BinPack) -> f64 {
    let mut ret = 0.0;
    while let Some(a) = env.oracle_action() {
        ret += f64::from(env.step(a).unwrap().reward);
    }
    ret
}

#[test]
fn oracle_fills_the_container_default_config() {
    let mut env = BinPack::new(BinPackConfig::default()).unwrap();
    for seed in 0..300 {
        reset(&mut env, seed);
        let ret = run_oracle(&mut env);
        assert!(env.is_done(), "seed {seed}: oracle stopped early");
        assert!(env.is_perfect(), "seed {seed}: {}", env.render());
        assert_eq!(env.info().solved, Some(true));
        assert!((ret - 1.0).abs() < 1e-4, "seed {seed}: return {ret}");
        assert!((env.utilization() - 1.0).abs() < 1e-12);
    }
}

#[test]
fn oracle_fills_the_container_toy_configs() {
    for (side, items) in [(4, 3), (6, 6), (10, 12), (20, 30)] {
        let mut env = BinPack::new(BinPackConfig::toy(side, items)).unwrap();
        for seed in 0..100 {
            reset(&mut env, seed);
            run_oracle(&mut env);
            assert!(
                env.is_perfect(),
                "side {side} seed {seed}: {}",
                env.render()
            );
        }
    }
}

#[test]
fn sparse_reward_pays_utilization_at_the_end() {
    let config = BinPackConfig {
        reward: RewardKind::Sparse,
        ..BinPackConfig::toy(10, 8)
    };
    let mut env = BinPack::new(config).unwrap();
    let mut rng = EnvRng::seed_from_u64(3);
    for seed in 0..30 {
        reset(&mut env, seed);
        let mut last = 0.0;
        while !env.is_done() {
            let legal = env.observation().legal_actions();
            let step = env.step(legal[rng.random_range(0..legal.len())]).unwrap();
            if !step.terminated {
                assert_eq!(step.reward, 0.0);
            }
            last = step.reward;
        }
        assert!((f64::from(last) - env.utilization()).abs() < 1e-6);
    }
}

#[test]
fn random_agent_utilization_is_in_unit_interval() {
    for config in [BinPackConfig::default(), BinPackConfig::toy(8, 10)] {
        let mut env = BinPack::new(config).unwrap();
        let mut rng = EnvRng::seed_from_u64(11);
        for seed in 0..100 {
            reset(&mut env, seed);
            let mut ret = 0.0f64;
            let mut steps = 0;
            while !env.is_done() {
                let legal = env.observation().legal_actions();
                assert!(!legal.is_empty(), "running episode with an empty mask");
                let step = env.step(legal[rng.random_range(0..legal.len())]).unwrap();
                assert!((0.0..=1.0).contains(&step.reward));
                ret += f64::from(step.reward);
                steps += 1;
            }
            assert!(steps <= env.spec().max_episode_steps);
            let u = env.utilization();
            assert!((0.0..=1.0).contains(&u), "utilization {u}");
            assert!((ret - u).abs() < 1e-5, "return {ret} vs utilization {u}");
            assert!(env.observation().action_mask.iter().all(|&m| !m));
        }
    }
}

#[test]
fn errors_and_illegal_actions() {
    let mut env = BinPack::new(BinPackConfig::toy(10, 6)).unwrap();
    assert_eq!(env.step(0), Err(EnvError::NotReset));
    assert!(matches!(
        env.reset(&mut EnvRng::seed_from_u64(0), 2),
        Err(EnvError::DifficultyOutOfRange { .. })
    ));
    reset(&mut env, 0);
    let n = env.spec().num_actions;
    assert!(matches!(env.step(n), Err(EnvError::IllegalAction { .. })));
    let illegal = (0..n).find(|&a| !env.is_legal(a)).unwrap();
    let before = env.observation();
    assert!(matches!(
        env.step(illegal),
        Err(EnvError::IllegalAction { .. })
    ));
    assert_eq!(
        env.observation(),
        before,
        "a rejected action changed the state"
    );
    while let Some(a) = env.oracle_action() {
        env.step(a).unwrap();
    }
    assert_eq!(env.step(0), Err(EnvError::EpisodeOver));

    let config = BinPackConfig {
        on_illegal: OnIllegal::Terminate,
        ..BinPackConfig::toy(10, 6)
    };
    let mut env = BinPack::new(config).unwrap();
    reset(&mut env, 0);
    let good = env.oracle_action().unwrap();
    let gained = env.step(good).unwrap().reward;
    assert!(gained > 0.0);
    let illegal = (0..n).find(|&a| !env.is_legal(a)).unwrap();
    let step = env.step(illegal).unwrap();
    assert!(step.terminated && step.reward == 0.0);
    assert!(env.is_done());
    assert_eq!(env.info().solved, Some(false));

    for bad in [
        BinPackConfig {
            obs_num_ems: 0,
            ..BinPackConfig::default()
        },
        BinPackConfig {
            generator: RandomGenerator {
                max_num_items: 0,
                ..RandomGenerator::default()
            },
            ..BinPackConfig::default()
        },
    ] {
        assert!(matches!(
            BinPack::new(bad),
            Err(EnvError::InvalidParameter { .. })
        ));
    }
}

#[test]
fn reset_to_a_given_instance() {
    let mut env = BinPack::new(BinPackConfig::toy(10, 4)).unwrap();
    // Two 10x10x5 slabs: either order fills the container.
    let instance = Instance {
        container: [10, 10, 10],
        items: vec![[10, 10, 5], [10, 10, 5]],
        solution: None,
    };
    env.reset_to(instance.clone()).unwrap();
    assert_eq!(env.oracle_action(), None);
    env.step(env.action(0, 1)).unwrap();
    env.step(env.action(0, 0)).unwrap();
    assert!(env.is_perfect() && env.is_done());
    let too_big = Instance {
        items: vec![[11, 1, 1]],
        ..instance.clone()
    };
    // An item that can never fit makes a valid instance whose episode is over at once.
    env.reset_to(too_big).unwrap();
    assert!(env.is_done());
    let too_many = Instance {
        items: vec![[1, 1, 1]; 5],
        ..instance
    };
    assert!(env.reset_to(too_many).is_err());
}

#[test]
fn same_seed_same_episode_and_clones_are_independent() {
    let mut a = BinPack::new(BinPackConfig::default()).unwrap();
    let mut b = a.clone();
    reset(&mut a, 42);
    reset(&mut b, 42);
    assert_eq!(a.observation(), b.observation());
    let snapshot = a.clone();
    let action = a.oracle_action().unwrap();
    a.step(action).unwrap();
    assert_ne!(a.observation(), snapshot.observation());
    let mut c = snapshot.clone();
    c.step(action).unwrap();
    assert_eq!(a.observation(), c.observation());
    assert_eq!(a.render(), c.render());
}

#[test]
fn baselines_are_ordered_on_a_small_sample() {
    let config = BinPackConfig::default();
    let random = evaluate(&config, Baseline::Random, 40, 0).unwrap();
    let greedy = evaluate(&config, Baseline::Greedy, 40, 0).unwrap();
    let oracle = evaluate(&config, Baseline::Oracle, 40, 0).unwrap();
    assert_eq!(oracle.perfect, 1.0);
    assert!((oracle.mean - 1.0).abs() < 1e-12);
    for s in [random, greedy] {
        assert!(s.min >= 0.0 && s.max <= 1.0 && s.mean > 0.0 && s.mean < 1.0);
        assert!((s.mean_return - s.mean).abs() < 1e-4);
    }
}

/// Every box in the container that is empty and cannot grow by one unit on any face: the
/// definition of the EMS set, by enumeration (small containers only).
fn brute_force_maximal_spaces(container: [i32; 3], placed: &[Cuboid]) -> Vec<Cuboid> {
    let c = Cuboid::container(container);
    let empty = |b: &Cuboid| c.contains(b) && placed.iter().all(|p| !p.intersects(b));
    let mut out = Vec::new();
    for x1 in 0..container[0] {
        for x2 in x1 + 1..=container[0] {
            for y1 in 0..container[1] {
                for y2 in y1 + 1..=container[1] {
                    for z1 in 0..container[2] {
                        for z2 in z1 + 1..=container[2] {
                            let b = Cuboid {
                                lo: [x1, y1, z1],
                                hi: [x2, y2, z2],
                            };
                            if empty(&b) && is_maximal(&b, &empty) {
                                out.push(b);
                            }
                        }
                    }
                }
            }
        }
    }
    out.sort_by_key(|b| (b.lo, b.hi));
    out
}

/// A box is maximal when every one-unit growth of a face leaves the empty region.
fn is_maximal(b: &Cuboid, empty: &dyn Fn(&Cuboid) -> bool) -> bool {
    (0..3).all(|a| {
        let mut down = *b;
        down.lo[a] -= 1;
        let mut up = *b;
        up.hi[a] += 1;
        !empty(&down) && !empty(&up)
    })
}

fn check_invariants(env: &BinPack) {
    let container = env.instance().container;
    let c = Cuboid::container(container);
    let placed: Vec<Cuboid> = env.placed().map(|(_, b)| b).collect();
    let empty = |b: &Cuboid| c.contains(b) && placed.iter().all(|p| !p.intersects(b));
    for space in env.ems() {
        assert!(c.contains(space), "space {space:?} leaves the container");
        for p in &placed {
            assert!(!space.intersects(p), "space {space:?} overlaps item {p:?}");
        }
        assert!(is_maximal(space, &empty), "space {space:?} is not maximal");
    }
    let mut ems = env.ems().to_vec();
    ems.sort_by_key(|b| (b.lo, b.hi));
    assert_eq!(
        ems,
        brute_force_maximal_spaces(container, &placed),
        "the EMS set differs from all maximal empty boxes"
    );
    // The mask is exactly "real, unplaced item that fits in the shown space", and every such
    // placement lands in free space.
    let obs = env.observation();
    let items = &env.instance().items;
    let placed_flags: Vec<bool> = (0..items.len())
        .map(|i| env.placed().any(|(j, _)| j == i))
        .collect();
    let shown: Vec<Cuboid> = env.observed_ems().copied().collect();
    let num_items = env.config().generator.max_num_items;
    for a in 0..env.spec().num_actions {
        let (s, i) = (a / num_items, a % num_items);
        let expected = !env.is_done()
            && s < shown.len()
            && i < items.len()
            && !placed_flags[i]
            && shown[s].fits(items[i]);
        assert_eq!(obs.action_mask[a], expected, "mask at slot {s} item {i}");
        if expected {
            assert!(empty(&Cuboid::from_corner(shown[s].lo, items[i])));
        }
    }
    assert_eq!(
        env.is_done(),
        !obs.action_mask.iter().any(|&m| m),
        "done iff nothing is legal"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random legal play on small containers keeps the EMS set equal to the brute-force set of
    /// maximal empty boxes, with exact masks, until the end.
    #[test]
    fn ems_invariants_under_random_play(
        side in 3i32..=6,
        items in 2usize..=8,
        seed in any::<u64>(),
    ) {
        let mut env = BinPack::new(BinPackConfig::toy(side, items)).unwrap();
        reset(&mut env, seed);
        let mut rng = EnvRng::seed_from_u64(seed.rotate_left(17));
        check_invariants(&env);
        while !env.is_done() {
            let legal = env.observation().legal_actions();
            env.step(legal[rng.random_range(0..legal.len())]).unwrap();
            check_invariants(&env);
        }
        let u = env.utilization();
        prop_assert!((0.0..=1.0).contains(&u));
    }

    /// Invariants also hold along the oracle's path, which ends with no space left.
    #[test]
    fn ems_invariants_along_the_oracle(side in 3i32..=6, items in 2usize..=8, seed in any::<u64>()) {
        let mut env = BinPack::new(BinPackConfig::toy(side, items)).unwrap();
        reset(&mut env, seed);
        while let Some(a) = env.oracle_action() {
            env.step(a).unwrap();
            check_invariants(&env);
        }
        prop_assert!(env.is_perfect());
        prop_assert!(env.ems().is_empty());
    }
}

#[test]
fn checker_passes() {
    for config in [
        BinPackConfig::default(),
        // `OnIllegal::Terminate` accepts masked-out actions, which the checker's `mask` rule
        // forbids by design; it is tested in `errors_and_illegal_actions`.
        BinPackConfig {
            reward: RewardKind::Sparse,
            ..BinPackConfig::toy(10, 10)
        },
    ] {
        let mut env = BinPack::new(config).unwrap();
        let report = envs::check_env(&mut env).unwrap();
        assert_eq!(report.difficulties, [BINPACK_DIFFICULTY]);
    }
}

#[test]
fn registry_builds_it() {
    use envs::registry;
    let mut p = envs::EnvParams::new();
    for (k, v) in [
        ("items", "6"),
        ("ems", "20"),
        ("container", "10x12x14"),
        ("reward", "sparse"),
    ] {
        p.set_text(k, v);
    }
    let mut env = registry::make("binpack", &p).unwrap();
    assert_eq!(env.spec().name, "binpack(items=6, ems=20, sparse)");
    assert_eq!(env.spec().num_actions, 120);
    envs::check_env(&mut env).unwrap();
    let default = registry::make("binpack", &envs::EnvParams::new()).unwrap();
    assert_eq!(default.spec().name, "binpack(items=20, ems=40)");
    for (k, v) in [
        ("container", "10x10"),
        ("reward", "dense-ish"),
        ("on_illegal", "x"),
    ] {
        let mut bad = envs::EnvParams::new();
        bad.set_text(k, v);
        let err = registry::make("binpack", &bad).unwrap_err();
        assert!(err.to_string().contains(k), "{err}");
    }
}
