//! The dashboard's HTML pages: each is a server-rendered frame (header, headings, empty
//! cards) whose cards `dashboard.js` fills from the JSON endpoints and refreshes every few
//! seconds. User-controlled text (grid names) is escaped here; the script escapes the rest.

use axum::extract::Path;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use prime_core::genotype::diagram::escape;

/// The script of every page.
const SCRIPT: &str = include_str!("assets/dashboard.js");
/// The style sheet of every page.
const STYLE: &str = include_str!("assets/dashboard.css");

/// A page: `page` names the script's drawing routine, `data` adds `data-*` attributes
/// (already escaped), `body` is the main content.
fn frame(title: &str, page: &str, data: &str, body: &str) -> Html<String> {
    let title = escape(title);
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · darts-prime</title><link rel="stylesheet" href="/static/dashboard.css"></head>
<body data-page="{page}"{data}>
<header><span class="brand">darts-prime</span><nav><a href="/">Grids</a><a href="/workers">Workers</a></nav>
<span class="live" id="live">loading…</span><form method="post" action="/logout"><button type="submit">Sign out</button></form></header>
<main>{body}</main>
<script src="/static/dashboard.js"></script>
</body></html>
"#
    ))
}

/// The list of grids.
pub async fn grids() -> Html<String> {
    frame(
        "Grids",
        "grids",
        "",
        r#"<h1>Grids</h1><div class="card" id="grids"></div>"#,
    )
}

/// One grid: counts by state, trials with lineage, the results table and its downloads.
pub async fn grid(Path(grid): Path<String>) -> Html<String> {
    let name = escape(&grid);
    let link = percent_encode(&grid);
    let body = format!(
        r#"<h1>Grid {name}</h1><div class="counts" id="counts"></div>
<h2>Trials</h2><div class="card" id="trials"></div>
<h2>Results</h2><div class="card"><div id="results"></div><p class="downloads">Download:
<a href="/api/grids/{link}/results/md">Markdown</a><a href="/api/grids/{link}/results/csv">CSV</a><a href="/api/grids/{link}/results/json">JSON</a></p></div>"#
    );
    frame(&grid, "grid", &format!(r#" data-grid="{name}""#), &body)
}

/// One trial: summary, curves, alpha progression, cell diagram, attempts, log tail and
/// downloads.
pub async fn trial(Path(trial): Path<u64>) -> Html<String> {
    let body = format!(
        r#"<h1 id="title">Trial #{trial}</h1><div class="card" id="summary"></div>
<h2>Curves</h2><div class="charts" id="curves"></div>
<h2>Alphas (activated, per edge and operation)</h2><div class="card" id="alphas"></div>
<h2>Cell</h2><div class="card cells" id="cells"></div>
<h2>Attempts</h2><div class="card" id="attempts"></div>
<h2>Log (last lines)</h2><pre class="log" id="log"></pre>
<h2>Downloads</h2><div class="card" id="checkpoints"></div>"#
    );
    frame(
        &format!("Trial {trial}"),
        "trial",
        &format!(r#" data-trial="{trial}""#),
        &body,
    )
}

/// The workers and their GPUs.
pub async fn workers() -> Html<String> {
    frame(
        "Workers",
        "workers",
        "",
        r#"<h1>Workers</h1><div class="card" id="workers"></div>"#,
    )
}

/// The login page, with why the last try was refused.
pub fn login_page(refused: Option<&str>) -> Html<String> {
    let error = refused
        .map(|message| format!(r#"<p class="error" id="error">{}</p>"#, escape(message)))
        .unwrap_or_default();
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in · darts-prime</title>
<link rel="stylesheet" href="/static/dashboard.css"></head>
<body><div class="card login"><h1>darts-prime</h1>{error}
<form method="post" action="/login"><label for="token">Viewer or admin token</label>
<input id="token" name="token" type="password" autocomplete="off" autofocus required>
<button type="submit" id="sign-in">Sign in</button></form>
<p class="muted">Create one with <code>prime token new --role viewer</code>.</p></div></body></html>
"#
    ))
}

/// The login page.
pub async fn login() -> Html<String> {
    login_page(None)
}

/// The pages' script.
pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

/// The pages' style sheet.
pub async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

/// `text` as one URL path segment.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn grid_names_are_escaped_in_the_page_and_encoded_in_links() {
        let Html(page) = grid(Path("<b>x\"/y".to_string())).await;
        assert!(page.contains("<h1>Grid &lt;b&gt;x&quot;/y</h1>"), "{page}");
        assert!(page.contains(r#"data-grid="&lt;b&gt;x&quot;/y""#), "{page}");
        assert!(
            page.contains("/api/grids/%3Cb%3Ex%22%2Fy/results/csv"),
            "{page}"
        );
        assert!(!page.contains("<b>x"), "{page}");
    }
}
