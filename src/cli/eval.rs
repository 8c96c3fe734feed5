//! `factorexe eval`.

/// Arguments of `factorexe eval`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`factorexe eval` is not built yet")
}
