//! `prime bench coordinator`: assignment latency and metric ingestion of an in-process
//! coordinator on loopback, with 1,000 queued trials and 64 simulated workers. Prints one
//! JSON line.

use clap::Args;
use prime_proto::pb::{self, finish_trial_request::Outcome};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Arguments of `prime bench coordinator`.
#[derive(Debug, Args)]
pub struct CoordinatorBenchArgs {
    /// Search trials queued (methods x seeds of one dataset).
    #[arg(long, default_value_t = 1000)]
    pub trials: u32,
    /// Simulated workers, one slot each.
    #[arg(long, default_value_t = 64)]
    pub workers: u32,
    /// Metric points each trial reports.
    #[arg(long, default_value_t = 500)]
    pub points_per_trial: u32,
    /// Points per metric batch.
    #[arg(long, default_value_t = 250)]
    pub batch: u32,
}

fn bench_grid(trials: u32) -> String {
    let methods = &prime_core::presets::METHOD_NAMES[..10];
    let seeds_per_method = trials.div_ceil(methods.len() as u32);
    let seeds: Vec<u32> = (1..=seeds_per_method).collect();
    let mut text =
        format!("version = 1\nname = \"bench\"\ndatasets = [\"cifar10\"]\nseeds = {seeds:?}\n");
    for method in methods {
        text.push_str(&format!("[[methods]]\npreset = \"{method}\"\n"));
    }
    text
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[index]
}

async fn virtual_worker(
    url: String,
    index: u32,
    args: Arc<CoordinatorBenchArgs>,
    latencies: Arc<Mutex<Vec<f64>>>,
) -> anyhow::Result<u64> {
    let mut client = super::connect(&url)?;
    let name = format!("bench-{index}");
    let session = client
        .register_worker(pb::RegisterWorkerRequest {
            name: name.clone(),
            slots: vec![pb::Slot {
                index: 0,
                device: "cpu".into(),
            }],
            running: Vec::new(),
        })
        .await?
        .into_inner()
        .session;
    let mut points = 0u64;
    loop {
        let asked = Instant::now();
        let reply = client
            .request_trial(pb::RequestTrialRequest {
                name: name.clone(),
                session,
                slot: 0,
            })
            .await?
            .into_inner();
        let Some(assignment) = reply.assignment else {
            return Ok(points);
        };
        latencies
            .lock()
            .await
            .push(asked.elapsed().as_secs_f64() * 1000.0);
        let mut step = 0u64;
        while step < u64::from(args.points_per_trial) {
            let metrics: Vec<pb::Metric> = (0..u64::from(args.batch)
                .min(u64::from(args.points_per_trial) - step))
                .map(|offset| pb::Metric {
                    kind: "step".into(),
                    epoch: 0,
                    step: step + offset,
                    clock: 0.0,
                    values: [("loss".to_string(), 1.0), ("lr".to_string(), 0.025)]
                        .into_iter()
                        .collect(),
                })
                .collect();
            step += metrics.len() as u64;
            points += metrics.len() as u64;
            client
                .report_metrics(pb::MetricBatch {
                    trial_id: assignment.trial_id,
                    epoch: assignment.epoch,
                    metrics,
                    logs: Vec::new(),
                })
                .await?;
        }
        client
            .finish_trial(pb::FinishTrialRequest {
                trial_id: assignment.trial_id,
                epoch: assignment.epoch,
                outcome: Some(Outcome::SucceededJson(
                    r#"{"genotype":{"normal":[]}}"#.into(),
                )),
            })
            .await?;
    }
}

/// Runs `prime bench coordinator`.
pub fn run(args: CoordinatorBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.workers > 0 && args.batch > 0,
        "--workers and --batch must be positive"
    );
    let args = Arc::new(args);
    super::runtime()?.block_on(async {
        let state = tempfile::tempdir()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let config = prime_coordinator::CoordinatorConfig {
            lease: Duration::from_secs(60),
            heartbeat: Duration::from_secs(10),
            keep_checkpoints: 2,
        };
        let coordinator = prime_coordinator::start(listener, state.path(), config).await?;
        let url = coordinator.url();
        let queued = super::submit::submit_text(&url, "bench.toml", &bench_grid(args.trials))
            .await?
            .search_trials;
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let tasks: Vec<_> = (0..args.workers)
            .map(|index| {
                tokio::spawn(virtual_worker(
                    url.clone(),
                    index,
                    args.clone(),
                    latencies.clone(),
                ))
            })
            .collect();
        let mut points = 0;
        for task in tasks {
            points += task.await??;
        }
        let wall = started.elapsed().as_secs_f64();
        coordinator.shutdown().await?;
        let mut latencies = latencies.lock().await.clone();
        latencies.sort_by(f64::total_cmp);
        let line = serde_json::json!({
            "bench": "coordinator",
            "queued_trials": queued,
            "workers": args.workers,
            "assignments": latencies.len(),
            "assign_p50_ms": percentile(&latencies, 0.50),
            "assign_p99_ms": percentile(&latencies, 0.99),
            "metric_points": points,
            "points_per_s": points as f64 / wall,
            "wall_s": wall,
        });
        println!("{line}");
        anyhow::Ok(())
    })
}
