//! `prime admin`: operations on the coordinator itself (`backup`).

use super::{connect, runtime, status_error};
use clap::{Args, Subcommand};
use prime_proto::pb;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `prime admin` subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Take a consistent online backup of the coordinator's database into FILE.
    Backup(BackupArgs),
}

/// Arguments of `prime admin backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where the backup is written (atomically: the file appears only once complete and
    /// checked).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// URL of the coordinator.
    #[arg(long, default_value_t = super::default_coordinator())]
    pub coordinator: String,
}

/// Runs `prime admin`.
pub fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Backup(args) => run_backup(args),
    }
}

fn run_backup(args: BackupArgs) -> anyhow::Result<()> {
    let directory = match args.out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut staged = tempfile::Builder::new()
        .prefix(".prime-backup-")
        .tempfile_in(&directory)
        .map_err(|error| {
            anyhow::anyhow!("cannot write a file in {}: {error}", directory.display())
        })?;
    let size = runtime()?.block_on(async {
        let mut client = connect(&args.coordinator)?;
        let mut stream = client
            .backup_database(pb::BackupRequest {})
            .await
            .map_err(status_error)?
            .into_inner();
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        while let Some(chunk) = stream.message().await.map_err(status_error)? {
            staged.write_all(&chunk.data)?;
            hasher.update(&chunk.data);
            received += chunk.data.len() as u64;
            if !chunk.sha256.is_empty() {
                let actual = hex::encode(hasher.finalize());
                anyhow::ensure!(
                    received == chunk.total_size && actual == chunk.sha256,
                    "the backup arrived damaged: {received} bytes with sha256 {actual}, the \
                     coordinator sent {} bytes with sha256 {}; nothing was written",
                    chunk.total_size,
                    chunk.sha256
                );
                return Ok(received);
            }
        }
        anyhow::bail!("the coordinator ended the backup early; nothing was written")
    })?;
    staged.as_file().sync_all()?;
    prime_coordinator::check_database_file(staged.path())
        .map_err(|why| anyhow::anyhow!("the backup does not pass its checks: {why}"))?;
    persist(staged, &args.out)?;
    eprintln!("backup of {size} bytes written to {}", args.out.display());
    Ok(())
}

/// Moves the checked backup to `out`.
fn persist(staged: tempfile::NamedTempFile, out: &Path) -> anyhow::Result<()> {
    staged
        .persist(out)
        .map_err(|error| anyhow::anyhow!("cannot write {}: {}", out.display(), error.error))?;
    Ok(())
}
