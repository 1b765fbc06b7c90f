//! `prime search`.
use clap::Args;

/// Arguments of `prime search`.
#[derive(Debug, Args)]
pub struct SearchArgs {}

/// Runs `prime search`.
pub fn run(_args: SearchArgs) -> anyhow::Result<()> {
    anyhow::bail!("prime search: not built yet")
}
