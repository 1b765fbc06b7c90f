//! Evaluation (retraining) of a recurrent genotype on Penn Treebank (SPEC 7.9) as a task of
//! the run driver: jittered sequence lengths, SGD switching to averaged SGD by the
//! non-monotone trigger (NT-ASGD), validation with the averaged weights while averaging, early
//! stop, and the test perplexity of the best weights with batch size 1.
//!
//! The run directory holds `config.toml` (genotype included), `genotype.json` /
//! `genotype.txt`, `metrics.jsonl`, `checkpoints/`, `best_weights.safetensors` (the weights of
//! the best validation loss, averaged ones in the ASGD phase) and at the end `test.json`.
//!
//! A NaN or infinite training loss fails the run with [`RunError::Diverged`]; the reference
//! instead reloads its best checkpoint and continues.

use super::corpus::{batchify, corpus_files, get_batch, load_corpus};
use super::dropout::{DropoutMasks, DropoutRates};
use super::model::{evaluate, RnnModel};
use super::nt_asgd::{asgd, sgd, with_averaged_weights, WeightOptimizer};
use super::trainer::{eval_seq_len, perplexity, scaled_lr, should_switch_to_asgd, training_loss};
use super::{draw_key, DrawStream};
use crate::checkpoint::{self, CheckpointError};
use crate::error::RunError;
use crate::optim::{self, OptimError, Optimizer};
use crate::run::files::{write_json, write_weights};
use crate::run::genotype::write_genotype;
use crate::run::layout::{BEST_WEIGHTS, TEST_REPORT};
use crate::run::{self, At, Histories, Plan, RunOptions, Saved, Sink, Step, Task, TensorGroups};
use prime_core::config::LayeredConfig;
use prime_core::genotype::RnnGenotype;
use prime_core::metrics::{MetricKind, MetricRecord};
use prime_core::observer::RunObserver;
use prime_core::rnn_config::RnnEvalConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};

/// A step record is written every this many global steps.
const STEP_RECORD_EVERY: u64 = 50;

/// What a recurrent evaluation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct RnnEvalOutcome {
    /// Whether training ended (all epochs or early stop) and the test ran.
    pub finished: bool,
    /// Epochs completed.
    pub epochs_done: u32,
    /// exp(best validation loss).
    pub valid_ppl: Option<f64>,
    /// Test perplexity of the best weights (batch size 1), once finished.
    pub test_ppl: Option<f64>,
    /// 0-based epoch of the best validation loss.
    pub best_epoch: Option<u32>,
    /// 0-based epoch after which the optimizer switched to ASGD.
    pub asgd_epoch: Option<u32>,
    /// Trainable parameters.
    pub params: i64,
}

/// Loads the recurrent genotype an argument names (see
/// [`run::genotype::resolve_genotype`]; built-ins: DARTS_V1, DARTS_V2 = DARTS, ENAS).
pub fn resolve_rnn_genotype(argument: &str) -> Result<(RnnGenotype, String), RunError> {
    run::genotype::resolve_genotype(argument)
}

/// Runs (or resumes) a recurrent evaluation as configured, writing into `options.run_dir`,
/// whose `data_dir` is the corpus folder.
pub fn run_rnn_eval(
    config: &RnnEvalConfig,
    options: &RunOptions,
    observer: &mut dyn RunObserver,
) -> Result<RnnEvalOutcome, RunError> {
    run::run(RnnEvalTask::new(config, options)?, options, observer)
}

/// The recurrent evaluation's part of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RnnEvalState {
    cursor: usize,
    batch: u64,
    asgd: bool,
    asgd_epoch: Option<u32>,
    /// Validation losses of the SGD-phase epochs.
    history: Vec<f64>,
    best_valid_loss: Option<f64>,
    best_epoch: Option<u32>,
    epochs_since_best: u32,
    converged: bool,
    train_loss_sum: f64,
    train_batches: u64,
}

/// A recurrent evaluation run.
pub struct RnnEvalTask<'a> {
    config: &'a RnnEvalConfig,
    train: Tensor,
    valid: Tensor,
    test: Tensor,
    files: Vec<(String, PathBuf)>,
    vs: nn::VarStore,
    model: RnnModel,
    weights: Vec<(String, Tensor)>,
    optimizer: WeightOptimizer,
    params: i64,
    rates: DropoutRates,
    hidden: Tensor,
    state: RnnEvalState,
    /// Steps whose values are still on the device (`speed.read_back_every`).
    held: Vec<HeldStep>,
}

/// A training step whose loss (and gradient norm, for a step record) is still on the device.
struct HeldStep {
    epoch: u32,
    step: u64,
    lr: f64,
    seq_len: usize,
    raw_loss: Tensor,
    /// Present for the steps that write a step record.
    grad_norm: Option<Tensor>,
}

impl<'a> RnnEvalTask<'a> {
    /// Validates the config, loads the corpus and builds the model from the seed.
    pub fn new(config: &'a RnnEvalConfig, options: &RunOptions) -> Result<Self, RunError> {
        config.validate("recurrent evaluation config")?;
        let device = options.device;
        super::download::ensure_ptb(&options.data_dir, options.download)?;
        let corpus = load_corpus(&options.data_dir)?;
        let limit = config
            .data
            .limit
            .unwrap_or(corpus.train.len())
            .min(corpus.train.len());
        let data = &config.data;
        let train = batchify(&corpus.train[..limit], data.batch_size, device, "train")?;
        let valid = batchify(&corpus.valid, data.eval_batch_size, device, "valid")?;
        let test = batchify(&corpus.test, data.test_batch_size, device, "test")?;
        let vs = nn::VarStore::new(device);
        let model = crate::torch_rng::seeded(config.seed, || {
            RnnModel::fixed(
                &vs.root(),
                corpus.vocab(),
                config.network.nhid,
                &config.genotype,
            )
        });
        let weights = optim::trainable_parameters(&vs);
        let hidden = model.init_hidden(data.batch_size as i64);
        Ok(Self {
            config,
            train,
            valid,
            test,
            files: corpus_files(&options.data_dir)?,
            params: optim::parameter_count(&vs),
            optimizer: WeightOptimizer::Sgd(sgd(&weights, config.weights.weight_decay)?),
            vs,
            model,
            weights,
            rates: DropoutRates::from(&config.network),
            hidden,
            state: RnnEvalState {
                cursor: 0,
                batch: 0,
                asgd: false,
                asgd_epoch: None,
                history: Vec::new(),
                best_valid_loss: None,
                best_epoch: None,
                epochs_since_best: 0,
                converged: false,
                train_loss_sum: 0.0,
                train_batches: 0,
            },
            held: Vec::new(),
        })
    }

    /// Reads the held steps back with one device-to-host copy and accounts for them in order:
    /// the non-finite check, the epoch's running loss and the step records. The values are
    /// exactly those a read per step gives (float32 and float64 values travel as float64).
    fn read_back(&mut self, sink: &mut Sink) -> Result<(), RunError> {
        let held = std::mem::take(&mut self.held);
        if held.is_empty() {
            return Ok(());
        }
        let mut parts = Vec::new();
        for step in &held {
            parts.push(step.raw_loss.detach().to_kind(Kind::Double).reshape([1]));
            if let Some(norm) = &step.grad_norm {
                parts.push(norm.detach().to_kind(Kind::Double).reshape([1]));
            }
        }
        let flat = Tensor::f_cat(&parts, 0)
            .and_then(|flat| flat.f_to_device(Device::Cpu))
            .and_then(|flat| Vec::<f64>::try_from(&flat))
            .map_err(OptimError::from)?;
        let mut values = flat.into_iter();
        for step in held {
            let mut next = || values.next().unwrap_or(f64::NAN);
            let loss = next();
            RunError::check_finite("training loss", loss, step.epoch, step.step)?;
            self.state.train_loss_sum += loss;
            self.state.train_batches += 1;
            if step.grad_norm.is_some() {
                let grad_norm = next();
                let record = MetricRecord::new(
                    MetricKind::Step,
                    step.epoch,
                    step.step,
                    f64::from(step.epoch),
                )
                .with("lr", step.lr)
                .with("seq_len", step.seq_len as f64)
                .with("loss", loss)
                .with("ppl", perplexity(loss))
                .with("grad_norm", grad_norm);
                sink.metric(&record)?;
            }
        }
        Ok(())
    }

    fn variables(&self) -> Vec<(String, Tensor)> {
        self.vs.variables().into_iter().collect()
    }

    fn outcome(&self, finished: bool, epochs_done: u32, test_ppl: Option<f64>) -> RnnEvalOutcome {
        RnnEvalOutcome {
            finished,
            epochs_done,
            valid_ppl: self.state.best_valid_loss.map(perplexity),
            test_ppl,
            best_epoch: self.state.best_epoch,
            asgd_epoch: self.state.asgd_epoch,
            params: self.params,
        }
    }

    /// The validation loss, with the averaged weights in the ASGD phase; writes the best
    /// weights when it improves.
    fn validate(&self, run_dir: &Path) -> Result<f64, RunError> {
        let evaluate_and_keep_best = || {
            let loss = evaluate(&self.model, &self.valid, self.config.data.bptt);
            if self.state.best_valid_loss.is_none_or(|best| loss < best) {
                write_weights(&run_dir.join(BEST_WEIGHTS), &self.variables())?;
            }
            Ok(loss)
        };
        match &self.optimizer {
            WeightOptimizer::Asgd(asgd) => {
                with_averaged_weights(&self.weights, asgd, evaluate_and_keep_best)
            }
            WeightOptimizer::Sgd(_) => evaluate_and_keep_best(),
        }
    }
}

impl Task for RnnEvalTask<'_> {
    type State = RnnEvalState;
    type Outcome = RnnEvalOutcome;

    fn plan(&self) -> Result<Plan, RunError> {
        let rows = self.train.size()[0] as usize;
        let steps = rows.saturating_sub(2).div_ceil(self.config.data.bptt);
        Ok(Plan::new(
            self.config,
            self.files.clone(),
            steps as u64,
            Histories::MetricsOnly,
        )?)
    }

    fn start(&mut self, sink: &mut Sink) -> Result<(), RunError> {
        write_genotype(sink.run_dir(), &self.config.genotype)
    }

    fn restore(&mut self, saved: Saved<RnnEvalState>) -> Result<(), RunError> {
        let Saved {
            checkpoint: saved,
            path,
            state,
        } = saved;
        checkpoint::restore_named(&self.variables(), saved.group("weights"), path)?;
        let decay = self.config.weights.weight_decay;
        self.optimizer = if state.asgd {
            let mut restored = asgd(&self.weights, decay)?;
            restored.load_state(saved.group("optimizer"))?;
            WeightOptimizer::Asgd(restored)
        } else {
            let mut restored = sgd(&self.weights, decay)?;
            restored.load_state(saved.group("optimizer"))?;
            WeightOptimizer::Sgd(restored)
        };
        let hidden = [("train".to_string(), self.hidden.shallow_clone())];
        checkpoint::restore_named(&hidden, saved.group("hidden"), path)?;
        self.state = state;
        Ok(())
    }

    fn begin_epoch(&mut self, _at: At, _sink: &mut Sink) -> Result<(), RunError> {
        if self.state.batch == 0 {
            self.hidden = self.model.init_hidden(self.config.data.batch_size as i64);
        }
        Ok(())
    }

    fn train_step(&mut self, at: At, sink: &mut Sink) -> Result<Step, RunError> {
        let config = self.config;
        let bptt = config.data.bptt;
        if self.state.cursor + 2 >= self.train.size()[0] as usize {
            return Ok(Step::EpochDone);
        }
        let key = |stream| draw_key(config.seed, at.epoch, self.state.batch, stream);
        let seq_len = eval_seq_len(
            key(DrawStream::SequenceLength),
            bptt,
            config.weights.seq_len_std,
        );
        let lr = scaled_lr(config.weights.lr, seq_len, bptt);
        let (input, targets) = get_batch(&self.train, self.state.cursor, seq_len);
        let masks = DropoutMasks::draw(
            key(DrawStream::WeightMasks),
            &self.rates,
            self.model.vocab,
            config.data.batch_size as i64,
            self.model.nhid,
            self.train.device(),
        );
        self.optimizer.zero_grad()?;
        let output = self.model.forward(&input, &self.hidden, Some(&masks));
        let (raw, loss) = training_loss(
            &output,
            &targets,
            config.weights.ar_alpha,
            config.weights.tar_beta,
        );
        loss.backward();
        let grad_norm = optim::clip_grad_norm(
            self.weights.iter().map(|(_, t)| t),
            config.weights.grad_clip,
        )?;
        self.optimizer.step(lr)?;
        self.hidden = output.hidden.detach();
        self.state.cursor += seq_len;
        self.state.batch += 1;
        let step_number = at.global_step + 1;
        self.held.push(HeldStep {
            epoch: at.epoch,
            step: step_number,
            lr,
            seq_len,
            raw_loss: raw,
            grad_norm: step_number
                .is_multiple_of(STEP_RECORD_EVERY)
                .then_some(grad_norm),
        });
        if self.held.len() >= config.speed.read_back_every as usize {
            self.read_back(sink)?;
        }
        Ok(Step::Trained)
    }

    fn flush(&mut self, sink: &mut Sink) -> Result<(), RunError> {
        self.read_back(sink)
    }

    fn end_epoch(&mut self, at: At, sink: &mut Sink) -> Result<(), RunError> {
        self.read_back(sink)?;
        let config = self.config;
        let epoch = at.epoch;
        let valid_loss = self.validate(sink.run_dir())?;
        RunError::check_finite("validation loss", valid_loss, epoch, at.global_step)?;
        let state = &mut self.state;
        if state.best_valid_loss.is_none_or(|best| valid_loss < best) {
            state.best_valid_loss = Some(valid_loss);
            state.best_epoch = Some(epoch);
            state.epochs_since_best = 0;
        } else {
            state.epochs_since_best += 1;
        }
        if !state.asgd {
            let forced = config.weights.asgd_at_epoch == Some(epoch);
            if forced || should_switch_to_asgd(&state.history, valid_loss, config.weights.nonmono) {
                self.optimizer =
                    WeightOptimizer::Asgd(asgd(&self.weights, config.weights.weight_decay)?);
                state.asgd = true;
                state.asgd_epoch = Some(epoch);
                tracing::info!(epoch, "switching to ASGD");
            }
            state.history.push(valid_loss);
        }
        let train_loss = state.train_loss_sum / state.train_batches.max(1) as f64;
        let best = state.best_valid_loss.unwrap_or(valid_loss);
        let record = MetricRecord::new(
            MetricKind::Epoch,
            epoch,
            at.global_step,
            f64::from(epoch + 1),
        )
        .with("lr", config.weights.lr)
        .with("train_loss", train_loss)
        .with("train_ppl", perplexity(train_loss))
        .with("valid_loss", valid_loss)
        .with("valid_ppl", perplexity(valid_loss))
        .with("best_valid_ppl", perplexity(best))
        .with("asgd", f64::from(u8::from(state.asgd)));
        sink.metric(&record)?;
        state.cursor = 0;
        state.batch = 0;
        state.train_loss_sum = 0.0;
        state.train_batches = 0;
        state.converged = config.convergence > 0 && state.epochs_since_best >= config.convergence;
        self.hidden = self.model.init_hidden(config.data.batch_size as i64);
        Ok(())
    }

    fn ended_early(&self) -> bool {
        self.state.converged
    }

    fn checkpoint(&mut self, groups: &mut TensorGroups) -> Result<RnnEvalState, RunError> {
        groups.insert("weights".to_string(), self.variables());
        groups.insert("optimizer".to_string(), self.optimizer.state()?);
        groups.insert(
            "hidden".to_string(),
            vec![("train".to_string(), self.hidden.shallow_clone())],
        );
        Ok(self.state.clone())
    }

    fn stopped(&mut self, epochs_done: u32) -> Result<RnnEvalOutcome, RunError> {
        Ok(self.outcome(false, epochs_done, None))
    }

    fn finish(&mut self, at: At, sink: &mut Sink) -> Result<RnnEvalOutcome, RunError> {
        let best_path = sink.run_dir().join(BEST_WEIGHTS);
        let best =
            Tensor::read_safetensors(&best_path).map_err(|source| CheckpointError::Tensor {
                path: best_path.clone(),
                source,
            })?;
        checkpoint::restore_named(&self.variables(), &best, &best_path)?;
        let test_loss = evaluate(&self.model, &self.test, self.config.data.bptt);
        let test_ppl = perplexity(test_loss);
        let mut record = MetricRecord::new(
            MetricKind::Final,
            at.epoch,
            at.global_step,
            f64::from(at.epoch),
        )
        .with("params", self.params as f64)
        .with("test_loss", test_loss)
        .with("test_ppl", test_ppl);
        if let Some(loss) = self.state.best_valid_loss {
            record = record
                .with("valid_loss", loss)
                .with("valid_ppl", perplexity(loss));
        }
        sink.metric(&record)?;
        let finished = self.outcome(true, at.epoch, Some(test_ppl));
        let state = &self.state;
        let report = serde_json::json!({
            "label": self.config.label,
            "dataset": "ptb",
            "seed": self.config.seed,
            "epochs": at.epoch,
            "stopped_early": state.converged,
            "steps": at.global_step,
            "params": self.params,
            "best_epoch": state.best_epoch,
            "asgd_epoch": state.asgd_epoch,
            "valid_loss": state.best_valid_loss,
            "valid_ppl": finished.valid_ppl,
            "test_loss": test_loss,
            "test_ppl": test_ppl,
            "genotype": self.config.genotype,
        });
        write_json(&sink.run_dir().join(TEST_REPORT), &report)?;
        Ok(finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::driver::read_saved_state;

    /// A checkpoint written before the run driver existed resumes.
    #[test]
    fn a_checkpoint_state_of_the_loop_before_the_driver_reads_back() {
        let old = r#"{"epoch":4,"cursor":0,"batch":0,"global_step":40,"asgd":true,
            "asgd_epoch":2,"history":[5.5,5.25,5.375],"best_valid_loss":5.25,"best_epoch":1,
            "epochs_since_best":2,"converged":true,"train_loss_sum":0.0,"train_batches":0,
            "records":{"metrics":10,"alphas":0,"genotypes":0},"config_sha256":"ab"}"#;
        let (epoch, global_step, state): (u32, u64, RnnEvalState) = read_saved_state(old);
        assert_eq!((epoch, global_step), (4, 40));
        assert!(state.asgd && state.converged);
        assert_eq!(state.history, vec![5.5, 5.25, 5.375]);
        assert_eq!(state.asgd_epoch, Some(2));
    }
}
