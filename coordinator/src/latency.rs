//! Server-side latency of assignments: how long the coordinator takes from receiving a
//! `RequestTrial` that gets a trial to handing the assignment back to the transport, split
//! into the wait for the event loop and the work on it. Lock-free histograms, so recording
//! never contends with the requests it measures; `prime bench coordinator` reads them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two of microseconds: a bucket spans at most 1/32 (about 3%) of
/// its value, fine enough for percentiles in milliseconds.
const SUB_BUCKETS: u64 = 32;
/// Values below this many microseconds get one bucket each.
const LINEAR_LIMIT: u64 = 2 * SUB_BUCKETS;
/// Powers of two above the linear range: up to 2^41 us (about 25 days).
const OCTAVES: u64 = 35;
/// Buckets in all.
const BUCKETS: usize = (LINEAR_LIMIT + OCTAVES * SUB_BUCKETS) as usize;

fn bucket_of(micros: u64) -> usize {
    if micros < LINEAR_LIMIT {
        return micros as usize;
    }
    let octave = 63 - u64::from(micros.leading_zeros());
    // `octave` is at least 6 here (micros >= 64), so the shift keeps 5 bits below the top.
    let sub = (micros >> (octave - 5)) & (SUB_BUCKETS - 1);
    let index = LINEAR_LIMIT + (octave - 6) * SUB_BUCKETS + sub;
    (index as usize).min(BUCKETS - 1)
}

/// The smallest value (in microseconds) that falls into `bucket`.
fn bucket_floor(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < LINEAR_LIMIT {
        return bucket;
    }
    let octave = (bucket - LINEAR_LIMIT) / SUB_BUCKETS + 6;
    let sub = (bucket - LINEAR_LIMIT) % SUB_BUCKETS;
    (1 << octave) | (sub << (octave - 5))
}

/// A histogram of durations that many threads record into without locks.
#[derive(Debug)]
pub struct LatencyHistogram {
    counts: Vec<AtomicU64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl LatencyHistogram {
    /// Counts one duration.
    pub fn record(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            counts: self
                .counts
                .iter()
                .map(|count| count.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// The counts of a histogram at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencySnapshot {
    counts: Vec<u64>,
}

impl LatencySnapshot {
    /// What was recorded after `earlier` (a snapshot of the same histogram).
    pub fn since(&self, earlier: &LatencySnapshot) -> LatencySnapshot {
        LatencySnapshot {
            counts: self
                .counts
                .iter()
                .zip(&earlier.counts)
                .map(|(now, then)| now.saturating_sub(*then))
                .collect(),
        }
    }

    /// How many durations it holds.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `fraction` quantile (0 to 1), as the lower edge of its bucket; `None` when empty.
    pub fn quantile(&self, fraction: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        // The rank of the quantile, 1-based: the smallest value with at least that many at or
        // below it.
        let rank = ((total as f64 * fraction.clamp(0.0, 1.0)).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Duration::from_micros(bucket_floor(bucket)));
            }
        }
        None
    }

    /// The `fraction` quantile in milliseconds, NaN when empty (for JSON reports).
    pub fn quantile_ms(&self, fraction: f64) -> f64 {
        self.quantile(fraction)
            .map_or(f64::NAN, |duration| duration.as_secs_f64() * 1000.0)
    }
}

/// The coordinator's assignment timings.
#[derive(Debug, Default)]
pub struct AssignmentTimings {
    /// From the handler receiving the request to the reply being handed back.
    pub total: LatencyHistogram,
    /// Of that, the wait until the event loop ran the request.
    pub queued: LatencyHistogram,
    /// Of that, the work on the event loop (placement and its SQLite commit).
    pub on_loop: LatencyHistogram,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut previous = 0;
        for micros in (0..5000).chain([1 << 20, (1 << 20) + 12345, 3_600_000_000]) {
            let bucket = bucket_of(micros);
            assert!(bucket >= previous, "{micros}");
            previous = bucket;
            let floor = bucket_floor(bucket);
            assert!(floor <= micros, "{micros} below its floor {floor}");
            assert!(
                (micros - floor) as f64 <= micros as f64 / 32.0,
                "{micros} too far from {floor}"
            );
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_of_recorded_durations_and_of_a_difference() {
        let histogram = LatencyHistogram::default();
        assert_eq!(histogram.snapshot().quantile(0.5), None);
        assert!(histogram.snapshot().quantile_ms(0.5).is_nan());
        for millis in 1..=100 {
            histogram.record(Duration::from_millis(millis));
        }
        let first = histogram.snapshot();
        assert_eq!(first.count(), 100);
        let p50 = first.quantile(0.5).unwrap().as_secs_f64() * 1000.0;
        let p99 = first.quantile(0.99).unwrap().as_secs_f64() * 1000.0;
        assert!((48.0..=50.0).contains(&p50), "{p50}");
        assert!((96.0..=99.0).contains(&p99), "{p99}");
        for _ in 0..10 {
            histogram.record(Duration::from_secs(2));
        }
        let later = histogram.snapshot().since(&first);
        assert_eq!(later.count(), 10);
        let p50 = later.quantile(0.5).unwrap().as_secs_f64();
        assert!((1.9..=2.0).contains(&p50), "{p50}");
    }
}
