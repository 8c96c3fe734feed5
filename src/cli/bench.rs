//! `factorexe bench`.

/// Arguments of `factorexe bench`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`factorexe bench` is not built yet")
}
