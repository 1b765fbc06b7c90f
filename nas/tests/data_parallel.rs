//! Data-parallel runs on the CPU back-end (ranks as threads of this process): a two-rank
//! evaluation or search writes one run directory as a single device does and resumes
//! exactly; a run fails as a whole, without hanging, when a rank panics, and the retry
//! resumes from the checkpoint.

use prime_core::config::{LayeredConfig, SearchConfig};
use prime_core::dataset::ImageDataset;
use prime_core::eval_config::EvalConfig;
use prime_core::metrics::{MetricKind, MetricRecord};
use prime_core::observer::{NullObserver, RunObserver};
use prime_nas::data::{load_cifar, write_synthetic, DownloadPolicy};
use prime_nas::error::RunError;
use prime_nas::eval::task::EvalTask;
use prime_nas::eval::{run_eval, run_eval_data_parallel, TIMING_KEYS};
use prime_nas::parallel::rank::DataParallel;
use prime_nas::run::records::read_metrics;
use prime_nas::run::{
    run_data_parallel, At, Plan, RunOptions, Saved, Sink, Step, Task, TensorGroups,
};
use prime_nas::search::{run_search, run_search_data_parallel};
use std::path::Path;
use std::time::{Duration, Instant};
use tch::Device;

mod common;

use common::{assert_same_runs, run_straight_and_interrupted_at_the_first_epoch_end};

const TWO_RANKS: [Device; 2] = [Device::Cpu, Device::Cpu];

fn tiny_config(extra: &[&str]) -> EvalConfig {
    let mut overrides: Vec<String> = [
        "epochs=2",
        "data.batch_size=16",
        "data.limit=120",
        "data.prefetch=2",
        "network.init_channels=4",
        "network.layers=3",
        "network.drop_path_prob=0.3",
        "report_every=3",
        "checkpoint.every_epochs=1",
        "seed=7",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    overrides.extend(extra.iter().map(|s| s.to_string()));
    EvalConfig::from_overrides(&overrides).unwrap()
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

fn synthetic_data() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    write_synthetic(data.path(), ImageDataset::Cifar10, 128, 40, 3).unwrap();
    data
}

/// Metric records without the values that measure time.
fn untimed_metrics(run_dir: &Path) -> Vec<MetricRecord> {
    let mut records = read_metrics(run_dir).unwrap();
    for record in &mut records {
        for key in TIMING_KEYS {
            record.values.remove(key);
        }
    }
    records
}

/// (kind, epoch, step, value names) of every record, without the timing values.
fn record_shapes(run_dir: &Path) -> Vec<(MetricKind, u32, u64, Vec<String>)> {
    read_metrics(run_dir)
        .unwrap()
        .into_iter()
        .map(|record| {
            let names = record
                .values
                .keys()
                .filter(|name| !TIMING_KEYS.contains(&name.as_str()))
                .cloned()
                .collect();
            (record.kind, record.epoch, record.step, names)
        })
        .collect()
}

/// A two-rank evaluation writes the records a single device writes (each once, rank 0's),
/// and, stopped after an epoch's last step and crashed after a checkpoint, resumes to the
/// same checkpoint tensors, records and result files bit for bit.
#[test]
fn a_two_rank_evaluation_writes_one_run_directory_and_resumes_exactly() {
    tch::set_num_threads(1);
    let data = synthetic_data();
    let config = tiny_config(&[]);
    let (straight, interrupted) =
        run_straight_and_interrupted_at_the_first_epoch_end(|dir, resume, observer| {
            let options = options(dir, data.path(), resume);
            let outcome = run_eval_data_parallel(&TWO_RANKS, &config, &options, observer);
            Ok::<_, RunError>(outcome.unwrap().finished)
        });
    assert_same_runs(
        straight.path(),
        interrupted.path(),
        &["weights.safetensors", "best_weights.safetensors"],
    );
    assert_eq!(
        untimed_metrics(straight.path()),
        untimed_metrics(interrupted.path()),
        "metrics differ or were duplicated by the resume"
    );
    let single = tempfile::tempdir().unwrap();
    let outcome = run_eval(
        &config,
        &options(single.path(), data.path(), false),
        &mut NullObserver,
    )
    .unwrap();
    assert!(outcome.finished);
    assert_eq!(
        record_shapes(single.path()),
        record_shapes(straight.path()),
        "the same records at the same steps"
    );
}

/// An evaluation task whose rank `rank` panics before step `step`.
struct PanicsBeforeStep<'a> {
    task: EvalTask<'a>,
    rank: usize,
    step: u64,
}

impl Task for PanicsBeforeStep<'_> {
    type State = <EvalTask<'static> as Task>::State;
    type Outcome = <EvalTask<'static> as Task>::Outcome;

    fn plan(&self) -> Result<Plan, RunError> {
        self.task.plan()
    }
    fn start(&mut self, sink: &mut Sink) -> Result<(), RunError> {
        self.task.start(sink)
    }
    fn restore(&mut self, saved: Saved<Self::State>) -> Result<(), RunError> {
        self.task.restore(saved)
    }
    fn begin_epoch(&mut self, at: At, sink: &mut Sink) -> Result<(), RunError> {
        self.task.begin_epoch(at, sink)
    }
    fn train_step(&mut self, at: At, sink: &mut Sink) -> Result<Step, RunError> {
        let rank = self.task.data_parallel().map(|ranks| ranks.rank());
        if rank == Some(self.rank) && at.global_step == self.step {
            panic!("rank {} dies before step {}", self.rank, self.step);
        }
        self.task.train_step(at, sink)
    }
    fn end_epoch(&mut self, at: At, sink: &mut Sink) -> Result<(), RunError> {
        self.task.end_epoch(at, sink)
    }
    fn data_parallel(&mut self) -> Option<&mut DataParallel> {
        self.task.data_parallel()
    }
    fn checkpoint(&mut self, groups: &mut TensorGroups) -> Result<Self::State, RunError> {
        self.task.checkpoint(groups)
    }
    fn stopped(&mut self, epochs_done: u32) -> Result<Self::Outcome, RunError> {
        self.task.stopped(epochs_done)
    }
    fn finish(&mut self, at: At, sink: &mut Sink) -> Result<Self::Outcome, RunError> {
        self.task.finish(at, sink)
    }
}

/// A rank that panics mid-run fails the whole run at once (its collective partner does not
/// wait out the timeout), naming the rank; the retry resumes from the last checkpoint and
/// ends where a run without the failure ends.
#[test]
fn a_panicking_rank_fails_the_run_at_once_and_the_retry_resumes() {
    tch::set_num_threads(1);
    let data = synthetic_data();
    let config = tiny_config(&["epochs=2"]);
    let cifar = load_cifar(data.path(), ImageDataset::Cifar10, DownloadPolicy::Never).unwrap();
    let timeout = Duration::from_secs(60);
    let run_with_a_panic = |rank: usize, dir: &Path| {
        let started = Instant::now();
        let error = run_data_parallel(
            &TWO_RANKS,
            timeout,
            &options(dir, data.path(), false),
            &mut NullObserver as &mut dyn RunObserver,
            |ranks, options| {
                Ok(PanicsBeforeStep {
                    task: EvalTask::new_rank(&config, options, ranks, cifar.clone())?,
                    rank,
                    // 8 steps per epoch: in epoch 1, after epoch 0's checkpoint.
                    step: 10,
                })
            },
        )
        .unwrap_err();
        assert!(
            started.elapsed() < timeout,
            "the failure waited out the timeout"
        );
        error
    };
    let failed = tempfile::tempdir().unwrap();
    let error = run_with_a_panic(1, failed.path());
    assert_eq!(
        error.to_string(),
        "rank 1 of the data-parallel run panicked: rank 1 dies before step 10"
    );
    let outcome = run_eval_data_parallel(
        &TWO_RANKS,
        &config,
        &options(failed.path(), data.path(), true),
        &mut NullObserver,
    )
    .unwrap();
    assert!(outcome.finished);
    let straight = tempfile::tempdir().unwrap();
    let outcome_straight = run_eval_data_parallel(
        &TWO_RANKS,
        &config,
        &options(straight.path(), data.path(), false),
        &mut NullObserver,
    )
    .unwrap();
    assert_eq!(outcome, outcome_straight);
    assert_same_runs(straight.path(), failed.path(), &["weights.safetensors"]);

    let rank0_failed = tempfile::tempdir().unwrap();
    let error = run_with_a_panic(0, rank0_failed.path());
    assert_eq!(
        error.to_string(),
        "rank 0 of the data-parallel run panicked: rank 0 dies before step 10"
    );
}

/// A global batch that leaves a rank without images is refused before training.
#[test]
fn a_batch_too_small_for_the_ranks_is_refused() {
    let data = synthetic_data();
    let config = tiny_config(&[
        "data.batch_size=3",
        "data.limit=7",
        "network.auxiliary=false",
    ]);
    let run_dir = tempfile::tempdir().unwrap();
    let devices = [Device::Cpu; 4];
    let error = run_eval_data_parallel(
        &devices,
        &config,
        &options(&run_dir.path().join("run"), data.path(), false),
        &mut NullObserver,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains(
            "7 training images in batches of 3 over 4 ranks leave a rank without an image"
        ),
        "{error}"
    );
    assert!(!run_dir.path().join("run").exists(), "nothing written");
}

/// A two-rank search (alpha and weight steps, FIMT every step) writes the records and alpha
/// history of a single device and resumes to the same files and checkpoint bit for bit.
#[test]
fn a_two_rank_search_writes_one_run_directory_and_resumes_exactly() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    write_synthetic(data.path(), ImageDataset::Cifar10, 128, 16, 3).unwrap();
    let overrides: Vec<String> = [
        "epochs=2",
        "data.batch_size=16",
        "data.limit=128",
        "data.prefetch=2",
        "network.init_channels=2",
        "network.layers=3",
        "network.steps=2",
        "network.multiplier=2",
        "seed=7",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let config = SearchConfig::from_toml("version = 1\n", "test", &overrides).unwrap();
    let (straight, interrupted) =
        run_straight_and_interrupted_at_the_first_epoch_end(|dir, resume, observer| {
            let options = options(dir, data.path(), resume);
            let outcome = run_search_data_parallel(&TWO_RANKS, &config, &options, observer);
            Ok::<_, RunError>(outcome.unwrap().finished)
        });
    assert_same_runs(
        straight.path(),
        interrupted.path(),
        &[
            "metrics.jsonl",
            "alphas.jsonl",
            "genotypes.jsonl",
            "genotype.json",
            "summary.json",
        ],
    );
    let single = tempfile::tempdir().unwrap();
    let outcome = run_search(
        &config,
        &options(single.path(), data.path(), false),
        &mut NullObserver,
    )
    .unwrap();
    assert!(outcome.finished);
    assert_eq!(record_shapes(single.path()), record_shapes(straight.path()));
    let lines = |dir: &Path| {
        std::fs::read_to_string(dir.join("alphas.jsonl"))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(lines(single.path()), lines(straight.path()));
}
