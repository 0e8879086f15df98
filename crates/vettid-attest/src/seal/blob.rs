//! The sealed blob: `magic ‖ version ‖ len(wrapped key) ‖ wrapped key ‖ XChaCha20-Poly1305`,
//! where the AEAD's associated data is the whole header plus the caller's context, so the
//! wrapped key, the version and the context are all authenticated.

use super::SealError;
use vettid_crypto::SecretBytes;
use vettid_crypto::aead::AeadKey;
use zeroize::Zeroizing;

/// The first bytes of every sealed blob.
pub const SEALED_MAGIC: &[u8; 4] = b"VTSB";
/// The blob format version this code writes and reads.
pub const SEALED_VERSION: u8 = 1;
const MAX_WRAPPED: usize = 4096;
const AAD_LABEL: &[u8] = b"vettid/v1/sealed\0";

pub(crate) struct Parsed<'a> {
    header: &'a [u8],
    pub(crate) wrapped_key: &'a [u8],
    ciphertext: &'a [u8],
}

fn aad(header: &[u8], context: &[u8]) -> Vec<u8> {
    [AAD_LABEL, header, context].concat()
}

pub(crate) fn seal(
    key: &SecretBytes<32>,
    wrapped_key: &[u8],
    context: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let len = u16::try_from(wrapped_key.len())
        .ok()
        .filter(|l| usize::from(*l) <= MAX_WRAPPED)
        .ok_or(SealError::KeyService("wrapped key too large".into()))?;
    let mut out = Vec::with_capacity(7 + wrapped_key.len() + plaintext.len() + 40);
    out.extend_from_slice(SEALED_MAGIC);
    out.push(SEALED_VERSION);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(wrapped_key);
    let sealed = AeadKey::from(key.clone()).seal(&aad(&out, context), plaintext);
    out.extend_from_slice(&sealed);
    Ok(out)
}

pub(crate) fn parse(blob: &[u8]) -> Result<Parsed<'_>, SealError> {
    let bad = SealError::Malformed;
    let rest = blob
        .strip_prefix(SEALED_MAGIC)
        .ok_or(bad("not a sealed blob"))?;
    let (&version, rest) = rest.split_first().ok_or(bad("truncated sealed blob"))?;
    if version != SEALED_VERSION {
        return Err(bad("unknown sealed blob version"));
    }
    let (len, rest) = rest
        .split_at_checked(2)
        .ok_or(bad("truncated sealed blob"))?;
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    if len == 0 || len > MAX_WRAPPED {
        return Err(bad("wrapped key length"));
    }
    let (wrapped_key, ciphertext) = rest
        .split_at_checked(len)
        .ok_or(bad("truncated sealed blob"))?;
    Ok(Parsed {
        header: &blob[..7 + len],
        wrapped_key,
        ciphertext,
    })
}

pub(crate) fn open(
    key: &SecretBytes<32>,
    parsed: &Parsed<'_>,
    context: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    AeadKey::from(key.clone())
        .open(&aad(parsed.header, context), parsed.ciphertext)
        .map_err(|_| SealError::DecryptionFailed)
}
