//! Worker configuration.

use crate::hardware::{FixedGpus, GpuSource};
use crate::observer::CheckpointPolicy;
use crate::trainer::Device;
use prime_core::gpu::TorchBuild;
use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

/// Default stall timeout: far longer than any step, validation pass or checkpoint of the
/// paper's runs (minutes at most), far shorter than leaving a GPU idle overnight.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Default shortest time between two progress updates of a slot: a live view at most about
/// a second behind, at most one small message per busy slot per second (a thousand busy
/// workers send the coordinator a few thousand in-memory updates a second, no commits).
pub const DEFAULT_PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Default shutdown grace: how long a worker told to stop (SIGTERM, SIGUSR1) keeps trying to
/// upload its trials' checkpoints and report them preempted before it exits anyway. Slurm's
/// warning signal (`--signal=B:USR1@120`) comes 120 s before the kill and systemd waits 300 s
/// (`TimeoutStopSec`); 60 s leaves the trainer time to reach a step boundary and checkpoint
/// within both.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(60);

/// Faults a test can inject into a worker's traffic.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// While positive, each checkpoint chunk is sent with one byte flipped (then decremented).
    pub corrupt_chunks: Arc<AtomicU32>,
}

/// Everything a worker needs to know.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// URL of the coordinator, for example `http://head:50051` (`https://` for TLS).
    pub coordinator: String,
    /// Token and TLS files presented to the coordinator.
    pub credentials: prime_proto::client::Credentials,
    /// Stable name of this worker (host name by default).
    pub name: String,
    /// One slot per device.
    pub devices: Vec<Device>,
    /// Where run directories live.
    pub work_dir: PathBuf,
    /// When checkpoints are uploaded.
    pub checkpoint: CheckpointPolicy,
    /// Pause between requests for work while nothing is queued.
    pub poll_interval: Duration,
    /// Shortest time between two progress updates of a slot between heartbeats (the live
    /// view's delay); zero sends progress with heartbeats only.
    pub progress_every: Duration,
    /// Size of checkpoint chunks on the wire.
    pub chunk_size: usize,
    /// Metric records per batch.
    pub metric_batch: usize,
    /// Longest time a metric waits before it is sent.
    pub metric_flush: Duration,
    /// How long the coordinator may stay unreachable before a trial's reports are given up
    /// (the coordinator requeues the trial after its lease anyway).
    pub max_outage: Duration,
    /// Time limit of one call to the coordinator.
    pub request_timeout: Duration,
    /// A running trial whose training thread shows no progress for this long is failed as
    /// stalled, and its slot kept out of service until the thread ends; zero disables it.
    pub stall_timeout: Duration,
    /// After a shutdown request, the longest time spent checkpointing and reporting before
    /// the worker exits, even when the coordinator never answers.
    pub shutdown_grace: Duration,
    /// Fault injection (tests).
    pub faults: Faults,
    /// The GPUs reported at registration and in heartbeats.
    pub gpus: Arc<dyn GpuSource>,
    /// The torch build reported at registration.
    pub torch: TorchBuild,
}

impl WorkerConfig {
    /// A configuration with the default tunables.
    pub fn new(coordinator: &str, name: &str, devices: Vec<Device>, work_dir: PathBuf) -> Self {
        WorkerConfig {
            coordinator: coordinator.to_string(),
            credentials: prime_proto::client::Credentials::default(),
            name: name.to_string(),
            devices,
            work_dir,
            checkpoint: CheckpointPolicy {
                every_epochs: 1,
                every: Duration::from_secs(15 * 60),
            },
            poll_interval: Duration::from_secs(2),
            progress_every: DEFAULT_PROGRESS_EVERY,
            chunk_size: 1 << 20,
            metric_batch: 512,
            metric_flush: Duration::from_millis(500),
            max_outage: Duration::from_secs(30 * 60),
            request_timeout: Duration::from_secs(60),
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            faults: Faults::default(),
            gpus: Arc::new(FixedGpus::default()),
            torch: prime_nas::build_info::torch_build(),
        }
    }
}
