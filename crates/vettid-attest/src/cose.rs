//! COSE_Sign1 (RFC 9052) with ES384, tagged (18) or untagged, as the NSM emits it.

use crate::VerifyError;
use coset::{CborSerializable, CoseSign1, TaggedCborSerializable, iana};

/// The parts of a COSE_Sign1 a verifier needs.
pub(crate) struct Sign1 {
    pub(crate) payload: Vec<u8>,
    pub(crate) signature: Vec<u8>,
    /// The `Sig_structure` the signature covers (external AAD empty).
    pub(crate) to_be_signed: Vec<u8>,
}

/// Parses a COSE_Sign1 whose protected header says ES384 and nothing else critical.
pub(crate) fn parse(bytes: &[u8]) -> Result<Sign1, VerifyError> {
    if bytes.len() > crate::doc::limits::DOCUMENT {
        return Err(VerifyError::Malformed("document too large"));
    }
    // Tag 18 (COSE_Sign1) encodes as 0xd2.
    let sign1 = if bytes.first() == Some(&0xd2) {
        CoseSign1::from_tagged_slice(bytes)
    } else {
        CoseSign1::from_slice(bytes)
    }
    .map_err(|_| VerifyError::Malformed("COSE_Sign1"))?;
    let h = &sign1.protected.header;
    if h.alg != Some(coset::Algorithm::Assigned(iana::Algorithm::ES384)) {
        return Err(VerifyError::Malformed("COSE algorithm is not ES384"));
    }
    if !h.crit.is_empty() {
        return Err(VerifyError::Malformed("COSE critical headers"));
    }
    if sign1.signature.len() != 96 {
        return Err(VerifyError::Malformed("COSE signature length"));
    }
    let to_be_signed = sign1.tbs_data(b"");
    let payload = sign1
        .payload
        .ok_or(VerifyError::Malformed("COSE payload missing"))?;
    Ok(Sign1 {
        payload,
        signature: sign1.signature,
        to_be_signed,
    })
}

/// Signs `payload` as an untagged COSE_Sign1 with ES384 (what the NSM returns).
#[cfg(feature = "dev")]
pub(crate) fn sign(payload: Vec<u8>, key: &p384::ecdsa::SigningKey) -> Vec<u8> {
    use p384::ecdsa::signature::Signer;
    let protected = coset::HeaderBuilder::new()
        .algorithm(iana::Algorithm::ES384)
        .build();
    coset::CoseSign1Builder::new()
        .protected(protected)
        .payload(payload)
        .create_signature(b"", |tbs| {
            let sig: p384::ecdsa::Signature = key.sign(tbs);
            sig.to_bytes().to_vec()
        })
        .build()
        .to_vec()
        .expect("encoding a COSE_Sign1 cannot fail")
}
