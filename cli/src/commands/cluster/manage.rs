//! `prime cancel`, `prime workers` (list, cordon, uncordon, drain) and `prime logs`.

use super::{connect, runtime, status_error};
use clap::Args;
use prime_proto::paging::{all_logs, all_trials, all_workers};
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
    #[arg(long, default_value_t = super::default_coordinator(), value_parser = super::url::normalize_url)]
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
    #[arg(long, default_value_t = super::default_coordinator(), value_parser = super::url::normalize_url)]
    pub coordinator: String,
}

/// Arguments of `prime logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The trial id.
    pub trial: u64,
    /// URL of the coordinator.
    #[arg(long, default_value_t = super::default_coordinator(), value_parser = super::url::normalize_url)]
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

/// A dash for an empty list, else its items joined by commas.
fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items.join(",")
    }
}

/// The table of `prime workers`: one row per worker; a stalled slot (its training thread
/// hung, its attempt failed, the slot out of service until the thread ends) shows as
/// `SLOT:stalled(trial ID, no progress for N s)` in the last column. Below a worker's row,
/// each running trial with its slots and progress (from `views`; several lines name the
/// same slot when trials share its GPU), its torch build and one line per GPU as last
/// reported.
pub fn workers_table(workers: &[pb::WorkerView], views: &[pb::TrialView]) -> String {
    let mut out = format!(
        "{:<20} {:<7} {:<9} {:<24} {:<14} {:<12} stalled\n",
        "worker", "status", "cordoned", "slots", "last seen", "trials"
    );
    for worker in workers {
        let slots: Vec<String> = worker
            .slots
            .iter()
            .map(|s| format!("{}:{}", s.index, s.device))
            .collect();
        let trials: Vec<String> = worker.trials.iter().map(u64::to_string).collect();
        let stalled: Vec<String> = worker
            .stalled
            .iter()
            .map(|stall| {
                format!(
                    "{}:stalled(trial {}, no progress for {} s)",
                    stall.slot,
                    stall.trial_id,
                    stall.no_progress_ms / 1000
                )
            })
            .collect();
        out.push_str(&format!(
            "{:<20} {:<7} {:<9} {:<24} {:<14} {:<12} {}\n",
            worker.name,
            worker.status,
            if worker.cordoned { "yes" } else { "no" },
            slots.join(","),
            format_seconds_ago(worker.last_seen_ms_ago),
            list_or_dash(&trials),
            list_or_dash(&stalled)
        ));
        out.push_str(&slot_lines(worker, views));
        out.push_str(&hardware_lines(worker));
    }
    out
}

const GIB: f64 = (1u64 << 30) as f64;

/// The indented progress line of each running trial of `worker` (from its slot loads), with
/// the slots it holds: `slot 0 (cuda:0)`, `slots 0,1 (cuda:0, cuda:1)` for a trial on two
/// devices, `slot 0 (cuda:0, 2 of 4 sharing)` for one of the trials sharing a device.
fn slot_lines(worker: &pb::WorkerView, trials: &[pb::TrialView]) -> String {
    let mut out = String::new();
    let mut shown = std::collections::BTreeSet::new();
    for load in &worker.loads {
        for trial_id in &load.trials {
            // A trial on several slots shows once, under its first.
            if !shown.insert(*trial_id) {
                continue;
            }
            let Some(trial) = trials
                .iter()
                .find(|trial| trial.trial_id == *trial_id && trial.state == "running")
            else {
                continue;
            };
            let held: Vec<u32> = worker
                .loads
                .iter()
                .filter(|other| other.trials.contains(trial_id))
                .map(|other| other.slot)
                .collect();
            out.push_str(&format!(
                "  {}: {}\n",
                place(worker, &held, load),
                trial_progress(trial)
            ));
        }
    }
    out
}

/// `slot 0 (cuda:0)`, `slots 0,1 (cuda:0, cuda:1)` or `slot 0 (cuda:0, 2 of 4 sharing)`.
fn place(worker: &pb::WorkerView, held: &[u32], load: &pb::SlotLoad) -> String {
    let device = |index: &u32| {
        worker
            .slots
            .iter()
            .find(|slot| slot.index == *index)
            .map_or_else(|| "?".to_string(), |slot| slot.device.clone())
    };
    let indices: Vec<String> = held.iter().map(u32::to_string).collect();
    let devices: Vec<String> = held.iter().map(device).collect();
    let sharing = if load.share > 1 {
        format!(", {} of {} sharing", load.trials.len(), load.share)
    } else {
        String::new()
    };
    let noun = if held.len() == 1 { "slot" } else { "slots" };
    format!(
        "{noun} {} ({}{sharing})",
        indices.join(","),
        devices.join(", ")
    )
}

/// `trial 5 of grid demo, attempt 2, epoch 1/3, step 30/120 (25%)`.
fn trial_progress(trial: &pb::TrialView) -> String {
    let progress = trial.progress.unwrap_or_default();
    let percent = if progress.steps_total > 0 {
        format!(
            " ({:.0}%)",
            100.0 * progress.steps_done as f64 / progress.steps_total as f64
        )
    } else {
        String::new()
    };
    format!(
        "trial {} of grid {}, attempt {}, epoch {}/{}, step {}/{}{percent}",
        trial.trial_id,
        trial.grid,
        trial.attempts,
        progress.epochs_done,
        progress.epochs_total,
        progress.steps_done,
        progress.steps_total,
    )
}

/// The indented torch and GPU lines of a worker (none when it reported neither).
fn hardware_lines(worker: &pb::WorkerView) -> String {
    let mut out = String::new();
    if !worker.torch_version.is_empty() {
        out.push_str(&format!(
            "  torch {} ({})\n",
            worker.torch_version, worker.torch_variant
        ));
    }
    for gpu in &worker.gpus {
        out.push_str(&format!(
            "  gpu {}: {} (compute {}.{}), {:.1}/{:.1} GiB free, {}% busy, {} C, driver {}\n",
            gpu.index,
            gpu.name,
            gpu.capability_major,
            gpu.capability_minor,
            gpu.memory_free_bytes as f64 / GIB,
            gpu.memory_total_bytes as f64 / GIB,
            gpu.utilization_percent,
            gpu.temperature_celsius,
            gpu.driver_version
        ));
    }
    out
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
        let workers = all_workers(&client).await.map_err(status_error)?;
        let trials = all_trials(&client, "").await.map_err(status_error)?;
        print!("{}", workers_table(&workers, &trials));
        anyhow::Ok(())
    })
}

/// Runs `prime logs`.
pub fn run_logs(args: LogsArgs) -> anyhow::Result<()> {
    let lines = runtime()?.block_on(async {
        let client = connect(&args.coordinator)?;
        all_logs(&client, args.trial).await.map_err(status_error)
    })?;
    print!("{}", log_text(lines));
    Ok(())
}

/// A trial's log lines in time order (lines of the same millisecond keep the coordinator's
/// order), each after its UTC time to the millisecond.
fn log_text(mut lines: Vec<pb::LogLine>) -> String {
    lines.sort_by_key(|line| line.unix_ms);
    lines
        .iter()
        .map(|line| {
            let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(line.unix_ms);
            format!("{} {}\n", humantime::format_rfc3339_millis(time), line.line)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_show_utc_times_in_time_order() {
        let line = |unix_ms: u64, text: &str| pb::LogLine {
            unix_ms,
            line: text.into(),
        };
        let text = log_text(vec![
            line(1_764_538_737_123, "second"),
            line(1_764_538_737_000, "first"),
            line(1_764_538_737_123, "third"),
        ]);
        assert_eq!(
            text,
            "2025-11-30T21:38:57.000Z first\n2025-11-30T21:38:57.123Z second\n\
             2025-11-30T21:38:57.123Z third\n"
        );
    }

    #[test]
    fn the_workers_table_marks_stalled_slots() {
        let worker = |name: &str, stalled: Vec<pb::StalledSlot>| pb::WorkerView {
            name: name.into(),
            slots: vec![
                pb::Slot {
                    index: 0,
                    device: "cuda:0".into(),
                },
                pb::Slot {
                    index: 1,
                    device: "cuda:1".into(),
                },
            ],
            status: "alive".into(),
            cordoned: false,
            trials: vec![7],
            last_seen_ms_ago: 1500,
            stalled,
            ..Default::default()
        };
        let table = workers_table(
            &[
                worker("calm", Vec::new()),
                worker(
                    "stuck",
                    vec![pb::StalledSlot {
                        slot: 0,
                        trial_id: 12,
                        no_progress_ms: 1_830_400,
                    }],
                ),
            ],
            &[],
        );
        let rows: Vec<Vec<&str>> = table
            .lines()
            .map(|line| line.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows[1],
            [
                "calm",
                "alive",
                "no",
                "0:cuda:0,1:cuda:1",
                "1.5s",
                "ago",
                "7",
                "-"
            ]
        );
        assert_eq!(rows[2][7], "0:stalled(trial");
        assert!(
            table.contains("0:stalled(trial 12, no progress for 1830 s)"),
            "{table}"
        );
    }

    #[test]
    fn the_workers_table_shows_torch_and_gpus() {
        let worker = pb::WorkerView {
            name: "node1".into(),
            status: "alive".into(),
            torch_variant: "cu126".into(),
            torch_version: "2.11.0+cu126".into(),
            gpus: vec![pb::GpuInfo {
                index: 0,
                name: "Tesla V100-SXM2-16GB".into(),
                capability_major: 7,
                capability_minor: 0,
                memory_total_bytes: 16 << 30,
                memory_free_bytes: 12 << 30,
                driver_version: "535.104".into(),
                utilization_percent: 87,
                temperature_celsius: 61,
            }],
            ..Default::default()
        };
        let table = workers_table(&[worker], &[]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[2], "  torch 2.11.0+cu126 (cu126)");
        assert_eq!(
            lines[3],
            "  gpu 0: Tesla V100-SXM2-16GB (compute 7.0), 12.0/16.0 GiB free, 87% busy, 61 C, driver 535.104"
        );
    }

    #[test]
    fn the_workers_table_shows_each_running_trial_with_its_slots() {
        let load = |slot: u32, trials: &[u64], share: u32| pb::SlotLoad {
            slot,
            trials: trials.to_vec(),
            share,
        };
        let worker = pb::WorkerView {
            name: "node1".into(),
            status: "alive".into(),
            slots: (0..4)
                .map(|index| pb::Slot {
                    index,
                    device: format!("cuda:{index}"),
                })
                .collect(),
            trials: vec![5, 8, 9, 10],
            loads: vec![
                load(0, &[], 1),
                load(1, &[5], 1),
                load(2, &[8, 9], 4),
                load(3, &[], 1),
            ],
            ..Default::default()
        };
        let trial = |trial_id: u64, state: &str| pb::TrialView {
            trial_id,
            grid: "demo".into(),
            state: state.into(),
            attempts: 2,
            progress: Some(pb::Progress {
                epochs_done: 1,
                epochs_total: 3,
                steps_done: 30,
                steps_total: 120,
            }),
            ..Default::default()
        };
        let trials = [
            trial(4, "succeeded"),
            trial(5, "running"),
            trial(8, "running"),
            trial(9, "running"),
        ];
        let table = workers_table(std::slice::from_ref(&worker), &trials);
        let lines: Vec<&str> = table.lines().collect();
        let progress = "of grid demo, attempt 2, epoch 1/3, step 30/120 (25%)";
        assert_eq!(
            lines[2..],
            [
                format!("  slot 1 (cuda:1): trial 5 {progress}"),
                format!("  slot 2 (cuda:2, 2 of 4 sharing): trial 8 {progress}"),
                format!("  slot 2 (cuda:2, 2 of 4 sharing): trial 9 {progress}"),
            ]
        );
        let gang = pb::WorkerView {
            loads: vec![load(0, &[10], 1), load(1, &[10], 1), load(2, &[], 1)],
            ..worker
        };
        let table = workers_table(&[gang], &[trial(10, "running")]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[2..],
            [format!("  slots 0,1 (cuda:0, cuda:1): trial 10 {progress}")]
        );
    }
}
