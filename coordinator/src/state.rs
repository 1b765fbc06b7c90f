//! The coordinator's state machine: the in-memory view of trials and workers over the
//! database (`db::Database`, SQLite in production). Only the event loop touches it; every
//! method takes the current (tokio) time so tests drive leases with paused time. It speaks
//! domain values (`model`); the service converts them to and from wire messages.
//!
//! Invariants: a worker slot holds one unshared trial or up to K trials of `gpu_share` K,
//! and a running trial sits in exactly the slots recorded in its placement; every change is
//! written to SQLite before the in-memory view changes, and committed before any caller is
//! answered (the event loop commits the requests it serves back to back together; a failed
//! commit reloads this view from the database).

use crate::db::{self, Database, Db, DbError, Transaction};
use crate::error::CoordinatorError;
use crate::model::{StalledSlot, Trial, WorkerSlot};
use crate::placement::{Reservation, ShapeQueue};
use prime_core::gpu::WorkerHardware;
use prime_core::limits::DEFAULT_MAX_GRID_TRIALS;
use prime_core::trial::{AttemptOutcome, TrialId, TrialState};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

/// Name of the database file in the state directory.
pub const DATABASE_FILE: &str = "coordinator.sqlite3";

/// Tunables of a coordinator.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// A worker that has not been heard from for this long is lost, and its trials requeued.
    pub lease: Duration,
    /// How often workers are told to heartbeat (well inside the lease).
    pub heartbeat: Duration,
    /// Resumable checkpoints kept per trial, besides the best one and the final one.
    pub keep_checkpoints: usize,
    /// Trials one grid may hold (its searches and the evaluations they spawn); a larger grid
    /// is refused at submission, since storing it would hold the event loop for longer than
    /// a lease.
    pub max_grid_trials: u64,
    /// The tokens callers must present; `None` leaves the coordinator open (loopback and
    /// `--insecure` only).
    pub tokens: Option<std::sync::Arc<crate::auth::TokenSource>>,
    /// Certificate, key and optional client CA: serve TLS (mutual TLS with a client CA).
    pub tls: Option<crate::tls::ServerTls>,
    /// Largest checkpoint archive a worker may upload, in bytes.
    pub max_upload_bytes: u64,
    /// Free bytes the coordinator keeps on the disk of its state directory: below it, new
    /// checkpoints, grids and backups are refused with `RESOURCE_EXHAUSTED`.
    pub min_free_disk: u64,
    /// Where the HTTP listener for probes and metrics binds (`/healthz`, `/readyz`,
    /// `/metrics`); none when not given.
    pub http: Option<std::net::SocketAddr>,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            keep_checkpoints: 2,
            max_grid_trials: DEFAULT_MAX_GRID_TRIALS,
            tokens: None,
            tls: None,
            max_upload_bytes: crate::store::DEFAULT_MAX_UPLOAD_BYTES,
            min_free_disk: crate::disk::DEFAULT_MIN_FREE_DISK,
            http: None,
        }
    }
}

/// A worker as the coordinator sees it.
#[derive(Debug, Clone)]
pub(crate) struct Worker {
    /// Current registration; 0 for a worker restored from the database that has not
    /// registered since the coordinator started.
    pub session: u64,
    /// Its slots as last registered.
    pub slots: Vec<WorkerSlot>,
    /// Whether its lease is current.
    pub alive: bool,
    /// When its lease expires unless renewed.
    pub deadline: Instant,
    /// When it was last heard from.
    pub last_seen: Instant,
    /// No new trials (survives restarts).
    pub cordoned: bool,
    /// Cordoned, and its running trials are told to checkpoint and stop.
    pub draining: bool,
    /// The trials on each busy slot: one, or up to K trials of `gpu_share` K.
    pub occupied: BTreeMap<u32, BTreeSet<TrialId>>,
    /// Slots the worker last reported as stalled, and when it reported them.
    pub stalled: Vec<StalledSlot>,
    pub stalled_reported: Instant,
    /// Trials placed on the worker that its last full heartbeats left out, with how many
    /// in a row (see [`Worker::left_out`]).
    pub missed: BTreeMap<TrialId, u32>,
    /// Hash of the token that registered the current session (`None` on an open
    /// coordinator, or before the worker registered since the coordinator started).
    pub holder: Option<String>,
    /// Its torch build and GPUs, as last reported (kept in memory: a worker reports them
    /// again when it registers with a restarted coordinator).
    pub hardware: WorkerHardware,
}

impl Worker {
    /// Records `trial_id` on each of `slots`.
    pub fn occupy(&mut self, slots: &[u32], trial_id: TrialId) {
        for slot in slots {
            self.occupied.entry(*slot).or_default().insert(trial_id);
        }
    }

    /// Takes `trial_id` off each of `slots`.
    pub fn vacate(&mut self, slots: &[u32], trial_id: TrialId) {
        for slot in slots {
            if let Some(trials) = self.occupied.get_mut(slot) {
                trials.remove(&trial_id);
                if trials.is_empty() {
                    self.occupied.remove(slot);
                }
            }
        }
    }

    /// Every trial on the worker, once each.
    pub fn trial_ids(&self) -> Vec<TrialId> {
        let trials: BTreeSet<TrialId> = self.occupied.values().flatten().copied().collect();
        trials.into_iter().collect()
    }

    /// Counts, for each trial placed on the worker, the full heartbeats in a row whose
    /// running trials (`reported`, current attempts only) left it out, and returns those
    /// left out [`MISSED_HEARTBEATS`] times: the worker no longer runs them (it gave up
    /// their final report, or never received their assignment). One miss is not enough: a
    /// heartbeat may have been taken just before an assignment reached the worker.
    pub fn left_out(&mut self, reported: &BTreeSet<TrialId>) -> Vec<TrialId> {
        let placed = self.trial_ids();
        self.missed
            .retain(|id, _| placed.contains(id) && !reported.contains(id));
        placed
            .into_iter()
            .filter(|id| !reported.contains(id))
            .filter(|id| {
                let misses = self.missed.entry(*id).or_insert(0);
                *misses += 1;
                *misses >= MISSED_HEARTBEATS
            })
            .collect()
    }
}

/// Full heartbeats in a row that must leave out a trial placed on the worker before the
/// coordinator takes it for lost.
pub const MISSED_HEARTBEATS: u32 = 2;

/// The coordinator's state.
pub struct State {
    pub(crate) db: Box<dyn Database>,
    pub(crate) config: CoordinatorConfig,
    pub(crate) trials: BTreeMap<TrialId, Trial>,
    /// Runnable trials by resource shape: higher priority first, then FIFO by id.
    pub(crate) queue: ShapeQueue,
    /// The worker held for the gang trial first in line (see `placement`).
    pub(crate) reservation: Option<Reservation>,
    pub(crate) workers: BTreeMap<String, Worker>,
    pub(crate) cordoned: HashSet<String>,
    pub(crate) next_session: u64,
}

impl State {
    /// Opens the state in `state_dir` (database `coordinator.sqlite3`), restoring every trial.
    ///
    /// Running trials keep their placement; their workers get one lease from `now` to
    /// register again before the trials are requeued.
    pub fn open(
        state_dir: &Path,
        config: CoordinatorConfig,
        now: Instant,
    ) -> Result<State, CoordinatorError> {
        std::fs::create_dir_all(state_dir).map_err(|error| {
            CoordinatorError::Storage(format!(
                "cannot create the state directory {}: {error}",
                state_dir.display()
            ))
        })?;
        let db = Db::open(&state_dir.join(DATABASE_FILE))?;
        State::with_database(Box::new(db), config, now)
    }

    /// The state over `db`, restoring every trial (see `open`).
    pub fn with_database(
        db: Box<dyn Database>,
        config: CoordinatorConfig,
        now: Instant,
    ) -> Result<State, CoordinatorError> {
        let cordoned: HashSet<String> = db.cordoned_workers()?.into_iter().collect();
        let mut state = State {
            db,
            config,
            trials: BTreeMap::new(),
            queue: ShapeQueue::default(),
            reservation: None,
            workers: BTreeMap::new(),
            cordoned,
            next_session: db::unix_ms().max(1),
        };
        state.load_trials(now)?;
        Ok(state)
    }

    /// Installs every stored trial; a running one occupies its slots on its worker (an
    /// entry with a fresh lease where the worker is not known).
    fn load_trials(&mut self, now: Instant) -> Result<(), CoordinatorError> {
        for trial in self.db.load_trials()? {
            if let Some(placement) = &trial.placement {
                let worker = self.worker_entry(&placement.worker, now);
                worker.occupy(&placement.slots, trial.id);
                for slot in &placement.slots {
                    if !worker.slots.iter().any(|known| known.index == *slot) {
                        worker.slots.push(WorkerSlot {
                            index: *slot,
                            device: String::new(),
                        });
                    }
                }
            }
            self.install(trial);
        }
        Ok(())
    }

    /// Forgets the in-memory trials, queue and cordons and reads them again from the
    /// database: after a group commit failed, memory is ahead of what is stored. Worker
    /// sessions, leases and reported hardware are kept (they are never stored).
    pub(crate) fn reload(&mut self, now: Instant) -> Result<(), CoordinatorError> {
        self.trials.clear();
        self.queue = ShapeQueue::default();
        self.reservation = None;
        self.cordoned = self.db.cordoned_workers()?.into_iter().collect();
        for (name, worker) in &mut self.workers {
            worker.occupied.clear();
            worker.cordoned = self.cordoned.contains(name);
            worker.draining &= worker.cordoned;
        }
        self.load_trials(now)
    }

    /// The worker entry of `name`, created (alive, with a fresh lease) if missing.
    pub(crate) fn worker_entry(&mut self, name: &str, now: Instant) -> &mut Worker {
        let lease = self.config.lease;
        let cordoned = self.cordoned.contains(name);
        self.workers
            .entry(name.to_string())
            .or_insert_with(|| Worker {
                session: 0,
                slots: Vec::new(),
                alive: true,
                deadline: now + lease,
                last_seen: now,
                cordoned,
                draining: false,
                occupied: BTreeMap::new(),
                stalled: Vec::new(),
                stalled_reported: now,
                missed: BTreeMap::new(),
                holder: None,
                hardware: WorkerHardware::default(),
            })
    }

    /// Replaces the in-memory trial, keeping the queue and slot occupancy consistent.
    pub(crate) fn install(&mut self, trial: Trial) {
        if let Some(old) = self.trials.get(&trial.id) {
            self.queue
                .remove(old.spec.resources(), old.spec.priority, old.id);
            if let Some(placement) = &old.placement {
                if let Some(worker) = self.workers.get_mut(&placement.worker) {
                    worker.vacate(&placement.slots, old.id);
                }
            }
        }
        if trial.state.is_runnable() {
            self.queue
                .insert(trial.spec.resources(), trial.spec.priority, trial.id);
        }
        if let Some(placement) = &trial.placement {
            if let Some(worker) = self.workers.get_mut(&placement.worker) {
                worker.occupy(&placement.slots, trial.id);
            }
        }
        self.trials.insert(trial.id, trial);
    }

    /// The trial `id`, or `UnknownTrial`.
    pub(crate) fn trial(&self, id: TrialId) -> Result<&Trial, CoordinatorError> {
        self.trials
            .get(&id)
            .ok_or(CoordinatorError::UnknownTrial(id))
    }

    /// Refuses a report about `trial_id` unless `epoch` is its current, running assignment.
    pub fn check_fence(&self, trial_id: TrialId, epoch: u64) -> Result<(), CoordinatorError> {
        let trial = self.trial(trial_id)?;
        let fenced = |reason: String| CoordinatorError::Fenced {
            trial_id,
            epoch,
            reason,
        };
        if trial.epoch != epoch {
            return Err(fenced(format!(
                "the trial was reassigned at epoch {}",
                trial.epoch
            )));
        }
        if trial.state != TrialState::Running {
            return Err(fenced(format!("the trial is {}", trial.state)));
        }
        Ok(())
    }

    /// The trial after its running attempt ended with `outcome` (not yet saved).
    pub(crate) fn closed_attempt(trial: &Trial, outcome: &AttemptOutcome) -> Trial {
        let mut next = trial.clone();
        if outcome.counts_as_failure() {
            next.failures += 1;
        }
        next.state = outcome.next_state(next.failures, trial.spec.retries);
        if let Some(started) = next.attempt_started_unix_ms.take() {
            next.run_ms += db::unix_ms().saturating_sub(started);
        }
        next.placement = None;
        if *outcome != AttemptOutcome::Succeeded {
            next.reason = outcome.describe();
        }
        next
    }

    /// Saves the end of `trial`'s running attempt (attempt row, trial row, log line).
    pub(crate) fn save_closed_attempt(
        transaction: &dyn Transaction,
        closed: &Trial,
        outcome: &AttemptOutcome,
    ) -> Result<(), DbError> {
        transaction.close_attempt(closed.id, closed.epoch, outcome)?;
        transaction.save_trial(closed)?;
        transaction.insert_log(
            closed.id,
            &format!(
                "attempt {} {}; trial is {}",
                closed.attempts,
                outcome.describe(),
                closed.state
            ),
        )
    }

    /// Ends the running attempt of each trial with `outcome`, in one transaction.
    pub(crate) fn close_attempts(
        &mut self,
        trial_ids: &[TrialId],
        outcome: &AttemptOutcome,
    ) -> Result<(), CoordinatorError> {
        let closed: Vec<Trial> = trial_ids
            .iter()
            .filter_map(|id| self.trials.get(id))
            .filter(|trial| trial.state == TrialState::Running)
            .map(|trial| Self::closed_attempt(trial, outcome))
            .collect();
        if closed.is_empty() {
            return Ok(());
        }
        self.db.transaction(|transaction| {
            closed
                .iter()
                .try_for_each(|trial| Self::save_closed_attempt(transaction, trial, outcome))
        })?;
        for trial in closed {
            tracing::info!(trial_id = trial.id, outcome = %outcome.describe(), "attempt ended");
            self.install(trial);
        }
        Ok(())
    }

    /// Expires the leases of workers not heard from in time; their trials are requeued to
    /// resume from their last checkpoint (not counted as failures).
    pub fn tick(&mut self, now: Instant) -> Result<(), CoordinatorError> {
        let expired: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, worker)| worker.alive && worker.deadline <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in expired {
            let trial_ids = self.workers[&name].trial_ids();
            tracing::warn!(worker = %name, trials = trial_ids.len(), "worker lease expired");
            self.close_attempts(&trial_ids, &AttemptOutcome::Lost)?;
            if let Some(worker) = self.workers.get_mut(&name) {
                worker.alive = false;
                worker.session = 0;
                worker.stalled.clear();
            }
        }
        Ok(())
    }

    /// Checks the invariants of the view (a slot holds one unshared trial or up to K trials
    /// of share K, placements and occupancy agree, the queue holds exactly the runnable
    /// trials); a description of the first violation otherwise.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut on_slots: BTreeMap<(String, u32), Vec<&Trial>> = BTreeMap::new();
        for trial in self.trials.values() {
            let queued = self
                .queue
                .contains(trial.spec.resources(), trial.spec.priority, trial.id);
            if queued != trial.state.is_runnable() {
                return Err(format!(
                    "trial {} is {} but queued={queued}",
                    trial.id, trial.state
                ));
            }
            match (&trial.placement, trial.state) {
                (Some(placement), TrialState::Running) => {
                    for slot in &placement.slots {
                        let occupied = self
                            .workers
                            .get(&placement.worker)
                            .and_then(|worker| worker.occupied.get(slot))
                            .is_some_and(|trials| trials.contains(&trial.id));
                        if !occupied {
                            return Err(format!("trial {} is not in its slot {slot}", trial.id));
                        }
                        on_slots
                            .entry((placement.worker.clone(), *slot))
                            .or_default()
                            .push(trial);
                    }
                }
                (None, TrialState::Running) => {
                    return Err(format!("running trial {} has no slot", trial.id))
                }
                (Some(_), _) => return Err(format!("idle trial {} holds a slot", trial.id)),
                (None, _) => {}
            }
        }
        for ((worker, slot), trials) in &on_slots {
            let share = trials[0].spec.resources().gpu_share;
            let mixed = trials
                .iter()
                .any(|trial| trial.spec.resources().gpu_share != share);
            if mixed || trials.len() > share as usize {
                return Err(format!(
                    "slot {worker}/{slot} holds {} trials of shares that do not fit together",
                    trials.len()
                ));
            }
        }
        let occupied: usize = self
            .workers
            .values()
            .flat_map(|worker| worker.occupied.values())
            .map(BTreeSet::len)
            .sum();
        let placed: usize = on_slots.values().map(Vec::len).sum();
        if occupied != placed {
            return Err(format!(
                "{occupied} slot occupations for {placed} placed trial slots"
            ));
        }
        Ok(())
    }
}
