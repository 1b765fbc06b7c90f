//! `prime config show` and `prime config keys` end to end: the real binary's output read
//! back by the config loader, and checked against the key table validation uses.

use prime_core::config::keys::SEARCH_KEYS;
use prime_core::config::{LayeredConfig, SearchConfig};
use prime_core::presets;
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

/// `prime ARGS`, expected to succeed; its stdout.
fn prime_ok(args: &[&str]) -> String {
    let out = prime(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// `prime ARGS`, expected to fail with exit code 1; its stderr.
fn prime_fails(args: &[&str]) -> String {
    let out = prime(args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{args:?}: {}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

#[test]
fn config_show_prints_the_resolved_config_that_search_reads_back() {
    let shown = prime_ok(&[
        "config",
        "show",
        "--method",
        "darts-prime",
        "--dataset",
        "cifar100",
        "--seed",
        "7",
        "--set",
        "network.layers=5",
    ]);
    let expected = presets::method_config(
        "darts-prime",
        &[
            "data.dataset=\"cifar100\"".to_string(),
            "seed=7".to_string(),
            "network.layers=5".to_string(),
        ],
    )
    .unwrap();
    assert_eq!(
        SearchConfig::from_toml(&shown, "shown", &[]).unwrap(),
        expected
    );
    let lines: Vec<&str> = shown.lines().collect();
    let mut keys = 0;
    for (index, line) in lines.iter().enumerate() {
        if !line.starts_with('#') && line.contains(" = ") {
            keys += 1;
            assert!(
                lines[index - 1].starts_with("# "),
                "no comment above {line}"
            );
        }
    }
    assert_eq!(
        keys + 1,
        SEARCH_KEYS.len(),
        "every key but the unset data.limit"
    );
    assert!(shown.contains("# limit is unset."), "{shown}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shown.toml");
    std::fs::write(&file, &shown).unwrap();
    let again = prime_ok(&["config", "show", "--config", file.to_str().unwrap()]);
    let body = |text: &str| text.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(
        body(&again),
        body(&shown),
        "show of its own output is stable"
    );
}

#[test]
fn config_show_refuses_bad_input_with_the_field_and_the_fix() {
    let range = prime_fails(&["config", "show", "--set", "schedule.ewma=0"]);
    assert!(
        range.contains("field `schedule.ewma`: expected 0 < x <= 1, got 0"),
        "{range}"
    );
    let method = prime_fails(&["config", "show", "--method", "dartz"]);
    assert!(
        method.contains("unknown method preset `dartz`; expected one of darts, cs10"),
        "{method}"
    );
    let ptb = prime_fails(&["config", "show", "--dataset", "ptb"]);
    assert!(ptb.contains("Penn Treebank"), "{ptb}");
}

#[test]
fn config_keys_lists_every_key_with_type_default_and_range() {
    let listing = prime_ok(&["config", "keys"]);
    let rows: Vec<Vec<&str>> = listing
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect())
        .collect();
    let names: Vec<&str> = rows.iter().map(|row| row[0]).collect();
    let listed: Vec<&str> = SEARCH_KEYS.iter().map(|key| key.name).collect();
    assert_eq!(names, listed);
    let row = |name: &str| rows.iter().find(|row| row[0] == name).unwrap();
    assert_eq!(row("epochs")[1..4], ["integer", "50", "1..=10000"]);
    assert_eq!(row("data.limit")[1..3], ["integer", "unset"]);
    assert_eq!(row("schedule.kind")[1..3], ["string", "\"alternate\""]);
    assert_eq!(
        row("weights.momentum")[1..7],
        ["float", "0.9", "0", "<=", "x", "<"]
    );
}
