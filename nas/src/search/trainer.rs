//! One search iteration's building blocks: the architecture step (first order or unrolled),
//! the weight step and the inference pass (SPEC 3.4, 3.7), around a search network and its
//! two optimizers.

use crate::checkpoint::{self, Checkpoint};
use crate::cnn::search_net::{ArchParams, SearchNetShape, SearchNetwork};
use crate::error::RunError;
use crate::optim::{self, shallow_copies, Adam, AdamConfig, OptimError, Optimizer, Sgd, SgdConfig};
use crate::parallel::rank::{DataParallel, Shard};
use crate::run::TensorGroups;
use crate::train_step::{accuracy_count, set_requires_grad, to_rows, StepTensors};
use prime_core::config::SearchConfig;
use prime_core::primitives::Activation;
use std::path::Path;
use tch::{nn, Device, Tensor};

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

/// Norm of the weight perturbation of the finite-difference Hessian-vector product of the
/// unrolled step (DARTS: eps = 0.01 / ||v||).
pub const HVP_RADIUS: f64 = 0.01;

/// Where a weight belongs in a mixed op: (reduction cell, alpha row, alpha column).
type OpSlot = Option<(bool, usize, usize)>;

/// The search network with its weight optimizer (SGD) and architecture optimizer (Adam).
pub struct SearchTrainer {
    vs: nn::VarStore,
    net: SearchNetwork,
    weights: Vec<(String, Tensor)>,
    weight_slots: Vec<OpSlot>,
    weight_optimizer: Sgd,
    arch_optimizer: Adam,
    arch_lr: f64,
    momentum: f64,
    weight_decay: f64,
    grad_clip: f64,
}

impl SearchTrainer {
    /// Builds the network for `classes` classes on `device`, drawing weights then alphas from
    /// the torch generator seeded with `config.seed` (under [`crate::torch_rng::seeded`]).
    pub fn new(config: &SearchConfig, classes: i64, device: Device) -> Result<Self, OptimError> {
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
        let mut net = crate::torch_rng::seeded(config.seed, || SearchNetwork::new(&vs, shape));
        net.set_precision(config.speed.search_precision);
        if shape.activation == Activation::Crb {
            net.arch.apply_masks();
        }
        let weights = optim::trainable_parameters(&vs);
        let weight_slots = weights
            .iter()
            .map(|(name, _)| op_slot(name, &shape))
            .collect();
        let weight_optimizer = Sgd::new(
            shallow_copies(&weights),
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
            weight_slots,
            weight_optimizer,
            arch_optimizer,
            arch_lr: config.arch.lr,
            momentum: config.weights.momentum,
            weight_decay: config.weights.weight_decay,
            grad_clip: config.weights.grad_clip,
        })
    }

    /// The trainable weights, sorted by name.
    pub fn weights(&self) -> &[(String, Tensor)] {
        &self.weights
    }

    /// Copies rank 0's weights, batch-norm statistics and alphas to this rank (the start of a
    /// data-parallel search).
    pub fn take_rank0_weights(&mut self, ranks: &mut DataParallel) -> Result<(), RunError> {
        let mut variables: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        variables.sort_by(|(a, _), (b, _)| a.cmp(b));
        let mut tensors: Vec<Tensor> = variables.into_iter().map(|(_, tensor)| tensor).collect();
        tensors.extend(self.arch_tensors().into_iter().map(|(_, tensor)| tensor));
        ranks.broadcast(&tensors)?;
        Ok(())
    }

    /// First-order architecture step (SPEC 3.4 step 4b): alpha <- Adam(∇_alpha(CE + extra)),
    /// where `extra` is the regulariser, already computed from the alphas.
    ///
    /// The weights are frozen during the backward pass: the reference discards the weight
    /// gradients of this pass, so skipping them changes no result and saves their cost.
    ///
    /// With `ranks`, `images` and `labels` are the global alpha batch: the step uses this
    /// rank's rows and the alpha gradient of the global batch (the regulariser's part, the
    /// same on every rank, sums back to itself); the loss and count returned are this rank's.
    pub fn arch_step(
        &mut self,
        images: &Tensor,
        labels: &Tensor,
        extra: Option<Tensor>,
        ranks: Option<&mut DataParallel>,
    ) -> Result<StepTensors, RunError> {
        let batch = labels.size()[0] as usize;
        let Shard {
            images,
            labels,
            rows,
        } = Shard::of(images, labels, ranks.as_deref());
        let labels = &labels;
        self.arch_optimizer.zero_grad()?;
        set_requires_grad(&self.weights, false);
        let logits = self.net.forward_t(&images, true);
        let mut loss = logits.apply_cross_entropy(labels);
        if let Some(extra) = extra {
            loss += extra;
        }
        loss.backward();
        set_requires_grad(&self.weights, true);
        if let Some(ranks) = ranks {
            ranks.reduce_gradients(&shallow_values(&self.net.arch.named()), rows.len(), batch)?;
        }
        self.arch_optimizer.step(self.arch_lr)?;
        Ok(StepTensors {
            correct: accuracy_count(&logits, labels),
            loss: loss.detach(),
            count: labels.size()[0] as usize,
        })
    }

    /// Second-order (unrolled) architecture step (SPEC 3.7) on the train batch `(x, y)` and the
    /// valid batch `(xv, yv)` with the virtual step size `xi` (the epoch's weight LR).
    pub fn arch_step_unrolled(
        &mut self,
        train: (&Tensor, &Tensor),
        valid: (&Tensor, &Tensor),
        xi: f64,
        extra: Option<Tensor>,
    ) -> Result<StepTensors, OptimError> {
        let (gradients, step) = self.unrolled_arch_gradient(train, valid, xi, HVP_RADIUS, extra)?;
        let arch = self.net.arch.named();
        tch::no_grad(|| {
            for ((_, alpha), gradient) in arch.iter().zip(&gradients) {
                let mut grad = alpha.grad();
                grad.copy_(gradient);
            }
        });
        self.arch_optimizer.step(self.arch_lr)?;
        Ok(step)
    }

    /// The unrolled architecture gradient dL_val(w', alpha)/d alpha with
    /// w' = w - xi·(mu·buf + ∇_w L_train + wd·w), the Hessian-vector product taken by finite
    /// differences at w ± radius·v/||v|| (the reference uses [`HVP_RADIUS`]). BN statistics
    /// change as in the reference: the train-batch forwards update them, the forward of the
    /// virtual model does not.
    pub fn unrolled_arch_gradient(
        &mut self,
        (x, y): (&Tensor, &Tensor),
        (xv, yv): (&Tensor, &Tensor),
        xi: f64,
        radius: f64,
        extra: Option<Tensor>,
    ) -> Result<(Vec<Tensor>, StepTensors), OptimError> {
        let arch = self.net.arch.named();
        let params: Vec<Tensor> = self
            .weights
            .iter()
            .map(|(_, t)| t.shallow_clone())
            .collect();
        // 1. Gradient of the training loss at w.
        optim::zero_grad(&params)?;
        set_requires_grad(&arch, false);
        self.net
            .forward_t(x, true)
            .apply_cross_entropy(y)
            .backward();
        set_requires_grad(&arch, true);
        let original: Vec<Tensor> = params.iter().map(|p| p.detach().copy()).collect();
        let buffers: Vec<Tensor> = self
            .vs
            .variables()
            .into_values()
            .filter(|t| !t.requires_grad())
            .collect();
        let saved_buffers: Vec<Tensor> = buffers.iter().map(|b| b.detach().copy()).collect();
        let momentum: Option<Vec<Tensor>> = if self.momentum != 0.0 {
            self.weights
                .iter()
                .map(|(name, _)| {
                    self.weight_optimizer
                        .momentum_buffer(name)
                        .map(|buffer| buffer.map(|b| b.detach() * self.momentum))
                })
                .collect::<Result<Option<Vec<Tensor>>, OptimError>>()?
        } else {
            None
        };
        // 2. The virtual step w' (no clipping).
        tch::no_grad(|| {
            for (index, param) in params.iter().enumerate() {
                let mut direction = param.grad() + &original[index] * self.weight_decay;
                if let Some(momentum) = &momentum {
                    direction += &momentum[index];
                }
                let mut param = param.shallow_clone();
                param.copy_(&(&original[index] - direction * xi));
            }
        });
        // 3. Validation loss of the virtual model: da and v.
        optim::zero_grad(&params)?;
        self.arch_optimizer.zero_grad()?;
        let logits = self.net.forward_t(xv, true);
        let mut loss = logits.apply_cross_entropy(yv);
        if let Some(extra) = extra {
            loss += extra;
        }
        loss.backward();
        let step = StepTensors {
            correct: accuracy_count(&logits, yv),
            loss: loss.detach(),
            count: yv.size()[0] as usize,
        };
        let da: Vec<Tensor> = arch.iter().map(|(_, a)| a.grad().copy()).collect();
        let v: Vec<Tensor> = params.iter().map(|p| p.grad().copy()).collect();
        tch::no_grad(|| {
            for (param, original) in params.iter().zip(&original) {
                param.shallow_clone().copy_(original);
            }
            for (buffer, saved) in buffers.iter().zip(&saved_buffers) {
                buffer.shallow_clone().copy_(saved);
            }
        });
        // 4. Finite-difference Hessian-vector product on the training batch.
        let v_norm = Tensor::stack(&v.iter().map(|g| g.norm()).collect::<Vec<_>>(), 0)
            .norm()
            .double_value(&[]);
        let eps = radius / v_norm;
        let arch_gradient_at = |sign: f64| -> Result<Vec<Tensor>, OptimError> {
            tch::no_grad(|| {
                for ((param, original), v) in params.iter().zip(&original).zip(&v) {
                    param.shallow_clone().copy_(&(original + v * (sign * eps)));
                }
            });
            self.arch_optimizer.zero_grad()?;
            set_requires_grad(&self.weights, false);
            self.net
                .forward_t(x, true)
                .apply_cross_entropy(y)
                .backward();
            set_requires_grad(&self.weights, true);
            Ok(arch.iter().map(|(_, a)| a.grad().copy()).collect())
        };
        let plus = arch_gradient_at(1.0)?;
        let minus = arch_gradient_at(-1.0)?;
        tch::no_grad(|| {
            for (param, original) in params.iter().zip(&original) {
                param.shallow_clone().copy_(original);
            }
        });
        let gradients = da
            .iter()
            .zip(plus.iter().zip(&minus))
            .map(|(da, (plus, minus))| da - (plus - minus) * (xi / (2.0 * eps)))
            .collect();
        Ok((gradients, step))
    }

    /// Weight step (SPEC 3.4 steps 5-8): CE backward with the alphas frozen (their gradient
    /// from this pass is never used), the FIMT of the raw gradients when `fimt` is set, global
    /// norm clipping, one SGD step at `lr`. Weights of ops that did not run (CRB-pruned) are
    /// left alone, as PyTorch leaves parameters without a gradient.
    ///
    /// With `ranks`, `images` and `labels` are the global batch: the step uses this rank's
    /// rows, replaces the gradients by the global batch's before the FIMT and the clipping
    /// (so every rank sees the FIMT of the single-device run), and afterwards takes rank 0's
    /// batch-norm statistics; the loss and count returned are this rank's.
    pub fn weight_step(
        &mut self,
        images: &Tensor,
        labels: &Tensor,
        lr: f64,
        fimt: bool,
        mut ranks: Option<&mut DataParallel>,
    ) -> Result<WeightStep, RunError> {
        let batch = labels.size()[0] as usize;
        let Shard {
            images,
            labels,
            rows,
        } = Shard::of(images, labels, ranks.as_deref());
        let (images, labels) = (&images, &labels);
        self.weight_optimizer.zero_grad()?;
        let arch = self.net.arch.named();
        set_requires_grad(&arch, false);
        let active = self.active_columns();
        let logits = self.net.forward_t(images, true);
        let loss = logits.apply_cross_entropy(labels);
        loss.backward();
        set_requires_grad(&arch, true);
        if let Some(ranks) = ranks.as_deref_mut() {
            ranks.reduce_gradients(&shallow_values(&self.weights), rows.len(), batch)?;
        }
        let params: Vec<&Tensor> = self.weights.iter().map(|(_, tensor)| tensor).collect();
        let fimt = if fimt {
            Some(optim::grad_squared_sum(params.iter().copied())?)
        } else {
            None
        };
        let grad_norm = optim::clip_grad_norm(params.iter().copied(), self.grad_clip)?;
        match &active {
            None => self.weight_optimizer.step(lr)?,
            Some([normal, reduce]) => {
                let slots = &self.weight_slots;
                self.weight_optimizer
                    .step_where(lr, |index| match slots[index] {
                        None => true,
                        Some((reduction, row, column)) => {
                            let active = if reduction { reduce } else { normal };
                            active[row][column]
                        }
                    })?
            }
        }
        if let Some(ranks) = ranks {
            ranks.broadcast(&optim::untrained_variables(&self.vs))?;
        }
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

    /// With CRB: which (row, column) ops run in the next forward (raw alpha > 0), for the
    /// normal and the reduce cells; none with softmax (every op runs).
    fn active_columns(&self) -> Option<[Vec<Vec<bool>>; 2]> {
        if self.net.arch.activation == Activation::Softmax {
            return None;
        }
        let positive = |raw: &Tensor| -> Vec<Vec<bool>> {
            to_rows(raw)
                .iter()
                .map(|row| row.iter().map(|value| *value > 0.0).collect())
                .collect()
        };
        Some([
            positive(&self.net.arch.normal),
            positive(&self.net.arch.reduce),
        ])
    }

    /// CRB progressive pruning (SPEC 5.5): masks alphas <= 0 for good; with `clear_moments`
    /// (compat fixed, SPEC B9) also zeroes Adam's moments of masked entries.
    pub fn mask_alphas(&mut self, clear_moments: bool) -> Result<(), OptimError> {
        if self.net.arch.activation != Activation::Crb {
            return Ok(());
        }
        self.net.arch.apply_masks();
        if clear_moments {
            let masks = [
                ("alphas_normal", self.net.arch.normal_mask.shallow_clone()),
                ("alphas_reduce", self.net.arch.reduce_mask.shallow_clone()),
            ];
            for (name, mask) in masks {
                if self.arch_optimizer.step_count(name)? > 0 {
                    self.arch_optimizer.zero_state_where(name, &mask)?;
                }
            }
        }
        Ok(())
    }

    /// Eval-mode loss sum and correct count over one batch, without gradients.
    pub fn infer(&self, images: &Tensor, labels: &Tensor) -> StepTensors {
        tch::no_grad(|| {
            let logits = self.net.forward_t(images, false);
            let count = labels.size()[0] as usize;
            StepTensors {
                loss: logits.apply_cross_entropy(labels) * count as f64,
                correct: accuracy_count(&logits, labels),
                count,
            }
        })
    }

    /// Trainable scalars of the network (alphas excluded).
    pub fn parameter_count(&self) -> i64 {
        optim::parameter_count(&self.vs)
    }

    /// The alphas (with their masks and activation).
    pub fn arch(&self) -> &ArchParams {
        &self.net.arch
    }

    /// The alphas and their pruning masks, as a checkpoint names them.
    fn arch_tensors(&self) -> Vec<(String, Tensor)> {
        let mut arch = self.net.arch.named();
        arch.push((
            "alphas_normal_mask".to_string(),
            self.net.arch.normal_mask.shallow_clone(),
        ));
        arch.push((
            "alphas_reduce_mask".to_string(),
            self.net.arch.reduce_mask.shallow_clone(),
        ));
        arch
    }

    /// Adds the checkpoint groups of the network and both optimizers to `groups`.
    pub fn checkpoint_groups(&self, groups: &mut TensorGroups) -> Result<(), OptimError> {
        let optimizers = (&self.weight_optimizer, &self.arch_optimizer);
        save_search_groups(groups, &self.vs, self.arch_tensors(), optimizers)
    }

    /// Restores what [`SearchTrainer::checkpoint_groups`] saved.
    pub fn restore(&mut self, checkpoint: &Checkpoint, path: &Path) -> Result<(), RunError> {
        let arch = self.arch_tensors();
        let optimizers = (&mut self.weight_optimizer, &mut self.arch_optimizer);
        restore_search_groups((checkpoint, path), &self.vs, &arch, optimizers)
    }
}

/// The tensors of named pairs, sharing their storage.
fn shallow_values(named: &[(String, Tensor)]) -> Vec<Tensor> {
    named
        .iter()
        .map(|(_, tensor)| tensor.shallow_clone())
        .collect()
}

/// Adds the groups of a search model (CNN or recurrent) to a checkpoint: its variables, its
/// alphas (`arch`, masks included) and the states of its weight (SGD) and alpha (Adam)
/// optimizers.
pub(crate) fn save_search_groups(
    groups: &mut TensorGroups,
    vs: &nn::VarStore,
    arch: Vec<(String, Tensor)>,
    (weight_optimizer, arch_optimizer): (&Sgd, &Adam),
) -> Result<(), OptimError> {
    groups.insert("weights".to_string(), vs.variables().into_iter().collect());
    groups.insert("arch".to_string(), arch);
    groups.insert("weight_optimizer".to_string(), weight_optimizer.state()?);
    groups.insert("arch_optimizer".to_string(), arch_optimizer.state()?);
    Ok(())
}

/// Restores what [`save_search_groups`] saved from the checkpoint read from `path`.
pub(crate) fn restore_search_groups(
    (checkpoint, path): (&Checkpoint, &Path),
    vs: &nn::VarStore,
    arch: &[(String, Tensor)],
    (weight_optimizer, arch_optimizer): (&mut Sgd, &mut Adam),
) -> Result<(), RunError> {
    let variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    checkpoint::restore_named(&variables, checkpoint.group("weights"), path)?;
    checkpoint::restore_named(arch, checkpoint.group("arch"), path)?;
    weight_optimizer.load_state(checkpoint.group("weight_optimizer"))?;
    arch_optimizer.load_state(checkpoint.group("arch_optimizer"))?;
    Ok(())
}

/// The mixed-op slot of a weight named `cells.<c>.edges.<row>.<column>.…`.
fn op_slot(name: &str, shape: &SearchNetShape) -> OpSlot {
    let parts: Vec<&str> = name.split('.').collect();
    match parts.as_slice() {
        ["cells", cell, "edges", row, column, ..] => {
            let cell: i64 = cell.parse().ok()?;
            Some((
                shape.is_reduction(cell),
                row.parse().ok()?,
                column.parse().ok()?,
            ))
        }
        _ => None,
    }
}

/// Mean cross-entropy of logits against class labels, in the logits' precision (tch's
/// `cross_entropy_for_logits` always computes in float32).
pub trait CrossEntropy {
    /// The loss.
    fn apply_cross_entropy(&self, labels: &Tensor) -> Tensor;
}

impl CrossEntropy for Tensor {
    fn apply_cross_entropy(&self, labels: &Tensor) -> Tensor {
        self.log_softmax(-1, self.kind()).nll_loss(labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prime_core::config::SearchConfig;
    use tch::Kind;

    fn tiny_config(activation: Activation) -> SearchConfig {
        let mut config = SearchConfig::default();
        config.network.init_channels = 2;
        config.network.layers = 3;
        config.network.steps = 2;
        config.network.multiplier = 2;
        config.arch.activation = activation;
        config
    }

    fn batch(seed: i64, kind: Kind) -> (Tensor, Tensor) {
        tch::manual_seed(seed);
        let x = Tensor::randn([4, 3, 8, 8], (kind, Device::Cpu));
        let y = Tensor::randint(3, [4], (Kind::Int64, Device::Cpu));
        (x, y)
    }

    /// L_val(w - xi·(∇_w L_train(w, alpha) + wd·w), alpha), evaluated directly.
    fn unrolled_loss(
        trainer: &SearchTrainer,
        train: &(Tensor, Tensor),
        valid: &(Tensor, Tensor),
        xi: f64,
        wd: f64,
    ) -> f64 {
        let params: Vec<Tensor> = trainer
            .weights
            .iter()
            .map(|(_, t)| t.shallow_clone())
            .collect();
        optim::zero_grad(&params).unwrap();
        trainer
            .net
            .forward_t(&train.0, true)
            .apply_cross_entropy(&train.1)
            .backward();
        let original: Vec<Tensor> = params.iter().map(|p| p.detach().copy()).collect();
        tch::no_grad(|| {
            for (param, original) in params.iter().zip(&original) {
                let step = param.grad() + original * wd;
                param.shallow_clone().copy_(&(original - step * xi));
            }
        });
        let loss = tch::no_grad(|| {
            trainer
                .net
                .forward_t(&valid.0, true)
                .apply_cross_entropy(&valid.1)
                .double_value(&[])
        });
        tch::no_grad(|| {
            for (param, original) in params.iter().zip(&original) {
                param.shallow_clone().copy_(original);
            }
        });
        loss
    }

    #[test]
    fn unrolled_gradient_matches_finite_differences() {
        tch::set_num_threads(1);
        let config = tiny_config(Activation::Softmax);
        let mut trainer = SearchTrainer::new(&config, 3, Device::Cpu).unwrap();
        let variables: Vec<Tensor> = trainer.vs.variables().into_values().collect();
        tch::no_grad(|| {
            for mut variable in variables {
                variable.set_data(&variable.to_kind(Kind::Double));
            }
            for alpha in [&trainer.net.arch.normal, &trainer.net.arch.reduce] {
                let mut alpha = alpha.shallow_clone();
                alpha.set_data(&(alpha.to_kind(Kind::Double) * 300.0));
            }
        });
        assert_eq!(trainer.weights[0].1.kind(), Kind::Double);
        let train = batch(1, Kind::Double);
        let valid = batch(2, Kind::Double);
        let (xi, wd) = (0.5, config.weights.weight_decay);
        let (gradients, _) = trainer
            .unrolled_arch_gradient((&train.0, &train.1), (&valid.0, &valid.1), xi, 1e-7, None)
            .unwrap();
        let first_order = {
            trainer.arch_optimizer.zero_grad().unwrap();
            trainer
                .net
                .forward_t(&valid.0, true)
                .apply_cross_entropy(&valid.1)
                .backward();
            trainer.net.arch.normal.grad().copy()
        };
        // ReLU networks are piecewise smooth: both finite differences stay tiny so that no
        // kink lies between the evaluation points.
        let h = 1e-7;
        let mut largest_correction: f64 = 0.0;
        for (row, column) in [(0, 1), (1, 3), (2, 4), (3, 7), (4, 6)] {
            let entry = trainer.net.arch.normal.get(row).get(column);
            let value = entry.double_value(&[]);
            let at = |delta: f64| {
                tch::no_grad(|| {
                    let _ = entry.shallow_clone().fill_(value + delta);
                });
                unrolled_loss(&trainer, &train, &valid, xi, wd)
            };
            let numeric = (at(h) - at(-h)) / (2.0 * h);
            at(0.0);
            let analytic = gradients[0].double_value(&[row, column]);
            let tolerance = 1e-4 + 1e-3 * numeric.abs();
            assert!(
                (numeric - analytic).abs() < tolerance,
                "alpha[{row}][{column}]: unrolled {analytic} vs finite differences {numeric}"
            );
            largest_correction =
                largest_correction.max((analytic - first_order.double_value(&[row, column])).abs());
        }
        assert!(
            largest_correction > 1e-5,
            "the second-order term should matter here"
        );
    }

    #[test]
    fn a_bf16_search_keeps_alphas_fimt_and_optimizer_states_in_float32() {
        tch::set_num_threads(1);
        let mut config = tiny_config(Activation::Softmax);
        config.speed.search_precision = prime_core::config::SearchPrecision::Bf16;
        let mut trainer = SearchTrainer::new(&config, 3, Device::Cpu).unwrap();
        let (x, y) = batch(4, Kind::Float);
        for _ in 0..3 {
            let alpha = trainer.arch_step(&x, &y, None, None).unwrap();
            assert_eq!(alpha.loss.kind(), Kind::Float);
            let step = trainer.weight_step(&x, &y, 0.1, true, None).unwrap();
            assert_eq!(step.tensors.loss.kind(), Kind::Float);
            assert_eq!(step.fimt.unwrap().kind(), Kind::Float);
            assert_eq!(step.grad_norm.kind(), Kind::Float);
        }
        for (name, alpha) in trainer.net.arch.named() {
            assert_eq!(
                (alpha.kind(), alpha.grad().kind()),
                (Kind::Float, Kind::Float),
                "{name}"
            );
        }
        let mut groups = TensorGroups::new();
        trainer.checkpoint_groups(&mut groups).unwrap();
        for (group, tensors) in &groups {
            for (name, tensor) in tensors {
                if tensor.is_floating_point() {
                    assert_eq!(tensor.kind(), Kind::Float, "{group}/{name}");
                }
            }
        }
        assert!(!groups["arch_optimizer"].is_empty() && !groups["weight_optimizer"].is_empty());
    }

    #[test]
    fn pruned_crb_ops_stay_pruned_and_are_not_stepped() {
        tch::set_num_threads(1);
        let config = tiny_config(Activation::Crb);
        let mut trainer = SearchTrainer::new(&config, 3, Device::Cpu).unwrap();
        tch::no_grad(|| {
            let _ = trainer.net.arch.normal.get(0).get(3).fill_(-0.5);
            let _ = trainer.net.arch.normal.get(1).fill_(-0.5);
        });
        trainer.mask_alphas(true).unwrap();
        assert_eq!(trainer.net.arch.pruned_counts().0, 1 + 7);
        let name = "cells.0.edges.0.3.first.depthwise.weight";
        let pruned_weight = trainer
            .weights
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.detach().copy())
            .expect("sep_conv_3x3 of edge 0 exists");
        let (x, y) = batch(3, Kind::Float);
        for _ in 0..3 {
            // A large push upwards cannot bring a pruned op back.
            trainer
                .arch_step(
                    &x,
                    &y,
                    Some(trainer.net.arch.normal.sum(Kind::Float) * -100.0),
                    None,
                )
                .unwrap();
            trainer.mask_alphas(true).unwrap();
            trainer.weight_step(&x, &y, 0.1, true, None).unwrap();
            trainer.mask_alphas(true).unwrap();
        }
        assert_eq!(trainer.net.arch.normal.double_value(&[0, 3]), 0.0);
        assert_eq!(
            trainer
                .net
                .arch
                .normal
                .get(1)
                .abs()
                .sum(Kind::Float)
                .double_value(&[]),
            0.0
        );
        let after = trainer
            .weights
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.detach())
            .unwrap();
        assert!(
            after.equal(&pruned_weight),
            "a pruned op's weights must not move"
        );
    }

    const GLOBAL_BATCH: i64 = 6;
    const ITERATIONS: usize = 2;

    /// A global batch from fixed values: no global generator, which rank threads share.
    fn fixed_batch(offset: f64) -> (Tensor, Tensor) {
        let numel = GLOBAL_BATCH * 3 * 8 * 8;
        let images = (Tensor::arange(numel, (Kind::Float, Device::Cpu)) * 0.37 + offset)
            .sin()
            .reshape([GLOBAL_BATCH, 3, 8, 8]);
        let labels = Tensor::from_slice(&[2i64, 0, 1, 1, 0, 2]);
        (images, labels)
    }

    /// Weights, then alphas, as host copies.
    fn learned(trainer: &SearchTrainer) -> Vec<Tensor> {
        let mut values: Vec<Tensor> = trainer.weights.iter().map(|(_, t)| t.copy()).collect();
        values.extend(
            trainer
                .net
                .arch
                .named()
                .iter()
                .map(|(_, a)| a.detach().copy()),
        );
        values
    }

    /// Copies `values` (as [`learned`] lists them) into the trainer's weights and alphas: the
    /// ranks start from the single process's values whatever other tests draw from libtorch's
    /// process-wide generator while the trainers are built.
    fn set_learned(trainer: &SearchTrainer, values: &[Tensor]) {
        let arch = trainer.net.arch.named();
        let targets = trainer
            .weights
            .iter()
            .map(|(_, t)| t)
            .chain(arch.iter().map(|(_, a)| a));
        tch::no_grad(|| {
            for (target, value) in targets.zip(values) {
                let mut target = target.shallow_clone();
                target.copy_(value);
            }
        });
    }

    /// The gradients of one process that takes each half of `batch` through the network on
    /// its own (its own batch-norm statistics), the halves' losses weighted by their sizes.
    fn per_shard_backward(trainer: &SearchTrainer, (images, labels): &(Tensor, Tensor)) {
        for rank in 0..2 {
            let rows = crate::parallel::gradients::shard(GLOBAL_BATCH as usize, rank, 2);
            let (start, len) = (rows.start as i64, rows.len() as i64);
            let loss = trainer
                .net
                .forward_t(&images.narrow(0, start, len), true)
                .apply_cross_entropy(&labels.narrow(0, start, len));
            (loss * (len as f64 / GLOBAL_BATCH as f64)).backward();
        }
    }

    /// One search iteration (alpha step, weight step) of that process; returns the FIMT.
    fn per_shard_iteration(trainer: &mut SearchTrainer, lr: f64) -> f64 {
        trainer.arch_optimizer.zero_grad().unwrap();
        set_requires_grad(&trainer.weights, false);
        per_shard_backward(trainer, &fixed_batch(1.0));
        set_requires_grad(&trainer.weights, true);
        trainer.arch_optimizer.step(trainer.arch_lr).unwrap();
        trainer.weight_optimizer.zero_grad().unwrap();
        let arch = trainer.net.arch.named();
        set_requires_grad(&arch, false);
        per_shard_backward(trainer, &fixed_batch(0.0));
        set_requires_grad(&arch, true);
        let params = || trainer.weights.iter().map(|(_, p)| p);
        let fimt = optim::grad_squared_sum(params()).unwrap().double_value(&[]);
        let _ = optim::clip_grad_norm(params(), trainer.grad_clip).unwrap();
        trainer.weight_optimizer.step(lr).unwrap();
        fimt
    }

    /// Two ranks on halves of the global alpha and weight batches take the alpha and weight
    /// steps, and see the FIMT, of one process normalising each half on its own.
    #[test]
    fn two_ranks_search_like_one_process_normalising_each_shard_on_its_own() {
        use crate::parallel::cpu::CpuCommunicator;
        tch::set_num_threads(1);
        let config = tiny_config(Activation::Softmax);
        let lr = 0.05;
        let mut single = SearchTrainer::new(&config, 3, Device::Cpu).unwrap();
        let start = learned(&single);
        let ranks: Vec<(Vec<Tensor>, Vec<f64>)> = std::thread::scope(|scope| {
            let threads: Vec<_> = CpuCommunicator::group(2, std::time::Duration::from_secs(120))
                .into_iter()
                .map(|comm| {
                    let config = &config;
                    let start: Vec<Tensor> = start.iter().map(Tensor::copy).collect();
                    scope.spawn(move || {
                        let mut ranks = DataParallel::new(Box::new(comm));
                        let mut trainer = SearchTrainer::new(config, 3, Device::Cpu).unwrap();
                        set_learned(&trainer, &start);
                        trainer.take_rank0_weights(&mut ranks).unwrap();
                        let mut fimts = Vec::new();
                        for _ in 0..ITERATIONS {
                            let (xv, yv) = fixed_batch(1.0);
                            trainer.arch_step(&xv, &yv, None, Some(&mut ranks)).unwrap();
                            let (x, y) = fixed_batch(0.0);
                            let step = trainer
                                .weight_step(&x, &y, lr, true, Some(&mut ranks))
                                .unwrap();
                            fimts.push(step.fimt.unwrap().double_value(&[]));
                        }
                        (learned(&trainer), fimts)
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let fimts: Vec<f64> = (0..ITERATIONS)
            .map(|_| per_shard_iteration(&mut single, lr))
            .collect();
        let single = learned(&single);
        let largest_gap = |a: &[Tensor], b: &[Tensor]| {
            a.iter()
                .zip(b)
                .map(|(a, b)| (a - b).abs().max().double_value(&[]))
                .fold(0.0, f64::max)
        };
        let (rank0, rank1) = (&ranks[0], &ranks[1]);
        assert!(rank0.0.iter().zip(&rank1.0).all(|(a, b)| a.equal(b)));
        assert_eq!(rank0.1, rank1.1, "every rank sees the same FIMT");
        assert!(
            largest_gap(&start, &single) > 1e-4,
            "the steps moved weights and alphas"
        );
        let gap = largest_gap(&rank0.0, &single);
        assert!(gap < 1e-5, "two ranks vs per-shard statistics: {gap}");
        for (got, want) in rank0.1.iter().zip(&fimts) {
            assert!(
                (got - want).abs() <= 1e-4 * want.abs(),
                "FIMT {got} vs {want}"
            );
        }
    }
}
