//! The libtorch NAS library.
pub mod checkpoint;
pub mod cnn;
pub mod data;
pub mod eval;
pub mod fingerprint;
pub mod optim;
pub mod rnn;
pub mod search;
pub mod torch_rng;
