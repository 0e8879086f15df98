//! # vettid-host: the untrusted bridge
//!
//! Starts the enclave process and restarts it when it dies; serves its storage (object
//! store: local directory), key-service and attestation relay (dev platform locally; AWS KMS
//! and the NSM on Nitro) and clock; forwards client operations to it. It never holds a vault
//! key, a PIN or plaintext. [`nats`] routes apps' `OwnerSpace.<member>.forVault.<channel>`
//! messages to the enclave and publishes its events to JetStream, unread.
//!
//! Cargo features: `kms` — [`kms::AwsKms`], the AWS KMS relay for Nitro sealing.
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]

pub mod control;
pub mod frames;
pub mod host;
#[cfg(feature = "kms")]
pub mod kms;
pub mod nats;
pub mod storage;
