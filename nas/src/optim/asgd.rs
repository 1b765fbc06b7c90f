//! Averaged SGD (SPEC A.8), as PyTorch's `torch.optim.ASGD` following `_single_tensor_asgd`;
//! the non-monotonically triggered variant (NT-ASGD) of the PTB evaluation switches to it.

use tch::Tensor;

use super::params::{ParamList, ScalarCache};
use super::state::{
    count_tensor, entry_name, export, parse_entries, read_count, read_scalar32, scalar32_tensor,
    EntryKind, EntrySpec,
};
use super::{check_lr, check_non_negative, OptimError, Optimizer};

/// Hyper-parameters of [`Asgd`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AsgdConfig {
    /// Decay term lambda (0 in NT-ASGD).
    pub lambd: f64,
    /// Power of the eta update.
    pub alpha: f64,
    /// Step from which averaging starts (0 in NT-ASGD).
    pub t0: f64,
    /// L2 penalty added to the gradient: d = g + weight_decay * p.
    pub weight_decay: f64,
}

impl Default for AsgdConfig {
    /// PyTorch's defaults: lambd 1e-4, alpha 0.75, t0 1e6, no weight decay.
    fn default() -> Self {
        Self {
            lambd: 1e-4,
            alpha: 0.75,
            t0: 1e6,
            weight_decay: 0.0,
        }
    }
}

/// Name suffix of the running average in the saved state.
const AX: &str = "ax";
/// Name suffix of the per-parameter step size in the saved state.
const ETA: &str = "eta";
/// Name suffix of the averaging weight in the saved state.
const MU: &str = "mu";
/// Name suffix of the step count in the saved state.
const STEP: &str = "step";

/// The state entries of one parameter.
const SPECS: [EntrySpec; 4] = [
    EntrySpec {
        suffix: AX,
        kind: EntryKind::LikeParameter,
    },
    EntrySpec {
        suffix: ETA,
        kind: EntryKind::Scalar32,
    },
    EntrySpec {
        suffix: MU,
        kind: EntryKind::Scalar32,
    },
    EntrySpec {
        suffix: STEP,
        kind: EntryKind::Count,
    },
];

/// The state of one parameter; eta and mu are float32 as in PyTorch.
struct AsgdSlot {
    ax: Tensor,
    eta: f32,
    mu: f32,
    step: u64,
}

/// ASGD: step += 1; d = g + wd * p; p <- p * (1 - lambd * eta) - eta * d; ax <- p if mu = 1,
/// else ax <- ax + mu * (p - ax); then eta <- lr / (1 + lambd * lr * step)^alpha and
/// mu <- 1 / max(1, step - t0). eta starts at the learning rate of the first step, so every
/// later step uses the eta computed from the previous step's learning rate.
pub struct Asgd {
    params: ParamList,
    config: AsgdConfig,
    slots: Vec<Option<AsgdSlot>>,
    scalars: ScalarCache,
}

impl Asgd {
    /// An ASGD optimizer over `params` (names must be unique and non-empty).
    pub fn new(params: Vec<(String, Tensor)>, config: AsgdConfig) -> Result<Self, OptimError> {
        check_non_negative("lambd", config.lambd)?;
        check_non_negative("weight_decay", config.weight_decay)?;
        for (name, value) in [("alpha", config.alpha), ("t0", config.t0)] {
            if !value.is_finite() {
                return Err(OptimError::InvalidHyperparameter {
                    name,
                    value,
                    requirement: "must be finite",
                });
            }
        }
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
    pub fn config(&self) -> AsgdConfig {
        self.config
    }

    /// The running average `ax` of parameter `name` (what NT-ASGD evaluates with), or `None`
    /// before its first step.
    pub fn averaged(&self, name: &str) -> Result<Option<&Tensor>, OptimError> {
        let position = self.params.position(name)?;
        Ok(self.slots[position].as_ref().map(|slot| &slot.ax))
    }

    /// The step size eta and averaging weight mu parameter `name` will use at its next step,
    /// or `None` before its first step.
    pub fn eta_mu(&self, name: &str) -> Result<Option<(f32, f32)>, OptimError> {
        let position = self.params.position(name)?;
        Ok(self.slots[position]
            .as_ref()
            .map(|slot| (slot.eta, slot.mu)))
    }
}

impl Optimizer for Asgd {
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
                    None => slot.insert(AsgdSlot {
                        ax: param.f_zeros_like()?,
                        // torch.as_tensor(group lr) as float32
                        eta: lr as f32,
                        mu: 1.0,
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
                let eta = f64::from(slot.eta);
                let mut param = param.shallow_clone();
                // param.mul_(1 - lambd * eta); multiplying by exactly 1 changes nothing.
                let decay = 1.0 - config.lambd * eta;
                if decay != 1.0 {
                    let _ = param.f_mul_scalar_(decay)?;
                }
                // param.add_(grad, alpha=-eta)
                let _ = param.f_addcmul_(&grad, &scalars.get(-eta, &param)?)?;
                if slot.mu != 1.0 {
                    // ax.add_(param.sub(ax).mul_(mu))
                    let mut delta = param.f_sub(&slot.ax)?;
                    let _ = delta.f_mul_scalar_(f64::from(slot.mu))?;
                    let _ = slot.ax.f_add_(&delta)?;
                } else {
                    slot.ax.f_copy_(&param)?;
                }
                // PyTorch keeps the step in float32: exact below 2^24 steps.
                let step = slot.step as f64;
                slot.eta = (lr / (1.0 + config.lambd * lr * step).powf(config.alpha)) as f32;
                slot.mu = (1.0 / f64::max(1.0, step - config.t0)) as f32;
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
                entries.push((entry_name(name, AX), export(&slot.ax)?));
                entries.push((entry_name(name, ETA), scalar32_tensor(slot.eta)?));
                entries.push((entry_name(name, MU), scalar32_tensor(slot.mu)?));
                entries.push((entry_name(name, STEP), count_tensor(slot.step)?));
            }
        }
        Ok(entries)
    }

    fn load_state(&mut self, entries: &[(String, Tensor)]) -> Result<(), OptimError> {
        let parsed = parse_entries(&self.params, &SPECS, entries)?;
        let mut slots = Vec::with_capacity(parsed.len());
        for ((name, _), tensors) in self.params.as_slice().iter().zip(parsed) {
            let slot = match tensors.map(<[Tensor; 4]>::try_from) {
                None => None,
                Some(Ok([ax, eta, mu, step])) => Some(AsgdSlot {
                    eta: read_scalar32(&entry_name(name, ETA), &eta)?,
                    mu: read_scalar32(&entry_name(name, MU), &mu)?,
                    step: read_count(&entry_name(name, STEP), &step)?,
                    ax,
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

    const NT_ASGD: AsgdConfig = AsgdConfig {
        lambd: 0.0,
        alpha: 0.75,
        t0: 0.0,
        weight_decay: 8e-7,
    };

    const DECAYING: AsgdConfig = AsgdConfig {
        lambd: 1e-2,
        alpha: 0.75,
        t0: 0.0,
        weight_decay: 1e-3,
    };

    #[test]
    fn asgd_matches_hand_arithmetic() {
        tch::set_num_threads(1);
        // lambd 0, t0 0, no weight decay; p0 = [1, -2]; gradients [0.5, 0.25], [-1, 0.5],
        // [0.25, -0.5]; learning rates 0.5, 0.25, 0.125.
        // step 1: eta = 0.5 (first lr); p1 = [0.75, -2.125]; mu = 1 so ax = p1;
        //         then eta = 0.5, mu = 1 / max(1, 1) = 1
        // step 2: eta = 0.5 (previous lr); p2 = [1.25, -2.375]; ax = p2; eta = 0.25, mu = 0.5
        // step 3: eta = 0.25; p3 = [1.25 - 0.0625, -2.375 + 0.125] = [1.1875, -2.25];
        //         ax = p2 + 0.5 * (p3 - p2) = [1.21875, -2.3125]; eta = 0.125, mu = 1/3
        let config = AsgdConfig {
            weight_decay: 0.0,
            ..NT_ASGD
        };
        let param = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut asgd = Asgd::new(vec![("p".to_string(), param.shallow_clone())], config).unwrap();
        for (grad, lr) in [
            ([0.5f32, 0.25], 0.5),
            ([-1.0, 0.5], 0.25),
            ([0.25, -0.5], 0.125),
        ] {
            asgd.zero_grad().unwrap();
            (&param * Tensor::from_slice(&grad))
                .sum(Kind::Float)
                .backward();
            asgd.step(lr).unwrap();
        }
        assert_eq!(
            Vec::<f32>::try_from(param.detach()).unwrap(),
            [1.1875, -2.25]
        );
        let ax = asgd.averaged("p").unwrap().unwrap();
        assert_eq!(Vec::<f32>::try_from(ax).unwrap(), [1.21875, -2.3125]);
        assert_eq!(asgd.eta_mu("p").unwrap(), Some((0.125, 1.0 / 3.0)));
    }

    /// torch.optim.ASGD(lr=20, t0=0, lambd=0, alpha=0.75, weight_decay=8e-7), lrs 20, 10, 5:
    /// parameters, then the running averages.
    const ASGD_NT: [u32; 41] = [
        0x42d3df22, 0xc26a1f9a, 0x42a03f45, 0xc2aeff9a, 0x424c9ef4, 0xc252beed, 0x41b17eb5,
        0x421e607a, 0xc06805f8, 0x412a0388, 0xc2025ff8, 0x42cdcf28, 0xc2763f91, 0x429a2f4b,
        0xc1ef3e53, 0x42407efc, 0xc25edee4, 0x41993ec8, 0x42124084, 0xc0d502b3, 0x40f30760,
        0xc20e7fef, 0x42c7bf2c, 0xc2812fc4, 0x42941f4f, 0xc203bf20, 0x42345f06, 0xc26afed9,
        0x4180feda, 0x4206208f, 0xc11b0132, 0x409207a8, 0xc21a9fe5, 0x42c1af31, 0xc2873fbf,
        0x413bfdaa, 0x4102003b, 0x4037fdcb, 0xc1eefedd, 0x419effd9, 0x4169feea,
    ];
    const ASGD_NT_AX: [u32; 41] = [
        0x42cb1f55, 0xc2395fbe, 0x429d1f6e, 0xc290ffb8, 0x42519f2c, 0xc2825f9f, 0x41d1fef4,
        0x41ef411f, 0x404ffab2, 0x40700dec, 0xc1b7400c, 0x42c5af5a, 0xc2443fb8, 0x4297af72,
        0xc2339f68, 0x4246bf32, 0xc287cf9c, 0x41bc3f02, 0x41d9812e, 0x3f07ec70, 0x3f841cc8,
        0xc1ccfffe, 0x42c03f5c, 0xc24f1fb1, 0x42923f75, 0xc23e7f62, 0x423bdf39, 0xc28d3f98,
        0x41a67f10, 0x41c3c13e, 0xc00c046e, 0xbfd7e268, 0xc1e2bff0, 0x42bacf60, 0xc259ffaa,
        0x418fff08, 0x41160068, 0xbf600a08, 0xc1c6ff06, 0x419f0002, 0x4119fefe,
    ];

    /// torch.optim.ASGD(lr=0.5, t0=0, lambd=1e-2, alpha=0.75, weight_decay=1e-3), lrs 0.5,
    /// 0.25, 0.125: parameters, then the running averages.
    const ASGD_DECAY: [u32; 41] = [
        0x3f90402a, 0xbfec4402, 0x402d66c2, 0xc05818fe, 0x3f96df89, 0xbe91783e, 0xbeb439c2,
        0x3f9931fc, 0x3f9d7eea, 0xbeaaeff2, 0xbe99bc3e, 0x3f922721, 0xbfea5d0a, 0x402e5a3f,
        0xbfed0471, 0x3f98c682, 0xbe89dc5f, 0xbeac9ddf, 0x3f9b18f5, 0x3f9f65e4, 0xbea35413,
        0xbe92205f, 0x3f940e1a, 0xbfe87612, 0x402f4dba, 0xbfeb1d7c, 0x3f9aad7b, 0xbe82407f,
        0xbea501ff, 0x3f9cffee, 0x3fa14cd9, 0xbe9bb82f, 0xbe8a847b, 0x3f95f512, 0xbfe68f19,
        0xbedcc86c, 0x3f4d9273, 0x3edd35b7, 0xbf1f17a1, 0x3ebf54be, 0x3b32c6a2,
    ];
    const ASGD_DECAY_AX: [u32; 41] = [
        0x3f827676, 0xbfc5a10a, 0x402b245f, 0xc0406b1b, 0x3f9b1392, 0xbf18c149, 0xbe808667,
        0x3f74df88, 0x3fb3b0af, 0xbf018acd, 0xbd708f8c, 0x3f855dd7, 0xbfc2b9a8, 0x402c9811,
        0xc00ea5c5, 0x3f9dfaf4, 0xbf12f286, 0xbe69d1b8, 0x3f7aae4e, 0x3fb69812, 0xbef77814,
        0xbd13a354, 0x3f88453a, 0xbfbfd246, 0x402e0bc1, 0xc00d3216, 0x3fa0e258, 0xbf0d23c2,
        0xbe5296aa, 0x3f803e8a, 0x3fb97f72, 0xbeebda88, 0xbc5adbd0, 0x3f8b2c9c, 0xbfbceae4,
        0xbe8d2a79, 0x3f55d8b2, 0x3ead8fc0, 0xbefeaf7a, 0x3ebf9806, 0xbdfa2681,
    ];

    fn averages(asgd: &Asgd) -> Vec<u32> {
        let mut all = bits(asgd.averaged("a").unwrap().unwrap());
        all.extend(bits(asgd.averaged("b").unwrap().unwrap()));
        all
    }

    #[test]
    fn asgd_is_bitwise_pytorch_and_skips_parameters_without_gradient() {
        tch::set_num_threads(1);
        let mut nt = Asgd::new(reference_params(), NT_ASGD).unwrap();
        run_reference(&mut nt, &[20.0, 10.0, 5.0], 0);
        assert_pytorch_bits(&bits_ab(nt.parameters()), &ASGD_NT);
        assert_pytorch_bits(&averages(&nt), &ASGD_NT_AX);
        assert_eq!(nt.eta_mu("a").unwrap(), Some((5.0, 1.0 / 3.0)));
        assert!(nt.averaged("c").unwrap().is_none());
        assert!(nt.parameters()[2]
            .1
            .equal(&Tensor::from_slice(&[0.75f32, -1.5])));

        let mut decaying = Asgd::new(reference_params(), DECAYING).unwrap();
        run_reference(&mut decaying, &[0.5, 0.25, 0.125], 0);
        assert_pytorch_bits(&bits_ab(decaying.parameters()), &ASGD_DECAY);
        assert_pytorch_bits(&averages(&decaying), &ASGD_DECAY_AX);
        // PyTorch: eta = float32(0.125 / (1 + 1e-2 * 0.125 * 3) ** 0.75) = 0.12464958429336548
        let (eta, mu) = decaying.eta_mu("b").unwrap().unwrap();
        assert_eq!((f64::from(eta), mu), (0.12464958429336548, 1.0 / 3.0));
    }

    #[test]
    fn state_round_trip_is_exact() {
        let lrs = [20.0, 10.0, 5.0, 20.0, 2.5];
        assert_round_trip_exact(|params| Asgd::new(params, NT_ASGD).unwrap(), &lrs, 2);
        assert_round_trip_exact(|params| Asgd::new(params, DECAYING).unwrap(), &lrs[..4], 3);
    }

    #[test]
    fn load_state_names_the_bad_entry() {
        let mut asgd = Asgd::new(reference_params(), NT_ASGD).unwrap();
        run_reference(&mut asgd, &[1.0], 0);
        let mut state = asgd.state().unwrap();
        let names: Vec<&str> = state.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            ["a.ax", "a.eta", "a.mu", "a.step", "b.ax", "b.eta", "b.mu", "b.step"]
        );
        state[1].1 = Tensor::zeros([1], (Kind::Float, Device::Cpu));
        let err = Asgd::new(reference_params(), NT_ASGD)
            .unwrap()
            .load_state(&state)
            .err()
            .unwrap();
        assert!(matches!(
            &err,
            OptimError::StateShapeMismatch { name, .. } if name == "a.eta"
        ));
        state[1].1 = scalar32_tensor(f32::INFINITY).unwrap();
        let err = Asgd::new(reference_params(), NT_ASGD)
            .unwrap()
            .load_state(&state)
            .err()
            .unwrap();
        assert!(matches!(&err, OptimError::InvalidStateValue { name, .. } if name == "a.eta"));
    }
}
