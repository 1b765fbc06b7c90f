//! Conversions between wire messages and `prime-core` types.

use crate::pb;
use prime_core::metrics::{MetricKind, MetricRecord};
use prime_core::observer::Progress;

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
}
