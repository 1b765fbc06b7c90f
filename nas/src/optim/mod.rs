//! Checkpointable optimizers (SGD, Adam, ASGD), gradient clipping, the FIMT gradient sum and
//! the cosine learning-rate schedule (SPEC Appendix A.1-A.3, A.7, A.8 and section 3.3).
//!
//! tch's optimizers cannot save or restore their state, so these are written as plain tensor
//! code. Every update mirrors the operation order of PyTorch's single-tensor CPU implementation
//! (`torch/optim/{sgd,adam,asgd}.py`, `torch/nn/utils/clip_grad.py`), so results on CPU are
//! bitwise identical to PyTorch's.
//!
//! tch exposes neither the `alpha` argument of `add_` nor the `value` argument of `addcmul_` and
//! `addcdiv_`. Their fused kernels are reproduced exactly as follows:
//! * `p.add_(g, alpha=a)` is `p.addcmul_(g, a)` with `a` a 0-d tensor of `p`'s kind and device
//!   (both compute the same fused `p + a * g`);
//! * `t.addcmul_(x, y, value=v)` is `t.addcmul_(v * x, y)` and `t.addcdiv_(x, y, value=v)` is
//!   `t.addcdiv_(v * x, y)`, because the kernels form `v * x` first, rounded to the tensor's kind.
//!
//! `step` never reads a value back from the device: learning rates and step counts stay on the
//! host, and the 0-d scalar tensors live on the parameters' device. (tch's in-place operations
//! return a handle to their receiver, which the code discards with `let _ =`.)

mod adam;
mod asgd;
mod clip;
mod lr;
mod params;
mod sgd;
mod state;
#[cfg(test)]
mod testutil;

pub use adam::{Adam, AdamConfig};
pub use asgd::{Asgd, AsgdConfig};
pub use clip::{clip_grad_norm, grad_squared_sum, read_scalar};
pub use lr::cosine_lr;
pub use params::{
    parameter_count, shallow_copies, trainable_parameters, untrained_variables, zero_grad,
};
pub use sgd::{Sgd, SgdConfig};

use tch::{Kind, TchError, Tensor};

/// Everything that can go wrong while building, stepping, saving or restoring an optimizer.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// Two parameters handed to one optimizer share a name.
    #[error("parameter name `{0}` appears more than once")]
    DuplicateParameter(String),
    /// A parameter has an empty name, which would make its state names ambiguous.
    #[error("a parameter has an empty name")]
    EmptyParameterName,
    /// A parameter tensor is undefined.
    #[error("parameter `{0}` is an undefined tensor")]
    UndefinedParameter(String),
    /// A name that is not one of the optimizer's parameters.
    #[error("`{0}` is not a parameter of this optimizer")]
    UnknownParameter(String),
    /// A hyper-parameter (or learning rate) outside its valid range.
    #[error("invalid {name} = {value}: {requirement}")]
    InvalidHyperparameter {
        /// The hyper-parameter.
        name: &'static str,
        /// The value given.
        value: f64,
        /// What the value must satisfy.
        requirement: &'static str,
    },
    /// A state entry whose name belongs to no parameter of the optimizer.
    #[error("optimizer state entry `{0}` does not belong to any parameter of this optimizer")]
    UnknownStateEntry(String),
    /// A state entry given twice.
    #[error("optimizer state entry `{0}` appears more than once")]
    DuplicateStateEntry(String),
    /// A parameter has some of its state entries but not this one.
    #[error("optimizer state entry `{0}` is missing")]
    MissingStateEntry(String),
    /// A state entry is an undefined tensor.
    #[error("optimizer state entry `{0}` is an undefined tensor")]
    UndefinedStateEntry(String),
    /// A state entry has the wrong shape.
    #[error("optimizer state entry `{name}` has shape {found:?}, expected {expected:?}")]
    StateShapeMismatch {
        /// The entry.
        name: String,
        /// The shape the optimizer needs.
        expected: Vec<i64>,
        /// The shape given.
        found: Vec<i64>,
    },
    /// A state entry has the wrong element kind.
    #[error("optimizer state entry `{name}` has element kind {found:?}, expected {expected:?}")]
    StateKindMismatch {
        /// The entry.
        name: String,
        /// The kind the optimizer needs.
        expected: Kind,
        /// The kind given.
        found: Kind,
    },
    /// A scalar state entry holds a value the optimizer cannot have produced.
    #[error("optimizer state entry `{name}` holds the invalid value {value}")]
    InvalidStateValue {
        /// The entry.
        name: String,
        /// The value given.
        value: f64,
    },
    /// libtorch reported an error (device or shape mismatch of a gradient, out of memory, ...).
    #[error("libtorch: {0}")]
    Torch(#[from] TchError),
}

/// An optimizer over an ordered list of named parameters whose state can be saved and restored.
pub trait Optimizer {
    /// Updates, in place and without recording gradients, every parameter that has a gradient,
    /// using the learning rate `lr`; parameters whose gradient is undefined are skipped.
    fn step(&mut self, lr: f64) -> Result<(), OptimError>;

    /// The named parameters, in the order given at construction.
    fn parameters(&self) -> &[(String, Tensor)];

    /// Copies of the state tensors under stable names `<parameter>.<entry>`; parameters that
    /// have never been stepped have no entries.
    fn state(&self) -> Result<Vec<(String, Tensor)>, OptimError>;

    /// Replaces the whole state by `entries` (as produced by [`Optimizer::state`]) after checking
    /// every name, shape and kind; on error the state is left unchanged.
    fn load_state(&mut self, entries: &[(String, Tensor)]) -> Result<(), OptimError>;

    /// Zeroes the defined gradients of all parameters.
    fn zero_grad(&self) -> Result<(), OptimError> {
        zero_grad(self.parameters().iter().map(|(_, tensor)| tensor))
    }
}

/// Checks a learning rate passed to `step`: finite and not negative.
fn check_lr(lr: f64) -> Result<(), OptimError> {
    check_non_negative("lr", lr)
}

/// Checks that a hyper-parameter is finite and not negative.
fn check_non_negative(name: &'static str, value: f64) -> Result<(), OptimError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(OptimError::InvalidHyperparameter {
            name,
            value,
            requirement: "must be finite and >= 0",
        })
    }
}
