//! # vettid-attest: proving the enclave to the app
//!
//! Attestation documents in the AWS Nitro format — a COSE_Sign1 (ES384) over a CBOR map with
//! the enclave's measurements (PCRs), a certificate chain, and caller-bound `public_key`,
//! `user_data` and `nonce` — produced on Nitro hardware by the NSM or locally by the dev
//! attestor, and verified the same way for both.
//!
//! ```text
//!   dev attestor (outside the enclave, holds the dev root key)      NSM (Nitro hypervisor)
//!            │ COSE_Sign1 { pcrs, nonce, public_key, … }                │
//!            └──────────────────────────────┬────────────────────────────┘
//!                                           ▼
//!   app: verify(doc, Policy { pinned root, time, nonce, PCRs from the signed manifest })
//! ```
//!
//! ## What this crate deliberately does not do
//!
//! - read the clock: every check takes the time as a parameter;
//! - trust a field before the whole document verified;
//! - parse anything unbounded: every CBOR field has a size, count and type check
//!   ([`doc::limits`]); the parsers are fuzzed (`fuzz/`).
//!
//! ## Getting started
//!
//! ```
//! # #[cfg(feature = "dev")] {
//! use vettid_attest::{dev::{DevAttestor, DevRoot}, AttestRequest, Measurement, Policy, verify};
//! let now = 1_800_000_000;
//! let root = DevRoot::generate(now);
//! let attestor = DevAttestor::new(&root, Measurement::of_enclave(b"enclave binary", b"config"));
//! let request = AttestRequest { nonce: Some(b"fresh".to_vec()), ..Default::default() };
//! let doc = attestor.attest(&request, now).unwrap();
//! let trusted = root.trusted();
//! let mut policy = Policy::new(&trusted, now);
//! policy.nonce = Some(&b"fresh"[..]);
//! assert!(verify(&doc, &policy).is_ok());
//! # }
//! ```
//!
//! Cargo features: `dev` (default) — the dev root CA, dev attestor and dev key service, which
//! run outside the enclave; `nitro` — attestation through the NSM device.
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]

mod chain;
mod cose;
#[cfg(feature = "dev")]
pub mod dev;
pub mod doc;
pub mod manifest;
mod measure;
#[cfg(feature = "nitro")]
pub mod nitro;
pub mod seal;
mod verify;

pub use chain::TrustedRoot;
pub use doc::AttestationDoc;
pub use measure::{AttestRequest, Measurement};
pub use verify::{Policy, VerifyError, verify};
