//! The split-custody credential (DESIGN.md §5): the app holds the blob, the vault holds the key
//! that opens it. Made at enrollment around the app's password verifier; the operations on it
//! (critical secrets, rotation after each use, password change) come with the vault-data work.
//!
//! ```text
//! blob = generation (8 bytes, big-endian) ‖ XChaCha20-Poly1305(CEK_generation,
//!            aad = "vettid/v1/credential\0" ‖ member ‖ 0 ‖ generation, postcard(Credential))
//! ```

use serde::{Deserialize, Serialize};
use vettid_crypto::SecretBytes;
use vettid_crypto::aead::AeadKey;

/// The credential's plaintext.
#[derive(Serialize, Deserialize)]
struct Credential {
    format: u8,
    /// Argon2id of the member's password, computed by the app.
    verifier: [u8; 32],
    created_ms: u64,
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

/// Seals a new credential holding `verifier` under `key` (generation `generation`).
pub fn seal(
    member: &str,
    generation: u64,
    key: &SecretBytes<32>,
    verifier: &[u8; 32],
    created_ms: u64,
) -> Vec<u8> {
    let plain = zeroize::Zeroizing::new(
        postcard::to_allocvec(&Credential {
            format: 1,
            verifier: *verifier,
            created_ms,
        })
        .expect("a credential always encodes"),
    );
    let sealed = AeadKey::from(key.clone()).seal(&aad(member, generation), &plain);
    [&generation.to_be_bytes()[..], &sealed].concat()
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
    let Some((g, sealed)) = blob.split_first_chunk::<8>() else {
        return false;
    };
    if u64::from_be_bytes(*g) != generation {
        return false;
    }
    let Ok(plain) = AeadKey::from(key.clone()).open(&aad(member, generation), sealed) else {
        return false;
    };
    postcard::from_bytes::<Credential>(&plain)
        .is_ok_and(|c| vettid_crypto::ct_eq(&c.verifier, verifier))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_opens_only_for_its_member_generation_key_and_verifier() {
        let key = SecretBytes::random();
        let blob = seal("alice", 1, &key, &[7; 32], 5);
        assert!(verify("alice", 1, &key, &blob, &[7; 32]));
        assert!(!verify("alice", 1, &key, &blob, &[8; 32]));
        assert!(!verify("bob", 1, &key, &blob, &[7; 32]));
        assert!(!verify("alice", 2, &key, &blob, &[7; 32]));
        assert!(!verify("alice", 1, &SecretBytes::random(), &blob, &[7; 32]));
        assert!(!verify("alice", 1, &key, &blob[..20], &[7; 32]));
        let mut flipped = blob.clone();
        flipped[30] ^= 1;
        assert!(!verify("alice", 1, &key, &flipped, &[7; 32]));
    }
}
