//! Weight steps of the recurrent search whose device values are held back and read to the
//! host together (`speed.read_back_every`): one device-to-host copy for any number of steps,
//! with exactly the values a read per step gives (the parts of the CNN search's
//! [`crate::search::pending`]).

use crate::search::pending::{matrix_part, scalar_part, HostValues};
use prime_core::metrics::MetricRecord;
use tch::Tensor;

/// One weight step (with its alpha step, if any) whose values are still on the device.
#[derive(Debug)]
pub(crate) struct DeviceStep {
    /// The record with the values known on the host already (lr, seq_len, flags, threshold).
    pub record: MetricRecord,
    /// Named 0-d device values to add to the record (alpha loss, regularizer, grad norm,
    /// pruned count).
    pub values: Vec<(&'static str, Tensor)>,
    /// Mean NLL of the weight step's batch.
    pub loss: Tensor,
    /// The weight step's FIMT, when the schedule does not need it on the host at once.
    pub fimt: Option<Tensor>,
    /// act(alpha) after the step, (36, P).
    pub alphas: Tensor,
}

/// A [`DeviceStep`] read back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HostStep {
    /// The record with the named device values added.
    pub record: MetricRecord,
    /// Mean NLL of the weight step's batch.
    pub loss: f64,
    /// The FIMT, when it was held back.
    pub fimt: Option<f64>,
    /// act(alpha) as host rows.
    pub alphas: Vec<Vec<f32>>,
}

/// The steps held back since the last read-back.
#[derive(Debug, Default)]
pub(crate) struct PendingSteps {
    steps: Vec<DeviceStep>,
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
            for (_, value) in &step.values {
                parts.push(scalar_part(value));
            }
            if let Some(fimt) = &step.fimt {
                parts.push(scalar_part(fimt));
            }
            parts.push(matrix_part(&step.alphas));
        }
        let mut values = HostValues::copy(&parts)?;
        Ok(steps
            .into_iter()
            .map(|step| {
                let loss = values.next();
                let mut record = step.record;
                for (name, _) in &step.values {
                    record = record.with(name, values.next());
                }
                HostStep {
                    record,
                    loss,
                    fimt: step.fimt.as_ref().map(|_| values.next()),
                    alphas: values.rows(&step.alphas),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train_step::to_rows;
    use prime_core::metrics::MetricKind;
    use tch::{Device, Kind};

    fn device_step(seed: i64, with_fimt: bool) -> DeviceStep {
        tch::manual_seed(seed);
        let options = (Kind::Float, Device::Cpu);
        DeviceStep {
            record: MetricRecord::new(MetricKind::Step, 0, seed as u64, 0.5).with("lr", 20.0),
            values: vec![
                ("alpha_loss", Tensor::randn([], options)),
                ("pruned", Tensor::from(seed * 7)),
            ],
            loss: Tensor::randn([], options),
            fimt: with_fimt.then(|| Tensor::randn([], options).abs() * 1e6),
            alphas: Tensor::randn([36, 5], options).softmax(-1, Kind::Float),
        }
    }

    /// The values of one step read one by one, as the search read them before.
    fn read_each(step: &DeviceStep) -> HostStep {
        let mut record = step.record.clone();
        for (name, value) in &step.values {
            record = record.with(name, value.double_value(&[]));
        }
        HostStep {
            record,
            loss: step.loss.double_value(&[]),
            fimt: step.fimt.as_ref().map(|fimt| fimt.double_value(&[])),
            alphas: to_rows(&step.alphas),
        }
    }

    #[test]
    fn one_read_back_gives_exactly_the_values_of_reads_per_step() {
        let mut pending = PendingSteps::default();
        let steps: Vec<DeviceStep> = (1..=4)
            .map(|seed| device_step(seed, seed % 2 == 1))
            .collect();
        let expected: Vec<HostStep> = steps.iter().map(read_each).collect();
        for step in steps {
            pending.push(step);
        }
        assert_eq!(pending.len(), 4);
        assert_eq!(pending.read_back().unwrap(), expected);
        assert_eq!(pending.len(), 0);
        assert!(pending.read_back().unwrap().is_empty());
    }
}
