//! `factorexe train`.

/// Arguments of `factorexe train`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`factorexe train` is not built yet")
}
