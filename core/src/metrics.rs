//! Metric records: what a training run reports, one JSON line each, and the limits a record
//! and a batch of records must keep to be stored by the coordinator.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Largest step a record may carry: the coordinator's database stores steps as signed
/// 64-bit integers.
pub const MAX_STEP: u64 = i64::MAX as u64;

/// Longest metric name, in bytes (ours are at most about 20).
pub const MAX_NAME_BYTES: usize = 128;

/// Most values in one record (ours carry at most about a dozen).
pub const MAX_VALUES_PER_RECORD: usize = 256;

/// Most records in one batch sent to the coordinator (workers send 512 by default).
pub const MAX_RECORDS_PER_BATCH: usize = 10_000;

/// Most log lines in one batch sent to the coordinator.
pub const MAX_LOG_LINES_PER_BATCH: usize = 1_000;

/// Longest log line of a batch, in bytes.
pub const MAX_LOG_LINE_BYTES: usize = 16 * 1024;

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
    /// Whether the record is of one step, one epoch, or the final result.
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

    /// Checks that the record can be stored and read back: a finite clock >= 0, a step up to
    /// `MAX_STEP`, at most `MAX_VALUES_PER_RECORD` values named by 1 to `MAX_NAME_BYTES`
    /// bytes. Values may be NaN or infinite: a diverging loss is worth keeping.
    pub fn check(&self) -> Result<(), String> {
        if !(self.clock.is_finite() && self.clock >= 0.0) {
            return Err(format!(
                "clock is {}; expected a finite number >= 0",
                self.clock
            ));
        }
        if self.step > MAX_STEP {
            return Err(format!("step {} is above {MAX_STEP}", self.step));
        }
        if self.values.len() > MAX_VALUES_PER_RECORD {
            return Err(format!(
                "{} values; a record holds at most {MAX_VALUES_PER_RECORD}",
                self.values.len()
            ));
        }
        match self
            .values
            .keys()
            .find(|name| name.is_empty() || name.len() > MAX_NAME_BYTES)
        {
            Some(name) => Err(format!(
                "a value name has {} bytes; expected 1 to {MAX_NAME_BYTES}",
                name.len()
            )),
            None => Ok(()),
        }
    }
}

/// Checks a log line sent with a metric batch.
pub fn check_log_line(line: &str) -> Result<(), String> {
    if line.len() > MAX_LOG_LINE_BYTES {
        return Err(format!(
            "a log line has {} bytes; expected at most {MAX_LOG_LINE_BYTES}",
            line.len()
        ));
    }
    Ok(())
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

    #[test]
    fn a_record_the_coordinator_cannot_store_is_named() {
        let good = MetricRecord::new(MetricKind::Step, 0, 7, 0.5)
            .with("loss", f64::NAN)
            .with("acc", f64::INFINITY);
        assert_eq!(good.check(), Ok(()));
        let nan_clock = MetricRecord::new(MetricKind::Step, 0, 7, f64::NAN);
        assert!(nan_clock.check().unwrap_err().contains("clock is NaN"));
        let negative_clock = MetricRecord::new(MetricKind::Step, 0, 7, -1.0);
        assert!(negative_clock.check().is_err());
        let huge_step = MetricRecord::new(MetricKind::Step, 0, 1 << 63, 0.0);
        assert!(huge_step
            .check()
            .unwrap_err()
            .contains("step 9223372036854775808"));
        let top_step = MetricRecord::new(MetricKind::Step, 0, MAX_STEP, 0.0);
        assert_eq!(top_step.check(), Ok(()));
        let unnamed = MetricRecord::new(MetricKind::Epoch, 0, 0, 0.0).with("", 1.0);
        assert!(unnamed.check().unwrap_err().contains("0 bytes"));
        let long_name = "x".repeat(MAX_NAME_BYTES + 1);
        let long = MetricRecord::new(MetricKind::Epoch, 0, 0, 0.0).with(&long_name, 1.0);
        assert!(long.check().is_err());
        let mut crowded = MetricRecord::new(MetricKind::Epoch, 0, 0, 0.0);
        for index in 0..=MAX_VALUES_PER_RECORD {
            crowded = crowded.with(&format!("v{index}"), 1.0);
        }
        assert!(crowded.check().unwrap_err().contains("257 values"));
        assert!(check_log_line("started").is_ok());
        assert!(check_log_line(&"y".repeat(MAX_LOG_LINE_BYTES + 1)).is_err());
    }
}
