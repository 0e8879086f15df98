//! # vettid-client: the app's SDK
//!
//! What the mobile app does: verify the enclave's attestation, open the hybrid Noise session,
//! and run typed vault operations over NATS. Filled by the end-to-end issue.
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]
