//! End-to-end recurrent search tests on a tiny synthetic corpus: learning, the schedule's
//! sticky flag, determinism and bitwise exact resume.

use prime_core::config::LayeredConfig;
use prime_core::genotype::RnnGenotype;
use prime_core::metrics::MetricKind;
use prime_core::observer::NullObserver;
use prime_core::rnn_config::RnnSearchConfig;
use prime_nas::data::DownloadPolicy;
use prime_nas::error::RunError;
use prime_nas::rnn::corpus::write_synthetic_corpus;
use prime_nas::rnn::run_rnn_search;
use prime_nas::run::records::read_metrics;
use prime_nas::run::RunOptions;
use std::path::Path;
use tch::Device;

mod common;

use common::{
    assert_same_runs, run_straight_and_interrupted_at_the_first_epoch_end, tensors_of_latest,
    ReadBackBatches, StopAt, StopAtEpochStart,
};

fn tiny_config(epochs: u32, extra: &[&str]) -> RnnSearchConfig {
    let mut overrides: Vec<String> = [
        "data.batch_size=4",
        "data.bptt=6",
        "network.nhid=8",
        "seed=5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    overrides.extend(extra.iter().map(|s| s.to_string()));
    overrides.push(format!("epochs={epochs}"));
    RnnSearchConfig::from_overrides(&overrides).unwrap()
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

fn epoch_values(run_dir: &Path, key: &str) -> Vec<f64> {
    read_metrics(run_dir)
        .unwrap()
        .iter()
        .filter(|record| record.kind == MetricKind::Epoch)
        .filter_map(|record| record.get(key))
        .collect()
}

fn alpha_steps(run_dir: &Path, epoch: u32) -> Vec<u64> {
    read_metrics(run_dir)
        .unwrap()
        .iter()
        .filter(|record| record.kind == MetricKind::Step && record.epoch == epoch)
        .enumerate()
        .filter(|(_, record)| record.get("alpha_step") == Some(1.0))
        .map(|(index, _)| index as u64)
        .collect()
}

#[test]
fn resumed_search_equals_the_straight_run_bitwise() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    write_synthetic_corpus(data.path(), 400, 200, 100, 1).unwrap();
    let config = tiny_config(
        2,
        &[
            "schedule.kind=\"fimt\"",
            "schedule.ratio=3",
            "schedule.h0=1000.0",
            "regularizer.kind=\"prox\"",
        ],
    );

    let straight = tempfile::tempdir().unwrap();
    let outcome = run_rnn_search(
        &config,
        &options(straight.path(), data.path(), false),
        &mut NullObserver,
    )
    .unwrap();
    assert!(outcome.finished);
    assert_eq!(outcome.epochs_done, 2);
    let steps = read_metrics(straight.path())
        .unwrap()
        .iter()
        .filter(|record| record.kind == MetricKind::Step)
        .count() as u64;
    assert!(steps > 20, "{steps} steps");

    let resumed = tempfile::tempdir().unwrap();
    // Stop after the last step of epoch 0, at the start of epoch 1, mid-epoch 1, then
    // resume to the end.
    let first_epoch = read_metrics(straight.path())
        .unwrap()
        .iter()
        .filter(|record| record.kind == MetricKind::Step && record.epoch == 0)
        .count() as u64;
    let stopped = run_rnn_search(
        &config,
        &options(resumed.path(), data.path(), false),
        &mut StopAt::after(first_epoch),
    )
    .unwrap();
    assert!(!stopped.finished);
    assert_eq!(
        stopped.epochs_done, 0,
        "stopped after the last step, before validation"
    );
    let stopped = run_rnn_search(
        &config,
        &options(resumed.path(), data.path(), true),
        &mut StopAtEpochStart { epoch: 1 },
    )
    .unwrap();
    assert_eq!((stopped.finished, stopped.epochs_done), (false, 1));
    let stop_at = steps * 3 / 4;
    assert!(stop_at > first_epoch + 1);
    let stopped = run_rnn_search(
        &config,
        &options(resumed.path(), data.path(), true),
        &mut StopAt::after(stop_at),
    )
    .unwrap();
    assert!(!stopped.finished);
    let outcome_resumed = run_rnn_search(
        &config,
        &options(resumed.path(), data.path(), true),
        &mut NullObserver,
    )
    .unwrap();
    assert!(outcome_resumed.finished);
    assert_eq!(outcome_resumed, outcome);

    let a = tensors_of_latest(straight.path());
    let b = tensors_of_latest(resumed.path());
    assert_eq!(a.len(), b.len());
    assert!(a.iter().any(|(group, _, _)| group == "arch_optimizer"));
    for ((group_a, name_a, tensor_a), (group_b, name_b, tensor_b)) in a.iter().zip(&b) {
        assert_eq!((group_a, name_a), (group_b, name_b));
        assert!(
            tensor_a.equal(tensor_b),
            "{group_a}/{name_a} differs after resume"
        );
    }
    assert_eq!(
        read_metrics(straight.path()).unwrap(),
        read_metrics(resumed.path()).unwrap(),
        "metrics differ or were duplicated by the resume"
    );
    for file in [
        "alphas.jsonl",
        "genotypes.jsonl",
        "genotype.json",
        "genotype.txt",
    ] {
        assert_eq!(
            std::fs::read(straight.path().join(file)).unwrap(),
            std::fs::read(resumed.path().join(file)).unwrap(),
            "{file} differs"
        );
    }

    // Same seed: the same run; another seed: another run.
    let again = tempfile::tempdir().unwrap();
    run_rnn_search(
        &config,
        &options(again.path(), data.path(), false),
        &mut NullObserver,
    )
    .unwrap();
    assert_eq!(
        read_metrics(again.path()).unwrap(),
        read_metrics(straight.path()).unwrap()
    );
    let other = tempfile::tempdir().unwrap();
    let mut reseeded = config.clone();
    reseeded.seed = 6;
    run_rnn_search(
        &reseeded,
        &options(other.path(), data.path(), false),
        &mut NullObserver,
    )
    .unwrap();
    assert_ne!(
        epoch_values(other.path(), "valid_loss"),
        epoch_values(straight.path(), "valid_loss")
    );
}

#[test]
fn resume_at_an_epochs_last_step_and_after_its_end_equals_the_straight_run_bitwise() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    write_synthetic_corpus(data.path(), 400, 200, 100, 1).unwrap();
    let config = tiny_config(2, &["schedule.kind=\"fimt\"", "schedule.h0=1000.0"]);
    let (straight, interrupted) =
        run_straight_and_interrupted_at_the_first_epoch_end(|dir, resume, observer| {
            run_rnn_search(&config, &options(dir, data.path(), resume), observer)
                .map(|o| o.finished)
        });
    assert_same_runs(
        straight.path(),
        interrupted.path(),
        &[
            "metrics.jsonl",
            "alphas.jsonl",
            "genotypes.jsonl",
            "genotype.json",
        ],
    );
}

/// Step records and alpha lines read back from the device every 3 steps (and at each epoch's
/// end and before a checkpoint) are exactly those read after every step, with the same
/// genotype: under the alternating schedule with prox (an alpha loss and a regularizer value
/// held every step, the FIMT held too) and under FIMT with CRB pruning (whose decision reads
/// the FIMT every step; the pruned count held). The observer sees one batch of records per 3
/// steps and the rest at each epoch's end; a run stopped after step 4 (one step held back)
/// resumes to the same files.
#[test]
fn records_read_back_in_batches_equal_records_read_every_step() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    write_synthetic_corpus(data.path(), 400, 200, 100, 1).unwrap();
    let settings: [&[&str]; 2] = [
        &["regularizer.kind=\"prox\""],
        &[
            "schedule.kind=\"fimt\"",
            "schedule.ratio=3",
            "schedule.h0=1000.0",
            "arch.activation=\"crb\"",
            "arch.lr=0.1",
            "compat=\"fixed\"",
        ],
    ];
    let files = [
        "metrics.jsonl",
        "alphas.jsonl",
        "genotypes.jsonl",
        "genotype.json",
        "genotype.txt",
        "summary.json",
    ];
    for setting in settings {
        let every_step = tiny_config(2, setting);
        let mut batched = every_step.clone();
        batched.speed.read_back_every = 3;

        let straight = tempfile::tempdir().unwrap();
        let outcome = run_rnn_search(
            &every_step,
            &options(straight.path(), data.path(), false),
            &mut NullObserver,
        )
        .unwrap();
        let steps: Vec<usize> = (0..2)
            .map(|epoch| {
                read_metrics(straight.path())
                    .unwrap()
                    .iter()
                    .filter(|record| record.kind == MetricKind::Step && record.epoch == epoch)
                    .count()
            })
            .collect();
        assert!(
            steps.iter().any(|count| count % 3 != 0),
            "{steps:?}: 3 divides every epoch's steps"
        );
        let expected_batches: Vec<usize> = steps
            .iter()
            .flat_map(|&count| {
                let mut batches = vec![3; count / 3];
                batches.extend((count % 3 != 0).then_some(count % 3));
                batches
            })
            .collect();

        let batches_run = tempfile::tempdir().unwrap();
        let mut observer = ReadBackBatches::default();
        let batched_outcome = run_rnn_search(
            &batched,
            &options(batches_run.path(), data.path(), false),
            &mut observer,
        )
        .unwrap();
        assert_eq!(observer.all(), expected_batches, "{setting:?}");
        assert_eq!(batched_outcome, outcome, "{setting:?}");
        assert_same_runs(straight.path(), batches_run.path(), &files);
        let metrics = read_metrics(straight.path()).unwrap();
        let step = metrics
            .iter()
            .find(|record| record.kind == MetricKind::Step && record.get("alpha_step") == Some(1.0))
            .expect("an alpha step");
        for key in [
            "loss",
            "alpha_loss",
            "grad_norm",
            "fimt",
            "fimt_ewma",
            "dist",
        ] {
            assert!(step.get(key).is_some(), "{setting:?}: no {key}");
        }

        let resumed = tempfile::tempdir().unwrap();
        let stopped = run_rnn_search(
            &batched,
            &options(resumed.path(), data.path(), false),
            &mut StopAt::after(4),
        )
        .unwrap();
        assert!(!stopped.finished);
        let resumed_outcome = run_rnn_search(
            &batched,
            &options(resumed.path(), data.path(), true),
            &mut NullObserver,
        )
        .unwrap();
        assert_eq!(resumed_outcome, outcome, "{setting:?}");
        assert_same_runs(straight.path(), resumed.path(), &files);
    }
}

#[test]
fn tiny_search_lowers_validation_perplexity_and_writes_its_run_directory() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    let corpus = write_synthetic_corpus(data.path(), 3000, 400, 200, 2).unwrap();
    let config = tiny_config(
        3,
        &[
            "network.nhid=16",
            "data.batch_size=8",
            "data.bptt=10",
            "network.dropout=0.1",
            "network.dropouth=0.05",
            "network.dropoutx=0.1",
            "network.dropouti=0.05",
            "weights.lr=10.0",
            "regularizer.kind=\"prox\"",
        ],
    );
    let run = tempfile::tempdir().unwrap();
    let outcome = run_rnn_search(
        &config,
        &options(run.path(), data.path(), false),
        &mut NullObserver,
    )
    .unwrap();
    let valid = epoch_values(run.path(), "valid_ppl");
    assert_eq!(valid.len(), 3);
    let best = outcome.best_valid_ppl.unwrap();
    // The untrained model predicts about uniformly (perplexity = 41 words); the chain is
    // learnable far below that. (In evaluation mode the search cell's shared BatchNorm uses
    // running statistics pooled over all nodes, SPEC 7.4, so validation perplexity stays well
    // above the training perplexity on such a tiny model.)
    assert!(best < 0.5 * corpus.vocab as f64, "valid ppl {valid:?}");
    let saved = RnnGenotype::load(run.path().join("genotype.json")).unwrap();
    assert_eq!(saved, outcome.genotype);
    assert_eq!(saved.recurrent.len(), 8);
    let text = std::fs::read_to_string(run.path().join("genotype.txt")).unwrap();
    assert!(text.starts_with("Genotype_rnn(recurrent=["), "{text}");
    let best_epoch = outcome.best_epoch.unwrap() as usize;
    assert_eq!(best, valid[best_epoch]);
    let summary = std::fs::read_to_string(run.path().join("summary.json")).unwrap();
    assert!(summary.contains("\"best_valid_ppl\""), "{summary}");
    let first = read_metrics(run.path()).unwrap();
    let step = first.iter().find(|r| r.kind == MetricKind::Step).unwrap();
    for key in [
        "loss",
        "ppl",
        "lr",
        "seq_len",
        "alpha_step",
        "alpha_loss",
        "regularizer",
        "fimt",
        "fimt_ewma",
        "dist",
    ] {
        assert!(step.get(key).is_some(), "step record lacks {key}");
    }
    assert_eq!(outcome.params, 41 * 16 + 41 + 32 * 32 + 8 * 16 * 32);
}

#[test]
fn the_sticky_flag_repeats_alpha_steps_until_the_epoch_ends() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    write_synthetic_corpus(data.path(), 400, 200, 100, 3).unwrap();
    let run = |compat: &str| {
        let config = tiny_config(
            1,
            &[
                "schedule.kind=\"constant\"",
                "schedule.ratio=4",
                &format!("compat=\"{compat}\""),
            ],
        );
        let dir = tempfile::tempdir().unwrap();
        run_rnn_search(
            &config,
            &options(dir.path(), data.path(), false),
            &mut NullObserver,
        )
        .unwrap();
        alpha_steps(dir.path(), 0)
    };
    let fixed = run("fixed");
    assert_eq!(&fixed[..3], &[3, 7, 11]);
    assert!(fixed.windows(2).all(|pair| pair[1] - pair[0] == 4));
    let reference = run("reference");
    assert_eq!(reference[0], 3);
    assert!(reference.windows(2).all(|pair| pair[1] == pair[0] + 1));
    assert!(reference.len() > fixed.len());
}

#[test]
fn a_missing_corpus_and_a_tiny_one_are_clear_errors() {
    let empty = tempfile::tempdir().unwrap();
    let run = tempfile::tempdir().unwrap();
    let error = run_rnn_search(
        &tiny_config(1, &[]),
        &options(run.path(), empty.path(), false),
        &mut NullObserver,
    )
    .unwrap_err();
    assert!(matches!(error, RunError::Corpus(_)), "{error}");
    assert!(error.to_string().contains("train.txt"), "{error}");
    write_synthetic_corpus(empty.path(), 400, 5, 5, 3).unwrap();
    let error = run_rnn_search(
        &tiny_config(1, &[]),
        &options(run.path(), empty.path(), false),
        &mut NullObserver,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("valid split"), "{error}");
}

#[test]
fn crb_under_fixed_prunes_for_good_and_resumes_exactly() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    write_synthetic_corpus(data.path(), 400, 200, 100, 1).unwrap();
    let config = tiny_config(
        1,
        &[
            "arch.activation=\"crb\"",
            "arch.lr=0.1",
            "compat=\"fixed\"",
            "regularizer.kind=\"prox\"",
        ],
    );
    let straight = tempfile::tempdir().unwrap();
    run_rnn_search(
        &config,
        &options(straight.path(), data.path(), false),
        &mut NullObserver,
    )
    .unwrap();
    let pruned: Vec<f64> = read_metrics(straight.path())
        .unwrap()
        .iter()
        .filter_map(|record| record.get("pruned"))
        .collect();
    assert!(
        pruned.windows(2).all(|pair| pair[1] >= pair[0]),
        "{pruned:?}"
    );
    assert!(*pruned.last().unwrap() > 0.0, "nothing pruned: {pruned:?}");
    let resumed = tempfile::tempdir().unwrap();
    run_rnn_search(
        &config,
        &options(resumed.path(), data.path(), false),
        &mut StopAt::after(7),
    )
    .unwrap();
    run_rnn_search(
        &config,
        &options(resumed.path(), data.path(), true),
        &mut NullObserver,
    )
    .unwrap();
    let a = tensors_of_latest(straight.path());
    let b = tensors_of_latest(resumed.path());
    assert!(a.iter().any(|(_, name, _)| name == "alphas_mask"));
    for ((group, name, tensor_a), (_, _, tensor_b)) in a.iter().zip(&b) {
        assert!(
            tensor_a.equal(tensor_b),
            "{group}/{name} differs after resume"
        );
    }
    assert_eq!(
        read_metrics(straight.path()).unwrap(),
        read_metrics(resumed.path()).unwrap()
    );
}

#[test]
fn resuming_with_another_config_is_refused() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    write_synthetic_corpus(data.path(), 400, 200, 100, 1).unwrap();
    let run = tempfile::tempdir().unwrap();
    run_rnn_search(
        &tiny_config(1, &[]),
        &options(run.path(), data.path(), false),
        &mut StopAt::after(2),
    )
    .unwrap();
    let error = run_rnn_search(
        &tiny_config(1, &["network.nhid=12"]),
        &options(run.path(), data.path(), true),
        &mut NullObserver,
    )
    .unwrap_err();
    assert!(matches!(error, RunError::Resume { .. }), "{error}");
}
