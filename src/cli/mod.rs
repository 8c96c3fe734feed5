//! Subcommands of the `factorexe` binary, one module each.

use clap::{Parser, Subcommand};

mod bench;
mod envs;
mod eval;
mod info;
mod search;
mod sweep;
mod train;

/// Small models that think in chains of tokens: train, evaluate and search over token MDPs.
#[derive(Debug, Parser)]
#[command(name = "factorexe", version, about, long_about = None)]
pub struct CliArgs {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train an agent on an env from a TOML config.
    Train(train::Args),
    /// Evaluate a trained run: accuracy per difficulty, probes.
    Eval(eval::Args),
    /// Search over a trained policy and compare searchers at equal budgets.
    Search(search::Args),
    /// Run a study: a sweep spec's runs, locally or on Slurm; its status and report.
    Sweep(sweep::Args),
    /// List, show and check the envs.
    Envs(envs::Args),
    /// Quick throughput measurements of this build on this machine.
    Bench(bench::Args),
    /// Versions, libtorch location, CUDA and threads.
    Info(info::Args),
}

/// Parses the command line and runs the subcommand.
pub fn run() -> anyhow::Result<()> {
    let cli = CliArgs::parse();
    // Keeps freed activation buffers in the process between steps (fewer page faults).
    agents::model::tune_allocator();
    if !matches!(cli.command, Command::Train(_) | Command::Sweep(_)) {
        quiet_on_closed_pipe();
    }
    match cli.command {
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Search(args) => search::run(args),
        Command::Sweep(args) => sweep::run(args),
        Command::Envs(args) => envs::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Info(args) => info::run(args),
    }
}

/// Lets a short command end quietly when the reader of its output goes away
/// (`factorexe envs list | head -1`), as Unix tools do: Rust ignores SIGPIPE, so the next
/// print would panic instead. Training keeps ignoring it: a closed stdout must not end a run
/// (its prints tolerate the closed pipe).
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
