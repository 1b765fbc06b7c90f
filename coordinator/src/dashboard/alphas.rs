//! The alpha progression of a search (the paper's Figure 1) and its current genotype, read
//! from the trial's latest run-directory archive.
//!
//! Why the archive and not the metric stream: workers upload the whole run directory at the
//! end of every epoch by default, and it holds `alphas.jsonl`, the very file `prime plot
//! alphas` draws. Reading it here adds nothing to SQLite (the activated alphas of a CNN
//! search are 224 values per line and a line per weight step), needs no change of the wire
//! protocol or of the trainers, and keeps the page within an epoch of the run: the figure
//! grows a few seconds after each epoch's checkpoint is committed, which is the resolution of
//! Figure 1. The genotype of a running search is projected from the last alpha line exactly
//! as the search projects its own (`derive_genotype`, `project_rnn`). A history is read once
//! per checkpoint and kept in [`HistoryCache`].

use prime_core::genotype::diagram::CellDiagram;
use prime_core::genotype::projection::{derive_genotype, project_rnn, EdgeLayout};
use prime_core::genotype::rnn_primitives;
use prime_core::primitives::Activation;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path};
use std::sync::{Arc, Mutex};

/// The alpha history's file in a run directory.
pub const ALPHAS_FILE: &str = "alphas.jsonl";
/// Samples per series at most: lines are kept at even steps of the clock, and the last one.
pub const MAX_SAMPLES: usize = 100;
/// Longest line of the history (a CNN line is about 4 KB).
const MAX_LINE_BYTES: u64 = 1 << 20;
/// Intermediate nodes per convolutional cell at most (the DARTS cell has 4).
const MAX_CELL_NODES: usize = 12;
/// Trials whose history is kept in memory at most (each is a few hundred KB).
const MAX_CACHED_TRIALS: usize = 64;

/// One line of `alphas.jsonl`: a CNN search writes `normal` and `reduce`, a recurrent one
/// `recurrent` (edges x ops each).
#[derive(Deserialize)]
struct AlphaLine {
    clock: f64,
    #[serde(default)]
    normal: Option<Vec<Vec<f32>>>,
    #[serde(default)]
    reduce: Option<Vec<Vec<f32>>>,
    #[serde(default)]
    recurrent: Option<Vec<Vec<f32>>>,
}

/// The activated alphas of one line's cells: each cell's name and its rows (edges x ops).
type LineCells = Vec<(&'static str, Vec<Vec<f32>>)>;

/// One edge of a cell: its label and one series per op.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeSeries {
    /// `cₖ₋₂ → node 0`, `state 3 → node 5`.
    pub label: String,
    /// `values[op][sample]`: the activated alpha of each op at each kept line.
    pub values: Vec<Vec<f32>>,
}

/// The history of one cell type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellSeries {
    /// `normal`, `reduce` or `recurrent`.
    pub name: &'static str,
    /// The op of every column.
    pub ops: Vec<&'static str>,
    /// One entry per edge, in the alpha rows' order.
    pub edges: Vec<EdgeSeries>,
}

/// What the dashboard draws of a search's alphas.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlphaHistory {
    /// The archive it was read from.
    pub checkpoint_id: u64,
    /// Lines in the file.
    pub records: usize,
    /// The clock (fractional epochs) of every kept line.
    pub clock: Vec<f64>,
    /// The cell types.
    pub cells: Vec<CellSeries>,
    /// The cell diagrams (SVG) of the genotype projected from the last line.
    pub diagrams: Vec<String>,
    /// That genotype, as the search writes it.
    pub genotype: Value,
}

/// Which kind of search wrote the history, fixed by its first line.
#[derive(Clone, Copy)]
enum Shape {
    Convolutional {
        edges: usize,
        activation: Activation,
    },
    Recurrent {
        edges: usize,
        activation: Activation,
    },
}

impl Shape {
    fn of(line: &AlphaLine) -> Result<Shape, String> {
        let columns = |rows: &[Vec<f32>]| rows.first().map_or(0, Vec::len);
        match (&line.normal, &line.reduce, &line.recurrent) {
            (Some(normal), Some(_), None) => {
                let edges = normal.len();
                EdgeLayout::Convolutional
                    .steps_for_rows(edges)
                    .filter(|nodes| *nodes <= MAX_CELL_NODES)
                    .ok_or_else(|| {
                        format!("`normal` has {edges} rows: not a cell of 1 to {MAX_CELL_NODES} nodes (14 rows for 4)")
                    })?;
                let activation = [Activation::Softmax, Activation::Crb]
                    .into_iter()
                    .find(|activation| activation.primitives().len() == columns(normal))
                    .ok_or_else(|| {
                        format!(
                            "rows of {} values: neither softmax (8 ops) nor crb (7 ops)",
                            columns(normal)
                        )
                    })?;
                Ok(Shape::Convolutional { edges, activation })
            }
            (None, None, Some(recurrent)) => {
                let edges = recurrent.len();
                EdgeLayout::Recurrent
                    .steps_for_rows(edges)
                    .filter(|nodes| *nodes <= MAX_CELL_NODES)
                    .ok_or_else(|| format!("`recurrent` has {edges} rows: not a recurrent cell"))?;
                let activation = [Activation::Softmax, Activation::Crb]
                    .into_iter()
                    .find(|activation| rnn_primitives(*activation).len() == columns(recurrent))
                    .ok_or_else(|| {
                        format!(
                            "rows of {} values: neither softmax (5 ops) nor crb (4 ops)",
                            columns(recurrent)
                        )
                    })?;
                Ok(Shape::Recurrent { edges, activation })
            }
            _ => Err("expected `normal` and `reduce`, or `recurrent`".to_string()),
        }
    }

    fn ops(self) -> Vec<&'static str> {
        match self {
            Shape::Convolutional { activation, .. } => {
                activation.primitives().iter().map(|op| op.name()).collect()
            }
            Shape::Recurrent { activation, .. } => rnn_primitives(activation)
                .iter()
                .map(|op| op.name())
                .collect(),
        }
    }

    fn edges(self) -> usize {
        match self {
            Shape::Convolutional { edges, .. } | Shape::Recurrent { edges, .. } => edges,
        }
    }

    /// The cells of `line` in this shape, each `(name, rows)`, with their rows checked.
    fn cells(self, line: AlphaLine) -> Result<LineCells, String> {
        let cells = match (self, line.normal, line.reduce, line.recurrent) {
            (Shape::Convolutional { .. }, Some(normal), Some(reduce), None) => {
                vec![("normal", normal), ("reduce", reduce)]
            }
            (Shape::Recurrent { .. }, None, None, Some(recurrent)) => {
                vec![("recurrent", recurrent)]
            }
            _ => return Err("the cells differ from the first line's".to_string()),
        };
        let ops = self.ops().len();
        for (name, rows) in &cells {
            if rows.len() != self.edges() {
                return Err(format!(
                    "`{name}` has {} rows, expected {}",
                    rows.len(),
                    self.edges()
                ));
            }
            for (edge, row) in rows.iter().enumerate() {
                if row.len() != ops {
                    return Err(format!(
                        "`{name}` row {edge} has {} values, expected {ops} (one per op)",
                        row.len()
                    ));
                }
                if let Some(op) = row.iter().position(|value| !value.is_finite()) {
                    return Err(format!(
                        "`{name}` row {edge}, op {op} is not a finite number"
                    ));
                }
            }
        }
        Ok(cells)
    }

    /// The edge labels in row order.
    fn labels(self) -> Vec<String> {
        let mut labels = Vec::with_capacity(self.edges());
        let mut node = 0;
        while labels.len() < self.edges() {
            match self {
                Shape::Convolutional { .. } => {
                    for source in 0..node + 2 {
                        let from = match source {
                            0 => "cₖ₋₂".to_string(),
                            1 => "cₖ₋₁".to_string(),
                            earlier => format!("node {}", earlier - 2),
                        };
                        labels.push(format!("{from} → node {node}"));
                    }
                }
                Shape::Recurrent { .. } => {
                    for source in 0..=node {
                        labels.push(format!("state {source} → node {}", node + 1));
                    }
                }
            }
            node += 1;
        }
        labels
    }

    /// The genotype of the activated `cells` and its diagrams.
    fn genotype(
        self,
        cells: &[(&'static str, Vec<Vec<f32>>)],
    ) -> Result<(Value, Vec<String>), String> {
        match (self, cells) {
            (Shape::Convolutional { activation, .. }, [(_, normal), (_, reduce)]) => {
                let (genotype, _, _) = derive_genotype(normal, reduce, activation.primitives())
                    .map_err(|error| error.to_string())?;
                let diagrams = vec![
                    CellDiagram::normal(&genotype).to_svg(),
                    CellDiagram::reduction(&genotype).to_svg(),
                ];
                Ok((to_json(&genotype)?, diagrams))
            }
            (Shape::Recurrent { activation, .. }, [(_, recurrent)]) => {
                let projection = project_rnn(recurrent, rnn_primitives(activation))
                    .map_err(|error| error.to_string())?;
                let diagrams = vec![CellDiagram::recurrent(&projection.genotype).to_svg()];
                Ok((to_json(&projection.genotype)?, diagrams))
            }
            _ => Err("no cells".to_string()),
        }
    }
}

fn to_json(genotype: &impl Serialize) -> Result<Value, String> {
    serde_json::to_value(genotype).map_err(|error| error.to_string())
}

/// The series being gathered.
struct Gathering {
    shape: Shape,
    clock: Vec<f64>,
    /// `cells[cell][edge][op][sample]`.
    cells: Vec<Vec<Vec<Vec<f32>>>>,
    names: Vec<&'static str>,
}

impl Gathering {
    fn push(&mut self, clock: f64, cells: &[(&'static str, Vec<Vec<f32>>)]) {
        self.clock.push(clock);
        if self.names.is_empty() {
            self.names = cells.iter().map(|(name, _)| *name).collect();
            self.cells = cells
                .iter()
                .map(|(_, rows)| rows.iter().map(|row| vec![Vec::new(); row.len()]).collect())
                .collect();
        }
        for (series, (_, rows)) in self.cells.iter_mut().zip(cells) {
            for (edge, row) in series.iter_mut().zip(rows) {
                for (op, value) in edge.iter_mut().zip(row) {
                    op.push(*value);
                }
            }
        }
    }
}

/// Reads an alpha history (`name` for errors) whose run has `epochs_total` epochs, keeping at
/// most about [`MAX_SAMPLES`] lines; `checkpoint_id` is recorded in the result. A last line
/// without its newline that does not parse is one being written and is left out.
pub fn read_history(
    reader: impl Read,
    name: &str,
    epochs_total: u32,
    checkpoint_id: u64,
) -> Result<AlphaHistory, String> {
    let resolution = f64::from(epochs_total.max(1)) / MAX_SAMPLES as f64;
    let mut reader = BufReader::new(reader);
    let mut gathering: Option<Gathering> = None;
    let mut last: Option<(f64, LineCells)> = None;
    let mut last_kept_clock = f64::NEG_INFINITY;
    let mut records = 0;
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES + 1)
            .read_until(b'\n', &mut line)
            .map_err(|error| format!("{name}: line {number}: {error}"))?;
        if read == 0 {
            break;
        }
        if line.len() as u64 > MAX_LINE_BYTES {
            return Err(format!(
                "{name}: line {number} is longer than {MAX_LINE_BYTES} bytes"
            ));
        }
        let complete = line.ends_with(b"\n");
        if line.trim_ascii().is_empty() {
            continue;
        }
        let parsed = serde_json::from_slice::<AlphaLine>(&line)
            .map_err(|error| error.to_string())
            .and_then(|parsed| {
                if !(parsed.clock.is_finite() && parsed.clock >= 0.0) {
                    return Err("`clock` is not a finite number >= 0".to_string());
                }
                let shape = match &gathering {
                    Some(gathering) => gathering.shape,
                    None => Shape::of(&parsed)?,
                };
                let clock = parsed.clock;
                Ok((shape, clock, shape.cells(parsed)?))
            });
        let (shape, clock, cells) = match parsed {
            Ok(parsed) => parsed,
            Err(_) if !complete => break,
            Err(error) => return Err(format!("{name}: line {number}: {error}")),
        };
        records += 1;
        let gathering = gathering.get_or_insert_with(|| Gathering {
            shape,
            clock: Vec::new(),
            cells: Vec::new(),
            names: Vec::new(),
        });
        if clock >= last_kept_clock + resolution {
            gathering.push(clock, &cells);
            last_kept_clock = clock;
            last = None;
        } else {
            last = Some((clock, cells));
        }
    }
    let Some(mut gathering) = gathering else {
        return Err(format!("{name}: no alpha records yet"));
    };
    if let Some((clock, cells)) = last {
        gathering.push(clock, &cells);
    }
    let last_cells: LineCells = gathering
        .names
        .iter()
        .zip(&gathering.cells)
        .map(|(name, edges)| {
            let rows = edges
                .iter()
                .map(|ops| ops.iter().map(|series| series[series.len() - 1]).collect())
                .collect();
            (*name, rows)
        })
        .collect();
    let (genotype, diagrams) = gathering
        .shape
        .genotype(&last_cells)
        .map_err(|error| format!("{name}: the last line's genotype: {error}"))?;
    let ops = gathering.shape.ops();
    let labels = gathering.shape.labels();
    let cells = gathering
        .names
        .iter()
        .zip(gathering.cells)
        .map(|(name, edges)| CellSeries {
            name,
            ops: ops.clone(),
            edges: labels
                .iter()
                .zip(edges)
                .map(|(label, values)| EdgeSeries {
                    label: label.clone(),
                    values,
                })
                .collect(),
        })
        .collect();
    Ok(AlphaHistory {
        checkpoint_id,
        records,
        clock: gathering.clock,
        cells,
        diagrams,
        genotype,
    })
}

/// Whether a tar entry's path is `name` at the top of the archive (`name` or `./name`).
fn is_top_level(path: &Path, name: &str) -> bool {
    let mut parts = path
        .components()
        .filter(|component| *component != Component::CurDir);
    parts.next() == Some(Component::Normal(name.as_ref())) && parts.next().is_none()
}

/// The alpha history in a run-directory archive (a tar archive as workers upload it), or
/// why there is none.
pub fn history_in_archive(
    archive: impl Read,
    epochs_total: u32,
    checkpoint_id: u64,
) -> Result<AlphaHistory, String> {
    let mut archive = tar::Archive::new(archive);
    let entries = archive
        .entries()
        .map_err(|error| format!("checkpoint {checkpoint_id}: {error}"))?;
    for entry in entries {
        let entry = entry.map_err(|error| format!("checkpoint {checkpoint_id}: {error}"))?;
        let path = entry
            .path()
            .map_err(|error| format!("checkpoint {checkpoint_id}: {error}"))?
            .into_owned();
        if is_top_level(&path, ALPHAS_FILE) {
            let name = format!("{ALPHAS_FILE} of checkpoint {checkpoint_id}");
            return read_history(entry, &name, epochs_total, checkpoint_id);
        }
    }
    Err(format!(
        "checkpoint {checkpoint_id} holds no {ALPHAS_FILE} (the trainer keeps no alpha history)"
    ))
}

/// A history read, or why it could not be: kept per checkpoint so that a page polling every
/// few seconds reads an archive once.
pub type HistoryRead = Result<Arc<AlphaHistory>, String>;

/// The latest history read per trial, bounded to [`MAX_CACHED_TRIALS`] trials.
#[derive(Debug, Default)]
pub struct HistoryCache {
    entries: Mutex<HashMap<u64, (u64, HistoryRead)>>,
}

impl HistoryCache {
    /// The history of `trial_id` read from `checkpoint_id`, if it was read already.
    pub fn get(&self, trial_id: u64, checkpoint_id: u64) -> Option<HistoryRead> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        entries
            .get(&trial_id)
            .filter(|(cached, _)| *cached == checkpoint_id)
            .map(|(_, read)| read.clone())
    }

    /// Keeps `read` as the history of `trial_id` at `checkpoint_id`; when full, forgets the
    /// trial whose checkpoint is oldest.
    pub fn put(&self, trial_id: u64, checkpoint_id: u64, read: HistoryRead) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if entries.len() >= MAX_CACHED_TRIALS && !entries.contains_key(&trial_id) {
            let oldest = entries
                .iter()
                .min_by_key(|(_, (checkpoint, _))| *checkpoint)
                .map(|(trial, _)| *trial);
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        entries.insert(trial_id, (checkpoint_id, read));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prime_core::genotype::{Gene, Genotype};
    use prime_core::primitives::CnnOp;
    use serde_json::json;

    /// Activated alphas of a 14-edge cell with `strong` at 0.9 on every edge and the rest
    /// sharing 0.1.
    fn peaked(strong: CnnOp) -> Vec<Vec<f32>> {
        let ops = Activation::Softmax.primitives();
        let row: Vec<f32> = ops
            .iter()
            .map(|op| if *op == strong { 0.9 } else { 0.1 / 7.0 })
            .collect();
        vec![row; 14]
    }

    fn cnn_line(clock: f64, normal: CnnOp, reduce: CnnOp) -> String {
        json!({"step": (clock * 10.0) as u64, "clock": clock, "normal": peaked(normal), "reduce": peaked(reduce)})
            .to_string()
    }

    #[test]
    fn a_cnn_history_gives_series_per_edge_and_op_and_the_last_lines_genotype() {
        let text = [
            cnn_line(0.0, CnnOp::SkipConnect, CnnOp::MaxPool3x3),
            cnn_line(0.5, CnnOp::SkipConnect, CnnOp::MaxPool3x3),
            cnn_line(1.0, CnnOp::SepConv3x3, CnnOp::DilConv5x5),
        ]
        .join("\n")
            + "\n";
        let history = read_history(text.as_bytes(), "alphas.jsonl", 1, 7).unwrap();
        assert_eq!(history.checkpoint_id, 7);
        assert_eq!(history.records, 3);
        assert_eq!(history.clock, [0.0, 0.5, 1.0]);
        let names: Vec<&str> = history.cells.iter().map(|cell| cell.name).collect();
        assert_eq!(names, ["normal", "reduce"]);
        let normal = &history.cells[0];
        assert_eq!(normal.ops.len(), 8);
        assert_eq!(normal.edges.len(), 14);
        assert_eq!(normal.edges[0].label, "cₖ₋₂ → node 0");
        assert_eq!(normal.edges[2].label, "cₖ₋₂ → node 1");
        assert_eq!(normal.edges[4].label, "node 0 → node 1");
        let skip = normal
            .ops
            .iter()
            .position(|op| *op == "skip_connect")
            .unwrap();
        assert_eq!(normal.edges[13].values[skip], [0.9, 0.9, 0.1 / 7.0]);
        // The genotype is the last line's: every normal gene a sep_conv_3x3.
        let genotype: Genotype = serde_json::from_value(json!({
            "normal_concat": [2, 3, 4, 5],
            "reduce_concat": [2, 3, 4, 5],
            "normal": history.genotype["normal"],
            "reduce": history.genotype["reduce"],
        }))
        .unwrap();
        assert!(genotype
            .normal
            .iter()
            .all(|gene: &Gene| gene.op == CnnOp::SepConv3x3));
        assert!(genotype
            .reduce
            .iter()
            .all(|gene| gene.op == CnnOp::DilConv5x5));
        assert_eq!(history.diagrams.len(), 2);
        assert!(history.diagrams[0].contains(">sep_conv_3x3</text>"));
    }

    #[test]
    fn long_histories_keep_about_max_samples_lines_and_the_last() {
        let lines: Vec<String> = (0..=1000)
            .map(|step| {
                cnn_line(
                    f64::from(step) / 500.0,
                    CnnOp::SkipConnect,
                    CnnOp::MaxPool3x3,
                )
            })
            .collect();
        let text = lines.join("\n");
        let history = read_history(text.as_bytes(), "alphas.jsonl", 2, 1).unwrap();
        assert_eq!(history.records, 1001);
        assert!(
            history.clock.len() <= MAX_SAMPLES + 1 && history.clock.len() >= MAX_SAMPLES / 2,
            "{} samples",
            history.clock.len()
        );
        assert_eq!(history.clock.first(), Some(&0.0));
        assert_eq!(history.clock.last(), Some(&2.0));
        assert!(history.clock.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn a_recurrent_history_has_one_cell_of_36_edges() {
        let row = vec![0.1, 0.6, 0.1, 0.1, 0.1];
        let line = json!({"step": 0, "clock": 0.0, "recurrent": vec![row; 36]}).to_string();
        let history = read_history(line.as_bytes(), "alphas.jsonl", 2, 1).unwrap();
        assert_eq!(history.cells.len(), 1);
        let cell = &history.cells[0];
        assert_eq!((cell.name, cell.edges.len()), ("recurrent", 36));
        assert_eq!(cell.ops, ["none", "tanh", "relu", "sigmoid", "identity"]);
        assert_eq!(cell.edges[35].label, "state 7 → node 8");
        assert_eq!(history.diagrams.len(), 1);
        assert!(history.diagrams[0].contains(">tanh</text>"));
    }

    #[test]
    fn broken_lines_are_named_and_a_line_being_written_is_left_out() {
        let good = cnn_line(0.0, CnnOp::SkipConnect, CnnOp::MaxPool3x3);
        let being_written = format!("{good}\n{{\"step\": 1, \"clo");
        let history = read_history(being_written.as_bytes(), "alphas.jsonl", 1, 1).unwrap();
        assert_eq!(history.records, 1);
        let broken = format!("{good}\nnot json\n{good}\n");
        let error = read_history(broken.as_bytes(), "alphas.jsonl", 1, 1).unwrap_err();
        assert!(error.starts_with("alphas.jsonl: line 2: "), "{error}");
        let short_row =
            json!({"clock": 0.5, "normal": peaked(CnnOp::SkipConnect), "reduce": [[0.5]]});
        let error =
            read_history(format!("{good}\n{short_row}\n").as_bytes(), "a", 1, 1).unwrap_err();
        assert!(
            error.contains("line 2: `reduce` has 1 rows, expected 14"),
            "{error}"
        );
        let nine_ops = json!({"clock": 0.0, "normal": vec![vec![0.1; 9]; 14], "reduce": vec![vec![0.1; 9]; 14]});
        let error = read_history(format!("{nine_ops}\n").as_bytes(), "a", 1, 1).unwrap_err();
        assert!(
            error.contains("neither softmax (8 ops) nor crb (7 ops)"),
            "{error}"
        );
        // 1e39 is beyond f32: refused, with its line.
        let mut huge = peaked(CnnOp::SkipConnect);
        huge[3][1] = 0.0;
        let huge = json!({"clock": 0.5, "normal": huge, "reduce": peaked(CnnOp::SkipConnect)})
            .to_string()
            .replacen("0.0", "1e39", 1);
        let error = read_history(format!("{good}\n{huge}\n").as_bytes(), "a", 1, 1).unwrap_err();
        assert!(error.contains("line 2: number out of range"), "{error}");
        let long = "x".repeat(MAX_LINE_BYTES as usize + 10);
        let error = read_history(long.as_bytes(), "a", 1, 1).unwrap_err();
        assert!(error.contains("longer than"), "{error}");
        let error = read_history(&b""[..], "a", 1, 1).unwrap_err();
        assert!(error.contains("no alpha records yet"), "{error}");
    }

    #[test]
    fn the_history_is_found_at_the_top_of_a_run_directory_archive() {
        let run = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(run.path().join("checkpoints/epoch-1")).unwrap();
        std::fs::write(
            run.path().join("checkpoints/epoch-1/alphas.jsonl"),
            "nested",
        )
        .unwrap();
        let archive = prime_proto::archive::pack_dir(run.path(), run.path()).unwrap();
        let error = history_in_archive(&archive[..], 1, 4).unwrap_err();
        assert!(
            error.contains("checkpoint 4 holds no alphas.jsonl"),
            "{error}"
        );
        let line = cnn_line(0.0, CnnOp::SkipConnect, CnnOp::MaxPool3x3);
        std::fs::write(run.path().join(ALPHAS_FILE), line + "\n").unwrap();
        let archive = prime_proto::archive::pack_dir(run.path(), run.path()).unwrap();
        let history = history_in_archive(&archive[..], 1, 5).unwrap();
        assert_eq!((history.checkpoint_id, history.records), (5, 1));
        assert!(history_in_archive(&b"not a tar archive"[..], 1, 6).is_err());
    }

    #[test]
    fn the_cache_answers_for_the_checkpoint_it_was_given_and_stays_bounded() {
        let cache = HistoryCache::default();
        cache.put(1, 10, Err("none yet".into()));
        assert_eq!(cache.get(1, 10), Some(Err("none yet".into())));
        assert_eq!(cache.get(1, 11), None, "a newer checkpoint is read again");
        for trial in 2..=MAX_CACHED_TRIALS as u64 + 5 {
            cache.put(trial, 100 + trial, Err(String::new()));
        }
        let entries = cache.entries.lock().unwrap();
        assert_eq!(entries.len(), MAX_CACHED_TRIALS);
        assert!(
            !entries.contains_key(&1),
            "the oldest checkpoint's trial went first"
        );
    }
}
