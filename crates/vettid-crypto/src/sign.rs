//! Ed25519 signatures (RFC 8032) with strict verification.
//!
//! Verification always uses [`ed25519_dalek::VerifyingKey::verify_strict`]: signatures whose `R`
//! or public key has small order, non-canonical encodings of `R`, and scalars `S ≥ L`
//! (malleated signatures) are refused. So one message and key admit exactly one valid
//! signature encoding, which later protocols (signed state versions, ballots) rely on.

use core::fmt;

/// Length of an encoded public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an encoded signature.
pub const SIGNATURE_LEN: usize = 64;

/// A signature did not verify, or a public key is not acceptable. Deliberately carries no
/// detail: a verifier learns nothing an attacker could use to steer a forgery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid Ed25519 signature or public key")]
pub struct SignatureError;

/// An Ed25519 private key. Zeroized on drop; `Debug` prints only the public half.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        Self::from_seed(&crate::SecretBytes::random())
    }

    /// The key whose RFC 8032 32-byte seed ("secret key") is `seed`.
    pub fn from_seed(seed: &crate::SecretBytes<32>) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(seed.expose()))
    }

    /// The 32-byte seed, for sealing. Treat as secret.
    pub fn to_seed(&self) -> crate::SecretBytes<32> {
        crate::SecretBytes::from_array(self.0.to_bytes())
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.verifying_key())
    }

    /// Signs `message` (deterministic, RFC 8032 PureEdDSA).
    pub fn sign(&self, message: &[u8]) -> Signature {
        use ed25519_dalek::Signer;
        Signature(self.0.sign(message).to_bytes())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.verifying_key())
            .finish_non_exhaustive()
    }
}

/// An Ed25519 public key that decodes to a curve point of large order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyingKey(ed25519_dalek::VerifyingKey);

impl VerifyingKey {
    /// Decodes a public key, refusing encodings that are not on the curve and small-order
    /// ("weak") points, for which signatures prove nothing.
    pub fn from_bytes(bytes: &[u8; PUBLIC_KEY_LEN]) -> Result<Self, SignatureError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(bytes).map_err(|_| SignatureError)?;
        if key.is_weak() {
            return Err(SignatureError);
        }
        Ok(Self(key))
    }

    /// Decodes a public key from a slice of any length (wrong lengths are an error).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, SignatureError> {
        let bytes: &[u8; PUBLIC_KEY_LEN] = bytes.try_into().map_err(|_| SignatureError)?;
        Self::from_bytes(bytes)
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.0.to_bytes()
    }

    /// Checks `signature` over `message` strictly (see the module documentation).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0
            .verify_strict(message, &sig)
            .map_err(|_| SignatureError)
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({})", hex_lower(&self.to_bytes()))
    }
}

/// A 64-byte Ed25519 signature (`R ‖ S`). Parsing does not validate it; [`VerifyingKey::verify`] does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; SIGNATURE_LEN]);

impl Signature {
    /// Wraps 64 bytes.
    pub fn from_bytes(bytes: [u8; SIGNATURE_LEN]) -> Self {
        Self(bytes)
    }

    /// Wraps a slice that must be exactly 64 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, SignatureError> {
        bytes.try_into().map(Self).map_err(|_| SignatureError)
    }

    /// The 64-byte encoding.
    pub fn to_bytes(&self) -> [u8; SIGNATURE_LEN] {
        self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex_lower(&self.0))
    }
}

pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
