//! STREAM (Hoang, Reyhanitabar, Rogaway, Vizár 2015): a long message as a sequence of
//! XChaCha20-Poly1305 chunks whose nonces are `prefix ‖ counter (32-bit big-endian) ‖
//! last-chunk flag` (RustCrypto's `aead-stream`, `StreamBE32`). A chunk moved to another
//! position fails (its counter differs), the last chunk is marked (so a stream cut short, or
//! one with chunks after its last, fails), and every chunk carries the same associated data
//! (so chunks of another stream, under another key or header, fail).

use crate::aead::{AeadKey, DecryptionFailed};
use aead_stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{KeyInit, Payload};
use zeroize::Zeroizing;

/// Bytes of the random nonce prefix each stream starts from (24 − 4 − 1).
pub const PREFIX_LEN: usize = 19;

/// Seals one stream, chunk by chunk, in order.
pub struct StreamSealer {
    inner: EncryptorBE32<XChaCha20Poly1305>,
    aad: Vec<u8>,
}

/// The stream is longer than 2³² − 1 chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stream too long")]
pub struct StreamTooLong;

impl StreamSealer {
    /// A stream under `key` from nonce `prefix` (random, never reused under `key`), every
    /// chunk bound to `aad`.
    pub fn new(key: &AeadKey, prefix: &[u8; PREFIX_LEN], aad: &[u8]) -> StreamSealer {
        let cipher = XChaCha20Poly1305::new(&chacha20poly1305::Key::from(*key.expose()));
        StreamSealer {
            inner: EncryptorBE32::from_aead(cipher, prefix.into()),
            aad: aad.to_vec(),
        }
    }

    /// Seals the next chunk (not the last).
    pub fn next(&mut self, chunk: &[u8]) -> Result<Vec<u8>, StreamTooLong> {
        self.inner
            .encrypt_next(Payload {
                msg: chunk,
                aad: &self.aad,
            })
            .map_err(|_| StreamTooLong)
    }

    /// Seals the last chunk (possibly empty).
    pub fn last(self, chunk: &[u8]) -> Vec<u8> {
        self.inner
            .encrypt_last(Payload {
                msg: chunk,
                aad: &self.aad,
            })
            .expect("XChaCha20-Poly1305 seals any chunk")
    }
}

/// Opens one stream, chunk by chunk, in order.
pub struct StreamOpener {
    inner: DecryptorBE32<XChaCha20Poly1305>,
    aad: Vec<u8>,
}

impl StreamOpener {
    /// The opener of the stream [`StreamSealer::new`] made with the same arguments.
    pub fn new(key: &AeadKey, prefix: &[u8; PREFIX_LEN], aad: &[u8]) -> StreamOpener {
        let cipher = XChaCha20Poly1305::new(&chacha20poly1305::Key::from(*key.expose()));
        StreamOpener {
            inner: DecryptorBE32::from_aead(cipher, prefix.into()),
            aad: aad.to_vec(),
        }
    }

    /// Opens the next chunk, which must not be the last.
    pub fn next(&mut self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, DecryptionFailed> {
        self.inner
            .decrypt_next(Payload {
                msg: sealed,
                aad: &self.aad,
            })
            .map(Zeroizing::new)
            .map_err(|_| DecryptionFailed)
    }

    /// Opens the last chunk, which must be marked last.
    pub fn last(self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, DecryptionFailed> {
        self.inner
            .decrypt_last(Payload {
                msg: sealed,
                aad: &self.aad,
            })
            .map(Zeroizing::new)
            .map_err(|_| DecryptionFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(
        key: &AeadKey,
        prefix: &[u8; PREFIX_LEN],
        aad: &[u8],
        chunks: &[&[u8]],
    ) -> Vec<Vec<u8>> {
        let mut s = StreamSealer::new(key, prefix, aad);
        let (last, rest) = chunks.split_last().unwrap();
        let mut out: Vec<Vec<u8>> = rest.iter().map(|c| s.next(c).unwrap()).collect();
        out.push(s.last(last));
        out
    }

    fn open(
        key: &AeadKey,
        prefix: &[u8; PREFIX_LEN],
        aad: &[u8],
        sealed: &[Vec<u8>],
    ) -> Result<Vec<u8>, DecryptionFailed> {
        let mut o = StreamOpener::new(key, prefix, aad);
        let (last, rest) = sealed.split_last().ok_or(DecryptionFailed)?;
        let mut out = Vec::new();
        for c in rest {
            out.extend_from_slice(&o.next(c)?);
        }
        out.extend_from_slice(&o.last(last)?);
        Ok(out)
    }

    #[test]
    fn truncation_reordering_trailing_chunks_and_swaps_fail() {
        let key = AeadKey::generate();
        let prefix = [3u8; PREFIX_LEN];
        let chunks: [&[u8]; 3] = [b"one", b"two", b"three"];
        let sealed = seal(&key, &prefix, b"h", &chunks);
        assert_eq!(open(&key, &prefix, b"h", &sealed).unwrap(), b"onetwothree");
        // Cut short: the new last chunk is not marked last.
        assert!(open(&key, &prefix, b"h", &sealed[..2]).is_err());
        // Reordered.
        let swapped = vec![sealed[1].clone(), sealed[0].clone(), sealed[2].clone()];
        assert!(open(&key, &prefix, b"h", &swapped).is_err());
        // A chunk after the last.
        let mut longer = sealed.clone();
        longer.push(sealed[0].clone());
        assert!(open(&key, &prefix, b"h", &longer).is_err());
        // Another header, another key, another prefix.
        assert!(open(&key, &prefix, b"x", &sealed).is_err());
        assert!(open(&AeadKey::generate(), &prefix, b"h", &sealed).is_err());
        assert!(open(&key, &[4; PREFIX_LEN], b"h", &sealed).is_err());
        // A chunk of another stream at the same position.
        let other = seal(&key, &[5; PREFIX_LEN], b"h", &chunks);
        let mixed = vec![sealed[0].clone(), other[1].clone(), sealed[2].clone()];
        assert!(open(&key, &prefix, b"h", &mixed).is_err());
        // A flipped byte.
        let mut flipped = sealed.clone();
        flipped[1][0] ^= 1;
        assert!(open(&key, &prefix, b"h", &flipped).is_err());
    }
}
