//! Prometheus metrics of a coordinator. Counters are kept as events happen (metric points
//! and checkpoint bytes received, refused calls, assignment latency); gauges that mirror the
//! state (trials by state, queue depth per grid, workers and slots, how attempts ended) are
//! read from the state at scrape time, so they can never drift from it.

use crate::error::CoordinatorError;
use crate::state::State;
use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Longest reason label of a refused call; longer ones are cut (labels stay small).
const MAX_REASON_CHARS: usize = 48;

/// The coordinator's metrics, in a registry of their own (tests run several coordinators in
/// one process).
pub struct Metrics {
    registry: Registry,
    metric_points: IntCounter,
    checkpoint_bytes: IntCounter,
    refused: IntCounterVec,
    assignment_latency: Histogram,
    trials: IntGaugeVec,
    queue_depth: IntGaugeVec,
    workers: IntGaugeVec,
    slots: IntGaugeVec,
    attempts_ended: IntGaugeVec,
    retries: IntGauge,
    /// Serialises scrapes: each one resets and refills the state gauges.
    scrape: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Metrics")
    }
}

/// What the state gauges show, read on the event loop.
#[derive(Debug, Default)]
pub struct StateGauges {
    trials_by_state: BTreeMap<&'static str, i64>,
    queue_by_grid: BTreeMap<String, i64>,
    workers: BTreeMap<&'static str, i64>,
    slots: BTreeMap<&'static str, i64>,
    attempts_by_outcome: Vec<(String, u64)>,
    retries: i64,
}

impl StateGauges {
    /// Reads the gauges from `state`.
    pub(crate) fn read(state: &State) -> Result<StateGauges, CoordinatorError> {
        let mut gauges = StateGauges {
            attempts_by_outcome: state.db.attempt_outcomes()?,
            ..StateGauges::default()
        };
        for trial in state.trials.values() {
            *gauges
                .trials_by_state
                .entry(trial.state.name())
                .or_default() += 1;
            gauges.retries += i64::from(trial.attempts.saturating_sub(1));
        }
        for trial_id in state.queue.ids() {
            if let Some(trial) = state.trials.get(&trial_id) {
                *gauges
                    .queue_by_grid
                    .entry(trial.spec.grid.clone())
                    .or_default() += 1;
            }
        }
        for worker in state.workers.values() {
            let condition = match (worker.alive, worker.cordoned) {
                (false, _) => "lost",
                (true, true) => "cordoned",
                (true, false) => "ready",
            };
            *gauges.workers.entry(condition).or_default() += 1;
            if worker.alive {
                *gauges.slots.entry("total").or_default() += worker.slots.len() as i64;
                *gauges.slots.entry("busy").or_default() += worker.occupied.len() as i64;
            }
        }
        Ok(gauges)
    }
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("a valid metric name")
}

fn counter_vec(name: &str, help: &str, label: &str) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), &[label]).expect("a valid metric name")
}

fn gauge_vec(name: &str, help: &str, label: &str) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), &[label]).expect("a valid metric name")
}

impl Metrics {
    /// A fresh set of metrics in its own registry.
    pub fn new() -> Metrics {
        let buckets = exponential_buckets(0.000_05, 2.0, 18).expect("valid buckets");
        let metrics = Metrics {
            registry: Registry::new(),
            metric_points: counter(
                "prime_metric_points_received_total",
                "Metric records received from workers and stored.",
            ),
            checkpoint_bytes: counter(
                "prime_checkpoint_bytes_received_total",
                "Checkpoint bytes received from workers and staged.",
            ),
            refused: counter_vec(
                "prime_refused_calls_total",
                "Calls refused before they changed anything, by reason.",
                "reason",
            ),
            assignment_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "prime_assignment_latency_seconds",
                    "Server-side time from receiving a trial request to answering it with an \
                     assignment.",
                )
                .buckets(buckets),
            )
            .expect("a valid histogram"),
            trials: gauge_vec("prime_trials", "Trials by state.", "state"),
            queue_depth: gauge_vec(
                "prime_queue_depth",
                "Runnable trials waiting for a slot, by grid.",
                "grid",
            ),
            workers: gauge_vec(
                "prime_workers",
                "Workers by condition (ready, cordoned, lost).",
                "condition",
            ),
            slots: gauge_vec(
                "prime_worker_slots",
                "Slots of live workers: total, and busy with a trial.",
                "state",
            ),
            attempts_ended: gauge_vec(
                "prime_attempts_ended",
                "Ended attempts by outcome (crashed, diverged, invalid, lost, preempted, \
                 cancelled, succeeded); every one but succeeded and cancelled led to a retry \
                 or a failure.",
                "outcome",
            ),
            retries: IntGauge::new(
                "prime_trial_retries",
                "Attempts beyond the first, over all trials.",
            )
            .expect("a valid metric name"),
            scrape: Mutex::new(()),
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 10] = [
            Box::new(metrics.metric_points.clone()),
            Box::new(metrics.checkpoint_bytes.clone()),
            Box::new(metrics.refused.clone()),
            Box::new(metrics.assignment_latency.clone()),
            Box::new(metrics.trials.clone()),
            Box::new(metrics.queue_depth.clone()),
            Box::new(metrics.workers.clone()),
            Box::new(metrics.slots.clone()),
            Box::new(metrics.attempts_ended.clone()),
            Box::new(metrics.retries.clone()),
        ];
        for collector in collectors {
            metrics
                .registry
                .register(collector)
                .expect("metric names are unique");
        }
        metrics
    }

    /// Counts a call refused for `reason` (a short snake_case word such as `disk_full`,
    /// `upload_limit`, `unauthenticated`).
    pub fn refused(&self, reason: &str) {
        let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
        self.refused.with_label_values(&[reason.as_str()]).inc();
    }

    /// Counts metric records stored.
    pub fn metric_points_received(&self, count: usize) {
        self.metric_points.inc_by(count as u64);
    }

    /// Counts checkpoint bytes staged.
    pub fn checkpoint_bytes_received(&self, bytes: usize) {
        self.checkpoint_bytes.inc_by(bytes as u64);
    }

    /// Records the latency of one assignment.
    pub fn assignment(&self, elapsed: Duration) {
        self.assignment_latency.observe(elapsed.as_secs_f64());
    }

    /// Every metric in Prometheus' text format, with the state gauges set from `gauges`.
    pub fn render(&self, gauges: &StateGauges) -> String {
        let _scrape = self
            .scrape
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        set_all(
            &self.trials,
            gauges.trials_by_state.iter().map(|(k, v)| (*k, *v)),
        );
        set_all(
            &self.queue_depth,
            gauges.queue_by_grid.iter().map(|(k, v)| (k.as_str(), *v)),
        );
        set_all(&self.workers, gauges.workers.iter().map(|(k, v)| (*k, *v)));
        set_all(&self.slots, gauges.slots.iter().map(|(k, v)| (*k, *v)));
        set_all(
            &self.attempts_ended,
            gauges
                .attempts_by_outcome
                .iter()
                .map(|(k, v)| (k.as_str(), *v as i64)),
        );
        self.retries.set(gauges.retries);
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .expect("text encoding into memory");
        String::from_utf8(text).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Replaces every series of `gauge` by `values` (series that disappeared are removed).
fn set_all<'a>(gauge: &IntGaugeVec, values: impl Iterator<Item = (&'a str, i64)>) {
    gauge.reset();
    for (label, value) in values {
        gauge.with_label_values(&[label]).set(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_the_gauges_of_a_scrape() {
        let metrics = Metrics::new();
        metrics.refused("disk_full");
        metrics.refused("disk_full");
        metrics.metric_points_received(7);
        metrics.assignment(Duration::from_millis(2));
        let mut gauges = StateGauges::default();
        gauges.trials_by_state.insert("queued", 3);
        gauges.queue_by_grid.insert("g1".to_string(), 3);
        let text = metrics.render(&gauges);
        assert!(
            text.contains("prime_refused_calls_total{reason=\"disk_full\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("prime_metric_points_received_total 7"),
            "{text}"
        );
        assert!(text.contains("prime_trials{state=\"queued\"} 3"), "{text}");
        assert!(text.contains("prime_queue_depth{grid=\"g1\"} 3"), "{text}");
        assert!(
            text.contains("prime_assignment_latency_seconds_count 1"),
            "{text}"
        );
        // A grid whose queue emptied disappears at the next scrape.
        let text = metrics.render(&StateGauges::default());
        assert!(!text.contains("prime_queue_depth{"), "{text}");
    }
}
