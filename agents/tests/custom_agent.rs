//! Runs `examples/custom_agent.rs`: a new agent, registered by name, trained through
//! `agents::train` (the CLI's own entry point) learns and writes a complete run directory.

#[path = "../examples/custom_agent.rs"]
mod custom_agent;

#[test]
fn the_custom_agent_example_learns_and_logs_through_the_public_entry_point() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let summary = custom_agent::run(300, &run_dir).expect("the example runs");
    let report = summary.eval.expect("training ends with an evaluation");
    for d in [1, 2] {
        let acc = report
            .accuracy(d, agents::ActMode::Greedy)
            .expect("both levels are evaluated");
        assert!(
            acc >= 0.9,
            "hops {d}: greedy accuracy {acc}\n{}",
            report.table()
        );
    }
    let config = std::fs::read_to_string(run_dir.join("config.toml")).unwrap();
    assert!(config.contains("name = \"mlp_cloner\""), "{config}");
    assert!(config.contains("hidden = 256"), "{config}");
    let metrics = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("eval/"), "{metrics}");
    let events = std::fs::read_dir(&run_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("events.out.tfevents.")
        })
        .count();
    assert!(events >= 1, "no TensorBoard event file");
    assert!(run_dir.join("checkpoints").is_dir());
}
