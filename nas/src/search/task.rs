//! The CNN search as a task of the run driver: per weight step the alpha step the schedule
//! decides (first or second order, with the regularizer's term), the weight step and its
//! FIMT, the step's metrics and alphas; per epoch the inference pass over the alpha split.

use super::pending::{DeviceStep, HostStep, PendingSteps};
use super::regularizer::ArchRegularizer;
use super::schedule::{AlphaSchedule, ScheduleState};
use super::trainer::SearchTrainer;
use super::{current_genotype, AlphaRecord, SearchOutcome};
use crate::data::{
    batches_per_pass, copy_to_device, load_cifar, split_by_portion, BatchStream, CifarData,
    DataError, DeviceBatches, Split, StreamConfig, StreamId, StreamPosition,
};
use crate::error::RunError;
use crate::optim::{self, OptimError};
use crate::parallel::rank::{DataParallel, Shard};
use crate::run::genotype::write_genotype;
use crate::run::layout::SUMMARY_FILE;
use crate::run::{files, At, Histories, Plan, RunOptions, Saved, Sink, Step, Task, TensorGroups};
use crate::train_step::StepTensors;
use prime_core::config::{
    AlphaBatchPolicy, ArchOrder, Compat, LayeredConfig, ScheduleKind, SearchConfig,
};
use prime_core::genotype::projection::{frobenius_distance, project_cell};
use prime_core::metrics::{MetricKind, MetricRecord};
use prime_core::primitives::Activation;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

/// The search's part of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchState {
    step_in_epoch: u64,
    clock: f64,
    alpha_position: StreamPosition,
    schedule: ScheduleState,
    alpha_steps_in_epoch: u64,
    /// Alpha steps since the run began (0 in checkpoints written before it was counted).
    #[serde(default)]
    alpha_steps_total: u64,
    /// Whether this epoch's genotype line is written: a checkpoint at an epoch's first step
    /// boundary must not make the resumed run write it twice.
    #[serde(default)]
    epoch_genotype_written: bool,
    alpha_counter: u64,
    last_alpha_loss: f64,
    train_loss_sum: f64,
    train_correct: f64,
    train_count: f64,
    valid_acc: Option<f64>,
    valid_loss: Option<f64>,
}

/// The data streams of the epoch under way; the weight batches are copied to the device one
/// ahead, the alpha batches when an alpha step takes one (its stream position is saved).
struct EpochStreams {
    weights: DeviceBatches,
    alpha: BatchStream,
    lr: f64,
}

/// A CNN search run.
pub struct SearchTask<'a> {
    config: &'a SearchConfig,
    device: Device,
    data: CifarData,
    split: Split,
    steps_per_epoch: u64,
    trainer: SearchTrainer,
    regularizer: ArchRegularizer,
    schedule: AlphaSchedule,
    state: SearchState,
    streams: Option<EpochStreams>,
    /// Steps whose records wait for the next read-back.
    pending: PendingSteps,
    ranks: Option<DataParallel>,
}

impl<'a> SearchTask<'a> {
    /// Validates the config, loads the data and builds the network.
    pub fn new(config: &'a SearchConfig, options: &RunOptions) -> Result<Self, RunError> {
        Self::build(config, options, None)
    }

    /// One rank of a data-parallel search on `data` (read once for all ranks): as
    /// [`SearchTask::new`], then takes rank 0's weights and alphas; every weight and alpha
    /// step uses this rank's shard of the global batch and the gradients of the whole batch,
    /// so every rank takes the same steps and the same FIMT decisions. First-order alpha
    /// steps only.
    pub fn new_rank(
        config: &'a SearchConfig,
        options: &RunOptions,
        ranks: DataParallel,
        data: CifarData,
    ) -> Result<Self, RunError> {
        Self::build(config, options, Some((ranks, data)))
    }

    fn build(
        config: &'a SearchConfig,
        options: &RunOptions,
        rank: Option<(DataParallel, CifarData)>,
    ) -> Result<Self, RunError> {
        let (mut ranks, data) = match rank {
            Some((ranks, data)) => (Some(ranks), Some(data)),
            None => (None, None),
        };
        config.validate("search config")?;
        if let Some(ranks) = &ranks {
            if config.arch.order == ArchOrder::Second && ranks.world_size() > 1 {
                return Err(RunError::Unsupported(
                    "arch.order = \"second\" (the unrolled alpha step) runs on one device only; \
                     use one device or arch.order = \"first\""
                        .to_string(),
                ));
            }
        }
        let data = match data {
            Some(data) => data,
            None => load_cifar(&options.data_dir, config.data.dataset, options.download)?,
        };
        let available = config
            .data
            .limit
            .unwrap_or(data.train.len())
            .min(data.train.len());
        let split = split_by_portion(available, config.weight_portion())?;
        let steps_per_epoch = batches_per_pass(split.train.len(), config.data.batch_size) as u64;
        if steps_per_epoch == 0 || split.valid.is_empty() {
            return Err(RunError::Unsupported(format!(
                "config: {available} training images leave an empty weight or alpha split at \
                 portion {}",
                config.weight_portion()
            )));
        }
        if let Some(ranks) = &ranks {
            let batch_size = config.data.batch_size;
            let smallest = |count: usize| match count % batch_size {
                0 => batch_size.min(count),
                last => last.min(batch_size),
            };
            let fewest = ranks
                .fewest_rows(smallest(split.train.len()))
                .min(ranks.fewest_rows(smallest(split.valid.len())));
            if fewest == 0 {
                return Err(RunError::Unsupported(format!(
                    "{} weight and {} alpha images in batches of {batch_size} over {} ranks \
                     leave a rank without an image in some batch; change data.batch_size, \
                     data.limit or the number of devices",
                    split.train.len(),
                    split.valid.len(),
                    ranks.world_size()
                )));
            }
        }
        let classes = config.data.dataset.classes() as i64;
        crate::cudnn::set_benchmark(options.device, config.speed.cudnn_benchmark);
        let mut trainer = SearchTrainer::new(config, classes, options.device)?;
        if let Some(ranks) = &mut ranks {
            trainer.take_rank0_weights(ranks)?;
        }
        let regularizer = ArchRegularizer::new(config, trainer.arch())?;
        let schedule = AlphaSchedule::new(&config.schedule, config.compat);
        let state = SearchState {
            step_in_epoch: 0,
            clock: 0.0,
            alpha_position: StreamPosition::START,
            schedule: schedule.state,
            alpha_steps_in_epoch: 0,
            alpha_steps_total: 0,
            epoch_genotype_written: false,
            alpha_counter: 0,
            last_alpha_loss: 0.0,
            train_loss_sum: 0.0,
            train_correct: 0.0,
            train_count: 0.0,
            valid_acc: None,
            valid_loss: None,
        };
        Ok(Self {
            config,
            device: options.device,
            data,
            split,
            steps_per_epoch,
            trainer,
            regularizer,
            schedule,
            state,
            streams: None,
            pending: PendingSteps::default(),
            ranks,
        })
    }

    fn alpha_record(&self, step: u64) -> AlphaRecord {
        let (normal, reduce) = self.trainer.arch().activated_rows();
        AlphaRecord {
            step,
            clock: self.state.clock,
            normal,
            reduce,
        }
    }

    /// The discretization distances of the alphas `alphas`.
    fn with_alpha_distances(
        &self,
        record: MetricRecord,
        alphas: &AlphaRecord,
    ) -> Result<MetricRecord, RunError> {
        let primitives = self.trainer.arch().activation.primitives();
        let distance = |rows: &[Vec<f32>]| {
            project_cell(rows, primitives)
                .map(|projection| frobenius_distance(rows, &projection.z))
                .map_err(|error| RunError::Projection(error.to_string()))
        };
        Ok(record
            .with("dist_normal", distance(&alphas.normal)?)
            .with("dist_reduce", distance(&alphas.reduce)?))
    }

    /// Under CRB, the pruned counts of the current alphas (a read of the masks).
    fn with_pruned_counts(&self, record: MetricRecord) -> MetricRecord {
        if self.config.arch.activation != Activation::Crb {
            return record;
        }
        let (pruned_normal, pruned_reduce) = self.trainer.arch().pruned_counts();
        record
            .with("pruned_normal", pruned_normal as f64)
            .with("pruned_reduce", pruned_reduce as f64)
    }

    /// The alpha step the schedule asked for; adds its flags to `record` and its losses to
    /// `values` (they stay on the device until the next read-back).
    fn alpha_step(
        &mut self,
        batch: &crate::data::Batch,
        lr: f64,
        record: MetricRecord,
        values: &mut Vec<(&'static str, Tensor)>,
    ) -> Result<MetricRecord, RunError> {
        let streams = self
            .streams
            .as_mut()
            .expect("streams exist within an epoch");
        let alpha_batch = streams
            .alpha
            .next_batch()
            .ok_or_else(|| DataError::Worker("the alpha stream ended".to_string()))??;
        let alpha_batch = copy_to_device(&alpha_batch, self.device);
        let extra = self
            .regularizer
            .loss(self.trainer.arch(), self.state.clock)?;
        let extra_value = extra.as_ref().map(Tensor::detach);
        let arch = match self.config.arch.order {
            ArchOrder::First => {
                let ranks = self.ranks.as_mut();
                let step = self.trainer.arch_step(
                    &alpha_batch.images,
                    &alpha_batch.labels,
                    extra,
                    ranks,
                )?;
                self.global_step_tensors(step)?
            }
            ArchOrder::Second => self.trainer.arch_step_unrolled(
                (&batch.images, &batch.labels),
                (&alpha_batch.images, &alpha_batch.labels),
                lr,
                extra,
            )?,
        };
        self.state.alpha_steps_in_epoch += 1;
        self.state.alpha_steps_total += 1;
        values.push(("alpha_loss", arch.loss));
        let mut record = record.with("alpha_step", 1.0);
        if let Some(value) = extra_value {
            values.push(("regularizer", value));
        }
        if self.regularizer.after_alpha_step(self.trainer.arch())? {
            record = record.with("zu_step", 1.0);
        }
        if self.config.compat == Compat::Fixed {
            self.trainer.mask_alphas(true)?;
        }
        Ok(record)
    }

    /// Reads the steps held back to the host (one copy) and writes their records in order:
    /// the running sums, the EWMA of FIMTs held back, the alpha history and its distances. A
    /// non-finite loss stops the run here, naming its step.
    fn read_back(&mut self, sink: &mut Sink) -> Result<(), RunError> {
        // A failed copy is libtorch's error, as in the optimizers' reads.
        for step in self.pending.read_back().map_err(OptimError::from)? {
            let HostStep {
                mut record,
                loss,
                correct,
                count,
                fimt,
                alphas: [normal, reduce],
            } = step;
            RunError::check_finite("loss", loss, record.epoch, record.step)?;
            if let Some(alpha_loss) = record.get("alpha_loss") {
                self.state.last_alpha_loss = alpha_loss;
            }
            if let Some(fimt) = fimt {
                let ewma = self.schedule.observe_fimt(fimt);
                record = record.with("fimt", fimt).with("fimt_ewma", ewma);
            }
            let count = count as f64;
            self.state.train_loss_sum += loss * count;
            self.state.train_correct += correct;
            self.state.train_count += count;
            let alphas = AlphaRecord {
                step: record.step,
                clock: record.clock,
                normal,
                reduce,
            };
            let record = record
                .with("loss", loss)
                .with("acc", 100.0 * correct / count);
            sink.metric(&self.with_alpha_distances(record, &alphas)?)?;
            sink.alphas(&alphas)?;
        }
        Ok(())
    }

    /// Eval-mode mean loss and top-1 accuracy (%) over the alpha split, which uses the
    /// training transform as in the reference (SPEC A18).
    fn infer(&mut self, epoch: u32) -> Result<(f64, f64), RunError> {
        let stream_config = StreamConfig::per_epoch(
            self.config.seed,
            u64::from(epoch),
            StreamId::ALPHA_INFERENCE,
            self.config.data.batch_size,
        )
        .with_prefetch(self.config.data.prefetch);
        let mut stream = DeviceBatches::new(
            BatchStream::spawn(
                self.data.train.clone(),
                self.split.valid.clone(),
                stream_config,
            )?,
            self.device,
        );
        let mut loss_sum: Option<Tensor> = None;
        let mut correct_sum: Option<Tensor> = None;
        let mut count = 0usize;
        while let Some(batch) = stream.next_batch() {
            let batch = batch?;
            let shard = Shard::of(&batch.images, &batch.labels, self.ranks.as_ref());
            if shard.rows.is_empty() {
                continue;
            }
            let step = self.trainer.infer(&shard.images, &shard.labels);
            count += step.count;
            loss_sum = Some(match loss_sum {
                None => step.loss,
                Some(sum) => sum + step.loss,
            });
            correct_sum = Some(match correct_sum {
                None => step.correct,
                Some(sum) => sum + step.correct,
            });
        }
        let (mut loss, mut correct, mut count) = match (loss_sum, correct_sum) {
            (Some(loss), Some(correct)) => (
                loss.double_value(&[]),
                correct.double_value(&[]),
                count as f64,
            ),
            _ => (0.0, 0.0, 0.0),
        };
        if let Some(ranks) = &mut self.ranks {
            let mut sums = [loss as f32, correct as f32, count as f32];
            ranks.sum(&mut sums)?;
            [loss, correct, count] = sums.map(f64::from);
        }
        if count == 0.0 {
            return Ok((0.0, 0.0));
        }
        Ok((loss / count, 100.0 * correct / count))
    }

    /// A step's loss and correct count over the global batch, as one device computes them:
    /// with `ranks`, the sums over the ranks (one synchronisation); else `step` itself.
    fn global_step_tensors(&mut self, step: StepTensors) -> Result<StepTensors, RunError> {
        let Some(ranks) = &mut self.ranks else {
            return Ok(step);
        };
        let (loss, correct) = step.host();
        let count = step.count as f64;
        let mut sums = [(loss * count) as f32, correct as f32, count as f32];
        ranks.sum(&mut sums)?;
        let [loss_sum, correct, count] = sums.map(f64::from);
        Ok(StepTensors {
            loss: Tensor::from(loss_sum / count),
            correct: Tensor::from(correct),
            count: count as usize,
        })
    }

    /// The weights' cosine-annealed learning rate of `epoch`.
    fn learning_rate(&self, epoch: u32) -> Result<f64, OptimError> {
        let (weights, epochs) = (&self.config.weights, self.config.epochs as usize);
        let offset = weights.lr_offset as usize;
        optim::cosine_lr(weights.lr, weights.lr_min, epochs, epoch as usize, offset)
    }

    fn outcome(&self, finished: bool, epochs_done: u32) -> Result<SearchOutcome, RunError> {
        Ok(SearchOutcome {
            genotype: current_genotype(&self.trainer)?,
            finished,
            epochs_done,
            valid_acc: self.state.valid_acc,
            valid_loss: self.state.valid_loss,
            alpha_steps: self.state.alpha_steps_total,
        })
    }
}

impl Task for SearchTask<'_> {
    type State = SearchState;
    type Outcome = SearchOutcome;

    fn plan(&self) -> Result<Plan, RunError> {
        Ok(Plan::new(
            self.config,
            self.data.files(),
            self.steps_per_epoch,
            Histories::WithAlphas,
        )?)
    }

    fn start(&mut self, sink: &mut Sink) -> Result<(), RunError> {
        sink.alphas(&self.alpha_record(0))
    }

    fn restore(&mut self, saved: Saved<SearchState>) -> Result<(), RunError> {
        let Saved {
            checkpoint,
            path,
            state,
        } = saved;
        self.trainer.restore(checkpoint, path)?;
        crate::checkpoint::restore_named(
            &self.regularizer.state_tensors(),
            checkpoint.group("regularizer"),
            path,
        )?;
        self.regularizer.alpha_counter = state.alpha_counter;
        self.schedule.state = state.schedule;
        self.state = state;
        Ok(())
    }

    fn begin_epoch(&mut self, at: At, sink: &mut Sink) -> Result<(), RunError> {
        let config = self.config;
        let lr = self.learning_rate(at.epoch)?;
        if !self.state.epoch_genotype_written {
            sink.genotype(at.epoch, &current_genotype(&self.trainer)?)?;
            self.state.epoch_genotype_written = true;
        }
        let (seed, epoch, batch_size) = (config.seed, u64::from(at.epoch), config.data.batch_size);
        let weight_config = StreamConfig::per_epoch(seed, epoch, StreamId::WEIGHTS, batch_size)
            .starting_at(StreamPosition {
                pass: 0,
                batch: self.state.step_in_epoch,
            })
            .with_prefetch(config.data.prefetch);
        let alpha_base = match config.arch.batch_policy {
            AlphaBatchPolicy::Persistent => StreamConfig::persistent,
            AlphaBatchPolicy::Random => StreamConfig::fresh_each_batch,
        };
        let alpha_config = alpha_base(seed, epoch, StreamId::ALPHA, batch_size)
            .starting_at(self.state.alpha_position)
            .with_prefetch(config.data.prefetch);
        let train = &self.data.train;
        self.streams = Some(EpochStreams {
            weights: DeviceBatches::new(
                BatchStream::spawn(train.clone(), self.split.train.clone(), weight_config)?,
                self.device,
            ),
            alpha: BatchStream::spawn(train.clone(), self.split.valid.clone(), alpha_config)?,
            lr,
        });
        Ok(())
    }

    fn train_step(&mut self, at: At, sink: &mut Sink) -> Result<Step, RunError> {
        let streams = self
            .streams
            .as_mut()
            .expect("begin_epoch opens the streams");
        let lr = streams.lr;
        let Some(batch) = streams.weights.next_batch() else {
            return Ok(Step::EpochDone);
        };
        let batch = batch?;
        let step_number = at.global_step + 1;
        self.state.clock += 1.0 / self.steps_per_epoch as f64;
        let threshold = self.schedule.state.threshold;
        let alpha_step = self.schedule.decide(self.state.step_in_epoch);
        let mut record =
            MetricRecord::new(MetricKind::Step, at.epoch, step_number, self.state.clock)
                .with("lr", lr);
        let fimt_schedule = self.config.schedule.kind == ScheduleKind::Fimt;
        if fimt_schedule {
            record = record.with("threshold", threshold);
        }
        let mut values = Vec::new();
        if alpha_step {
            record = self.alpha_step(&batch, lr, record, &mut values)?;
        }
        // The FIMT is tracked under every schedule, as the reference logs it (SPEC 8.1).
        let ranks = self.ranks.as_mut();
        let mut step = self
            .trainer
            .weight_step(&batch.images, &batch.labels, lr, true, ranks)?;
        step.tensors = self.global_step_tensors(step.tensors)?;
        self.state.step_in_epoch += 1;
        let mut held_fimt = None;
        if let Some(fimt) = step.fimt {
            if fimt_schedule {
                // The next step's decision compares the EWMA with the threshold on the host:
                // the FIMT schedule's one read per step.
                let fimt = optim::read_scalar(&fimt)?;
                let ewma = self.schedule.observe_fimt(fimt);
                record = record.with("fimt", fimt).with("fimt_ewma", ewma);
            } else {
                held_fimt = Some(fimt);
            }
        }
        self.trainer
            .mask_alphas(self.config.compat == Compat::Fixed)?;
        if self.regularizer.after_weight_step(self.trainer.arch())? {
            record = record.with("zu_step", 1.0);
        }
        self.state.alpha_counter = self.regularizer.alpha_counter;
        let pending = DeviceStep {
            record: self.with_pruned_counts(record),
            values,
            loss: step.tensors.loss,
            correct: step.tensors.correct,
            count: step.tensors.count,
            fimt: held_fimt,
            alphas: self.trainer.arch().activated(),
        };
        self.pending.push(pending);
        if self.pending.len() >= self.config.speed.read_back_every as usize {
            self.read_back(sink)?;
        }
        Ok(Step::Trained)
    }

    fn flush(&mut self, sink: &mut Sink) -> Result<(), RunError> {
        self.read_back(sink)
    }

    fn end_epoch(&mut self, at: At, sink: &mut Sink) -> Result<(), RunError> {
        self.read_back(sink)?;
        let lr = self.streams.take().map_or(0.0, |streams| streams.lr);
        let (valid_loss, valid_acc) = self.infer(at.epoch)?;
        let state = &mut self.state;
        state.valid_loss = Some(valid_loss);
        state.valid_acc = Some(valid_acc);
        let count = state.train_count.max(1.0);
        let record = MetricRecord::new(MetricKind::Epoch, at.epoch, at.global_step, state.clock)
            .with("lr", lr)
            .with("train_loss", state.train_loss_sum / count)
            .with("train_acc", 100.0 * state.train_correct / count)
            .with("valid_loss", valid_loss)
            .with("valid_acc", valid_acc)
            .with("alpha_steps", state.alpha_steps_in_epoch as f64)
            .with("last_alpha_loss", state.last_alpha_loss);
        let alphas = self.alpha_record(at.global_step);
        let record = self.with_pruned_counts(record);
        sink.metric(&self.with_alpha_distances(record, &alphas)?)?;

        let state = &mut self.state;
        state.step_in_epoch = 0;
        state.epoch_genotype_written = false;
        state.alpha_position = StreamPosition::START;
        state.alpha_steps_in_epoch = 0;
        state.train_loss_sum = 0.0;
        state.train_correct = 0.0;
        state.train_count = 0.0;
        Ok(())
    }

    fn checkpoint(&mut self, groups: &mut TensorGroups) -> Result<SearchState, RunError> {
        if let Some(streams) = &self.streams {
            self.state.alpha_position = streams.alpha.next_position();
        }
        self.state.schedule = self.schedule.state;
        self.trainer.checkpoint_groups(groups)?;
        let regularizer = self.regularizer.state_tensors();
        if !regularizer.is_empty() {
            groups.insert("regularizer".to_string(), regularizer);
        }
        Ok(self.state.clone())
    }

    fn data_parallel(&mut self) -> Option<&mut DataParallel> {
        self.ranks.as_mut()
    }

    fn stopped(&mut self, epochs_done: u32) -> Result<SearchOutcome, RunError> {
        self.outcome(false, epochs_done)
    }

    fn finish(&mut self, at: At, sink: &mut Sink) -> Result<SearchOutcome, RunError> {
        let Some(run_dir) = sink.output_dir().map(std::path::Path::to_path_buf) else {
            return self.outcome(true, at.epoch);
        };
        let genotype = current_genotype(&self.trainer)?;
        write_genotype(&run_dir, &genotype)?;
        let mut record = MetricRecord::new(
            MetricKind::Final,
            at.epoch,
            at.global_step,
            self.state.clock,
        );
        if let (Some(acc), Some(loss)) = (self.state.valid_acc, self.state.valid_loss) {
            record = record.with("valid_acc", acc).with("valid_loss", loss);
        }
        sink.metric(&record)?;
        let config = self.config;
        let summary = serde_json::json!({
            "method": config.method,
            "dataset": config.data.dataset,
            "seed": config.seed,
            "compat": config.compat,
            "epochs": at.epoch,
            "steps": at.global_step,
            "valid_acc": self.state.valid_acc,
            "valid_loss": self.state.valid_loss,
            "genotype": genotype,
        });
        files::write_json(&run_dir.join(SUMMARY_FILE), &summary)?;
        self.outcome(true, at.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::driver::read_saved_state;

    /// The `state.json` of a checkpoint written before the run driver existed (one flat
    /// object per loop): a run directory of that version resumes.
    #[test]
    fn a_checkpoint_state_of_the_loop_before_the_driver_reads_back() {
        let old = r#"{"epoch":1,"step_in_epoch":3,"global_step":11,"clock":1.375,
            "alpha_position":{"pass":0,"batch":3},
            "schedule":{"threshold":0.25,"ewma":1.5,"fimt_observed":11},
            "alpha_steps_in_epoch":3,"epoch_genotype_written":true,"alpha_counter":11,
            "last_alpha_loss":2.25,"train_loss_sum":6.5,"train_correct":9.0,"train_count":24.0,
            "valid_acc":12.5,"valid_loss":2.5,
            "records":{"metrics":100,"alphas":200,"genotypes":30},"config_sha256":"ab"}"#;
        let (epoch, global_step, state): (u32, u64, SearchState) = read_saved_state(old);
        assert_eq!((epoch, global_step), (1, 11));
        assert_eq!(state.step_in_epoch, 3);
        assert_eq!(state.alpha_position, StreamPosition { pass: 0, batch: 3 });
        assert_eq!(state.schedule.fimt_observed, 11);
        assert_eq!(state.clock, 1.375);
        assert!(state.epoch_genotype_written);
        assert_eq!(state.valid_loss, Some(2.5));
    }
}
