//! The key service over TLS that ends inside the enclave.
//!
//! CMS to a recipient key is unauthenticated: anyone who knows the enclave's RSA public key
//! (it is in the attestation document the host relays) can make a `CiphertextForRecipient`.
//! So the enclave never takes a key-service answer from the host. It opens a byte stream
//! through the host ([`Transport`], the role of AWS's vsock-proxy) and speaks TLS over it to
//! the service, checking the service's certificate against roots and a server name from its
//! **measured** configuration; its requests are the KMS JSON API (`GenerateDataKey`,
//! `Decrypt` with an attestation `Recipient`), signed with SigV4. The host sees TLS records.
//!
//! ```text
//! enclave: KmsClient ──TLS (rustls, ring)──► relay stream ──host──► TCP kms.<region>.amazonaws.com:443
//!                                                              (dev: the dev key service's socket)
//! ```
//!
//! The dev key service speaks the same API over the same TLS (its root pinned in the dev
//! configuration), so every dev run exercises this code.

pub mod http;
pub mod sigv4;

use super::{DataKey, KeyService, SealError};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use pki_types::{CertificateDer, ServerName, pem::PemObject};
use std::io::{Read, Write};
use std::sync::Arc;

pub use sigv4::Credentials;

/// A byte stream to the key service.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// What the enclave needs from the host to reach the key service: a byte stream, the time
/// (for request signatures; a wrong clock only makes requests fail) and AWS credentials
/// (they authenticate the caller to AWS; what KMS releases is bound to the attestation).
pub trait Transport {
    /// A fresh stream to the key service.
    fn connect(&self) -> Result<Box<dyn Stream>, SealError>;
    /// Seconds since the Unix epoch.
    fn now_secs(&self) -> Result<u64, SealError>;
    /// Credentials to sign requests with.
    fn credentials(&self) -> Result<Credentials, SealError>;
}

/// Whom the enclave trusts as its key service: from its measured configuration.
#[derive(Debug, Clone)]
pub struct Trust {
    /// The TLS server name to verify (and the `Host` of requests).
    pub server_name: String,
    /// PEM roots the service's certificate must chain to.
    pub roots_pem: String,
    /// The KMS key id or ARN.
    pub key_id: String,
    /// The region of request signatures.
    pub region: String,
}

/// The AWS KMS API over TLS, as a [`KeyService`].
pub struct KmsClient<T> {
    transport: T,
    tls: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
    trust: Trust,
}

/// The TLS client configuration: `roots` only, the `ring` provider, TLS 1.2/1.3 with rustls's
/// safe defaults (ECDHE, AEAD ciphers), no client certificate.
pub fn client_config(roots_pem: &str) -> Result<rustls::ClientConfig, SealError> {
    let bad = |e: &dyn std::fmt::Display| SealError::KeyService(format!("key-service roots: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(roots_pem.as_bytes()) {
        roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    if roots.is_empty() {
        return Err(bad(&"no certificate"));
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

fn recipient(doc: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
        "AttestationDocument": B64.encode(doc),
    })
}

/// The answer must name the configured key: a key of another account or another key cannot
/// stand in for it.
fn check_key_id(answer: &serde_json::Value, key_id: &str) -> Result<(), SealError> {
    match answer.get("KeyId").and_then(|v| v.as_str()) {
        Some(k) if k == key_id => Ok(()),
        other => Err(SealError::KeyService(format!(
            "the answer names key {other:?}, not the configured one"
        ))),
    }
}

fn field(answer: &serde_json::Value, name: &str) -> Result<Vec<u8>, SealError> {
    let text = answer
        .get(name)
        .and_then(|v| v.as_str())
        .ok_or_else(|| SealError::KeyService(format!("answer without {name}")))?;
    B64.decode(text)
        .map_err(|_| SealError::KeyService(format!("{name} is not base64")))
}

impl<T: Transport> KmsClient<T> {
    /// A client trusting `trust`, reaching the service through `transport`.
    pub fn new(transport: T, trust: Trust) -> Result<Self, SealError> {
        let server_name = ServerName::try_from(trust.server_name.clone())
            .map_err(|_| SealError::KeyService("bad key-service server name".into()))?;
        Ok(Self {
            transport,
            tls: Arc::new(client_config(&trust.roots_pem)?),
            server_name,
            trust,
        })
    }

    /// One KMS call: a fresh TLS connection, the signed request, the JSON answer.
    fn call(
        &self,
        operation: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, SealError> {
        let fail =
            |what: &str, e: &dyn std::fmt::Display| SealError::KeyService(format!("{what}: {e}"));
        let body = serde_json::to_vec(&body).expect("JSON encodes");
        let credentials = self.transport.credentials()?;
        // They come from the host and go into header lines: visible ASCII only.
        let visible = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic());
        if !visible(&credentials.access_key_id)
            || !visible(&credentials.secret_access_key)
            || credentials
                .session_token
                .as_deref()
                .is_some_and(|t| !visible(t))
        {
            return Err(SealError::KeyService(
                "unusable credentials from the host".into(),
            ));
        }
        let amz_date = sigv4::amz_date(self.transport.now_secs()?);
        let mut headers = vec![
            ("content-type", "application/x-amz-json-1.1".to_owned()),
            ("host", self.trust.server_name.clone()),
            ("x-amz-date", amz_date.clone()),
            ("x-amz-target", format!("TrentService.{operation}")),
        ];
        if let Some(token) = &credentials.session_token {
            headers.push(("x-amz-security-token", token.to_string()));
        }
        let authorization = sigv4::authorization(
            &sigv4::Request {
                method: "POST",
                path: "/",
                query: "",
                headers: &headers,
                body: &body,
            },
            &credentials,
            &self.trust.region,
            "kms",
            &amz_date,
        );
        headers.push(("authorization", authorization));
        let stream = self.transport.connect()?;
        let connection = rustls::ClientConnection::new(self.tls.clone(), self.server_name.clone())
            .map_err(|e| fail("TLS", &e))?;
        let mut tls = rustls::StreamOwned::new(connection, stream);
        http::write_request(&mut tls, "POST", "/", &headers, &body)
            .map_err(|e| fail("the key service's TLS identity or connection failed", &e))?;
        let response = http::read_response(&mut std::io::BufReader::new(&mut tls))
            .map_err(|e| fail("the key service's answer", &e))?;
        let answer: serde_json::Value = serde_json::from_slice(&response.body)
            .map_err(|e| fail("the key service's answer is not JSON", &e))?;
        if response.status != 200 {
            let kind = answer.get("__type").and_then(|v| v.as_str()).unwrap_or("?");
            let message = answer
                .get("message")
                .or_else(|| answer.get("Message"))
                .and_then(|v| v.as_str())
                .unwrap_or("");
            return Err(SealError::KeyService(format!(
                "{operation} refused ({}): {kind} {message}",
                response.status
            )));
        }
        check_key_id(&answer, &self.trust.key_id)?;
        Ok(answer)
    }
}

impl<T: Transport> KeyService for KmsClient<T> {
    fn generate_data_key(&self, recipient_doc: &[u8]) -> Result<DataKey, SealError> {
        let answer = self.call(
            "GenerateDataKey",
            serde_json::json!({
                "KeyId": self.trust.key_id,
                "KeySpec": "AES_256",
                "Recipient": recipient(recipient_doc),
            }),
        )?;
        if answer.get("Plaintext").is_some_and(|p| !p.is_null()) {
            // With a Recipient, KMS never sends the plaintext key; one that does is not KMS.
            return Err(SealError::KeyService(
                "answer carries a plaintext key".into(),
            ));
        }
        Ok(DataKey {
            ciphertext_blob: field(&answer, "CiphertextBlob")?,
            ciphertext_for_recipient: field(&answer, "CiphertextForRecipient")?,
        })
    }

    fn decrypt(&self, ciphertext_blob: &[u8], recipient_doc: &[u8]) -> Result<Vec<u8>, SealError> {
        let answer = self.call(
            "Decrypt",
            serde_json::json!({
                "KeyId": self.trust.key_id,
                "CiphertextBlob": B64.encode(ciphertext_blob),
                "Recipient": recipient(recipient_doc),
            }),
        )?;
        if answer.get("Plaintext").is_some_and(|p| !p.is_null()) {
            return Err(SealError::KeyService(
                "answer carries a plaintext key".into(),
            ));
        }
        field(&answer, "CiphertextForRecipient")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_must_name_the_configured_key() {
        let key = "arn:aws:kms:eu-west-1:123456789012:key/abc";
        assert!(check_key_id(&serde_json::json!({"KeyId": key}), key).is_ok());
        for other in [
            serde_json::json!({"KeyId": "arn:aws:kms:eu-west-1:999999999999:key/abc"}),
            serde_json::json!({"KeyId": 5}),
            serde_json::json!({}),
        ] {
            assert!(check_key_id(&other, key).is_err(), "{other}");
        }
    }
}
