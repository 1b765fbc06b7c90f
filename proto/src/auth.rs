//! Bearer tokens with roles: what a caller presents on every call, and how the coordinator
//! recognises it. Only a token's sha256 is stored on the head node; the token itself lives in
//! the caller's token file or `PRIME_TOKEN`.

use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// Metadata header that carries the caller's token (`Bearer <token>`).
pub const AUTH_HEADER: &str = "authorization";

/// Environment variable holding a token (instead of `--token-file`).
pub const TOKEN_ENV: &str = "PRIME_TOKEN";

/// Random bytes in a new token (256 bits).
const TOKEN_BYTES: usize = 32;

/// Prefix of every token, so a leaked one is recognisable in logs and secret scanners.
const TOKEN_PREFIX: &str = "prime_";

/// Longest token accepted from a file or the environment.
pub const MAX_TOKEN_LEN: usize = 512;

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Everything: submit, cancel, drain, and every read. It acts as a worker only on the
    /// worker sessions it registered itself.
    Admin,
    /// Register, heartbeat, take trials, report, and move checkpoints of its own trials.
    Worker,
    /// Read-only: status, watch, results, logs, fetch.
    Viewer,
}

impl Role {
    /// Every role, in the order the documentation lists them.
    pub const ALL: [Role; 3] = [Role::Admin, Role::Worker, Role::Viewer];

    /// The role's name as written in token files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Worker => "worker",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|role| role.name() == text)
            .ok_or_else(|| format!("unknown role `{text}`: expected admin, worker or viewer"))
    }
}

/// Hex sha256 of a token: what the coordinator's token file stores.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token (256 bits from the operating system's generator).
pub fn new_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// A token that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token file cannot be read.
    #[error("cannot read the token file {path}: {message}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The token is empty, too long or holds characters a header cannot carry.
    #[error("the token from {source_name} is not usable: {message}")]
    Malformed {
        /// Where it came from (a file path or the environment variable).
        source_name: String,
        /// What is wrong (never the token itself).
        message: String,
    },
}

/// Checks a token read from `source_name`: trimmed, non-empty, at most `MAX_TOKEN_LEN`
/// visible ASCII characters. The error never repeats the token.
pub fn check_token(token: &str, source_name: &str) -> Result<String, TokenError> {
    let token = token.trim();
    let malformed = |message: &str| TokenError::Malformed {
        source_name: source_name.to_string(),
        message: message.to_string(),
    };
    if token.is_empty() {
        return Err(malformed("it is empty"));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(malformed(&format!(
            "it is longer than {MAX_TOKEN_LEN} characters"
        )));
    }
    if !token.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(malformed(
            "it holds spaces or characters other than visible ASCII",
        ));
    }
    Ok(token.to_string())
}

/// The token of a caller: the file's content when `file` is given, else `PRIME_TOKEN`,
/// else none.
pub fn load_token(file: Option<&Path>) -> Result<Option<String>, TokenError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|error| TokenError::Unreadable {
            path: path.display().to_string(),
            message: error.to_string(),
        })?;
        return check_token(&text, &path.display().to_string()).map(Some);
    }
    match std::env::var(TOKEN_ENV) {
        Ok(text) => check_token(&text, TOKEN_ENV).map(Some),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_tokens_are_long_random_and_hash_to_hex() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 2 * TOKEN_BYTES);
        assert!(check_token(&a, "test").is_ok());
        let hash = token_sha256(&a);
        assert_eq!(hash.len(), 64);
        assert!(hash.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_eq!(
            token_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn roles_parse_by_name_only() {
        for role in Role::ALL {
            assert_eq!(role.name().parse::<Role>(), Ok(role));
        }
        let error = "root".parse::<Role>().unwrap_err();
        assert!(error.contains("admin, worker or viewer"), "{error}");
    }

    #[test]
    fn a_bad_token_is_refused_without_repeating_it() {
        let secret = "prime_s3cret with space";
        let error = check_token(secret, "tokens.txt").unwrap_err().to_string();
        assert!(error.contains("tokens.txt"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
        assert!(check_token("  \n", "x").is_err());
        assert!(check_token(&"a".repeat(MAX_TOKEN_LEN + 1), "x").is_err());
        assert_eq!(check_token(" abc\n", "x").unwrap(), "abc");
    }

    #[test]
    fn a_token_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "prime_abc\n").unwrap();
        assert_eq!(
            load_token(Some(&path)).unwrap().as_deref(),
            Some("prime_abc")
        );
        let missing = load_token(Some(&dir.path().join("none"))).unwrap_err();
        assert!(missing.to_string().contains("cannot read the token file"));
    }
}
