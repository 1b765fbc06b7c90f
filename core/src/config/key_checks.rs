//! The checks every key table passes, for any config: each key of the config is listed once
//! and nothing else is, the loader enforces exactly the listed ranges, and the annotated TOML
//! comments every key and reads back unchanged.

use super::keys::{Key, KeyRange, CUSTOM_METHOD};
use super::LayeredConfig;
use crate::methods::METHOD_NAMES;
use std::fmt::Debug;

/// The dotted names of every leaf of `value` (a config as JSON, where unset options are
/// `null` rather than left out, and lists are leaves).
fn leaves(prefix: &str, value: &serde_json::Value, into: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(fields) => {
            for (name, field) in fields {
                let dotted = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                leaves(&dotted, field, into);
            }
        }
        _ => into.push(prefix.to_string()),
    }
}

/// Asserts that `keys` lists every key of `config` once and nothing else. `config` must set
/// every option that its TOML form leaves out when unset.
pub(crate) fn assert_lists_every_key<C: serde::Serialize>(config: &C, keys: &[Key]) {
    let mut config_keys = Vec::new();
    leaves("", &serde_json::to_value(config).unwrap(), &mut config_keys);
    config_keys.sort();
    let mut listed: Vec<String> = keys.iter().map(|key| key.name.to_string()).collect();
    listed.sort();
    assert_eq!(config_keys, listed);
    listed.dedup();
    assert_eq!(listed.len(), keys.len(), "a key is listed twice");
}

/// Whether the defaults of `C` with `room` and `key=value` load; a refusal must name the key.
fn accepts<C: LayeredConfig>(key: &Key, value: &str, room: &[String]) -> bool {
    let mut overrides = room.to_vec();
    overrides.push(format!("{}={value}", key.name));
    match C::from_overrides(&overrides) {
        Ok(_) => true,
        Err(error) => {
            let message = error.to_string();
            assert!(message.contains(key.name), "{value}: {message}");
            false
        }
    }
}

/// Asserts that loading a `C` accepts each key's bounds and refuses the values just outside.
/// `room_for` gives the overrides that make room for a key's extremes (a multiplier at most
/// the steps).
pub(crate) fn assert_ranges_enforced<C: LayeredConfig + Debug>(
    keys: &[Key],
    room_for: fn(&Key) -> Vec<String>,
) {
    let defaults = toml::Table::try_from(C::default()).unwrap();
    for key in keys {
        let room = room_for(key);
        let accepts = |value: &str| accepts::<C>(key, value, &room);
        let name = key.name;
        match &key.range {
            KeyRange::Count(range) | KeyRange::OptionalCount(range) => {
                assert!(accepts(&range.start().to_string()), "{name}");
                assert!(accepts(&range.end().to_string()), "{name}");
                assert!(!accepts(&(range.end() + 1).to_string()), "{name}");
                if *range.start() > 0 {
                    assert!(!accepts(&(range.start() - 1).to_string()), "{name}");
                }
            }
            KeyRange::Real(range) => {
                let low = format!("{:?}", range.low);
                assert_eq!(accepts(&low), range.low_inclusive, "{name}");
                if range.high.is_finite() {
                    let high = format!("{:?}", range.high);
                    assert_eq!(accepts(&high), range.high_inclusive, "{name}");
                    let middle = format!("{:?}", (range.low + range.high) / 2.0);
                    assert!(accepts(&middle), "{name}");
                } else {
                    assert!(!accepts("inf"), "{name}");
                }
                assert!(!accepts("nan"), "{name}");
            }
            KeyRange::Choice(words) => {
                for word in *words {
                    assert!(accepts(&format!("\"{word}\"")), "{name}");
                }
                assert!(C::from_overrides(&[format!("{name}=\"bogus\"")]).is_err());
            }
            KeyRange::Flag => {
                assert!(accepts("true") && accepts("false"), "{name}");
            }
            KeyRange::Method => {
                for method in METHOD_NAMES.iter().chain([&CUSTOM_METHOD]) {
                    assert!(accepts(&format!("\"{method}\"")), "{name}");
                }
                assert!(!accepts("\"bogus\""), "{name}");
            }
            KeyRange::Seed => {
                assert!(accepts("0") && accepts(&i64::MAX.to_string()), "{name}");
            }
            KeyRange::Version(version) => {
                assert!(accepts(&version.to_string()), "{name}");
                assert!(!accepts(&(version + 1).to_string()), "{name}");
            }
            KeyRange::Text(range) => {
                let text = |length: u64| format!("\"{}\"", "x".repeat(length as usize));
                assert!(accepts(&text(*range.start())), "{name}");
                assert!(accepts(&text(*range.end())), "{name}");
                assert!(!accepts(&text(range.end() + 1)), "{name}");
                if *range.start() > 0 {
                    assert!(!accepts(&text(range.start() - 1)), "{name}");
                }
            }
            KeyRange::Genes(_) => {
                let default = default_of(&defaults, name).expect("a genotype has defaults");
                assert!(accepts(&default.to_string()), "{name}");
                let error = C::from_overrides(&[format!("{name}=[]")]).unwrap_err();
                assert!(error.to_string().contains("genotype"), "{name}: {error}");
            }
        }
    }
}

/// The value of dotted `name` in `table`, if set.
fn default_of<'a>(table: &'a toml::Table, name: &str) -> Option<&'a toml::Value> {
    let mut parts = name.split('.');
    let mut value = parts.next().and_then(|first| table.get(first));
    for part in parts {
        value = value.and_then(toml::Value::as_table)?.get(part);
    }
    value
}

/// Asserts that `text`, the annotated form of `config`, has a comment above every key line
/// and reads back as `config`.
pub(crate) fn assert_annotated_reads_back<C: LayeredConfig + PartialEq + Debug>(
    config: &C,
    text: &str,
) {
    assert_eq!(&C::from_toml(text, "annotated", &[]).unwrap(), config);
    let lines: Vec<&str> = text.lines().collect();
    for (index, line) in lines.iter().enumerate() {
        if line.contains(" = ") && !line.starts_with('#') {
            assert!(
                index > 0 && lines[index - 1].starts_with("# "),
                "no comment above {line}"
            );
        }
    }
}
