//! Bearer secrets: tokens and one-time codes.
//!
//! Every secret is drawn from a CSPRNG, handed to its holder once, and stored only as its
//! **keyed** digest: HMAC-SHA256 under the server's [`DigestKey`] (`<data>/secrets.key`, 0600).
//! A short code (an enrollment code has ~40 bits) stored as a plain hash could be inverted by
//! whoever reads the database within its lifetime; without the key the stored digests say
//! nothing. A presented secret is checked by looking its digest up, so no comparison of secret
//! bytes happens in application code. [`Secret`] prints as `[REDACTED]` in `Debug`, so a secret
//! cannot reach a log by accident.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;
use sha2::Sha256;
use std::fmt;

/// A token or code in clear, as handed to (or received from) its holder.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    /// 32 random bytes, base64url without padding (43 characters).
    pub(crate) fn random_token() -> Secret {
        Secret(URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
    }

    /// Wraps a secret received from a client.
    pub(crate) fn from_client(s: String) -> Secret {
        Secret(s)
    }

    /// The clear text: only to answer the holder or to write their mail.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

/// The server's key for the digests of stored secrets.
pub(crate) struct DigestKey(zeroize::Zeroizing<[u8; 32]>);

impl DigestKey {
    /// Loads `<dir>/secrets.key`, or creates it (32 random bytes, mode 0600).
    pub(crate) fn load_or_create(dir: &std::path::Path) -> std::io::Result<DigestKey> {
        let path = dir.join("secrets.key");
        match std::fs::read(&path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    std::io::Error::other(format!("{} is not a 32-byte key", path.display()))
                })?;
                Ok(DigestKey(zeroize::Zeroizing::new(key)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = random_bytes::<32>();
                crate::mail::write_atomically(dir, "secrets.key", &key)?;
                Ok(DigestKey(zeroize::Zeroizing::new(key)))
            }
            Err(e) => Err(e),
        }
    }

    /// A key for tests.
    #[cfg(test)]
    pub(crate) fn fixed(byte: u8) -> DigestKey {
        DigestKey(zeroize::Zeroizing::new([byte; 32]))
    }

    /// Lowercase hex HMAC-SHA256 of `secret`: the only form in which secrets are stored.
    pub(crate) fn digest(&self, secret: &Secret) -> String {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&self.0[..]).expect("any key length");
        mac.update(b"vettid/v1/stored-secret\0");
        mac.update(secret.0.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// `N` bytes from the thread-local CSPRNG (ChaCha, seeded and reseeded from the OS).
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::rng().fill_bytes(&mut out);
    out
}

/// A random UUID version 4, lowercase and hyphenated (a valid NATS subject token).
pub(crate) fn new_uuid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Whether `s` is a lowercase hyphenated UUID (any version): the shape of member ids.
pub(crate) fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => matches!(c, '0'..='9' | 'a'..='f'),
        })
}

/// Crockford's base32 alphabet: no I, L, O or U, so a code read aloud or copied by hand
/// survives.
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A fresh enrollment code `XXXX-XXXX` (40 bits) and its normalized form (no dash), which is
/// what gets hashed.
pub(crate) fn enrollment_code() -> (Secret, Secret) {
    let raw = random_bytes::<8>();
    let chars: String = raw
        .iter()
        .map(|b| CODE_ALPHABET[usize::from(b & 31)] as char)
        .collect();
    let shown = format!("{}-{}", &chars[..4], &chars[4..]);
    (Secret(shown), Secret(chars))
}

/// Normalizes a typed enrollment code: case-insensitive, the dash (and spaces) optional, and
/// the letters Crockford maps to digits (`I`/`L` → `1`, `O` → `0`) accepted. `None` if it is
/// not 8 symbols of the alphabet.
pub(crate) fn normalize_code(input: &str) -> Option<Secret> {
    if input.len() > 16 {
        return None;
    }
    let mut out = String::with_capacity(8);
    for c in input.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'I' | 'L' => '1',
            'O' => '0',
            c => c,
        };
        if !c.is_ascii() || !CODE_ALPHABET.contains(&(c as u8)) {
            return None;
        }
        out.push(c);
    }
    (out.len() == 8).then_some(Secret(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_43_chars_of_base64url_and_distinct() {
        let a = Secret::random_token();
        let b = Secret::random_token();
        assert_eq!(a.expose().len(), 43);
        assert!(
            a.expose()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(a, b);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = Secret::from_client("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn stored_digests_need_the_key() {
        let code = Secret::from_client("ABCD-EFGH".into());
        let (a, b) = (DigestKey::fixed(1), DigestKey::fixed(2));
        assert_eq!(a.digest(&code), a.digest(&code));
        assert_eq!(a.digest(&code).len(), 64);
        assert_ne!(
            a.digest(&code),
            b.digest(&code),
            "another key, another digest"
        );
        // Not the plain hash an earlier version stored (invertible for a ~40-bit code).
        use sha2::Digest;
        assert_ne!(
            a.digest(&code),
            hex::encode(sha2::Sha256::digest(code.expose().as_bytes()))
        );
    }

    #[test]
    fn uuids_are_version_4_lowercase() {
        for _ in 0..100 {
            let u = new_uuid();
            assert!(is_uuid(&u), "{u}");
            assert_eq!(&u[14..15], "4");
            assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
        }
        assert!(!is_uuid("0E1B2C3D-0000-4000-8000-000000000000"));
        assert!(!is_uuid("not-a-uuid"));
    }

    #[test]
    fn codes_normalize_case_dash_and_lookalikes() {
        let (shown, norm) = enrollment_code();
        assert_eq!(shown.expose().len(), 9);
        assert_eq!(normalize_code(shown.expose()).unwrap(), norm);
        assert_eq!(
            normalize_code(&shown.expose().to_lowercase()).unwrap(),
            norm
        );
        assert_eq!(normalize_code(norm.expose()).unwrap(), norm);
        assert_eq!(normalize_code("abcd-o1il").unwrap().expose(), "ABCD0111");
        assert!(normalize_code("ABCD-EFG").is_none());
        assert!(normalize_code("ABCD-EFGU").is_none());
        assert!(normalize_code("ABCD-EFGHJ").is_none());
        assert!(normalize_code("ÄBCD-EFGH").is_none());
    }
}
