//! Runs `examples/custom_agent.rs`: a new agent trained by the unchanged Runner learns.

#[path = "../examples/custom_agent.rs"]
mod custom_agent;

#[test]
fn the_custom_agent_example_learns_through_the_runner() {
    let report = custom_agent::run(300).expect("the example runs");
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
}
