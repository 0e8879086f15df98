//! # vettid-enclave: the trusted computing base
//!
//! Everything that ever sees vault plaintext, a PIN, a password verifier or a private key
//! runs here: the channel to the host, sealing, vault actors and the domain handlers.
//!
//! ```text
//!  device (NSM | launching platform over stdin/stdout) ──► configuration (policy), documents
//!  host ──frames (unix socket | vsock)──► link ──► workers ──► manager ──► one record per vault (own lock)
//!   ▲                                      │                    │            ├─ keys   (S sealed, VMK wrapped under PIN ‖ S)
//!   ├──── Get / PutCreate / List / Delete ◄┘◄── objects ◄───────┤            ├─ guard  (wrong PINs, durable before the answer)
//!   └──── Connect / Send / Receive (TLS bytes to the key service) ◄┘          └─ vault  (SQLite in memory; log + snapshots)
//! ```
//!
//! ## What the enclave never does
//!
//! - open a network connection, a file or a cloud API: it reaches storage, the key service
//!   and the clock only by asking the host over the framed channel, and its documents and
//!   configuration only from its device;
//! - take a key, a document or a policy from the host: key-service answers arrive over TLS
//!   that ends here, checked against roots in the measured configuration; the guess limit,
//!   stretching and quotas are that configuration's;
//! - hand the host anything it could read: every object is AEAD-encrypted with its vault,
//!   kind and number as associated data; the per-vault secret is sealed to the measurement;
//! - acknowledge a write before it is durable, or answer a wrong PIN before it is counted;
//! - serve a vault state older than, or not extending, one it or an app has seen;
//! - trust the host's clock for anything but timestamps, its listings as proof that nothing
//!   exists, or its storage without checking.
//!
//! Its dependency tree is checked: no HTTP stack, NATS client, object store or AWS SDK
//! (`tests/tcb_dependencies.rs`).
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]

pub mod backup;
pub mod connections;
pub mod credential;
pub mod device;
pub mod devices;
pub mod domains;
pub mod feed;
pub mod grants;
pub mod keys;
pub mod link;
pub mod manager;
pub mod messages;
pub mod objects;
pub mod profile;
pub mod secrets;
pub mod server;
pub mod session;
pub mod vault;

#[cfg(test)]
mod harness;
