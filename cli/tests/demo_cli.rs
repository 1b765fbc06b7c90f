//! `prime demo` as README command one runs it, here on the recurrent grid (the shorter one):
//! an embedded coordinator and worker over loopback gRPC, PTB searches on a synthetic corpus
//! chained to the retraining of their genotypes, and the perplexity table at the end.

use std::process::Command;

#[test]
fn the_recurrent_demo_ends_in_a_perplexity_table_over_both_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_prime"))
        .args(["demo", "--dataset", "ptb", "--state"])
        .arg(dir.path().join("state"))
        .output()
        .expect("the prime binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("failed:"), "{stderr}");
    assert!(
        stderr.contains("demo: watch the grid at http://127.0.0.1:")
            && stderr.contains("/grids/demo-ptb\n"),
        "{stderr}"
    );
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.starts_with(
            "| task | method | test ppl | valid ppl | params (M) | search CPU-hours | n | seeds | notes |"
        ),
        "{table}"
    );
    for method in ["DARTS", "DARTS-PRIME"] {
        let row = table
            .lines()
            .find(|line| line.starts_with(&format!("| PTB | {method} | ")))
            .unwrap_or_else(|| panic!("no {method} row in\n{table}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(&cells[7..9], ["2", "1 2"], "{row}");
        let test_ppl: f64 = cells[3].split(' ').next().unwrap().parse().unwrap();
        // The synthetic corpus has 41 words: a model that learned nothing scores about 41.
        assert!(test_ppl > 1.0 && test_ppl < 20.0, "{row}");
    }
    // Per search: its state, then its alpha steps, none of them flagged as too few.
    let per_seed_rows: Vec<&str> = table
        .lines()
        .filter(|line| line.starts_with("| PTB | DARTS") && line.ends_with("| 1 |"))
        .collect();
    assert_eq!(per_seed_rows.len(), 4, "{table}");
    for row in per_seed_rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[4], "succeeded", "{row}");
        let alpha_steps: u64 = cells[5].parse().unwrap();
        assert!(alpha_steps >= 5, "{row}");
    }
    assert!(
        !table.contains("alpha steps;") && !table.contains("only "),
        "{table}"
    );
}
