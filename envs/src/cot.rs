//! `CotEnv<T: Task>`: any [`Task`] as the chain-of-thought token MDP of `docs/cot-mdp.md`.
//!
//! Observation: `"input"` tokens, one `"difficulty"` token, then the `"emitted"` actions padded
//! with [`CotEnv::pad_token`]. Actions `0..vocab` are tokens, action `vocab` is the "answer
//! now" marker ([`CotEnv::answer_action`]); after it come `answer_len` answer tokens.

use std::fmt::Write as _;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::env::{Difficulty, Env, EnvRng, Info, ObsMut, OracleChainFit, Step};
use crate::error::EnvError;
use crate::spec::{EnvSpec, ObsLayout, TokenField};
use crate::task::{Problem, Task, TaskSpec};

/// Longest chain cap [`CotConfig::max_chain_len`] accepts; keeps observations allocatable.
pub const MAX_CHAIN_CAP: usize = 1 << 20;

/// What happens when the chain reaches its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnCap {
    /// Only the ANSWER marker is legal at the cap: the episode always gets to answer.
    #[default]
    ForceAnswer,
    /// The step that brings the chain to the cap truncates the episode (no answer, reward 0).
    Truncate,
}

/// Reward options beyond the default "1 for a correct answer, else 0".
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RewardConfig {
    /// Cost subtracted for every chain token emitted (not for the ANSWER marker or the
    /// answer tokens); `>= 0`. Makes short chains preferable when they are equally correct.
    pub token_cost: f32,
    /// Dense shaping: chain token `i` equal to the oracle's chain token `i` earns
    /// `shaping / oracle_chain_len`, so following the whole oracle chain earns `shaping` in
    /// total, whatever the difficulty; `>= 0`.
    pub shaping: f32,
}

/// How a [`Task`] becomes an MDP: the chain cap, fixed or adaptive length, rewards.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CotConfig {
    /// Cap on the chain length; `None` = the task's `max_chain_len` (long enough for every
    /// oracle chain). At most [`MAX_CHAIN_CAP`].
    pub max_chain_len: Option<usize>,
    /// The original's fixed-length chain: ANSWER is legal only at exactly the cap.
    /// Requires `on_cap = ForceAnswer`.
    pub fixed_chain_len: bool,
    /// What happens at the cap.
    pub on_cap: OnCap,
    /// Reward options.
    pub reward: RewardConfig,
}

impl CotConfig {
    /// Checks the config, naming the offending field and its allowed range.
    pub fn validate(&self) -> Result<(), EnvError> {
        if let Some(cap) = self.max_chain_len {
            if cap > MAX_CHAIN_CAP {
                return Err(EnvError::invalid(
                    "max_chain_len",
                    cap,
                    format!("0..={MAX_CHAIN_CAP}"),
                ));
            }
        }
        if self.fixed_chain_len && self.on_cap == OnCap::Truncate {
            return Err(EnvError::invalid(
                "on_cap",
                "truncate",
                "must be `force_answer` when `fixed_chain_len` is true (a fixed-length chain \
                 answers at the cap; truncating there would leave no episode able to answer)",
            ));
        }
        let RewardConfig {
            token_cost,
            shaping,
        } = self.reward;
        if !(token_cost.is_finite() && token_cost >= 0.0) {
            return Err(EnvError::invalid(
                "reward.token_cost",
                token_cost,
                "a finite number >= 0",
            ));
        }
        if !(shaping.is_finite() && shaping >= 0.0) {
            return Err(EnvError::invalid(
                "reward.shaping",
                shaping,
                "a finite number >= 0",
            ));
        }
        Ok(())
    }
}

/// Where an episode of a [`CotEnv`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Emitting chain tokens (or the ANSWER marker).
    Chain,
    /// After the ANSWER marker, emitting answer tokens.
    Answer,
    /// Terminated or truncated.
    Done,
}

/// A [`Task`] as the chain-of-thought token MDP (see the module doc and `docs/cot-mdp.md`).
///
/// Clones are cheap enough for one per search node: the task, the spec and the problem are
/// shared behind [`Arc`]s; only the emitted actions are copied.
#[derive(Debug)]
pub struct CotEnv<T: Task> {
    task: Arc<T>,
    spec: Arc<EnvSpec>,
    config: CotConfig,
    cap: usize,
    vocab: usize,
    answer_vocab: usize,
    answer_len: usize,
    input_len: usize,
    problem: Arc<Problem>,
    emitted: Vec<u32>,
    chain_len: usize,
    answer_pos: usize,
    answer_ok: bool,
    on_oracle: bool,
    phase: Phase,
    started: bool,
    terminated: bool,
    truncated: bool,
    last_reward: f32,
}

impl<T: Task> Clone for CotEnv<T> {
    fn clone(&self) -> Self {
        // Reserve the whole episode so that stepping the clone never reallocates.
        let mut emitted = Vec::with_capacity(self.spec.max_episode_steps);
        emitted.extend_from_slice(&self.emitted);
        CotEnv {
            task: Arc::clone(&self.task),
            spec: Arc::clone(&self.spec),
            problem: Arc::clone(&self.problem),
            emitted,
            ..*self
        }
    }
}

impl<T: Task> CotEnv<T> {
    /// The MDP of `task` with the default config (cap = the task's longest oracle chain,
    /// adaptive length, reward 1 for a correct answer).
    pub fn new(task: T) -> Result<Self, EnvError> {
        Self::with_config(task, CotConfig::default())
    }

    /// The MDP of `task` under `config`; impossible configs are errors naming the field.
    pub fn with_config(task: T, config: CotConfig) -> Result<Self, EnvError> {
        let ts = task.spec().clone();
        check_task_spec(&ts)?;
        config.validate()?;
        let cap = config.max_chain_len.unwrap_or(ts.max_chain_len);
        if cap > MAX_CHAIN_CAP {
            return Err(EnvError::invalid(
                "max_chain_len",
                cap,
                format!("0..={MAX_CHAIN_CAP} (the task's max_chain_len is too long)"),
            ));
        }
        let max_episode_steps = cap + 1 + ts.answer_len;
        let levels = (ts.difficulty.max - ts.difficulty.min) as usize + 1;
        let token_fields = vec![
            TokenField {
                name: "input".into(),
                offset: 0,
                len: ts.input_len,
                vocab: ts.input_vocab,
            },
            TokenField {
                name: "difficulty".into(),
                offset: ts.input_len,
                len: 1,
                vocab: levels,
            },
            TokenField {
                name: "emitted".into(),
                offset: ts.input_len + 1,
                len: max_episode_steps,
                vocab: ts.vocab + 2,
            },
        ];
        let RewardConfig {
            token_cost,
            shaping,
        } = config.reward;
        let spec = EnvSpec {
            name: ts.name.clone(),
            obs: ObsLayout {
                tokens: ts.input_len + 1 + max_episode_steps,
                features: 0,
                token_fields,
                feature_fields: Vec::new(),
            },
            num_actions: ts.vocab + 1,
            max_episode_steps,
            difficulty: ts.difficulty,
            // `0.0 - cost` rather than `-cost`, so that a zero cost gives 0, not -0.
            reward_range: (0.0 - token_cost, (shaping - token_cost).max(1.0)),
        };
        Ok(CotEnv {
            task: Arc::new(task),
            spec: Arc::new(spec),
            config,
            cap,
            vocab: ts.vocab,
            answer_vocab: ts.answer_vocab,
            answer_len: ts.answer_len,
            input_len: ts.input_len,
            problem: Arc::new(Problem::default()),
            emitted: Vec::with_capacity(max_episode_steps),
            chain_len: 0,
            answer_pos: 0,
            answer_ok: true,
            on_oracle: true,
            phase: Phase::Done,
            started: false,
            terminated: false,
            truncated: false,
            last_reward: 0.0,
        })
    }

    /// The task that generates the problems.
    pub fn task(&self) -> &T {
        &self.task
    }

    /// The task's static facts.
    pub fn task_spec(&self) -> &TaskSpec {
        self.task.spec()
    }

    /// The config this MDP was built with.
    pub fn config(&self) -> &CotConfig {
        &self.config
    }

    /// The chain-length cap in force.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// The current problem (empty before the first reset).
    pub fn problem(&self) -> &Problem {
        &self.problem
    }

    /// The current problem, shared: cloning it is a reference-count increment.
    pub fn shared_problem(&self) -> &Arc<Problem> {
        &self.problem
    }

    /// The actions taken in this episode: chain tokens, the ANSWER marker, answer tokens.
    pub fn emitted(&self) -> &[u32] {
        &self.emitted
    }

    /// The chain tokens emitted so far (before the ANSWER marker).
    pub fn chain(&self) -> &[u32] {
        &self.emitted[..self.chain_len]
    }

    /// The number of chain tokens emitted so far.
    pub fn chain_len(&self) -> usize {
        self.chain_len
    }

    /// Where the episode is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The reward of the last step (0 after a reset).
    pub fn last_reward(&self) -> f32 {
        self.last_reward
    }

    /// The "answer now" action, `vocab`.
    pub fn answer_action(&self) -> usize {
        self.vocab
    }

    /// The ANSWER marker as it appears among the emitted tokens, `vocab`.
    pub fn answer_token(&self) -> u32 {
        self.vocab as u32
    }

    /// The padding token of the `"emitted"` field, `vocab + 1`.
    pub fn pad_token(&self) -> u32 {
        self.vocab as u32 + 1
    }

    /// The oracle's action sequence for the current problem: `chain ++ [ANSWER] ++ answer`.
    ///
    /// With `fixed_chain_len`, the chain is padded up to the cap with the first answer token:
    /// the original's edge padding of a chain that ends in the answer, so for the pointer
    /// tasks the sequence is the visited nodes, then the answer repeated up to the cap. The
    /// sequence may not be playable when the cap is below the oracle chain's length; see
    /// [`oracle_feasible`](Self::oracle_feasible).
    pub fn oracle_actions(&self) -> Vec<usize> {
        let n = self.oracle_chain_len() + 1 + self.problem.answer.len();
        (0..n).filter_map(|k| self.oracle_at(k)).collect()
    }

    /// The length of the oracle chain as played (padded to the cap with `fixed_chain_len`).
    pub fn oracle_chain_len(&self) -> usize {
        let n = self.problem.chain.len();
        if self.config.fixed_chain_len {
            n.max(self.cap)
        } else {
            n
        }
    }

    /// Whether the oracle's sequence fits the cap: false when the cap cuts the chain (or, with
    /// `on_cap = Truncate`, when the chain reaches the cap and truncates).
    pub fn oracle_feasible(&self) -> bool {
        let n = self.problem.chain.len();
        match self.config.on_cap {
            OnCap::ForceAnswer => n <= self.cap,
            OnCap::Truncate => n < self.cap,
        }
    }

    /// The oracle's action at position `k` of the episode, if the oracle sequence is that long.
    fn oracle_at(&self, k: usize) -> Option<usize> {
        let p = &self.problem;
        let n = self.oracle_chain_len();
        if k < p.chain.len() {
            Some(p.chain[k] as usize)
        } else if k < n {
            p.answer.first().map(|&t| t as usize)
        } else if k == n {
            Some(self.vocab)
        } else {
            p.answer.get(k - n - 1).map(|&t| t as usize)
        }
    }

    /// Starts an episode on a given problem (an evaluation set, a replay). The problem is
    /// checked against the task's spec; its chain may be longer than the cap (the oracle then
    /// cannot be followed to the end).
    pub fn reset_to(&mut self, problem: Problem) -> Result<(), EnvError> {
        self.reset_to_shared(Arc::new(problem))
    }

    /// [`reset_to`](Self::reset_to) without copying a problem that is already shared.
    pub fn reset_to_shared(&mut self, problem: Arc<Problem>) -> Result<(), EnvError> {
        check_problem(self.task.as_ref(), &problem)?;
        self.problem = problem;
        self.start_episode();
        Ok(())
    }

    fn start_episode(&mut self) {
        self.emitted.clear();
        self.chain_len = 0;
        self.answer_pos = 0;
        self.answer_ok = true;
        self.on_oracle = true;
        self.phase = Phase::Chain;
        self.started = true;
        self.terminated = false;
        self.truncated = false;
        self.last_reward = 0.0;
    }

    /// Why `action` is illegal now, or `None` when it is legal.
    fn illegal_reason(&self, action: usize) -> Option<&'static str> {
        if action > self.vocab {
            return Some("out of range 0..=vocab");
        }
        match self.phase {
            Phase::Done => Some("the episode is over"),
            Phase::Chain if action == self.vocab => {
                if self.config.fixed_chain_len && self.chain_len != self.cap {
                    Some("with fixed_chain_len, ANSWER is legal only at exactly the chain cap")
                } else {
                    None
                }
            }
            Phase::Chain if self.chain_len >= self.cap => {
                Some("the chain is at its cap; only ANSWER is legal")
            }
            Phase::Chain => None,
            Phase::Answer if action >= self.answer_vocab => {
                Some("after ANSWER only answer tokens 0..answer_vocab are legal")
            }
            Phase::Answer => None,
        }
    }

    fn write_mask(&self, mask: &mut [bool]) {
        mask.fill(false);
        match self.phase {
            Phase::Chain => {
                if self.chain_len < self.cap {
                    mask[..self.vocab].fill(true);
                }
                mask[self.vocab] = !self.config.fixed_chain_len || self.chain_len == self.cap;
            }
            Phase::Answer => mask[..self.answer_vocab].fill(true),
            Phase::Done => {}
        }
    }

    fn emitted_offset(&self) -> usize {
        self.input_len + 1
    }
}

/// Rejects task specs the MDP cannot represent.
fn check_task_spec(ts: &TaskSpec) -> Result<(), EnvError> {
    if ts.vocab == 0 {
        return Err(EnvError::invalid("vocab", 0, ">= 1"));
    }
    if ts.input_vocab == 0 {
        return Err(EnvError::invalid("input_vocab", 0, ">= 1"));
    }
    if ts.answer_len == 0 {
        return Err(EnvError::invalid("answer_len", 0, ">= 1"));
    }
    if ts.answer_vocab == 0 || ts.answer_vocab > ts.vocab {
        return Err(EnvError::invalid(
            "answer_vocab",
            ts.answer_vocab,
            format!("1..=vocab ({})", ts.vocab),
        ));
    }
    if ts.difficulty.min > ts.difficulty.max {
        return Err(EnvError::invalid(
            "difficulty",
            format!("{}..={}", ts.difficulty.min, ts.difficulty.max),
            "min <= max",
        ));
    }
    Ok(())
}

/// Checks that `p` fits `task`'s spec, so that a bad problem is an error, not a panic later.
pub fn check_problem<T: Task>(task: &T, p: &Problem) -> Result<(), EnvError> {
    let ts = task.spec();
    task.check_difficulty(p.difficulty)?;
    if p.input.len() != ts.input_len {
        return Err(EnvError::invalid(
            "problem.input",
            format!("{} tokens", p.input.len()),
            format!("exactly input_len = {} tokens", ts.input_len),
        ));
    }
    if let Some(&t) = p.input.iter().find(|&&t| t as usize >= ts.input_vocab) {
        return Err(EnvError::invalid(
            "problem.input",
            format!("token {t}"),
            format!("tokens in 0..{}", ts.input_vocab),
        ));
    }
    if let Some(&t) = p.chain.iter().find(|&&t| t as usize >= ts.vocab) {
        return Err(EnvError::invalid(
            "problem.chain",
            format!("token {t}"),
            format!("tokens in 0..{}", ts.vocab),
        ));
    }
    if p.answer.len() != ts.answer_len {
        return Err(EnvError::invalid(
            "problem.answer",
            format!("{} tokens", p.answer.len()),
            format!("exactly answer_len = {} tokens", ts.answer_len),
        ));
    }
    if let Some(&t) = p.answer.iter().find(|&&t| t as usize >= ts.answer_vocab) {
        return Err(EnvError::invalid(
            "problem.answer",
            format!("token {t}"),
            format!("tokens in 0..{}", ts.answer_vocab),
        ));
    }
    Ok(())
}

impl<T: Task> Env for CotEnv<T> {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    fn reset(&mut self, rng: &mut EnvRng, difficulty: Difficulty) -> Result<(), EnvError> {
        self.task.check_difficulty(difficulty)?;
        // Reuses the problem's buffers unless a clone (a search snapshot) still shares them.
        let problem = Arc::make_mut(&mut self.problem);
        self.task.sample_into(difficulty, rng, problem)?;
        problem.difficulty = difficulty;
        // A task that breaks its own spec is an error here, not a panic in `step`.
        check_problem(self.task.as_ref(), problem)?;
        self.start_episode();
        Ok(())
    }

    fn step(&mut self, action: usize) -> Result<Step, EnvError> {
        if !self.started {
            return Err(EnvError::NotReset);
        }
        if self.phase == Phase::Done {
            return Err(EnvError::EpisodeOver);
        }
        if let Some(reason) = self.illegal_reason(action) {
            return Err(EnvError::IllegalAction {
                action,
                reason: reason.into(),
            });
        }
        let k = self.emitted.len();
        self.on_oracle = self.on_oracle && self.oracle_at(k) == Some(action);
        self.emitted.push(action as u32);
        let mut reward = 0.0;
        match self.phase {
            Phase::Chain if action == self.vocab => self.phase = Phase::Answer,
            Phase::Chain => {
                let oracle = &self.problem.chain;
                let RewardConfig {
                    token_cost,
                    shaping,
                } = self.config.reward;
                reward -= token_cost;
                if shaping > 0.0 && oracle.get(self.chain_len) == Some(&(action as u32)) {
                    reward += shaping / oracle.len() as f32;
                }
                self.chain_len += 1;
                if self.config.on_cap == OnCap::Truncate && self.chain_len == self.cap {
                    self.phase = Phase::Done;
                    self.truncated = true;
                }
            }
            Phase::Answer => {
                self.answer_ok &= self.problem.answer[self.answer_pos] == action as u32;
                self.answer_pos += 1;
                if self.answer_pos == self.answer_len {
                    self.phase = Phase::Done;
                    self.terminated = true;
                    if self.answer_ok {
                        reward += 1.0;
                    }
                }
            }
            Phase::Done => unreachable!("checked above"),
        }
        self.last_reward = reward;
        Ok(Step {
            reward,
            terminated: self.terminated,
            truncated: self.truncated,
        })
    }

    fn observe(&self, obs: ObsMut<'_>) {
        let pad = self.pad_token() as i64;
        let off = self.emitted_offset();
        if !self.started {
            obs.tokens.fill(0);
            obs.tokens[off..].fill(pad);
            obs.action_mask.fill(false);
            return;
        }
        for (dst, &src) in obs.tokens[..self.input_len]
            .iter_mut()
            .zip(&self.problem.input)
        {
            *dst = src as i64;
        }
        obs.tokens[self.input_len] = (self.problem.difficulty - self.spec.difficulty.min) as i64;
        let (emitted, rest) = obs.tokens[off..].split_at_mut(self.emitted.len());
        for (dst, &src) in emitted.iter_mut().zip(&self.emitted) {
            *dst = src as i64;
        }
        rest.fill(pad);
        self.write_mask(obs.action_mask);
    }

    fn observe_update(&self, obs: ObsMut<'_>) {
        match self.emitted.len() {
            0 => self.observe(obs),
            n => {
                obs.tokens[self.emitted_offset() + n - 1] = self.emitted[n - 1] as i64;
                self.write_mask(obs.action_mask);
            }
        }
    }

    fn info(&self) -> Info {
        Info {
            difficulty: self.problem.difficulty,
            steps: self.emitted.len(),
            solved: if self.terminated {
                Some(self.answer_ok)
            } else if self.truncated {
                Some(false)
            } else {
                None
            },
        }
    }

    fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    fn answer_spec(&self) -> Option<crate::spec::AnswerSpec> {
        let ts = self.task.spec();
        Some(crate::spec::AnswerSpec {
            len: ts.answer_len,
            vocab: ts.answer_vocab,
        })
    }

    fn oracle_chain_fit(&self) -> Option<OracleChainFit> {
        self.started.then(|| OracleChainFit {
            max_chain_len: self.cap,
            oracle_chain_len: self.problem.chain.len(),
            fits: self.oracle_feasible(),
        })
    }

    fn oracle_action(&self) -> Option<usize> {
        if !self.started || !self.on_oracle || !self.oracle_feasible() {
            return None;
        }
        self.oracle_at(self.emitted.len())
            .filter(|&a| self.illegal_reason(a).is_none())
    }

    fn render(&self) -> String {
        let mut s = String::new();
        let p = &self.problem;
        let tok = |t: u32| -> String {
            if t as usize == self.vocab {
                "|".to_string()
            } else {
                t.to_string()
            }
        };
        let join = |ts: &[u32]| ts.iter().map(|&t| tok(t)).collect::<Vec<_>>().join(" ");
        let _ = writeln!(s, "{}  difficulty {}", self.spec.name, p.difficulty);
        let _ = writeln!(s, "input:   {}", join(&p.input));
        let _ = writeln!(s, "oracle:  {} | {}", join(&p.chain), join(&p.answer));
        let _ = write!(s, "emitted: {}", join(&self.emitted));
        let state = match (self.phase, self.info().solved) {
            (Phase::Chain, _) => format!("chain {}/{}", self.chain_len, self.cap),
            (Phase::Answer, _) => format!("answer {}/{}", self.answer_pos, self.answer_len),
            (Phase::Done, Some(true)) => "solved".into(),
            (Phase::Done, _) if self.truncated => "truncated at the cap".into(),
            (Phase::Done, _) => "wrong answer".into(),
        };
        let _ = write!(s, "  [{state}]");
        s
    }
}
