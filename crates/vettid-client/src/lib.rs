//! # vettid-client: the app's SDK
//!
//! What the mobile app does, as a library (the `vettid app` command is a thin shell over it):
//!
//! - [`api::Api`]: the HTTP ceremonies (enrollment code → enrollment token → NATS credentials
//!   → finalize; credential renewal signed by the device key);
//! - [`vault::VaultClient`]: NATS with the member's own credentials; [`vault::VaultClient::attest`]
//!   verifies the enclave's attestation document against the pinned root and the signed PCR
//!   manifest *before* anything secret is sent; [`vault::Session`] is the hybrid Noise
//!   session (`Noise_XKpsk3_25519_ChaChaPoly_SHA256` + X-Wing) carrying typed operations;
//! - [`events`]: the vault's events from JetStream, including those sent while offline;
//! - [`profile::Profile`]: the app's files (device key, NATS seed and creds, credential blob,
//!   highest vault version seen).
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]

pub mod api;
pub mod app;
pub mod backup;
pub mod connections;
pub mod credential;
pub mod devices;
mod error;
pub mod events;
pub mod feed;
pub mod http;
pub mod join;
pub mod profile;
pub mod profile_data;
pub mod recovery;
pub mod secrets;
pub mod vault;

pub use error::ClientError;

/// The Argon2id verifier of `password` for `member`: what enrollment stores in the credential
/// and what the app sends later instead of the password. Salt = first 16 bytes of
/// SHA-256(`vettid/v1/password-salt\0` ‖ member), so any of the member's devices can
/// recompute it; costs are the defaults of DESIGN.md §4.
pub fn password_verifier(member: &str, password: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    use vettid_crypto::password::{Bounds, Cost, SALT_LEN, Stretch};
    let digest = sha2::Sha256::new()
        .chain_update(b"vettid/v1/password-salt\0")
        .chain_update(member.as_bytes())
        .finalize();
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&digest[..SALT_LEN]);
    let stretch = Stretch::with_salt(Cost::DEFAULT, &salt, &Bounds::DEFAULT)
        .expect("the default cost is within the default bounds");
    *stretch.derive(password).expose()
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
