//! The recurrent search model with its two optimizers: the first-order alpha step and the
//! weight step of SPEC 7.7 (steps 6-9), and their checkpoint state.

use super::dropout::DropoutMasks;
use super::model::{nll, RnnModel};
use super::trainer::training_loss;
use crate::checkpoint::Checkpoint;
use crate::error::RunError;
use crate::optim::{self, shallow_copies, Adam, AdamConfig, OptimError, Optimizer, Sgd, SgdConfig};
use crate::run::TensorGroups;
use crate::search::trainer::{restore_search_groups, save_search_groups};
use crate::train_step::set_requires_grad;
use crate::train_step::to_rows;
use prime_core::config::Compat;
use prime_core::genotype::projection::{project_rnn, RnnProjection};
use prime_core::genotype::rnn_primitives;
use prime_core::primitives::Activation;
use prime_core::rnn_config::RnnSearchConfig;
use std::path::Path;
use tch::{nn, Device, Tensor};

/// Tensors with their checkpoint names.
type NamedTensors = Vec<(String, Tensor)>;

/// The search model with its weight optimizer (SGD) and alpha optimizer (Adam).
pub struct RnnSearchTrainer {
    vs: nn::VarStore,
    model: RnnModel,
    weights: Vec<(String, Tensor)>,
    alphas: Vec<(String, Tensor)>,
    weight_optimizer: Sgd,
    arch_optimizer: Adam,
    activation: Activation,
    /// CRB under `compat = fixed`: 0 marks an alpha pruned for good (SPEC B2, B9).
    prune_mask: Option<Tensor>,
    arch_lr: f64,
    grad_clip: f64,
    ar_alpha: f64,
    tar_beta: f64,
}

/// Tensors of a weight step, read with one synchronisation when needed.
#[derive(Debug)]
pub struct RnnWeightStep {
    /// Mean NLL of the batch.
    pub raw_loss: Tensor,
    /// Sum of squared raw gradients (FIMT).
    pub fimt: Tensor,
    /// Global gradient norm before clipping.
    pub grad_norm: Tensor,
    /// The new hidden state, detached.
    pub hidden: Tensor,
}

impl RnnSearchTrainer {
    /// Builds the model for `vocab` words, drawing weights then alphas from the generator
    /// seeded with `config.seed`.
    pub fn new(config: &RnnSearchConfig, vocab: i64, device: Device) -> Result<Self, OptimError> {
        let vs = nn::VarStore::new(device);
        let model = crate::torch_rng::seeded(config.seed, || {
            RnnModel::search(
                &vs.root(),
                vocab,
                config.network.nhid,
                config.arch.activation,
            )
        });
        let weights = optim::trainable_parameters(&vs);
        let alphas: Vec<(String, Tensor)> = model
            .alphas()
            .map(|alphas| vec![("alphas".to_string(), alphas.shallow_clone())])
            .unwrap_or_default();
        let weight_optimizer = Sgd::new(
            shallow_copies(&weights),
            SgdConfig {
                momentum: 0.0,
                weight_decay: config.weights.weight_decay,
            },
        )?;
        let arch_optimizer = Adam::new(
            shallow_copies(&alphas),
            AdamConfig {
                beta1: config.arch.beta1,
                beta2: config.arch.beta2,
                eps: config.arch.eps,
                weight_decay: config.arch.weight_decay,
            },
        )?;
        let prune_mask = match (config.arch.activation, config.compat) {
            (Activation::Crb, Compat::Fixed) => model.alphas().map(Tensor::ones_like),
            _ => None,
        };
        Ok(Self {
            vs,
            model,
            weights,
            alphas,
            weight_optimizer,
            arch_optimizer,
            activation: config.arch.activation,
            prune_mask,
            arch_lr: config.arch.lr,
            grad_clip: config.weights.grad_clip,
            ar_alpha: config.weights.ar_alpha,
            tar_beta: config.weights.tar_beta,
        })
    }

    /// First-order alpha step (SPEC 7.7 step 6): Adam on the gradient of the batch's mean NLL
    /// plus `extra` (the regularizer). The weights are frozen (their gradient from this pass is
    /// discarded by the reference). Returns (NLL, new hidden).
    pub fn arch_step(
        &mut self,
        input: &Tensor,
        targets: &Tensor,
        hidden: &Tensor,
        masks: &DropoutMasks,
        extra: Option<Tensor>,
    ) -> Result<(Tensor, Tensor), OptimError> {
        self.arch_optimizer.zero_grad()?;
        set_requires_grad(&self.weights, false);
        let output = self.model.forward(input, hidden, Some(masks));
        let raw = nll(&output, targets);
        let loss = match extra {
            Some(extra) => &raw + extra,
            None => raw.shallow_clone(),
        };
        loss.backward();
        set_requires_grad(&self.weights, true);
        self.arch_optimizer.step(self.arch_lr)?;
        self.prune_alphas()?;
        Ok((raw.detach(), output.hidden.detach()))
    }

    /// Weight step (SPEC 7.7 steps 7-9): NLL + AR + TAR backward with the alphas frozen, the
    /// FIMT of the raw gradients, clipping, one SGD step at `lr`.
    pub fn weight_step(
        &mut self,
        input: &Tensor,
        targets: &Tensor,
        hidden: &Tensor,
        masks: &DropoutMasks,
        lr: f64,
    ) -> Result<RnnWeightStep, OptimError> {
        self.weight_optimizer.zero_grad()?;
        set_requires_grad(&self.alphas, false);
        let output = self.model.forward(input, hidden, Some(masks));
        let (raw, loss) = training_loss(&output, targets, self.ar_alpha, self.tar_beta);
        loss.backward();
        set_requires_grad(&self.alphas, true);
        let params: Vec<&Tensor> = self.weights.iter().map(|(_, tensor)| tensor).collect();
        let fimt = optim::grad_squared_sum(params.iter().copied())?;
        let grad_norm = optim::clip_grad_norm(params.iter().copied(), self.grad_clip)?;
        self.weight_optimizer.step(lr)?;
        self.prune_alphas()?;
        Ok(RnnWeightStep {
            raw_loss: raw.detach(),
            fimt,
            grad_norm,
            hidden: output.hidden.detach(),
        })
    }

    /// CRB progressive pruning under `compat = fixed` (the reference never prunes RNN alphas,
    /// SPEC B2): alphas <= 0 are masked to 0 for good and their Adam moments cleared (B9).
    /// Called after every alpha and weight step; does nothing otherwise.
    fn prune_alphas(&mut self) -> Result<(), OptimError> {
        let (Some(mask), Some(alphas)) = (&self.prune_mask, self.model.alphas()) else {
            return Ok(());
        };
        tch::no_grad(|| {
            let _ = mask
                .shallow_clone()
                .f_mul_(&alphas.gt(0.0).to_kind(mask.kind()))?;
            let _ = alphas.shallow_clone().f_mul_(mask)?;
            Ok::<(), OptimError>(())
        })?;
        self.arch_optimizer.zero_state_where("alphas", mask)
    }

    /// Alphas pruned for good (CRB under `compat = fixed`), if pruning is on: an int64 count
    /// on the device.
    pub fn pruned_count(&self) -> Option<Tensor> {
        self.prune_mask
            .as_ref()
            .map(|mask| mask.eq(0.0).sum(tch::Kind::Int64))
    }

    /// act(alpha) on the device, detached, (36, P).
    pub fn activated(&self) -> Tensor {
        tch::no_grad(|| self.model.activated_alphas())
            .expect("the search model has alphas")
            .detach()
    }

    /// act(alpha) on the host, (36, P).
    pub fn activated_rows(&self) -> Vec<Vec<f32>> {
        to_rows(&self.activated())
    }

    /// The projection of the current alphas (SPEC 7.6).
    pub fn projection(&self) -> Result<RnnProjection, RunError> {
        self.project(&self.activated_rows())
    }

    /// The projection (SPEC 7.6) of act(alpha) rows read earlier.
    pub fn project(&self, rows: &[Vec<f32>]) -> Result<RnnProjection, RunError> {
        project_rnn(rows, rnn_primitives(self.activation))
            .map_err(|error| RunError::Projection(error.to_string()))
    }

    /// Adds the checkpoint groups (weights, alphas, both optimizers) to `groups`.
    pub fn checkpoint_groups(&self, groups: &mut TensorGroups) -> Result<(), OptimError> {
        let optimizers = (&self.weight_optimizer, &self.arch_optimizer);
        save_search_groups(groups, &self.vs, self.arch_tensors(), optimizers)
    }

    /// The model (with its alphas).
    pub fn model(&self) -> &RnnModel {
        &self.model
    }

    /// Trainable scalars of the model, alphas included.
    pub fn parameter_count(&self) -> i64 {
        optim::parameter_count(&self.vs)
    }

    /// The alphas and, when pruning, their mask.
    fn arch_tensors(&self) -> NamedTensors {
        let mut tensors = shallow_copies(&self.alphas);
        if let Some(mask) = &self.prune_mask {
            tensors.push(("alphas_mask".to_string(), mask.shallow_clone()));
        }
        tensors
    }

    /// Restores what [`RnnSearchTrainer::checkpoint_groups`] saved.
    pub fn restore(&mut self, checkpoint: &Checkpoint, path: &Path) -> Result<(), RunError> {
        let arch = self.arch_tensors();
        let optimizers = (&mut self.weight_optimizer, &mut self.arch_optimizer);
        restore_search_groups((checkpoint, path), &self.vs, &arch, optimizers)
    }
}
