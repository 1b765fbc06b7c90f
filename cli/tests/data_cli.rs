//! `prime data` end to end: the real binary writes, checks and rejects dataset folders.

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

#[test]
fn synth_writes_a_folder_that_check_reads() {
    let dir = tempfile::tempdir().unwrap();
    let out = prime(&[
        "data",
        "synth",
        "--out",
        path(dir.path()),
        "--size",
        "23",
        "--test-size",
        "7",
        "--seed",
        "3",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("23 training and 7 test images"), "{stdout}");
    assert!(stdout.contains("data_batch_5.bin (4 records)"), "{stdout}");
    let folder = dir.path().join("cifar-10-batches-bin");
    let size = std::fs::metadata(folder.join("data_batch_1.bin"))
        .unwrap()
        .len();
    assert_eq!(size, 5 * 3073);

    let out = prime(&["data", "check", "--data-dir", path(dir.path())]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("23 training images, 7 test images"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 to 3 training images per class"),
        "{stdout}"
    );
}

#[test]
fn synth_writes_cifar100_format() {
    let dir = tempfile::tempdir().unwrap();
    let out = prime(&[
        "data",
        "synth",
        "--out",
        path(dir.path()),
        "--classes",
        "100",
        "--size",
        "5",
        "--test-size",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let folder = dir.path().join("cifar-100-binary");
    assert_eq!(
        std::fs::metadata(folder.join("train.bin")).unwrap().len(),
        5 * 3074
    );
    assert_eq!(
        std::fs::metadata(folder.join("test.bin")).unwrap().len(),
        2 * 3074
    );
    let out = prime(&[
        "data",
        "check",
        "--data-dir",
        path(&folder),
        "--classes",
        "100",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("cifar100"));
}

#[test]
fn check_of_an_empty_directory_lists_the_expected_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = prime(&["data", "check", "--data-dir", path(dir.path())]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: CIFAR-10 data not found"),
        "{stderr}"
    );
    for file in ["data_batch_1.bin", "data_batch_5.bin", "test_batch.bin"] {
        assert!(stderr.contains(file), "{stderr}");
    }
    assert!(stderr.contains("cifar-10-binary.tar.gz"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn check_reports_a_truncated_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = prime(&[
        "data",
        "synth",
        "--out",
        path(dir.path()),
        "--size",
        "5",
        "--test-size",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let file = dir.path().join("cifar-10-batches-bin/test_batch.bin");
    std::fs::write(&file, vec![0u8; 3073 + 10]).unwrap();
    let out = prime(&["data", "check", "--data-dir", path(dir.path())]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("test_batch.bin: 3083 bytes"), "{stderr}");
    assert!(stderr.contains("truncated?"), "{stderr}");
}

#[test]
fn synth_rejects_other_class_counts() {
    let dir = tempfile::tempdir().unwrap();
    let out = prime(&["data", "synth", "--out", path(dir.path()), "--classes", "7"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("expected 10 or 100 classes"));
}

#[test]
fn a_missing_dataset_names_every_file_once_and_every_place_looked_in() {
    let dir = tempfile::tempdir().unwrap();
    let out = prime(&["data", "check", "--data-dir", path(dir.path())]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    for file in ["data_batch_1.bin", "data_batch_5.bin", "test_batch.bin"] {
        assert_eq!(stderr.matches(file).count(), 1, "{stderr}");
    }
    let out = prime(&["data", "check", "--ptb", "--data-dir", path(dir.path())]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "in {} and in {}",
            dir.path().display(),
            dir.path().join("ptb").display()
        )),
        "{stderr}"
    );
}
