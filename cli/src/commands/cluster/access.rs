//! How `prime` reaches a secured coordinator: the token (`--token-file` or `PRIME_TOKEN`,
//! never a command-line value), the CA for `https://` URLs (`--ca` or `PRIME_CA`) and, for
//! coordinators that require them, a client certificate. Given once, before the subcommand
//! or after it, for every cluster command.

use clap::Args;
use prime_proto::client::Credentials;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Credentials options shared by every cluster command.
#[derive(Debug, Clone, Default, Args)]
pub struct AccessArgs {
    /// File holding the token to present to the coordinator (default: $PRIME_TOKEN).
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM CA certificate to trust for https:// coordinators (default: $PRIME_CA, else the
    /// public web roots).
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate, for coordinators that require mutual TLS (needs --client-key).
    #[arg(long, global = true, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// PEM key of --client-cert.
    #[arg(long, global = true, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

static ACCESS: OnceLock<AccessArgs> = OnceLock::new();

/// Records the options of this invocation (`main` calls it once).
pub fn set(access: AccessArgs) {
    let _ = ACCESS.set(access);
}

/// The credentials of this invocation.
pub fn credentials() -> anyhow::Result<Credentials> {
    let access = ACCESS.get().cloned().unwrap_or_default();
    Ok(Credentials::load(
        access.token_file.as_deref(),
        access.ca.as_deref(),
        access.client_cert.zip(access.client_key),
    )?)
}
