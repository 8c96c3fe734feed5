//! FactorExe-rs: very small models that think in chains of tokens, trained by supervision or
//! reinforcement learning and made stronger by search.
//!
//! This facade re-exports the member crates:
//! - [`envs`]: the token MDP (no libtorch);
//! - [`search`]: batched searchers over any env (no libtorch);
//! - [`agents`]: policies, training algorithms, the Runner (libtorch).
//!
//! and gives the whole `factorexe` command line to a user's own binary, with their agents,
//! tasks and searchers registered next to the built-in ones ([`Cli`]):
//!
//! ```no_run
//! // In a user's `src/main.rs`, with `MyAgent: agents::BuildAgent` and
//! // `MyTask: envs::NamedTask`:
//! # type MyAgent = factorexe::agents::algos::CotSupervised;
//! # type MyTask = factorexe::envs::Cycle;
//! fn main() -> anyhow::Result<()> {
//!     factorexe::Cli::default().agent::<MyAgent>().task::<MyTask>().run()
//! }
//! ```

pub use agents;
pub use envs;
pub use search;

mod cli;

/// The `factorexe` command line (`train`, `eval`, `search compare`, `envs`, `bench`,
/// `info`), with a user's agents, tasks and searchers added by one line each: they are then named in
/// configs and logs and usable from every command, like the built-in ones.
#[derive(Debug, Default)]
pub struct Cli {
    errors: Vec<String>,
}

impl Cli {
    /// Adds the agent `A` (`[algo] name = A::NAME`).
    pub fn agent<A: agents::BuildAgent>(mut self) -> Self {
        if let Err(e) = agents::registry::register_agent::<A>() {
            self.errors.push(e.to_string());
        }
        self
    }

    /// Adds the task `T` (`[env] name = T::NAME`, `factorexe envs show T::NAME`).
    pub fn task<T: envs::NamedTask>(mut self) -> Self {
        if let Err(e) = envs::registry::register_task::<T>() {
            self.errors.push(e.to_string());
        }
        self
    }

    /// Adds the searcher `S` (`search compare --algos S::NAME`; expert iteration's
    /// `searcher = "S::NAME"` when it plays one action per search).
    pub fn searcher<S: agents::searchers::BuildSearcher>(mut self) -> Self {
        if let Err(e) = agents::searchers::register_searcher::<S>() {
            self.errors.push(e.to_string());
        }
        self
    }

    /// Parses the process's command line and runs the subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        if !self.errors.is_empty() {
            anyhow::bail!("registering: {}", self.errors.join("; "));
        }
        cli::run()
    }
}
