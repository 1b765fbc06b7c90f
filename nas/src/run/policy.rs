//! When a run checkpoints: the policy decides, the driver writes. Decisions are values, so
//! every rule is tested here without a run.

use prime_core::observer::Control;

/// What the driver does at a decision point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go on without a checkpoint.
    Continue,
    /// Write a checkpoint, then go on.
    Save,
    /// Write a checkpoint, then end the run as stopped.
    SaveAndStop,
}

/// The checkpoint rules of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// Epochs of the run.
    pub epochs: u32,
    /// A checkpoint every this many epochs (0: only at the end).
    pub every_epochs: u32,
}

impl CheckpointPolicy {
    /// Before a step: the observer's request (a time-based checkpoint, a stop).
    pub fn before_step(self, control: Control) -> Decision {
        match control {
            Control::Continue => Decision::Continue,
            Control::Checkpoint => Decision::Save,
            Control::CheckpointAndStop => Decision::SaveAndStop,
        }
    }

    /// After `epochs_done` epochs; `ended_early` when the task converged before its last
    /// epoch (its last checkpoint is then due now).
    pub fn after_epoch(self, epochs_done: u32, ended_early: bool) -> Decision {
        let due = epochs_done == self.epochs
            || (self.every_epochs > 0 && epochs_done.is_multiple_of(self.every_epochs));
        if due || ended_early {
            Decision::Save
        } else {
            Decision::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_checkpoints_follow_the_interval_and_always_close_the_run() {
        let policy = CheckpointPolicy {
            epochs: 5,
            every_epochs: 2,
        };
        let saved: Vec<u32> = (1..=5)
            .filter(|&done| policy.after_epoch(done, false) == Decision::Save)
            .collect();
        assert_eq!(saved, vec![2, 4, 5]);
        let only_at_the_end = CheckpointPolicy {
            epochs: 3,
            every_epochs: 0,
        };
        assert_eq!(only_at_the_end.after_epoch(1, false), Decision::Continue);
        assert_eq!(only_at_the_end.after_epoch(1, true), Decision::Save);
        assert_eq!(only_at_the_end.after_epoch(3, false), Decision::Save);
    }

    #[test]
    fn observer_requests_become_decisions() {
        let policy = CheckpointPolicy {
            epochs: 1,
            every_epochs: 1,
        };
        assert_eq!(policy.before_step(Control::Continue), Decision::Continue);
        assert_eq!(policy.before_step(Control::Checkpoint), Decision::Save);
        assert_eq!(
            policy.before_step(Control::CheckpointAndStop),
            Decision::SaveAndStop
        );
    }
}
