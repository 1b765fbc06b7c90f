//! The dashboard's JSON endpoints (documented in the README; the pages poll them): grids with
//! their progress, one grid's trials and results table (and its downloads in the formats of
//! `prime results`), one trial's curves, cell diagram, alpha progression, attempts, log tail
//! and downloads (its checkpoints and its run directory), and the workers.

use super::alphas::{history_in_archive, HistoryCache, HistoryRead};
use super::curves::{curves, Curve};
use crate::db::{AttemptRow, MetricRow};
use crate::error::CoordinatorError;
use crate::http::HttpState;
use crate::metric_rows::decode_values;
use crate::model::{CheckpointRecord, TrialSummary, WorkerSummary};
use crate::sanitize::for_display;
use crate::store::CheckpointStore;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Extension;
use axum::{Json, Router};
use prime_core::genotype::diagram::CellDiagram;
use prime_core::genotype::{Gene, Genotype, RnnGenotype};
use prime_core::trial::{TrialKind, TrialState};
use prime_proto::pb;
use prime_proto::results::{build_rows, render, summary_table, Format, FOOTNOTE};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use tokio_stream::wrappers::ReceiverStream;

/// Log lines shown on a trial's page.
const LOG_TAIL_LINES: u64 = 200;
/// Newest metric rows searched for a trial's last loss and accuracy.
const LATEST_ROWS: u64 = 64;
/// Metric rows of a trial drawn at most (the curves thin them further).
const MAX_METRIC_ROWS: u64 = 200_000;
/// Bytes read from the checkpoint store per piece of a download.
const DOWNLOAD_CHUNK_BYTES: usize = 1 << 20;

/// The JSON routes.
pub fn router() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/api/grids", get(grids))
        .route("/api/grids/{grid}", get(grid))
        .route("/api/grids/{grid}/results/{format}", get(results_file))
        .route("/api/trials/{trial}", get(trial))
        .route("/api/trials/{trial}/alphas", get(alphas))
        .route("/api/trials/{trial}/run", get(run_directory))
        .route(
            "/api/trials/{trial}/checkpoints/{checkpoint}",
            get(checkpoint_file),
        )
        .route("/api/workers", get(workers))
}

/// An error as the endpoints answer it.
struct ApiError(StatusCode, String);

impl From<CoordinatorError> for ApiError {
    fn from(error: CoordinatorError) -> ApiError {
        let status = match error {
            CoordinatorError::UnknownGrid(_) | CoordinatorError::UnknownTrial(_) => {
                StatusCode::NOT_FOUND
            }
            CoordinatorError::Invalid(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn no_store(value: Value) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(value)).into_response()
}

/// Trials by state name, every state present (zeros included).
fn count_states<'a>(
    trials: impl Iterator<Item = &'a TrialSummary>,
) -> BTreeMap<&'static str, usize> {
    let mut counts: BTreeMap<&'static str, usize> = TrialState::ALL
        .iter()
        .map(|state| (state.name(), 0))
        .collect();
    for trial in trials {
        *counts.entry(trial.state.name()).or_default() += 1;
    }
    counts
}

/// Seconds until the unfinished trials are done, estimated from the trials' progress and
/// the durations of finished ones, spread over the trials running now; `None` while nothing
/// allows an estimate.
pub fn remaining_seconds(trials: &[TrialSummary]) -> Option<f64> {
    let mean_duration = |kind: TrialKind| {
        let done: Vec<f64> = trials
            .iter()
            .filter(|trial| trial.spec.kind == kind && trial.state == TrialState::Succeeded)
            .map(|trial| trial.run_seconds)
            .collect();
        (!done.is_empty()).then(|| done.iter().sum::<f64>() / done.len() as f64)
    };
    let unfinished: Vec<&TrialSummary> = trials
        .iter()
        .filter(|trial| !trial.state.is_terminal())
        .collect();
    if unfinished.is_empty() {
        return Some(0.0);
    }
    let mut work = 0.0;
    for trial in &unfinished {
        let fraction = trial.progress.fraction();
        let expected = if trial.progress.steps_done > 0 && fraction > 0.0 {
            Some(trial.run_seconds / fraction)
        } else {
            mean_duration(trial.spec.kind)
        };
        work += (expected? - trial.run_seconds).max(0.0);
    }
    let running = unfinished
        .iter()
        .filter(|trial| trial.state == TrialState::Running)
        .count()
        .max(1);
    Some(work / running as f64)
}

async fn grids(State(http): State<Arc<HttpState>>) -> ApiResult {
    let (names, trials) = http
        .state
        .try_call(|state| Ok((state.db.grids()?, state.list_trials(""))))
        .await?;
    let grids: Vec<Value> = names
        .into_iter()
        .map(|(name, created_unix_ms)| {
            let mine: Vec<TrialSummary> = trials
                .iter()
                .filter(|trial| trial.spec.grid == name)
                .cloned()
                .collect();
            json!({
                "name": for_display(&name),
                "created_unix_ms": created_unix_ms,
                "trials": mine.len(),
                "states": count_states(mine.iter()),
                "remaining_seconds": remaining_seconds(&mine),
            })
        })
        .collect();
    Ok(no_store(json!({ "grids": grids })))
}

/// The last value of a loss and of an accuracy among `rows` (newest first).
fn last_loss_and_accuracy(rows: &[MetricRow]) -> (Option<f64>, Option<f64>) {
    let mut loss = None;
    let mut accuracy = None;
    for row in rows {
        for (name, value) in decode_values(&row.values_json) {
            if !value.is_finite() {
                continue;
            }
            if loss.is_none() && (name == "loss" || name.ends_with("_loss")) {
                loss = Some(value);
            }
            if accuracy.is_none() && (name == "acc" || name.ends_with("_acc")) {
                accuracy = Some(value);
            }
        }
    }
    (loss, accuracy)
}

fn trial_json(trial: &TrialSummary, latest: &[MetricRow]) -> Value {
    let (last_loss, last_acc) = last_loss_and_accuracy(latest);
    json!({
        "id": trial.id,
        "grid": for_display(&trial.spec.grid),
        "parent_id": trial.parent_id,
        "kind": match trial.spec.kind {
            TrialKind::Search => "search",
            TrialKind::Evaluation => "evaluation",
        },
        "method": for_display(&trial.spec.method),
        "label": for_display(&trial.spec.label),
        "dataset": trial.spec.dataset.display_name(),
        "search_seed": trial.spec.search_seed,
        "eval_seed": trial.spec.eval_seed,
        "state": trial.state.name(),
        "attempts": trial.attempts,
        "failures": trial.failures,
        "worker": trial.worker.as_deref().map(for_display),
        "epochs_done": trial.progress.epochs_done,
        "epochs_total": trial.progress.epochs_total,
        "last_loss": last_loss,
        "last_acc": last_acc,
        "reason": for_display(&trial.reason),
        "run_seconds": trial.run_seconds,
    })
}

/// The results table as the dashboard shows it: the cells of `prime results`' Markdown.
#[derive(Serialize)]
struct ResultsTable {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    footnote: &'static str,
}

fn results_table(trials: &[TrialSummary]) -> Result<ResultsTable, ApiError> {
    let views: Vec<pb::TrialView> = trials.iter().map(pb::TrialView::from).collect();
    let rows = build_rows(&views)
        .map_err(|error| ApiError(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?;
    let (columns, rows) = summary_table(&rows);
    Ok(ResultsTable {
        columns,
        rows,
        footnote: FOOTNOTE,
    })
}

/// A grid's trials with their latest metric rows, or 404.
async fn grid_trials(
    http: &HttpState,
    grid: String,
) -> Result<Vec<(TrialSummary, Vec<MetricRow>)>, ApiError> {
    let name = grid.clone();
    let trials = http
        .state
        .try_call(move |state| {
            if !state.db.grid_exists(&grid)? {
                return Err(CoordinatorError::UnknownGrid(grid));
            }
            state
                .list_trials(&grid)
                .into_iter()
                .map(|trial| {
                    let latest = state.db.latest_metrics(trial.id, LATEST_ROWS)?;
                    Ok((trial, latest))
                })
                .collect::<Result<Vec<_>, CoordinatorError>>()
        })
        .await
        .map_err(|error| {
            tracing::debug!(grid = %for_display(&name), %error, "dashboard grid read failed");
            ApiError::from(error)
        })?;
    Ok(trials)
}

async fn grid(State(http): State<Arc<HttpState>>, Path(grid): Path<String>) -> ApiResult {
    let name = for_display(&grid);
    let trials = grid_trials(&http, grid).await?;
    let summaries: Vec<TrialSummary> = trials.iter().map(|(trial, _)| trial.clone()).collect();
    Ok(no_store(json!({
        "name": name,
        "states": count_states(summaries.iter()),
        "remaining_seconds": remaining_seconds(&summaries),
        "trials": trials.iter().map(|(trial, latest)| trial_json(trial, latest)).collect::<Vec<_>>(),
        "results": results_table(&summaries)?,
    })))
}

async fn results_file(
    State(http): State<Arc<HttpState>>,
    Path((grid, format)): Path<(String, String)>,
) -> ApiResult {
    let (format, content_type, extension) = match format.as_str() {
        "md" => (Format::Md, "text/markdown; charset=utf-8", "md"),
        "csv" => (Format::Csv, "text/csv; charset=utf-8", "csv"),
        "json" => (Format::Json, "application/json", "json"),
        _ => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!(
                    "unknown results format `{}`: md, csv or json",
                    for_display(&format)
                ),
            ))
        }
    };
    let file_name = file_safe(&grid);
    let trials = grid_trials(&http, grid).await?;
    let views: Vec<pb::TrialView> = trials
        .iter()
        .map(|(trial, _)| pb::TrialView::from(trial))
        .collect();
    let failed = |error: String| ApiError(StatusCode::INTERNAL_SERVER_ERROR, error);
    let rows = build_rows(&views).map_err(|error| failed(error.to_string()))?;
    let text = render(&rows, format, false).map_err(|error| failed(error.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}-results.{extension}\""),
            ),
        ],
        text,
    )
        .into_response())
}

/// `text` with every character but ASCII letters, digits, `-` and `_` replaced by `_`, for a
/// download's file name.
fn file_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A convolutional genotype as trainers report it: the concat lists may be left out, and
/// then every intermediate node is concatenated (as DARTS derives them).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportedGenotype {
    normal: Vec<Gene>,
    #[serde(default)]
    normal_concat: Option<Vec<usize>>,
    reduce: Vec<Gene>,
    #[serde(default)]
    reduce_concat: Option<Vec<usize>>,
}

impl ReportedGenotype {
    fn complete(self) -> Genotype {
        let every_node = |genes: &[Gene]| (2..2 + genes.len() / 2).collect();
        Genotype {
            normal_concat: self
                .normal_concat
                .unwrap_or_else(|| every_node(&self.normal)),
            reduce_concat: self
                .reduce_concat
                .unwrap_or_else(|| every_node(&self.reduce)),
            normal: self.normal,
            reduce: self.reduce,
        }
    }
}

/// The cell diagrams (SVG) of a trial's genotype: the result's for a finished search, the
/// evaluated one for an evaluation; none for a genotype that does not validate.
fn cell_diagrams(genotype: Option<&Value>) -> Vec<String> {
    let Some(genotype) = genotype else {
        return Vec::new();
    };
    if let Ok(reported) = serde_json::from_value::<ReportedGenotype>(genotype.clone()) {
        let genotype = reported.complete();
        if genotype.validate().is_ok() {
            return vec![
                CellDiagram::normal(&genotype).to_svg(),
                CellDiagram::reduction(&genotype).to_svg(),
            ];
        }
    }
    match serde_json::from_value::<RnnGenotype>(genotype.clone()) {
        Ok(genotype) if genotype.validate().is_ok() => {
            vec![CellDiagram::recurrent(&genotype).to_svg()]
        }
        _ => Vec::new(),
    }
}

fn attempt_json(attempt: &AttemptRow) -> Value {
    json!({
        "epoch": attempt.epoch,
        "worker": for_display(&attempt.worker),
        "slot": attempt.slot,
        "started_unix_ms": attempt.started_unix_ms,
        "ended_unix_ms": attempt.ended_unix_ms,
        "outcome": attempt.outcome.as_ref().map(|outcome| for_display(&outcome.describe())),
    })
}

fn checkpoint_json(checkpoint: &CheckpointRecord) -> Value {
    json!({
        "id": checkpoint.id,
        "size": checkpoint.size,
        "final": checkpoint.is_final,
        "epochs_done": checkpoint.progress.epochs_done,
        "created_unix_ms": checkpoint.created_unix_ms,
    })
}

/// Everything a trial's page shows.
struct TrialPage {
    trial: TrialSummary,
    children: Vec<u64>,
    latest: Vec<MetricRow>,
    metrics: Vec<MetricRow>,
    attempts: Vec<AttemptRow>,
    logs: Vec<(u64, String)>,
    checkpoints: Vec<CheckpointRecord>,
}

/// The archive that holds a trial's run directory as `prime fetch` takes it: the final
/// artifacts if any, else the newest checkpoint.
fn run_archive(checkpoints: &[CheckpointRecord]) -> Option<&CheckpointRecord> {
    let newest = |final_only: bool| {
        checkpoints
            .iter()
            .filter(move |checkpoint| checkpoint.is_final || !final_only)
            .max_by_key(|checkpoint| checkpoint.id)
    };
    newest(true).or_else(|| newest(false))
}

/// An object of the checkpoint store as a reader, read piece by piece.
struct StoreReader {
    store: Arc<crate::store::DirStore>,
    key: String,
    offset: u64,
    size: u64,
}

impl Read for StoreReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let left = self.size.saturating_sub(self.offset);
        let wanted = buffer.len().min(DOWNLOAD_CHUNK_BYTES).min(left as usize);
        if wanted == 0 {
            return Ok(0);
        }
        let data = self
            .store
            .read(&self.key, self.offset, wanted)
            .map_err(|error| std::io::Error::other(error.to_string()))?;
        buffer[..data.len()].copy_from_slice(&data);
        self.offset += data.len() as u64;
        Ok(data.len())
    }
}

/// The alpha history in `archive` of search `trial`, from the cache or read once.
async fn alpha_history(
    http: &HttpState,
    cache: &HistoryCache,
    trial: &TrialSummary,
    archive: &CheckpointRecord,
) -> HistoryRead {
    if let Some(read) = cache.get(trial.id, archive.id) {
        return read;
    }
    let reader = StoreReader {
        store: http.store.clone(),
        key: archive.key.clone(),
        offset: 0,
        size: archive.size,
    };
    let (epochs_total, checkpoint_id) = (trial.progress.epochs_total, archive.id);
    let read = tokio::task::spawn_blocking(move || {
        let reader = std::io::BufReader::with_capacity(DOWNLOAD_CHUNK_BYTES, reader);
        history_in_archive(reader, epochs_total, checkpoint_id).map(Arc::new)
    })
    .await
    .unwrap_or_else(|error| Err(format!("reading the alpha history failed: {error}")));
    if let Err(error) = &read {
        tracing::debug!(trial_id = trial.id, %error, "no alpha history for the dashboard");
    }
    cache.put(trial.id, archive.id, read.clone());
    read
}

/// The cell diagrams of a trial and a line saying where they come from: the result's or the
/// evaluated genotype, else (a search under way) the genotype projected from the alphas of
/// its latest checkpoint.
fn trial_cells(
    trial: &TrialSummary,
    archive: Option<&CheckpointRecord>,
    history: Option<&HistoryRead>,
) -> (Vec<String>, String) {
    let genotype = trial
        .result
        .as_ref()
        .and_then(|result| result.genotype.as_ref())
        .or(trial.spec.genotype.as_ref());
    if genotype.is_some() {
        return (cell_diagrams(genotype), String::new());
    }
    match (trial.spec.kind, archive, history) {
        (TrialKind::Search, Some(archive), Some(Ok(history))) => (
            history.diagrams.clone(),
            format!(
                "Projected from the alphas after epoch {} of {} (the latest checkpoint); the \
                 search's result replaces it when the search ends.",
                archive.progress.epochs_done, trial.progress.epochs_total
            ),
        ),
        (TrialKind::Search, _, Some(Err(error))) => (
            Vec::new(),
            format!("No genotype to draw yet: {}", for_display(error)),
        ),
        (TrialKind::Search, _, _) if !trial.state.is_terminal() => (
            Vec::new(),
            "The genotype is drawn from the search's first checkpoint (after its first epoch)."
                .to_string(),
        ),
        _ => (Vec::new(), "This trial has no genotype.".to_string()),
    }
}

async fn trial(
    State(http): State<Arc<HttpState>>,
    Extension(cache): Extension<Arc<HistoryCache>>,
    Path(trial_id): Path<u64>,
) -> ApiResult {
    let page = http
        .state
        .try_call(move |state| {
            let trials = state.list_trials("");
            let trial = trials
                .iter()
                .find(|trial| trial.id == trial_id)
                .cloned()
                .ok_or(CoordinatorError::UnknownTrial(trial_id))?;
            Ok(TrialPage {
                children: trials
                    .iter()
                    .filter(|child| child.parent_id == Some(trial_id))
                    .map(|child| child.id)
                    .collect(),
                latest: state.db.latest_metrics(trial_id, LATEST_ROWS)?,
                metrics: state.db.metrics(
                    trial_id,
                    crate::paging::Page {
                        offset: 0,
                        limit: MAX_METRIC_ROWS,
                    },
                )?,
                attempts: state.db.attempts(trial_id)?,
                logs: state.db.log_tail(trial_id, LOG_TAIL_LINES)?,
                checkpoints: state.checkpoints(trial_id)?,
                trial,
            })
        })
        .await?;
    let archive = run_archive(&page.checkpoints);
    let history = match archive {
        Some(archive) if page.trial.spec.kind == TrialKind::Search => {
            Some(alpha_history(&http, &cache, &page.trial, archive).await)
        }
        _ => None,
    };
    let (cells, cells_note) = trial_cells(&page.trial, archive, history.as_ref());
    let alphas = match &history {
        Some(Ok(history)) => json!({
            "checkpoint_id": history.checkpoint_id,
            "records": history.records,
            "url": format!("/api/trials/{trial_id}/alphas"),
        }),
        Some(Err(error)) => json!({ "error": for_display(error) }),
        None => Value::Null,
    };
    let run_directory = archive.map(|archive| {
        json!({
            "checkpoint_id": archive.id,
            "size": archive.size,
            "final": archive.is_final,
            "epochs_done": archive.progress.epochs_done,
            "url": format!("/api/trials/{trial_id}/run"),
        })
    });
    let curves: Vec<Curve> = curves(&page.metrics);
    Ok(no_store(json!({
        "trial": trial_json(&page.trial, &page.latest),
        "children": page.children,
        "curves": curves,
        "cells": cells,
        "cells_note": cells_note,
        "alphas": alphas,
        "attempts": page.attempts.iter().map(attempt_json).collect::<Vec<_>>(),
        "log_tail": page.logs.iter().map(|(unix_ms, line)| json!({
            "unix_ms": unix_ms,
            "line": for_display(line),
        })).collect::<Vec<_>>(),
        "checkpoints": page.checkpoints.iter().map(checkpoint_json).collect::<Vec<_>>(),
        "run_directory": run_directory,
    })))
}

/// A trial and its retained checkpoints, or 404.
async fn trial_and_checkpoints(
    http: &HttpState,
    trial_id: u64,
) -> Result<(TrialSummary, Vec<CheckpointRecord>), ApiError> {
    Ok(http
        .state
        .try_call(move |state| {
            let trial = state
                .list_trials("")
                .into_iter()
                .find(|trial| trial.id == trial_id)
                .ok_or(CoordinatorError::UnknownTrial(trial_id))?;
            Ok((trial, state.checkpoints(trial_id)?))
        })
        .await?)
}

/// A search's alpha progression: the activated alphas per cell, edge and op over the clock,
/// and the genotype of the last line with its diagrams.
async fn alphas(
    State(http): State<Arc<HttpState>>,
    Extension(cache): Extension<Arc<HistoryCache>>,
    Path(trial_id): Path<u64>,
) -> ApiResult {
    let (trial, checkpoints) = trial_and_checkpoints(&http, trial_id).await?;
    if trial.spec.kind != TrialKind::Search {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("trial {trial_id} is an evaluation: only searches have alphas"),
        ));
    }
    let archive = run_archive(&checkpoints).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "trial {trial_id} has no checkpoint yet: its alphas arrive after its first epoch"
            ),
        )
    })?;
    let history = alpha_history(&http, &cache, &trial, archive)
        .await
        .map_err(|error| ApiError(StatusCode::NOT_FOUND, for_display(&error)))?;
    let value = serde_json::to_value(&*history)
        .map_err(|error| ApiError(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?;
    Ok(no_store(value))
}

fn worker_json(worker: &WorkerSummary) -> Value {
    json!({
        "name": for_display(&worker.name),
        "alive": worker.alive,
        "cordoned": worker.cordoned,
        "slots": worker.slots.iter().map(|slot| json!({
            "index": slot.index,
            "device": for_display(&slot.device),
        })).collect::<Vec<_>>(),
        "trials": worker.trials,
        "last_seen_ms_ago": worker.last_seen_ms_ago,
        "stalled": worker.stalled.iter().map(|stall| json!({
            "slot": stall.slot,
            "trial_id": stall.trial_id,
            "no_progress_ms": stall.no_progress_ms,
        })).collect::<Vec<_>>(),
        "torch": for_display(&format!(
            "{} ({})",
            worker.hardware.torch_version, worker.hardware.torch_variant
        )),
        "gpus": worker.hardware.gpus.iter().map(|gpu| json!({
            "index": gpu.index,
            "name": for_display(&gpu.name),
            "memory_total_bytes": gpu.memory_total_bytes,
            "memory_free_bytes": gpu.memory_free_bytes,
            "utilization_percent": gpu.utilization_percent,
            "temperature_celsius": gpu.temperature_celsius,
        })).collect::<Vec<_>>(),
    })
}

async fn workers(State(http): State<Arc<HttpState>>) -> ApiResult {
    let now = tokio::time::Instant::now();
    let workers = http
        .state
        .try_call(move |state| Ok(state.list_workers(now)))
        .await?;
    Ok(no_store(json!({
        "workers": workers.iter().map(worker_json).collect::<Vec<_>>(),
    })))
}

/// A checkpoint archive as a download named `file_name`, read from the store piece by piece.
fn archive_download(http: &HttpState, checkpoint: CheckpointRecord, file_name: &str) -> Response {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let store = http.store.clone();
    let size = checkpoint.size;
    tokio::task::spawn_blocking(move || {
        let mut offset = 0;
        while offset < checkpoint.size {
            let piece = store
                .read(&checkpoint.key, offset, DOWNLOAD_CHUNK_BYTES)
                .map_err(|error| std::io::Error::other(error.to_string()));
            let last = match &piece {
                Ok(data) if !data.is_empty() => {
                    offset += data.len() as u64;
                    false
                }
                _ => true,
            };
            // A closed channel is a download the browser gave up.
            if sender.blocking_send(piece).is_err() || last {
                break;
            }
        }
    });
    (
        [
            (header::CONTENT_TYPE, "application/x-tar".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
        ],
        Body::from_stream(ReceiverStream::new(receiver)),
    )
        .into_response()
}

/// A retained checkpoint of a trial as its tar archive (the run directory at that point, as
/// `prime fetch` unpacks it).
async fn checkpoint_file(
    State(http): State<Arc<HttpState>>,
    Path((trial_id, checkpoint_id)): Path<(u64, u64)>,
) -> ApiResult {
    let (_, checkpoints) = trial_and_checkpoints(&http, trial_id).await?;
    let checkpoint = checkpoints
        .into_iter()
        .find(|checkpoint| checkpoint.id == checkpoint_id)
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("trial {trial_id} has no checkpoint {checkpoint_id}"),
            )
        })?;
    let file_name = format!("trial-{trial_id}-checkpoint-{checkpoint_id}.tar");
    Ok(archive_download(&http, checkpoint, &file_name))
}

/// The file name of a trial's run directory: grid, id, kind, method, data set, seeds
/// (`demo-3-search-DARTS-cifar10-seed1-run.tar`).
fn run_file_name(trial: &TrialSummary) -> String {
    let spec = &trial.spec;
    let kind = match spec.kind {
        TrialKind::Search => "search",
        TrialKind::Evaluation => "eval",
    };
    let eval = spec
        .eval_seed
        .map(|seed| format!("-eval{seed}"))
        .unwrap_or_default();
    format!(
        "{}-{}-{kind}-{}-{}-seed{}{eval}-run.tar",
        file_safe(&spec.grid),
        trial.id,
        file_safe(&spec.label),
        file_safe(&spec.dataset.to_string()),
        spec.search_seed
    )
}

/// A trial's run directory as one tar archive: the archive `prime fetch` unpacks (the final
/// artifacts, else the newest checkpoint; workers upload the whole run directory).
async fn run_directory(State(http): State<Arc<HttpState>>, Path(trial_id): Path<u64>) -> ApiResult {
    let (trial, checkpoints) = trial_and_checkpoints(&http, trial_id).await?;
    let archive = run_archive(&checkpoints).cloned().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("trial {trial_id} has uploaded no checkpoint yet"),
        )
    })?;
    Ok(archive_download(&http, archive, &run_file_name(&trial)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genotypes_without_concat_lists_are_drawn_and_broken_ones_are_not() {
        let reported = json!({
            "normal": [["sep_conv_3x3", 0], ["skip_connect", 1]],
            "reduce": [["max_pool_3x3", 0], ["dil_conv_3x3", 1]],
        });
        let cells = cell_diagrams(Some(&reported));
        assert_eq!(cells.len(), 2);
        assert!(
            cells[0].contains(">skip_connect</text>") && cells[1].contains(">dil_conv_3x3</text>")
        );
        let recurrent = serde_json::to_value(RnnGenotype::builtin("ENAS").unwrap()).unwrap();
        assert_eq!(cell_diagrams(Some(&recurrent)).len(), 1);
        let cycle = json!({"normal": [["sep_conv_3x3", 2], ["skip_connect", 1]], "reduce": []});
        assert!(cell_diagrams(Some(&cycle)).is_empty());
        assert!(cell_diagrams(None).is_empty());
    }

    #[test]
    fn remaining_time_comes_from_progress_and_finished_durations() {
        let text = "version = 1\nname = \"g\"\ndatasets = [\"cifar10\"]\nseeds = [1, 2, 3]\n\
                    [search]\nepochs = 2\n[[methods]]\npreset = \"darts\"\n";
        let specs = prime_core::grid::GridSpec::parse("g.toml", text)
            .unwrap()
            .search_trials();
        let trial =
            |index: usize, state: TrialState, steps_done: u64, run_seconds: f64| TrialSummary {
                id: index as u64 + 1,
                spec: specs[index].clone(),
                state,
                progress: prime_core::observer::Progress {
                    epochs_done: 0,
                    epochs_total: 2,
                    steps_done,
                    steps_total: 200,
                },
                attempts: 1,
                failures: 0,
                worker: None,
                result: None,
                reason: String::new(),
                parent_id: None,
                run_seconds,
            };
        let done = trial(0, TrialState::Succeeded, 200, 100.0);
        let running = trial(1, TrialState::Running, 50, 30.0);
        let queued = trial(2, TrialState::Queued, 0, 0.0);
        // 90 s left of the running one (a quarter took 30 s) and 100 s for the queued one
        // (as long as the finished one), on the one slot running now.
        assert_eq!(
            remaining_seconds(&[done.clone(), running.clone(), queued.clone()]),
            Some(190.0)
        );
        assert_eq!(remaining_seconds(std::slice::from_ref(&done)), Some(0.0));
        assert_eq!(remaining_seconds(&[running, queued]), None);
    }
}
