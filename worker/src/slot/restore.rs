//! Restoring a trial's run directory before an attempt: the latest committed checkpoint, or,
//! when that one cannot be downloaded, verified or unpacked, the newest earlier one that can,
//! else a fresh start.
//!
//! An unusable checkpoint is said loudly (in the worker's log and the trial's log at the
//! coordinator) but costs no retry: failing the attempt would only make every retry fail on
//! the same checkpoint until the trial's budget is spent.

use super::reporter::{Reporter, Undelivered};
use crate::transfer;
use prime_proto::pb;
use prime_proto::verify::{verify_checkpoint_archive, Expect};
use std::path::Path;
use tonic::{Code, Status};

/// The checkpoint an attempt resumes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Restored {
    /// Its id at the coordinator.
    pub checkpoint_id: u64,
    /// Epochs it had completed.
    pub epochs_done: u32,
}

/// Why one checkpoint could not be restored.
enum Unusable {
    /// Its bytes cannot serve (corrupt, missing, not a checkpoint): try an earlier one.
    Unreadable(String),
    /// The coordinator cannot be reached, or the assignment is no longer ours: stop trying.
    Unreachable,
}

/// Whether a refused download means the checkpoint is unusable (the coordinator answered):
/// its stored bytes are corrupt (`DataLoss`), it is no longer retained (`InvalidArgument`), or
/// the store cannot read it (`Internal`).
fn unusable_download(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::DataLoss | Code::InvalidArgument | Code::Internal
    )
}

/// The resumable checkpoints older than checkpoint `failed`, newest first.
fn fallbacks(checkpoints: &[pb::CheckpointInfo], failed: u64) -> Vec<&pb::CheckpointInfo> {
    let mut older: Vec<&pb::CheckpointInfo> = checkpoints
        .iter()
        .filter(|checkpoint| !checkpoint.r#final && checkpoint.checkpoint_id < failed)
        .collect();
    older.sort_by_key(|checkpoint| std::cmp::Reverse(checkpoint.checkpoint_id));
    older
}

fn restored(info: &pb::CheckpointInfo) -> Restored {
    Restored {
        checkpoint_id: info.checkpoint_id,
        epochs_done: info
            .progress
            .as_ref()
            .map_or(0, |progress| progress.epochs_done),
    }
}

/// Empties (creates) the run directory.
async fn clear(run_dir: &Path) -> Result<(), String> {
    let dir = run_dir.to_path_buf();
    let cleared = tokio::task::spawn_blocking(move || {
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)
    })
    .await;
    match cleared {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(format!("cannot prepare {}: {error}", run_dir.display())),
        Err(error) => Err(format!("cannot prepare {}: {error}", run_dir.display())),
    }
}

/// Downloads checkpoint `info`, verifies it and unpacks it into the (empty) run directory.
async fn unpack_checkpoint(
    reporter: &mut Reporter<'_>,
    run_dir: &Path,
    info: &pb::CheckpointInfo,
) -> Result<(), Unusable> {
    let (trial_id, chunk_size) = (reporter.trial_id, reporter.shared.config.chunk_size);
    let downloaded = reporter
        .call("download", |mut client| {
            let info = info.clone();
            async move {
                match transfer::download(&mut client, trial_id, &info, chunk_size).await {
                    Ok(archive) => Ok(Ok(archive)),
                    Err(status) if unusable_download(&status) => {
                        Ok(Err(status.message().to_string()))
                    }
                    Err(status) => Err(status),
                }
            }
        })
        .await;
    let archive = match downloaded {
        Err(Undelivered::GivenUp) => return Err(Unusable::Unreachable),
        Err(Undelivered::Refused(status) | Undelivered::Full(status)) => {
            return Err(Unusable::Unreadable(status.message().to_string()))
        }
        Ok(Err(reason)) => return Err(Unusable::Unreadable(reason)),
        Ok(Ok(archive)) => archive,
    };
    let dir = run_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        verify_checkpoint_archive(&archive[..], Expect::Resumable)
            .map_err(|error| error.to_string())?;
        prime_proto::archive::unpack(&archive, &dir)
            .map_err(|error| format!("cannot unpack: {error}"))
    })
    .await
    .map_err(|error| Unusable::Unreadable(error.to_string()))?
    .map_err(Unusable::Unreadable)
}

/// Notes loudly that checkpoint `checkpoint_id` cannot be restored.
fn announce_unusable(reporter: &mut Reporter<'_>, checkpoint_id: u64, reason: &str) {
    tracing::error!(
        trial_id = reporter.trial_id,
        checkpoint_id,
        reason,
        "checkpoint cannot be restored; falling back to an earlier one"
    );
    reporter.logs.push(format!(
        "epoch {}: checkpoint {checkpoint_id} cannot be restored ({reason}); falling back to an \
         earlier checkpoint",
        reporter.epoch
    ));
}

/// Empties the run directory and unpacks the checkpoint to resume from: `resume`, or the
/// newest earlier one that works; `None` for a fresh start. `Err` when the coordinator cannot
/// be reached or the assignment was fenced.
pub(super) async fn restore(
    reporter: &mut Reporter<'_>,
    run_dir: &Path,
    resume: Option<&pb::CheckpointInfo>,
) -> Result<Option<Restored>, String> {
    clear(run_dir).await?;
    let Some(latest) = resume else {
        return Ok(None);
    };
    let unreachable =
        |info: &pb::CheckpointInfo| format!("cannot download checkpoint {}", info.checkpoint_id);
    match unpack_checkpoint(reporter, run_dir, latest).await {
        Ok(()) => return Ok(Some(restored(latest))),
        Err(Unusable::Unreachable) => return Err(unreachable(latest)),
        Err(Unusable::Unreadable(reason)) => {
            announce_unusable(reporter, latest.checkpoint_id, &reason)
        }
    }
    let trial_id = reporter.trial_id;
    let retained = reporter
        .call("list checkpoints", |mut client| async move {
            client
                .trial_checkpoints(pb::TrialRef {
                    trial_id,
                    ..Default::default()
                })
                .await
        })
        .await
        .map_err(|_| format!("cannot list the checkpoints of trial {trial_id}"))?
        .into_inner()
        .checkpoints;
    for info in fallbacks(&retained, latest.checkpoint_id) {
        clear(run_dir).await?;
        match unpack_checkpoint(reporter, run_dir, info).await {
            Ok(()) => return Ok(Some(restored(info))),
            Err(Unusable::Unreachable) => return Err(unreachable(info)),
            Err(Unusable::Unreadable(reason)) => {
                announce_unusable(reporter, info.checkpoint_id, &reason)
            }
        }
    }
    clear(run_dir).await?;
    let lost = restored(latest).epochs_done;
    tracing::error!(
        trial_id,
        epochs_lost = lost,
        "no committed checkpoint can be restored; starting the trial afresh"
    );
    reporter.logs.push(format!(
        "epoch {}: no committed checkpoint can be restored; starting afresh ({lost} epochs \
         done before are lost)",
        reporter.epoch
    ));
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(checkpoint_id: u64, is_final: bool) -> pb::CheckpointInfo {
        pb::CheckpointInfo {
            checkpoint_id,
            r#final: is_final,
            ..pb::CheckpointInfo::default()
        }
    }

    #[test]
    fn falls_back_to_older_resumable_checkpoints_newest_first() {
        let retained = [
            checkpoint(2, false),
            checkpoint(7, false),
            checkpoint(5, false),
            checkpoint(8, true),
            checkpoint(9, false),
        ];
        let ids: Vec<u64> = fallbacks(&retained, 9)
            .iter()
            .map(|c| c.checkpoint_id)
            .collect();
        assert_eq!(ids, [7, 5, 2]);
        assert!(fallbacks(&retained, 2).is_empty());
    }

    #[test]
    fn only_answers_about_the_bytes_count_as_unusable_checkpoints() {
        assert!(unusable_download(&Status::data_loss("sha256")));
        assert!(unusable_download(&Status::invalid_argument("not retained")));
        assert!(unusable_download(&Status::internal("store")));
        assert!(!unusable_download(&Status::unavailable("down")));
        assert!(!unusable_download(&Status::failed_precondition("fenced")));
        assert!(!unusable_download(&Status::not_found("no trial")));
    }
}
