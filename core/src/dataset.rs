//! The datasets of the paper and their fixed facts: names, classes, and the per-channel
//! statistics of the image ones. A leaf of the crate (it imports nothing from it), so grids,
//! trial specs and configs can all name a dataset without importing each other.
//!
//! `Dataset` is the one list of datasets. `ImageDataset` is a view of its image-classification
//! part, the type of code that only makes sense on images (CIFAR readers, normalisation, the
//! CNN configs, which refuse `ptb` when they are loaded): names live on `Dataset`, the image
//! facts (classes, mean, std) on `ImageDataset`, and each answers the other's through
//! `Dataset::image` and `ImageDataset::dataset`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One of the paper's three datasets: what a trial trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dataset {
    /// CIFAR-10 image classification (test error in %).
    Cifar10,
    /// CIFAR-100 image classification with its 100 fine labels (test error in %).
    Cifar100,
    /// Penn Treebank language modelling (perplexity).
    Ptb,
}

impl Dataset {
    /// Every dataset, in the order of the paper's tables.
    pub const ALL: [Dataset; 3] = [Dataset::Cifar10, Dataset::Cifar100, Dataset::Ptb];

    /// The name used in grid files, configs, run directories and stored specs.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Cifar10 => "cifar10",
            Dataset::Cifar100 => "cifar100",
            Dataset::Ptb => "ptb",
        }
    }

    /// The name used in result tables.
    pub fn display_name(self) -> &'static str {
        match self {
            Dataset::Cifar10 => "CIFAR-10",
            Dataset::Cifar100 => "CIFAR-100",
            Dataset::Ptb => "PTB",
        }
    }

    /// Whether the dataset is scored by perplexity (language modelling) instead of test
    /// error.
    pub fn uses_perplexity(self) -> bool {
        self == Dataset::Ptb
    }

    /// Whether the dataset is an image-classification one (a CNN search or evaluation).
    pub fn is_image(self) -> bool {
        self.image().is_some()
    }

    /// The image-classification view of the dataset; `None` for Penn Treebank.
    pub fn image(self) -> Option<ImageDataset> {
        match self {
            Dataset::Cifar10 => Some(ImageDataset::Cifar10),
            Dataset::Cifar100 => Some(ImageDataset::Cifar100),
            Dataset::Ptb => None,
        }
    }

    /// Number of classes of an image dataset; `None` for Penn Treebank, whose vocabulary
    /// comes from its corpus.
    pub fn classes(self) -> Option<usize> {
        self.image().map(ImageDataset::classes)
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dataset {
    type Err = String;

    /// Exact names only, as grid files spell them.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Dataset::ALL
            .into_iter()
            .find(|dataset| dataset.name() == name)
            .ok_or_else(|| {
                format!("unknown dataset `{name}`: expected one of cifar10, cifar100, ptb")
            })
    }
}

/// An image-classification dataset: the part of `Dataset` that CNN code runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageDataset {
    /// CIFAR-10: 10 classes, 50,000 training and 10,000 test images of 32x32.
    Cifar10,
    /// CIFAR-100 with its 100 fine labels.
    Cifar100,
}

impl ImageDataset {
    /// Every image dataset.
    pub const ALL: [ImageDataset; 2] = [ImageDataset::Cifar10, ImageDataset::Cifar100];

    /// The dataset this is the image view of.
    pub fn dataset(self) -> Dataset {
        match self {
            ImageDataset::Cifar10 => Dataset::Cifar10,
            ImageDataset::Cifar100 => Dataset::Cifar100,
        }
    }

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        self.dataset().name()
    }

    /// Number of classes.
    pub fn classes(self) -> usize {
        match self {
            ImageDataset::Cifar10 => 10,
            ImageDataset::Cifar100 => 100,
        }
    }

    /// Per-channel (R, G, B) mean of the training set, as used for normalisation (SPEC 3.2).
    pub fn mean(self) -> [f32; 3] {
        match self {
            ImageDataset::Cifar10 => [0.491_399_68, 0.482_158_27, 0.446_531_24],
            ImageDataset::Cifar100 => [0.5071, 0.4865, 0.4409],
        }
    }

    /// Per-channel (R, G, B) standard deviation used for normalisation (SPEC 3.2).
    pub fn std(self) -> [f32; 3] {
        match self {
            ImageDataset::Cifar10 => [0.247_032_33, 0.243_485_05, 0.261_587_68],
            ImageDataset::Cifar100 => [0.2673, 0.2564, 0.2762],
        }
    }
}

impl From<ImageDataset> for Dataset {
    fn from(kind: ImageDataset) -> Dataset {
        kind.dataset()
    }
}

impl fmt::Display for ImageDataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown image dataset name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dataset `{0}`: expected one of cifar10, cifar100")]
pub struct UnknownDataset(pub String);

impl FromStr for ImageDataset {
    type Err = UnknownDataset;

    /// Lenient, as typed on a command line: case and dashes are ignored (`CIFAR-10`).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.to_ascii_lowercase().replace('-', "").as_str() {
            "cifar10" => Ok(ImageDataset::Cifar10),
            "cifar100" => Ok(ImageDataset::Cifar100),
            _ => Err(UnknownDataset(name.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_leniently_and_rejects_others() {
        assert_eq!(
            "CIFAR-10".parse::<ImageDataset>(),
            Ok(ImageDataset::Cifar10)
        );
        assert_eq!(
            "cifar100".parse::<ImageDataset>(),
            Ok(ImageDataset::Cifar100)
        );
        let error = "mnist".parse::<ImageDataset>().unwrap_err();
        assert!(error
            .to_string()
            .contains("expected one of cifar10, cifar100"));
        assert_eq!(ImageDataset::Cifar100.classes(), 100);
        assert!("ptb".parse::<ImageDataset>().is_err());
    }

    #[test]
    fn grid_names_are_exact_and_stable() {
        for dataset in Dataset::ALL {
            assert_eq!(dataset.name().parse::<Dataset>(), Ok(dataset));
            let json = serde_json::to_string(&dataset).unwrap();
            assert_eq!(json, format!("\"{}\"", dataset.name()));
        }
        assert_eq!(
            Dataset::ALL.map(Dataset::name),
            ["cifar10", "cifar100", "ptb"]
        );
        let error = "CIFAR-10".parse::<Dataset>().unwrap_err();
        assert_eq!(
            error,
            "unknown dataset `CIFAR-10`: expected one of cifar10, cifar100, ptb"
        );
    }

    #[test]
    fn the_image_view_agrees_with_the_dataset() {
        for kind in ImageDataset::ALL {
            let dataset = Dataset::from(kind);
            assert_eq!(dataset.image(), Some(kind));
            assert_eq!(dataset.classes(), Some(kind.classes()));
            assert_eq!(kind.name(), dataset.name());
            assert!(dataset.is_image() && !dataset.uses_perplexity());
        }
        assert_eq!(Dataset::Ptb.image(), None);
        assert_eq!(Dataset::Ptb.classes(), None);
        assert!(Dataset::Ptb.uses_perplexity() && !Dataset::Ptb.is_image());
    }
}
