//! `prime fetch TRIAL --out DIR`: a trial's spec, result (with its genotype), metrics and
//! artifacts (the final ones, or else the last checkpoint), verified by sha256.
//!
//! Workers upload archives relative to the trial's run directory (so that a resumed attempt
//! unpacks them where they were), and fetch unpacks them at `DIR` itself: `DIR` looks like
//! the run directory (`DIR/checkpoint/...`, `DIR/final/...` of the simulated trainer;
//! `DIR/checkpoints/...` and the run's records of the prime-nas engine). `spec.json`,
//! `result.json`, `genotype.json` and `metrics.jsonl` come from the coordinator and are
//! written after unpacking: the coordinator's copies are the complete ones across attempts.

use super::{connect, runtime, status_error};
use anyhow::Context;
use clap::Args;
use prime_proto::paging::{all_metrics, all_trials};
use prime_proto::pb;
use std::path::{Path, PathBuf};

/// Bytes per checkpoint read.
const READ_CHUNK: usize = 1 << 20;

/// Arguments of `prime fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The trial id.
    pub trial: u64,
    /// Output directory (created).
    #[arg(long)]
    pub out: PathBuf,
    /// URL of the coordinator.
    #[arg(long, default_value_t = super::default_coordinator(), value_parser = super::url::normalize_url)]
    pub coordinator: String,
}

fn write(path: &Path, contents: impl AsRef<[u8]>) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// Fetches trial `trial_id` into `out`; returns the files and directories it wrote at the top
/// of `out`, sorted.
pub async fn fetch(coordinator: &str, trial_id: u64, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut client = connect(coordinator)?;
    let trials = all_trials(&client, "").await.map_err(status_error)?;
    let trial = trials
        .into_iter()
        .find(|t| t.trial_id == trial_id)
        .with_context(|| format!("no trial {trial_id}"))?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = Vec::new();
    let checkpoints = client
        .trial_checkpoints(pb::TrialRef {
            trial_id,
            ..Default::default()
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .checkpoints;
    let chosen = checkpoints
        .iter()
        .rfind(|c| c.r#final)
        .or_else(|| checkpoints.last());
    if let Some(checkpoint) = chosen {
        let archive = download(&mut client, trial_id, checkpoint).await?;
        prime_proto::archive::unpack(&archive, out)
            .with_context(|| format!("unpacking into {}", out.display()))?;
        let entries = prime_proto::archive::top_level_entries(&archive)
            .with_context(|| format!("listing checkpoint {}", checkpoint.checkpoint_id))?;
        written.extend(entries.into_iter().map(|entry| out.join(entry)));
    }
    // Through a JSON value, as before specs were typed on the wire: the same file.
    let spec = serde_json::to_value(trial.trial_spec()?)?;
    let path = out.join("spec.json");
    write(&path, serde_json::to_vec_pretty(&spec)?)?;
    written.push(path);
    if let Some(result) = trial.trial_result()? {
        let path = out.join("result.json");
        write(&path, serde_json::to_vec_pretty(&result)?)?;
        written.push(path);
        if let Some(genotype) = &result.genotype {
            let path = out.join("genotype.json");
            write(&path, serde_json::to_vec_pretty(genotype)?)?;
            written.push(path);
        }
    }
    let metrics = all_metrics(&client, trial_id).await.map_err(status_error)?;
    let mut lines = String::new();
    for metric in metrics {
        let record = prime_core::metrics::MetricRecord::try_from(metric)?;
        lines.push_str(&serde_json::to_string(&record)?);
        lines.push('\n');
    }
    let path = out.join("metrics.jsonl");
    write(&path, lines)?;
    written.push(path);
    written.sort();
    written.dedup();
    Ok(written)
}

/// Reads checkpoint `checkpoint` of trial `trial_id` whole and verifies its sha256.
async fn download(
    client: &mut prime_proto::client::Client,
    trial_id: u64,
    checkpoint: &pb::CheckpointInfo,
) -> anyhow::Result<Vec<u8>> {
    let mut archive = Vec::with_capacity(checkpoint.size as usize);
    while (archive.len() as u64) < checkpoint.size {
        let data = client
            .read_checkpoint(pb::ReadCheckpointRequest {
                trial_id,
                checkpoint_id: checkpoint.checkpoint_id,
                offset: archive.len() as u64,
                length: READ_CHUNK as u32,
            })
            .await
            .map_err(status_error)?
            .into_inner()
            .data;
        anyhow::ensure!(
            !data.is_empty(),
            "checkpoint {} ended early",
            checkpoint.checkpoint_id
        );
        archive.extend_from_slice(&data);
    }
    anyhow::ensure!(
        prime_proto::archive::sha256_hex(&archive) == checkpoint.sha256,
        "checkpoint {} failed its sha256 check",
        checkpoint.checkpoint_id
    );
    Ok(archive)
}

/// Runs `prime fetch`.
pub fn run(args: FetchArgs) -> anyhow::Result<()> {
    let written = runtime()?.block_on(fetch(&args.coordinator, args.trial, &args.out))?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}
