//! Metric records: what a training run reports, one JSON line each.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Granularity of a metric record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// One weight step (one training minibatch).
    Step,
    /// One architecture (alpha) step.
    AlphaStep,
    /// The end of an epoch.
    Epoch,
    /// The end of the run.
    Final,
}

/// One metric record: where in training it was taken and named scalar values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRecord {
    /// Granularity.
    pub kind: MetricKind,
    /// 0-based epoch the record belongs to.
    pub epoch: u32,
    /// Global 0-based weight-step counter at the time of the record.
    pub step: u64,
    /// Fractional epochs elapsed (the reference code's `clock`).
    pub clock: f64,
    /// Named values, for example `loss`, `acc`, `lr`.
    pub values: BTreeMap<String, f64>,
}

impl MetricRecord {
    /// A record without values.
    pub fn new(kind: MetricKind, epoch: u32, step: u64, clock: f64) -> Self {
        Self {
            kind,
            epoch,
            step,
            clock,
            values: BTreeMap::new(),
        }
    }

    /// Adds a value, builder style.
    pub fn with(mut self, name: &str, value: f64) -> Self {
        self.values.insert(name.to_string(), value);
        self
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let record = MetricRecord::new(MetricKind::Epoch, 3, 120, 4.0)
            .with("valid_acc", 51.5)
            .with("lr", 0.02);
        let line = serde_json::to_string(&record).unwrap();
        assert!(line.contains("\"kind\":\"epoch\""));
        let back: MetricRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(back, record);
        assert_eq!(back.get("valid_acc"), Some(51.5));
        assert_eq!(back.get("missing"), None);
    }
}
