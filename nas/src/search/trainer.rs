//! One search iteration's building blocks: the architecture step, the weight step and the
//! inference pass (SPEC 3.4), around a search network and its two optimizers.

use crate::cnn::search_net::{SearchNetShape, SearchNetwork};
use crate::optim::{self, Adam, AdamConfig, OptimError, Optimizer, Sgd, SgdConfig};
use prime_core::config::SearchConfig;
use prime_core::primitives::Activation;
use tch::{nn, Device, Kind, Tensor};

/// Device-side results of a step; read them with [`StepTensors::host`] only when needed.
#[derive(Debug)]
pub struct StepTensors {
    /// Mean cross-entropy of the batch.
    pub loss: Tensor,
    /// Number of correct top-1 predictions.
    pub correct: Tensor,
    /// Batch size.
    pub count: usize,
}

impl StepTensors {
    /// (loss, correct) on the host: one synchronisation.
    pub fn host(&self) -> (f64, f64) {
        let both = Tensor::stack(
            &[
                self.loss.detach().to_kind(Kind::Double),
                self.correct.to_kind(Kind::Double),
            ],
            0,
        )
        .to_device(Device::Cpu);
        (both.double_value(&[0]), both.double_value(&[1]))
    }
}

/// The search network with its weight optimizer (SGD) and architecture optimizer (Adam).
pub struct SearchTrainer {
    /// The variable store holding weights and BN statistics.
    pub vs: nn::VarStore,
    /// The network (with its alphas).
    pub net: SearchNetwork,
    weights: Vec<(String, Tensor)>,
    weight_optimizer: Sgd,
    arch_optimizer: Adam,
    arch_lr: f64,
    grad_clip: f64,
}

impl SearchTrainer {
    /// Builds the network for `classes` classes on `device`, drawing weights then alphas from
    /// the torch generator seeded with `config.seed`.
    pub fn new(config: &SearchConfig, classes: i64, device: Device) -> Result<Self, OptimError> {
        tch::manual_seed(config.seed as i64);
        let vs = nn::VarStore::new(device);
        let shape = SearchNetShape {
            channels: config.network.init_channels,
            classes,
            layers: config.network.layers,
            steps: config.network.steps,
            multiplier: config.network.multiplier,
            stem_multiplier: config.network.stem_multiplier,
            activation: config.arch.activation,
        };
        let net = SearchNetwork::new(&vs, shape);
        let weights = optim::trainable_parameters(&vs);
        let weight_optimizer = Sgd::new(
            weights
                .iter()
                .map(|(name, tensor)| (name.clone(), tensor.shallow_clone()))
                .collect(),
            SgdConfig {
                momentum: config.weights.momentum,
                weight_decay: config.weights.weight_decay,
            },
        )?;
        let arch_weight_decay = match config.arch.activation {
            // CRB turns alpha weight decay off (SPEC 5.5, A8).
            Activation::Crb => 0.0,
            Activation::Softmax => config.arch.weight_decay,
        };
        let arch_optimizer = Adam::new(
            net.arch.named(),
            AdamConfig {
                beta1: config.arch.beta1,
                beta2: config.arch.beta2,
                eps: config.arch.eps,
                weight_decay: arch_weight_decay,
            },
        )?;
        Ok(Self {
            vs,
            net,
            weights,
            weight_optimizer,
            arch_optimizer,
            arch_lr: config.arch.lr,
            grad_clip: config.weights.grad_clip,
        })
    }

    /// The trainable weights, sorted by name.
    pub fn weights(&self) -> &[(String, Tensor)] {
        &self.weights
    }

    /// The weight optimizer.
    pub fn weight_optimizer(&mut self) -> &mut Sgd {
        &mut self.weight_optimizer
    }

    /// The architecture optimizer.
    pub fn arch_optimizer(&mut self) -> &mut Adam {
        &mut self.arch_optimizer
    }

    /// First-order architecture step (SPEC 3.4 step 4b): alpha <- Adam(∇_alpha (CE + extra)).
    ///
    /// The weights are frozen during the backward pass: the reference discards the weight
    /// gradients of this pass, so skipping them changes no result and saves their cost.
    /// `extra_loss` adds a regulariser computed from the alphas (given the arch params).
    pub fn arch_step(
        &mut self,
        images: &Tensor,
        labels: &Tensor,
        extra_loss: impl FnOnce(&SearchNetwork) -> Option<Tensor>,
    ) -> Result<StepTensors, OptimError> {
        self.arch_optimizer.zero_grad()?;
        set_requires_grad(&self.weights, false);
        let logits = self.net.forward_t(images, true);
        let mut loss = logits.cross_entropy_for_logits(labels);
        if let Some(extra) = extra_loss(&self.net) {
            loss += extra;
        }
        loss.backward();
        set_requires_grad(&self.weights, true);
        self.arch_optimizer.step(self.arch_lr)?;
        Ok(StepTensors {
            correct: accuracy_count(&logits, labels),
            loss: loss.detach(),
            count: labels.size()[0] as usize,
        })
    }
}

impl SearchTrainer {
    /// Weight step (SPEC 3.4 steps 5-8): CE backward with the alphas frozen (their gradient
    /// from this pass is never used), the FIMT of the raw gradients when `fimt` is set, global
    /// norm clipping, one SGD step at `lr`.
    pub fn weight_step(
        &mut self,
        images: &Tensor,
        labels: &Tensor,
        lr: f64,
        fimt: bool,
    ) -> Result<WeightStep, OptimError> {
        self.weight_optimizer.zero_grad()?;
        let arch = self.net.arch.named();
        set_requires_grad(&arch, false);
        let logits = self.net.forward_t(images, true);
        let loss = logits.cross_entropy_for_logits(labels);
        loss.backward();
        set_requires_grad(&arch, true);
        let params: Vec<&Tensor> = self.weights.iter().map(|(_, tensor)| tensor).collect();
        let fimt = if fimt {
            Some(optim::grad_squared_sum(params.iter().copied())?)
        } else {
            None
        };
        let grad_norm = optim::clip_grad_norm(params.iter().copied(), self.grad_clip)?;
        self.weight_optimizer.step(lr)?;
        Ok(WeightStep {
            tensors: StepTensors {
                correct: accuracy_count(&logits, labels),
                loss: loss.detach(),
                count: labels.size()[0] as usize,
            },
            fimt,
            grad_norm,
        })
    }

    /// Eval-mode loss sum and correct count over one batch, without gradients.
    pub fn infer(&self, images: &Tensor, labels: &Tensor) -> StepTensors {
        tch::no_grad(|| {
            let logits = self.net.forward_t(images, false);
            let count = labels.size()[0] as usize;
            StepTensors {
                loss: logits.cross_entropy_for_logits(labels) * count as f64,
                correct: accuracy_count(&logits, labels),
                count,
            }
        })
    }
}

/// What a weight step produced.
#[derive(Debug)]
pub struct WeightStep {
    /// Loss and accuracy.
    pub tensors: StepTensors,
    /// Trace of the empirical Fisher (sum of squared raw gradients, a 0-d tensor), when asked
    /// for.
    pub fimt: Option<Tensor>,
    /// Global gradient norm before clipping (a 0-d tensor on the device).
    pub grad_norm: Tensor,
}

/// Toggles gradient recording of leaf tensors in place.
pub fn set_requires_grad(params: &[(String, Tensor)], requires_grad: bool) {
    for (_, param) in params {
        let _ = param.set_requires_grad(requires_grad);
    }
}

/// Number of rows whose arg-max equals the label.
pub fn accuracy_count(logits: &Tensor, labels: &Tensor) -> Tensor {
    logits
        .detach()
        .argmax(-1, false)
        .eq_tensor(labels)
        .sum(Kind::Int64)
}

impl SearchTrainer {
    /// The weight optimizer's state tensors.
    pub fn weight_optimizer_state(&self) -> Result<Vec<(String, Tensor)>, OptimError> {
        self.weight_optimizer.state()
    }

    /// The architecture optimizer's state tensors.
    pub fn arch_optimizer_state(&self) -> Result<Vec<(String, Tensor)>, OptimError> {
        self.arch_optimizer.state()
    }

    /// Restores both optimizers' states.
    pub fn load_optimizer_states(
        &mut self,
        weight: &[(String, Tensor)],
        arch: &[(String, Tensor)],
    ) -> Result<(), OptimError> {
        self.weight_optimizer.load_state(weight)?;
        self.arch_optimizer.load_state(arch)
    }
}
