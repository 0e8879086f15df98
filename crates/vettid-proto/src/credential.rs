//! The split-custody credential (DESIGN.md §5): the app holds the blob, the vault holds the
//! key that opens it and changes that key after every use, so a blob is good for one use:
//! each answer carries the next blob, and the one just used is dead. Using it takes the blob,
//! a vault unlocked in this session, and the password verifier; wrong verifiers are counted
//! with the PIN's durable limit.

use crate::secrets::Secret;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Most critical secrets in one credential.
pub const MAX_SECRETS: usize = 64;
/// Longest critical secret value (bytes).
pub const MAX_VALUE: usize = 4 * 1024;
/// Longest label (bytes).
pub const MAX_LABEL: usize = 128;

/// Why a credential operation was refused (nothing changed, nothing counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CredentialError {
    /// The vault holds no credential (it was not enrolled by an app).
    #[error("this vault has no credential")]
    Missing,
    /// A critical secret's label is 1–[`MAX_LABEL`] bytes and its value at most [`MAX_VALUE`].
    #[error("labels are 1-{MAX_LABEL} bytes and values at most {MAX_VALUE}")]
    SecretSize,
    /// The credential already holds [`MAX_SECRETS`].
    #[error("at most {MAX_SECRETS} critical secrets")]
    Full,
}

/// What a critical secret is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CriticalKind {
    /// A wallet seed phrase.
    SeedPhrase,
    /// A private key.
    PrivateKey,
    /// A signing key.
    SigningKey,
    /// A master password.
    MasterPassword,
    /// A recovery key.
    RecoveryKey,
    /// Anything else.
    Other,
}

impl CriticalKind {
    /// Every kind.
    pub const ALL: [CriticalKind; 6] = [
        CriticalKind::SeedPhrase,
        CriticalKind::PrivateKey,
        CriticalKind::SigningKey,
        CriticalKind::MasterPassword,
        CriticalKind::RecoveryKey,
        CriticalKind::Other,
    ];

    /// The kind named `name` (as [`CriticalKind::name`] spells it; every kind is in
    /// [`CriticalKind::ALL`], which the match below keeps honest).
    pub fn parse(name: &str) -> Option<CriticalKind> {
        CriticalKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Its name in listings.
    pub fn name(self) -> &'static str {
        // A kind added to the enum fails to compile here until it is named, and
        // `every_kind_is_listed_once` fails until it is in `ALL`.
        match self {
            CriticalKind::SeedPhrase => "seed-phrase",
            CriticalKind::PrivateKey => "private-key",
            CriticalKind::SigningKey => "signing-key",
            CriticalKind::MasterPassword => "master-password",
            CriticalKind::RecoveryKey => "recovery-key",
            CriticalKind::Other => "other",
        }
    }
}

/// A critical secret as listed: no value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriticalMeta {
    /// Id (random, chosen by the vault).
    pub id: [u8; 16],
    /// Kind.
    pub kind: CriticalKind,
    /// Label.
    pub label: String,
    /// When it was added (the host's clock, ms).
    pub created_ms: u64,
}

/// What to do with the credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CredentialOp {
    /// List the critical secrets (metadata only).
    List,
    /// Add a critical secret.
    Add {
        /// Kind.
        kind: CriticalKind,
        /// Label (1–128 bytes).
        label: String,
        /// The value (≤ 4 KiB).
        value: Secret,
    },
    /// Read one critical secret's value.
    Get {
        /// Its id.
        id: [u8; 16],
    },
    /// Remove a critical secret.
    Delete {
        /// Its id.
        id: [u8; 16],
    },
    /// Replace the password verifier (the app derives the new one from the new password).
    ChangePassword {
        /// Argon2id of the new password.
        new_verifier: Zeroizing<[u8; 32]>,
    },
}

/// What the operation gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CredentialResult {
    /// The critical secrets.
    Listed(Vec<CriticalMeta>),
    /// Added.
    Added(CriticalMeta),
    /// One value.
    Value {
        /// Its metadata.
        meta: CriticalMeta,
        /// The value.
        value: Secret,
    },
    /// Removed.
    Deleted,
    /// The verifier was replaced.
    PasswordChanged,
}

/// The answer to a credential operation: the result, the next blob (the one sent is now
/// useless), and the vault version of the key change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialReply {
    /// What the operation gave.
    pub result: CredentialResult,
    /// The credential re-sealed under the vault's new key: keep this one.
    #[serde(with = "serde_bytes")]
    pub blob: Vec<u8>,
    /// The signed vault version of the rotation.
    pub version: crate::enclave::SignedVersion,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once_and_parses_back() {
        for k in CriticalKind::ALL {
            assert_eq!(CriticalKind::parse(k.name()), Some(k));
            let exhaustive = match k {
                CriticalKind::SeedPhrase
                | CriticalKind::PrivateKey
                | CriticalKind::SigningKey
                | CriticalKind::MasterPassword
                | CriticalKind::RecoveryKey
                | CriticalKind::Other => k,
            };
            assert_eq!(
                CriticalKind::ALL
                    .iter()
                    .filter(|x| **x == exhaustive)
                    .count(),
                1
            );
        }
        assert_eq!(CriticalKind::ALL.len(), 6);
        assert_eq!(CriticalKind::parse("seed"), None);
    }
}
