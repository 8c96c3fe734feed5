//! Shared pieces of the policy-gradient agents ([`Reinforce`](super::Reinforce),
//! [`Poppy`](super::Poppy)): the baselines and advantages as pure functions over slices
//! (so tests check them against hand-computed numbers), the REINFORCE loss over small
//! tensors, the oracle's answers (for answer supervision and the dense reward), and the
//! gradient-variance estimate.
//!
//! Rows follow [`Experience::OnPolicy`](crate::agent::Experience::OnPolicy): the `K`
//! samples of problem `g` are rows `g*K..(g+1)*K`.
//!
//! The answer-supervision recipe (`reward = "answer_ce"`, `answer_supervision > 0`) is
//! shared too: [`on_policy_with_answers`] collects the episodes with the oracle's answers,
//! [`RlBatch`] hands them to the update, [`with_correct_answers`] forces them
//! into the episodes, [`answer_ce_returns`] scores each sampled chain, and
//! [`policy_gradient_steps`] / [`answer_supervision_loss`] split the loss between the chain
//! (policy gradient) and the answer (cross-entropy).

use envs::{Env, EnvRng};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Device, Kind, Tensor};

use crate::act::ActMode;
use crate::agent::{Agent, AgentError, Collector, Episodes};
use crate::model::Encoded;
use crate::policy::{masked_log_softmax, step_kinds, CotPolicy, TeacherBatch};

/// The baseline subtracted from each episode's return (`[algo] baseline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineKind {
    /// No baseline: advantage = return.
    None,
    /// The mean return of the whole batch (includes the episode itself).
    BatchMean,
    /// The mean return of the other `K - 1` samples of the same problem (leave-one-out;
    /// unbiased because it does not depend on the episode's own actions).
    #[default]
    Group,
    /// The value head's prediction at each prefix, trained by MSE to the return.
    Value,
    /// An exponential moving average of past batches' mean return (this batch excluded).
    Ema,
}

impl BaselineKind {
    /// The config spelling.
    pub fn tag(self) -> &'static str {
        match self {
            BaselineKind::None => "none",
            BaselineKind::BatchMean => "batch_mean",
            BaselineKind::Group => "group",
            BaselineKind::Value => "value",
            BaselineKind::Ema => "ema",
        }
    }
}

/// The return each episode is scored with (`[algo] reward`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardKind {
    /// The env's reward: 1 when the answer is right, else 0 (plus the env's own shaping).
    #[default]
    Answer,
    /// The original's dense signal: minus the cross-entropy of the correct answer given the
    /// sampled chain (teacher-forced), summed over answer tokens.
    AnswerCe,
}

/// Mean and (population) standard deviation.
pub fn mean_std(x: &[f32]) -> (f64, f64) {
    if x.is_empty() {
        return (0.0, 0.0);
    }
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = x
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

/// The batch-mean baseline: every row gets the mean of `returns`.
pub fn batch_mean_baseline(returns: &[f32]) -> Vec<f32> {
    let (mean, _) = mean_std(returns);
    vec![mean as f32; returns.len()]
}

/// The leave-one-out group baseline: row `g*k + j` gets the mean return of the other
/// `k - 1` rows of group `g`. With `k <= 1` there are no others and the baseline is 0.
/// A trailing partial group (when `k` does not divide the length) is treated as a group.
pub fn leave_one_out_baseline(returns: &[f32], k: usize) -> Vec<f32> {
    let mut out = vec![0f32; returns.len()];
    if k <= 1 {
        return out;
    }
    for (group, b) in returns.chunks(k).zip(out.chunks_mut(k)) {
        if group.len() < 2 {
            continue;
        }
        let sum: f64 = group.iter().map(|&r| f64::from(r)).sum();
        let others = (group.len() - 1) as f64;
        for (bj, &rj) in b.iter_mut().zip(group) {
            *bj = ((sum - f64::from(rj)) / others) as f32;
        }
    }
    out
}

/// One step of an exponential moving average: `decay * prev + (1 - decay) * x`, or `x`
/// when there is no previous value.
pub fn ema_update(prev: Option<f64>, x: f64, decay: f64) -> f64 {
    match prev {
        Some(p) => decay * p + (1.0 - decay) * x,
        None => x,
    }
}

/// The index (within its group) of the best row of each group of `k` rows; ties go to the
/// lowest index.
pub fn best_in_groups(returns: &[f32], k: usize) -> Vec<usize> {
    returns
        .chunks(k.max(1))
        .map(|g| {
            let mut best = 0;
            for (j, &r) in g.iter().enumerate() {
                if r > g[best] {
                    best = j;
                }
            }
            best
        })
        .collect()
}

/// POPPY's advantage (Grinsztajn et al. 2023): in each group of `k` rows only the best row
/// gets a non-zero advantage, `best - second best`; every other row gets 0. A group where
/// the best return is tied gives 0 everywhere (no member is better than the rest).
pub fn poppy_advantages(returns: &[f32], k: usize) -> Vec<f32> {
    let k = k.max(1);
    let mut out = vec![0f32; returns.len()];
    for ((g, best), a) in returns
        .chunks(k)
        .zip(best_in_groups(returns, k))
        .zip(out.chunks_mut(k))
    {
        if g.len() < 2 {
            continue;
        }
        let second = g
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != best)
            .map(|(_, &r)| r)
            .fold(f32::NEG_INFINITY, f32::max);
        a[best] = g[best] - second;
    }
    out
}

/// The REINFORCE loss `-(1/n) * sum_{i,t} w[i,t] * logp[i,t]`, where `w` already holds the
/// advantage on the steps that get policy gradient and 0 elsewhere, and `n` is the number of
/// episodes (or problems) the gradient is averaged over.
pub fn reinforce_loss(logp: &Tensor, weights: &Tensor, n: f64) -> Tensor {
    -(logp * weights.to_device(logp.device())).sum(Kind::Float) / n.max(1.0)
}

/// The oracle's answer tokens (the actions after the ANSWER marker) for each env, read by
/// playing the oracle on a clone. `None` for an env without an oracle.
pub fn oracle_answers<E: Env>(envs: &[E], answer_action: usize) -> Option<Vec<Vec<i64>>> {
    let mut out = Vec::with_capacity(envs.len());
    for env in envs {
        let mut e = env.clone();
        let mut actions = Vec::new();
        while !e.is_done() {
            let a = e.oracle_action()?;
            e.step(a).ok()?;
            actions.push(a);
            if actions.len() > 1 << 16 {
                return None;
            }
        }
        let marker = actions.iter().position(|&a| a == answer_action)?;
        out.push(actions[marker + 1..].iter().map(|&a| a as i64).collect());
    }
    Some(out)
}

/// A copy of `ep`'s actions where every answer step (after the marker) holds the correct
/// answer token instead of the sampled one. Steps at or before the marker are unchanged,
/// so a causal decoder scores the sampled chain exactly as it was played.
pub fn with_correct_answers(ep: &Episodes, answers: &[Vec<i64>], answer_action: i64) -> Episodes {
    let mut out = ep.clone();
    for (i, ans) in answers.iter().enumerate().take(ep.len()) {
        let len = ep.lengths[i].min(ep.max_len());
        if let Some(m) = (0..len).find(|&t| ep.actions[[i, t]] == answer_action) {
            for (j, &a) in ans.iter().enumerate() {
                let t = m + 1 + j;
                if t < len {
                    out.actions[[i, t]] = a;
                }
            }
        }
    }
    out
}

/// Plays `k` episodes of each fresh problem with `agent` (like
/// [`Collector::on_policy`]) and returns them with the oracle's answer of every row (see
/// [`oracle_answers`]), which the answer-supervision recipe needs at the update. The actions
/// are drawn with an RNG seeded from the collector's.
pub fn on_policy_with_answers<A: Agent + ?Sized>(
    ctx: &mut Collector<'_>,
    agent: &mut A,
    k: usize,
    mode: ActMode,
    answer_action: usize,
) -> Result<(Episodes, Vec<Vec<i64>>), AgentError> {
    let envs = ctx.reset_problems(k)?;
    let answers = oracle_answers(envs, answer_action).ok_or_else(|| {
        AgentError::Incompatible(no_oracle_answer(
            "algo.reward = \"answer_ce\" and algo.answer_supervision read the oracle's answer",
            envs,
        ))
    })?;
    let mut rng = EnvRng::seed_from_u64(ctx.rng().random());
    let ep = ctx.run_episodes(|obs, _| agent.act(obs, mode, &mut rng), k)?;
    Ok((ep, answers))
}

/// Why the oracle's answers could not be read, naming the difficulty and the chain cap when
/// the cap cuts the oracle's chain (the usual cause: a training level beyond it).
/// `need` says which settings read it.
pub fn no_oracle_answer<E: Env>(need: &str, envs: &[E]) -> String {
    let cut = envs.iter().find_map(|e| {
        e.oracle_chain_fit()
            .filter(|f| !f.fits)
            .map(|f| (e.info(), f))
    });
    match cut {
        Some((info, fit)) => format!(
            "{need}, but at difficulty {} the oracle's chain is {} tokens, longer than the \
             chain cap env.max_chain_len = {}: raise env.max_chain_len or leave that level out \
             of train.levels",
            info.difficulty, fit.oracle_chain_len, fit.max_chain_len
        ),
        None => format!("{need}, and this env's oracle does not give one"),
    }
}

/// The rows of `parts` one after the other, padded to the longest (actions `-1`, no legal
/// action, zero rewards past each episode's end), `k` samples per problem.
pub fn concat_episodes(parts: &[Episodes], k: usize) -> Episodes {
    let parts: Vec<&Episodes> = parts.iter().filter(|p| !p.is_empty()).collect();
    let n: usize = parts.iter().map(|p| p.len()).sum();
    let t = parts.iter().map(|p| p.max_len()).max().unwrap_or(0);
    let dim = |f: fn(&Episodes) -> usize| parts.first().map_or(0, |p| f(p));
    let (obs_tokens, obs_features) = (dim(|e| e.tokens.dim().2), dim(|e| e.features.dim().2));
    let actions_n = dim(|e| e.action_mask.dim().2);
    let mut out = Episodes {
        tokens: ndarray::Array3::zeros((n, t, obs_tokens)),
        features: ndarray::Array3::zeros((n, t, obs_features)),
        action_mask: ndarray::Array3::from_elem((n, t, actions_n), false),
        actions: ndarray::Array2::from_elem((n, t), -1),
        log_probs: ndarray::Array2::zeros((n, t)),
        entropies: ndarray::Array2::zeros((n, t)),
        rewards: ndarray::Array2::zeros((n, t)),
        lengths: Vec::with_capacity(n),
        difficulty: Vec::with_capacity(n),
        solved: Vec::with_capacity(n),
        truncated: Vec::with_capacity(n),
        samples_per_problem: k.max(1),
    };
    let mut row = 0;
    for p in parts {
        let (rows, len) = (row..row + p.len(), p.max_len());
        use ndarray::s;
        out.tokens
            .slice_mut(s![rows.clone(), ..len, ..])
            .assign(&p.tokens);
        out.features
            .slice_mut(s![rows.clone(), ..len, ..])
            .assign(&p.features);
        out.action_mask
            .slice_mut(s![rows.clone(), ..len, ..])
            .assign(&p.action_mask);
        out.actions
            .slice_mut(s![rows.clone(), ..len])
            .assign(&p.actions);
        out.log_probs
            .slice_mut(s![rows.clone(), ..len])
            .assign(&p.log_probs);
        out.entropies
            .slice_mut(s![rows.clone(), ..len])
            .assign(&p.entropies);
        out.rewards.slice_mut(s![rows, ..len]).assign(&p.rewards);
        out.lengths.extend(&p.lengths);
        out.difficulty.extend(&p.difficulty);
        out.solved.extend(&p.solved);
        out.truncated.extend(&p.truncated);
        row += p.len();
    }
    out
}

/// The number of chain tokens of each episode (its steps before the ANSWER marker; all of
/// them when it never answered).
pub fn chain_lengths(ep: &Episodes, answer_action: i64) -> Vec<f32> {
    (0..ep.len())
        .map(|i| {
            (0..ep.lengths[i])
                .position(|s| ep.actions[[i, s]] == answer_action)
                .unwrap_or(ep.lengths[i]) as f32
        })
        .collect()
}

/// What the policy-gradient agents collect for an update: their episodes and, when the
/// config reads them (answer supervision, the answer-CE return), the correct answer of
/// every row.
#[derive(Debug, Clone)]
pub struct RlBatch {
    /// The sampled episodes.
    pub episodes: Episodes,
    /// The correct answer of each row, when collected.
    pub answers: Option<Vec<Vec<i64>>>,
}

impl RlBatch {
    /// Episodes of `agent`'s own policy, `k` per fresh problem, with the correct answers when
    /// `with_answers` (see [`on_policy_with_answers`]).
    pub fn collect<A: Agent + ?Sized>(
        ctx: &mut Collector<'_>,
        agent: &mut A,
        k: usize,
        answer_action: usize,
        with_answers: bool,
    ) -> Result<RlBatch, AgentError> {
        if with_answers {
            let (episodes, answers) =
                on_policy_with_answers(ctx, agent, k, ActMode::Sample, answer_action)?;
            Ok(RlBatch {
                episodes,
                answers: Some(answers),
            })
        } else {
            let episodes = ctx.on_policy(k, ActMode::Sample, |obs, mode, rng| {
                agent.act(obs, mode, rng)
            })?;
            Ok(RlBatch {
                episodes,
                answers: None,
            })
        }
    }

    /// Like [`collect`](Self::collect) (round 0), on the problems of refill round `round`
    /// ([`Collector::reset_problems_round`]): what dynamic sampling plays to replace the
    /// groups it discards.
    pub fn collect_round<A: Agent + ?Sized>(
        ctx: &mut Collector<'_>,
        agent: &mut A,
        k: usize,
        answer_action: usize,
        with_answers: bool,
        round: u64,
    ) -> Result<RlBatch, AgentError> {
        if round == 0 {
            return Self::collect(ctx, agent, k, answer_action, with_answers);
        }
        let envs = ctx.reset_problems_round(k, round)?;
        let answers = if with_answers {
            Some(oracle_answers(envs, answer_action).ok_or_else(|| {
                AgentError::Incompatible(no_oracle_answer(
                    "algo.reward = \"answer_ce\" and algo.answer_supervision read the oracle's answer",
                    envs,
                ))
            })?)
        } else {
            None
        };
        let mut rng = EnvRng::seed_from_u64(ctx.rng().random());
        let episodes = ctx.run_episodes(|obs, _| agent.act(obs, ActMode::Sample, &mut rng), k)?;
        Ok(RlBatch { episodes, answers })
    }

    /// The groups `groups` (problem indices, `k` rows each) of `self`.
    pub fn groups(&self, groups: &[usize]) -> RlBatch {
        let k = self.episodes.samples_per_problem.max(1);
        let parts: Vec<Episodes> = groups
            .iter()
            .map(|&g| self.episodes.rows(g * k..(g + 1) * k))
            .collect();
        let answers = self.answers.as_ref().map(|a| {
            groups
                .iter()
                .flat_map(|&g| a[g * k..(g + 1) * k].iter().cloned())
                .collect()
        });
        RlBatch {
            episodes: concat_episodes(&parts, k),
            answers,
        }
    }

    /// The batches' rows one after the other (answers kept only when every part has them).
    pub fn concat(parts: &[RlBatch]) -> RlBatch {
        let k = parts.first().map_or(1, |b| b.episodes.samples_per_problem);
        let episodes: Vec<Episodes> = parts.iter().map(|b| b.episodes.clone()).collect();
        let answers = parts
            .iter()
            .map(|b| b.answers.clone())
            .collect::<Option<Vec<_>>>()
            .map(|a| a.concat());
        RlBatch {
            episodes: concat_episodes(&episodes, k),
            answers,
        }
    }

    /// The recorded answers; an error naming what is missing when `collect` did not record
    /// them.
    pub fn answers(&self) -> Result<&[Vec<i64>], AgentError> {
        match &self.answers {
            Some(a) if a.len() == self.episodes.len() => Ok(a),
            _ => Err(AgentError::Incompatible(
                "this config needs the correct answers, which `collect` records: update a \
                 batch that this agent collected with the same config"
                    .into(),
            )),
        }
    }
}

/// Minus the correct answer's cross-entropy given each episode's sampled chain (the
/// `answer_ce` return), summed over the answer steps of `forced` (episodes from
/// [`with_correct_answers`]); an episode without answer steps scores 0. Computed without
/// gradient in `parts` contiguous parts. `extra_rows [n, R, width]`, one entry per row of
/// `forced`, are appended to the encoder memory (POPPY's member embeddings), so each row is
/// scored by the member that played it.
pub fn answer_ce_returns(
    policy: &CotPolicy,
    forced: &Episodes,
    extra_rows: Option<&Tensor>,
    parts: usize,
) -> Result<Vec<f32>, AgentError> {
    let (n, t) = (forced.len(), forced.max_len());
    let (_, answer) = step_kinds(forced, policy.answer_action() as i64);
    let mut out = Vec::with_capacity(n);
    tch::no_grad(|| -> Result<(), AgentError> {
        for r in group_parts(n, 1, parts) {
            let part = forced.rows(r.clone());
            let b = policy.teacher_batch(&part);
            let rows = extra_rows.map(|x| x.narrow(0, r.start as i64, r.len() as i64));
            let pass = pg_pass(policy, &b, rows.as_ref(), false);
            let mask = grid(
                &answer[r.start * t..r.end * t],
                r.len(),
                t,
                pass.logp.device(),
            );
            out.extend(answer_log_likelihood(&pass.logp, &mask)?);
        }
        Ok(())
    })?;
    Ok(out)
}

/// Each row's summed log-probability `sum_t mask[i,t] * logp[i,t]` (no gradient), copied to
/// the host in one transfer: over the answer steps of a pass over
/// [`with_correct_answers`] episodes, minus the correct answer's cross-entropy, the
/// `answer_ce` return.
pub fn answer_log_likelihood(logp: &Tensor, mask: &Tensor) -> Result<Vec<f32>, AgentError> {
    let ll = tch::no_grad(|| {
        (logp.detach() * mask.to_device(logp.device())).sum_dim_intlist(-1, false, Kind::Float)
    });
    Ok(Vec::<f32>::try_from(ll.to_device(Device::Cpu))?)
}

/// The steps that get policy gradient, over `step_kinds`' `chain` and `answer` masks: the
/// chain and the ANSWER marker, plus the answer tokens unless they are trained by answer
/// supervision (`supervise`).
pub fn policy_gradient_steps(chain: &[f32], answer: &[f32], supervise: bool) -> Vec<f32> {
    chain
        .iter()
        .zip(answer)
        .map(|(&c, &a)| if supervise { c } else { c + a })
        .collect()
}

/// The answer-supervision term `-(1/n_answer) sum_{i,t} answer[i,t] * logp[i,t]`: with
/// `logp` the log-probabilities of the correct answer tokens (a pass over
/// [`with_correct_answers`] episodes), the mean cross-entropy of the correct answer given
/// the sampled chain, where `n_answer` counts the answer steps of the whole batch.
pub fn answer_supervision_loss(logp: &Tensor, answer_mask: &Tensor, n_answer: f64) -> Tensor {
    -(logp * answer_mask.to_device(logp.device())).sum(Kind::Float) / n_answer.max(1.0)
}

/// Accumulates the flattened gradient after each micro-batch to estimate the variance of
/// the batch gradient.
///
/// With parts of `n_m` rows whose gradient contributions (to the batch-mean gradient `g`)
/// are `G_m`, the part means are `g_m = G_m * N / n_m`, independent with covariance
/// `Sigma / n_m` (`Sigma`: the per-row gradient covariance). Then
/// `tr Sigma ~= sum_m n_m |g_m - g|^2 / (M - 1)` and the variance of the batch gradient is
/// `tr Sigma / N`. Needs at least two parts.
#[derive(Debug, Default)]
pub struct GradVariance {
    parts: Vec<(usize, Vec<f32>)>,
    last: Vec<f32>,
}

impl GradVariance {
    /// Records the gradient accumulated so far, after a part of `rows` rows.
    pub fn record(&mut self, vs: &VarStore, rows: usize) {
        let now = flat_grad(vs);
        let part: Vec<f32> = if self.last.is_empty() {
            now.clone()
        } else {
            now.iter().zip(&self.last).map(|(a, b)| a - b).collect()
        };
        self.parts.push((rows, part));
        self.last = now;
    }

    /// `(trace of the batch gradient's variance, squared norm of the batch gradient)`, or
    /// `None` with fewer than two parts.
    pub fn estimate(&self) -> Option<(f64, f64)> {
        estimate_grad_variance(&self.parts)
    }
}

/// See [`GradVariance`]: `parts` holds each part's row count and gradient contribution.
pub fn estimate_grad_variance(parts: &[(usize, Vec<f32>)]) -> Option<(f64, f64)> {
    if parts.len() < 2 {
        return None;
    }
    let n: usize = parts.iter().map(|(r, _)| r).sum();
    let dim = parts[0].1.len();
    let mut total = vec![0f64; dim];
    for (_, g) in parts {
        for (t, &x) in total.iter_mut().zip(g) {
            *t += f64::from(x);
        }
    }
    let mut trace = 0f64;
    for (rows, g) in parts {
        let scale = n as f64 / (*rows).max(1) as f64;
        let d2: f64 = g
            .iter()
            .zip(&total)
            .map(|(&x, &t)| (f64::from(x) * scale - t).powi(2))
            .sum();
        trace += *rows as f64 * d2;
    }
    trace /= (parts.len() - 1) as f64;
    let norm2 = total.iter().map(|x| x * x).sum();
    Some((trace / n.max(1) as f64, norm2))
}

/// Every gradient, flattened in variable-name order (zeros for a variable without one),
/// gathered on the device and copied to the host in one transfer.
fn flat_grad(vs: &VarStore) -> Vec<f32> {
    let mut vars = vs.variables().into_iter().collect::<Vec<_>>();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let parts: Vec<Tensor> = tch::no_grad(|| {
        vars.iter()
            .map(|(_, v)| {
                let g = v.grad();
                if g.defined() {
                    g.to_kind(Kind::Float).view([-1])
                } else {
                    Tensor::zeros([v.numel() as i64], (Kind::Float, v.device()))
                }
            })
            .collect()
    });
    if parts.is_empty() {
        return Vec::new();
    }
    let flat = Tensor::cat(&parts, 0).to_device(Device::Cpu);
    Vec::<f32>::try_from(&flat).unwrap_or_else(|_| vec![0f32; flat.numel()])
}

/// Splits `n` rows into `parts` contiguous ranges that never cut a group of `k` rows (the
/// last range takes the remainder).
pub fn group_parts(n: usize, k: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let k = k.max(1);
    let groups = n.div_ceil(k);
    crate::optim::micro_batches(groups, parts)
        .into_iter()
        .map(|r| (r.start * k).min(n)..(r.end * k).min(n))
        .filter(|r| !r.is_empty())
        .collect()
}

/// Mean of `entropies[i, t]` over the episodes whose chain reaches position `t`, for each
/// chain position (steps before the ANSWER marker).
pub fn entropy_per_chain_position(ep: &Episodes, answer_action: i64) -> Vec<f64> {
    let mut sum = Vec::<f64>::new();
    let mut cnt = Vec::<f64>::new();
    for i in 0..ep.len() {
        let len = ep.lengths[i].min(ep.max_len());
        for t in 0..len {
            if ep.actions[[i, t]] == answer_action {
                break;
            }
            if sum.len() <= t {
                sum.resize(t + 1, 0.0);
                cnt.resize(t + 1, 0.0);
            }
            sum[t] += f64::from(ep.entropies[[i, t]]);
            cnt[t] += 1.0;
        }
    }
    sum.iter().zip(&cnt).map(|(s, c)| s / c.max(1.0)).collect()
}

/// `[n, T]` f32 tensor of `v` (row-major).
pub fn grid(v: &[f32], n: usize, t: usize, device: Device) -> Tensor {
    Tensor::from_slice(v)
        .view([n as i64, t as i64])
        .to_device(device)
}

/// One teacher-forced pass over sampled episodes: per-step log-probabilities of the taken
/// (or substituted) actions, entropies and values, `[n, T]` each.
pub struct PgPass {
    /// Log-probability of each step's action.
    pub logp: Tensor,
    /// Entropy of the policy at each step.
    pub entropy: Tensor,
    /// The value head at each step.
    pub value: Tensor,
}

/// [`pg_pass`] over a batch whose rows come in groups of `rows_per_problem` consecutive rows
/// sharing one problem (on-policy episodes, `K` samples per problem): each problem is encoded
/// once and its memory serves its `K` rows (the same numbers as encoding every row, for
/// `K` times less encoder and cross-attention key/value work). With `rows_per_problem` 1, or
/// when the rows do not divide into such groups, this is `pg_pass`.
pub fn pg_pass_shared(
    policy: &CotPolicy,
    b: &TeacherBatch,
    rows_per_problem: usize,
    train: bool,
) -> PgPass {
    let enc = policy.encode_shared(&b.input, &b.difficulty, rows_per_problem, train);
    pg_pass_over(policy, b, enc, train)
}

/// Runs the model over `b`, with `extra_rows [n, R, width]` appended to the memory (POPPY's
/// member embeddings).
pub fn pg_pass(
    policy: &CotPolicy,
    b: &TeacherBatch,
    extra_rows: Option<&Tensor>,
    train: bool,
) -> PgPass {
    let mut enc = policy.model().encode(&b.input, &b.difficulty, train);
    if let Some(rows) = extra_rows {
        enc = enc.with_extra_rows(rows);
    }
    pg_pass_over(policy, b, enc, train)
}

fn pg_pass_over(policy: &CotPolicy, b: &TeacherBatch, enc: Encoded, train: bool) -> PgPass {
    let heads = policy.model().forward_chain(&enc, &b.prev, train);
    let logp_all = masked_log_softmax(&heads.logits, &b.mask);
    let targets = b.targets.to_device(heads.logits.device());
    let logp = logp_all
        .gather(-1, &targets.unsqueeze(-1), false)
        .squeeze_dim(-1);
    let entropy = -(logp_all.exp() * &logp_all).sum_dim_intlist(-1, false, Kind::Float);
    PgPass {
        logp,
        entropy,
        value: heads.value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
    }

    #[test]
    fn batch_mean_is_the_mean_of_all_returns() {
        assert!(close(
            &batch_mean_baseline(&[1.0, 0.0, 0.0, 1.0, 1.0]),
            &[0.6; 5]
        ));
        let (m, s) = mean_std(&[1.0, 0.0, 0.0, 1.0]);
        assert!((m - 0.5).abs() < 1e-12 && (s - 0.5).abs() < 1e-12);
    }

    #[test]
    fn leave_one_out_averages_the_other_samples_of_the_problem() {
        // Group 1: [1, 0, 0, 1] -> others' means [1/3, 2/3, 2/3, 1/3].
        // Group 2: [0, 0, 0, 1] -> [1/3, 1/3, 1/3, 0].
        let r = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        let b = leave_one_out_baseline(&r, 4);
        let third = 1.0 / 3.0;
        assert!(close(
            &b,
            &[
                third,
                2.0 * third,
                2.0 * third,
                third,
                third,
                third,
                third,
                0.0
            ]
        ));
        // Advantages of group 2: the only success gets +1, the failures -1/3.
        let adv: Vec<f32> = r.iter().zip(&b).map(|(r, b)| r - b).collect();
        assert!(close(&adv[4..], &[-third, -third, -third, 1.0]));
        // K = 2: each row's baseline is the other row.
        assert!(close(&leave_one_out_baseline(&[0.5, 2.0], 2), &[2.0, 0.5]));
        // K = 1: no others.
        assert!(close(&leave_one_out_baseline(&[1.0, 0.0], 1), &[0.0, 0.0]));
    }

    #[test]
    fn ema_starts_at_the_first_value_then_decays() {
        let a = ema_update(None, 0.4, 0.9);
        assert!((a - 0.4).abs() < 1e-12);
        let b = ema_update(Some(a), 1.0, 0.9);
        assert!((b - 0.46).abs() < 1e-12);
        let c = ema_update(Some(b), 0.0, 0.5);
        assert!((c - 0.23).abs() < 1e-12);
    }

    #[test]
    fn poppy_gives_best_minus_second_to_the_best_member_only() {
        // Group 1: [0.2, 0.9, 0.5] -> member 1 gets 0.9 - 0.5 = 0.4.
        // Group 2: [1, 1, 0] -> tied best: advantage 0 for everyone.
        // Group 3: [0, 0, 1] -> member 2 gets 1.
        let r = [0.2, 0.9, 0.5, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        let a = poppy_advantages(&r, 3);
        assert!(close(&a, &[0.0, 0.4, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]));
        assert_eq!(best_in_groups(&r, 3), vec![1, 0, 2]);
    }

    #[test]
    fn the_reinforce_loss_matches_a_hand_computation() {
        // Two episodes, three steps; weights = advantage on policy steps.
        // loss = -(0.5*(-1) + 0.5*(-2) + (-0.25)*(-0.5)) / 2 = -(-0.5 - 1 + 0.125)/2 = 0.6875.
        let logp = Tensor::from_slice(&[-1.0f32, -2.0, -3.0, -0.5, -4.0, -1.0])
            .view([2, 3])
            .set_requires_grad(true);
        let w = Tensor::from_slice(&[0.5f32, 0.5, 0.0, -0.25, 0.0, 0.0]).view([2, 3]);
        let loss = reinforce_loss(&logp, &w, 2.0);
        assert!((loss.double_value(&[]) - 0.6875).abs() < 1e-6);
        loss.backward();
        // d loss / d logp = -w / n.
        let g: Vec<f32> = Vec::try_from(logp.grad().view([-1])).unwrap();
        assert!(close(&g, &[-0.25, -0.25, 0.0, 0.125, 0.0, 0.0]));
    }

    #[test]
    fn the_gradient_variance_of_two_halves() {
        // Two parts of 2 rows, contributions G1 = [1, 0], G2 = [0, 1] to g = [1, 1];
        // part means g_m = 2 G_m: [2, 0] and [0, 2]; |g_m - g|^2 = 2 each;
        // tr Sigma = (2*2 + 2*2) / 1 = 8; Var(g) = 8 / 4 = 2; |g|^2 = 2.
        let parts = vec![(2, vec![1.0f32, 0.0]), (2, vec![0.0, 1.0])];
        let (var, norm2) = estimate_grad_variance(&parts).unwrap();
        assert!((var - 2.0).abs() < 1e-9 && (norm2 - 2.0).abs() < 1e-9);
        // Equal halves carry no variance.
        let parts = vec![(3, vec![1.0f32, 1.0]), (3, vec![1.0, 1.0])];
        assert!(estimate_grad_variance(&parts).unwrap().0.abs() < 1e-12);
        assert!(estimate_grad_variance(&parts[..1]).is_none());
    }

    #[test]
    fn answer_supervision_takes_the_answer_steps_out_of_the_policy_gradient() {
        // Row 0: two chain tokens, the marker, the answer; row 1: the marker, the answer, padding.
        let chain = [1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0];
        let answer = [0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0];
        assert!(close(
            &policy_gradient_steps(&chain, &answer, false),
            &[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
        ));
        assert!(close(&policy_gradient_steps(&chain, &answer, true), &chain));
        // Answer log-probs ln 0.5 and ln 0.25: CE = (ln 2 + ln 4) / 2 = 1.5 ln 2.
        let logp = Tensor::from_slice(&[
            -9.0f32,
            -9.0,
            -9.0,
            0.5f32.ln(),
            -9.0,
            0.25f32.ln(),
            -9.0,
            -9.0,
        ])
        .view([2, 4]);
        let mask = Tensor::from_slice(&answer).view([2, 4]);
        let ce = answer_supervision_loss(&logp, &mask, 2.0).double_value(&[]);
        assert!((ce - 1.5 * std::f64::consts::LN_2).abs() < 1e-6, "{ce}");
    }

    #[test]
    fn missing_or_foreign_answers_are_an_error() {
        let episodes = Episodes {
            tokens: ndarray::Array3::zeros((2, 1, 1)),
            features: ndarray::Array3::zeros((2, 1, 0)),
            action_mask: ndarray::Array3::from_elem((2, 1, 1), true),
            actions: ndarray::Array2::zeros((2, 1)),
            log_probs: ndarray::Array2::zeros((2, 1)),
            entropies: ndarray::Array2::zeros((2, 1)),
            rewards: ndarray::Array2::zeros((2, 1)),
            lengths: vec![1, 1],
            difficulty: vec![1, 1],
            solved: vec![false, false],
            truncated: vec![false, false],
            samples_per_problem: 1,
        };
        let mut batch = RlBatch {
            episodes,
            answers: None,
        };
        assert!(batch.answers().is_err());
        batch.answers = Some(vec![vec![1i64]]);
        assert!(batch.answers().is_err(), "one answer for two rows");
        batch.answers = Some(vec![vec![1i64], vec![2]]);
        assert_eq!(batch.answers().unwrap(), &[vec![1], vec![2]]);
    }

    #[test]
    fn parts_never_split_a_group() {
        assert_eq!(group_parts(12, 4, 2), vec![0..8, 8..12]);
        assert_eq!(group_parts(8, 4, 2), vec![0..4, 4..8]);
        assert_eq!(group_parts(4, 4, 2), vec![0..4]);
    }
}
