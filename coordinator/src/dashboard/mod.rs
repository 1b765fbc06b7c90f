//! The read-only web dashboard on the HTTP listener: a login page that keeps a viewer or
//! admin token in a cookie, pages (server-rendered shells with a little JavaScript, in
//! `pages`) that poll the JSON endpoints of `api` every few seconds, and the session check in
//! front of both. Nothing here changes the cluster's state.
//!
//! The token travels only in the login form's body and then in an HttpOnly, SameSite=Strict
//! cookie (Secure when the request came over TLS through a proxy that says so with
//! `X-Forwarded-Proto: https`); it never appears in a URL or a page. Without a token file
//! the coordinator is open (loopback only), and so is the dashboard.

mod alphas;
mod api;
mod curves;
mod pages;

use crate::http::HttpState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Form, Router};
use prime_proto::auth::{Role, MAX_TOKEN_LEN};
use serde::Deserialize;
use std::sync::Arc;

/// The cookie holding the token.
const COOKIE: &str = "prime_token";
/// Lifetime of the cookie: a working week, after which the browser asks again.
const COOKIE_MAX_AGE_SECONDS: u64 = 7 * 24 * 3600;

/// The dashboard's routes: login and static files open, everything else behind the session.
pub fn router(http: Arc<HttpState>) -> Router {
    let guarded = Router::new()
        .route("/", get(pages::grids))
        .route("/grids/{grid}", get(pages::grid))
        .route("/trials/{trial}", get(pages::trial))
        .route("/workers", get(pages::workers))
        .merge(api::router())
        .route_layer(middleware::from_fn_with_state(
            http.clone(),
            require_session,
        ));
    Router::new()
        .route("/login", get(pages::login).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/static/dashboard.js", get(pages::script))
        .route("/static/dashboard.css", get(pages::style))
        .merge(guarded)
        .layer(Extension(Arc::new(alphas::HistoryCache::default())))
        .with_state(http)
}

/// Why a token does not open the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// No token was presented.
    Missing,
    /// The token is not in the token file.
    Unknown,
    /// A worker token: it may run trials, not read the cluster's state.
    WorkerRole,
}

impl Refusal {
    fn message(self) -> &'static str {
        match self {
            Refusal::Missing => "enter a viewer or admin token",
            Refusal::Unknown => "this token is not known to the coordinator",
            Refusal::WorkerRole => {
                "this is a worker token; the dashboard needs a viewer or admin token \
                 (`prime token new --role viewer`)"
            }
        }
    }
}

/// Checks `token` against the coordinator's tokens: viewers and admins may read.
fn check_token(http: &HttpState, token: Option<&str>) -> Result<(), Refusal> {
    let Some(tokens) = &http.tokens else {
        return Ok(());
    };
    let token = token
        .filter(|token| !token.is_empty())
        .ok_or(Refusal::Missing)?;
    match tokens.table().recognise(token) {
        Some((Role::Admin | Role::Viewer, _)) => Ok(()),
        Some((Role::Worker, _)) => Err(Refusal::WorkerRole),
        None => Err(Refusal::Unknown),
    }
}

/// The token in the request's cookie, if any.
fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Lets a request with a good session through; a page without one goes to the login page,
/// a JSON request gets 401.
async fn require_session(
    State(http): State<Arc<HttpState>>,
    request: Request,
    next: Next,
) -> Response {
    if check_token(&http, cookie_token(request.headers())).is_ok() {
        return next.run(request).await;
    }
    if request.uri().path().starts_with("/api/") {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CACHE_CONTROL, "no-store")],
            "sign in at /login with a viewer or admin token\n",
        )
            .into_response();
    }
    Redirect::to("/login").into_response()
}

/// The login form's fields.
#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

fn session_cookie(value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
}

async fn login(
    State(http): State<Arc<HttpState>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let token = form.token.trim();
    // Tokens are `prime_` and hex; anything else cannot be one, nor go into a cookie.
    let cookie_safe = token
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    let checked = if token.len() > MAX_TOKEN_LEN || !cookie_safe {
        Err(Refusal::Unknown)
    } else {
        check_token(&http, Some(token))
    };
    match checked {
        Ok(()) => (
            [(
                header::SET_COOKIE,
                session_cookie(token, COOKIE_MAX_AGE_SECONDS, over_tls(&headers)),
            )],
            Redirect::to("/"),
        )
            .into_response(),
        Err(refusal) => {
            tracing::warn!(reason = refusal.message(), "dashboard login refused");
            (
                StatusCode::UNAUTHORIZED,
                pages::login_page(Some(refusal.message())),
            )
                .into_response()
        }
    }
}

async fn logout(headers: HeaderMap) -> Response {
    (
        [(
            header::SET_COOKIE,
            session_cookie("", 0, over_tls(&headers)),
        )],
        Redirect::to("/login"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_behind_tls() {
        let plain = session_cookie("prime_abc", 60, false);
        assert_eq!(
            plain,
            "prime_token=prime_abc; Path=/; Max-Age=60; HttpOnly; SameSite=Strict"
        );
        assert!(session_cookie("prime_abc", 60, true).ends_with("; Secure"));
    }

    #[test]
    fn the_token_is_found_among_other_cookies() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; prime_token=prime_xyz; other=1"),
        );
        assert_eq!(cookie_token(&headers), Some("prime_xyz"));
        headers.insert(header::COOKIE, HeaderValue::from_static("prime_tokenx=1"));
        assert_eq!(cookie_token(&headers), None);
    }
}
