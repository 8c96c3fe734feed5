//! Named envs and difficulty samplers.

use envs::registry::{self, ParamValue};
use envs::{check_env, Curriculum, DifficultySampler, Env, EnvParams, EnvRng};
use rand::SeedableRng;

#[test]
fn every_entry_builds_with_defaults_and_passes_the_checker() {
    for e in registry::entries() {
        let mut env = registry::make(e.name, &EnvParams::new())
            .unwrap_or_else(|err| panic!("{}: {err}", e.name));
        check_env(&mut env).unwrap_or_else(|err| panic!("{}: {err}", e.name));
    }
}

#[test]
fn params_reach_the_env_and_bad_ones_are_named() {
    let mut p = EnvParams::new();
    p.set_text("length", "12");
    p.set_text("max-chain-len", "4");
    p.set_text("on_cap", "truncate");
    let env = registry::make("cycle", &p).unwrap();
    assert_eq!(env.spec().name, "cycle(L=12)");
    assert_eq!(env.spec().max_episode_steps, 4 + 1 + 1);

    let err = registry::make(
        "cycle",
        &EnvParams::new().with("lenght", ParamValue::Int(3)),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("lenght") && err.to_string().contains("length"),
        "{err}"
    );
    let err = registry::make(
        "cycle",
        &EnvParams::new().with("length", ParamValue::Int(1)),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("length") && err.to_string().contains("2..="),
        "{err}"
    );
    let err = registry::make(
        "cvpr",
        &EnvParams::new().with("on_cap", ParamValue::Str("x".into())),
    )
    .unwrap_err();
    assert!(err.to_string().contains("on_cap"), "{err}");
    let err = registry::make("nope", &EnvParams::new()).unwrap_err();
    assert!(err.to_string().contains("cycle"), "{err}");
}

#[test]
fn params_read_from_toml_like_json() {
    let p: EnvParams =
        serde_json::from_str(r#"{"length": 9, "shaping": 0.5, "fixed_chain_len": true}"#).unwrap();
    let env = registry::make("cvpr", &p).unwrap();
    assert_eq!(env.spec().name, "cvpr(L=9)");
}

#[test]
fn curriculum_starts_low_rises_on_threshold_and_stops_at_the_top() {
    let mut s = DifficultySampler::Curriculum(Curriculum::new(vec![3, 1, 2, 2], 0.8, 0.0).unwrap());
    assert_eq!(s.levels(), vec![1, 2, 3]);
    let mut rng = EnvRng::seed_from_u64(0);
    assert!((0..100).all(|_| s.sample(&mut rng) == 1));
    assert_eq!(s.report(1, 0.79), None);
    assert_eq!(
        s.report(2, 1.0),
        None,
        "reports about other levels are ignored"
    );
    assert_eq!(s.report(1, 0.8), Some(2));
    assert!(
        (0..100).all(|_| s.sample(&mut rng) == 2),
        "revisit 0: current level only"
    );
    assert_eq!(s.report(2, 0.9), Some(3));
    assert_eq!(s.report(3, 1.0), None);
    assert!(Curriculum::new(vec![], 0.5, 0.0).is_err());
    assert!(Curriculum::new(vec![1], 0.0, 0.0).is_err());
    assert!(Curriculum::new(vec![1], 0.5, 1.0).is_err());
    assert_eq!(DifficultySampler::Fixed(3).report(3, 1.0), None);
}
