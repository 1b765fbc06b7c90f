//! Limits on what one request may carry, checked before any handler runs: names, counts and
//! free text have maximum sizes, so a careless or hostile caller gets `INVALID_ARGUMENT`
//! naming the limit, and nothing stored changes. (Metric batches and their log lines are
//! checked where they are decoded, `prime_proto::convert`.)

use prime_proto::pb;
use tonic::Status;

/// Longest worker name, in bytes.
pub const MAX_WORKER_NAME: usize = 128;
/// Most slots (devices) one worker registers.
pub const MAX_SLOTS: usize = 64;
/// Longest device name of a slot, in bytes.
pub const MAX_DEVICE_NAME: usize = 64;
/// Longest grid or trial-list filter name, in bytes.
pub const MAX_GRID_NAME: usize = 256;
/// Largest grid file, in bytes.
pub const MAX_GRID_BYTES: usize = 1 << 20;
/// Longest failure reason, in bytes.
pub const MAX_REASON: usize = 16 << 10;
/// Largest finished trial's result (genotype, metrics), encoded, in bytes.
pub const MAX_RESULT_BYTES: usize = 1 << 20;
/// Longest upload id, in bytes (letters, digits, `-` and `_`).
pub const MAX_UPLOAD_ID: usize = 64;
/// Largest checkpoint chunk, in bytes.
pub const MAX_CHUNK_BYTES: usize = 4 << 20;

fn too_long(field: &str, length: usize, limit: usize, unit: &str) -> Status {
    Status::invalid_argument(format!(
        "{field} holds {length} {unit}, more than the limit of {limit}; nothing was stored"
    ))
}

/// Checks a text field: at most `limit` bytes and, when `name`, no control characters.
fn text(field: &str, value: &str, limit: usize, name: bool) -> Result<(), Status> {
    if value.len() > limit {
        return Err(too_long(field, value.len(), limit, "bytes"));
    }
    if name && value.chars().any(char::is_control) {
        return Err(Status::invalid_argument(format!(
            "{field} holds control characters (terminal escapes, newlines); nothing was stored"
        )));
    }
    Ok(())
}

fn count(field: &str, length: usize, limit: usize) -> Result<(), Status> {
    if length > limit {
        return Err(too_long(field, length, limit, "entries"));
    }
    Ok(())
}

fn slots(slots: &[pb::Slot]) -> Result<(), Status> {
    count("slots", slots.len(), MAX_SLOTS)?;
    slots
        .iter()
        .try_for_each(|slot| text("slot device", &slot.device, MAX_DEVICE_NAME, true))
}

/// Checks a registration.
pub fn register(request: &pb::RegisterWorkerRequest) -> Result<(), Status> {
    text("worker name", &request.name, MAX_WORKER_NAME, true)?;
    text(
        "torch variant",
        &request.torch_variant,
        MAX_DEVICE_NAME,
        true,
    )?;
    text(
        "torch version",
        &request.torch_version,
        MAX_DEVICE_NAME,
        true,
    )?;
    slots(&request.slots)?;
    count("running trials", request.running.len(), MAX_SLOTS)?;
    count("stalled slots", request.stalled.len(), MAX_SLOTS)
}

/// Checks a heartbeat.
pub fn heartbeat(request: &pb::HeartbeatRequest) -> Result<(), Status> {
    text("worker name", &request.name, MAX_WORKER_NAME, true)?;
    count("running trials", request.running.len(), MAX_SLOTS)?;
    count("stalled slots", request.stalled.len(), MAX_SLOTS)
}

/// Checks a worker name given alone (trial requests, worker modes).
pub fn worker_name(name: &str) -> Result<(), Status> {
    text("worker name", name, MAX_WORKER_NAME, true)
}

/// Checks a worker-mode request.
pub fn worker_mode(request: &pb::SetWorkerModeRequest) -> Result<(), Status> {
    text("worker name", &request.name, MAX_WORKER_NAME, true)?;
    text("worker mode", &request.mode, 16, true)
}

/// Checks a grid name given alone (listings, cancellation).
pub fn grid_name(name: &str) -> Result<(), Status> {
    text("grid name", name, MAX_GRID_NAME, true)
}

/// Checks a submission.
pub fn submission(request: &pb::SubmitGridRequest) -> Result<(), Status> {
    text("grid file name", &request.file_name, MAX_GRID_NAME, true)?;
    if request.toml.len() > MAX_GRID_BYTES {
        return Err(too_long(
            "the grid file",
            request.toml.len(),
            MAX_GRID_BYTES,
            "bytes",
        ));
    }
    Ok(())
}

fn upload_id(id: &str) -> Result<(), Status> {
    text("upload id", id, MAX_UPLOAD_ID, true)?;
    if id.is_empty()
        || !id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_'))
    {
        return Err(Status::invalid_argument(
            "upload id must be 1 to 64 letters, digits, `-` or `_`; nothing was stored",
        ));
    }
    Ok(())
}

/// Checks a checkpoint chunk.
pub fn chunk(request: &pb::CheckpointChunk) -> Result<(), Status> {
    upload_id(&request.upload_id)?;
    if request.data.len() > MAX_CHUNK_BYTES {
        return Err(too_long(
            "checkpoint chunk",
            request.data.len(),
            MAX_CHUNK_BYTES,
            "bytes",
        ));
    }
    Ok(())
}

/// Checks a commit.
pub fn commit(request: &pb::CommitCheckpointRequest) -> Result<(), Status> {
    upload_id(&request.upload_id)
}

/// Checks a finish report.
pub fn finish(request: &pb::FinishTrialRequest) -> Result<(), Status> {
    use pb::finish_trial_request::Outcome;
    match &request.outcome {
        Some(Outcome::Failed(failure)) => {
            text("failure reason", &failure.reason, MAX_REASON, false)
        }
        Some(Outcome::Succeeded(result)) => {
            let size = prost::Message::encoded_len(result);
            if size > MAX_RESULT_BYTES {
                return Err(too_long(
                    "the trial result",
                    size,
                    MAX_RESULT_BYTES,
                    "bytes",
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_escapes_or_over_the_limit_are_refused_naming_the_limit() {
        let mut request = pb::RegisterWorkerRequest {
            name: "w\u{1b}[2J".into(),
            ..Default::default()
        };
        let status = register(&request).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("control characters"));
        request.name = "w".repeat(MAX_WORKER_NAME + 1);
        let status = register(&request).unwrap_err();
        assert!(status.message().contains("limit of 128"), "{status:?}");
        request.name = "w".into();
        request.slots = vec![pb::Slot::default(); MAX_SLOTS + 1];
        assert!(register(&request)
            .unwrap_err()
            .message()
            .contains("slots holds 65 entries"));
        request.slots.truncate(MAX_SLOTS);
        assert!(register(&request).is_ok());
    }

    #[test]
    fn a_large_grid_is_refused_with_its_size_and_the_limit() {
        let request = pb::SubmitGridRequest {
            file_name: "big.toml".into(),
            toml: "#".repeat(MAX_GRID_BYTES + 1),
            extend: false,
        };
        let status = submission(&request).unwrap_err();
        assert!(
            status.message().contains("1048577 bytes") && status.message().contains("1048576"),
            "{status:?}"
        );
    }

    #[test]
    fn upload_ids_are_plain_names() {
        for bad in ["", "../x", "a/b", "a b"] {
            let chunk_request = pb::CheckpointChunk {
                upload_id: bad.into(),
                ..Default::default()
            };
            assert_eq!(
                chunk(&chunk_request).unwrap_err().code(),
                tonic::Code::InvalidArgument,
                "{bad:?}"
            );
        }
        let good = pb::CheckpointChunk {
            upload_id: "u-1_A".into(),
            ..Default::default()
        };
        assert!(chunk(&good).is_ok());
    }
}
