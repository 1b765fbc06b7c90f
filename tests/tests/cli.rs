//! The cluster commands of the real `prime` binary (`status`, `watch`, `workers`, `logs`,
//! `fetch`) against a real coordinator and a worker with the simulated trainer.

use prime_core::trial::{TrialKind, TrialResult, TrialSpec};
use prime_proto::client::{connect, Credentials};
use prime_proto::pb;
use prime_tests::process::{binaries_dir, start_coordinator, start_worker};
use prime_tests::{all_succeeded, small_grid, wait_for};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

/// A running `prime` command whose stdout and stderr go to files.
struct Prime {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// How a `prime` command ended.
struct Ended {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Prime {
    /// Starts `prime ARGS` against the coordinator at `url`, its output under `dir`.
    fn start(dir: &Path, url: &str, args: &[&str]) -> Prime {
        let name = args.join("_").replace(['/', ' ', '-'], "");
        let stdout = dir.join(format!("{name}.out"));
        let stderr = dir.join(format!("{name}.err"));
        let child = Command::new(binaries_dir().join("prime"))
            .args(args)
            .env("PRIME_COORDINATOR", url)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("starting prime");
        Prime {
            child,
            stdout,
            stderr,
        }
    }

    /// Whether the command is still running.
    fn running(&mut self) -> bool {
        self.child.try_wait().expect("polling prime").is_none()
    }

    /// Waits for the command to end; panics (after killing it) if it runs past `limit`.
    fn wait(mut self, limit: Duration) -> Ended {
        let deadline = Instant::now() + limit;
        let code = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for prime") {
                break status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "prime ran past {limit:?}: {}",
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ended {
            code,
            stdout: std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.stderr).unwrap_or_default(),
        }
    }
}

/// Runs `prime ARGS` to its end and expects success; its stdout.
fn prime_ok(dir: &Path, url: &str, args: &[&str]) -> String {
    let ended = Prime::start(dir, url, args).wait(Duration::from_secs(30));
    assert_eq!(
        ended.code,
        Some(0),
        "prime {args:?} failed: {}{}",
        ended.stdout,
        ended.stderr
    );
    ended.stdout
}

/// The row of worker `name` in the output of `prime workers`.
fn worker_row(listing: &str, name: &str) -> Option<Vec<String>> {
    listing
        .lines()
        .skip(1)
        .map(|line| {
            line.split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .find(|fields| fields.first().is_some_and(|first| first == name))
}

/// Polls `prime workers` until worker `name`'s row satisfies `done`.
fn wait_for_worker(
    dir: &Path,
    url: &str,
    name: &str,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let listing = prime_ok(dir, url, &["workers"]);
        if worker_row(&listing, name).is_some_and(|row| done(&row)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {listing}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The row of trial `id` in the output of `prime status GRID`.
fn trial_row(table: &str, id: u64) -> String {
    table
        .lines()
        .find(|line| line.split_whitespace().next() == Some(&id.to_string()))
        .unwrap_or_else(|| panic!("no row for trial {id} in\n{table}"))
        .to_string()
}

/// Every file under `dir`, relative to it, sorted.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_workers_logs_and_fetch_show_a_real_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let (_coordinator, addr) =
        start_coordinator(&out.join("state"), "127.0.0.1:0", &out.join("c.log"));
    let url = format!("http://{addr}");

    let empty = Prime::start(out, &url, &["status"]).wait(Duration::from_secs(30));
    assert_eq!(empty.code, Some(0), "{}", empty.stderr);
    assert!(empty.stderr.contains("no grids yet"), "{}", empty.stderr);

    let _worker = start_worker(&url, "w1", &out.join("w1"), 5, &out.join("w1.log"));
    wait_for_worker(out, &url, "w1", "w1 to register", |row| row[2] == "no");
    prime_ok(out, &url, &["workers", "--cordon", "w1"]);
    wait_for_worker(out, &url, "w1", "the cordon", |row| row[2] == "yes");

    connect(&url, Duration::from_secs(5), &Credentials::default())
        .unwrap()
        .submit_grid(pb::SubmitGridRequest {
            file_name: "cli.toml".into(),
            toml: small_grid("cli", &["darts"], &[1], 2, 1),
            extend: false,
        })
        .await
        .expect("grid accepted");
    let mut watch = Prime::start(out, &url, &["watch", "cli", "--interval", "0.1"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let queued = prime_ok(out, &url, &["status", "cli"]);
    let search_id = prime_tests::list_trials(&url, "cli").await[0].trial_id;
    let row = trial_row(&queued, search_id);
    assert!(
        row.contains("search darts cifar10 s1") && row.contains("queued"),
        "{queued}"
    );

    assert!(
        watch.running(),
        "prime watch ended while the grid was queued"
    );
    prime_ok(out, &url, &["workers", "--uncordon", "w1"]);
    let watched = watch.wait(LIMIT);
    assert_eq!(watched.code, Some(0), "{}", watched.stderr);
    assert!(
        watched
            .stderr
            .contains("grid `cli` is over: 2 trials, 0 failed"),
        "{}",
        watched.stderr
    );
    assert!(
        watched
            .stdout
            .starts_with("| task | method | test error (%) | params (M) |"),
        "watch ends with the results table: {}",
        watched.stdout
    );
    let trials = prime_tests::list_trials(&url, "cli").await;
    assert!(all_succeeded(&trials, 2), "watch ended early: {trials:?}");
    // Not on a terminal, watch prints a plain line whenever a trial changes state or epoch.
    for line in [
        format!("{search_id} search darts cifar10 s1: queued"),
        format!("{search_id} search darts cifar10 s1: succeeded on w1/0"),
    ] {
        assert!(
            watched.stderr.lines().any(|l| l.starts_with(&line)),
            "{line}: {}",
            watched.stderr
        );
    }

    let unknown = Prime::start(out, &url, &["status", "clj"]).wait(Duration::from_secs(30));
    assert_eq!(unknown.code, Some(1));
    assert!(
        unknown.stderr.contains("no grid `clj`; the grids are: cli"),
        "{}",
        unknown.stderr
    );
    // A coordinator address without a scheme is dialled over http.
    let bare = prime_ok(out, &url, &["status", "--coordinator", &addr.to_string()]);
    assert!(bare.lines().any(|l| l.starts_with("cli ")), "{bare}");

    let summary = prime_ok(out, &url, &["status"]);
    let line = summary
        .lines()
        .find(|l| l.starts_with("cli "))
        .expect(&summary);
    let counts: Vec<&str> = line.split_whitespace().skip(1).collect();
    assert_eq!(counts, ["0", "0", "0", "2", "0", "0"], "{summary}");
    let table = prime_ok(out, &url, &["status", "cli"]);
    for trial in &trials {
        let row = trial_row(&table, trial.trial_id);
        assert!(row.contains("succeeded"), "{table}");
        assert!(
            row.split_whitespace().any(|field| field == "w1/0"),
            "a finished trial shows the worker of its last attempt: {table}"
        );
    }
    let evaluation = trials
        .iter()
        .find(|t| t.parent_id == search_id)
        .expect("evaluation");
    assert!(
        trial_row(&table, evaluation.trial_id).contains("eval   darts cifar10 s1 e0"),
        "{table}"
    );

    let logs = prime_ok(out, &url, &["logs", &search_id.to_string()]);
    assert!(
        logs.lines().any(|l| l.contains("started on worker w1")),
        "{logs}"
    );
    // Every line starts with its UTC time (2026-11-30T21:38:57.123Z).
    for line in logs.lines() {
        let time = line.split(' ').next().unwrap();
        assert!(
            time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "{logs}"
        );
    }

    let fetched = out.join("fetched");
    let listed = prime_ok(
        out,
        &url,
        &[
            "fetch",
            &search_id.to_string(),
            "--out",
            fetched.to_str().unwrap(),
        ],
    );
    // The simulated trainer's checkpoint carries a manifest like the engine's (it is verified
    // before upload and before commit).
    let expected_files = [
        "alphas.jsonl",
        "checkpoint/manifest.json",
        "checkpoint/state.json",
        "checkpoint/weights.bin",
        "events.out.tfevents.prime",
        "final/result.json",
        "final/weights.bin",
        "genotype.json",
        "metrics.jsonl",
        "result.json",
        "spec.json",
    ];
    assert_eq!(files_under(&fetched), expected_files, "{listed}");
    for name in [
        "checkpoint",
        "final",
        "genotype.json",
        "metrics.jsonl",
        "result.json",
        "spec.json",
    ] {
        assert!(
            listed
                .lines()
                .any(|line| Path::new(line) == fetched.join(name)),
            "{listed}"
        );
    }
    let search = &trials.iter().find(|t| t.trial_id == search_id).unwrap();
    let spec: TrialSpec =
        serde_json::from_slice(&std::fs::read(fetched.join("spec.json")).unwrap()).unwrap();
    assert_eq!((spec.kind, spec.search_seed), (TrialKind::Search, 1));
    let result: TrialResult = search.trial_result().unwrap().unwrap();
    let genotype: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fetched.join("genotype.json")).unwrap()).unwrap();
    assert_eq!(Some(genotype), result.genotype);
    let metrics = std::fs::read_to_string(fetched.join("metrics.jsonl")).unwrap();
    assert!(metrics.lines().count() >= 2, "{metrics}");
    for weights in ["final/weights.bin", "checkpoint/weights.bin"] {
        assert_eq!(
            std::fs::metadata(fetched.join(weights)).unwrap().len(),
            40000
        );
    }
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fetched.join("checkpoint/state.json")).unwrap())
            .unwrap();
    assert_eq!(
        state["epochs_done"], 2,
        "the last checkpoint is the final one"
    );
    let artifact: TrialResult =
        serde_json::from_slice(&std::fs::read(fetched.join("final/result.json")).unwrap()).unwrap();
    assert_eq!(artifact, result);

    connect(&url, Duration::from_secs(5), &Credentials::default())
        .unwrap()
        .submit_grid(pb::SubmitGridRequest {
            file_name: "drain.toml".into(),
            toml: small_grid("drain", &["darts"], &[2], 200, 1),
            extend: false,
        })
        .await
        .expect("grid accepted");
    wait_for(&url, "drain", LIMIT, "a running trial", |t| {
        t.iter()
            .any(|t| t.state == "running" && t.progress.is_some_and(|p| p.epochs_done >= 1))
    })
    .await;
    prime_ok(out, &url, &["workers", "--drain", "w1"]);
    let drained = wait_for(&url, "drain", LIMIT, "the drained trial", |t| {
        t.iter().all(|t| t.state == "preempted")
    })
    .await;
    assert_eq!(drained[0].failures, 0);
    let unfinished = out.join("unfinished");
    prime_ok(
        out,
        &url,
        &[
            "fetch",
            &drained[0].trial_id.to_string(),
            "--out",
            unfinished.to_str().unwrap(),
        ],
    );
    assert_eq!(
        files_under(&unfinished),
        [
            "alphas.jsonl",
            "checkpoint/manifest.json",
            "checkpoint/state.json",
            "checkpoint/weights.bin",
            "metrics.jsonl",
            "spec.json"
        ],
        "an unfinished trial brings its last checkpoint"
    );
    wait_for_worker(out, &url, "w1", "the drained worker", |row| {
        row[2] == "yes" && row[6] == "-"
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_extend_and_fetch_a_grid_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let (_coordinator, addr) =
        start_coordinator(&out.join("state"), "127.0.0.1:0", &out.join("c.log"));
    let url = format!("http://{addr}");
    let _worker = start_worker(&url, "w1", &out.join("w1"), 2, &out.join("w1.log"));
    wait_for_worker(out, &url, "w1", "w1 to register", |row| row[2] == "no");
    prime_ok(out, &url, &["workers", "--cordon", "w1"]);
    wait_for_worker(out, &url, "w1", "the cordon", |row| row[2] == "yes");

    let grid_file = out.join("ops.toml");
    std::fs::write(&grid_file, small_grid("ops", &["darts"], &[1], 2, 1)).unwrap();
    prime_ok(out, &url, &["submit", grid_file.to_str().unwrap()]);
    prime_ok(out, &url, &["cancel", "ops"]);
    let search_id = prime_tests::list_trials(&url, "ops").await[0].trial_id;
    let retried = Prime::start(out, &url, &["retry", "ops"]).wait(Duration::from_secs(30));
    assert_eq!(retried.code, Some(0), "{}", retried.stderr);
    assert_eq!(retried.stdout.trim(), search_id.to_string());
    assert!(
        retried
            .stderr
            .contains("requeued 1 trial(s) from their last checkpoint"),
        "{}",
        retried.stderr
    );
    prime_ok(out, &url, &["workers", "--uncordon", "w1"]);
    wait_for(&url, "ops", LIMIT, "the retried grid", |t| {
        all_succeeded(t, 2)
    })
    .await;

    let again = Prime::start(out, &url, &["retry", &search_id.to_string(), "--fresh"])
        .wait(Duration::from_secs(30));
    assert_eq!(again.code, Some(1));
    assert!(
        again.stderr.contains(&format!(
            "trial {search_id} is succeeded: only failed or cancelled trials are retried"
        )),
        "{}",
        again.stderr
    );

    // A second seed, added while the worker takes no trials: it has no result to fetch yet.
    prime_ok(out, &url, &["workers", "--cordon", "w1"]);
    wait_for_worker(out, &url, "w1", "the second cordon", |row| row[2] == "yes");
    std::fs::write(&grid_file, small_grid("ops", &["darts"], &[1, 2], 2, 1)).unwrap();
    let extended = Prime::start(
        out,
        &url,
        &["submit", "--extend", grid_file.to_str().unwrap()],
    )
    .wait(Duration::from_secs(30));
    assert_eq!(extended.code, Some(0), "{}", extended.stderr);
    assert!(
        extended
            .stderr
            .contains("extended grid `ops`: 1 new search trial(s); existing trials untouched"),
        "{}",
        extended.stderr
    );
    std::fs::write(&grid_file, small_grid("ops", &["darts"], &[1, 2], 3, 1)).unwrap();
    let changed = Prime::start(
        out,
        &url,
        &["submit", "--extend", grid_file.to_str().unwrap()],
    )
    .wait(Duration::from_secs(30));
    assert_eq!(changed.code, Some(1));
    assert!(
        changed.stderr.contains(&format!(
            "trial {search_id} (search darts cifar10 seed 1) exists with different search \
             settings"
        )),
        "{}",
        changed.stderr
    );

    let trials = prime_tests::list_trials(&url, "ops").await;
    assert_eq!(trials.len(), 3);
    let fetched = out.join("grid");
    let fetch = Prime::start(
        out,
        &url,
        &["fetch", "ops", "--out", fetched.to_str().unwrap()],
    )
    .wait(Duration::from_secs(30));
    assert_eq!(fetch.code, Some(0), "{}", fetch.stderr);
    let evaluation = trials.iter().find(|t| t.parent_id == search_id).unwrap();
    let queued = trials.iter().find(|t| t.state == "queued").unwrap();
    let mut subdirs: Vec<String> = std::fs::read_dir(&fetched)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    subdirs.sort();
    assert_eq!(
        subdirs,
        [
            format!("{search_id}-search-darts-cifar10-seed1"),
            format!("{}-eval-darts-cifar10-seed1-eval0", evaluation.trial_id),
        ]
    );
    for subdir in &subdirs {
        assert!(fetch.stdout.contains(subdir.as_str()), "{}", fetch.stdout);
        let files = files_under(&fetched.join(subdir));
        for name in [
            "metrics.jsonl",
            "result.json",
            "spec.json",
            "final/weights.bin",
            "events.out.tfevents.prime",
        ] {
            assert!(files.iter().any(|file| file == name), "{subdir}: {files:?}");
        }
    }
    assert!(
        fetch.stderr.contains(&format!(
            "skipped trial {} (search darts cifar10 seed 2) is queued; no result to fetch",
            queued.trial_id
        )),
        "{}",
        fetch.stderr
    );
    assert!(
        fetch.stderr.contains("fetched 2 trial(s) of grid `ops`"),
        "{}",
        fetch.stderr
    );
}
