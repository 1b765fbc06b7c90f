//! What `prime watch` shows of each trial and of the whole grid between epochs: steps per
//! second and time left, measured from successive observations of the progress workers
//! report in their heartbeats, the latest loss and accuracy from the trial's metric stream
//! (read incrementally), and the failure reason of a failed trial.

use prime_core::metrics::MetricRecord;
use prime_proto::pb;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Weight of a new measurement in the smoothed steps-per-second rate.
const RATE_SMOOTHING: f64 = 0.3;

/// A trial's step rate, from the observations at which its step count changed.
#[derive(Debug, Default, Clone)]
pub struct StepRate {
    last: Option<(Instant, u64)>,
    per_second: Option<f64>,
}

impl StepRate {
    /// Notes that the trial stood at `steps` at `at`. Observations without new steps keep
    /// the earlier sample, so the rate spans the whole interval between heartbeats; a step
    /// count that went back (a restart from an earlier checkpoint) starts over.
    pub fn observe(&mut self, at: Instant, steps: u64) {
        match self.last {
            Some((_, before)) if steps == before => return,
            Some((then, before)) if steps > before => {
                let seconds = at.saturating_duration_since(then).as_secs_f64();
                if seconds > 0.0 {
                    let rate = (steps - before) as f64 / seconds;
                    self.per_second = Some(match self.per_second {
                        Some(old) => old + RATE_SMOOTHING * (rate - old),
                        None => rate,
                    });
                }
            }
            _ => self.per_second = None,
        }
        self.last = Some((at, steps));
    }

    /// Steps per second, once two observations told.
    pub fn per_second(&self) -> Option<f64> {
        self.per_second
    }
}

/// The time `remaining` steps take at `per_second`.
pub fn eta(remaining: u64, per_second: f64) -> Option<Duration> {
    (per_second > 0.0 && per_second.is_finite())
        .then(|| Duration::from_secs_f64(remaining as f64 / per_second))
}

/// `1h02m`, `3m05s`, `42s`.
pub fn short_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match (seconds / 3600, seconds % 3600 / 60, seconds % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

/// The latest loss and accuracy of a trial's metric stream, read page by page from where the
/// previous read ended.
#[derive(Debug, Default, Clone)]
pub struct LatestMetrics {
    /// Rows read so far (the offset of the next read).
    pub offset: u64,
    /// The latest loss (a step's `loss`, or an epoch's `train_loss`).
    pub loss: Option<f64>,
    /// The latest accuracy in percent (`acc`, `valid_acc` or `train_acc`).
    pub accuracy: Option<f64>,
}

impl LatestMetrics {
    /// Takes in the next rows of the stream.
    pub fn absorb(&mut self, records: &[MetricRecord]) {
        self.offset += records.len() as u64;
        for record in records {
            if let Some(loss) = record.get("loss").or_else(|| record.get("train_loss")) {
                self.loss = Some(loss);
            }
            let accuracy = ["acc", "valid_acc", "train_acc"]
                .into_iter()
                .find_map(|name| record.get(name));
            if accuracy.is_some() {
                self.accuracy = accuracy;
            }
        }
    }
}

/// The message beside a trial's bar: state and worker, epoch, step rate and time left, the
/// latest loss and accuracy; or the reason of a failed or cancelled trial.
pub fn trial_message(trial: &pb::TrialView, rate: Option<f64>, metrics: &LatestMetrics) -> String {
    if matches!(trial.state.as_str(), "failed" | "cancelled") {
        // The reason names the state itself (`failed: diverged`, `cancelled`).
        return if trial.reason.is_empty() {
            trial.state.clone()
        } else {
            trial.reason.clone()
        };
    }
    let mut parts = vec![if trial.worker.is_empty() {
        trial.state.clone()
    } else {
        format!("{} on {}", trial.state, trial.worker)
    }];
    let progress = trial.progress.unwrap_or_default();
    if progress.epochs_total > 0 && trial.state != "succeeded" {
        parts.push(format!(
            "epoch {}/{}",
            progress.epochs_done.min(progress.epochs_total),
            progress.epochs_total
        ));
    }
    if trial.state == "running" {
        if let Some(rate) = rate {
            parts.push(format!("{rate:.1} steps/s"));
            let remaining = progress.steps_total.saturating_sub(progress.steps_done);
            if let Some(eta) = eta(remaining, rate) {
                parts.push(format!("ETA {}", short_duration(eta)));
            }
        }
    }
    if let Some(loss) = metrics.loss {
        parts.push(format!("loss {loss:.4}"));
    }
    if let Some(accuracy) = metrics.accuracy {
        parts.push(format!("acc {accuracy:.1}%"));
    }
    parts.join("  ")
}

/// What kind of work a trial is, for estimating what it has not reported yet: searches and
/// evaluations of one dataset take alike numbers of steps at alike rates.
fn work_kind(trial: &pb::TrialView) -> (i32, i32) {
    trial
        .spec
        .as_ref()
        .map_or((0, 0), |spec| (spec.kind, spec.dataset))
}

/// Means of a value some trials have, by kind of work and over all trials.
struct KindMeans {
    by_kind: HashMap<(i32, i32), (f64, usize)>,
    all: (f64, usize),
}

impl KindMeans {
    fn new(trials: &[pb::TrialView], values: &[Option<f64>]) -> Self {
        let mut means = KindMeans {
            by_kind: HashMap::new(),
            all: (0.0, 0),
        };
        for (trial, value) in trials.iter().zip(values) {
            if let Some(value) = value {
                let kind = means.by_kind.entry(work_kind(trial)).or_default();
                *kind = (kind.0 + value, kind.1 + 1);
                means.all = (means.all.0 + value, means.all.1 + 1);
            }
        }
        means
    }

    /// The mean over the trials of `kind` that have a value, else over all that have one.
    fn of(&self, kind: (i32, i32)) -> Option<f64> {
        let (sum, count) = self.by_kind.get(&kind).copied().unwrap_or(self.all);
        (count > 0).then(|| sum / count as f64)
    }
}

/// Steps done and steps in all of a grid's trials, and its time left.
///
/// A trial that has not reported its step total yet counts as the mean of the trials of its
/// kind (search or evaluation, and dataset) that have, else of all that have; a trial whose
/// rate is not measured yet (it started a moment ago, or is queued) steps at the mean rate of
/// its kind likewise. The time left is the time every unfinished trial still needs at its
/// rate, shared among the trials running now.
pub fn grid_outlook(
    trials: &[pb::TrialView],
    rates: &[Option<f64>],
) -> (u64, u64, Option<Duration>) {
    let totals: Vec<Option<f64>> = trials
        .iter()
        .map(|trial| {
            trial
                .progress
                .filter(|progress| progress.steps_total > 0)
                .map(|progress| progress.steps_total as f64)
        })
        .collect();
    let (mean_totals, mean_rates) = (
        KindMeans::new(trials, &totals),
        KindMeans::new(trials, rates),
    );
    let mut done = 0;
    let mut total = 0;
    let mut seconds_left = Some(0.0);
    for (trial, rate) in trials.iter().zip(rates) {
        let progress = trial.progress.unwrap_or_default();
        let over = matches!(trial.state.as_str(), "succeeded" | "failed" | "cancelled");
        let kind = work_kind(trial);
        let steps = if progress.steps_total > 0 {
            progress.steps_total
        } else {
            mean_totals.of(kind).map_or(0, |mean| mean as u64)
        };
        let steps_done = if over {
            steps
        } else {
            progress.steps_done.min(steps)
        };
        total += steps;
        done += steps_done;
        if !over && steps > steps_done {
            let rate = rate
                .or_else(|| mean_rates.of(kind))
                .filter(|rate| *rate > 0.0);
            seconds_left = seconds_left
                .zip(rate)
                .map(|(seconds, rate)| seconds + (steps - steps_done) as f64 / rate);
        }
    }
    let running = trials
        .iter()
        .filter(|trial| trial.state == "running")
        .count();
    let eta = seconds_left
        .filter(|_| running > 0)
        .map(|seconds| Duration::from_secs_f64(seconds / running as f64));
    (done, total, eta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prime_core::metrics::MetricKind;

    fn trial(state: &str, done: u64, total: u64) -> pb::TrialView {
        pb::TrialView {
            state: state.into(),
            worker: "w1/0".into(),
            progress: Some(pb::Progress {
                epochs_done: 1,
                epochs_total: 2,
                steps_done: done,
                steps_total: total,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_rate_spans_the_interval_between_changes_and_restarts_after_a_rollback() {
        let start = Instant::now();
        let mut rate = StepRate::default();
        rate.observe(start, 100);
        assert_eq!(rate.per_second(), None);
        rate.observe(start + Duration::from_secs(1), 100);
        rate.observe(start + Duration::from_secs(5), 150);
        assert_eq!(rate.per_second(), Some(10.0));
        rate.observe(start + Duration::from_secs(10), 250);
        assert_eq!(rate.per_second(), Some(10.0 + RATE_SMOOTHING * 10.0));
        rate.observe(start + Duration::from_secs(11), 40);
        assert_eq!(rate.per_second(), None);
    }

    #[test]
    fn durations_and_messages_read_as_a_person_writes_them() {
        assert_eq!(short_duration(Duration::from_secs(42)), "42s");
        assert_eq!(short_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(short_duration(Duration::from_secs(3720)), "1h02m");
        assert_eq!(eta(100, 0.0), None);
        let mut metrics = LatestMetrics::default();
        metrics.absorb(&[
            MetricRecord::new(MetricKind::Step, 0, 10, 0.5).with("loss", 2.0),
            MetricRecord::new(MetricKind::Epoch, 0, 20, 1.0).with("valid_acc", 61.25),
            MetricRecord::new(MetricKind::Step, 1, 30, 1.5).with("loss", 1.5),
        ]);
        assert_eq!(metrics.offset, 3);
        assert_eq!(
            trial_message(&trial("running", 30, 40), Some(2.0), &metrics),
            "running on w1/0  epoch 1/2  2.0 steps/s  ETA 5s  loss 1.5000  acc 61.2%"
        );
        let failed = pb::TrialView {
            reason: "failed: simulated crash at epoch 1".into(),
            ..trial("failed", 30, 40)
        };
        assert_eq!(
            trial_message(&failed, None, &metrics),
            "failed: simulated crash at epoch 1"
        );
    }

    #[test]
    fn the_grid_outlook_counts_unstarted_trials_as_the_mean_of_started_ones() {
        let queued = pb::TrialView {
            state: "queued".into(),
            ..Default::default()
        };
        let trials = [trial("succeeded", 40, 40), trial("running", 10, 20), queued];
        let (done, total, eta) = grid_outlook(&trials, &[None, Some(5.0), None]);
        assert_eq!((done, total), (50, 90));
        assert_eq!(eta, Some(Duration::from_secs(8)));
    }

    #[test]
    fn trials_not_measured_yet_count_as_the_measured_ones_of_their_kind() {
        let of_kind = |kind: pb::TrialKind, trial: pb::TrialView| pb::TrialView {
            spec: Some(pb::TrialSpec {
                kind: kind.into(),
                dataset: pb::Dataset::Cifar10.into(),
                ..Default::default()
            }),
            ..trial
        };
        let search = |trial| of_kind(pb::TrialKind::Search, trial);
        let evaluation = |trial| of_kind(pb::TrialKind::Evaluation, trial);
        let trials = [
            search(trial("running", 50, 100)),
            // Started a moment ago: no rate yet.
            search(trial("running", 0, 100)),
            evaluation(trial("succeeded", 1000, 1000)),
            // Waits for its search: neither steps nor rate yet.
            evaluation(pb::TrialView {
                state: "queued".into(),
                ..Default::default()
            }),
        ];
        let (done, total, eta) = grid_outlook(&trials, &[Some(10.0), None, Some(20.0), None]);
        assert_eq!((done, total), (1050, 2200));
        // 50 steps at 10/s, 100 at the searches' 10/s and 1000 at the evaluations' 20/s:
        // 65 s of work, shared by the two trials running.
        assert_eq!(eta, Some(Duration::from_secs_f64(32.5)));
        // Nothing measured yet: no estimate rather than a wrong one.
        assert_eq!(grid_outlook(&trials, &[None; 4]).2, None);
    }
}
