//! `prime demo`: an embedded coordinator and a local worker in one process run a small grid
//! (two methods x two seeds, a tiny search and a short evaluation on synthetic data) with
//! live progress, ending in the results table.

use super::status::watch;
use super::submit::submit_text;
use clap::{Args, ValueEnum};
use prime_coordinator::CoordinatorConfig;
use prime_proto::results::{build_rows, render, Format};
use prime_worker::nas::NasTrainer;
use prime_worker::simulated::SimulatedTrainer;
use prime_worker::{Device, Trainer, Worker, WorkerConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The demo grid: real search settings scaled down to seconds per epoch on a CPU.
///
/// DARTS takes an alpha step at every weight step. DARTS-PRIME takes one when the EWMA of the
/// FIMT falls below a threshold that starts at h0, grows by h_i = 1.05 per weight step without
/// one and shrinks by h_i^-10 after one. The paper's h0 = 1.0 suits its network; this 4-channel
/// network starts with an FIMT of about 10 to 20, so from 1.0 the threshold would need about 50
/// weight steps (more than the demo has) before the first alpha step. The demo starts the
/// threshold above that FIMT instead (the schedule itself is unchanged), so that both methods
/// train their alphas and the table compares trained architectures.
const DEMO_GRID: &str = r#"version = 1
name = "demo"
datasets = ["cifar10"]
seeds = [1, 2]

[search]
epochs = 3
batch_size = 16
init_channels = 4
layers = 3
data = "synthetic"
train_samples = 256

[[methods]]
preset = "darts"
label = "DARTS"

[[methods]]
preset = "darts-prime"
label = "DARTS-PRIME"

[methods.overrides.set]
"schedule.h0" = 16.0
"#;

/// The evaluation section of the demo grid.
const DEMO_EVALUATION: &str = r#"
[evaluation]
seeds = 1
run = { epochs = 2, batch_size = 16, init_channels = 4, layers = 3, data = "synthetic", train_samples = 128 }
"#;

/// The recurrent demo grid: the PTB search and retraining on a synthetic corpus, 16-d cells.
const DEMO_PTB_GRID: &str = r#"version = 1
name = "demo-ptb"
datasets = ["ptb"]
seeds = [1, 2]

[search]
epochs = 2
batch_size = 8
init_channels = 16
data = "synthetic"

[[methods]]
preset = "darts"
label = "DARTS"

[[methods]]
preset = "darts-prime"
label = "DARTS-PRIME"

[evaluation]
seeds = 1
run = { epochs = 2, batch_size = 8, init_channels = 16, data = "synthetic" }
"#;

/// The data set of the demo grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoDataset {
    /// CNN cells on synthetic CIFAR-10 images, scored by test error.
    Cifar10,
    /// Recurrent cells on a synthetic Penn Treebank-style corpus, scored by perplexity.
    Ptb,
}

/// Which trainer the demo's worker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoTrainer {
    /// The prime-nas engine.
    Nas,
    /// The simulated trainer (no tensors): shows the orchestration alone, in seconds.
    Simulated,
}

/// Arguments of `prime demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The trainer of the local worker.
    #[arg(long, value_enum, default_value_t = DemoTrainer::Nas)]
    pub trainer: DemoTrainer,
    /// The data set of the demo grid.
    #[arg(long, value_enum, default_value_t = DemoDataset::Cifar10)]
    pub dataset: DemoDataset,
    /// Keep the coordinator state and runs here (default: a temporary directory).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Directory of method presets replacing the compiled-in ones of configs/methods.
    #[arg(long)]
    pub methods_dir: Option<PathBuf>,
    /// Address of the dashboard (the coordinator's HTTP listener); port 0 picks a free one.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub http: std::net::SocketAddr,
}

/// Runs `prime demo`.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let temporary = tempfile::tempdir()?;
    let root = args
        .state
        .clone()
        .unwrap_or_else(|| temporary.path().to_path_buf());
    let trainer: Arc<dyn Trainer> = match args.trainer {
        DemoTrainer::Nas => Arc::new(NasTrainer {
            methods_dir: args.methods_dir.clone(),
            data_dir: root.join("data"),
            synthetic_dir: root.join("synthetic-data"),
            own_streams: false,
        }),
        DemoTrainer::Simulated => Arc::new(SimulatedTrainer::new(
            20,
            Duration::from_millis(25),
            64 << 10,
        )),
    };
    let (grid_name, grid) = match args.dataset {
        DemoDataset::Cifar10 => ("demo", format!("{DEMO_GRID}{DEMO_EVALUATION}")),
        DemoDataset::Ptb => ("demo-ptb", DEMO_PTB_GRID.to_string()),
    };
    let started = Instant::now();
    let runtime = super::runtime()?;
    let table = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let config = CoordinatorConfig {
            lease: Duration::from_secs(20),
            heartbeat: Duration::from_secs(1),
            keep_checkpoints: 2,
            http: Some(args.http),
            ..Default::default()
        };
        let coordinator =
            prime_coordinator::start(listener, &root.join("coordinator"), config).await?;
        let url = coordinator.url();
        eprintln!("demo: coordinator on {url}, state in {}", root.display());
        if let Some(http) = coordinator.http_addr {
            eprintln!("demo: watch the grid at http://{http}/grids/{grid_name}");
        }
        let mut worker_config =
            WorkerConfig::new(&url, "demo-worker", vec![Device::Cpu], root.join("worker"));
        worker_config.poll_interval = Duration::from_millis(200);
        let worker = Worker::new(worker_config, trainer)?;
        let handle = worker.handle();
        let worker_task = tokio::spawn(worker.run());
        submit_text(&url, "demo.toml", &grid, false).await?;
        let trials = watch(&url, grid_name, Duration::from_millis(500)).await?;
        handle.preempt_and_exit();
        worker_task.await??;
        coordinator.shutdown().await?;
        for trial in trials.iter().filter(|t| t.state == "failed") {
            eprintln!("demo: trial {} failed: {}", trial.trial_id, trial.reason);
        }
        anyhow::Ok(render(&build_rows(&trials)?, Format::Md, true)?)
    })?;
    eprintln!("demo: finished in {:.0} s", started.elapsed().as_secs_f64());
    print!("{table}");
    Ok(())
}
