//! Checkpoint uploads of a trial: resumable checkpoints as the trainer writes them, and the
//! final artifacts once it finished, each chunked, hashed and committed at the coordinator.

use super::reporter::{Reporter, Undelivered};
use crate::transfer::{self, Upload};
use prime_core::observer::Progress;
use std::path::{Path, PathBuf};

impl Reporter<'_> {
    /// Uploads `archive` as the trial's next checkpoint (`is_final`: its final artifacts);
    /// a refusal is logged, never retried.
    pub(super) async fn upload(
        &mut self,
        archive: &[u8],
        progress: Progress,
        score: Option<f64>,
        is_final: bool,
    ) {
        self.uploads += 1;
        let upload = Upload {
            trial_id: self.trial_id,
            epoch: self.epoch,
            upload_id: format!("u{}", self.uploads),
            archive,
            progress,
            is_final,
            score,
        };
        let (chunk_size, corrupt) = (
            self.shared.config.chunk_size,
            self.shared.config.faults.corrupt_chunks.clone(),
        );
        let committed = self
            .call("checkpoint", |mut client| {
                let (upload, corrupt) = (&upload, corrupt.clone());
                async move { transfer::upload(&mut client, upload, chunk_size, &corrupt).await }
            })
            .await;
        match committed {
            Ok(checkpoint_id) => tracing::info!(
                trial_id = self.trial_id,
                checkpoint_id,
                epochs_done = progress.epochs_done,
                bytes = archive.len(),
                "checkpoint committed"
            ),
            Err(Undelivered::Refused(status)) => {
                tracing::error!(trial_id = self.trial_id, %status, "checkpoint rejected")
            }
            Err(Undelivered::GivenUp) => {}
        }
    }
}

/// Uploads the final artifacts, packed relative to the run directory like every checkpoint
/// (`prime fetch` unpacks them where the run directory's root was).
pub(super) async fn upload_artifacts(
    reporter: &mut Reporter<'_>,
    run_dir: &Path,
    artifacts: PathBuf,
) {
    let base = run_dir.to_path_buf();
    let packed =
        tokio::task::spawn_blocking(move || prime_proto::archive::pack_dir(&base, &artifacts))
            .await;
    match packed {
        Ok(Ok(archive)) => {
            let progress = reporter.control.progress().unwrap_or(Progress {
                epochs_done: 0,
                epochs_total: 0,
                steps_done: 0,
                steps_total: 0,
            });
            reporter.upload(&archive, progress, None, true).await;
        }
        Ok(Err(error)) => tracing::error!(%error, "cannot pack the final artifacts"),
        Err(error) => tracing::error!(%error, "packing the final artifacts failed"),
    }
}
