//! Secret byte arrays: zeroized on drop, redacted in `Debug`, compared in constant time.

use core::fmt;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// `N` secret bytes (a key, a seed, a shared secret).
///
/// Guarantees: the bytes are overwritten with zeros when the value is dropped; `Debug` prints
/// only the length; `==` runs in time independent of the content. There is deliberately no
/// `Display`, `Serialize` or `Copy`: getting the bytes out takes an explicit [`Self::expose`].
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes<const N: usize>([u8; N]);

impl<const N: usize> SecretBytes<N> {
    /// Fresh bytes from the operating system's CSPRNG.
    pub fn random() -> Self {
        Self(random_array())
    }

    /// Takes ownership of `bytes`. The caller should zeroize its own copies, if any.
    pub fn from_array(bytes: [u8; N]) -> Self {
        Self(bytes)
    }

    /// Copies `bytes` when its length is exactly `N`.
    pub fn try_from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; N]>::try_from(bytes).ok().map(Self)
    }

    /// The secret bytes. Keep the borrow short and never log it.
    pub fn expose(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> ConstantTimeEq for SecretBytes<N> {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl<const N: usize> PartialEq for SecretBytes<N> {
    fn eq(&self, other: &Self) -> bool {
        bool::from(ConstantTimeEq::ct_eq(self, other))
    }
}

impl<const N: usize> Eq for SecretBytes<N> {}

impl<const N: usize> fmt::Debug for SecretBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes<{N}>([REDACTED])")
    }
}

/// Constant-time equality of two byte strings. The lengths are not secret: unequal lengths
/// return `false` at once.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// `N` bytes from the operating system's CSPRNG.
///
/// # Panics
/// If the operating system cannot provide randomness, which leaves no safe way to go on.
pub fn random_array<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).expect("the operating system's random number generator failed");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = SecretBytes::from_array([0x41u8; 32]);
        let printed = format!("{s:?}");
        assert!(
            !printed.contains("41") && !printed.contains("65"),
            "{printed}"
        );
        assert!(printed.contains("REDACTED"));
    }

    #[test]
    fn equality_is_by_content() {
        let a = SecretBytes::from_array([7u8; 16]);
        let mut other = [7u8; 16];
        assert_eq!(a, SecretBytes::from_array(other));
        other[15] = 8;
        assert_ne!(a, SecretBytes::from_array(other));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
    }

    #[test]
    fn random_values_differ() {
        assert_ne!(SecretBytes::<32>::random(), SecretBytes::<32>::random());
    }

    #[test]
    fn slice_length_is_checked() {
        assert!(SecretBytes::<32>::try_from_slice(&[0u8; 31]).is_none());
        assert!(SecretBytes::<32>::try_from_slice(&[0u8; 32]).is_some());
    }
}
