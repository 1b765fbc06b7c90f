//! Worker-facing operations of the state machine: registration, heartbeats, placement,
//! cordon and drain.

use crate::db;
use crate::error::CoordinatorError;
use crate::model::{Assignment, Placement, RunningReport, StalledSlot, WorkerSlot, WorkerSummary};
use crate::placement::{self, Decision, DeviceView};
use crate::state::{State, Worker};
use prime_core::gpu::{GpuInfo, WorkerHardware};
use prime_core::trial::{AttemptOutcome, TrialId, TrialState};
use std::collections::HashSet;
use tokio::time::Instant;

/// What a heartbeat tells the worker to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Orders {
    /// Trials to stop without reporting.
    pub stop: Vec<TrialId>,
    /// Trials to checkpoint, report as preempted and stop.
    pub preempt: Vec<TrialId>,
}

/// How a worker is to be treated for new trials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerMode {
    /// No new trials.
    Cordon,
    /// New trials again.
    Uncordon,
    /// No new trials, and running ones are checkpointed and requeued.
    Drain,
}

impl std::str::FromStr for WorkerMode {
    type Err = CoordinatorError;

    fn from_str(mode: &str) -> Result<Self, Self::Err> {
        match mode {
            "cordon" => Ok(WorkerMode::Cordon),
            "uncordon" => Ok(WorkerMode::Uncordon),
            "drain" => Ok(WorkerMode::Drain),
            other => Err(CoordinatorError::Invalid(format!(
                "unknown worker mode `{other}`: expected cordon, uncordon or drain"
            ))),
        }
    }
}

impl State {
    fn live_worker(&mut self, name: &str, session: u64) -> Result<&mut Worker, CoordinatorError> {
        let expired = |reason: &str| CoordinatorError::SessionExpired {
            name: name.to_string(),
            reason: reason.to_string(),
        };
        let worker = self
            .workers
            .get_mut(name)
            .ok_or_else(|| expired("unknown worker"))?;
        if !worker.alive {
            return Err(expired("its lease expired and its trials were requeued"));
        }
        if worker.session != session {
            return Err(expired(
                "a newer registration or a coordinator restart superseded it",
            ));
        }
        Ok(worker)
    }

    /// Refuses a registration of `name` by `holder` while another token holds its live
    /// session: a worker's name cannot be taken over by someone else's token.
    fn check_takeover(&self, name: &str, holder: Option<&str>) -> Result<(), CoordinatorError> {
        let Some(worker) = self.workers.get(name) else {
            return Ok(());
        };
        match (&worker.holder, holder) {
            (Some(current), Some(holder)) if worker.alive && current != holder => {
                Err(CoordinatorError::Denied(format!(
                    "worker name `{name}` is held by another token's live session; choose \
                     another --name, or wait until its lease expires"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Refuses a call on the session `session` of worker `name` from a token other than
    /// the one that registered it (`holder` is `None` on an open coordinator).
    pub fn check_session_holder(
        &self,
        name: &str,
        session: u64,
        holder: Option<&str>,
    ) -> Result<(), CoordinatorError> {
        let Some(holder) = holder else {
            return Ok(());
        };
        match self.workers.get(name) {
            Some(worker)
                if worker.session == session && worker.holder.as_deref() != Some(holder) =>
            {
                Err(CoordinatorError::Denied(format!(
                    "the session of worker `{name}` was registered with another token"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Refuses a call about trial `trial_id` from a token other than the one holding the
    /// worker session the trial is placed on (`holder` is `None` on an open coordinator).
    pub fn check_trial_holder(
        &self,
        trial_id: TrialId,
        holder: Option<&str>,
    ) -> Result<(), CoordinatorError> {
        let Some(holder) = holder else {
            return Ok(());
        };
        let trial = self
            .trials
            .get(&trial_id)
            .ok_or(CoordinatorError::UnknownTrial(trial_id))?;
        let held = trial.placement.as_ref().is_some_and(|placement| {
            self.workers
                .get(&placement.worker)
                .is_some_and(|worker| worker.holder.as_deref() == Some(holder))
        });
        if held {
            Ok(())
        } else {
            Err(CoordinatorError::Denied(format!(
                "trial {trial_id} is not running on a worker session registered with this token"
            )))
        }
    }

    /// Registers (or re-registers) a worker. Trials the coordinator placed on it that it
    /// does not report as running are requeued; of those it reports, the accepted ones are
    /// returned (it must stop the others).
    pub fn register(
        &mut self,
        name: &str,
        slots: Vec<WorkerSlot>,
        running: &[RunningReport],
        holder: Option<&str>,
        now: Instant,
    ) -> Result<(u64, Vec<TrialId>), CoordinatorError> {
        if name.trim().is_empty() {
            return Err(CoordinatorError::Invalid("a worker needs a name".into()));
        }
        self.check_takeover(name, holder)?;
        let indices: HashSet<u32> = slots.iter().map(|slot| slot.index).collect();
        if slots.is_empty() || indices.len() != slots.len() {
            return Err(CoordinatorError::Invalid(
                "a worker needs at least one slot, with distinct indices".into(),
            ));
        }
        let lease = self.config.lease;
        let occupied: Vec<(u32, TrialId)> = self
            .worker_entry(name, now)
            .occupied
            .iter()
            .map(|(slot, id)| (*slot, *id))
            .collect();
        let mut accepted = Vec::new();
        let mut lost = Vec::new();
        for (slot, trial_id) in occupied {
            let epoch = self.trials.get(&trial_id).map(|trial| trial.epoch);
            let still_running = running.iter().any(|report| {
                report.trial_id == trial_id && Some(report.epoch) == epoch && report.slot == slot
            });
            if still_running && indices.contains(&slot) {
                accepted.push(trial_id);
            } else {
                lost.push(trial_id);
            }
        }
        self.close_attempts(&lost, &AttemptOutcome::Lost)?;
        self.next_session += 1;
        let session = self.next_session;
        let worker = self.worker_entry(name, now);
        worker.session = session;
        worker.holder = holder.map(str::to_string);
        worker.slots = slots;
        worker.alive = true;
        worker.deadline = now + lease;
        worker.last_seen = now;
        tracing::info!(worker = %name, session, accepted = accepted.len(), lost = lost.len(), "worker registered");
        Ok((session, accepted))
    }

    /// Renews a worker's lease, records its trials' progress, and says which of them to
    /// stop or preempt.
    pub fn heartbeat(
        &mut self,
        name: &str,
        session: u64,
        running: &[RunningReport],
        now: Instant,
    ) -> Result<Orders, CoordinatorError> {
        self.renew(name, session, running, true, now)
    }

    /// A progress update between heartbeats: as [`heartbeat`](Self::heartbeat), but the
    /// progress is kept in memory only (volatile state, sent about once a second per busy
    /// slot; the next heartbeat persists it), so a thousand workers cost no database commits.
    pub fn progress_update(
        &mut self,
        name: &str,
        session: u64,
        running: &[RunningReport],
        now: Instant,
    ) -> Result<Orders, CoordinatorError> {
        self.renew(name, session, running, false, now)
    }

    /// Renews the lease and records progress, in the database too when `persist`.
    fn renew(
        &mut self,
        name: &str,
        session: u64,
        running: &[RunningReport],
        persist: bool,
        now: Instant,
    ) -> Result<Orders, CoordinatorError> {
        let lease = self.config.lease;
        let worker = self.live_worker(name, session)?;
        worker.deadline = now + lease;
        worker.last_seen = now;
        let draining = worker.draining;
        let mut orders = Orders::default();
        let mut updated = Vec::new();
        for report in running {
            let current = self.trials.get(&report.trial_id).filter(|trial| {
                trial.state == TrialState::Running
                    && trial.epoch == report.epoch
                    && trial.placement.as_ref().map(|p| p.worker.as_str()) == Some(name)
            });
            let Some(trial) = current else {
                orders.stop.push(report.trial_id);
                continue;
            };
            if draining {
                orders.preempt.push(trial.id);
            }
            if let Some(progress) = report.progress {
                let mut trial = trial.clone();
                trial.progress = progress;
                updated.push(trial);
            }
        }
        if persist && !updated.is_empty() {
            self.db.transaction(|transaction| {
                updated
                    .iter()
                    .try_for_each(|trial| transaction.save_progress(trial.id, &trial.progress))
            })?;
        }
        for trial in updated {
            self.install(trial);
        }
        Ok(orders)
    }

    /// Places the next queued trial (highest priority, then oldest) on a free slot of the
    /// worker; `None` when nothing is queued or the worker is cordoned.
    pub fn request_trial(
        &mut self,
        name: &str,
        session: u64,
        slot: u32,
        now: Instant,
    ) -> Result<Option<Assignment>, CoordinatorError> {
        let lease = self.config.lease;
        let worker = self.live_worker(name, session)?;
        if !worker.slots.iter().any(|known| known.index == slot) {
            return Err(CoordinatorError::Invalid(format!(
                "worker `{name}` registered no slot {slot}"
            )));
        }
        worker.deadline = now + lease;
        worker.last_seen = now;
        let stale_occupant = worker.occupied.get(&slot).copied();
        let cordoned = worker.cordoned || worker.draining;
        if let Some(trial_id) = stale_occupant {
            // The worker asks for a slot it still holds a trial on: it no longer runs it.
            self.close_attempts(&[trial_id], &AttemptOutcome::Lost)?;
        }
        if cordoned {
            return Ok(None);
        }
        let device = self.device_view(name, slot);
        let trial_id = match placement::decide(name, &[device], &self.queue, None) {
            Decision::Place { trial_id, .. } => trial_id,
            Decision::Reserve(_) | Decision::Wait => return Ok(None),
        };
        let mut trial = self.trial(trial_id)?.clone();
        let priority = trial.spec.priority;
        let resumed_from_state = trial.state;
        trial.state = TrialState::Running;
        trial.epoch += 1;
        trial.attempts += 1;
        trial.placement = Some(Placement {
            worker: name.to_string(),
            slot,
        });
        trial.last_placement = trial.placement.clone();
        let started = db::unix_ms();
        trial.attempt_started_unix_ms = Some(started);
        let resume = self
            .db
            .checkpoints(trial_id)?
            .into_iter()
            .rfind(|c| !c.is_final);
        let placement = Placement {
            worker: name.to_string(),
            slot,
        };
        self.db.transaction(|transaction| {
            transaction.save_trial(&trial)?;
            transaction.open_attempt(trial.id, trial.epoch, &placement, started)?;
            let from = resume
                .as_ref()
                .map_or("the start".to_string(), |c| format!("checkpoint {}", c.id));
            transaction.insert_log(
                trial.id,
                &format!(
                    "attempt {} assigned to {name} slot {slot} (was {resumed_from_state}), \
                     resuming from {from}",
                    trial.attempts
                ),
            )
        })?;
        tracing::info!(trial_id, worker = %name, slot, epoch = trial.epoch, priority, "trial assigned");
        let assignment = Assignment {
            trial_id,
            epoch: trial.epoch,
            spec: trial.spec.clone(),
            resume,
        };
        self.install(trial);
        Ok(Some(assignment))
    }

    /// Slot `slot` of worker `name` as placement sees it: a device of its own, taking one
    /// trial at a time (the worker runs one trial per slot), with the memory its GPU last
    /// reported. A trial asking for several GPUs is never offered a single slot.
    fn device_view(&self, name: &str, slot: u32) -> DeviceView {
        let worker = &self.workers[name];
        let gpu_index = worker
            .slots
            .iter()
            .find(|known| known.index == slot)
            .and_then(|known| known.device.strip_prefix("cuda:"))
            .and_then(|index| index.parse::<u32>().ok());
        let memory = gpu_index.and_then(|index| {
            worker
                .hardware
                .gpus
                .iter()
                .find(|gpu| gpu.index == index)
                .map(|gpu| (gpu.memory_total_bytes, gpu.memory_free_bytes))
        });
        DeviceView {
            slot,
            trials: u32::from(worker.occupied.contains_key(&slot)),
            share: 1,
            memory,
            stalled: worker.stalled.iter().any(|stall| stall.slot == slot),
        }
    }

    /// Records the slots a live worker reports as stalled (out of service behind a hung
    /// training thread), for `prime workers`.
    pub fn record_stalled(
        &mut self,
        name: &str,
        session: u64,
        stalled: Vec<StalledSlot>,
        now: Instant,
    ) -> Result<(), CoordinatorError> {
        let worker = self.live_worker(name, session)?;
        if !stalled.is_empty() && worker.stalled.is_empty() {
            tracing::warn!(worker = %name, slots = ?stalled.iter().map(|s| s.slot).collect::<Vec<_>>(), "worker reports stalled slots");
        }
        worker.stalled = stalled;
        worker.stalled_reported = now;
        Ok(())
    }

    /// Records a registration's torch build and GPUs.
    pub fn record_hardware(
        &mut self,
        name: &str,
        session: u64,
        hardware: WorkerHardware,
    ) -> Result<(), CoordinatorError> {
        self.live_worker(name, session)?.hardware = hardware;
        Ok(())
    }

    /// Records a heartbeat's GPU state (free memory, utilisation, temperature).
    pub fn record_gpus(
        &mut self,
        name: &str,
        session: u64,
        gpus: Vec<GpuInfo>,
    ) -> Result<(), CoordinatorError> {
        self.live_worker(name, session)?.hardware.gpus = gpus;
        Ok(())
    }

    /// Cordons, uncordons or drains a worker (the cordon flag survives restarts).
    pub fn set_worker_mode(
        &mut self,
        name: &str,
        mode: WorkerMode,
    ) -> Result<(), CoordinatorError> {
        let worker = self
            .workers
            .get_mut(name)
            .ok_or_else(|| CoordinatorError::UnknownWorker(name.to_string()))?;
        let cordoned = mode != WorkerMode::Uncordon;
        worker.cordoned = cordoned;
        worker.draining = mode == WorkerMode::Drain;
        self.db
            .transaction(|transaction| transaction.set_cordoned(name, cordoned))?;
        if cordoned {
            self.cordoned.insert(name.to_string());
        } else {
            self.cordoned.remove(name);
        }
        tracing::info!(worker = %name, ?mode, "worker mode changed");
        Ok(())
    }

    /// The workers, for `prime workers`.
    pub fn list_workers(&self, now: Instant) -> Vec<WorkerSummary> {
        self.workers
            .iter()
            .map(|(name, worker)| WorkerSummary {
                name: name.clone(),
                slots: worker.slots.clone(),
                alive: worker.alive,
                cordoned: worker.cordoned,
                trials: worker.occupied.values().copied().collect(),
                last_seen_ms_ago: now.saturating_duration_since(worker.last_seen).as_millis()
                    as u64,
                stalled: worker
                    .stalled
                    .iter()
                    .map(|stall| StalledSlot {
                        no_progress_ms: stall.no_progress_ms
                            + now
                                .saturating_duration_since(worker.stalled_reported)
                                .as_millis() as u64,
                        ..*stall
                    })
                    .collect(),
                hardware: worker.hardware.clone(),
            })
            .collect()
    }
}
