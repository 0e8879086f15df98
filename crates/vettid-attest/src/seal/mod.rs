//! Sealing: binding secrets to the enclave measurement, so the host stores only ciphertext it
//! cannot open and another enclave binary cannot open it either.
//!
//! Both the Nitro and the dev path have the shape of AWS KMS with attestation:
//!
//! ```text
//! enclave                              host (relays only)            key service
//! RecipientKey (RSA-2048, in RAM)
//! attest(public_key = recipient) ───────────── doc ─────────────────► verify doc, key per PCRs
//!                                    ◄── ciphertext_blob, CiphertextForRecipient (CMS to doc key)
//! unwrap CMS → data key; seal data under it; store blob ‖ ciphertext through the host
//! ```
//!
//! On Nitro the key service is AWS KMS (`GenerateDataKey`/`Decrypt` with `Recipient`); in
//! development it is [`DevKms`](crate::dev::DevKms), which derives its key from its root
//! secret *and the verified measurement*. Either way the enclave reaches it over TLS that ends
//! inside the enclave ([`kms`]), and its attestation documents come from its own device, never
//! from the host: the host relays TLS records it can neither read nor forge.

mod ber;
mod blob;
mod cms;
pub mod kms;
mod recipient;

pub use blob::{SEALED_MAGIC, SEALED_VERSION};
pub use recipient::RecipientKey;

#[cfg(feature = "dev")]
pub(crate) use cms::{
    OAEP_SHA256_PARAMS, OID_AES256_CBC, OID_DATA, OID_ENVELOPED_DATA, OID_RSAES_OAEP, tlv,
};

use crate::AttestRequest;
use zeroize::Zeroizing;

/// Why sealing or unsealing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// A sealed blob or a CMS envelope is not well formed (the host sent garbage).
    #[error("malformed sealed data: {0}")]
    Malformed(&'static str),
    /// Authentication failed: wrong measurement, wrong context, or altered bytes. Opaque on purpose.
    #[error("unsealing failed")]
    DecryptionFailed,
    /// The key service refused or could not be reached.
    #[error("key service: {0}")]
    KeyService(String),
    /// No attestation document could be obtained.
    #[error("attestation: {0}")]
    Attestation(String),
}

/// Produces attestation documents for this enclave (the NSM on Nitro; the dev attestor locally).
pub trait Attestor {
    /// A document binding `request`.
    fn attest(&self, request: &AttestRequest) -> Result<Vec<u8>, SealError>;
}

impl<T: Attestor + ?Sized> Attestor for &T {
    fn attest(&self, request: &AttestRequest) -> Result<Vec<u8>, SealError> {
        (**self).attest(request)
    }
}

impl<T: Attestor + ?Sized> Attestor for std::sync::Arc<T> {
    fn attest(&self, request: &AttestRequest) -> Result<Vec<u8>, SealError> {
        (**self).attest(request)
    }
}

/// A data key from [`KeyService::generate_data_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKey {
    /// The key wrapped by the key service; only the service can unwrap it, and only for an
    /// enclave with the same measurement.
    pub ciphertext_blob: Vec<u8>,
    /// The same key encrypted to the recipient key in the attestation document (CMS).
    pub ciphertext_for_recipient: Vec<u8>,
}

/// AWS KMS with attestation, or the dev key service: reached only through the host, which
/// carries ciphertext both ways.
pub trait KeyService {
    /// A fresh data key for the enclave that produced `recipient_doc`.
    fn generate_data_key(&self, recipient_doc: &[u8]) -> Result<DataKey, SealError>;
    /// Unwraps `ciphertext_blob` for the enclave that produced `recipient_doc`, returning the
    /// key encrypted to that document's recipient key (CMS).
    fn decrypt(&self, ciphertext_blob: &[u8], recipient_doc: &[u8]) -> Result<Vec<u8>, SealError>;
}

impl<T: KeyService + ?Sized> KeyService for &T {
    fn generate_data_key(&self, recipient_doc: &[u8]) -> Result<DataKey, SealError> {
        (**self).generate_data_key(recipient_doc)
    }
    fn decrypt(&self, ciphertext_blob: &[u8], recipient_doc: &[u8]) -> Result<Vec<u8>, SealError> {
        (**self).decrypt(ciphertext_blob, recipient_doc)
    }
}

impl<T: KeyService + ?Sized> KeyService for std::sync::Arc<T> {
    fn generate_data_key(&self, recipient_doc: &[u8]) -> Result<DataKey, SealError> {
        (**self).generate_data_key(recipient_doc)
    }
    fn decrypt(&self, ciphertext_blob: &[u8], recipient_doc: &[u8]) -> Result<Vec<u8>, SealError> {
        (**self).decrypt(ciphertext_blob, recipient_doc)
    }
}

/// Seals and unseals data so that only an enclave with the same measurement can open it.
pub trait Sealer {
    /// Seals `plaintext`, bound to `context` (which must be given again to unseal).
    fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError>;
    /// Opens what [`Sealer::seal`] produced with the same `context`.
    fn unseal(&self, context: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError>;
}

/// The KMS-shaped sealer: a recipient key held in enclave memory, documents from `A`, data
/// keys from `K`. Works the same with AWS KMS and the dev key service.
pub struct RecipientSealer<A, K> {
    attestor: A,
    keys: K,
    recipient: RecipientKey,
}

impl<A: Attestor, K: KeyService> RecipientSealer<A, K> {
    /// A sealer with a fresh recipient key.
    pub fn new(attestor: A, keys: K) -> Self {
        Self {
            attestor,
            keys,
            recipient: RecipientKey::generate(),
        }
    }

    fn document(&self) -> Result<Vec<u8>, SealError> {
        self.attestor.attest(&AttestRequest {
            public_key: Some(self.recipient.public_der().to_vec()),
            ..Default::default()
        })
    }
}

impl<A: Attestor, K: KeyService> Sealer for RecipientSealer<A, K> {
    fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let data_key = self.keys.generate_data_key(&self.document()?)?;
        let key = self
            .recipient
            .unwrap_data_key(&data_key.ciphertext_for_recipient)?;
        blob::seal(&key, &data_key.ciphertext_blob, context, plaintext)
    }

    fn unseal(&self, context: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let parsed = blob::parse(sealed)?;
        let for_recipient = self.keys.decrypt(parsed.wrapped_key, &self.document()?)?;
        let key = self.recipient.unwrap_data_key(&for_recipient)?;
        blob::open(&key, &parsed, context)
    }
}
