//! The transformer policy as a [`search::Evaluator`]: prior logits from the chain head and a
//! value per state, for every searcher of the `search` crate.
//!
//! # Caching
//!
//! A search evaluates many states of few problems, and each state's decoder input is its
//! parent's plus one token. [`PolicyEvaluator`] therefore:
//!
//! - **encodes each root's input once** per search ([`Evaluator::begin_search`]): the encoder
//!   memory and every decoder layer's cross-attention keys and values are computed for the
//!   `B` roots and gathered by root for each batch;
//! - keeps the **self-attention keys and values of every decoded position** in a row store
//!   (one row per position of one sequence, holding that position's K/V for every layer
//!   application, with a pointer to the previous position's row). A state whose parent was
//!   evaluated in the same search (what every searcher does: trees expand evaluated nodes,
//!   chains extend evaluated hypotheses) costs **one decoder position**: the ancestors' rows
//!   are gathered into a cache and the new token is decoded at its position. States whose
//!   prefix is unknown (the roots, or an arbitrary caller) are decoded position by position
//!   from START, in the same batched passes.
//!
//! One `evaluate` call groups its states by decoder position and makes one
//! [`CotTransformer::decode_step`](crate::model::CotTransformer::decode_step) per position
//! present, whatever the number of roots. The numbers equal a teacher-forced pass over each
//! state's whole prefix (tested to 1e-4).
//!
//! # Values
//!
//! [`ValueSource::Head`] reads the value head, which estimates the probability that the
//! episode ends with a right answer. It must have been trained for that (the
//! `expert_iteration` agent regresses it on the outcomes of the episodes it plays;
//! `cot_supervised` never trains it). [`ValueSource::Likelihood`] uses the policy only: the
//! value of a state is the probability the policy gives the actions from the search root to
//! it, so tree search becomes a best-first search for likely chains.
//!
//! Terminal states: under `Head`, a finished chain is decoded at its own position and valued
//! by the head there, which `expert_iteration` trains on the episode's outcome (a learned
//! verifier of the answer); a chain that fills every decoder position has no position left
//! and takes the head's value at its last decision state. Under `Likelihood` a terminal state
//! is worth the chain's probability. An episode that ended without an answer (truncated at
//! the cap; a rule of the env, not its hidden answer) is worth 0. Nothing here reads env rewards or the answer:
//! states are read only through [`Env::observe`], and [`Evaluator::reward_use`] is the
//! default [`search::RewardUse::Ignore`].

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use envs::{Env, Observation};
use ndarray::Array2;
use search::{EvalBatch, Evaluator, SearchError};
use tch::{Device, Kind, Tensor};

use crate::agent::AgentError;
use crate::model::DecodeState;
use crate::policy::CotPolicy;

/// No row / no parent.
const NONE: u32 = u32::MAX;

/// Scratch buffers of `evaluate`: jobs, their items, raw logits, one log-probability row.
type Scratch = (Vec<(u32, u32, i64)>, Vec<usize>, Vec<f32>, Vec<f32>);

/// Where [`PolicyEvaluator`] takes the value of a state from; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueSource {
    /// The model's value head (must be trained on outcomes to mean anything).
    #[default]
    Head,
    /// The probability of the actions from the search root under the policy (policy only).
    Likelihood,
}

impl fmt::Display for ValueSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueSource::Head => "head",
            ValueSource::Likelihood => "likelihood",
        })
    }
}

impl FromStr for ValueSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "head" => Ok(ValueSource::Head),
            "likelihood" => Ok(ValueSource::Likelihood),
            other => Err(format!(
                "unknown value source `{other}`: expected head or likelihood"
            )),
        }
    }
}

/// Counters of a [`PolicyEvaluator`] since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EvaluatorStats {
    /// Searches begun (roots encoded in batches).
    pub searches: usize,
    /// Roots encoded.
    pub roots: usize,
    /// States evaluated.
    pub states: usize,
    /// Terminal states among them.
    pub terminal: usize,
    /// Terminal states valued from their last decision state, without a decoder pass (all of
    /// them under `Likelihood`; under `Head` those that fill every decoder position).
    pub terminal_from_parent: usize,
    /// Decoder positions computed (one per state whose parent was cached, more for states
    /// decoded from START; none for terminal states valued from their parent).
    pub positions: usize,
    /// `decode_step` calls (one per distinct position per `evaluate` call).
    pub decoder_calls: usize,
}

/// The self-attention K/V of decoded positions, one row per position of one sequence.
#[derive(Debug, Default)]
struct RowStore {
    /// Per layer application, `[cap, 2, heads, head_dim]`.
    kv: Vec<Tensor>,
    cap: usize,
    /// The previous position's row (`NONE` at position 0).
    parent: Vec<u32>,
    /// Decoder position of the row.
    pos: Vec<u32>,
    /// Masked log-probabilities of the next action at this position, `num_actions` per row.
    logp: Vec<f32>,
    /// Value head output at this position.
    value: Vec<f32>,
    /// Log-probability of the tokens from the search root's row to this one.
    cum_lp: Vec<f32>,
}

impl RowStore {
    fn len(&self) -> usize {
        self.parent.len()
    }

    fn clear(&mut self) {
        self.parent.clear();
        self.pos.clear();
        self.logp.clear();
        self.value.clear();
        self.cum_lp.clear();
    }

    /// Makes room for `extra` more rows (doubling), keeping the rows already stored.
    fn reserve(&mut self, extra: usize, apps: usize, shape: [i64; 3], device: Device) {
        let need = self.len() + extra;
        if need <= self.cap && self.kv.len() == apps {
            return;
        }
        let cap = need.max(2 * self.cap).max(256);
        let len = self.len() as i64;
        let kv = (0..apps)
            .map(|l| {
                let t = Tensor::zeros(
                    [cap as i64, shape[0], shape[1], shape[2]],
                    (Kind::Float, device),
                );
                if len > 0 && l < self.kv.len() {
                    t.narrow(0, 0, len).copy_(&self.kv[l].narrow(0, 0, len));
                }
                t
            })
            .collect();
        self.kv = kv;
        self.cap = cap;
    }
}

/// How a requested state is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Its parent's row is cached: decode one position.
    Extend { parent: u32 },
    /// Decode every position from START up to `target` (its own position, or the last
    /// decision state of a terminal state whose parent is unknown).
    Prefix { target: u32 },
    /// A terminal state whose last decision state's row is known.
    Terminal { parent: u32 },
}

/// Per requested state, what `evaluate` learned from its observation.
#[derive(Debug, Clone)]
struct Item {
    root: u32,
    node: u32,
    /// Emitted tokens (offset into `Scratch::tokens`) and their count.
    seq: Range<usize>,
    terminal: bool,
    /// A terminal state decoded at its own position (head value of the finished chain).
    decoded: bool,
    /// The episode ended with an answer (for terminal states).
    answered: bool,
    plan: Plan,
    /// Prefix decoding: the row of the last decoded position.
    last_row: u32,
}

/// A [`search::Evaluator`] over a [`CotPolicy`]; see the module doc.
pub struct PolicyEvaluator<'a> {
    policy: &'a CotPolicy,
    value: ValueSource,
    input_tokens: usize,
    emitted: Range<usize>,
    num_actions: usize,
    /// Decoder positions of the model.
    max_steps: usize,
    answer_action: usize,
    start: i64,
    apps: usize,
    kv_shape: [i64; 3],
    /// The roots' cross-attention K/V (self-attention caches dropped).
    roots: Option<DecodeState>,
    num_roots: usize,
    /// Per root, node id -> row (`NONE` when not decoded).
    node_rows: Vec<Vec<u32>>,
    store: RowStore,
    obs: Option<Observation>,
    tokens: Vec<i64>,
    /// The requested states' legal masks, `num_actions` per state.
    masks: Vec<bool>,
    /// Reused per call: decode jobs (root, parent row, token), their items, raw logits, and
    /// one row of log-probabilities.
    scratch: Scratch,
    items: Vec<Item>,
    stats: EvaluatorStats,
}

impl fmt::Debug for PolicyEvaluator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyEvaluator")
            .field("value", &self.value)
            .field("rows", &self.store.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<'a> PolicyEvaluator<'a> {
    /// An evaluator over `policy` (which must have a chain decoder) taking values from
    /// `value`.
    pub fn new(policy: &'a CotPolicy, value: ValueSource) -> Result<Self, AgentError> {
        let model = policy.model();
        let layout = model.layout();
        if !layout.chain {
            return Err(AgentError::Incompatible(
                "this model has no chain decoder (an answer-only `supervised` model): search \
                 needs a policy over chain actions"
                    .into(),
            ));
        }
        let cfg = model.config();
        let num_actions = layout.num_actions;
        Ok(PolicyEvaluator {
            policy,
            value,
            input_tokens: layout.input_len,
            emitted: 0..0,
            num_actions,
            max_steps: layout.max_steps,
            answer_action: policy.answer_action(),
            start: policy.pad(),
            apps: cfg.decoder_layers * cfg.repeat,
            kv_shape: [2, cfg.heads as i64, cfg.head_dim as i64],
            roots: None,
            num_roots: 0,
            node_rows: Vec::new(),
            store: RowStore::default(),
            obs: None,
            tokens: Vec::new(),
            masks: Vec::new(),
            scratch: Scratch::default(),
            items: Vec::new(),
            stats: EvaluatorStats::default(),
        })
    }

    /// The value source.
    pub fn value_source(&self) -> ValueSource {
        self.value
    }

    /// What the evaluator has done so far.
    pub fn stats(&self) -> EvaluatorStats {
        self.stats
    }

    fn fail(msg: String) -> SearchError {
        SearchError::Evaluator(Box::new(AgentError::Incompatible(msg)))
    }

    /// Checks the env's layout against the model's and reads the emitted field's place.
    fn bind<E: Env>(&mut self, env: &E) -> Result<(), SearchError> {
        let spec = env.spec();
        let emitted = spec.obs.token_field("emitted").ok_or_else(|| {
            Self::fail(format!(
                "env `{}` has no `emitted` token field: the policy evaluator needs a \
                 chain-of-thought env",
                spec.name
            ))
        })?;
        if spec.num_actions != self.num_actions {
            return Err(Self::fail(format!(
                "env `{}` has {} actions but the model has {}",
                spec.name, spec.num_actions, self.num_actions
            )));
        }
        self.emitted = emitted.offset..emitted.offset + emitted.len;
        let fits = self
            .obs
            .as_ref()
            .is_some_and(|o| o.tokens.len() == spec.obs.tokens);
        if !fits {
            self.obs = Some(Observation::zeros(spec));
        }
        Ok(())
    }

    /// Masked log-softmax of `logits` into `out` (`-inf` on illegal actions); an all-illegal
    /// mask gives every action `-inf`.
    fn log_softmax(logits: &[f32], legal: impl Fn(usize) -> bool, out: &mut [f32]) {
        let mut max = f32::NEG_INFINITY;
        for (a, &l) in logits.iter().enumerate() {
            if legal(a) && l > max {
                max = l;
            }
        }
        let mut z = 0.0f32;
        for (a, &l) in logits.iter().enumerate() {
            if legal(a) {
                z += (l - max).exp();
            }
        }
        let lse = max + z.ln();
        for (a, (&l, o)) in logits.iter().zip(out.iter_mut()).enumerate() {
            *o = if legal(a) { l - lse } else { f32::NEG_INFINITY };
        }
    }

    /// Decodes one position `pos` for `jobs` = (root, parent row, token fed) and appends one
    /// row per job. Returns the index of the first new row; the rows' `logp` are left for the
    /// caller (it knows the masks), their raw logits are returned in `logits`.
    fn decode(
        &mut self,
        pos: u32,
        jobs: &[(u32, u32, i64)],
        logits: &mut Vec<f32>,
    ) -> Result<usize, SearchError> {
        let g = jobs.len();
        let na = self.num_actions;
        let policy = self.policy;
        let model = policy.model();
        let device = model.device();
        let roots = self
            .roots
            .as_ref()
            .ok_or_else(|| Self::fail("evaluate called before begin_search".into()))?;
        let p = pos as usize;
        // Ancestor rows of every job, positions 0..pos, row-major [job, position].
        let mut idx = vec![0i64; g * p];
        for (j, &(_, parent, _)) in jobs.iter().enumerate() {
            let mut r = parent;
            for k in (0..p).rev() {
                if r == NONE {
                    return Err(Self::fail(format!(
                        "internal: a row at position {pos} lacks its ancestor at {k}"
                    )));
                }
                idx[j * p + k] = i64::from(r);
                r = self.store.parent[r as usize];
            }
        }
        let [two, heads, hd] = self.kv_shape;
        let gi = g as i64;
        let (self_kv, cross_kv) = tch::no_grad(|| {
            let idx = Tensor::from_slice(&idx).to_device(device);
            let self_kv: Vec<Tensor> = (0..self.apps)
                .map(|l| {
                    let fresh = Tensor::zeros([two, gi, heads, 1, hd], (Kind::Float, device));
                    if p == 0 {
                        return fresh;
                    }
                    let past = self.store.kv[l]
                        .index_select(0, &idx)
                        .view([gi, p as i64, two, heads, hd])
                        .permute([2, 0, 3, 1, 4]);
                    Tensor::cat(&[past, fresh], 3)
                })
                .collect();
            let root_idx: Vec<i64> = jobs.iter().map(|&(b, _, _)| i64::from(b)).collect();
            let root_idx = Tensor::from_slice(&root_idx).to_device(device);
            let cross_kv = roots
                .cross_kv
                .iter()
                .map(|kv| kv.index_select(&root_idx))
                .collect();
            (self_kv, cross_kv)
        });
        let mut state = DecodeState {
            self_kv,
            cross_kv,
            pos: i64::from(pos),
            batch: gi,
        };
        let fed: Vec<i64> = jobs.iter().map(|&(_, _, t)| t).collect();
        let heads_out = model.decode_step(&mut state, &Tensor::from_slice(&fed));
        let base = self.store.len();
        self.store.reserve(g, self.apps, self.kv_shape, device);
        tch::no_grad(|| {
            for (l, kv) in state.self_kv.iter().enumerate() {
                // [2, g, heads, 1, hd] -> [g, 2, heads, hd]
                let new = kv
                    .narrow(3, i64::from(pos), 1)
                    .squeeze_dim(3)
                    .permute([1, 0, 2, 3]);
                self.store.kv[l].narrow(0, base as i64, gi).copy_(&new);
            }
        });
        logits.resize(g * na, 0.0);
        heads_out
            .logits
            .to_kind(Kind::Float)
            .to_device(Device::Cpu)
            .f_copy_data(logits, g * na)
            .map_err(|e| SearchError::Evaluator(Box::new(AgentError::Tch(e))))?;
        let mut values = vec![0f32; g];
        heads_out
            .value
            .to_kind(Kind::Float)
            .to_device(Device::Cpu)
            .f_copy_data(&mut values, g)
            .map_err(|e| SearchError::Evaluator(Box::new(AgentError::Tch(e))))?;
        for (j, &(_, parent, _)) in jobs.iter().enumerate() {
            self.store.parent.push(parent);
            self.store.pos.push(pos);
            self.store.value.push(values[j]);
            self.store.cum_lp.push(0.0);
        }
        self.store.logp.resize(self.store.len() * na, 0.0);
        self.stats.positions += g;
        self.stats.decoder_calls += 1;
        Ok(base)
    }

    /// Log-probability of `token` at row `r` (`-inf` for an illegal or non-action token).
    fn logp_at(&self, r: u32, token: i64) -> f32 {
        let na = self.num_actions;
        if token < 0 || token as usize >= na {
            return f32::NEG_INFINITY;
        }
        self.store.logp[r as usize * na + token as usize]
    }

    /// The value of a terminal state whose last decision state is row `parent`, reached by
    /// `action`.
    fn terminal_value(&self, parent: u32, action: i64, answered: bool) -> f32 {
        if !answered {
            return 0.0;
        }
        match self.value {
            ValueSource::Head => self.store.value[parent as usize],
            ValueSource::Likelihood => {
                (self.store.cum_lp[parent as usize] + self.logp_at(parent, action)).exp()
            }
        }
    }
}

impl<E: Env> Evaluator<E> for PolicyEvaluator<'_> {
    fn begin_search(&mut self, roots: &[E]) -> Result<(), SearchError> {
        let first = roots.first().ok_or(SearchError::NoRoots)?;
        self.bind(first)?;
        let width = first.spec().obs.tokens;
        let mut tokens = Array2::<i64>::zeros((roots.len(), width));
        let obs = self.obs.as_mut().expect("bind allocates the observation");
        for (b, root) in roots.iter().enumerate() {
            root.observe(obs.as_mut());
            tokens
                .row_mut(b)
                .assign(&ndarray::ArrayView1::from(&obs.tokens[..]));
        }
        let (input, difficulty) = self.policy.problem_tensors(tokens.view());
        if input.size()[1] as usize != self.input_tokens {
            return Err(Self::fail(format!(
                "the env's input has {} tokens but the model reads {}",
                input.size()[1],
                self.input_tokens
            )));
        }
        let model = self.policy.model();
        let mut state = tch::no_grad(|| {
            let enc = model.encode(&input, &difficulty, false);
            model.start_decode(&enc)
        });
        // Only the cross-attention K/V are kept per root; self-attention caches live in rows.
        state.self_kv.clear();
        self.roots = Some(state);
        self.num_roots = roots.len();
        self.node_rows.resize_with(roots.len(), Vec::new);
        self.node_rows.iter_mut().for_each(Vec::clear);
        self.store.clear();
        self.stats.searches += 1;
        self.stats.roots += roots.len();
        Ok(())
    }

    fn evaluate(
        &mut self,
        batch: &EvalBatch<'_, E>,
        logits: &mut [f32],
        values: &mut [f32],
    ) -> Result<(), SearchError> {
        let n = batch.len();
        if n == 0 {
            return Ok(());
        }
        if batch.num_roots() != self.num_roots || self.roots.is_none() {
            return Err(Self::fail(
                "evaluate called without begin_search on the same roots".into(),
            ));
        }
        let na = self.num_actions;
        let pad = self.start;
        self.items.clear();
        self.tokens.clear();
        self.masks.clear();
        let mut max_pos = 0u32;
        for req in batch.iter() {
            let obs = self.obs.as_mut().expect("bound in begin_search");
            req.env.observe(obs.as_mut());
            self.masks.extend_from_slice(&obs.action_mask);
            let emitted = &obs.tokens[self.emitted.clone()];
            let count = emitted
                .iter()
                .position(|&t| t == pad)
                .unwrap_or(emitted.len());
            let start = self.tokens.len();
            self.tokens.extend_from_slice(&emitted[..count]);
            let seq = start..start + count;
            let answered = emitted[..count].contains(&(self.answer_action as i64));
            let terminal = req.env.is_done();
            // A finished chain that leaves a decoder position free is valued by the head at
            // its own position (a learned verifier of the answer, when trained on outcomes).
            let decoded = terminal && self.value == ValueSource::Head && count < self.max_steps;
            let root = req.root as u32;
            // The parent's row, if it was decoded at the previous position.
            let parent = req
                .parent
                .and_then(|p| self.node_rows[req.root].get(p as usize).copied())
                .filter(|&r| r != NONE && self.store.pos[r as usize] as usize + 1 == count);
            let plan = match (terminal && !decoded, parent) {
                (true, Some(r)) => Plan::Terminal { parent: r },
                (true, None) if count == 0 => {
                    return Err(Self::fail(
                        "a terminal state with no emitted token cannot be valued".into(),
                    ))
                }
                (true, None) => Plan::Prefix {
                    target: count as u32 - 1,
                },
                (false, Some(r)) => Plan::Extend { parent: r },
                (false, None) => Plan::Prefix {
                    target: count as u32,
                },
            };
            match plan {
                Plan::Extend { .. } => max_pos = max_pos.max(count as u32),
                Plan::Prefix { target } => max_pos = max_pos.max(target),
                Plan::Terminal { .. } => {}
            }
            self.items.push(Item {
                root,
                node: req.node,
                seq,
                terminal,
                decoded,
                answered,
                plan,
                last_row: NONE,
            });
        }

        // Decode position by position; every state needing position q joins one batch. The
        // scratch buffers live in `self` between calls (taken here, put back at the end).
        let (mut jobs, mut who, mut raw, mut row_logp) = std::mem::take(&mut self.scratch);
        row_logp.resize(na, 0.0);
        for q in 0..=max_pos {
            jobs.clear();
            who.clear();
            for (i, it) in self.items.iter().enumerate() {
                let token_at = |k: usize| {
                    if k == 0 {
                        pad
                    } else {
                        self.tokens[it.seq.start + k - 1]
                    }
                };
                match it.plan {
                    Plan::Extend { parent } if it.seq.len() as u32 == q => {
                        jobs.push((it.root, parent, token_at(q as usize)));
                        who.push(i);
                    }
                    Plan::Prefix { target } if target >= q => {
                        jobs.push((it.root, it.last_row, token_at(q as usize)));
                        who.push(i);
                    }
                    _ => {}
                }
            }
            if jobs.is_empty() {
                continue;
            }
            let base = match self.decode(q, &jobs, &mut raw) {
                Ok(b) => b,
                Err(e) => {
                    self.scratch = (jobs, who, raw, row_logp);
                    return Err(e);
                }
            };
            for (j, &i) in who.iter().enumerate() {
                let r = base + j;
                let (parent, token) = (jobs[j].1, jobs[j].2);
                let it = &self.items[i];
                let own = match it.plan {
                    Plan::Extend { .. } => true,
                    Plan::Prefix { target } => target == q && (!it.terminal || it.decoded),
                    Plan::Terminal { .. } => false,
                };
                let row = &raw[j * na..(j + 1) * na];
                if own {
                    let mask = &self.masks[i * na..(i + 1) * na];
                    Self::log_softmax(row, |a| mask[a], &mut row_logp);
                    logits[i * na..(i + 1) * na].copy_from_slice(row);
                } else {
                    // A position before the state: its legal set is not observed. Every
                    // action but ANSWER after the marker is the CotEnv rule in both phases
                    // except at the chain cap; only `Likelihood` values read these rows.
                    let marker = self.answer_action as i64;
                    let answered_before =
                        self.tokens[it.seq.start..it.seq.start + q as usize].contains(&marker);
                    let ans = self.answer_action;
                    Self::log_softmax(row, |a| !(answered_before && a == ans), &mut row_logp);
                }
                self.store.logp[r * na..(r + 1) * na].copy_from_slice(&row_logp);
                // Likelihoods count from the search root: a state decoded from START (a root)
                // starts at 0, its descendants add their actions' log-probabilities.
                let cum = match it.plan {
                    Plan::Extend { .. } => {
                        self.store.cum_lp[parent as usize] + self.logp_at(parent, token)
                    }
                    _ => 0.0,
                };
                self.store.cum_lp[r] = if cum.is_finite() { cum } else { -1e30 };
                let it = &mut self.items[i];
                it.last_row = r as u32;
                if own {
                    let node = it.node as usize;
                    let rows = &mut self.node_rows[it.root as usize];
                    if rows.len() <= node {
                        rows.resize(node + 1, NONE);
                    }
                    rows[node] = r as u32;
                    values[i] = match self.value {
                        ValueSource::Head => self.store.value[r],
                        ValueSource::Likelihood => self.store.cum_lp[r].exp(),
                    };
                }
            }
        }

        self.scratch = (jobs, who, raw, row_logp);
        for i in 0..n {
            let it = &self.items[i];
            if !it.terminal {
                continue;
            }
            if it.decoded {
                // An episode that ended without an answer (truncated) is certainly wrong.
                if !it.answered {
                    values[i] = 0.0;
                }
            } else {
                let parent = match it.plan {
                    Plan::Terminal { parent } => parent,
                    _ => it.last_row,
                };
                let action = self.tokens[it.seq.end - 1];
                values[i] = self.terminal_value(parent, action, it.answered);
                self.stats.terminal_from_parent += 1;
            }
            logits[i * na..(i + 1) * na].fill(0.0);
            self.stats.terminal += 1;
        }
        self.stats.states += n;
        Ok(())
    }
}
