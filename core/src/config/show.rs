//! A config's TOML text with every key preceded by a one-line comment: what it means and the
//! values it may take (`prime config show`). Keys left unset (an optional limit) are named in
//! a comment where they would stand, so the listing is complete.

use super::keys::Key;
use std::fmt::Write;

/// `text` (a config written as TOML, one key per line) with the comment of its key from
/// `keys` above every `key = value` line, and a comment for each key of a table that `text`
/// leaves unset.
pub fn annotated_toml(text: &str, keys: &[Key]) -> String {
    let mut out = String::new();
    let mut table = String::new();
    let mut written: Vec<&str> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(name) = trimmed
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            write_unset(&mut out, &table, keys, &written);
            table = name.trim().to_string();
        } else if let Some((name, _)) = trimmed.split_once('=') {
            let dotted = dotted(&table, name.trim());
            if let Some(key) = keys.iter().find(|key| key.name == dotted) {
                written.push(key.name);
                let _ = writeln!(out, "# {}", comment(key));
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    write_unset(&mut out, &table, keys, &written);
    out
}

/// `doc (range)` of `key`.
fn comment(key: &Key) -> String {
    format!("{} [{}: {}]", key.doc, key.range.type_name(), key.range)
}

/// `table.name`, or `name` at the top level.
fn dotted(table: &str, name: &str) -> String {
    if table.is_empty() {
        name.to_string()
    } else {
        format!("{table}.{name}")
    }
}

/// A comment for each key of `table` not in `written`.
fn write_unset(out: &mut String, table: &str, keys: &[Key], written: &[&str]) {
    for key in keys {
        let in_table = match key.name.rsplit_once('.') {
            Some((prefix, _)) => prefix == table,
            None => table.is_empty(),
        };
        if in_table && !written.contains(&key.name) {
            let name = key.name.rsplit_once('.').map_or(key.name, |(_, name)| name);
            let _ = writeln!(out, "# {name} is unset. {}", comment(key));
        }
    }
}
