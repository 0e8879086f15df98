//! # vettid-api: the HTTP API (untrusted, stateless)
//!
//! Carries registration, membership, administration and the enrollment ceremony. It never
//! sees vault content, PINs or session keys: those travel end to end between the member's app
//! and the enclave. See `docs/ARCHITECTURE.md`.
//!
//! ## What it does
//!
//! ```text
//!  admin ──(admin token)──► invites, registrations (approve/reject), NATS revocation
//!  person ─(invite)───────► POST /v1/register ──► registration (pending | approved)
//!  member ─(email)────────► magic link (outbox) ──► POST /v1/auth/verify ──► member session
//!  member session ────────► enrollment session: code XXXX-XXXX / QR
//!  app ───(code | QR)─────► enrollment token ──► NATS enrollment JWT, phases, finalize
//!  app ───(device key)────► POST /v1/nats/refresh ──► member NATS JWT
//!  anyone ─(sealed blob)──► /v1/connect-codes: invitations kept by a code-derived lookup id
//! ```
//!
//! Metadata lives in SQL through sqlx (a SQLite file by default; the migrations in
//! `migrations/` are portable to PostgreSQL).
//!
//! ## What it deliberately does not do
//!
//! - Store a secret in clear: tokens and codes are random and kept only as SHA-256 digests;
//!   single-use ones are spent with one conditional `UPDATE`, so a race cannot spend one twice.
//! - Tell whether an email is registered: the magic-link route answers 202 for every address,
//!   before doing any work.
//! - Answer bad input with a 500: every rejection is an [`ApiError`] that says whose fault it
//!   is, in one JSON shape, `{"error":{"code","message"}}`.
//! - Log a token, a code or a mail body; types holding them print `[REDACTED]` in `Debug`.
//! - Check what the app reports about the enclave: enrollment phases are progress reports for
//!   the web page; attestation, PIN and password are between the app and the enclave.
//!
//! ## Getting started
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = vettid_api::ApiConfig::new("/var/lib/vettid");
//! config.public_url = "https://api.example.com".into();
//! let app = vettid_api::App::open(config).await?; // migrates; writes admin.token once
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! app.serve(listener, std::future::pending()).await?;
//! # Ok(()) }
//! ```
//!
//! Time comes from an injected [`Clock`] ([`App::open_with`]), so tests move it instead of
//! sleeping. Cargo features: none yet (an SMTP [`Mailer`] is future work; the default mailer
//! writes an outbox directory).
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]

mod admin;
mod app;
mod auth;
mod clock;
mod config;
mod connect_codes;
mod db;
mod delayed;
mod deletion;
mod devices;
mod enroll;
mod error;
mod extract;
mod health;
mod invites;
mod mail;
mod nats;
mod public;
mod ratelimit;
mod recovery;
mod registration;
mod secret;
mod validate;

pub use admin::AdminConsole;
pub use app::{App, OpenError};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{ApiConfig, Limits, Rate};
pub use enroll::EnrollmentPhase;
pub use error::ApiError;
pub use invites::{Invite, NewInvite};
pub use mail::{Mail, MailError, Mailer, OutboxMailer};
pub use nats::{REFRESH_CONTEXT, refresh_message};
/// The rate limiter, for its benchmark (`benches/ratelimit.rs`).
#[doc(hidden)]
pub use ratelimit::{MAX_WINDOWS, RateLimiter};
pub use registration::{Registration, RegistrationStatus};
