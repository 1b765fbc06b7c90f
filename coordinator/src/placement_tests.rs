//! Tier-3 tests of placement in the state machine: trials on several slots, slots shared
//! by several trials, the reservation of a worker for a gang trial, the unshared retry of a
//! trial that ran out of GPU memory, and placements surviving a restart.

use crate::model::{RunningReport, WorkerSlot};
use crate::state::{CoordinatorConfig, State};
use crate::trials::Finish;
use prime_core::trial::{TrialKind, TrialState};
use std::time::Duration;
use tokio::time::Instant;

fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        lease: Duration::from_secs(10),
        heartbeat: Duration::from_secs(2),
        ..CoordinatorConfig::default()
    }
}

fn slots(count: u32) -> Vec<WorkerSlot> {
    (0..count)
        .map(|index| WorkerSlot {
            index,
            device: format!("cuda:{index}"),
        })
        .collect()
}

/// A grid of `seeds` darts searches with `search` and `evaluation` table lines.
fn grid(name: &str, seeds: &str, search: &str, evaluation: &str) -> String {
    format!(
        "version = 1\nname = \"{name}\"\nretries = 0\ndatasets = [\"cifar10\"]\n\
         seeds = [{seeds}]\n[[methods]]\npreset = \"darts\"\n[search]\n{search}\n\
         [evaluation]\n{evaluation}\n"
    )
}

#[test]
fn shared_trials_pack_onto_one_slot_and_never_mix_with_unshared_ones() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let mut state = State::open(dir.path(), config(), now).unwrap();
    state
        .submit_grid("g.toml", &grid("packed", "1, 2, 3", "gpu_share = 2", ""))
        .unwrap();
    let (session, _) = state.register("w", slots(2), &[], None, now).unwrap();
    let first = state.request_trial("w", session, 0, now).unwrap().unwrap();
    let second = state.request_trial("w", session, 0, now).unwrap().unwrap();
    let third = state.request_trial("w", session, 1, now).unwrap().unwrap();
    assert_eq!(
        (first.slots, second.slots, third.slots),
        (vec![0], vec![0], vec![1]),
        "the second shares slot 0; slot 0 is full, so the third starts slot 1"
    );
    state.check_invariants().unwrap();
    state
        .submit_grid("u.toml", &grid("unshared", "4", "", ""))
        .unwrap();
    assert_eq!(
        state.request_trial("w", session, 1, now).unwrap(),
        None,
        "an unshared trial never joins shared ones"
    );
    let listed = state.list_workers(now);
    let loads: Vec<(u32, usize, u32)> = listed[0]
        .loads
        .iter()
        .map(|load| (load.slot, load.trials.len(), load.share))
        .collect();
    assert_eq!(loads, vec![(0, 2, 2), (1, 1, 2)]);
}

#[test]
fn a_gang_trial_takes_every_slot_it_needs_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let mut state = State::open(dir.path(), config(), now).unwrap();
    state
        .submit_grid("g.toml", &grid("gang", "1, 2", "gpus = 2", ""))
        .unwrap();
    let (session, _) = state.register("w", slots(3), &[], None, now).unwrap();
    let gang = state.request_trial("w", session, 2, now).unwrap().unwrap();
    assert_eq!(
        gang.slots,
        vec![2, 0],
        "the slot asked on first, then idle ones"
    );
    assert_eq!(
        state.request_trial("w", session, 1, now).unwrap(),
        None,
        "one idle slot cannot hold the second two-GPU trial"
    );
    assert_eq!(
        state.reservation.as_ref().map(|r| r.worker.as_str()),
        Some("w")
    );
    state.check_invariants().unwrap();
    drop(state);
    let mut state = State::open(dir.path(), config(), now).unwrap();
    let placement = state.trials[&gang.trial_id].placement.clone().unwrap();
    assert_eq!(placement.slots, vec![2, 0]);
    let running = RunningReport {
        trial_id: gang.trial_id,
        epoch: gang.epoch,
        slots: vec![2, 0],
        progress: None,
    };
    let (session, accepted) = state
        .register("w", slots(3), &[running], None, now)
        .unwrap();
    assert_eq!(accepted, vec![gang.trial_id]);
    state.check_invariants().unwrap();
    state
        .finish(gang.trial_id, gang.epoch, Finish::Preempted)
        .unwrap();
    let next = state.request_trial("w", session, 1, now).unwrap().unwrap();
    assert_eq!(next.slots.len(), 2);
}

#[test]
fn a_shared_trial_out_of_gpu_memory_is_requeued_unshared_without_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let mut state = State::open(dir.path(), config(), now).unwrap();
    state
        .submit_grid("g.toml", &grid("oom", "1", "gpu_share = 4", ""))
        .unwrap();
    let (session, _) = state.register("w", slots(1), &[], None, now).unwrap();
    let shared = state.request_trial("w", session, 0, now).unwrap().unwrap();
    let oom = || Finish::OutOfMemory("CUDA out of memory. Tried to allocate 2.00 GiB".into());
    state.finish(shared.trial_id, shared.epoch, oom()).unwrap();
    let trial = &state.trials[&shared.trial_id];
    assert_eq!((trial.state, trial.failures), (TrialState::Queued, 0));
    assert_eq!(trial.spec.resources().gpu_share, 1);
    state.check_invariants().unwrap();
    drop(state);
    let mut state = State::open(dir.path(), config(), now).unwrap();
    let (session, _) = state.register("w", slots(1), &[], None, now).unwrap();
    let alone = state.request_trial("w", session, 0, now).unwrap().unwrap();
    assert_eq!(
        alone.spec.resources().gpu_share,
        1,
        "the unshared spec is stored"
    );
    assert_eq!(alone.spec.kind, TrialKind::Search);
    state.finish(alone.trial_id, alone.epoch, oom()).unwrap();
    let trial = &state.trials[&alone.trial_id];
    assert_eq!((trial.state, trial.failures), (TrialState::Failed, 1));
    assert_eq!(
        trial.reason,
        "out of GPU memory: CUDA out of memory. Tried to allocate 2.00 GiB"
    );
}
