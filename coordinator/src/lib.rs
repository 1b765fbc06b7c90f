//! The darts-prime coordinator: owns the grids and trials (SQLite, WAL), places trials on
//! worker slots under leases with fencing epochs, and stores checkpoints.
//!
//! It never links libtorch: a head node without GPUs builds and runs it.
//!
//! Layers, outermost first: `server` starts the gRPC service and the event loop; `service`
//! translates requests, converting wire messages at its `edge`; `event_loop` owns the `state`
//! (with `trials` and `workers` operations on it, in `model` values); `db` holds every SQL
//! statement behind the `Database` trait; `store` keeps checkpoint archives. Beside them,
//! `http` serves probes and Prometheus `metrics`, and `disk` refuses new data when the disk
//! of the state directory runs low.

mod audit;
pub mod auth;
mod dashboard;
mod db;
mod disk;
mod edge;
mod error;
mod event_loop;
mod grid_changes;
mod guard;
mod http;
pub mod latency;
mod limits;
mod metric_rows;
pub mod metrics;
mod model;
mod paging;
mod placement;
mod retention;
mod sanitize;
mod server;
mod service;
mod state;
mod store;
pub mod tls;
mod trials;
mod workers;

pub use db::check_database_file;
pub use disk::DEFAULT_MIN_FREE_DISK;
pub use error::CoordinatorError;
pub use server::{start, RunningCoordinator};
pub use state::{CoordinatorConfig, DATABASE_FILE};
pub use store::DEFAULT_MAX_UPLOAD_BYTES;

#[cfg(test)]
mod placement_tests;
#[cfg(test)]
mod tests;
