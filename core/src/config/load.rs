//! The one way every config is read: its defaults, then the TOML file, then `--set key=value`
//! overrides, then its range checks. Errors name the file, the line and the field.
//!
//! The file alone is first read as the config, so that a syntax error, an unknown key or a
//! value of the wrong type is reported at its line and field. The values then come from the
//! layers: a table the file leaves out, or leaves partly out, takes the config's own defaults
//! (the recurrent search's schedule keeps its EWMA of 1.0, say), not the section type's.

use super::error::ConfigError;
use crate::toml_spans::{line_column, SpanTree};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;

/// The only config format version this build reads.
pub const CONFIG_VERSION: u32 = 1;

/// A configuration read in layers; see the module documentation.
pub trait LayeredConfig: Default + Serialize + DeserializeOwned {
    /// What errors call the bare defaults (`recurrent search defaults`).
    const DEFAULTS_ORIGIN: &'static str;

    /// The top-level key of the format version. The defaults never supply it: a file says
    /// which format it is written in.
    const VERSION_KEY: &'static str = "version";

    /// Checks every range (documented on each field); the error names `origin` and the field.
    fn validate(&self, origin: &str) -> Result<(), ConfigError>;

    /// Reads and validates a config file, applying `overrides` (`key=value`, dotted keys).
    fn load(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            origin: origin.clone(),
            source,
        })?;
        Self::from_toml(&text, &origin, overrides)
    }

    /// The defaults with `overrides` applied, validated.
    fn from_overrides(overrides: &[String]) -> Result<Self, ConfigError> {
        let text = format!("{} = {}\n", Self::VERSION_KEY, CONFIG_VERSION);
        Self::from_toml(&text, Self::DEFAULTS_ORIGIN, overrides)
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    fn from_toml(text: &str, origin: &str, overrides: &[String]) -> Result<Self, ConfigError> {
        let config: Self = read_layers(text, origin, overrides)?;
        config
            .validate(&overridden_origin(origin, overrides))
            .map_err(|error| locate(error, text, overrides))?;
        Ok(config)
    }
}

/// `config` as TOML text: `pretty` puts each array item on its own line.
///
/// A value that has no TOML form (a seed above 2^63 - 1 set in code) is an error, never an
/// empty file.
pub(crate) fn to_toml_text<T: Serialize>(config: &T, pretty: bool) -> Result<String, ConfigError> {
    let text = if pretty {
        toml::to_string_pretty(config)
    } else {
        toml::to_string(config)
    };
    text.map_err(|error| ConfigError::Unwritable {
        message: error.to_string(),
    })
}

/// The config of `text` over the defaults, with `overrides` applied last.
fn read_layers<T: LayeredConfig>(
    text: &str,
    origin: &str,
    overrides: &[String],
) -> Result<T, ConfigError> {
    toml::from_str::<T>(text).map_err(|error| {
        let field = error
            .span()
            .and_then(|span| SpanTree::parse(text)?.field_at(&span))
            .unwrap_or_default();
        ConfigError::Parse {
            origin: origin.to_string(),
            field,
            message: error.to_string(),
        }
    })?;
    let parse_error = |origin: &str, message: String| ConfigError::Parse {
        origin: origin.to_string(),
        field: String::new(),
        message,
    };
    let mut file: toml::Table = text
        .parse()
        .map_err(|error: toml::de::Error| parse_error(origin, error.to_string()))?;
    for text in overrides {
        apply_override(&mut file, text)?;
    }
    let origin = overridden_origin(origin, overrides);
    let mut layers = toml::Table::try_from(T::default())
        .map_err(|error| parse_error(T::DEFAULTS_ORIGIN, error.to_string()))?;
    layers.remove(T::VERSION_KEY);
    merge(&mut layers, file);
    toml::Value::Table(layers)
        .try_into()
        .map_err(|error: toml::de::Error| parse_error(&origin, error.to_string()))
}

/// Lays `upper` over `lower`: tables merge key by key, anything else replaces.
fn merge(lower: &mut toml::Table, upper: toml::Table) {
    for (key, value) in upper {
        match (lower.get_mut(&key), value) {
            (Some(toml::Value::Table(lower)), toml::Value::Table(upper)) => merge(lower, upper),
            (_, value) => {
                lower.insert(key, value);
            }
        }
    }
}

/// `origin`, marked as changed by `--set` when there are overrides.
pub(crate) fn overridden_origin(origin: &str, overrides: &[String]) -> String {
    if overrides.is_empty() {
        origin.to_string()
    } else {
        format!("{origin} (with --set overrides)")
    }
}

/// `error` with the line of its field in `text`, unless an override set that field.
fn locate(error: ConfigError, text: &str, overrides: &[String]) -> ConfigError {
    let ConfigError::Invalid {
        origin,
        line: None,
        field,
        message,
    } = error
    else {
        return error;
    };
    let overridden = overrides.iter().any(|text| {
        text.split_once('=')
            .is_some_and(|(key, _)| key.trim() == field)
    });
    let line = SpanTree::parse(text)
        .filter(|_| !overridden)
        .and_then(|spans| spans.span_of(&field))
        .map(|span| line_column(text, span.start).0);
    ConfigError::Invalid {
        origin,
        line,
        field,
        message,
    }
}

/// Sets `key=value` in `table`; the value is read as TOML (number, bool, string...) and as a
/// bare string otherwise.
pub fn apply_override(table: &mut toml::Table, text: &str) -> Result<(), ConfigError> {
    let fail = |message: &str| ConfigError::Override {
        text: text.to_string(),
        message: message.to_string(),
    };
    let (key, raw) = text
        .split_once('=')
        .ok_or_else(|| fail("expected key=value"))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(fail("expected a dotted key such as data.batch_size"));
    }
    let raw = raw.trim();
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut parsed| parsed.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or(key);
    let mut current = table;
    for part in parts {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| fail(&format!("`{part}` is not a table")))?;
    }
    current.insert(last.to_string(), value);
    Ok(())
}
