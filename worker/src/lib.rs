//! The darts-prime worker: one training slot per device, each trial on its own thread,
//! talking to the coordinator over gRPC (the worker dials; nodes need no inbound port).
//!
//! `runtime` keeps the session (registration, heartbeats) and the loop that asks for work
//! while `capacity` says a slot has room; `slot` runs one assigned trial on its slots (one,
//! N for a trial on N devices, or a share of one); `shared` is the state they share; `transfer` moves checkpoint
//! archives; `trainer` is the interface a training engine implements (`nas` for libtorch,
//! `simulated` for tests), and `observer` connects its runs to the slot; `hardware` is where
//! the GPU reports of registrations and heartbeats come from.

mod capacity;
pub mod config;
pub mod hardware;
pub mod nas;
pub mod observer;
mod progress;
mod runtime;
mod shared;
pub mod simulated;
mod slot;
pub mod trainer;
mod transfer;

pub use config::{Faults, WorkerConfig};
pub use runtime::{Worker, WorkerError, WorkerHandle};
pub use trainer::{Device, TrainEnd, TrainError, TrainJob, Trainer};
