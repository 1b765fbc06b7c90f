//! The darts-prime worker: one training slot per device, each trial on its own thread,
//! talking to the coordinator over gRPC (the worker dials; nodes need no inbound port).

pub mod config;
pub mod nas;
pub mod observer;
pub mod runtime;
mod shared;
pub mod simulated;
mod slot;
pub mod trainer;
pub mod transfer;

pub use config::{Faults, WorkerConfig};
pub use runtime::{Worker, WorkerError, WorkerHandle};
pub use trainer::{Device, TrainEnd, TrainError, TrainJob, Trainer};
