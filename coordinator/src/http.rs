//! The coordinator's HTTP listener (`--http ADDR`), for probes and scrapers: `/healthz`
//! (the process answers), `/readyz` (the database takes a write and the state directory a new
//! file) and `/metrics` (Prometheus text format). The server adds the read-only web
//! dashboard (`dashboard`) to the same listener.

use crate::auth::TokenSource;
use crate::error::CoordinatorError;
use crate::event_loop::StateHandle;
use crate::metrics::{Metrics, StateGauges};
use crate::store::DirStore;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::path::PathBuf;
use std::sync::Arc;

/// The Prometheus text format's content type.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the HTTP handlers read.
pub struct HttpState {
    /// The event loop (the database and the state gauges live behind it).
    pub state: StateHandle,
    /// The coordinator's metrics.
    pub metrics: Arc<Metrics>,
    /// The state directory (readiness creates a file in it).
    pub state_dir: PathBuf,
    /// The accepted tokens (the dashboard's login checks them); `None` when the coordinator
    /// is open.
    pub tokens: Option<Arc<TokenSource>>,
    /// The checkpoint store (the dashboard's checkpoint downloads read it).
    pub store: Arc<DirStore>,
}

/// The routes of the HTTP listener.
pub fn router(http: Arc<HttpState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(http)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(http): State<Arc<HttpState>>) -> (StatusCode, String) {
    match readiness(&http).await {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => {
            tracing::warn!(%why, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            )
        }
    }
}

/// Why the coordinator cannot take work now, if it cannot.
async fn readiness(http: &HttpState) -> Result<(), String> {
    http.state
        .try_call(|state| state.db.probe_write().map_err(CoordinatorError::from))
        .await
        .map_err(|error| format!("the database takes no writes: {error}"))?;
    let dir = http.state_dir.clone();
    tokio::task::spawn_blocking(move || {
        tempfile::Builder::new()
            .prefix(".ready-")
            .tempfile_in(&dir)
            .map(drop)
            .map_err(|error| {
                format!(
                    "cannot create a file in the state directory {}: {error}",
                    dir.display()
                )
            })
    })
    .await
    .map_err(|error| format!("the readiness check did not finish: {error}"))?
}

async fn metrics(State(http): State<Arc<HttpState>>) -> Response {
    match http.state.try_call(|state| StateGauges::read(state)).await {
        Ok(gauges) => (
            [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
            http.metrics.render(&gauges),
        )
            .into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read the state: {error}\n"),
        )
            .into_response(),
    }
}
