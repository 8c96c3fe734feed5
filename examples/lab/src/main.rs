//! `lab`: the whole `factorexe` command line (`train`, `eval`, `search compare`, `envs`,
//! `bench`, `info`) with this crate's own task, agent and searcher, each one file plus one
//! line below. Try:
//!
//! ```text
//! cargo run --release -p factorexe-lab-example -- envs check prefix_parity --bits 8
//! cargo run --release -p factorexe-lab-example -- train --config examples/lab/prefix_parity.toml
//! cargo run --release -p factorexe-lab-example -- eval --run runs/prefix_parity
//! cargo run --release -p factorexe-lab-example -- search compare --run runs/prefix_parity \
//!     --algos greedy,lookahead,gumbel --budgets 1,4
//! ```

mod agent;
mod searcher;
mod task;

fn main() -> anyhow::Result<()> {
    factorexe::Cli::default()
        .task::<task::PrefixParity>()
        .agent::<agent::ChainCloner>()
        .searcher::<searcher::ValueLookahead>()
        .run()
}
