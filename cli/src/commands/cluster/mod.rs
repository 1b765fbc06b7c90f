//! Cluster commands of `prime`: clients of a coordinator (`submit`, `status`, `watch`,
//! `results`, `cancel`, `retry`, `workers`, `logs`, `fetch`, `admin backup`), the single-process `demo`, and the
//! coordinator benchmark.

pub mod access;
pub mod admin;
pub mod bench;
pub mod demo;
pub mod fetch;
pub mod live;
pub mod manage;
pub mod plan;
pub mod results;
pub mod retry;
pub mod status;
pub mod submit;
pub mod url;

use prime_proto::client::Client;
use std::time::Duration;

/// Coordinator URL used when `--coordinator` is not given: `$PRIME_COORDINATOR`, else the
/// local default port.
pub fn default_coordinator() -> String {
    std::env::var("PRIME_COORDINATOR").unwrap_or_else(|_| "http://127.0.0.1:50051".to_string())
}

/// A client of the coordinator at `url`, presenting this invocation's credentials.
pub fn connect(url: &str) -> anyhow::Result<Client> {
    let credentials = access::credentials()?;
    Ok(prime_proto::client::connect(
        url,
        Duration::from_secs(30),
        &credentials,
    )?)
}

/// A small async runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// A gRPC status as a user-facing error.
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    match status.code() {
        tonic::Code::Unavailable => anyhow::anyhow!(
            "cannot reach the coordinator ({}); is it running, and is --coordinator or \
             PRIME_COORDINATOR right?",
            status.message()
        ),
        _ => anyhow::anyhow!("{}", status.message()),
    }
}
