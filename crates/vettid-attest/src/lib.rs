//! # vettid-attest: attestation documents (AWS Nitro format), produced and verified
//!
//! Used by the enclave (to produce documents, through the NSM on Nitro or the dev attestor
//! locally) and by the app (to verify them against a pinned root and the signed PCR manifest
//! before it sends any secret). Filled by the attestation issue.
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]
