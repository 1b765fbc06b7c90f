//! The tower layer in front of every gRPC service: it establishes the `Caller` of each call
//! from its `authorization: Bearer <token>` header and refuses, before any handler runs, a
//! call without a known token (`UNAUTHENTICATED`) or with a token of the wrong role
//! (`PERMISSION_DENIED`). Refusals name the role needed and never echo the token.

use super::{Access, Caller, TokenSource};
use prime_proto::auth::AUTH_HEADER;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::Status;
use tower_layer::Layer;
use tower_service::Service;

/// Hook told the reason of every refused call (the coordinator's metrics count them).
pub type RefusalHook = Arc<dyn Fn(&'static str) + Send + Sync>;

/// Authorises every call against `tokens`; with `None` every call is open.
#[derive(Clone)]
pub struct AuthLayer {
    tokens: Option<Arc<TokenSource>>,
    on_refused: Option<RefusalHook>,
}

impl AuthLayer {
    /// A layer checking calls against `tokens` (none: open).
    pub fn new(tokens: Option<Arc<TokenSource>>) -> AuthLayer {
        AuthLayer {
            tokens,
            on_refused: None,
        }
    }

    /// Also tells `hook` the reason of each refusal.
    pub fn on_refused(mut self, hook: RefusalHook) -> AuthLayer {
        self.on_refused = Some(hook);
        self
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service `AuthLayer` wraps around the router.
#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    layer: AuthLayer,
}

/// The token of a request's `authorization` header, if it is a well-formed bearer token.
fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(AUTH_HEADER)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    (!token.is_empty()).then_some(token)
}

impl AuthLayer {
    /// The caller of a call to `path` with `headers`, or the refusal with its reason.
    fn authorize(
        &self,
        path: &str,
        headers: &http::HeaderMap,
    ) -> Result<Caller, (Status, &'static str)> {
        let Some(tokens) = &self.tokens else {
            return Ok(Caller::Open);
        };
        let access = Access::of_path(path);
        if access == Access::Open {
            return Ok(Caller::Open);
        }
        let method = path.rsplit('/').next().unwrap_or(path);
        let Some(token) = bearer(headers) else {
            let reason = if headers.contains_key(AUTH_HEADER) {
                "malformed_token"
            } else {
                "missing_token"
            };
            return Err((
                Status::unauthenticated(format!(
                    "{method} needs {}: send `authorization: Bearer <token>` (prime and \
                     workers read it from --token-file or PRIME_TOKEN)",
                    access.needed()
                )),
                reason,
            ));
        };
        let Some((role, id)) = tokens.table().recognise(token) else {
            return Err((
                Status::unauthenticated(format!(
                    "{method} needs {}; the token presented is not known to this \
                     coordinator (revoked, or from another cluster)",
                    access.needed()
                )),
                "unknown_token",
            ));
        };
        let caller = Caller::Token { role, id };
        if !access.allows(role) {
            return Err((
                Status::permission_denied(format!(
                    "{method} needs {}; this token has role {role}",
                    access.needed()
                )),
                "wrong_role",
            ));
        }
        Ok(caller)
    }
}

impl<S, B> Service<http::Request<B>> for Authorize<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_string();
        match self.layer.authorize(&path, request.headers()) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                Box::pin(self.inner.call(request))
            }
            Err((status, reason)) => {
                tracing::warn!(
                    target: "audit",
                    method = %path,
                    outcome = "refused",
                    reason,
                    code = ?status.code(),
                    "call refused"
                );
                if let Some(hook) = &self.layer.on_refused {
                    hook(reason);
                }
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prime_proto::auth::{token_sha256, Role};

    fn layer_with(tokens: &[(Role, &str)]) -> (AuthLayer, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let text: String = tokens
            .iter()
            .map(|(role, token)| format!("{role} {}\n", token_sha256(token)))
            .collect();
        std::fs::write(&path, text).unwrap();
        let source = Arc::new(TokenSource::open(&path).unwrap());
        (AuthLayer::new(Some(source)), dir)
    }

    fn headers(value: Option<&str>) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        if let Some(value) = value {
            headers.insert(AUTH_HEADER, value.parse().unwrap());
        }
        headers
    }

    const SUBMIT: &str = "/prime.v1.Coordinator/SubmitGrid";

    #[test]
    fn an_open_layer_lets_everything_through() {
        let layer = AuthLayer::new(None);
        assert!(matches!(
            layer.authorize(SUBMIT, &headers(None)),
            Ok(Caller::Open)
        ));
    }

    #[test]
    fn no_or_unknown_token_is_unauthenticated_and_the_token_is_not_echoed() {
        let (layer, _dir) = layer_with(&[(Role::Admin, "prime_admin")]);
        for (value, reason) in [
            (None, "missing_token"),
            (Some("Basic abc"), "malformed_token"),
            (Some("Bearer prime_guess_s3cret"), "unknown_token"),
        ] {
            let (status, why) = layer.authorize(SUBMIT, &headers(value)).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated);
            assert_eq!(why, reason);
            assert!(status.message().contains("an admin token"), "{status:?}");
            assert!(!status.message().contains("s3cret"), "{status:?}");
        }
    }

    #[test]
    fn a_known_token_of_the_wrong_role_is_denied_naming_the_role_needed() {
        let (layer, _dir) = layer_with(&[(Role::Worker, "prime_w"), (Role::Admin, "prime_a")]);
        let (status, reason) = layer
            .authorize(SUBMIT, &headers(Some("Bearer prime_w")))
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert_eq!(reason, "wrong_role");
        assert_eq!(
            status.message(),
            "SubmitGrid needs an admin token; this token has role worker"
        );
        let caller = layer
            .authorize(SUBMIT, &headers(Some("Bearer prime_a")))
            .unwrap();
        assert_eq!(
            caller,
            Caller::Token {
                role: Role::Admin,
                id: token_sha256("prime_a")
            }
        );
    }

    #[test]
    fn health_checks_need_no_token() {
        let (layer, _dir) = layer_with(&[(Role::Admin, "prime_a")]);
        assert!(matches!(
            layer.authorize("/grpc.health.v1.Health/Check", &headers(None)),
            Ok(Caller::Open)
        ));
    }
}
