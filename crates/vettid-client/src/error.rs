//! The SDK's one error type: each variant says whose fault it is.

use vettid_proto::enclave::VaultError;
use vettid_proto::session::SessionError;

/// Why an SDK call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API refused the request.
    #[error("the API refused: {code}: {message} (HTTP {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// Stable error code from the API.
        code: String,
        /// Its message.
        message: String,
    },
    /// The API could not be reached, or answered something unreadable.
    #[error("API unreachable or unreadable: {0}")]
    Http(String),
    /// NATS refused or could not be reached (including expired or revoked credentials).
    #[error("NATS: {0}")]
    Nats(String),
    /// The enclave is not trusted: its attestation did not verify. Nothing secret was sent.
    #[error("enclave not trusted: {0}")]
    Untrusted(String),
    /// The enclave refused a session message (outside the encryption).
    #[error("session refused: {0}")]
    Session(#[from] SessionError),
    /// The vault refused the operation.
    #[error("{0}")]
    Vault(#[from] VaultError),
    /// The vault showed an older state than this app has already seen.
    #[error("rollback: vault version {got} is older than version {seen} seen before")]
    Rollback {
        /// Version now shown.
        got: u64,
        /// Highest version seen before.
        seen: u64,
    },
    /// An answer did not decode or did not match the request.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The profile directory is missing something or could not be written.
    #[error("profile: {0}")]
    Profile(String),
    /// A file given as an export is not one, or could not be read or written.
    #[error("export file: {0}")]
    Export(String),
}

impl ClientError {
    /// Whether the request may simply be sent again: its answer was lost on the way (NATS, or
    /// the host could not reach the enclave). The vault's own refusals are never transient.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ClientError::Nats(_) | ClientError::Session(SessionError::Unavailable)
        )
    }
}
