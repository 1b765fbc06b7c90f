//! Data-parallel training: a `Communicator` connects the ranks of one trial (one thread per
//! device), and `gradients` turns its collectives into the steps of a data-parallel run
//! (rank 0's weights broadcast to every rank, gradients of each rank's shard of the global
//! batch averaged over all ranks before the identical optimizer step).
//!
//! `rank` is what the tasks of the run driver hold: one rank's shard of each global batch,
//! its reductions and the decisions all ranks agree on.
//!
//! Back-ends: `cpu` (threads of one process, a fixed reduction order, so that a run is
//! reproducible bitwise and the whole path is tested on machines without GPUs) and `nccl`
//! (NVIDIA's collectives between the GPUs of one process, on the devices themselves);
//! `backend` chooses between them.

pub mod backend;
pub mod cpu;
pub mod gradients;
#[allow(unsafe_code)]
pub mod nccl;
pub mod rank;
mod watchdog;

use std::time::Duration;
use tch::{Device, Kind, Tensor};

/// Longest wait of a collective for the other ranks by default: far longer than any step of
/// the paper's runs, so only a dead or hung rank reaches it.
pub const DEFAULT_COLLECTIVE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Why a collective failed; the attempt fails as a whole and is retried from its checkpoint.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommError {
    /// Another rank left the group (it panicked or returned an error).
    #[error("rank {rank} of the data-parallel group failed: {reason}")]
    RankFailed {
        /// The rank that left first.
        rank: usize,
        /// What it said, or how it ended.
        reason: String,
    },
    /// The other ranks did not reach the collective in time.
    #[error("a collective waited {waited_s:.1} s for the other ranks (timeout)")]
    Timeout {
        /// How long it waited.
        waited_s: f64,
    },
    /// The back-end itself failed (an NCCL or CUDA error); the group cannot continue.
    #[error("the collectives' back-end failed: {reason}")]
    Backend {
        /// What the back-end reported.
        reason: String,
    },
    /// The ranks passed buffers of different lengths (a bug in the caller).
    #[error("rank {rank} passed {got} values where rank 0 passed {expected}")]
    Mismatch {
        /// The disagreeing rank.
        rank: usize,
        /// Rank 0's length.
        expected: usize,
        /// This rank's length.
        got: usize,
    },
}

/// The collectives a data-parallel trial needs, between `world_size` ranks. Every rank
/// calls the same collectives in the same order; each returns once all ranks have taken
/// part, or fails within the group's timeout.
pub trait Communicator: Send {
    /// This rank, `0..world_size()`.
    fn rank(&self) -> usize;

    /// Ranks in the group.
    fn world_size(&self) -> usize;

    /// The back-end, as a run's manifest records it: `cpu`, `nccl 2.28.9`.
    fn backend(&self) -> String;

    /// Replaces `buffer` on every rank by the element-wise sum over the ranks, summed in
    /// rank order (so every rank holds bitwise the same result).
    fn all_reduce_sum(&mut self, buffer: &mut [f32]) -> Result<(), CommError>;

    /// Replaces `buffer` on every rank by rank `root`'s.
    fn broadcast(&mut self, buffer: &mut [f32], root: usize) -> Result<(), CommError>;

    /// [`Communicator::all_reduce_sum`] of `flat`, a contiguous float32 tensor on this
    /// rank's device, in place. By default its values travel through host memory; a device
    /// back-end reduces them where they are.
    fn all_reduce_sum_tensor(&mut self, flat: &Tensor) -> Result<(), CommError> {
        through_host(flat, |values| self.all_reduce_sum(values))
    }

    /// [`Communicator::broadcast`] of `flat`, as [`Communicator::all_reduce_sum_tensor`].
    fn broadcast_tensor(&mut self, flat: &Tensor, root: usize) -> Result<(), CommError> {
        through_host(flat, |values| self.broadcast(values, root))
    }
}

/// The text a panic was raised with (a rank's, or libtorch's on a CUDA error).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Runs `collective` on a host copy of `flat`'s values and writes the result back into it.
fn through_host(
    flat: &Tensor,
    collective: impl FnOnce(&mut [f32]) -> Result<(), CommError>,
) -> Result<(), CommError> {
    let numel = flat.numel();
    let mut values = vec![0f32; numel];
    flat.to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous()
        .copy_data(&mut values, numel);
    collective(&mut values)?;
    let result = Tensor::from_slice(&values).to_device(flat.device());
    tch::no_grad(|| flat.shallow_clone().copy_(&result));
    Ok(())
}
