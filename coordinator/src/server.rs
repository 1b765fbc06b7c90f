//! Starting and stopping a coordinator: state, event loop, lease ticker and gRPC server.

use crate::auth::AuthLayer;
use crate::event_loop::StateHandle;
use crate::guard::GuardedService;
use crate::latency::AssignmentTimings;
use crate::service::CoordinatorService;
use crate::state::{CoordinatorConfig, State};
use crate::store::DirStore;
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
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    ticker: JoinHandle<()>,
}

impl RunningCoordinator {
    /// The URL workers and clients dial: `https://` when it serves TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops serving and waits for the server to finish.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.ticker.abort();
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
    let state = State::open(state_dir, config, tokio::time::Instant::now())?;
    let store = Arc::new(DirStore::open(&state_dir.join("checkpoints"))?);
    let (handle, _thread) = StateHandle::spawn(state);
    let ticker_handle = handle.clone();
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
        }
    });
    let timings = Arc::new(AssignmentTimings::default());
    let service = CoordinatorService::new(handle.clone(), store, timings.clone());
    let service = GuardedService::new(service, handle.clone());
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
            .layer(AuthLayer::new(tokens))
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
        shutdown: Some(shutdown),
        server,
        ticker,
    })
}
