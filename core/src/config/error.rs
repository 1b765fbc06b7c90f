//! Configuration errors: where a value came from (file and line, or `--set`) and what was
//! wrong with it.

/// A configuration error: where it came from and what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{origin}: cannot read: {source}")]
    Read {
        /// File name.
        origin: String,
        /// Cause.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a value of the wrong type (the message has line and
    /// column).
    #[error("{origin}: {}{message}", field_prefix(.field))]
    Parse {
        /// File name or other origin.
        origin: String,
        /// Dotted path of the field the error points at; empty when unknown.
        field: String,
        /// Parser message with line and column.
        message: String,
    },
    /// A value outside its range.
    #[error("{origin}{}: field `{field}`: {message}", line_suffix(.line))]
    Invalid {
        /// File name or other origin.
        origin: String,
        /// 1-based line of the field in the file, when it is set there.
        line: Option<usize>,
        /// Dotted field path.
        field: String,
        /// What was expected.
        message: String,
    },
    /// A value the config holds has no TOML form (a seed above 2^63 - 1 set in code), so
    /// the config cannot be written next to a run.
    #[error("the config cannot be written as TOML: {message}")]
    Unwritable {
        /// The serialiser's message.
        message: String,
    },
    /// A malformed `--set key=value` override.
    #[error("override `{text}`: {message}")]
    Override {
        /// The override as given.
        text: String,
        /// What was expected.
        message: String,
    },
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("field `{field}`: ")
    }
}

fn line_suffix(line: &Option<usize>) -> String {
    line.map_or(String::new(), |line| format!(":{line}"))
}

impl ConfigError {
    /// An `Invalid` error without a line.
    pub fn invalid(origin: &str, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: origin.to_string(),
            line: None,
            field: field.to_string(),
            message: message.into(),
        }
    }
}
