//! Core types of darts-prime: genotypes, configs, metrics and the run-observer interface.
//!
//! No tokio, tonic, prost or tch here: the coordinator links this crate on head nodes
//! without GPUs.

pub mod checkpoint_layout;
pub mod config;
pub mod dataset;
pub mod eval_config;
pub mod genotype;
pub mod gpu;
pub mod grid;
pub mod limits;
pub mod methods;
pub mod metrics;
pub mod observer;
pub mod presets;
pub mod primitives;
pub mod resources;
pub mod rnn_config;
pub mod settings;
mod toml_spans;
pub mod trial;
