//! Messages the app signs for the API with its enrolled device key, and what binds that key
//! to the device the vault registered.
//!
//! A device has two keys: an Ed25519 **device key** (it signs credential renewals for the
//! API) and an X25519 **session key** (the static key of its Noise sessions with the vault).
//! At enrollment the device proves to the vault that it holds the device key
//! ([`DeviceBinding`]), the enclave answers with an attestation document binding both keys and
//! the new vault's identity key ([`enrolled_device_binding`]), and the API registers the
//! device only with that document, for the keys the member confirmed on the web page
//! ([`comparison_code`]).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vettid_crypto::sign::{Signature, SigningKey, VerifyingKey};

/// What the device key signs to renew its NATS credentials:
/// `"vettid/v1/nats-refresh\0" ‖ member ‖ 0 ‖ nats public key ‖ 0 ‖ timestamp (u64 BE)`.
pub fn nats_refresh_message(member: &str, nats_public_key: &str, timestamp: u64) -> Vec<u8> {
    [
        b"vettid/v1/nats-refresh\0".as_slice(),
        member.as_bytes(),
        &[0],
        nats_public_key.as_bytes(),
        &[0],
        &timestamp.to_be_bytes(),
    ]
    .concat()
}

/// What the device key signs to bind itself to a session key:
/// `"vettid/v1/device-binding\0" ‖ member ‖ 0 ‖ session key`.
pub fn device_binding_message(member: &str, session_key: &[u8; 32]) -> Vec<u8> {
    [
        b"vettid/v1/device-binding\0".as_slice(),
        member.as_bytes(),
        &[0],
        session_key,
    ]
    .concat()
}

/// The `user_data` of the attestation document an enclave gives when it has created `member`'s
/// vault with identity key `identity_key` and registered a device:
/// `SHA-256("vettid/v1/device-enrolled\0" ‖ member ‖ 0 ‖ session key ‖ device key ‖ identity
/// key)`. (The documents the enclave gives for a nonce bind another label, so no app can ask
/// for this one.)
pub fn enrolled_device_binding(
    member: &str,
    session_key: &[u8; 32],
    device_key: &[u8; 32],
    identity_key: &[u8; 32],
) -> [u8; 32] {
    labelled_binding(
        b"vettid/v1/device-enrolled\0",
        member,
        session_key,
        device_key,
        identity_key,
    )
}

/// The `user_data` of the attestation document an enclave gives when it has re-keyed
/// `member`'s vault (identity key `identity_key`) to a new device by staged recovery, removing
/// every other device: `SHA-256("vettid/v1/device-recovered\0" ‖ member ‖ 0 ‖ session key ‖
/// device key ‖ identity key)`. A label of its own, so an enrollment's document never passes
/// for a recovery's, or the other way round.
pub fn recovered_device_binding(
    member: &str,
    session_key: &[u8; 32],
    device_key: &[u8; 32],
    identity_key: &[u8; 32],
) -> [u8; 32] {
    labelled_binding(
        b"vettid/v1/device-recovered\0",
        member,
        session_key,
        device_key,
        identity_key,
    )
}

/// The `user_data` of the attestation document an enclave gives when a registered device,
/// with the PIN, has added another device to `member`'s vault (identity key `identity_key`):
/// `SHA-256("vettid/v1/device-added\0" ‖ member ‖ 0 ‖ session key ‖ device key ‖ identity
/// key)` of the added device.
pub fn added_device_binding(
    member: &str,
    session_key: &[u8; 32],
    device_key: &[u8; 32],
    identity_key: &[u8; 32],
) -> [u8; 32] {
    labelled_binding(
        b"vettid/v1/device-added\0",
        member,
        session_key,
        device_key,
        identity_key,
    )
}

/// The `user_data` of the attestation document an enclave gives when a device was removed
/// from `member`'s vault: `SHA-256("vettid/v1/device-removed\0" ‖ member ‖ 0 ‖ session key ‖
/// device key ‖ identity key)` of the removed device.
pub fn removed_device_binding(
    member: &str,
    session_key: &[u8; 32],
    device_key: &[u8; 32],
    identity_key: &[u8; 32],
) -> [u8; 32] {
    labelled_binding(
        b"vettid/v1/device-removed\0",
        member,
        session_key,
        device_key,
        identity_key,
    )
}

/// `SHA-256(label ‖ member ‖ 0 ‖ session key ‖ device key ‖ identity key)`: the bindings
/// above, one label each.
fn labelled_binding(
    label: &[u8],
    member: &str,
    session_key: &[u8; 32],
    device_key: &[u8; 32],
    identity_key: &[u8; 32],
) -> [u8; 32] {
    Sha256::new()
        .chain_update(label)
        .chain_update(member.as_bytes())
        .chain_update([0])
        .chain_update(session_key)
        .chain_update(device_key)
        .chain_update(identity_key)
        .finalize()
        .into()
}

/// What a registered device's key signs to have the API let a new device join `member`'s
/// vault (after the enclave added it): `"vettid/v1/device-join\0" ‖ member ‖ 0 ‖ timestamp
/// (Unix ms, u64 BE) ‖ the new device's device key ‖ its session key`.
pub fn device_join_message(
    member: &str,
    timestamp: u64,
    device_key: &[u8; 32],
    session_key: &[u8; 32],
) -> Vec<u8> {
    [
        b"vettid/v1/device-join\0".as_slice(),
        member.as_bytes(),
        &[0],
        &timestamp.to_be_bytes(),
        device_key,
        session_key,
    ]
    .concat()
}

/// What a registered device's key signs to have the API revoke a device the enclave removed:
/// `"vettid/v1/device-remove\0" ‖ member ‖ 0 ‖ timestamp (Unix ms, u64 BE) ‖ the removed
/// device's device key`.
pub fn device_remove_message(member: &str, timestamp: u64, device_key: &[u8; 32]) -> Vec<u8> {
    [
        b"vettid/v1/device-remove\0".as_slice(),
        member.as_bytes(),
        &[0],
        &timestamp.to_be_bytes(),
        device_key,
    ]
    .concat()
}

/// What a joining device's key signs to take its member credentials with the join token:
/// `"vettid/v1/device-joined\0" ‖ member ‖ 0 ‖ its NATS public key` (proof that the holder
/// of the token holds the device key the member's other device approved).
pub fn device_joined_message(member: &str, nats_public_key: &str) -> Vec<u8> {
    [
        b"vettid/v1/device-joined\0".as_slice(),
        member.as_bytes(),
        &[0],
        nats_public_key.as_bytes(),
    ]
    .concat()
}

/// What the device key signs to ask the API about (or cancel) a recovery of its vault:
/// `"vettid/v1/recovery-device\0" ‖ member ‖ 0 ‖ timestamp (Unix ms, u64 BE) ‖ cancel (1 byte)`.
pub fn recovery_device_message(member: &str, timestamp: u64, cancel: bool) -> Vec<u8> {
    [
        b"vettid/v1/recovery-device\0".as_slice(),
        member.as_bytes(),
        &[0],
        &timestamp.to_be_bytes(),
        &[u8::from(cancel)],
    ]
    .concat()
}

/// The app's proof, sent with its enrollment, that it holds `device_key`.
/// Public keys and a signature: nothing secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceBinding {
    /// The Ed25519 device key.
    pub device_key: [u8; 32],
    /// Its signature over [`device_binding_message`] for the session's key.
    #[serde(with = "serde_bytes")]
    pub proof: Vec<u8>,
}

impl DeviceBinding {
    /// Binds `device` to `session_key` for `member`.
    pub fn sign(member: &str, session_key: &[u8; 32], device: &SigningKey) -> DeviceBinding {
        DeviceBinding {
            device_key: device.verifying_key().to_bytes(),
            proof: device
                .sign(&device_binding_message(member, session_key))
                .to_bytes()
                .to_vec(),
        }
    }

    /// Whether the proof verifies for `member` and `session_key`.
    pub fn verify(&self, member: &str, session_key: &[u8; 32]) -> bool {
        let (Ok(key), Ok(sig)) = (
            VerifyingKey::from_bytes(&self.device_key),
            Signature::from_slice(&self.proof),
        ) else {
            return false;
        };
        key.verify(&device_binding_message(member, session_key), &sig)
            .is_ok()
    }
}

/// The six digits the enrolling app shows and the member types into the web page to confirm
/// that the device the API saw is the one in their hand: a digest of the enrollment session,
/// the salt the API chose when the app authenticated, and both of the device's keys. The app
/// computes it itself, a device with other keys gets another code, and no app can choose its
/// code (the salt comes after its keys are fixed). Formatted `123 456`.
pub fn comparison_code(
    session_id: &str,
    salt: &[u8; 16],
    device_key: &[u8; 32],
    session_key: &[u8; 32],
) -> String {
    let digest = Sha256::new()
        .chain_update(b"vettid/v1/enrollment-comparison\0")
        .chain_update(session_id.as_bytes())
        .chain_update([0])
        .chain_update(salt)
        .chain_update(device_key)
        .chain_update(session_key)
        .finalize();
    let n = u64::from_be_bytes(digest[..8].try_into().unwrap_or_default()) % 1_000_000;
    format!("{:03} {:03}", n / 1000, n % 1000)
}

/// A typed comparison code in its canonical form (digits only, spaces and dashes ignored),
/// if it has six digits.
pub fn normalize_comparison_code(typed: &str) -> Option<String> {
    let digits: String = typed.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    (digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("{} {}", &digits[..3], &digits[3..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binding_verifies_only_for_its_member_and_session_key() {
        let device = SigningKey::generate();
        let b = DeviceBinding::sign("alice", &[7; 32], &device);
        assert!(b.verify("alice", &[7; 32]));
        assert!(!b.verify("alice", &[8; 32]));
        assert!(!b.verify("bob", &[7; 32]));
        let mut forged = b.clone();
        forged.device_key = SigningKey::generate().verifying_key().to_bytes();
        assert!(!forged.verify("alice", &[7; 32]));
        let mut short = b;
        short.proof.pop();
        assert!(!short.verify("alice", &[7; 32]));
    }

    #[test]
    fn comparison_codes_depend_on_every_input_and_normalize() {
        let code = comparison_code("s1", &[9; 16], &[1; 32], &[2; 32]);
        assert_eq!(code.len(), 7);
        assert_eq!(normalize_comparison_code(&code).as_deref(), Some(&*code));
        assert_eq!(
            normalize_comparison_code(&code.replace(' ', "-")).as_deref(),
            Some(&*code)
        );
        for other in [
            comparison_code("s2", &[9; 16], &[1; 32], &[2; 32]),
            comparison_code("s1", &[8; 16], &[1; 32], &[2; 32]),
            comparison_code("s1", &[9; 16], &[3; 32], &[2; 32]),
            comparison_code("s1", &[9; 16], &[1; 32], &[3; 32]),
        ] {
            assert_ne!(other, code);
        }
        for bad in ["12345", "1234567", "12a456", "", "١٢٣٤٥٦"] {
            assert_eq!(normalize_comparison_code(bad), None, "{bad}");
        }
    }
}
