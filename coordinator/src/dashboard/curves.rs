//! A trial's stored metric rows as the dashboard's curves: one curve per value name and record
//! kind (`loss` of every step, `acc` of every epoch, `fimt` of every alpha step, ...), each
//! thinned to a bounded number of points.

use crate::db::MetricRow;
use crate::metric_rows::decode_values;
use serde::Serialize;
use std::collections::BTreeMap;

/// Points per curve at most; longer curves keep every n-th point and their last one.
pub const MAX_POINTS_PER_CURVE: usize = 400;
/// Curves per trial at most (a trainer reports a handful of value names).
pub const MAX_CURVES: usize = 32;

/// Value names drawn first, in this order (the paper's curves); others follow by name.
const PREFERRED_ORDER: [&str; 7] = ["loss", "acc", "lr", "fimt", "ewma", "threshold", "ppl"];
/// Value names that span decades and are drawn on a log axis (Figure 3).
const LOG_SCALE: [&str; 3] = ["fimt", "ewma", "threshold"];

/// One curve: `(clock, value)` points in clock order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Curve {
    /// The value's name, for example `loss`.
    pub name: String,
    /// The record kind it comes from (`step`, `epoch`, `alpha_step`, `final`).
    pub kind: String,
    /// Whether the dashboard draws it on a log axis.
    pub log_scale: bool,
    /// How many records carried the value before thinning.
    pub records: usize,
    /// `[clock in epochs, value]` pairs.
    pub points: Vec<[f64; 2]>,
}

fn rank(name: &str) -> usize {
    PREFERRED_ORDER
        .iter()
        .position(|preferred| *preferred == name)
        .unwrap_or(PREFERRED_ORDER.len())
}

/// The record kind of a run's final results: one record, not a curve (the trial's result
/// shows it).
const FINAL_KIND: &str = "final";

/// The curves of `rows`; values that are not finite are left out (a log axis and a linear
/// one cannot place them), and so are the final results.
pub fn curves(rows: &[MetricRow]) -> Vec<Curve> {
    let mut series: BTreeMap<(usize, String, String), Vec<[f64; 2]>> = BTreeMap::new();
    for row in rows.iter().filter(|row| row.kind != FINAL_KIND) {
        for (name, value) in decode_values(&row.values_json) {
            if !value.is_finite() || !row.clock.is_finite() {
                continue;
            }
            series
                .entry((rank(&name), name, row.kind.clone()))
                .or_default()
                .push([row.clock, value]);
        }
    }
    series
        .into_iter()
        .take(MAX_CURVES)
        .map(|((_, name, kind), points)| Curve {
            log_scale: LOG_SCALE.contains(&name.as_str()),
            records: points.len(),
            points: thin(points),
            name,
            kind,
        })
        .collect()
}

/// Keeps every n-th point so that at most [`MAX_POINTS_PER_CURVE`] remain, and the last one.
fn thin(points: Vec<[f64; 2]>) -> Vec<[f64; 2]> {
    if points.len() <= MAX_POINTS_PER_CURVE {
        return points;
    }
    let stride = points.len().div_ceil(MAX_POINTS_PER_CURVE - 1);
    let last = points[points.len() - 1];
    let mut kept: Vec<[f64; 2]> = points.into_iter().step_by(stride).collect();
    if kept.last() != Some(&last) {
        kept.push(last);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, step: u64, values: &str) -> MetricRow {
        MetricRow {
            kind: kind.to_string(),
            step,
            epoch: 0,
            clock: step as f64 / 10.0,
            values_json: values.to_string(),
        }
    }

    #[test]
    fn values_become_curves_by_name_and_kind_in_the_papers_order() {
        let rows = vec![
            row("step", 1, r#"{"loss": 2.0, "lr": 0.025, "zeta": 1.0}"#),
            row("step", 2, r#"{"loss": 1.5, "lr": 0.024}"#),
            row("alpha_step", 2, r#"{"fimt": 0.5, "threshold": "NaN"}"#),
            row("epoch", 2, r#"{"acc": 0.4, "loss": 1.4}"#),
            row("final", 2, r#"{"checksum": 7.0}"#),
        ];
        let curves = curves(&rows);
        let names: Vec<(&str, &str, usize)> = curves
            .iter()
            .map(|curve| (curve.name.as_str(), curve.kind.as_str(), curve.points.len()))
            .collect();
        assert_eq!(
            names,
            [
                ("loss", "epoch", 1),
                ("loss", "step", 2),
                ("acc", "epoch", 1),
                ("lr", "step", 2),
                ("fimt", "alpha_step", 1),
                ("zeta", "step", 1),
            ]
        );
        assert_eq!(curves[1].points, [[0.1, 2.0], [0.2, 1.5]]);
        assert!(curves[4].log_scale && !curves[1].log_scale);
    }

    #[test]
    fn long_curves_are_thinned_and_keep_their_last_point() {
        let rows: Vec<MetricRow> = (0..1001)
            .map(|step| row("step", step, &format!(r#"{{"loss": {step}}}"#)))
            .collect();
        let curve = &curves(&rows)[0];
        assert_eq!(curve.records, 1001);
        assert!(curve.points.len() <= MAX_POINTS_PER_CURVE);
        assert_eq!(curve.points.first(), Some(&[0.0, 0.0]));
        assert_eq!(curve.points.last(), Some(&[100.0, 1000.0]));
    }
}
