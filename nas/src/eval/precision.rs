//! Speed options of evaluation training: the channels-last memory format, and mixed precision
//! with float32 master weights and dynamic loss scaling.
//!
//! libtorch's autocast can only be switched on from tch, not told which reduced type to use,
//! so mixed precision is done the way autocast treats a network of convolutions: a copy of the
//! network whose convolution and linear weights are bfloat16 or float16 runs the forward and
//! backward passes; its batch norms share the float32 parameters and running statistics of the
//! master network (libtorch's batch norm takes reduced-precision input with float32
//! parameters). After the backward pass the gradients move to the master weights, which the
//! optimizer updates in float32, and the copy is refreshed from them.

use crate::cnn::eval_net::{EvalNetError, EvalNetShape, EvalNetwork};
use crate::optim::{self, OptimError};
use prime_core::genotype::Genotype;
use std::collections::{BTreeMap, BTreeSet};
use tch::{nn, Kind, Tensor};

/// Initial loss scale of float16 training (PyTorch's GradScaler default, 2^16).
const INITIAL_LOSS_SCALE: f64 = 65_536.0;
/// The scale grows by this factor after `LOSS_SCALE_GROWTH_INTERVAL` finite steps in a row.
const LOSS_SCALE_GROWTH: f64 = 2.0;
/// The scale shrinks by this factor after a step with an infinite or NaN gradient.
const LOSS_SCALE_BACKOFF: f64 = 0.5;
/// Finite steps in a row before the scale grows.
const LOSS_SCALE_GROWTH_INTERVAL: i64 = 2000;
/// Suffix of a batch norm's running mean, which marks its module path.
const RUNNING_MEAN: &str = "running_mean";

/// The same tensor in the channels-last (NHWC) memory format; other than 4-d tensors are
/// returned as they are.
pub fn to_channels_last(xs: &Tensor) -> Tensor {
    if xs.dim() != 4 {
        return xs.shallow_clone();
    }
    xs.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Moves every 4-d variable of `vs` (the convolution weights) to the channels-last format in
/// place, keeping its identity, so that optimizers and modules holding it see the change.
pub fn convert_store_to_channels_last(vs: &nn::VarStore) {
    tch::no_grad(|| {
        for (_, mut variable) in vs.variables() {
            if variable.dim() == 4 {
                let converted = to_channels_last(&variable.detach());
                variable.set_data(&converted);
            }
        }
    });
}

/// A reduced-precision copy of the network that computes the passes for float32 master
/// weights.
pub struct ComputeCopy {
    kind: Kind,
    channels_last: bool,
    _vs: nn::VarStore,
    net: EvalNetwork,
    /// (master, copy) of every trainable variable.
    trainable: Vec<(Tensor, Tensor)>,
    /// (master, copy) of the variables held in reduced precision (all but batch norm).
    converted: Vec<(Tensor, Tensor)>,
}

impl std::fmt::Debug for ComputeCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComputeCopy")
            .field("kind", &self.kind)
            .field("channels_last", &self.channels_last)
            .field("variables", &self.converted.len())
            .finish()
    }
}

impl ComputeCopy {
    /// Builds the copy of the network in `master` (same shape and genotype) with weights of
    /// `kind` and batch norms shared with the master.
    pub fn new(
        master: &nn::VarStore,
        shape: EvalNetShape,
        genotype: &Genotype,
        kind: Kind,
        channels_last: bool,
    ) -> Result<Self, EvalNetError> {
        let vs = nn::VarStore::new(master.device());
        let net = EvalNetwork::new(&vs, shape, genotype)?;
        let master_variables: BTreeMap<String, Tensor> = master.variables().into_iter().collect();
        let batch_norms: BTreeSet<String> = master_variables
            .keys()
            .filter_map(|name| name.strip_suffix(RUNNING_MEAN).map(str::to_string))
            .collect();
        let mut trainable = Vec::new();
        let mut converted = Vec::new();
        let copies: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
        tch::no_grad(|| -> Result<(), EvalNetError> {
            for (name, mut copy) in copies {
                let source = master_variables.get(&name).ok_or_else(|| {
                    EvalNetError::Shape(format!("variable `{name}` has no master"))
                })?;
                let module = name.rsplit_once('.').map_or("", |(module, _)| module);
                if batch_norms.contains(&format!("{module}.")) {
                    copy.set_data(&source.detach());
                } else {
                    let reduced = source.detach().to_kind(kind);
                    let reduced = if channels_last {
                        to_channels_last(&reduced)
                    } else {
                        reduced
                    };
                    copy.set_data(&reduced);
                    converted.push((source.shallow_clone(), copy.shallow_clone()));
                }
                if copy.requires_grad() {
                    trainable.push((source.shallow_clone(), copy));
                }
            }
            Ok(())
        })?;
        Ok(Self {
            kind,
            channels_last,
            _vs: vs,
            net,
            trainable,
            converted,
        })
    }

    /// The network that computes.
    pub fn net(&self) -> &EvalNetwork {
        &self.net
    }

    /// A float32 NCHW batch in the copy's precision and memory format.
    pub fn prepare(&self, images: &Tensor) -> Tensor {
        let images = images.to_kind(self.kind);
        if self.channels_last {
            to_channels_last(&images)
        } else {
            images
        }
    }

    /// Zeroes the copy's gradients.
    pub fn zero_grad(&self) -> Result<(), OptimError> {
        optim::zero_grad(self.trainable.iter().map(|(_, copy)| copy))
    }

    /// Makes every master weight's gradient defined, so that [`ComputeCopy::transfer_grads`]
    /// can write into it.
    pub fn define_master_grads(&self) -> Result<(), OptimError> {
        for (master, _) in &self.trainable {
            if !master.f_grad()?.defined() {
                master.f_mul_scalar(0.0)?.f_sum(Kind::Float)?.f_backward()?;
            }
        }
        Ok(())
    }

    /// Copies the copy's gradients, converted to float32, into the master weights' gradients
    /// (zero where the copy has none).
    pub fn transfer_grads(&self) -> Result<(), OptimError> {
        tch::no_grad(|| {
            for (master, copy) in &self.trainable {
                let mut target = master.f_grad()?;
                let source = copy.f_grad()?;
                if source.defined() {
                    target.f_copy_(&source)?;
                } else {
                    let _ = target.f_zero_()?;
                }
            }
            Ok(())
        })
    }

    /// Refreshes the reduced-precision weights from the master weights.
    pub fn refresh(&self) -> Result<(), OptimError> {
        tch::no_grad(|| {
            for (master, copy) in &self.converted {
                copy.shallow_clone().f_copy_(master)?;
            }
            Ok(())
        })
    }
}

/// Dynamic loss scaling of float16 training, with PyTorch GradScaler's defaults and kernels.
#[derive(Debug)]
pub struct LossScaler {
    scale: Tensor,
    growth_tracker: Tensor,
}

impl LossScaler {
    /// A scaler at the initial scale on `device`.
    pub fn new(device: tch::Device) -> Self {
        Self {
            scale: Tensor::full([1], INITIAL_LOSS_SCALE, (Kind::Float, device)),
            growth_tracker: Tensor::zeros([1], (Kind::Int, device)),
        }
    }

    /// The loss multiplied by the current scale.
    pub fn scale(&self, loss: &Tensor) -> Tensor {
        loss * &self.scale
    }

    /// Divides every defined gradient of `params` by the scale and returns a one-element
    /// tensor that is 1 if any of them was infinite or NaN, else 0.
    pub fn unscale<'a>(
        &self,
        params: impl IntoIterator<Item = &'a Tensor>,
    ) -> Result<Tensor, OptimError> {
        tch::no_grad(|| {
            let inverse = self.scale.f_reciprocal()?;
            let mut found_inf = Tensor::f_zeros([1], (Kind::Float, self.scale.device()))?;
            for param in params {
                let mut grad = param.f_grad()?;
                if grad.defined() {
                    grad.f_internal_amp_non_finite_check_and_unscale(&mut found_inf, &inverse)?;
                }
            }
            Ok(found_inf)
        })
    }

    /// Backs the scale off after a non-finite step, or grows it after enough finite ones.
    pub fn update(&mut self, found_inf: &Tensor) -> Result<(), OptimError> {
        let _ = self.scale.f_internal_amp_update_scale_(
            &self.growth_tracker,
            found_inf,
            LOSS_SCALE_GROWTH,
            LOSS_SCALE_BACKOFF,
            LOSS_SCALE_GROWTH_INTERVAL,
        )?;
        Ok(())
    }

    /// The state tensors (to checkpoint, and to restore into).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        vec![
            ("scale".to_string(), self.scale.shallow_clone()),
            (
                "growth_tracker".to_string(),
                self.growth_tracker.shallow_clone(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cnn::eval_net::DropPathMasks;
    use tch::Device;

    #[test]
    fn channels_last_keeps_values_and_changes_strides() {
        let xs = Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, Device::Cpu)).view([2, 3, 4, 5]);
        let ys = to_channels_last(&xs);
        assert!(xs.equal(&ys));
        assert_eq!(ys.stride(), vec![60, 1, 15, 3]);
    }

    #[test]
    fn the_copy_shares_batch_norm_and_follows_the_master() {
        tch::set_num_threads(1);
        tch::manual_seed(0);
        let shape = EvalNetShape {
            channels: 4,
            classes: 10,
            layers: 3,
            auxiliary: true,
        };
        let genotype = Genotype::builtin("DARTS_V2").unwrap();
        let master = nn::VarStore::new(Device::Cpu);
        let _net = EvalNetwork::new(&master, shape, &genotype).unwrap();
        let copy = ComputeCopy::new(&master, shape, &genotype, Kind::BFloat16, true).unwrap();
        let variables: BTreeMap<String, Tensor> = master.variables().into_iter().collect();
        let batch_norm_variables = variables.keys().filter(|name| name.contains(".bn")).count();
        assert_eq!(
            copy.converted.len() + batch_norm_variables,
            variables.len(),
            "every variable outside batch norm is converted"
        );
        let classifier = &variables["classifier.weight"];
        let copied = copy
            .converted
            .iter()
            .find(|(master, _)| master.data_ptr() == classifier.data_ptr())
            .map(|(_, copy)| copy.shallow_clone())
            .unwrap();
        assert_eq!(copied.kind(), Kind::BFloat16);
        tch::no_grad(|| {
            let _ = classifier.shallow_clone().fill_(0.5);
        });
        copy.refresh().unwrap();
        assert_eq!(copied.double_value(&[0, 0]), 0.5);

        let xs = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        let running = variables["stem.bn.running_mean"].copy();
        let masks = DropPathMasks::sample(0.1, copy.net().drop_path_sites(), 2, 1, Device::Cpu);
        let out = copy.net().forward_t(&copy.prepare(&xs), true, Some(&masks));
        assert_eq!(out.logits.kind(), Kind::BFloat16);
        assert!(
            !running.equal(&variables["stem.bn.running_mean"]),
            "the copy's batch norm updates the master's running statistics"
        );
        copy.define_master_grads().unwrap();
        copy.zero_grad().unwrap();
        let loss = out.logits.to_kind(Kind::Float).sum(Kind::Float)
            + out
                .aux_logits
                .unwrap()
                .to_kind(Kind::Float)
                .sum(Kind::Float);
        loss.backward();
        copy.transfer_grads().unwrap();
        let grad = variables["stem.conv.weight"].grad();
        assert_eq!(grad.kind(), Kind::Float);
        assert!(grad.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }

    #[test]
    fn loss_scaler_unscales_and_backs_off_on_overflow() {
        let device = Device::Cpu;
        let mut scaler = LossScaler::new(device);
        let param = Tensor::ones([2], (Kind::Float, device)).set_requires_grad(true);
        scaler.scale(&(&param * 3.0).sum(Kind::Float)).backward();
        let found = scaler.unscale([&param]).unwrap();
        assert_eq!(found.double_value(&[0]), 0.0);
        assert_eq!(param.grad().double_value(&[0]), 3.0);
        let _ = param.grad().fill_(f64::INFINITY);
        let found = scaler.unscale([&param]).unwrap();
        assert_eq!(found.double_value(&[0]), 1.0);
        scaler.update(&found).unwrap();
        assert_eq!(
            scaler.state()[0].1.double_value(&[0]),
            INITIAL_LOSS_SCALE / 2.0
        );
    }
}
