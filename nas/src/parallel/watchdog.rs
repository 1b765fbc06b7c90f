//! The watch kept over a collective that runs on a device: the calling thread blocks until
//! the device has finished it, while a watcher thread aborts it when the group's timeout
//! passes or another rank has left the group for good. A device collective cannot be
//! cancelled from the thread that waits on it, so the abort comes from beside it (as
//! PyTorch's NCCL watchdog does), and unblocks the wait.

use super::CommError;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often the watcher looks at the group while the collective runs.
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug)]
enum Watch {
    Waiting,
    Finished,
    Aborted(CommError),
}

/// What became of a watched collective.
#[derive(Debug)]
pub(super) enum Watched<R> {
    /// The wait ended on its own, with `R`.
    Finished(R),
    /// The watcher aborted the collective, for this reason (`abort` was called).
    Aborted(CommError),
}

/// Runs `wait` (which blocks until the collective is done) on this thread. Meanwhile, once
/// `timeout` has passed or `broken` names a reason the collective can never complete, calls
/// `abort` once, from another thread: `abort` must make `wait` return.
pub(super) fn watch<R>(
    timeout: Duration,
    broken: impl Fn() -> Option<CommError> + Sync,
    wait: impl FnOnce() -> R,
    abort: impl FnOnce() + Send,
) -> Watched<R> {
    let started = Instant::now();
    let state = Mutex::new(Watch::Waiting);
    let changed = Condvar::new();
    let lock = || state.lock().unwrap_or_else(PoisonError::into_inner);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut watch = lock();
            loop {
                if !matches!(*watch, Watch::Waiting) {
                    return;
                }
                let waited = started.elapsed();
                let reason = broken().or_else(|| {
                    (waited >= timeout).then_some(CommError::Timeout {
                        waited_s: waited.as_secs_f64(),
                    })
                });
                if let Some(reason) = reason {
                    *watch = Watch::Aborted(reason);
                    drop(watch);
                    abort();
                    return;
                }
                let pause = POLL.min(timeout - waited);
                watch = changed
                    .wait_timeout(watch, pause)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        });
        let result = wait();
        let mut watch = lock();
        let outcome = match std::mem::replace(&mut *watch, Watch::Finished) {
            Watch::Aborted(reason) => Watched::Aborted(reason),
            _ => Watched::Finished(result),
        };
        changed.notify_all();
        outcome
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A wait that blocks until `abort` sends, as a device collective whose peer never comes.
    fn hung() -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (done, wait) = mpsc::channel();
        (wait, done)
    }

    #[test]
    fn a_collective_that_finishes_is_not_aborted() {
        let aborted = Mutex::new(false);
        let outcome = watch(
            Duration::from_secs(60),
            || None,
            || {
                std::thread::sleep(Duration::from_millis(30));
                7
            },
            || *aborted.lock().unwrap() = true,
        );
        assert!(matches!(outcome, Watched::Finished(7)), "{outcome:?}");
        assert!(!*aborted.lock().unwrap());
    }

    #[test]
    fn a_hung_collective_is_aborted_at_the_timeout_and_the_wait_returns() {
        let (wait, done) = hung();
        let started = Instant::now();
        let outcome = watch(
            Duration::from_millis(100),
            || None,
            || wait.recv_timeout(Duration::from_secs(60)),
            move || done.send(()).unwrap(),
        );
        let waited = started.elapsed();
        match outcome {
            Watched::Aborted(CommError::Timeout { waited_s }) => assert!(waited_s >= 0.1),
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(waited < Duration::from_secs(10), "{waited:?}");
    }

    #[test]
    fn a_rank_that_left_aborts_the_collective_long_before_the_timeout() {
        let (wait, done) = hung();
        let started = Instant::now();
        let left = CommError::RankFailed {
            rank: 1,
            reason: "it panicked".into(),
        };
        let broken = || (started.elapsed() > Duration::from_millis(50)).then(|| left.clone());
        let outcome = watch(
            Duration::from_secs(600),
            broken,
            || wait.recv_timeout(Duration::from_secs(60)),
            move || done.send(()).unwrap(),
        );
        match outcome {
            Watched::Aborted(reason) => assert_eq!(reason, left),
            other => panic!("expected the rank's failure, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}
