//! # vettid-proto: wire types shared by every process
//!
//! Envelopes, operations, events, subjects and errors as plain data, with no I/O, so that the
//! enclave, the host, the API and the app agree on one definition. Filled by the end-to-end
//! issue: the NATS subject vocabulary of `DESIGN.md` §7, the host ↔ enclave channel, and the
//! app ↔ enclave session ([`session`]).
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]

pub mod auth;
pub mod backup;
pub mod channel;
pub mod connections;
pub mod credential;
pub mod devices;
pub mod enclave;
pub mod feed;
pub mod merkle;
pub mod messages;
pub mod peer;
pub mod platform;
pub mod profile;
pub mod redact;
pub mod secrets;
pub mod session;
pub mod subject;
pub mod voting;
