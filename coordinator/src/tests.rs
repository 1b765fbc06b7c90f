//! Tier-3 tests: the state machine driven in-process by virtual workers, with virtual time.

use crate::error::CoordinatorError;
use crate::event_loop::StateHandle;
use crate::model::{Assignment, NewCheckpoint, RunningReport, StalledSlot, WorkerSlot};
use crate::state::{CoordinatorConfig, State};
use crate::trials::Finish;
use crate::workers::WorkerMode;
use prime_core::observer::Progress;
use prime_core::trial::{TrialKind, TrialResult, TrialSpec, TrialState};
use prime_proto::pb;
use std::time::Duration;
use tokio::time::Instant;

const LEASE: Duration = Duration::from_secs(10);

fn grid(name: &str, priority: i32, seeds: &str, retries: u32) -> String {
    format!(
        "version = 1\nname = \"{name}\"\npriority = {priority}\nretries = {retries}\n\
         datasets = [\"cifar10\"]\nseeds = [{seeds}]\n[[methods]]\npreset = \"darts\"\n\
         [[methods]]\npreset = \"darts-prime\"\n[evaluation]\nseeds = 2\n"
    )
}

fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        lease: LEASE,
        heartbeat: Duration::from_secs(2),
        keep_checkpoints: 2,
        ..CoordinatorConfig::default()
    }
}

fn open(dir: &std::path::Path, now: Instant) -> State {
    State::open(dir, config(), now).unwrap()
}

fn slots(count: u32) -> Vec<WorkerSlot> {
    (0..count)
        .map(|index| WorkerSlot {
            index,
            device: format!("cuda:{index}"),
        })
        .collect()
}

fn running(trial_id: u64, epoch: u64, slot: u32) -> RunningReport {
    RunningReport {
        trial_id,
        epoch,
        slots: vec![slot],
        progress: None,
    }
}

fn state_of(state: &State, trial_id: u64) -> TrialState {
    state.trials[&trial_id].state
}

fn success(genotype: bool) -> Finish {
    let json = if genotype {
        r#"{"genotype":{"normal":[["sep_conv_3x3",0]]},"metrics":{"search_valid_acc":88.0}}"#
    } else {
        r#"{"metrics":{"test_error":2.7,"params_m":3.1}}"#
    };
    Finish::Succeeded(serde_json::from_str::<TrialResult>(json).unwrap())
}

/// The metrics of a trial as the service serves them.
fn served_metrics(state: &State, trial_id: u64) -> Vec<pb::Metric> {
    state
        .metrics(trial_id)
        .unwrap()
        .iter()
        .map(pb::Metric::from)
        .collect()
}

#[test]
fn placement_follows_priority_then_fifo_and_never_double_books() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let mut state = open(dir.path(), now);
    state
        .submit_grid("low.toml", &grid("low", 0, "1, 2", 2))
        .unwrap();
    state
        .submit_grid("high.toml", &grid("high", 9, "3", 2))
        .unwrap();
    let (session, _) = state.register("w1", slots(2), &[], None, now).unwrap();
    let first = state.request_trial("w1", session, 0, now).unwrap().unwrap();
    let second = state.request_trial("w1", session, 1, now).unwrap().unwrap();
    let spec = |a: &Assignment| -> TrialSpec { a.spec.clone() };
    assert_eq!(
        (spec(&first).grid.as_str(), spec(&first).method.as_str()),
        ("high", "darts")
    );
    assert_eq!(spec(&second).method, "darts-prime");
    // The worker asking again for a slot it holds means it lost that trial: requeued, and the
    // slot gets the oldest trial of the highest priority (the same one).
    let again = state.request_trial("w1", session, 0, now).unwrap().unwrap();
    assert_eq!(again.trial_id, first.trial_id);
    assert_eq!(again.epoch, first.epoch + 1);
    assert_eq!(state.trials[&first.trial_id].failures, 0);
    state.check_invariants().unwrap();
    let error = state.request_trial("w1", session, 7, now).unwrap_err();
    assert!(matches!(error, CoordinatorError::Invalid(_)));
    let running_trials = state
        .trials
        .values()
        .filter(|trial| trial.state == TrialState::Running)
        .count();
    assert_eq!(running_trials, 2);
}

#[test]
fn many_virtual_workers_keep_the_invariants() {
    let dir = tempfile::tempdir().unwrap();
    let mut now = Instant::now();
    let mut state = open(dir.path(), now);
    state
        .submit_grid("g.toml", &grid("g", 0, "1, 2, 3, 4, 5, 6", 1))
        .unwrap();
    let mut sessions = Vec::new();
    for worker in 0..4 {
        let name = format!("w{worker}");
        let (session, _) = state.register(&name, slots(2), &[], None, now).unwrap();
        sessions.push((name, session));
    }
    let mut done = 0;
    for round in 0..200u64 {
        now += Duration::from_millis(100);
        let (name, session) = &sessions[(round % 4) as usize];
        let slot = (round % 2) as u32;
        if let Some(assignment) = state.request_trial(name, *session, slot, now).unwrap() {
            let trial = &state.trials[&assignment.trial_id];
            let finish = match (round % 5, trial.spec.kind) {
                (0, _) => Finish::Failed {
                    reason: "crash".into(),
                    diverged: false,
                    invalid: false,
                },
                (1, _) => Finish::Preempted,
                (_, TrialKind::Search) => success(true),
                (_, TrialKind::Evaluation) => success(false),
            };
            state
                .finish(assignment.trial_id, assignment.epoch, finish)
                .unwrap();
            done += 1;
        }
        state.check_invariants().unwrap();
    }
    assert!(done > 20);
    assert!(state.trials.len() > 12, "evaluations were chained");
    assert!(state.trials.values().all(|trial| trial.state.is_terminal()));
}

#[test]
fn an_expired_lease_requeues_without_counting_and_fences_the_old_worker() {
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let mut state = open(dir.path(), start);
    state.submit_grid("g.toml", &grid("g", 0, "1", 0)).unwrap();
    let (old_session, _) = state
        .register("frozen", slots(1), &[], None, start)
        .unwrap();
    let first = state
        .request_trial("frozen", old_session, 0, start)
        .unwrap()
        .unwrap();
    state.tick(start + LEASE / 2).unwrap();
    assert_eq!(state_of(&state, first.trial_id), TrialState::Running);
    let later = start + LEASE + Duration::from_millis(1);
    state.tick(later).unwrap();
    assert_eq!(state_of(&state, first.trial_id), TrialState::Preempted);
    assert_eq!(state.trials[&first.trial_id].failures, 0);
    let (session, _) = state.register("fresh", slots(1), &[], None, later).unwrap();
    let resumed = state
        .request_trial("fresh", session, 0, later)
        .unwrap()
        .unwrap();
    assert_eq!(
        (resumed.trial_id, resumed.epoch),
        (first.trial_id, first.epoch + 1)
    );
    // The frozen worker wakes up: its reports are refused, its heartbeat must re-register.
    let refused = state
        .finish(first.trial_id, first.epoch, success(true))
        .unwrap_err();
    assert!(
        matches!(refused, CoordinatorError::Fenced { .. }),
        "{refused}"
    );
    let refused = state
        .ingest_metrics(first.trial_id, first.epoch, &[], &[])
        .unwrap_err();
    assert!(matches!(refused, CoordinatorError::Fenced { .. }));
    let expired = state
        .heartbeat(
            "frozen",
            old_session,
            &[running(first.trial_id, first.epoch, 0)],
            later,
        )
        .unwrap_err();
    assert!(matches!(expired, CoordinatorError::SessionExpired { .. }));
    let (_, accepted) = state
        .register(
            "frozen",
            slots(1),
            &[running(first.trial_id, first.epoch, 0)],
            None,
            later,
        )
        .unwrap();
    assert!(accepted.is_empty(), "a reassigned trial is not given back");
    assert_eq!(
        state.trials[&first.trial_id]
            .placement
            .as_ref()
            .unwrap()
            .worker,
        "fresh"
    );
    state.check_invariants().unwrap();
}

#[test]
fn retry_budget_counts_crashes_and_divergence_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let mut state = open(dir.path(), now);
    state.submit_grid("g.toml", &grid("g", 0, "1", 1)).unwrap();
    let (session, _) = state.register("w", slots(1), &[], None, now).unwrap();
    let crash = || Finish::Failed {
        reason: "segfault".into(),
        diverged: false,
        invalid: false,
    };
    let first = state.request_trial("w", session, 0, now).unwrap().unwrap();
    state.finish(first.trial_id, first.epoch, crash()).unwrap();
    assert_eq!(state_of(&state, first.trial_id), TrialState::Queued);
    let second = state.request_trial("w", session, 0, now).unwrap().unwrap();
    assert_eq!(second.trial_id, first.trial_id);
    state
        .finish(second.trial_id, second.epoch, crash())
        .unwrap();
    assert_eq!(state_of(&state, first.trial_id), TrialState::Failed);
    assert!(state.trials[&first.trial_id].reason.contains("segfault"));
    let other = state.request_trial("w", session, 0, now).unwrap().unwrap();
    let diverged = Finish::Failed {
        reason: "diverged".into(),
        diverged: true,
        invalid: false,
    };
    state.finish(other.trial_id, other.epoch, diverged).unwrap();
    assert_eq!(state_of(&state, other.trial_id), TrialState::Failed);
    assert_eq!(state.trials[&other.trial_id].reason, "failed: diverged");
    assert_eq!(state.trials[&other.trial_id].failures, 1);
}

#[test]
fn an_invalid_configuration_fails_at_once_with_retries_left() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let mut state = open(dir.path(), now);
    state.submit_grid("g.toml", &grid("g", 0, "1", 1)).unwrap();
    let (session, _) = state.register("w", slots(1), &[], None, now).unwrap();
    let attempt = state.request_trial("w", session, 0, now).unwrap().unwrap();
    let invalid = Finish::Failed {
        reason: "unknown method `nope`".into(),
        diverged: false,
        invalid: true,
    };
    state
        .finish(attempt.trial_id, attempt.epoch, invalid)
        .unwrap();
    let trial = &state.trials[&attempt.trial_id];
    assert_eq!(trial.state, TrialState::Failed);
    assert_eq!(
        trial.reason,
        "failed: invalid configuration: unknown method `nope`"
    );
    assert_eq!((trial.attempts, trial.failures), (1, 1));
    state.check_invariants().unwrap();
}

#[test]
fn a_successful_search_chains_to_its_evaluations() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let mut state = open(dir.path(), now);
    state.submit_grid("g.toml", &grid("g", 0, "1", 2)).unwrap();
    let (session, _) = state.register("w", slots(1), &[], None, now).unwrap();
    let search = state.request_trial("w", session, 0, now).unwrap().unwrap();
    let refused = state
        .finish(search.trial_id, search.epoch, success(false))
        .unwrap_err();
    assert!(
        refused.to_string().contains("needs a genotype"),
        "{refused}"
    );
    assert_eq!(state_of(&state, search.trial_id), TrialState::Queued);
    let search = state.request_trial("w", session, 0, now).unwrap().unwrap();
    state
        .finish(search.trial_id, search.epoch, success(true))
        .unwrap();
    let children: Vec<_> = state
        .trials
        .values()
        .filter(|trial| trial.parent_id == Some(search.trial_id))
        .collect();
    assert_eq!(children.len(), 2);
    assert!(children
        .iter()
        .all(|child| child.spec.kind == TrialKind::Evaluation
            && child.spec.genotype.is_some()
            && child.state == TrialState::Queued));
    assert_eq!(
        state.trials[&search.trial_id]
            .result
            .as_ref()
            .map(|result| result.genotype.is_some()),
        Some(true)
    );
}

#[test]
fn a_restart_resumes_with_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let (trial_id, epoch, session) = {
        let mut state = open(dir.path(), now);
        state
            .submit_grid("g.toml", &grid("g", 3, "1, 2", 2))
            .unwrap();
        let (session, _) = state.register("w", slots(2), &[], None, now).unwrap();
        let assignment = state.request_trial("w", session, 1, now).unwrap().unwrap();
        let checkpoint = NewCheckpoint {
            size: 3,
            sha256: "abc".into(),
            progress: Progress {
                epochs_done: 2,
                epochs_total: 4,
                steps_done: 20,
                steps_total: 40,
            },
            is_final: false,
            score: Some(50.0),
            key: "k".into(),
        };
        state
            .record_checkpoint(assignment.trial_id, assignment.epoch, &checkpoint)
            .unwrap();
        (assignment.trial_id, assignment.epoch, session)
    };
    let later = now + Duration::from_secs(1);
    let mut state = open(dir.path(), later);
    state.check_invariants().unwrap();
    assert_eq!(state.trials.len(), 4);
    assert_eq!(state_of(&state, trial_id), TrialState::Running);
    // The old session is gone; the worker re-registers and keeps its trial.
    assert!(state.heartbeat("w", session, &[], later).is_err());
    let (session, accepted) = state
        .register("w", slots(2), &[running(trial_id, epoch, 1)], None, later)
        .unwrap();
    assert_eq!(accepted, vec![trial_id]);
    state.finish(trial_id, epoch, success(true)).unwrap();
    let next = state
        .request_trial("w", session, 1, later)
        .unwrap()
        .unwrap();
    assert_ne!(next.trial_id, trial_id);
    // A second restart where the worker never returns: its trial is requeued after a lease.
    drop(state);
    let mut state = open(dir.path(), later);
    state
        .tick(later + LEASE + Duration::from_millis(1))
        .unwrap();
    assert_eq!(state_of(&state, next.trial_id), TrialState::Preempted);
    state.check_invariants().unwrap();
}

#[test]
fn a_bad_grid_stores_nothing_and_names_are_unique() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = open(dir.path(), Instant::now());
    let bad = grid("g", 0, "1", 2).replace("darts-prime", "dartz");
    let error = state.submit_grid("bad.toml", &bad).unwrap_err();
    assert!(error.to_string().contains("bad.toml:10:"), "{error}");
    assert!(state.trials.is_empty());
    assert!(!state.db.grid_exists("g").unwrap());
    state.submit_grid("g.toml", &grid("g", 0, "1", 2)).unwrap();
    let error = state
        .submit_grid("g.toml", &grid("g", 0, "1", 2))
        .unwrap_err();
    assert!(matches!(error, CoordinatorError::GridExists(_)));
    assert_eq!(state.trials.len(), 2);
}

#[test]
fn cancel_drain_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let mut state = open(dir.path(), now);
    state.submit_grid("a.toml", &grid("a", 0, "1", 2)).unwrap();
    state.submit_grid("b.toml", &grid("b", 0, "1", 2)).unwrap();
    let (session, _) = state.register("w", slots(2), &[], None, now).unwrap();
    let a = state.request_trial("w", session, 0, now).unwrap().unwrap();
    assert_eq!(state.cancel(None, Some("a")).unwrap(), 2);
    assert_eq!(state.cancel(Some(a.trial_id), None).unwrap(), 0);
    let b_slot = state.request_trial("w", session, 1, now).unwrap().unwrap();
    let orders = state
        .heartbeat("w", session, &[running(a.trial_id, a.epoch, 0)], now)
        .unwrap();
    assert_eq!(orders.stop, vec![a.trial_id]);
    assert!(state
        .finish(a.trial_id, a.epoch, Finish::Preempted)
        .is_err());
    let mut keys = Vec::new();
    for (index, score) in [10.0, 90.0, 20.0, 30.0].into_iter().enumerate() {
        let checkpoint = NewCheckpoint {
            size: 1,
            sha256: "x".into(),
            progress: Progress {
                epochs_done: index as u32,
                epochs_total: 9,
                steps_done: 0,
                steps_total: 0,
            },
            is_final: false,
            score: Some(score),
            key: format!("k{index}"),
        };
        let (_, deleted) = state
            .record_checkpoint(b_slot.trial_id, b_slot.epoch, &checkpoint)
            .unwrap();
        keys.extend(deleted);
    }
    assert_eq!(
        keys,
        vec!["k0".to_string()],
        "k1 stays as the best, k2 and k3 as the last two"
    );
    state.set_worker_mode("w", WorkerMode::Drain).unwrap();
    let orders = state
        .heartbeat(
            "w",
            session,
            &[running(b_slot.trial_id, b_slot.epoch, 1)],
            now,
        )
        .unwrap();
    assert_eq!(orders.preempt, vec![b_slot.trial_id]);
    state
        .finish(b_slot.trial_id, b_slot.epoch, Finish::Preempted)
        .unwrap();
    assert_eq!(state_of(&state, b_slot.trial_id), TrialState::Preempted);
    assert!(
        state.request_trial("w", session, 0, now).unwrap().is_none(),
        "drained"
    );
    state.set_worker_mode("w", WorkerMode::Uncordon).unwrap();
    let resumed = state.request_trial("w", session, 0, now).unwrap().unwrap();
    assert_eq!(resumed.trial_id, b_slot.trial_id);
    assert_eq!(resumed.resume.unwrap().progress.epochs_done, 3);
    assert!(matches!(
        state.set_worker_mode("nobody", WorkerMode::Cordon),
        Err(CoordinatorError::UnknownWorker(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn the_event_loop_expires_leases_in_paused_time() {
    let dir = tempfile::tempdir().unwrap();
    let state = open(dir.path(), Instant::now());
    let (handle, _thread) = StateHandle::spawn(state);
    let grid_text = grid("g", 0, "1", 2);
    handle
        .try_call(move |state| state.submit_grid("g.toml", &grid_text))
        .await
        .unwrap();
    let now = Instant::now();
    let assignment = handle
        .try_call(move |state| {
            let (session, _) = state.register("w", slots(1), &[], None, now)?;
            state.request_trial("w", session, 0, now)
        })
        .await
        .unwrap()
        .unwrap();
    tokio::time::advance(LEASE + Duration::from_secs(1)).await;
    let now = Instant::now();
    let trial_id = assignment.trial_id;
    let after = handle
        .try_call(move |state| {
            state.tick(now)?;
            Ok(state.trials[&trial_id].state)
        })
        .await
        .unwrap();
    assert_eq!(after, TrialState::Preempted);
}

#[tokio::test]
async fn metric_batches_are_group_committed_and_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let state = open(dir.path(), Instant::now());
    let (handle, _thread) = StateHandle::spawn(state);
    let grid_text = grid("g", 0, "1", 2);
    let now = Instant::now();
    let assignment = handle
        .try_call(move |state| {
            state.submit_grid("g.toml", &grid_text)?;
            let (session, _) = state.register("w", slots(1), &[], None, now)?;
            state.request_trial("w", session, 0, now)
        })
        .await
        .unwrap()
        .unwrap();
    let row = |step| crate::db::MetricRow {
        kind: "step".into(),
        step,
        epoch: 0,
        clock: 0.0,
        values_json: r#"{"loss":1.5}"#.into(),
    };
    let sends: Vec<_> = (0..20u64)
        .map(|batch| {
            let handle = handle.clone();
            let rows = (0..10).map(|i| row(batch * 10 + i)).collect();
            let epoch = assignment.epoch;
            tokio::spawn(async move {
                handle
                    .ingest_metrics(
                        assignment.trial_id,
                        epoch,
                        rows,
                        vec![format!("batch {batch}")],
                    )
                    .await
            })
        })
        .collect();
    for send in sends {
        send.await.unwrap().unwrap();
    }
    let stale = handle
        .ingest_metrics(
            assignment.trial_id,
            assignment.epoch + 1,
            vec![row(999)],
            vec![],
        )
        .await
        .unwrap_err();
    assert!(matches!(stale, CoordinatorError::Fenced { .. }));
    let trial_id = assignment.trial_id;
    let (metrics, logs) = handle
        .try_call(move |state| Ok((served_metrics(state, trial_id), state.logs(trial_id)?)))
        .await
        .unwrap();
    assert_eq!(metrics.len(), 200);
    assert_eq!(metrics[7].values["loss"], 1.5);
    assert_eq!(
        logs.iter()
            .filter(|(_, line)| line.starts_with("batch "))
            .count(),
        20
    );
}

fn metric_row(step: u64) -> crate::db::MetricRow {
    crate::db::MetricRow {
        kind: "step".into(),
        step,
        epoch: 0,
        clock: 0.0,
        values_json: r#"{"loss":1.5}"#.into(),
    }
}

#[tokio::test]
async fn requests_overtake_queued_metric_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = open(dir.path(), Instant::now());
    state.submit_grid("g.toml", &grid("g", 0, "1", 2)).unwrap();
    let now = Instant::now();
    let (session, _) = state.register("w", slots(1), &[], None, now).unwrap();
    let assignment = state.request_trial("w", session, 0, now).unwrap().unwrap();
    let (handle, _thread) = StateHandle::spawn(state);
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let held = handle.call(move |_| hold.recv().unwrap());
    let batches: Vec<_> = (0..8u64)
        .map(|batch| {
            let rows = (0..100).map(|i| metric_row(batch * 100 + i)).collect();
            handle.ingest_metrics(assignment.trial_id, assignment.epoch, rows, vec![])
        })
        .collect();
    let trial_id = assignment.trial_id;
    let stored_when_served = handle.try_call(move |state| Ok(state.metrics(trial_id)?.len()));
    release.send(()).unwrap();
    held.await.unwrap();
    assert_eq!(
        stored_when_served.await.unwrap(),
        0,
        "the request waited behind metric batches queued before it"
    );
    for batch in batches {
        batch.await.unwrap();
    }
    let stored = handle
        .try_call(move |state| Ok(state.metrics(trial_id)?.len()))
        .await
        .unwrap();
    assert_eq!(stored, 800);
}

#[test]
fn a_batch_fenced_between_arrival_and_commit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let mut state = open(dir.path(), now);
    state.submit_grid("g.toml", &grid("g", 0, "1", 2)).unwrap();
    let (session, _) = state.register("w", slots(2), &[], None, now).unwrap();
    let first = state.request_trial("w", session, 0, now).unwrap().unwrap();
    let second = state.request_trial("w", session, 1, now).unwrap().unwrap();
    let mut pending = crate::event_loop::PendingMetrics::default();
    let (stale, mut stale_answer) =
        crate::event_loop::PendingMetrics::batch(first.trial_id, first.epoch, vec![metric_row(1)]);
    let (current, mut current_answer) = crate::event_loop::PendingMetrics::batch(
        second.trial_id,
        second.epoch,
        vec![metric_row(1)],
    );
    pending.accept(&state, stale);
    pending.accept(&state, current);
    assert!(
        stale_answer.try_recv().is_err(),
        "accepted, not yet answered"
    );
    state
        .finish(first.trial_id, first.epoch, Finish::Preempted)
        .unwrap();
    pending.commit(&mut state);
    assert!(matches!(
        stale_answer.try_recv(),
        Ok(Err(CoordinatorError::Fenced { .. }))
    ));
    assert!(matches!(current_answer.try_recv(), Ok(Ok(()))));
    assert!(state.metrics(first.trial_id).unwrap().is_empty());
    assert_eq!(state.metrics(second.trial_id).unwrap().len(), 1);
}

#[test]
fn finished_trials_show_the_worker_of_their_last_attempt_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let worker_of = |state: &State, trial_id: u64| {
        state
            .list_trials("g")
            .into_iter()
            .find(|view| view.id == trial_id)
            .unwrap()
            .worker
            .unwrap_or_default()
    };
    let (done, crashed) = {
        let mut state = open(dir.path(), now);
        state.submit_grid("g.toml", &grid("g", 0, "1", 1)).unwrap();
        let (one, _) = state.register("w1", slots(1), &[], None, now).unwrap();
        let (two, _) = state.register("w2", slots(2), &[], None, now).unwrap();
        let done = state.request_trial("w1", one, 0, now).unwrap().unwrap();
        assert_eq!(worker_of(&state, done.trial_id), "w1/0");
        let crashed = state.request_trial("w2", two, 1, now).unwrap().unwrap();
        let crash = || Finish::Failed {
            reason: "boom".into(),
            diverged: false,
            invalid: false,
        };
        state
            .finish(crashed.trial_id, crashed.epoch, crash())
            .unwrap();
        assert_eq!(
            worker_of(&state, crashed.trial_id),
            "",
            "a requeued trial runs nowhere"
        );
        let retried = state.request_trial("w2", two, 1, now).unwrap().unwrap();
        assert_eq!(retried.trial_id, crashed.trial_id);
        state
            .finish(retried.trial_id, retried.epoch, crash())
            .unwrap();
        assert_eq!(state_of(&state, crashed.trial_id), TrialState::Failed);
        state
            .finish(done.trial_id, done.epoch, success(true))
            .unwrap();
        assert_eq!(worker_of(&state, done.trial_id), "w1/0");
        assert_eq!(worker_of(&state, crashed.trial_id), "w2/1");
        let queued_evaluation = state
            .list_trials("g")
            .into_iter()
            .find(|view| view.parent_id == Some(done.trial_id))
            .unwrap();
        assert_eq!(queued_evaluation.worker, None);
        (done.trial_id, crashed.trial_id)
    };
    let state = open(dir.path(), now);
    assert_eq!(worker_of(&state, done), "w1/0");
    assert_eq!(worker_of(&state, crashed), "w2/1");
    state.check_invariants().unwrap();
}

#[test]
fn stalled_slots_are_listed_until_the_worker_clears_them_or_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let mut state = open(dir.path(), now);
    let (session, _) = state.register("w", slots(2), &[], None, now).unwrap();
    let stall = StalledSlot {
        slot: 1,
        trial_id: 7,
        no_progress_ms: 2_000,
    };
    state
        .record_stalled("w", session, vec![stall], now)
        .unwrap();
    let listed = state.list_workers(now + Duration::from_secs(3));
    assert_eq!(
        listed[0].stalled,
        [StalledSlot {
            no_progress_ms: 5_000,
            ..stall
        }]
    );
    assert!(matches!(
        state.record_stalled("w", session + 1, Vec::new(), now),
        Err(CoordinatorError::SessionExpired { .. })
    ));
    state.record_stalled("w", session, Vec::new(), now).unwrap();
    assert!(state.list_workers(now)[0].stalled.is_empty());
    state
        .record_stalled("w", session, vec![stall], now)
        .unwrap();
    state.tick(now + LEASE + Duration::from_secs(1)).unwrap();
    let lost = state.list_workers(now + LEASE + Duration::from_secs(1));
    assert_eq!((lost[0].alive, lost[0].stalled.len()), (false, 0));
}

#[test]
fn a_grid_over_the_trial_limit_is_refused_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = CoordinatorConfig {
        max_grid_trials: 10,
        ..config()
    };
    let mut state = State::open(dir.path(), config, Instant::now()).unwrap();
    // Two methods x three seeds, each search spawning two evaluations: 18 trials.
    let error = state
        .submit_grid("big.toml", &grid("big", 0, "1, 2, 3", 2))
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("holds 18 trials") && message.contains("at most 10 per grid"),
        "{message}"
    );
    assert_eq!(
        tonic::Status::from(error).code(),
        tonic::Code::InvalidArgument
    );
    assert!(state.trials.is_empty());
    assert!(!state.db.grid_exists("big").unwrap());
    let (_, searches) = state
        .submit_grid("small.toml", &grid("small", 0, "1", 2))
        .unwrap();
    assert_eq!(searches, 2);
}

#[test]
fn evaluation_seeds_of_u32_max_are_refused_at_submission() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = open(dir.path(), Instant::now());
    let text = grid("g", 0, "1", 2).replace("seeds = 2", "seeds = 4294967295");
    let error = state.submit_grid("g.toml", &text).unwrap_err().to_string();
    assert!(
        error.contains("g.toml:12:1: field `evaluation.seeds`: must be between 1 and 64"),
        "{error}"
    );
    assert!(state.trials.is_empty());
}

#[test]
fn a_stored_search_with_absurd_evaluation_seeds_fails_instead_of_aborting() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    {
        let mut state = open(dir.path(), now);
        state.submit_grid("g.toml", &grid("g", 0, "1", 2)).unwrap();
    }
    // A spec stored before the grid limits existed: success made the coordinator allocate
    // ~1.4 TB and abort, on every restart, since the worker re-sends its report.
    let connection = rusqlite::Connection::open(dir.path().join("coordinator.sqlite3")).unwrap();
    let mut statement = connection
        .prepare("SELECT id, spec_json FROM trials")
        .unwrap();
    let stored: Vec<(u64, String)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (id, json) in stored {
        let mut spec: TrialSpec = serde_json::from_str(&json).unwrap();
        spec.evaluation.as_mut().unwrap().seeds = u32::MAX;
        connection
            .execute(
                "UPDATE trials SET spec_json = ?2 WHERE id = ?1",
                rusqlite::params![id, serde_json::to_string(&spec).unwrap()],
            )
            .unwrap();
    }
    drop(statement);
    drop(connection);
    let mut state = open(dir.path(), now);
    let (session, _) = state.register("w", slots(1), &[], None, now).unwrap();
    let search = state.request_trial("w", session, 0, now).unwrap().unwrap();
    state
        .finish(search.trial_id, search.epoch, success(true))
        .unwrap();
    let trial = &state.trials[&search.trial_id];
    assert_eq!(trial.state, TrialState::Failed);
    assert!(
        trial
            .reason
            .contains("cannot spawn the evaluation trials: evaluation.seeds must be between"),
        "{}",
        trial.reason
    );
    assert!(trial.result.is_some(), "the genotype found is kept");
    assert_eq!(trial.failures, 1);
    assert!(state.trials.values().all(|trial| trial.parent_id.is_none()));
    state.check_invariants().unwrap();
    // After a restart the worker's re-sent report is refused, nothing recurs.
    drop(state);
    let mut state = open(dir.path(), now);
    let refused = state
        .finish(search.trial_id, search.epoch, success(true))
        .unwrap_err();
    assert!(
        matches!(refused, CoordinatorError::Fenced { .. }),
        "{refused}"
    );
    assert_eq!(state_of(&state, search.trial_id), TrialState::Failed);
}

#[test]
fn a_bad_metric_batch_is_refused_alone_and_the_others_commit() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let mut state = open(dir.path(), now);
    state
        .submit_grid("g.toml", &grid("g", 0, "1, 2", 2))
        .unwrap();
    let (session, _) = state.register("w", slots(3), &[], None, now).unwrap();
    let assignments: Vec<_> = (0..3)
        .map(|slot| {
            state
                .request_trial("w", session, slot, now)
                .unwrap()
                .unwrap()
        })
        .collect();
    let nan_clock = crate::db::MetricRow {
        clock: f64::NAN,
        ..metric_row(2)
    };
    let huge_step = metric_row(1 << 63);
    let mut pending = crate::event_loop::PendingMetrics::default();
    let mut answers = Vec::new();
    for (assignment, rows) in assignments.iter().zip([
        vec![metric_row(1), nan_clock],
        vec![metric_row(1), metric_row(2)],
        vec![huge_step],
    ]) {
        let (batch, answer) =
            crate::event_loop::PendingMetrics::batch(assignment.trial_id, assignment.epoch, rows);
        pending.accept(&state, batch);
        answers.push(answer);
    }
    pending.commit(&mut state);
    let results: Vec<bool> = answers
        .iter_mut()
        .map(|answer| answer.try_recv().unwrap().is_ok())
        .collect();
    assert_eq!(results, [false, true, false]);
    let stored: Vec<usize> = assignments
        .iter()
        .map(|a| state.metrics(a.trial_id).unwrap().len())
        .collect();
    assert_eq!(stored, [0, 2, 0], "only the good batch is stored, whole");
}

#[test]
fn non_finite_metric_values_read_back_with_the_rest_of_their_point() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let mut state = open(dir.path(), now);
    state.submit_grid("g.toml", &grid("g", 0, "1", 2)).unwrap();
    let (session, _) = state.register("w", slots(1), &[], None, now).unwrap();
    let assignment = state.request_trial("w", session, 0, now).unwrap().unwrap();
    let batch = pb::MetricBatch {
        trial_id: assignment.trial_id,
        epoch: assignment.epoch,
        metrics: vec![pb::Metric {
            kind: "step".into(),
            epoch: 0,
            step: 5,
            clock: 0.5,
            values: [
                ("loss".to_string(), f64::NAN),
                ("grad_norm".to_string(), f64::INFINITY),
                ("acc".to_string(), 12.5),
            ]
            .into_iter()
            .collect(),
        }],
        logs: Vec::new(),
    };
    let rows = crate::metric_rows::rows_of(&batch).unwrap();
    state
        .ingest_metrics(assignment.trial_id, assignment.epoch, &rows, &[])
        .unwrap();
    let metrics = served_metrics(&state, assignment.trial_id);
    let values = &metrics[0].values;
    assert_eq!(values.len(), 3, "{values:?}");
    assert_eq!(values["acc"], 12.5);
    assert!(values["loss"].is_nan());
    assert_eq!(values["grad_norm"], f64::INFINITY);
}

#[tokio::test]
async fn a_panicking_request_is_answered_and_the_loop_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (handle, _thread) = StateHandle::spawn(open(dir.path(), Instant::now()));
    let error = handle
        .call(|_| -> u32 { panic!("a bug met by one request") })
        .await
        .unwrap_err();
    assert!(
        matches!(&error, CoordinatorError::Internal(message) if message.contains("a bug met")),
        "{error}"
    );
    assert_eq!(tonic::Status::from(error).code(), tonic::Code::Internal);
    let grid_text = grid("g", 0, "1", 2);
    let (name, _) = handle
        .try_call(move |state| state.submit_grid("g.toml", &grid_text))
        .await
        .unwrap();
    assert_eq!(name, "g");
}

#[test]
fn a_database_of_the_previous_build_opens_with_its_specs_results_and_progress() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let specs: Vec<TrialSpec> = {
        let mut state = open(dir.path(), now);
        state.submit_grid("g.toml", &grid("g", 0, "1", 2)).unwrap();
        state
            .trials
            .values()
            .map(|trial| trial.spec.clone())
            .collect()
    };
    // What the previous build stored: the result as the JSON text the worker sent, progress
    // as a JSON array, or the column's default `{}` before the first heartbeat.
    let worker_json =
        r#"{"genotype":{"normal":[["sep_conv_3x3",0]]},"metrics":{"search_valid_acc":88.0}}"#;
    let connection = rusqlite::Connection::open(dir.path().join("coordinator.sqlite3")).unwrap();
    connection
        .execute(
            "UPDATE trials SET state = 'succeeded', result_json = ?1,
                 progress_json = '[50,50,19550,19550]' WHERE id = 1",
            [worker_json],
        )
        .unwrap();
    connection
        .execute("UPDATE trials SET progress_json = '{}' WHERE id = 2", [])
        .unwrap();
    drop(connection);
    let state = open(dir.path(), now);
    state.check_invariants().unwrap();
    let listed = state.list_trials("g");
    assert_eq!(
        listed
            .iter()
            .map(|trial| trial.spec.clone())
            .collect::<Vec<_>>(),
        specs
    );
    let done = pb::TrialView::from(&listed[0]);
    assert_eq!(done.state, "succeeded");
    let result = done.trial_result().unwrap().unwrap();
    assert_eq!(
        result,
        serde_json::from_str::<TrialResult>(worker_json).unwrap()
    );
    assert_eq!(done.progress.unwrap().steps_done, 19_550);
    assert_eq!(
        listed[1].progress.epochs_total, 0,
        "unreadable progress is zero"
    );
    assert!(listed[1].result.is_none());
}

fn gpu_grid(name: &str, search: &str, evaluation: &str) -> String {
    format!(
        "version = 1\nname = \"{name}\"\ndatasets = [\"cifar10\"]\nseeds = [1, 2]\n\
         [[methods]]\npreset = \"darts\"\n[search]\n{search}\n[evaluation]\n{evaluation}\n"
    )
}

#[test]
fn trials_asking_for_more_gpus_than_any_worker_are_reported_at_submission() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let mut state = open(dir.path(), now);
    state.register("w1", slots(2), &[], None, now).unwrap();
    let (name, _) = state
        .submit_grid("g.toml", &gpu_grid("g", "gpus = 2", "gpus = 4"))
        .unwrap();
    let lines = state.unplaceable(&name);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with(
            "the evaluations of search darts cifar10 seed 1 cannot be placed yet: it needs 4 \
             GPUs on one worker and the largest registered worker has 2"
        ),
        "{lines:?}"
    );
    state.register("w2", slots(4), &[], None, now).unwrap();
    assert!(state.unplaceable(&name).is_empty());
}

#[test]
fn a_shared_trial_goes_only_where_the_reported_memory_has_room() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let mut state = open(dir.path(), now);
    let (session, _) = state.register("w1", slots(2), &[], None, now).unwrap();
    state
        .submit_grid(
            "packed.toml",
            &gpu_grid("packed", "gpu_share = 4", "seeds = 1"),
        )
        .unwrap();
    let gib = 1u64 << 30;
    let gpu = |index: u32, free: u64| prime_core::gpu::GpuInfo {
        index,
        name: "test GPU".into(),
        capability: prime_core::gpu::ComputeCapability { major: 9, minor: 0 },
        memory_total_bytes: 80 * gib,
        memory_free_bytes: free,
        driver_version: "580".into(),
        utilization_percent: 0,
        temperature_celsius: 40,
    };
    state
        .record_gpus("w1", session, vec![gpu(0, 10 * gib), gpu(1, 20 * gib)])
        .unwrap();
    let placed = state.request_trial("w1", session, 0, now).unwrap().unwrap();
    assert_eq!(placed.spec.grid, "packed");
    assert_eq!(placed.spec.resources().gpu_share, 4);
    assert_eq!(
        placed.slots,
        vec![1],
        "GPU 0 has less than a quarter of its memory free"
    );
    state
        .record_gpus("w1", session, vec![gpu(0, 10 * gib), gpu(1, 19 * gib)])
        .unwrap();
    assert_eq!(state.request_trial("w1", session, 0, now).unwrap(), None);
    state.check_invariants().unwrap();
}

/// A trial the worker's full heartbeats leave out twice in a row is one it no longer runs
/// (it gave up the final report, or never got the assignment): requeued without counting a
/// failure, its share of the slot freed. One miss is forgiven (a heartbeat taken just before
/// the assignment arrived), a trial listed again starts the count over, and progress updates
/// (which list only the trials that moved) do not count.
#[test]
fn trials_the_worker_no_longer_lists_are_requeued_after_two_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let mut state = open(dir.path(), now);
    let shared = grid("shared", 0, "1", 2).replacen(
        "[[methods]]",
        "[search]\ngpu_share = 2\n[[methods]]",
        1,
    );
    state.submit_grid("g.toml", &shared).unwrap();
    let (session, _) = state.register("w", slots(1), &[], None, now).unwrap();
    let a = state.request_trial("w", session, 0, now).unwrap().unwrap();
    let b = state.request_trial("w", session, 0, now).unwrap().unwrap();
    assert_eq!(state.workers["w"].trial_ids(), vec![a.trial_id, b.trial_id]);
    let only_a = [running(a.trial_id, a.epoch, 0)];
    let both = [
        running(a.trial_id, a.epoch, 0),
        running(b.trial_id, b.epoch, 0),
    ];

    state.heartbeat("w", session, &only_a, now).unwrap();
    state.heartbeat("w", session, &both, now).unwrap();
    state.heartbeat("w", session, &only_a, now).unwrap();
    state.progress_update("w", session, &only_a, now).unwrap();
    assert_eq!(
        state_of(&state, b.trial_id),
        TrialState::Running,
        "one miss in a row"
    );

    state.heartbeat("w", session, &only_a, now).unwrap();
    assert_eq!(state_of(&state, b.trial_id), TrialState::Preempted);
    assert_eq!(state.trials[&b.trial_id].failures, 0);
    assert_eq!(state_of(&state, a.trial_id), TrialState::Running);
    assert_eq!(state.workers["w"].trial_ids(), vec![a.trial_id]);
    state.check_invariants().unwrap();
    let again = state.request_trial("w", session, 0, now).unwrap().unwrap();
    assert_eq!(
        again.trial_id, b.trial_id,
        "its share of the slot is free again"
    );
    assert!(again.epoch > b.epoch);

    // A report of the old attempt does not count as listing the new one.
    let stale = [
        running(a.trial_id, a.epoch, 0),
        running(b.trial_id, b.epoch, 0),
    ];
    state.heartbeat("w", session, &stale, now).unwrap();
    state.heartbeat("w", session, &stale, now).unwrap();
    assert_eq!(state_of(&state, b.trial_id), TrialState::Preempted);
}
