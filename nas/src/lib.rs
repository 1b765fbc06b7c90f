//! The libtorch NAS library.
pub mod cnn;
pub mod data;
