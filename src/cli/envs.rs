//! `factorexe envs`.

/// Arguments of `factorexe envs`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`factorexe envs` is not built yet")
}
