//! The `factorexe` command line.

fn main() -> anyhow::Result<()> {
    factorexe::Cli::default().run()
}
