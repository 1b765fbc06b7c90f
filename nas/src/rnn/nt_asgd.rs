//! The optimizers of NT-ASGD (SPEC 7.9): plain SGD until the non-monotone trigger, then a
//! fresh averaged SGD, and evaluation with the averaged weights swapped in.

use crate::error::RunError;
use crate::optim::{shallow_copies, Asgd, AsgdConfig, OptimError, Optimizer, Sgd, SgdConfig};
use tch::Tensor;

/// ASGD's power of the eta update (PyTorch default; irrelevant with lambd = 0).
const ASGD_ALPHA: f64 = 0.75;

/// The weight optimizer: SGD until the NT-ASGD trigger, then a fresh ASGD.
pub(super) enum WeightOptimizer {
    Sgd(Sgd),
    Asgd(Asgd),
}

impl WeightOptimizer {
    pub(super) fn step(&mut self, lr: f64) -> Result<(), OptimError> {
        match self {
            WeightOptimizer::Sgd(optimizer) => optimizer.step(lr),
            WeightOptimizer::Asgd(optimizer) => optimizer.step(lr),
        }
    }

    pub(super) fn state(&self) -> Result<Vec<(String, Tensor)>, OptimError> {
        match self {
            WeightOptimizer::Sgd(optimizer) => optimizer.state(),
            WeightOptimizer::Asgd(optimizer) => optimizer.state(),
        }
    }

    pub(super) fn zero_grad(&self) -> Result<(), OptimError> {
        match self {
            WeightOptimizer::Sgd(optimizer) => optimizer.zero_grad(),
            WeightOptimizer::Asgd(optimizer) => optimizer.zero_grad(),
        }
    }
}

pub(super) fn sgd(weights: &[(String, Tensor)], weight_decay: f64) -> Result<Sgd, OptimError> {
    Sgd::new(
        shallow_copies(weights),
        SgdConfig {
            momentum: 0.0,
            weight_decay,
        },
    )
}

pub(super) fn asgd(weights: &[(String, Tensor)], weight_decay: f64) -> Result<Asgd, OptimError> {
    Asgd::new(
        shallow_copies(weights),
        AsgdConfig {
            lambd: 0.0,
            alpha: ASGD_ALPHA,
            t0: 0.0,
            weight_decay,
        },
    )
}

/// Runs `body` with every parameter that has an ASGD average replaced by it, then puts the
/// raw parameters back (SPEC 7.9).
pub(super) fn with_averaged_weights<R>(
    weights: &[(String, Tensor)],
    asgd: &Asgd,
    body: impl FnOnce() -> Result<R, RunError>,
) -> Result<R, RunError> {
    let mut saved = Vec::new();
    tch::no_grad(|| -> Result<(), RunError> {
        for (name, param) in weights {
            if let Some(average) = asgd.averaged(name)? {
                saved.push((param.shallow_clone(), param.detach().copy()));
                param.shallow_clone().copy_(average);
            }
        }
        Ok(())
    })?;
    let result = body();
    tch::no_grad(|| {
        for (mut param, raw) in saved {
            param.copy_(&raw);
        }
    });
    result
}
