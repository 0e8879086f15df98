//! # vettid-crypto: the fixed cryptographic suite of VettID
//!
//! Small typed wrappers over audited RustCrypto and dalek implementations. This crate adds
//! *no* primitive of its own: it fixes the choices of `DESIGN.md` §4, gives every key its
//! own type, and makes the safe use the easy one.
//!
//! | module | primitive | what the wrapper adds |
//! |---|---|---|
//! | [`sign`] | Ed25519 (RFC 8032) | strict verification only: small-order keys, small-order `R`, non-canonical `S` refused |
//! | [`agree`] | X25519 (RFC 7748) | an all-zero (non-contributory) shared secret is an error, never a key |
//! | [`aead`] | XChaCha20-Poly1305 | random 24-byte nonces, mandatory associated data, one opaque [`DecryptionFailed`] |
//! | [`kdf`] | HKDF-SHA256 (RFC 5869) | domain labels `vettid/v1/<purpose>` as a type ([`Label`]) |
//! | [`password`] | Argon2id (RFC 9106) | parameters travel with the salt as a PHC string, bounded on input |
//! | [`noise`] | Noise XKpsk3 (snow) + X-Wing (ML-KEM-768 + X25519) | snow runs on this crate's primitives; the KEM secret is the PSK |
//!
//! ## What this crate deliberately does not do
//!
//! - No I/O, no clock, no global state. It is part of the enclave's trusted computing base.
//! - No key ever prints: every secret type's `Debug` is redacted, and secrets are zeroized on drop.
//! - No variable-time comparison of secrets: [`SecretBytes`] compares in constant time ([`subtle`]).
//! - No unauthenticated encryption and no caller-chosen nonces.
//!
//! ## Getting started
//!
//! ```
//! use vettid_crypto::{aead::AeadKey, kdf::Label, SecretBytes};
//!
//! const STORAGE: Label = Label::new("storage-key");
//! let master = SecretBytes::<32>::random();
//! let key = AeadKey::from(STORAGE.derive(master.expose(), b"", b"vault-42"));
//! let sealed = key.seal(b"vault-42/head/7", b"hello");
//! assert_eq!(&key.open(b"vault-42/head/7", &sealed).unwrap()[..], b"hello");
//! assert!(key.open(b"vault-42/head/8", &sealed).is_err());
//! ```
//!
//! Cargo features: `test-vectors` — deterministic handshakes for the published protocol vectors
//! (tests only; never in a release build).
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]

pub mod aead;
pub mod agree;
pub mod kdf;
pub mod noise;
pub mod password;
mod secret;
pub mod sign;
pub mod stream;

pub use aead::DecryptionFailed;
pub use kdf::Label;
pub use secret::{SecretBytes, ct_eq, random_array};
