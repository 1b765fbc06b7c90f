//! Evaluation training as a task of the run driver: a training step with keyed drop-path
//! masks, a step record every `report_every` steps, and per epoch the test pass, the best
//! weights so far and the epoch record; at the end the final weights and `test.json`.

use super::trainer::{network_shape, EvalTrainer};
use super::EvalOutcome;
use crate::cnn::eval_cost::{multiply_accumulates, ParameterCounts};
use crate::data::{
    batches_per_pass, load_cifar, BatchStream, CifarData, DeviceBatches, StreamConfig, StreamId,
    StreamPosition, IMAGE_SIDE,
};
use crate::error::RunError;
use crate::keyed::splitmix64;
use crate::optim::{self, OptimError};
use crate::parallel::rank::{DataParallel, Shard};
use crate::run::files::{write_text, write_weights};
use crate::run::genotype::write_genotype;
use crate::run::layout::{BEST_WEIGHTS, FINAL_WEIGHTS, TEST_REPORT};
use crate::run::{At, Histories, Plan, RunOptions, Saved, Sink, Step, Task, TensorGroups};
use crate::train_step::StepTensors;
use prime_core::config::LayeredConfig;
use prime_core::eval_config::EvalConfig;
use prime_core::metrics::{MetricKind, MetricRecord};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Mixed into the seed of every training step's drop-path masks.
const DROP_PATH_DOMAIN: u64 = 0x6472_6f70_7061_7468;

/// The evaluation's part of a checkpoint. Floats are stored as decimal strings that read
/// back to the same bits (serde_json's number parser may not).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalState {
    step_in_epoch: u64,
    #[serde(with = "crate::run::exact_float")]
    train_loss_sum: f64,
    #[serde(with = "crate::run::exact_float")]
    train_correct: f64,
    train_count: u64,
    #[serde(with = "crate::run::exact_float")]
    train_seconds: f64,
    #[serde(with = "crate::run::exact_float::optional")]
    test_acc: Option<f64>,
    #[serde(with = "crate::run::exact_float::optional")]
    test_loss: Option<f64>,
    #[serde(with = "crate::run::exact_float::optional")]
    best_test_acc: Option<f64>,
    best_epoch: Option<u32>,
}

/// The training loss and correct count of the epoch so far, summed on the device in float64
/// so that a step needs no synchronisation.
struct EpochSums {
    loss: Tensor,
    correct: Tensor,
    count: u64,
}

impl EpochSums {
    fn new(loss: f64, correct: f64, count: u64, device: Device) -> Self {
        Self {
            loss: Tensor::from(loss).to_device(device),
            correct: Tensor::from(correct).to_device(device),
            count,
        }
    }

    /// Adds a training step, whose loss is the batch mean.
    fn add(&mut self, step: &StepTensors) {
        let loss = step.loss.to_kind(Kind::Double) * step.count as f64;
        self.loss += loss;
        self.correct += step.correct.to_kind(Kind::Double);
        self.count += step.count as u64;
    }

    /// Adds a data-parallel step: the sums over the ranks of loss x rows and of correct
    /// predictions, over `count` rows.
    fn add_sums(&mut self, loss_sum: f64, correct: f64, count: u64) {
        self.loss += loss_sum;
        self.correct += correct;
        self.count += count;
    }

    /// (loss sum, correct count): one synchronisation.
    fn host(&self) -> (f64, f64) {
        let both = Tensor::stack(&[&self.loss, &self.correct], 0).to_device(Device::Cpu);
        (both.double_value(&[0]), both.double_value(&[1]))
    }
}

/// The epoch under way: its stream, sums and clocks.
struct Epoch {
    stream: DeviceBatches,
    lr: f64,
    drop_prob: f64,
    sums: EpochSums,
    /// Start of the training time not yet added to `train_seconds`.
    clock: Instant,
    /// When the last step record was written, and the images counted then.
    report: (Instant, u64),
}

/// A CIFAR evaluation run.
pub struct EvalTask<'a> {
    config: &'a EvalConfig,
    device: Device,
    data: CifarData,
    train_count: usize,
    test_count: usize,
    steps_per_epoch: u64,
    trainer: EvalTrainer,
    params: ParameterCounts,
    macs: i64,
    state: EvalState,
    epoch: Option<Epoch>,
    ranks: Option<DataParallel>,
}

impl<'a> EvalTask<'a> {
    /// Validates the config, loads the data and builds the network.
    pub fn new(config: &'a EvalConfig, options: &RunOptions) -> Result<Self, RunError> {
        Self::build(config, options, None)
    }

    /// One rank of a data-parallel evaluation on `data` (read once for all ranks): as
    /// [`EvalTask::new`], then takes rank 0's initial weights; every step trains on this
    /// rank's shard of the global batch.
    pub fn new_rank(
        config: &'a EvalConfig,
        options: &RunOptions,
        ranks: DataParallel,
        data: CifarData,
    ) -> Result<Self, RunError> {
        Self::build(config, options, Some((ranks, data)))
    }

    fn build(
        config: &'a EvalConfig,
        options: &RunOptions,
        rank: Option<(DataParallel, CifarData)>,
    ) -> Result<Self, RunError> {
        config.validate("evaluation config")?;
        let (mut ranks, data) = match rank {
            Some((ranks, data)) => (Some(ranks), data),
            None => (
                None,
                load_cifar(&options.data_dir, config.data.dataset, options.download)?,
            ),
        };
        let limit = |available: usize| config.data.limit.unwrap_or(available).min(available);
        let train_count = limit(data.train.len());
        let test_count = limit(data.test.len());
        let batch_size = config.data.batch_size;
        let steps_per_epoch = batches_per_pass(train_count, batch_size) as u64;
        if steps_per_epoch == 0 || test_count == 0 {
            return Err(RunError::Unsupported(format!(
                "{}: {train_count} training and {test_count} test images; both sets need at \
                 least one",
                options.data_dir.display()
            )));
        }
        let (world, fewest) = fewest_rows(ranks.as_ref(), train_count, batch_size);
        if fewest == 0 {
            return Err(RunError::Unsupported(format!(
                "{train_count} training images in batches of {batch_size} over {world} ranks \
                 leave a rank without an image in some batch; change data.batch_size, \
                 data.limit or the number of devices"
            )));
        }
        if config.network.auxiliary && fewest == 1 {
            return Err(RunError::Unsupported(format!(
                "{train_count} training images in batches of {batch_size} over {world} rank(s) \
                 give a rank a batch of a single image, but the auxiliary head's batch norm \
                 over 1x1 maps needs at least two images in training; change data.batch_size \
                 or data.limit"
            )));
        }
        let mut trainer = EvalTrainer::new(config, options.device)?;
        if let Some(ranks) = &mut ranks {
            trainer.take_rank0_weights(ranks)?;
        }
        let params = trainer.parameter_counts();
        let macs =
            multiply_accumulates(&network_shape(config), &config.genotype, IMAGE_SIDE as i64);
        Ok(Self {
            config,
            device: options.device,
            data,
            train_count,
            test_count,
            steps_per_epoch,
            trainer,
            params,
            macs,
            state: EvalState {
                step_in_epoch: 0,
                train_loss_sum: 0.0,
                train_correct: 0.0,
                train_count: 0,
                train_seconds: 0.0,
                test_acc: None,
                test_loss: None,
                best_test_acc: None,
                best_epoch: None,
            },
            epoch: None,
            ranks,
        })
    }

    /// The weights' cosine-annealed learning rate of `epoch`.
    fn learning_rate(&self, epoch: u32) -> Result<f64, OptimError> {
        let (weights, epochs) = (&self.config.weights, self.config.epochs as usize);
        let offset = weights.lr_offset as usize;
        optim::cosine_lr(weights.lr, weights.lr_min, epochs, epoch as usize, offset)
    }

    fn outcome(&self, finished: bool, epochs_done: u32) -> EvalOutcome {
        EvalOutcome {
            finished,
            epochs_done,
            test_acc: self.state.test_acc,
            test_error: self.state.test_acc.map(|acc| 100.0 - acc),
            test_loss: self.state.test_loss,
            best_test_acc: self.state.best_test_acc,
            params: self.params,
            macs: self.macs,
        }
    }

    /// Eval-mode mean loss and top-1 accuracy (%) over the first `test_count` test images,
    /// in order, with the test transform.
    fn test_pass(&mut self) -> Result<(f64, f64), RunError> {
        let stream_config = StreamConfig::eval(self.config.data.batch_size)
            .with_prefetch(self.config.data.prefetch);
        let stream = BatchStream::spawn(self.data.test.clone(), 0..self.test_count, stream_config)?;
        let mut batches = DeviceBatches::new(stream, self.device);
        let mut sums = EpochSums::new(0.0, 0.0, 0, self.device);
        while let Some(batch) = batches.next_batch() {
            let batch = batch?;
            let shard = Shard::of(&batch.images, &batch.labels, self.ranks.as_ref());
            if shard.rows.is_empty() {
                continue;
            }
            // A test batch's loss is already the batch's sum.
            let step = self.trainer.test_batch(&shard.images, &shard.labels);
            sums.loss += step.loss.to_kind(Kind::Double);
            sums.correct += step.correct.to_kind(Kind::Double);
            sums.count += step.count as u64;
        }
        let (mut loss, mut correct) = sums.host();
        let mut count = sums.count as f64;
        if let Some(ranks) = &mut self.ranks {
            [loss, correct, count] = sum_over_ranks(ranks, [loss, correct, count])?;
        }
        let count = count.max(1.0);
        Ok((loss / count, 100.0 * correct / count))
    }

    /// Writes the test report: pretty JSON, the genotype on one line.
    fn write_report(&self, run_dir: &Path, at: At, outcome: &EvalOutcome) -> Result<(), RunError> {
        let report = serde_json::json!({
            "label": self.config.label,
            "dataset": self.config.data.dataset,
            "seed": self.config.seed,
            "epochs": at.epoch,
            "steps": at.global_step,
            "test_acc": outcome.test_acc,
            "test_error": outcome.test_error,
            "test_loss": outcome.test_loss,
            "best_test_acc": outcome.best_test_acc,
            "best_epoch": self.state.best_epoch,
            "params": outcome.params.network,
            "aux_params": outcome.params.auxiliary,
            "params_m": outcome.params.millions(),
            "macs": outcome.macs,
            "speed": self.config.speed,
        });
        let path = run_dir.join(TEST_REPORT);
        let text = serde_json::to_string_pretty(&report).map_err(|error| {
            RunError::Io(crate::checkpoint::annotate(
                &path,
                std::io::Error::other(error.to_string()),
            ))
        })?;
        let body = text.strip_suffix("\n}").unwrap_or(&text);
        let text = format!(
            "{body},\n  \"genotype\": {}\n}}\n",
            self.config.genotype.to_json()
        );
        write_text(&path, &text)
    }
}

impl Task for EvalTask<'_> {
    type State = EvalState;
    type Outcome = EvalOutcome;

    fn plan(&self) -> Result<Plan, RunError> {
        Ok(Plan::new(
            self.config,
            self.data.files(),
            self.steps_per_epoch,
            Histories::MetricsOnly,
        )?)
    }

    fn start(&mut self, sink: &mut Sink) -> Result<(), RunError> {
        match sink.output_dir() {
            Some(dir) => write_genotype(dir, &self.config.genotype),
            None => Ok(()),
        }
    }

    fn restore(&mut self, saved: Saved<EvalState>) -> Result<(), RunError> {
        self.trainer.restore(saved.checkpoint, saved.path)?;
        self.state = saved.state;
        Ok(())
    }

    fn begin_epoch(&mut self, at: At, _sink: &mut Sink) -> Result<(), RunError> {
        let config = self.config;
        let lr = self.learning_rate(at.epoch)?;
        let mut stream_config = StreamConfig::per_epoch(
            config.seed,
            u64::from(at.epoch),
            StreamId::WEIGHTS,
            config.data.batch_size,
        )
        .starting_at(StreamPosition {
            pass: 0,
            batch: self.state.step_in_epoch,
        })
        .with_prefetch(config.data.prefetch);
        if config.data.cutout {
            stream_config = stream_config.with_cutout(config.data.cutout_length);
        }
        let stream = DeviceBatches::new(
            BatchStream::spawn(self.data.train.clone(), 0..self.train_count, stream_config)?,
            self.device,
        );
        let sums = EpochSums::new(
            self.state.train_loss_sum,
            self.state.train_correct,
            self.state.train_count,
            self.device,
        );
        let report = (Instant::now(), sums.count);
        self.epoch = Some(Epoch {
            stream,
            lr,
            drop_prob: config.drop_path_at(at.epoch),
            sums,
            clock: Instant::now(),
            report,
        });
        Ok(())
    }

    fn train_step(&mut self, at: At, sink: &mut Sink) -> Result<Step, RunError> {
        let epoch = self.epoch.as_mut().expect("begin_epoch opens the epoch");
        let Some(batch) = epoch.stream.next_batch() else {
            return Ok(Step::EpochDone);
        };
        let batch = batch?;
        let step = self.trainer.train_step(
            &batch.images,
            &batch.labels,
            epoch.lr,
            epoch.drop_prob,
            drop_path_key(self.config.seed, at.global_step),
            self.ranks.as_mut(),
        )?;
        match &mut self.ranks {
            Some(ranks) => {
                let (loss, correct) = step.host();
                let count = step.count as f64;
                let [loss_sum, correct, count] =
                    sum_over_ranks(ranks, [loss * count, correct, count])?;
                epoch.sums.add_sums(loss_sum, correct, count as u64);
            }
            None => epoch.sums.add(&step),
        }
        let step_number = at.global_step + 1;
        self.state.step_in_epoch += 1;
        if step_number.is_multiple_of(u64::from(self.config.report_every)) {
            let (loss_sum, correct) = epoch.sums.host();
            let count = epoch.sums.count as f64;
            let loss = loss_sum / count;
            RunError::check_finite("training loss", loss, at.epoch, step_number)?;
            let images = (epoch.sums.count - epoch.report.1) as f64;
            let record = MetricRecord::new(
                MetricKind::Step,
                at.epoch,
                step_number,
                step_number as f64 / self.steps_per_epoch as f64,
            )
            .with("lr", epoch.lr)
            .with("drop_path_prob", epoch.drop_prob)
            .with("loss", loss)
            .with("acc", 100.0 * correct / count)
            .with(
                "images_per_s",
                images / epoch.report.0.elapsed().as_secs_f64().max(1e-9),
            );
            sink.metric(&record)?;
            epoch.report = (Instant::now(), epoch.sums.count);
        }
        Ok(Step::Trained)
    }

    fn end_epoch(&mut self, at: At, sink: &mut Sink) -> Result<(), RunError> {
        let epoch = self.epoch.take().expect("begin_epoch opens the epoch");
        drop(epoch.stream);
        self.state.train_seconds += epoch.clock.elapsed().as_secs_f64();
        let (loss_sum, correct) = epoch.sums.host();
        let count = epoch.sums.count.max(1) as f64;
        let train_loss = loss_sum / count;
        RunError::check_finite("training loss", train_loss, at.epoch, at.global_step)?;
        let (test_loss, test_acc) = self.test_pass()?;
        let state = &mut self.state;
        state.test_loss = Some(test_loss);
        state.test_acc = Some(test_acc);
        if state.best_test_acc.is_none_or(|best| test_acc > best) {
            state.best_test_acc = Some(test_acc);
            state.best_epoch = Some(at.epoch);
            if let Some(dir) = sink.output_dir() {
                write_weights(&dir.join(BEST_WEIGHTS), &self.trainer.variables())?;
            }
        }
        let record = MetricRecord::new(
            MetricKind::Epoch,
            at.epoch,
            at.global_step,
            at.global_step as f64 / self.steps_per_epoch as f64,
        )
        .with("lr", epoch.lr)
        .with("drop_path_prob", epoch.drop_prob)
        .with("train_loss", train_loss)
        .with("train_acc", 100.0 * correct / count)
        .with("test_loss", test_loss)
        .with("test_acc", test_acc)
        .with("test_error", 100.0 - test_acc)
        .with("seconds", state.train_seconds)
        .with(
            "images_per_s",
            epoch.sums.count as f64 / state.train_seconds.max(1e-9),
        );
        sink.metric(&record)?;
        state.step_in_epoch = 0;
        state.train_loss_sum = 0.0;
        state.train_correct = 0.0;
        state.train_count = 0;
        state.train_seconds = 0.0;
        Ok(())
    }

    fn checkpoint(&mut self, groups: &mut TensorGroups) -> Result<EvalState, RunError> {
        if let Some(epoch) = &mut self.epoch {
            self.state.train_seconds += epoch.clock.elapsed().as_secs_f64();
            epoch.clock = Instant::now();
            let (loss_sum, correct) = epoch.sums.host();
            self.state.train_loss_sum = loss_sum;
            self.state.train_correct = correct;
            self.state.train_count = epoch.sums.count;
        }
        self.trainer.checkpoint_groups(groups)?;
        Ok(self.state.clone())
    }

    fn data_parallel(&mut self) -> Option<&mut DataParallel> {
        self.ranks.as_mut()
    }

    fn stopped(&mut self, epochs_done: u32) -> Result<EvalOutcome, RunError> {
        Ok(self.outcome(false, epochs_done))
    }

    fn finish(&mut self, at: At, sink: &mut Sink) -> Result<EvalOutcome, RunError> {
        let outcome = self.outcome(true, at.epoch);
        let Some(dir) = sink.output_dir().map(Path::to_path_buf) else {
            return Ok(outcome);
        };
        write_weights(&dir.join(FINAL_WEIGHTS), &self.trainer.variables())?;
        let params = self.params;
        let mut record = MetricRecord::new(
            MetricKind::Final,
            at.epoch,
            at.global_step,
            f64::from(at.epoch),
        )
        .with("params", params.network as f64)
        .with("aux_params", params.auxiliary as f64)
        .with("params_m", params.millions())
        .with("macs", self.macs as f64);
        if let (Some(acc), Some(loss)) = (self.state.test_acc, self.state.test_loss) {
            record = record
                .with("test_acc", acc)
                .with("test_error", 100.0 - acc)
                .with("test_loss", loss);
        }
        if let Some(best) = self.state.best_test_acc {
            record = record.with("best_test_acc", best);
        }
        sink.metric(&record)?;
        self.write_report(&dir, at, &outcome)?;
        Ok(outcome)
    }
}

/// The number of ranks and the fewest training images any rank gets in a batch (of full
/// batches of `batch_size` and the epoch's last, partial one).
fn fewest_rows(
    ranks: Option<&DataParallel>,
    train_count: usize,
    batch_size: usize,
) -> (usize, usize) {
    let world = ranks.map_or(1, DataParallel::world_size);
    let last = train_count % batch_size;
    let fewest = |rows: usize| rows / world;
    let batch = fewest(batch_size.min(train_count));
    let fewest = if last == 0 {
        batch
    } else {
        batch.min(fewest(last))
    };
    (world, fewest)
}

/// `values` summed over the ranks (through float32, as every collective).
fn sum_over_ranks<const N: usize>(
    ranks: &mut DataParallel,
    values: [f64; N],
) -> Result<[f64; N], RunError> {
    let mut buffer = values.map(|value| value as f32);
    ranks.sum(&mut buffer)?;
    Ok(buffer.map(f64::from))
}

/// The key of the drop-path masks of global training step `step`: the masks are a function of
/// (seed, step), so a resumed run draws the same ones without any generator state in the
/// checkpoint (and without libtorch's global generator, which other threads may share).
fn drop_path_key(seed: u64, step: u64) -> u64 {
    splitmix64(splitmix64(seed ^ DROP_PATH_DOMAIN) ^ step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_path_keys_differ_by_step_and_seed_and_repeat() {
        assert_eq!(drop_path_key(0, 5), drop_path_key(0, 5));
        assert_ne!(drop_path_key(0, 5), drop_path_key(0, 6));
        assert_ne!(drop_path_key(0, 5), drop_path_key(1, 5));
        assert_ne!(drop_path_key(1, 0), drop_path_key(0, 1));
    }

    #[test]
    fn state_floats_survive_the_checkpoint_json_bit_for_bit() {
        let state = EvalState {
            step_in_epoch: 2,
            train_loss_sum: 0.3 * 3.0 / 4.0,
            train_correct: 1.0 / 3.0,
            train_count: 4,
            train_seconds: 1e-300,
            test_acc: Some(22.916666666666668),
            test_loss: None,
            best_test_acc: Some(f64::MAX),
            best_epoch: Some(0),
        };
        let back: EvalState = crate::run::driver::saved_state_round_trip(&state);
        assert_eq!(
            back.train_loss_sum.to_bits(),
            state.train_loss_sum.to_bits()
        );
        assert_eq!(back.train_correct.to_bits(), state.train_correct.to_bits());
        assert_eq!(back.train_seconds.to_bits(), state.train_seconds.to_bits());
        assert_eq!(back.test_acc, state.test_acc);
        assert_eq!(back.test_loss, None);
        assert_eq!(back.best_test_acc, state.best_test_acc);
    }
}
