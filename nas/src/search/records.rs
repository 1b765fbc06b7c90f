//! The append-only record files of a run directory: metrics, activated-alpha history and the
//! genotype of every epoch, as JSON lines. Their lengths are saved in checkpoints, so a
//! resumed run first cuts them back to the checkpoint and never duplicates a line.

use prime_core::genotype::Genotype;
use prime_core::metrics::MetricRecord;
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

/// Byte lengths of the record files at a checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordLengths {
    /// Length of the metrics file.
    pub metrics: u64,
    /// Length of the alpha history.
    pub alphas: u64,
    /// Length of the genotype history.
    pub genotypes: u64,
}

/// One line of the alpha history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlphaRecord {
    /// Global weight steps done when the values were taken.
    pub step: u64,
    /// Fractional epochs.
    pub clock: f64,
    /// act(alpha) of the normal cells, (edges, ops).
    pub normal: Vec<Vec<f32>>,
    /// act(alpha) of the reduction cells.
    pub reduce: Vec<Vec<f32>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct GenotypeRecord<'a> {
    epoch: u32,
    genotype: std::borrow::Cow<'a, Genotype>,
}

/// The open record files of a run directory.
#[derive(Debug)]
pub struct RunRecords {
    dir: PathBuf,
    metrics: BufWriter<File>,
    alphas: BufWriter<File>,
    genotypes: BufWriter<File>,
}

impl RunRecords {
    /// Opens (creating) the record files in `dir`; with `lengths`, first cuts each file back
    /// to its length at the checkpoint, else starts them empty.
    pub fn open(dir: &Path, lengths: Option<RecordLengths>) -> std::io::Result<Self> {
        let open = |name: &str, length: Option<u64>| -> std::io::Result<BufWriter<File>> {
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
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            metrics: open(METRICS_FILE, lengths.map(|l| l.metrics))?,
            alphas: open(ALPHAS_FILE, lengths.map(|l| l.alphas))?,
            genotypes: open(GENOTYPES_FILE, lengths.map(|l| l.genotypes))?,
        })
    }

    /// Appends a metric record.
    pub fn metric(&mut self, record: &MetricRecord) -> std::io::Result<()> {
        write_line(&mut self.metrics, record, &self.dir.join(METRICS_FILE))
    }

    /// Appends an alpha-history line.
    pub fn alphas(&mut self, record: &AlphaRecord) -> std::io::Result<()> {
        write_line(&mut self.alphas, record, &self.dir.join(ALPHAS_FILE))
    }

    /// Appends the genotype at the start of `epoch`.
    pub fn genotype(&mut self, epoch: u32, genotype: &Genotype) -> std::io::Result<()> {
        let record = GenotypeRecord {
            epoch,
            genotype: std::borrow::Cow::Borrowed(genotype),
        };
        write_line(&mut self.genotypes, &record, &self.dir.join(GENOTYPES_FILE))
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
        Ok(RecordLengths {
            metrics: length(&mut self.metrics, METRICS_FILE)?,
            alphas: length(&mut self.alphas, ALPHAS_FILE)?,
            genotypes: length(&mut self.genotypes, GENOTYPES_FILE)?,
        })
    }
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

fn annotate(path: &Path, error: std::io::Error) -> std::io::Error {
    std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))
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
}
