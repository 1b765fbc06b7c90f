//! Batch streams over a subset of an [`ImageSet`], decoded and augmented on a background thread,
//! with randomness that is a pure function of `(seed, epoch, stream, pass, position)`.
//!
//! Pass `p` of a stream visits the subset in the order of a permutation drawn from
//! `(seed, epoch, stream, p)`; batch `b` of that pass holds the permuted positions
//! `[b * B, (b + 1) * B)` (the last batch may be shorter), and the augmentation of the image at
//! position `i` of pass `p` is drawn from `(seed, epoch, stream, p, i)`. So batch `b` of pass `p`
//! does not depend on what was read before, and a stream started at a saved [`StreamPosition`]
//! continues exactly.

use super::augment::{
    test_transform_into, train_transform_into, Normalizer, SampleAugmentation, IMAGE_BYTES,
    IMAGE_SIDE, PAD,
};
use super::cifar::ImageSet;
use super::prefetch::Prefetcher;
use super::rng::{below, keyed_rng, shuffle};
use super::split::batches_per_pass;
use super::DataError;
use rand::RngCore;
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::Arc;
use tch::{Device, Tensor};

/// Batches prepared ahead of the consumer by default.
pub const DEFAULT_PREFETCH: usize = 4;

/// Where a stream is: the pass over the subset and the batch within it. Saved in checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct StreamPosition {
    /// 0-based pass (one permutation of the subset per pass).
    pub pass: u64,
    /// 0-based batch within the pass.
    pub batch: u64,
}

impl StreamPosition {
    /// The position of the first batch of the first pass.
    pub const START: StreamPosition = StreamPosition { pass: 0, batch: 0 };
}

/// How a stream walks its subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Passes {
    /// Pass 0 only, then the stream ends (the per-epoch w loader and per-epoch inference);
    /// its position after the last batch is pass 1, batch 0, where a started stream is empty.
    One,
    /// Endless: when a pass is exhausted the next starts with a new permutation (the persistent
    /// alpha iterator, SPEC 3.4 step 4a).
    Cycle,
    /// Endless: batch `k` is the first batch of the permutation of pass `k` (the "random"
    /// alpha-batch policy of original DARTS, SPEC 3.6 / A11).
    FreshEachBatch,
}

/// Identifies a stream within a run, so that streams of one epoch draw independent randomness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamId(pub u64);

impl StreamId {
    /// The per-epoch stream of w (training) batches.
    pub const WEIGHTS: StreamId = StreamId(0);
    /// The alpha-batch stream over the valid subset.
    pub const ALPHA: StreamId = StreamId(1);
    /// The end-of-epoch inference pass over the valid subset.
    pub const ALPHA_INFERENCE: StreamId = StreamId(2);
    /// Evaluation over a test set.
    pub const TEST: StreamId = StreamId(3);
}

/// Which transform a stream applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Augment {
    /// `/255` and normalise only.
    Test,
    /// Pad-4 random crop, horizontal flip, `/255`, normalise, and cutout of the given side if set.
    Train {
        /// Side of the cutout square; `None` disables cutout (as in search).
        cutout: Option<usize>,
    },
}

/// Everything that determines the batches of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamConfig {
    /// The run's seed.
    pub seed: u64,
    /// The epoch the stream belongs to.
    pub epoch: u64,
    /// Which stream of the epoch this is.
    pub stream: StreamId,
    /// Images per batch (the last batch of a pass may hold fewer).
    pub batch_size: usize,
    /// How the subset is walked.
    pub passes: Passes,
    /// Whether each pass is a random permutation (else the subset's own order).
    pub shuffle: bool,
    /// The transform.
    pub augment: Augment,
    /// Batches prepared ahead on the background thread.
    pub prefetch: usize,
    /// The position of the first batch to produce.
    pub start: StreamPosition,
}

impl StreamConfig {
    /// One shuffled pass with the training transform (the per-epoch w loader).
    pub fn per_epoch(seed: u64, epoch: u64, stream: StreamId, batch_size: usize) -> Self {
        StreamConfig {
            seed,
            epoch,
            stream,
            batch_size,
            passes: Passes::One,
            shuffle: true,
            augment: Augment::Train { cutout: None },
            prefetch: DEFAULT_PREFETCH,
            start: StreamPosition::START,
        }
    }

    /// Endless shuffled passes with the training transform (the persistent alpha iterator).
    pub fn persistent(seed: u64, epoch: u64, stream: StreamId, batch_size: usize) -> Self {
        StreamConfig {
            passes: Passes::Cycle,
            ..Self::per_epoch(seed, epoch, stream, batch_size)
        }
    }

    /// Endless independent random batches with the training transform (the "random" policy).
    pub fn fresh_each_batch(seed: u64, epoch: u64, stream: StreamId, batch_size: usize) -> Self {
        StreamConfig {
            passes: Passes::FreshEachBatch,
            ..Self::per_epoch(seed, epoch, stream, batch_size)
        }
    }

    /// One pass in order with the test transform (evaluation of a test set).
    pub fn eval(batch_size: usize) -> Self {
        StreamConfig {
            shuffle: false,
            augment: Augment::Test,
            ..Self::per_epoch(0, 0, StreamId::TEST, batch_size)
        }
    }

    /// The same stream with cutout of side `length` added to the training transform.
    pub fn with_cutout(mut self, length: usize) -> Self {
        self.augment = Augment::Train {
            cutout: Some(length),
        };
        self
    }

    /// The same stream, started at `position` (to resume from a checkpoint).
    pub fn starting_at(mut self, position: StreamPosition) -> Self {
        self.start = position;
        self
    }

    /// The same stream with `depth` batches prepared ahead.
    pub fn with_prefetch(mut self, depth: usize) -> Self {
        self.prefetch = depth;
        self
    }
}

/// A batch of normalised images and their labels, on the CPU as produced.
#[derive(Debug)]
pub struct Batch {
    /// `[B, 3, 32, 32]` f32.
    pub images: Tensor,
    /// `[B]` i64 class indices.
    pub labels: Tensor,
    /// The indices of the images in their [`ImageSet`], in batch order.
    pub indices: Vec<usize>,
}

impl Batch {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether the batch holds no image.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The batch with its tensors moved to `device`.
    pub fn to_device(&self, device: Device) -> Batch {
        Batch {
            images: self.images.to_device(device),
            labels: self.labels.to_device(device),
            indices: self.indices.clone(),
        }
    }
}

/// A stream of batches produced on a background thread. Dropping it stops the thread.
pub struct BatchStream {
    prefetcher: Prefetcher<Batch>,
    config: StreamConfig,
    batches_per_pass: u64,
    next: StreamPosition,
}

impl std::fmt::Debug for BatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchStream")
            .field("config", &self.config)
            .field("batches_per_pass", &self.batches_per_pass)
            .field("next", &self.next)
            .finish()
    }
}

impl BatchStream {
    /// Starts a stream over `subset` (indices into `set`) as `config` describes.
    pub fn spawn(
        set: Arc<ImageSet>,
        subset: Range<usize>,
        config: StreamConfig,
    ) -> Result<BatchStream, DataError> {
        let mut maker = BatchMaker::new(set, subset, config)?;
        let batches_per_pass = maker.batches_per_pass;
        let config = maker.config.clone();
        let mut position = config.start;
        let name = format!("prime-data-{}", config.stream.0);
        let prefetcher = Prefetcher::spawn(name, config.prefetch, move || {
            if is_exhausted(maker.config.passes, batches_per_pass, position) {
                return None;
            }
            let batch = maker.make(position);
            position = advance(maker.config.passes, batches_per_pass, position);
            Some(batch)
        })?;
        Ok(BatchStream {
            prefetcher,
            next: config.start,
            config,
            batches_per_pass,
        })
    }

    /// The next batch; `None` when a [`Passes::One`] stream has finished its pass.
    pub fn next_batch(&mut self) -> Option<Result<Batch, DataError>> {
        let batch = self.prefetcher.next()?;
        if batch.is_ok() {
            self.next = advance(self.config.passes, self.batches_per_pass, self.next);
        }
        Some(batch)
    }

    /// The position of the batch the next call returns (save it to resume the stream exactly).
    pub fn next_position(&self) -> StreamPosition {
        self.next
    }

    /// Batches in one pass (one for [`Passes::FreshEachBatch`] counts as a pass of one batch).
    pub fn batches_per_pass(&self) -> usize {
        self.batches_per_pass as usize
    }

    /// The configuration the stream was started with.
    pub fn config(&self) -> &StreamConfig {
        &self.config
    }
}

impl Iterator for BatchStream {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch()
    }
}

/// The batch at `position` of the stream `config` over `subset`, computed on the calling thread
/// (the stream produces exactly this).
pub fn batch_at(
    set: Arc<ImageSet>,
    subset: Range<usize>,
    config: &StreamConfig,
    position: StreamPosition,
) -> Result<Batch, DataError> {
    let config = StreamConfig {
        start: position,
        ..config.clone()
    };
    let mut maker = BatchMaker::new(set, subset, config)?;
    maker.make(position)
}

fn is_exhausted(passes: Passes, batches_per_pass: u64, position: StreamPosition) -> bool {
    batches_per_pass == 0 || (passes == Passes::One && position.pass >= 1)
}

fn advance(passes: Passes, batches_per_pass: u64, position: StreamPosition) -> StreamPosition {
    match passes {
        Passes::FreshEachBatch => StreamPosition {
            pass: position.pass + 1,
            batch: 0,
        },
        Passes::One | Passes::Cycle if position.batch + 1 >= batches_per_pass => StreamPosition {
            pass: position.pass + 1,
            batch: 0,
        },
        Passes::One | Passes::Cycle => StreamPosition {
            batch: position.batch + 1,
            ..position
        },
    }
}

/// Builds batches for one stream, caching the permutation of the current pass.
struct BatchMaker {
    set: Arc<ImageSet>,
    subset: Range<usize>,
    config: StreamConfig,
    normalizer: Normalizer,
    batches_per_pass: u64,
    permutation: Option<(u64, Vec<u32>)>,
    floats: Vec<f32>,
}

impl BatchMaker {
    fn new(
        set: Arc<ImageSet>,
        subset: Range<usize>,
        config: StreamConfig,
    ) -> Result<BatchMaker, DataError> {
        let invalid = |message: String| Err(DataError::InvalidArgument(message));
        if config.batch_size == 0 {
            return invalid("batch size must be at least 1".into());
        }
        if subset.start > subset.end || subset.end > set.len() {
            return invalid(format!(
                "subset {subset:?} is not within the {} images of the set",
                set.len()
            ));
        }
        if subset.len() > u32::MAX as usize {
            return invalid(format!("subset of {} images is too large", subset.len()));
        }
        if subset.is_empty() && config.passes != Passes::One {
            return invalid("an endless stream needs a non-empty subset".into());
        }
        if let Augment::Train {
            cutout: Some(length),
        } = config.augment
        {
            if length > 2 * IMAGE_SIDE {
                return invalid(format!("cutout length {length} exceeds {}", 2 * IMAGE_SIDE));
            }
        }
        let batches_per_pass = match config.passes {
            Passes::FreshEachBatch => 1,
            Passes::One | Passes::Cycle => batches_per_pass(subset.len(), config.batch_size) as u64,
        };
        let start = config.start;
        if config.passes == Passes::FreshEachBatch && start.batch != 0 {
            return invalid(format!(
                "a fresh-each-batch stream cannot start at batch {}",
                start.batch
            ));
        }
        if batches_per_pass > 0 && start.batch > batches_per_pass {
            return invalid(format!(
                "start batch {} is past the {batches_per_pass} batches of a pass",
                start.batch
            ));
        }
        // A position recorded after a pass's last batch, before the loop noticed the pass had
        // ended (a checkpoint between the last step of an epoch and the epoch's end), is the
        // start of the next pass.
        let start = if batches_per_pass > 0 && start.batch == batches_per_pass {
            StreamPosition {
                pass: start.pass + 1,
                batch: 0,
            }
        } else {
            start
        };
        let normalizer = Normalizer::for_dataset(set.kind());
        Ok(BatchMaker {
            set,
            subset,
            config: StreamConfig { start, ..config },
            normalizer,
            batches_per_pass,
            permutation: None,
            floats: Vec::new(),
        })
    }

    fn make(&mut self, position: StreamPosition) -> Result<Batch, DataError> {
        let (len, offset) = (self.subset.len(), self.subset.start);
        let batch_size = self.config.batch_size;
        let first = position.batch as usize * batch_size;
        let positions = first..(first + batch_size).min(len);
        let permutation = self.permutation_of(position.pass);
        let indices: Vec<usize> = positions
            .clone()
            .map(|p| offset + permutation[p] as usize)
            .collect();
        self.floats.resize(indices.len() * IMAGE_BYTES, 0.0);
        let mut labels = Vec::with_capacity(indices.len());
        for ((&index, position_in_pass), out) in indices
            .iter()
            .zip(positions)
            .zip(self.floats.chunks_exact_mut(IMAGE_BYTES))
        {
            let image = self.set.image(index);
            labels.push(i64::from(self.set.label(index)));
            match self.config.augment {
                Augment::Test => test_transform_into(image, &self.normalizer, out),
                Augment::Train { cutout } => {
                    let augmentation =
                        sample_augmentation(&self.config, position.pass, position_in_pass, cutout);
                    let length = cutout.unwrap_or(0);
                    train_transform_into(image, &augmentation, length, &self.normalizer, out);
                }
            }
        }
        let side = IMAGE_SIDE as i64;
        let images =
            Tensor::f_from_slice(&self.floats)?.f_view([indices.len() as i64, 3, side, side])?;
        let labels = Tensor::f_from_slice(&labels)?;
        Ok(Batch {
            images,
            labels,
            indices,
        })
    }

    fn permutation_of(&mut self, pass: u64) -> &[u32] {
        let cached = matches!(&self.permutation, Some((cached, _)) if *cached == pass);
        if !cached {
            let len = self.subset.len() as u32;
            let mut order: Vec<u32> = (0..len).collect();
            if self.config.shuffle {
                shuffle(
                    &mut order,
                    &mut derive_rng(&self.config, pass, PERMUTATION_DOMAIN, 0),
                );
            }
            self.permutation = Some((pass, order));
        }
        self.permutation
            .as_ref()
            .map(|(_, order)| order.as_slice())
            .unwrap_or(&[])
    }
}

/// The generator of `(seed, epoch, stream, pass, domain, item)` of a stream.
fn derive_rng(config: &StreamConfig, pass: u64, domain: u64, item: u64) -> Pcg64 {
    keyed_rng(&[
        config.seed,
        config.epoch,
        config.stream.0,
        pass,
        domain,
        item,
    ])
}

/// Domain tags that keep the permutation and the per-sample draws independent.
const PERMUTATION_DOMAIN: u64 = 1;
const SAMPLE_DOMAIN: u64 = 2;

/// The random choices for the image at `position_in_pass` of pass `pass`: crop top, crop left
/// (each uniform in 0..=8), flip (p = 0.5), then, with cutout, centre y and x (uniform in 0..32).
fn sample_augmentation(
    config: &StreamConfig,
    pass: u64,
    position_in_pass: usize,
    cutout: Option<usize>,
) -> SampleAugmentation {
    let mut rng = derive_rng(config, pass, SAMPLE_DOMAIN, position_in_pass as u64);
    let offsets = 2 * PAD as u64 + 1;
    let crop_top = below(&mut rng, offsets) as usize;
    let crop_left = below(&mut rng, offsets) as usize;
    let flip = rng.next_u64() >> 63 == 1;
    let cutout = cutout.map(|_| {
        let y = below(&mut rng, IMAGE_SIDE as u64) as usize;
        let x = below(&mut rng, IMAGE_SIDE as u64) as usize;
        (y, x)
    });
    SampleAugmentation {
        crop_top,
        crop_left,
        flip,
        cutout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synth::synthetic_image_set;
    use prime_core::dataset::ImageDataset;
    use std::time::{Duration, Instant};

    fn set(n: usize) -> Arc<ImageSet> {
        Arc::new(synthetic_image_set(ImageDataset::Cifar10, n, 3, 0))
    }

    fn collect(stream: &mut BatchStream, count: usize) -> Vec<Batch> {
        (0..count)
            .map(|_| stream.next_batch().unwrap().unwrap())
            .collect()
    }

    fn same(a: &Batch, b: &Batch) -> bool {
        a.indices == b.indices && a.images.equal(&b.images) && a.labels.equal(&b.labels)
    }

    #[test]
    fn one_pass_covers_the_subset_once_and_keeps_the_last_partial_batch() {
        tch::set_num_threads(1);
        let set = set(30);
        let config = StreamConfig::per_epoch(7, 0, StreamId::WEIGHTS, 4);
        let mut stream = BatchStream::spawn(set.clone(), 10..20, config).unwrap();
        assert_eq!(stream.batches_per_pass(), 3);
        let batches: Vec<Batch> = stream.by_ref().map(Result::unwrap).collect();
        assert_eq!(
            batches.iter().map(Batch::len).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        assert_eq!(stream.next_position(), StreamPosition { pass: 1, batch: 0 });
        let last = &batches[2];
        assert_eq!(last.images.size(), vec![2, 3, 32, 32]);
        assert_eq!(last.labels.size(), vec![2]);
        assert_eq!(last.labels.kind(), tch::Kind::Int64);
        let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        assert_ne!(seen, (10..20).collect::<Vec<_>>(), "shuffled");
        seen.sort_unstable();
        assert_eq!(seen, (10..20).collect::<Vec<_>>());
        for batch in &batches {
            let labels: Vec<i64> = Vec::try_from(&batch.labels).unwrap();
            let expected: Vec<i64> = batch.indices.iter().map(|&i| set.label(i).into()).collect();
            assert_eq!(labels, expected);
        }
        assert!(stream.next_batch().is_none());
    }

    /// A checkpoint taken after an epoch's last step, before the loop saw the pass end, records
    /// the batch index one past the pass; resuming there must not fail.
    #[test]
    fn a_start_just_past_the_last_batch_is_the_end_of_the_pass() {
        tch::set_num_threads(1);
        let set = set(30);
        let end = StreamPosition { pass: 0, batch: 3 };
        let one = StreamConfig::per_epoch(7, 0, StreamId::WEIGHTS, 4).starting_at(end);
        let mut stream = BatchStream::spawn(set.clone(), 10..20, one).unwrap();
        assert_eq!(stream.next_position(), StreamPosition { pass: 1, batch: 0 });
        assert!(stream.next_batch().is_none());

        let cycle = StreamConfig::persistent(7, 0, StreamId::ALPHA, 4);
        let mut straight = BatchStream::spawn(set.clone(), 10..20, cycle.clone()).unwrap();
        let after_one_pass = collect(&mut straight, 4).pop().unwrap();
        let mut resumed = BatchStream::spawn(set, 10..20, cycle.starting_at(end)).unwrap();
        assert!(same(
            &resumed.next_batch().unwrap().unwrap(),
            &after_one_pass
        ));
    }

    #[test]
    fn same_seed_gives_identical_batches_whatever_the_timing() {
        tch::set_num_threads(1);
        let set = set(20);
        let config = StreamConfig::persistent(11, 2, StreamId::ALPHA, 3).with_cutout(16);
        let mut eager =
            BatchStream::spawn(set.clone(), 0..20, config.clone().with_prefetch(8)).unwrap();
        let mut slow = BatchStream::spawn(set.clone(), 0..20, config.with_prefetch(0)).unwrap();
        for _ in 0..10 {
            let a = eager.next_batch().unwrap().unwrap();
            std::thread::sleep(Duration::from_millis(1));
            let b = slow.next_batch().unwrap().unwrap();
            assert!(same(&a, &b));
        }
    }

    #[test]
    fn seeds_epochs_and_streams_draw_independently() {
        tch::set_num_threads(1);
        let set = set(40);
        let first = |config: StreamConfig| {
            let mut stream = BatchStream::spawn(set.clone(), 0..40, config).unwrap();
            stream.next_batch().unwrap().unwrap()
        };
        let base = first(StreamConfig::per_epoch(1, 0, StreamId::WEIGHTS, 40));
        for other in [
            StreamConfig::per_epoch(2, 0, StreamId::WEIGHTS, 40),
            StreamConfig::per_epoch(1, 1, StreamId::WEIGHTS, 40),
            StreamConfig::per_epoch(1, 0, StreamId::ALPHA, 40),
        ] {
            assert_ne!(first(other).indices, base.indices);
        }
    }

    #[test]
    fn starting_at_a_saved_position_equals_continuing() {
        tch::set_num_threads(1);
        let set = set(10);
        let config = StreamConfig::persistent(5, 3, StreamId::ALPHA, 4);
        let mut original = BatchStream::spawn(set.clone(), 0..10, config.clone()).unwrap();
        collect(&mut original, 5);
        let saved = original.next_position();
        assert_eq!(saved, StreamPosition { pass: 1, batch: 2 });
        let continued = collect(&mut original, 5);
        let mut resumed =
            BatchStream::spawn(set.clone(), 0..10, config.clone().starting_at(saved)).unwrap();
        let replayed = collect(&mut resumed, 5);
        assert!(continued.iter().zip(&replayed).all(|(a, b)| same(a, b)));
        assert_eq!(resumed.next_position(), original.next_position());
        let direct = batch_at(set, 0..10, &config, saved).unwrap();
        assert!(same(&direct, &continued[0]));
    }

    #[test]
    fn cycle_starts_a_new_permutation_each_pass() {
        tch::set_num_threads(1);
        let set = set(12);
        let config = StreamConfig::persistent(9, 0, StreamId::ALPHA, 5);
        let mut stream = BatchStream::spawn(set, 0..12, config).unwrap();
        let passes: Vec<Vec<usize>> = (0..3)
            .map(|_| {
                collect(&mut stream, 3)
                    .iter()
                    .flat_map(|b| b.indices.clone())
                    .collect()
            })
            .collect();
        assert_eq!(stream.next_position(), StreamPosition { pass: 3, batch: 0 });
        for pass in &passes {
            let mut sorted = pass.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..12).collect::<Vec<_>>());
        }
        assert_ne!(passes[0], passes[1]);
        assert_ne!(passes[1], passes[2]);
    }

    #[test]
    fn fresh_each_batch_takes_the_first_batch_of_a_new_permutation() {
        tch::set_num_threads(1);
        let set = set(12);
        let fresh = StreamConfig::fresh_each_batch(4, 1, StreamId::ALPHA, 5);
        let cycle = StreamConfig {
            passes: Passes::Cycle,
            ..fresh.clone()
        };
        let mut stream = BatchStream::spawn(set.clone(), 0..12, fresh).unwrap();
        let batches = collect(&mut stream, 4);
        assert_eq!(stream.next_position(), StreamPosition { pass: 4, batch: 0 });
        for (k, batch) in batches.iter().enumerate() {
            assert_eq!(batch.len(), 5);
            let position = StreamPosition {
                pass: k as u64,
                batch: 0,
            };
            assert!(same(
                batch,
                &batch_at(set.clone(), 0..12, &cycle, position).unwrap()
            ));
        }
        assert_ne!(batches[0].indices, batches[1].indices);
    }

    #[test]
    fn eval_stream_is_sequential_with_the_test_transform() {
        tch::set_num_threads(1);
        let set = set(7);
        let mut stream = BatchStream::spawn(set.clone(), 0..7, StreamConfig::eval(3)).unwrap();
        let batches: Vec<Batch> = stream.by_ref().map(Result::unwrap).collect();
        let indices: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        assert_eq!(indices, (0..7).collect::<Vec<_>>());
        let normalizer = Normalizer::for_dataset(ImageDataset::Cifar10);
        let mut expected = vec![0f32; IMAGE_BYTES];
        test_transform_into(set.image(4), &normalizer, &mut expected);
        let image = batches[1].images.get(1).flatten(0, -1);
        let actual: Vec<f32> = Vec::try_from(&image).unwrap();
        assert_eq!(actual, expected);
    }

    #[test]
    fn training_stream_applies_the_drawn_augmentation() {
        tch::set_num_threads(1);
        let set = set(6);
        let config = StreamConfig::per_epoch(8, 0, StreamId::WEIGHTS, 6).with_cutout(16);
        let batch = batch_at(set.clone(), 0..6, &config, StreamPosition::START).unwrap();
        let normalizer = Normalizer::for_dataset(ImageDataset::Cifar10);
        for (slot, &index) in batch.indices.iter().enumerate() {
            let augmentation = sample_augmentation(&config, 0, slot, Some(16));
            let mut expected = vec![0f32; IMAGE_BYTES];
            train_transform_into(
                set.image(index),
                &augmentation,
                16,
                &normalizer,
                &mut expected,
            );
            let actual: Vec<f32> =
                Vec::try_from(&batch.images.get(slot as i64).flatten(0, -1)).unwrap();
            assert_eq!(actual, expected);
        }
    }

    #[test]
    fn augmentation_draws_cover_their_ranges() {
        let config = StreamConfig::per_epoch(1, 0, StreamId::WEIGHTS, 1);
        let mut tops = [0usize; 9];
        let mut lefts = [0usize; 9];
        let mut flips = 0;
        let mut centres = std::collections::HashSet::new();
        let draws = 4000;
        for i in 0..draws {
            let a = sample_augmentation(&config, 0, i, Some(16));
            tops[a.crop_top] += 1;
            lefts[a.crop_left] += 1;
            flips += usize::from(a.flip);
            let (y, x) = a.cutout.unwrap();
            assert!(y < 32 && x < 32);
            centres.insert((y, x));
        }
        // Each offset has probability 1/9: 444 expected, far from the bounds below.
        assert!(
            tops.iter().chain(&lefts).all(|&n| (300..600).contains(&n)),
            "{tops:?} {lefts:?}"
        );
        assert!((1800..2200).contains(&flips), "{flips}");
        assert!(centres.len() > 900, "{}", centres.len());
    }

    #[test]
    fn dropping_an_endless_stream_stops_its_thread_promptly() {
        tch::set_num_threads(1);
        let set = set(50);
        let config = StreamConfig::persistent(1, 0, StreamId::ALPHA, 8);
        let mut stream = BatchStream::spawn(set, 0..50, config).unwrap();
        stream.next_batch().unwrap().unwrap();
        let start = Instant::now();
        drop(stream);
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn rejects_unusable_configurations() {
        let set = set(10);
        let spawn = |subset: Range<usize>, config: StreamConfig| {
            BatchStream::spawn(set.clone(), subset, config)
                .unwrap_err()
                .to_string()
        };
        let w = StreamConfig::per_epoch(1, 0, StreamId::WEIGHTS, 4);
        assert!(spawn(
            0..10,
            StreamConfig {
                batch_size: 0,
                ..w.clone()
            }
        )
        .contains("batch size"));
        assert!(spawn(5..11, w.clone()).contains("not within"));
        let alpha = StreamConfig::persistent(1, 0, StreamId::ALPHA, 4);
        assert!(spawn(3..3, alpha.clone()).contains("non-empty"));
        let past = StreamPosition { pass: 0, batch: 4 };
        assert!(spawn(0..10, alpha.starting_at(past)).contains("past the 3 batches"));
        let fresh = StreamConfig::fresh_each_batch(1, 0, StreamId::ALPHA, 4);
        assert!(spawn(
            0..10,
            fresh.starting_at(StreamPosition { pass: 2, batch: 1 })
        )
        .contains("fresh-each-batch"));
        // An empty one-pass stream is legal and simply empty.
        let mut empty = BatchStream::spawn(set.clone(), 4..4, w).unwrap();
        assert!(empty.next_batch().is_none());
    }
}
