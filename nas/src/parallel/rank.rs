//! One rank's part in a data-parallel run, as the tasks of the run driver use it: its rows
//! of every global batch, rank 0's tensors copied to it, its gradients replaced by the
//! global batch's, sums over the ranks, and the driver's decisions agreed on by all ranks.

use super::gradients::{all_reduce_gradients, broadcast_tensors, shard};
use super::{CommError, Communicator};
use std::ops::Range;
use tch::Tensor;

/// The rank that writes the run's files and whose observer decides when to stop.
pub const WRITER_RANK: usize = 0;

/// This rank's rows of a global batch: its images and labels, and where they lie in the batch.
pub struct Shard {
    pub images: Tensor,
    pub labels: Tensor,
    pub rows: Range<usize>,
}

impl Shard {
    /// The rows of `images` and `labels` (a global batch) that `ranks` gives this rank, or all
    /// of them without `ranks`.
    pub fn of(images: &Tensor, labels: &Tensor, ranks: Option<&DataParallel>) -> Shard {
        let batch = labels.size()[0] as usize;
        let rows = ranks.map_or(0..batch, |ranks| ranks.rows(batch));
        let (start, len) = (rows.start as i64, rows.len() as i64);
        Shard {
            images: images.narrow(0, start, len),
            labels: labels.narrow(0, start, len),
            rows,
        }
    }
}

/// One rank of a data-parallel group.
pub struct DataParallel {
    comm: Box<dyn Communicator>,
}

impl std::fmt::Debug for DataParallel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataParallel")
            .field("rank", &self.comm.rank())
            .field("world_size", &self.comm.world_size())
            .finish()
    }
}

impl DataParallel {
    /// The rank that `comm` connects.
    pub fn new(comm: Box<dyn Communicator>) -> Self {
        Self { comm }
    }

    /// This rank, `0..world_size()`.
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }

    /// Ranks in the group.
    pub fn world_size(&self) -> usize {
        self.comm.world_size()
    }

    /// The back-end of the group's collectives (`cpu`, `nccl 2.28.9`).
    pub fn backend(&self) -> String {
        self.comm.backend()
    }

    /// The rows of a global batch of `batch` rows this rank trains on (see [`shard`]).
    pub fn rows(&self, batch: usize) -> Range<usize> {
        shard(batch, self.rank(), self.world_size())
    }

    /// The fewest rows any rank gets of a batch of `batch` rows.
    pub fn fewest_rows(&self, batch: usize) -> usize {
        batch / self.world_size()
    }

    /// Copies rank 0's values of `tensors` into this rank's.
    pub fn broadcast(&mut self, tensors: &[Tensor]) -> Result<(), CommError> {
        broadcast_tensors(self.comm.as_mut(), tensors)
    }

    /// Replaces the gradients of `params`, computed as a mean over this rank's `rows` of a
    /// global batch of `batch` rows, by the gradient of the global batch's mean.
    pub fn reduce_gradients(
        &mut self,
        params: &[Tensor],
        rows: usize,
        batch: usize,
    ) -> Result<(), CommError> {
        let weight = rows as f64 / batch.max(1) as f64;
        all_reduce_gradients(self.comm.as_mut(), params, weight)
    }

    /// Replaces `values` by their sums over the ranks (in rank order, the same on every rank).
    pub fn sum(&mut self, values: &mut [f32]) -> Result<(), CommError> {
        self.comm.all_reduce_sum(values)
    }

    /// Rank 0's `code` on every rank (a decision only rank 0 can take, such as its
    /// observer's request to stop).
    pub fn agree(&mut self, code: u8) -> Result<u8, CommError> {
        let mut buffer = [f32::from(code)];
        self.comm.broadcast(&mut buffer, WRITER_RANK)?;
        Ok(buffer[0] as u8)
    }

    /// Whether this rank writes the run's files.
    pub fn writes(&self) -> bool {
        self.rank() == WRITER_RANK
    }
}
