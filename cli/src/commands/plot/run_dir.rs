//! Reading a search run directory into plottable series: the activated-alpha history of
//! `alphas.jsonl` and the FIMT schedule of `metrics.jsonl`.

use anyhow::{bail, Context};
use prime_core::config::{LayeredConfig, SearchConfig};
use prime_core::metrics::{MetricKind, MetricRecord};
use prime_core::primitives::{Activation, CnnOp};
use serde::Deserialize;
use std::io::BufRead;
use std::path::Path;

/// The resolved configuration of a run.
pub const CONFIG_FILE: &str = "config.toml";
/// Metric records, one JSON object per line.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Activated alpha after every weight step, one JSON object per line.
pub const ALPHAS_FILE: &str = "alphas.jsonl";

/// The most intermediate nodes per cell the alpha figures draw (one row of panels each).
pub const MAX_STEPS: usize = 12;

/// The message of `plot schedule` on a run that has no FIMT values (every search records
/// them, whatever its schedule).
pub const NOT_FIMT: &str =
    "no fimt values in metrics.jsonl; the schedule figure needs the metrics of a search";

/// Reads `config.toml` of a run directory; `None` when the file does not exist.
pub fn read_config(dir: &Path) -> anyhow::Result<Option<SearchConfig>> {
    let path = dir.join(CONFIG_FILE);
    if !path.exists() {
        return Ok(None);
    }
    SearchConfig::load(&path, &[])
        .map(Some)
        .map_err(anyhow::Error::from)
}

/// One cell type's alpha history: `values[edge][op][t]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CellHistory {
    /// Activated alpha per edge row, per op column, per recorded step.
    pub values: Vec<Vec<Vec<f32>>>,
}

impl CellHistory {
    fn new(edges: usize, ops: usize) -> Self {
        Self {
            values: vec![vec![Vec::new(); ops]; edges],
        }
    }

    fn push(&mut self, rows: &[Vec<f32>]) {
        for (edge, row) in self.values.iter_mut().zip(rows) {
            for (series, value) in edge.iter_mut().zip(row) {
                series.push(*value);
            }
        }
    }
}

/// The activated alpha of both cell types over training.
#[derive(Debug, Clone, PartialEq)]
pub struct AlphaHistory {
    /// The activation, from `config.toml` (or from the column count without one).
    pub activation: Activation,
    /// The op of every alpha column.
    pub ops: &'static [CnnOp],
    /// Intermediate nodes per cell.
    pub steps: usize,
    /// Fractional epochs of every recorded line.
    pub clock: Vec<f64>,
    /// Normal cells.
    pub normal: CellHistory,
    /// Reduction cells.
    pub reduce: CellHistory,
}

#[derive(Debug, Deserialize)]
struct AlphaLine {
    clock: f64,
    normal: Vec<Vec<f32>>,
    reduce: Vec<Vec<f32>>,
}

/// The number of intermediate nodes of a cell with `rows` edges (node i has i + 2 inputs).
pub fn steps_for_rows(rows: usize) -> Option<usize> {
    let mut steps = 0;
    let mut edges = 0;
    while edges < rows {
        edges += steps + 2;
        steps += 1;
    }
    (edges == rows && steps > 0).then_some(steps)
}

/// The edge row of the edge from `source` into intermediate node `node`.
pub fn edge_row(node: usize, source: usize) -> usize {
    node * (node + 3) / 2 + source
}

/// Calls `parse` on every non-blank line of `path` (`what` names the file in errors); errors
/// name the file and the line. A last line without its newline that does not parse is a record
/// still being written by a live run and is left out.
fn for_each_line(
    path: &Path,
    what: &str,
    mut parse: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let mut line = String::new();
    let mut number = 0;
    loop {
        line.clear();
        number += 1;
        let where_ = || format!("{}: line {number}", path.display());
        if reader.read_line(&mut line).with_context(where_)? == 0 {
            return Ok(());
        }
        let complete = line.ends_with('\n');
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        match parse(text) {
            Ok(()) => {}
            Err(_) if !complete => return Ok(()),
            Err(error) => return Err(error.context(where_())),
        }
    }
}

/// Reads `alphas.jsonl`; the activation comes from `config.toml` when the run has one.
pub fn read_alpha_history(dir: &Path) -> anyhow::Result<AlphaHistory> {
    let configured = read_config(dir)?.map(|config| config.arch.activation);
    let path = dir.join(ALPHAS_FILE);
    let mut history: Option<AlphaHistory> = None;
    for_each_line(&path, "the alpha history", |line| {
        let record: AlphaLine = serde_json::from_str(line)
            .context("expected {\"step\", \"clock\", \"normal\": [[...]], \"reduce\": [[...]]}")?;
        if !record.clock.is_finite() {
            bail!("`clock` is not a finite number");
        }
        let history = match &mut history {
            Some(history) => history,
            None => history.insert(start_history(&record, configured)?),
        };
        for (key, rows) in [("normal", &record.normal), ("reduce", &record.reduce)] {
            check_rows(key, rows, history.normal.values.len(), history.ops.len())?;
        }
        history.clock.push(record.clock);
        history.normal.push(&record.normal);
        history.reduce.push(&record.reduce);
        Ok(())
    })?;
    history.with_context(|| format!("{}: no alpha records", path.display()))
}

fn start_history(
    first: &AlphaLine,
    configured: Option<Activation>,
) -> anyhow::Result<AlphaHistory> {
    let rows = first.normal.len();
    let Some(steps) = steps_for_rows(rows) else {
        bail!("`normal` has {rows} rows, which is no cell's edge count (14 for 4 nodes)");
    };
    if steps > MAX_STEPS {
        bail!("cells of {steps} nodes are too large to draw (at most {MAX_STEPS})");
    }
    let columns = first.normal.first().map_or(0, Vec::len);
    let activation = match configured {
        Some(activation) => activation,
        None => [Activation::Softmax, Activation::Crb]
            .into_iter()
            .find(|activation| activation.primitives().len() == columns)
            .with_context(|| {
                format!("rows have {columns} values: neither softmax (8) nor crb (7) ops")
            })?,
    };
    Ok(AlphaHistory {
        activation,
        ops: activation.primitives(),
        steps,
        clock: Vec::new(),
        normal: CellHistory::new(rows, activation.primitives().len()),
        reduce: CellHistory::new(rows, activation.primitives().len()),
    })
}

fn check_rows(key: &str, rows: &[Vec<f32>], edges: usize, ops: usize) -> anyhow::Result<()> {
    if rows.len() != edges {
        bail!("`{key}` has {} rows, expected {edges}", rows.len());
    }
    for (edge, row) in rows.iter().enumerate() {
        if row.len() != ops {
            bail!(
                "`{key}` row {edge} has {} values, expected {ops} (one per op)",
                row.len()
            );
        }
        if let Some(op) = row.iter().position(|value| !value.is_finite()) {
            bail!("`{key}` row {edge}, op {op} is not a finite number");
        }
    }
    Ok(())
}

/// Points `(clock, value)` of one series.
pub type Series = Vec<(f64, f64)>;

/// The FIMT schedule of a run, from its step records.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FimtHistory {
    /// FIMT of every weight step.
    pub fimt: Series,
    /// Its EWMA after every weight step.
    pub ewma: Series,
    /// The threshold h in force at every decision.
    pub threshold: Series,
    /// `(clock, epoch)` of every alpha step.
    pub alpha_steps: Vec<(f64, u32)>,
}

impl FimtHistory {
    /// The clock of the last step record.
    pub fn last_clock(&self) -> f64 {
        [&self.fimt, &self.ewma, &self.threshold]
            .iter()
            .filter_map(|series| series.last().map(|point| point.0))
            .fold(0.0, f64::max)
    }
}

/// Reads the FIMT, its EWMA, the threshold and the alpha steps from `metrics.jsonl`; fails
/// with [`NOT_FIMT`] when the run has no FIMT values.
pub fn read_fimt_history(dir: &Path) -> anyhow::Result<FimtHistory> {
    let path = dir.join(METRICS_FILE);
    let mut history = FimtHistory::default();
    for_each_line(&path, "the metrics", |line| {
        let record: MetricRecord = serde_json::from_str(line).context("not a metric record")?;
        if record.kind != MetricKind::Step {
            return Ok(());
        }
        let clock = record.clock;
        for (name, series) in [
            ("fimt", &mut history.fimt),
            ("fimt_ewma", &mut history.ewma),
            ("threshold", &mut history.threshold),
        ] {
            if let Some(value) = record.get(name) {
                series.push((clock, value));
            }
        }
        if record.get("alpha_step").is_some_and(|flag| flag != 0.0) {
            history.alpha_steps.push((clock, record.epoch));
        }
        Ok(())
    })?;
    if history.fimt.is_empty() {
        bail!("{}: {NOT_FIMT}", dir.display());
    }
    Ok(history)
}

/// At most about `max_points` points of a series: the minimum and the maximum of each run of
/// consecutive points, in their order, so spikes survive.
pub fn decimate(points: &[(f64, f64)], max_points: usize) -> Series {
    let buckets = (max_points / 2).max(1);
    if points.len() <= max_points.max(2) {
        return points.to_vec();
    }
    let size = points.len().div_ceil(buckets);
    let mut kept = Vec::with_capacity(2 * buckets + 1);
    for chunk in points.chunks(size) {
        let lowest = chunk
            .iter()
            .enumerate()
            .min_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
            .map_or(0, |(index, _)| index);
        let highest = chunk
            .iter()
            .enumerate()
            .max_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
            .map_or(0, |(index, _)| index);
        let (first, second) = (lowest.min(highest), lowest.max(highest));
        kept.push(chunk[first]);
        if second != first {
            kept.push(chunk[second]);
        }
    }
    if let (Some(last), Some(end)) = (points.last(), kept.last()) {
        if last != end {
            kept.push(*last);
        }
    }
    kept
}

/// One run of consecutive points reduced to its mean clock, the geometric mean of its values
/// and their range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Mean clock.
    pub clock: f64,
    /// Geometric mean of the (positive) values.
    pub mean: f64,
    /// Smallest value.
    pub low: f64,
    /// Largest value.
    pub high: f64,
}

/// Summarises runs of `size` consecutive points of a positive series (for log axes).
pub fn summarise(points: &[(f64, f64)], size: usize) -> Vec<Bucket> {
    points
        .chunks(size.max(1))
        .map(|chunk| {
            let count = chunk.len() as f64;
            let clock = chunk.iter().map(|point| point.0).sum::<f64>() / count;
            let log_sum: f64 = chunk.iter().map(|point| point.1.ln()).sum();
            let (low, high) = chunk
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), point| {
                    (low.min(point.1), high.max(point.1))
                });
            Bucket {
                clock,
                mean: (log_sum / count).exp(),
                low,
                high,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_rows_follow_the_cell_layout() {
        assert_eq!(steps_for_rows(14), Some(4));
        assert_eq!(steps_for_rows(2), Some(1));
        assert_eq!(steps_for_rows(5), Some(2));
        assert_eq!(steps_for_rows(13), None);
        assert_eq!(steps_for_rows(0), None);
        assert_eq!(edge_row(0, 0), 0);
        assert_eq!(edge_row(1, 0), 2);
        assert_eq!(edge_row(2, 3), 8);
        assert_eq!(edge_row(3, 4), 13);
    }

    #[test]
    fn decimation_keeps_extremes_and_ends() {
        let points: Series = (0..1000)
            .map(|i| (f64::from(i), if i == 500 { 99.0 } else { 0.0 }))
            .collect();
        let kept = decimate(&points, 100);
        assert!(kept.len() <= 102);
        assert!(kept.contains(&(500.0, 99.0)));
        assert_eq!(kept.first(), Some(&(0.0, 0.0)));
        assert_eq!(kept.last(), Some(&(999.0, 0.0)));
        assert!(kept.windows(2).all(|pair| pair[0].0 < pair[1].0));
        assert_eq!(decimate(&points[..10], 100).len(), 10);
    }

    #[test]
    fn buckets_hold_geometric_means_and_ranges() {
        let points = [(0.0, 1.0), (1.0, 100.0), (2.0, 10.0)];
        let buckets = summarise(&points, 2);
        assert_eq!(buckets.len(), 2);
        assert_eq!(buckets[0].clock, 0.5);
        assert!((buckets[0].mean - 10.0).abs() < 1e-9);
        assert_eq!((buckets[0].low, buckets[0].high), (1.0, 100.0));
        assert!((buckets[1].mean - 10.0).abs() < 1e-9);
    }

    #[test]
    fn a_partial_last_line_of_a_live_run_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let step = r#"{"kind":"step","epoch":0,"step":1,"clock":0.5,"values":{"fimt":2.0}}"#;
        let metrics = dir.path().join(METRICS_FILE);
        std::fs::write(&metrics, format!("{step}\n{{\"kind\":\"st")).unwrap();
        let history = read_fimt_history(dir.path()).unwrap();
        assert_eq!(history.fimt, vec![(0.5, 2.0)]);
        std::fs::write(&metrics, format!("{step}\n{{\"kind\":\"st\n")).unwrap();
        let error = format!("{:#}", read_fimt_history(dir.path()).unwrap_err());
        assert!(error.contains("metrics.jsonl: line 2"), "{error}");
    }
}
