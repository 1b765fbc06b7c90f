//! Conversions between wire messages and `prime-core` types: `From<&core> for pb::X` where
//! every core value has a wire form, `TryFrom<pb::X> for core` with a `ConvertError` naming
//! the offending field where a message can be malformed. This module holds metrics and
//! progress; `trial` holds trial specs and results.

use crate::pb;
use prime_core::metrics::{
    check_log_line, MetricKind, MetricRecord, MAX_LOG_LINES_PER_BATCH, MAX_RECORDS_PER_BATCH,
};
use prime_core::observer::Progress;

mod gpu;
mod trial;

pub use gpu::{gpus_from_wire, hardware_from_wire};

/// A wire message that does not describe a valid core value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {message}")]
pub struct ConvertError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// Name of a metric kind on the wire.
pub fn metric_kind_name(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Step => "step",
        MetricKind::AlphaStep => "alpha_step",
        MetricKind::Epoch => "epoch",
        MetricKind::Final => "final",
    }
}

/// Parses a metric kind name of the wire.
pub fn parse_metric_kind(name: &str) -> Result<MetricKind, ConvertError> {
    match name {
        "step" => Ok(MetricKind::Step),
        "alpha_step" => Ok(MetricKind::AlphaStep),
        "epoch" => Ok(MetricKind::Epoch),
        "final" => Ok(MetricKind::Final),
        other => Err(ConvertError {
            field: "metric.kind",
            message: format!("unknown metric kind `{other}`"),
        }),
    }
}

impl From<&MetricRecord> for pb::Metric {
    fn from(record: &MetricRecord) -> Self {
        pb::Metric {
            kind: metric_kind_name(record.kind).to_string(),
            epoch: record.epoch,
            step: record.step,
            clock: record.clock,
            values: record.values.clone().into_iter().collect(),
        }
    }
}

impl TryFrom<pb::Metric> for MetricRecord {
    type Error = ConvertError;

    fn try_from(metric: pb::Metric) -> Result<Self, Self::Error> {
        Ok(MetricRecord {
            kind: parse_metric_kind(&metric.kind)?,
            epoch: metric.epoch,
            step: metric.step,
            clock: metric.clock,
            values: metric.values.into_iter().collect(),
        })
    }
}

/// The part of `batch` a coordinator stores, and a description of each thing left out: a
/// record with an unknown kind or failing `MetricRecord::check`, an over-long log line, and
/// records or lines beyond the batch limits.
pub fn storable_part(batch: &pb::MetricBatch) -> (pb::MetricBatch, Vec<String>) {
    let mut dropped = Vec::new();
    let mut metrics = Vec::new();
    for metric in &batch.metrics {
        let checked = MetricRecord::try_from(metric.clone())
            .map_err(|error| error.to_string())
            .and_then(|record| record.check());
        match checked {
            Ok(()) if metrics.len() < MAX_RECORDS_PER_BATCH => metrics.push(metric.clone()),
            Ok(()) => dropped.push(format!(
                "{} record at step {}: beyond {MAX_RECORDS_PER_BATCH} records",
                metric.kind, metric.step
            )),
            Err(reason) => dropped.push(format!(
                "{} record at step {}: {reason}",
                metric.kind, metric.step
            )),
        }
    }
    let mut logs = Vec::new();
    for line in &batch.logs {
        match check_log_line(line) {
            Ok(()) if logs.len() < MAX_LOG_LINES_PER_BATCH => logs.push(line.clone()),
            Ok(()) => dropped.push(format!("log line beyond {MAX_LOG_LINES_PER_BATCH} lines")),
            Err(reason) => dropped.push(reason),
        }
    }
    let storable = pb::MetricBatch {
        trial_id: batch.trial_id,
        epoch: batch.epoch,
        metrics,
        logs,
    };
    (storable, dropped)
}

impl From<&Progress> for pb::Progress {
    fn from(progress: &Progress) -> Self {
        pb::Progress {
            epochs_done: progress.epochs_done,
            epochs_total: progress.epochs_total,
            steps_done: progress.steps_done,
            steps_total: progress.steps_total,
        }
    }
}

impl From<&pb::Progress> for Progress {
    fn from(progress: &pb::Progress) -> Self {
        Progress {
            epochs_done: progress.epochs_done,
            epochs_total: progress.epochs_total,
            steps_done: progress.steps_done,
            steps_total: progress.steps_total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_round_trip() {
        let record = MetricRecord::new(MetricKind::AlphaStep, 2, 77, 2.5).with("loss", 1.25);
        let wire = pb::Metric::from(&record);
        assert_eq!(wire.kind, "alpha_step");
        assert_eq!(MetricRecord::try_from(wire).unwrap(), record);
        let bad = pb::Metric {
            kind: "bogus".into(),
            ..Default::default()
        };
        assert_eq!(
            MetricRecord::try_from(bad).unwrap_err().field,
            "metric.kind"
        );
    }

    #[test]
    fn the_storable_part_of_a_batch_leaves_out_only_the_bad_records() {
        let good = MetricRecord::new(MetricKind::Step, 0, 1, 0.1).with("loss", f64::NAN);
        let nan_clock = MetricRecord::new(MetricKind::Step, 0, 2, f64::NAN).with("loss", 1.0);
        let huge_step = MetricRecord::new(MetricKind::Step, 0, 1 << 63, 0.2);
        let batch = pb::MetricBatch {
            trial_id: 4,
            epoch: 2,
            metrics: [&good, &nan_clock, &huge_step]
                .map(pb::Metric::from)
                .to_vec(),
            logs: vec![
                "started".into(),
                "x".repeat(prime_core::metrics::MAX_LOG_LINE_BYTES + 1),
            ],
        };
        let (storable, dropped) = storable_part(&batch);
        assert_eq!((storable.trial_id, storable.epoch), (4, 2));
        assert_eq!(storable.metrics.len(), 1);
        assert_eq!(storable.metrics[0].step, 1);
        assert_eq!(storable.logs, ["started"]);
        assert_eq!(dropped.len(), 3, "{dropped:?}");
        assert!(dropped[0].contains("step 2: clock is NaN"), "{dropped:?}");
        assert!(dropped[1].contains("above"), "{dropped:?}");
        let (again, none) = storable_part(&storable);
        assert_eq!(
            (again.metrics.len(), again.logs.len(), none.len()),
            (1, 1, 0)
        );
    }
}
