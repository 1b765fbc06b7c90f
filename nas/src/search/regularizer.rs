//! Regularizers of the alpha loss (SPEC 5.2-5.3): proximity regularization towards the
//! projection Pi_S(act(alpha)) with a linearly growing coefficient, and ADMM with its Z and U
//! variables. Both act on activated alpha; Pi_S is computed on a host copy (no gradient flows
//! through the projection).

use crate::cnn::search_net::ArchParams;
use crate::train_step::to_rows;
use prime_core::config::{Compat, RegularizerKind, SearchConfig};
use prime_core::genotype::projection::project_cell;
use tch::{Kind, Tensor};

/// Regularizer errors.
#[derive(Debug, thiserror::Error)]
pub enum RegularizerError {
    /// The projection failed (NaN in alpha).
    #[error("projection of the {cell} alphas: {message}")]
    Projection {
        /// `normal` or `reduce`.
        cell: &'static str,
        /// Cause.
        message: String,
    },
}

/// Pi_S(matrix) as a tensor of zeros and ones on `device` (the matrix is read to the host).
pub fn project_tensor(
    activated: &Tensor,
    arch: &ArchParams,
    cell: &'static str,
) -> Result<Tensor, RegularizerError> {
    let rows = to_rows(activated);
    let projection = project_cell(&rows, arch.activation.primitives()).map_err(|error| {
        RegularizerError::Projection {
            cell,
            message: error.to_string(),
        }
    })?;
    let flat: Vec<f32> = projection.z.concat();
    Ok(Tensor::from_slice(&flat)
        .view([rows.len() as i64, -1])
        .to_device(activated.device()))
}

/// ADMM's auxiliary variables for one architecture tensor.
#[derive(Debug)]
pub struct AdmmPair {
    /// Z: the discrete target.
    pub z: Tensor,
    /// U: the scaled dual variable.
    pub u: Tensor,
}

/// The configured regularizer with its state.
#[derive(Debug)]
pub struct ArchRegularizer {
    kind: RegularizerKind,
    rho: f64,
    total_epochs: f64,
    compat: Compat,
    admm_freq: u64,
    admm_discount: f64,
    /// ADMM state of (normal, reduce); none for other regularizers.
    pub admm: Option<[AdmmPair; 2]>,
    /// Alpha steps since the last Z/U update (the reference's `alpha_counter`).
    pub alpha_counter: u64,
}

impl ArchRegularizer {
    /// Builds the regularizer; ADMM's Z starts as a copy of raw alpha (`reference`, SPEC B4)
    /// or as Pi_S(act(alpha)) (`fixed`), U at zero.
    pub fn new(config: &SearchConfig, arch: &ArchParams) -> Result<Self, RegularizerError> {
        let admm = match config.regularizer.kind {
            RegularizerKind::Admm => {
                let pair = |raw: &Tensor, cell| -> Result<AdmmPair, RegularizerError> {
                    let z = match config.compat {
                        Compat::Reference => raw.detach().copy(),
                        Compat::Fixed => {
                            tch::no_grad(|| project_tensor(&arch.activate(raw), arch, cell))?
                        }
                    };
                    Ok(AdmmPair {
                        u: raw.zeros_like().detach(),
                        z,
                    })
                };
                Some([pair(&arch.normal, "normal")?, pair(&arch.reduce, "reduce")?])
            }
            RegularizerKind::None | RegularizerKind::Prox => None,
        };
        Ok(Self {
            kind: config.regularizer.kind,
            rho: config.regularizer.rho,
            total_epochs: f64::from(config.epochs),
            compat: config.compat,
            admm_freq: u64::from(config.regularizer.admm_freq),
            admm_discount: config.regularizer.admm_discount,
            admm,
            alpha_counter: 0,
        })
    }

    /// The regulariser term of the alpha loss at `clock` (fractional epochs), differentiable
    /// in alpha; none for plain DARTS.
    pub fn loss(&self, arch: &ArchParams, clock: f64) -> Result<Option<Tensor>, RegularizerError> {
        match self.kind {
            RegularizerKind::None => Ok(None),
            RegularizerKind::Prox => {
                // c grows linearly from 1/(N·E) in the first iteration to 1 in the last.
                let coefficient = clock / self.total_epochs * self.rho / 2.0;
                let mut total: Option<Tensor> = None;
                for (raw, cell) in [(&arch.normal, "normal"), (&arch.reduce, "reduce")] {
                    let activated = arch.activate(raw);
                    let z = tch::no_grad(|| project_tensor(&activated, arch, cell))?;
                    let term = (activated - z).norm() * coefficient;
                    total = Some(match total {
                        None => term,
                        Some(sum) => sum + term,
                    });
                }
                Ok(total)
            }
            RegularizerKind::Admm => {
                let Some(pairs) = &self.admm else {
                    return Ok(None);
                };
                let mut total: Option<Tensor> = None;
                let cells = [
                    (&arch.normal, &arch.normal_mask),
                    (&arch.reduce, &arch.reduce_mask),
                ];
                for ((raw, mask), pair) in cells.into_iter().zip(pairs) {
                    let residual = (arch.activate(raw) - &pair.z + &pair.u) * mask;
                    let term = match self.compat {
                        // The reference code uses the plain norm (SPEC A4, B7).
                        Compat::Reference => residual.norm(),
                        Compat::Fixed => residual.square().sum(Kind::Float),
                    } * (self.rho / 2.0);
                    total = Some(match total {
                        None => term,
                        Some(sum) => sum + term,
                    });
                }
                Ok(total)
            }
        }
    }

    /// Called after every alpha step; in `fixed` mode ADMM updates Z and U every `admm_freq`
    /// alpha steps here. Returns whether Z/U were updated.
    pub fn after_alpha_step(&mut self, arch: &ArchParams) -> Result<bool, RegularizerError> {
        self.alpha_counter += 1;
        if self.compat == Compat::Fixed
            && self.admm.is_some()
            && self.alpha_counter >= self.admm_freq
        {
            self.alpha_counter = 0;
            self.update_admm(arch)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Called after every weight step; in `reference` mode ADMM tests
    /// `(alpha_counter + 1) % admm_freq == 0` here and resets the counter when it fires, i.e.
    /// every `admm_freq - 1` alpha steps (SPEC 5.3, B8). Returns whether Z/U were updated.
    pub fn after_weight_step(&mut self, arch: &ArchParams) -> Result<bool, RegularizerError> {
        if self.compat == Compat::Reference
            && self.admm.is_some()
            && (self.alpha_counter + 1).is_multiple_of(self.admm_freq)
        {
            self.alpha_counter = 0;
            self.update_admm(arch)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Z <- Pi_S(act(X + U)); then U <- (lambda_u·U + (X - Z))·M with raw X (`reference`,
    /// SPEC B5) or act(X) (`fixed`).
    fn update_admm(&mut self, arch: &ArchParams) -> Result<(), RegularizerError> {
        let Some(pairs) = &mut self.admm else {
            return Ok(());
        };
        let cells = [
            (&arch.normal, &arch.normal_mask, "normal"),
            (&arch.reduce, &arch.reduce_mask, "reduce"),
        ];
        tch::no_grad(|| {
            for ((raw, mask, cell), pair) in cells.into_iter().zip(pairs.iter_mut()) {
                let raw = raw.detach();
                pair.z = project_tensor(&arch.activate(&(&raw + &pair.u)), arch, cell)?;
                let x = match self.compat {
                    Compat::Reference => raw,
                    Compat::Fixed => arch.activate(&raw),
                };
                pair.u = (&pair.u * self.admm_discount + (x - &pair.z)) * mask;
            }
            Ok(())
        })
    }

    /// The state tensors for checkpoints (ADMM Z and U).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let Some(pairs) = &self.admm else {
            return Vec::new();
        };
        let mut tensors = Vec::new();
        for (cell, pair) in ["normal", "reduce"].iter().zip(pairs) {
            tensors.push((format!("admm_z_{cell}"), pair.z.shallow_clone()));
            tensors.push((format!("admm_u_{cell}"), pair.u.shallow_clone()));
        }
        tensors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prime_core::primitives::Activation;
    use tch::Device;

    fn uniform_arch(activation: Activation) -> ArchParams {
        let mut arch = ArchParams::initial(14, activation, Device::Cpu);
        let ops = activation.primitives().len() as i64;
        let value = match activation {
            Activation::Softmax => 0.0,
            Activation::Crb => 1.0 / ops as f64,
        };
        arch.normal =
            Tensor::full([14, ops], value, (Kind::Float, Device::Cpu)).set_requires_grad(true);
        arch.reduce =
            Tensor::full([14, ops], value, (Kind::Float, Device::Cpu)).set_requires_grad(true);
        arch
    }

    fn config(kind: RegularizerKind, compat: Compat) -> SearchConfig {
        let mut config = SearchConfig::default();
        config.regularizer.kind = kind;
        config.compat = compat;
        config
    }

    #[test]
    fn proximity_penalty_of_uniform_alphas_matches_the_spec() {
        let arch = uniform_arch(Activation::Softmax);
        let regularizer =
            ArchRegularizer::new(&config(RegularizerKind::Prox, Compat::Reference), &arch).unwrap();
        // c = 1 at the end of training (clock = epochs).
        let penalty = regularizer
            .loss(&arch, 50.0)
            .unwrap()
            .unwrap()
            .double_value(&[]);
        assert!((penalty - 0.278_388_2).abs() < 1e-6, "{penalty}");
        let halfway = regularizer
            .loss(&arch, 25.0)
            .unwrap()
            .unwrap()
            .double_value(&[]);
        assert!((halfway - 0.139_194_1).abs() < 1e-6, "{halfway}");
        let crb = uniform_arch(Activation::Crb);
        let regularizer =
            ArchRegularizer::new(&config(RegularizerKind::Prox, Compat::Reference), &crb).unwrap();
        let penalty = regularizer
            .loss(&crb, 50.0)
            .unwrap()
            .unwrap()
            .double_value(&[]);
        assert!(
            (penalty - 0.05 * 2.777_460_3 * 2.0).abs() < 1e-6,
            "{penalty}"
        );
    }

    #[test]
    fn proximity_gradient_pulls_towards_the_projection() {
        let arch = uniform_arch(Activation::Softmax);
        let _ = arch.normal.get(0).get(4).detach().fill_(0.1);
        let regularizer =
            ArchRegularizer::new(&config(RegularizerKind::Prox, Compat::Reference), &arch).unwrap();
        regularizer.loss(&arch, 50.0).unwrap().unwrap().backward();
        // Descending the gradient raises the selected op's alpha on row 0.
        let grad = arch.normal.grad();
        assert!(grad.double_value(&[0, 4]) < 0.0);
        assert!(grad.double_value(&[0, 1]) > 0.0);
    }

    #[test]
    fn admm_cadence_is_nine_alpha_steps_in_reference_and_ten_in_fixed() {
        for (compat, expected) in [(Compat::Reference, 9), (Compat::Fixed, 10)] {
            let arch = uniform_arch(Activation::Softmax);
            let mut regularizer =
                ArchRegularizer::new(&config(RegularizerKind::Admm, compat), &arch).unwrap();
            let mut updates = Vec::new();
            for alpha_step in 1..=30u64 {
                if regularizer.after_alpha_step(&arch).unwrap() {
                    updates.push(alpha_step);
                }
                // Two weight steps per alpha step: the test runs after each.
                for _ in 0..2 {
                    if regularizer.after_weight_step(&arch).unwrap() {
                        updates.push(alpha_step);
                    }
                }
            }
            let gaps: Vec<u64> = updates.windows(2).map(|w| w[1] - w[0]).collect();
            assert_eq!(updates[0], expected, "{compat:?}: {updates:?}");
            assert!(
                gaps.iter().all(|gap| *gap == expected),
                "{compat:?}: {updates:?}"
            );
        }
    }

    #[test]
    fn admm_z_starts_raw_in_reference_and_projected_in_fixed() {
        let arch = uniform_arch(Activation::Softmax);
        let reference =
            ArchRegularizer::new(&config(RegularizerKind::Admm, Compat::Reference), &arch).unwrap();
        let z = &reference.admm.as_ref().unwrap()[0].z;
        assert_eq!(z.sum(Kind::Float).double_value(&[]), 0.0);
        let fixed =
            ArchRegularizer::new(&config(RegularizerKind::Admm, Compat::Fixed), &arch).unwrap();
        let z = &fixed.admm.as_ref().unwrap()[0].z;
        assert_eq!(z.sum(Kind::Float).double_value(&[]), 8.0);
        // Reference loss: (rho/2)·||act(X) - Z + U|| with act = 1/8 everywhere, Z = 0, U = 0.
        let loss = reference
            .loss(&arch, 1.0)
            .unwrap()
            .unwrap()
            .double_value(&[]);
        let expected = 2.0 * 0.05 * (14.0f64 * 8.0 / 64.0).sqrt();
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
    }

    #[test]
    fn admm_update_projects_x_plus_u_and_accumulates_u() {
        let arch = uniform_arch(Activation::Softmax);
        let mut regularizer =
            ArchRegularizer::new(&config(RegularizerKind::Admm, Compat::Reference), &arch).unwrap();
        regularizer.update_admm(&arch).unwrap();
        let pair = &regularizer.admm.as_ref().unwrap()[0];
        assert_eq!(pair.z.sum(Kind::Float).double_value(&[]), 8.0);
        // U = 1.0·0 + (X - Z) with raw X = 0: minus the eight ones of Z.
        assert_eq!(pair.u.sum(Kind::Float).double_value(&[]), -8.0);
    }
}
