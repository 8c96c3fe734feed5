//! `check_env`: an env checker for users' own tests, modelled on Gymnasium's `check_env`.
//!
//! It plays seeded episodes at several difficulties and checks, at every step, the rules every
//! agent and searcher of this project relies on. A violation is a [`CheckError`] naming the
//! rule; the checker never panics, even when the env does (the panic becomes a `panic` error).
//!
//! | rule | what is checked |
//! |---|---|
//! | `spec` | token/feature fields tile their buffers in order; vocabularies, actions, limits and reward range are sane |
//! | `reset` | every in-range difficulty resets; out-of-range ones are errors |
//! | `observation` | every token written and inside its field's vocabulary; features finite; every mask entry written; `observe` repeatable |
//! | `observe_update` | the incremental update after a step equals a full `observe` |
//! | `info` | difficulty as asked, steps counted, `solved` unset while running |
//! | `reset_determinism` | the same RNG seed and difficulty give the same observation |
//! | `step_determinism` | the same actions from the same state give the same rewards, flags and observations |
//! | `clone` | stepping a clone leaves the original untouched |
//! | `mask` | a running episode has a legal action; masked-in actions step, masked-out and out-of-range actions are errors that change nothing |
//! | `reward` | finite and inside the spec's reward range |
//! | `termination` | `is_done` agrees with the flags; episodes end within `max_episode_steps` |
//! | `after_end` | stepping an ended episode is an error that changes nothing |
//! | `oracle` | an oracle action is legal, and following the oracle never ends unsolved |
//! | `render` | `render` gives non-empty text |
//! | `panic` | no call panics |
//!
//! Difficulties at which the oracle cannot be followed to the end are legal (an RL config may
//! cap chains on purpose) but make oracle (supervised) experience impossible there, so the
//! checker reports them in [`CheckReport::oracle_gaps`] and in a warning, and
//! [`CheckReport::require_oracle`] turns them into an `oracle_coverage` error. For a
//! [`crate::CotEnv`] (read through [`Env::oracle_chain_fit`]) such a gap names the chain cap
//! `max_chain_len`, the difficulty and the oracle's chain length there; for other envs it
//! names the difficulty at which the oracle gives no action.

use std::panic::{catch_unwind, AssertUnwindSafe};

use rand::{Rng, SeedableRng};

use crate::env::{Difficulty, Env, EnvRng, Observation, OracleChainFit, Step};
use crate::error::EnvError;
use crate::spec::EnvSpec;
use crate::vec_env::derive_seed;

/// How much the checker plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// Seed of every reset and random action (Gymnasium checks at 123).
    pub seed: u64,
    /// Episodes played per difficulty; the first follows the env's oracle when it has one,
    /// the others take random legal actions.
    pub episodes_per_difficulty: usize,
    /// At most this many difficulties, spread evenly over the range (its ends included).
    pub max_difficulties: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            seed: 123,
            episodes_per_difficulty: 3,
            max_difficulties: 8,
        }
    }
}

/// What a passing check covered.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// The env's spec name.
    pub env: String,
    /// The difficulties played.
    pub difficulties: Vec<Difficulty>,
    /// Episodes played to their end.
    pub episodes: usize,
    /// Steps taken in those episodes.
    pub steps: usize,
    /// Suspicious but legal findings (e.g. every seed gives the same problem, or the oracle
    /// cannot be followed at some difficulties).
    pub warnings: Vec<String>,
    /// The difficulties played at which the oracle cannot be followed to the end of an
    /// episode: the env's chain cap cuts the oracle's chain there, or the oracle gives no
    /// action there although it does at another difficulty (see the module doc). Empty when
    /// the oracle plays every difficulty, or the env has no oracle at all.
    pub oracle_gaps: Vec<OracleGap>,
}

impl CheckReport {
    /// `Ok` when [`oracle_gaps`](Self::oracle_gaps) is empty, else an `oracle_coverage` error
    /// naming every gap: for callers that will follow the oracle at every difficulty (oracle
    /// or supervised experience, oracle baselines).
    pub fn require_oracle(&self) -> Result<(), CheckError> {
        if self.oracle_gaps.is_empty() {
            return Ok(());
        }
        let gaps: Vec<&str> = self
            .oracle_gaps
            .iter()
            .map(|g| g.message.as_str())
            .collect();
        Err(CheckError {
            env: self.env.clone(),
            rule: "oracle_coverage",
            message: format!(
                "the oracle cannot be followed to the end: {}",
                gaps.join("; ")
            ),
        })
    }
}

/// A difficulty at which the env's oracle cannot be followed to the end of an episode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OracleGap {
    /// The difficulty.
    pub difficulty: Difficulty,
    /// For an env that reports its chain cap ([`Env::oracle_chain_fit`]): the cap and the
    /// longest oracle chain it cuts among the problems drawn at this difficulty.
    pub chain: Option<OracleChainFit>,
    /// What happens, e.g. "difficulty 7: the oracle's chain is 7 tokens, longer than the
    /// chain cap max_chain_len = 4".
    pub message: String,
}

/// A violated rule: which env, which rule (see the module doc), and what happened.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("check_env({env}): rule `{rule}` violated: {message}")]
pub struct CheckError {
    /// The env's spec name.
    pub env: String,
    /// The rule's name, e.g. `"mask"`.
    pub rule: &'static str,
    /// What happened, with the difficulty and step where it did.
    pub message: String,
}

/// Checks `env` with [`CheckOptions::default`]. The env is reset and stepped; its state after
/// the check is unspecified.
pub fn check_env<E: Env>(env: &mut E) -> Result<CheckReport, CheckError> {
    check_env_with(env, &CheckOptions::default())
}

/// Checks `env` with the given options.
pub fn check_env_with<E: Env>(env: &mut E, opts: &CheckOptions) -> Result<CheckReport, CheckError> {
    let spec = guard("", "spec", || env.spec().clone())?;
    let mut c = Checker {
        spec,
        opts: *opts,
        report: CheckReport {
            env: String::new(),
            difficulties: Vec::new(),
            episodes: 0,
            steps: 0,
            warnings: Vec::new(),
            oracle_gaps: Vec::new(),
        },
        oracle: Vec::new(),
    };
    c.report.env = c.spec.name.clone();
    c.check_spec()?;
    c.check_out_of_range(env)?;
    let levels = c.difficulties();
    for &d in &levels {
        c.oracle.push(LevelOracle {
            difficulty: d,
            ..LevelOracle::default()
        });
        c.check_reset_determinism(env, d)?;
        for ep in 0..opts.episodes_per_difficulty.max(1) {
            c.play_episode(env, d, ep)?;
        }
    }
    c.report.difficulties = levels;
    c.report_oracle_gaps();
    Ok(c.report)
}

/// Runs `f`, turning a panic into a `panic` rule violation that names the call.
fn guard<T>(env: &str, call: &str, f: impl FnOnce() -> T) -> Result<T, CheckError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-string payload".into());
        CheckError {
            env: env.to_string(),
            rule: "panic",
            message: format!("`{call}` panicked: {msg}"),
        }
    })
}

struct Checker {
    spec: EnvSpec,
    opts: CheckOptions,
    report: CheckReport,
    /// What the oracle did at each difficulty played so far, the current one last.
    oracle: Vec<LevelOracle>,
}

/// What the oracle did at one difficulty.
#[derive(Debug, Default)]
struct LevelOracle {
    difficulty: Difficulty,
    /// Among the problems drawn here whose oracle the chain cap cuts, the one with the
    /// longest oracle chain.
    cut: Option<OracleChainFit>,
    /// The oracle-following episode had an oracle action right after its reset.
    at_reset: bool,
    /// Following the oracle, it gave no action at this step of the still-running episode.
    stopped_at: Option<usize>,
}

impl Checker {
    fn fail(&self, rule: &'static str, message: impl Into<String>) -> CheckError {
        CheckError {
            env: self.spec.name.clone(),
            rule,
            message: message.into(),
        }
    }

    fn guard<T>(&self, call: &str, f: impl FnOnce() -> T) -> Result<T, CheckError> {
        guard(&self.spec.name, call, f)
    }

    /// Notes, after a reset, whether the env's chain cap cuts the new problem's oracle chain.
    fn note_chain_fit<E: Env>(&mut self, env: &E) -> Result<(), CheckError> {
        let fit = self.guard("oracle_chain_fit", || env.oracle_chain_fit())?;
        if let (Some(level), Some(f)) = (self.oracle.last_mut(), fit.filter(|f| !f.fits)) {
            if level
                .cut
                .is_none_or(|c| f.oracle_chain_len > c.oracle_chain_len)
            {
                level.cut = Some(f);
            }
        }
        Ok(())
    }

    /// Turns what the oracle did at each difficulty into [`CheckReport::oracle_gaps`] and one
    /// warning that lists them.
    fn report_oracle_gaps(&mut self) {
        let with_oracle = self
            .oracle
            .iter()
            .find(|l| l.at_reset)
            .map(|l| l.difficulty);
        for l in &self.oracle {
            let d = l.difficulty;
            let message = if let Some(f) = l.cut {
                let (n, cap) = (f.oracle_chain_len, f.max_chain_len);
                if n > cap {
                    format!(
                        "difficulty {d}: the oracle's chain is {n} tokens, longer than the \
                         chain cap max_chain_len = {cap}"
                    )
                } else {
                    format!(
                        "difficulty {d}: the oracle's chain of {n} tokens reaches the chain cap \
                         max_chain_len = {cap}, where the episode is truncated"
                    )
                }
            } else if let Some(t) = l.stopped_at {
                format!(
                    "difficulty {d}: following the oracle from the reset, it gives no action \
                     at step {t} of the running episode"
                )
            } else if let (false, Some(e)) = (l.at_reset, with_oracle) {
                format!(
                    "difficulty {d}: the oracle gives no action after the reset, though it \
                     does at difficulty {e}"
                )
            } else {
                continue;
            };
            self.report.oracle_gaps.push(OracleGap {
                difficulty: d,
                chain: l.cut,
                message,
            });
        }
        let gaps = &self.report.oracle_gaps;
        if gaps.is_empty() {
            return;
        }
        let messages: Vec<&str> = gaps.iter().map(|g| g.message.as_str()).collect();
        let fix = if gaps.iter().any(|g| g.chain.is_some()) {
            " (raise max_chain_len, or leave it unset: the task's own cap fits every oracle \
             chain)"
        } else {
            ""
        };
        self.report.warnings.push(format!(
            "the oracle cannot be followed at {} of the {} difficulties played, so oracle \
             (supervised) experience cannot be made there{fix}: {}",
            gaps.len(),
            self.oracle.len(),
            messages.join("; ")
        ));
    }

    fn check_spec(&self) -> Result<(), CheckError> {
        let s = &self.spec;
        let bad = |m: String| Err(self.fail("spec", m));
        if s.name.is_empty() {
            return bad("the name is empty".into());
        }
        let mut next = 0;
        for f in &s.obs.token_fields {
            if f.offset != next {
                return bad(format!(
                    "token field `{}` starts at {} but the previous field ends at {next}",
                    f.name, f.offset
                ));
            }
            if f.vocab == 0 {
                return bad(format!("token field `{}` has vocab 0", f.name));
            }
            next += f.len;
        }
        if next != s.obs.tokens {
            return bad(format!(
                "token fields cover {next} tokens but obs.tokens = {}",
                s.obs.tokens
            ));
        }
        let mut next = 0;
        for f in &s.obs.feature_fields {
            if f.offset != next {
                return bad(format!(
                    "feature field `{}` starts at {} but the previous field ends at {next}",
                    f.name, f.offset
                ));
            }
            next += f.len;
        }
        if next != s.obs.features {
            return bad(format!(
                "feature fields cover {next} values but obs.features = {}",
                s.obs.features
            ));
        }
        if s.num_actions == 0 {
            return bad("num_actions is 0".into());
        }
        if s.max_episode_steps == 0 {
            return bad("max_episode_steps is 0".into());
        }
        if s.difficulty.min > s.difficulty.max {
            return bad(format!(
                "difficulty range {}..={} is empty",
                s.difficulty.min, s.difficulty.max
            ));
        }
        let (lo, hi) = s.reward_range;
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return bad(format!(
                "reward_range ({lo}, {hi}) is not a finite interval"
            ));
        }
        Ok(())
    }

    fn check_out_of_range<E: Env>(&self, env: &E) -> Result<(), CheckError> {
        let r = self.spec.difficulty;
        let outside = [r.max.checked_add(1), r.min.checked_sub(1)];
        for d in outside.into_iter().flatten() {
            let mut e = env.clone();
            let mut rng = EnvRng::seed_from_u64(self.opts.seed);
            if self.guard("reset", || e.reset(&mut rng, d))?.is_ok() {
                return Err(self.fail(
                    "reset",
                    format!(
                        "reset at difficulty {d}, outside {}..={}, succeeded",
                        r.min, r.max
                    ),
                ));
            }
        }
        Ok(())
    }

    fn difficulties(&self) -> Vec<Difficulty> {
        let (lo, hi) = (
            self.spec.difficulty.min as u64,
            self.spec.difficulty.max as u64,
        );
        let k = self.opts.max_difficulties.max(1) as u64;
        let n = hi - lo + 1;
        if n <= k {
            return (lo..=hi).map(|d| d as Difficulty).collect();
        }
        if k == 1 {
            return vec![lo as Difficulty];
        }
        let mut v: Vec<Difficulty> = (0..k)
            .map(|i| (lo + i * (n - 1) / (k - 1)) as Difficulty)
            .collect();
        v.dedup();
        v
    }

    fn seed(&self, d: Difficulty, salt: usize) -> u64 {
        derive_seed(self.opts.seed ^ ((d as u64) << 32), salt)
    }

    fn reset<E: Env>(&self, env: &mut E, d: Difficulty, seed: u64) -> Result<(), CheckError> {
        let mut rng = EnvRng::seed_from_u64(seed);
        self.guard("reset", || env.reset(&mut rng, d))?
            .map_err(|e| self.fail("reset", format!("reset at difficulty {d} failed: {e}")))
    }

    /// Observes twice (mask pre-filled true, then false; other buffers with invalid values)
    /// and checks that everything was written, in range, and the same both times.
    fn observe<E: Env>(&self, env: &E, at: &str) -> Result<Observation, CheckError> {
        let mut a = Observation::zeros(&self.spec);
        a.tokens.fill(-1);
        a.features.fill(f32::NAN);
        a.action_mask.fill(true);
        self.guard("observe", || env.observe(a.as_mut()))?;
        let mut b = Observation::zeros(&self.spec);
        b.tokens.fill(i64::MAX);
        b.features.fill(f32::INFINITY);
        b.action_mask.fill(false);
        self.guard("observe", || env.observe(b.as_mut()))?;
        for f in &self.spec.obs.token_fields {
            for (i, &t) in a.tokens[f.offset..f.offset + f.len].iter().enumerate() {
                if t < 0 || t as u64 >= f.vocab as u64 {
                    return Err(self.fail(
                        "observation",
                        format!(
                            "{at}: token {i} of field `{}` is {t}, outside 0..{} (or not written)",
                            f.name, f.vocab
                        ),
                    ));
                }
            }
        }
        if let Some(i) = a.features.iter().position(|x| !x.is_finite()) {
            return Err(self.fail(
                "observation",
                format!(
                    "{at}: feature {i} is {} (not finite, or not written)",
                    a.features[i]
                ),
            ));
        }
        if a.action_mask != b.action_mask {
            return Err(self.fail(
                "observation",
                format!("{at}: some action-mask entries are not written by observe"),
            ));
        }
        if a.tokens != b.tokens || a.features != b.features {
            return Err(self.fail(
                "observation",
                format!("{at}: two observe calls on the same state differ"),
            ));
        }
        Ok(a)
    }

    fn check_reset_determinism<E: Env>(
        &mut self,
        env: &E,
        d: Difficulty,
    ) -> Result<(), CheckError> {
        let seed = self.seed(d, usize::MAX);
        let mut a = env.clone();
        let mut b = env.clone();
        self.reset(&mut a, d, seed)?;
        self.reset(&mut b, d, seed)?;
        self.note_chain_fit(&a)?;
        let at = format!("difficulty {d}, after reset");
        let oa = self.observe(&a, &at)?;
        let ob = self.observe(&b, &at)?;
        let (ia, ib) = (
            self.guard("info", || a.info())?,
            self.guard("info", || b.info())?,
        );
        if oa != ob || ia != ib {
            return Err(self.fail(
                "reset_determinism",
                format!("difficulty {d}: two resets with the same seed gave different states"),
            ));
        }
        let mut all_same = true;
        for salt in 0..4 {
            let mut c = env.clone();
            self.reset(&mut c, d, self.seed(d, usize::MAX - 1 - salt))?;
            self.note_chain_fit(&c)?;
            all_same &= self.observe(&c, &at)? == oa;
        }
        if all_same {
            self.report.warnings.push(format!(
                "difficulty {d}: five different seeds gave the same first observation"
            ));
        }
        Ok(())
    }

    fn expect_rejected<E: Env>(
        &self,
        env: &E,
        action: usize,
        before: &Observation,
        rule: &'static str,
        at: &str,
        what: &str,
    ) -> Result<(), CheckError> {
        let mut c = env.clone();
        let r = self.guard("step", || c.step(action))?;
        if let Ok(s) = r {
            return Err(self.fail(
                rule,
                format!("{at}: {what} action {action} was accepted ({s:?}); it must be an error"),
            ));
        }
        if self.observe(&c, at)? != *before {
            return Err(self.fail(
                rule,
                format!("{at}: the rejected {what} action {action} changed the state"),
            ));
        }
        Ok(())
    }

    fn play_episode<E: Env>(
        &mut self,
        env: &mut E,
        d: Difficulty,
        episode: usize,
    ) -> Result<(), CheckError> {
        let seed = self.seed(d, episode);
        self.reset(env, d, seed)?;
        self.note_chain_fit(env)?;
        let mut twin = env.clone();
        self.reset(&mut twin, d, seed)?;
        let mut rng = EnvRng::seed_from_u64(seed ^ 0xA5A5_A5A5);
        let mut follow_oracle = episode == 0;
        let mut followed_all = true;
        let mut t = 0usize;
        loop {
            let at = format!("difficulty {d}, episode {episode}, step {t}");
            let obs = self.observe(env, &at)?;
            let info = self.guard("info", || env.info())?;
            let done = self.guard("is_done", || env.is_done())?;
            if info.difficulty != d {
                return Err(self.fail(
                    "info",
                    format!(
                        "{at}: info.difficulty = {} but reset asked {d}",
                        info.difficulty
                    ),
                ));
            }
            if info.steps != t {
                return Err(self.fail(
                    "info",
                    format!("{at}: info.steps = {} after {t} steps", info.steps),
                ));
            }
            if done {
                self.check_after_end(env, &obs, &at)?;
                if followed_all && info.solved == Some(false) {
                    return Err(self.fail(
                        "oracle",
                        format!("{at}: following the oracle's actions ended unsolved"),
                    ));
                }
                break;
            }
            if info.solved.is_some() {
                return Err(self.fail(
                    "info",
                    format!(
                        "{at}: info.solved is {:?} in a running episode",
                        info.solved
                    ),
                ));
            }
            if t >= self.spec.max_episode_steps {
                return Err(self.fail(
                    "termination",
                    format!(
                        "{at}: the episode is still running after max_episode_steps = {}",
                        self.spec.max_episode_steps
                    ),
                ));
            }
            let legal = obs.legal_actions();
            if legal.is_empty() {
                return Err(self.fail(
                    "mask",
                    format!("{at}: no legal action in a running episode"),
                ));
            }
            for a in 0..self.spec.num_actions {
                if obs.action_mask[a] {
                    let mut c = env.clone();
                    self.step_ok(&mut c, a, &at)?;
                } else {
                    self.expect_rejected(env, a, &obs, "mask", &at, "masked-out")?;
                }
            }
            let n = self.spec.num_actions;
            self.expect_rejected(env, n, &obs, "mask", &at, "out-of-range")?;
            let oracle = self.guard("oracle_action", || env.oracle_action())?;
            if let Some(a) = oracle {
                if a >= n || !obs.action_mask[a] {
                    return Err(self.fail(
                        "oracle",
                        format!("{at}: oracle_action {a} is not legal under the mask"),
                    ));
                }
            }
            if let (true, Some(level)) = (follow_oracle, self.oracle.last_mut()) {
                match (t, oracle) {
                    (0, o) => level.at_reset = o.is_some(),
                    (_, None) => level.stopped_at = Some(t),
                    _ => {}
                }
            }
            let action = match oracle {
                Some(a) if follow_oracle => a,
                _ => {
                    follow_oracle = false;
                    followed_all = false;
                    legal[rng.random_range(0..legal.len())]
                }
            };
            let mut clone = env.clone();
            let step = self.step_ok(env, action, &at)?;
            if self.observe(&clone, &at)? != obs {
                return Err(self.fail(
                    "clone",
                    format!("{at}: stepping the original changed a clone taken before the step"),
                ));
            }
            let clone_step = self.step_ok(&mut clone, action, &at)?;
            let twin_step = self.step_ok(&mut twin, action, &at)?;
            let after = self.observe(env, &at)?;
            if !same_step(&step, &clone_step)
                || self.observe(&clone, &at)? != after
                || !same_step(&step, &twin_step)
                || self.observe(&twin, &at)? != after
            {
                return Err(self.fail(
                    "step_determinism",
                    format!(
                        "{at}: action {action} from the same state gave different results \
                         ({step:?} vs {clone_step:?} / {twin_step:?}, or different observations)"
                    ),
                ));
            }
            let mut updated = obs.clone();
            self.guard("observe_update", || env.observe_update(updated.as_mut()))?;
            if updated != after {
                return Err(self.fail(
                    "observe_update",
                    format!("{at}: observe_update after action {action} differs from observe"),
                ));
            }
            self.check_step(env, &step, &at)?;
            t += 1;
        }
        let text = self.guard("render", || env.render())?;
        if text.trim().is_empty() {
            return Err(self.fail("render", "render gave empty text"));
        }
        self.report.episodes += 1;
        self.report.steps += t;
        Ok(())
    }

    fn step_ok<E: Env>(&self, env: &mut E, action: usize, at: &str) -> Result<Step, CheckError> {
        self.guard("step", || env.step(action))?
            .map_err(|e: EnvError| {
                self.fail(
                    "mask",
                    format!("{at}: legal action {action} was refused: {e}"),
                )
            })
    }

    fn check_step<E: Env>(&self, env: &E, s: &Step, at: &str) -> Result<(), CheckError> {
        let (lo, hi) = self.spec.reward_range;
        if !s.reward.is_finite() {
            return Err(self.fail("reward", format!("{at}: reward {} is not finite", s.reward)));
        }
        if s.reward < lo || s.reward > hi {
            return Err(self.fail(
                "reward",
                format!(
                    "{at}: reward {} is outside reward_range ({lo}, {hi})",
                    s.reward
                ),
            ));
        }
        let done = self.guard("is_done", || env.is_done())?;
        if done != s.done() {
            return Err(self.fail(
                "termination",
                format!(
                    "{at}: step returned terminated={} truncated={} but is_done() = {done}",
                    s.terminated, s.truncated
                ),
            ));
        }
        Ok(())
    }

    fn check_after_end<E: Env>(
        &self,
        env: &E,
        obs: &Observation,
        at: &str,
    ) -> Result<(), CheckError> {
        for a in [0, self.spec.num_actions.saturating_sub(1)] {
            let mut c = env.clone();
            if let Ok(s) = self.guard("step", || c.step(a))? {
                return Err(self.fail(
                    "after_end",
                    format!("{at}: step({a}) after the episode ended returned {s:?}; it must be an error"),
                ));
            }
            if self.observe(&c, at)? != *obs {
                return Err(self.fail(
                    "after_end",
                    format!("{at}: step({a}) after the end changed the state"),
                ));
            }
        }
        Ok(())
    }
}

/// Step equality that treats two NaN rewards as different (NaN is caught by `reward`).
fn same_step(a: &Step, b: &Step) -> bool {
    a.reward.to_bits() == b.reward.to_bits()
        && a.terminated == b.terminated
        && a.truncated == b.truncated
}
