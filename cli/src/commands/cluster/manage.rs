//! `prime cancel`, `prime workers` (list, cordon, uncordon, drain) and `prime logs`.

use super::{connect, runtime, status_error};
use clap::Args;
use prime_proto::pb;

/// Arguments of `prime cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// A grid to cancel entirely.
    #[arg(required_unless_present = "trial", conflicts_with = "trial")]
    pub grid: Option<String>,
    /// A single trial to cancel.
    #[arg(long)]
    pub trial: Option<u64>,
    /// URL of the coordinator.
    #[arg(long, default_value_t = super::default_coordinator())]
    pub coordinator: String,
}

/// Arguments of `prime workers`.
#[derive(Debug, Args)]
pub struct WorkersArgs {
    /// Give this worker no new trials.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["uncordon", "drain"])]
    pub cordon: Option<String>,
    /// Give this worker trials again.
    #[arg(long, value_name = "NAME", conflicts_with = "drain")]
    pub uncordon: Option<String>,
    /// Cordon this worker and move its running trials elsewhere (checkpoint, requeue).
    #[arg(long, value_name = "NAME")]
    pub drain: Option<String>,
    /// URL of the coordinator.
    #[arg(long, default_value_t = super::default_coordinator())]
    pub coordinator: String,
}

/// Arguments of `prime logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The trial id.
    pub trial: u64,
    /// URL of the coordinator.
    #[arg(long, default_value_t = super::default_coordinator())]
    pub coordinator: String,
}

/// Runs `prime cancel`.
pub fn run_cancel(args: CancelArgs) -> anyhow::Result<()> {
    let target = match (args.trial, args.grid) {
        (Some(trial), _) => pb::cancel_request::Target::TrialId(trial),
        (None, Some(grid)) => pb::cancel_request::Target::Grid(grid),
        (None, None) => anyhow::bail!("give a grid or --trial ID"),
    };
    let cancelled = runtime()?.block_on(async {
        let mut client = connect(&args.coordinator)?;
        let reply = client
            .cancel_trials(pb::CancelRequest {
                target: Some(target),
            })
            .await
            .map_err(status_error)?;
        anyhow::Ok(reply.into_inner().cancelled)
    })?;
    eprintln!("cancelled {cancelled} trial(s)");
    Ok(())
}

fn format_seconds_ago(ms: u64) -> String {
    format!("{:.1}s ago", ms as f64 / 1000.0)
}

/// Runs `prime workers`.
pub fn run_workers(args: WorkersArgs) -> anyhow::Result<()> {
    let change = [
        ("cordon", &args.cordon),
        ("uncordon", &args.uncordon),
        ("drain", &args.drain),
    ]
    .into_iter()
    .find_map(|(mode, name)| name.clone().map(|name| (mode, name)));
    runtime()?.block_on(async {
        let mut client = connect(&args.coordinator)?;
        if let Some((mode, name)) = change {
            client
                .set_worker_mode(pb::SetWorkerModeRequest {
                    name: name.clone(),
                    mode: mode.to_string(),
                })
                .await
                .map_err(status_error)?;
            eprintln!("worker `{name}`: {mode}");
            return anyhow::Ok(());
        }
        let workers = client
            .list_workers(pb::ListWorkersRequest {})
            .await
            .map_err(status_error)?
            .into_inner()
            .workers;
        println!(
            "{:<20} {:<7} {:<9} {:<24} {:<14} trials",
            "worker", "status", "cordoned", "slots", "last seen"
        );
        for worker in workers {
            let slots: Vec<String> = worker
                .slots
                .iter()
                .map(|s| format!("{}:{}", s.index, s.device))
                .collect();
            let trials: Vec<String> = worker.trials.iter().map(u64::to_string).collect();
            println!(
                "{:<20} {:<7} {:<9} {:<24} {:<14} {}",
                worker.name,
                worker.status,
                if worker.cordoned { "yes" } else { "no" },
                slots.join(","),
                format_seconds_ago(worker.last_seen_ms_ago),
                trials.join(",")
            );
        }
        anyhow::Ok(())
    })
}

/// Runs `prime logs`.
pub fn run_logs(args: LogsArgs) -> anyhow::Result<()> {
    let lines = runtime()?.block_on(async {
        let mut client = connect(&args.coordinator)?;
        let reply = client
            .trial_logs(pb::TrialRef {
                trial_id: args.trial,
            })
            .await
            .map_err(status_error)?;
        anyhow::Ok(reply.into_inner().lines)
    })?;
    for line in lines {
        println!("{} {}", line.unix_ms, line.line);
    }
    Ok(())
}
