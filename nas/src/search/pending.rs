//! Step records of the search whose device values are held back and read to the host
//! together: one device-to-host copy (one synchronisation) for any number of steps, instead of
//! several per step. The values read back are exactly those a read per step gives (every
//! value travels as float64, which holds the float32 and int64 values exactly). The recurrent
//! search holds its steps with the same parts ([`scalar_part`], [`matrix_part`],
//! [`HostValues`]).

use prime_core::metrics::MetricRecord;
use tch::{Device, Kind, Tensor};

/// One weight step (with its alpha step, if any) whose values are still on the device.
#[derive(Debug)]
pub(crate) struct DeviceStep {
    /// The record with the values known on the host already (lr, threshold, flags).
    pub record: MetricRecord,
    /// Named 0-d device values to add to the record (alpha loss, regularizer).
    pub values: Vec<(&'static str, Tensor)>,
    /// Mean loss of the weight step's batch.
    pub loss: Tensor,
    /// Correct top-1 predictions of the weight step.
    pub correct: Tensor,
    /// Batch size.
    pub count: usize,
    /// The weight step's FIMT, when the schedule does not need it on the host at once.
    pub fimt: Option<Tensor>,
    /// act(alpha) of the normal and reduction cells after the step, (edges, ops).
    pub alphas: [Tensor; 2],
}

/// A [`DeviceStep`] read back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HostStep {
    /// The record with the named device values added.
    pub record: MetricRecord,
    /// Mean loss of the weight step's batch.
    pub loss: f64,
    /// Correct top-1 predictions.
    pub correct: f64,
    /// Batch size.
    pub count: usize,
    /// The FIMT, when it was held back.
    pub fimt: Option<f64>,
    /// act(alpha) of the normal and reduction cells as host rows.
    pub alphas: [Vec<Vec<f32>>; 2],
}

/// The steps held back since the last read-back.
#[derive(Debug, Default)]
pub(crate) struct PendingSteps {
    steps: Vec<DeviceStep>,
    read_backs: u64,
}

impl PendingSteps {
    /// Holds back `step`.
    pub fn push(&mut self, step: DeviceStep) {
        self.steps.push(step);
    }

    /// Steps held back.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Device-to-host copies made so far.
    #[cfg(test)]
    pub fn read_backs(&self) -> u64 {
        self.read_backs
    }

    /// Every step held back, in order, read to the host with one copy; empty (and no copy)
    /// when none is held.
    pub fn read_back(&mut self) -> Result<Vec<HostStep>, tch::TchError> {
        let steps = std::mem::take(&mut self.steps);
        if steps.is_empty() {
            return Ok(Vec::new());
        }
        let mut parts = Vec::new();
        for step in &steps {
            parts.push(scalar_part(&step.loss));
            parts.push(scalar_part(&step.correct));
            for (_, value) in &step.values {
                parts.push(scalar_part(value));
            }
            if let Some(fimt) = &step.fimt {
                parts.push(scalar_part(fimt));
            }
            for alphas in &step.alphas {
                parts.push(matrix_part(alphas));
            }
        }
        let mut values = HostValues::copy(&parts)?;
        self.read_backs += 1;
        Ok(steps
            .into_iter()
            .map(|step| {
                let loss = values.next();
                let correct = values.next();
                let mut record = step.record;
                for (name, _) in &step.values {
                    record = record.with(name, values.next());
                }
                let fimt = step.fimt.as_ref().map(|_| values.next());
                let alphas = step.alphas.each_ref().map(|matrix| values.rows(matrix));
                HostStep {
                    record,
                    loss,
                    correct,
                    count: step.count,
                    fimt,
                    alphas,
                }
            })
            .collect())
    }
}

/// A 0-d device value (float32, float64 or int64) as one float64: a part of a
/// [`HostValues::copy`].
pub(crate) fn scalar_part(value: &Tensor) -> Tensor {
    value.detach().to_kind(Kind::Double).reshape([1])
}

/// A float32 matrix as float64 values, row after row: a part of a [`HostValues::copy`].
pub(crate) fn matrix_part(matrix: &Tensor) -> Tensor {
    // float32 first, as the rows are float32; float64 holds it exactly.
    let rows = matrix.detach().to_kind(Kind::Float).to_kind(Kind::Double);
    rows.reshape([-1])
}

/// Device values copied to the host together, taken back in the order they were laid out.
pub(crate) struct HostValues(std::vec::IntoIter<f64>);

impl HostValues {
    /// `parts` (from [`scalar_part`] and [`matrix_part`]) with one device-to-host copy.
    pub fn copy(parts: &[Tensor]) -> Result<Self, tch::TchError> {
        let flat = Tensor::f_cat(parts, 0)?.f_to_device(Device::Cpu)?;
        Ok(Self(Vec::<f64>::try_from(&flat)?.into_iter()))
    }

    /// The next scalar part.
    pub fn next(&mut self) -> f64 {
        self.0
            .next()
            .expect("the copy holds one value per part, in the order laid out")
    }

    /// The next matrix part, shaped as `matrix` (the device matrix it was made from).
    pub fn rows(&mut self, matrix: &Tensor) -> Vec<Vec<f32>> {
        let size = matrix.size();
        let (rows, columns) = (size[0] as usize, size[1] as usize);
        (0..rows)
            .map(|_| (0..columns).map(|_| self.next() as f32).collect())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train_step::{to_rows, StepTensors};
    use prime_core::metrics::MetricKind;

    fn device_step(seed: i64, with_fimt: bool) -> DeviceStep {
        tch::manual_seed(seed);
        let options = (Kind::Float, Device::Cpu);
        DeviceStep {
            record: MetricRecord::new(MetricKind::Step, 0, seed as u64, 0.5).with("lr", 0.025),
            values: vec![("alpha_loss", Tensor::randn([], options))],
            loss: Tensor::randn([], options),
            correct: Tensor::from(seed * 3),
            count: 16,
            fimt: with_fimt.then(|| Tensor::randn([], options).abs() * 1e6),
            alphas: [
                Tensor::randn([14, 8], options).softmax(-1, Kind::Float),
                Tensor::randn([14, 8], options).softmax(-1, Kind::Float),
            ],
        }
    }

    /// The values of one step read one by one, as the search read them before.
    fn read_each(step: &DeviceStep) -> HostStep {
        let tensors = StepTensors {
            loss: step.loss.shallow_clone(),
            correct: step.correct.shallow_clone(),
            count: step.count,
        };
        let (loss, correct) = tensors.host();
        let mut record = step.record.clone();
        for (name, value) in &step.values {
            record = record.with(name, value.double_value(&[]));
        }
        HostStep {
            record,
            loss,
            correct,
            count: step.count,
            fimt: step.fimt.as_ref().map(|fimt| fimt.double_value(&[])),
            alphas: step.alphas.each_ref().map(to_rows),
        }
    }

    #[test]
    fn one_read_back_gives_exactly_the_values_of_reads_per_step() {
        let mut pending = PendingSteps::default();
        let steps: Vec<DeviceStep> = (1..=5)
            .map(|seed| device_step(seed, seed % 2 == 0))
            .collect();
        let expected: Vec<HostStep> = steps.iter().map(read_each).collect();
        for step in steps {
            pending.push(step);
        }
        assert_eq!(pending.len(), 5);
        let host = pending.read_back().unwrap();
        assert_eq!(host, expected);
        assert_eq!(pending.read_backs(), 1);
        assert_eq!(pending.len(), 0);
    }

    #[test]
    fn nothing_held_back_makes_no_copy() {
        let mut pending = PendingSteps::default();
        assert!(pending.read_back().unwrap().is_empty());
        assert_eq!(pending.read_backs(), 0);
    }
}
