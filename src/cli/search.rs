//! `factorexe search`.

/// Arguments of `factorexe search`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`factorexe search` is not built yet")
}
