//! The recurrent-cell search on Penn Treebank (SPEC 7.7) as a task of the run driver: the
//! reference schedule (sticky `arch_step` flag under `compat = reference`), per-epoch
//! validation and the best-validation genotype.
//!
//! The run directory holds `config.toml`, `metrics.jsonl`, `alphas.jsonl` (act(alpha) after
//! every weight step), `genotypes.jsonl` (genotype at the start of every epoch),
//! `genotype.json` / `genotype.txt` (the genotype of the epoch with the best validation loss,
//! rewritten whenever it improves), `checkpoints/` and, at the end, `summary.json`.

use super::corpus::{batchify, corpus_files, get_batch, load_corpus};
use super::dropout::{DropoutMasks, DropoutRates};
use super::model::evaluate;
use super::pending::{DeviceStep, HostStep, PendingSteps};
use super::search_trainer::RnnSearchTrainer;
use super::trainer::{perplexity, scaled_lr, search_seq_len};
use super::{draw_key, DrawStream};
use crate::checkpoint;
use crate::error::RunError;
use crate::optim::{self, OptimError};
use crate::run::genotype::write_genotype;
use crate::run::layout::SUMMARY_FILE;
use crate::run::{
    self, files, At, Histories, Plan, RunOptions, Saved, Sink, Step, Task, TensorGroups,
};
use crate::search::schedule::{AlphaSchedule, ScheduleState};
use crate::train_step::to_rows;
use prime_core::config::{Compat, LayeredConfig, RegularizerKind, ScheduleKind};
use prime_core::genotype::projection::frobenius_distance;
use prime_core::genotype::RnnGenotype;
use prime_core::metrics::{MetricKind, MetricRecord};
use prime_core::observer::RunObserver;
use prime_core::rnn_config::RnnSearchConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tch::{Device, Tensor};

/// What a recurrent search produced.
#[derive(Debug, Clone, PartialEq)]
pub struct RnnSearchOutcome {
    /// Whether every epoch ran (false when the observer stopped the run).
    pub finished: bool,
    /// Epochs completed.
    pub epochs_done: u32,
    /// The genotype of the epoch with the best validation loss (the current alphas' genotype
    /// when no epoch completed).
    pub genotype: RnnGenotype,
    /// exp(best validation loss), if an epoch completed.
    pub best_valid_ppl: Option<f64>,
    /// 0-based epoch of the best validation loss.
    pub best_epoch: Option<u32>,
    /// Trainable parameters of the model.
    pub params: i64,
    /// Alpha steps taken over the whole run.
    pub alpha_steps: u64,
}

/// One line of `alphas.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RnnAlphaRecord {
    /// Global weight steps done.
    pub step: u64,
    /// The clock.
    pub clock: f64,
    /// act(alpha), (36, P).
    pub recurrent: Vec<Vec<f32>>,
}

/// The recurrent search's part of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RnnSearchState {
    /// Row cursor i of the training data.
    cursor: usize,
    /// In-epoch batch counter.
    batch: u64,
    clock: f64,
    schedule: ScheduleState,
    /// The reference's `arch_step` flag (sticky within an epoch under `reference`).
    arch_flag: bool,
    /// Row of the most recently fetched alpha batch in the epoch.
    alpha_row: Option<usize>,
    alpha_steps_in_epoch: u64,
    /// Alpha steps since the run began (0 in checkpoints written before it was counted).
    #[serde(default)]
    alpha_steps_total: u64,
    /// Whether this epoch's genotype line is written (a checkpoint at an epoch's first step
    /// must not make the resumed run write it twice).
    epoch_genotype_written: bool,
    train_loss_sum: f64,
    train_batches: u64,
    best_valid_loss: Option<f64>,
    best_epoch: Option<u32>,
    best_genotype: Option<RnnGenotype>,
}

/// The data of a search as device tensors.
struct SearchData {
    train: Tensor,
    alpha: Tensor,
    valid: Tensor,
    vocab: i64,
    files: Vec<(String, PathBuf)>,
}

/// Runs (or resumes) a recurrent search as configured, writing into `options.run_dir`, whose
/// `data_dir` is the corpus folder.
pub fn run_rnn_search(
    config: &RnnSearchConfig,
    options: &RunOptions,
    observer: &mut dyn RunObserver,
) -> Result<RnnSearchOutcome, RunError> {
    run::run(RnnSearchTask::new(config, options)?, options, observer)
}

/// A recurrent search run.
pub struct RnnSearchTask<'a> {
    config: &'a RnnSearchConfig,
    device: Device,
    data: SearchData,
    trainer: RnnSearchTrainer,
    params: i64,
    schedule: AlphaSchedule,
    rates: DropoutRates,
    state: RnnSearchState,
    /// Hidden states of the weight and alpha batches.
    hidden: (Tensor, Tensor),
    /// The genotype after the last completed epoch's validation.
    last_genotype: Option<RnnGenotype>,
    /// Steps whose records wait for the next read-back (`speed.read_back_every`).
    pending: PendingSteps,
}

impl<'a> RnnSearchTask<'a> {
    /// Validates the config, loads the corpus and builds the model.
    pub fn new(config: &'a RnnSearchConfig, options: &RunOptions) -> Result<Self, RunError> {
        config.validate("recurrent search config")?;
        super::download::ensure_ptb(&options.data_dir, options.download)?;
        let corpus = load_corpus(&options.data_dir)?;
        let limit = config
            .data
            .limit
            .unwrap_or(corpus.train.len())
            .min(corpus.train.len());
        let device = options.device;
        let batch_size = config.data.batch_size;
        let data = SearchData {
            train: batchify(&corpus.train[..limit], batch_size, device, "train")?,
            alpha: batchify(&corpus.valid, batch_size, device, "valid")?,
            valid: batchify(&corpus.valid, config.data.eval_batch_size, device, "valid")?,
            vocab: corpus.vocab(),
            files: corpus_files(&options.data_dir)?,
        };
        let trainer = RnnSearchTrainer::new(config, data.vocab, device)?;
        let schedule = AlphaSchedule::new(&config.schedule, config.compat);
        let hidden = (
            trainer.model().init_hidden(batch_size as i64),
            trainer.model().init_hidden(batch_size as i64),
        );
        Ok(Self {
            config,
            device,
            params: trainer.parameter_count(),
            rates: DropoutRates::from(&config.network),
            state: RnnSearchState {
                cursor: 0,
                batch: 0,
                clock: 0.0,
                schedule: schedule.state,
                arch_flag: false,
                alpha_row: None,
                alpha_steps_in_epoch: 0,
                alpha_steps_total: 0,
                epoch_genotype_written: false,
                train_loss_sum: 0.0,
                train_batches: 0,
                best_valid_loss: None,
                best_epoch: None,
                best_genotype: None,
            },
            data,
            trainer,
            schedule,
            hidden,
            last_genotype: None,
            pending: PendingSteps::default(),
        })
    }

    fn train_rows(&self) -> usize {
        self.data.train.size()[0] as usize
    }

    fn fresh_hidden(&self) -> (Tensor, Tensor) {
        let batch_size = self.config.data.batch_size as i64;
        (
            self.trainer.model().init_hidden(batch_size),
            self.trainer.model().init_hidden(batch_size),
        )
    }

    fn masks(&self, at: At, stream: DrawStream) -> DropoutMasks {
        DropoutMasks::draw(
            draw_key(self.config.seed, at.epoch, self.state.batch, stream),
            &self.rates,
            self.data.vocab,
            self.config.data.batch_size as i64,
            self.config.network.nhid,
            self.device,
        )
    }

    /// The alpha step on the alpha batch at `row`; adds its loss and regularizer value to
    /// `values` (they stay on the device until the next read-back).
    fn alpha_step(
        &mut self,
        at: At,
        row: usize,
        values: &mut Vec<(&'static str, Tensor)>,
    ) -> Result<(), RunError> {
        let (input, targets) = get_batch(&self.data.alpha, row, self.config.data.bptt);
        let masks = self.masks(at, DrawStream::AlphaMasks);
        let extra = self.prox_term()?;
        let extra_value = extra.as_ref().map(Tensor::detach);
        let (alpha_loss, next_hidden) =
            self.trainer
                .arch_step(&input, &targets, &self.hidden.1, &masks, extra)?;
        self.hidden.1 = next_hidden;
        self.state.alpha_steps_in_epoch += 1;
        self.state.alpha_steps_total += 1;
        values.push(("alpha_loss", alpha_loss));
        if let Some(value) = extra_value {
            values.push(("regularizer", value));
        }
        Ok(())
    }

    /// Reads the steps held back to the host (one copy) and writes their records and alpha
    /// lines in order: the non-finite check, the epoch's running loss, perplexity, the EWMA of
    /// FIMTs held back, and the distance of each step's alphas to their projection. A
    /// non-finite loss stops the run here, naming its step.
    fn read_back(&mut self, sink: &mut Sink) -> Result<(), RunError> {
        // A failed copy is libtorch's error, as in the optimizers' reads.
        for step in self.pending.read_back().map_err(OptimError::from)? {
            let HostStep {
                mut record,
                loss,
                fimt,
                alphas,
            } = step;
            RunError::check_finite("loss", loss, record.epoch, record.step)?;
            self.state.train_loss_sum += loss;
            self.state.train_batches += 1;
            if let Some(fimt) = fimt {
                let ewma = self.schedule.observe_fimt(fimt);
                record = record.with("fimt", fimt).with("fimt_ewma", ewma);
            }
            let projection = self.trainer.project(&alphas)?;
            let record = record
                .with("loss", loss)
                .with("ppl", perplexity(loss))
                .with("dist", frobenius_distance(&alphas, &projection.z));
            sink.metric(&record)?;
            sink.alphas(&RnnAlphaRecord {
                step: record.step,
                clock: record.clock,
                recurrent: alphas,
            })?;
        }
        Ok(())
    }

    /// The proximity term c * rho / 2 * ||act(alpha) - Pi_S(act(alpha))||_F (SPEC 5.2) with
    /// c = clock / epochs (`fixed` clamps c to 1, SPEC A14); none without prox.
    fn prox_term(&self) -> Result<Option<Tensor>, RunError> {
        let config = self.config;
        if config.regularizer.kind != RegularizerKind::Prox {
            return Ok(None);
        }
        let Some(activated) = self.trainer.model().activated_alphas() else {
            return Ok(None);
        };
        let mut coefficient = self.state.clock / f64::from(config.epochs);
        if config.compat == Compat::Fixed {
            coefficient = coefficient.min(1.0);
        }
        // The projection runs on the host: prox reads the alphas once per alpha step.
        let projection = self.trainer.project(&to_rows(&activated))?;
        let z: Vec<f32> = projection.z.concat();
        let z = Tensor::from_slice(&z)
            .view([projection.z.len() as i64, -1])
            .to_device(activated.device());
        Ok(Some(
            (activated - z).norm() * (coefficient * config.regularizer.rho / 2.0),
        ))
    }

    fn outcome(&self, finished: bool, epochs_done: u32, genotype: RnnGenotype) -> RnnSearchOutcome {
        RnnSearchOutcome {
            finished,
            epochs_done,
            genotype,
            best_valid_ppl: self.state.best_valid_loss.map(perplexity),
            best_epoch: self.state.best_epoch,
            params: self.params,
            alpha_steps: self.state.alpha_steps_total,
        }
    }
}

impl Task for RnnSearchTask<'_> {
    type State = RnnSearchState;
    type Outcome = RnnSearchOutcome;

    fn plan(&self) -> Result<Plan, RunError> {
        let steps = self
            .train_rows()
            .saturating_sub(2)
            .div_ceil(self.config.data.bptt);
        let files = self.data.files.clone();
        Ok(Plan::new(
            self.config,
            files,
            steps as u64,
            Histories::WithAlphas,
        )?)
    }

    fn start(&mut self, sink: &mut Sink) -> Result<(), RunError> {
        sink.alphas(&RnnAlphaRecord {
            step: 0,
            clock: 0.0,
            recurrent: self.trainer.activated_rows(),
        })
    }

    fn restore(&mut self, saved: Saved<RnnSearchState>) -> Result<(), RunError> {
        let Saved {
            checkpoint: saved,
            path,
            state,
        } = saved;
        self.trainer.restore(saved, path)?;
        let hidden = [
            ("train".to_string(), self.hidden.0.shallow_clone()),
            ("alpha".to_string(), self.hidden.1.shallow_clone()),
        ];
        checkpoint::restore_named(&hidden, saved.group("hidden"), path)?;
        self.schedule.state = state.schedule;
        self.state = state;
        Ok(())
    }

    fn begin_epoch(&mut self, at: At, sink: &mut Sink) -> Result<(), RunError> {
        // Mid-epoch (a resume) the restored hidden states go on; a new epoch starts at zero.
        if self.state.batch == 0 {
            self.hidden = self.fresh_hidden();
        }
        if !self.state.epoch_genotype_written {
            sink.genotype(at.epoch, &self.trainer.projection()?.genotype)?;
            self.state.epoch_genotype_written = true;
        }
        Ok(())
    }

    fn train_step(&mut self, at: At, sink: &mut Sink) -> Result<Step, RunError> {
        let config = self.config;
        let bptt = config.data.bptt;
        let train_rows = self.train_rows();
        if self.state.cursor + 2 >= train_rows {
            return Ok(Step::EpochDone);
        }
        let step_number = at.global_step + 1;
        let seq_len = search_seq_len(
            draw_key(
                config.seed,
                at.epoch,
                self.state.batch,
                DrawStream::SequenceLength,
            ),
            bptt,
        );
        let lr = scaled_lr(config.weights.lr, seq_len, bptt);
        let threshold = self.schedule.state.threshold;
        let decided = self.schedule.decide(self.state.batch);
        if decided {
            let alpha_rows = self.data.alpha.size()[0] as usize;
            self.state.alpha_row = Some(self.state.cursor % (alpha_rows - 1));
            self.state.arch_flag = true;
        }
        let alpha_step = match config.compat {
            // The reference never resets the flag within an epoch (SPEC 7.7, B1).
            Compat::Reference => self.state.arch_flag,
            Compat::Fixed => decided,
        };
        let (input, targets) = get_batch(&self.data.train, self.state.cursor, seq_len);
        // The reference normalises the clock by rows // bptt (SPEC 5.1).
        self.state.clock += 1.0 / (train_rows / bptt).max(1) as f64;
        let mut record =
            MetricRecord::new(MetricKind::Step, at.epoch, step_number, self.state.clock)
                .with("lr", lr)
                .with("seq_len", seq_len as f64)
                .with("alpha_step", f64::from(u8::from(alpha_step)));
        let fimt_schedule = config.schedule.kind == ScheduleKind::Fimt;
        if fimt_schedule {
            record = record.with("threshold", threshold);
        }
        let mut values = Vec::new();
        if let (true, Some(row)) = (alpha_step, self.state.alpha_row) {
            self.alpha_step(at, row, &mut values)?;
        }
        let masks = self.masks(at, DrawStream::WeightMasks);
        let step = self
            .trainer
            .weight_step(&input, &targets, &self.hidden.0, &masks, lr)?;
        self.hidden.0 = step.hidden;
        self.state.batch += 1;
        self.state.cursor += seq_len;
        let mut held_fimt = None;
        if fimt_schedule {
            // The next step's decision compares the EWMA with the threshold on the host:
            // the FIMT schedule's one read per step.
            let fimt = optim::read_scalar(&step.fimt)?;
            let ewma = self.schedule.observe_fimt(fimt);
            record = record.with("fimt", fimt).with("fimt_ewma", ewma);
        } else {
            held_fimt = Some(step.fimt);
        }
        values.push(("grad_norm", step.grad_norm));
        if let Some(pruned) = self.trainer.pruned_count() {
            values.push(("pruned", pruned));
        }
        self.pending.push(DeviceStep {
            record,
            values,
            loss: step.raw_loss,
            fimt: held_fimt,
            alphas: self.trainer.activated(),
        });
        if self.pending.len() >= config.speed.read_back_every as usize {
            self.read_back(sink)?;
        }
        Ok(Step::Trained)
    }

    fn flush(&mut self, sink: &mut Sink) -> Result<(), RunError> {
        self.read_back(sink)
    }

    fn end_epoch(&mut self, at: At, sink: &mut Sink) -> Result<(), RunError> {
        self.read_back(sink)?;
        let valid_loss = evaluate(
            self.trainer.model(),
            &self.data.valid,
            self.config.data.bptt,
        );
        let projection = self.trainer.projection()?;
        RunError::check_finite("validation loss", valid_loss, at.epoch, at.global_step)?;
        let state = &mut self.state;
        if state.best_valid_loss.is_none_or(|best| valid_loss < best) {
            state.best_valid_loss = Some(valid_loss);
            state.best_epoch = Some(at.epoch);
            state.best_genotype = Some(projection.genotype.clone());
            write_genotype(sink.run_dir(), &projection.genotype)?;
        }
        let train_loss = state.train_loss_sum / state.train_batches.max(1) as f64;
        let best = state.best_valid_loss.unwrap_or(valid_loss);
        let record = MetricRecord::new(MetricKind::Epoch, at.epoch, at.global_step, state.clock)
            .with("train_loss", train_loss)
            .with("train_ppl", perplexity(train_loss))
            .with("valid_loss", valid_loss)
            .with("valid_ppl", perplexity(valid_loss))
            .with("best_valid_ppl", perplexity(best))
            .with("alpha_steps", state.alpha_steps_in_epoch as f64)
            .with(
                "dist",
                frobenius_distance(&self.trainer.activated_rows(), &projection.z),
            );
        sink.metric(&record)?;
        self.last_genotype = Some(projection.genotype);

        let state = &mut self.state;
        state.cursor = 0;
        state.batch = 0;
        state.arch_flag = false;
        state.alpha_row = None;
        state.alpha_steps_in_epoch = 0;
        state.epoch_genotype_written = false;
        state.train_loss_sum = 0.0;
        state.train_batches = 0;
        self.hidden = self.fresh_hidden();
        Ok(())
    }

    fn checkpoint(&mut self, groups: &mut TensorGroups) -> Result<RnnSearchState, RunError> {
        self.state.schedule = self.schedule.state;
        self.trainer.checkpoint_groups(groups)?;
        groups.insert(
            "hidden".to_string(),
            vec![
                ("train".to_string(), self.hidden.0.shallow_clone()),
                ("alpha".to_string(), self.hidden.1.shallow_clone()),
            ],
        );
        Ok(self.state.clone())
    }

    fn stopped(&mut self, epochs_done: u32) -> Result<RnnSearchOutcome, RunError> {
        let genotype = match &self.state.best_genotype {
            Some(genotype) => genotype.clone(),
            None => self.trainer.projection()?.genotype,
        };
        Ok(self.outcome(false, epochs_done, genotype))
    }

    fn finish(&mut self, at: At, sink: &mut Sink) -> Result<RnnSearchOutcome, RunError> {
        let last_genotype = match self.last_genotype.take() {
            Some(genotype) => genotype,
            None => self.trainer.projection()?.genotype,
        };
        let genotype = self
            .state
            .best_genotype
            .clone()
            .unwrap_or_else(|| last_genotype.clone());
        write_genotype(sink.run_dir(), &genotype)?;
        let state = &self.state;
        let mut record =
            MetricRecord::new(MetricKind::Final, at.epoch, at.global_step, state.clock)
                .with("params", self.params as f64);
        if let (Some(loss), Some(epoch)) = (state.best_valid_loss, state.best_epoch) {
            record = record
                .with("valid_loss", loss)
                .with("valid_ppl", perplexity(loss))
                .with("best_epoch", f64::from(epoch));
        }
        sink.metric(&record)?;
        let config = self.config;
        let summary = serde_json::json!({
            "method": config.method,
            "dataset": "ptb",
            "seed": config.seed,
            "compat": config.compat,
            "epochs": at.epoch,
            "steps": at.global_step,
            "params": self.params,
            "best_valid_loss": state.best_valid_loss,
            "best_valid_ppl": state.best_valid_loss.map(perplexity),
            "best_epoch": state.best_epoch,
            "genotype": genotype,
            "genotype_text": genotype.to_reference_text(),
            "last_genotype": last_genotype,
        });
        files::write_json(&sink.run_dir().join(SUMMARY_FILE), &summary)?;
        Ok(self.outcome(true, at.epoch, genotype))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::driver::read_saved_state;

    /// A checkpoint written before the run driver existed resumes.
    #[test]
    fn a_checkpoint_state_of_the_loop_before_the_driver_reads_back() {
        let old = r#"{"epoch":0,"cursor":70,"batch":2,"global_step":2,"clock":0.5,
            "schedule":{"threshold":0.0,"ewma":0.0},"arch_flag":true,"alpha_row":35,
            "alpha_steps_in_epoch":1,"epoch_genotype_written":true,"train_loss_sum":13.5,
            "train_batches":2,"best_valid_loss":null,"best_epoch":null,"best_genotype":null,
            "records":{"metrics":10,"alphas":20,"genotypes":3},"config_sha256":"ab"}"#;
        let (epoch, global_step, state): (u32, u64, RnnSearchState) = read_saved_state(old);
        assert_eq!((epoch, global_step), (0, 2));
        assert_eq!(
            (state.cursor, state.batch, state.alpha_row),
            (70, 2, Some(35))
        );
        assert!(state.arch_flag);
        assert_eq!(state.schedule.fimt_observed, u64::MAX);
        assert_eq!(state.best_genotype, None);
    }
}
