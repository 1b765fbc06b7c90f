//! `prime search --dataset ptb` and `prime eval --dataset ptb` as a user runs them: a synthetic
//! corpus, a tiny recurrent search, the retraining of its genotype, resume and bad input.

use std::path::Path;
use std::process::{Command, Output};

fn prime(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prime"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the prime binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A tiny model: 8-d cell, batch 4, BPTT 6.
const TINY: [&str; 8] = [
    "--set",
    "network.nhid=8",
    "--set",
    "data.batch_size=4",
    "--set",
    "data.bptt=6",
    "--threads",
    "1",
];

fn synthetic_corpus(dir: &Path) {
    let synth = prime(
        &[
            "data", "synth", "--ptb", "--out", "data", "--tokens", "1500",
        ],
        dir,
    );
    assert!(synth.status.success(), "{}", stderr(&synth));
    let check = prime(&["data", "check", "--ptb", "--data-dir", "data"], dir);
    assert!(check.status.success(), "{}", stderr(&check));
    let summary = String::from_utf8_lossy(&check.stdout);
    assert!(
        summary.contains("41 words; 1500 / 300 / 300 train / valid / test tokens"),
        "{summary}"
    );
}

#[test]
fn a_recurrent_search_feeds_its_genotype_to_a_recurrent_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    synthetic_corpus(dir.path());
    let mut args = vec![
        "search",
        "--dataset",
        "ptb",
        "--method",
        "darts-prime",
        "--seed",
        "7",
        "--quiet",
        "--no-download",
        "--set",
        "epochs=2",
        "--out",
        "search",
    ];
    args.extend(TINY);
    let search = prime(&args, dir.path());
    assert!(search.status.success(), "{}", stderr(&search));
    let genotype: serde_json::Value = serde_json::from_slice(&search.stdout).unwrap();
    assert_eq!(genotype["recurrent"].as_array().unwrap().len(), 8);
    assert_eq!(
        genotype["concat"],
        serde_json::json!([1, 2, 3, 4, 5, 6, 7, 8])
    );
    let config = std::fs::read_to_string(dir.path().join("search/config.toml")).unwrap();
    assert!(config.contains("method = \"darts-prime\""), "{config}");
    assert!(config.contains("seed = 7"), "{config}");
    assert!(stderr(&search).contains("epoch 2/2"), "{}", stderr(&search));

    let resumed = prime(
        &[
            "search",
            "--resume",
            "search",
            "--quiet",
            "--data-dir",
            "data",
        ],
        dir.path(),
    );
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(resumed.stdout, search.stdout);

    let mut args = vec![
        "eval",
        "--dataset",
        "ptb",
        "--genotype",
        "search",
        "--epochs",
        "2",
        "--quiet",
        "--no-download",
        "--out",
        "eval",
    ];
    args.extend(TINY);
    let eval = prime(&args, dir.path());
    assert!(eval.status.success(), "{}", stderr(&eval));
    let report: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    let test_ppl = report["test_ppl"].as_f64().unwrap();
    assert!(test_ppl > 1.0 && test_ppl < 41.0, "{report}");
    assert!(report["valid_ppl"].as_f64().unwrap() > 1.0, "{report}");
    let stored = std::fs::read_to_string(dir.path().join("eval/genotype.json")).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stored).unwrap(),
        genotype
    );
    let again = prime(&args, dir.path());
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("is not empty") && stderr(&again).contains("--resume"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn recurrent_runs_reject_bad_input_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    synthetic_corpus(dir.path());
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "search",
                "--dataset",
                "ptb",
                "--method",
                "admm",
                "--no-download",
            ],
            "ADMM",
        ),
        (
            &[
                "search",
                "--dataset",
                "ptb",
                "--set",
                "data.bptt=0",
                "--no-download",
            ],
            "data.bptt",
        ),
        (
            &[
                "eval",
                "--dataset",
                "ptb",
                "--genotype",
                "NASNet",
                "--no-download",
            ],
            "built-ins: ",
        ),
        (
            &[
                "search",
                "--dataset",
                "ptb",
                "--data-dir",
                "nowhere",
                "--no-download",
            ],
            "nowhere",
        ),
    ];
    for (args, expected) in cases {
        let output = prime(args, dir.path());
        assert!(!output.status.success(), "{args:?} succeeded");
        let message = stderr(&output);
        assert!(message.contains(expected), "{args:?}: {message}");
        assert!(!message.contains("panicked"), "{args:?}: {message}");
    }
}
