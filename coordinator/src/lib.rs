//! The darts-prime coordinator: owns the grids and trials (SQLite, WAL), places trials on
//! worker slots under leases with fencing epochs, and stores checkpoints.
//!
//! It never links libtorch: a head node without GPUs builds and runs it.

pub mod db;
pub mod error;
pub mod event_loop;
pub mod latency;
mod metric_rows;
pub mod retention;
pub mod server;
pub mod service;
pub mod state;
pub mod store;
pub mod trials;
pub mod workers;

pub use error::CoordinatorError;
pub use server::{start, RunningCoordinator};
pub use state::{CoordinatorConfig, State};

#[cfg(test)]
mod tests;
