//! The AWS KMS relay: the host forwards the enclave's attestation document to KMS as the
//! `Recipient`, and returns only what KMS encrypted to the enclave (`CiphertextForRecipient`)
//! plus the wrapped key (`CiphertextBlob`). The host never sees a plaintext key: KMS omits
//! `Plaintext` from the response when a recipient is given.
//!
//! The key policy must allow `kms:Decrypt` only under `kms:RecipientAttestation:PCR0` equal to
//! the trusted enclave measurement (see docs/ATTESTATION.md).

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeyEncryptionMechanism, RecipientInfo};

/// Why KMS did not answer with ciphertext for the enclave.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// The request failed (network, permissions, key policy refusing the attestation).
    #[error("AWS KMS request failed: {0}")]
    Request(String),
    /// KMS answered without `CiphertextForRecipient` (or without `CiphertextBlob`).
    #[error("AWS KMS answered without the ciphertext for the enclave")]
    MissingCiphertext,
    /// KMS answered with a plaintext key: the host must never hold one, so it is dropped.
    #[error("AWS KMS returned a plaintext key; refusing to relay it")]
    PlaintextReturned,
}

/// A thin AWS KMS client for one key.
#[derive(Debug, Clone)]
pub struct AwsKms {
    client: aws_sdk_kms::Client,
    key_id: String,
}

/// What `GenerateDataKey` returns to the enclave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedDataKey {
    /// The data key wrapped under the KMS key (stored with the sealed data).
    pub ciphertext_blob: Vec<u8>,
    /// The data key as CMS EnvelopedData to the enclave's recipient key.
    pub ciphertext_for_recipient: Vec<u8>,
}

fn recipient(doc: &[u8]) -> RecipientInfo {
    RecipientInfo::builder()
        .key_encryption_algorithm(KeyEncryptionMechanism::RsaesOaepSha256)
        .attestation_document(Blob::new(doc))
        .build()
}

impl AwsKms {
    /// A client from the default AWS configuration (environment, profile, instance role).
    pub async fn from_env(key_id: impl Into<String>) -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self {
            client: aws_sdk_kms::Client::new(&config),
            key_id: key_id.into(),
        }
    }

    /// `GenerateDataKey` (AES-256) for the enclave that made `attestation_doc`.
    pub async fn generate_data_key(
        &self,
        attestation_doc: &[u8],
    ) -> Result<WrappedDataKey, KmsError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .recipient(recipient(attestation_doc))
            .send()
            .await
            .map_err(|e| KmsError::Request(e.to_string()))?;
        if out.plaintext().is_some() {
            return Err(KmsError::PlaintextReturned);
        }
        Ok(WrappedDataKey {
            ciphertext_blob: out
                .ciphertext_blob()
                .ok_or(KmsError::MissingCiphertext)?
                .as_ref()
                .to_vec(),
            ciphertext_for_recipient: out
                .ciphertext_for_recipient()
                .ok_or(KmsError::MissingCiphertext)?
                .as_ref()
                .to_vec(),
        })
    }

    /// `Decrypt` of `ciphertext_blob` for the enclave that made `attestation_doc`.
    pub async fn decrypt(
        &self,
        ciphertext_blob: &[u8],
        attestation_doc: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(ciphertext_blob))
            .recipient(recipient(attestation_doc))
            .send()
            .await
            .map_err(|e| KmsError::Request(e.to_string()))?;
        if out.plaintext().is_some() {
            return Err(KmsError::PlaintextReturned);
        }
        Ok(out
            .ciphertext_for_recipient()
            .ok_or(KmsError::MissingCiphertext)?
            .as_ref()
            .to_vec())
    }
}
