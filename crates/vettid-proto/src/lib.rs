//! # vettid-proto: wire types shared by every process
//!
//! Envelopes, operations, events, subjects and errors as plain data, with no I/O, so that the
//! enclave, the host, the API and the app agree on one definition. Filled by the end-to-end
//! issue; for now it fixes the NATS subject vocabulary of `DESIGN.md` §7.
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]

pub mod channel;
pub mod enclave;
pub mod subject;
