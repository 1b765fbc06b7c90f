//! The training and test transforms of SPEC 3.2 as plain loops from CHW bytes to normalised f32.

use prime_core::dataset::ImageDataset;

/// Side of a CIFAR image in pixels.
pub const IMAGE_SIDE: usize = 32;
/// Bytes (and output floats) of one 3x32x32 image.
pub const IMAGE_BYTES: usize = 3 * IMAGE_SIDE * IMAGE_SIDE;
/// Zero padding on each side before the random crop (`RandomCrop(32, padding=4)`).
pub const PAD: usize = 4;
/// Side of the cutout square used by the evaluation scripts (`--cutout_length 16`).
pub const DEFAULT_CUTOUT_LENGTH: usize = 16;

const PLANE: usize = IMAGE_SIDE * IMAGE_SIDE;

/// Per-channel `(v / 255 - mean) / std` for every byte value, computed with the same f32
/// operations as `ToTensor` + `Normalize`.
#[derive(Debug, Clone)]
pub struct Normalizer {
    table: [[f32; 256]; 3],
}

impl Normalizer {
    /// The normalisation of `kind` (its mean and std from SPEC 3.2).
    pub fn for_dataset(kind: ImageDataset) -> Self {
        Self::new(kind.mean(), kind.std())
    }

    /// A normalisation with explicit per-channel statistics.
    pub fn new(mean: [f32; 3], std: [f32; 3]) -> Self {
        let mut table = [[0f32; 256]; 3];
        for (channel, row) in table.iter_mut().enumerate() {
            for (value, out) in row.iter_mut().enumerate() {
                *out = (value as f32 / 255.0 - mean[channel]) / std[channel];
            }
        }
        Normalizer { table }
    }

    /// The normalised value of byte `value` in `channel` (0 = R, 1 = G, 2 = B).
    pub fn value(&self, channel: usize, value: u8) -> f32 {
        self.table[channel][usize::from(value)]
    }
}

/// The random choices of the training transform for one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleAugmentation {
    /// Top row of the 32x32 crop in the 40x40 zero-padded image, 0..=8.
    pub crop_top: usize,
    /// Left column of the crop in the padded image, 0..=8.
    pub crop_left: usize,
    /// Whether the crop is mirrored left-right.
    pub flip: bool,
    /// Centre `(y, x)` of the cutout square, each in 0..32; `None` for no cutout.
    pub cutout: Option<(usize, usize)>,
}

impl SampleAugmentation {
    /// The identity augmentation: centre crop (offset 4, 4), no flip, no cutout.
    pub const IDENTITY: SampleAugmentation = SampleAugmentation {
        crop_top: PAD,
        crop_left: PAD,
        flip: false,
        cutout: None,
    };
}

/// Training transform (SPEC 3.2 steps 1-5): pad 4 with zeros, crop 32x32 at the given offset,
/// optionally mirror, `/255`, normalise, then zero a `cutout_length` square (clipped at the
/// borders) if `augmentation.cutout` is set. `image` is 3072 CHW bytes; `out` receives 3072 CHW
/// floats. Panics if a slice has another length or a crop offset exceeds 8 (caller bugs).
pub fn train_transform_into(
    image: &[u8],
    augmentation: &SampleAugmentation,
    cutout_length: usize,
    normalizer: &Normalizer,
    out: &mut [f32],
) {
    assert_eq!(image.len(), IMAGE_BYTES, "an image has {IMAGE_BYTES} bytes");
    assert_eq!(
        out.len(),
        IMAGE_BYTES,
        "an output image has {IMAGE_BYTES} floats"
    );
    assert!(augmentation.crop_top <= 2 * PAD && augmentation.crop_left <= 2 * PAD);
    // Output columns [first, last) show source columns [source_first, source_first + width),
    // left to right, or right to left when flipped; the other columns show the zero padding.
    let left = augmentation.crop_left;
    // Unflipped, output x shows source x + left - PAD; flipped, 31 - x + left - PAD.
    let (first, last, source_first) = if augmentation.flip {
        let first = left.saturating_sub(PAD);
        let last = (IMAGE_SIDE - PAD + left).min(IMAGE_SIDE);
        (first, last, IMAGE_SIDE - PAD + left - last)
    } else {
        let first = PAD.saturating_sub(left);
        (
            first,
            (IMAGE_SIDE + PAD - left).min(IMAGE_SIDE),
            first + left - PAD,
        )
    };
    let width = last - first;
    for channel in 0..3 {
        let table = &normalizer.table[channel];
        let padding = table[0];
        let plane = &image[channel * PLANE..(channel + 1) * PLANE];
        let out_plane = &mut out[channel * PLANE..(channel + 1) * PLANE];
        for (y, out_row) in out_plane.chunks_exact_mut(IMAGE_SIDE).enumerate() {
            let source_row = (y + augmentation.crop_top)
                .checked_sub(PAD)
                .filter(|&r| r < IMAGE_SIDE);
            let Some(row) = source_row else {
                out_row.fill(padding);
                continue;
            };
            let source = &plane[row * IMAGE_SIDE + source_first..][..width];
            out_row[..first].fill(padding);
            out_row[last..].fill(padding);
            let shown = &mut out_row[first..last];
            if augmentation.flip {
                for (value, &byte) in shown.iter_mut().zip(source.iter().rev()) {
                    *value = table[usize::from(byte)];
                }
            } else {
                for (value, &byte) in shown.iter_mut().zip(source) {
                    *value = table[usize::from(byte)];
                }
            }
        }
    }
    if let Some((centre_y, centre_x)) = augmentation.cutout {
        apply_cutout(out, centre_y, centre_x, cutout_length);
    }
}

/// Zeroes rows `[clip(y - l/2), clip(y + l/2))` x columns `[clip(x - l/2), clip(x + l/2))` of all
/// channels (the `Cutout` of the reference code; an odd length behaves like `length - 1`).
fn apply_cutout(out: &mut [f32], centre_y: usize, centre_x: usize, length: usize) {
    let half = length / 2;
    let rows = centre_y.saturating_sub(half)..(centre_y + half).min(IMAGE_SIDE);
    let columns = centre_x.saturating_sub(half)..(centre_x + half).min(IMAGE_SIDE);
    for plane in out.chunks_exact_mut(PLANE) {
        for y in rows.clone() {
            plane[y * IMAGE_SIDE + columns.start..y * IMAGE_SIDE + columns.end].fill(0.0);
        }
    }
}

/// Test transform (SPEC 3.2 steps 3-4): `/255` and normalise, CHW bytes to CHW floats.
/// Panics if a slice is not 3072 long (a caller bug).
pub fn test_transform_into(image: &[u8], normalizer: &Normalizer, out: &mut [f32]) {
    assert_eq!(image.len(), IMAGE_BYTES, "an image has {IMAGE_BYTES} bytes");
    assert_eq!(
        out.len(),
        IMAGE_BYTES,
        "an output image has {IMAGE_BYTES} floats"
    );
    for channel in 0..3 {
        let table = &normalizer.table[channel];
        let range = channel * PLANE..(channel + 1) * PLANE;
        for (value, &byte) in out[range.clone()].iter_mut().zip(&image[range]) {
            *value = table[usize::from(byte)];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image whose byte at (c, y, x) is `c * 80 + y + 2 * x` (distinct within a plane row).
    fn pattern_image() -> Vec<u8> {
        let mut image = vec![0u8; IMAGE_BYTES];
        for c in 0..3 {
            for y in 0..IMAGE_SIDE {
                for x in 0..IMAGE_SIDE {
                    image[c * PLANE + y * IMAGE_SIDE + x] = (c * 80 + y + 2 * x) as u8;
                }
            }
        }
        image
    }

    fn at(out: &[f32], c: usize, y: usize, x: usize) -> f32 {
        out[c * PLANE + y * IMAGE_SIDE + x]
    }

    #[test]
    fn normalises_a_known_pixel_like_torchvision() {
        let normalizer = Normalizer::for_dataset(ImageDataset::Cifar10);
        let mut image = vec![0u8; IMAGE_BYTES];
        image[0] = 255;
        image[PLANE + 5] = 128;
        let mut out = vec![0f32; IMAGE_BYTES];
        test_transform_into(&image, &normalizer, &mut out);
        let expected_r = (1.0 - 0.491_399_68) / 0.247_032_33;
        let expected_g = (128.0 / 255.0 - 0.482_158_27) / 0.243_485_05;
        let expected_b0 = (0.0 - 0.446_531_24) / 0.261_587_68;
        assert!((out[0] - expected_r).abs() < 1e-6, "{}", out[0]);
        assert!((at(&out, 1, 0, 5) - expected_g).abs() < 1e-6);
        assert!((at(&out, 2, 3, 3) - expected_b0).abs() < 1e-6);
    }

    #[test]
    fn identity_augmentation_equals_the_test_transform() {
        let normalizer = Normalizer::for_dataset(ImageDataset::Cifar100);
        let image = pattern_image();
        let mut train = vec![0f32; IMAGE_BYTES];
        let mut test = vec![0f32; IMAGE_BYTES];
        let identity = SampleAugmentation::IDENTITY;
        train_transform_into(&image, &identity, 16, &normalizer, &mut train);
        test_transform_into(&image, &normalizer, &mut test);
        assert_eq!(train, test);
    }

    #[test]
    fn crop_at_the_corner_shows_the_zero_padding() {
        let normalizer = Normalizer::for_dataset(ImageDataset::Cifar10);
        let image = vec![200u8; IMAGE_BYTES];
        let mut out = vec![0f32; IMAGE_BYTES];
        let corner = SampleAugmentation {
            crop_top: 0,
            crop_left: 0,
            flip: false,
            cutout: None,
        };
        train_transform_into(&image, &corner, 16, &normalizer, &mut out);
        for c in 0..3 {
            for y in 0..IMAGE_SIDE {
                for x in 0..IMAGE_SIDE {
                    let expected = if y < PAD || x < PAD { 0 } else { 200 };
                    assert_eq!(
                        at(&out, c, y, x),
                        normalizer.value(c, expected),
                        "{c} {y} {x}"
                    );
                }
            }
        }
        // The opposite corner: the padding is at the bottom and right.
        let far = SampleAugmentation {
            crop_top: 8,
            crop_left: 8,
            flip: false,
            cutout: None,
        };
        train_transform_into(&image, &far, 16, &normalizer, &mut out);
        assert_eq!(at(&out, 0, 27, 27), normalizer.value(0, 200));
        assert_eq!(at(&out, 0, 28, 0), normalizer.value(0, 0));
        assert_eq!(at(&out, 2, 0, 31), normalizer.value(2, 0));
    }

    #[test]
    fn crop_shifts_the_image() {
        let normalizer = Normalizer::for_dataset(ImageDataset::Cifar10);
        let image = pattern_image();
        let mut out = vec![0f32; IMAGE_BYTES];
        let shifted = SampleAugmentation {
            crop_top: 6,
            crop_left: 3,
            flip: false,
            cutout: None,
        };
        train_transform_into(&image, &shifted, 16, &normalizer, &mut out);
        // Output (y, x) shows source (y + 2, x - 1).
        let source = |c: usize, y: usize, x: usize| image[c * PLANE + y * IMAGE_SIDE + x];
        assert_eq!(at(&out, 1, 10, 10), normalizer.value(1, source(1, 12, 9)));
        assert_eq!(at(&out, 1, 10, 0), normalizer.value(1, 0));
        assert_eq!(at(&out, 1, 29, 31), normalizer.value(1, source(1, 31, 30)));
        assert_eq!(at(&out, 1, 30, 5), normalizer.value(1, 0));
    }

    #[test]
    fn flip_mirrors_the_crop() {
        let normalizer = Normalizer::for_dataset(ImageDataset::Cifar10);
        let image = pattern_image();
        let mut plain = vec![0f32; IMAGE_BYTES];
        let mut mirrored = vec![0f32; IMAGE_BYTES];
        let crop = SampleAugmentation {
            crop_top: 2,
            crop_left: 7,
            flip: false,
            cutout: None,
        };
        train_transform_into(&image, &crop, 16, &normalizer, &mut plain);
        let flipped = SampleAugmentation { flip: true, ..crop };
        train_transform_into(&image, &flipped, 16, &normalizer, &mut mirrored);
        for c in 0..3 {
            for y in 0..IMAGE_SIDE {
                for x in 0..IMAGE_SIDE {
                    assert_eq!(at(&mirrored, c, y, x), at(&plain, c, y, IMAGE_SIDE - 1 - x));
                }
            }
        }
        assert_ne!(plain, mirrored);
    }

    /// The transform written pixel by pixel from SPEC 3.2, for comparison.
    fn reference_transform(image: &[u8], a: &SampleAugmentation, n: &Normalizer) -> Vec<f32> {
        let mut out = vec![0f32; IMAGE_BYTES];
        for c in 0..3 {
            for y in 0..IMAGE_SIDE {
                for x in 0..IMAGE_SIDE {
                    let cropped_x = if a.flip { IMAGE_SIDE - 1 - x } else { x };
                    let (py, px) = (y + a.crop_top, cropped_x + a.crop_left);
                    let inside = (PAD..PAD + IMAGE_SIDE).contains(&py)
                        && (PAD..PAD + IMAGE_SIDE).contains(&px);
                    let byte = if inside {
                        image[c * PLANE + (py - PAD) * IMAGE_SIDE + px - PAD]
                    } else {
                        0
                    };
                    out[c * PLANE + y * IMAGE_SIDE + x] = n.value(c, byte);
                }
            }
        }
        out
    }

    #[test]
    fn every_crop_offset_and_flip_matches_the_pixelwise_definition() {
        let normalizer = Normalizer::for_dataset(ImageDataset::Cifar10);
        let image = pattern_image();
        let mut out = vec![0f32; IMAGE_BYTES];
        for crop_top in 0..=2 * PAD {
            for crop_left in 0..=2 * PAD {
                for flip in [false, true] {
                    let a = SampleAugmentation {
                        crop_top,
                        crop_left,
                        flip,
                        cutout: None,
                    };
                    train_transform_into(&image, &a, 16, &normalizer, &mut out);
                    assert_eq!(out, reference_transform(&image, &a, &normalizer), "{a:?}");
                }
            }
        }
    }

    fn zeroed(out: &[f32]) -> Vec<(usize, usize, usize)> {
        let mut cells = Vec::new();
        for c in 0..3 {
            for y in 0..IMAGE_SIDE {
                for x in 0..IMAGE_SIDE {
                    if at(out, c, y, x) == 0.0 {
                        cells.push((c, y, x));
                    }
                }
            }
        }
        cells
    }

    #[test]
    fn cutout_zeroes_the_square_in_normalised_space() {
        let normalizer = Normalizer::for_dataset(ImageDataset::Cifar10);
        // 125 normalises to a non-zero value in every channel.
        let image = vec![125u8; IMAGE_BYTES];
        let mut out = vec![0f32; IMAGE_BYTES];
        let inside = SampleAugmentation {
            cutout: Some((10, 20)),
            ..SampleAugmentation::IDENTITY
        };
        train_transform_into(&image, &inside, 16, &normalizer, &mut out);
        let cells = zeroed(&out);
        assert_eq!(cells.len(), 3 * 16 * 16);
        assert!(cells
            .iter()
            .all(|&(_, y, x)| (2..18).contains(&y) && (12..28).contains(&x)));
    }

    #[test]
    fn cutout_is_truncated_at_the_borders() {
        let normalizer = Normalizer::for_dataset(ImageDataset::Cifar10);
        let image = vec![125u8; IMAGE_BYTES];
        let mut out = vec![0f32; IMAGE_BYTES];
        let corner = SampleAugmentation {
            cutout: Some((3, 30)),
            ..SampleAugmentation::IDENTITY
        };
        train_transform_into(&image, &corner, 16, &normalizer, &mut out);
        let cells = zeroed(&out);
        // Rows [0, 11), columns [22, 32).
        assert_eq!(cells.len(), 3 * 11 * 10);
        assert!(cells.iter().all(|&(_, y, x)| y < 11 && x >= 22));
        // Odd lengths use length / 2 on each side, as the reference does.
        train_transform_into(&image, &corner, 5, &normalizer, &mut out);
        // Rows [1, 5), columns [28, 32).
        assert_eq!(zeroed(&out).len(), 3 * 4 * 4);
    }
}
