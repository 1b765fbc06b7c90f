//! The darts-prime coordinator.
