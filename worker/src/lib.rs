//! The darts-prime worker.
