//! Configurations of the recurrent (Penn Treebank) search and evaluation: TOML, `version = 1`,
//! unknown keys rejected, validated once at load with the field path in every error, `--set`
//! overrides as for the CNN configs (all through [`crate::config::LayeredConfig`]). Defaults
//! are the reference scripts' (SPEC 7.7, 7.9).

mod eval;
mod search;
mod shared;

pub use eval::{RnnEvalConfig, RnnEvalDataConfig, RnnEvalWeightsConfig};
pub use search::{RnnArchConfig, RnnDataConfig, RnnRegularizerConfig, RnnSearchConfig};
pub use shared::{RnnNetworkConfig, RnnSpeedConfig, RnnWeightsConfig};

#[cfg(test)]
mod tests;
