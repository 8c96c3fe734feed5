//! The search comparison: its cells, budget-1 equivalences, measured compute, paired
//! statistics, outputs (table, CSVs, PNG, TensorBoard) and the guarantee that test-time
//! search reads neither rewards nor answers.

use agents::compare::{
    compare, compare_with, default_searchers, Arm, CompareConfig, CompareReport, Tally,
};
use agents::logging::Logger;
use agents::search_eval::{PolicyEvaluator, ValueSource};
use agents::searchers::{SearchPurpose, SearchSpec};
use agents::CotPolicy;
use envs::{AnyEnv, CotEnv, Cycle, Difficulty, Env, EnvError, EnvRng, EnvSpec, Info, ObsMut, Step};
use search::{CountingEvaluator, OracleEvaluator};

fn env() -> AnyEnv {
    AnyEnv::custom(CotEnv::new(Cycle::new(6).unwrap()).unwrap())
}

fn policy<E: Env>(env: &E, seed: u64) -> CotPolicy {
    agents::testing::tiny_policy(env, 1, seed)
}

fn config(value: ValueSource) -> CompareConfig {
    CompareConfig {
        searchers: default_searchers(),
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
    // Greedy has no use for a budget: one cell per level, not one per budget.
    assert_eq!(report.cells.len(), 2 + 4 * 2 * 2);
    assert_eq!(
        report
            .cells
            .iter()
            .filter(|c| c.searcher == "greedy")
            .count(),
        2
    );
    assert_eq!(report.budgets(), vec![1, 3]);
    assert_eq!(report.levels(), vec![1, 2]);
    for d in [1, 2] {
        let greedy = report.get("greedy", 1, d).unwrap();
        assert_eq!(greedy.problems, 24);
        assert!(greedy.budget_free);
        assert_eq!(greedy.correct.len(), 24);
        assert_eq!(greedy.correct.iter().filter(|&&c| c).count(), greedy.solved);
        // Its one cell answers for any budget.
        assert_eq!(report.get("greedy", 3, d), Some(greedy));
        // One evaluator call per search is the prior's best action; a beam of width 1 is
        // greedy decoding too.
        for algo in ["mcts", "gumbel", "beam"] {
            let c = report.get(algo, 1, d).unwrap();
            assert_eq!(c.solved, greedy.solved, "{algo} at budget 1, d{d}");
        }
        // Greedy spends one call per non-terminal state: chain + marker + answer - 1.
        assert!(greedy.evals_per_problem() >= d as f64, "{greedy:?}");
        // More budget, more calls.
        for algo in ["vote", "mcts", "gumbel"] {
            let lo = report.get(algo, 1, d).unwrap().evals;
            let hi = report.get(algo, 3, d).unwrap().evals;
            assert!(hi > lo, "{algo} d{d}: {lo} -> {hi}");
        }
    }
}

/// The results without the timings.
fn strip(r: &CompareReport) -> Vec<(String, usize, u32, usize, u64)> {
    r.cells
        .iter()
        .map(|c| {
            (
                c.searcher.clone(),
                c.budget,
                c.difficulty,
                c.solved,
                c.evals,
            )
        })
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
    let mut cfg = config(ValueSource::Head);
    // The anytime variants too, with the per-problem pool.
    for name in ["mcts_anytime", "gumbel_anytime"] {
        let mut spec = SearchSpec::parse(name, SearchPurpose::Evaluate).unwrap();
        spec.set("carry_unspent", "true", SearchPurpose::Evaluate)
            .unwrap();
        cfg.searchers.push(spec);
    }
    let plain = compare(&e, &p, &cfg, |_| {}).unwrap();
    let sealed = compare(&AnyEnv::custom(Sealed(e.clone())), &p, &cfg, |_| {}).unwrap();
    assert_eq!(strip(&plain), strip(&sealed));
}

#[test]
fn table_csv_plot_and_events_are_written() {
    let report = run(ValueSource::Head);
    let table = report.table();
    let first = table.lines().next().unwrap();
    assert!(
        first.starts_with("searcher  budget  evals/problem  x greedy  ms/problem  tokens/problem"),
        "{table}"
    );
    assert!(
        first.contains("d1") && first.contains("mean") && first.contains("vs greedy"),
        "{table}"
    );
    // Greedy once, then two budgets for the four others.
    assert_eq!(table.lines().count(), 1 + 1 + 4 * 2, "{table}");
    // Accuracies carry intervals: `xx.x [lo, hi]`.
    let greedy = table.lines().nth(1).unwrap();
    assert!(
        greedy.starts_with("greedy") && greedy.contains(", "),
        "{table}"
    );
    let csv = report.to_csv();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "searcher,budget,difficulty,problems,solved,accuracy,evals_per_problem,seconds,\
         accuracy_lo95,accuracy_hi95,evals,ms_per_problem,decoder_tokens_per_problem,\
         encoder_tokens_per_problem,budget_free"
    );
    assert_eq!(lines.count(), report.cells.len());
    assert!(csv.contains("\nmcts,3,2,24,"), "{csv}");
    // Greedy once per level, without a budget.
    assert_eq!(csv.matches("\ngreedy,").count(), 2, "{csv}");
    assert!(csv.contains("\ngreedy,,1,24,"), "{csv}");

    let paired = report.paired_csv();
    let mut plines = paired.lines();
    assert!(plines
        .next()
        .unwrap()
        .starts_with("kind,a,a_budget,b,b_budget,difficulty"));
    // Each of 8 arms against greedy at d1, d2 and all, then matched pairs.
    let rows: Vec<&str> = plines.collect();
    assert_eq!(
        rows.iter().filter(|r| r.starts_with("reference,")).count(),
        8 * 3,
        "{paired}"
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("reference,beam,1,greedy,,all,48,")),
        "{paired}"
    );
    let problems = report.problems_csv();
    assert_eq!(problems.lines().count(), 1 + report.cells.len());
    assert!(
        problems
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("greedy,,1,24,"),
        "{problems}"
    );
    assert_eq!(
        problems
            .lines()
            .nth(1)
            .unwrap()
            .split(',')
            .nth(4)
            .unwrap()
            .len(),
        24
    );

    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("compare.png");
    report.plot(&png, "test").unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(bytes.len() > 5_000, "{} bytes", bytes.len());
    let written = report.write_csvs(dir.path()).unwrap();
    assert_eq!(written.len(), 3);
    assert!(written.iter().all(|p| p.exists()));

    let mut logger = Logger::create(dir.path()).unwrap();
    report.log(&mut logger).unwrap();
    drop(logger);
    let metrics = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert!(
        metrics.contains(r#"{"step":3,"tag":"search/accuracy/gumbel/d2","#),
        "{metrics}"
    );
    assert!(metrics.contains("search/accuracy/vote/mean"), "{metrics}");
    assert!(
        metrics.contains("search/accuracy_lo95/vote/mean"),
        "{metrics}"
    );
    assert!(metrics.contains("search/vs_greedy/mcts"), "{metrics}");
    assert!(
        metrics.contains("search/accuracy_by_evals/beam"),
        "{metrics}"
    );
}

/// The anytime variants: as registered, carrying the unspent calls forward, and stopping at a
/// low threshold after a single simulation (and carrying), so that decisions stop early often
/// on a tiny policy.
fn anytime_searchers() -> Vec<SearchSpec> {
    let purpose = SearchPurpose::Evaluate;
    let mut specs = Vec::new();
    for name in ["mcts_anytime", "gumbel_anytime"] {
        specs.push(SearchSpec::parse(name, purpose).unwrap());
        let mut carry = SearchSpec::parse(name, purpose).unwrap();
        carry.set("carry_unspent", "true", purpose).unwrap();
        specs.push(carry.clone());
        let mut eager = carry;
        eager.set("stop_when_confident", "0.3", purpose).unwrap();
        eager.set("min_simulations", "1", purpose).unwrap();
        specs.push(eager);
    }
    let mut gumbel = SearchSpec::parse("gumbel", purpose).unwrap();
    gumbel.set("stop_when_confident", "0.5", purpose).unwrap();
    specs.push(gumbel);
    specs
}

/// Every searcher at every budget reports the evaluator calls the evaluator was asked for:
/// a counter wrapped around the policy sees exactly the states the cells claim. The anytime
/// variants too, whose decisions stop early and pass their unspent calls on.
#[test]
fn reported_compute_equals_what_the_evaluator_counted() {
    let e = env();
    let p = policy(&e, 4);
    for spec in default_searchers().into_iter().chain(anytime_searchers()) {
        for budget in [1, 2, 5, 9] {
            for d in [1, 2] {
                let cfg = CompareConfig {
                    searchers: vec![spec.clone()],
                    budgets: vec![budget],
                    levels: vec![d],
                    ..config(ValueSource::Likelihood)
                };
                let mut counter = CountingEvaluator::new(
                    PolicyEvaluator::new(&p, ValueSource::Likelihood).unwrap(),
                );
                let report = compare_with(&e, &mut counter, &cfg, |_| {}).unwrap();
                assert_eq!(report.cells.len(), 1);
                let cell = &report.cells[0];
                assert_eq!(
                    cell.evals, counter.states as u64,
                    "{spec} k={budget} d{d}: reported {} evaluator calls, the evaluator saw {}",
                    cell.evals, counter.states
                );
                assert!(cell.evals > 0);
                // The policy's own count of states agrees as well.
                assert_eq!(counter.inner().stats().states, counter.states);
                // Without a policy evaluator, no token count.
                assert_eq!(cell.decoder_tokens, None);
            }
        }
    }
}

/// Anytime search stops confident decisions (fewer calls than the fixed budget) and, with
/// `carry_unspent`, gives what they saved to the later decisions of the same problem (more
/// calls than stopping alone, never more than `k` per decision on average).
#[test]
fn anytime_decisions_stop_early_and_pass_their_calls_on() {
    let e = env();
    let p = policy(&e, 4);
    let purpose = SearchPurpose::Evaluate;
    let budget = 9;
    for name in ["mcts", "gumbel"] {
        let evals = |carry: &str, stop: &str| {
            let mut spec = SearchSpec::parse(name, purpose).unwrap();
            spec.set("stop_when_confident", stop, purpose).unwrap();
            spec.set("min_simulations", "3", purpose).unwrap();
            spec.set("carry_unspent", carry, purpose).unwrap();
            let cfg = CompareConfig {
                searchers: vec![spec],
                budgets: vec![budget],
                levels: vec![2],
                ..config(ValueSource::Likelihood)
            };
            let report = compare(&e, &p, &cfg, |_| {}).unwrap();
            let cell = &report.cells[0];
            (cell.evals, cell.problems)
        };
        let (fixed, problems) = evals("false", "0");
        let (stopped, _) = evals("false", "0.7");
        let (pooled, _) = evals("true", "0.7");
        assert!(
            stopped < fixed,
            "{name}: {stopped} calls stopping, {fixed} fixed"
        );
        assert!(
            pooled > stopped,
            "{name}: {pooled} calls pooled, {stopped} stopping alone"
        );
        let steps = e.spec().max_episode_steps as u64;
        assert!(pooled <= budget as u64 * steps * problems as u64);
    }
}

#[test]
fn compare_counts_model_tokens_and_matches_compare_with() {
    let e = env();
    let p = policy(&e, 4);
    let cfg = config(ValueSource::Likelihood);
    let report = compare(&e, &p, &cfg, |_| {}).unwrap();
    let mut ev = PolicyEvaluator::new(&p, ValueSource::Likelihood).unwrap();
    let other = compare_with(&e, &mut ev, &cfg, |_| {}).unwrap();
    assert_eq!(strip(&report), strip(&other));
    let input = p.model().layout().input_len as u64;
    for d in [1, 2] {
        let greedy = report.get("greedy", 1, d).unwrap();
        // One encoding per problem, and a cached prefix: one decoder position per state.
        assert_eq!(greedy.encoder_tokens, Some(24 * input));
        assert_eq!(greedy.decoder_tokens, Some(greedy.evals));
        // Tree search encodes its root again for every decision.
        let mcts = report.get("mcts", 3, d).unwrap();
        assert!(
            mcts.encoder_tokens.unwrap() > greedy.encoder_tokens.unwrap(),
            "{mcts:?}"
        );
        assert!(mcts.tokens_per_problem().unwrap() > mcts.evals_per_problem());
    }
}

#[test]
fn paired_statistics_on_the_report() {
    let report = run(ValueSource::Likelihood);
    let greedy = report.reference().unwrap();
    assert_eq!(
        greedy,
        Arm {
            searcher: "greedy".into(),
            budget: None
        }
    );
    // A beam of width 1 is greedy decoding: no discordant problem, nothing to report.
    let beam1 = Arm {
        searcher: "beam".into(),
        budget: Some(1),
    };
    let p = report.paired(&beam1, &greedy, None).unwrap();
    assert_eq!((p.counts.n, p.counts.a_only, p.counts.b_only), (48, 0, 0));
    assert_eq!((p.diff, p.interval, p.p), (0.0, (0.0, 0.0), 1.0));
    assert!(!p.significant());
    // Per level: that level's problems only.
    assert_eq!(
        report.paired(&beam1, &greedy, Some(2)).unwrap().counts.n,
        24
    );
    // The interval holds the estimate, and the same report gives the same numbers.
    let vote = Arm {
        searcher: "vote".into(),
        budget: Some(3),
    };
    let v = report.paired(&vote, &greedy, None).unwrap();
    assert!(v.interval.0 <= v.diff && v.diff <= v.interval.1, "{v:?}");
    assert_eq!(report.paired(&vote, &greedy, None), Some(v));
    assert_eq!(report.compute_ratio(&greedy), Some(1.0));
    // Greedy, and its budget-1 equivalents, sit at the 1x compute level.
    let levels = report.compute_levels();
    let one = levels.iter().find(|l| l.ratio == 1.0).unwrap();
    assert!(one.members.iter().any(|(a, _, _)| *a == greedy), "{one:?}");
    assert_eq!(one.versus.len(), one.members.len() - 1);
    let text = report.verdicts();
    assert!(text.contains("~1x greedy's compute"), "{text}");
    assert!(text.contains("verdict:"), "{text}");
    let best = report.best_within(1e9).unwrap();
    assert_eq!(best.b, greedy);
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
    let mut cfg = config(ValueSource::Head);
    cfg.searchers
        .push(SearchSpec::parse("mcts", SearchPurpose::Evaluate).unwrap());
    let err = compare(&e, &p, &cfg, |_| {}).unwrap_err().to_string();
    assert!(err.contains("`mcts` is named twice"), "{err}");
    assert!(SearchSpec::parse("mcts", SearchPurpose::Evaluate).is_ok());
    // An evaluator that lets searches read the env's rewards would see the answer.
    let mut oracle = OracleEvaluator::new(PolicyEvaluator::new(&p, ValueSource::Head).unwrap());
    let err = compare_with(&e, &mut oracle, &config(ValueSource::Head), |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("reads env rewards"), "{err}");
    let err = SearchSpec::parse("alphazero", SearchPurpose::Evaluate).unwrap_err();
    assert!(err.contains("greedy, vote, beam, mcts, gumbel"), "{err}");
}
