//! The PCR manifest: which enclave measurements the app may trust, signed with Ed25519.
//!
//! ```json
//! { "format": "vettid-pcr-manifest/v1",
//!   "payload": "{\"serial\":3,\"issued_at\":…,\"sets\":[{\"id\":…,\"pcr0\":…,…}]}",
//!   "signature": "<hex Ed25519 over the payload's exact bytes>" }
//! ```
//!
//! The signature covers the exact bytes of `payload` (a JSON text inside a JSON string), so
//! no re-serialisation can change what was signed. The verifier pins the public key; it
//! checks the signature before it parses the payload, and then parses strictly (unknown
//! fields refused, every size bounded). `serial` is monotonic: a client remembers the highest
//! it has seen and refuses an older manifest, so the operator cannot roll the list back.

use crate::Measurement;
use serde::{Deserialize, Serialize};
use vettid_crypto::sign::{Signature, SigningKey, VerifyingKey};

/// The format tag of the outer document.
pub const FORMAT: &str = "vettid-pcr-manifest/v1";
/// Most measurement sets in one manifest.
pub const MAX_SETS: usize = 64;
/// Largest manifest document accepted (bytes).
pub const MAX_LEN: usize = 64 * 1024;

/// Why a manifest was refused or a measurement is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON of the expected shape, a field out of bounds, or too large.
    #[error("malformed PCR manifest: {0}")]
    Malformed(String),
    /// The signature does not verify with the pinned key.
    #[error("PCR manifest signature does not verify with the pinned key")]
    Signature,
    /// The manifest's serial is lower than one this client has already seen.
    #[error("PCR manifest serial {got} is older than {seen} already seen")]
    RolledBack {
        /// The serial of the offered manifest.
        got: u64,
        /// The highest serial seen before.
        seen: u64,
    },
    /// No set in the manifest matches the measurement at the given time.
    #[error("measurement is not in the PCR manifest (or not valid at this time)")]
    Untrusted,
}

fn hex48<S: serde::Serializer>(v: &[u8; 48], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

fn de_hex48<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; 48], D::Error> {
    let s = <&str>::deserialize(d)?;
    let mut out = [0u8; 48];
    hex::decode_to_slice(s, &mut out).map_err(serde::de::Error::custom)?;
    Ok(out)
}

/// One trusted enclave release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcrSet {
    /// A name for the release, e.g. `2026-11-28-v1` (1–64 characters).
    pub id: String,
    /// PCR0 (hex, 48 bytes).
    #[serde(serialize_with = "hex48", deserialize_with = "de_hex48")]
    pub pcr0: [u8; 48],
    /// PCR1 (hex, 48 bytes).
    #[serde(serialize_with = "hex48", deserialize_with = "de_hex48")]
    pub pcr1: [u8; 48],
    /// PCR2 (hex, 48 bytes).
    #[serde(serialize_with = "hex48", deserialize_with = "de_hex48")]
    pub pcr2: [u8; 48],
    /// Trusted from this time (Unix seconds, inclusive).
    pub valid_from: u64,
    /// Trusted until this time (Unix seconds, exclusive).
    pub valid_until: u64,
    /// The release new enrollments should expect.
    pub current: bool,
}

impl PcrSet {
    /// A set for `measurement`, trusted during `[valid_from, valid_until)`.
    pub fn new(
        id: &str,
        m: &Measurement,
        valid_from: u64,
        valid_until: u64,
        current: bool,
    ) -> Self {
        Self {
            id: id.to_owned(),
            pcr0: m.pcr0,
            pcr1: m.pcr1,
            pcr2: m.pcr2,
            valid_from,
            valid_until,
            current,
        }
    }

    fn matches(&self, pcrs: &std::collections::BTreeMap<u8, Vec<u8>>) -> bool {
        let eq = |i: u8, v: &[u8; 48]| pcrs.get(&i).is_some_and(|p| vettid_crypto::ct_eq(p, v));
        eq(0, &self.pcr0) & eq(1, &self.pcr1) & eq(2, &self.pcr2)
    }
}

/// The list of trusted releases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Monotonic: every new manifest has a higher serial.
    pub serial: u64,
    /// When it was signed (Unix seconds).
    pub issued_at: u64,
    /// The trusted releases.
    pub sets: Vec<PcrSet>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    format: String,
    payload: String,
    signature: String,
}

impl Manifest {
    fn check(&self) -> Result<(), ManifestError> {
        let bad = |m: &str| Err(ManifestError::Malformed(m.to_owned()));
        if self.sets.is_empty() || self.sets.len() > MAX_SETS {
            return bad("sets must number 1 to 64");
        }
        for s in &self.sets {
            if s.id.is_empty() || s.id.len() > 64 || s.id.chars().any(char::is_control) {
                return bad("set id must be 1 to 64 printable characters");
            }
            if s.valid_from >= s.valid_until {
                return bad("valid_from must be before valid_until");
            }
        }
        Ok(())
    }

    /// Signs the manifest, giving the JSON document to publish.
    pub fn sign(&self, key: &SigningKey) -> Result<String, ManifestError> {
        self.check()?;
        let payload = serde_json::to_string(self).expect("serialising a manifest cannot fail");
        let signature = hex::encode(key.sign(payload.as_bytes()).to_bytes());
        let env = Envelope {
            format: FORMAT.to_owned(),
            payload,
            signature,
        };
        Ok(serde_json::to_string_pretty(&env).expect("serialising an envelope cannot fail"))
    }

    /// Verifies `document` with the pinned `key`, then parses it strictly. `seen_serial` is the
    /// highest serial this client has accepted before (0 if none); an older one is refused.
    pub fn verify(
        document: &str,
        key: &VerifyingKey,
        seen_serial: u64,
    ) -> Result<Self, ManifestError> {
        let malformed = |e: &dyn std::fmt::Display| ManifestError::Malformed(e.to_string());
        if document.len() > MAX_LEN {
            return Err(ManifestError::Malformed("manifest too large".into()));
        }
        let env: Envelope = serde_json::from_str(document).map_err(|e| malformed(&e))?;
        if env.format != FORMAT {
            return Err(ManifestError::Malformed(format!(
                "unknown format {:?}",
                env.format
            )));
        }
        let mut sig = [0u8; 64];
        hex::decode_to_slice(&env.signature, &mut sig).map_err(|_| ManifestError::Signature)?;
        key.verify(env.payload.as_bytes(), &Signature::from_bytes(sig))
            .map_err(|_| ManifestError::Signature)?;
        let manifest: Manifest = serde_json::from_str(&env.payload).map_err(|e| malformed(&e))?;
        manifest.check()?;
        if manifest.serial < seen_serial {
            return Err(ManifestError::RolledBack {
                got: manifest.serial,
                seen: seen_serial,
            });
        }
        Ok(manifest)
    }

    /// The set that trusts these PCRs at `at_secs`, if any.
    pub fn trusts(
        &self,
        pcrs: &std::collections::BTreeMap<u8, Vec<u8>>,
        at_secs: u64,
    ) -> Result<&PcrSet, ManifestError> {
        self.sets
            .iter()
            .find(|s| s.matches(pcrs) && (s.valid_from..s.valid_until).contains(&at_secs))
            .ok_or(ManifestError::Untrusted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn m(tag: &[u8]) -> Measurement {
        Measurement::of_enclave(tag, b"cfg")
    }

    fn manifest(serial: u64) -> Manifest {
        Manifest {
            serial,
            issued_at: 1000,
            sets: vec![
                PcrSet::new("old", &m(b"v1"), 0, 2000, false),
                PcrSet::new("new", &m(b"v2"), 1000, 10_000, true),
            ],
        }
    }

    fn pcrs(m: &Measurement) -> BTreeMap<u8, Vec<u8>> {
        m.as_pcrs().into_iter().collect()
    }

    #[test]
    fn signed_manifest_verifies_and_trusts_its_sets_in_their_windows() {
        let key = SigningKey::generate();
        let doc = manifest(3).sign(&key).unwrap();
        let got = Manifest::verify(&doc, &key.verifying_key(), 0).unwrap();
        assert_eq!(got, manifest(3));
        assert_eq!(got.trusts(&pcrs(&m(b"v1")), 1500).unwrap().id, "old");
        assert_eq!(
            got.trusts(&pcrs(&m(b"v1")), 2000),
            Err(ManifestError::Untrusted)
        );
        assert_eq!(got.trusts(&pcrs(&m(b"v2")), 9999).unwrap().id, "new");
        assert_eq!(
            got.trusts(&pcrs(&m(b"v3")), 1500),
            Err(ManifestError::Untrusted)
        );
        let mut partial = pcrs(&m(b"v2"));
        partial.remove(&2);
        assert_eq!(got.trusts(&partial, 1500), Err(ManifestError::Untrusted));
    }

    #[test]
    fn wrong_key_tampering_and_rollback_are_refused() {
        let key = SigningKey::generate();
        let doc = manifest(3).sign(&key).unwrap();
        let other = SigningKey::generate().verifying_key();
        assert_eq!(
            Manifest::verify(&doc, &other, 0),
            Err(ManifestError::Signature)
        );
        let tampered = doc.replace("\\\"serial\\\":3", "\\\"serial\\\":4");
        assert_ne!(tampered, doc);
        assert_eq!(
            Manifest::verify(&tampered, &key.verifying_key(), 0),
            Err(ManifestError::Signature)
        );
        assert_eq!(
            Manifest::verify(&doc, &key.verifying_key(), 4),
            Err(ManifestError::RolledBack { got: 3, seen: 4 })
        );
    }

    #[test]
    fn malformed_manifests_are_refused_with_a_reason() {
        let key = SigningKey::generate();
        let vk = key.verifying_key();
        for bad in [
            "",
            "{}",
            "[]",
            "{\"format\":\"x\",\"payload\":\"{}\",\"signature\":\"00\"}",
        ] {
            assert!(
                matches!(
                    Manifest::verify(bad, &vk, 0),
                    Err(ManifestError::Malformed(_) | ManifestError::Signature)
                ),
                "{bad}"
            );
        }
        let mut empty = manifest(1);
        empty.sets.clear();
        assert!(matches!(empty.sign(&key), Err(ManifestError::Malformed(_))));
        let mut backwards = manifest(1);
        backwards.sets[0].valid_until = 0;
        assert!(matches!(
            backwards.sign(&key),
            Err(ManifestError::Malformed(_))
        ));
        // Signed, but with an unknown field inside the payload: refused after the signature.
        let payload = "{\"serial\":1,\"issued_at\":1,\"sets\":[],\"extra\":1}";
        let doc = serde_json::json!({"format": FORMAT, "payload": payload,
            "signature": hex::encode(key.sign(payload.as_bytes()).to_bytes())})
        .to_string();
        assert!(matches!(
            Manifest::verify(&doc, &vk, 0),
            Err(ManifestError::Malformed(_))
        ));
    }
}
