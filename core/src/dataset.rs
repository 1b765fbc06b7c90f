//! Names and per-channel statistics of the supported image datasets.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A supported image-classification dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    /// CIFAR-10: 10 classes, 50,000 training and 10,000 test images of 32x32.
    Cifar10,
    /// CIFAR-100 with its 100 fine labels.
    Cifar100,
}

impl DatasetKind {
    /// Every supported dataset.
    pub const ALL: [DatasetKind; 2] = [DatasetKind::Cifar10, DatasetKind::Cifar100];

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Cifar10 => "cifar10",
            DatasetKind::Cifar100 => "cifar100",
        }
    }

    /// Number of classes.
    pub fn classes(self) -> usize {
        match self {
            DatasetKind::Cifar10 => 10,
            DatasetKind::Cifar100 => 100,
        }
    }

    /// Per-channel (R, G, B) mean of the training set, as used for normalisation (SPEC 3.2).
    pub fn mean(self) -> [f32; 3] {
        match self {
            DatasetKind::Cifar10 => [0.491_399_68, 0.482_158_27, 0.446_531_24],
            DatasetKind::Cifar100 => [0.5071, 0.4865, 0.4409],
        }
    }

    /// Per-channel (R, G, B) standard deviation used for normalisation (SPEC 3.2).
    pub fn std(self) -> [f32; 3] {
        match self {
            DatasetKind::Cifar10 => [0.247_032_33, 0.243_485_05, 0.261_587_68],
            DatasetKind::Cifar100 => [0.2673, 0.2564, 0.2762],
        }
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown dataset name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dataset `{0}`: expected one of cifar10, cifar100")]
pub struct UnknownDataset(pub String);

impl FromStr for DatasetKind {
    type Err = UnknownDataset;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.to_ascii_lowercase().replace('-', "").as_str() {
            "cifar10" => Ok(DatasetKind::Cifar10),
            "cifar100" => Ok(DatasetKind::Cifar100),
            _ => Err(UnknownDataset(name.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_leniently_and_rejects_others() {
        assert_eq!("CIFAR-10".parse::<DatasetKind>(), Ok(DatasetKind::Cifar10));
        assert_eq!("cifar100".parse::<DatasetKind>(), Ok(DatasetKind::Cifar100));
        let error = "mnist".parse::<DatasetKind>().unwrap_err();
        assert!(error
            .to_string()
            .contains("expected one of cifar10, cifar100"));
        assert_eq!(DatasetKind::Cifar100.classes(), 100);
    }
}
