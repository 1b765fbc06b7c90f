//! The CPU back-end of `Communicator`: the ranks are threads of one process that meet in a
//! shared rendezvous. Each collective is a round: every rank deposits its buffer, the last
//! to arrive computes the result (sums in rank order 0, 1, ..., so it is deterministic), and
//! every rank copies it out; the round is cleared when the last rank has read it. A rank that
//! is dropped (it returned, or it panicked and unwound) breaks the group: every other rank's
//! collective fails at once instead of waiting for it.

use super::{CommError, Communicator};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What the ranks of a round do with their buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Collective {
    Sum,
    Broadcast(usize),
}

#[derive(Debug, Default)]
struct Round {
    deposits: Vec<Option<Vec<f32>>>,
    arrived: usize,
    result: Option<Result<Vec<f32>, CommError>>,
    read: usize,
    broken: Option<CommError>,
}

#[derive(Debug)]
struct Group {
    world_size: usize,
    timeout: Duration,
    round: Mutex<Round>,
    changed: Condvar,
}

impl Group {
    fn lock(&self) -> MutexGuard<'_, Round> {
        // A rank panics outside the lock; a poisoned lock still holds a consistent round.
        self.round
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One rank of a group of threads.
#[derive(Debug)]
pub struct CpuCommunicator {
    rank: usize,
    group: Arc<Group>,
}

impl CpuCommunicator {
    /// The `world_size` ranks of a new group, in rank order; hand one to each thread.
    /// Collectives fail after waiting `timeout` for the others.
    pub fn group(world_size: usize, timeout: Duration) -> Vec<CpuCommunicator> {
        let group = Arc::new(Group {
            world_size,
            timeout,
            round: Mutex::new(Round {
                deposits: vec![None; world_size],
                ..Round::default()
            }),
            changed: Condvar::new(),
        });
        (0..world_size)
            .map(|rank| CpuCommunicator {
                rank,
                group: group.clone(),
            })
            .collect()
    }

    /// Waits on the group until `ready` holds, the group breaks, or the timeout passes (a
    /// round that completed before a rank left is still read).
    fn wait_until<'a>(
        &self,
        mut round: MutexGuard<'a, Round>,
        started: Instant,
        ready: impl Fn(&Round) -> bool,
    ) -> Result<MutexGuard<'a, Round>, CommError> {
        loop {
            if ready(&round) {
                return Ok(round);
            }
            if let Some(error) = &round.broken {
                return Err(error.clone());
            }
            let waited = started.elapsed();
            let Some(left) = self.group.timeout.checked_sub(waited) else {
                return Err(CommError::Timeout {
                    waited_s: waited.as_secs_f64(),
                });
            };
            round = self
                .group
                .changed
                .wait_timeout(round, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    fn exchange(&mut self, buffer: &mut [f32], collective: Collective) -> Result<(), CommError> {
        let started = Instant::now();
        let world = self.group.world_size;
        let round = self.group.lock();
        // The previous round is cleared once every rank has read it.
        let mut round = self.wait_until(round, started, |round| round.result.is_none())?;
        round.deposits[self.rank] = Some(buffer.to_vec());
        round.arrived += 1;
        if round.arrived == world {
            let result = combine(&round.deposits, collective);
            round.result = Some(result);
            self.group.changed.notify_all();
        }
        let mut round = self.wait_until(round, started, |round| round.result.is_some())?;
        let result = round
            .result
            .clone()
            .unwrap_or_else(|| unreachable!("waited for it"));
        round.read += 1;
        if round.read == world {
            round
                .deposits
                .iter_mut()
                .for_each(|deposit| *deposit = None);
            (round.arrived, round.read, round.result) = (0, 0, None);
            self.group.changed.notify_all();
        }
        drop(round);
        buffer.copy_from_slice(&result?);
        Ok(())
    }
}

/// The result of a round whose every deposit is present.
fn combine(deposits: &[Option<Vec<f32>>], collective: Collective) -> Result<Vec<f32>, CommError> {
    let buffers: Vec<&Vec<f32>> = deposits.iter().flatten().collect();
    let expected = buffers[0].len();
    if let Some((rank, other)) = buffers
        .iter()
        .enumerate()
        .find(|(_, buffer)| buffer.len() != expected)
    {
        return Err(CommError::Mismatch {
            rank,
            expected,
            got: other.len(),
        });
    }
    Ok(match collective {
        Collective::Broadcast(root) => buffers[root].clone(),
        Collective::Sum => {
            let mut sum = buffers[0].clone();
            for buffer in &buffers[1..] {
                sum.iter_mut().zip(buffer.iter()).for_each(|(s, v)| *s += v);
            }
            sum
        }
    })
}

impl Communicator for CpuCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.group.world_size
    }

    fn backend(&self) -> String {
        "cpu".to_string()
    }

    fn all_reduce_sum(&mut self, buffer: &mut [f32]) -> Result<(), CommError> {
        self.exchange(buffer, Collective::Sum)
    }

    fn broadcast(&mut self, buffer: &mut [f32], root: usize) -> Result<(), CommError> {
        if root >= self.group.world_size {
            return Err(CommError::Mismatch {
                rank: self.rank,
                expected: self.group.world_size,
                got: root,
            });
        }
        self.exchange(buffer, Collective::Broadcast(root))
    }
}

impl Drop for CpuCommunicator {
    /// A rank that leaves (returns or unwinds from a panic) breaks the group, so the others
    /// fail their next collective at once. After a completed run every rank has passed its
    /// last collective, so the break is harmless.
    fn drop(&mut self) {
        let mut round = self.group.lock();
        if round.broken.is_none() {
            let reason = if std::thread::panicking() {
                "it panicked"
            } else {
                "it left the group"
            };
            round.broken = Some(CommError::RankFailed {
                rank: self.rank,
                reason: reason.to_string(),
            });
        }
        self.group.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(60);

    fn run_ranks<T: Send + 'static>(
        world: usize,
        timeout: Duration,
        body: impl Fn(CpuCommunicator) -> T + Send + Sync + 'static,
    ) -> Vec<std::thread::Result<T>> {
        let body = Arc::new(body);
        let threads: Vec<_> = CpuCommunicator::group(world, timeout)
            .into_iter()
            .map(|comm| {
                let body = body.clone();
                std::thread::spawn(move || body(comm))
            })
            .collect();
        threads.into_iter().map(|thread| thread.join()).collect()
    }

    #[test]
    fn all_reduce_sums_in_rank_order_and_broadcast_copies_the_root() {
        let results = run_ranks(3, LONG, |mut comm| {
            let rank = comm.rank() as f32;
            let mut sums = Vec::new();
            for round in 0..20 {
                let mut buffer = vec![rank + round as f32, 0.1 * rank, 1e8 * (rank - 1.0)];
                comm.all_reduce_sum(&mut buffer).unwrap();
                sums.push(buffer);
            }
            let mut weights = vec![rank; 4];
            comm.broadcast(&mut weights, 2).unwrap();
            (sums, weights)
        });
        let expected_last = [
            (0.0 + 1.0 + 2.0) + 3.0 * 19.0,
            (0.0f32 + 0.1) + 0.2,
            (-1e8f32 + 0.0) + 1e8,
        ];
        for result in results {
            let (sums, weights) = result.unwrap();
            assert_eq!(sums.len(), 20);
            assert_eq!(sums[19], expected_last);
            assert_eq!(weights, vec![2.0; 4]);
        }
    }

    #[test]
    fn a_panicking_rank_fails_the_others_instead_of_hanging_them() {
        let results = run_ranks(2, LONG, |mut comm| {
            let mut buffer = vec![1.0f32; 8];
            comm.all_reduce_sum(&mut buffer)?;
            if comm.rank() == 1 {
                panic!("rank 1 dies after its first step");
            }
            comm.all_reduce_sum(&mut buffer)
        });
        assert!(results[1].is_err(), "rank 1 panicked");
        let error = results[0].as_ref().unwrap().clone().unwrap_err();
        assert_eq!(
            error,
            CommError::RankFailed {
                rank: 1,
                reason: "it panicked".into()
            }
        );
    }

    #[test]
    fn a_rank_that_never_arrives_times_the_collective_out() {
        let mut ranks = CpuCommunicator::group(2, Duration::from_millis(50));
        let absent = ranks.pop();
        let mut buffer = vec![0.0f32; 2];
        let error = ranks[0].all_reduce_sum(&mut buffer).unwrap_err();
        assert!(matches!(error, CommError::Timeout { .. }), "{error}");
        drop(absent);
    }

    #[test]
    fn buffers_of_different_lengths_are_refused() {
        let results = run_ranks(2, LONG, |mut comm| {
            let mut buffer = vec![0.0f32; 2 + comm.rank()];
            comm.all_reduce_sum(&mut buffer)
        });
        for result in results {
            let error = result.unwrap().unwrap_err();
            assert!(
                matches!(error, CommError::Mismatch { rank: 1, .. }),
                "{error}"
            );
        }
    }
}
