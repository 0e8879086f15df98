//! The attestation document: the CBOR map inside the COSE_Sign1, as AWS Nitro defines it.
//!
//! ```text
//! { module_id: tstr, digest: "SHA384", timestamp: uint (ms), pcrs: { uint => bstr },
//!   certificate: bstr (DER), cabundle: [+ bstr (DER)], public_key: bstr / nil,
//!   user_data: bstr / nil, nonce: bstr / nil }
//! ```
//!
//! Decoding is strict: every field is present once with its type and within [`limits`], and no
//! other key is accepted. The limits are the NSM's own (AWS, "Nitro Enclaves attestation
//! document" specification), so a real document always fits and nothing larger is parsed.

use crate::VerifyError;
use ciborium::Value;
use std::collections::BTreeMap;

/// Bounds on every field, from the AWS NSM specification.
pub mod limits {
    /// Largest COSE_Sign1 accepted as input (bytes).
    pub const DOCUMENT: usize = 16 * 1024;
    /// module_id length (bytes).
    pub const MODULE_ID: usize = 256;
    /// Highest PCR index + 1, and the most PCRs in a document.
    pub const PCRS: usize = 32;
    /// A certificate (DER bytes).
    pub const CERTIFICATE: usize = 1024;
    /// Certificates in `cabundle`.
    pub const CABUNDLE: usize = 8;
    /// `public_key` (bytes).
    pub const PUBLIC_KEY: usize = 1024;
    /// `user_data` (bytes).
    pub const USER_DATA: usize = 512;
    /// `nonce` (bytes).
    pub const NONCE: usize = 512;
    /// Length of one SHA-384 PCR.
    pub const PCR_LEN: usize = 48;
}

/// A decoded attestation document. Nothing in it is trusted until [`crate::verify`] says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationDoc {
    /// The enclave's identity as the hypervisor names it.
    pub module_id: String,
    /// Milliseconds since the Unix epoch, as stamped by the NSM.
    pub timestamp_ms: u64,
    /// Platform configuration registers, index → 48-byte SHA-384 measurement.
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// The leaf certificate (DER) whose key signed the document.
    pub certificate: Vec<u8>,
    /// The issuing chain (DER), root first, as Nitro orders it.
    pub cabundle: Vec<Vec<u8>>,
    /// A public key the enclave chose to bind (e.g. its Noise static key, or a KMS recipient key).
    pub public_key: Option<Vec<u8>>,
    /// Application data the enclave chose to bind.
    pub user_data: Option<Vec<u8>>,
    /// The verifier's freshness nonce, echoed.
    pub nonce: Option<Vec<u8>>,
}

fn malformed(what: &'static str) -> VerifyError {
    VerifyError::Malformed(what)
}

fn bytes(v: Value, max: usize, what: &'static str) -> Result<Vec<u8>, VerifyError> {
    match v {
        Value::Bytes(b) if !b.is_empty() && b.len() <= max => Ok(b),
        _ => Err(malformed(what)),
    }
}

fn optional_bytes(
    v: Value,
    max: usize,
    what: &'static str,
) -> Result<Option<Vec<u8>>, VerifyError> {
    match v {
        Value::Null => Ok(None),
        Value::Bytes(b) if b.len() <= max => Ok(Some(b)),
        _ => Err(malformed(what)),
    }
}

impl AttestationDoc {
    /// Decodes the COSE payload. Any deviation from the shape above is
    /// [`VerifyError::Malformed`] naming the field.
    pub fn from_cbor(payload: &[u8]) -> Result<Self, VerifyError> {
        if payload.len() > limits::DOCUMENT {
            return Err(malformed("document too large"));
        }
        let value: Value =
            ciborium::from_reader(payload).map_err(|_| malformed("payload is not CBOR"))?;
        let Value::Map(entries) = value else {
            return Err(malformed("payload is not a map"));
        };
        let mut fields: BTreeMap<String, Value> = BTreeMap::new();
        for (k, v) in entries {
            let Value::Text(k) = k else {
                return Err(malformed("non-text key"));
            };
            if fields.insert(k, v).is_some() {
                return Err(malformed("duplicate key"));
            }
        }
        let mut take = |name: &'static str| fields.remove(name).ok_or(malformed(name));

        let module_id = match take("module_id")? {
            Value::Text(s) if !s.is_empty() && s.len() <= limits::MODULE_ID => s,
            _ => return Err(malformed("module_id")),
        };
        match take("digest")? {
            Value::Text(s) if s == "SHA384" => {}
            _ => return Err(malformed("digest")),
        }
        let timestamp_ms = match take("timestamp")? {
            Value::Integer(i) => u64::try_from(i)
                .ok()
                .filter(|t| *t > 0)
                .ok_or(malformed("timestamp"))?,
            _ => return Err(malformed("timestamp")),
        };
        let pcrs = match take("pcrs")? {
            Value::Map(m) if !m.is_empty() && m.len() <= limits::PCRS => {
                let mut pcrs = BTreeMap::new();
                for (k, v) in m {
                    let index = match k {
                        Value::Integer(i) => u8::try_from(i)
                            .ok()
                            .filter(|i| usize::from(*i) < limits::PCRS)
                            .ok_or(malformed("pcr index"))?,
                        _ => return Err(malformed("pcr index")),
                    };
                    let value = match v {
                        Value::Bytes(b) if b.len() == limits::PCR_LEN => b,
                        _ => return Err(malformed("pcr value")),
                    };
                    if pcrs.insert(index, value).is_some() {
                        return Err(malformed("duplicate pcr"));
                    }
                }
                pcrs
            }
            _ => return Err(malformed("pcrs")),
        };
        let certificate = bytes(take("certificate")?, limits::CERTIFICATE, "certificate")?;
        let cabundle = match take("cabundle")? {
            Value::Array(a) if !a.is_empty() && a.len() <= limits::CABUNDLE => a
                .into_iter()
                .map(|c| bytes(c, limits::CERTIFICATE, "cabundle entry"))
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(malformed("cabundle")),
        };
        let public_key = optional_bytes(take("public_key")?, limits::PUBLIC_KEY, "public_key")?;
        let user_data = optional_bytes(take("user_data")?, limits::USER_DATA, "user_data")?;
        let nonce = optional_bytes(take("nonce")?, limits::NONCE, "nonce")?;
        if !fields.is_empty() {
            return Err(malformed("unknown key"));
        }
        Ok(Self {
            module_id,
            timestamp_ms,
            pcrs,
            certificate,
            cabundle,
            public_key,
            user_data,
            nonce,
        })
    }

    /// Encodes the document as the NSM does (the map in the order above).
    pub fn to_cbor(&self) -> Vec<u8> {
        let opt = |b: &Option<Vec<u8>>| b.clone().map_or(Value::Null, Value::Bytes);
        let map = Value::Map(vec![
            (
                Value::Text("module_id".into()),
                Value::Text(self.module_id.clone()),
            ),
            (Value::Text("digest".into()), Value::Text("SHA384".into())),
            (
                Value::Text("timestamp".into()),
                Value::Integer(self.timestamp_ms.into()),
            ),
            (
                Value::Text("pcrs".into()),
                Value::Map(
                    self.pcrs
                        .iter()
                        .map(|(i, v)| (Value::Integer((*i).into()), Value::Bytes(v.clone())))
                        .collect(),
                ),
            ),
            (
                Value::Text("certificate".into()),
                Value::Bytes(self.certificate.clone()),
            ),
            (
                Value::Text("cabundle".into()),
                Value::Array(self.cabundle.iter().cloned().map(Value::Bytes).collect()),
            ),
            (Value::Text("public_key".into()), opt(&self.public_key)),
            (Value::Text("user_data".into()), opt(&self.user_data)),
            (Value::Text("nonce".into()), opt(&self.nonce)),
        ]);
        let mut out = Vec::new();
        ciborium::into_writer(&map, &mut out).expect("writing CBOR to a Vec cannot fail");
        out
    }
}
