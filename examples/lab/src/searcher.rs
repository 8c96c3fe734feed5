//! A searcher: one-step lookahead on the value. From each root it evaluates the root (the
//! policy's prior), then the states after the `k - 1` most likely legal actions, in one
//! evaluator call for all roots, and plays the action whose next state the value head rates
//! highest (plus `prior_weight` times the action's log-prior, which breaks ties). It spends
//! at most `k` evaluator calls per action, like MCTS and Gumbel MuZero at budget `k`.

use factorexe::agents::searchers::{BuildSearcher, Plays, SearchContext, SearchPurpose};
use factorexe::envs::{AnyEnv, Env, EnvRng, Observation};
use factorexe::search::{EvalQueue, Evaluator, SearchError, SearchOutput, Searcher};
use serde::{Deserialize, Serialize};

/// One-step lookahead on the value head.
pub struct ValueLookahead {
    prior_weight: f32,
    queue: EvalQueue<AnyEnv>,
    logits: Vec<f32>,
    values: Vec<f32>,
    obs: Option<Observation>,
}

/// The settings of `lookahead`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookaheadSettings {
    /// Weight of the log-prior added to the next state's value, `>= 0`.
    pub prior_weight: f64,
}

impl BuildSearcher for ValueLookahead {
    const NAME: &'static str = "lookahead";
    const SUMMARY: &'static str =
        "one-step lookahead: the k-1 likeliest actions, ranked by their next state's value";
    const PLAYS: Plays = Plays::EachAction;
    type Settings = LookaheadSettings;

    fn defaults(_: SearchPurpose) -> LookaheadSettings {
        LookaheadSettings { prior_weight: 0.1 }
    }

    fn validate(s: &LookaheadSettings) -> Result<(), String> {
        if !(s.prior_weight.is_finite() && s.prior_weight >= 0.0) {
            return Err(format!(
                "prior_weight = {}: expected a finite number >= 0",
                s.prior_weight
            ));
        }
        Ok(())
    }

    fn build(
        _: &SearchContext<'_>,
        s: &LookaheadSettings,
    ) -> Result<Box<dyn Searcher<AnyEnv>>, SearchError> {
        Ok(Box::new(ValueLookahead {
            prior_weight: s.prior_weight as f32,
            queue: EvalQueue::new(),
            logits: Vec::new(),
            values: Vec::new(),
            obs: None,
        }))
    }
}

impl ValueLookahead {
    /// Evaluates the queued states into `self.logits` and `self.values`.
    fn evaluate(
        &mut self,
        evaluator: &mut dyn Evaluator<AnyEnv>,
        roots: usize,
        na: usize,
    ) -> Result<(), SearchError> {
        let n = self.queue.len();
        self.logits.resize(n * na, 0.0);
        self.values.resize(n, 0.0);
        self.queue
            .evaluate(evaluator, roots, &mut self.logits, &mut self.values)
    }
}

impl Searcher<AnyEnv> for ValueLookahead {
    fn name(&self) -> String {
        format!("lookahead(prior_weight={})", self.prior_weight)
    }

    fn search(
        &mut self,
        roots: &[AnyEnv],
        evaluator: &mut dyn Evaluator<AnyEnv>,
        budget: usize,
        _rng: &mut EnvRng,
    ) -> Result<Vec<SearchOutput>, SearchError> {
        let Some(first) = roots.first() else {
            return Err(SearchError::NoRoots);
        };
        let na = first.spec().num_actions;
        let mut obs = self
            .obs
            .take()
            .unwrap_or_else(|| Observation::zeros(first.spec()));
        evaluator.begin_search(roots)?;
        self.queue.clear();
        for (b, root) in roots.iter().enumerate() {
            self.queue.push(b, 0, None, 0, root.clone());
        }
        self.evaluate(evaluator, roots.len(), na)?;

        // The k - 1 likeliest legal actions of each root, by prior logit.
        let mut candidates: Vec<Vec<(usize, f32)>> = Vec::with_capacity(roots.len());
        for (b, root) in roots.iter().enumerate() {
            root.observe(obs.as_mut());
            let row = &self.logits[b * na..(b + 1) * na];
            let mut legal: Vec<usize> = (0..na).filter(|&a| obs.action_mask[a]).collect();
            if legal.is_empty() {
                return Err(SearchError::RootDone { root: b });
            }
            legal.sort_by(|&x, &y| row[y].total_cmp(&row[x]));
            let max = row[legal[0]];
            let log_z = max
                + legal
                    .iter()
                    .map(|&a| (row[a] - max).exp())
                    .sum::<f32>()
                    .ln();
            legal.truncate(budget.saturating_sub(1).max(1));
            candidates.push(legal.iter().map(|&a| (a, row[a] - log_z)).collect());
        }
        self.obs = Some(obs);
        let root_values = self.values[..roots.len()].to_vec();
        let mut done = Vec::new();
        if budget >= 2 {
            self.queue.clear();
            for (b, root) in roots.iter().enumerate() {
                for (j, &(a, _)) in candidates[b].iter().enumerate() {
                    let mut child = root.clone();
                    let step = child.step(a)?;
                    done.push(step.done());
                    self.queue.push(b, j as u32 + 1, Some((0, a)), 1, child);
                }
            }
            self.evaluate(evaluator, roots.len(), na)?;
        }

        let mut outputs = Vec::with_capacity(roots.len());
        let mut next = 0;
        for (b, cands) in candidates.iter().enumerate() {
            let mut best = (cands[0].0, f32::NEG_INFINITY, root_values[b], false);
            for &(a, log_prior) in cands {
                let (value, finished) = if budget >= 2 {
                    (self.values[next], done[next])
                } else {
                    (root_values[b], false)
                };
                next += usize::from(budget >= 2);
                let score = value + self.prior_weight * log_prior;
                if score > best.1 {
                    best = (a, score, value, finished);
                }
            }
            let mut policy = vec![0.0; na];
            policy[best.0] = 1.0;
            outputs.push(SearchOutput {
                actions: vec![best.0],
                policy,
                value: best.2,
                evals: 1 + if budget >= 2 { cands.len() } else { 0 },
                done: best.3,
                visit_counts: Vec::new(),
                candidates: Vec::new(),
            });
        }
        Ok(outputs)
    }
}
