//! Synthetic CIFAR-format data with a learnable signal, for tests and offline smoke runs.
//!
//! Class `c` has a colour (one of ten hues, `c % 10`) and a texture (one of ten: horizontal,
//! vertical or checkered stripes of period 4, 8 or 16, or none; `(c / 10 + c % 10) % 10`, so
//! that the 100 classes of CIFAR-100 are 100 distinct pairs). Each image adds a random stripe
//! phase, a brightness jitter and per-pixel noise. Colour survives any crop or flip and the
//! textures survive shifts and mirroring, so a tiny network learns them quickly.

use super::augment::{IMAGE_BYTES, IMAGE_SIDE};
use super::cifar::ImageSet;
use super::cifar_layout::layout;
use super::rng::{below, keyed_rng, shuffle};
use super::{display_name, DataError};
use prime_core::dataset::ImageDataset;
use rand_pcg::Pcg64;
use std::path::{Path, PathBuf};

/// Key of the training images (the test images use [`TEST_PART`]).
const TRAIN_PART: u64 = 0;
/// Key of the test images.
const TEST_PART: u64 = 1;
/// Key that separates the label shuffle from the per-image draws.
const LABEL_DOMAIN: u64 = u64::MAX;
/// Luminance swing of the stripes.
const STRIPE_AMPLITUDE: i32 = 40;
/// Largest per-pixel noise (uniform in `-NOISE..=NOISE`).
const NOISE: i32 = 30;
/// Largest per-image brightness offset.
const BRIGHTNESS_JITTER: i32 = 20;

/// What [`write_synthetic`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSummary {
    /// The dataset whose format was written.
    pub kind: ImageDataset,
    /// The distribution's folder (inside the output directory).
    pub folder: PathBuf,
    /// Every file with its number of records.
    pub files: Vec<(PathBuf, usize)>,
    /// Training images written.
    pub train_images: usize,
    /// Test images written.
    pub test_images: usize,
}

impl std::fmt::Display for SynthSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "synthetic {}: {} training and {} test images in {}",
            display_name(self.kind),
            self.train_images,
            self.test_images,
            self.folder.display()
        )?;
        for (file, records) in &self.files {
            writeln!(f, "  {} ({records} records)", file.display())?;
        }
        Ok(())
    }
}

/// `n` synthetic images of `kind` in memory; `part` 0 and 1 are what [`write_synthetic`] writes as
/// training and test images for `seed`. Labels are balanced (`i % classes`) in a random order.
pub fn synthetic_image_set(kind: ImageDataset, n: usize, seed: u64, part: u64) -> ImageSet {
    let classes = kind.classes();
    let mut labels: Vec<u8> = (0..n).map(|i| (i % classes) as u8).collect();
    shuffle(&mut labels, &mut keyed_rng(&[seed, part, LABEL_DOMAIN]));
    let mut images = vec![0u8; n * IMAGE_BYTES];
    for (i, (image, &label)) in images
        .chunks_exact_mut(IMAGE_BYTES)
        .zip(&labels)
        .enumerate()
    {
        let mut rng = keyed_rng(&[seed, part, i as u64]);
        draw_image(usize::from(label), &mut rng, image);
    }
    ImageSet::from_valid_parts(kind, images, labels)
}

/// Writes `train_images` + `test_images` synthetic images in the exact binary format of `kind`
/// (CIFAR-10: five data batches, split as evenly as possible, and the test batch; CIFAR-100:
/// `train.bin` and `test.bin`, coarse label = fine / 5) into `out_dir`, so that loading
/// `out_dir` afterwards reads them.
pub fn write_synthetic(
    out_dir: &Path,
    kind: ImageDataset,
    train_images: usize,
    test_images: usize,
    seed: u64,
) -> Result<SynthSummary, DataError> {
    let layout = layout(kind);
    let folder = out_dir.join(layout.folder);
    std::fs::create_dir_all(&folder).map_err(|e| DataError::io(&folder, e))?;
    let train = synthetic_image_set(kind, train_images, seed, TRAIN_PART);
    let test = synthetic_image_set(kind, test_images, seed, TEST_PART);
    let mut files = Vec::new();
    let batches = layout.train_files.len();
    let mut start = 0;
    for (b, name) in layout.train_files.iter().enumerate() {
        let count = train_images / batches + usize::from(b < train_images % batches);
        let path = folder.join(name);
        write_records(&path, &train, start..start + count, layout.label_bytes)?;
        files.push((path, count));
        start += count;
    }
    let path = folder.join(layout.test_file);
    write_records(&path, &test, 0..test_images, layout.label_bytes)?;
    files.push((path, test_images));
    Ok(SynthSummary {
        kind,
        folder,
        files,
        train_images,
        test_images,
    })
}

fn write_records(
    path: &Path,
    set: &ImageSet,
    range: std::ops::Range<usize>,
    label_bytes: usize,
) -> Result<(), DataError> {
    let mut bytes = Vec::with_capacity(range.len() * (label_bytes + IMAGE_BYTES));
    for index in range {
        let label = set.label(index);
        if label_bytes == 2 {
            bytes.push(label / 5);
        }
        bytes.push(label);
        bytes.extend_from_slice(set.image(index));
    }
    std::fs::write(path, bytes).map_err(|e| DataError::io(path, e))
}

/// The RGB colour of hue `index` of ten (HSV with saturation 0.65 and value 0.75).
fn hue_colour(index: usize) -> [i32; 3] {
    let (saturation, value) = (0.65f32, 0.75f32);
    let h = index as f32 * 0.6; // sixths of the colour wheel: 36 degrees per hue
    let chroma = value * saturation;
    let x = chroma * (1.0 - ((h % 2.0) - 1.0).abs());
    let (r, g, b) = match h as usize {
        0 => (chroma, x, 0.0),
        1 => (x, chroma, 0.0),
        2 => (0.0, chroma, x),
        3 => (0.0, x, chroma),
        4 => (x, 0.0, chroma),
        _ => (chroma, 0.0, x),
    };
    let m = value - chroma;
    [r, g, b].map(|c| ((c + m) * 255.0).round() as i32)
}

/// Draws one image of class `class` into `out` (3072 CHW bytes).
fn draw_image(class: usize, rng: &mut Pcg64, out: &mut [u8]) {
    let colour = hue_colour(class % 10);
    let texture = (class / 10 + class % 10) % 10;
    let orientation = texture % 3;
    let period = [4usize, 8, 16].get(texture / 3).copied();
    let phase_y = below(rng, 16) as usize;
    let phase_x = below(rng, 16) as usize;
    let brightness = below(rng, 2 * BRIGHTNESS_JITTER as u64 + 1) as i32 - BRIGHTNESS_JITTER;
    let plane = IMAGE_SIDE * IMAGE_SIDE;
    for y in 0..IMAGE_SIDE {
        for x in 0..IMAGE_SIDE {
            let stripe = period.map_or(0, |period| {
                let half = period / 2;
                let band = |coordinate: usize, phase: usize| (coordinate + phase) / half % 2;
                let on = match orientation {
                    0 => band(y, phase_y),
                    1 => band(x, phase_x),
                    _ => band(y, phase_y) ^ band(x, phase_x),
                };
                if on == 1 {
                    STRIPE_AMPLITUDE
                } else {
                    -STRIPE_AMPLITUDE
                }
            });
            for (channel, base) in colour.iter().enumerate() {
                let noise = below(rng, 2 * NOISE as u64 + 1) as i32 - NOISE;
                let value = base + brightness + stripe + noise;
                out[channel * plane + y * IMAGE_SIDE + x] = value.clamp(0, 255) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_balanced_and_images_reproducible() {
        let set = synthetic_image_set(ImageDataset::Cifar10, 35, 4, 0);
        let mut counts = [0usize; 10];
        for &label in set.labels() {
            counts[usize::from(label)] += 1;
        }
        assert!(counts.iter().all(|&c| c == 3 || c == 4), "{counts:?}");
        assert_eq!(set, synthetic_image_set(ImageDataset::Cifar10, 35, 4, 0));
        assert_ne!(set, synthetic_image_set(ImageDataset::Cifar10, 35, 5, 0));
        assert_ne!(set, synthetic_image_set(ImageDataset::Cifar10, 35, 4, 1));
    }

    #[test]
    fn hundred_classes_have_distinct_colour_texture_pairs() {
        let pairs: std::collections::HashSet<(usize, usize)> =
            (0..100).map(|c| (c % 10, (c / 10 + c % 10) % 10)).collect();
        assert_eq!(pairs.len(), 100);
        let colours: std::collections::HashSet<[i32; 3]> = (0..10).map(hue_colour).collect();
        assert_eq!(colours.len(), 10);
    }

    /// The mean colour of an image, per channel.
    fn mean_colour(image: &[u8]) -> [f64; 3] {
        let plane = IMAGE_SIDE * IMAGE_SIDE;
        [0, 1, 2].map(|c| {
            image[c * plane..(c + 1) * plane]
                .iter()
                .map(|&v| f64::from(v))
                .sum::<f64>()
                / plane as f64
        })
    }

    #[test]
    fn a_nearest_mean_colour_classifier_beats_chance_by_far() {
        // The signal is real: class-mean colours of a training set classify a test set.
        let kind = ImageDataset::Cifar10;
        let train = synthetic_image_set(kind, 200, 1, 0);
        let test = synthetic_image_set(kind, 100, 1, 1);
        let mut sums = [[0f64; 3]; 10];
        let mut counts = [0f64; 10];
        for i in 0..train.len() {
            let label = usize::from(train.label(i));
            let colour = mean_colour(train.image(i));
            for c in 0..3 {
                sums[label][c] += colour[c];
            }
            counts[label] += 1.0;
        }
        let centres: Vec<[f64; 3]> = sums
            .iter()
            .zip(counts)
            .map(|(s, n)| s.map(|v| v / n))
            .collect();
        let correct = (0..test.len())
            .filter(|&i| {
                let colour = mean_colour(test.image(i));
                let distance = |centre: &[f64; 3]| -> f64 {
                    centre
                        .iter()
                        .zip(colour)
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum()
                };
                let predicted = (0..10)
                    .min_by(|&a, &b| distance(&centres[a]).total_cmp(&distance(&centres[b])))
                    .unwrap_or(0);
                predicted == usize::from(test.label(i))
            })
            .count();
        assert!(correct >= 80, "{correct} of 100");
    }

    #[test]
    fn writes_the_official_file_layout() {
        let dir = tempfile::tempdir().unwrap();
        let summary = write_synthetic(dir.path(), ImageDataset::Cifar10, 12, 3, 2).unwrap();
        let counts: Vec<usize> = summary.files.iter().map(|(_, n)| *n).collect();
        assert_eq!(counts, vec![3, 3, 2, 2, 2, 3]);
        let batch =
            std::fs::read(dir.path().join("cifar-10-batches-bin/data_batch_1.bin")).unwrap();
        assert_eq!(batch.len(), 3 * 3073);
        let text = summary.to_string();
        assert!(text.contains("12 training and 3 test images"), "{text}");
        assert!(text.contains("test_batch.bin (3 records)"), "{text}");

        let summary = write_synthetic(dir.path(), ImageDataset::Cifar100, 4, 2, 2).unwrap();
        let train = std::fs::read(&summary.files[0].0).unwrap();
        assert_eq!(train.len(), 4 * 3074);
        assert_eq!(train[0], train[1] / 5, "coarse label");
    }
}

#[cfg(test)]
mod learnability {
    use super::*;
    use crate::data::{BatchStream, StreamConfig, StreamId};
    use std::sync::Arc;
    use tch::nn::{self, Module, OptimizerConfig};

    #[test]
    fn a_tiny_network_learns_the_synthetic_classes_through_the_augmented_stream() {
        tch::set_num_threads(1);
        tch::manual_seed(0);
        let kind = ImageDataset::Cifar10;
        let train = Arc::new(synthetic_image_set(kind, 640, 1, TRAIN_PART));
        let test = Arc::new(synthetic_image_set(kind, 200, 1, TEST_PART));
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let root = vs.root();
        let conv = |c_in, c_out, name: &str| {
            let config = nn::ConvConfig {
                stride: 2,
                padding: 1,
                ..Default::default()
            };
            nn::conv2d(&root / name, c_in, c_out, 3, config)
        };
        let net = nn::seq()
            .add(conv(3, 8, "c1"))
            .add_fn(|x| x.relu())
            .add(conv(8, 16, "c2"))
            .add_fn(|x| x.relu().adaptive_avg_pool2d([1, 1]).flatten(1, -1))
            .add(nn::linear(&root / "fc", 16, 10, Default::default()));
        let mut optimizer = nn::Adam::default().build(&vs, 1e-2).unwrap();
        let config = StreamConfig::persistent(3, 0, StreamId::WEIGHTS, 32);
        let stream = BatchStream::spawn(train.clone(), 0..train.len(), config).unwrap();
        for batch in stream.take(200) {
            let batch = batch.unwrap();
            let loss = net
                .forward(&batch.images)
                .cross_entropy_for_logits(&batch.labels);
            optimizer.backward_step(&loss);
        }
        let mut correct = 0i64;
        let eval = BatchStream::spawn(test.clone(), 0..test.len(), StreamConfig::eval(50)).unwrap();
        for batch in eval {
            let batch = batch.unwrap();
            let predicted = tch::no_grad(|| net.forward(&batch.images)).argmax(1, false);
            correct += predicted
                .eq_tensor(&batch.labels)
                .sum(tch::Kind::Int64)
                .int64_value(&[]);
        }
        // Chance is 20 of 200.
        assert!(correct >= 120, "{correct} of 200 correct");
    }
}
