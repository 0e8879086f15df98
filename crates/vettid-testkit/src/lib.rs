//! # vettid-testkit: a host that lies on purpose
//!
//! The enclave must hold its properties against a host that controls every byte in and out
//! (DESIGN.md §2). [`AdversarialHost`] is such a host for tests: it serves a **real enclave
//! process** over the real channel, keeps the vault objects in memory where a test can copy,
//! delete, swap and restore them, and runs a test's [`Script`] on every request the enclave
//! makes, so the test can answer falsely (`AlreadyExists` for an object it stored, `Created`
//! for one it dropped, a listing with objects missing, an older object, a key-service answer
//! of its own). It also plays the apps' side of NATS: [`AdversarialHost::app`] gives a
//! `vettid-client` [`VaultClient`] whose messages it carries (and can drop), so the SDK's own
//! checks run unchanged.
//!
//! ```text
//!  test ──script──► AdversarialHost ──frames (unix socket)──► vettid-enclave (real process)
//!   │                  │ store: BTreeMap<name, bytes> (in memory, for the test to edit)
//!   │                  └ honest relay: key-service TLS bytes to the dev platform's key service
//!   │                    (the platform launches the enclave and is its device: the host never
//!   │                    sees a document request)
//!   └── VaultClient::direct ──► AdversarialHost::app ──ToEnclave::App──► enclave
//! ```
//!
//! What it deliberately does not do: NATS, JetStream, durable storage. Those have their own
//! tests against the real servers; this tool is for what a *hostile* host can do to them.
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]

mod host;
mod store;

pub use host::{Action, AdversarialHost, Options, Script};
pub use store::Store;
