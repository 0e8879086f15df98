//! NATS subjects. Each names at most a member (or service) and a coarse channel: the
//! operation itself always travels inside the end-to-end encryption.
//!
//! - `OwnerSpace.<member>.forVault.<channel>`: app → vault requests;
//! - `OwnerSpace.<member>.forApp.<event>`: vault → app events (kept in JetStream);
//! - `MessageSpace.<member>.forOwner.<kind>.<connection>`: peer vault, device or service → vault;
//! - `ServiceSpace.<service>.…`: vault → service.

use core::fmt;

/// A NATS subject token that names a member, service, channel or connection: 1 to 64 characters
/// of `A-Z a-z 0-9 - _`, so it can never smuggle in `.`, `*`, `>` or whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Token(String);

/// A string is not a valid subject token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid subject token (1-64 of A-Z a-z 0-9 - _)")]
pub struct InvalidToken;

impl Token {
    /// Checks and wraps `s`.
    pub fn new(s: &str) -> Result<Self, InvalidToken> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidToken)
        }
    }

    /// The token text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `OwnerSpace.<member>.forVault.<channel>`: where the app sends requests to its vault.
pub fn owner_for_vault(member: &Token, channel: &Token) -> String {
    format!("OwnerSpace.{member}.forVault.{channel}")
}

/// `OwnerSpace.<member>.forApp.<event>`: where the vault publishes events for its app.
pub fn owner_for_app(member: &Token, event: &Token) -> String {
    format!("OwnerSpace.{member}.forApp.{event}")
}

/// `MessageSpace.<member>.forOwner.<kind>.<connection>`: where peers reach a vault.
pub fn message_for_owner(member: &Token, kind: &Token, connection: &Token) -> String {
    format!("MessageSpace.{member}.forOwner.{kind}.{connection}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_refuse_wildcards_and_separators() {
        for bad in ["", "a.b", "*", ">", "a b", "ä", &"x".repeat(65)] {
            assert_eq!(Token::new(bad), Err(InvalidToken), "{bad:?}");
        }
        assert!(Token::new("m-01_AB").is_ok());
    }

    #[test]
    fn subjects_keep_the_original_vocabulary() {
        let m = Token::new("alice").unwrap();
        let c = Token::new("session").unwrap();
        assert_eq!(owner_for_vault(&m, &c), "OwnerSpace.alice.forVault.session");
        assert_eq!(owner_for_app(&m, &c), "OwnerSpace.alice.forApp.session");
        let k = Token::new("msg").unwrap();
        assert_eq!(
            message_for_owner(&m, &k, &c),
            "MessageSpace.alice.forOwner.msg.session"
        );
    }
}
