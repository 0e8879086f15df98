//! XChaCha20-Poly1305 with mandatory associated data.
//!
//! Sealed format (version-free on purpose: callers version their own containers):
//!
//! ```text
//! nonce (24 random bytes) ‖ ciphertext ‖ tag (16 bytes)
//! ```
//!
//! 24-byte random nonces make collisions negligible for any number of messages a vault will
//! ever write under one key, so callers never manage counters. The associated data must name
//! what the plaintext *is* (for storage: vault id, object name and version), so that a
//! ciphertext moved to another place fails to open.

use crate::SecretBytes;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

/// Length of the random nonce that starts a sealed message.
pub const NONCE_LEN: usize = 24;
/// Length of the authentication tag that ends a sealed message.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed message adds to its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// A sealed message did not open: wrong key, wrong associated data, truncated or altered bytes.
/// One opaque error for every cause, so that nothing oracle-like leaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("decryption failed")]
pub struct DecryptionFailed;

/// A 256-bit XChaCha20-Poly1305 key. Zeroized on drop, redacted in `Debug`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AeadKey(SecretBytes<32>);

impl From<SecretBytes<32>> for AeadKey {
    fn from(key: SecretBytes<32>) -> Self {
        Self(key)
    }
}

impl AeadKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(SecretBytes::random())
    }

    /// The raw key bytes, for wrapping under another key. Treat as secret.
    pub fn expose(&self) -> &[u8; 32] {
        self.0.expose()
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&chacha20poly1305::Key::from(*self.0.expose()))
    }

    /// Encrypts `plaintext` bound to `aad` under a fresh random nonce.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = crate::random_array();
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .cipher()
            .encrypt_inout_detached(&XNonce::from(nonce), aad, out[NONCE_LEN..].as_mut().into())
            // Only fails for messages longer than 256 GiB, which nothing here produces.
            .expect("XChaCha20-Poly1305 message too long");
        out.extend_from_slice(&tag);
        out
    }

    /// As [`Self::open`], decrypting in the caller's buffer instead of a copy (for large
    /// messages). On failure the buffer's contents are unspecified but it is zeroized on drop.
    pub fn open_owned(
        &self,
        aad: &[u8],
        sealed: Vec<u8>,
    ) -> Result<Zeroizing<Vec<u8>>, DecryptionFailed> {
        let mut buf = Zeroizing::new(sealed);
        if buf.len() < OVERHEAD {
            return Err(DecryptionFailed);
        }
        let nonce = XNonce::try_from(&buf[..NONCE_LEN]).map_err(|_| DecryptionFailed)?;
        let tag_at = buf.len() - TAG_LEN;
        let tag = Tag::try_from(&buf[tag_at..]).map_err(|_| DecryptionFailed)?;
        self.cipher()
            .decrypt_inout_detached(&nonce, aad, buf[NONCE_LEN..tag_at].as_mut().into(), &tag)
            .map_err(|_| DecryptionFailed)?;
        buf.truncate(tag_at);
        buf.drain(..NONCE_LEN);
        Ok(buf)
    }

    /// Decrypts a message made by [`Self::seal`] with the same key and associated data.
    /// The plaintext is zeroized when the returned buffer drops.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, DecryptionFailed> {
        if sealed.len() < OVERHEAD {
            return Err(DecryptionFailed);
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| DecryptionFailed)?;
        let tag = Tag::try_from(tag).map_err(|_| DecryptionFailed)?;
        let mut buf = Zeroizing::new(ciphertext.to_vec());
        self.cipher()
            .decrypt_inout_detached(&nonce, aad, buf.as_mut_slice().into(), &tag)
            .map_err(|_| DecryptionFailed)?;
        Ok(buf)
    }
}
