//! A coordinator client that stamps the protocol version and the caller's token on every
//! call, over plain HTTP/2 or TLS.

use crate::auth::{load_token, TokenError, AUTH_HEADER};
use crate::pb::coordinator_client::CoordinatorClient;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

/// Largest gRPC message a client sends or accepts (checkpoint chunks are 1 MiB).
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Environment variable naming the CA certificate file (instead of `--ca`).
pub const CA_ENV: &str = "PRIME_CA";

/// Stamps the protocol version and, when the caller has one, its token.
#[derive(Clone)]
pub struct Stamp {
    authorization: Option<MetadataValue<Ascii>>,
}

impl Interceptor for Stamp {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let mut request = crate::version::with_protocol(request)?;
        if let Some(value) = &self.authorization {
            request.metadata_mut().insert(AUTH_HEADER, value.clone());
        }
        Ok(request)
    }
}

/// A coordinator client over a lazily (re)connecting channel.
pub type Client = CoordinatorClient<InterceptedService<Channel, Stamp>>;

/// What a caller presents to the coordinator: a token, and for `https://` URLs the CA that
/// signed the coordinator's certificate and the caller's own certificate (mutual TLS).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// Bearer token (see `auth`); none on an open coordinator.
    pub token: Option<String>,
    /// PEM file of the CA to trust; the public web roots when absent.
    pub ca: Option<PathBuf>,
    /// PEM certificate and key files of this caller, for coordinators that require client
    /// certificates.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl Credentials {
    /// Credentials from the usual sources: the token from `token_file` or `PRIME_TOKEN`,
    /// the CA from `ca` or `PRIME_CA`.
    pub fn load(
        token_file: Option<&Path>,
        ca: Option<&Path>,
        identity: Option<(PathBuf, PathBuf)>,
    ) -> Result<Credentials, TokenError> {
        Ok(Credentials {
            token: load_token(token_file)?,
            ca: ca
                .map(Path::to_path_buf)
                .or_else(|| std::env::var_os(CA_ENV).map(PathBuf::from)),
            identity,
        })
    }
}

/// A coordinator URL or credentials that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid coordinator URL `{url}`: {message} (expected for example http://head-node:50051)")]
pub struct UrlError {
    /// The URL given.
    pub url: String,
    /// What is wrong with it.
    pub message: String,
}

fn read_pem(path: &Path, what: &str, url: &str) -> Result<Vec<u8>, UrlError> {
    std::fs::read(path).map_err(|error| UrlError {
        url: url.to_string(),
        message: format!("cannot read the {what} {}: {error}", path.display()),
    })
}

fn tls_config(url: &str, credentials: &Credentials) -> Result<ClientTlsConfig, UrlError> {
    let mut tls = ClientTlsConfig::new();
    tls = match &credentials.ca {
        Some(ca) => tls.ca_certificate(Certificate::from_pem(read_pem(ca, "CA certificate", url)?)),
        None => tls.with_webpki_roots(),
    };
    if let Some((cert, key)) = &credentials.identity {
        tls = tls.identity(Identity::from_pem(
            read_pem(cert, "client certificate", url)?,
            read_pem(key, "client key", url)?,
        ));
    }
    Ok(tls)
}

/// A client of the coordinator at `url` presenting `credentials`. The channel connects on
/// first use and reconnects by itself after the coordinator restarts; calls fail with
/// `UNAVAILABLE` meanwhile. `https://` URLs use TLS.
pub fn connect(
    url: &str,
    request_timeout: Duration,
    credentials: &Credentials,
) -> Result<Client, UrlError> {
    let invalid = |message: String| UrlError {
        url: url.to_string(),
        message,
    };
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|error| invalid(error.to_string()))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(request_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10));
    if url.starts_with("https://") {
        endpoint = endpoint
            .tls_config(tls_config(url, credentials)?)
            .map_err(|error| invalid(format!("TLS set-up failed: {error}")))?;
    } else if credentials.identity.is_some() {
        return Err(invalid(
            "a client certificate was given, but the URL is not https://".to_string(),
        ));
    }
    let authorization = match &credentials.token {
        Some(token) => Some(
            format!("Bearer {token}")
                .parse::<MetadataValue<Ascii>>()
                .map_err(|_| invalid("the token holds characters a header cannot carry".into()))?,
        ),
        None => None,
    };
    Ok(
        CoordinatorClient::with_interceptor(endpoint.connect_lazy(), Stamp { authorization })
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
