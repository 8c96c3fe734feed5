//! `reinforce`'s `algo.init`: the policy starts from another run's parameters (the helper
//! `expert_iteration` uses), a missing or misfitting checkpoint is a clear error naming the
//! key, and a resumed run needs only its own checkpoints.

use agents::testing::runner;

use agents::config::RunConfig;
use agents::Agent;
use agents::AnyAgent;
use tch::{Kind, Tensor};

const BASE: &str = r#"
seed = 5
[env]
name = "cycle"
length = 6
[train]
steps = 3
batch_size = 8
levels = [1, 2]
[algo]
name = "reinforce"
samples_per_problem = 4
[model]
heads = 2
head_dim = 8
mlp_factor = 2
decoder_layers = 1
[optim]
lr = 1e-2
warmup_steps = 1
weight_decay = 0.0
[eval]
every = 0
episodes = 10
sampled = false
examples = 0
[log]
every = 1
"#;

fn config(sets: &[&str]) -> RunConfig {
    agents::testing::config(BASE, sets)
}

/// Deep copies of the model parameters (`state()` shares storage with the variables).
fn params(agent: &AnyAgent) -> Vec<(String, Tensor)> {
    agent
        .state()
        .into_iter()
        .filter(|(n, _)| n.starts_with("model/"))
        .map(|(n, t)| (n, t.to_kind(Kind::Float).copy()))
        .collect()
}

fn max_abs_diff(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|((n1, t1), (n2, t2))| {
            assert_eq!(n1, n2);
            (t1 - t2).abs().max().double_value(&[])
        })
        .fold(0.0, f64::max)
}

#[test]
fn reinforce_starts_from_the_init_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let src_dir = dir.path().join("src");
    // A source run with another seed, trained a little: its weights differ from the seed's.
    let mut src = runner(config(&["seed=11"])).with_run_dir(&src_dir).unwrap();
    src.train().unwrap();
    let trained = params(src.agent());

    // A tiny learning rate: after one update the weights are the init's to ~1e-9.
    let init = format!("algo.init={}", src_dir.display());
    let mut r = runner(config(&["train.steps=1", "optim.lr=1e-9", &init]));
    let fresh = params(r.agent());
    assert!(
        max_abs_diff(&fresh, &trained) > 1e-2,
        "the seeds gave equal weights"
    );
    r.train().unwrap();
    let after = params(r.agent());
    let d = max_abs_diff(&after, &trained);
    assert!(
        d < 1e-5,
        "the run did not start from algo.init: max |diff| = {d}"
    );
}

#[test]
fn a_missing_or_misfitting_init_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no_such_run");
    let mut r = runner(config(&[&format!("algo.init={}", missing.display())]));
    let err = r.train().unwrap_err().to_string();
    assert!(
        err.contains("algo.init") && err.contains("no_such_run"),
        "unclear error: {err}"
    );

    // A checkpoint of another model shape (4 heads instead of 2).
    let other = dir.path().join("other");
    runner(config(&["train.steps=1", "model.heads=4"]))
        .with_run_dir(&other)
        .unwrap()
        .train()
        .unwrap();
    let mut r = runner(config(&[&format!("algo.init={}", other.display())]));
    let err = r.train().unwrap_err().to_string();
    assert!(
        err.contains("algo.init") && err.contains("does not fit [model]"),
        "unclear error: {err}"
    );
}

#[test]
fn a_resumed_run_does_not_need_its_init() {
    let dir = tempfile::tempdir().unwrap();
    let src_dir = dir.path().join("src");
    runner(config(&["train.steps=1", "seed=9"]))
        .with_run_dir(&src_dir)
        .unwrap()
        .train()
        .unwrap();
    let run_dir = dir.path().join("run");
    let cfg = config(&["train.steps=2", &format!("algo.init={}", src_dir.display())]);
    let mut r = runner(cfg.clone()).with_run_dir(&run_dir).unwrap();
    let stop = r.stop_flag();
    r.set_progress(Box::new(move |step, _, _, _| {
        if step == 1 {
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }));
    r.train().unwrap();
    let saved = params(r.agent());
    std::fs::remove_dir_all(&src_dir).unwrap();
    let mut resumed = runner(cfg).resume(&run_dir).unwrap();
    // The run's own checkpoint is loaded, not the (deleted) init.
    assert!(max_abs_diff(&params(resumed.agent()), &saved) == 0.0);
    assert_eq!(resumed.train().unwrap().steps, 2);
}
