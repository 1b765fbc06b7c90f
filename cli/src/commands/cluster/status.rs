//! `prime status [GRID]` (a table with per-trial progress) and `prime watch GRID` (live
//! progress until every trial is over: bars on a terminal, plain lines otherwise).

use super::live::{grid_outlook, short_duration, trial_message, LatestMetrics, StepRate};
use super::{connect, runtime, status_error};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use prime_core::metrics::MetricRecord;
use prime_core::trial::{result_keys, TrialKind, TrialSpec};
use prime_proto::paging::all_trials;
use prime_proto::pb;
use prime_proto::results::{build_rows, render, search_alpha_steps, Format};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Arguments of `prime status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this grid (default: a summary of every grid).
    pub grid: Option<String>,
    /// URL of the coordinator.
    #[arg(long, default_value_t = super::default_coordinator(), value_parser = super::url::normalize_url)]
    pub coordinator: String,
}

/// Arguments of `prime watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The grid.
    pub grid: String,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// URL of the coordinator.
    #[arg(long, default_value_t = super::default_coordinator(), value_parser = super::url::normalize_url)]
    pub coordinator: String,
}

/// Fetches the trials of `grid` (all grids when empty).
pub async fn fetch_trials(coordinator: &str, grid: &str) -> anyhow::Result<Vec<pb::TrialView>> {
    let client = connect(coordinator)?;
    all_trials(&client, grid).await.map_err(status_error)
}

/// A short name of a trial: `search darts cifar10 s101` or `eval ... e0`.
pub fn trial_name(spec: &TrialSpec) -> String {
    match (spec.kind, spec.eval_seed) {
        (TrialKind::Evaluation, Some(eval_seed)) => {
            format!(
                "eval   {} {} s{} e{eval_seed}",
                spec.label, spec.dataset, spec.search_seed
            )
        }
        _ => format!(
            "search {} {} s{}",
            spec.label, spec.dataset, spec.search_seed
        ),
    }
}

fn progress_cell(trial: &pb::TrialView) -> String {
    let progress = trial.progress.unwrap_or_default();
    if progress.epochs_total == 0 {
        return "-".into();
    }
    let fraction = f64::from(progress.epochs_done) / f64::from(progress.epochs_total);
    let filled = (fraction * 10.0).round() as usize;
    format!(
        "[{}{}] {}/{}",
        "#".repeat(filled.min(10)),
        ".".repeat(10 - filled.min(10)),
        progress.epochs_done,
        progress.epochs_total
    )
}

/// The note of a trial: how many alpha steps a finished search took (flagged when too few
/// for its alphas to mean much), else the reason of its state. A succeeded trial drops the
/// reason of an earlier attempt (a preemption it recovered from).
pub fn trial_note(trial: &pb::TrialView) -> String {
    if trial.state != "succeeded" {
        return trial.reason.clone();
    }
    match search_alpha_steps(trial) {
        Some(steps) if steps < result_keys::FEW_ALPHA_STEPS => {
            format!("only {steps} alpha steps: its alphas are barely trained")
        }
        Some(steps) => format!("{steps} alpha steps"),
        None => String::new(),
    }
}

/// The per-trial status table of one grid.
pub fn trial_table(trials: &[pb::TrialView]) -> String {
    let mut out = format!(
        "{:>5}  {:<42} {:<10} {:<20} {:>8} {:>9}  {:<14} {}\n",
        "id", "trial", "state", "progress", "attempts", "failures", "worker", "note"
    );
    for trial in trials {
        let name = trial
            .trial_spec()
            .map(|spec| trial_name(&spec))
            .unwrap_or_else(|_| "?".into());
        out.push_str(&format!(
            "{:>5}  {:<42} {:<10} {:<20} {:>8} {:>9}  {:<14} {}\n",
            trial.trial_id,
            name,
            trial.state,
            progress_cell(trial),
            trial.attempts,
            trial.failures,
            trial.worker,
            trial_note(trial)
        ));
    }
    out
}

/// Counts of trials per state, per grid.
pub fn grid_summary(trials: &[pb::TrialView]) -> String {
    let mut grids: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    for trial in trials {
        *grids
            .entry(&trial.grid)
            .or_default()
            .entry(&trial.state)
            .or_default() += 1;
    }
    let states = [
        "queued",
        "running",
        "preempted",
        "succeeded",
        "failed",
        "cancelled",
    ];
    let mut out = format!("{:<24}", "grid");
    for state in states {
        out.push_str(&format!(" {state:>9}"));
    }
    out.push('\n');
    for (grid, counts) in grids {
        out.push_str(&format!("{grid:<24}"));
        for state in states {
            out.push_str(&format!(" {:>9}", counts.get(state).copied().unwrap_or(0)));
        }
        out.push('\n');
    }
    out
}

/// The error for a grid with no trials, naming the grids there are.
pub fn unknown_grid(grid: &str, all: &[pb::TrialView]) -> String {
    let mut names: Vec<&str> = all.iter().map(|trial| trial.grid.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        format!("no grid `{grid}`: the coordinator has no grids yet (submit one with `prime submit GRID.toml`)")
    } else {
        format!("no grid `{grid}`; the grids are: {}", names.join(", "))
    }
}

/// Runs `prime status`.
pub fn run_status(args: StatusArgs) -> anyhow::Result<()> {
    let grid = args.grid.clone().unwrap_or_default();
    let trials = runtime()?.block_on(fetch_trials(&args.coordinator, &grid))?;
    match args.grid {
        Some(grid) if trials.is_empty() => {
            let all = runtime()?.block_on(fetch_trials(&args.coordinator, ""))?;
            anyhow::bail!("{}", unknown_grid(&grid, &all))
        }
        Some(_) => print!("{}", trial_table(&trials)),
        None if trials.is_empty() => {
            eprintln!("no grids yet: submit one with `prime submit GRID.toml`")
        }
        None => print!("{}", grid_summary(&trials)),
    }
    Ok(())
}

/// Reads the metric rows of `trial_id` after `latest.offset` into `latest`.
async fn read_new_metrics(
    client: &mut prime_proto::client::Client,
    trial_id: u64,
    latest: &mut LatestMetrics,
) -> anyhow::Result<()> {
    loop {
        let reply = client
            .trial_metrics(pb::TrialRef {
                trial_id,
                offset: latest.offset,
                limit: 0,
            })
            .await
            .map_err(status_error)?
            .into_inner();
        let records = reply
            .metrics
            .into_iter()
            .map(MetricRecord::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        latest.absorb(&records);
        if reply.next.is_none() || records.is_empty() {
            return Ok(());
        }
    }
}

/// What `watch` keeps of a trial between refreshes.
struct Shown {
    bar: ProgressBar,
    rate: StepRate,
    metrics: LatestMetrics,
    /// The state and epoch last printed as a plain line (no terminal).
    printed: Option<(String, u32)>,
}

/// Shows live progress of `grid` until every trial is over: on a terminal one bar per
/// trial (steps, epoch, steps/s, ETA, latest loss and accuracy, or why it failed) under a
/// bar of the whole grid; otherwise a plain line whenever a trial changes state or epoch.
pub async fn watch(
    coordinator: &str,
    grid: &str,
    interval: Duration,
) -> anyhow::Result<Vec<pb::TrialView>> {
    let terminal = std::io::stderr().is_terminal();
    let bars = MultiProgress::new();
    // `wide_msg` cuts the message at the terminal's width: a wrapped line would break the
    // redraw of every bar below it.
    let style = ProgressStyle::with_template("{prefix:<44} [{bar:30}] {percent:>3}% {wide_msg}")?
        .progress_chars("=> ");
    let total = bars.add(ProgressBar::new(1));
    total.set_style(style.clone());
    total.set_prefix(format!("     grid {grid}"));
    let mut client = connect(coordinator)?;
    let mut shown: BTreeMap<u64, Shown> = BTreeMap::new();
    loop {
        let trials = fetch_trials(coordinator, grid).await?;
        if trials.is_empty() {
            let all = fetch_trials(coordinator, "").await?;
            anyhow::bail!("{}", unknown_grid(grid, &all));
        }
        let now = Instant::now();
        let mut rates = Vec::with_capacity(trials.len());
        for trial in &trials {
            let entry = shown.entry(trial.trial_id).or_insert_with(|| {
                let bar = bars.add(ProgressBar::new(1));
                bar.set_style(style.clone());
                let name = trial
                    .trial_spec()
                    .map(|spec| trial_name(&spec))
                    .unwrap_or_default();
                bar.set_prefix(format!("{:>4} {name}", trial.trial_id));
                Shown {
                    bar,
                    rate: StepRate::default(),
                    metrics: LatestMetrics::default(),
                    printed: None,
                }
            });
            let progress = trial.progress.unwrap_or_default();
            entry.rate.observe(now, progress.steps_done);
            rates.push(entry.rate.per_second());
            if trial.state == "running" {
                read_new_metrics(&mut client, trial.trial_id, &mut entry.metrics).await?;
            }
            let message = trial_message(trial, entry.rate.per_second(), &entry.metrics);
            let (position, length) = if progress.steps_total > 0 {
                (progress.steps_done, progress.steps_total)
            } else {
                (
                    u64::from(progress.epochs_done),
                    u64::from(progress.epochs_total.max(1)),
                )
            };
            entry.bar.set_length(length);
            entry.bar.set_position(position.min(length));
            let over = matches!(trial.state.as_str(), "succeeded" | "failed" | "cancelled");
            if over {
                entry.bar.set_position(length);
            }
            let mark = (trial.state.clone(), progress.epochs_done);
            if !terminal && entry.printed.as_ref() != Some(&mark) {
                eprintln!("{}: {message}", entry.bar.prefix().trim_start());
                entry.printed = Some(mark);
            }
            entry.bar.set_message(message);
            if over && !entry.bar.is_finished() {
                entry.bar.finish();
            }
        }
        let (done, steps, eta) = grid_outlook(&trials, &rates);
        let finished = trials
            .iter()
            .filter(|t| matches!(t.state.as_str(), "succeeded" | "failed" | "cancelled"))
            .count();
        total.set_length(steps.max(1));
        total.set_position(done.min(steps));
        total.set_message(format!(
            "{finished}/{} trials over{}",
            trials.len(),
            eta.map_or(String::new(), |eta| format!(
                "  ETA {}",
                short_duration(eta)
            ))
        ));
        if finished == trials.len() {
            total.finish();
            return Ok(trials);
        }
        tokio::time::sleep(interval).await;
    }
}

/// Runs `prime watch`.
pub fn run_watch(args: WatchArgs) -> anyhow::Result<()> {
    let interval = Duration::from_secs_f64(args.interval.max(0.1));
    let trials = runtime()?.block_on(watch(&args.coordinator, &args.grid, interval))?;
    let failed = trials.iter().filter(|t| t.state == "failed").count();
    eprintln!(
        "grid `{}` is over: {} trials, {failed} failed",
        args.grid,
        trials.len()
    );
    print!("{}", render(&build_rows(&trials)?, Format::Md, false)?);
    Ok(())
}
