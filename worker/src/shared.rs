//! State the worker's session task and its slot loops share: the coordinator client and
//! session, the trials running on each slot, the slots out of service behind a stalled
//! training thread, and the shutdown signal with its grace period. Both the runtime (session
//! and slot loops) and the trial runner (`slot`) use it; it uses neither.

use crate::config::WorkerConfig;
use crate::observer::SlotControl;
use crate::trainer::Trainer;
use prime_core::trial::TrialId;
use prime_proto::client::Client;
use prime_proto::pb;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// First pause after a failed call; doubled up to `MAX_BACKOFF`.
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between retries.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(3);

/// A trial running on a slot.
pub(crate) struct RunningTrial {
    pub trial_id: TrialId,
    pub epoch: u64,
    pub control: Arc<SlotControl>,
}

/// A slot out of service behind a stalled training thread.
pub(crate) struct Stall {
    pub trial_id: TrialId,
    /// How long the thread had made no progress when the watchdog fired...
    pub idle: Duration,
    /// ...and when that was.
    pub detected: tokio::time::Instant,
}

/// State shared by the session task and the slot loops.
pub(crate) struct Shared {
    pub config: WorkerConfig,
    pub trainer: Arc<dyn Trainer>,
    pub client: Client,
    /// Current session; 0 while not registered.
    pub session: watch::Sender<u64>,
    pub running: Mutex<BTreeMap<u32, RunningTrial>>,
    /// Slots whose stalled training thread has not ended yet.
    pub stalled: Mutex<BTreeMap<u32, Stall>>,
    pub shutting_down: AtomicBool,
    pub shutdown: Notify,
    /// When the shutdown grace period ends; set by the first shutdown request.
    pub shutdown_deadline: Mutex<Option<tokio::time::Instant>>,
}

impl Shared {
    pub fn running(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, RunningTrial>> {
        self.running
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn stalled(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, Stall>> {
        self.stalled
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    pub(crate) fn stalled_reports(&self) -> Vec<pb::StalledSlot> {
        self.stalled()
            .iter()
            .map(|(slot, stall)| pb::StalledSlot {
                slot: *slot,
                trial_id: stall.trial_id,
                no_progress_ms: (stall.idle + stall.detected.elapsed()).as_millis() as u64,
            })
            .collect()
    }

    pub(crate) fn running_reports(&self) -> Vec<pb::RunningTrial> {
        self.running()
            .iter()
            .map(|(slot, trial)| pb::RunningTrial {
                trial_id: trial.trial_id,
                epoch: trial.epoch,
                slot: *slot,
                progress: trial.control.progress().as_ref().map(pb::Progress::from),
            })
            .collect()
    }

    pub(crate) fn control_of(&self, trial_id: TrialId) -> Option<Arc<SlotControl>> {
        self.running()
            .values()
            .find(|trial| trial.trial_id == trial_id)
            .map(|trial| trial.control.clone())
    }

    /// Carries out the orders of a heartbeat's reply: stop or preempt the trials it names.
    pub(crate) fn obey(&self, orders: pb::HeartbeatReply) {
        for trial_id in orders.stop {
            if let Some(control) = self.control_of(trial_id) {
                tracing::warn!(trial_id, "coordinator says stop");
                control.stop.store(true, Ordering::SeqCst);
            }
        }
        for trial_id in orders.preempt {
            if let Some(control) = self.control_of(trial_id) {
                control.preempt.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Asks every running trial to checkpoint and stop, and the slots to take no more; the
    /// first request starts the grace period.
    pub fn begin_shutdown(&self) {
        self.shutdown_deadline
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .get_or_insert_with(|| tokio::time::Instant::now() + self.config.shutdown_grace);
        self.shutting_down.store(true, Ordering::SeqCst);
        for trial in self.running().values() {
            trial.control.preempt.store(true, Ordering::SeqCst);
        }
        self.shutdown.notify_waiters();
    }

    /// Marks the session invalid so the session task registers again.
    pub fn session_expired(&self) {
        self.session.send_replace(0);
    }
}

/// Resolves when the shutdown grace period is over; never while no shutdown was requested.
pub(crate) async fn grace_over(shared: &Shared) {
    loop {
        // Created before the check: `notify_waiters` wakes it even before its first poll.
        let notified = shared.shutdown.notified();
        let deadline = *shared
            .shutdown_deadline
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        match deadline {
            Some(deadline) => return tokio::time::sleep_until(deadline).await,
            None => notified.await,
        }
    }
}

/// Waits for `pause`, or less if the worker starts shutting down.
pub(crate) async fn pause(shared: &Shared, pause: Duration) {
    until_shutdown(shared, tokio::time::sleep(pause)).await;
}

/// Waits for `future`, or less if the worker starts shutting down; its output if it ended.
pub(crate) async fn until_shutdown<T>(
    shared: &Shared,
    future: impl std::future::Future<Output = T>,
) -> Option<T> {
    let notified = shared.shutdown.notified();
    if shared.shutting_down.load(Ordering::SeqCst) {
        return None;
    }
    tokio::select! {
        output = future => Some(output),
        _ = notified => None,
    }
}
