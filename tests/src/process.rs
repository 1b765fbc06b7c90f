//! Process-level helpers: the real `coordinator` and `worker` binaries, started as child
//! processes and killed with real signals.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Builds the daemons and the `prime` command line once per test process (a no-op when they
/// are up to date) and returns the directory that holds them.
pub fn binaries_dir() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test executable path");
            // target/<profile>/deps/<test> -> target/<profile>
            let dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("target profile directory")
                .to_path_buf();
            let profile = dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("debug")
                .to_string();
            let mut build = Command::new(env!("CARGO"));
            build.args([
                "build",
                "--quiet",
                "-p",
                "prime-coordinator",
                "-p",
                "prime-worker",
                "-p",
                "prime-cli",
                "--bins",
            ]);
            if profile == "release" {
                build.arg("--release");
            }
            let status = build
                .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
                .status()
                .expect("running cargo build for the daemons");
            assert!(
                status.success(),
                "building the coordinator, worker and prime binaries failed"
            );
            dir
        })
        .clone()
}

/// A child process killed (SIGKILL) when dropped.
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Daemon {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (for example `STOP`, `CONT`, `TERM`, `USR1`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// kill -9, and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `limit` for the process to exit; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Its stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the coordinator binary on `listen` with a 1.5 s lease; returns it and its address.
pub fn start_coordinator(state: &Path, listen: &str, log: &Path) -> (Daemon, String) {
    start_coordinator_with(state, listen, log, &[])
}

/// Starts the coordinator binary like `start_coordinator`, with the extra arguments `extra`.
pub fn start_coordinator_with(
    state: &Path,
    listen: &str,
    log: &Path,
    extra: &[&str],
) -> (Daemon, String) {
    let mut child = Command::new(binaries_dir().join("coordinator"))
        .args(["--listen", listen, "--state"])
        .arg(state)
        .args(["--lease-secs", "1.5", "--heartbeat-secs", "0.2"])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("starting the coordinator");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("coordinator prints its address");
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (
        Daemon {
            child,
            log: log.to_path_buf(),
        },
        addr,
    )
}

/// Steps per epoch of the simulated trainer in process tests.
pub const STEPS_PER_EPOCH: u64 = 10;

/// Starts the worker binary with one simulated GPU slot.
pub fn start_worker(url: &str, name: &str, work_dir: &Path, step_ms: u64, log: &Path) -> Daemon {
    start_worker_with(url, name, work_dir, step_ms, log, &[])
}

/// Starts the worker binary with one simulated GPU slot and the extra arguments `extra`.
pub fn start_worker_with(
    url: &str,
    name: &str,
    work_dir: &Path,
    step_ms: u64,
    log: &Path,
    extra: &[&str],
) -> Daemon {
    let child = Command::new(binaries_dir().join("worker"))
        .args([
            "--coordinator",
            url,
            "--gpu",
            "0",
            "--name",
            name,
            "--work-dir",
        ])
        .arg(work_dir)
        .args(["--trainer", "simulated", "--poll-secs", "0.05"])
        .args(["--sim-steps-per-epoch", &STEPS_PER_EPOCH.to_string()])
        .args([
            "--sim-step-ms",
            &step_ms.to_string(),
            "--sim-weights-bytes",
            "40000",
        ])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("starting the worker");
    Daemon {
        child,
        log: log.to_path_buf(),
    }
}
