//! The deployment files under `deploy/` checked against the binaries they run: every flag
//! they pass exists in the binary's `--help`, the Kubernetes manifest runs the image the
//! Containerfile names with probes on the coordinator's `--http` port, the systemd units
//! pass `systemd-analyze verify` (where systemd is installed), and the shell scripts parse.

use prime_tests::process::binaries_dir;
use serde::Deserialize;
use serde_yaml::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repository().join(path))
        .unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// The long flags (`--name`, without any `=value`) among `words`.
fn flags<'a>(words: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    words
        .into_iter()
        .filter(|word| word.starts_with("--"))
        .map(|word| word.split('=').next().unwrap_or(word).to_string())
        .collect()
}

/// Asserts that `binary --help` lists every flag in `used` (`where_` names the file).
fn assert_flags_exist(binary: &str, used: &BTreeSet<String>, where_: &str) {
    let output = Command::new(binaries_dir().join(binary))
        .arg("--help")
        .output()
        .unwrap_or_else(|error| panic!("running {binary} --help: {error}"));
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in used {
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "{where_} passes {flag} to {binary}, which its --help does not list:\n{help}"
        );
    }
}

/// The documents of the Kubernetes manifest.
fn manifest() -> Vec<Value> {
    serde_yaml::Deserializer::from_str(&read("deploy/kubernetes/prime.yaml"))
        .map(|document| Value::deserialize(document).expect("valid YAML"))
        .collect()
}

/// The containers of every workload in the manifest.
fn containers(documents: &[Value]) -> Vec<Value> {
    documents
        .iter()
        .filter_map(|document| document["spec"]["template"]["spec"]["containers"].as_sequence())
        .flatten()
        .cloned()
        .collect()
}

fn words(value: &Value) -> Vec<&str> {
    value
        .as_sequence()
        .expect("a list")
        .iter()
        .map(|word| word.as_str().expect("a string"))
        .collect()
}

#[test]
fn the_kubernetes_manifest_runs_the_built_image_with_probes_on_the_http_port() {
    let containerfile = read("deploy/Containerfile");
    let image = containerfile
        .split("io.darts-prime.image=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the Containerfile labels its image name");
    let documents = manifest();
    let containers = containers(&documents);
    assert_eq!(containers.len(), 2, "a coordinator and a worker");
    for container in &containers {
        assert_eq!(container["image"].as_str(), Some(image), "{container:?}");
        let command = words(&container["command"]);
        let binary = command[0];
        assert_flags_exist(binary, &flags(command[1..].iter().copied()), "prime.yaml");
    }
    let coordinator = containers
        .iter()
        .find(|container| container["name"].as_str() == Some("coordinator"))
        .expect("a coordinator container");
    let command = words(&coordinator["command"]);
    let value_of = |flag: &str| {
        command
            .iter()
            .find_map(|word| word.strip_prefix(&format!("{flag}=")))
            .unwrap_or_else(|| panic!("the coordinator is given {flag}"))
    };
    let http_port: u64 = value_of("--http")
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("--http has a port");
    let http = coordinator["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .find(|port| port["name"].as_str() == Some("http"))
        .expect("a port named http");
    assert_eq!(http["containerPort"].as_u64(), Some(http_port));
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(coordinator[probe]["httpGet"]["path"].as_str(), Some(path));
        assert_eq!(coordinator[probe]["httpGet"]["port"].as_str(), Some("http"));
    }
    let tokens = Path::new(value_of("--tokens"));
    let mount = coordinator["volumeMounts"]
        .as_sequence()
        .expect("volume mounts")
        .iter()
        .find(|mount| Some(Path::new(mount["mountPath"].as_str().unwrap_or(""))) == tokens.parent())
        .expect("the tokens file is mounted");
    let volume_name = mount["name"].as_str().expect("a volume name");
    let statefulset = documents
        .iter()
        .find(|document| document["kind"].as_str() == Some("StatefulSet"))
        .expect("the coordinator StatefulSet");
    let volume = statefulset["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|volume| volume["name"].as_str() == Some(volume_name))
        .expect("the tokens volume");
    assert!(
        volume["secret"]["secretName"].as_str().is_some(),
        "the tokens come from a Secret: {volume:?}"
    );
}

/// The `ExecStart=` command of a unit, continuation lines joined.
fn exec_start(unit: &str) -> String {
    let joined = unit.replace("\\\n", " ");
    joined
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .expect("an ExecStart line")
        .to_string()
}

#[test]
fn the_systemd_units_pass_flags_the_binaries_know_and_verify() {
    let units = ["prime-coordinator.service", "prime-worker@.service"];
    for name in units {
        let unit = read(&format!("deploy/systemd/{name}"));
        for option in [
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "StateDirectory=",
            "LoadCredential=",
        ] {
            assert!(unit.contains(option), "{name} lacks {option}");
        }
        let command = exec_start(&unit);
        let mut words = command.split_whitespace();
        let binary = Path::new(words.next().expect("a binary"))
            .file_name()
            .and_then(|name| name.to_str())
            .expect("a binary name")
            .to_string();
        assert_flags_exist(&binary, &flags(words), name);
    }
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED systemd-analyze verify: systemd-analyze is not installed here");
        return;
    };
    assert!(version.status.success());
    // The units as installed, with the binaries where this test built them.
    let dir = tempfile::tempdir().unwrap();
    let bin = format!("{}/", binaries_dir().display());
    let mut paths = Vec::new();
    for name in units {
        let unit = read(&format!("deploy/systemd/{name}")).replace("/usr/local/bin/", &bin);
        let installed = dir.path().join(name.replace("@.", "@0."));
        std::fs::write(&installed, unit).unwrap();
        paths.push(installed);
    }
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .output()
        .expect("running systemd-analyze verify");
    assert!(
        output.status.success(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_slurm_script_drains_on_usr1_requeues_and_passes_known_flags() {
    let script = read("deploy/slurm/prime-worker.sbatch");
    for line in [
        "#SBATCH --signal=B:USR1@300",
        "#SBATCH --requeue",
        "trap drain USR1",
    ] {
        assert!(script.contains(line), "the Slurm script lacks `{line}`");
    }
    assert!(
        script.contains("kill -USR1 \"$worker\""),
        "the trap forwards USR1"
    );
    let joined = script.replace("\\\n", " ");
    let command = joined
        .lines()
        .find(|line| line.contains("/target/release/worker\""))
        .expect("the worker command");
    assert_flags_exist(
        "worker",
        &flags(command.split_whitespace()),
        "prime-worker.sbatch",
    );
    let checked = Command::new("bash")
        .arg("-n")
        .arg(repository().join("deploy/slurm/prime-worker.sbatch"))
        .output()
        .expect("running bash -n");
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
}
