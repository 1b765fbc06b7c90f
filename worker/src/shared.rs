//! State the worker's session task, its request loop and its trials share: the coordinator
//! client and session, the running trials with their slots, the slots out of service behind
//! a stalled training thread, and the shutdown signal with its grace period. Both the runtime
//! (session and request loop) and the trial runner (`slot`) use it; it uses neither.

use crate::capacity::{slot_with_room, Holding};
use crate::config::WorkerConfig;
use crate::observer::SlotControl;
use crate::trainer::Trainer;
use prime_core::trial::TrialId;
use prime_proto::client::Client;
use prime_proto::pb;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// First pause after a failed call; doubled up to `MAX_BACKOFF`.
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between retries.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(3);

/// A running trial and the slots it holds.
pub(crate) struct RunningTrial {
    pub epoch: u64,
    /// Its slots, as the assignment named them: one, or N for a trial on N devices.
    pub slots: Vec<u32>,
    /// Its `gpu_share`: up to this many trials of the same share run on its slot.
    pub share: u32,
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
    /// The running trials, by trial id.
    pub running: Mutex<BTreeMap<TrialId, RunningTrial>>,
    /// Slots whose stalled training thread has not ended yet.
    pub stalled: Mutex<BTreeMap<u32, Stall>>,
    /// Signalled whenever a slot frees up (a trial ended, a stalled thread ended).
    pub freed: Notify,
    pub shutting_down: AtomicBool,
    pub shutdown: Notify,
    /// When the shutdown grace period ends; set by the first shutdown request.
    pub shutdown_deadline: Mutex<Option<tokio::time::Instant>>,
}

impl Shared {
    pub fn running(&self) -> std::sync::MutexGuard<'_, BTreeMap<TrialId, RunningTrial>> {
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
            .map(|(trial_id, trial)| pb::RunningTrial {
                trial_id: *trial_id,
                epoch: trial.epoch,
                slot: trial.slots.first().copied().unwrap_or_default(),
                progress: trial.control.progress().as_ref().map(pb::Progress::from),
                slots: trial.slots.clone(),
            })
            .collect()
    }

    pub(crate) fn control_of(&self, trial_id: TrialId) -> Option<Arc<SlotControl>> {
        self.running()
            .get(&trial_id)
            .map(|trial| trial.control.clone())
    }

    /// Forgets the attempt at `epoch` of trial `trial_id`, unless a newer attempt of the
    /// same trial has started here since (the coordinator requeued and reassigned it while
    /// this one was reporting its end).
    pub(crate) fn forget_running(&self, trial_id: TrialId, epoch: u64) {
        let mut running = self.running();
        if running
            .get(&trial_id)
            .is_some_and(|trial| trial.epoch == epoch)
        {
            running.remove(&trial_id);
        }
    }

    /// A slot that can take another trial (see `capacity`), if any.
    pub(crate) fn slot_with_room(&self) -> Option<u32> {
        let holdings: Vec<Holding> = self
            .running()
            .values()
            .map(|trial| Holding {
                slots: trial.slots.clone(),
                share: trial.share,
            })
            .collect();
        let stalled: BTreeSet<u32> = self.stalled().keys().copied().collect();
        slot_with_room(self.config.devices.len() as u32, &holdings, &stalled)
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
