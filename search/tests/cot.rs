//! The searchers on the real token MDP, `CotEnv<Cycle>`.

use envs::{CotEnv, Cycle, Env, EnvRng};
use rand::SeedableRng;
use search::*;

const L: usize = 5;

fn problems(n: usize, hops: u32, seed: u64) -> Vec<CotEnv<Cycle>> {
    let mut rng = EnvRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut env = CotEnv::new(Cycle::new(L).unwrap()).unwrap();
            env.reset(&mut rng, hops).unwrap();
            env
        })
        .collect()
}

/// Plays every episode to its end, searching from all live states in one batch at each step
/// and taking the first action of each result. Returns the fraction solved.
fn act(
    searcher: &mut dyn Searcher<CotEnv<Cycle>>,
    evaluator: &mut dyn Evaluator<CotEnv<Cycle>>,
    mut envs: Vec<CotEnv<Cycle>>,
    budget: usize,
    seed: u64,
) -> f32 {
    let mut rng = EnvRng::seed_from_u64(seed);
    loop {
        let live: Vec<usize> = (0..envs.len()).filter(|&i| !envs[i].is_done()).collect();
        if live.is_empty() {
            break;
        }
        let roots: Vec<_> = live.iter().map(|&i| envs[i].clone()).collect();
        let out = searcher
            .search(&roots, evaluator, budget, &mut rng)
            .unwrap();
        for (o, &i) in out.iter().zip(&live) {
            assert!(o.evals <= budget);
            envs[i].step(o.actions[0]).unwrap();
        }
    }
    let solved = envs
        .iter()
        .filter(|e| e.info().solved == Some(true))
        .count();
    solved as f32 / envs.len() as f32
}

#[test]
fn oracle_tree_search_solves_cycle_and_honest_uniform_search_cannot() {
    let envs = problems(16, 2, 1);
    let tree_searchers: Vec<Box<dyn Searcher<CotEnv<Cycle>>>> = vec![
        Box::new(Mcts::new(MctsConfig::evaluation()).unwrap()),
        Box::new(
            GumbelMuZero::new(GumbelConfig {
                gumbel_scale: 0.0,
                ..GumbelConfig::default()
            })
            .unwrap(),
        ),
    ];
    for mut s in tree_searchers {
        let mut oracle = OracleEvaluator::new(UniformEvaluator::new(0.0));
        let solved = act(s.as_mut(), &mut oracle, envs.clone(), 100, 0);
        assert!(
            solved >= 0.9,
            "{} with the oracle solved {solved}",
            s.name()
        );
        let mut honest = UniformEvaluator::new(0.0);
        let solved = act(s.as_mut(), &mut honest, envs.clone(), 100, 0);
        assert!(
            solved <= 0.5,
            "{} without rewards solved {solved}",
            s.name()
        );
    }
}

/// A policy that reads only the observation: it puts `+2` on the oracle's next token (the
/// chain `f(0), f(f(0)), ...`, then ANSWER after `hops` tokens, then `f^(hops+1)(0)`).
fn observing_policy(
) -> ScriptedEvaluator<impl FnMut(&EvalRequest<'_, CotEnv<Cycle>>, &mut [f32]) -> f32> {
    let mut obs: Option<envs::Observation> = None;
    ScriptedEvaluator::new(
        move |req: &EvalRequest<'_, CotEnv<Cycle>>, row: &mut [f32]| {
            let spec = req.env.spec();
            let o = obs.get_or_insert_with(|| envs::Observation::zeros(spec));
            req.env.observe(o.as_mut());
            let field = |name: &str| spec.obs.token_field(name).unwrap().clone();
            let (input, diff, emitted) = (field("input"), field("difficulty"), field("emitted"));
            let f = &o.tokens[input.offset..input.offset + input.len];
            let hops = o.tokens[diff.offset] as usize + 1;
            let answer = L;
            let pad = L as i64 + 1;
            let done: Vec<i64> = o.tokens[emitted.offset..emitted.offset + emitted.len]
                .iter()
                .copied()
                .take_while(|&t| t != pad)
                .collect();
            let mut x = 0usize;
            for _ in 0..=hops {
                x = f[x] as usize;
            }
            let target = match done.iter().position(|&t| t == answer as i64) {
                Some(_) => x,
                None if done.len() < hops => {
                    let last = done.last().map_or(0, |&t| t as usize);
                    f[last] as usize
                }
                None => answer,
            };
            row[target] = 2.0;
            0.0
        },
    )
}

#[test]
fn voting_over_answer_tokens_beats_a_single_sample() {
    let envs = problems(12, 1, 7);
    let answer = envs[0].answer_action();
    let mut policy = observing_policy();
    let mut single = Sample::new(SampleConfig {
        num_samples: 1,
        temperature: 1.0,
        select: SampleSelect::Vote,
    })
    .unwrap()
    .with_answer(AfterAction(answer));
    let mut vote = Sample::new(SampleConfig {
        num_samples: 24,
        temperature: 1.0,
        select: SampleSelect::Vote,
    })
    .unwrap()
    .with_answer(AfterAction(answer));
    let mut rng = EnvRng::seed_from_u64(3);
    let solved = |s: &mut Sample<CotEnv<Cycle>>,
                  policy: &mut dyn Evaluator<CotEnv<Cycle>>,
                  rng: &mut EnvRng| {
        let out = s.search(&envs, policy, 1000, rng).unwrap();
        let mut n = 0;
        for (o, env) in out.iter().zip(&envs) {
            let mut e = env.clone();
            for &a in &o.actions {
                e.step(a).unwrap();
            }
            assert!(o.done && e.is_done());
            n += usize::from(e.info().solved == Some(true));
        }
        n as f32 / envs.len() as f32
    };
    let one = solved(&mut single, &mut policy, &mut rng);
    let many = solved(&mut vote, &mut policy, &mut rng);
    assert!(many >= 0.9, "vote solved {many}");
    assert!(many > one, "vote {many} vs single {one}");
}

#[test]
fn every_searcher_returns_legal_chains_on_cot_env() {
    let envs = problems(4, 3, 2);
    let searchers: Vec<Box<dyn Searcher<CotEnv<Cycle>>>> = vec![
        Box::new(Greedy::new()),
        Box::new(Beam::new(BeamConfig::default()).unwrap()),
        Box::new(Sample::new(SampleConfig::default()).unwrap()),
        Box::new(Mcts::new(MctsConfig::default()).unwrap()),
        Box::new(GumbelMuZero::new(GumbelConfig::default()).unwrap()),
    ];
    for mut s in searchers {
        let mut eval = CountingEvaluator::new(observing_policy());
        let out = s
            .search(&envs, &mut eval, 64, &mut EnvRng::seed_from_u64(0))
            .unwrap();
        for (b, (o, env)) in out.iter().zip(&envs).enumerate() {
            let mut e = env.clone();
            for &a in &o.actions {
                e.step(a).unwrap();
            }
            assert_eq!(e.is_done(), o.done, "{}", s.name());
            assert_eq!(eval.per_root[b], o.evals);
            assert!(o.evals <= 64);
            let legal = env.observation().action_mask;
            for (a, &p) in o.policy.iter().enumerate() {
                assert!(
                    p >= 0.0 && (legal[a] || p == 0.0),
                    "{}: {:?}",
                    s.name(),
                    o.policy
                );
            }
        }
    }
}
