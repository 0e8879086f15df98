//! Measurements (PCR0–2) and what an enclave asks to have bound into a document.

use sha2::{Digest, Sha384};

/// PCR1 of the dev platform: stands in for Nitro's kernel and boot ramdisk measurement.
const DEV_PLATFORM: &[u8] = b"vettid dev platform v1";

/// The three measurements a PCR manifest lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    /// PCR0: the enclave image (dev: SHA-384 of the enclave binary).
    pub pcr0: [u8; 48],
    /// PCR1: the platform (dev: a constant for the dev platform).
    pub pcr1: [u8; 48],
    /// PCR2: the application configuration (dev: SHA-384 of the enclave's configuration).
    pub pcr2: [u8; 48],
}

impl Measurement {
    /// The dev measurement of an enclave binary and its configuration bytes.
    pub fn of_enclave(binary: &[u8], config: &[u8]) -> Self {
        let h = |b: &[u8]| -> [u8; 48] { Sha384::digest(b).into() };
        Self {
            pcr0: h(binary),
            pcr1: h(DEV_PLATFORM),
            pcr2: h(config),
        }
    }

    /// As `(index, value)` pairs for [`crate::Policy::pcrs`].
    pub fn as_pcrs(&self) -> Vec<(u8, Vec<u8>)> {
        vec![
            (0, self.pcr0.to_vec()),
            (1, self.pcr1.to_vec()),
            (2, self.pcr2.to_vec()),
        ]
    }
}

/// What the enclave asks the attestor to bind into a document (all optional, as on Nitro).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttestRequest {
    /// The verifier's nonce (≤ 512 bytes).
    pub nonce: Option<Vec<u8>>,
    /// A public key to bind (≤ 1024 bytes).
    pub public_key: Option<Vec<u8>>,
    /// Application data to bind (≤ 512 bytes).
    pub user_data: Option<Vec<u8>>,
}
