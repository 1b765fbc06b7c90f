//! Writing the result files of a run directory: every write either completes or fails with
//! an error naming the file; weights go through a temporary file and a rename, so a crash
//! never leaves half a file.

use crate::checkpoint::{annotate, CheckpointError};
use crate::error::RunError;
use serde::Serialize;
use std::path::Path;
use tch::{Device, Tensor};

/// Writes `text` to `path`.
pub fn write_text(path: &Path, text: &str) -> Result<(), RunError> {
    std::fs::write(path, text).map_err(|error| RunError::Io(annotate(path, error)))
}

/// Writes `value` as pretty JSON to `path`.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), RunError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|error| RunError::Io(annotate(path, std::io::Error::other(error.to_string()))))?;
    write_text(path, &text)
}

/// Writes named tensors as safetensors (on the host) under a temporary name, then renames
/// the file into place.
pub fn write_weights(path: &Path, variables: &[(String, Tensor)]) -> Result<(), RunError> {
    let host: Vec<(String, Tensor)> = variables
        .iter()
        .map(|(name, tensor)| {
            (
                name.clone(),
                tensor.detach().to_device(Device::Cpu).contiguous(),
            )
        })
        .collect();
    let temporary = path.with_extension("safetensors.tmp");
    Tensor::write_safetensors(&host, &temporary).map_err(|source| CheckpointError::Tensor {
        path: temporary.clone(),
        source,
    })?;
    std::fs::rename(&temporary, path).map_err(|error| RunError::Io(annotate(path, error)))
}
