//! `prime config show` and `prime config keys` end to end: the real binary's output read
//! back by the config loader, and checked against the key table validation uses.

use prime_core::config::eval_keys::EVAL_KEYS;
use prime_core::config::keys::{Key, SEARCH_KEYS};
use prime_core::config::rnn_keys::{RNN_EVAL_KEYS, RNN_SEARCH_KEYS};
use prime_core::config::{LayeredConfig, SearchConfig};
use prime_core::eval_config::EvalConfig;
use prime_core::genotype::Genotype;
use prime_core::presets;
use prime_core::rnn_config::{RnnEvalConfig, RnnSearchConfig};
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
    let admm = prime_fails(&["config", "show", "--dataset", "ptb", "--method", "admm"]);
    assert!(
        admm.contains("ADMM is not available for the recurrent (PTB) search"),
        "{admm}"
    );
    let eval = prime_fails(&["config", "show", "--eval", "--set", "weights.nonmono=3"]);
    assert!(eval.contains("nonmono"), "{eval}");
    let genotype = prime_fails(&["config", "show", "--eval", "--genotype", "NOPE"]);
    assert!(genotype.contains("NOPE"), "{genotype}");
    let usage = prime(&["config", "show", "--genotype", "NASNet"]);
    assert_eq!(usage.status.code(), Some(2), "--genotype needs --eval");
}

/// Asserts that every key line of `shown` has its comment above it and that `unset` keys
/// (and no others) of `keys` are left out.
fn assert_every_key_commented(shown: &str, keys: &[Key], unset: usize) {
    let lines: Vec<&str> = shown.lines().collect();
    let mut written = 0;
    for (index, line) in lines.iter().enumerate() {
        if !line.starts_with('#') && line.contains(" = ") {
            written += 1;
            assert!(
                lines[index - 1].starts_with("# "),
                "no comment above {line}"
            );
        }
    }
    assert_eq!(written + unset, keys.len(), "{shown}");
}

/// `prime config show ARGS --config FILE` of `shown` written to FILE prints the same body.
fn assert_shows_itself(shown: &str, args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shown.toml");
    std::fs::write(&file, shown).unwrap();
    let mut again_args = vec!["config", "show"];
    again_args.extend(args);
    again_args.extend(["--config", file.to_str().unwrap()]);
    let again = prime_ok(&again_args);
    let body = |text: &str| text.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(
        body(&again),
        body(shown),
        "show of its own output is stable"
    );
}

#[test]
fn config_show_resolves_the_recurrent_search_as_search_runs_it() {
    let shown = prime_ok(&[
        "config",
        "show",
        "--dataset",
        "ptb",
        "--method",
        "darts-prime",
        "--seed",
        "5",
        "--set",
        "network.nhid=64",
    ]);
    let preset = presets::method_config("darts-prime", &[]).unwrap();
    let expected = RnnSearchConfig::from_method(&preset)
        .unwrap()
        .with_overrides(&["seed=5".to_string(), "network.nhid=64".to_string()])
        .unwrap();
    assert_eq!(
        RnnSearchConfig::from_toml(&shown, "shown", &[]).unwrap(),
        expected
    );
    assert!(shown.starts_with(
        "# The recurrent (Penn Treebank) search configuration of the darts-prime preset"
    ));
    assert_every_key_commented(&shown, RNN_SEARCH_KEYS, 1);
    assert_shows_itself(&shown, &["--dataset", "ptb"]);
}

#[test]
fn config_show_eval_resolves_the_evaluations_as_eval_runs_them() {
    let shown = prime_ok(&[
        "config",
        "show",
        "--eval",
        "--dataset",
        "cifar100",
        "--genotype",
        "NASNet",
        "--seed",
        "3",
        "--set",
        "speed.autocast=bf16",
    ]);
    let mut expected = EvalConfig::from_overrides(&[
        "data.dataset=\"cifar100\"".to_string(),
        "seed=3".to_string(),
        "speed.autocast=bf16".to_string(),
    ])
    .unwrap();
    expected.genotype = Genotype::builtin("NASNet").unwrap();
    expected.label = "NASNet".to_string();
    assert_eq!(
        EvalConfig::from_toml(&shown, "shown", &[]).unwrap(),
        expected
    );
    assert!(shown.contains("as `prime eval` runs it"), "{shown}");
    assert_every_key_commented(&shown, EVAL_KEYS, 1);
    assert_shows_itself(&shown, &["--eval"]);

    let recurrent = prime_ok(&["config", "show", "--eval", "--dataset", "ptb"]);
    assert_eq!(
        RnnEvalConfig::from_toml(&recurrent, "shown", &[]).unwrap(),
        RnnEvalConfig::default()
    );
    assert_every_key_commented(&recurrent, RNN_EVAL_KEYS, 2);
    assert!(
        recurrent.contains("# asgd_at_epoch is unset."),
        "{recurrent}"
    );
    assert_shows_itself(&recurrent, &["--eval", "--dataset", "ptb"]);
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

#[test]
fn config_keys_lists_the_keys_of_every_config() {
    let tables: [(&[&str], &[Key]); 3] = [
        (&["--dataset", "ptb"], RNN_SEARCH_KEYS),
        (&["--eval"], EVAL_KEYS),
        (&["--dataset", "ptb", "--eval"], RNN_EVAL_KEYS),
    ];
    for (args, keys) in tables {
        let mut all = vec!["config", "keys"];
        all.extend(args);
        let listing = prime_ok(&all);
        let rows: Vec<Vec<&str>> = listing
            .lines()
            .skip(1)
            .map(|line| line.split_whitespace().collect())
            .collect();
        let names: Vec<&str> = rows.iter().map(|row| row[0]).collect();
        let listed: Vec<&str> = keys.iter().map(|key| key.name).collect();
        assert_eq!(names, listed, "{args:?}");
    }
    let eval = prime_ok(&["config", "keys", "--eval"]);
    let epochs = eval
        .lines()
        .find(|line| line.starts_with("epochs "))
        .unwrap();
    assert_eq!(
        epochs.split_whitespace().take(4).collect::<Vec<_>>(),
        ["epochs", "integer", "600", "1..=10000"]
    );
    assert!(
        eval.contains("[8 items]"),
        "a genotype's cells are counted: {eval}"
    );
    let recurrent = prime_ok(&["config", "keys", "--dataset", "ptb"]);
    let limit = recurrent
        .lines()
        .find(|line| line.starts_with("data.limit "))
        .unwrap();
    assert_eq!(
        limit.split_whitespace().take(4).collect::<Vec<_>>(),
        ["data.limit", "integer", "unset", "3..=100000000,"]
    );
}
