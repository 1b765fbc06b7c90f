//! Starting and stopping a coordinator: state, event loop, lease ticker, gRPC server (with
//! the standard health service) and the optional HTTP listener for probes and metrics.

use crate::auth::{AuthLayer, RefusalHook};
use crate::dashboard;
use crate::disk::DiskGuard;
use crate::event_loop::StateHandle;
use crate::guard::GuardedService;
use crate::http::{self, HttpState};
use crate::latency::AssignmentTimings;
use crate::metrics::Metrics;
use crate::service::CoordinatorService;
use crate::state::{CoordinatorConfig, State};
use crate::store::{CheckpointStore, DirStore};
use prime_proto::pb::coordinator_server::CoordinatorServer;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

/// Largest gRPC message accepted (checkpoint chunks are 1 MiB).
const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// A running coordinator.
pub struct RunningCoordinator {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// A handle to its event loop (tests inspect the state through it).
    pub state: StateHandle,
    /// Server-side latency of its assignments (`prime bench coordinator` reports it).
    pub timings: Arc<AssignmentTimings>,
    tls: bool,
    /// The address of the HTTP listener for probes and metrics, when one was asked for.
    pub http_addr: Option<SocketAddr>,
    /// Its Prometheus metrics.
    pub metrics: Arc<Metrics>,
    disk: DiskGuard,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    ticker: JoinHandle<()>,
    http: Option<JoinHandle<()>>,
}

impl RunningCoordinator {
    /// The URL workers and clients dial: `https://` when it serves TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Changes the free space kept on the disk of the state directory (`--min-free-disk`);
    /// tests simulate a full disk with a threshold above any real disk.
    pub fn set_min_free_disk(&self, bytes: u64) {
        self.disk.set_min_free(bytes);
    }

    /// Stops serving and waits for the server to finish.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.ticker.abort();
        if let Some(http) = self.http.take() {
            http.abort();
        }
        self.server.await??;
        Ok(())
    }

    /// Waits until the server stops (it runs until shut down).
    pub async fn wait(mut self) -> anyhow::Result<()> {
        (&mut self.server).await??;
        Ok(())
    }
}

/// Opens the state under `state_dir` and serves on `listener`.
pub async fn start(
    listener: TcpListener,
    state_dir: &Path,
    config: CoordinatorConfig,
) -> anyhow::Result<RunningCoordinator> {
    let addr = listener.local_addr()?;
    let (tokens, tls) = (config.tokens.clone(), config.tls.clone());
    let tick_every = (config.lease / 4).max(std::time::Duration::from_millis(10));
    let (http_bind, disk) = (config.http, DiskGuard::new(state_dir, config.min_free_disk));
    let max_upload_bytes = config.max_upload_bytes;
    let state = State::open(state_dir, config, tokio::time::Instant::now())?;
    let checkpoints = state_dir.join("checkpoints");
    let store = Arc::new(
        DirStore::open(&checkpoints, max_upload_bytes).map_err(|error| {
            anyhow::anyhow!(
                "cannot open the checkpoint store {}: {error}",
                checkpoints.display()
            )
        })?,
    );
    let (handle, _thread) = StateHandle::spawn(state);
    let ticker_handle = handle.clone();
    let sweep_store = store.clone();
    let ticker = tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick_every);
        loop {
            interval.tick().await;
            let now = tokio::time::Instant::now();
            match ticker_handle.try_call(move |state| state.tick(now)).await {
                Ok(()) => {}
                Err(crate::error::CoordinatorError::ShuttingDown) => break,
                Err(error) => tracing::error!(%error, "lease check failed"),
            }
            let store = sweep_store.clone();
            let swept =
                tokio::task::spawn_blocking(move || store.expire_staged(std::time::Instant::now()))
                    .await;
            if let Ok(Err(error)) = swept {
                tracing::error!(%error, "removing abandoned uploads failed");
            }
        }
    });
    let timings = Arc::new(AssignmentTimings::default());
    let metrics = Arc::new(Metrics::new());
    let service = CoordinatorService::new(
        handle.clone(),
        store.clone(),
        timings.clone(),
        metrics.clone(),
        disk.clone(),
        state_dir.to_path_buf(),
    );
    let (http_addr, http) = match http_bind {
        Some(bind) => {
            let http_listener = TcpListener::bind(bind)
                .await
                .map_err(|error| anyhow::anyhow!("cannot listen on --http {bind}: {error}"))?;
            let http_addr = http_listener.local_addr()?;
            let http_state = Arc::new(HttpState {
                state: handle.clone(),
                metrics: metrics.clone(),
                state_dir: state_dir.to_path_buf(),
                tokens: tokens.clone(),
                store: store.clone(),
            });
            let routes = http::router(http_state.clone()).merge(dashboard::router(http_state));
            let task = tokio::spawn(async move {
                if let Err(error) = axum::serve(http_listener, routes).await {
                    tracing::error!(%error, "the HTTP listener stopped");
                }
            });
            tracing::info!(%http_addr, "serving /healthz, /readyz, /metrics and the dashboard");
            (Some(http_addr), Some(task))
        }
        None => (None, None),
    };
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<CoordinatorServer<GuardedService>>()
        .await;
    let service = GuardedService::new(service, handle.clone());
    let refused_metrics = metrics.clone();
    let refused: RefusalHook = Arc::new(move |reason| refused_metrics.refused(reason));
    let server = CoordinatorServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let server =
        tonic::service::interceptor::InterceptedService::new(server, prime_proto::check_protocol);
    let (shutdown, stop) = oneshot::channel::<()>();
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut builder = tonic::transport::Server::builder();
    if let Some(files) = &tls {
        builder = builder.tls_config(files.config()?)?;
    }
    let server = tokio::spawn(
        builder
            .layer(AuthLayer::new(tokens).on_refused(refused))
            .add_service(health_service)
            .add_service(server)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop.await;
            }),
    );
    tracing::info!(%addr, state_dir = %state_dir.display(), tls = tls.is_some(), "coordinator listening");
    Ok(RunningCoordinator {
        addr,
        tls: tls.is_some(),
        state: handle,
        timings,
        http_addr,
        metrics,
        disk,
        shutdown: Some(shutdown),
        server,
        ticker,
        http,
    })
}
