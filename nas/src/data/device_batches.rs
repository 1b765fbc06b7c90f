//! Batches copied to the training device one batch ahead of their use: while the step on
//! batch `k` runs, batch `k + 1` is already on its way. On a CUDA device the copy starts from
//! page-locked (pinned) host memory without blocking the host, so it overlaps the step's
//! kernels; on the CPU the batch is used where it is.

use super::{Batch, BatchStream, DataError};
use tch::{Device, Kind};

/// The batches of a [`BatchStream`], on `device`, each copied while the previous one is used.
#[derive(Debug)]
pub struct DeviceBatches {
    stream: BatchStream,
    device: Device,
    /// The next batch, its copy already started; `None` before the first call.
    ahead: Option<Option<Result<Batch, DataError>>>,
}

impl DeviceBatches {
    /// The batches of `stream` on `device`; the first copy starts at the first call.
    pub fn new(stream: BatchStream, device: Device) -> Self {
        Self {
            stream,
            device,
            ahead: None,
        }
    }

    /// The next batch on the device (its copy may still be in flight, ordered before any
    /// kernel that reads it), after starting the copy of the one after it; `None` at the
    /// stream's end. An error ends the stream.
    pub fn next_batch(&mut self) -> Option<Result<Batch, DataError>> {
        let current = match self.ahead.take() {
            Some(ahead) => ahead,
            None => self.copy_next(),
        };
        self.ahead = Some(match &current {
            Some(Ok(_)) => self.copy_next(),
            Some(Err(_)) | None => None,
        });
        current
    }

    fn copy_next(&mut self) -> Option<Result<Batch, DataError>> {
        let device = self.device;
        self.stream
            .next_batch()
            .map(|batch| batch.map(|batch| copy_to_device(&batch, device)))
    }
}

/// `batch` on `device`: on CUDA through pinned memory with a non-blocking copy (libtorch keeps
/// the pinned block until the copy is done), elsewhere an ordinary (for the CPU: no) copy.
pub fn copy_to_device(batch: &Batch, device: Device) -> Batch {
    if !device.is_cuda() {
        return batch.to_device(device);
    }
    let copy = |tensor: &tch::Tensor, kind: Kind| {
        tensor
            .pin_memory(device)
            .to_device_(device, kind, true, false)
    };
    Batch {
        images: copy(&batch.images, Kind::Float),
        labels: copy(&batch.labels, Kind::Int64),
        indices: batch.indices.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synth::synthetic_image_set;
    use crate::data::{StreamConfig, StreamId};
    use prime_core::dataset::ImageDataset;
    use std::sync::Arc;

    fn stream() -> BatchStream {
        let set = Arc::new(synthetic_image_set(ImageDataset::Cifar10, 40, 3, 0));
        let config = StreamConfig::per_epoch(5, 1, StreamId::WEIGHTS, 6);
        BatchStream::spawn(set, 3..37, config).unwrap()
    }

    #[test]
    fn the_batches_come_in_the_streams_order_and_end_with_it() {
        tch::set_num_threads(1);
        let expected: Vec<Batch> = stream().map(Result::unwrap).collect();
        assert_eq!(expected.len(), 6, "34 images in batches of 6");
        let mut ahead = DeviceBatches::new(stream(), Device::Cpu);
        for (index, want) in expected.iter().enumerate() {
            let got = ahead.next_batch().unwrap().unwrap();
            assert_eq!(got.indices, want.indices, "batch {index}");
            assert!(got.images.equal(&want.images), "batch {index}");
            assert!(got.labels.equal(&want.labels), "batch {index}");
            assert_eq!(got.images.device(), Device::Cpu);
        }
        assert!(ahead.next_batch().is_none());
        assert!(ahead.next_batch().is_none());
    }

    #[test]
    fn the_cpu_copy_keeps_kinds_and_values() {
        tch::set_num_threads(1);
        let batch = stream().next_batch().unwrap().unwrap();
        let copied = copy_to_device(&batch, Device::Cpu);
        assert_eq!(copied.images.kind(), Kind::Float);
        assert_eq!(copied.labels.kind(), Kind::Int64);
        assert!(copied.images.equal(&batch.images));
        assert_eq!(copied.indices, batch.indices);
    }
}
