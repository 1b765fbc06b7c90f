//! The coordinator's token file: lines `ROLE SHA256HEX`, blank lines and `#` comments. Only
//! hashes live on the head node. The file is re-read on SIGHUP; a file that no longer parses
//! leaves the tokens in force unchanged.

use prime_proto::auth::{token_sha256, Role};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Most tokens one file may list.
const MAX_TOKENS: usize = 10_000;

/// Largest token file read.
const MAX_FILE_BYTES: u64 = 4 << 20;

/// A token file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    /// The file cannot be read.
    #[error("cannot read the token file {path}: {message}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A line is malformed.
    #[error("{path}:{line}: {message}")]
    Line {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong and what was expected.
        message: String,
    },
}

/// The roles of the known token hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenTable {
    roles: HashMap<String, Role>,
}

impl TokenTable {
    /// Parses the text of a token file named `path` (for error messages).
    pub fn parse(text: &str, path: &str) -> Result<TokenTable, TokensError> {
        let mut roles = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |message: String| TokensError::Line {
                path: path.to_string(),
                line: index + 1,
                message,
            };
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [role, hash] = fields[..] else {
                return Err(error(format!(
                    "expected `ROLE SHA256HEX` (two fields), found {} fields",
                    fields.len()
                )));
            };
            let role: Role = role.parse().map_err(error)?;
            if hash.len() != 64 || !hash.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                return Err(error(format!(
                    "the second field must be the token's sha256 as 64 hex digits (from \
                     `prime token new`), found {} characters",
                    hash.len()
                )));
            }
            let hash = hash.to_ascii_lowercase();
            if let Some(previous) = roles.insert(hash, role) {
                if previous != role {
                    return Err(error(format!(
                        "this hash is listed before with role {previous}; a token has one role"
                    )));
                }
            }
            if roles.len() > MAX_TOKENS {
                return Err(error(format!("more than {MAX_TOKENS} tokens")));
            }
        }
        Ok(TokenTable { roles })
    }

    /// Reads and parses the token file at `path`.
    pub fn read(path: &Path) -> Result<TokenTable, TokensError> {
        let unreadable = |message: String| TokensError::Unreadable {
            path: path.display().to_string(),
            message,
        };
        let size = std::fs::metadata(path)
            .map_err(|error| unreadable(error.to_string()))?
            .len();
        if size > MAX_FILE_BYTES {
            return Err(unreadable(format!(
                "it holds {size} bytes, more than the limit of {MAX_FILE_BYTES}"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|error| unreadable(error.to_string()))?;
        TokenTable::parse(&text, &path.display().to_string())
    }

    /// The role of `token` and its hash, if the token is known.
    pub fn recognise(&self, token: &str) -> Option<(Role, String)> {
        let hash = token_sha256(token);
        self.roles.get(&hash).map(|role| (*role, hash))
    }

    /// How many tokens of each role the table holds.
    pub fn counts(&self) -> Vec<(Role, usize)> {
        Role::ALL
            .into_iter()
            .map(|role| (role, self.roles.values().filter(|r| **r == role).count()))
            .collect()
    }
}

/// The token file in force, re-readable while the coordinator runs.
#[derive(Debug)]
pub struct TokenSource {
    path: PathBuf,
    table: RwLock<Arc<TokenTable>>,
}

impl TokenSource {
    /// Reads the token file at `path`.
    pub fn open(path: &Path) -> Result<TokenSource, TokensError> {
        let table = TokenTable::read(path)?;
        Ok(TokenSource {
            path: path.to_path_buf(),
            table: RwLock::new(Arc::new(table)),
        })
    }

    /// The file it reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tokens in force.
    pub fn table(&self) -> Arc<TokenTable> {
        self.table
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reads the file again; on an error the tokens in force stay.
    pub fn reload(&self) -> Result<Arc<TokenTable>, TokensError> {
        let table = Arc::new(TokenTable::read(&self.path)?);
        *self
            .table
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = table.clone();
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH_A: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn lines_with_comments_and_blanks_parse() {
        let text = format!(
            "# tokens\n\nadmin {HASH_A}\n  viewer   {}  \n",
            "0".repeat(64)
        );
        let table = TokenTable::parse(&text, "tokens").unwrap();
        assert_eq!(table.recognise("abc"), Some((Role::Admin, HASH_A.into())));
        assert_eq!(table.recognise("abd"), None);
        assert_eq!(
            table.counts(),
            vec![(Role::Admin, 1), (Role::Worker, 0), (Role::Viewer, 1)]
        );
    }

    #[test]
    fn upper_case_hashes_are_accepted() {
        let table = TokenTable::parse(&format!("worker {}", HASH_A.to_uppercase()), "t").unwrap();
        assert_eq!(table.recognise("abc").unwrap().0, Role::Worker);
    }

    #[test]
    fn malformed_lines_name_file_line_and_expectation() {
        let cases = [
            (format!("admin {HASH_A} extra"), "2:", "two fields"),
            ("root abc".to_string(), "2:", "admin, worker or viewer"),
            ("admin abc".to_string(), "2:", "64 hex digits"),
            (format!("admin {HASH_A}\nviewer {HASH_A}"), "3:", "one role"),
        ];
        for (body, line, expected) in cases {
            let text = format!("# header\n{body}\n");
            let error = TokenTable::parse(&text, "/etc/prime/tokens")
                .unwrap_err()
                .to_string();
            assert!(
                error.starts_with(&format!("/etc/prime/tokens:{line}")),
                "{error}"
            );
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn a_failed_reload_keeps_the_tokens_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, format!("admin {HASH_A}\n")).unwrap();
        let source = TokenSource::open(&path).unwrap();
        std::fs::write(&path, "admin nothex\n").unwrap();
        assert!(source.reload().is_err());
        assert!(source.table().recognise("abc").is_some());
        std::fs::write(&path, format!("viewer {HASH_A}\n")).unwrap();
        source.reload().unwrap();
        assert_eq!(source.table().recognise("abc").unwrap().0, Role::Viewer);
        let missing = TokenSource::open(&dir.path().join("none")).unwrap_err();
        assert!(missing.to_string().contains("cannot read the token file"));
    }
}
