//! Adam with classic L2 weight decay (SPEC A.2), as PyTorch's `torch.optim.Adam` (not AdamW,
//! no amsgrad), following `_single_tensor_adam` operation by operation.

use std::hint::black_box;

use tch::Tensor;

use super::params::{ParamList, ScalarCache};
use super::state::{
    count_tensor, entry_name, export, parse_entries, read_count, EntryKind, EntrySpec,
};
use super::{check_lr, check_non_negative, OptimError, Optimizer};

/// Hyper-parameters of [`Adam`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Decay of the first moment, in [0, 1).
    pub beta1: f64,
    /// Decay of the second moment, in [0, 1).
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// L2 penalty added to the gradient: d = g + weight_decay * p.
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    /// PyTorch's defaults: betas (0.9, 0.999), eps 1e-8, no weight decay.
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Name suffix of the first moment in the saved state.
const EXP_AVG: &str = "exp_avg";
/// Name suffix of the second moment in the saved state.
const EXP_AVG_SQ: &str = "exp_avg_sq";
/// Name suffix of the step count in the saved state.
const STEP: &str = "step";

/// The state entries of one parameter, in the order of [`AdamSlot`]'s fields.
const SPECS: [EntrySpec; 3] = [
    EntrySpec {
        suffix: EXP_AVG,
        kind: EntryKind::LikeParameter,
    },
    EntrySpec {
        suffix: EXP_AVG_SQ,
        kind: EntryKind::LikeParameter,
    },
    EntrySpec {
        suffix: STEP,
        kind: EntryKind::Count,
    },
];

/// The state of one parameter.
struct AdamSlot {
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: u64,
}

/// Adam: t <- t + 1; d = g + wd * p; m <- lerp(m, d, 1 - b1); v <- b2 v + (1 - b2) d^2;
/// p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). Step counts are kept per
/// parameter, as in PyTorch.
pub struct Adam {
    params: ParamList,
    config: AdamConfig,
    slots: Vec<Option<AdamSlot>>,
    scalars: ScalarCache,
}

impl Adam {
    /// An Adam optimizer over `params` (names must be unique and non-empty).
    pub fn new(params: Vec<(String, Tensor)>, config: AdamConfig) -> Result<Self, OptimError> {
        for (name, beta) in [("beta1", config.beta1), ("beta2", config.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(OptimError::InvalidHyperparameter {
                    name,
                    value: beta,
                    requirement: "must lie in [0, 1)",
                });
            }
        }
        check_non_negative("eps", config.eps)?;
        check_non_negative("weight_decay", config.weight_decay)?;
        let params = ParamList::new(params)?;
        let slots = params.as_slice().iter().map(|_| None).collect();
        Ok(Self {
            params,
            config,
            slots,
            scalars: ScalarCache::default(),
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> AdamConfig {
        self.config
    }

    /// How many steps parameter `name` has taken (0 before its first gradient).
    pub fn step_count(&self, name: &str) -> Result<u64, OptimError> {
        let position = self.params.position(name)?;
        Ok(self.slots[position].as_ref().map_or(0, |slot| slot.step))
    }

    /// Zeroes the first and second moments of parameter `name` wherever `mask` is 0 (`mask`
    /// must broadcast to the parameter's shape); used when CRB prunes operations. A parameter
    /// that has no state yet is left as it is.
    pub fn zero_state_where(&mut self, name: &str, mask: &Tensor) -> Result<(), OptimError> {
        let position = self.params.position(name)?;
        let Some(slot) = self.slots[position].as_mut() else {
            return Ok(());
        };
        tch::no_grad(|| {
            let pruned = mask.f_eq(0)?;
            let _ = slot.exp_avg.f_masked_fill_(&pruned, 0.0)?;
            let _ = slot.exp_avg_sq.f_masked_fill_(&pruned, 0.0)?;
            Ok(())
        })
    }
}

/// sqrt(1 - beta2^step) computed as PyTorch does: `bias_correction2 ** 0.5`, which is the C
/// library's `pow` and not always equal to `sqrt` in the last bit. `black_box` keeps the
/// compiler from turning `pow(x, 0.5)` into `sqrt(x)`.
fn bias_correction2_sqrt(beta2: f64, step: f64) -> f64 {
    let bias_correction2 = 1.0 - beta2.powf(step);
    bias_correction2.powf(black_box(0.5))
}

impl Optimizer for Adam {
    fn step(&mut self, lr: f64) -> Result<(), OptimError> {
        check_lr(lr)?;
        let Self {
            params,
            config,
            slots,
            scalars,
        } = self;
        tch::no_grad(|| {
            for ((_, param), slot) in params.as_slice().iter().zip(slots.iter_mut()) {
                let grad = param.f_grad()?;
                if !grad.defined() {
                    continue;
                }
                let slot = match slot {
                    Some(slot) => slot,
                    None => slot.insert(AdamSlot {
                        exp_avg: param.f_zeros_like()?,
                        exp_avg_sq: param.f_zeros_like()?,
                        step: 0,
                    }),
                };
                slot.step += 1;
                // grad = grad.add(param, alpha=weight_decay)
                let grad = if config.weight_decay != 0.0 {
                    grad.f_addcmul(param, &scalars.get(config.weight_decay, param)?)?
                } else {
                    grad
                };
                // exp_avg.lerp_(grad, 1 - beta1)
                let _ = slot.exp_avg.f_lerp_(&grad, 1.0 - config.beta1)?;
                // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                let _ = slot.exp_avg_sq.f_mul_scalar_(config.beta2)?;
                let scratch = grad.f_mul_scalar(1.0 - config.beta2)?;
                let _ = slot.exp_avg_sq.f_addcmul_(&scratch, &grad)?;

                let step = slot.step as f64;
                let bias_correction1 = 1.0 - config.beta1.powf(step);
                let step_size = lr / bias_correction1;
                // denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
                let mut denom = slot.exp_avg_sq.f_sqrt()?;
                let _ = denom.f_div_scalar_(bias_correction2_sqrt(config.beta2, step))?;
                let _ = denom.f_add_scalar_(config.eps)?;
                // param.addcdiv_(exp_avg, denom, value=-step_size)
                let _ = slot.exp_avg.f_mul_scalar_out(&scratch, -step_size)?;
                let _ = param.shallow_clone().f_addcdiv_(&scratch, &denom)?;
            }
            Ok(())
        })
    }

    fn parameters(&self) -> &[(String, Tensor)] {
        self.params.as_slice()
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>, OptimError> {
        let mut entries = Vec::new();
        for ((name, _), slot) in self.params.as_slice().iter().zip(&self.slots) {
            if let Some(slot) = slot {
                entries.push((entry_name(name, EXP_AVG), export(&slot.exp_avg)?));
                entries.push((entry_name(name, EXP_AVG_SQ), export(&slot.exp_avg_sq)?));
                entries.push((entry_name(name, STEP), count_tensor(slot.step)?));
            }
        }
        Ok(entries)
    }

    fn load_state(&mut self, entries: &[(String, Tensor)]) -> Result<(), OptimError> {
        let parsed = parse_entries(&self.params, &SPECS, entries)?;
        let mut slots = Vec::with_capacity(parsed.len());
        for ((name, _), tensors) in self.params.as_slice().iter().zip(parsed) {
            let slot = match tensors.map(<[Tensor; 3]>::try_from) {
                None => None,
                Some(Ok([exp_avg, exp_avg_sq, step])) => Some(AdamSlot {
                    step: read_count(&entry_name(name, STEP), &step)?,
                    exp_avg,
                    exp_avg_sq,
                }),
                Some(Err(_)) => return Err(OptimError::MissingStateEntry(entry_name(name, STEP))),
            };
            slots.push(slot);
        }
        self.slots = slots;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::testutil::{
        assert_pytorch_bits, assert_round_trip_exact, bits, bits_ab, reference_params,
        run_reference,
    };
    use tch::{Device, Kind};

    #[test]
    fn adam_matches_hand_arithmetic() {
        tch::set_num_threads(1);
        // betas 0.5 / 0.999, eps 1e-8, wd 1e-3, lr 0.1, p0 = 1, gradients 0.5, -1, 0.25.
        // t1: d = 0.5 + 1e-3 * 1 = 0.501; m = 0.5 * 0.501 = 0.2505; v = 0.001 * 0.501^2
        //     = 2.51001e-4; denom = sqrt(v) / sqrt(1 - 0.999) = 0.501;
        //     p1 = 1 - (0.1 / (1 - 0.5)) * 0.2505 / 0.501 = 0.9
        // t2: d = -1 + 1e-3 * 0.9 = -0.9991; m = 0.5 * 0.2505 + 0.5 * -0.9991 = -0.3743;
        //     v = 0.999 * 2.51001e-4 + 0.001 * 0.9991^2 = 1.2489508e-3;
        //     denom = sqrt(v) / sqrt(1 - 0.999^2) = 0.7904352;
        //     p2 = 0.9 + (0.1 / 0.75) * 0.3743 / 0.7904352 = 0.9631382
        // t3: d = 0.25 + 1e-3 * 0.9631382 = 0.2509631; m = -0.18715 + 0.1254816 = -0.0616684;
        //     v = 0.999 * 1.2489508e-3 + 0.001 * 0.2509631^2 = 1.3106844e-3;
        //     denom = sqrt(v) / sqrt(1 - 0.999^3) = 0.6613108;
        //     p3 = 0.9631382 + (0.1 / 0.875) * 0.0616684 / 0.6613108 = 0.9737956
        let param = Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
        let config = AdamConfig {
            beta1: 0.5,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-3,
        };
        let mut adam =
            Adam::new(vec![("alpha".to_string(), param.shallow_clone())], config).unwrap();
        let mut trajectory = Vec::new();
        for grad in [0.5f32, -1.0, 0.25] {
            adam.zero_grad().unwrap();
            (&param * f64::from(grad)).sum(Kind::Float).backward();
            adam.step(0.1).unwrap();
            trajectory.push(param.double_value(&[0]));
        }
        for (found, expected) in trajectory.iter().zip([0.9, 0.9631382, 0.9737956]) {
            assert!((found - expected).abs() < 2e-6, "{trajectory:?}");
        }
        assert_eq!(adam.step_count("alpha").unwrap(), 3);
    }

    /// torch.optim.Adam(betas=(0.5, 0.999), weight_decay=1e-3), lrs 0.5, 0.25, 0.125 (large
    /// enough for a last-bit difference of the update to show in the parameters).
    const ADAM_WD: [u32; 41] = [
        0xbf3f8ff6, 0xbfa6c2ba, 0x3fc5018f, 0xc009dd45, 0x3f2547fe, 0x3ea8161d, 0xbe9ca155,
        0xbd7cdbbc, 0x3fe4e31b, 0xbf7beee8, 0x3f30c244, 0xbf281976, 0xbf9b0647, 0x3fd08140,
        0xbfee330f, 0x3f3b284c, 0x3ed63fd7, 0xbe6b59be, 0x3cc51c84, 0x3fec9e92, 0xbf66632e,
        0x3f45468f, 0xbf10abdb, 0xbf8f3a7d, 0x3fdbf694, 0xbfe2ac95, 0x3f50d632, 0x3f023761,
        0xbe1ed8ce, 0x3de08601, 0x3ff43a54, 0xbf50de89, 0x3f5a7ae0, 0xbef28feb, 0xbf83626c,
        0xbe4a612e, 0x3e97c3fe, 0x3f4bf365, 0xbf08f167, 0xbeb9879a, 0x3e36bf81,
    ];
    /// The first moments after that run.
    const ADAM_WD_EXP_AVG: [u32; 41] = [
        0xbfa61ccc, 0x3fcce3e0, 0xbf4db542, 0x4005e5c8, 0xbe9fcc5f, 0xbee3c888, 0x3e37a03c,
        0xbfbc03e0, 0x3f2c67ff, 0xbf7a39e4, 0x3f951826, 0xbf9f1a1e, 0x3fd3e687, 0xbf3fafec,
        0xbf626384, 0xbe83c1cf, 0xbec7bdc0, 0x3e6fb4a0, 0xbfb50146, 0x3f3a6c77, 0xbf6c34b8,
        0x3f9c1aa2, 0xbf981772, 0x3fdae932, 0xbf31aa97, 0xbf545e24, 0xbe4f6e86, 0xbeabb300,
        0x3e93e470, 0xbfadfeae, 0x3f4870e2, 0xbf5e2f8d, 0x3fa31d2a, 0xbf9114c5, 0x3fe1ebdd,
        0x3eefe2dc, 0xbd7ef8f8, 0xbe7f58d8, 0x3f17ec52, 0xbe9031db, 0xbeeffbfe,
    ];
    /// The second moments after that run.
    const ADAM_WD_EXP_AVG_SQ: [u32; 41] = [
        0x3c5d6479, 0x3c01bf84, 0x3c01903c, 0x3c5d12aa, 0x3b8aa0c1, 0x3c6e8eb1, 0x3b202c0a,
        0x3c892270, 0x3b275f14, 0x3c6bad22, 0x3b9560c8, 0x3c51ac14, 0x3c0a644f, 0x3bf2a151,
        0x3c6357b8, 0x3b810943, 0x3c71b0ee, 0x3b1acc25, 0x3c863795, 0x3b2fe10d, 0x3c694b39,
        0x3ba0897e, 0x3c465630, 0x3c136b9d, 0x3be2e728, 0x3c6363a2, 0x3b706d85, 0x3c7535a8,
        0x3b16f62b, 0x3c837dfb, 0x3b39ecd6, 0x3c674bd1, 0x3bac7743, 0x3c3b62cd, 0x3c1cd56d,
        0x3b4cb244, 0x3aabe730, 0x3ab40fbe, 0x3b2bcc39, 0x3ad4f7a3, 0x3aed7420,
    ];

    /// torch.optim.Adam() with its defaults, lr 0.1 for three steps.
    const ADAM_PLAIN: [u32; 41] = [
        0xbfa3971b, 0xbf2ecab6, 0x3f83318e, 0xbfc52351, 0x3e2344ec, 0x3f596ab3, 0xbf3d0185,
        0x3e433692, 0x3fbbae49, 0xbf32741a, 0x3efdb11f, 0xbf97afa8, 0xbf17682b, 0x3f8efd9a,
        0xbfac18c0, 0x3e7f4941, 0x3f70ae11, 0xbf275964, 0x3e8f4b95, 0x3fc5ae12, 0xbf1bcb7c,
        0x3f14b56d, 0xbf8bca25, 0xbeffe278, 0x3f9ac497, 0xbfa08432, 0x3ead6ea4, 0x3f83fad7,
        0xbf11decb, 0x3ebcede7, 0x3fcf9e4a, 0xbf052558, 0x3f2ae31a, 0xbf7fcd87, 0xbed0d238,
        0xbf1771d9, 0x3f134584, 0x3ef3e952, 0xbdc5e2aa, 0xbdf387f0, 0xbe5289d1,
    ];

    const ALPHA_CONFIG: AdamConfig = AdamConfig {
        beta1: 0.5,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 1e-3,
    };

    #[test]
    fn adam_is_bitwise_pytorch_and_skips_parameters_without_gradient() {
        tch::set_num_threads(1);
        let mut adam = Adam::new(reference_params(), ALPHA_CONFIG).unwrap();
        run_reference(&mut adam, &[0.5, 0.25, 0.125], 0);
        assert_pytorch_bits(&bits_ab(adam.parameters()), &ADAM_WD);
        let state = adam.state().unwrap();
        let moment = |first: usize| {
            [
                state[first].1.shallow_clone(),
                state[first + 3].1.shallow_clone(),
            ]
            .map(|tensor| (String::new(), tensor))
        };
        assert_pytorch_bits(&bits_ab(&moment(0)), &ADAM_WD_EXP_AVG);
        assert_pytorch_bits(&bits_ab(&moment(1)), &ADAM_WD_EXP_AVG_SQ);
        assert!(adam.parameters()[2]
            .1
            .equal(&Tensor::from_slice(&[0.75f32, -1.5])));
        assert_eq!(adam.step_count("c").unwrap(), 0);
        let names: Vec<String> = adam
            .state()
            .unwrap()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(
            names,
            [
                "a.exp_avg",
                "a.exp_avg_sq",
                "a.step",
                "b.exp_avg",
                "b.exp_avg_sq",
                "b.step"
            ]
        );

        let mut plain = Adam::new(reference_params(), AdamConfig::default()).unwrap();
        run_reference(&mut plain, &[0.1; 3], 0);
        assert_pytorch_bits(&bits_ab(plain.parameters()), &ADAM_PLAIN);
    }

    #[test]
    fn bias_correction_uses_pow_like_python() {
        // Python: (1 - 0.999 ** 1270) ** 0.5 == 0x1.b23fd0f9774cap-1, one ulp above
        // math.sqrt(1 - 0.999 ** 1270) == 0x1.b23fd0f9774c9p-1.
        assert_eq!(
            bias_correction2_sqrt(0.999, 1270.0).to_bits(),
            0x3feb_23fd_0f97_74ca
        );
    }

    #[test]
    fn state_round_trip_is_exact() {
        let lrs = [0.01, 0.005, 0.0025, 0.01, 0.02];
        assert_round_trip_exact(|params| Adam::new(params, ALPHA_CONFIG).unwrap(), &lrs, 3);
    }

    #[test]
    fn zero_state_where_clears_masked_moments() {
        tch::set_num_threads(1);
        let mut adam = Adam::new(reference_params(), ALPHA_CONFIG).unwrap();
        // No state yet: nothing to clear, and no error.
        let mask = Tensor::from_slice(&[1.0f32, 0.0, 1.0, 1.0, 0.0, 1.0]).reshape([2, 3]);
        adam.zero_state_where("b", &mask).unwrap();
        run_reference(&mut adam, &[0.01, 0.01], 0);
        adam.zero_state_where("b", &mask.to_kind(Kind::Bool))
            .unwrap();
        let state = adam.state().unwrap();
        for (name, tensor) in &state {
            if name == "b.exp_avg" || name == "b.exp_avg_sq" {
                let values = bits(tensor);
                assert_eq!((values[1], values[4]), (0, 0), "{name}");
                assert!(values[0] != 0 && values[5] != 0, "{name}");
            }
        }
        assert!(matches!(
            adam.zero_state_where("z", &mask),
            Err(OptimError::UnknownParameter(name)) if name == "z"
        ));
    }

    #[test]
    fn load_state_names_the_bad_entry() {
        let mut adam = Adam::new(reference_params(), ALPHA_CONFIG).unwrap();
        run_reference(&mut adam, &[0.01], 0);
        let mut state = adam.state().unwrap();
        let fresh = || Adam::new(reference_params(), ALPHA_CONFIG).unwrap();

        let missing: Vec<(String, Tensor)> = state
            .iter()
            .filter(|(name, _)| name != "a.exp_avg_sq")
            .map(|(name, tensor)| (name.clone(), tensor.shallow_clone()))
            .collect();
        let err = fresh().load_state(&missing).err().unwrap();
        assert!(matches!(&err, OptimError::MissingStateEntry(name) if name == "a.exp_avg_sq"));

        state[3].1 = Tensor::zeros([6], (Kind::Float, Device::Cpu));
        let mut target = fresh();
        let err = target.load_state(&state).err().unwrap();
        assert!(err.to_string().contains("b.exp_avg"), "{err}");
        assert!(matches!(err, OptimError::StateShapeMismatch { .. }));
        // The failed load left the fresh optimizer without state.
        assert!(target.state().unwrap().is_empty());

        state[3].0 = "bb.exp_avg".to_string();
        let err = fresh().load_state(&state).err().unwrap();
        assert!(matches!(&err, OptimError::UnknownStateEntry(name) if name == "bb.exp_avg"));
    }

    #[test]
    fn invalid_betas_are_rejected() {
        let config = AdamConfig {
            beta1: 1.0,
            ..AdamConfig::default()
        };
        assert!(matches!(
            Adam::new(reference_params(), config),
            Err(OptimError::InvalidHyperparameter { name: "beta1", .. })
        ));
    }
}
