//! # vettid-host: the untrusted bridge
//!
//! Routes NATS traffic to the enclave over the framed channel, stores the enclave's encrypted
//! objects (local directory or S3), relays sealing requests (dev key service or AWS KMS) and
//! serves the clock. It never holds a vault key, a PIN or plaintext. The channel and storage
//! come with the enclave issue.
//!
//! Cargo features: `kms` — [`kms::AwsKms`], the AWS KMS relay for Nitro sealing.
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]

#[cfg(feature = "kms")]
pub mod kms;
