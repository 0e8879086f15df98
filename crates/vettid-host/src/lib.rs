//! # vettid-host: the untrusted bridge
//!
//! Has the platform launch the enclave and launch it again when it dies; serves its storage
//! (object store: local directory or S3) and clock; relays its key-service TLS streams byte for
//! byte (to the dev key service locally, to AWS KMS on Nitro); forwards client operations to
//! it. It never holds a vault key, a PIN, plaintext, or an attestation document it could use.
//! [`nats`] routes apps' `OwnerSpace.<member>.forVault.<channel>` messages to the enclave and
//! publishes its events to JetStream, unread.
//!
//! Cargo features: `s3` (object store), `vsock` (Nitro channel), `kms` (AWS credentials from
//! the default provider chain for the enclave's signed KMS requests).
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]

pub mod control;
pub mod frames;
pub mod host;
pub mod nats;
mod relay;
pub mod storage;
