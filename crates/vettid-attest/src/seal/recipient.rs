//! The enclave's KMS recipient key: RSA-2048, generated in enclave memory, its public half
//! bound into attestation documents; unwraps `CiphertextForRecipient` (RSA-OAEP-SHA-256, then
//! AES-256-CBC).

use super::{SealError, cms};
use cbc::cipher::{BlockModeDecrypt, KeyIvInit, block_padding::Pkcs7};
use rsa::pkcs8::EncodePublicKey;
use rsa::{Oaep, PrivateKey};
use sha2::Sha256;
use vettid_crypto::SecretBytes;
use zeroize::Zeroizing;

/// Bits of the recipient key (what AWS KMS accepts for `RSAES_OAEP_SHA_256`).
pub(crate) const RSA_BITS: usize = 2048;

/// An RSA key pair that lives only in enclave memory.
pub struct RecipientKey {
    private: PrivateKey,
    public_der: Vec<u8>,
}

impl std::fmt::Debug for RecipientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecipientKey([REDACTED])")
    }
}

impl RecipientKey {
    /// A fresh key (about 0.1–1 s: done once per enclave start, not per request).
    ///
    /// # Panics
    /// If the operating system's random number generator fails.
    pub fn generate() -> Self {
        let private =
            PrivateKey::new(&mut getrandom::SysRng, RSA_BITS).expect("RSA key generation");
        let public_der = private
            .to_public_key()
            .to_public_key_der()
            .expect("encoding an RSA public key cannot fail")
            .into_vec();
        Self {
            private,
            public_der,
        }
    }

    /// SubjectPublicKeyInfo (DER) of the public half: what goes into `public_key` of the
    /// attestation document.
    pub fn public_der(&self) -> &[u8] {
        &self.public_der
    }

    /// Opens a CMS EnvelopedData addressed to this key and returns its content.
    pub fn unwrap(&self, cms: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let env = cms::parse(cms)?;
        let aes_key = Zeroizing::new(
            self.private
                .decrypt(Oaep::<Sha256>::new(), &env.encrypted_key)
                .map_err(|_| SealError::DecryptionFailed)?,
        );
        let aes_key: &[u8; 32] = aes_key[..]
            .try_into()
            .map_err(|_| SealError::DecryptionFailed)?;
        let plaintext = cbc::Decryptor::<aes::Aes256>::new(aes_key.into(), (&env.iv).into())
            .decrypt_padded_vec::<Pkcs7>(&env.ciphertext)
            .map_err(|_| SealError::DecryptionFailed)?;
        Ok(Zeroizing::new(plaintext))
    }

    /// [`Self::unwrap`] for a 32-byte data key.
    pub fn unwrap_data_key(&self, cms: &[u8]) -> Result<SecretBytes<32>, SealError> {
        let key = self.unwrap(cms)?;
        SecretBytes::try_from_slice(&key).ok_or(SealError::DecryptionFailed)
    }
}
