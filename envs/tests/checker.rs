//! check_env passes the built-in envs and catches deliberately broken ones, naming the rule.

use std::sync::atomic::{AtomicU64, Ordering};

use envs::env::OracleChainFit;
use envs::{
    check_env, check_env_with, CheckOptions, CotConfig, CotEnv, Cvpr, Cycle, Difficulty, Env,
    EnvError, EnvRng, EnvSpec, Info, ObsMut, OnCap, Phase, RewardConfig, Step, Think, ThinkConfig,
};
use rand::{Rng, SeedableRng};

#[test]
fn builtin_envs_pass() {
    let mut env = CotEnv::new(Cycle::new(8).unwrap()).unwrap();
    let report = check_env(&mut env).unwrap();
    assert_eq!(report.difficulties, (1..=7).collect::<Vec<_>>());
    assert!(report.episodes >= 21 && report.steps > 0);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);

    let mut env = CotEnv::new(Cvpr::new(12).unwrap()).unwrap();
    check_env(&mut env).unwrap();

    let configs = [
        CotConfig {
            max_chain_len: Some(3),
            fixed_chain_len: true,
            ..CotConfig::default()
        },
        CotConfig {
            max_chain_len: Some(2),
            on_cap: OnCap::Truncate,
            reward: RewardConfig {
                token_cost: 0.1,
                shaping: 0.5,
            },
            ..CotConfig::default()
        },
    ];
    for cfg in configs {
        let mut env = CotEnv::with_config(Cycle::new(6).unwrap(), cfg).unwrap();
        // A cap below the oracle's chain length means the oracle cannot be followed.
        check_env_with(
            &mut env,
            &CheckOptions {
                episodes_per_difficulty: 2,
                ..CheckOptions::default()
            },
        )
        .unwrap();
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Bug {
    None,
    MaskOffersIllegal,
    MaskHidesLegal,
    NonDeterministicReset,
    NonDeterministicStep,
    NanReward,
    StepAfterEndOk,
    PanicInStep,
    TokenOutOfVocab,
    DoneDisagrees,
    WrongOracle,
    RewardOutOfRange,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone)]
struct Broken {
    inner: CotEnv<Cycle>,
    bug: Bug,
}

impl Env for Broken {
    fn spec(&self) -> &EnvSpec {
        self.inner.spec()
    }

    fn reset(&mut self, rng: &mut EnvRng, difficulty: Difficulty) -> Result<(), EnvError> {
        if self.bug == Bug::NonDeterministicReset {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let mut other = EnvRng::seed_from_u64(rng.random::<u64>() ^ n);
            return self.inner.reset(&mut other, difficulty);
        }
        self.inner.reset(rng, difficulty)
    }

    fn step(&mut self, action: usize) -> Result<Step, EnvError> {
        if self.bug == Bug::StepAfterEndOk && self.inner.is_done() {
            return Ok(Step {
                reward: 0.0,
                terminated: true,
                truncated: false,
            });
        }
        if self.bug == Bug::PanicInStep && self.inner.emitted().len() == 1 {
            panic!("index out of bounds, deliberately");
        }
        if self.bug == Bug::MaskHidesLegal && action == 0 && self.inner.phase() == Phase::Chain {
            // Accepted below although the mask hides it.
        }
        let mut s = self.inner.step(action)?;
        match self.bug {
            Bug::NanReward if s.terminated => s.reward = f32::NAN,
            Bug::RewardOutOfRange if s.terminated => s.reward = 5.0,
            Bug::NonDeterministicStep => {
                s.reward = (COUNTER.fetch_add(1, Ordering::Relaxed) % 2) as f32;
            }
            Bug::DoneDisagrees if s.terminated => s.terminated = false,
            _ => {}
        }
        Ok(s)
    }

    fn observe(&self, obs: ObsMut<'_>) {
        let mask_len = obs.action_mask.len();
        let tokens_len = obs.tokens.len();
        let ObsMut {
            tokens,
            features,
            action_mask,
        } = obs;
        self.inner.observe(ObsMut {
            tokens,
            features,
            action_mask,
        });
        match self.bug {
            Bug::MaskOffersIllegal if self.inner.phase() == Phase::Answer => {
                action_mask[mask_len - 1] = true
            }
            Bug::MaskHidesLegal if self.inner.phase() == Phase::Chain => action_mask[0] = false,
            Bug::TokenOutOfVocab => tokens[tokens_len - 1] = 1000,
            _ => {}
        }
    }

    fn info(&self) -> Info {
        self.inner.info()
    }

    fn is_done(&self) -> bool {
        self.inner.is_done()
    }

    fn render(&self) -> String {
        self.inner.render()
    }

    fn oracle_action(&self) -> Option<usize> {
        let a = self.inner.oracle_action()?;
        if self.bug == Bug::WrongOracle && self.inner.phase() == Phase::Answer {
            return Some((a + 1) % self.inner.task_spec().answer_vocab);
        }
        Some(a)
    }
}

fn check(bug: Bug) -> Result<(), envs::CheckError> {
    let mut env = Broken {
        inner: CotEnv::new(Cycle::new(6).unwrap()).unwrap(),
        bug,
    };
    check_env(&mut env).map(|_| ())
}

#[test]
fn broken_envs_are_caught_with_the_rule_named() {
    check(Bug::None).unwrap();
    let cases = [
        (Bug::MaskOffersIllegal, "mask"),
        (Bug::MaskHidesLegal, "mask"),
        (Bug::NonDeterministicReset, "reset_determinism"),
        (Bug::NonDeterministicStep, "step_determinism"),
        (Bug::NanReward, "reward"),
        (Bug::RewardOutOfRange, "reward"),
        (Bug::StepAfterEndOk, "after_end"),
        (Bug::PanicInStep, "panic"),
        (Bug::TokenOutOfVocab, "observation"),
        (Bug::DoneDisagrees, "termination"),
        (Bug::WrongOracle, "oracle"),
    ];
    for (bug, rule) in cases {
        let err = check(bug).expect_err(&format!("{bug:?} must fail"));
        assert_eq!(err.rule, rule, "{bug:?}: {err}");
        assert!(err.to_string().contains(rule));
    }
}

/// Cycle(8) under a chain cap: hops (and so the oracle's chain length) run 1..=7.
fn capped_cycle(cap: usize, on_cap: OnCap) -> CotEnv<Cycle> {
    let cfg = CotConfig {
        max_chain_len: Some(cap),
        on_cap,
        ..CotConfig::default()
    };
    CotEnv::with_config(Cycle::new(8).unwrap(), cfg).unwrap()
}

#[test]
fn a_chain_cap_shorter_than_the_oracle_chain_is_reported() {
    let report = check_env(&mut capped_cycle(4, OnCap::ForceAnswer)).unwrap();
    let levels: Vec<_> = report.oracle_gaps.iter().map(|g| g.difficulty).collect();
    assert_eq!(levels, [5, 6, 7], "{report:#?}");
    let gap = &report.oracle_gaps[2];
    assert_eq!(
        gap.chain,
        Some(OracleChainFit {
            max_chain_len: 4,
            oracle_chain_len: 7,
            fits: false,
        })
    );
    assert_eq!(
        gap.message,
        "difficulty 7: the oracle's chain is 7 tokens, longer than the chain cap \
         max_chain_len = 4"
    );
    let warning = report
        .warnings
        .iter()
        .find(|w| w.contains("oracle"))
        .expect("a warning about the oracle");
    for part in [
        "max_chain_len = 4",
        "difficulty 5",
        "5 tokens",
        "difficulty 7",
    ] {
        assert!(warning.contains(part), "{part:?} missing from {warning:?}");
    }
    let err = report.require_oracle().unwrap_err();
    assert_eq!(err.rule, "oracle_coverage");
    let text = err.to_string();
    assert!(text.contains("rule `oracle_coverage`"), "{text}");
    assert!(
        text.contains("difficulty 6: the oracle's chain is 6 tokens"),
        "{text}"
    );
    assert!(text.contains("max_chain_len = 4"), "{text}");

    // With `on_cap = truncate` a chain as long as the cap is cut too.
    let report = check_env(&mut capped_cycle(4, OnCap::Truncate)).unwrap();
    let gap = &report.oracle_gaps[0];
    assert_eq!(gap.difficulty, 4);
    assert!(
        gap.message
            .contains("chain of 4 tokens reaches the chain cap max_chain_len = 4"),
        "{}",
        gap.message
    );

    // Wrappers forward the cap.
    let mut think =
        Think::new(capped_cycle(4, OnCap::ForceAnswer), ThinkConfig::default()).unwrap();
    let report = check_env(&mut think).unwrap();
    assert_eq!(report.oracle_gaps.len(), 3);
    assert!(report.oracle_gaps[0].message.contains("max_chain_len = 4"));

    // Without the cap (the task's own) every difficulty is playable.
    for cap in [None, Some(7)] {
        let cfg = CotConfig {
            max_chain_len: cap,
            ..CotConfig::default()
        };
        let mut env = CotEnv::with_config(Cycle::new(8).unwrap(), cfg).unwrap();
        let report = check_env(&mut env).unwrap();
        assert!(report.oracle_gaps.is_empty(), "{cap:?}: {report:#?}");
        assert!(report.warnings.is_empty(), "{cap:?}: {:?}", report.warnings);
        report.require_oracle().unwrap();
    }
}

#[test]
fn an_oracle_missing_at_some_difficulties_is_reported_without_a_cap_to_name() {
    // `Broken` forwards the oracle but not `oracle_chain_fit`, like an env that knows no cap.
    let mut env = Broken {
        inner: capped_cycle(4, OnCap::ForceAnswer),
        bug: Bug::None,
    };
    let report = check_env(&mut env).unwrap();
    let levels: Vec<_> = report.oracle_gaps.iter().map(|g| g.difficulty).collect();
    assert_eq!(levels, [5, 6, 7]);
    assert_eq!(report.oracle_gaps[0].chain, None);
    assert_eq!(
        report.oracle_gaps[0].message,
        "difficulty 5: the oracle gives no action after the reset, though it does at difficulty 1"
    );
    assert_eq!(report.require_oracle().unwrap_err().rule, "oracle_coverage");
}
