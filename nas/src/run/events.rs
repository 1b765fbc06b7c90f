//! TensorBoard event files: the `Event` protobuf messages (the subset of TensorFlow's
//! `event.proto` and `summary.proto` that scalars and histograms need, with their field
//! numbers) in TFRecord framing, written and read back.
//!
//! A TFRecord is the data's length as a little-endian u64, the masked CRC-32C of those eight
//! bytes, the data, and the masked CRC-32C of the data. The first event of a file carries the
//! version string `brain.Event:2`; TensorBoard reads every file whose name contains
//! `tfevents`.

use crate::checkpoint::annotate;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The event file of a run directory. One per run: a resumed run cuts it back to its length
/// at the checkpoint and continues it, so no step is written twice.
pub const EVENTS_FILE: &str = "events.out.tfevents.prime";

/// The version the first event of a file announces.
pub const FILE_VERSION: &str = "brain.Event:2";

/// Buckets of a histogram (TensorBoard re-bins to about 30 anyway).
const HISTOGRAM_BUCKETS: usize = 30;

/// Longest record the reader accepts: ours are a few kilobytes.
const MAX_RECORD_BYTES: u64 = 64 * 1024 * 1024;

/// One event: a wall time, a step and what happened.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The global step.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// The file version or a summary.
    #[prost(oneof = "EventWhat", tags = "3, 5")]
    pub what: Option<EventWhat>,
}

/// What an [`Event`] holds.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum EventWhat {
    /// The version string of the first event of a file.
    #[prost(string, tag = "3")]
    FileVersion(String),
    /// Tagged values.
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// Tagged values of one step.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// The values.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// One tagged value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    /// The tag, `group/name`.
    #[prost(string, tag = "1")]
    pub tag: String,
    /// A scalar or a histogram.
    #[prost(oneof = "ValueKind", tags = "2, 5")]
    pub value: Option<ValueKind>,
}

/// The kinds of value written.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ValueKind {
    /// A scalar.
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    /// A histogram.
    #[prost(message, tag = "5")]
    Histo(Histogram),
}

/// A histogram: bucket `i` counts the values up to `bucket_limit[i]` (above the previous
/// limit; the first starts at `min`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    /// Smallest value.
    #[prost(double, tag = "1")]
    pub min: f64,
    /// Largest value.
    #[prost(double, tag = "2")]
    pub max: f64,
    /// Number of values.
    #[prost(double, tag = "3")]
    pub num: f64,
    /// Sum of the values.
    #[prost(double, tag = "4")]
    pub sum: f64,
    /// Sum of their squares.
    #[prost(double, tag = "5")]
    pub sum_squares: f64,
    /// Upper limit of every bucket.
    #[prost(double, repeated, tag = "6")]
    pub bucket_limit: Vec<f64>,
    /// Count of every bucket.
    #[prost(double, repeated, tag = "7")]
    pub bucket: Vec<f64>,
}

impl Histogram {
    /// The histogram of `values` (finite ones) in equal buckets from their minimum to their
    /// maximum; `None` without finite values.
    pub fn of(values: &[f64]) -> Option<Histogram> {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if finite.is_empty() {
            return None;
        }
        let buckets = if max > min { HISTOGRAM_BUCKETS } else { 1 };
        let width = (max - min) / buckets as f64;
        let bucket_limit: Vec<f64> = (1..=buckets)
            .map(|index| {
                if index == buckets {
                    max
                } else {
                    min + width * index as f64
                }
            })
            .collect();
        let mut bucket = vec![0.0; buckets];
        for value in &finite {
            let index = bucket_limit
                .iter()
                .position(|limit| value <= limit)
                .unwrap_or(buckets - 1);
            bucket[index] += 1.0;
        }
        Some(Histogram {
            min,
            max,
            num: finite.len() as f64,
            sum: finite.iter().sum(),
            sum_squares: finite.iter().map(|v| v * v).sum(),
            bucket_limit,
            bucket,
        })
    }
}

/// The CRC-32C of `bytes`, masked as TFRecords store it (so that a CRC of data holding CRCs
/// does not degenerate).
pub fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// `data` framed as a TFRecord.
fn frame(data: &[u8]) -> Vec<u8> {
    let length = (data.len() as u64).to_le_bytes();
    let mut record = Vec::with_capacity(data.len() + 16);
    record.extend_from_slice(&length);
    record.extend_from_slice(&masked_crc(&length).to_le_bytes());
    record.extend_from_slice(data);
    record.extend_from_slice(&masked_crc(data).to_le_bytes());
    record
}

/// The open event file of a run directory.
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    file: BufWriter<File>,
}

impl EventWriter {
    /// Opens (creating) `dir`'s event file; with `length`, first cuts it back to that length,
    /// else starts it empty. An empty file first gets the file-version event.
    pub fn open(dir: &Path, length: Option<u64>) -> std::io::Result<Self> {
        let path = dir.join(EVENTS_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|error| annotate(&path, error))?;
        let length = length.unwrap_or(0);
        file.set_len(length)
            .map_err(|error| annotate(&path, error))?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|error| annotate(&path, error))?;
        let mut writer = Self {
            path,
            file: BufWriter::new(file),
        };
        if length == 0 {
            writer.write(0, EventWhat::FileVersion(FILE_VERSION.to_string()))?;
        }
        Ok(writer)
    }

    /// Writes scalars `(tag, value)` of `step`.
    pub fn scalars(&mut self, step: u64, values: &[(String, f64)]) -> std::io::Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        let value = values
            .iter()
            .map(|(tag, value)| SummaryValue {
                tag: tag.clone(),
                value: Some(ValueKind::SimpleValue(*value as f32)),
            })
            .collect();
        self.write(step, EventWhat::Summary(Summary { value }))
    }

    /// Writes the histogram of `values` under `tag` at `step` (nothing without finite values).
    pub fn histogram(&mut self, step: u64, tag: &str, values: &[f64]) -> std::io::Result<()> {
        let Some(histogram) = Histogram::of(values) else {
            return Ok(());
        };
        let value = vec![SummaryValue {
            tag: tag.to_string(),
            value: Some(ValueKind::Histo(histogram)),
        }];
        self.write(step, EventWhat::Summary(Summary { value }))
    }

    fn write(&mut self, step: u64, what: EventWhat) -> std::io::Result<()> {
        let wall_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |elapsed| elapsed.as_secs_f64());
        let event = Event {
            wall_time,
            // Steps are at most prime_core::metrics::MAX_STEP, which is i64::MAX.
            step: i64::try_from(step).unwrap_or(i64::MAX),
            what: Some(what),
        };
        let data = prost::Message::encode_to_vec(&event);
        self.file
            .write_all(&frame(&data))
            .map_err(|error| annotate(&self.path, error))
    }

    /// Flushes the file to disk and returns its length.
    pub fn flush(&mut self) -> std::io::Result<u64> {
        let path = &self.path;
        self.file.flush().map_err(|error| annotate(path, error))?;
        let file = self.file.get_ref();
        file.sync_data().map_err(|error| annotate(path, error))?;
        Ok(file
            .metadata()
            .map_err(|error| annotate(path, error))?
            .len())
    }
}

/// Reads every event of an event file, checking each record's length and CRCs; errors name
/// the file and the byte offset of the bad record.
pub fn read_events(path: &Path) -> std::io::Result<Vec<Event>> {
    let bytes = std::fs::read(path).map_err(|error| annotate(path, error))?;
    let bad = |offset: usize, what: String| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: record at byte {offset}: {what}", path.display()),
        )
    };
    let mut events = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let header = bytes
            .get(offset..offset + 12)
            .ok_or_else(|| bad(offset, "cut short in its header".to_string()))?;
        let (length_bytes, length_crc) = header.split_at(8);
        if masked_crc(length_bytes).to_le_bytes() != length_crc {
            return Err(bad(
                offset,
                "the CRC of the length does not match".to_string(),
            ));
        }
        let length = u64::from_le_bytes(length_bytes.try_into().expect("eight bytes"));
        if length > MAX_RECORD_BYTES {
            return Err(bad(
                offset,
                format!("{length} bytes, more than {MAX_RECORD_BYTES}"),
            ));
        }
        let start = offset + 12;
        let end = start + length as usize;
        let data = bytes
            .get(start..end)
            .ok_or_else(|| bad(offset, "cut short in its data".to_string()))?;
        let crc = bytes
            .get(end..end + 4)
            .ok_or_else(|| bad(offset, "cut short in its data CRC".to_string()))?;
        if masked_crc(data).to_le_bytes() != crc {
            return Err(bad(
                offset,
                "the CRC of the data does not match".to_string(),
            ));
        }
        let event: Event = prost::Message::decode(data)
            .map_err(|error| bad(offset, format!("not an Event: {error}")))?;
        events.push(event);
        offset = end + 4;
    }
    Ok(events)
}

/// The scalars of `events` as `(step, tag, value)`, in file order.
pub fn scalars(events: &[Event]) -> Vec<(i64, String, f32)> {
    events
        .iter()
        .filter_map(|event| match &event.what {
            Some(EventWhat::Summary(summary)) => Some((event.step, summary)),
            _ => None,
        })
        .flat_map(|(step, summary)| {
            summary
                .value
                .iter()
                .filter_map(move |value| match value.value {
                    Some(ValueKind::SimpleValue(scalar)) => Some((step, value.tag.clone(), scalar)),
                    _ => None,
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_crcs_match_tensorflow() {
        // CRC-32C("123456789") is 0xE3069283 (RFC 3720); rotated right by 15 bits and
        // offset by 0xa282ead8 as TensorFlow's crc32c::Mask does, it is 0xC78AB0E5.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(masked_crc(b"123456789"), 0xC78A_B0E5);
        // The framing of an empty record: zero length, its masked CRC, no data.
        let record = frame(&[]);
        assert_eq!(record.len(), 16);
        assert_eq!(&record[..8], &[0; 8]);
    }

    #[test]
    fn written_events_read_back_with_their_steps_tags_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = EventWriter::open(dir.path(), None).unwrap();
        writer
            .scalars(
                3,
                &[
                    ("step/loss".to_string(), 2.5),
                    ("step/lr".to_string(), 0.025),
                ],
            )
            .unwrap();
        writer
            .histogram(3, "alphas/normal", &[0.1, 0.2, 0.2, 0.5])
            .unwrap();
        writer.flush().unwrap();
        let events = read_events(&dir.path().join(EVENTS_FILE)).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(
            events[0].what,
            Some(EventWhat::FileVersion(FILE_VERSION.to_string()))
        );
        assert_eq!(
            scalars(&events),
            [
                (3, "step/loss".to_string(), 2.5),
                (3, "step/lr".to_string(), 0.025f32),
            ]
        );
        let Some(EventWhat::Summary(summary)) = &events[2].what else {
            panic!("expected a summary: {:?}", events[2]);
        };
        let Some(ValueKind::Histo(histogram)) = &summary.value[0].value else {
            panic!("expected a histogram: {summary:?}");
        };
        assert_eq!(
            (histogram.min, histogram.max, histogram.num),
            (0.1, 0.5, 4.0)
        );
        assert_eq!(histogram.bucket.iter().sum::<f64>(), 4.0);
        assert_eq!(histogram.bucket_limit.last(), Some(&0.5));
    }

    #[test]
    fn a_corrupt_record_is_named_by_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = EventWriter::open(dir.path(), None).unwrap();
        writer
            .scalars(1, &[("step/loss".to_string(), 1.0)])
            .unwrap();
        let length = writer.flush().unwrap() as usize;
        let path = dir.path().join(EVENTS_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[length - 6] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let error = read_events(&path).unwrap_err().to_string();
        assert!(
            error.contains("the CRC of the data does not match"),
            "{error}"
        );
        std::fs::write(&path, &bytes[..length - 2]).unwrap();
        let error = read_events(&path).unwrap_err().to_string();
        assert!(error.contains("cut short"), "{error}");
    }

    #[test]
    fn reopening_at_a_length_continues_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = EventWriter::open(dir.path(), None).unwrap();
        writer
            .scalars(1, &[("step/loss".to_string(), 1.0)])
            .unwrap();
        let length = writer.flush().unwrap();
        writer
            .scalars(2, &[("step/loss".to_string(), 2.0)])
            .unwrap();
        writer.flush().unwrap();
        drop(writer);
        let mut writer = EventWriter::open(dir.path(), Some(length)).unwrap();
        writer
            .scalars(2, &[("step/loss".to_string(), 3.0)])
            .unwrap();
        writer.flush().unwrap();
        let events = read_events(&dir.path().join(EVENTS_FILE)).unwrap();
        let versions = events
            .iter()
            .filter(|event| matches!(event.what, Some(EventWhat::FileVersion(_))))
            .count();
        assert_eq!(versions, 1);
        assert_eq!(
            scalars(&events),
            [
                (1, "step/loss".to_string(), 1.0),
                (2, "step/loss".to_string(), 3.0)
            ]
        );
    }

    #[test]
    fn histograms_of_constant_or_empty_values() {
        let histogram = Histogram::of(&[0.125; 4]).unwrap();
        assert_eq!(histogram.bucket, [4.0]);
        assert!(Histogram::of(&[f64::NAN]).is_none());
        assert!(Histogram::of(&[]).is_none());
    }
}
