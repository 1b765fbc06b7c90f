//! Checkpoint transfer: chunked upload with a sha256 per chunk and per archive (a refused
//! chunk is sent again), and verified download for resuming.

use prime_core::observer::Progress;
use prime_core::trial::TrialId;
use prime_proto::archive::sha256_hex;
use prime_proto::client::Client;
use prime_proto::pb;
use std::sync::atomic::{AtomicU32, Ordering};
use tonic::{Code, Status};

/// How often one chunk, or one whole archive, is sent again after an integrity refusal.
const INTEGRITY_RETRIES: u32 = 4;

/// One checkpoint to upload.
#[derive(Debug)]
pub struct Upload<'a> {
    /// The trial.
    pub trial_id: TrialId,
    /// The assignment's fencing epoch.
    pub epoch: u64,
    /// Unique per upload of this trial and epoch.
    pub upload_id: String,
    /// The tar archive.
    pub archive: &'a [u8],
    /// Where the run stood.
    pub progress: Progress,
    /// Final artifacts rather than a resumable state.
    pub is_final: bool,
    /// Higher is better.
    pub score: Option<f64>,
}

/// Uploads `upload` in chunks of `chunk_size` bytes and commits it; returns the checkpoint id.
///
/// `corrupt_chunks` is fault injection for tests: while positive, each chunk is sent with one
/// byte flipped (and the counter decremented), which the coordinator must refuse.
pub async fn upload(
    client: &mut Client,
    upload: &Upload<'_>,
    chunk_size: usize,
    corrupt_chunks: &AtomicU32,
) -> Result<u64, Status> {
    let sha256 = sha256_hex(upload.archive);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let upload_id = format!("{}-{attempt}", upload.upload_id);
        for (index, chunk) in upload.archive.chunks(chunk_size.max(1)).enumerate() {
            let offset = (index * chunk_size) as u64;
            send_chunk(client, upload, &upload_id, offset, chunk, corrupt_chunks).await?;
        }
        let commit = pb::CommitCheckpointRequest {
            trial_id: upload.trial_id,
            epoch: upload.epoch,
            upload_id,
            size: upload.archive.len() as u64,
            sha256: sha256.clone(),
            progress: Some((&upload.progress).into()),
            r#final: upload.is_final,
            score: upload.score,
        };
        match client.commit_checkpoint(commit).await {
            Ok(reply) => return Ok(reply.into_inner().checkpoint_id),
            Err(status) if status.code() == Code::DataLoss && attempt < INTEGRITY_RETRIES => {
                tracing::warn!(trial_id = upload.trial_id, %status, "archive refused; uploading again");
            }
            Err(status) => return Err(status),
        }
    }
}

async fn send_chunk(
    client: &mut Client,
    upload: &Upload<'_>,
    upload_id: &str,
    offset: u64,
    chunk: &[u8],
    corrupt_chunks: &AtomicU32,
) -> Result<(), Status> {
    let mut refusals = 0;
    loop {
        let mut data = chunk.to_vec();
        let corrupt = corrupt_chunks
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if corrupt && !data.is_empty() {
            data[0] ^= 0xff;
        }
        let request = pb::CheckpointChunk {
            trial_id: upload.trial_id,
            epoch: upload.epoch,
            upload_id: upload_id.to_string(),
            offset,
            data,
            sha256: sha256_hex(chunk),
        };
        match client.put_checkpoint_chunk(request).await {
            Ok(_) => return Ok(()),
            Err(status) if status.code() == Code::DataLoss && refusals < INTEGRITY_RETRIES => {
                refusals += 1;
                tracing::warn!(trial_id = upload.trial_id, offset, %status, "chunk refused; sending it again");
            }
            Err(status) => return Err(status),
        }
    }
}

/// Downloads checkpoint `info` of a trial and verifies its size and sha256.
pub async fn download(
    client: &mut Client,
    trial_id: TrialId,
    info: &pb::CheckpointInfo,
    chunk_size: usize,
) -> Result<Vec<u8>, Status> {
    let mut archive = Vec::with_capacity(info.size as usize);
    while (archive.len() as u64) < info.size {
        let request = pb::ReadCheckpointRequest {
            trial_id,
            checkpoint_id: info.checkpoint_id,
            offset: archive.len() as u64,
            length: chunk_size as u32,
        };
        let data = client.read_checkpoint(request).await?.into_inner().data;
        if data.is_empty() {
            break;
        }
        archive.extend_from_slice(&data);
    }
    let actual = sha256_hex(&archive);
    if archive.len() as u64 != info.size || actual != info.sha256 {
        return Err(Status::data_loss(format!(
            "checkpoint {} of trial {trial_id}: got {} bytes with sha256 {actual}, expected {} \
             bytes with sha256 {}",
            info.checkpoint_id,
            archive.len(),
            info.size,
            info.sha256
        )));
    }
    Ok(archive)
}
