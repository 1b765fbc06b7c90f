//! End-to-end recurrent evaluation tests on a tiny synthetic corpus: learning, NT-ASGD,
//! early stop, the test report and bitwise exact resume.

use prime_core::genotype::RnnGenotype;
use prime_core::metrics::{MetricKind, MetricRecord};
use prime_core::observer::NullObserver;
use prime_core::rnn_config::RnnEvalConfig;
use prime_nas::checkpoint::Checkpoint;
use prime_nas::data::DownloadPolicy;
use prime_nas::error::RunError;
use prime_nas::rnn::corpus::write_synthetic_corpus;
use prime_nas::rnn::{resolve_rnn_genotype, run_rnn_eval};
use prime_nas::run::layout::CHECKPOINT_DIR;
use prime_nas::run::records::read_metrics;
use prime_nas::run::RunOptions;
use std::path::Path;
use tch::Device;

mod common;

use common::{assert_same_runs, run_straight_and_interrupted_at_the_first_epoch_end, StopAt};

/// A 16-d model with light dropout on batches of 8 x 10 tokens.
fn tiny_config(epochs: u32, extra: &[&str]) -> RnnEvalConfig {
    let mut overrides: Vec<String> = [
        "data.batch_size=8",
        "data.eval_batch_size=4",
        "data.bptt=10",
        "network.nhid=16",
        "network.dropout=0.1",
        "network.dropouth=0.05",
        "network.dropoutx=0.1",
        "network.dropouti=0.05",
        "network.dropoute=0.0",
        "seed=9",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    overrides.extend(extra.iter().map(|s| s.to_string()));
    overrides.push(format!("epochs={epochs}"));
    RnnEvalConfig::for_genotype(
        RnnGenotype::builtin("DARTS_V1").unwrap(),
        "DARTS_V1",
        &overrides,
    )
    .unwrap()
}

fn options(run_dir: &Path, data_dir: &Path, resume: bool) -> RunOptions {
    RunOptions {
        run_dir: run_dir.to_path_buf(),
        data_dir: data_dir.to_path_buf(),
        device: Device::Cpu,
        resume,
        download: DownloadPolicy::Never,
    }
}

fn epoch_records(run_dir: &Path) -> Vec<MetricRecord> {
    read_metrics(run_dir)
        .unwrap()
        .into_iter()
        .filter(|record| record.kind == MetricKind::Epoch)
        .collect()
}

#[test]
fn resumed_evaluation_with_an_asgd_switch_equals_the_straight_run_bitwise() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    write_synthetic_corpus(data.path(), 2400, 300, 200, 2).unwrap();
    // The switch is forced (after epoch 1): whether a tiny run's validation curve triggers
    // NT-ASGD by itself depends on the CPU's kernels. With the default non-monotone interval
    // of 5 the trigger cannot fire within these 6 epochs, so the switch epoch is exact.
    let config = tiny_config(6, &["weights.asgd_at_epoch=1", "weights.grad_clip=0.5"]);

    let straight = tempfile::tempdir().unwrap();
    let outcome = run_rnn_eval(
        &config,
        &options(straight.path(), data.path(), false),
        &mut NullObserver,
    )
    .unwrap();
    assert!(outcome.finished);
    assert_eq!(outcome.asgd_epoch, Some(1));
    let epochs = epoch_records(straight.path());
    let steps_at_switch = epochs[1].step;
    let last_step = epochs.last().unwrap().step;
    assert!(last_step > steps_at_switch + 4);

    // Stop mid-epoch in the ASGD phase, then resume to the end.
    let resumed = tempfile::tempdir().unwrap();
    let stopped = run_rnn_eval(
        &config,
        &options(resumed.path(), data.path(), false),
        &mut StopAt::after(steps_at_switch + 3),
    )
    .unwrap();
    assert!(!stopped.finished);
    let outcome_resumed = run_rnn_eval(
        &config,
        &options(resumed.path(), data.path(), true),
        &mut NullObserver,
    )
    .unwrap();
    assert_eq!(outcome_resumed, outcome);

    let latest = |dir: &Path| {
        Checkpoint::read_latest(&dir.join(CHECKPOINT_DIR))
            .unwrap()
            .0
    };
    let (a, b) = (latest(straight.path()), latest(resumed.path()));
    assert_eq!(
        a.groups.keys().collect::<Vec<_>>(),
        b.groups.keys().collect::<Vec<_>>()
    );
    assert!(!a.group("optimizer").is_empty());
    for (group, tensors) in &a.groups {
        let other: std::collections::BTreeMap<&str, &tch::Tensor> = b
            .group(group)
            .iter()
            .map(|(name, t)| (name.as_str(), t))
            .collect();
        assert_eq!(tensors.len(), other.len());
        for (name, tensor) in tensors {
            assert!(
                tensor.equal(other[name.as_str()]),
                "{group}/{name} differs after resume"
            );
        }
    }
    assert_eq!(
        read_metrics(straight.path()).unwrap(),
        read_metrics(resumed.path()).unwrap()
    );
    for file in ["best_weights.safetensors", "test.json", "genotype.txt"] {
        assert_eq!(
            std::fs::read(straight.path().join(file)).unwrap(),
            std::fs::read(resumed.path().join(file)).unwrap(),
            "{file} differs"
        );
    }
}

#[test]
fn resume_at_an_epochs_last_step_and_after_its_end_equals_the_straight_run_bitwise() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    write_synthetic_corpus(data.path(), 2400, 300, 200, 2).unwrap();
    let config = tiny_config(2, &[]);
    let (straight, interrupted) =
        run_straight_and_interrupted_at_the_first_epoch_end(|dir, resume, observer| {
            run_rnn_eval(&config, &options(dir, data.path(), resume), observer).map(|o| o.finished)
        });
    assert_same_runs(
        straight.path(),
        interrupted.path(),
        &["metrics.jsonl", "best_weights.safetensors", "test.json"],
    );
}

#[test]
fn tiny_evaluation_learns_and_reports_test_perplexity() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    let corpus = write_synthetic_corpus(data.path(), 2400, 300, 200, 2).unwrap();
    let config = tiny_config(6, &[]);
    let run = tempfile::tempdir().unwrap();
    let outcome = run_rnn_eval(
        &config,
        &options(run.path(), data.path(), false),
        &mut NullObserver,
    )
    .unwrap();
    let valid: Vec<f64> = epoch_records(run.path())
        .iter()
        .map(|record| record.get("valid_ppl").unwrap())
        .collect();
    // The untrained model predicts about uniformly (perplexity = the 41 words).
    let valid_ppl = outcome.valid_ppl.unwrap();
    assert!(valid_ppl < 0.3 * corpus.vocab as f64, "valid ppl {valid:?}");
    let test_ppl = outcome.test_ppl.unwrap();
    assert!(test_ppl < 0.4 * corpus.vocab as f64, "test ppl {test_ppl}");
    assert_eq!(outcome.params, 41 * 16 + 41 + 32 * 32 + 8 * 16 * 32);
    let report = std::fs::read_to_string(run.path().join("test.json")).unwrap();
    assert!(report.contains("\"test_ppl\""), "{report}");
    assert!(run.path().join("genotype.json").is_file());
}

#[test]
fn early_stop_ends_the_run_after_epochs_without_improvement() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    write_synthetic_corpus(data.path(), 2400, 300, 200, 2).unwrap();
    let config = tiny_config(30, &["convergence=2", "weights.lr=40.0"]);
    let run = tempfile::tempdir().unwrap();
    let outcome = run_rnn_eval(
        &config,
        &options(run.path(), data.path(), false),
        &mut NullObserver,
    )
    .unwrap();
    assert!(outcome.finished);
    assert!(outcome.epochs_done < 30, "no early stop");
    assert_eq!(outcome.epochs_done, outcome.best_epoch.unwrap() + 1 + 2);
    let epochs = epoch_records(run.path());
    assert_eq!(epochs.len(), outcome.epochs_done as usize);
    let best = epochs.last().unwrap().get("best_valid_ppl").unwrap();
    assert_eq!(Some(best), outcome.valid_ppl);
    assert!(outcome.test_ppl.is_some());
}

#[test]
fn genotypes_resolve_from_run_directories_files_and_builtins() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = RnnGenotype::builtin("DARTS_V1").unwrap();
    v1.save_json(dir.path().join("genotype.json")).unwrap();
    let (genotype, _) = resolve_rnn_genotype(dir.path().to_str().unwrap()).unwrap();
    assert_eq!(genotype, v1);
    let text = dir.path().join("mine.txt");
    std::fs::write(&text, "Genotype(recurrent=[('relu', 0)], concat=[1])").unwrap();
    let (genotype, label) = resolve_rnn_genotype(text.to_str().unwrap()).unwrap();
    assert_eq!((genotype.recurrent.len(), label.as_str()), (1, "mine"));
    let (genotype, label) = resolve_rnn_genotype("darts").unwrap();
    assert_eq!(genotype, RnnGenotype::builtin("DARTS_V2").unwrap());
    assert_eq!(label, "DARTS");
    let error = resolve_rnn_genotype("nope").unwrap_err().to_string();
    assert!(error.contains("ENAS"), "{error}");
}

#[test]
fn a_missing_corpus_is_a_clear_error() {
    let empty = tempfile::tempdir().unwrap();
    let run = tempfile::tempdir().unwrap();
    let error = run_rnn_eval(
        &tiny_config(1, &[]),
        &options(run.path(), empty.path(), false),
        &mut NullObserver,
    )
    .unwrap_err();
    assert!(matches!(error, RunError::Corpus(_)), "{error}");
}

/// Training losses read back from the device every 7 steps (and at each epoch's end and
/// before a checkpoint) give exactly the records, best weights and checkpoints of a read after
/// every step, the step record at step 50 included; a run stopped mid-batch resumes to them.
#[test]
fn losses_read_back_in_batches_equal_losses_read_every_step() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    write_synthetic_corpus(data.path(), 2400, 300, 200, 2).unwrap();
    let every_step = tiny_config(2, &[]);
    let batched = tiny_config(2, &["speed.read_back_every=7"]);
    let straight = tempfile::tempdir().unwrap();
    run_rnn_eval(
        &every_step,
        &options(straight.path(), data.path(), false),
        &mut NullObserver,
    )
    .unwrap();
    assert!(read_metrics(straight.path())
        .unwrap()
        .iter()
        .any(|record| record.kind == MetricKind::Step && record.step == 50));
    let files = ["metrics.jsonl", "best_weights.safetensors", "test.json"];
    let batches = tempfile::tempdir().unwrap();
    run_rnn_eval(
        &batched,
        &options(batches.path(), data.path(), false),
        &mut NullObserver,
    )
    .unwrap();
    assert_same_runs(straight.path(), batches.path(), &files);

    let resumed = tempfile::tempdir().unwrap();
    let stopped = run_rnn_eval(
        &batched,
        &options(resumed.path(), data.path(), false),
        &mut StopAt::after(10),
    )
    .unwrap();
    assert!(!stopped.finished);
    run_rnn_eval(
        &batched,
        &options(resumed.path(), data.path(), true),
        &mut NullObserver,
    )
    .unwrap();
    assert_same_runs(straight.path(), resumed.path(), &files);
}
