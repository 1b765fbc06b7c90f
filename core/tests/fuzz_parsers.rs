//! Property tests of the parsers users and remote callers feed: grid files, run configs and
//! their `--set` overrides, and genotype text. Random text and mutations of the shipped files
//! must give a value or an error, never a panic. Bounded to a few seconds.

use prime_core::config::{LayeredConfig, SearchConfig};
use prime_core::eval_config::EvalConfig;
use prime_core::genotype::{Genotype, RnnGenotype};
use prime_core::grid::GridSpec;
use prime_core::rnn_config::{RnnEvalConfig, RnnSearchConfig};
use proptest::prelude::*;

const GRIDS: [&str; 3] = [
    include_str!("../../configs/grids/table1-cifar10.toml"),
    include_str!("../../configs/grids/table2-ptb.toml"),
    include_str!("../../configs/grids/tableS1-cifar100.toml"),
];

const METHODS: [&str; 3] = [
    include_str!("../../configs/methods/darts-prime.toml"),
    include_str!("../../configs/methods/admm-fimt-crb.toml"),
    include_str!("../../configs/methods/pr.toml"),
];

/// Pieces a mutation splices in: numbers at and past the limits, TOML syntax, escapes.
const PIECES: [&str; 16] = [
    "0",
    "-1",
    "18446744073709551616",
    "1e308",
    "nan",
    "inf",
    "\"",
    "[",
    "]]",
    "=",
    "\n",
    "\u{1b}[2J",
    "ü",
    "{ a = 1 }",
    "[[methods]]\n",
    "#",
];

/// `text` with `edits` applied: each deletes a byte range or inserts a piece at a position
/// (positions snap to character boundaries).
fn mutate(text: &str, edits: &[(usize, usize, usize)]) -> String {
    let mut text = text.to_string();
    for &(at, len, piece) in edits {
        let mut at = at % (text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        if piece % 3 == 0 {
            let mut end = (at + len % 16).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.replace_range(at..end, "");
        } else {
            text.insert_str(at, PIECES[piece % PIECES.len()]);
        }
    }
    text
}

fn edits() -> impl Strategy<Value = Vec<(usize, usize, usize)>> {
    prop::collection::vec((any::<usize>(), any::<usize>(), any::<usize>()), 1..8)
}

fn parse_every_config(text: &str, overrides: &[String]) {
    let _ = SearchConfig::from_toml(text, "fuzz.toml", overrides);
    let _ = EvalConfig::from_toml(text, "fuzz.toml", overrides);
    let _ = RnnSearchConfig::from_toml(text, "fuzz.toml", overrides);
    let _ = RnnEvalConfig::from_toml(text, "fuzz.toml", overrides);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn grids_never_panic(text in "\\PC{0,400}", which in 0usize..3, edits in edits()) {
        let _ = GridSpec::parse("fuzz.toml", &text);
        let _ = GridSpec::parse("fuzz.toml", &mutate(GRIDS[which], &edits));
    }

    #[test]
    fn configs_and_overrides_never_panic(
        text in "\\PC{0,300}",
        which in 0usize..3,
        edits in edits(),
        key in "[a-z_.]{0,30}",
        value in "\\PC{0,20}",
    ) {
        let overrides = vec![format!("{key}={value}")];
        parse_every_config(&text, &[]);
        parse_every_config(&mutate(METHODS[which], &edits), &overrides);
    }

    #[test]
    fn genotypes_never_panic(text in "\\PC{0,300}", edits in edits()) {
        let _ = text.parse::<Genotype>();
        let _ = text.parse::<RnnGenotype>();
        let cnn = Genotype::builtin("DARTS_V2").unwrap().to_string();
        let _ = mutate(&cnn, &edits).parse::<Genotype>();
        let rnn = RnnGenotype::builtin("DARTS_V2").unwrap().to_string();
        let _ = mutate(&rnn, &edits).parse::<RnnGenotype>();
    }
}
