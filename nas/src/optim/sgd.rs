//! Stochastic gradient descent with momentum and L2 weight decay (SPEC A.1), as PyTorch's
//! `torch.optim.SGD` with dampening 0 and no Nesterov momentum.

use tch::Tensor;

use super::params::{ParamList, ScalarCache};
use super::state::{entry_name, export, parse_entries, EntryKind, EntrySpec};
use super::{check_lr, check_non_negative, OptimError, Optimizer};

/// Hyper-parameters of [`Sgd`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    /// Momentum factor mu (0 disables the momentum buffer).
    pub momentum: f64,
    /// L2 penalty added to the gradient: d = g + weight_decay * p.
    pub weight_decay: f64,
}

/// Name suffix of the momentum buffer in the saved state.
const MOMENTUM_BUFFER: &str = "momentum_buffer";

/// The state entries of one parameter.
const SPECS: [EntrySpec; 1] = [EntrySpec {
    suffix: MOMENTUM_BUFFER,
    kind: EntryKind::LikeParameter,
}];

/// SGD: d = g + wd * p; with momentum, buf = d on the first step and buf = mu * buf + d
/// afterwards, d = buf; then p <- p - lr * d.
pub struct Sgd {
    params: ParamList,
    config: SgdConfig,
    momentum_buffers: Vec<Option<Tensor>>,
    scalars: ScalarCache,
}

impl Sgd {
    /// An SGD optimizer over `params` (names must be unique and non-empty).
    pub fn new(params: Vec<(String, Tensor)>, config: SgdConfig) -> Result<Self, OptimError> {
        check_non_negative("momentum", config.momentum)?;
        check_non_negative("weight_decay", config.weight_decay)?;
        let params = ParamList::new(params)?;
        let momentum_buffers = params.as_slice().iter().map(|_| None).collect();
        Ok(Self {
            params,
            config,
            momentum_buffers,
            scalars: ScalarCache::default(),
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> SgdConfig {
        self.config
    }

    /// The momentum buffer of parameter `name`, or `None` before its first step or without
    /// momentum (the unrolled architecture step of SPEC 3.7 reads it).
    pub fn momentum_buffer(&self, name: &str) -> Result<Option<&Tensor>, OptimError> {
        let position = self.params.position(name)?;
        Ok(self.momentum_buffers[position].as_ref())
    }

    /// Like [`Optimizer::step`], but only parameters whose index (in construction order)
    /// satisfies `include` are updated; the others keep their parameters and state, as
    /// PyTorch leaves parameters whose gradient is `None` (CRB-pruned ops, which never ran).
    pub fn step_where(
        &mut self,
        lr: f64,
        include: impl Fn(usize) -> bool,
    ) -> Result<(), OptimError> {
        check_lr(lr)?;
        let Self {
            params,
            config,
            momentum_buffers,
            scalars,
        } = self;
        tch::no_grad(|| {
            for (index, ((_, param), buffer)) in params
                .as_slice()
                .iter()
                .zip(momentum_buffers.iter_mut())
                .enumerate()
            {
                if !include(index) {
                    continue;
                }
                let grad = param.f_grad()?;
                if !grad.defined() {
                    continue;
                }
                // grad.add(param, alpha=weight_decay)
                let direction = if config.weight_decay != 0.0 {
                    grad.f_addcmul(param, &scalars.get(config.weight_decay, param)?)?
                } else {
                    grad
                };
                let direction = if config.momentum != 0.0 {
                    match buffer {
                        Some(buf) => {
                            // buf.mul_(momentum).add_(grad, alpha=1 - dampening)
                            let _ = buf.f_mul_scalar_(config.momentum)?;
                            let _ = buf.f_add_(&direction)?;
                            buf.shallow_clone()
                        }
                        None => {
                            let buf = direction.f_detach_copy()?;
                            *buffer = Some(buf.shallow_clone());
                            buf
                        }
                    }
                } else {
                    direction
                };
                // param.add_(grad, alpha=-lr)
                let _ = param
                    .shallow_clone()
                    .f_addcmul_(&direction, &scalars.get(-lr, param)?)?;
            }
            Ok(())
        })
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, lr: f64) -> Result<(), OptimError> {
        self.step_where(lr, |_| true)
    }

    fn parameters(&self) -> &[(String, Tensor)] {
        self.params.as_slice()
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>, OptimError> {
        let mut entries = Vec::new();
        for ((name, _), buffer) in self.params.as_slice().iter().zip(&self.momentum_buffers) {
            if let Some(buffer) = buffer {
                entries.push((entry_name(name, MOMENTUM_BUFFER), export(buffer)?));
            }
        }
        Ok(entries)
    }

    fn load_state(&mut self, entries: &[(String, Tensor)]) -> Result<(), OptimError> {
        let parsed = parse_entries(&self.params, &SPECS, entries)?;
        self.momentum_buffers = parsed
            .into_iter()
            .map(|slot| slot.and_then(|tensors| tensors.into_iter().next()))
            .collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::testutil::{
        assert_pytorch_bits, assert_round_trip_exact, bits_ab, reference_params, run_reference,
    };
    use tch::Kind;

    /// p0 = [1, -2]; gradients [0.5, 0.25], [-1, 0.5], [0.25, -0.5]; lr 0.5. Every value is a
    /// short dyadic fraction, so float32 holds the hand arithmetic exactly.
    fn hand_run(config: SgdConfig) -> Vec<f64> {
        tch::set_num_threads(1);
        let param = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut sgd = Sgd::new(vec![("p".to_string(), param.shallow_clone())], config).unwrap();
        for grad in [[0.5f32, 0.25], [-1.0, 0.5], [0.25, -0.5]] {
            sgd.zero_grad().unwrap();
            (&param * Tensor::from_slice(&grad))
                .sum(Kind::Float)
                .backward();
            sgd.step(0.5).unwrap();
        }
        Vec::<f64>::try_from(param.detach().to_kind(Kind::Double)).unwrap()
    }

    #[test]
    fn plain_sgd_matches_hand_arithmetic() {
        // p1 = [1 - 0.5*0.5, -2 - 0.5*0.25] = [0.75, -2.125]
        // p2 = [0.75 + 0.5, -2.125 - 0.25] = [1.25, -2.375]
        // p3 = [1.25 - 0.125, -2.375 + 0.25] = [1.125, -2.125]
        let config = SgdConfig {
            momentum: 0.0,
            weight_decay: 0.0,
        };
        assert_eq!(hand_run(config), [1.125, -2.125]);
    }

    #[test]
    fn weight_decay_matches_hand_arithmetic() {
        // wd 0.25: d1 = [0.5 + 0.25, 0.25 - 0.5] = [0.75, -0.25]; p1 = [0.625, -1.875]
        // d2 = [-1 + 0.15625, 0.5 - 0.46875] = [-0.84375, 0.03125]; p2 = [1.046875, -1.890625]
        // d3 = [0.25 + 0.26171875, -0.5 - 0.47265625] = [0.51171875, -0.97265625];
        // p3 = [1.046875 - 0.255859375, -1.890625 + 0.486328125] = [0.791015625, -1.404296875]
        let config = SgdConfig {
            momentum: 0.0,
            weight_decay: 0.25,
        };
        assert_eq!(hand_run(config), [0.791015625, -1.404296875]);
    }

    #[test]
    fn momentum_matches_hand_arithmetic() {
        // mu 0.5: buf1 = g1 = [0.5, 0.25]; p1 = [0.75, -2.125]
        // buf2 = 0.5*buf1 + g2 = [-0.75, 0.625]; p2 = [1.125, -2.4375]
        // buf3 = 0.5*buf2 + g3 = [-0.125, -0.1875]; p3 = [1.1875, -2.34375]
        let config = SgdConfig {
            momentum: 0.5,
            weight_decay: 0.0,
        };
        assert_eq!(hand_run(config), [1.1875, -2.34375]);
    }

    #[test]
    fn momentum_and_weight_decay_match_hand_arithmetic() {
        // d1 = [0.75, -0.25]; buf1 = d1; p1 = [1 - 0.375, -2 + 0.125] = [0.625, -1.875]
        // d2 = [-0.84375, 0.03125]; buf2 = [0.375 - 0.84375, -0.125 + 0.03125]
        //    = [-0.46875, -0.09375]; p2 = [0.859375, -1.828125]
        // d3 = [0.25 + 0.21484375, -0.5 - 0.45703125] = [0.46484375, -0.95703125]
        // buf3 = [-0.234375 + 0.46484375, -0.046875 - 0.95703125] = [0.23046875, -1.00390625]
        // p3 = [0.859375 - 0.115234375, -1.828125 + 0.501953125] = [0.744140625, -1.326171875]
        let config = SgdConfig {
            momentum: 0.5,
            weight_decay: 0.25,
        };
        assert_eq!(hand_run(config), [0.744140625, -1.326171875]);
    }

    /// torch.optim.SGD(lr=0.1) over the reference parameters, lrs 0.1, 0.05, 0.025.
    const SGD_PLAIN: [u32; 41] = [
        0xbf926667, 0xbf113334, 0x3f890000, 0xbfc13333, 0x3e033334, 0x3f5b3333, 0xbf506666,
        0x3e5e6667, 0x3fb33334, 0xbf39999a, 0x3eea6667, 0xbf87cccc, 0xbef80000, 0x3f939999,
        0xbfa33333, 0x3e580000, 0x3f706667, 0xbf3b3334, 0x3e99999a, 0x3fbdcccd, 0xbf246667,
        0x3f0a6666, 0xbf7a6666, 0xbecd9999, 0x3f9e3334, 0xbf98999a, 0x3e966667, 0x3f82cccd,
        0xbf260000, 0x3ec40000, 0x3fc86666, 0xbf0f3333, 0x3f1f999a, 0xbf653334, 0xbea33334,
        0xbf280000, 0x3f1e6666, 0x3ed00001, 0xbc4ccccf, 0xbdb33334, 0xbe99999a,
    ];

    /// torch.optim.SGD(momentum=0.9, weight_decay=0.3), lrs 0.1, 0.05, 0.025 (a weight decay
    /// large enough for the rounding of the fused `g + wd * p` to show).
    const SGD_MOMENTUM_WD: [u32; 41] = [
        0xbf4b1dbb, 0xbf15dcfd, 0x3f98c65d, 0xbfc13163, 0x3e8a0ddf, 0x3f211478, 0xbf277ed9,
        0x3e11fb41, 0x3faa95cc, 0xbf4806fa, 0x3ed14b9f, 0xbf3920b5, 0xbf03dffa, 0x3fa1c4de,
        0xbfa4cc7b, 0x3eae07e5, 0x3f33117c, 0xbf1581d7, 0x3e59ef4d, 0x3fb3944e, 0xbf3609f6,
        0x3ef545a5, 0xbf2723b3, 0xbee3c5ed, 0x3faac35f, 0xbf9bcdfa, 0x3ed201eb, 0x3f450e7e,
        0xbf0384d4, 0x3e90f1ac, 0x3fbc92cf, 0xbf240cf3, 0x3f0c9fd6, 0xbf1526b1, 0xbebfcbe7,
        0xbf053c21, 0x3f0fb0b2, 0x3ec8733d, 0xbdc0e3b7, 0xbd866714, 0xbe710fd9,
    ];
    /// The momentum buffers after that run.
    const SGD_MOMENTUM_WD_BUF: [u32; 41] = [
        0xc0c14789, 0x40643452, 0xc02f834e, 0x408c16d6, 0xbff713ec, 0x3fce72e0, 0xbf8f213a,
        0xc03c2e7e, 0x400b7b28, 0xc0083525, 0x403f7480, 0xc0b9aac7, 0x40736dda, 0xc02049c8,
        0xbfb9319c, 0xbfd8a0df, 0x3fece5ee, 0xbf615c5a, 0xc02cf4f8, 0x401ab4af, 0xbff1f73d,
        0x404eae07, 0xc0b20e03, 0x408153b0, 0xc0111041, 0xbf9abe90, 0xbfba2dd0, 0x4005ac7e,
        0xbf247640, 0xc01dbb70, 0x4029ee36, 0xbfd3842f, 0x405de78e, 0xc0aa7140, 0x4088f073,
        0xbe87f654, 0x3e689ad3, 0xbe24c7b8, 0x3fe6abf8, 0xbf828578, 0xbfb431ca,
    ];

    const LRS: [f64; 3] = [0.1, 0.05, 0.025];

    fn reference_run(config: SgdConfig) -> Sgd {
        tch::set_num_threads(1);
        let mut sgd = Sgd::new(reference_params(), config).unwrap();
        run_reference(&mut sgd, &LRS, 0);
        sgd
    }

    #[test]
    fn plain_sgd_is_bitwise_pytorch() {
        let config = SgdConfig {
            momentum: 0.0,
            weight_decay: 0.0,
        };
        let sgd = reference_run(config);
        assert_pytorch_bits(&bits_ab(sgd.parameters()), &SGD_PLAIN);
        assert!(sgd.state().unwrap().is_empty());
    }

    #[test]
    fn momentum_sgd_is_bitwise_pytorch_and_skips_parameters_without_gradient() {
        let config = SgdConfig {
            momentum: 0.9,
            weight_decay: 0.3,
        };
        let sgd = reference_run(config);
        assert_pytorch_bits(&bits_ab(sgd.parameters()), &SGD_MOMENTUM_WD);
        let buffers = [
            (
                "a".to_string(),
                sgd.momentum_buffer("a").unwrap().unwrap().shallow_clone(),
            ),
            (
                "b".to_string(),
                sgd.momentum_buffer("b").unwrap().unwrap().shallow_clone(),
            ),
        ];
        assert_pytorch_bits(&bits_ab(&buffers), &SGD_MOMENTUM_WD_BUF);
        let c = &sgd.parameters()[2].1;
        assert!(c.equal(&Tensor::from_slice(&[0.75f32, -1.5])));
        assert!(sgd.momentum_buffer("c").unwrap().is_none());
        let names: Vec<String> = sgd
            .state()
            .unwrap()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, ["a.momentum_buffer", "b.momentum_buffer"]);
    }

    #[test]
    fn state_round_trip_is_exact() {
        let config = SgdConfig {
            momentum: 0.9,
            weight_decay: 3e-4,
        };
        let lrs = [0.1, 0.05, 0.025, 0.0125, 0.3];
        assert_round_trip_exact(|params| Sgd::new(params, config).unwrap(), &lrs, 2);
    }

    #[test]
    fn load_state_names_the_bad_entry() {
        let config = SgdConfig {
            momentum: 0.9,
            weight_decay: 0.0,
        };
        let mut sgd = Sgd::new(reference_params(), config).unwrap();
        let wrong_shape = vec![(
            "b.momentum_buffer".to_string(),
            Tensor::zeros([3, 2], (Kind::Float, tch::Device::Cpu)),
        )];
        let err = sgd.load_state(&wrong_shape).err().unwrap();
        assert!(err.to_string().contains("b.momentum_buffer"), "{err}");
        let wrong_name = vec![(
            "d.momentum_buffer".to_string(),
            Tensor::zeros([2], (Kind::Float, tch::Device::Cpu)),
        )];
        let err = sgd.load_state(&wrong_name).err().unwrap();
        assert!(matches!(&err, OptimError::UnknownStateEntry(name) if name == "d.momentum_buffer"));
    }

    #[test]
    fn invalid_hyperparameters_and_learning_rates_are_rejected() {
        let bad = SgdConfig {
            momentum: -0.1,
            weight_decay: 0.0,
        };
        assert!(matches!(
            Sgd::new(reference_params(), bad),
            Err(OptimError::InvalidHyperparameter {
                name: "momentum",
                ..
            })
        ));
        let config = SgdConfig {
            momentum: 0.0,
            weight_decay: 0.0,
        };
        let mut sgd = Sgd::new(reference_params(), config).unwrap();
        assert!(matches!(
            sgd.step(f64::NAN),
            Err(OptimError::InvalidHyperparameter { name: "lr", .. })
        ));
        assert!(matches!(
            sgd.momentum_buffer("missing"),
            Err(OptimError::UnknownParameter(name)) if name == "missing"
        ));
    }
}
