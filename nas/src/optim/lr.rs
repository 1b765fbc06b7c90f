//! The cosine learning-rate schedule (SPEC 3.3, A.7).

use super::OptimError;

/// The learning rate of 0-based `epoch` under cosine annealing over `total_epochs`:
/// eta_min + (lr0 - eta_min) * (1 + cos(pi * (epoch + offset) / total_epochs)) / 2.
/// `offset` 1 reproduces the authors' scheduler stepping (epoch e trains with lr(e + 1)),
/// 0 the original DARTS code. The value is constant within an epoch.
pub fn cosine_lr(
    lr0: f64,
    eta_min: f64,
    total_epochs: usize,
    epoch: usize,
    offset: usize,
) -> Result<f64, OptimError> {
    if total_epochs == 0 {
        return Err(OptimError::InvalidHyperparameter {
            name: "total_epochs",
            value: 0.0,
            requirement: "must be at least 1",
        });
    }
    for (name, value) in [("lr0", lr0), ("eta_min", eta_min)] {
        if !value.is_finite() {
            return Err(OptimError::InvalidHyperparameter {
                name,
                value,
                requirement: "must be finite",
            });
        }
    }
    let t = (epoch + offset) as f64;
    let cosine = (std::f64::consts::PI * t / total_epochs as f64).cos();
    Ok(eta_min + (lr0 - eta_min) * (1.0 + cosine) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Search: lr0 0.025, eta_min 0.001, 50 epochs.
    fn search(epoch: usize, offset: usize) -> f64 {
        cosine_lr(0.025, 0.001, 50, epoch, offset).unwrap()
    }

    /// Evaluation: lr0 0.025, eta_min 0, 600 epochs.
    fn evaluation(epoch: usize, offset: usize) -> f64 {
        cosine_lr(0.025, 0.0, 600, epoch, offset).unwrap()
    }

    #[test]
    fn search_schedule_with_the_authors_stepping() {
        assert!((search(0, 1) - 0.0249763).abs() < 5e-8, "{}", search(0, 1));
        assert!((search(24, 1) - 0.0130).abs() < 5e-5, "{}", search(24, 1));
        assert!((search(49, 1) - 0.001).abs() < 1e-15, "{}", search(49, 1));
    }

    #[test]
    fn search_schedule_with_the_original_stepping() {
        assert_eq!(search(0, 0), 0.025);
        assert!(
            (search(49, 0) - 0.0010237).abs() < 5e-8,
            "{}",
            search(49, 0)
        );
    }

    #[test]
    fn evaluation_schedule() {
        assert!(
            (evaluation(0, 1) - 0.0249998).abs() < 5e-8,
            "{}",
            evaluation(0, 1)
        );
        assert_eq!(evaluation(599, 1), 0.0);
        assert!(
            (evaluation(599, 0) - 1.71e-7).abs() < 5e-10,
            "{}",
            evaluation(599, 0)
        );
    }

    #[test]
    fn zero_epochs_and_non_finite_rates_are_rejected() {
        assert!(matches!(
            cosine_lr(0.025, 0.0, 0, 0, 1),
            Err(OptimError::InvalidHyperparameter {
                name: "total_epochs",
                ..
            })
        ));
        assert!(matches!(
            cosine_lr(f64::NAN, 0.0, 10, 0, 1),
            Err(OptimError::InvalidHyperparameter { name: "lr0", .. })
        ));
    }
}
