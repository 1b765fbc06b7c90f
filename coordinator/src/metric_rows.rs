//! Metric batches on arrival: each one is checked on its own before it joins a group commit,
//! so a malformed batch is refused alone (with what is wrong) and never fails the commit of
//! other trials' batches. Values are stored as JSON in which NaN and infinities are the
//! strings `"NaN"`, `"inf"` and `"-inf"` (plain JSON has no such numbers), so they read back.

use crate::db::MetricRow;
use crate::error::CoordinatorError;
use prime_core::metrics::{
    check_log_line, MetricRecord, MAX_LOG_LINES_PER_BATCH, MAX_RECORDS_PER_BATCH,
};
use prime_proto::pb;
use serde_json::{Map, Number, Value};
use std::collections::BTreeMap;

/// The rows of a worker's metric batch, or why the batch is refused.
pub(crate) fn rows_of(batch: &pb::MetricBatch) -> Result<Vec<MetricRow>, CoordinatorError> {
    let refuse = |message: String| {
        CoordinatorError::Invalid(format!(
            "metric batch of trial {} refused: {message}",
            batch.trial_id
        ))
    };
    if batch.metrics.len() > MAX_RECORDS_PER_BATCH {
        return Err(refuse(format!(
            "{} records; a batch holds at most {MAX_RECORDS_PER_BATCH}",
            batch.metrics.len()
        )));
    }
    if batch.logs.len() > MAX_LOG_LINES_PER_BATCH {
        return Err(refuse(format!(
            "{} log lines; a batch holds at most {MAX_LOG_LINES_PER_BATCH}",
            batch.logs.len()
        )));
    }
    for (index, line) in batch.logs.iter().enumerate() {
        check_log_line(line).map_err(|message| refuse(format!("log line {index}: {message}")))?;
    }
    batch
        .metrics
        .iter()
        .enumerate()
        .map(|(index, metric)| {
            let record = MetricRecord::try_from(metric.clone())
                .map_err(|error| refuse(format!("record {index}: {error}")))?;
            record.check().map_err(|message| {
                refuse(format!(
                    "record {index} ({} at step {}): {message}",
                    metric.kind, metric.step
                ))
            })?;
            Ok(MetricRow {
                values_json: encode_values(&record.values),
                kind: metric.kind.clone(),
                step: record.step,
                epoch: record.epoch,
                clock: record.clock,
            })
        })
        .collect()
}

/// Values as a JSON object; NaN and infinities as strings.
pub(crate) fn encode_values(values: &BTreeMap<String, f64>) -> String {
    let object: Map<String, Value> = values
        .iter()
        .map(|(name, value)| {
            let encoded = match Number::from_f64(*value) {
                Some(number) => Value::Number(number),
                None if value.is_nan() => Value::String("NaN".into()),
                None if *value > 0.0 => Value::String("inf".into()),
                None => Value::String("-inf".into()),
            };
            (name.clone(), encoded)
        })
        .collect();
    Value::Object(object).to_string()
}

/// Stored values; `null` (how NaN and infinities were stored before they had a spelling)
/// reads as NaN, and any other unreadable value is left out, never the whole point.
pub(crate) fn decode_values(json: &str) -> BTreeMap<String, f64> {
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(json) else {
        return BTreeMap::new();
    };
    object
        .into_iter()
        .filter_map(|(name, value)| {
            let decoded = match value {
                Value::Number(number) => number.as_f64(),
                Value::Null => Some(f64::NAN),
                Value::String(text) => match text.as_str() {
                    "NaN" => Some(f64::NAN),
                    "inf" => Some(f64::INFINITY),
                    "-inf" => Some(f64::NEG_INFINITY),
                    _ => None,
                },
                _ => None,
            };
            decoded.map(|value| (name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(step: u64, clock: f64, values: &[(&str, f64)]) -> pb::Metric {
        pb::Metric {
            kind: "step".into(),
            epoch: 0,
            step,
            clock,
            values: values
                .iter()
                .map(|(name, value)| (name.to_string(), *value))
                .collect(),
        }
    }

    fn batch(metrics: Vec<pb::Metric>) -> pb::MetricBatch {
        pb::MetricBatch {
            trial_id: 9,
            epoch: 1,
            metrics,
            logs: vec!["started".into()],
        }
    }

    fn refusal(metrics: Vec<pb::Metric>) -> String {
        let error = rows_of(&batch(metrics)).unwrap_err();
        assert!(matches!(error, CoordinatorError::Invalid(_)), "{error}");
        error.to_string()
    }

    #[test]
    fn a_batch_is_checked_record_by_record_and_names_the_problem() {
        let rows = rows_of(&batch(vec![metric(3, 0.25, &[("loss", 1.5)])])).unwrap();
        assert_eq!((rows[0].step, rows[0].clock), (3, 0.25));
        let error = refusal(vec![
            metric(1, 0.0, &[("loss", 1.0)]),
            metric(2, f64::NAN, &[("loss", 1.0)]),
        ]);
        assert!(
            error.contains("trial 9 refused: record 1 (step at step 2): clock is NaN"),
            "{error}"
        );
        let error = refusal(vec![metric(1 << 63, 0.0, &[("loss", 1.0)])]);
        assert!(
            error.contains("step 9223372036854775808 is above"),
            "{error}"
        );
        let error = refusal(vec![metric(1, f64::INFINITY, &[])]);
        assert!(error.contains("clock is inf"), "{error}");
        let error = refusal(vec![metric(1, 0.0, &[("", 1.0)])]);
        assert!(error.contains("value name has 0 bytes"), "{error}");
        let mut unknown_kind = metric(1, 0.0, &[]);
        unknown_kind.kind = "weekly".into();
        let error = refusal(vec![unknown_kind]);
        assert!(error.contains("unknown metric kind `weekly`"), "{error}");
        let error = refusal(
            (0..=MAX_RECORDS_PER_BATCH as u64)
                .map(|s| metric(s, 0.0, &[]))
                .collect(),
        );
        assert!(error.contains("10001 records"), "{error}");
        let mut long_log = batch(Vec::new());
        long_log.logs = vec!["z".repeat(prime_core::metrics::MAX_LOG_LINE_BYTES + 1)];
        assert!(rows_of(&long_log)
            .unwrap_err()
            .to_string()
            .contains("log line 0"));
    }

    #[test]
    fn non_finite_values_are_spelled_out_and_read_back_with_their_neighbours() {
        let values: BTreeMap<String, f64> = [
            ("acc", 51.5),
            ("loss", f64::NAN),
            ("grad", f64::INFINITY),
            ("low", f64::NEG_INFINITY),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
        let json = encode_values(&values);
        assert_eq!(
            json,
            r#"{"acc":51.5,"grad":"inf","loss":"NaN","low":"-inf"}"#
        );
        let back = decode_values(&json);
        assert_eq!(back["acc"], 51.5);
        assert!(back["loss"].is_nan());
        assert_eq!(
            (back["grad"], back["low"]),
            (f64::INFINITY, f64::NEG_INFINITY)
        );
        // Rows stored before: non-finite values became null and the point was unreadable.
        let legacy = decode_values(r#"{"acc":51.5,"loss":null,"odd":[1]}"#);
        assert_eq!(legacy.len(), 2);
        assert_eq!(legacy["acc"], 51.5);
        assert!(legacy["loss"].is_nan());
    }
}
