//! `prime genotype` end to end: the real binary on temporary files.

use std::path::Path;
use std::process::{Command, Output};

/// The activated matrix of SPEC 2.3 (columns none, max, avg, skip, sep3, sep5, dil3, dil5).
const WORKED_EXAMPLE: [[f32; 8]; 14] = [
    [0.30, 0.05, 0.05, 0.10, 0.20, 0.10, 0.10, 0.10],
    [0.10, 0.05, 0.05, 0.25, 0.25, 0.10, 0.10, 0.10],
    [0.40, 0.10, 0.10, 0.10, 0.10, 0.10, 0.05, 0.05],
    [0.05, 0.05, 0.05, 0.05, 0.15, 0.35, 0.15, 0.15],
    [0.65, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05],
    [0.125; 8],
    [0.05, 0.05, 0.05, 0.05, 0.30, 0.20, 0.20, 0.10],
    [0.05, 0.05, 0.05, 0.05, 0.10, 0.10, 0.30, 0.30],
    [0.20, 0.10, 0.10, 0.10, 0.15, 0.15, 0.10, 0.10],
    [0.15, 0.10, 0.10, 0.10, 0.15, 0.15, 0.15, 0.10],
    [0.30, 0.10, 0.10, 0.15, 0.10, 0.10, 0.10, 0.05],
    [0.10, 0.05, 0.05, 0.50, 0.10, 0.10, 0.05, 0.05],
    [0.16, 0.12, 0.12, 0.12, 0.12, 0.12, 0.12, 0.12],
    [0.10, 0.05, 0.05, 0.10, 0.40, 0.10, 0.10, 0.10],
];

/// The genes SPEC 2.3 derives from the worked example.
const WORKED_EXAMPLE_GENES: &str = r#"[["skip_connect", 1], ["sep_conv_3x3", 0], ["sep_conv_5x5", 1], ["max_pool_3x3", 0], ["sep_conv_3x3", 1], ["dil_conv_3x3", 2], ["skip_connect", 2], ["sep_conv_3x3", 4]]"#;

fn prime(arguments: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prime"))
        .args(arguments)
        .output()
        .expect("the prime binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A JSON array of rows, each value written in its shortest round-trip form.
fn rows_json(rows: &[Vec<f32>]) -> String {
    let rows: Vec<String> = rows
        .iter()
        .map(|row| {
            let values: Vec<String> = row.iter().map(f32::to_string).collect();
            format!("[{}]", values.join(", "))
        })
        .collect();
    format!("[{}]", rows.join(", "))
}

fn write_alphas(path: &Path, normal: &[Vec<f32>], reduce: &[Vec<f32>]) {
    let json = format!(
        r#"{{"normal": {}, "reduce": {}}}"#,
        rows_json(normal),
        rows_json(reduce)
    );
    std::fs::write(path, json).unwrap();
}

fn assert_clean_failure(output: &Output) -> String {
    assert!(!output.status.success(), "expected a failure");
    let message = stderr(output);
    assert!(!message.contains("panicked"), "{message}");
    assert!(message.starts_with("error: "), "{message}");
    message
}

#[test]
fn derive_reproduces_the_worked_example_from_log_alphas() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("alphas.json");
    let log_alphas: Vec<Vec<f32>> = WORKED_EXAMPLE
        .iter()
        .map(|row| row.iter().map(|value| value.ln()).collect())
        .collect();
    let uniform = vec![vec![0.0_f32; 8]; 14];
    write_alphas(&path, &log_alphas, &uniform);

    let output = prime(&[
        "genotype",
        "derive",
        "--alphas",
        path.to_str().unwrap(),
        "--activation",
        "softmax",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let expected = format!(
        r#"{{"normal": {WORKED_EXAMPLE_GENES}, "normal_concat": [2, 3, 4, 5], "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1], ["max_pool_3x3", 0], ["max_pool_3x3", 1], ["max_pool_3x3", 0], ["max_pool_3x3", 1], ["max_pool_3x3", 0], ["max_pool_3x3", 1]], "reduce_concat": [2, 3, 4, 5]}}"#
    );
    assert_eq!(stdout(&output).trim_end(), expected);
}

#[test]
fn derive_under_crb_clamps_and_uses_seven_columns() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("alphas.json");
    // Dropping `none` from the worked example and clamping leaves the projection unchanged;
    // values above 1 are clamped, so a raw 5.0 ties with the 1.0 at its left.
    let mut normal: Vec<Vec<f32>> = WORKED_EXAMPLE.iter().map(|row| row[1..].to_vec()).collect();
    normal[11] = vec![-1.0, -1.0, 1.0, 5.0, -1.0, -1.0, -1.0];
    let reduce = vec![vec![1.0 / 7.0; 7]; 14];
    write_alphas(&path, &normal, &reduce);

    let output = prime(&[
        "genotype",
        "derive",
        "--alphas",
        path.to_str().unwrap(),
        "--activation",
        "crb",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.starts_with(&format!(r#"{{"normal": {WORKED_EXAMPLE_GENES}"#)),
        "{text}"
    );
}

#[test]
fn derive_rejects_a_row_of_the_wrong_width_naming_file_key_and_row() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("bad_alphas.json");
    let normal = vec![vec![0.0_f32; 8]; 14];
    let mut reduce = normal.clone();
    reduce[5].pop();
    write_alphas(&path, &normal, &reduce);

    let output = prime(&["genotype", "derive", "--alphas", path.to_str().unwrap()]);
    let message = assert_clean_failure(&output);
    assert!(message.contains("bad_alphas.json"), "{message}");
    assert!(
        message.contains("`reduce` row 5 has 7 values, expected 8"),
        "{message}"
    );
}

#[test]
fn derive_rejects_malformed_json_and_wrong_row_counts() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("broken.json");
    std::fs::write(&path, r#"{"normal": [[0.1, 0.2], "reduce": []}"#).unwrap();
    let output = prime(&["genotype", "derive", "--alphas", path.to_str().unwrap()]);
    let message = assert_clean_failure(&output);
    assert!(message.contains("broken.json"), "{message}");
    assert!(message.contains("line 1"), "{message}");

    let short = directory.path().join("short.json");
    write_alphas(&short, &vec![vec![0.0; 8]; 13], &vec![vec![0.0; 8]; 14]);
    let output = prime(&["genotype", "derive", "--alphas", short.to_str().unwrap()]);
    let message = assert_clean_failure(&output);
    assert!(message.contains("short.json"), "{message}");
    assert!(message.contains("normal cell: 13 rows"), "{message}");

    let missing = directory.path().join("missing.json");
    let output = prime(&["genotype", "derive", "--alphas", missing.to_str().unwrap()]);
    let message = assert_clean_failure(&output);
    assert!(message.contains("cannot read alphas file"), "{message}");
    assert!(message.contains("missing.json"), "{message}");
}

#[test]
fn show_lists_a_builtin_and_a_text_file() {
    let output = prime(&["genotype", "show", "darts_v2"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("node 3 = skip_connect(c_{k-2}) + dil_conv_3x3(node 0)"),
        "{text}"
    );
    assert!(
        text.contains("Genotype(normal=[('sep_conv_3x3', 0), "),
        "{text}"
    );

    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("genotype.txt");
    std::fs::write(
        &path,
        "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0)],\n  normal_concat=[2],\n  \
         reduce=[(\"max_pool_3x3\", 0), ('avg_pool_3x3', 1),], reduce_concat=range(2, 3),)\n",
    )
    .unwrap();
    let output = prime(&["genotype", "show", path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("node 0 = max_pool_3x3(c_{k-2}) + avg_pool_3x3(c_{k-1})"),
        "{text}"
    );
    assert!(text.contains("output = concat(node 0)"), "{text}");

    // The directory holding genotype.txt reads as a search run directory.
    let output = prime(&["genotype", "show", directory.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), text);
    let empty = tempfile::tempdir().unwrap();
    let output = prime(&["genotype", "show", empty.path().to_str().unwrap()]);
    let message = assert_clean_failure(&output);
    assert!(
        message.contains("no genotype.json or genotype.txt"),
        "{message}"
    );
}

#[test]
fn show_reports_unknown_names_and_bad_files_without_panicking() {
    let output = prime(&["genotype", "show", "ENAS"]);
    let message = assert_clean_failure(&output);
    assert!(
        message.contains("`ENAS`") && message.contains("DARTS_V2"),
        "{message}"
    );

    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("typo.txt");
    std::fs::write(
        &path,
        "Genotype(normal=[('sep_conv_3x3', 1),\n  ('sep_conv_33', 0)])",
    )
    .unwrap();
    let output = prime(&["genotype", "show", path.to_str().unwrap()]);
    let message = assert_clean_failure(&output);
    assert!(message.contains("typo.txt"), "{message}");
    assert!(message.contains("line 2, column 4"), "{message}");
    assert!(message.contains("`sep_conv_33`"), "{message}");
}
