//! The `custom_task` example's task passes the checker and its oracle is right.

#[path = "../examples/custom_task.rs"]
mod custom_task;

use custom_task::prefix_sum;
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
