//! The split-custody credential (DESIGN.md §5): the app holds the blob, the vault holds the key
//! that opens it, and every use re-seals the blob under a new key (the old key is forgotten,
//! so the blob just used is useless).
//!
//! ```text
//! blob = generation (8 bytes, big-endian) ‖ XChaCha20-Poly1305(CEK_generation,
//!            aad = "vettid/v1/credential\0" ‖ member ‖ 0 ‖ generation, postcard(Credential))
//! vault meta: credential/key = CEK of the current generation, credential/generation
//! ```

use crate::objects::Objects;
use crate::vault::{SqlValue, Statement, Vault};
use serde::{Deserialize, Serialize};
use vettid_crypto::SecretBytes;
use vettid_crypto::aead::AeadKey;
use vettid_proto::credential::{
    CredentialOp, CredentialResult, CriticalMeta, MAX_LABEL, MAX_SECRETS, MAX_VALUE,
};
use vettid_proto::enclave::{SignedVersion, VaultError};
use vettid_proto::secrets::Secret;
use zeroize::Zeroizing;

/// One critical secret inside the credential.
#[derive(Serialize, Deserialize)]
struct Critical {
    meta: CriticalMeta,
    value: Secret,
}

/// The credential's plaintext.
#[derive(Serialize, Deserialize)]
struct Credential {
    format: u8,
    /// Argon2id of the member's password, computed by the app.
    verifier: Zeroizing<[u8; 32]>,
    created_ms: u64,
    secrets: Vec<Critical>,
}

fn aad(member: &str, generation: u64) -> Vec<u8> {
    [
        b"vettid/v1/credential\0".as_slice(),
        member.as_bytes(),
        &[0],
        &generation.to_be_bytes(),
    ]
    .concat()
}

fn seal_credential(
    member: &str,
    generation: u64,
    key: &SecretBytes<32>,
    credential: &Credential,
) -> Vec<u8> {
    let plain = Zeroizing::new(postcard::to_allocvec(credential).expect("a credential encodes"));
    let sealed = AeadKey::from(key.clone()).seal(&aad(member, generation), &plain);
    [&generation.to_be_bytes()[..], &sealed].concat()
}

/// Seals a new credential holding `verifier` under `key` (generation `generation`).
pub fn seal(
    member: &str,
    generation: u64,
    key: &SecretBytes<32>,
    verifier: &[u8; 32],
    created_ms: u64,
) -> Vec<u8> {
    let credential = Credential {
        format: 1,
        verifier: Zeroizing::new(*verifier),
        created_ms,
        secrets: Vec::new(),
    };
    seal_credential(member, generation, key, &credential)
}

/// Why a blob was refused.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// Not this vault's current generation, or it does not authenticate.
    Stale,
    /// It opened, but the verifier is wrong.
    WrongPassword,
}

fn open(
    member: &str,
    generation: u64,
    key: &SecretBytes<32>,
    blob: &[u8],
    verifier: &[u8; 32],
) -> Result<Credential, Refusal> {
    let (g, sealed) = blob.split_first_chunk::<8>().ok_or(Refusal::Stale)?;
    if u64::from_be_bytes(*g) != generation {
        return Err(Refusal::Stale);
    }
    let plain = AeadKey::from(key.clone())
        .open(&aad(member, generation), sealed)
        .map_err(|_| Refusal::Stale)?;
    let credential: Credential = postcard::from_bytes(&plain).map_err(|_| Refusal::Stale)?;
    if vettid_crypto::ct_eq(&credential.verifier[..], verifier) {
        Ok(credential)
    } else {
        Err(Refusal::WrongPassword)
    }
}

/// Whether `blob` is a credential of `member` at `generation` that `key` opens, holding
/// `verifier` (compared in constant time).
pub fn verify(
    member: &str,
    generation: u64,
    key: &SecretBytes<32>,
    blob: &[u8],
    verifier: &[u8; 32],
) -> bool {
    open(member, generation, key, blob, verifier).is_ok()
}

fn current(vault: &Vault) -> Result<(u64, SecretBytes<32>), VaultError> {
    let missing = || VaultError::BadRequest("this vault has no credential".into());
    let generation = vault.meta("credential/generation")?.ok_or_else(missing)?;
    let generation = u64::from_be_bytes(
        generation
            .as_slice()
            .try_into()
            .map_err(|_| VaultError::Tampered("credential generation".into()))?,
    );
    let key = vault.meta("credential/key")?.ok_or_else(missing)?;
    let key = SecretBytes::try_from_slice(&key)
        .ok_or_else(|| VaultError::Tampered("credential key".into()))?;
    Ok((generation, key))
}

/// A credential the vault opened with a right verifier, ready for one operation.
pub struct Opened {
    credential: Credential,
    generation: u64,
}

impl Opened {
    /// The generation it was sealed at.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// Why [`check`] did not open a blob.
pub enum Refused {
    /// The blob opened but the verifier was wrong.
    WrongPassword,
    /// Not the current blob (each is good for one use), or not one at all.
    Stale,
}

/// Opens `blob` with the vault's current key and checks `verifier` (no write).
pub fn check(
    vault: &Vault,
    member: &str,
    blob: &[u8],
    verifier: &[u8; 32],
) -> Result<Result<Opened, Refused>, VaultError> {
    let (generation, key) = current(vault)?;
    Ok(match open(member, generation, &key, blob, verifier) {
        Ok(credential) => Ok(Opened {
            credential,
            generation,
        }),
        Err(Refusal::WrongPassword) => Err(Refused::WrongPassword),
        Err(Refusal::Stale) => Err(Refused::Stale),
    })
}

/// Runs `op` on a checked credential and re-seals it under a new key (a durable vault write,
/// with its audit event) — the blob just used is dead. An operation that fails writes nothing
/// (the blob stays good).
pub fn apply(
    vault: &mut Vault,
    objects: &Objects<'_>,
    opened: Opened,
    op: CredentialOp,
    now_ms: u64,
) -> Result<(CredentialResult, Vec<u8>, SignedVersion), VaultError> {
    let member = objects.vault().to_owned();
    let Opened {
        mut credential,
        generation,
    } = opened;
    if current(vault)?.0 != generation {
        return Err(VaultError::Conflict);
    }
    let find = |c: &Credential, id: &[u8; 16]| c.secrets.iter().position(|s| &s.meta.id == id);
    let result = match op {
        CredentialOp::List => {
            CredentialResult::Listed(credential.secrets.iter().map(|s| s.meta.clone()).collect())
        }
        CredentialOp::Add { kind, label, value } => {
            if label.is_empty() || label.len() > MAX_LABEL || value.expose().len() > MAX_VALUE {
                return Err(VaultError::BadRequest(format!(
                    "labels are 1-{MAX_LABEL} bytes and values at most {MAX_VALUE}"
                )));
            }
            if credential.secrets.len() >= MAX_SECRETS {
                return Err(VaultError::BadRequest(format!(
                    "at most {MAX_SECRETS} critical secrets"
                )));
            }
            let meta = CriticalMeta {
                id: vettid_crypto::random_array(),
                kind,
                label,
                created_ms: now_ms,
            };
            credential.secrets.push(Critical {
                meta: meta.clone(),
                value,
            });
            CredentialResult::Added(meta)
        }
        CredentialOp::Get { id } => {
            let i = find(&credential, &id).ok_or(VaultError::NotFound)?;
            let s = &credential.secrets[i];
            CredentialResult::Value {
                meta: s.meta.clone(),
                value: s.value.clone(),
            }
        }
        CredentialOp::Delete { id } => {
            let i = find(&credential, &id).ok_or(VaultError::NotFound)?;
            credential.secrets.remove(i);
            CredentialResult::Deleted
        }
        CredentialOp::ChangePassword { new_verifier } => {
            credential.verifier = new_verifier;
            CredentialResult::PasswordChanged
        }
    };
    // Rotate: a new key and generation, durable before the answer; the old key is gone.
    let next = generation
        .checked_add(1)
        .ok_or_else(|| VaultError::Tampered("credential generation exhausted".into()))?;
    let new_key = SecretBytes::<32>::random();
    let set = "UPDATE meta SET value = ?1 WHERE key = ?2";
    let what = if matches!(result, CredentialResult::PasswordChanged) {
        "credential.password_changed"
    } else {
        "credential.used"
    };
    let event = crate::feed::event(
        now_ms,
        vettid_proto::feed::Audience::Audit,
        what,
        vettid_proto::feed::Retention::Standard,
        format!("credential generation {next}"),
    );
    let audit = crate::feed::append(vault, &[event])?;
    let version = vault.write(
        objects,
        vec![
            Statement {
                sql: set.into(),
                params: vec![
                    SqlValue::Blob(new_key.expose().to_vec()),
                    SqlValue::Text("credential/key".into()),
                ],
            },
            Statement {
                sql: set.into(),
                params: vec![
                    SqlValue::Blob(next.to_be_bytes().to_vec()),
                    SqlValue::Text("credential/generation".into()),
                ],
            },
        ]
        .into_iter()
        .chain(audit)
        .collect(),
    )?;
    let blob = seal_credential(&member, next, &new_key, &credential);
    Ok((result, blob, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_opens_only_for_its_member_generation_key_and_verifier() {
        let key = SecretBytes::random();
        let blob = seal("alice", 1, &key, &[7; 32], 5);
        assert!(verify("alice", 1, &key, &blob, &[7; 32]));
        assert_eq!(
            open("alice", 1, &key, &blob, &[8; 32]).err(),
            Some(Refusal::WrongPassword)
        );
        assert!(!verify("bob", 1, &key, &blob, &[7; 32]));
        assert!(!verify("alice", 2, &key, &blob, &[7; 32]));
        assert!(!verify("alice", 1, &SecretBytes::random(), &blob, &[7; 32]));
        assert!(!verify("alice", 1, &key, &blob[..20], &[7; 32]));
        let mut flipped = blob.clone();
        flipped[30] ^= 1;
        assert!(!verify("alice", 1, &key, &flipped, &[7; 32]));
    }
}
