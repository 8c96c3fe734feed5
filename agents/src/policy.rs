//! The chain-of-thought policy every built-in algorithm (and a user's agent) drives:
//! [`CotPolicy`] turns observations of a `CotEnv` (input, difficulty, emitted tokens) into
//! a [`CotTransformer`]'s tensors and back, with a KV cache across the steps of a lock-step
//! batch. Below it, the helpers that training code shares:
//!
//! - teacher forcing: [`CotPolicy::teacher_batch`] turns recorded [`Episodes`] into the
//!   model's input, previous-token and target tensors ([`TeacherBatch`]), with
//!   [`step_kinds`] splitting chain steps from answer steps;
//! - losses and statistics: [`masked_log_softmax`], [`token_stats`], [`weighted_sum`];
//! - checkpoint state: [`MODEL_PREFIX`], [`optim_tensors`], [`load_optim`].

use std::ops::Range;

use envs::{EnvRng, EnvSpec};
use ndarray::{Array2, ArrayView2};
use tch::{nn::VarStore, Device, Kind, Tensor};

use crate::act::{choose_actions, ActMode, ActOutput, BatchObs};
use crate::checkpoint;
use crate::error::AgentError;
use crate::model::{CotTransformer, DecodeState, Encoded, ModelConfig, ModelLayout};
use crate::optim::AdamW;
use crate::profile;
use crate::rollout::Episodes;

/// The profile phase of the policy's model calls while acting (see [`crate::profile`]).
pub const ROLLOUT_MODEL: &str = "rollout_model";

/// The profile phase of answer-CE scoring passes run while collecting (an agent that scores
/// its episodes' answers before the update).
pub const ROLLOUT_ANSWER_CE: &str = "rollout_answer_ce";

/// Where a `CotEnv` observation keeps its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fields {
    input: Range<usize>,
    difficulty: usize,
    emitted: Range<usize>,
}

impl Fields {
    fn of(spec: &EnvSpec) -> Result<Fields, AgentError> {
        let get = |name: &str| {
            spec.obs.token_field(name).ok_or_else(|| {
                AgentError::Incompatible(format!(
                    "env `{}` has no token field `{name}`: this agent needs a chain-of-thought \
                     env (input, difficulty, emitted)",
                    spec.name
                ))
            })
        };
        let input = get("input")?;
        let difficulty = get("difficulty")?;
        let emitted = get("emitted")?;
        Ok(Fields {
            input: input.offset..input.offset + input.len,
            difficulty: difficulty.offset,
            emitted: emitted.offset..emitted.offset + emitted.len,
        })
    }
}

/// Incremental decoding state kept between [`CotPolicy::next_logits`] calls of one
/// lock-step batch of episodes.
#[derive(Debug)]
struct DecodeCache {
    state: DecodeState,
    /// Actions fed after START.
    fed: usize,
    /// The observation tokens of the last call.
    tokens: Array2<i64>,
    /// The [`ExtraMemory::key`] the cache was built with (empty without extra memory).
    key: Vec<i64>,
}

/// Memory rows appended to each problem's encoding for the decoder to attend to: the
/// per-row conditioning of an agent such as POPPY (each row's population member).
#[derive(Clone, Copy)]
pub struct ExtraMemory<'a> {
    /// What the rows of each batch row are (e.g. its member's index): the KV cache goes on
    /// only while it is unchanged.
    pub key: &'a [i64],
    /// Makes the rows, `[B, R, width]`; called only when the problems are encoded again,
    /// not for the tokens the KV cache extends.
    pub rows: &'a dyn Fn() -> Tensor,
}

impl std::fmt::Debug for ExtraMemory<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtraMemory")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// A [`CotTransformer`] with its variables, reading `CotEnv` observations.
///
/// [`next_logits`](Self::next_logits) is stateless in meaning (the logits depend only on the
/// observations) but keeps a KV cache: when every row that still has a legal action
/// has emitted exactly one more token than at the previous call, on the same problem,
/// the step costs one decoder position; otherwise the whole prefix is recomputed.
#[derive(Debug)]
pub struct CotPolicy {
    vs: VarStore,
    model: CotTransformer,
    fields: Fields,
    num_actions: usize,
    device: Device,
    cache: Option<DecodeCache>,
}

impl CotPolicy {
    /// A model for `spec` with `layout`, weights drawn after seeding libtorch with `seed`.
    pub fn new(
        spec: &EnvSpec,
        layout: &ModelLayout,
        cfg: &ModelConfig,
        seed: u64,
        device: Device,
    ) -> Result<CotPolicy, AgentError> {
        let fields = Fields::of(spec)?;
        let vs = VarStore::new(device);
        let model = {
            // Seeding libtorch's one global generator and drawing the init seed from it must
            // not interleave with another thread doing the same, or the weights would no
            // longer be a function of `seed`.
            static GLOBAL_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _lock = GLOBAL_RNG.lock().unwrap_or_else(|e| e.into_inner());
            tch::manual_seed(seed as i64);
            CotTransformer::new(&(vs.root() / "net"), cfg, layout)?
        };
        Ok(CotPolicy {
            vs,
            model,
            fields,
            num_actions: spec.num_actions,
            device,
            cache: None,
        })
    }

    /// A second policy with the same architecture and a copy of these weights (no shared
    /// storage, no gradients, no KV cache), for work on another thread. Draws nothing from
    /// libtorch's RNG, so making one does not change the run's random stream.
    pub fn replica(&self) -> Result<CotPolicy, AgentError> {
        let mut vs = VarStore::new(self.device);
        let model = CotTransformer::with_seed(
            &(vs.root() / "net"),
            self.model.config(),
            self.model.layout(),
            0,
        )?;
        vs.copy(&self.vs)?;
        Ok(CotPolicy {
            vs,
            model,
            fields: self.fields.clone(),
            num_actions: self.num_actions,
            device: self.device,
            cache: None,
        })
    }

    /// Overwrites these weights with `source`'s (a policy of the same architecture, such as
    /// one made by [`CotPolicy::replica`]).
    pub fn copy_weights_from(&mut self, source: &CotPolicy) -> Result<(), AgentError> {
        self.cache = None;
        self.vs.copy(&source.vs)?;
        Ok(())
    }

    /// The model.
    pub fn model(&self) -> &CotTransformer {
        &self.model
    }

    /// The variables.
    pub fn var_store(&self) -> &VarStore {
        &self.vs
    }

    /// The variables, mutably (loading a checkpoint).
    pub fn var_store_mut(&mut self) -> &mut VarStore {
        self.cache = None;
        &mut self.vs
    }

    /// The device of the model.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Number of actions of the env.
    pub fn num_actions(&self) -> usize {
        self.num_actions
    }

    /// Where the emitted tokens sit in an observation row.
    pub fn emitted_range(&self) -> Range<usize> {
        self.fields.emitted.clone()
    }

    /// The ANSWER action (`vocab`, the last action).
    pub fn answer_action(&self) -> usize {
        self.num_actions - 1
    }

    /// The PAD token of the emitted field, also the decoder's START token.
    pub fn pad(&self) -> i64 {
        self.num_actions as i64
    }

    /// Number of tokens emitted in each row of `tokens` (the emitted field is filled from its
    /// start and padded after).
    pub fn emitted_counts(&self, tokens: ArrayView2<'_, i64>) -> Vec<usize> {
        let pad = self.pad();
        tokens
            .rows()
            .into_iter()
            .map(|r| {
                r.as_slice()
                    .map(|s| &s[self.fields.emitted.clone()])
                    .map(|e| e.iter().position(|&t| t == pad).unwrap_or(e.len()))
                    .unwrap_or_else(|| {
                        let e = r.slice(ndarray::s![self.fields.emitted.clone()]);
                        e.iter().position(|&t| t == pad).unwrap_or(e.len())
                    })
            })
            .collect()
    }

    /// The largest `k` such that every aligned group of `k` consecutive rows of `tokens`
    /// holds one problem (input and difficulty): the greatest common divisor of the lengths
    /// of the runs of equal problems; 1 when the rows share nothing.
    pub fn rows_per_problem(&self, tokens: ArrayView2<'_, i64>) -> usize {
        fn gcd(a: usize, b: usize) -> usize {
            if b == 0 {
                a
            } else {
                gcd(b, a % b)
            }
        }
        let same = |i: usize, j: usize| {
            tokens[[i, self.fields.difficulty]] == tokens[[j, self.fields.difficulty]]
                && self
                    .fields
                    .input
                    .clone()
                    .all(|c| tokens[[i, c]] == tokens[[j, c]])
        };
        let (mut k, mut run) = (0, 0);
        for i in 0..tokens.nrows() {
            if i > 0 && !same(i - 1, i) {
                k = gcd(k, run);
                run = 0;
            }
            run += 1;
        }
        gcd(k, run).max(1)
    }

    /// The input `[B, L]` and difficulty `[B]` tensors of observation rows.
    pub fn problem_tensors(&self, tokens: ArrayView2<'_, i64>) -> (Tensor, Tensor) {
        let b = tokens.nrows();
        let l = self.fields.input.len();
        let mut input: Vec<i64> = Vec::with_capacity(b * l);
        let mut difficulty: Vec<i64> = Vec::with_capacity(b);
        for r in tokens.rows() {
            input.extend(r.slice(ndarray::s![self.fields.input.clone()]).iter());
            difficulty.push(r[self.fields.difficulty]);
        }
        (
            Tensor::from_slice(&input).view([b as i64, l as i64]),
            Tensor::from_slice(&difficulty),
        )
    }

    /// Encodes the problems `input [N, L]`, `difficulty [N]` whose rows come in groups of
    /// `k` consecutive rows holding the same problem (the `K` samples of on-policy
    /// experience): each problem once, its memory shared by its rows
    /// ([`Encoded::shared_by`]). Rows that do not form such groups (checked on host tensors;
    /// a device tensor is trusted) are encoded one by one.
    pub fn encode_shared(
        &self,
        input: &Tensor,
        difficulty: &Tensor,
        k: usize,
        train: bool,
    ) -> Encoded {
        let n = input.size()[0];
        let k64 = k as i64;
        if k <= 1 || n % k64 != 0 || (train && self.model.config().dropout > 0.0) {
            return self.model.encode(input, difficulty, train);
        }
        let g = n / k64;
        let first_input = input.view([g, k64, -1]).select(1, 0);
        let first_difficulty = difficulty.view([g, k64]).select(1, 0);
        if input.device() == Device::Cpu && !rows_repeat(input, difficulty, g, k64) {
            return self.model.encode(input, difficulty, train);
        }
        self.model
            .encode(&first_input, &first_difficulty, train)
            .shared_by(k)
    }

    /// The logits `[B, num_actions]` of the next action of each row, unmasked. Rows without a
    /// legal action get arbitrary logits.
    pub fn next_logits(&mut self, obs: &BatchObs<'_>) -> Tensor {
        self.next_logits_with(obs, None)
    }

    /// [`next_logits`](Self::next_logits) with `extra` memory rows appended to each
    /// problem's encoding. While every active row advances by one token (and the extra
    /// memory's key is unchanged) the decoder extends its KV cache by that token; otherwise
    /// it recomputes each row's prefix.
    pub fn next_logits_with(
        &mut self,
        obs: &BatchObs<'_>,
        extra: Option<ExtraMemory<'_>>,
    ) -> Tensor {
        let _phase = profile::phase(ROLLOUT_MODEL);
        let b = obs.batch_size();
        let key: &[i64] = extra.map_or(&[], |x| x.key);
        let counts = self.emitted_counts(obs.tokens);
        let active: Vec<bool> = obs
            .action_mask
            .rows()
            .into_iter()
            .map(|r| r.iter().any(|&m| m))
            .collect();
        let max_steps = self.fields.emitted.len();
        let pad = self.pad();
        let em = self.fields.emitted.start;

        if let Some(cache) = &mut self.cache {
            let fed = cache.fed;
            let continues = cache.state.batch_size() == b
                && cache.key == key
                && fed + 1 < max_steps
                && (0..b).all(|i| {
                    !active[i]
                        || (counts[i] == fed + 1
                            && obs.tokens.row(i).slice(ndarray::s![..em + fed])
                                == cache.tokens.row(i).slice(ndarray::s![..em + fed]))
                });
            if continues {
                let prev: Vec<i64> = (0..b)
                    .map(|i| {
                        if active[i] {
                            obs.tokens[[i, em + fed]]
                        } else {
                            pad
                        }
                    })
                    .collect();
                let heads = self
                    .model
                    .decode_step(&mut cache.state, &Tensor::from_slice(&prev));
                cache.fed += 1;
                cache.tokens.assign(&obs.tokens);
                return heads.logits;
            }
        }
        let (input, difficulty) = self.problem_tensors(obs.tokens);
        let encode = |model: &CotTransformer| {
            let enc = model.encode(&input, &difficulty, false);
            match extra {
                Some(x) => enc.with_extra_rows(&(x.rows)()),
                None => enc,
            }
        };
        if (0..b).all(|i| !active[i] || counts[i] == 0) {
            // Fresh episodes: start a cache.
            let enc = tch::no_grad(|| match extra {
                None => {
                    let k = self.rows_per_problem(obs.tokens);
                    self.encode_shared(&input, &difficulty, k, false)
                }
                Some(_) => encode(&self.model),
            });
            // The rows that share a problem are in the same state until they sample: START
            // is decoded once per problem and its cache copied to the problem's rows.
            let k = enc.rows_per_memory();
            let problems = (b / k) as i64;
            let mut state = self.model.start_decode(&enc.one_row_per_memory());
            let start = Tensor::full([problems], pad, (Kind::Int64, Device::Cpu));
            let heads = self.model.decode_step(&mut state, &start);
            self.cache = Some(DecodeCache {
                state: if k > 1 { state.repeat_rows(k) } else { state },
                fed: 0,
                tokens: obs.tokens.to_owned(),
                key: key.to_vec(),
            });
            return if k > 1 {
                heads.logits.repeat_interleave_self_int(k as i64, 0, None)
            } else {
                heads.logits
            };
        }
        // Rows at different positions: recompute each row's prefix (causal, so the padding
        // after a row's own position does not change its logits).
        self.cache = None;
        let t = counts
            .iter()
            .zip(&active)
            .filter(|(_, &a)| a)
            .map(|(&c, _)| c)
            .max()
            .unwrap_or(0)
            .min(max_steps - 1);
        let mut prev = Vec::with_capacity(b * (t + 1));
        for r in obs.tokens.rows() {
            prev.push(pad);
            prev.extend(r.slice(ndarray::s![em..em + t]).iter());
        }
        let prev = Tensor::from_slice(&prev).view([b as i64, (t + 1) as i64]);
        let pos: Vec<i64> = counts.iter().map(|&c| c.min(t) as i64).collect();
        tch::no_grad(|| {
            let enc = encode(&self.model);
            let heads = self.model.forward_chain(&enc, &prev, false);
            let index = Tensor::from_slice(&pos)
                .to_device(heads.logits.device())
                .view([b as i64, 1, 1])
                .expand([b as i64, 1, self.num_actions as i64], false);
            heads.logits.gather(1, &index, false).squeeze_dim(1)
        })
    }

    /// Chooses actions under `mask` from the policy's next-action logits.
    pub fn act_masked(
        &mut self,
        obs: &BatchObs<'_>,
        mask: ArrayView2<'_, bool>,
        mode: ActMode,
        rng: &mut EnvRng,
    ) -> Result<ActOutput, AgentError> {
        let logits = self.next_logits(obs);
        let _phase = profile::phase("rollout_sample");
        choose_actions(&logits, mask, mode, rng)
    }

    /// Named tensors of the parameters, `model/<name>`.
    pub fn param_tensors(&self) -> Vec<(String, Tensor)> {
        checkpoint::var_store_tensors(&self.vs, MODEL_PREFIX)
    }

    /// Loads `model/<name>` tensors; the error lists every difference.
    pub fn load_params(&mut self, tensors: &[(String, Tensor)]) -> Result<(), AgentError> {
        self.cache = None;
        checkpoint::copy_into(&mut self.vs, tensors, MODEL_PREFIX)
            .map_err(|e| AgentError::StateMismatch(e.to_string()))
    }

    /// Drops the decode cache (the weights changed).
    pub fn invalidate_cache(&mut self) {
        self.cache = None;
    }
}

/// Whether every group of `k` consecutive rows of `input [g*k, L]` and `difficulty [g*k]`
/// repeats its first row.
fn rows_repeat(input: &Tensor, difficulty: &Tensor, g: i64, k: i64) -> bool {
    tch::no_grad(|| {
        let i = input.view([g, k, -1]);
        let d = difficulty.view([g, k]);
        i.eq_tensor(&i.narrow(1, 0, 1)).all().int64_value(&[]) != 0
            && d.eq_tensor(&d.narrow(1, 0, 1)).all().int64_value(&[]) != 0
    })
}

/// Prefix of parameter tensors in checkpoints.
pub const MODEL_PREFIX: &str = "model/";
/// Prefix of optimizer tensors in checkpoints.
pub const OPTIM_PREFIX: &str = "optim/";

/// The optimizer state under [`OPTIM_PREFIX`], for [`Agent::state`].
pub fn optim_tensors(opt: &AdamW) -> Vec<(String, Tensor)> {
    opt.state_tensors()
        .into_iter()
        .map(|(n, t)| (format!("{OPTIM_PREFIX}{n}"), t))
        .collect()
}

/// Restores the optimizer state saved under [`OPTIM_PREFIX`], for [`Agent::load_state`].
pub fn load_optim(opt: &mut AdamW, tensors: &[(String, Tensor)]) -> Result<(), AgentError> {
    let own: Vec<(String, Tensor)> = tensors
        .iter()
        .filter_map(|(n, t)| {
            n.strip_prefix(OPTIM_PREFIX)
                .map(|s| (s.to_string(), t.shallow_clone()))
        })
        .collect();
    opt.load_state(&own)
        .map_err(|e| AgentError::StateMismatch(e.to_string()))
}

/// The checkpoint state of `policy` trained by `opt`: its parameters (under
/// [`MODEL_PREFIX`]) and the optimizer's state (under [`OPTIM_PREFIX`]). An agent's
/// [`Agent::state`] adds whatever else it keeps.
pub fn training_state(policy: &CotPolicy, opt: &AdamW) -> Vec<(String, Tensor)> {
    let mut v = policy.param_tensors();
    v.extend(optim_tensors(opt));
    v
}

/// Restores what [`training_state`] saved; the error lists every difference.
pub fn load_training_state(
    policy: &mut CotPolicy,
    opt: &mut AdamW,
    tensors: &[(String, Tensor)],
) -> Result<(), AgentError> {
    policy.load_params(tensors)?;
    load_optim(opt, tensors)
}

/// Teacher-forcing tensors of a batch of episodes of a `CotEnv`.
#[derive(Debug)]
pub struct TeacherBatch {
    /// `[N, L]` input tokens.
    pub input: Tensor,
    /// `[N]` difficulty tokens.
    pub difficulty: Tensor,
    /// `[N, T]` START then the actions of steps `0..T-1`.
    pub prev: Tensor,
    /// `[N, T]` the action of each step (0 where invalid).
    pub targets: Tensor,
    /// `[N, T, A]` legal actions.
    pub mask: Tensor,
    /// `[N, T]` f32: 1 on chain steps (the chain tokens and the ANSWER marker).
    pub chain: Tensor,
    /// `[N, T]` f32: 1 on answer steps (after the marker).
    pub answer: Tensor,
}

/// Splits each episode's steps into chain steps (up to and including the ANSWER marker) and
/// answer steps (after it); an episode without the marker is all chain.
pub fn step_kinds(ep: &Episodes, answer_action: i64) -> (Vec<f32>, Vec<f32>) {
    let (n, t) = (ep.len(), ep.max_len());
    let mut chain = vec![0f32; n * t];
    let mut answer = vec![0f32; n * t];
    for i in 0..n {
        let len = ep.lengths[i].min(t);
        let marker = (0..len).find(|&k| ep.actions[[i, k]] == answer_action);
        for k in 0..len {
            match marker {
                Some(m) if k > m => answer[i * t + k] = 1.0,
                _ => chain[i * t + k] = 1.0,
            }
        }
    }
    (chain, answer)
}

impl CotPolicy {
    /// The teacher-forcing tensors of `ep` (on the CPU; the model moves them).
    pub fn teacher_batch(&self, ep: &Episodes) -> TeacherBatch {
        let (n, t) = (ep.len(), ep.max_len());
        let first = ep.tokens.index_axis(ndarray::Axis(1), 0);
        let (input, difficulty) = self.problem_tensors(first);
        let pad = self.pad();
        let mut prev = Vec::with_capacity(n * t);
        let mut targets = Vec::with_capacity(n * t);
        for i in 0..n {
            prev.push(pad);
            for k in 0..t {
                let a = ep.actions[[i, k]];
                if k + 1 < t {
                    prev.push(if a >= 0 { a } else { pad });
                }
                targets.push(a.max(0));
            }
        }
        let (chain, answer) = step_kinds(ep, self.answer_action() as i64);
        let a = self.num_actions;
        let mask: Vec<bool> = ep.action_mask.iter().copied().collect();
        let (n, t) = (n as i64, t as i64);
        TeacherBatch {
            input,
            difficulty,
            prev: Tensor::from_slice(&prev).view([n, t]),
            targets: Tensor::from_slice(&targets).view([n, t]),
            mask: Tensor::from_slice(&mask).view([n, t, a as i64]),
            chain: Tensor::from_slice(&chain).view([n, t]),
            answer: Tensor::from_slice(&answer).view([n, t]),
        }
    }
}

/// Log-probabilities `[.., A]` of `logits` restricted to the legal actions of `mask`
/// (illegal actions get a large negative logit rather than -inf, so rows with no legal
/// action stay finite; the caller weights them out).
pub fn masked_log_softmax(logits: &Tensor, mask: &Tensor) -> Tensor {
    let mask = mask.to_device(logits.device());
    logits
        .masked_fill(&mask.logical_not(), -1e9)
        .log_softmax(-1, Kind::Float)
}

/// Per-position cross-entropy, token accuracy and entropy of masked logits.
pub struct TokenStats {
    /// `[N, T]` cross-entropy of the targets.
    pub ce: Tensor,
    /// `[N, T]` 1 where the argmax equals the target.
    pub correct: Tensor,
    /// `[N, T]` entropy of the restricted policy.
    pub entropy: Tensor,
}

/// Per-position cross-entropy of `targets`, token accuracy and entropy under `logits`
/// restricted to the legal actions of `mask`.
pub fn token_stats(logits: &Tensor, mask: &Tensor, targets: &Tensor) -> TokenStats {
    let logp = masked_log_softmax(logits, mask);
    let targets = targets.to_device(logits.device());
    let ce = -logp
        .gather(-1, &targets.unsqueeze(-1), false)
        .squeeze_dim(-1);
    let (correct, entropy) = tch::no_grad(|| {
        let correct = logp
            .argmax(-1, false)
            .eq_tensor(&targets)
            .to_kind(Kind::Float);
        let p = logp.exp();
        let entropy = -(p * &logp).sum_dim_intlist(-1, false, Kind::Float);
        (correct, entropy)
    });
    TokenStats {
        ce,
        correct,
        entropy,
    }
}

/// `sum(x * w)` as f64 (no gradient).
pub fn weighted_sum(x: &Tensor, w: &Tensor) -> f64 {
    tch::no_grad(|| (x * w).sum(Kind::Float).double_value(&[]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunConfig;
    use crate::rollout::{oracle_policy, Lockstep};
    use envs::{Env, EnvRng};
    use rand::SeedableRng;

    /// The KV-cached path of `next_logits` (consecutive calls in one lock-step batch) gives
    /// the logits of a full recomputation.
    #[test]
    fn cached_decoding_matches_full_recomputation() {
        let cfg = RunConfig::from_toml_str(
            "[env]\nname = \"cycle\"\nlength = 7\n[model]\nheads = 2\nhead_dim = 8\n\
             decoder_layers = 2\nencoder_layers = 1\n",
            "t",
            "t",
            &[],
        )
        .unwrap();
        let env = cfg.env.build().unwrap();
        let layout = ModelLayout::from_spec(env.spec()).unwrap();
        let mut cached = CotPolicy::new(env.spec(), &layout, &cfg.model, 3, Device::Cpu).unwrap();
        let mut full = CotPolicy::new(env.spec(), &layout, &cfg.model, 3, Device::Cpu).unwrap();
        // The same weights, whatever other tests do to libtorch's global RNG meanwhile.
        full.load_params(&cached.param_tensors()).unwrap();
        // One problem per row, then problems shared by groups of 3 rows (encoded once, START
        // decoded once) whose rows then take different actions.
        for group in [1usize, 3] {
            let mut batch = Lockstep::new(&env, 6);
            batch
                .reset_with(|i, e| {
                    let p = i / group;
                    e.reset(&mut EnvRng::seed_from_u64(p as u64), 1 + (p as u32 % 3))
                })
                .unwrap();
            let mut compared = 0;
            let mut step = 0;
            batch
                .run(
                    |obs, envs| {
                        let a = cached.next_logits(obs);
                        full.invalidate_cache();
                        let b = full.next_logits(obs);
                        for i in 0..obs.batch_size() {
                            if obs.action_mask.row(i).iter().any(|&m| m) {
                                assert!(
                                    a.get(i as i64)
                                        .allclose(&b.get(i as i64), 1e-4, 1e-5, false),
                                    "group {group}, step {step}, row {i}: {:?} vs {:?}",
                                    Vec::<f32>::try_from(a.get(i as i64)).unwrap(),
                                    Vec::<f32>::try_from(b.get(i as i64)).unwrap()
                                );
                                compared += 1;
                            }
                        }
                        step += 1;
                        if group == 1 {
                            return oracle_policy(obs, envs);
                        }
                        // Row i takes its (i + step)-th legal action: the rows of a group part.
                        let n = obs.batch_size();
                        let actions = (0..n)
                            .map(|i| {
                                let legal: Vec<usize> = (0..obs.action_mask.ncols())
                                    .filter(|&j| obs.action_mask[[i, j]])
                                    .collect();
                                legal
                                    .get((i + step) % legal.len().max(1))
                                    .copied()
                                    .unwrap_or(0)
                            })
                            .collect();
                        Ok(ActOutput {
                            actions,
                            log_probs: vec![0.0; n],
                            entropies: vec![0.0; n],
                        })
                    },
                    false,
                )
                .unwrap();
            assert!(compared > 10, "{compared}");
            assert!(cached.cache.is_some(), "the cached path was used");
        }
    }

    /// Rows are grouped by the runs of equal problems, aligned at multiples of the group.
    #[test]
    fn rows_per_problem_finds_the_samples_of_each_problem() {
        let cfg = RunConfig::from_toml_str("[env]\nname = \"cycle\"\nlength = 5\n", "t", "t", &[])
            .unwrap();
        let env = cfg.env.build().unwrap();
        let layout = ModelLayout::from_spec(env.spec()).unwrap();
        let policy = CotPolicy::new(env.spec(), &layout, &cfg.model, 0, Device::Cpu).unwrap();
        let grouped = |problems: &[u64]| {
            let mut batch = Lockstep::new(&env, problems.len());
            batch
                .reset_with(|i, e| e.reset(&mut EnvRng::seed_from_u64(problems[i]), 2))
                .unwrap();
            let mut k = 0;
            batch
                .run(
                    |obs, envs| {
                        if k == 0 {
                            k = policy.rows_per_problem(obs.tokens);
                        }
                        oracle_policy(obs, envs)
                    },
                    false,
                )
                .unwrap();
            k
        };
        assert_eq!(grouped(&[1, 1, 1, 2, 2, 2]), 3);
        // Two equal neighbouring groups are still groups of 2.
        assert_eq!(grouped(&[1, 1, 2, 2, 2, 2, 3, 3]), 2);
        assert_eq!(grouped(&[1, 1, 2, 2, 2]), 1);
        assert_eq!(grouped(&[1, 2, 3]), 1);
        assert_eq!(grouped(&[4, 4, 4, 4]), 4);
    }
}
