//! The API end to end through its router: a real SQLite file and a real vettid-nats setup in
//! a tempdir, a manual clock, and `tower::ServiceExt::oneshot`. One test binary (modules by
//! domain) so the suite links once.

mod auth;
mod bad_input;
mod connect_codes;
mod deletion;
mod devices;
mod enroll;
mod flow;
mod harness;
mod limits;
mod recovery;
mod registration;
mod suspend;
