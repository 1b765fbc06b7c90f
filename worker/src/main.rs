//! `worker`: the darts-prime worker daemon. One slot per `--gpu` (or `--cpu`); it dials the
//! coordinator, so the node needs no inbound port. SIGTERM or SIGUSR1 (Slurm's warning
//! signal): running trials checkpoint, report "preempted", and the worker exits cleanly; if the
//! coordinator does not answer within `--shutdown-grace`, it exits anyway.
//! A training thread that shows no progress for `--stall-timeout` has its attempt failed as
//! stalled; its slot takes no trial until the thread ends (the other slots keep working).

use anyhow::Context;
use clap::{Parser, ValueEnum};
use prime_nas::hardware::{check_cuda_device, GpuInventory};
use prime_proto::client::Credentials;
use prime_worker::nas::NasTrainer;
use prime_worker::observer::CheckpointPolicy;
use prime_worker::simulated::SimulatedTrainer;
use prime_worker::{Device, Trainer, Worker, WorkerConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// Which trainer runs the trials.
/// `worker --version`: the version, git commit and torch build variant.
static VERSION: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(prime_nas::build_info::version_text);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TrainerKind {
    /// The prime-nas engine (libtorch).
    Nas,
    /// A simulated trainer without tensors, for smoke tests of a deployment.
    Simulated,
}

/// Runs darts-prime trials handed out by a coordinator.
#[derive(Debug, Parser)]
#[command(name = "worker", version = VERSION.as_str(), about)]
struct Args {
    /// URL of the coordinator (`https://` for TLS).
    #[arg(long)]
    coordinator: String,
    /// File holding this worker's token (a worker-role token from `prime token new`);
    /// default: $PRIME_TOKEN.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// PEM CA certificate to trust for an https:// coordinator (default: $PRIME_CA).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// PEM client certificate, for a coordinator that requires mutual TLS.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// PEM key of --client-cert.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// A GPU to train on (repeat for several; one trial per GPU).
    #[arg(long = "gpu")]
    gpus: Vec<u32>,
    /// Train on the CPU (machines without GPUs).
    #[arg(long, conflicts_with = "gpus")]
    cpu: bool,
    /// Train on the CPU as this many devices, one slot each (1 to 64): a machine without
    /// GPUs that shows the coordinator a multi-device worker (tests, demos of placement).
    /// The cores are divided among the slots: libtorch computes with cores / N threads, so
    /// trials side by side, or the ranks of one trial, do not oversubscribe the CPU.
    #[arg(long, conflicts_with_all = ["gpus", "cpu"], value_parser = clap::value_parser!(u32).range(1..=64))]
    cpu_devices: Option<u32>,
    /// Give each trial that shares a GPU (`gpu_share` above 1) a CUDA stream of its own, so
    /// that its kernels can run beside its neighbours' instead of queueing behind them on the
    /// device's default stream. Off by default until measured on GPUs (scripts/gpu-check.sh
    /// compares both).
    #[arg(long)]
    own_streams: bool,
    /// Name of this worker (default: the host name); a restarted worker keeps its name.
    #[arg(long)]
    name: Option<String>,
    /// Directory for run directories.
    #[arg(long, default_value = "runs/worker")]
    work_dir: PathBuf,
    /// Directory of method presets replacing the compiled-in ones of configs/methods.
    #[arg(long)]
    methods_dir: Option<PathBuf>,
    /// Directory of the datasets: the CIFAR binary folders (`cifar-10-batches-bin/`,
    /// `cifar-100-binary/`) and `ptb/` with the Penn Treebank text files.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// Upload a checkpoint every N epochs...
    #[arg(long, default_value_t = 1)]
    checkpoint_epochs: u32,
    /// ...or every M minutes, whichever comes first.
    #[arg(long, default_value_t = 15.0)]
    checkpoint_minutes: f64,
    /// Seconds between requests for work while the queue is empty.
    #[arg(long, default_value_t = 2.0)]
    poll_secs: f64,
    /// Fail a trial whose training thread shows no progress (no step, metric or checkpoint)
    /// for this long, and keep its slot out of service until the thread ends: seconds, or a
    /// number with s, m or h; 0 disables the watchdog.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    stall_timeout: Duration,
    /// On SIGTERM or SIGUSR1, the longest time spent uploading checkpoints and reporting
    /// trials preempted before exiting, even if the coordinator is unreachable (their trials
    /// then resume from their last committed checkpoint). Keep it below the time the
    /// scheduler waits before it kills: Slurm's warning signal comes 120 s before
    /// (`--signal=B:USR1@120`), systemd waits 300 s (`TimeoutStopSec`). Seconds, or a
    /// number with s, m or h.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    shutdown_grace: Duration,
    /// The trainer.
    #[arg(long, value_enum, default_value_t = TrainerKind::Nas)]
    trainer: TrainerKind,
    /// Simulated trainer: steps per epoch.
    #[arg(long, default_value_t = 20)]
    sim_steps_per_epoch: u64,
    /// Simulated trainer: milliseconds per step.
    #[arg(long, default_value_t = 50)]
    sim_step_ms: u64,
    /// Simulated trainer: bytes of simulated weights per checkpoint.
    #[arg(long, default_value_t = 64 << 10)]
    sim_weights_bytes: usize,
}

/// Parses `90`, `90s`, `30m` or `2h` (non-negative, finite).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit_secs) = match text.char_indices().last() {
        Some((at, 's')) => (&text[..at], 1.0),
        Some((at, 'm')) => (&text[..at], 60.0),
        Some((at, 'h')) => (&text[..at], 3600.0),
        _ => (text, 1.0),
    };
    let value: f64 = number.trim().parse().map_err(|_| {
        format!("`{text}` is not a duration: give seconds, or a number with s, m or h")
    })?;
    Duration::try_from_secs_f64(value * unit_secs)
        .map_err(|_| format!("`{text}` is not a duration: it must be finite and not negative"))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "worker".to_string())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: a log piped to a file or a journal stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(serve(args));
    // Past the grace period a call may still hang on an unanswering coordinator, and a
    // training thread may still run: neither may delay the exit.
    runtime.shutdown_background();
    result
}

/// libtorch's intra-op threads for a worker of `slots` CPU devices on `cores` cores: the
/// cores divided among the slots (at least one each).
fn threads_per_cpu_slot(cores: usize, slots: u32) -> i32 {
    i32::try_from((cores / slots.max(1) as usize).max(1)).unwrap_or(i32::MAX)
}

/// The devices the arguments name, one slot each.
fn devices(args: &Args) -> Vec<Device> {
    match (args.cpu, args.cpu_devices) {
        (_, Some(count)) => vec![Device::Cpu; count as usize],
        (true, None) => vec![Device::Cpu],
        (false, None) => args.gpus.iter().map(|&gpu| Device::Cuda(gpu)).collect(),
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let devices = devices(&args);
    anyhow::ensure!(
        !devices.is_empty(),
        "give at least one --gpu N, or --cpu, or --cpu-devices N"
    );
    if let (Some(slots), TrainerKind::Nas) = (args.cpu_devices, args.trainer) {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let threads = threads_per_cpu_slot(cores, slots);
        tch::set_num_threads(threads);
        tracing::info!(cores, slots, threads, "libtorch threads per CPU slot");
    }
    let inventory = GpuInventory::open();
    let gpus = inventory.snapshot();
    // The simulated trainer runs no kernels: only the libtorch trainer needs its GPUs checked.
    if args.trainer == TrainerKind::Nas {
        for device in &devices {
            if let Device::Cuda(index) = device {
                check_cuda_device(*index as usize, &gpus)?;
            }
        }
    }
    let trainer: Arc<dyn Trainer> = match args.trainer {
        TrainerKind::Nas => Arc::new(NasTrainer {
            methods_dir: args.methods_dir.clone(),
            data_dir: args.data_dir.clone(),
            synthetic_dir: args.work_dir.join("synthetic-data"),
            own_streams: args.own_streams,
        }),
        TrainerKind::Simulated => Arc::new(SimulatedTrainer::new(
            args.sim_steps_per_epoch,
            Duration::from_millis(args.sim_step_ms),
            args.sim_weights_bytes,
        )),
    };
    let name = args.name.clone().unwrap_or_else(host_name);
    let mut config = WorkerConfig::new(&args.coordinator, &name, devices, args.work_dir.clone());
    config.checkpoint = CheckpointPolicy {
        every_epochs: args.checkpoint_epochs,
        every: Duration::from_secs_f64(args.checkpoint_minutes * 60.0),
    };
    config.credentials = Credentials::load(
        args.token_file.as_deref(),
        args.ca.as_deref(),
        args.client_cert.clone().zip(args.client_key.clone()),
    )?;
    config.poll_interval = Duration::from_secs_f64(args.poll_secs);
    config.stall_timeout = args.stall_timeout;
    config.shutdown_grace = args.shutdown_grace;
    config.gpus = Arc::new(inventory);
    std::fs::create_dir_all(&config.work_dir)
        .with_context(|| format!("creating {}", config.work_dir.display()))?;
    let worker = Worker::new(config, trainer)?;
    let handle = worker.handle();
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigusr1 = signal(SignalKind::user_defined1())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = sigterm.recv() => tracing::info!("SIGTERM"),
            _ = sigusr1.recv() => tracing::info!("SIGUSR1"),
            _ = sigint.recv() => tracing::info!("SIGINT"),
        }
        handle.preempt_and_exit();
    });
    tracing::info!(worker = %name, coordinator = %args.coordinator, "worker starting");
    worker.run().await?;
    tracing::info!("worker stopped cleanly");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_seconds_minutes_and_hours() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        for bad in ["", "m", "ten", "-5", "1d", "inf"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpu_slots_divide_the_cores_among_them() {
        assert_eq!(threads_per_cpu_slot(16, 4), 4);
        assert_eq!(threads_per_cpu_slot(2, 2), 1);
        assert_eq!(threads_per_cpu_slot(6, 4), 1);
        assert_eq!(threads_per_cpu_slot(2, 8), 1, "at least one thread");
        assert_eq!(threads_per_cpu_slot(8, 1), 8);
    }

    #[test]
    fn cpu_devices_give_the_cpu_several_slots_within_range() {
        let parse = |extra: &[&str]| {
            Args::try_parse_from(
                ["worker", "--coordinator", "http://head:50051"]
                    .iter()
                    .chain(extra),
            )
        };
        let args = parse(&["--cpu-devices", "2"]).unwrap();
        assert_eq!(devices(&args), vec![Device::Cpu, Device::Cpu]);
        assert_eq!(
            devices(&parse(&["--gpu", "0", "--gpu", "3"]).unwrap()),
            vec![Device::Cuda(0), Device::Cuda(3)]
        );
        for bad in [
            &["--cpu-devices", "0"][..],
            &["--cpu-devices", "65"],
            &["--cpu-devices", "2", "--gpu", "0"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
