//! X.509 chain validation: rustls-webpki's path building and checks, with ECDSA P-384/SHA-384
//! verified by RustCrypto's `p384` (no C code in the trusted computing base).

use crate::VerifyError;
use p384::ecdsa::signature::Verifier;
use pki_types::{
    AlgorithmIdentifier, CertificateDer, InvalidSignature, SignatureVerificationAlgorithm,
    TrustAnchor, UnixTime, alg_id,
};
use std::time::Duration;

/// ECDSA over P-384 with SHA-384: the only algorithm in Nitro's chain and document signature.
#[derive(Debug)]
pub(crate) struct EcdsaP384Sha384;

pub(crate) static ECDSA_P384_SHA384: &dyn SignatureVerificationAlgorithm = &EcdsaP384Sha384;

impl SignatureVerificationAlgorithm for EcdsaP384Sha384 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        let key =
            p384::ecdsa::VerifyingKey::from_sec1_bytes(public_key).map_err(|_| InvalidSignature)?;
        let sig = p384::ecdsa::DerSignature::try_from(signature).map_err(|_| InvalidSignature)?;
        key.verify(message, &sig).map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_P384
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_SHA384
    }
}

/// A pinned root certificate (the AWS Nitro root, or a data directory's dev root).
#[derive(Debug, Clone)]
pub struct TrustedRoot {
    der: CertificateDer<'static>,
}

impl TrustedRoot {
    /// From DER bytes. The certificate is parsed now so a bad root fails early.
    pub fn from_der(der: Vec<u8>) -> Result<Self, VerifyError> {
        let root = Self {
            der: CertificateDer::from(der),
        };
        root.anchor()?;
        Ok(root)
    }

    /// From a PEM file's text (the first `CERTIFICATE` block).
    pub fn from_pem(pem: &str) -> Result<Self, VerifyError> {
        let (label, der) = der::pem::decode_vec(pem.trim().as_bytes())
            .map_err(|_| VerifyError::Malformed("root PEM"))?;
        if label != "CERTIFICATE" {
            return Err(VerifyError::Malformed("root PEM is not a CERTIFICATE"));
        }
        Self::from_der(der)
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    fn anchor(&self) -> Result<TrustAnchor<'_>, VerifyError> {
        webpki::anchor_from_trusted_cert(&self.der)
            .map_err(|_| VerifyError::Malformed("root certificate"))
    }
}

/// Verifies `leaf` up to `root` through `intermediates`, every certificate valid at `at_secs`,
/// then `signature` (raw `r ‖ s`, 96 bytes, as COSE carries it) over `message` with the leaf key.
pub(crate) fn verify_leaf_signed(
    root: &TrustedRoot,
    leaf: &[u8],
    intermediates: &[Vec<u8>],
    at_secs: u64,
    message: &[u8],
    signature: &[u8],
) -> Result<(), VerifyError> {
    let leaf_der = CertificateDer::from(leaf);
    let cert = webpki::EndEntityCert::try_from(&leaf_der)
        .map_err(|_| VerifyError::Malformed("certificate"))?;
    let inter: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let anchors = [root.anchor()?];
    cert.verify_for_usage(
        &[ECDSA_P384_SHA384],
        &anchors,
        &inter,
        UnixTime::since_unix_epoch(Duration::from_secs(at_secs)),
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map_err(|e| match e {
        webpki::Error::CertExpired { .. } => VerifyError::Expired,
        webpki::Error::CertNotValidYet { .. } => VerifyError::NotYetValid,
        _ => VerifyError::Chain,
    })?;
    let raw = p384::ecdsa::Signature::from_slice(signature).map_err(|_| VerifyError::Signature)?;
    cert.verify_signature(ECDSA_P384_SHA384, message, raw.to_der().as_bytes())
        .map_err(|_| VerifyError::Signature)
}
