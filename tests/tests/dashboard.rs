//! The web dashboard in a real browser: headless Chromium driven over WebDriver
//! (`chromium-driver`, installed by `scripts/setup.sh`) against an in-process cluster with
//! tokens and the simulated trainer. Login refuses wrong and worker tokens, no page or
//! endpoint works without a token, no page shows the token, the grid page's counts follow
//! the trials without a reload, the trial page draws curves, the alpha progression and the
//! cell diagram (of a running search too, from its latest checkpoint), the run directory and
//! checkpoint downloads hold the archive `prime fetch` unpacks and need a token, and the
//! results table holds the numbers of `prime results`. Screenshots of every page go to
//! `target/tmp/dashboard/`.
//!
//! Without `chromedriver` on the PATH the test says so and passes, unless
//! `PRIME_REQUIRE_BROWSER=1` (CI sets it: there the set-up installs the browser).

use prime_coordinator::auth::TokenSource;
use prime_core::trial::TrialKind;
use prime_proto::archive::{sha256_hex, unpack};
use prime_proto::auth::{new_token, token_sha256};
use prime_proto::client::Credentials;
use prime_proto::pb;
use prime_tests::process::binaries_dir;
use prime_tests::webdriver::Browser;
use prime_tests::{all_succeeded, small_grid, test_coordinator_config, Cluster};
use prime_worker::simulated::{Fault, FaultRule};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// How long any awaited change may take (generous: the machines are slow and shared).
const LIMIT: Duration = Duration::from_secs(90);

/// Where chromedriver is, if installed.
fn chromedriver() -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join("chromedriver"))
        .find(|path| path.is_file())
}

/// Runs a browser command from the test's async body (WebDriver calls block).
fn blocking<T>(command: impl FnOnce() -> Result<T, String>) -> T {
    tokio::task::block_in_place(command).unwrap_or_else(|error| panic!("{error}"))
}

/// The screenshots' folder.
fn output_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn screenshot(browser: &Browser, name: &str) {
    let png = blocking(|| browser.screenshot());
    std::fs::write(output_dir().join(format!("{name}.png")), png).unwrap();
}

/// Evaluates `expression` in the page until it is true, or panics with `what`.
async fn wait_until(browser: &Browser, expression: &str, what: &str) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let value = blocking(|| browser.execute(&format!("return Boolean({expression});")));
        if value == Value::Bool(true) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what} ({expression})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn text_of(browser: &Browser, css: &str) -> String {
    let script = format!(
        "const e = document.querySelector({}); return e ? e.textContent : null;",
        json!(css)
    );
    match blocking(|| browser.execute(&script)) {
        Value::String(text) => text,
        other => panic!("{css}: {other}"),
    }
}

fn path_of(browser: &Browser) -> String {
    let url = blocking(|| browser.current_url());
    let after_host = url.splitn(4, '/').nth(3).unwrap_or_default();
    format!("/{after_host}")
}

/// Submits the login form with `token`, as a user typing it would.
async fn log_in(browser: &Browser, base: &str, token: &str) {
    blocking(|| browser.goto(&format!("{base}/login")));
    blocking(|| {
        browser.execute(&format!(
            "window.leaving = true; document.getElementById('token').value = {}; \
             document.querySelector('form').submit();",
            json!(token)
        ))
    });
    wait_until(browser, "window.leaving === undefined", "the login answer").await;
}

/// The cells of the summary table of `prime results GRID` (Markdown), run as a user would.
fn prime_results_cells(url: &str, grid: &str, token: &str) -> Vec<Vec<String>> {
    let output = Command::new(binaries_dir().join("prime"))
        .args(["results", grid, "--coordinator", url])
        .env("PRIME_TOKEN", token)
        .output()
        .expect("prime runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|line| {
            line.starts_with("| ") && !line.starts_with("| task") && !line.contains("---")
        })
        .map(|line| {
            line.trim_matches('|')
                .split(" | ")
                .map(|cell| cell.trim().to_string())
                .collect()
        })
        .collect()
}

/// Files under `dir` (relative paths, sorted).
fn files_under(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(dir).unwrap();
                files.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    files.sort();
    files
}

/// GET `url` with the session cookie of `token` (none without); status, the
/// Content-Disposition header and the body.
fn download(url: &str, token: Option<&str>) -> (u16, String, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.get(url);
    if let Some(token) = token {
        request = request.header("Cookie", &format!("prime_token={token}"));
    }
    let mut response = request.call().unwrap();
    let disposition = response
        .headers()
        .get("content-disposition")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap();
    (response.status().as_u16(), disposition, body)
}

/// `prime fetch TRIAL --out DIR`, run as a user would.
fn prime_fetch(url: &str, trial_id: u64, out: &Path, token: &str) {
    let output = Command::new(binaries_dir().join("prime"))
        .args([
            "fetch",
            &trial_id.to_string(),
            "--coordinator",
            url,
            "--out",
        ])
        .arg(out)
        .env("PRIME_TOKEN", token)
        .output()
        .expect("prime runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_in_a_browser() {
    let Some(driver_path) = chromedriver() else {
        assert!(
            std::env::var("PRIME_REQUIRE_BROWSER").is_err(),
            "PRIME_REQUIRE_BROWSER is set but chromedriver is not on the PATH"
        );
        eprintln!(
            "skipped: chromedriver is not installed (scripts/setup.sh installs chromium and \
             chromium-driver)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (admin, viewer, worker) = (new_token(), new_token(), new_token());
    let tokens_path = dir.path().join("tokens");
    std::fs::write(
        &tokens_path,
        format!(
            "admin {}\nviewer {}\nworker {}\n",
            token_sha256(&admin),
            token_sha256(&viewer),
            token_sha256(&worker)
        ),
    )
    .unwrap();
    let mut config = test_coordinator_config();
    config.tokens = Some(Arc::new(TokenSource::open(&tokens_path).unwrap()));
    config.http = Some("127.0.0.1:0".parse().unwrap());
    let credentials = Credentials {
        token: Some(admin.clone()),
        ..Default::default()
    };
    let mut cluster = Cluster::start_in(dir, config, credentials, 10, 30).await;
    let base = format!("http://{}", cluster.coordinator().http_addr.unwrap());
    let browser = blocking(|| Browser::start(&driver_path, 1400, 1000));

    // Without a token every page leads to the login page and every endpoint answers 401.
    for page in ["/", "/grids/watched", "/trials/1", "/workers"] {
        blocking(|| browser.goto(&format!("{base}{page}")));
        assert_eq!(path_of(&browser), "/login", "{page}");
    }
    for endpoint in [
        "/api/grids",
        "/api/grids/watched",
        "/api/trials/1",
        "/api/workers",
    ] {
        blocking(|| browser.goto(&format!("{base}{endpoint}")));
        let body = text_of(&browser, "body");
        assert!(body.contains("sign in at /login"), "{endpoint}: {body}");
    }

    // A wrong token and a worker token are refused.
    log_in(&browser, &base, "prime_0123456789abcdef").await;
    assert!(text_of(&browser, "#error").contains("not known"));
    log_in(&browser, &base, &worker).await;
    assert!(text_of(&browser, "#error").contains("worker token"));
    screenshot(&browser, "login-refused");
    blocking(|| browser.goto(&format!("{base}/workers")));
    assert_eq!(path_of(&browser), "/login");

    // A grid waits for a worker; the viewer watches it from the grid page.
    cluster
        .submit(&small_grid(
            "watched",
            &["darts", "darts-prime"],
            &[1, 2],
            2,
            1,
        ))
        .await;
    log_in(&browser, &base, &viewer).await;
    assert_eq!(path_of(&browser), "/");
    wait_until(
        &browser,
        "document.querySelector('tr[data-grid=\"watched\"]')",
        "the grid listed",
    )
    .await;
    screenshot(&browser, "grids");
    blocking(|| browser.goto(&format!("{base}/grids/watched")));
    wait_until(
        &browser,
        "document.getElementById('count-queued')?.textContent === '4'",
        "4 queued searches",
    )
    .await;
    assert_eq!(text_of(&browser, "#count-succeeded"), "0");
    blocking(|| browser.execute("window.loadedOnce = 'yes';"));
    cluster.add_worker("w1", 2, |config| {
        config.credentials.token = Some(worker.clone())
    });
    // 4 searches then 4 evaluations; the page follows without a reload.
    wait_until(
        &browser,
        "document.getElementById('count-succeeded')?.textContent === '8'",
        "8 succeeded trials",
    )
    .await;
    wait_until(
        &browser,
        "document.querySelectorAll('tr.result').length === 2",
        "the results rows",
    )
    .await;
    assert_eq!(
        blocking(|| browser.execute("return window.loadedOnce;")),
        json!("yes"),
        "the grid page reloaded"
    );
    screenshot(&browser, "grid");
    cluster
        .wait_for("watched", LIMIT, "the grid", |trials| {
            all_succeeded(trials, 8)
        })
        .await;

    // The results table holds `prime results`' numbers.
    let shown: Vec<Vec<String>> = serde_json::from_value(blocking(|| {
        browser.execute(
            "return [...document.querySelectorAll('tr.result')].map(row => \
             [...row.querySelectorAll('td')].map(cell => cell.textContent.trim()));",
        )
    }))
    .unwrap();
    let printed = prime_results_cells(&cluster.url(), "watched", &viewer);
    assert_eq!(shown, printed);

    // A search's page: curves with points and its cell diagrams.
    let search = cluster
        .trials("watched")
        .await
        .into_iter()
        .find(|trial| trial.parent_id == 0)
        .unwrap();
    let trial_page = format!("/trials/{}", search.trial_id);
    blocking(|| browser.goto(&format!("{base}{trial_page}")));
    wait_until(
        &browser,
        "document.querySelectorAll('svg.curve').length > 0",
        "curves",
    )
    .await;
    wait_until(&browser, "[...document.querySelectorAll('svg.curve')].every(c => Number(c.dataset.points) > 0 && c.querySelector('polyline').getAttribute('points').length > 0)", "points on every curve").await;
    wait_until(
        &browser,
        "document.querySelectorAll('svg.cell-diagram').length === 2",
        "normal and reduction cells",
    )
    .await;
    // The alpha progression: a panel per edge of both cells, a point per epoch and the start.
    wait_until(
        &browser,
        "document.querySelectorAll('svg.alpha').length === 28 && [...document.querySelectorAll('svg.alpha')].every(a => a.dataset.points === '3' && a.querySelectorAll('polyline').length === 8)",
        "the alphas of 14 edges x 8 operations in two cells over 2 epochs",
    )
    .await;
    wait_until(
        &browser,
        "document.getElementById('attempts').textContent.includes('succeeded')",
        "the attempt",
    )
    .await;
    screenshot(&browser, "trial");

    // The run directory and a checkpoint download need a token and hold the archive that
    // `prime fetch` unpacks (the final one).
    let run_link = format!("{base}/api/trials/{}/run", search.trial_id);
    assert_eq!(
        text_of(&browser, "#run-directory"),
        "Run directory",
        "the page links the run directory"
    );
    assert_eq!(download(&run_link, None).0, 401);
    assert_eq!(download(&run_link, Some(&worker)).0, 401);
    let (status, disposition, archive) = download(&run_link, Some(&viewer));
    assert_eq!(status, 200);
    let named = format!("attachment; filename=\"watched-{}-search-", search.trial_id);
    assert!(
        disposition.starts_with(&named) && disposition.ends_with("-run.tar\""),
        "{disposition}"
    );
    let mut client = cluster.client();
    let checkpoints = client
        .trial_checkpoints(pb::TrialRef {
            trial_id: search.trial_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .checkpoints;
    let last_final = checkpoints.iter().rfind(|c| c.r#final).unwrap();
    assert_eq!(sha256_hex(&archive), last_final.sha256);
    let unpacked = tempfile::tempdir().unwrap();
    unpack(&archive, unpacked.path()).unwrap();
    let fetched = tempfile::tempdir().unwrap();
    prime_fetch(&cluster.url(), search.trial_id, fetched.path(), &viewer);
    let in_archive = files_under(unpacked.path());
    assert!(
        in_archive.contains(&"alphas.jsonl".to_string()),
        "{in_archive:?}"
    );
    for file in &in_archive {
        assert_eq!(
            std::fs::read(unpacked.path().join(file)).unwrap(),
            std::fs::read(fetched.path().join(file)).unwrap(),
            "{file} differs from prime fetch's"
        );
    }
    let shown_checkpoint: String = serde_json::from_value(blocking(|| {
        browser.execute("return document.querySelector('a.checkpoint').getAttribute('href');")
    }))
    .unwrap();
    let checkpoint_link = format!("{base}{shown_checkpoint}");
    assert_eq!(download(&checkpoint_link, None).0, 401);
    let (status, _, bytes) = download(&checkpoint_link, Some(&viewer));
    assert_eq!(status, 200);
    let shown_id: u64 = shown_checkpoint
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let listed = checkpoints
        .iter()
        .find(|c| c.checkpoint_id == shown_id)
        .unwrap();
    assert_eq!(sha256_hex(&bytes), listed.sha256);

    // A search under way: its alphas so far and the cell of its latest checkpoint.
    cluster.trainer.inject(FaultRule {
        method: Some("darts".to_string()),
        seed: Some(7),
        kind: Some(TrialKind::Search),
        fault: Fault::Hang { at_epoch: 1 },
        times: 1,
    });
    cluster
        .submit(&small_grid("running", &["darts"], &[7], 2, 1))
        .await;
    let running = cluster
        .wait_for(
            "running",
            LIMIT,
            "the search's first checkpoint",
            |trials| {
                trials.iter().any(|trial| {
                    trial.state == "running"
                        && trial.progress.as_ref().is_some_and(|p| p.epochs_done == 1)
                })
            },
        )
        .await
        .into_iter()
        .find(|trial| trial.parent_id == 0)
        .unwrap();
    blocking(|| browser.goto(&format!("{base}/trials/{}", running.trial_id)));
    wait_until(
        &browser,
        "document.querySelectorAll('svg.cell-diagram').length === 2 && document.getElementById('cells').textContent.includes('after epoch 1 of 2')",
        "the running search's cells",
    )
    .await;
    wait_until(
        &browser,
        "document.querySelectorAll('svg.alpha').length === 28 && [...document.querySelectorAll('svg.alpha')].every(a => a.dataset.points === '2')",
        "the running search's alphas (the start and epoch 1)",
    )
    .await;
    assert!(text_of(&browser, "#summary").contains("running"));
    screenshot(&browser, "trial-running");
    blocking(|| browser.goto(&format!("{base}/workers")));
    wait_until(
        &browser,
        "document.getElementById('workers').textContent.includes('w1')",
        "the worker",
    )
    .await;
    screenshot(&browser, "workers");

    // No page shows a token, and the cookie is out of the scripts' reach.
    for page in ["/", "/grids/watched", trial_page.as_str(), "/workers"] {
        blocking(|| browser.goto(&format!("{base}{page}")));
        wait_until(
            &browser,
            "document.getElementById('live').textContent.startsWith('live')",
            "the page's data",
        )
        .await;
        let source = blocking(|| browser.source());
        for token in [&admin, &viewer, &worker] {
            assert!(!source.contains(token.as_str()), "{page} shows a token");
        }
        assert!(!blocking(|| browser.current_url()).contains("prime_"));
    }
    assert_eq!(
        blocking(|| browser.execute("return document.cookie;")),
        json!("")
    );

    drop(browser);
    cluster.shutdown().await;
}
