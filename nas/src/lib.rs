//! The libtorch NAS library.
pub mod checkpoint;
pub mod cnn;
pub mod data;
pub mod error;
pub mod eval;
pub mod fingerprint;
pub mod keyed;
pub mod optim;
pub mod rnn;
pub mod run;
pub mod search;
pub mod torch_rng;
