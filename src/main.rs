//! The `factorexe` command line.

mod cli;

fn main() -> anyhow::Result<()> {
    cli::run()
}
