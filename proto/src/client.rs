//! A coordinator client that stamps the protocol version on every call.

use crate::pb::coordinator_client::CoordinatorClient;
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

/// Largest gRPC message a client sends or accepts (checkpoint chunks are 1 MiB).
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// The interceptor type stamping `x-prime-protocol`.
pub type ProtocolStamp = fn(Request<()>) -> Result<Request<()>, Status>;

/// A coordinator client over a lazily (re)connecting channel.
pub type Client = CoordinatorClient<InterceptedService<Channel, ProtocolStamp>>;

/// A malformed coordinator URL.
#[derive(Debug, thiserror::Error)]
#[error("invalid coordinator URL `{url}`: {message} (expected for example http://head-node:50051)")]
pub struct UrlError {
    /// The URL given.
    pub url: String,
    /// What is wrong with it.
    pub message: String,
}

/// A client of the coordinator at `url`. The channel connects on first use and reconnects
/// by itself after the coordinator restarts; calls fail with `UNAVAILABLE` meanwhile.
pub fn connect(url: &str, request_timeout: Duration) -> Result<Client, UrlError> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|error| UrlError {
            url: url.to_string(),
            message: error.to_string(),
        })?
        .connect_timeout(Duration::from_secs(3))
        .timeout(request_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10));
    let stamp: ProtocolStamp = crate::version::with_protocol;
    Ok(
        CoordinatorClient::with_interceptor(endpoint.connect_lazy(), stamp)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
    )
}

/// Whether a failed call is worth retrying later (the coordinator is unreachable or
/// restarting) rather than a refusal.
pub fn is_transient(status: &Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled
            | tonic::Code::ResourceExhausted
    )
}
