//! Data-parallel training as a strategy of the run driver: one rank per device, each a
//! thread running the driver's loop ([`super::run`]) with its own task, connected by a
//! communicator (NCCL between GPUs, else the CPU back-end: `parallel::backend`). Rank 0 runs on the calling thread with the caller's observer and writes the
//! run directory; the others write nothing. A rank that fails or panics breaks the group, so
//! the others fail their next collective at once (or after the timeout, for a rank that
//! hangs), and the run fails with the first rank's own error.

use super::{RunOptions, Task};
use crate::error::RunError;
use crate::parallel::backend::{connect, Collectives};
use crate::parallel::rank::DataParallel;
use crate::parallel::{panic_message, Communicator, DEFAULT_COLLECTIVE_TIMEOUT};
use prime_core::observer::{NullObserver, RunObserver};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;
use tch::Device;

/// Most ranks of one run: more than any node's GPUs, and a bound on the threads started.
pub const MAX_RANKS: usize = 64;

/// Runs (or resumes) the task `make_task` builds for each rank, one rank per device of
/// `devices` (rank r on `devices[r]`, which replaces `options.device`), connected by the
/// back-end `PRIME_COLLECTIVES` chooses (NCCL between distinct GPUs by default), with
/// collectives that wait at most `timeout` for the other ranks.
/// Returns rank 0's outcome.
pub fn run_data_parallel<T, F>(
    devices: &[Device],
    timeout: Duration,
    options: &RunOptions,
    observer: &mut dyn RunObserver,
    make_task: F,
) -> Result<T::Outcome, RunError>
where
    T: Task,
    F: Fn(DataParallel, &RunOptions) -> Result<T, RunError> + Sync,
{
    if devices.is_empty() || devices.len() > MAX_RANKS {
        return Err(RunError::Unsupported(format!(
            "a data-parallel run takes 1 to {MAX_RANKS} devices, not {}",
            devices.len()
        )));
    }
    let rank_options = |device: Device| RunOptions {
        device,
        ..options.clone()
    };
    let run_rank =
        |comm: Box<dyn Communicator>, options: RunOptions, observer: &mut dyn RunObserver| {
            let task = make_task(DataParallel::new(comm), &options)?;
            super::run(task, &options, observer)
        };
    let connected = connect(devices, timeout, Collectives::from_env()?)?;
    tracing::info!(
        "data-parallel over {} ranks ({devices:?}), collectives: {}",
        devices.len(),
        connected.description
    );
    let mut comms = connected.ranks.into_iter();
    let first = comms.next().expect("a group of at least one rank");
    std::thread::scope(|scope| {
        let mut others = Vec::new();
        for (rank, (comm, device)) in comms.zip(&devices[1..]).enumerate() {
            let options = rank_options(*device);
            let run_rank = &run_rank;
            let thread = std::thread::Builder::new()
                .name(format!("rank-{}", rank + 1))
                .spawn_scoped(scope, move || {
                    run_rank(comm, options, &mut NullObserver).map(drop)
                })?;
            others.push(thread);
        }
        let rank0 = catch_unwind(AssertUnwindSafe(|| {
            run_rank(first, rank_options(devices[0]), observer)
        }));
        let others: Vec<_> = others.into_iter().map(|thread| thread.join()).collect();
        combine(rank0, others)
    })
}

/// Runs (or resumes) a task on `devices`: on one device the task `single` builds (with that
/// device in its options), on several data-parallel as [`run_data_parallel`], each rank's
/// task built by `rank` from the data `load` reads once for all of them (one copy in memory,
/// and at most one download into the data folder rather than one per rank at the same time).
pub fn run_on_devices<T, D>(
    devices: &[Device],
    options: &RunOptions,
    observer: &mut dyn RunObserver,
    single: impl FnOnce(&RunOptions) -> Result<T, RunError>,
    load: impl FnOnce() -> Result<D, RunError>,
    rank: impl Fn(DataParallel, &RunOptions, D) -> Result<T, RunError> + Sync,
) -> Result<T::Outcome, RunError>
where
    T: Task,
    D: Clone + Sync,
{
    if let [device] = devices {
        let options = RunOptions {
            device: *device,
            ..options.clone()
        };
        return super::run(single(&options)?, &options, observer);
    }
    let data = load()?;
    run_data_parallel(
        devices,
        DEFAULT_COLLECTIVE_TIMEOUT,
        options,
        observer,
        |ranks, options| rank(ranks, options, data.clone()),
    )
}

/// Rank 0's outcome, or the error that ended the run: the first rank (in rank order) that
/// failed on its own (panicked, or returned an error other than a collective's failure,
/// which is how the other ranks learn of it), else rank 0's error.
fn combine<O>(
    rank0: std::thread::Result<Result<O, RunError>>,
    others: Vec<std::thread::Result<Result<(), RunError>>>,
) -> Result<O, RunError> {
    let mut first_collective_error = None;
    let mut others_errors = Vec::new();
    for (rank, result) in others.into_iter().enumerate() {
        let rank = rank + 1;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(RunError::Collective(error))) => {
                first_collective_error.get_or_insert(RunError::Rank {
                    rank,
                    source: Box::new(RunError::Collective(error)),
                });
            }
            Ok(Err(error)) => others_errors.push(RunError::Rank {
                rank,
                source: Box::new(error),
            }),
            Err(payload) => others_errors.push(RunError::RankPanicked {
                rank,
                message: panic_message(payload.as_ref()),
            }),
        }
    }
    let own_error = others_errors.into_iter().next();
    match rank0 {
        Err(payload) => Err(RunError::RankPanicked {
            rank: 0,
            message: panic_message(payload.as_ref()),
        }),
        Ok(Err(RunError::Collective(error))) => {
            Err(own_error.unwrap_or(RunError::Collective(error)))
        }
        Ok(Err(error)) => Err(error),
        Ok(Ok(outcome)) => match own_error.or(first_collective_error) {
            Some(error) => Err(error),
            None => Ok(outcome),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::CommError;

    fn left(rank: usize) -> RunError {
        RunError::Collective(CommError::RankFailed {
            rank,
            reason: "it left the group".into(),
        })
    }

    #[test]
    fn the_rank_that_failed_first_on_its_own_names_the_error() {
        let error = combine::<()>(
            Ok(Err(left(2))),
            vec![Ok(Err(left(2))), Err(Box::new("index out of range"))],
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "rank 2 of the data-parallel run panicked: index out of range"
        );
        let error = combine::<()>(
            Ok(Err(left(1))),
            vec![Ok(Err(RunError::Unsupported("no data".into())))],
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "rank 1 of the data-parallel run failed: no data"
        );
    }

    #[test]
    fn rank_0s_own_error_wins_and_a_late_failure_still_fails_the_run() {
        let error = combine::<()>(
            Ok(Err(RunError::Unsupported("bad batch".into()))),
            vec![Ok(Err(left(0)))],
        )
        .unwrap_err();
        assert_eq!(error.to_string(), "bad batch");
        let error = combine(Ok(Ok(7)), vec![Ok(Ok(())), Ok(Err(left(1)))]).unwrap_err();
        assert!(error.to_string().starts_with("rank 2 of"), "{error}");
        assert_eq!(combine(Ok(Ok(7)), vec![Ok(Ok(()))]).unwrap(), 7);
    }
}
