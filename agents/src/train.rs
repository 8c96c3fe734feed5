//! The one public way to train, used by `factorexe train` and by user code alike: it checks
//! everything (config, env, agent, device) before touching the run directory, guards the
//! directory (a run is continued with `resume` or replaced with `overwrite`, never mixed),
//! makes libtorch's OpenMP threads sleep rather than spin, stops on SIGINT or SIGTERM
//! after the current update with a checkpoint, shows progress, and logs to TensorBoard and
//! `metrics.jsonl`.
//!
//! The run directory:
//! - One writer: the directory is locked ([`files::DirLock`], an OS advisory lock on its
//!   `.lock` file holding the PID) before anything is written and until the run ends; a
//!   second process that would train, resume or overwrite there is refused with
//!   [`RunError::InUse`], which names that PID.
//! - A fresh run, or one that overwrites another, is built in a hidden sibling directory
//!   and swapped in (atomically on Linux) after its first update. A start that fails or is
//!   interrupted before then leaves the directory as it was and nothing behind.
//! - Resuming checks that the directory and its `checkpoints/` can be written before it
//!   changes anything.
//!
//! Signals: the first SIGINT, SIGTERM or SIGHUP lets the current update finish, then the run
//! evaluates, checkpoints and returns with [`TrainSummary::interrupted`] set; a second one
//! ends the process at once, by that signal.
//!
//! ```no_run
//! use agents::config::RunConfig;
//! use agents::train::{train, TrainOptions};
//!
//! let cfg = RunConfig::load("configs/cycle40_cot.toml".as_ref(), &[])?;
//! let summary = train(TrainOptions::new(cfg))?;
//! println!("{} steps", summary.steps);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tch::Device;

use crate::agent::{Agent, AgentError, AnyAgent};
use crate::config::RunConfig;
use crate::files::{self, DirLock, LockError};
use crate::logging::{CONFIG_FILE, METRICS_FILE};
use crate::optim::OptimError;
use crate::runner::{RunError, Runner, TrainSummary};

/// Prints a line to stdout, dropping it when stdout is closed (the reader of `factorexe train
/// | head` went away): a lost progress line must not end a run, as a panic on the closed
/// pipe would.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Like `say!`, for stderr.
macro_rules! warn {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// What [`train`] does besides training.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The run's config.
    pub config: RunConfig,
    /// The run directory; `None`: `<log.dir>/<name>`.
    pub run_dir: Option<PathBuf>,
    /// Continue the run in the directory from its latest checkpoint.
    pub resume: bool,
    /// With `resume`: continue from this checkpoint of the run instead of the latest (a
    /// step number or a checkpoint file).
    pub resume_from: Option<CheckpointChoice>,
    /// Replace a run already in the directory: the new run is built aside and replaces the
    /// old one only once its first update is done.
    pub overwrite: bool,
    /// Where the model lives.
    pub device: Device,
    /// libtorch intra-op threads (`None`: libtorch's choice, one per core). The default is 1:
    /// at this project's model sizes a second thread slows training (its threads sleep
    /// between the many small ops, and waking them costs more than the op).
    pub threads: Option<usize>,
    /// A progress bar on stderr (when it is a terminal); log lines otherwise.
    pub progress: bool,
    /// Print the run's header, summary and accuracy table on stdout.
    pub print: bool,
    /// Re-execute the process with `OMP_WAIT_POLICY=PASSIVE` when it is not set (see
    /// [`passive_openmp`]).
    pub passive_openmp: bool,
}

impl TrainOptions {
    /// Defaults: `<log.dir>/<name>`, a fresh run, CPU, one thread, progress shown, passive
    /// OpenMP.
    pub fn new(config: RunConfig) -> Self {
        TrainOptions {
            config,
            run_dir: None,
            resume: false,
            resume_from: None,
            overwrite: false,
            device: Device::Cpu,
            threads: Some(1),
            progress: true,
            print: true,
            passive_openmp: true,
        }
    }

    /// The run directory these options train in.
    pub fn dir(&self) -> PathBuf {
        self.run_dir
            .clone()
            .unwrap_or_else(|| Path::new(&self.config.log.dir).join(&self.config.name))
    }
}

/// Which checkpoint of a run to resume from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointChoice {
    /// The checkpoint saved after this many updates.
    Step(u64),
    /// A checkpoint file (`step-<n>.json` or its `.safetensors`) in the run's `checkpoints/`.
    File(PathBuf),
}

impl std::str::FromStr for CheckpointChoice {
    type Err = std::convert::Infallible;

    /// A number is a step; anything else is a file.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.parse::<u64>() {
            Ok(step) => CheckpointChoice::Step(step),
            Err(_) => CheckpointChoice::File(PathBuf::from(s)),
        })
    }
}

impl CheckpointChoice {
    /// The checkpoint's sidecar in `run_dir`; the error lists the run's checkpoints.
    fn path(&self, run_dir: &Path) -> Result<PathBuf, RunError> {
        match self {
            CheckpointChoice::File(p) => Ok(p.clone()),
            CheckpointChoice::Step(step) => {
                let all = crate::checkpoint::list(run_dir)?;
                match all.iter().find(|e| e.step == *step) {
                    Some(e) => Ok(e.path.clone()),
                    None => Err(RunError::Resume(format!(
                        "{} has no checkpoint of step {step}; it has {}",
                        run_dir.display(),
                        if all.is_empty() {
                            "none".to_string()
                        } else {
                            all.iter()
                                .map(|e| format!("step {}", e.step))
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ))),
                }
            }
        }
    }
}

/// Makes libtorch's OpenMP threads sleep, not spin, while they wait for work.
///
/// libgomp's default wait policy busy-waits between parallel regions. On a small CPU shared
/// with anything else (a second run, a build, the test harness) the spinning threads starve
/// the one doing the work: 60 training steps of `configs/cycle40_cot.toml` took 44 s with
/// the default policy and 1.9 s with `OMP_WAIT_POLICY=PASSIVE` on 2 shared cores. libgomp
/// reads the variable when it is loaded, before `main`, so the process re-executes itself
/// once with it set; a value the user set is left alone.
pub fn passive_openmp() {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        const VAR: &str = "OMP_WAIT_POLICY";
        if std::env::var_os(VAR).is_some() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let err = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(VAR, "PASSIVE")
            .exec();
        // `exec` returns only when it failed: carry on with the default policy.
        warn!("note: could not re-execute with {VAR}=PASSIVE ({err}); continuing");
    }
}

/// Files and folders a run writes (what `overwrite` replaces).
pub fn is_run_output(name: &str) -> bool {
    name == "checkpoints"
        || name == METRICS_FILE
        || name == CONFIG_FILE
        || name == crate::logging::HISTORY_FILE
        || name == crate::runner::SUPERSEDED_DIR
        || name.starts_with("events.out.tfevents.")
}

/// Whether `dir` holds a run's files.
pub fn holds_a_run(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut it| {
        it.any(|e| e.is_ok_and(|e| is_run_output(&e.file_name().to_string_lossy())))
    })
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> RunError {
    RunError::RunDir(format!("{}: {e}", path.display()))
}

fn lock_error(e: LockError) -> RunError {
    match e {
        LockError::Busy { dir, pid } => RunError::InUse { dir, pid },
        LockError::Io { path, source } => io_error(&path, source),
    }
}

fn check_writable(dir: &Path) -> Result<(), RunError> {
    files::check_writable(dir).map_err(|e| {
        RunError::RunDir(format!(
            "{}: cannot write there ({e}); training would fail at its first checkpoint",
            dir.display()
        ))
    })
}

/// A run directory while this process trains in it: the lock that keeps other processes
/// out (held from before the first write to the end of the run), and for a fresh run or
/// an overwrite, the new run being built in a hidden sibling directory, swapped in place of
/// the directory by [`RunDirGuard::commit`] after its first update. Dropped before the swap
/// (the start failed, or was interrupted), it removes the sibling and every directory it
/// created, so the old run stays as it was and no stub is left behind.
struct RunDirGuard {
    dir: PathBuf,
    lock: Option<DirLock>,
    /// Directories this process created for the run, outermost first.
    created: Vec<PathBuf>,
    staging: Option<(PathBuf, DirLock)>,
    committed: bool,
}

impl RunDirGuard {
    /// Creates `dir` if needed (with its missing parents) and locks it.
    fn acquire(dir: &Path) -> Result<RunDirGuard, RunError> {
        let mut created = Vec::new();
        let mut missing = Vec::new();
        let mut p = dir;
        while !p.as_os_str().is_empty() && !p.exists() {
            missing.push(p.to_path_buf());
            match p.parent() {
                Some(parent) => p = parent,
                None => break,
            }
        }
        let mut guard = RunDirGuard {
            dir: dir.to_path_buf(),
            lock: None,
            created: Vec::new(),
            staging: None,
            committed: false,
        };
        for d in missing.into_iter().rev() {
            match std::fs::create_dir(&d) {
                Ok(()) => created.push(d),
                // Another process made it meanwhile: not ours to remove.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    guard.created = created;
                    return Err(io_error(&d, e));
                }
            }
        }
        guard.created = created;
        // A run directory given as a symlink is the directory it points to: that is what
        // must be locked, and replaced by an overwrite (not the link).
        // So is one given as `.` or `..`, which has no name to build the sibling's from.
        if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink())
            || dir.file_name().is_none()
        {
            guard.dir = std::fs::canonicalize(dir).map_err(|e| io_error(dir, e))?;
        }
        guard.lock = Some(DirLock::try_acquire(&guard.dir).map_err(lock_error)?);
        guard.remove_stale_staging();
        Ok(guard)
    }

    fn parent_and_name(&self) -> Result<(PathBuf, String), RunError> {
        let name = self.dir.file_name().ok_or_else(|| {
            RunError::RunDir(format!(
                "{}: a run directory needs a name",
                self.dir.display()
            ))
        })?;
        let parent = match self.dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok((parent, name.to_string_lossy().into_owned()))
    }

    fn staging_prefix(name: &str) -> String {
        format!(".{name}.new-")
    }

    /// Removes what killed processes left of runs they were building for this directory
    /// (only the holder of the directory's lock builds one, and that is now us).
    fn remove_stale_staging(&self) {
        let Ok((parent, name)) = self.parent_and_name() else {
            return;
        };
        let prefix = Self::staging_prefix(&name);
        let Ok(entries) = std::fs::read_dir(&parent) else {
            return;
        };
        for e in entries.flatten() {
            if !e.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            let path = e.path();
            // Belt and braces: never remove a directory some live process holds.
            if let Ok(lock) = DirLock::try_acquire(&path) {
                drop(lock);
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }

    /// Creates the hidden sibling the new run is built in, locked, with a writable
    /// `checkpoints/`; returns its path.
    fn stage(&mut self) -> Result<PathBuf, RunError> {
        let (parent, name) = self.parent_and_name()?;
        let staging = parent.join(format!(
            "{}{}",
            Self::staging_prefix(&name),
            std::process::id()
        ));
        std::fs::create_dir(&staging).map_err(|e| io_error(&staging, e))?;
        let lock = match DirLock::try_acquire(&staging) {
            Ok(lock) => lock,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(lock_error(e));
            }
        };
        self.staging = Some((staging.clone(), lock));
        let checkpoints = staging.join(crate::checkpoint::CHECKPOINT_DIR);
        std::fs::create_dir(&checkpoints).map_err(|e| io_error(&checkpoints, e))?;
        check_writable(&checkpoints)?;
        Ok(staging)
    }

    /// Swaps the new run in place of the directory: the old content (an overwritten run)
    /// ends up in the sibling and is deleted, except files that are not a run's (notes put
    /// there by hand), which move into the new run. Returns the run directory.
    fn commit(&mut self) -> Result<PathBuf, RunError> {
        let Some((staging, mut new_lock)) = self.staging.take() else {
            return Ok(self.dir.clone());
        };
        if let Err(e) = files::exchange(&staging, &self.dir) {
            self.staging = Some((staging.clone(), new_lock));
            return Err(RunError::RunDir(format!(
                "swapping the new run {} into {}: {e}",
                staging.display(),
                self.dir.display()
            )));
        }
        self.committed = true;
        new_lock.moved_to(&self.dir);
        let old = staging;
        if let Some(mut old_lock) = self.lock.replace(new_lock) {
            old_lock.moved_to(&old);
        }
        if let Ok(entries) = std::fs::read_dir(&old) {
            for e in entries.flatten() {
                let name = e.file_name();
                let n = name.to_string_lossy();
                if is_run_output(&n) || n == files::LOCK_FILE {
                    continue;
                }
                let to = self.dir.join(&name);
                if !to.exists() {
                    let _ = std::fs::rename(e.path(), to);
                }
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&old) {
            warn!(
                "warning: could not remove the replaced run in {} ({e})",
                old.display()
            );
        }
        Ok(self.dir.clone())
    }
}

impl Drop for RunDirGuard {
    fn drop(&mut self) {
        if let Some((staging, lock)) = self.staging.take() {
            drop(lock);
            let _ = std::fs::remove_dir_all(&staging);
        }
        // Unlock (which deletes the lock file) before removing the directories it was in.
        self.lock = None;
        if !self.committed {
            for d in self.created.iter().rev() {
                // Only empty ones: anything else in there is not ours.
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}

/// The process-wide stop flag SIGINT, SIGTERM and SIGHUP set while a run trains.
static STOP: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));

/// Called on ctrlc's thread for each SIGINT, SIGTERM or SIGHUP during training.
fn on_signal() {
    if STOP.swap(true, Ordering::SeqCst) {
        // A second signal that raced the reset below. `_exit` skips atexit handlers and
        // C++ static destructors, which would run while the main thread is inside libtorch.
        #[cfg(unix)]
        // SAFETY: `_exit` is async-signal-safe and takes no pointers.
        unsafe {
            libc::_exit(130)
        };
        #[cfg(not(unix))]
        std::process::exit(130);
    }
    signals::default_actions();
    warn!(
        "\ninterrupted: finishing this update, then saving a checkpoint \
         (interrupt again to quit now)"
    );
}

/// Stop-signal handling for the duration of a run. While armed, SIGINT, SIGTERM and SIGHUP
/// set [`STOP`]; the first one also restores the default actions, so that a second signal
/// ends the process at once, by that signal, as a shell expects of a program it interrupted
/// (no exit code to fake, no destructors racing the training thread). Disarming restores
/// the actions the process had before; a signal the process ignored (`nohup`) stays ignored.
#[cfg(unix)]
mod signals {
    use std::sync::{Mutex, OnceLock};

    use super::{on_signal, RunError, STOP};

    const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

    struct Actions {
        /// What the process had before ctrlc installed its handler.
        original: [libc::sigaction; 3],
        /// ctrlc's handler.
        handler: [libc::sigaction; 3],
    }

    static ACTIONS: OnceLock<Result<Actions, String>> = OnceLock::new();
    /// Runs armed at the moment (`train` may run on several threads at once).
    static ARMED: Mutex<usize> = Mutex::new(0);

    fn get(sig: libc::c_int) -> libc::sigaction {
        // SAFETY: a zeroed sigaction is a valid out-parameter; a null new action only reads.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, std::ptr::null(), &mut old);
            old
        }
    }

    fn set(sig: libc::c_int, action: &libc::sigaction) {
        // SAFETY: `action` was read from the kernel for this signal, or is SIG_DFL.
        unsafe {
            libc::sigaction(sig, action, std::ptr::null_mut());
        }
    }

    fn ignored(a: &libc::sigaction) -> bool {
        a.sa_sigaction == libc::SIG_IGN
    }

    fn actions() -> Result<&'static Actions, RunError> {
        ACTIONS
            .get_or_init(|| {
                let original = SIGNALS.map(get);
                ctrlc::set_handler(on_signal).map_err(|e| e.to_string())?;
                let handler = SIGNALS.map(get);
                Ok(Actions { original, handler })
            })
            .as_ref()
            .map_err(|e| RunError::RunDir(format!("installing the signal handler: {e}")))
    }

    /// Holds the handler armed; see the module doc.
    pub(super) struct Armed;

    pub(super) fn arm() -> Result<Armed, RunError> {
        let mut armed = ARMED.lock().unwrap_or_else(|e| e.into_inner());
        let actions = actions()?;
        if *armed == 0 {
            STOP.store(false, std::sync::atomic::Ordering::SeqCst);
            for ((sig, original), handler) in
                SIGNALS.iter().zip(&actions.original).zip(&actions.handler)
            {
                set(*sig, if ignored(original) { original } else { handler });
            }
        }
        *armed += 1;
        Ok(Armed)
    }

    impl Drop for Armed {
        fn drop(&mut self) {
            let mut armed = ARMED.lock().unwrap_or_else(|e| e.into_inner());
            *armed = armed.saturating_sub(1);
            if *armed == 0 {
                if let Some(Ok(actions)) = ACTIONS.get() {
                    for (sig, original) in SIGNALS.iter().zip(&actions.original) {
                        set(*sig, original);
                    }
                }
            }
        }
    }

    /// After the first signal: the next one takes its default action (ends the process).
    pub(super) fn default_actions() {
        let Some(Ok(actions)) = ACTIONS.get() else {
            return;
        };
        for (sig, original) in SIGNALS.iter().zip(&actions.original) {
            if !ignored(original) {
                // SAFETY: a zeroed sigaction with SIG_DFL is the default action.
                let mut dfl: libc::sigaction = unsafe { std::mem::zeroed() };
                dfl.sa_sigaction = libc::SIG_DFL;
                set(*sig, &dfl);
            }
        }
    }
}

#[cfg(not(unix))]
mod signals {
    use std::sync::OnceLock;

    use super::{on_signal, RunError, STOP};

    static HANDLER: OnceLock<Result<(), String>> = OnceLock::new();

    pub(super) struct Armed;

    pub(super) fn arm() -> Result<Armed, RunError> {
        HANDLER
            .get_or_init(|| ctrlc::set_handler(on_signal).map_err(|e| e.to_string()))
            .clone()
            .map_err(|e| RunError::RunDir(format!("installing the signal handler: {e}")))?;
        STOP.store(false, std::sync::atomic::Ordering::SeqCst);
        Ok(Armed)
    }

    pub(super) fn default_actions() {}
}

/// Refuses a CUDA device libtorch cannot see, before anything is built on it.
fn check_device(device: Device) -> Result<(), RunError> {
    if let Device::Cuda(i) = device {
        let n = tch::Cuda::device_count();
        if i >= n.max(0) as usize {
            return Err(RunError::RunDir(format!(
                "device cuda:{i}: libtorch sees {n} CUDA device(s)"
            )));
        }
    }
    Ok(())
}

/// Builds the agent the config names and trains it; see the module doc.
pub fn train(opts: TrainOptions) -> Result<TrainSummary, RunError> {
    if opts.passive_openmp {
        passive_openmp();
    }
    let mut cfg = opts.config.clone();
    cfg.validate()?;
    crate::registry::resolve(&mut cfg)?;
    check_device(opts.device)?;
    if let Some(n) = opts.threads {
        if n == 0 {
            return Err(RunError::RunDir(
                "threads = 0: expected at least 1 thread".into(),
            ));
        }
        tch::set_num_threads(n as i32);
    }
    let env = cfg.env.build()?;
    let agent = crate::registry::build(&cfg, &env, opts.device)?;
    train_agent(opts, cfg, env, agent)
}

/// Trains `agent` (built by the caller, e.g. an agent not in the registry) as [`train`]
/// does.
pub fn train_agent(
    opts: TrainOptions,
    cfg: RunConfig,
    env: envs::AnyEnv,
    agent: AnyAgent,
) -> Result<TrainSummary, RunError> {
    let run_dir = opts.dir();
    let runner = Runner::new(cfg, env, agent)?;
    // Everything is checked; from here on a signal stops the run cleanly.
    let _signals = signals::arm()?;
    if opts.resume && !run_dir.is_dir() {
        return Err(crate::checkpoint::CheckpointError::NoCheckpoint {
            dir: run_dir.join(crate::checkpoint::CHECKPOINT_DIR),
        }
        .into());
    }
    let guard = Rc::new(RefCell::new(RunDirGuard::acquire(&run_dir)?));
    if !opts.resume && !opts.overwrite && holds_a_run(&run_dir) {
        return Err(RunError::RunDir(format!(
            "{} already holds a run: continue it with --resume, start over with \
             --overwrite, or pick another name with --set name=...",
            run_dir.display()
        )));
    }
    let steps = runner.config().train.steps;
    if opts.print {
        say!(
            "run {} | env {} | agent {} ({} parameters) | device {:?}, {} threads | {} steps x {} problems",
            run_dir.display(),
            envs::Env::spec(runner.env()).name,
            runner.agent().name(),
            runner.agent().num_parameters(),
            opts.device,
            tch::get_num_threads(),
            steps,
            runner.config().train.batch_size,
        );
    }
    let mut runner = if opts.resume {
        check_writable(&run_dir)?;
        let checkpoints = run_dir.join(crate::checkpoint::CHECKPOINT_DIR);
        if checkpoints.is_dir() {
            check_writable(&checkpoints)?;
        }
        let from = opts
            .resume_from
            .as_ref()
            .map(|c| c.path(&run_dir))
            .transpose()?;
        let r = runner.resume_from(&run_dir, from.as_deref())?;
        if opts.print {
            say!("resumed at step {}", r.step());
            for change in r.resumed_changes() {
                say!("  changed on resume: {change}");
            }
        }
        r
    } else {
        // A fresh run is built aside and swapped in after its first update, so that a
        // start that fails (a bad init run, a full disk) or is interrupted leaves an
        // overwritten run as it was and no stub directory.
        let staging = guard.borrow_mut().stage()?;
        let mut r = runner.with_run_dir(&staging)?;
        let g = Rc::clone(&guard);
        r.set_commit(Box::new(move || g.borrow_mut().commit()));
        r
    };
    runner.set_stop_flag(Arc::clone(&STOP));

    let bar = if opts.progress {
        let bar = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} steps ({per_sec}, eta {eta}) {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(250));
        bar.set_position(runner.step());
        bar
    } else {
        ProgressBar::hidden()
    };
    let quiet_bar = bar.is_hidden();
    let print = opts.print;
    let shown = bar.clone();
    let log_every = runner.config().log.every;
    runner.set_progress(Box::new(move |step, total, loss, acc| {
        let acc = acc.map_or(String::new(), |a| {
            format!(" | eval greedy {:.1}%", 100.0 * a)
        });
        shown.set_position(step);
        shown.set_message(format!("loss {loss:.4}{acc}"));
        if print && quiet_bar && (step % log_every == 0 || step == total) {
            say!("step {step}/{total} loss {loss:.4}{acc}");
        }
    }));
    let summary = runner.train();
    bar.finish_and_clear();
    let checkpoint_step = runner.checkpoint_step();
    let summary = summary.map_err(|e| with_resume_advice(e, &run_dir, checkpoint_step))?;
    let started = !runner.commit_pending();
    let eval_episodes = runner.config().eval.episodes;
    // Close the run's files, then unlock the directory (or undo a run that never started).
    drop(runner);
    drop(guard);
    if opts.print && !started {
        say!(
            "interrupted before the first update: {} was left as it was",
            run_dir.display()
        );
        return Ok(summary);
    }
    if opts.print {
        let verb = if summary.interrupted {
            "interrupted"
        } else if summary.timed_out {
            "stopped at the time limit"
        } else {
            "done"
        };
        say!(
            "{verb}: step {} | {} problems in {:.1} s ({:.0} problems/s)",
            summary.steps,
            summary.examples,
            summary.seconds,
            summary.examples as f64 / summary.seconds.max(1e-9)
        );
        if let Some(report) = &summary.eval {
            say!(
                "accuracy per difficulty ({} fresh problems each, eval seed {}):",
                eval_episodes,
                report.seed
            );
            {
                use std::io::Write as _;
                let _ = write!(std::io::stdout(), "{}", report.table());
            }
        }
        if let Some(path) = &summary.checkpoint {
            say!("checkpoint {}", path.display());
        }
        if summary.interrupted {
            say!(
                "continue with: factorexe train --resume {}",
                run_dir.display()
            );
        }
    }
    Ok(summary)
}

/// A diverged run keeps its last checkpoint: say how to continue from it with a lower
/// learning rate, a change a resume accepts.
fn with_resume_advice(err: RunError, run_dir: &Path, checkpoint: Option<u64>) -> RunError {
    let diverged = matches!(
        &err,
        RunError::Agent(AgentError::Optim(OptimError::NonFiniteGradient { .. }))
    );
    match checkpoint {
        Some(step) if diverged => RunError::Diverged {
            source: Box::new(err),
            advice: format!(
                "the run is kept as of its checkpoint of step {step}; continue from there with \
                 a lower learning rate: factorexe train --resume {} --set optim.lr=<lower>",
                run_dir.display()
            ),
        },
        _ => err,
    }
}
