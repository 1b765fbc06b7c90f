//! What a trial needs of a worker: how many GPUs it trains on (`gpus`, data-parallel, all on
//! one worker) and how many trials of its kind may share one GPU (`gpu_share`). Grids set
//! both per search and per evaluation; trial specs carry them in their run settings.

use crate::limits;
use crate::settings::RunSettings;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The GPUs one trial asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Resources {
    /// GPUs the trial trains on, all on one worker; 1..=64.
    pub gpus: u32,
    /// Trials of this kind that may share one GPU; 1..=64, and 1 unless `gpus` is 1.
    pub gpu_share: u32,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            gpus: 1,
            gpu_share: 1,
        }
    }
}

/// A resource request that cannot be met by any cluster: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {message}")]
pub struct ResourceError {
    /// `gpus` or `gpu_share`.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl Resources {
    /// The resources of a run's settings (1 GPU, unshared, where unset), checked.
    pub fn of(settings: &RunSettings) -> Result<Resources, ResourceError> {
        let resources = Resources {
            gpus: settings.gpus.unwrap_or(1),
            gpu_share: settings.gpu_share.unwrap_or(1),
        };
        resources.check()?;
        Ok(resources)
    }

    /// Checks both ranges, and that only single-GPU trials share a GPU: a data-parallel
    /// trial's ranks step together, so one slow shared GPU would hold back all of them.
    pub fn check(&self) -> Result<(), ResourceError> {
        limits::check_count(self.gpus, &limits::GPUS_PER_TRIAL).map_err(|message| {
            ResourceError {
                field: "gpus",
                message,
            }
        })?;
        limits::check_count(self.gpu_share, &limits::GPU_SHARE).map_err(|message| {
            ResourceError {
                field: "gpu_share",
                message,
            }
        })?;
        if self.gpus > 1 && self.gpu_share > 1 {
            return Err(ResourceError {
                field: "gpu_share",
                message: format!(
                    "must be 1 for a trial on {} GPUs: only single-GPU trials share a GPU",
                    self.gpus
                ),
            });
        }
        Ok(())
    }

    /// The fraction of one GPU's compute a trial holds: 1/K when shared, else `gpus`.
    pub fn gpu_fraction(&self) -> f64 {
        f64::from(self.gpus) / f64::from(self.gpu_share)
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.gpus, self.gpu_share) {
            (1, 1) => f.write_str("1 GPU"),
            (1, share) => write!(f, "1/{share} GPU"),
            (gpus, _) => write!(f, "{gpus} GPUs"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(gpus: Option<u32>, gpu_share: Option<u32>) -> RunSettings {
        RunSettings {
            gpus,
            gpu_share,
            ..RunSettings::default()
        }
    }

    #[test]
    fn unset_fields_mean_one_whole_gpu() {
        assert_eq!(
            Resources::of(&RunSettings::default()).unwrap(),
            Resources::default()
        );
        assert_eq!(Resources::default().to_string(), "1 GPU");
        let packed = Resources::of(&settings(None, Some(4))).unwrap();
        assert_eq!(
            (packed.to_string(), packed.gpu_fraction()),
            ("1/4 GPU".into(), 0.25)
        );
        let gang = Resources::of(&settings(Some(4), None)).unwrap();
        assert_eq!(
            (gang.to_string(), gang.gpu_fraction()),
            ("4 GPUs".into(), 4.0)
        );
    }

    #[test]
    fn out_of_range_and_shared_multi_gpu_requests_are_refused() {
        let error = Resources::of(&settings(Some(0), None)).unwrap_err();
        assert_eq!(error.field, "gpus");
        assert!(error.message.contains("between 1 and 64"), "{error}");
        let error = Resources::of(&settings(None, Some(65))).unwrap_err();
        assert_eq!(error.field, "gpu_share");
        let error = Resources::of(&settings(Some(2), Some(2))).unwrap_err();
        assert_eq!(error.field, "gpu_share");
        assert!(
            error.message.contains("only single-GPU trials share"),
            "{error}"
        );
    }
}
