//! `prime fetch TRIAL --out DIR`: a trial's spec, result (with its genotype), metrics and
//! artifacts (the final ones, or else the last checkpoint), verified by sha256. `prime fetch
//! GRID --out DIR` fetches every trial of a grid that has a result, one subdirectory each,
//! and names the trials it skipped.
//!
//! Workers upload archives relative to the trial's run directory (so that a resumed attempt
//! unpacks them where they were), and fetch unpacks them at `DIR` itself: `DIR` looks like
//! the run directory (`DIR/checkpoint/...`, `DIR/final/...` of the simulated trainer;
//! `DIR/checkpoints/...` and the run's records of the prime-nas engine). `spec.json`,
//! `result.json`, `genotype.json` and `metrics.jsonl` come from the coordinator and are
//! written after unpacking: the coordinator's copies are the complete ones across attempts.

use super::retry::trial_or_grid;
use super::{connect, runtime, status_error};
use anyhow::Context;
use clap::Args;
use prime_core::trial::TrialKind;
use prime_proto::paging::{all_metrics, all_trials};
use prime_proto::pb;
use std::path::{Path, PathBuf};

/// Bytes per checkpoint read.
const READ_CHUNK: usize = 1 << 20;

/// Arguments of `prime fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// A trial id, or a grid name (every trial of the grid with a result, one subdirectory
    /// per trial).
    #[arg(value_name = "TRIAL|GRID")]
    pub target: String,
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
    let client = connect(coordinator)?;
    let trials = all_trials(&client, "").await.map_err(status_error)?;
    let trial = trials
        .into_iter()
        .find(|t| t.trial_id == trial_id)
        .with_context(|| format!("no trial {trial_id}"))?;
    fetch_trial(client, &trial, out).await
}

/// The subdirectory of a grid fetch that holds `trial`: its id, kind, method label,
/// dataset and seeds (`7-search-darts-prime-cifar10-seed101`).
fn trial_dir_name(trial: &pb::TrialView) -> anyhow::Result<String> {
    let spec = trial.trial_spec()?;
    let kind = match spec.kind {
        TrialKind::Search => "search",
        TrialKind::Evaluation => "eval",
    };
    let mut name = format!(
        "{}-{kind}-{}-{}-seed{}",
        trial.trial_id, spec.label, spec.dataset, spec.search_seed
    );
    if let Some(eval_seed) = spec.eval_seed {
        name.push_str(&format!("-eval{eval_seed}"));
    }
    Ok(name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect())
}

/// Fetches every trial of `grid` that has a result into its own subdirectory of `out`;
/// returns the subdirectories written and, for each trial skipped, why.
pub async fn fetch_grid(
    coordinator: &str,
    grid: &str,
    out: &Path,
) -> anyhow::Result<(Vec<PathBuf>, Vec<String>)> {
    let client = connect(coordinator)?;
    let trials = all_trials(&client, grid).await.map_err(status_error)?;
    anyhow::ensure!(
        !trials.is_empty(),
        "grid `{grid}` has no trials (or there is no such grid; `prime status` lists them)"
    );
    let mut written = Vec::new();
    let mut skipped = Vec::new();
    for trial in &trials {
        if trial.trial_result()?.is_none() {
            let reason = if trial.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", trial.reason)
            };
            skipped.push(format!(
                "trial {} ({}) is {}{reason}; no result to fetch",
                trial.trial_id,
                trial.trial_spec()?.describe(),
                trial.state
            ));
            continue;
        }
        let dir = out.join(trial_dir_name(trial)?);
        fetch_trial(client.clone(), trial, &dir).await?;
        written.push(dir);
    }
    Ok((written, skipped))
}

/// Fetches `trial` into `out`; returns the files and directories it wrote at the top of
/// `out`, sorted.
async fn fetch_trial(
    mut client: prime_proto::client::Client,
    trial: &pb::TrialView,
    out: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let trial_id = trial.trial_id;
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
    let runtime = runtime()?;
    let written = match trial_or_grid(&args.target) {
        Ok(trial) => runtime.block_on(fetch(&args.coordinator, trial, &args.out))?,
        Err(grid) => {
            let (written, skipped) =
                runtime.block_on(fetch_grid(&args.coordinator, grid, &args.out))?;
            for line in &skipped {
                eprintln!("skipped {line}");
            }
            eprintln!(
                "fetched {} trial(s) of grid `{grid}` into {}; skipped {}",
                written.len(),
                args.out.display(),
                skipped.len()
            );
            written
        }
    };
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}
