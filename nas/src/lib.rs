//! The libtorch NAS library.
pub mod data;
