//! The coordinator's domain values, in core types: trials as the state machine and the
//! database see them, what an assignment hands a worker, what a status query returns, and
//! what workers report about their slots. The gRPC service converts them to and from wire
//! messages (`edge`); the state layer and the database never see a protobuf type.

use prime_core::observer::Progress;
use prime_core::trial::{TrialId, TrialResult, TrialSpec, TrialState};

/// No progress yet: what a trial starts with, and what an unreadable stored progress reads
/// as.
pub const NO_PROGRESS: Progress = Progress {
    epochs_done: 0,
    epochs_total: 0,
    steps_done: 0,
    steps_total: 0,
};

/// Where a running trial runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Worker name.
    pub worker: String,
    /// Slot indices on that worker: one, or N for a trial on N devices.
    pub slots: Vec<u32>,
}

impl Placement {
    /// The slots as `0` or `0,1`, for log lines and listings.
    pub fn slot_list(&self) -> String {
        let slots: Vec<String> = self.slots.iter().map(u32::to_string).collect();
        slots.join(",")
    }
}

/// A trial as the coordinator sees it: the unit the state machine changes and the database
/// stores, one row each.
#[derive(Debug, Clone)]
pub struct Trial {
    /// Unique, increasing id.
    pub id: TrialId,
    /// The search an evaluation trial was spawned by.
    pub parent_id: Option<TrialId>,
    /// What the trial runs; never changes once stored.
    pub spec: TrialSpec,
    /// Where it stands.
    pub state: TrialState,
    /// Fencing epoch of the latest assignment: reports carrying another epoch are refused.
    pub epoch: u64,
    /// Crashes counted against the retry budget.
    pub failures: u32,
    /// Assignments so far.
    pub attempts: u32,
    /// The slot of the running attempt; `None` unless running.
    pub placement: Option<Placement>,
    /// Where the latest attempt ran (kept after it ends, for status tables).
    pub last_placement: Option<Placement>,
    /// The last progress a heartbeat reported (complete once succeeded).
    pub progress: Progress,
    /// What the trial produced, once it succeeded.
    pub result: Option<TrialResult>,
    /// Why the trial failed or was last interrupted.
    pub reason: String,
    /// Wall time of finished attempts, in milliseconds.
    pub run_ms: u64,
    /// Start of the running attempt (Unix milliseconds), to add its time so far.
    pub attempt_started_unix_ms: Option<u64>,
}

/// A trial handed to a worker slot.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// The trial.
    pub trial_id: TrialId,
    /// The fencing epoch every report about this attempt must carry.
    pub epoch: u64,
    /// What to run.
    pub spec: TrialSpec,
    /// The last committed resumable checkpoint to resume from, if any.
    pub resume: Option<CheckpointRecord>,
    /// The worker's slots it runs on: one, or N for a trial on N devices.
    pub slots: Vec<u32>,
}

/// A trial for status tables and results.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialSummary {
    /// The trial.
    pub id: TrialId,
    /// What it runs.
    pub spec: TrialSpec,
    /// Where it stands.
    pub state: TrialState,
    /// Its last reported progress.
    pub progress: Progress,
    /// Assignments so far.
    pub attempts: u32,
    /// Crashes counted against the retry budget.
    pub failures: u32,
    /// `WORKER/SLOT` of the running attempt, or of the last attempt of a finished trial.
    pub worker: Option<String>,
    /// What it produced, once succeeded.
    pub result: Option<TrialResult>,
    /// Why it failed or was last interrupted.
    pub reason: String,
    /// The search that spawned it (evaluations).
    pub parent_id: Option<TrialId>,
    /// Wall time of all attempts, the running one included, in seconds.
    pub run_seconds: f64,
}

/// A stored, verified checkpoint's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointRecord {
    /// Checkpoint id (increasing).
    pub id: u64,
    /// Owning trial.
    pub trial_id: TrialId,
    /// Archive size in bytes.
    pub size: u64,
    /// Hex sha256 of the archive.
    pub sha256: String,
    /// Where the run stood.
    pub progress: Progress,
    /// Whether it holds the final artifacts rather than a resumable state.
    pub is_final: bool,
    /// Higher is better; the best is retained.
    pub score: Option<f64>,
    /// Key in the checkpoint store.
    pub key: String,
    /// Commit time (Unix milliseconds).
    pub created_unix_ms: u64,
}

/// One training slot of a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSlot {
    /// Slot index, unique per worker.
    pub index: u32,
    /// `cuda:N` or `cpu`; empty for a slot restored from the database before its worker
    /// registered again.
    pub device: String,
}

/// A trial a worker reports as running.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningReport {
    /// The trial.
    pub trial_id: TrialId,
    /// The epoch of the assignment the worker runs.
    pub epoch: u64,
    /// The slots it runs on (one, or N for a trial on N devices).
    pub slots: Vec<u32>,
    /// Where it stands, if the trainer said yet.
    pub progress: Option<Progress>,
}

/// A slot out of service behind a training thread that stopped making progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StalledSlot {
    /// The slot.
    pub slot: u32,
    /// The trial whose attempt stalled.
    pub trial_id: TrialId,
    /// How long the thread has made no progress, as of the report (or the listing).
    pub no_progress_ms: u64,
}

/// The trials on one slot of a worker and their share (1 when unshared or idle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotLoad {
    /// The slot.
    pub slot: u32,
    /// Its trials.
    pub trials: Vec<TrialId>,
    /// The `gpu_share` of its trials.
    pub share: u32,
}

/// A worker for `prime workers`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSummary {
    /// Worker name.
    pub name: String,
    /// Its slots.
    pub slots: Vec<WorkerSlot>,
    /// Whether its lease is current.
    pub alive: bool,
    /// Whether it takes no new trials.
    pub cordoned: bool,
    /// The trials on its slots.
    pub trials: Vec<TrialId>,
    /// What each of its slots holds.
    pub loads: Vec<SlotLoad>,
    /// Time since it was last heard from.
    pub last_seen_ms_ago: u64,
    /// Its stalled slots, their idle time counted up to the listing.
    pub stalled: Vec<StalledSlot>,
    /// Its torch build and GPUs, as last reported.
    pub hardware: prime_core::gpu::WorkerHardware,
}

/// Metadata of an uploaded, verified checkpoint, before it is recorded.
#[derive(Debug, Clone)]
pub struct NewCheckpoint {
    /// Archive size.
    pub size: u64,
    /// Hex sha256 of the archive.
    pub sha256: String,
    /// Where the run stood.
    pub progress: Progress,
    /// Final artifacts rather than a resumable state.
    pub is_final: bool,
    /// Higher is better.
    pub score: Option<f64>,
    /// Key in the checkpoint store.
    pub key: String,
}
