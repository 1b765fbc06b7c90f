//! One training step and one test batch of evaluation training (SPEC 6.5, 6.6): the network,
//! its SGD optimizer over every parameter (auxiliary head included), and the speed options.

use super::precision::{convert_store_to_channels_last, to_channels_last, ComputeCopy, LossScaler};
use crate::checkpoint::{self, Checkpoint};
use crate::cnn::eval_cost::ParameterCounts;
use crate::cnn::eval_net::{DropPathMasks, EvalNetShape, EvalNetwork};
use crate::error::RunError;
use crate::optim::{self, OptimError, Optimizer, Sgd, SgdConfig};
use crate::parallel::rank::{DataParallel, Shard};
use crate::run::TensorGroups;
use crate::train_step::{accuracy_count, StepTensors};
use prime_core::eval_config::{Autocast, EvalConfig};
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

/// The evaluation network with its optimizer and speed options.
pub struct EvalTrainer {
    /// The float32 master weights and batch-norm statistics.
    vs: nn::VarStore,
    /// The network on the master weights.
    net: EvalNetwork,
    params: Vec<(String, Tensor)>,
    /// The batch-norm running statistics (every variable that is not trained).
    buffers: Vec<Tensor>,
    optimizer: Sgd,
    compute: Option<ComputeCopy>,
    scaler: Option<LossScaler>,
    channels_last: bool,
    aux_weight: f64,
    grad_clip: f64,
}

impl std::fmt::Debug for EvalTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvalTrainer")
            .field("shape", self.net.shape())
            .field("compute", &self.compute)
            .field("channels_last", &self.channels_last)
            .finish()
    }
}

impl EvalTrainer {
    /// Builds the network of `config` on `device`, drawing the weights from the torch
    /// generator seeded with `config.seed` (see [`crate::torch_rng::seeded`]), and applies the
    /// speed options.
    pub fn new(config: &EvalConfig, device: Device) -> Result<Self, RunError> {
        crate::torch_rng::seeded(config.seed, || Self::build(config, device))
    }

    fn build(config: &EvalConfig, device: Device) -> Result<Self, RunError> {
        let speed = &config.speed;
        crate::cudnn::set_benchmark(device, speed.cudnn_benchmark);
        let vs = nn::VarStore::new(device);
        let shape = network_shape(config);
        let net = EvalNetwork::new(&vs, shape, &config.genotype)?;
        let kind = match speed.autocast {
            Autocast::Off => None,
            Autocast::Bf16 => Some(Kind::BFloat16),
            Autocast::Fp16 => Some(Kind::Half),
        };
        let compute = match kind {
            Some(kind) => Some(ComputeCopy::new(
                &vs,
                shape,
                &config.genotype,
                kind,
                speed.channels_last,
            )?),
            None => {
                if speed.channels_last {
                    convert_store_to_channels_last(&vs);
                }
                None
            }
        };
        let params = optim::trainable_parameters(&vs);
        let buffers = optim::untrained_variables(&vs);
        let optimizer = Sgd::new(
            params
                .iter()
                .map(|(name, tensor)| (name.clone(), tensor.shallow_clone()))
                .collect(),
            SgdConfig {
                momentum: config.weights.momentum,
                weight_decay: config.weights.weight_decay,
            },
        )?;
        if let Some(compute) = &compute {
            compute.define_master_grads()?;
        }
        let scaler = (speed.autocast == Autocast::Fp16).then(|| LossScaler::new(device));
        Ok(Self {
            vs,
            net,
            params,
            buffers,
            optimizer,
            compute,
            scaler,
            channels_last: speed.channels_last,
            aux_weight: config.network.auxiliary_weight,
            grad_clip: config.weights.grad_clip,
        })
    }

    /// Trainable parameters by the paper's convention.
    pub fn parameter_counts(&self) -> ParameterCounts {
        ParameterCounts::of(&self.vs)
    }

    /// The network that runs the passes and the batch converted for it.
    fn prepared(&self, images: &Tensor) -> (&EvalNetwork, Tensor) {
        match &self.compute {
            Some(compute) => (compute.net(), compute.prepare(images)),
            None if self.channels_last => (&self.net, to_channels_last(images)),
            None => (&self.net, images.shallow_clone()),
        }
    }

    /// One training step (SPEC 6.5, 6.6): loss CE(logits) + w·CE(aux logits) with drop path
    /// `drop_prob` (masks drawn from a generator seeded with `mask_key`), backward,
    /// global-norm clipping of every gradient, SGD at `lr`. Returns the loss and the number of
    /// correct main predictions, on the device (no synchronisation, except that float16
    /// training reads whether the gradients overflowed).
    ///
    /// With `ranks`, `images` and `labels` are the global batch: the step trains on this
    /// rank's rows of it, replaces the gradients by the global batch's before clipping, and
    /// afterwards takes rank 0's batch-norm statistics (PyTorch DDP's `broadcast_buffers`);
    /// the loss and count returned are this rank's.
    pub fn train_step(
        &mut self,
        images: &Tensor,
        labels: &Tensor,
        lr: f64,
        drop_prob: f64,
        mask_key: u64,
        mut ranks: Option<&mut DataParallel>,
    ) -> Result<StepTensors, RunError> {
        match &self.compute {
            Some(compute) => compute.zero_grad()?,
            None => self.optimizer.zero_grad()?,
        }
        let batch = labels.size()[0] as usize;
        let Shard {
            images,
            labels,
            rows,
        } = Shard::of(images, labels, ranks.as_deref());
        let (images, labels) = (&images, &labels);
        let (net, input) = self.prepared(images);
        let masks = (drop_prob > 0.0).then(|| {
            DropPathMasks::sample(
                drop_prob,
                net.drop_path_sites(),
                batch as i64,
                mask_key,
                labels.device(),
            )
            .rows(rows.clone())
        });
        let output = net.forward_t(&input, true, masks.as_ref());
        let logits = output.logits.to_kind(Kind::Float);
        let mut loss = logits.cross_entropy_for_logits(labels);
        if let Some(aux_logits) = &output.aux_logits {
            let aux_loss = aux_logits
                .to_kind(Kind::Float)
                .cross_entropy_for_logits(labels);
            loss += aux_loss * self.aux_weight;
        }
        match &self.scaler {
            Some(scaler) => scaler.scale(&loss).backward(),
            None => loss.backward(),
        }
        if let Some(compute) = &self.compute {
            compute.transfer_grads()?;
        }
        if let Some(ranks) = ranks.as_deref_mut() {
            let params: Vec<Tensor> = self.params.iter().map(|(_, p)| p.shallow_clone()).collect();
            ranks.reduce_gradients(&params, rows.len(), batch)?;
        }
        let found_inf = match &self.scaler {
            Some(scaler) => Some(scaler.unscale(self.params.iter().map(|(_, p)| p))?),
            None => None,
        };
        // The norm before clipping is a device tensor nobody reads: no synchronisation.
        let _norm = optim::clip_grad_norm(self.params.iter().map(|(_, p)| p), self.grad_clip)?;
        match (found_inf, self.scaler.as_mut()) {
            (Some(found_inf), Some(scaler)) => {
                // As PyTorch's GradScaler: a step whose gradients overflowed is skipped.
                if optim::read_scalar(&found_inf)? == 0.0 {
                    self.optimizer.step(lr)?;
                }
                scaler.update(&found_inf)?;
            }
            _ => self.optimizer.step(lr)?,
        }
        if let Some(ranks) = ranks {
            ranks.broadcast(&self.buffers)?;
        }
        if let Some(compute) = &self.compute {
            compute.refresh()?;
        }
        Ok(StepTensors {
            correct: accuracy_count(&logits, labels),
            loss: loss.detach(),
            count: labels.size()[0] as usize,
        })
    }

    /// Copies rank 0's weights and batch-norm statistics to this rank (the start of a
    /// data-parallel run).
    pub fn take_rank0_weights(&mut self, ranks: &mut DataParallel) -> Result<(), RunError> {
        let variables: Vec<Tensor> = self.variables().into_iter().map(|(_, t)| t).collect();
        ranks.broadcast(&variables)?;
        if let Some(compute) = &self.compute {
            compute.refresh()?;
        }
        Ok(())
    }

    /// Eval-mode summed loss and correct count over one test batch (no drop path, no
    /// auxiliary head), without gradients.
    pub fn test_batch(&self, images: &Tensor, labels: &Tensor) -> StepTensors {
        tch::no_grad(|| {
            let (net, input) = self.prepared(images);
            let logits = net
                .forward_t(&input, false, None)
                .logits
                .to_kind(Kind::Float);
            let count = labels.size()[0] as usize;
            StepTensors {
                loss: logits.cross_entropy_for_logits(labels) * count as f64,
                correct: accuracy_count(&logits, labels),
                count,
            }
        })
    }

    /// Every variable of the master store (weights and batch-norm statistics), by name.
    pub fn variables(&self) -> Vec<(String, Tensor)> {
        let mut variables: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        variables.sort_by(|(a, _), (b, _)| a.cmp(b));
        variables
    }

    /// Adds the checkpoint groups (weights, optimizer, the float16 loss scaler) to `groups`.
    pub fn checkpoint_groups(&self, groups: &mut TensorGroups) -> Result<(), OptimError> {
        groups.insert("weights".to_string(), self.variables());
        groups.insert("optimizer".to_string(), self.optimizer.state()?);
        if let Some(scaler) = &self.scaler {
            groups.insert("loss_scale".to_string(), scaler.state());
        }
        Ok(())
    }

    /// Restores what [`EvalTrainer::checkpoint_groups`] saved, then brings the
    /// reduced-precision copy up to date with the restored master weights.
    pub fn restore(&mut self, checkpoint: &Checkpoint, path: &Path) -> Result<(), RunError> {
        checkpoint::restore_named(&self.variables(), checkpoint.group("weights"), path)?;
        self.optimizer.load_state(checkpoint.group("optimizer"))?;
        if let Some(scaler) = &self.scaler {
            checkpoint::restore_named(&scaler.state(), checkpoint.group("loss_scale"), path)?;
        }
        if let Some(compute) = &self.compute {
            compute.refresh()?;
        }
        Ok(())
    }
}

/// The network shape a config asks for.
pub fn network_shape(config: &EvalConfig) -> EvalNetShape {
    EvalNetShape {
        channels: config.network.init_channels,
        classes: config.classes(),
        layers: config.network.layers,
        auxiliary: config.network.auxiliary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prime_core::config::LayeredConfig;

    #[test]
    fn the_same_seed_builds_the_same_network() {
        let config = EvalConfig::from_overrides(&[
            "network.init_channels=4".to_string(),
            "network.layers=3".to_string(),
            "seed=5".to_string(),
        ])
        .unwrap();
        let weights = |config: &EvalConfig| -> Vec<Tensor> {
            let trainer = EvalTrainer::new(config, Device::Cpu).unwrap();
            trainer.variables().into_iter().map(|(_, t)| t).collect()
        };
        let a = weights(&config);
        let b = weights(&config);
        assert!(a.iter().zip(&b).all(|(a, b)| a.equal(b)));
        let mut other = config.clone();
        other.seed = 6;
        let c = weights(&other);
        assert!(a.iter().zip(&c).any(|(a, c)| !a.equal(c)));
    }

    const GLOBAL_BATCH: i64 = 6;
    const STEPS: u64 = 3;
    const LR: f64 = 0.05;
    const DROP_PROB: f64 = 0.2;

    fn tiny_config() -> EvalConfig {
        EvalConfig::from_overrides(&[
            "network.init_channels=4".to_string(),
            "network.layers=3".to_string(),
            "seed=5".to_string(),
        ])
        .unwrap()
    }

    /// A global batch from fixed values: no global generator, which rank threads share.
    fn global_batch() -> (Tensor, Tensor) {
        let numel = GLOBAL_BATCH * 3 * 32 * 32;
        let images = (Tensor::arange(numel, (Kind::Float, Device::Cpu)) * 0.37)
            .sin()
            .reshape([GLOBAL_BATCH, 3, 32, 32]);
        let labels = Tensor::from_slice(&[3i64, 1, 4, 1, 5, 9]);
        (images, labels)
    }

    fn trained_values(trainer: &EvalTrainer) -> Vec<Tensor> {
        trainer
            .params
            .iter()
            .map(|(_, p)| p.detach().copy())
            .collect()
    }

    /// Copies `values` (as [`trained_values`] lists them) into the trainer's parameters: every
    /// trainer starts from the same values whatever other tests draw from libtorch's
    /// process-wide generator while the trainers are built.
    fn set_values(trainer: &EvalTrainer, values: &[Tensor]) {
        tch::no_grad(|| {
            for ((_, param), value) in trainer.params.iter().zip(values) {
                let mut param = param.shallow_clone();
                param.copy_(value);
            }
        });
    }

    /// One process computing what two ranks compute: each half of the batch through the
    /// network on its own (its own batch-norm statistics and drop-path mask rows), the
    /// losses weighted by the halves' sizes and accumulated, then one clipped SGD step.
    fn per_shard_step(trainer: &mut EvalTrainer, images: &Tensor, labels: &Tensor, key: u64) {
        trainer.optimizer.zero_grad().unwrap();
        let masks = DropPathMasks::sample(
            DROP_PROB,
            trainer.net.drop_path_sites(),
            GLOBAL_BATCH,
            key,
            Device::Cpu,
        );
        for rank in 0..2 {
            let rows = crate::parallel::gradients::shard(GLOBAL_BATCH as usize, rank, 2);
            let (start, len) = (rows.start as i64, rows.len() as i64);
            let labels = labels.narrow(0, start, len);
            let output =
                trainer
                    .net
                    .forward_t(&images.narrow(0, start, len), true, Some(&masks.rows(rows)));
            let mut loss = output.logits.cross_entropy_for_logits(&labels);
            if let Some(aux_logits) = &output.aux_logits {
                loss += aux_logits.cross_entropy_for_logits(&labels) * trainer.aux_weight;
            }
            (loss * (len as f64 / GLOBAL_BATCH as f64)).backward();
        }
        let _ = optim::clip_grad_norm(trainer.params.iter().map(|(_, p)| p), trainer.grad_clip)
            .unwrap();
        trainer.optimizer.step(LR).unwrap();
    }

    /// Two ranks on halves of one global batch take the step of one process that normalises
    /// each half with its own batch-norm statistics (PyTorch DDP's behaviour), not the step
    /// of one device normalising the whole batch.
    #[test]
    fn two_ranks_step_like_one_process_normalising_each_shard_on_its_own() {
        use crate::parallel::cpu::CpuCommunicator;
        tch::set_num_threads(1);
        let config = tiny_config();
        let (images, labels) = global_batch();
        let mut per_shard = EvalTrainer::new(&config, Device::Cpu).unwrap();
        let mut whole = EvalTrainer::new(&config, Device::Cpu).unwrap();
        let start = trained_values(&per_shard);
        set_values(&whole, &start);
        let ranks: Vec<Vec<Tensor>> = std::thread::scope(|scope| {
            let threads: Vec<_> = CpuCommunicator::group(2, std::time::Duration::from_secs(120))
                .into_iter()
                .map(|comm| {
                    let config = &config;
                    let (images, labels) = (images.shallow_clone(), labels.shallow_clone());
                    let start: Vec<Tensor> = start.iter().map(Tensor::copy).collect();
                    scope.spawn(move || {
                        let mut ranks = DataParallel::new(Box::new(comm));
                        let mut trainer = EvalTrainer::new(config, Device::Cpu).unwrap();
                        set_values(&trainer, &start);
                        trainer.take_rank0_weights(&mut ranks).unwrap();
                        for key in 0..STEPS {
                            trainer
                                .train_step(&images, &labels, LR, DROP_PROB, key, Some(&mut ranks))
                                .unwrap();
                        }
                        trained_values(&trainer)
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        for key in 0..STEPS {
            per_shard_step(&mut per_shard, &images, &labels, key);
            whole
                .train_step(&images, &labels, LR, DROP_PROB, key, None)
                .unwrap();
        }
        let (per_shard, whole) = (trained_values(&per_shard), trained_values(&whole));
        let largest_gap = |a: &[Tensor], b: &[Tensor]| {
            a.iter()
                .zip(b)
                .map(|(a, b)| (a - b).abs().max().double_value(&[]))
                .fold(0.0, f64::max)
        };
        assert!(
            ranks[0].iter().zip(&ranks[1]).all(|(a, b)| a.equal(b)),
            "every rank holds bitwise the same weights"
        );
        assert!(
            largest_gap(&start, &per_shard) > 1e-3,
            "the steps moved the weights"
        );
        let gap = largest_gap(&ranks[0], &per_shard);
        assert!(gap < 1e-5, "two ranks vs per-shard statistics: {gap}");
        let gap = largest_gap(&ranks[0], &whole);
        assert!(
            gap > 1e-4,
            "per-shard statistics differ from whole-batch ones: {gap}"
        );
    }
}
