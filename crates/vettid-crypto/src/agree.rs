//! X25519 key agreement (RFC 7748).
//!
//! A peer's public key is never validated on its own (every 32-byte string is a valid input to
//! X25519); instead the *result* is checked: if it is all zeros the peer sent a low-order point
//! and the exchange contributed nothing, so [`ExchangeSecret::agree`] refuses it.

use crate::SecretBytes;
use core::fmt;

/// The peer's public key was a low-order point: the shared secret would be all zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("X25519 key agreement was not contributory (low-order public key)")]
pub struct NonContributory;

/// A long-lived X25519 private key. Zeroized on drop; `Debug` prints only the public half.
#[derive(Clone)]
pub struct ExchangeSecret(x25519_dalek::StaticSecret);

impl ExchangeSecret {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        Self::from_bytes(&SecretBytes::random())
    }

    /// The key with these 32 bytes (clamped on use, as RFC 7748 §5 says).
    pub fn from_bytes(bytes: &SecretBytes<32>) -> Self {
        Self(x25519_dalek::StaticSecret::from(*bytes.expose()))
    }

    /// The 32 private bytes, for sealing. Treat as secret.
    pub fn to_bytes(&self) -> SecretBytes<32> {
        SecretBytes::from_array(self.0.to_bytes())
    }

    /// The public half.
    pub fn public_key(&self) -> ExchangePublic {
        ExchangePublic(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }

    /// X25519 with `their` public key. Refuses a non-contributory (all-zero) result.
    pub fn agree(&self, their: &ExchangePublic) -> Result<SecretBytes<32>, NonContributory> {
        let shared = self
            .0
            .diffie_hellman(&x25519_dalek::PublicKey::from(their.0));
        if !shared.was_contributory() {
            return Err(NonContributory);
        }
        Ok(SecretBytes::from_array(shared.to_bytes()))
    }
}

impl fmt::Debug for ExchangeSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeSecret")
            .field("public", &self.public_key())
            .finish_non_exhaustive()
    }
}

/// An X25519 public key (a u-coordinate).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExchangePublic([u8; 32]);

impl ExchangePublic {
    /// Wraps 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }
}

impl fmt::Debug for ExchangePublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExchangePublic({})", crate::sign::hex_lower(&self.0))
    }
}
