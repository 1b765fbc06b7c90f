//! Checkpoint uploads of a trial: resumable checkpoints as the trainer writes them, and the
//! final artifacts once it finished, each chunked, hashed and committed at the coordinator.
//! A checkpoint the coordinator has no room for (its disk is full) is held and sent again
//! before the next one and before the attempt's outcome; a newer resumable checkpoint
//! replaces a held older one, since only the newest is needed to resume.

use super::reporter::{HeldCheckpoint, Reporter, Undelivered, WhenFull};
use crate::transfer::{self, Upload};
use prime_core::observer::Progress;
use std::path::{Path, PathBuf};

impl Reporter<'_> {
    /// Uploads `archive` as the trial's next checkpoint (`is_final`: its final artifacts),
    /// after any held ones. A checkpoint the coordinator has no room for is held; any other
    /// refusal is logged, never retried.
    pub(super) async fn upload(
        &mut self,
        archive: &[u8],
        progress: Progress,
        score: Option<f64>,
        is_final: bool,
    ) {
        self.deliver_held(WhenFull::Hold).await;
        if !self.held.is_empty() {
            self.hold(archive.to_vec(), progress, score, is_final);
            return;
        }
        if let Err(status) = self.send(archive, progress, score, is_final).await {
            tracing::warn!(trial_id = self.trial_id, %status, bytes = archive.len(), "the coordinator has no room for the checkpoint; it is kept and sent again later");
            self.hold(archive.to_vec(), progress, score, is_final);
        }
    }

    /// Keeps a checkpoint for later; a resumable one replaces the held resumable ones.
    fn hold(&mut self, archive: Vec<u8>, progress: Progress, score: Option<f64>, is_final: bool) {
        if !is_final {
            self.held.retain(|held| held.is_final);
        }
        self.held.push(HeldCheckpoint {
            archive,
            progress,
            score,
            is_final,
        });
    }

    /// Sends the held checkpoints, oldest first, until the coordinator again has no room
    /// (`WhenFull::Hold`) or, waiting for room (`WhenFull::Wait`), until the outage limit;
    /// what is still held then is logged as lost.
    pub(super) async fn deliver_held(&mut self, when_full: WhenFull) {
        while !self.held.is_empty() {
            let held = self.held.remove(0);
            let sent = match when_full {
                WhenFull::Hold => {
                    self.send(&held.archive, held.progress, held.score, held.is_final)
                        .await
                }
                WhenFull::Wait => {
                    self.send_waiting(&held.archive, held.progress, held.score, held.is_final)
                        .await;
                    Ok(())
                }
            };
            if sent.is_err() {
                self.held.insert(0, held);
                return;
            }
        }
    }

    /// Uploads one checkpoint, waiting while the coordinator has no room (up to the outage
    /// limit, then the checkpoint is logged as lost).
    async fn send_waiting(
        &mut self,
        archive: &[u8],
        progress: Progress,
        score: Option<f64>,
        is_final: bool,
    ) {
        self.uploads += 1;
        let upload = self.upload_of(archive, progress, score, is_final);
        let committed = self.transfer(&upload, WhenFull::Wait).await;
        self.log_delivery(committed, &upload);
    }

    /// Uploads one checkpoint; the coordinator's answer when it has no room for it (every
    /// other outcome is logged here).
    async fn send(
        &mut self,
        archive: &[u8],
        progress: Progress,
        score: Option<f64>,
        is_final: bool,
    ) -> Result<(), tonic::Status> {
        self.uploads += 1;
        let upload = self.upload_of(archive, progress, score, is_final);
        match self.transfer(&upload, WhenFull::Hold).await {
            Err(Undelivered::Full(status)) => Err(status),
            committed => {
                self.log_delivery(committed, &upload);
                Ok(())
            }
        }
    }

    fn upload_of<'a>(
        &self,
        archive: &'a [u8],
        progress: Progress,
        score: Option<f64>,
        is_final: bool,
    ) -> Upload<'a> {
        Upload {
            trial_id: self.trial_id,
            epoch: self.epoch,
            upload_id: format!("u{}", self.uploads),
            archive,
            progress,
            is_final,
            score,
        }
    }

    async fn transfer(
        &mut self,
        upload: &Upload<'_>,
        when_full: WhenFull,
    ) -> Result<u64, Undelivered> {
        let (chunk_size, corrupt) = (
            self.shared.config.chunk_size,
            self.shared.config.faults.corrupt_chunks.clone(),
        );
        self.call_when_full("checkpoint", when_full, |mut client| {
            let corrupt = corrupt.clone();
            async move { transfer::upload(&mut client, upload, chunk_size, &corrupt).await }
        })
        .await
    }

    fn log_delivery(&self, committed: Result<u64, Undelivered>, upload: &Upload<'_>) {
        match committed {
            Ok(checkpoint_id) => tracing::info!(
                trial_id = self.trial_id,
                checkpoint_id,
                epochs_done = upload.progress.epochs_done,
                bytes = upload.archive.len(),
                "checkpoint committed"
            ),
            Err(Undelivered::Refused(status) | Undelivered::Full(status)) => {
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
