//! `prime bench coordinator`: an in-process coordinator on loopback with 1,000 queued trials
//! and 64 simulated workers. Two phases, one JSON line:
//!
//! * assignment: the workers drain the queue (take a trial, report one small metric batch,
//!   finish it); latency is the round trip of each `RequestTrial` that got a trial;
//! * ingestion: each worker holds a trial and streams metric batches as fast as it can;
//!   points per second over the phase, and the assignment latency a probe sees meanwhile.
//!
//! The coordinator runs on a runtime of its own, as in its own process (the `coordinator`
//! binary's runtime has one thread per core); the simulated workers share another. Both
//! runtimes share the machine's cores.
//!
//! Each latency is reported twice: as the workers see it (round trip, including their own
//! scheduling on the shared cores) and as the coordinator sees it (`server_*`: from the
//! handler receiving the request to handing back the assignment, split into the wait for the
//! event loop and the work on it).

use clap::Args;
use prime_coordinator::latency::{AssignmentTimings, LatencySnapshot};
use prime_proto::client::Client;
use prime_proto::pb::{self, finish_trial_request::Outcome};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Metric points of the one batch each trial reports in the assignment phase.
const ASSIGNMENT_PHASE_POINTS: u64 = 50;
/// Pause between two requests of the probe during the ingestion phase.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// Arguments of `prime bench coordinator`.
#[derive(Debug, Args)]
pub struct CoordinatorBenchArgs {
    /// Search trials queued for the assignment phase.
    #[arg(long, default_value_t = 1000)]
    pub trials: u32,
    /// Simulated workers, one slot each.
    #[arg(long, default_value_t = 64)]
    pub workers: u32,
    /// Metric points each worker streams in the ingestion phase.
    #[arg(long, default_value_t = 5000)]
    pub points_per_worker: u32,
    /// Points per metric batch.
    #[arg(long, default_value_t = 250)]
    pub batch: u32,
}

fn bench_grid(name: &str, trials: u32) -> String {
    let methods = &prime_core::presets::METHOD_NAMES[..10];
    let seeds_per_method = trials.div_ceil(methods.len() as u32);
    let seeds: Vec<u32> = (1..=seeds_per_method).collect();
    let mut text =
        format!("version = 1\nname = \"{name}\"\ndatasets = [\"cifar10\"]\nseeds = {seeds:?}\n");
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

/// Snapshots of the coordinator's server-side assignment timings.
struct Snapshots {
    total: LatencySnapshot,
    queued: LatencySnapshot,
    on_loop: LatencySnapshot,
}

impl Snapshots {
    fn take(timings: &AssignmentTimings) -> Snapshots {
        Snapshots {
            total: timings.total.snapshot(),
            queued: timings.queued.snapshot(),
            on_loop: timings.on_loop.snapshot(),
        }
    }

    fn since(&self, earlier: &Snapshots) -> Snapshots {
        Snapshots {
            total: self.total.since(&earlier.total),
            queued: self.queued.since(&earlier.queued),
            on_loop: self.on_loop.since(&earlier.on_loop),
        }
    }

    /// Adds `PREFIX_p50_ms`, `PREFIX_p99_ms` (receipt to reply) and the p99 of their two
    /// parts (waiting for the event loop, working on it) to `line`.
    fn report(&self, prefix: &str, line: &mut serde_json::Value) {
        let fields = [
            ("p50_ms", self.total.quantile_ms(0.50)),
            ("p99_ms", self.total.quantile_ms(0.99)),
            ("queued_p99_ms", self.queued.quantile_ms(0.99)),
            ("on_loop_p99_ms", self.on_loop.quantile_ms(0.99)),
        ];
        for (name, value) in fields {
            line[format!("{prefix}_{name}")] = serde_json::json!(value);
        }
    }
}

/// A registered virtual worker.
struct VirtualWorker {
    client: Client,
    name: String,
    session: u64,
}

impl VirtualWorker {
    async fn register(url: &str, name: String) -> anyhow::Result<VirtualWorker> {
        let mut client = super::connect(url)?;
        let session = client
            .register_worker(pb::RegisterWorkerRequest {
                name: name.clone(),
                slots: vec![pb::Slot {
                    index: 0,
                    device: "cpu".into(),
                }],
                running: Vec::new(),
                stalled: Vec::new(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .session;
        Ok(VirtualWorker {
            client,
            name,
            session,
        })
    }

    /// Asks for a trial; the assignment and the round-trip time in milliseconds.
    async fn request(&mut self) -> anyhow::Result<(Option<pb::Assignment>, f64)> {
        let asked = Instant::now();
        let reply = self
            .client
            .request_trial(pb::RequestTrialRequest {
                name: self.name.clone(),
                session: self.session,
                slot: 0,
            })
            .await?
            .into_inner();
        Ok((reply.assignment, asked.elapsed().as_secs_f64() * 1000.0))
    }

    async fn report(
        &mut self,
        assignment: &pb::Assignment,
        first_step: u64,
        points: u64,
    ) -> anyhow::Result<()> {
        let metrics = (first_step..first_step + points)
            .map(|step| pb::Metric {
                kind: "step".into(),
                epoch: 0,
                step,
                clock: 0.0,
                values: [("loss".to_string(), 1.0), ("lr".to_string(), 0.025)]
                    .into_iter()
                    .collect(),
            })
            .collect();
        self.client
            .report_metrics(pb::MetricBatch {
                trial_id: assignment.trial_id,
                epoch: assignment.epoch,
                metrics,
                logs: Vec::new(),
            })
            .await?;
        Ok(())
    }

    async fn finish(&mut self, assignment: &pb::Assignment) -> anyhow::Result<()> {
        self.client
            .finish_trial(pb::FinishTrialRequest {
                trial_id: assignment.trial_id,
                epoch: assignment.epoch,
                outcome: Some(Outcome::Succeeded(pb::TrialResult {
                    genotype_json: Some(r#"{"normal":[]}"#.into()),
                    ..Default::default()
                })),
            })
            .await?;
        Ok(())
    }
}

/// Assignment phase of one worker: drains the queue; returns the latencies it saw.
async fn drain_queue(mut worker: VirtualWorker) -> anyhow::Result<(VirtualWorker, Vec<f64>)> {
    let mut latencies = Vec::new();
    loop {
        let (assignment, latency) = worker.request().await?;
        let Some(assignment) = assignment else {
            return Ok((worker, latencies));
        };
        latencies.push(latency);
        worker
            .report(&assignment, 0, ASSIGNMENT_PHASE_POINTS)
            .await?;
        worker.finish(&assignment).await?;
    }
}

/// Ingestion phase of one worker: one trial, `points` metric points in batches.
async fn stream_metrics(mut worker: VirtualWorker, points: u64, batch: u64) -> anyhow::Result<u64> {
    let (Some(assignment), _) = worker.request().await? else {
        anyhow::bail!("no trial for the ingestion phase");
    };
    let mut step = 0;
    while step < points {
        let count = batch.min(points - step);
        worker.report(&assignment, step, count).await?;
        step += count;
    }
    worker.finish(&assignment).await?;
    Ok(step)
}

/// Requests (and at once finishes) trials until `stop`, recording latencies.
async fn probe(
    mut worker: VirtualWorker,
    stop: Arc<AtomicBool>,
    latencies: Arc<Mutex<Vec<f64>>>,
) -> anyhow::Result<()> {
    while !stop.load(Ordering::SeqCst) {
        let (assignment, latency) = worker.request().await?;
        if let Some(assignment) = assignment {
            latencies.lock().await.push(latency);
            worker.finish(&assignment).await?;
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
    Ok(())
}

/// Runs `prime bench coordinator`.
pub fn run(args: CoordinatorBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.workers > 0 && args.batch > 0,
        "--workers and --batch must be positive"
    );
    // Named apart from the simulated workers' runtime, so a profile tells their CPU apart.
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("coordinator")
        .enable_all()
        .build()?;
    let state = tempfile::tempdir()?;
    let state_dir = state.path().to_path_buf();
    super::runtime()?.block_on(async {
        let config = prime_coordinator::CoordinatorConfig {
            lease: Duration::from_secs(60),
            heartbeat: Duration::from_secs(10),
            keep_checkpoints: 2,
            ..Default::default()
        };
        let coordinator = server
            .spawn(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                prime_coordinator::start(listener, &state_dir, config).await
            })
            .await??;
        let url = coordinator.url();
        let queued = super::submit::submit_text(
            &url,
            "assign.toml",
            &bench_grid("assign", args.trials),
            false,
        )
        .await?
        .search_trials;
        let mut workers = Vec::new();
        for index in 0..args.workers {
            workers.push(VirtualWorker::register(&url, format!("bench-{index}")).await?);
        }
        let timings = coordinator.timings.clone();
        let before_assignment = Snapshots::take(&timings);
        let started = Instant::now();
        let drains: Vec<_> = workers
            .into_iter()
            .map(|worker| tokio::spawn(drain_queue(worker)))
            .collect();
        let mut workers = Vec::new();
        let mut latencies = Vec::new();
        for drain in drains {
            let (worker, seen) = drain.await??;
            workers.push(worker);
            latencies.extend(seen);
        }
        let assignment_wall = started.elapsed().as_secs_f64();
        let assignment_server = Snapshots::take(&timings).since(&before_assignment);
        latencies.sort_by(f64::total_cmp);

        // Enough trials for every worker plus the probe's requests.
        super::submit::submit_text(
            &url,
            "ingest.toml",
            &bench_grid("ingest", args.workers + 1000),
            false,
        )
        .await?;
        let stop = Arc::new(AtomicBool::new(false));
        let probe_latencies = Arc::new(Mutex::new(Vec::new()));
        let prober = VirtualWorker::register(&url, "bench-probe".into()).await?;
        let before_ingest = Snapshots::take(&timings);
        let probe_task = tokio::spawn(probe(prober, stop.clone(), probe_latencies.clone()));
        let started = Instant::now();
        let streams: Vec<_> = workers
            .into_iter()
            .map(|worker| {
                tokio::spawn(stream_metrics(
                    worker,
                    u64::from(args.points_per_worker),
                    u64::from(args.batch),
                ))
            })
            .collect();
        let mut points = 0;
        for stream in streams {
            points += stream.await??;
        }
        let ingest_wall = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::SeqCst);
        probe_task.await??;
        let ingest_server = Snapshots::take(&timings).since(&before_ingest);
        server.spawn(coordinator.shutdown()).await??;
        let mut probed = probe_latencies.lock().await.clone();
        probed.sort_by(f64::total_cmp);
        let mut line = serde_json::json!({
            "bench": "coordinator",
            "queued_trials": queued,
            "workers": args.workers,
            "assignments": latencies.len(),
            "assign_p50_ms": percentile(&latencies, 0.50),
            "assign_p99_ms": percentile(&latencies, 0.99),
            "assignment_phase_s": assignment_wall,
            "metric_points": points,
            "points_per_s": points as f64 / ingest_wall,
            "ingest_phase_s": ingest_wall,
            "assign_under_ingest_p50_ms": percentile(&probed, 0.50),
            "assign_under_ingest_p99_ms": percentile(&probed, 0.99),
        });
        assignment_server.report("server_assign", &mut line);
        ingest_server.report("server_assign_under_ingest", &mut line);
        println!("{line}");
        anyhow::Ok(())
    })
}
