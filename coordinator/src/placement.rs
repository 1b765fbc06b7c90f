//! Placement: which queued trial a worker gets, and on which of its devices. Pure functions
//! over a snapshot of one worker's devices and the queue; the state machine owns the data
//! and applies the decision.
//!
//! - **Gang placement.** A trial on N GPUs is placed on N idle devices of one worker at
//!   once, or not at all: a device is never held for a trial that cannot start yet.
//! - **Packing.** A trial with `gpu_share = K` goes to a device that already holds fewer
//!   than K trials of share K (the fullest such device first, so idle devices stay free for
//!   gang trials), and only while that device reports at least 1/K of its memory free;
//!   otherwise to an idle device. Shares never mix: a device holds trials of one share.
//! - **No starvation (reservation).** Within a priority trials run first come, first
//!   served. When the first trial in that order is a gang trial that fits on no device set
//!   offered to it, it reserves one worker large enough to hold it (the first that asks);
//!   that worker takes no other trial until its devices drain and the reserved trial starts
//!   there (or starts elsewhere first). Without this, a stream of one-GPU trials would take
//!   every device the moment it frees up and a 4-GPU trial would wait forever. Trials of
//!   lower priority than other queued trials wait by design.
//! - **Cost independent of the queue length.** The queue is indexed by resource shape: all
//!   trials of one shape are interchangeable for placement, so only the first trial of each
//!   shape is looked at, in priority order. A decision costs O(shapes x devices), and a grid
//!   has a handful of shapes whatever its number of trials.

use prime_core::resources::Resources;
use prime_core::trial::{TrialId, TrialSpec};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

/// Where a trial stands in the queue: higher priority first, then lower id (older).
pub type QueueKey = (Reverse<i32>, TrialId);

/// Queued trials, by resource shape, each shape in queue order.
#[derive(Debug, Default, Clone)]
pub struct ShapeQueue {
    shapes: BTreeMap<Resources, BTreeSet<QueueKey>>,
}

impl ShapeQueue {
    /// Queues trial `id` of `priority` asking for `resources`.
    pub fn insert(&mut self, resources: Resources, priority: i32, id: TrialId) {
        self.shapes
            .entry(resources)
            .or_default()
            .insert((Reverse(priority), id));
    }

    /// Takes trial `id` out of the queue (a no-op when it is not queued).
    pub fn remove(&mut self, resources: Resources, priority: i32, id: TrialId) {
        if let Some(queue) = self.shapes.get_mut(&resources) {
            queue.remove(&(Reverse(priority), id));
            if queue.is_empty() {
                self.shapes.remove(&resources);
            }
        }
    }

    /// The first trial of every shape, in queue order: what a worker may be offered.
    pub fn heads(&self) -> Vec<(QueueKey, Resources)> {
        let mut heads: Vec<(QueueKey, Resources)> = self
            .shapes
            .iter()
            .filter_map(|(resources, queue)| queue.first().map(|key| (*key, *resources)))
            .collect();
        heads.sort_unstable();
        heads
    }

    /// Whether trial `id` of `priority` asking for `resources` is queued.
    pub fn contains(&self, resources: Resources, priority: i32, id: TrialId) -> bool {
        self.shapes
            .get(&resources)
            .is_some_and(|queue| queue.contains(&(Reverse(priority), id)))
    }

    /// Every queued trial id, shape by shape.
    pub fn ids(&self) -> impl Iterator<Item = TrialId> + '_ {
        self.shapes.values().flatten().map(|(_, id)| *id)
    }
}

/// One device of a worker as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceView {
    /// The worker's slot index of the device.
    pub slot: u32,
    /// Trials on the device.
    pub trials: u32,
    /// The share (`gpu_share`) of the trials on it; 1 for an unshared or gang trial.
    pub share: u32,
    /// Memory the device last reported, total and free, in bytes; `None` for devices
    /// without a memory report (the CPU).
    pub memory: Option<(u64, u64)>,
    /// Out of service (a stalled training thread still holds it).
    pub stalled: bool,
}

impl DeviceView {
    fn idle(&self) -> bool {
        self.trials == 0 && !self.stalled
    }

    /// Whether one more trial of share `share` (> 1) fits beside the ones on the device.
    fn takes_shared(&self, share: u32) -> bool {
        let room = self.idle() || (self.share == share && self.trials < share && !self.stalled);
        let memory = self
            .memory
            .is_none_or(|(total, free)| free >= total / u64::from(share));
        room && memory
    }
}

/// The worker a gang trial has reserved, so that smaller trials do not starve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The reserved trial.
    pub trial_id: TrialId,
    /// The worker held for it.
    pub worker: String,
}

/// What to do for a worker asking for a trial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start this trial on these slots (one for a single-GPU trial, N for a gang trial).
    Place {
        /// The trial.
        trial_id: TrialId,
        /// Its slots on the worker.
        slots: Vec<u32>,
    },
    /// Reserve the worker for this gang trial and place nothing now.
    Reserve(TrialId),
    /// Nothing fits now (or the worker is reserved for a trial that does not fit yet).
    Wait,
}

/// The slots of `devices` that a trial asking for `resources` would take, if it fits now.
pub fn fit(resources: Resources, devices: &[DeviceView]) -> Option<Vec<u32>> {
    if resources.gpu_share > 1 {
        return devices
            .iter()
            .filter(|device| device.takes_shared(resources.gpu_share))
            .max_by_key(|device| (device.trials, Reverse(device.slot)))
            .map(|device| vec![device.slot]);
    }
    let idle: Vec<u32> = devices
        .iter()
        .filter(|device| device.idle())
        .map(|device| device.slot)
        .take(resources.gpus as usize)
        .collect();
    (idle.len() == resources.gpus as usize).then_some(idle)
}

/// Decides what the worker `worker` with `devices` gets from `queue`, given the current
/// reservation (see the module comment).
pub fn decide(
    worker: &str,
    devices: &[DeviceView],
    queue: &ShapeQueue,
    reservation: Option<&Reservation>,
) -> Decision {
    let heads = queue.heads();
    let held = reservation.filter(|reservation| reservation.worker == worker);
    let reserved = held.and_then(|reservation| {
        heads
            .iter()
            .find(|((_, id), _)| *id == reservation.trial_id)
    });
    if let Some(&((_, trial_id), resources)) = reserved {
        return match fit(resources, devices) {
            Some(slots) => Decision::Place { trial_id, slots },
            None => Decision::Wait,
        };
    }
    for (position, &((_, trial_id), resources)) in heads.iter().enumerate() {
        if let Some(slots) = fit(resources, devices) {
            return Decision::Place { trial_id, slots };
        }
        let first_in_line = position == 0;
        let could_hold_it = devices.len() >= resources.gpus as usize;
        if first_in_line && resources.gpus > 1 && reservation.is_none() && could_hold_it {
            return Decision::Reserve(trial_id);
        }
    }
    Decision::Wait
}

/// The trials of `specs` (and the evaluations they spawn) that ask for more GPUs than the
/// largest registered worker has (`largest`), as "cannot be placed yet" lines.
pub fn unplaceable(specs: &[TrialSpec], largest: u32) -> Vec<String> {
    let mut lines = Vec::new();
    for spec in specs {
        let gpus = spec.resources().gpus;
        if gpus > 1 && gpus > largest {
            lines.push(cannot_place(&spec.describe(), gpus, largest));
        }
        let Some(evaluation) = &spec.evaluation else {
            continue;
        };
        let gpus = Resources::of(&evaluation.run_settings())
            .unwrap_or_default()
            .gpus;
        if gpus > 1 && gpus > largest {
            let what = format!("the evaluations of {}", spec.describe());
            lines.push(cannot_place(&what, gpus, largest));
        }
    }
    lines
}

fn cannot_place(what: &str, gpus: u32, largest: u32) -> String {
    format!(
        "{what} cannot be placed yet: it needs {gpus} GPUs on one worker and the largest \
         registered worker has {largest}; it stays queued until such a worker registers"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn device(slot: u32, trials: u32, share: u32) -> DeviceView {
        DeviceView {
            slot,
            trials,
            share,
            memory: None,
            stalled: false,
        }
    }

    fn idle(count: u32) -> Vec<DeviceView> {
        (0..count).map(|slot| device(slot, 0, 1)).collect()
    }

    fn shape(gpus: u32, gpu_share: u32) -> Resources {
        Resources { gpus, gpu_share }
    }

    #[test]
    fn a_gang_trial_takes_all_its_gpus_on_one_worker_or_none() {
        assert_eq!(fit(shape(2, 1), &idle(4)), Some(vec![0, 1]));
        let mut devices = idle(4);
        devices[0].trials = 1;
        devices[2].stalled = true;
        assert_eq!(fit(shape(2, 1), &devices), Some(vec![1, 3]));
        assert_eq!(fit(shape(3, 1), &devices), None);
        assert_eq!(fit(shape(4, 1), &idle(2)), None);
        let mut queue = ShapeQueue::default();
        queue.insert(shape(3, 1), 0, 1);
        let decision = decide("w", &devices, &queue, None);
        assert_eq!(
            decision,
            Decision::Reserve(1),
            "no partial hold, a reservation"
        );
    }

    #[test]
    fn shared_trials_pack_onto_the_fullest_device_up_to_their_share() {
        let devices = vec![device(0, 0, 1), device(1, 2, 4), device(2, 3, 4)];
        assert_eq!(fit(shape(1, 4), &devices), Some(vec![2]));
        let full = vec![device(0, 4, 4), device(1, 1, 1)];
        assert_eq!(fit(shape(1, 4), &full), None, "never beyond K");
        let other_share = vec![device(0, 1, 2)];
        assert_eq!(fit(shape(1, 4), &other_share), None, "shares do not mix");
        assert_eq!(fit(shape(1, 1), &devices), Some(vec![0]));
    }

    #[test]
    fn packing_stops_where_the_reported_free_memory_ends() {
        let with_memory = |free: u64| DeviceView {
            memory: Some((140 * GIB, free)),
            ..device(0, 1, 4)
        };
        assert_eq!(fit(shape(1, 4), &[with_memory(35 * GIB)]), Some(vec![0]));
        assert_eq!(fit(shape(1, 4), &[with_memory(34 * GIB)]), None);
        let busy_idle_card = DeviceView {
            memory: Some((140 * GIB, 10 * GIB)),
            ..device(0, 0, 1)
        };
        assert_eq!(fit(shape(1, 4), &[busy_idle_card]), None);
    }

    #[test]
    fn the_queue_order_is_priority_then_age_across_shapes() {
        let mut queue = ShapeQueue::default();
        for id in 10..20 {
            queue.insert(shape(1, 1), 0, id);
        }
        queue.insert(shape(1, 4), 0, 5);
        queue.insert(shape(2, 1), 7, 30);
        assert_eq!(queue.ids().count(), 12);
        assert!(queue.contains(shape(1, 4), 0, 5));
        assert!(!queue.contains(shape(1, 1), 0, 5));
        let heads: Vec<TrialId> = queue.heads().iter().map(|((_, id), _)| *id).collect();
        assert_eq!(heads, vec![30, 5, 10]);
        let half_busy = vec![device(0, 1, 1), device(1, 0, 1)];
        assert_eq!(
            decide("w", &idle(1), &queue, None),
            Decision::Place {
                trial_id: 5,
                slots: vec![0]
            },
            "a worker that can never hold the first trial takes the next"
        );
        let decision = decide("w", &half_busy, &queue, None);
        assert_eq!(
            decision,
            Decision::Reserve(30),
            "the first trial in line reserves a worker that can hold it"
        );
        let decision = decide("small", &idle(1), &queue, Some(&reservation(30, "big")));
        assert_eq!(
            decision,
            Decision::Place {
                trial_id: 5,
                slots: vec![0]
            }
        );
        queue.remove(shape(1, 4), 0, 5);
        queue.remove(shape(2, 1), 7, 30);
        queue.remove(shape(2, 1), 7, 30);
        assert_eq!(queue.heads().len(), 1);
    }

    fn reservation(trial_id: TrialId, worker: &str) -> Reservation {
        Reservation {
            trial_id,
            worker: worker.into(),
        }
    }

    /// A 4-GPU trial queued behind a stream of 1-GPU trials on one 4-GPU worker: without
    /// the reservation the worker's devices go to 1-GPU trials one by one as they free up,
    /// and the gang trial never sees four idle devices at once.
    #[test]
    fn a_gang_trial_is_not_starved_by_a_stream_of_small_ones() {
        let gang = 100;
        let mut queue = ShapeQueue::default();
        queue.insert(shape(4, 1), 0, gang);
        let mut next_small = 101;
        let mut devices = idle(4);
        devices[0].trials = 1;
        devices[1].trials = 1;
        let mut reserved = None;
        let mut started = None;
        for round in 0..20 {
            for _ in 0..2 {
                queue.insert(shape(1, 1), 0, next_small);
                next_small += 1;
            }
            // One running small trial ends each round.
            if let Some(busy) = devices.iter_mut().find(|d| d.trials == 1) {
                busy.trials = 0;
            }
            match decide("w", &devices, &queue, reserved.as_ref()) {
                Decision::Reserve(trial_id) => reserved = Some(reservation(trial_id, "w")),
                Decision::Place { trial_id, slots } if trial_id == gang => {
                    started = Some((round, slots));
                    break;
                }
                Decision::Place { trial_id, slots } => {
                    queue.remove(shape(1, 1), 0, trial_id);
                    devices[slots[0] as usize].trials = 1;
                }
                Decision::Wait => {}
            }
        }
        assert_eq!(reserved, Some(reservation(gang, "w")));
        assert_eq!(started, Some((1, vec![0, 1, 2, 3])));
    }

    #[test]
    fn a_reserved_worker_takes_nothing_else_and_other_workers_go_on() {
        let mut queue = ShapeQueue::default();
        queue.insert(shape(2, 1), 0, 1);
        queue.insert(shape(1, 1), 0, 2);
        let mut devices = idle(2);
        devices[0].trials = 1;
        let held = reservation(1, "big");
        assert_eq!(decide("big", &devices, &queue, Some(&held)), Decision::Wait);
        assert_eq!(
            decide("other", &idle(1), &queue, Some(&held)),
            Decision::Place {
                trial_id: 2,
                slots: vec![0]
            }
        );
        assert_eq!(
            decide("third", &idle(2), &queue, Some(&held)),
            Decision::Place {
                trial_id: 1,
                slots: vec![0, 1]
            },
            "the reserved trial starts wherever it fits first"
        );
        let too_small = decide("tiny", &idle(1), &queue, None);
        assert_eq!(
            too_small,
            Decision::Place {
                trial_id: 2,
                slots: vec![0]
            },
            "a worker that could never hold the gang trial is not reserved"
        );
    }

    #[test]
    fn trials_needing_more_gpus_than_any_worker_are_reported() {
        let text = "version = 1\nname = \"g\"\ndatasets = [\"cifar10\"]\nseeds = [1, 2]\n\
                    [[methods]]\npreset = \"pr\"\n[search]\ngpus = 2\n[evaluation]\ngpus = 8\n";
        let specs = prime_core::grid::GridSpec::parse("g.toml", text)
            .unwrap()
            .search_trials();
        assert!(unplaceable(&specs, 8).is_empty());
        let lines = unplaceable(&specs, 4);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with(
                "the evaluations of search pr cifar10 seed 1 cannot be placed yet: it needs 8 GPUs"
            ),
            "{lines:?}"
        );
        assert_eq!(unplaceable(&specs, 1).len(), 4);
    }
}
