//! The split-custody credential (DESIGN.md §5): the app holds the blob, the vault holds the key
//! that opens it, and every use re-seals the blob under a new key, so the blob just used is
//! useless — except to retry *that same request* whose answer was lost.
//!
//! ```text
//! blob = generation (8 bytes, big-endian) ‖ XChaCha20-Poly1305(CEK_generation,
//!            aad = "vettid/v1/credential\0" ‖ member ‖ 0 ‖ generation, postcard(Credential))
//! vault meta: credential/key = CEK of the current generation, credential/generation,
//!             credential/previous = the last rotation (generation, CEK, request id, what it did)
//! CEK_{g+1} = HKDF(CEK_g, "credential/next", request id)
//! ```
//!
//! **Lost replies.** Each use names a request id chosen by the app. A retry — the previous
//! blob, the same request id, the same operation — is answered again with the same result and
//! a blob of the current generation, and changes nothing: everything the first answer held
//! (the next key, a new secret's id and time) is derived from the previous key and the request
//! id, so it is the same answer. The vault never stores a blob or a secret value: custody
//! stays split.
//!
//! **Stale blobs** (not the current generation, not a retry, or not opening) are refused as
//! [`VaultError::StaleCredential`] *before* any password is looked at, so they cost no attempt:
//! nothing about the password can be learnt from them.

use crate::objects::Objects;
use crate::vault::{SqlValue, Statement, Vault};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vettid_crypto::aead::AeadKey;
use vettid_crypto::{Label, SecretBytes};
use vettid_proto::credential::{
    CredentialError, CredentialOp, CredentialReply, CredentialResult, CriticalMeta, MAX_LABEL,
    MAX_SECRETS, MAX_VALUE,
};
use vettid_proto::enclave::VaultError;
use vettid_proto::secrets::Secret;
use zeroize::Zeroizing;

const NEXT_KEY: Label = Label::new("credential/next");
const SECRET_ID: Label = Label::new("credential/secret-id");

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

/// The last rotation, kept so that its request can be answered again.
#[derive(Serialize, Deserialize)]
struct Previous {
    generation: u64,
    key: Zeroizing<[u8; 32]>,
    request: [u8; 16],
    op: [u8; 32],
    at_ms: u64,
}

/// One use of the credential, as the app sent it.
pub struct Use<'a> {
    /// The blob the app holds.
    pub blob: &'a [u8],
    /// Argon2id of the password.
    pub verifier: &'a [u8; 32],
    /// What to do.
    pub op: &'a CredentialOp,
    /// The app's id of this request (the same in every retry of it).
    pub request: &'a [u8; 16],
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

fn open_credential(
    member: &str,
    generation: u64,
    key: &SecretBytes<32>,
    blob: &[u8],
) -> Option<Credential> {
    let (g, sealed) = blob.split_first_chunk::<8>()?;
    if u64::from_be_bytes(*g) != generation {
        return None;
    }
    let plain = AeadKey::from(key.clone())
        .open(&aad(member, generation), sealed)
        .ok()?;
    postcard::from_bytes(&plain).ok()
}

/// What an operation is, for recognising its retry: the kind and target, never a value.
fn op_digest(op: &CredentialOp) -> [u8; 32] {
    let mut h = Sha256::new().chain_update(b"vettid/v1/credential-op\0");
    match op {
        CredentialOp::List => h.update([0]),
        CredentialOp::Add { kind, label, .. } => {
            h.update([1]);
            h.update(kind.name().as_bytes());
            h.update([0]);
            h.update(label.as_bytes());
        }
        CredentialOp::Get { id } => {
            h.update([2]);
            h.update(id);
        }
        CredentialOp::Delete { id } => {
            h.update([3]);
            h.update(id);
        }
        CredentialOp::ChangePassword { new_verifier } => {
            h.update([4]);
            h.update(&new_verifier[..]);
        }
    }
    h.finalize().into()
}

const META: &str = "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                    ON CONFLICT(key) DO UPDATE SET value = excluded.value";

fn set(key: &str, value: Vec<u8>) -> Statement {
    Statement {
        sql: META.into(),
        params: vec![SqlValue::Text(key.into()), SqlValue::Blob(value)],
    }
}

/// A new credential holding `verifier` (generation 1): the blob for the app and the
/// statements that store its key in the vault.
pub fn enroll(member: &str, verifier: &[u8; 32], created_ms: u64) -> (Vec<u8>, Vec<Statement>) {
    let key = SecretBytes::<32>::random();
    let credential = Credential {
        format: 1,
        verifier: Zeroizing::new(*verifier),
        created_ms,
        secrets: Vec::new(),
    };
    let blob = seal_credential(member, 1, &key, &credential);
    let statements = vec![
        set("credential/key", key.expose().to_vec()),
        set("credential/generation", 1u64.to_be_bytes().to_vec()),
    ];
    (blob, statements)
}

/// A new credential holding `verifier` to replace the one a lost device held (staged
/// recovery): a new random key at the next generation, so the lost blob — and any retry of
/// its last use — no longer opens. Returns the blob, the statements and the generation.
pub fn reissue(
    vault: &Vault,
    member: &str,
    verifier: &[u8; 32],
    created_ms: u64,
) -> Result<(Vec<u8>, Vec<Statement>, u64), VaultError> {
    let generation = match current(vault) {
        Ok(c) => c.generation,
        Err(VaultError::Credential(CredentialError::Missing)) => 0,
        Err(e) => return Err(e),
    };
    let next = generation
        .checked_add(1)
        .ok_or_else(|| VaultError::Tampered("credential generation exhausted".into()))?;
    let key = SecretBytes::<32>::random();
    let credential = Credential {
        format: 1,
        verifier: Zeroizing::new(*verifier),
        created_ms,
        secrets: Vec::new(),
    };
    let blob = seal_credential(member, next, &key, &credential);
    let statements = vec![
        set("credential/key", key.expose().to_vec()),
        set("credential/generation", next.to_be_bytes().to_vec()),
        Statement {
            sql: "DELETE FROM meta WHERE key = 'credential/previous'".into(),
            params: vec![],
        },
    ];
    Ok((blob, statements, next))
}

struct Current {
    generation: u64,
    key: SecretBytes<32>,
    previous: Option<Previous>,
}

fn current(vault: &Vault) -> Result<Current, VaultError> {
    let missing = || VaultError::from(CredentialError::Missing);
    let tampered = |what: &str| VaultError::Tampered(format!("credential {what}"));
    let generation = vault.meta("credential/generation")?.ok_or_else(missing)?;
    let generation = u64::from_be_bytes(
        generation
            .as_slice()
            .try_into()
            .map_err(|_| tampered("generation"))?,
    );
    let key = vault.meta("credential/key")?.ok_or_else(missing)?;
    let key = SecretBytes::try_from_slice(&key).ok_or_else(|| tampered("key"))?;
    let previous = vault
        .meta("credential/previous")?
        .map(|b| postcard::from_bytes::<Previous>(&b).map_err(|_| tampered("previous")))
        .transpose()?;
    Ok(Current {
        generation,
        key,
        previous,
    })
}

/// A blob the vault opened, not yet checked against the password.
pub struct Opened {
    credential: Credential,
    /// The generation of the key that opened it.
    generation: u64,
    /// The rotation this use repeats, if it is a retry.
    retry: Option<Previous>,
}

impl Opened {
    /// Whether `verifier` is the one in the credential (constant time).
    pub fn verifier_matches(&self, verifier: &[u8; 32]) -> bool {
        vettid_crypto::ct_eq(&self.credential.verifier[..], verifier)
    }
}

/// Runs one credential use through the vault's password gate: which key opens the blob (no
/// password evaluated yet, nothing counted), the password checked with the guess limit, then
/// the operation and the rotation. A failure before the rotation leaves the blob good.
pub(crate) fn use_credential(
    gate: &mut crate::manager::Gate<'_>,
    request: &Use<'_>,
    now_ms: u64,
) -> Result<CredentialReply, VaultError> {
    let (id, seen) = (gate.id().to_owned(), gate.credential_generation());
    let opened = gate.vault(|vault, _| open(vault, &id, request, seen))?;
    gate.check_password(|| opened.verifier_matches(request.verifier))?;
    let (reply, generation) =
        gate.vault(|vault, objects| apply(vault, objects, opened, request, now_ms))?;
    gate.saw_credential_generation(generation);
    Ok(reply)
}

/// Opens the blob of `request` with the vault's current key — or, for a retry of the last
/// rotation's request, with the key before it. Evaluates no password. `seen` is the newest
/// credential generation this enclave has seen (an older one in the vault is a rollback).
pub fn open(
    vault: &Vault,
    member: &str,
    request: &Use<'_>,
    seen: u64,
) -> Result<Opened, VaultError> {
    let now = current(vault)?;
    if now.generation < seen {
        return Err(VaultError::Tampered(
            "credential generation rolled back".into(),
        ));
    }
    if let Some(credential) = open_credential(member, now.generation, &now.key, request.blob) {
        return Ok(Opened {
            credential,
            generation: now.generation,
            retry: None,
        });
    }
    let retry = now.previous.filter(|p| {
        vettid_crypto::ct_eq(&p.request, request.request) && p.op == op_digest(request.op)
    });
    if let Some(previous) = retry {
        let key = SecretBytes::from_array(*previous.key);
        if let Some(credential) = open_credential(member, previous.generation, &key, request.blob) {
            return Ok(Opened {
                credential,
                generation: previous.generation,
                retry: Some(previous),
            });
        }
    }
    Err(VaultError::StaleCredential)
}

/// Runs `op` on `credential`. Whatever a retry must reproduce (a new secret's id and time)
/// comes from `key` (the key that opened the blob), `request` and `at_ms`.
fn run(
    credential: &mut Credential,
    op: &CredentialOp,
    key: &SecretBytes<32>,
    request: &[u8; 16],
    at_ms: u64,
) -> Result<CredentialResult, VaultError> {
    let find = |c: &Credential, id: &[u8; 16]| c.secrets.iter().position(|s| &s.meta.id == id);
    Ok(match op {
        CredentialOp::List => {
            CredentialResult::Listed(credential.secrets.iter().map(|s| s.meta.clone()).collect())
        }
        CredentialOp::Add { kind, label, value } => {
            if label.is_empty() || label.len() > MAX_LABEL || value.expose().len() > MAX_VALUE {
                return Err(CredentialError::SecretSize.into());
            }
            if credential.secrets.len() >= MAX_SECRETS {
                return Err(CredentialError::Full.into());
            }
            let mut id = [0u8; 16];
            id.copy_from_slice(&SECRET_ID.derive(key.expose(), b"", request).expose()[..16]);
            let meta = CriticalMeta {
                id,
                kind: *kind,
                label: label.clone(),
                created_ms: at_ms,
            };
            credential.secrets.push(Critical {
                meta: meta.clone(),
                value: value.clone(),
            });
            CredentialResult::Added(meta)
        }
        CredentialOp::Get { id } => {
            let i = find(credential, id).ok_or(VaultError::NotFound)?;
            let s = &credential.secrets[i];
            CredentialResult::Value {
                meta: s.meta.clone(),
                value: s.value.clone(),
            }
        }
        CredentialOp::Delete { id } => {
            let i = find(credential, id).ok_or(VaultError::NotFound)?;
            credential.secrets.remove(i);
            CredentialResult::Deleted
        }
        CredentialOp::ChangePassword { new_verifier } => {
            credential.verifier = new_verifier.clone();
            CredentialResult::PasswordChanged
        }
    })
}

/// Runs the operation on a blob whose password was right. A first use re-seals the credential
/// under the next key (a durable write, with its audit event): the blob just used is dead but
/// for retries of this request. A retry writes nothing and answers as the first use did. An
/// operation that fails writes nothing (the blob stays good). Returns the answer and the
/// credential generation now current.
pub fn apply(
    vault: &mut Vault,
    objects: &Objects<'_>,
    opened: Opened,
    request: &Use<'_>,
    now_ms: u64,
) -> Result<(CredentialReply, u64), VaultError> {
    let member = objects.vault().to_owned();
    let Opened {
        mut credential,
        generation,
        retry,
    } = opened;
    let now = current(vault)?;
    let used_key = match &retry {
        Some(p) => SecretBytes::from_array(*p.key),
        None => now.key.clone(),
    };
    let next_key = NEXT_KEY.derive(used_key.expose(), b"", request.request);
    if let Some(previous) = retry {
        // The rotation already happened: same answer, current generation, no write.
        if !vettid_crypto::ct_eq(next_key.expose(), now.key.expose()) {
            return Err(VaultError::Tampered("credential rotation".into()));
        }
        let result = run(
            &mut credential,
            request.op,
            &used_key,
            request.request,
            previous.at_ms,
        )?;
        let blob = seal_credential(&member, now.generation, &now.key, &credential);
        let version = vault.signed_version(&member);
        return Ok((
            CredentialReply {
                result,
                blob,
                version,
            },
            now.generation,
        ));
    }
    if now.generation != generation {
        return Err(VaultError::Conflict);
    }
    let result = run(
        &mut credential,
        request.op,
        &used_key,
        request.request,
        now_ms,
    )?;
    let next = generation
        .checked_add(1)
        .ok_or_else(|| VaultError::Tampered("credential generation exhausted".into()))?;
    let previous = Previous {
        generation,
        key: Zeroizing::new(*used_key.expose()),
        request: *request.request,
        op: op_digest(request.op),
        at_ms: now_ms,
    };
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
    let previous = Zeroizing::new(postcard::to_allocvec(&previous).expect("encodes"));
    let version = vault.write(
        objects,
        [
            set("credential/key", next_key.expose().to_vec()),
            set("credential/generation", next.to_be_bytes().to_vec()),
            set("credential/previous", previous.to_vec()),
        ]
        .into_iter()
        .chain(audit)
        .collect(),
    )?;
    let blob = seal_credential(&member, next, &next_key, &credential);
    Ok((
        CredentialReply {
            result,
            blob,
            version,
        },
        next,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::Opened;

    fn use_with(
        v: &Opened,
        blob: &[u8],
        verifier: [u8; 32],
        request: [u8; 16],
    ) -> Result<CredentialReply, VaultError> {
        let op = CredentialOp::List;
        let request = Use {
            blob,
            verifier: &verifier,
            op: &op,
            request: &request,
        };
        v.manager.gated("alice", &v.opening, |gate| {
            use_credential(gate, &request, 0)
        })
    }

    #[test]
    fn wrong_passwords_are_counted_a_right_one_resets_and_a_stale_blob_costs_nothing() {
        let v = Opened::new();
        assert_eq!(
            use_with(&v, &v.credential, [1; 32], [1; 16]),
            Err(VaultError::WrongPassword { attempts_left: 9 })
        );
        assert_eq!(
            use_with(&v, &v.credential, [1; 32], [2; 16]),
            Err(VaultError::WrongPassword { attempts_left: 8 })
        );
        // A wrong password rotated nothing: the same blob, the right password.
        let next = use_with(&v, &v.credential, [0; 32], [3; 16]).unwrap();
        assert!(matches!(next.result, CredentialResult::Listed(ref l) if l.is_empty()));
        // The blob just used is dead, and trying it counts no attempt.
        assert_eq!(
            use_with(&v, &v.credential, [1; 32], [4; 16]),
            Err(VaultError::StaleCredential)
        );
        assert_eq!(
            use_with(&v, &next.blob, [1; 32], [5; 16]),
            Err(VaultError::WrongPassword { attempts_left: 9 }),
            "the right password reset the count; the stale blob counted nothing"
        );
    }

    #[test]
    fn a_credential_opens_only_for_its_member_generation_and_key() {
        let key = SecretBytes::random();
        let credential = Credential {
            format: 1,
            verifier: Zeroizing::new([7; 32]),
            created_ms: 5,
            secrets: Vec::new(),
        };
        let blob = seal_credential("alice", 1, &key, &credential);
        assert!(open_credential("alice", 1, &key, &blob).is_some());
        assert!(open_credential("bob", 1, &key, &blob).is_none());
        assert!(open_credential("alice", 2, &key, &blob).is_none());
        assert!(open_credential("alice", 1, &SecretBytes::random(), &blob).is_none());
        assert!(open_credential("alice", 1, &key, &blob[..20]).is_none());
        let mut flipped = blob.clone();
        flipped[30] ^= 1;
        assert!(open_credential("alice", 1, &key, &flipped).is_none());
    }

    #[test]
    fn an_operation_is_recognised_by_kind_and_target_never_by_value() {
        let add = |label: &str, value: &str| CredentialOp::Add {
            kind: vettid_proto::credential::CriticalKind::SeedPhrase,
            label: label.into(),
            value: Secret::new(value),
        };
        assert_eq!(op_digest(&add("w", "one")), op_digest(&add("w", "two")));
        assert_ne!(op_digest(&add("w", "one")), op_digest(&add("x", "one")));
        assert_ne!(
            op_digest(&CredentialOp::Get { id: [1; 16] }),
            op_digest(&CredentialOp::Delete { id: [1; 16] })
        );
        assert_ne!(
            op_digest(&CredentialOp::Get { id: [1; 16] }),
            op_digest(&CredentialOp::Get { id: [2; 16] })
        );
    }
}
