//! HKDF-SHA256 (RFC 5869) with domain-separation labels.
//!
//! Every derived key names its purpose: the HKDF `info` is `vettid/v1/<purpose>`, then a zero
//! byte, then caller context (for example a vault id). Two purposes can never yield the same
//! key from the same input, and a label is a compile-time constant, never user input.

use crate::SecretBytes;
use hkdf::Hkdf;
use sha2::Sha256;

/// The common prefix of every label.
pub const LABEL_PREFIX: &str = "vettid/v1/";

/// A key-derivation purpose, such as `Label::new("storage-key")` → `vettid/v1/storage-key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(&'static str);

impl Label {
    /// Declares a purpose. It must be non-empty and use only `a-z`, `0-9`, `-` and `/`;
    /// a `const` label that breaks this fails to compile.
    pub const fn new(purpose: &'static str) -> Self {
        let b = purpose.as_bytes();
        assert!(!b.is_empty(), "empty key-derivation purpose");
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            assert!(
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'/',
                "key-derivation purpose may use only a-z, 0-9, '-' and '/'"
            );
            i += 1;
        }
        Self(purpose)
    }

    /// The purpose, without the prefix.
    pub fn purpose(&self) -> &'static str {
        self.0
    }

    fn info(&self, context: &[u8]) -> Vec<u8> {
        let mut info = Vec::with_capacity(LABEL_PREFIX.len() + self.0.len() + 1 + context.len());
        info.extend_from_slice(LABEL_PREFIX.as_bytes());
        info.extend_from_slice(self.0.as_bytes());
        info.push(0);
        info.extend_from_slice(context);
        info
    }

    /// Derives 32 bytes: HKDF-SHA256 with `salt` (may be empty), input keying material `ikm`,
    /// and info = `vettid/v1/<purpose> ‖ 0x00 ‖ context`.
    pub fn derive(&self, ikm: &[u8], salt: &[u8], context: &[u8]) -> SecretBytes<32> {
        let mut out = [0u8; 32];
        Hkdf::<Sha256>::new(Some(salt), ikm)
            .expand(&self.info(context), &mut out)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        SecretBytes::from_array(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_prefix_label_zero_context() {
        assert_eq!(Label::new("a/b-1").info(b"ctx"), b"vettid/v1/a/b-1\0ctx");
    }

    #[test]
    fn purposes_and_contexts_separate_keys() {
        let a = Label::new("storage-key");
        let b = Label::new("storage-keys");
        assert_ne!(a.derive(b"ikm", b"", b""), b.derive(b"ikm", b"", b""));
        assert_ne!(a.derive(b"ikm", b"", b"v1"), a.derive(b"ikm", b"", b"v2"));
        // The zero separator stops "storage-key" + "s…" from colliding with "storage-keys" + "…".
        assert_ne!(a.derive(b"ikm", b"", b"sx"), b.derive(b"ikm", b"", b"x"));
        assert_ne!(a.derive(b"ikm", b"s1", b""), a.derive(b"ikm", b"s2", b""));
        assert_eq!(a.derive(b"ikm", b"s", b"c"), a.derive(b"ikm", b"s", b"c"));
    }

    #[test]
    fn matches_plain_hkdf_with_the_label_as_info() {
        let mut expect = [0u8; 32];
        Hkdf::<Sha256>::new(Some(b"salt"), b"ikm")
            .expand(b"vettid/v1/test\0ctx", &mut expect)
            .unwrap();
        assert_eq!(
            Label::new("test").derive(b"ikm", b"salt", b"ctx").expose(),
            &expect
        );
    }
}
