//! Step progress between heartbeats: heartbeats come every few seconds and persist progress,
//! so a live view fed by them alone moves in jumps. This task sends the progress of each
//! running trial that moved, at most once per `progress_every` per trial (several trials may
//! share a slot), as a progress-only heartbeat that the coordinator keeps in memory.

use crate::shared::Shared;
use prime_core::trial::TrialId;
use prime_proto::pb;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Checks for changed progress this many times per `progress_every`, so an update leaves at
/// most a quarter of the interval after it is due.
const CHECKS_PER_INTERVAL: u32 = 4;

/// What was last sent for a trial.
struct Sent {
    epoch: u64,
    progress: pb::Progress,
    at: Instant,
}

/// Decides which trials' progress to send: a trial whose progress changed since it was last
/// sent, once `every` has passed since then; a new trial (or a new attempt) at once.
pub(crate) struct ProgressThrottle {
    every: Duration,
    sent: BTreeMap<TrialId, Sent>,
}

impl ProgressThrottle {
    /// A throttle sending each trial's progress at most once per `every`.
    pub(crate) fn new(every: Duration) -> Self {
        ProgressThrottle {
            every,
            sent: BTreeMap::new(),
        }
    }

    /// Of `running` (the report of every running trial), the reports due at `now`, remembered
    /// as sent; trials no longer running are forgotten.
    pub(crate) fn due(
        &mut self,
        running: Vec<pb::RunningTrial>,
        now: Instant,
    ) -> Vec<pb::RunningTrial> {
        self.sent
            .retain(|trial_id, _| running.iter().any(|report| report.trial_id == *trial_id));
        running
            .into_iter()
            .filter(|report| {
                let Some(progress) = report.progress else {
                    return false;
                };
                let held_back = self.sent.get(&report.trial_id).is_some_and(|sent| {
                    sent.epoch == report.epoch
                        && (sent.progress == progress
                            || now.saturating_duration_since(sent.at) < self.every)
                });
                if !held_back {
                    let sent = Sent {
                        epoch: report.epoch,
                        progress,
                        at: now,
                    };
                    self.sent.insert(report.trial_id, sent);
                }
                !held_back
            })
            .collect()
    }
}

/// Sends progress-only heartbeats while the worker runs; nothing when `progress_every` is
/// zero. Orders in the replies (stop, preempt) are obeyed as a heartbeat's are.
pub(crate) async fn report_progress(shared: Arc<Shared>) {
    let every = shared.config.progress_every;
    if every.is_zero() {
        return;
    }
    let mut throttle = ProgressThrottle::new(every);
    let mut checks = tokio::time::interval(every / CHECKS_PER_INTERVAL);
    checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        checks.tick().await;
        let session = *shared.session.borrow();
        if session == 0 {
            continue;
        }
        let running = throttle.due(shared.running_reports(), Instant::now());
        if running.is_empty() {
            continue;
        }
        let request = pb::HeartbeatRequest {
            name: shared.config.name.clone(),
            session,
            running,
            progress_only: true,
            ..Default::default()
        };
        match shared.client.clone().heartbeat(request).await {
            Ok(reply) => shared.obey(reply.into_inner()),
            Err(status) => tracing::debug!(%status, "progress update failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(slot: u32, trial_id: TrialId, steps_done: u64) -> pb::RunningTrial {
        pb::RunningTrial {
            trial_id,
            epoch: 1,
            slot,
            slots: vec![slot],
            progress: Some(pb::Progress {
                epochs_done: 0,
                epochs_total: 2,
                steps_done,
                steps_total: 100,
            }),
        }
    }

    /// The (slot, steps) of the reports due.
    fn sent(due: Vec<pb::RunningTrial>) -> Vec<(u32, u64)> {
        due.iter()
            .map(|report| (report.slot, report.progress.unwrap().steps_done))
            .collect()
    }

    #[test]
    fn each_trial_sends_changed_progress_at_most_once_per_interval() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut throttle = ProgressThrottle::new(Duration::from_secs(1));
        let both = |a: u64, b: u64| vec![report(0, 7, a), report(1, 8, b)];
        assert_eq!(sent(throttle.due(both(1, 1), at(0))), [(0, 1), (1, 1)]);
        let mut count = 0;
        for step in 2..=10 {
            count += throttle.due(both(step, 1), at(step * 100)).len();
        }
        assert_eq!(count, 1, "trial 7 moved nine times in a second: one update");
        assert_eq!(sent(throttle.due(both(10, 1), at(1100))), []);
        assert_eq!(sent(throttle.due(both(11, 1), at(1150))), []);
        assert_eq!(sent(throttle.due(both(12, 2), at(2100))), [(0, 12), (1, 2)]);
        assert_eq!(sent(throttle.due(both(12, 2), at(9000))), [], "unchanged");
    }

    #[test]
    fn a_new_trial_on_a_slot_is_sent_at_once_and_ended_trials_are_forgotten() {
        let start = Instant::now();
        let mut throttle = ProgressThrottle::new(Duration::from_secs(1));
        assert_eq!(sent(throttle.due(vec![report(0, 7, 5)], start)), [(0, 5)]);
        let soon = start + Duration::from_millis(10);
        assert_eq!(sent(throttle.due(vec![report(0, 9, 0)], soon)), [(0, 0)]);
        assert_eq!(sent(throttle.due(Vec::new(), soon)), []);
        assert_eq!(sent(throttle.due(vec![report(0, 9, 0)], soon)), [(0, 0)]);
        let mut silent = report(1, 3, 0);
        silent.progress = None;
        assert_eq!(sent(throttle.due(vec![silent], soon)), []);
    }

    #[test]
    fn trials_sharing_a_slot_are_throttled_each_on_its_own() {
        let start = Instant::now();
        let mut throttle = ProgressThrottle::new(Duration::from_secs(1));
        let shared = |a: u64, b: u64| vec![report(0, 7, a), report(0, 8, b)];
        assert_eq!(sent(throttle.due(shared(1, 1), start)), [(0, 1), (0, 1)]);
        let later = start + Duration::from_millis(1500);
        assert_eq!(sent(throttle.due(shared(1, 4), later)), [(0, 4)]);
    }
}
