//! The policy evaluator: its numbers equal a teacher-forced pass over each state's whole
//! prefix, whatever the searcher; it decodes one position per state whose parent is cached;
//! terminal states get the documented values; it never asks for env rewards.

use agents::model::{ModelConfig, ModelLayout};
use agents::search_eval::{PolicyEvaluator, ValueSource};
use agents::CotPolicy;
use envs::{CotEnv, Cycle, Env, EnvRng};
use rand::SeedableRng;
use search::{
    Beam, BeamConfig, BeamScore, EvalBatch, Evaluator, Greedy, GumbelConfig, GumbelMuZero, Mcts,
    MctsConfig, RewardUse, Sample, SampleConfig, SampleSelect, SearchError, Searcher,
};
use tch::{Device, Kind, Tensor};

type Env8 = CotEnv<Cycle>;

fn policy(env: &Env8, seed: u64) -> CotPolicy {
    agents::testing::tiny_policy(env, 2, seed)
}

/// `n` fresh Cycle(8) problems; root `i` has already played `i % 3` oracle actions.
fn roots(n: usize, seed: u64) -> Vec<Env8> {
    let mut rng = EnvRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let mut e = CotEnv::new(Cycle::new(8).unwrap()).unwrap();
            e.reset(&mut rng, 2 + (i % 3) as u32).unwrap();
            for _ in 0..i % 3 {
                let a = e.oracle_action().unwrap();
                e.step(a).unwrap();
            }
            e
        })
        .collect()
}

/// The logits and value of `env`'s state by a teacher-forced pass over its whole prefix.
fn reference(policy: &CotPolicy, env: &Env8) -> (Vec<f32>, f32) {
    let obs = env.observation();
    let spec = env.spec();
    let tokens =
        ndarray::Array2::from_shape_vec((1, obs.tokens.len()), obs.tokens.clone()).unwrap();
    let (input, difficulty) = policy.problem_tensors(tokens.view());
    let em = spec.obs.token_field("emitted").unwrap();
    let pad = policy.pad();
    let emitted: Vec<i64> = obs.tokens[em.offset..em.offset + em.len]
        .iter()
        .copied()
        .take_while(|&t| t != pad)
        .collect();
    let mut prev = vec![pad];
    prev.extend(&emitted);
    let t = prev.len() as i64;
    let model = policy.model();
    tch::no_grad(|| {
        let enc = model.encode(&input, &difficulty, false);
        let heads = model.forward_chain(&enc, &Tensor::from_slice(&prev).view([1, t]), false);
        let logits = heads.logits.select(1, t - 1).squeeze_dim(0);
        let mut v = vec![0f32; spec.num_actions];
        logits
            .to_kind(Kind::Float)
            .copy_data(&mut v, spec.num_actions);
        (v, heads.value.double_value(&[0, t - 1]) as f32)
    })
}

/// Evaluates with the policy evaluator and checks every non-terminal state against
/// [`reference`].
struct Checked<'a> {
    inner: PolicyEvaluator<'a>,
    policy: &'a CotPolicy,
    checked: usize,
    max_err: f32,
}

impl Evaluator<Env8> for Checked<'_> {
    fn begin_search(&mut self, roots: &[Env8]) -> Result<(), SearchError> {
        self.inner.begin_search(roots)
    }

    fn evaluate(
        &mut self,
        batch: &EvalBatch<'_, Env8>,
        logits: &mut [f32],
        values: &mut [f32],
    ) -> Result<(), SearchError> {
        self.inner.evaluate(batch, logits, values)?;
        let na = logits.len() / batch.len();
        let max_steps = self.policy.model().layout().max_steps;
        for (i, req) in batch.iter().enumerate() {
            if req.env.is_done() {
                // Under `Head` a finished chain with a free position is valued there.
                let count = req.env.emitted().len();
                if self.inner.value_source() == ValueSource::Head && count < max_steps {
                    let (_, v) = reference(self.policy, req.env);
                    self.max_err = self.max_err.max((values[i] - v).abs());
                    self.checked += 1;
                }
                continue;
            }
            let (want, v) = reference(self.policy, req.env);
            for a in 0..na {
                self.max_err = self.max_err.max((logits[i * na + a] - want[a]).abs());
            }
            if self.inner.value_source() == ValueSource::Head {
                self.max_err = self.max_err.max((values[i] - v).abs());
            }
            self.checked += 1;
        }
        Ok(())
    }

    fn reward_use(&self) -> RewardUse {
        Evaluator::<Env8>::reward_use(&self.inner)
    }
}

#[test]
fn cached_decoding_equals_teacher_forcing_for_every_searcher() {
    let proto = roots(1, 0).remove(0);
    let p = policy(&proto, 3);
    let rs = roots(5, 11);
    let mut searchers: Vec<(Box<dyn Searcher<Env8>>, usize)> = vec![
        (Box::new(Greedy::new()), 20),
        (
            Box::new(
                Sample::new(SampleConfig {
                    num_samples: 4,
                    temperature: 1.0,
                    select: SampleSelect::BestValue,
                })
                .unwrap(),
            ),
            60,
        ),
        (
            Box::new(
                Beam::new(BeamConfig {
                    width: 3,
                    score: BeamScore::Value { candidates: 5 },
                })
                .unwrap(),
            ),
            60,
        ),
        (Box::new(Mcts::new(MctsConfig::default()).unwrap()), 40),
        (
            Box::new(GumbelMuZero::new(GumbelConfig::default()).unwrap()),
            40,
        ),
    ];
    for value in [ValueSource::Head, ValueSource::Likelihood] {
        for (s, budget) in searchers.iter_mut() {
            let mut ev = Checked {
                inner: PolicyEvaluator::new(&p, value).unwrap(),
                policy: &p,
                checked: 0,
                max_err: 0.0,
            };
            let mut rng = EnvRng::seed_from_u64(5);
            let out = s.search(&rs, &mut ev, *budget, &mut rng).unwrap();
            assert_eq!(out.len(), rs.len());
            assert!(ev.checked >= rs.len(), "{}: {}", s.name(), ev.checked);
            assert!(
                ev.max_err < 1e-4,
                "{} ({value}): max error {} over {} states",
                s.name(),
                ev.max_err,
                ev.checked
            );
            // Every state but the roots extended a cached parent by one position; roots
            // were decoded from START (`i % 3` emitted tokens, plus START).
            let st = ev.inner.stats();
            let root_positions: usize = (0..rs.len()).map(|i| i % 3 + 1).sum();
            assert_eq!(
                st.positions,
                st.states - st.terminal_from_parent - rs.len() + root_positions,
                "{}: {st:?}",
                s.name()
            );
        }
    }
}

#[test]
fn tree_search_makes_one_decoder_call_per_position_present() {
    let proto = roots(1, 0).remove(0);
    let p = policy(&proto, 4);
    let rs = roots(6, 12);
    let mut ev = PolicyEvaluator::new(&p, ValueSource::Head).unwrap();
    let mut mcts = Mcts::<Env8>::new(MctsConfig::evaluation()).unwrap();
    let mut rng = EnvRng::seed_from_u64(0);
    let budget = 33;
    mcts.search(&rs, &mut ev, budget, &mut rng).unwrap();
    let st = ev.stats();
    assert_eq!(st.searches, 1);
    assert_eq!(st.roots, 6);
    // One evaluate call per simulation plus the roots'; each call decodes every position
    // present in it with one decode_step, and chains are at most 11 actions long.
    assert!(st.decoder_calls <= budget * 12, "{st:?}");
    assert!(st.states <= budget * rs.len(), "{st:?}");
    assert_eq!(Evaluator::<Env8>::reward_use(&ev), RewardUse::Ignore);
}

#[test]
fn terminal_states_get_the_chain_probability_under_likelihood() {
    let proto = roots(1, 0).remove(0);
    let p = policy(&proto, 5);
    let rs = roots(4, 13);
    let mut ev = PolicyEvaluator::new(&p, ValueSource::Likelihood).unwrap();
    let mut s = Sample::<Env8>::new(SampleConfig {
        num_samples: 6,
        temperature: 1.0,
        select: SampleSelect::BestValue,
    })
    .unwrap();
    let mut rng = EnvRng::seed_from_u64(1);
    let out = s.search(&rs, &mut ev, 200, &mut rng).unwrap();
    let mut seen = 0;
    for o in &out {
        for c in o.candidates.iter().filter(|c| c.terminated) {
            let v = c.value.expect("BestValue evaluates final states");
            let want = c.log_prob.exp();
            assert!(
                (v - want).abs() <= 1e-4 * want.max(1e-3),
                "value {v}, chain probability {want}"
            );
            seen += 1;
        }
    }
    assert!(seen > 10, "{seen} terminated chains");
}

#[test]
fn chains_that_fill_the_decoder_get_the_last_decision_value_under_head() {
    // Cap 2 at 2 hops: chain, marker and answer fill all 4 decoder positions.
    let cfg = envs::CotConfig {
        max_chain_len: Some(2),
        ..envs::CotConfig::default()
    };
    let mut rng = EnvRng::seed_from_u64(14);
    let mut rs: Vec<Env8> = (0..3)
        .map(|_| {
            let mut e = CotEnv::with_config(Cycle::new(8).unwrap(), cfg).unwrap();
            e.reset(&mut rng, 2).unwrap();
            e
        })
        .collect();
    let p = policy(&rs[0], 6);
    // Play each root up to its answer step (oracle chain, then the marker).
    for r in rs.iter_mut() {
        while r.phase() != envs::Phase::Answer {
            let a = r.oracle_action().unwrap();
            r.step(a).unwrap();
        }
    }
    let mut ev = PolicyEvaluator::new(&p, ValueSource::Head).unwrap();
    let mut mcts = Mcts::<Env8>::new(MctsConfig::evaluation()).unwrap();
    let mut rng = EnvRng::seed_from_u64(2);
    let out = mcts.search(&rs, &mut ev, 9, &mut rng).unwrap();
    for (r, o) in rs.iter().zip(&out) {
        // Every child of an answer-phase root is terminal and valued V(root): the root's
        // backed-up value is its own value head output.
        let (_, v) = reference(&p, r);
        assert!((o.value - v).abs() < 1e-4, "{} vs {v}", o.value);
        assert!(o.done);
    }
    let st = ev.stats();
    assert_eq!(st.terminal, st.terminal_from_parent);
    assert!(st.terminal > 0);
}

#[test]
fn a_model_without_a_decoder_is_refused() {
    let proto = roots(1, 0).remove(0);
    let spec = proto.spec();
    let layout = ModelLayout::from_spec(spec)
        .unwrap()
        .with_answer_head(1, 8)
        .without_chain();
    let p = CotPolicy::new(spec, &layout, &ModelConfig::default(), 0, Device::Cpu).unwrap();
    let err = PolicyEvaluator::new(&p, ValueSource::Head).unwrap_err();
    assert!(err.to_string().contains("no chain decoder"), "{err}");
}
