//! Worker-facing operations of the state machine: registration, heartbeats, placement,
//! cordon and drain.

use crate::db;
use crate::error::CoordinatorError;
use crate::model::{
    Assignment, Placement, RunningReport, SlotLoad, StalledSlot, WorkerSlot, WorkerSummary,
};
use crate::placement::{self, Decision, DeviceView, Reservation};
use crate::state::{State, Worker};
use prime_core::gpu::{GpuInfo, WorkerHardware};
use prime_core::trial::{AttemptOutcome, TrialId, TrialState};
use std::collections::{BTreeSet, HashSet};
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
        let placed = self.worker_entry(name, now).trial_ids();
        let mut accepted = Vec::new();
        let mut lost = Vec::new();
        for trial_id in placed {
            let trial = self.trials.get(&trial_id);
            let epoch = trial.map(|trial| trial.epoch);
            let slots = trial
                .and_then(|trial| trial.placement.as_ref())
                .map(|placement| placement.slots.clone())
                .unwrap_or_default();
            let still_running = running.iter().any(|report| {
                report.trial_id == trial_id && Some(report.epoch) == epoch && report.slots == slots
            });
            if still_running && slots.iter().all(|slot| indices.contains(slot)) {
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
        worker.missed.clear();
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
        let reported: BTreeSet<TrialId> = running
            .iter()
            .filter(|report| {
                self.trials
                    .get(&report.trial_id)
                    .is_some_and(|trial| trial.epoch == report.epoch)
            })
            .map(|report| report.trial_id)
            .collect();
        let worker = self.live_worker(name, session)?;
        worker.deadline = now + lease;
        worker.last_seen = now;
        let draining = worker.draining;
        // A progress update names only the trials that moved; a full heartbeat names all.
        let left_out = if persist {
            worker.left_out(&reported)
        } else {
            Vec::new()
        };
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
        if !left_out.is_empty() {
            tracing::warn!(worker = %name, trials = ?left_out, "the worker's heartbeats no longer list these trials: requeued");
            self.close_attempts(&left_out, &AttemptOutcome::Lost)?;
        }
        Ok(orders)
    }

    /// Places the next queued trial on the worker as `placement::decide` says: on the slots
    /// it names (one, N for a gang trial, or a share of a slot for a packed trial). `slot` is
    /// a slot the worker has room on; `None` when nothing fits, the worker is reserved for a
    /// gang trial that does not fit yet, or it is cordoned.
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
        let cordoned = worker.cordoned || worker.draining;
        let occupants: Vec<TrialId> = worker
            .occupied
            .get(&slot)
            .map(|trials| trials.iter().copied().collect())
            .unwrap_or_default();
        // The worker asks on a slot it has room on: an unshared trial (or one on several
        // slots) still recorded there is one it no longer runs.
        let stale: Vec<TrialId> = occupants
            .into_iter()
            .filter(|id| {
                self.trials
                    .get(id)
                    .is_some_and(|trial| trial.spec.resources().gpu_share == 1)
            })
            .collect();
        self.close_attempts(&stale, &AttemptOutcome::Lost)?;
        if cordoned {
            return Ok(None);
        }
        self.drop_stale_reservation();
        let devices = self.device_views(name, slot);
        let (trial_id, slots) = match placement::decide(
            name,
            &devices,
            &self.queue,
            self.reservation.as_ref(),
        ) {
            Decision::Place { trial_id, slots } => (trial_id, slots),
            Decision::Reserve(trial_id) => {
                tracing::info!(trial_id, worker = %name, "worker reserved for a trial on several GPUs");
                self.reservation = Some(Reservation {
                    trial_id,
                    worker: name.to_string(),
                });
                return Ok(None);
            }
            Decision::Wait => return Ok(None),
        };
        if self
            .reservation
            .as_ref()
            .is_some_and(|reservation| reservation.trial_id == trial_id)
        {
            self.reservation = None;
        }
        let mut trial = self.trial(trial_id)?.clone();
        let priority = trial.spec.priority;
        let resumed_from_state = trial.state;
        let placement = Placement {
            worker: name.to_string(),
            slots: slots.clone(),
        };
        trial.state = TrialState::Running;
        trial.epoch += 1;
        trial.attempts += 1;
        trial.placement = Some(placement.clone());
        trial.last_placement = trial.placement.clone();
        let started = db::unix_ms();
        trial.attempt_started_unix_ms = Some(started);
        let resume = self
            .db
            .checkpoints(trial_id)?
            .into_iter()
            .rfind(|c| !c.is_final);
        let resources = trial.spec.resources();
        self.db.transaction(|transaction| {
            transaction.save_trial(&trial)?;
            transaction.open_attempt(trial.id, trial.epoch, &placement, started)?;
            let from = resume
                .as_ref()
                .map_or("the start".to_string(), |c| format!("checkpoint {}", c.id));
            let at = match slots.len() {
                1 => format!("slot {}", placement.slot_list()),
                _ => format!("slots {}", placement.slot_list()),
            };
            transaction.insert_log(
                trial.id,
                &format!(
                    "attempt {} assigned to {name} {at} ({resources}) (was \
                     {resumed_from_state}), resuming from {from}",
                    trial.attempts
                ),
            )
        })?;
        tracing::info!(trial_id, worker = %name, slots = %placement.slot_list(), epoch = trial.epoch, priority, "trial assigned");
        let assignment = Assignment {
            trial_id,
            epoch: trial.epoch,
            spec: trial.spec.clone(),
            resume,
            slots,
        };
        self.install(trial);
        Ok(Some(assignment))
    }

    /// Forgets a reservation whose trial is no longer queued or whose worker can no longer
    /// take it (lease expired, cordoned), so that another worker may be reserved.
    fn drop_stale_reservation(&mut self) {
        let Some(reservation) = &self.reservation else {
            return;
        };
        let queued = self
            .trials
            .get(&reservation.trial_id)
            .is_some_and(|trial| trial.state.is_runnable());
        let usable = self
            .workers
            .get(&reservation.worker)
            .is_some_and(|worker| worker.alive && !worker.cordoned && !worker.draining);
        if !queued || !usable {
            self.reservation = None;
        }
    }

    /// The slots of worker `name` as placement sees them, `first` (the slot it asks on)
    /// leading: what each holds and of which share, the memory its GPU last reported, and
    /// whether a stalled thread holds it.
    fn device_views(&self, name: &str, first: u32) -> Vec<DeviceView> {
        let worker = &self.workers[name];
        let mut slots: Vec<u32> = worker.slots.iter().map(|known| known.index).collect();
        slots.sort_unstable_by_key(|slot| (*slot != first, *slot));
        slots
            .into_iter()
            .map(|slot| self.device_view(worker, slot))
            .collect()
    }

    fn device_view(&self, worker: &Worker, slot: u32) -> DeviceView {
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
        let trials = worker.occupied.get(&slot);
        DeviceView {
            slot,
            trials: trials.map_or(0, |trials| trials.len() as u32),
            share: self.share_of(trials),
            memory,
            stalled: worker.stalled.iter().any(|stall| stall.slot == slot),
        }
    }

    /// The `gpu_share` of the trials on a slot; 1 when it holds none.
    fn share_of(&self, trials: Option<&BTreeSet<TrialId>>) -> u32 {
        trials
            .and_then(|trials| trials.first())
            .and_then(|id| self.trials.get(id))
            .map_or(1, |trial| trial.spec.resources().gpu_share)
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
                trials: worker.trial_ids(),
                loads: worker
                    .slots
                    .iter()
                    .map(|known| {
                        let trials = worker.occupied.get(&known.index);
                        SlotLoad {
                            slot: known.index,
                            trials: trials
                                .map(|trials| trials.iter().copied().collect())
                                .unwrap_or_default(),
                            share: self.share_of(trials),
                        }
                    })
                    .collect(),
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
