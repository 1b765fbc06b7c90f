//! The append-only record files of a run directory: metrics, activated-alpha history and the
//! genotype of every epoch, as JSON lines, and the same metrics as TensorBoard scalars (with
//! a histogram of the activated alphas at every epoch's end) in the run's event file. Their
//! lengths are saved in checkpoints, so a resumed run first cuts them back to the checkpoint
//! and never duplicates a line or a step. Runs without alphas (evaluations) keep the metrics
//! and the event file only.

use super::events::EventWriter;
use crate::checkpoint::annotate;
use prime_core::metrics::{MetricKind, MetricRecord};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Metric records, one JSON object per line.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Activated alpha after every weight step (and once at the start), one line each.
pub const ALPHAS_FILE: &str = "alphas.jsonl";
/// The genotype at the start of every epoch, one line each.
pub const GENOTYPES_FILE: &str = "genotypes.jsonl";

/// Byte lengths of the record files at a checkpoint (0 for a file the run does not keep).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordLengths {
    /// Length of the metrics file.
    pub metrics: u64,
    /// Length of the alpha history.
    pub alphas: u64,
    /// Length of the genotype history.
    pub genotypes: u64,
    /// Length of the TensorBoard event file (0 in checkpoints of versions without one).
    #[serde(default)]
    pub events: u64,
}

#[derive(Debug, Serialize)]
struct GenotypeRecord<'a, G> {
    epoch: u32,
    genotype: &'a G,
}

/// The open record files of a run directory.
#[derive(Debug)]
pub struct RunRecords {
    dir: PathBuf,
    metrics: BufWriter<File>,
    alphas: Option<BufWriter<File>>,
    genotypes: Option<BufWriter<File>>,
    events: EventWriter,
    /// The latest alpha-history line, drawn as histograms at the end of the epoch.
    last_alphas: Option<serde_json::Value>,
}

impl RunRecords {
    /// Opens (creating) the record files in `dir`; with `lengths`, first cuts each file back
    /// to its length at the checkpoint, else starts them empty.
    pub fn open(dir: &Path, lengths: Option<RecordLengths>) -> std::io::Result<Self> {
        Ok(Self {
            dir: dir.to_path_buf(),
            metrics: open_at(dir, METRICS_FILE, lengths.map(|l| l.metrics))?,
            alphas: Some(open_at(dir, ALPHAS_FILE, lengths.map(|l| l.alphas))?),
            genotypes: Some(open_at(dir, GENOTYPES_FILE, lengths.map(|l| l.genotypes))?),
            events: EventWriter::open(dir, lengths.map(|l| l.events))?,
            last_alphas: last_line(&dir.join(ALPHAS_FILE))?,
        })
    }

    /// Opens (creating) only the metrics file, as [`RunRecords::open`] does.
    pub fn open_metrics_only(dir: &Path, lengths: Option<RecordLengths>) -> std::io::Result<Self> {
        Ok(Self {
            dir: dir.to_path_buf(),
            metrics: open_at(dir, METRICS_FILE, lengths.map(|l| l.metrics))?,
            alphas: None,
            genotypes: None,
            events: EventWriter::open(dir, lengths.map(|l| l.events))?,
            last_alphas: None,
        })
    }

    /// Appends a metric record, and its values as scalars tagged `KIND/NAME` at its step;
    /// at the end of an epoch also the histograms of the latest activated alphas.
    pub fn metric(&mut self, record: &MetricRecord) -> std::io::Result<()> {
        write_line(&mut self.metrics, record, &self.dir.join(METRICS_FILE))?;
        let kind = scalar_group(record.kind);
        let scalars: Vec<(String, f64)> = record
            .values
            .iter()
            .map(|(name, value)| (format!("{kind}/{name}"), *value))
            .collect();
        self.events.scalars(record.step, &scalars)?;
        if record.kind == MetricKind::Epoch {
            if let Some(alphas) = &self.last_alphas {
                for (name, values) in alpha_matrices(alphas) {
                    self.events
                        .histogram(record.step, &format!("alphas/{name}"), &values)?;
                }
            }
        }
        Ok(())
    }

    /// Appends an alpha-history line (each search task has its own record shape).
    pub fn alphas(&mut self, record: &impl Serialize) -> std::io::Result<()> {
        let path = self.dir.join(ALPHAS_FILE);
        let value = serde_json::to_value(record).map_err(std::io::Error::other)?;
        write_line(kept(&mut self.alphas, &path)?, &value, &path)?;
        self.last_alphas = Some(value);
        Ok(())
    }

    /// Appends the genotype (a [`prime_core::genotype::Genotype`] or a recurrent one) at the start of `epoch`.
    pub fn genotype(&mut self, epoch: u32, genotype: &impl Serialize) -> std::io::Result<()> {
        let record = GenotypeRecord { epoch, genotype };
        let path = self.dir.join(GENOTYPES_FILE);
        write_line(kept(&mut self.genotypes, &path)?, &record, &path)
    }

    /// Flushes every file and returns their lengths.
    pub fn flush(&mut self) -> std::io::Result<RecordLengths> {
        let length = |writer: &mut BufWriter<File>, name: &str| -> std::io::Result<u64> {
            let path = self.dir.join(name);
            writer.flush().map_err(|error| annotate(&path, error))?;
            writer
                .get_ref()
                .sync_data()
                .map_err(|error| annotate(&path, error))?;
            Ok(writer
                .get_ref()
                .metadata()
                .map_err(|error| annotate(&path, error))?
                .len())
        };
        let metrics = length(&mut self.metrics, METRICS_FILE)?;
        let alphas = match self.alphas.as_mut() {
            Some(writer) => length(writer, ALPHAS_FILE)?,
            None => 0,
        };
        let genotypes = match self.genotypes.as_mut() {
            Some(writer) => length(writer, GENOTYPES_FILE)?,
            None => 0,
        };
        Ok(RecordLengths {
            metrics,
            alphas,
            genotypes,
            events: self.events.flush()?,
        })
    }
}

/// The tag group of a metric record's scalars.
fn scalar_group(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Step => "step",
        MetricKind::AlphaStep => "alpha_step",
        MetricKind::Epoch => "epoch",
        MetricKind::Final => "final",
    }
}

/// The matrices of an alpha-history line (every field that is a list of rows of numbers:
/// `normal` and `reduce` of a CNN search, `recurrent` of an RNN search), flattened.
fn alpha_matrices(line: &serde_json::Value) -> Vec<(String, Vec<f64>)> {
    let Some(fields) = line.as_object() else {
        return Vec::new();
    };
    fields
        .iter()
        .filter_map(|(name, value)| {
            let rows = value.as_array()?;
            let mut values = Vec::new();
            for row in rows {
                for number in row.as_array()? {
                    values.push(number.as_f64()?);
                }
            }
            (!values.is_empty()).then(|| (name.clone(), values))
        })
        .collect()
}

/// Bytes read from the end of the alpha history to find its last line (a line of a CNN
/// search is about 1.5 KB).
const LAST_LINE_WINDOW: u64 = 256 * 1024;

/// The last complete line of a JSON-lines file, parsed; `None` for an empty file or a last
/// line longer than [`LAST_LINE_WINDOW`].
fn last_line(path: &Path) -> std::io::Result<Option<serde_json::Value>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path).map_err(|error| annotate(path, error))?;
    let length = file
        .metadata()
        .map_err(|error| annotate(path, error))?
        .len();
    let start = length.saturating_sub(LAST_LINE_WINDOW);
    file.seek(SeekFrom::Start(start))
        .map_err(|error| annotate(path, error))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)
        .map_err(|error| annotate(path, error))?;
    let text = String::from_utf8_lossy(&tail);
    let mut lines = text.trim_end_matches('\n').rsplit('\n');
    Ok(lines
        .next()
        .and_then(|line| serde_json::from_str(line).ok()))
}

/// Opens `dir/name` for appending after cutting it to `length` (empty without one).
fn open_at(dir: &Path, name: &str, length: Option<u64>) -> std::io::Result<BufWriter<File>> {
    let path = dir.join(name);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|error| annotate(&path, error))?;
    file.set_len(length.unwrap_or(0))
        .map_err(|error| annotate(&path, error))?;
    let file = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|error| annotate(&path, error))?;
    Ok(BufWriter::new(file))
}

/// The writer of a record file this run keeps, or an error naming the file.
fn kept<'a>(
    writer: &'a mut Option<BufWriter<File>>,
    path: &Path,
) -> std::io::Result<&'a mut BufWriter<File>> {
    writer
        .as_mut()
        .ok_or_else(|| annotate(path, std::io::Error::other("this run keeps metrics only")))
}

fn write_line<T: Serialize>(
    writer: &mut BufWriter<File>,
    value: &T,
    path: &Path,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    line.push(b'\n');
    writer
        .write_all(&line)
        .map_err(|error| annotate(path, error))
}

/// Reads every metric record of a run directory.
pub fn read_metrics(dir: &Path) -> std::io::Result<Vec<MetricRecord>> {
    let path = dir.join(METRICS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|error| annotate(&path, error))?;
    text.lines()
        .enumerate()
        .map(|(index, line)| {
            serde_json::from_str(line).map_err(|error| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: line {}: {error}", path.display(), index + 1),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prime_core::metrics::MetricKind;

    #[test]
    fn reopening_at_saved_lengths_drops_later_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut records = RunRecords::open(dir.path(), None).unwrap();
        records
            .metric(&MetricRecord::new(MetricKind::Step, 0, 1, 0.1))
            .unwrap();
        let lengths = records.flush().unwrap();
        records
            .metric(&MetricRecord::new(MetricKind::Step, 0, 2, 0.2))
            .unwrap();
        records.flush().unwrap();
        drop(records);
        assert_eq!(read_metrics(dir.path()).unwrap().len(), 2);
        let mut records = RunRecords::open(dir.path(), Some(lengths)).unwrap();
        records
            .metric(&MetricRecord::new(MetricKind::Step, 0, 3, 0.3))
            .unwrap();
        records.flush().unwrap();
        let steps: Vec<u64> = read_metrics(dir.path())
            .unwrap()
            .iter()
            .map(|r| r.step)
            .collect();
        assert_eq!(steps, vec![1, 3]);
    }

    #[test]
    fn metrics_become_scalars_and_epoch_ends_alpha_histograms() {
        use crate::run::events::{read_events, scalars, EventWhat, ValueKind, EVENTS_FILE};
        let dir = tempfile::tempdir().unwrap();
        let mut records = RunRecords::open(dir.path(), None).unwrap();
        let alphas = serde_json::json!({
            "step": 1, "clock": 0.5,
            "normal": [[0.1, 0.9], [0.4, 0.6]], "reduce": [[0.5, 0.5], [0.3, 0.7]]
        });
        records.alphas(&alphas).unwrap();
        records
            .metric(&MetricRecord::new(MetricKind::Step, 0, 1, 0.5).with("loss", 2.0))
            .unwrap();
        records
            .metric(
                &MetricRecord::new(MetricKind::Epoch, 0, 2, 1.0)
                    .with("valid_acc", 40.0)
                    .with("alpha_steps", 3.0),
            )
            .unwrap();
        let lengths = records.flush().unwrap();
        assert!(lengths.events > 0);
        let events = read_events(&dir.path().join(EVENTS_FILE)).unwrap();
        assert_eq!(
            scalars(&events),
            [
                (1, "step/loss".to_string(), 2.0),
                (2, "epoch/alpha_steps".to_string(), 3.0),
                (2, "epoch/valid_acc".to_string(), 40.0),
            ]
        );
        let histograms: Vec<(i64, String, f64)> = events
            .iter()
            .filter_map(|event| match &event.what {
                Some(EventWhat::Summary(summary)) => Some((event.step, summary)),
                _ => None,
            })
            .flat_map(|(step, summary)| {
                summary
                    .value
                    .iter()
                    .filter_map(move |value| match &value.value {
                        Some(ValueKind::Histo(histogram)) => {
                            Some((step, value.tag.clone(), histogram.num))
                        }
                        _ => None,
                    })
            })
            .collect();
        assert_eq!(
            histograms,
            [
                (2, "alphas/normal".to_string(), 4.0),
                (2, "alphas/reduce".to_string(), 4.0),
            ]
        );
    }

    #[test]
    fn a_metrics_only_run_creates_no_alpha_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut records = RunRecords::open_metrics_only(dir.path(), None).unwrap();
        records
            .metric(&MetricRecord::new(MetricKind::Epoch, 0, 4, 1.0))
            .unwrap();
        let lengths = records.flush().unwrap();
        assert!(lengths.metrics > 0 && lengths.events > 0);
        assert_eq!((lengths.alphas, lengths.genotypes), (0, 0));
        assert!(!dir.path().join(ALPHAS_FILE).exists());
        assert!(!dir.path().join(GENOTYPES_FILE).exists());
        let error = records.alphas(&serde_json::json!({"step": 0})).unwrap_err();
        assert!(error.to_string().contains(ALPHAS_FILE), "{error}");
    }
}
