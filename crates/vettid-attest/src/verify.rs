//! Verifying an attestation document: every check a client must make before it trusts one.

use crate::chain::{self, TrustedRoot};
use crate::cose;
use crate::doc::AttestationDoc;

/// Why a document was refused. Each variant has a stable [`code`](VerifyError::code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The bytes are not a well-formed document (COSE, CBOR, a field's type or size).
    #[error("malformed attestation document: {0}")]
    Malformed(&'static str),
    /// The COSE signature does not verify with the leaf certificate's key.
    #[error("attestation signature does not verify")]
    Signature,
    /// The certificate chain does not lead to the pinned root.
    #[error("certificate chain does not lead to the trusted root")]
    Chain,
    /// A certificate had expired at the given time, or the document is older than allowed.
    #[error("attestation document or certificate expired")]
    Expired,
    /// A certificate was not yet valid at the given time, or the document is from the future.
    #[error("attestation document or certificate not yet valid")]
    NotYetValid,
    /// A PCR differs from the expected value (or is missing).
    #[error("PCR{0} does not match the expected measurement")]
    PcrMismatch(u8),
    /// The nonce differs from the one the verifier sent (or is missing).
    #[error("nonce does not match")]
    NonceMismatch,
    /// The bound public key differs from the one the verifier is about to use (or is missing).
    #[error("public key does not match")]
    PublicKeyMismatch,
    /// The enclave runs in debug mode (PCR0 all zero): its memory is open to the host.
    #[error("enclave is in debug mode (PCR0 is all zero)")]
    DebugMode,
}

impl VerifyError {
    /// A short stable name: `malformed`, `signature`, `chain`, `expired`, `not-yet-valid`,
    /// `pcr-mismatch`, `nonce-mismatch`, `public-key-mismatch` or `debug-mode`.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Malformed(_) => "malformed",
            VerifyError::Signature => "signature",
            VerifyError::Chain => "chain",
            VerifyError::Expired => "expired",
            VerifyError::NotYetValid => "not-yet-valid",
            VerifyError::PcrMismatch(_) => "pcr-mismatch",
            VerifyError::NonceMismatch => "nonce-mismatch",
            VerifyError::PublicKeyMismatch => "public-key-mismatch",
            VerifyError::DebugMode => "debug-mode",
        }
    }
}

/// What a verifier requires of a document. Time is always given, never read.
#[derive(Debug, Clone)]
pub struct Policy<'a> {
    /// The pinned root the chain must end at.
    pub root: &'a TrustedRoot,
    /// The time of verification, seconds since the Unix epoch.
    pub at_secs: u64,
    /// The document's own timestamp may be at most this old at `at_secs` (`None`: not checked,
    /// only the certificates' validity counts).
    pub max_age_secs: Option<u64>,
    /// How far the document's timestamp may lie in the future (clock skew).
    pub max_skew_secs: u64,
    /// The nonce the verifier sent; `None` when the caller does not check freshness this way.
    pub nonce: Option<&'a [u8]>,
    /// The public key the document must bind (e.g. the Noise static key the app will use).
    pub public_key: Option<&'a [u8]>,
    /// PCRs that must be present with exactly these values.
    pub pcrs: &'a [(u8, Vec<u8>)],
    /// Accept debug-mode documents (PCR0 all zero). Only for development.
    pub allow_debug: bool,
}

impl<'a> Policy<'a> {
    /// The defaults a client uses: documents at most 5 minutes old, 60 s of clock skew, debug
    /// mode refused, no nonce or PCR expectations yet.
    pub fn new(root: &'a TrustedRoot, at_secs: u64) -> Self {
        Self {
            root,
            at_secs,
            max_age_secs: Some(300),
            max_skew_secs: 60,
            nonce: None,
            public_key: None,
            pcrs: &[],
            allow_debug: false,
        }
    }
}

/// Parses and verifies a COSE_Sign1 attestation document under `policy`.
///
/// Checks, in order: COSE structure (ES384); every CBOR field's type and bounds; the
/// certificate chain to the pinned root with every certificate valid at `at_secs`; the
/// signature with the leaf key; the document timestamp's age and skew; debug mode; each
/// expected PCR (constant time); the nonce and the public key (constant time). Returns the document only if all pass.
pub fn verify(document: &[u8], policy: &Policy<'_>) -> Result<AttestationDoc, VerifyError> {
    let sign1 = cose::parse(document)?;
    let doc = AttestationDoc::from_cbor(&sign1.payload)?;
    // Nitro orders cabundle root first; the root itself is the trust anchor, so passing it
    // as an intermediate is harmless and keeps the verifier indifferent to the order.
    chain::verify_leaf_signed(
        policy.root,
        &doc.certificate,
        &doc.cabundle,
        policy.at_secs,
        &sign1.to_be_signed,
        &sign1.signature,
    )?;
    let at_ms = policy.at_secs.saturating_mul(1000);
    if doc.timestamp_ms > at_ms.saturating_add(policy.max_skew_secs.saturating_mul(1000)) {
        return Err(VerifyError::NotYetValid);
    }
    if let Some(max_age) = policy.max_age_secs
        && at_ms.saturating_sub(doc.timestamp_ms) > max_age.saturating_mul(1000)
    {
        return Err(VerifyError::Expired);
    }
    let pcr0 = doc
        .pcrs
        .get(&0)
        .ok_or(VerifyError::Malformed("PCR0 missing"))?;
    if !policy.allow_debug && pcr0.iter().all(|b| *b == 0) {
        return Err(VerifyError::DebugMode);
    }
    for (index, expected) in policy.pcrs {
        match doc.pcrs.get(index) {
            Some(actual) if vettid_crypto::ct_eq(actual, expected) => {}
            _ => return Err(VerifyError::PcrMismatch(*index)),
        }
    }
    if let Some(expected) = policy.nonce {
        match &doc.nonce {
            Some(actual) if vettid_crypto::ct_eq(actual, expected) => {}
            _ => return Err(VerifyError::NonceMismatch),
        }
    }
    if let Some(expected) = policy.public_key {
        match &doc.public_key {
            Some(actual) if vettid_crypto::ct_eq(actual, expected) => {}
            _ => return Err(VerifyError::PublicKeyMismatch),
        }
    }
    Ok(doc)
}
