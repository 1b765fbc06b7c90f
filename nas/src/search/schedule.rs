//! When architecture steps happen (SPEC 4): the original alternation, the constant schedule
//! CS-k, and the dynamic FIMT schedule with its adaptive threshold.
//!
//! Decisions are pure functions of the schedule state, which is saved in checkpoints.

use prime_core::config::{Compat, ScheduleConfig, ScheduleKind};
use serde::{Deserialize, Serialize};

/// The EWMA's value before the first weight step (the reference code's sentinel).
pub const EWMA_SENTINEL: f64 = -1.0;

/// The schedule's mutable state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// FIMT threshold h.
    pub threshold: f64,
    /// EWMA of the FIMT (the sentinel before the first weight step).
    pub ewma: f64,
    /// FIMT values observed so far (saturating): the reference's EWMA takes the second one
    /// unblended.
    #[serde(default = "observed_in_old_checkpoints")]
    pub fimt_observed: u64,
}

/// Checkpoints without `fimt_observed` were written by a build that always blended: treat
/// their EWMA as past the aliased second step, so resuming them continues as they ran.
fn observed_in_old_checkpoints() -> u64 {
    u64::MAX
}

/// The alpha-step schedule of a search run.
#[derive(Debug, Clone, PartialEq)]
pub struct AlphaSchedule {
    kind: ScheduleKind,
    ratio: u32,
    growth: f64,
    decay: f64,
    ewma_coefficient: f64,
    skip_sentinel_update: bool,
    alias_second_fimt: bool,
    /// Current state.
    pub state: ScheduleState,
}

impl AlphaSchedule {
    /// A schedule from its config; `compat = fixed` leaves h unchanged while the EWMA is the
    /// sentinel (SPEC 4.4 S2) and blends from the second FIMT on, where `reference` takes the
    /// second FIMT unblended (S11).
    pub fn new(config: &ScheduleConfig, compat: Compat) -> Self {
        Self {
            kind: config.kind,
            ratio: config.ratio,
            growth: config.hi,
            decay: threshold_decay(config.hi, f64::from(config.ratio)),
            ewma_coefficient: config.ewma,
            skip_sentinel_update: compat == Compat::Fixed,
            alias_second_fimt: compat == Compat::Reference,
            state: ScheduleState {
                threshold: config.h0,
                ewma: EWMA_SENTINEL,
                fimt_observed: 0,
            },
        }
    }

    /// Decides at the top of the iteration with in-epoch index `step` whether to take an alpha
    /// step, and updates the threshold accordingly (SPEC 3.4 step 3-4).
    pub fn decide(&mut self, step: u64) -> bool {
        match self.kind {
            ScheduleKind::Alternate => true,
            ScheduleKind::Constant => (step + 1).is_multiple_of(u64::from(self.ratio)),
            ScheduleKind::Fimt => {
                let sentinel = self.state.ewma == EWMA_SENTINEL;
                let fire = self.state.ewma > 0.0 && self.state.ewma < self.state.threshold;
                if fire {
                    self.state.threshold *= self.decay;
                } else if !(sentinel && self.skip_sentinel_update) {
                    self.state.threshold *= self.growth;
                }
                fire
            }
        }
    }

    /// Records the FIMT of the weight step just taken; returns the new EWMA.
    ///
    /// The authors' `track_FI` sets `FI_ewma = FI` at the first step, so both names share one
    /// tensor and the second step's in-place `FI *= 0; FI += ...` overwrites the EWMA with F_2
    /// before the blend (SPEC 4.3, S11): under `reference` the EWMA is F_1, F_2, then blended.
    pub fn observe_fimt(&mut self, fimt: f64) -> f64 {
        self.state.fimt_observed = self.state.fimt_observed.saturating_add(1);
        let aliased = self.alias_second_fimt && self.state.fimt_observed == 2;
        self.state.ewma = if self.state.ewma == EWMA_SENTINEL || aliased {
            fimt
        } else {
            self.ewma_coefficient * fimt + (1.0 - self.ewma_coefficient) * self.state.ewma
        };
        self.state.ewma
    }
}

/// h_d = exp(-r ln h_i): one alpha step undoes r growth steps.
pub fn threshold_decay(growth: f64, ratio: f64) -> f64 {
    (-ratio * growth.ln()).exp()
}

/// Replays a FIMT sequence (one value per iteration) under the authors' loop order and returns
/// the 0-based iterations at which an alpha step fires.
pub fn replay(config: &ScheduleConfig, compat: Compat, fimt: &[f64]) -> Vec<usize> {
    let mut schedule = AlphaSchedule::new(config, compat);
    let mut steps = Vec::new();
    for (iteration, value) in fimt.iter().enumerate() {
        if schedule.decide(iteration as u64) {
            steps.push(iteration);
        }
        schedule.observe_fimt(*value);
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fimt_config() -> ScheduleConfig {
        ScheduleConfig {
            kind: ScheduleKind::Fimt,
            ratio: 10,
            h0: 1.0,
            hi: 1.05,
            ewma: 0.2,
        }
    }

    #[test]
    fn decay_matches_the_spec() {
        assert!((threshold_decay(1.05, 10.0) - 0.613_913_3).abs() < 1e-7);
    }

    #[test]
    fn constant_fimt_triggers_at_the_spec_iterations() {
        let steps = replay(&fimt_config(), Compat::Reference, &[0.5; 60]);
        assert_eq!(steps, vec![1, 2, 8, 19, 30, 41, 52]);
        let steps = replay(&fimt_config(), Compat::Reference, &[50.0; 150]);
        assert_eq!(steps, vec![81, 92, 103, 114, 125, 136, 147]);
    }

    #[test]
    fn decaying_fimt_is_delayed_at_the_start() {
        let fimt: Vec<f64> = (0..200).map(|t| 100.0 * 0.97f64.powi(t)).collect();
        let steps = replay(&fimt_config(), Compat::Reference, &fimt);
        assert_eq!(&steps[..8], &[61, 67, 74, 81, 88, 95, 101, 108]);
        assert_eq!(steps.len(), 21);
        let steps = replay(&fimt_config(), Compat::Fixed, &fimt);
        assert_eq!(&steps[..8], &[61, 68, 75, 82, 88, 95, 102, 109]);
        assert_eq!(steps.len(), 21);
    }

    #[test]
    fn constant_fimt_under_fixed_compat_starts_one_iteration_later() {
        let steps = replay(&fimt_config(), Compat::Fixed, &[0.5; 60]);
        assert_eq!(steps, vec![1, 2, 9, 20, 31, 42, 53]);
        let steps = replay(&fimt_config(), Compat::Fixed, &[50.0; 150]);
        assert_eq!(steps, vec![82, 93, 104, 115, 126, 137, 148]);
    }

    /// SPEC 4.4 S11: F = 5, 0.3, then 0.9. The reference's aliased EWMA is 5, 0.3, 0.48, ...,
    /// so it is below h from iteration 2; a blended one (0.2 * 0.3 + 0.8 * 5 = 4.06) is not.
    #[test]
    fn the_reference_takes_the_second_fimt_unblended() {
        let mut fimt = vec![5.0, 0.3];
        fimt.extend([0.9; 100]);
        let steps = replay(&fimt_config(), Compat::Reference, &fimt);
        assert_eq!(&steps[..5], &[2, 3, 20, 31, 42]);
        let steps = replay(&fimt_config(), Compat::Fixed, &fimt);
        assert_eq!(&steps[..5], &[10, 15, 22, 32, 43]);

        let mut reference = AlphaSchedule::new(&fimt_config(), Compat::Reference);
        let mut fixed = AlphaSchedule::new(&fimt_config(), Compat::Fixed);
        let ewmas = |schedule: &mut AlphaSchedule| -> Vec<f64> {
            [5.0, 0.3, 0.9]
                .iter()
                .map(|f| schedule.observe_fimt(*f))
                .collect()
        };
        assert_eq!(ewmas(&mut reference), vec![5.0, 0.3, 0.2 * 0.9 + 0.8 * 0.3]);
        let blended = 0.2 * 0.3 + 0.8 * 5.0;
        assert_eq!(
            ewmas(&mut fixed),
            vec![5.0, blended, 0.2 * 0.9 + 0.8 * blended]
        );
    }

    #[test]
    fn checkpoints_without_the_fimt_count_resume_blending() {
        let state: ScheduleState =
            serde_json::from_str(r#"{"threshold": 2.0, "ewma": 0.5}"#).unwrap();
        let mut schedule = AlphaSchedule::new(&fimt_config(), Compat::Reference);
        schedule.state = state;
        assert_eq!(schedule.observe_fimt(1.0), 0.2 * 1.0 + 0.8 * 0.5);
    }

    #[test]
    fn threshold_at_iteration_80_matches_the_spec() {
        let mut schedule = AlphaSchedule::new(&fimt_config(), Compat::Reference);
        for iteration in 0..80 {
            assert!(!schedule.decide(iteration));
            schedule.observe_fimt(50.0);
        }
        assert!((schedule.state.threshold - 49.5614).abs() < 1e-3);
    }

    #[test]
    fn fixed_compat_skips_the_sentinel_update() {
        let mut schedule = AlphaSchedule::new(&fimt_config(), Compat::Fixed);
        assert!(!schedule.decide(0));
        assert_eq!(schedule.state.threshold, 1.0);
    }

    #[test]
    fn constant_schedule_fires_every_k_steps_within_an_epoch() {
        let config = ScheduleConfig {
            kind: ScheduleKind::Constant,
            ratio: 10,
            ..ScheduleConfig::default()
        };
        let mut schedule = AlphaSchedule::new(&config, Compat::Reference);
        let fired: Vec<u64> = (0..711).filter(|step| schedule.decide(*step)).collect();
        assert_eq!(fired.len(), 71);
        assert_eq!(fired[0], 9);
        assert_eq!(*fired.last().unwrap(), 709);
        let mut alternate = AlphaSchedule::new(&ScheduleConfig::default(), Compat::Reference);
        assert!((0..5).all(|step| alternate.decide(step)));
    }
}
