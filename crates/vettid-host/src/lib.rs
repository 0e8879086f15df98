//! # vettid-host: the untrusted bridge
//!
//! Routes NATS traffic to the enclave over the framed channel, stores the enclave's encrypted
//! objects (local directory or S3), relays sealing requests (dev sealer or AWS KMS) and serves
//! the clock. It never holds a vault key, a PIN or plaintext. Filled by the enclave issue.
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]
