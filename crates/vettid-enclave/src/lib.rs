//! # vettid-enclave: the trusted computing base
//!
//! Everything that ever sees vault plaintext, a PIN, a password verifier or a private key
//! runs here: the channel server, sealing, vault actors and the domain handlers. Filled by the
//! enclave issue.
//!
//! ## What the enclave never does
//!
//! - open a network connection, a file or a cloud API: it reaches storage, the sealing relay
//!   and the clock only by asking the host over the framed channel;
//! - export a key, or trust the host's clock or storage without checking;
//! - accept a session from an app that has not verified its attestation.
//!
//! Its dependency tree is checked: no HTTP stack, NATS client, object store or AWS SDK
//! (`cargo tree -p vettid-enclave -e normal`; see the workspace test `tcb_dependencies`).
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]
