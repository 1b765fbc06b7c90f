//! The steps of a data-parallel run over a `Communicator`: which rows of the global batch a
//! rank trains on, rank 0's weights copied to every rank, and each rank's gradients replaced
//! by the gradient of the global batch. Tensors travel in flattened buckets of at most
//! `BUCKET_VALUES` values (one collective per bucket, not per tensor).

use super::{CommError, Communicator};
use std::ops::Range;
use tch::{Kind, Tensor};

/// Values per collective: 4 Mi floats (16 MiB), the order of PyTorch DDP's 25 MB buckets;
/// the DARTS networks (a few million weights) travel in one or two.
pub const BUCKET_VALUES: usize = 1 << 22;

/// The rows of a global batch of `batch` rows that rank `rank` of `world` trains on:
/// contiguous, in rank order, sizes differing by at most one, so that the ranks together see
/// exactly the rows, in the order, that a single-device run sees.
pub fn shard(batch: usize, rank: usize, world: usize) -> Range<usize> {
    let world = world.max(1);
    let (base, extra) = (batch / world, batch % world);
    let start = rank * base + rank.min(extra);
    let len = base + usize::from(rank < extra);
    start.min(batch)..(start + len).min(batch)
}

/// Copies rank 0's values of `tensors` into every rank's `tensors` (the initial weights, so
/// that every rank starts where rank 0 does).
pub fn broadcast_tensors(comm: &mut dyn Communicator, tensors: &[Tensor]) -> Result<(), CommError> {
    for bucket in buckets(tensors) {
        let flat = flatten(bucket);
        comm.broadcast_tensor(&flat, 0)?;
        unflatten(&flat, bucket);
    }
    Ok(())
}

/// Replaces the gradient of each of `params` by the sum over the ranks of `weight` times
/// the rank's gradient. With `weight` = (rows of this rank's shard) / (rows of the global
/// batch) and a loss that is a mean over the rows, the result is the gradient of the global
/// batch's mean loss, the same on every rank, so every rank takes the same optimizer step.
/// A parameter without a gradient on this rank counts as a zero gradient.
pub fn all_reduce_gradients(
    comm: &mut dyn Communicator,
    params: &[Tensor],
    weight: f64,
) -> Result<(), CommError> {
    let grads: Vec<Tensor> = params
        .iter()
        .map(|param| {
            if !param.grad().defined() {
                // tch cannot assign a gradient: a zero-valued backward pass defines it.
                tch::with_grad(|| (param.sum(param.kind()) * 0.0).backward());
            }
            param.grad()
        })
        .collect();
    for bucket in buckets(&grads) {
        let flat = flatten(bucket);
        // In float32, as the reduction: the weight rounds to a float first.
        let mut scaled = flat.shallow_clone();
        scaled *= f64::from(weight as f32);
        comm.all_reduce_sum_tensor(&flat)?;
        unflatten(&flat, bucket);
    }
    Ok(())
}

/// Consecutive runs of `tensors` of at most `BUCKET_VALUES` values (a larger tensor alone).
fn buckets(tensors: &[Tensor]) -> Vec<&[Tensor]> {
    let mut buckets = Vec::new();
    let (mut start, mut values) = (0, 0);
    for (index, tensor) in tensors.iter().enumerate() {
        let numel = tensor.numel();
        if index > start && values + numel > BUCKET_VALUES {
            buckets.push(&tensors[start..index]);
            (start, values) = (index, 0);
        }
        values += numel;
    }
    if start < tensors.len() {
        buckets.push(&tensors[start..]);
    }
    buckets
}

/// The values of `tensors`, concatenated into one contiguous float32 tensor on their device
/// (a fresh tensor: the collectives work on it in place).
fn flatten(tensors: &[Tensor]) -> Tensor {
    let views: Vec<Tensor> = tensors
        .iter()
        .map(|tensor| tensor.detach().to_kind(Kind::Float).reshape([-1]))
        .collect();
    Tensor::cat(&views, 0).contiguous()
}

/// Writes the values of `flat` back into `tensors` in place (their devices and kinds kept).
fn unflatten(flat: &Tensor, tensors: &[Tensor]) {
    let mut offset = 0;
    tch::no_grad(|| {
        for tensor in tensors {
            let numel = tensor.numel() as i64;
            let part = flat
                .narrow(0, offset, numel)
                .reshape(tensor.size())
                .to_device(tensor.device())
                .to_kind(tensor.kind());
            tensor.shallow_clone().copy_(&part);
            offset += numel;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::cpu::CpuCommunicator;
    use std::time::Duration;
    use tch::Device;

    const GLOBAL_BATCH: usize = 8;
    const STEPS: usize = 5;
    const LR: f64 = 0.1;

    /// Values that depend only on `seed` and their index: no global generator is touched,
    /// so rank threads and tests running beside each other cannot disturb each other.
    fn fixed_values(shape: &[i64], seed: f64) -> Tensor {
        let numel: i64 = shape.iter().product();
        (Tensor::arange(numel, (Kind::Float, Device::Cpu)) * 0.731 + seed)
            .sin()
            .reshape(shape)
    }

    /// A linear model (no batch-dependent layer) with weights from `seed`.
    fn model(seed: i64) -> Vec<Tensor> {
        vec![
            fixed_values(&[3, 2], seed as f64).set_requires_grad(true),
            fixed_values(&[2], seed as f64 + 0.5).set_requires_grad(true),
        ]
    }

    fn data() -> (Tensor, Tensor) {
        (
            fixed_values(&[GLOBAL_BATCH as i64, 3], 7.0) * 1.5,
            fixed_values(&[GLOBAL_BATCH as i64, 2], 11.0),
        )
    }

    /// Mean squared error of a linear model (no batch-dependent layer) on `rows`.
    fn linear_loss(params: &[Tensor], rows: Range<usize>) -> Tensor {
        let (x, y) = data();
        let (start, len) = (rows.start as i64, rows.len() as i64);
        let prediction = x.narrow(0, start, len).matmul(&params[0]) + &params[1];
        (prediction - y.narrow(0, start, len))
            .square()
            .mean(Kind::Float)
    }

    /// The linear model followed by BatchNorm in training mode: normalised with the mean
    /// and variance of the rows it is given.
    fn batch_norm_loss(params: &[Tensor], rows: Range<usize>) -> Tensor {
        let (x, y) = data();
        let (start, len) = (rows.start as i64, rows.len() as i64);
        let hidden = x.narrow(0, start, len).matmul(&params[0]);
        let normalised = hidden.batch_norm(
            Some(&params[1]),
            None::<&Tensor>,
            None::<&Tensor>,
            None::<&Tensor>,
            true,
            0.1,
            1e-5,
            false,
        );
        (normalised - y.narrow(0, start, len))
            .square()
            .mean(Kind::Float)
    }

    fn sgd(params: &[Tensor]) {
        tch::no_grad(|| {
            for param in params {
                let mut param = param.shallow_clone();
                let update = param.grad() * LR;
                let _ = param.f_sub_(&update).unwrap();
                let _ = param.grad().zero_();
            }
        });
    }

    fn values(params: &[Tensor]) -> Vec<f32> {
        Vec::<f32>::try_from(flatten(params)).unwrap()
    }

    /// The weights after `STEPS` data-parallel steps of two ranks with `loss`: every rank
    /// starts from its own weights and takes rank 0's.
    fn two_ranks(loss: fn(&[Tensor], Range<usize>) -> Tensor) -> Vec<Vec<f32>> {
        two_ranks_over(loss, |comm| Box::new(comm))
    }

    /// [`two_ranks`] with each rank's CPU communicator wrapped by `back_end`.
    fn two_ranks_over(
        loss: fn(&[Tensor], Range<usize>) -> Tensor,
        back_end: fn(CpuCommunicator) -> Box<dyn Communicator>,
    ) -> Vec<Vec<f32>> {
        tch::set_num_threads(1);
        let threads: Vec<_> = CpuCommunicator::group(2, Duration::from_secs(60))
            .into_iter()
            .map(|comm| {
                std::thread::spawn(move || {
                    let mut comm = back_end(comm);
                    let rank = comm.rank();
                    let params = model(1 + rank as i64 * 100);
                    broadcast_tensors(comm.as_mut(), &params).unwrap();
                    let rows = shard(GLOBAL_BATCH, rank, 2);
                    let weight = rows.len() as f64 / GLOBAL_BATCH as f64;
                    for _ in 0..STEPS {
                        loss(&params, rows.clone()).backward();
                        all_reduce_gradients(comm.as_mut(), &params, weight).unwrap();
                        sgd(&params);
                    }
                    values(&params)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    }

    /// A communicator that works only on tensors, in place, as a device back-end (NCCL)
    /// does: it refuses host slices, and tensors that are not one contiguous float32
    /// buffer, then reduces through the CPU back-end and writes the result into the tensor.
    struct InPlaceOnly(CpuCommunicator);

    impl InPlaceOnly {
        fn exchange(
            &mut self,
            flat: &Tensor,
            collective: impl FnOnce(&mut CpuCommunicator, &mut [f32]) -> Result<(), CommError>,
        ) -> Result<(), CommError> {
            assert_eq!(flat.kind(), Kind::Float, "a float32 buffer");
            assert!(flat.is_contiguous(), "one contiguous buffer");
            assert_eq!(flat.dim(), 1, "flattened");
            let mut values = Vec::<f32>::try_from(flat).unwrap();
            collective(&mut self.0, &mut values)?;
            let before = flat.data_ptr();
            tch::no_grad(|| flat.shallow_clone().copy_(&Tensor::from_slice(&values)));
            assert_eq!(flat.data_ptr(), before, "written in place");
            Ok(())
        }
    }

    impl Communicator for InPlaceOnly {
        fn rank(&self) -> usize {
            self.0.rank()
        }
        fn world_size(&self) -> usize {
            self.0.world_size()
        }
        fn backend(&self) -> String {
            "in place".into()
        }
        fn all_reduce_sum(&mut self, _: &mut [f32]) -> Result<(), CommError> {
            panic!("the gradient steps reduce tensors, not host slices")
        }
        fn broadcast(&mut self, _: &mut [f32], _: usize) -> Result<(), CommError> {
            panic!("the gradient steps broadcast tensors, not host slices")
        }
        fn all_reduce_sum_tensor(&mut self, flat: &Tensor) -> Result<(), CommError> {
            self.exchange(flat, |comm, values| comm.all_reduce_sum(values))
        }
        fn broadcast_tensor(&mut self, flat: &Tensor, root: usize) -> Result<(), CommError> {
            self.exchange(flat, |comm, values| comm.broadcast(values, root))
        }
    }

    /// What a device back-end relies on: the weights and gradients reach it as one
    /// contiguous float32 tensor per bucket, and what it writes in place is what the ranks
    /// step with, bitwise as through the host.
    #[test]
    fn a_back_end_that_reduces_in_place_steps_as_the_host_path() {
        let in_place = two_ranks_over(linear_loss, |comm| Box::new(InPlaceOnly(comm)));
        assert_eq!(in_place, two_ranks(linear_loss));
    }

    fn assert_close(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len());
        for (got, want) in got.iter().zip(want) {
            assert!(
                (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{got} vs {want}"
            );
        }
    }

    #[test]
    fn shards_cover_the_global_batch_in_order() {
        assert_eq!(shard(8, 0, 2), 0..4);
        assert_eq!(shard(8, 1, 2), 4..8);
        let shards: Vec<_> = (0..3).map(|rank| shard(10, rank, 3)).collect();
        assert_eq!(shards, vec![0..4, 4..7, 7..10]);
        assert_eq!(shard(1, 1, 2), 1..1);
    }

    #[test]
    fn two_ranks_take_the_steps_of_one_rank_on_the_same_global_batch() {
        let single = model(1);
        for _ in 0..STEPS {
            linear_loss(&single, 0..GLOBAL_BATCH).backward();
            sgd(&single);
        }
        let ranks = two_ranks(linear_loss);
        assert_eq!(
            ranks[0], ranks[1],
            "every rank holds bitwise the same weights"
        );
        assert_ne!(
            values(&single),
            values(&model(1)),
            "the steps moved the weights"
        );
        assert_close(&ranks[0], &values(&single));
    }

    /// BatchNorm keeps per-rank statistics: two ranks equal one process that normalises each
    /// shard with its own statistics and weights the shards' losses by their size; and not
    /// the single-device run that normalises the whole batch at once.
    #[test]
    fn with_batch_norm_in_training_mode_each_rank_normalises_its_own_shard() {
        let per_shard = model(1);
        let whole = model(1);
        for _ in 0..STEPS {
            let loss = (0..2)
                .map(|rank| {
                    let rows = shard(GLOBAL_BATCH, rank, 2);
                    let weight = rows.len() as f64 / GLOBAL_BATCH as f64;
                    batch_norm_loss(&per_shard, rows) * weight
                })
                .reduce(|a, b| a + b)
                .unwrap();
            loss.backward();
            sgd(&per_shard);
            batch_norm_loss(&whole, 0..GLOBAL_BATCH).backward();
            sgd(&whole);
        }
        let ranks = two_ranks(batch_norm_loss);
        assert_eq!(ranks[0], ranks[1]);
        assert_close(&ranks[0], &values(&per_shard));
        let apart = ranks[0]
            .iter()
            .zip(values(&whole))
            .any(|(got, whole)| (got - whole).abs() > 1e-3);
        assert!(apart, "per-shard statistics differ from whole-batch ones");
    }

    #[test]
    fn a_parameter_without_a_gradient_reduces_as_zero() {
        let threads: Vec<_> = CpuCommunicator::group(2, Duration::from_secs(60))
            .into_iter()
            .map(|mut comm| {
                std::thread::spawn(move || {
                    let param =
                        Tensor::zeros([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
                    if comm.rank() == 1 {
                        (&param * Tensor::from_slice(&[2.0f32, 4.0]))
                            .sum(Kind::Float)
                            .backward();
                    }
                    all_reduce_gradients(&mut comm, std::slice::from_ref(&param), 0.5).unwrap();
                    Vec::<f32>::try_from(param.grad()).unwrap()
                })
            })
            .collect();
        for thread in threads {
            assert_eq!(thread.join().unwrap(), vec![1.0, 2.0]);
        }
    }

    #[test]
    fn large_tensor_lists_travel_in_several_buckets() {
        let small = Tensor::zeros([10], (Kind::Float, Device::Cpu));
        let big = Tensor::zeros([BUCKET_VALUES as i64], (Kind::Float, Device::Cpu));
        let tensors = [small.shallow_clone(), big, small];
        let sizes: Vec<usize> = buckets(&tensors).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![1, 1, 1]);
        let few = [
            Tensor::zeros([3], (Kind::Float, Device::Cpu)),
            Tensor::zeros([4], (Kind::Float, Device::Cpu)),
        ];
        assert_eq!(buckets(&few).len(), 1);
    }
}
