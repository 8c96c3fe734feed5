//! The Runner: collect experience, update the agent, evaluate per difficulty, log,
//! checkpoint, feed the curriculum, stop cleanly on Ctrl-C. Generic over the agent;
//! algorithms plug in through [`Agent`] without changing this file. Episodes are played in
//! lock step ([`crate::rollout`]).
//!
//! Seeds: the problems of update `s` come from `derive_seed(seed ^ TRAIN_SALT, s)` and its
//! sampling RNG from `derive_seed(seed ^ ACT_SALT, s)`, so a run is a function of its seed,
//! and a resumed run (which restores the step, the weights, the optimizer moments and the
//! curriculum) continues exactly as the uninterrupted run would have.
//!
//! Logs across a resume: a checkpoint at step `c` is saved after everything of step `c` was
//! logged and synced, and its sidecar carries the training scalars accumulated since the
//! last log point. Resuming keeps the records of steps `<= c`, drops later ones (the resumed
//! run writes them again) and restores the accumulated scalars, so `metrics.jsonl` and the
//! TensorBoard curves of an interrupted and resumed run hold the same records as those of
//! an uninterrupted one, wall-clock figures (`perf/*`) aside. For the same reason a stop by
//! the stop flag between two scheduled evaluations evaluates for the caller
//! ([`TrainSummary::eval`]) without logging it or feeding it to the curriculum.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use envs::{derive_seed, AnyEnv, Difficulty, DifficultySampler, Env, EnvError};

use crate::act::ActMode;
use crate::agent::{Agent, AgentError, Experience};
use crate::checkpoint::{self, Checkpoint, CheckpointError};
use crate::config::{ConfigError, RunConfig};
use crate::eval::{evaluate, EvalReport};
use crate::logging::{self, LogError, Logger};
use crate::probe::{chain_probe, ProbeReport};
use crate::rollout::{Collector, Lockstep, Played};

/// Salt of the training problems' seeds.
pub const TRAIN_SALT: u64 = 0x7472_6169_6e00_0001;
/// Salt of the training action-sampling seeds.
pub const ACT_SALT: u64 = 0x6163_7400_0000_0002;
/// Salt of the evaluation problems' seeds (disjoint from training streams).
pub const EVAL_SALT: u64 = 0x6576_616c_0000_0003;

/// What can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The agent failed (a libtorch error, divergence, incompatible env).
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// Building or stepping the env failed.
    #[error(transparent)]
    Env(#[from] EnvError),
    /// Writing logs failed.
    #[error("logging: {0}")]
    Log(#[from] LogError),
    /// Saving or loading a checkpoint failed.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Training diverged after a checkpoint was saved; the advice says how to go on.
    #[error("{source}\n{advice}")]
    Diverged {
        /// The divergence.
        source: Box<RunError>,
        /// How to continue from the last checkpoint.
        advice: String,
    },
    /// The run directory cannot be used (it holds another run, or cannot be cleared).
    #[error("{0}")]
    RunDir(String),
    /// Another process is writing the run directory (it holds the directory's lock).
    #[error(
        "{} is in use by another training process ({}): wait for it to end or stop it \
         (Ctrl-C, or kill -INT <pid>) before resuming or overwriting this run",
        dir.display(),
        pid.map_or("PID unknown".to_string(), |p| format!("PID {p}"))
    )]
    InUse {
        /// The run directory.
        dir: PathBuf,
        /// The holder's process id, when it had written it.
        pid: Option<u32>,
    },
    /// A checkpoint does not belong to this run's config.
    #[error("cannot resume: {0}")]
    Resume(String),
}

/// How a [`Runner::train`] call ended.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// Updates done in total (the run's step).
    pub steps: u64,
    /// Problems trained on in this call.
    pub examples: u64,
    /// Wall time of this call, in seconds.
    pub seconds: f64,
    /// Stopped by the stop flag (Ctrl-C) before the end.
    pub interrupted: bool,
    /// Stopped by `train.time_limit_s` before the end.
    pub timed_out: bool,
    /// The last evaluation.
    pub eval: Option<EvalReport>,
    /// Path of the last checkpoint written.
    pub checkpoint: Option<PathBuf>,
}

/// Config keys a resumed run may change (a trailing `.` covers a whole section): the run's
/// length, its learning rate and schedule, evaluation and logging. Anything else would make
/// the resumed run a different experiment from the one its checkpoints and logs record.
pub const CHANGEABLE_ON_RESUME: &[&str] = &[
    "train.steps",
    "train.time_limit_s",
    "optim.lr",
    "optim.warmup_steps",
    "optim.schedule",
    "optim.min_lr_ratio",
    "eval.",
    "log.",
];

fn changeable_on_resume(key: &str) -> bool {
    CHANGEABLE_ON_RESUME.iter().any(|k| {
        if k.ends_with('.') {
            key.starts_with(k)
        } else {
            key == *k
        }
    })
}

/// The newest checkpoint of the run; when it is damaged, the error names the intact older
/// ones and how to resume from one.
fn load_latest_naming_intact(run_dir: &Path) -> Result<checkpoint::Loaded, RunError> {
    let err = match checkpoint::load_latest(run_dir) {
        Ok(loaded) => return Ok(loaded),
        Err(e @ CheckpointError::NoCheckpoint { .. }) => return Err(e.into()),
        Err(e) => e,
    };
    let mut entries = checkpoint::list(run_dir)?;
    entries.pop();
    let intact: Vec<u64> = entries
        .iter()
        .rev()
        .filter(|e| checkpoint::load(&e.path).is_ok())
        .map(|e| e.step)
        .collect();
    let advice = match intact.first() {
        Some(newest) => format!(
            "intact older checkpoints: step {}; resume from one with --from-checkpoint {newest} \
             (later checkpoint files are moved to superseded/, not deleted)",
            intact
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", step ")
        ),
        None => "no older checkpoint is intact".to_string(),
    };
    Err(RunError::Resume(format!(
        "the newest checkpoint is damaged: {err}\n{advice}"
    )))
}

/// Before a resume from step `step`: moves later checkpoint files, and a copy of
/// `metrics.jsonl` as it is, to the next free `superseded/<n>/`; returns that folder when
/// there was anything to move.
fn set_aside_after(run_dir: &Path, step: u64) -> Result<Option<PathBuf>, RunError> {
    let root = run_dir.join(SUPERSEDED_DIR);
    let mut n = 1;
    while root.join(n.to_string()).exists() {
        n += 1;
    }
    let dest = root.join(n.to_string());
    if checkpoint::move_after(run_dir, step, &dest.join(checkpoint::CHECKPOINT_DIR))? == 0 {
        return Ok(None);
    }
    let metrics = run_dir.join(logging::METRICS_FILE);
    if metrics.is_file() {
        std::fs::copy(&metrics, dest.join(logging::METRICS_FILE))
            .map_err(|e| RunError::Resume(format!("{}: {e}", metrics.display())))?;
    }
    Ok(Some(dest))
}

/// Where a resume from an older checkpoint puts the files of the steps it redoes.
pub const SUPERSEDED_DIR: &str = "superseded";

/// Averages training scalars between two log points.
#[derive(Debug, Default)]
struct Averages {
    sums: Vec<(String, f64, u32)>,
}

impl Averages {
    fn add(&mut self, tag: &str, v: f64) {
        match self.sums.iter_mut().find(|(t, _, _)| t == tag) {
            Some((_, s, n)) => {
                *s += v;
                *n += 1;
            }
            None => self.sums.push((tag.to_string(), v, 1)),
        }
    }

    fn drain(&mut self) -> Vec<(String, f64)> {
        self.sums
            .drain(..)
            .map(|(t, s, n)| (t, s / f64::from(n)))
            .collect()
    }

    /// The sums as JSON for a checkpoint. Sums are stored as their bit patterns: JSON
    /// numbers would not always parse back to the same f64, and the average logged after a
    /// resume must be the uninterrupted run's to the bit.
    fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.sums
                .iter()
                .map(|(t, s, n)| serde_json::json!([t, s.to_bits(), n]))
                .collect(),
        )
    }

    fn from_json(v: &serde_json::Value) -> Option<Averages> {
        let sums = v
            .as_array()?
            .iter()
            .map(|e| {
                let tag = e.get(0)?.as_str()?.to_string();
                let sum = f64::from_bits(e.get(1)?.as_u64()?);
                let n = u32::try_from(e.get(2)?.as_u64()?).ok()?;
                Some((tag, sum, n))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Averages { sums })
    }
}

/// Called once, after the first update of a [`Runner::train`] call, to make a run that was
/// being built aside the real one; returns the run directory to use from then on. `train`
/// uses it to swap a fresh run in place of the one it overwrites only once it has started.
pub(crate) type CommitFn = Box<dyn FnOnce() -> Result<PathBuf, RunError>>;

/// Callback for progress displays: called after every update with the step, the run's
/// total steps, the latest loss and the latest mean greedy eval accuracy.
pub type ProgressFn = Box<dyn FnMut(u64, u64, f64, Option<f64>)>;

/// Trains an agent on an env as a config says; see the module doc.
pub struct Runner<A: Agent> {
    cfg: RunConfig,
    env: AnyEnv,
    agent: A,
    sampler: DifficultySampler,
    batch: Lockstep<AnyEnv>,
    step: u64,
    run_dir: Option<PathBuf>,
    logger: Option<Logger>,
    stop: Arc<AtomicBool>,
    progress: Option<ProgressFn>,
    last_eval: Option<EvalReport>,
    last_checkpoint: Option<PathBuf>,
    /// Step of the newest checkpoint of this run on disk (saved or resumed from).
    checkpoint_step: Option<u64>,
    /// Training scalars accumulated since the last log point (checkpointed).
    window: Averages,
    /// Training seconds before this process (from the checkpoint), for `perf/elapsed_s`.
    elapsed_before: f64,
    /// When the running `train` call started.
    started: Option<Instant>,
    commit: Option<CommitFn>,
    /// Config keys changed by the last resume (`key: saved X, current Y`).
    resumed_changes: Vec<String>,
}

impl<A: Agent> Runner<A> {
    /// A runner for `agent` on `env` under `cfg` (its `train`, `eval`, `log` and `seed`
    /// sections), logging nowhere until [`with_run_dir`](Self::with_run_dir).
    pub fn new(mut cfg: RunConfig, env: AnyEnv, agent: A) -> Result<Self, RunError> {
        cfg.validate()?;
        crate::registry::resolve(&mut cfg)?;
        let sampler = cfg.train.sampler()?;
        sampler.validate(&env.spec().difficulty)?;
        let batch = Lockstep::new(&env, 0);
        Ok(Runner {
            cfg,
            env,
            agent,
            sampler,
            batch,
            step: 0,
            run_dir: None,
            logger: None,
            stop: Arc::new(AtomicBool::new(false)),
            progress: None,
            last_eval: None,
            last_checkpoint: None,
            checkpoint_step: None,
            window: Averages::default(),
            elapsed_before: 0.0,
            started: None,
            commit: None,
            resumed_changes: Vec::new(),
        })
    }

    /// Logs and checkpoints into `run_dir` from now on: a fresh run writes the resolved
    /// config and the hyperparameters; call [`resume`](Self::resume) instead to continue one.
    pub fn with_run_dir(mut self, run_dir: &Path) -> Result<Self, RunError> {
        let toml = self.cfg.to_toml();
        logging::write_config(run_dir, &toml)?;
        // The thread count is part of what makes a run reproducible (the same seed gives the
        // same run at the same thread count), so every start and resume records it.
        logging::append_history(
            run_dir,
            &serde_json::json!({"event": "start", "step": 0, "threads": tch::get_num_threads()}),
        )?;
        let mut logger = Logger::create(run_dir)?;
        let hp = logging::hparams_from_toml(&toml)?;
        logger.hparams(&hp, &[])?;
        logger.flush()?;
        self.logger = Some(logger);
        self.run_dir = Some(run_dir.to_path_buf());
        Ok(self)
    }

    /// Continues the run in `run_dir` from its latest checkpoint: weights, optimizer state,
    /// step, curriculum. The checkpoint's config must agree with this one except for the keys
    /// of [`CHANGEABLE_ON_RESUME`]; the error lists every other difference.
    pub fn resume(self, run_dir: &Path) -> Result<Self, RunError> {
        self.resume_from(run_dir, None)
    }

    /// As [`resume`](Self::resume), from `checkpoint` (a checkpoint of this run, e.g. an
    /// older one when the newest is damaged) when given. Checkpoint files of later steps are
    /// moved to `superseded/<n>/checkpoints/` with a copy of `metrics.jsonl` as it was, so
    /// nothing is deleted; the resumed run writes those steps again. Every resume appends a
    /// record to `history.jsonl`: the step, the checkpoint and the config keys it changed.
    pub fn resume_from(
        mut self,
        run_dir: &Path,
        checkpoint: Option<&Path>,
    ) -> Result<Self, RunError> {
        let loaded = match checkpoint {
            Some(path) => {
                let loaded = checkpoint::load(path)?;
                let own = checkpoint::checkpoint_dir(run_dir);
                let parent = loaded.path.parent().map(Path::to_path_buf);
                let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => false,
                };
                if !parent.is_some_and(|p| same(&p, &own)) {
                    return Err(RunError::Resume(format!(
                        "{} is not a checkpoint of the run in {} (to start from another run's \
                         weights, use algo.init)",
                        path.display(),
                        run_dir.display()
                    )));
                }
                loaded
            }
            None => load_latest_naming_intact(run_dir)?,
        };
        let saved = &loaded.checkpoint;
        // A run saved before a config key existed has no value for it; read through today's
        // schema, the key takes its default, which is what that run used.
        let saved_toml = RunConfig::from_resolved(&saved.config_toml, "the checkpoint's config")
            .map(|c| c.to_toml())
            .unwrap_or_else(|_| saved.config_toml.clone());
        let diffs = checkpoint::config_differences(&saved_toml, &self.cfg.to_toml())?;
        let (mut changes, fatal): (Vec<String>, Vec<String>) = diffs
            .into_iter()
            .partition(|d| changeable_on_resume(d.split(':').next().unwrap_or_default()));
        // Allowed, but the run then sums in another order than an uninterrupted one would.
        let threads = i64::from(tch::get_num_threads());
        if let Some(before) = logging::last_recorded_threads(run_dir).filter(|&t| t != threads) {
            changes.push(format!(
                "threads: saved {before}, current {threads} (the run goes on, but no longer \
                 equals an uninterrupted one bit for bit)"
            ));
        }
        if !fatal.is_empty() {
            return Err(RunError::Resume(format!(
                "the checkpoint {} was made with a different config:\n  {}\n\
                 a resumed run may change only {}",
                loaded.path.display(),
                fatal.join("\n  "),
                CHANGEABLE_ON_RESUME.join(", ")
            )));
        }
        self.agent.load_state(&loaded.tensors)?;
        self.step = saved.step;
        if let Some(s) = saved.extra.get("sampler") {
            self.sampler = serde_json::from_value(s.clone()).map_err(|e| {
                RunError::Resume(format!(
                    "{}: the saved difficulty sampler does not parse: {e}",
                    loaded.path.display()
                ))
            })?;
        }
        let window = match saved.extra.get("log_window") {
            Some(w) => Averages::from_json(w).ok_or_else(|| {
                RunError::Resume(format!(
                    "{}: the saved training-scalar averages do not parse",
                    loaded.path.display()
                ))
            })?,
            None => Averages::default(),
        };
        self.window = window;
        self.elapsed_before = saved
            .extra
            .get("elapsed_s")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0);
        // Everything is checked: from here on the run directory changes.
        let superseded = set_aside_after(run_dir, self.step)?;
        // A finished run resumed has nothing to do and is left as it is.
        let continues = self.step < self.cfg.train.steps || superseded.is_some();
        if continues {
            logging::append_history(
                run_dir,
                &serde_json::json!({
                    "event": "resume",
                    "step": self.step,
                    "threads": threads,
                    "checkpoint": loaded.path.file_name().map(|n| n.to_string_lossy().into_owned()),
                    "changes": changes,
                    "superseded": superseded.as_ref().map(|p| p.display().to_string()),
                }),
            )?;
        }
        self.resumed_changes = changes;
        logging::write_config(run_dir, &self.cfg.to_toml())?;
        // A finished run has nothing left to log: no new event file, `metrics.jsonl` as is.
        if self.step < self.cfg.train.steps {
            self.logger = Some(Logger::resume_after(run_dir, self.step)?);
        }
        self.run_dir = Some(run_dir.to_path_buf());
        self.last_checkpoint = Some(loaded.path.clone());
        self.checkpoint_step = Some(self.step);
        Ok(self)
    }

    /// Step of the newest checkpoint on disk (saved or resumed from), if any.
    pub fn checkpoint_step(&self) -> Option<u64> {
        self.checkpoint_step
    }

    /// The config keys the last [`resume_from`](Self::resume_from) changed, as
    /// `key: saved X, current Y`.
    pub fn resumed_changes(&self) -> &[String] {
        &self.resumed_changes
    }

    /// Makes `f` run once after the first update of the next [`train`](Self::train) call;
    /// the directory it returns replaces the run directory (see [`CommitFn`]). A call
    /// stopped by the stop flag before its first update never runs it.
    pub(crate) fn set_commit(&mut self, f: CommitFn) {
        self.commit = Some(f);
    }

    /// Whether a commit set by [`set_commit`](Self::set_commit) is still pending.
    pub(crate) fn commit_pending(&self) -> bool {
        self.commit.is_some()
    }

    fn run_commit(&mut self) -> Result<(), RunError> {
        if let Some(commit) = self.commit.take() {
            let dir = commit()?;
            if let Some(logger) = self.logger.as_mut() {
                logger.moved_to(&dir);
            }
            self.run_dir = Some(dir);
        }
        Ok(())
    }

    /// Shows progress through `f` after every update.
    pub fn set_progress(&mut self, f: ProgressFn) {
        self.progress = Some(f);
    }

    /// Uses `flag` as the stop flag (see [`stop_flag`](Self::stop_flag)).
    pub fn set_stop_flag(&mut self, flag: Arc<AtomicBool>) {
        self.stop = flag;
    }

    /// The flag that stops training at the next update boundary (Ctrl-C sets it); the run
    /// then checkpoints and returns with `interrupted = true`.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// Updates done so far.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The agent.
    pub fn agent(&self) -> &A {
        &self.agent
    }

    /// The agent, mutably.
    pub fn agent_mut(&mut self) -> &mut A {
        &mut self.agent
    }

    /// The env.
    pub fn env(&self) -> &AnyEnv {
        &self.env
    }

    /// The config.
    pub fn config(&self) -> &RunConfig {
        &self.cfg
    }

    /// The training difficulty sampler (the curriculum's state).
    pub fn sampler(&self) -> &DifficultySampler {
        &self.sampler
    }

    /// The levels evaluation reports: `eval.levels`, or every training level.
    pub fn eval_levels(&self) -> Vec<Difficulty> {
        if self.cfg.eval.levels.is_empty() {
            self.sampler.levels()
        } else {
            self.cfg.eval.levels.clone()
        }
    }

    /// Runs one update: collect, update. Returns the agent's metrics and the examples used.
    fn train_step(&mut self) -> Result<(crate::agent::Metrics, usize, Played), RunError> {
        let seed = derive_seed(self.cfg.seed ^ TRAIN_SALT, self.step as usize);
        let act_seed = derive_seed(self.cfg.seed ^ ACT_SALT, self.step as usize);
        // Dropout draws from libtorch's generator: reseed it per step for resumable runs.
        tch::manual_seed((seed >> 1) as i64);
        let problems = self.cfg.train.batch_size;
        let mut ctx = Collector::new(
            &self.env,
            &mut self.batch,
            &self.sampler,
            problems,
            seed,
            act_seed,
        );
        let batch = self.agent.collect(&mut ctx)?;
        let played = ctx.played();
        let metrics = self.agent.update(batch)?;
        self.step += 1;
        Ok((metrics, problems, played))
    }

    /// Evaluates on fresh problems at every eval level, greedy (and sampled if configured),
    /// with the run's evaluation seed.
    pub fn evaluate(&mut self) -> Result<EvalReport, RunError> {
        let levels = self.eval_levels();
        let modes: &[ActMode] = if self.cfg.eval.sampled {
            &[ActMode::Greedy, ActMode::Sample]
        } else {
            &[ActMode::Greedy]
        };
        let seed = self.cfg.seed ^ EVAL_SALT;
        Ok(evaluate(
            &self.env,
            &mut self.agent,
            &levels,
            &self.cfg.eval,
            seed,
            modes,
        )?)
    }

    /// Runs the chain faithfulness probe on `eval.episodes` fresh problems per eval level
    /// (the evaluation's problems: same seed).
    pub fn probe(&mut self) -> Result<ProbeReport, RunError> {
        let levels = self.eval_levels();
        let seed = self.cfg.seed ^ EVAL_SALT;
        Ok(chain_probe(
            &self.env,
            &mut self.agent,
            &levels,
            self.cfg.eval.episodes,
            self.cfg.eval.batch_size,
            seed,
        )?)
    }

    fn log_eval(&mut self, report: &EvalReport) -> Result<(), RunError> {
        let step = self.step;
        let Some(logger) = self.logger.as_mut() else {
            return Ok(());
        };
        report.log(logger, step)?;
        logger.flush()?;
        Ok(())
    }

    /// Saves a checkpoint now (when there is a run directory), after syncing the logs: the
    /// records of this step and earlier ones are then on disk before the checkpoint is, which
    /// is what a resume from it relies on.
    pub fn save_checkpoint(&mut self) -> Result<Option<PathBuf>, RunError> {
        let Some(dir) = self.run_dir.clone() else {
            return Ok(None);
        };
        if let Some(logger) = self.logger.as_mut() {
            logger.sync()?;
        }
        let ckpt = Checkpoint {
            step: self.step,
            config_toml: self.cfg.to_toml(),
            rng_state: vec![self.cfg.seed, self.step],
            extra: serde_json::json!({
                "sampler": self.sampler,
                "agent": self.agent.name(),
                "log_window": self.window.to_json(),
                "elapsed_s": self.elapsed_s(),
            }),
        };
        let path = checkpoint::save(
            &dir,
            &ckpt,
            &self.agent.state(),
            self.cfg.log.keep_checkpoints,
        )?;
        self.last_checkpoint = Some(path.clone());
        self.checkpoint_step = Some(self.step);
        Ok(Some(path))
    }

    /// Training wall time of the run so far, across resumes.
    fn elapsed_s(&self) -> f64 {
        self.elapsed_before + self.started.map_or(0.0, |t| t.elapsed().as_secs_f64())
    }

    /// Trains until `train.steps` updates are done, the time limit passes or the stop flag
    /// is set; evaluates every `eval.every` updates and at the end; logs every `log.every`;
    /// checkpoints every `log.checkpoint_every` and at the end (also when stopped).
    ///
    /// A stop by the flag evaluates the current weights for [`TrainSummary::eval`] but logs
    /// only what an uninterrupted run logs at this step, and the final evaluation is not fed
    /// to the curriculum, so that a resumed run continues as the uninterrupted one. A call
    /// that does no update past the run's latest checkpoint (a finished run resumed) logs and
    /// saves nothing: that checkpoint's step was logged in full before it was saved.
    pub fn train(&mut self) -> Result<TrainSummary, RunError> {
        let start = Instant::now();
        self.started = Some(start);
        let result = self.train_loop(start);
        self.elapsed_before = self.elapsed_s();
        self.started = None;
        result
    }

    fn train_loop(&mut self, start: Instant) -> Result<TrainSummary, RunError> {
        let total = self.cfg.train.steps;
        let mut examples = 0u64;
        // Throughput counts training time only (collect + update): evaluations, checkpoints
        // and logging between steps would otherwise fold into the next window.
        let mut window_examples = 0u64;
        let mut window_played = Played::default();
        let mut window_secs = 0f64;
        let mut eval_secs = 0f64;
        let mut interrupted = false;
        let mut timed_out = false;
        let mut evaluated_at = None;
        let time_limit = self.cfg.train.time_limit_s;
        while self.step < total {
            if self.stop.load(Ordering::SeqCst) {
                interrupted = true;
                break;
            }
            if time_limit > 0.0 && start.elapsed().as_secs_f64() >= time_limit {
                timed_out = true;
                break;
            }
            let step_start = Instant::now();
            let (metrics, n, played) = self.train_step()?;
            window_secs += step_start.elapsed().as_secs_f64();
            self.run_commit()?;
            examples += n as u64;
            window_examples += n as u64;
            window_played.episodes += played.episodes;
            window_played.steps += played.steps;
            for (tag, v) in &metrics.scalars {
                self.window.add(tag, *v);
            }
            let loss = metrics.get("loss").unwrap_or(f64::NAN);
            let step = self.step;
            if let Some(logger) = self.logger.as_mut() {
                for (tag, values) in &metrics.histograms {
                    logger.histogram(&format!("train/{tag}"), values, step)?;
                }
            }
            if step.is_multiple_of(self.cfg.log.every) || step == total {
                let secs = window_secs.max(1e-9);
                let elapsed = self.elapsed_s();
                if let Some(logger) = self.logger.as_mut() {
                    for (tag, v) in self.window.drain() {
                        logger.scalar(&format!("train/{tag}"), v, step)?;
                    }
                    logger.scalar("perf/examples_per_s", window_examples as f64 / secs, step)?;
                    if window_played.episodes > 0 {
                        let eps = window_played.episodes as f64 / secs;
                        logger.scalar("perf/episodes_per_s", eps, step)?;
                        let tokens = window_played.steps as f64 / secs;
                        logger.scalar("perf/env_steps_per_s", tokens, step)?;
                    }
                    logger.scalar("perf/eval_s", eval_secs, step)?;
                    logger.scalar("perf/elapsed_s", elapsed, step)?;
                    logger.flush()?;
                } else {
                    self.window.drain();
                }
                window_examples = 0;
                window_played = Played::default();
                window_secs = 0.0;
                eval_secs = 0.0;
            }
            let every = self.cfg.eval.every;
            if every > 0 && step.is_multiple_of(every) && step < total {
                let eval_start = Instant::now();
                self.run_eval()?;
                eval_secs += eval_start.elapsed().as_secs_f64();
                evaluated_at = Some(step);
            }
            let ck = self.cfg.log.checkpoint_every;
            if ck > 0 && step.is_multiple_of(ck) && step < total {
                self.save_checkpoint()?;
            }
            if let Some(p) = self.progress.as_mut() {
                let acc = self
                    .last_eval
                    .as_ref()
                    .map(|r| r.mean_accuracy(ActMode::Greedy));
                p(step, total, loss, acc);
            }
        }
        if interrupted && self.commit.is_some() {
            // Stopped before the first update of a run being built aside: it never started,
            // so there is nothing to evaluate, log or keep (the caller discards it).
            return Ok(TrainSummary {
                steps: self.step,
                examples,
                seconds: start.elapsed().as_secs_f64(),
                interrupted,
                timed_out,
                eval: None,
                checkpoint: None,
            });
        }
        self.run_commit()?;
        let at_checkpoint = self.checkpoint_step == Some(self.step);
        if evaluated_at != Some(self.step) {
            if interrupted || at_checkpoint {
                self.last_eval = Some(self.evaluate()?);
            } else {
                self.run_eval()?;
            }
        }
        let checkpoint = if at_checkpoint {
            self.last_checkpoint.clone()
        } else {
            self.save_checkpoint()?
        };
        if let Some(logger) = self.logger.as_mut() {
            logger.flush()?;
        }
        Ok(TrainSummary {
            steps: self.step,
            examples,
            seconds: start.elapsed().as_secs_f64(),
            interrupted,
            timed_out,
            eval: self.last_eval.clone(),
            checkpoint,
        })
    }

    /// Evaluates, logs, and feeds the greedy accuracy of the curriculum's level to it; with
    /// `eval.probe`, also probes the greedy chains and logs the probe's figures.
    fn run_eval(&mut self) -> Result<(), RunError> {
        let report = self.evaluate()?;
        self.log_eval(&report)?;
        if self.cfg.eval.probe {
            let probe = self.probe()?;
            let step = self.step;
            if let Some(logger) = self.logger.as_mut() {
                probe.log(logger, step)?;
                logger.flush()?;
            }
        }
        if let DifficultySampler::Curriculum(c) = &self.sampler {
            let level = c.level();
            if let Some(acc) = report.accuracy(level, ActMode::Greedy) {
                self.sampler.report(level, acc);
            }
            if let DifficultySampler::Curriculum(c) = &self.sampler {
                let (level, step) = (c.level(), self.step);
                if let Some(logger) = self.logger.as_mut() {
                    logger.scalar("charts/curriculum_level", f64::from(level), step)?;
                }
            }
        }
        self.last_eval = Some(report);
        Ok(())
    }

    /// Consumes the runner, returning the agent.
    pub fn into_agent(self) -> A {
        self.agent
    }

    /// The experience the agent declared (for displays).
    pub fn experience(&self) -> Experience {
        self.agent.experience()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AnyAgent;
    use crate::eval::EvalReport;

    /// A small CoT run on Cycle(L=8), hops 1..3.
    fn config(extra: &[&str]) -> RunConfig {
        let text = r#"
seed = 1
[env]
name = "cycle"
length = 8
[train]
steps = 6
batch_size = 16
levels = [1, 2, 3]
[algo]
name = "cot_supervised"
[model]
heads = 2
head_dim = 8
mlp_factor = 2
decoder_layers = 1
[optim]
lr = 3e-3
warmup_steps = 2
schedule = "cosine"
[eval]
every = 0
episodes = 20
examples = 1
[log]
every = 2
"#;
        crate::testing::config(text, extra)
    }

    use crate::testing::runner;

    fn params(r: &Runner<AnyAgent>) -> Vec<(String, tch::Tensor)> {
        r.agent().state()
    }

    #[test]
    fn oracle_collection_groups_problems_and_is_seeded() {
        let cfg = config(&[]);
        let env = cfg.env.build().unwrap();
        let sampler = cfg.train.sampler().unwrap();
        let mut batch = Lockstep::new(&env, 0);
        let mut ctx = Collector::new(&env, &mut batch, &sampler, 5, 42, 7);
        let a = ctx.oracle().unwrap();
        assert_eq!(a.len(), 5);
        assert!(
            a.solved.iter().all(|&s| s),
            "the oracle solves every problem"
        );
        for i in 0..5 {
            // hops H: H chain tokens, the marker, one answer token.
            assert_eq!(a.lengths[i], a.difficulty[i] as usize + 2);
        }
        let envs = ctx.reset_problems(3).unwrap();
        assert_eq!(envs.len(), 15);
        for g in 0..5 {
            let p = envs[3 * g].observation();
            assert_eq!(envs[3 * g + 1].observation(), p);
            assert_eq!(envs[3 * g + 2].observation(), p);
        }
        let mut batch2 = Lockstep::new(&env, 0);
        let b = Collector::new(&env, &mut batch2, &sampler, 5, 42, 7)
            .oracle()
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn on_policy_collection_plays_k_samples_of_each_problem() {
        let cfg = config(&[]);
        let env = cfg.env.build().unwrap();
        let mut agent = crate::registry::build(&cfg, &env, tch::Device::Cpu).unwrap();
        let sampler = cfg.train.sampler().unwrap();
        let mut batch = Lockstep::new(&env, 0);
        let mut ctx = Collector::new(&env, &mut batch, &sampler, 4, 11, 12);
        let ep = ctx
            .on_policy(3, ActMode::Sample, |o, m, r| agent.act(o, m, r))
            .unwrap();
        assert_eq!((ep.len(), ep.samples_per_problem), (12, 3));
        for g in 0..4 {
            let first = ep.tokens.slice(ndarray::s![3 * g, 0, ..]);
            for k in 1..3 {
                assert_eq!(ep.tokens.slice(ndarray::s![3 * g + k, 0, ..]), first);
            }
        }
        for i in 0..12 {
            assert!(ep.lengths[i] >= 2, "at least ANSWER and one answer token");
            for t in 0..ep.lengths[i] {
                let a = ep.actions[[i, t]] as usize;
                assert!(ep.action_mask[[i, t, a]], "the action was legal");
                assert!(ep.log_probs[[i, t]] <= 0.0 && ep.entropies[[i, t]] >= 0.0);
            }
            for t in ep.lengths[i]..ep.max_len() {
                assert_eq!(ep.actions[[i, t]], -1);
            }
            let reward: f32 = ep.rewards.row(i).sum();
            assert_eq!(reward, f32::from(u8::from(ep.solved[i])));
        }
    }

    /// Stopping at step 3 (what Ctrl-C does) checkpoints; resuming continues to the same
    /// parameters as an uninterrupted run, bit for bit.
    #[test]
    fn stop_then_resume_matches_an_uninterrupted_run() {
        let dir = tempfile::tempdir().unwrap();
        let mut straight = runner(config(&[]));
        let s = straight.train().unwrap();
        assert_eq!((s.steps, s.interrupted), (6, false));

        let run_dir = dir.path().join("r");
        let mut first = runner(config(&[])).with_run_dir(&run_dir).unwrap();
        let stop = first.stop_flag();
        first.set_progress(Box::new(move |step, _, _, _| {
            if step == 3 {
                stop.store(true, Ordering::SeqCst);
            }
        }));
        let s1 = first.train().unwrap();
        assert!(s1.interrupted);
        assert_eq!(s1.steps, 3);
        let ckpt = s1.checkpoint.expect("a checkpoint on stop");
        assert!(ckpt.exists(), "{}", ckpt.display());
        assert!(run_dir.join("config.toml").exists());
        assert!(run_dir.join("metrics.jsonl").exists());

        let mut second = runner(config(&[])).resume(&run_dir).unwrap();
        assert_eq!(second.step(), 3);
        let s2 = second.train().unwrap();
        assert_eq!((s2.steps, s2.interrupted), (6, false));
        for ((n1, t1), (n2, t2)) in params(&straight).iter().zip(params(&second).iter()) {
            assert_eq!(n1, n2);
            assert!(t1.equal(t2), "{n1} differs after resume");
        }
        let metrics = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
        assert!(metrics.contains("\"tag\":\"train/loss\""), "{metrics}");
        assert!(metrics.contains("eval/accuracy/greedy/d3"), "{metrics}");
    }

    /// `eval.probe = true` logs the chain probe's figures at every evaluation.
    #[test]
    fn the_probe_runs_at_each_evaluation_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("r");
        let mut r = runner(config(&[
            "train.steps=2",
            "eval.every=1",
            "eval.episodes=8",
            "eval.probe=true",
        ]))
        .with_run_dir(&run_dir)
        .unwrap();
        r.train().unwrap();
        let metrics = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
        for d in 1..=3 {
            let tag = format!("\"tag\":\"probe/shuffle_changed/d{d}\"");
            assert_eq!(metrics.matches(&tag).count(), 2, "{tag} at steps 1, 2");
        }
        let report = r.probe().unwrap();
        assert_eq!(report.levels.len(), 3);
        assert!(report.levels.iter().all(|l| l.episodes == 8));
    }

    #[test]
    fn resuming_with_a_different_model_names_the_keys() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("r");
        let mut r = runner(config(&["train.steps=1"]))
            .with_run_dir(&run_dir)
            .unwrap();
        r.train().unwrap();
        let err = runner(config(&["model.heads=4"]))
            .resume(&run_dir)
            .err()
            .expect("a mismatched config is an error")
            .to_string();
        assert!(err.contains("model.heads: saved 2, current 4"), "{err}");
    }

    /// The `(step, value)` records of `tag` in a run's `metrics.jsonl`.
    fn records(run_dir: &std::path::Path, tag: &str) -> Vec<(u64, f64)> {
        std::fs::read_to_string(run_dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["tag"] == tag)
            .map(|v| (v["step"].as_u64().unwrap(), v["value"].as_f64().unwrap()))
            .collect()
    }

    /// A resume at another thread count than the run's last start or resume is accepted and
    /// listed among its changes.
    #[test]
    fn a_resume_at_another_thread_count_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("r");
        let run = |steps: &str| config(&[steps, "log.every=1"]);
        runner(run("train.steps=2"))
            .with_run_dir(&run_dir)
            .unwrap()
            .train()
            .unwrap();
        let same = runner(run("train.steps=3")).resume(&run_dir).unwrap();
        assert_eq!(
            same.resumed_changes().len(),
            1,
            "{:?}",
            same.resumed_changes()
        );
        // As if the run had last been resumed at another thread count.
        let other = i64::from(tch::get_num_threads()) + 7;
        logging::append_history(
            &run_dir,
            &serde_json::json!({"event": "resume", "threads": other}),
        )
        .unwrap();
        let r = runner(run("train.steps=3")).resume(&run_dir).unwrap();
        let said = r.resumed_changes().join("\n");
        assert!(said.contains(&format!("threads: saved {other}")), "{said}");
    }

    /// The learning rate is a change a resume accepts: it takes effect from the next update
    /// and the run's history records it; the model is not.
    #[test]
    fn a_resume_may_lower_the_learning_rate_and_records_it() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("r");
        let base = [
            "train.steps=2",
            "log.every=1",
            "optim.warmup_steps=1",
            "optim.schedule=constant",
        ];
        runner(config(&base))
            .with_run_dir(&run_dir)
            .unwrap()
            .train()
            .unwrap();
        let sets = [
            "train.steps=4",
            "log.every=1",
            "optim.warmup_steps=1",
            "optim.schedule=constant",
            "optim.lr=1e-4",
        ];
        let mut r = runner(config(&sets)).resume(&run_dir).unwrap();
        assert_eq!(r.resumed_changes().len(), 2, "{:?}", r.resumed_changes());
        assert!(r
            .resumed_changes()
            .iter()
            .any(|c| c.starts_with("optim.lr:")));
        r.train().unwrap();
        let lr = records(&run_dir, "train/lr");
        assert_eq!(lr.len(), 4, "{lr:?}");
        let before = lr[0].1;
        assert!(before > 1e-4, "{lr:?}");
        for &(step, v) in &lr {
            let want = if step <= 2 { before } else { 1e-4 };
            assert!((v - want).abs() < 1e-12, "step {step}: lr {v}");
        }
        let history = std::fs::read_to_string(run_dir.join("history.jsonl")).unwrap();
        let events: Vec<serde_json::Value> = history
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 2, "{history}");
        assert_eq!(events[0]["event"], "start");
        assert_eq!(
            (events[1]["event"].as_str(), events[1]["step"].as_u64()),
            (Some("resume"), Some(2))
        );
        assert!(
            events[1]["changes"].to_string().contains("optim.lr"),
            "{history}"
        );
        let err = runner(config(&["train.steps=4", "model.heads=4", "optim.lr=1e-4"]))
            .resume(&run_dir)
            .err()
            .expect("a changed model is refused")
            .to_string();
        assert!(
            err.contains("model.heads") && err.contains("optim.lr"),
            "{err}"
        );
    }

    /// A damaged newest checkpoint: the error names the intact older ones; resuming from one
    /// moves the later files aside (with the metrics as they were) and redoes those steps.
    #[test]
    fn resuming_from_an_older_checkpoint_keeps_the_later_files_aside() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("r");
        let sets = [
            "train.steps=3",
            "log.checkpoint_every=1",
            "log.keep_checkpoints=0",
        ];
        runner(config(&sets))
            .with_run_dir(&run_dir)
            .unwrap()
            .train()
            .unwrap();
        let ckpts = run_dir.join("checkpoints");
        let listed = crate::checkpoint::list(&run_dir).unwrap();
        assert_eq!(listed.iter().map(|e| e.step).collect::<Vec<_>>(), [1, 2, 3]);
        let name = |i: usize| listed[i].path.file_name().unwrap().to_owned();
        let newest = listed[2].path.with_extension("safetensors");
        let mut bytes = std::fs::read(&newest).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&newest, &bytes).unwrap();
        let metrics_before = std::fs::read(run_dir.join("metrics.jsonl")).unwrap();

        let err = runner(config(&sets))
            .resume(&run_dir)
            .err()
            .expect("a damaged newest checkpoint is an error")
            .to_string();
        assert!(
            err.contains("step 2, step 1") && err.contains("--from-checkpoint 2"),
            "{err}"
        );

        let older = listed[1].path.clone();
        let mut r = runner(config(&sets))
            .resume_from(&run_dir, Some(&older))
            .unwrap();
        assert_eq!(r.step(), 2);
        let aside = run_dir.join("superseded/1");
        let set_aside = aside.join("checkpoints").join(name(2));
        assert_eq!(
            std::fs::read(set_aside.with_extension("safetensors")).unwrap(),
            bytes
        );
        assert!(set_aside.is_file());
        assert_eq!(
            std::fs::read(aside.join("metrics.jsonl")).unwrap(),
            metrics_before
        );
        r.train().unwrap();
        crate::checkpoint::load(&ckpts.join(name(2))).unwrap();

        // A checkpoint of another run is not a resume point.
        let other = dir.path().join("other");
        runner(config(&["train.steps=1"]))
            .with_run_dir(&other)
            .unwrap()
            .train()
            .unwrap();
        let err = runner(config(&sets))
            .resume_from(
                &run_dir,
                Some(&crate::checkpoint::list(&other).unwrap()[0].path),
            )
            .err()
            .expect("another run's checkpoint is refused")
            .to_string();
        assert!(err.contains("algo.init"), "{err}");
    }

    /// A run of one update in `dir/r`: its directory and its checkpoint.
    fn one_step_run(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let run_dir = dir.join("r");
        let mut r = runner(config(&["train.steps=1"]))
            .with_run_dir(&run_dir)
            .unwrap();
        let path = r.train().unwrap().checkpoint.unwrap();
        (run_dir, path)
    }

    /// A checkpoint from before a config key existed (simulated by deleting `model.dropout`
    /// from the saved config) resumes: the missing key counts as its default.
    #[test]
    fn a_run_saved_before_a_new_key_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let (run_dir, path) = one_step_run(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        let old = text.replace("dropout = 0.0\\n", "");
        assert_ne!(old, text, "the saved config names model.dropout");
        std::fs::write(&path, old).unwrap();
        let resumed = runner(config(&["train.steps=2"])).resume(&run_dir).unwrap();
        assert_eq!(resumed.step(), 1);
        // A key whose saved value differs from the current one is still an error.
        let err = runner(config(&["train.steps=2", "model.heads=4"]))
            .resume(&run_dir)
            .err()
            .expect("a changed model is an error")
            .to_string();
        assert!(err.contains("model.heads"), "{err}");
    }

    #[test]
    fn a_corrupt_checkpoint_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let (run_dir, path) = one_step_run(dir.path());
        let tensors = path.with_extension("safetensors");
        let mut bytes = std::fs::read(&tensors).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&tensors, bytes).unwrap();
        let err = runner(config(&[]))
            .resume(&run_dir)
            .err()
            .expect("a damaged checkpoint is an error")
            .to_string();
        assert!(err.contains("step-") && err.contains("CRC32"), "{err}");
    }

    #[test]
    fn the_time_limit_stops_training_and_still_evaluates() {
        let mut r = runner(config(&["train.time_limit_s=1e-9"]));
        let s = r.train().unwrap();
        assert!(s.timed_out && !s.interrupted);
        assert!(s.steps < 6);
        assert!(s.eval.is_some(), "a stopped run ends with an evaluation");
    }

    /// Evaluations feed the curriculum: with an agent that has learned hops 1..3, each
    /// evaluation raises the level by one, up to the last.
    #[test]
    fn the_curriculum_rises_with_greedy_accuracy() {
        let trained = {
            let mut r = runner(config(&[
                "train.steps=150",
                "train.batch_size=64",
                "optim.lr=1e-2",
                "optim.warmup_steps=10",
                "optim.min_lr_ratio=0.1",
                "model.head_dim=16",
                "seed=0",
                "eval.episodes=50",
                "eval.sampled=false",
            ]));
            let report = r.train().unwrap().eval.unwrap();
            assert!(
                report.mean_accuracy(ActMode::Greedy) >= 0.9,
                "{}",
                report.table()
            );
            r.into_agent()
        };
        let cfg = config(&[
            "train.sampler=curriculum",
            "train.threshold=0.9",
            "train.steps=3",
            "model.head_dim=16",
            "eval.every=1",
            "eval.episodes=50",
            "eval.sampled=false",
        ]);
        let env = cfg.env.build().unwrap();
        let mut r = Runner::new(cfg, env, trained).unwrap();
        assert!(matches!(r.sampler(), DifficultySampler::Curriculum(c) if c.level() == 1));
        r.train_step().unwrap();
        r.run_eval().unwrap();
        assert!(matches!(r.sampler(), DifficultySampler::Curriculum(c) if c.level() == 2));
        let s = r.train().unwrap();
        let DifficultySampler::Curriculum(c) = r.sampler() else {
            panic!("still a curriculum");
        };
        assert_eq!(c.level(), 3, "{}", s.eval.unwrap().table());
    }

    #[test]
    fn the_eval_report_covers_levels_and_modes() {
        let mut r = runner(config(&["train.steps=1", "eval.episodes=7"]));
        r.train().unwrap();
        let rep: EvalReport = r.evaluate().unwrap();
        assert_eq!(rep.levels(), vec![1, 2, 3]);
        for d in 1..=3 {
            for m in [ActMode::Greedy, ActMode::Sample] {
                let l = rep.get(d, m).unwrap();
                assert_eq!(l.episodes, 7);
                assert!((0.0..=1.0).contains(&l.accuracy()));
                assert_eq!(l.chain_lengths.len(), 7);
            }
        }
        // Same seed, same problems, same greedy results.
        assert_eq!(rep, r.evaluate().unwrap());
    }
}
