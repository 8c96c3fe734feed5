//! The `custom_task` example's task passes the checker and its oracle is right.

#[path = "../examples/custom_task.rs"]
mod custom_task;

use custom_task::{prefix_sum, PrefixSum};
use envs::{check_env, CotEnv, EnvRng, Task};
use rand::SeedableRng;

#[test]
fn example_task_passes_check_env() {
    let mut env = CotEnv::new(prefix_sum()).unwrap();
    let report = check_env(&mut env).unwrap();
    assert_eq!(report.difficulties, (1..=8).collect::<Vec<_>>());
    assert!(report.warnings.is_empty());
}

#[test]
fn example_task_answers_the_running_sum() {
    let task = prefix_sum();
    let p = task.sample(4, &mut EnvRng::seed_from_u64(9)).unwrap();
    let sum: u32 = p.input[..4].iter().sum();
    assert_eq!(p.answer, vec![sum % 10]);
    assert_eq!(p.chain.len(), 3);
    assert!(task.sample(9, &mut EnvRng::seed_from_u64(9)).is_err());
}

#[test]
fn a_registered_task_is_built_by_name_and_checked() {
    use envs::registry::{self, EnvParams, ParamValue};
    use envs::Env;
    registry::register_task::<PrefixSum>().unwrap();
    assert!(registry::names().contains(&"prefix_sum"));
    // A second registration of the same name is refused.
    assert!(registry::register_task::<PrefixSum>().is_err());
    let params = EnvParams::new().with("max_chain_len", ParamValue::Int(7));
    let mut env = registry::make("prefix_sum", &params).unwrap();
    assert!(matches!(env, envs::AnyEnv::Custom(_)));
    let answer = env.answer_spec().unwrap();
    assert_eq!((answer.len, answer.vocab), (1, 10));
    let report = check_env(&mut env).unwrap();
    assert_eq!(report.difficulties, (1..=8).collect::<Vec<_>>());
    // Its unknown parameters are refused like a built-in task's.
    let bad = EnvParams::new().with("lenght", ParamValue::Int(3));
    let err = registry::make("prefix_sum", &bad).unwrap_err().to_string();
    assert!(
        err.contains("lenght") && err.contains("max_chain_len"),
        "{err}"
    );
}
