//! The libtorch NAS library.
