//! `prime token new`: a random token for a role, printed as one JSON object. The token goes
//! to the caller (a file for `--token-file`, or `PRIME_TOKEN`); the `ROLE SHA256HEX` line goes
//! into the coordinator's `--tokens` file.

use clap::Subcommand;
use prime_proto::auth::{new_token, token_sha256, Role};

/// Token commands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a new random token (256 bits) of a role with its sha256:
    /// {"role": ..., "token": ..., "sha256": ...}.
    New {
        /// admin (everything), worker (run trials) or viewer (read-only).
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse()
}

/// The JSON object of a new token.
fn new_token_json(role: Role) -> serde_json::Value {
    let token = new_token();
    serde_json::json!({
        "role": role.name(),
        "sha256": token_sha256(&token),
        "token": token,
    })
}

/// Runs a token command.
pub fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::New { role } => println!("{}", new_token_json(role)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_holds_role_token_and_its_hash() {
        let value = new_token_json(Role::Viewer);
        assert_eq!(value["role"], "viewer");
        let token = value["token"].as_str().unwrap();
        assert_eq!(value["sha256"].as_str().unwrap(), token_sha256(token));
        assert_eq!(value.as_object().unwrap().len(), 3);
    }
}
