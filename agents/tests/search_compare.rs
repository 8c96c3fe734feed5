//! The search comparison: its cells, budget-1 equivalences, outputs (table, CSV, PNG,
//! TensorBoard) and the guarantee that test-time search reads neither rewards nor answers.

use agents::compare::{compare, CompareConfig, CompareReport, SearchAlgo};
use agents::logging::Logger;
use agents::model::{ModelConfig, ModelLayout};
use agents::search_eval::ValueSource;
use agents::CotPolicy;
use envs::{CotEnv, Cycle, Difficulty, Env, EnvError, EnvRng, EnvSpec, Info, ObsMut, Step};
use tch::Device;

fn env() -> CotEnv<Cycle> {
    CotEnv::new(Cycle::new(6).unwrap()).unwrap()
}

fn policy<E: Env>(env: &E, seed: u64) -> CotPolicy {
    let spec = env.spec();
    let layout = ModelLayout::from_spec(spec).unwrap();
    let cfg = ModelConfig {
        heads: 2,
        head_dim: 8,
        mlp_factor: 2.0,
        decoder_layers: 1,
        ..ModelConfig::default()
    };
    CotPolicy::new(spec, &layout, &cfg, seed, Device::Cpu).unwrap()
}

fn config(value: ValueSource) -> CompareConfig {
    CompareConfig {
        algos: SearchAlgo::ALL.to_vec(),
        budgets: vec![1, 3],
        levels: vec![1, 2],
        episodes: 24,
        seed: 9,
        batch_size: 10,
        value,
        ..CompareConfig::default()
    }
}

/// An env whose rewards are NaN and whose `info` may be read only once the episode is over:
/// a search that read either would fail or change its results.
#[derive(Debug, Clone)]
struct Sealed<E>(E);

impl<E: Env> Env for Sealed<E> {
    fn spec(&self) -> &EnvSpec {
        self.0.spec()
    }
    fn reset(&mut self, rng: &mut EnvRng, difficulty: Difficulty) -> Result<(), EnvError> {
        self.0.reset(rng, difficulty)
    }
    fn step(&mut self, action: usize) -> Result<Step, EnvError> {
        let mut s = self.0.step(action)?;
        s.reward = f32::NAN;
        Ok(s)
    }
    fn observe(&self, obs: ObsMut<'_>) {
        self.0.observe(obs)
    }
    fn info(&self) -> Info {
        assert!(self.0.is_done(), "info() read during an episode");
        self.0.info()
    }
    fn is_done(&self) -> bool {
        self.0.is_done()
    }
    fn render(&self) -> String {
        self.0.render()
    }
    fn oracle_action(&self) -> Option<usize> {
        panic!("a searcher asked for the oracle's action")
    }
}

fn run(value: ValueSource) -> CompareReport {
    let e = env();
    let p = policy(&e, 1);
    compare(&e, &p, &config(value), |_| {}).unwrap()
}

#[test]
fn every_cell_is_there_and_budget_one_tree_search_is_greedy() {
    let report = run(ValueSource::Head);
    assert_eq!(report.cells.len(), 5 * 2 * 2);
    assert_eq!(report.budgets(), vec![1, 3]);
    assert_eq!(report.levels(), vec![1, 2]);
    for d in [1, 2] {
        let greedy = report.get(SearchAlgo::Greedy, 1, d).unwrap();
        assert_eq!(greedy.problems, 24);
        // Greedy runs once and stands at every budget.
        let again = report.get(SearchAlgo::Greedy, 3, d).unwrap();
        assert_eq!((greedy.solved, greedy.evals), (again.solved, again.evals));
        // One evaluator call per search is the prior's best action; a beam of width 1 is
        // greedy decoding too.
        for algo in [SearchAlgo::Mcts, SearchAlgo::Gumbel, SearchAlgo::Beam] {
            let c = report.get(algo, 1, d).unwrap();
            assert_eq!(c.solved, greedy.solved, "{algo} at budget 1, d{d}");
        }
        // Greedy spends one call per non-terminal state: chain + marker + answer - 1.
        assert!(greedy.evals_per_problem() >= d as f64, "{greedy:?}");
        // More budget, more calls.
        for algo in [SearchAlgo::Vote, SearchAlgo::Mcts, SearchAlgo::Gumbel] {
            let lo = report.get(algo, 1, d).unwrap().evals;
            let hi = report.get(algo, 3, d).unwrap().evals;
            assert!(hi > lo, "{algo} d{d}: {lo} -> {hi}");
        }
    }
}

/// The results without the timings.
fn strip(r: &CompareReport) -> Vec<(SearchAlgo, usize, u32, usize, u64)> {
    r.cells
        .iter()
        .map(|c| (c.algo, c.budget, c.difficulty, c.solved, c.evals))
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_report() {
    assert_eq!(
        strip(&run(ValueSource::Likelihood)),
        strip(&run(ValueSource::Likelihood))
    );
}

#[test]
fn test_time_search_reads_neither_rewards_nor_answers() {
    let e = env();
    let p = policy(&e, 2);
    let cfg = config(ValueSource::Head);
    let plain = compare(&e, &p, &cfg, |_| {}).unwrap();
    let sealed = compare(&Sealed(e.clone()), &p, &cfg, |_| {}).unwrap();
    assert_eq!(strip(&plain), strip(&sealed));
}

#[test]
fn table_csv_plot_and_events_are_written() {
    let report = run(ValueSource::Head);
    let table = report.table();
    let first = table.lines().next().unwrap();
    assert!(first.starts_with("searcher  budget"), "{table}");
    assert!(first.contains("d1") && first.contains("mean"), "{table}");
    // Greedy once, then two budgets for the four others.
    assert_eq!(table.lines().count(), 1 + 1 + 4 * 2, "{table}");
    let csv = report.to_csv();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "searcher,budget,difficulty,problems,solved,accuracy,evals_per_problem,seconds"
    );
    assert_eq!(lines.count(), report.cells.len());
    assert!(csv.contains("\nmcts,3,2,24,"), "{csv}");

    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("compare.png");
    report.plot(&png, "test").unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(bytes.len() > 5_000, "{} bytes", bytes.len());

    let mut logger = Logger::create(dir.path()).unwrap();
    report.log(&mut logger).unwrap();
    drop(logger);
    let metrics = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert!(
        metrics.contains(r#"{"step":3,"tag":"search/accuracy/gumbel/d2","#),
        "{metrics}"
    );
    assert!(metrics.contains("search/accuracy/vote/mean"), "{metrics}");
}

#[test]
fn bad_requests_are_refused() {
    let e = env();
    let p = policy(&e, 3);
    let mut cfg = config(ValueSource::Head);
    cfg.budgets = vec![0];
    assert!(compare(&e, &p, &cfg, |_| {}).is_err());
    let mut cfg = config(ValueSource::Head);
    cfg.levels = vec![9];
    let err = compare(&e, &p, &cfg, |_| {}).unwrap_err().to_string();
    assert!(err.contains("outside the env's range"), "{err}");
    assert!("mcts".parse::<SearchAlgo>().is_ok());
    let err = "alphazero".parse::<SearchAlgo>().unwrap_err();
    assert!(err.contains("greedy, vote, beam, mcts, gumbel"), "{err}");
}
