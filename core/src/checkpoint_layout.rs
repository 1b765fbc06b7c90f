//! The layout of a checkpoint on disk, shared by everything that writes or checks one: the
//! prime-nas engine writes it, and the worker (before an upload, after a download) and the
//! coordinator (before a commit) verify uploaded archives against it without libtorch.
//!
//! A checkpoint is a directory of files plus a manifest naming each file with its sha256; a
//! `LATEST` file in the directory above names the newest complete checkpoint by its tag.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Format version written into every manifest.
pub const CHECKPOINT_FORMAT: u32 = 1;
/// Name of the pointer file naming the newest complete checkpoint.
pub const LATEST_FILE: &str = "LATEST";
/// Name of the manifest inside a checkpoint directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The manifest of one checkpoint: every file of its directory with its hex sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// `CHECKPOINT_FORMAT` of the writer.
    pub format: u32,
    /// The checkpoint's tag (its directory name).
    pub tag: String,
    /// File name (relative to the checkpoint directory) to hex sha256.
    pub files: BTreeMap<String, String>,
}
