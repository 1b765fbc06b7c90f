//! Who may call what. Every call passes the `layer`, which recognises the caller's token
//! (`tokens`), checks its role against the method's `access`, and hands the `Caller` to the
//! service, which checks that worker calls come from the token that holds the session or
//! trial they act on. Without a token file the coordinator is open (loopback and
//! `--insecure` only; `main` refuses anything else).

mod access;
mod layer;
mod tokens;

pub use access::Access;
pub use layer::{AuthLayer, RefusalHook};
pub use tokens::{TokenSource, TokenTable, TokensError};

use prime_proto::auth::Role;

/// Hex characters of a token's hash shown in logs: enough to tell tokens apart, useless to
/// an attacker.
const SHORT_ID_LEN: usize = 8;

/// Who made a call, as the authorisation layer established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The coordinator runs without tokens: every call is allowed.
    Open,
    /// A caller that presented a known token.
    Token {
        /// The token's role.
        role: Role,
        /// The token's hex sha256.
        id: String,
    },
}

impl Caller {
    /// The token a worker session registered by this caller belongs to; `None` when the
    /// coordinator is open (sessions then belong to nobody in particular).
    pub fn holder(&self) -> Option<&str> {
        match self {
            Caller::Open => None,
            Caller::Token { id, .. } => Some(id),
        }
    }

    /// Whether calls on trials must come from the token holding them: every token caller
    /// except readers (viewer, admin) reading.
    pub fn is_reader(&self) -> bool {
        matches!(
            self,
            Caller::Open
                | Caller::Token {
                    role: Role::Admin | Role::Viewer,
                    ..
                }
        )
    }

    /// The role's name, or `open`.
    pub fn role_name(&self) -> &'static str {
        match self {
            Caller::Open => "open",
            Caller::Token { role, .. } => role.name(),
        }
    }

    /// A short prefix of the token's hash for logs, or `-`.
    pub fn short_id(&self) -> &str {
        match self {
            Caller::Open => "-",
            Caller::Token { id, .. } => &id[..SHORT_ID_LEN.min(id.len())],
        }
    }

    /// The caller of `request` (a request that did not pass the layer, in unit tests of
    /// the service, is open).
    pub fn of<T>(request: &tonic::Request<T>) -> Caller {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Open)
    }
}
