//! `prime schedule replay` end to end: the real binary on FIMT files, checked against the
//! test vectors of SPEC 4.3.

use std::path::Path;
use std::process::{Command, Output};

fn prime(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prime"))
        .args(args)
        .output()
        .expect("the prime binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// Writes one value per line, in Rust's shortest round-trip form.
fn write_fimt(file: &Path, values: &[f64]) {
    let lines: Vec<String> = values.iter().map(f64::to_string).collect();
    std::fs::write(file, lines.join("\n") + "\n").unwrap();
}

/// Replays `file` with the paper's settings plus `extra` flags; the parsed alpha steps.
fn replay(file: &Path, extra: &[&str]) -> Vec<usize> {
    let mut args = vec![
        "schedule",
        "replay",
        "--fimt",
        path(file),
        "--h0",
        "1",
        "--hi",
        "1.05",
        "--ratio",
        "10",
        "--ewma",
        "0.2",
    ];
    args.extend_from_slice(extra);
    let out = prime(&args);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let object = json.as_object().expect("a JSON object");
    assert_eq!(object.len(), 1, "only `alpha_steps`: {json}");
    object["alpha_steps"]
        .as_array()
        .expect("an array")
        .iter()
        .map(|step| step.as_u64().expect("an iteration") as usize)
        .collect()
}

#[test]
fn constant_fimt_fires_at_the_spec_iterations() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fimt.txt");
    write_fimt(&file, &[0.5; 60]);
    assert_eq!(replay(&file, &[]), vec![1, 2, 8, 19, 30, 41, 52]);
    assert_eq!(
        replay(&file, &["--compat", "reference"]),
        vec![1, 2, 8, 19, 30, 41, 52]
    );
}

#[test]
fn constant_large_fimt_waits_for_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fimt.txt");
    write_fimt(&file, &[50.0; 150]);
    assert_eq!(replay(&file, &[]), vec![81, 92, 103, 114, 125, 136, 147]);
}

#[test]
fn decaying_fimt_delays_the_first_alpha_steps() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fimt.txt");
    let values: Vec<f64> = (0..200).map(|t| 100.0 * 0.97f64.powi(t)).collect();
    write_fimt(&file, &values);
    let steps = replay(&file, &[]);
    assert_eq!(&steps[..8], &[61, 67, 74, 81, 88, 95, 101, 108]);
    assert_eq!(steps.len(), 21);
}

#[test]
fn fixed_compat_keeps_h0_before_the_first_fimt() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fimt.txt");
    // F = 1.02 lies between h0 = 1 and h0 * h_i = 1.05: the reference code's first test
    // compares against 1.05 and fires; the fixed one compares against 1 and waits a step.
    write_fimt(&file, &[1.02; 3]);
    assert_eq!(replay(&file, &["--compat", "reference"]), vec![1]);
    assert_eq!(replay(&file, &["--compat", "fixed"]), vec![2]);
}

/// SPEC 4.4 S11: the authors' code takes the second FIMT unblended (tensor aliasing in
/// track_FI), so F = 5, 0.3, 0.9, ... fires at iteration 2; the blended EWMA waits until 10.
#[test]
fn the_reference_takes_the_second_fimt_unblended() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fimt.txt");
    let mut values = vec![5.0, 0.3];
    values.extend([0.9; 100]);
    write_fimt(&file, &values);
    assert_eq!(
        &replay(&file, &["--compat", "reference"])[..5],
        &[2, 3, 20, 31, 42]
    );
    assert_eq!(
        &replay(&file, &["--compat", "fixed"])[..5],
        &[10, 15, 22, 32, 43]
    );
}

#[test]
fn blank_lines_are_skipped_and_defaults_are_the_papers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fimt.txt");
    let mut body = String::new();
    for _ in 0..60 {
        body.push_str("0.5\n\n");
    }
    std::fs::write(&file, body).unwrap();
    let out = prime(&["schedule", "replay", "--fimt", path(&file)]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        r#"{"alpha_steps":[1,2,8,19,30,41,52]}"#
    );
}

#[test]
fn a_bad_line_is_named_with_its_file_and_number() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fimt.txt");
    std::fs::write(&file, "1.0\n2.0\nabc\n4.0\n").unwrap();
    let out = prime(&["schedule", "replay", "--fimt", path(&file)]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("fimt.txt: line 3"), "{stderr}");
    assert!(stderr.contains("`abc` is not a number"), "{stderr}");
    assert!(out.stdout.is_empty());

    std::fs::write(&file, "1.0\nNaN\n").unwrap();
    let out = prime(&["schedule", "replay", "--fimt", path(&file)]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("fimt.txt: line 2"));
}

#[test]
fn a_missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("absent.txt");
    let out = prime(&["schedule", "replay", "--fimt", path(&file)]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("absent.txt"), "{stderr}");
}

#[test]
fn out_of_range_flags_are_rejected_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fimt.txt");
    write_fimt(&file, &[0.5; 5]);
    for (flag, value) in [
        ("--hi", "1"),
        ("--hi", "0.9"),
        ("--ewma", "0"),
        ("--ewma", "1.5"),
        ("--ratio", "0"),
        ("--h0", "0"),
        ("--h0", "-1"),
    ] {
        let out = prime(&["schedule", "replay", "--fimt", path(&file), flag, value]);
        assert!(!out.status.success(), "{flag} {value} accepted");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
    }
    let out = prime(&["schedule", "replay", "--fimt", path(&file), "--ewma", "1"]);
    assert!(out.status.success(), "ewma = 1 is allowed");
}
