//! The dev attestor: what the Nitro hypervisor does, done by a process outside the enclave.
//!
//! A dev root CA (ECDSA P-384) is created once per data directory. The attestor holds it,
//! measures the enclave binary itself (PCR0 = SHA-384 of the file it launches), issues itself
//! short-lived leaf certificates (3 hours, as on Nitro) and signs documents in the Nitro format.
//! The enclave never sees the root key; the host only needs the root *certificate* to serve it.
//!
//! A dev document proves only that *this machine's* dev attestor measured the binary: the dev
//! root is as trustworthy as whoever can read its key file. Production pins the AWS root.

use crate::doc::{AttestationDoc, limits};
use crate::{AttestRequest, Measurement, TrustedRoot, cose};
use der::{Decode, Encode, EncodePem, pem::LineEnding};
use p384::ecdsa::{DerSignature, SigningKey};
use p384::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;
use x509_cert::builder::{Builder, CertificateBuilder, profile::BuilderProfile};
use x509_cert::certificate::{Certificate, TbsCertificate};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use x509_cert::time::{Time, Validity};
use zeroize::Zeroizing;

/// Lifetime of the dev root certificate.
const ROOT_LIFETIME: Duration = Duration::from_secs(20 * 365 * 24 * 3600);
/// Lifetime of a leaf certificate (Nitro's are about 3 hours).
const LEAF_LIFETIME: Duration = Duration::from_secs(3 * 3600);
/// A leaf is replaced this long before it expires, so documents stay verifiable for a while.
const LEAF_RENEW_MARGIN: u64 = 30 * 60;
/// Back-dating of `notBefore`, for verifiers whose clock is a little behind.
const BACKDATE: u64 = 5 * 60;

/// Why the dev attestor refused a request or could not load its root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DevError {
    /// A requested field is larger than the NSM allows.
    #[error("attestation request field too large: {0}")]
    RequestTooLarge(&'static str),
    /// The stored root key or certificate does not parse, or they do not belong together.
    #[error("dev root files are invalid: {0}")]
    BadRoot(&'static str),
    /// A certificate could not be built (a time outside X.509's range, for example).
    #[error("cannot build a certificate: {0}")]
    Certificate(String),
}

/// The dev root CA: its private key and self-signed certificate.
pub struct DevRoot {
    key: SigningKey,
    cert: Certificate,
    cert_der: Vec<u8>,
}

impl std::fmt::Debug for DevRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevRoot")
            .field(
                "subject",
                &self.cert.tbs_certificate().subject().to_string(),
            )
            .finish_non_exhaustive()
    }
}

fn random_key() -> SigningKey {
    loop {
        let bytes = Zeroizing::new(vettid_crypto::random_array::<48>());
        if let Ok(key) = SigningKey::from_slice(&bytes[..]) {
            return key;
        }
    }
}

fn serial() -> SerialNumber {
    let mut bytes: [u8; 16] = vettid_crypto::random_array();
    bytes[0] = (bytes[0] & 0x7f) | 0x01; // positive and minimal
    SerialNumber::new(&bytes).expect("16 positive bytes are a valid serial")
}

fn time(secs: u64) -> Result<Time, DevError> {
    let d = Duration::from_secs(secs);
    if secs < 2_524_608_000 {
        // before 2050: UTCTime, as RFC 5280 requires
        der::asn1::UtcTime::from_unix_duration(d).map(Time::UtcTime)
    } else {
        der::asn1::GeneralizedTime::from_unix_duration(d).map(Time::GeneralTime)
    }
    .map_err(|e| DevError::Certificate(e.to_string()))
}

struct Profile {
    issuer: Name,
    subject: Name,
    ca: bool,
}

impl BuilderProfile for Profile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let mut ext = Vec::new();
        let ski = SubjectKeyIdentifier::try_from(spk)?;
        let aki = SubjectKeyIdentifier::try_from(issuer_spk)?;
        ext.push(ski.to_extension(tbs.subject(), &ext)?);
        ext.push(
            AuthorityKeyIdentifier {
                key_identifier: Some(aki.0),
                ..Default::default()
            }
            .to_extension(tbs.subject(), &ext)?,
        );
        ext.push(
            BasicConstraints {
                ca: self.ca,
                path_len_constraint: self.ca.then_some(0),
            }
            .to_extension(tbs.subject(), &ext)?,
        );
        let usage = if self.ca {
            KeyUsages::KeyCertSign | KeyUsages::CRLSign
        } else {
            KeyUsages::DigitalSignature.into()
        };
        ext.push(KeyUsage(usage).to_extension(tbs.subject(), &ext)?);
        Ok(ext)
    }
}

fn issue(
    profile: Profile,
    subject_key: &p384::ecdsa::VerifyingKey,
    issuer_key: &SigningKey,
    not_before: u64,
    lifetime: Duration,
) -> Result<Certificate, DevError> {
    let err = |e: &dyn std::fmt::Display| DevError::Certificate(e.to_string());
    let validity = Validity::new(
        time(not_before)?,
        time(not_before.saturating_add(lifetime.as_secs()))?,
    );
    let spki = SubjectPublicKeyInfoOwned::from_key(subject_key).map_err(|e| err(&e))?;
    let builder =
        CertificateBuilder::new(profile, serial(), validity, spki).map_err(|e| err(&e))?;
    builder
        .build::<_, DerSignature>(issuer_key)
        .map_err(|e| err(&e))
}

impl DevRoot {
    /// A new root CA, valid from `now_secs` for 20 years.
    ///
    /// # Panics
    /// Only if `now_secs` is outside X.509's time range (after year 9999).
    pub fn generate(now_secs: u64) -> Self {
        let key = random_key();
        let name =
            Name::from_str("CN=VettID dev attestation root,O=VettID dev").expect("static name");
        let profile = Profile {
            issuer: name.clone(),
            subject: name,
            ca: true,
        };
        let cert = issue(
            profile,
            key.verifying_key(),
            &key,
            now_secs.saturating_sub(BACKDATE),
            ROOT_LIFETIME,
        )
        .expect("a fresh root certificate is always buildable within X.509's time range");
        let cert_der = cert.to_der().expect("encoding a certificate cannot fail");
        Self {
            key,
            cert,
            cert_der,
        }
    }

    /// Loads a root saved with [`Self::key_pem`] and [`Self::cert_pem`], checking that the key
    /// matches the certificate.
    pub fn from_pem(key_pem: &str, cert_pem: &str) -> Result<Self, DevError> {
        let key = SigningKey::from_pkcs8_pem(key_pem).map_err(|_| DevError::BadRoot("key"))?;
        let (label, cert_der) = der::pem::decode_vec(cert_pem.trim().as_bytes())
            .map_err(|_| DevError::BadRoot("certificate PEM"))?;
        if label != "CERTIFICATE" {
            return Err(DevError::BadRoot("certificate PEM label"));
        }
        let cert =
            Certificate::from_der(&cert_der).map_err(|_| DevError::BadRoot("certificate"))?;
        let spki = SubjectPublicKeyInfoOwned::from_key(key.verifying_key())
            .map_err(|_| DevError::BadRoot("key"))?;
        if &spki != cert.tbs_certificate().subject_public_key_info() {
            return Err(DevError::BadRoot("key does not match certificate"));
        }
        Ok(Self {
            key,
            cert,
            cert_der,
        })
    }

    /// The private key as PKCS#8 PEM. Store it where the enclave and host cannot read it.
    pub fn key_pem(&self) -> Zeroizing<String> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("encoding a P-384 key cannot fail")
    }

    /// The certificate as PEM: what clients pin and the host may serve.
    pub fn cert_pem(&self) -> String {
        self.cert
            .to_pem(LineEnding::LF)
            .expect("encoding a certificate cannot fail")
    }

    /// The root as a verifier pins it.
    pub fn trusted(&self) -> TrustedRoot {
        TrustedRoot::from_der(self.cert_der.clone()).expect("our own root certificate parses")
    }
}

struct Leaf {
    key: SigningKey,
    der: Vec<u8>,
    not_after: u64,
}

/// Signs attestation documents for one measured enclave, as the NSM does for its enclave.
pub struct DevAttestor {
    root_key: SigningKey,
    root_name: Name,
    root_der: Vec<u8>,
    measurement: Measurement,
    leaf: Mutex<Option<Leaf>>,
}

impl DevAttestor {
    /// An attestor for the enclave with `measurement`, under `root`.
    pub fn new(root: &DevRoot, measurement: Measurement) -> Self {
        Self {
            root_key: root.key.clone(),
            root_name: root.cert.tbs_certificate().subject().clone(),
            root_der: root.cert_der.clone(),
            measurement,
            leaf: Mutex::new(None),
        }
    }

    /// The measurement this attestor vouches for.
    pub fn measurement(&self) -> &Measurement {
        &self.measurement
    }

    /// A document at `now_secs` binding `request`, signed by a current leaf certificate.
    pub fn attest(&self, request: &AttestRequest, now_secs: u64) -> Result<Vec<u8>, DevError> {
        let check = |v: &Option<Vec<u8>>, max: usize, what| match v {
            Some(b) if b.len() > max => Err(DevError::RequestTooLarge(what)),
            _ => Ok(()),
        };
        check(&request.nonce, limits::NONCE, "nonce")?;
        check(&request.public_key, limits::PUBLIC_KEY, "public_key")?;
        check(&request.user_data, limits::USER_DATA, "user_data")?;

        let mut slot = self.leaf.lock().unwrap_or_else(|p| p.into_inner());
        if slot
            .as_ref()
            .is_none_or(|l| now_secs + LEAF_RENEW_MARGIN >= l.not_after)
        {
            *slot = Some(self.new_leaf(now_secs)?);
        }
        let leaf = slot.as_ref().expect("just ensured");

        let mut pcrs = BTreeMap::new();
        for i in 0..16u8 {
            pcrs.insert(i, vec![0u8; limits::PCR_LEN]);
        }
        pcrs.insert(0, self.measurement.pcr0.to_vec());
        pcrs.insert(1, self.measurement.pcr1.to_vec());
        pcrs.insert(2, self.measurement.pcr2.to_vec());
        let doc = AttestationDoc {
            module_id: format!("vettid-dev-{}", hex::encode(&self.measurement.pcr0[..8])),
            timestamp_ms: now_secs.saturating_mul(1000),
            pcrs,
            certificate: leaf.der.clone(),
            cabundle: vec![self.root_der.clone()],
            public_key: request.public_key.clone(),
            user_data: request.user_data.clone(),
            nonce: request.nonce.clone(),
        };
        Ok(cose::sign(doc.to_cbor(), &leaf.key))
    }

    fn new_leaf(&self, now_secs: u64) -> Result<Leaf, DevError> {
        let key = random_key();
        let subject = Name::from_str(&format!(
            "CN=vettid-dev-{}.enclave,O=VettID dev",
            hex::encode(&self.measurement.pcr0[..8])
        ))
        .map_err(|e| DevError::Certificate(e.to_string()))?;
        let profile = Profile {
            issuer: self.root_name.clone(),
            subject,
            ca: false,
        };
        let not_before = now_secs.saturating_sub(BACKDATE);
        let cert = issue(
            profile,
            key.verifying_key(),
            &self.root_key,
            not_before,
            LEAF_LIFETIME,
        )?;
        Ok(Leaf {
            key,
            der: cert
                .to_der()
                .map_err(|e| DevError::Certificate(e.to_string()))?,
            not_after: not_before + LEAF_LIFETIME.as_secs(),
        })
    }
}

/// The dev key service: AWS KMS with attestation, played by a process outside the enclave.
///
/// It verifies each request's attestation document against the dev root, then derives a key
/// from its root secret **and the document's PCR0–2**, so a data key wrapped for one enclave
/// measurement can only ever be unwrapped for the same measurement. Keys go back encrypted
/// to the document's recipient key in a CMS envelope shaped like KMS's (BER, indefinite
/// lengths, chunked content), so the enclave runs the very code it runs on Nitro.
pub struct DevKms {
    root_secret: vettid_crypto::SecretBytes<32>,
    trusted: TrustedRoot,
    clock: Box<dyn Fn() -> u64 + Send + Sync>,
}

const DEV_KMS_MAGIC: &[u8; 4] = b"VDK1";
const DEV_KMS_AAD: &[u8] = b"vettid/v1/dev-kms\0";
const MEASUREMENT_KEY: vettid_crypto::Label = vettid_crypto::Label::new("dev-kms/measurement");

impl DevKms {
    /// A key service with `root_secret`, trusting documents under `trusted` at the time `clock` gives.
    pub fn new(
        root_secret: vettid_crypto::SecretBytes<32>,
        trusted: TrustedRoot,
        clock: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Self {
        Self {
            root_secret,
            trusted,
            clock: Box::new(clock),
        }
    }

    fn recipient(
        &self,
        doc: &[u8],
    ) -> Result<(AttestationDoc, rsa::PublicKey), crate::seal::SealError> {
        use rsa::pkcs8::DecodePublicKey;
        let refuse = |e: &dyn std::fmt::Display| crate::seal::SealError::KeyService(e.to_string());
        let verified = crate::verify(doc, &crate::Policy::new(&self.trusted, (self.clock)()))
            .map_err(|e| refuse(&e))?;
        let der = verified
            .public_key
            .as_deref()
            .ok_or_else(|| refuse(&"no recipient key in the document"))?;
        let key = rsa::PublicKey::from_public_key_der(der).map_err(|e| refuse(&e))?;
        Ok((verified, key))
    }

    fn measurement_key(&self, doc: &AttestationDoc) -> vettid_crypto::aead::AeadKey {
        let mut context = Vec::with_capacity(3 * 48);
        for i in 0..3u8 {
            context.extend_from_slice(doc.pcrs.get(&i).map_or(&[][..], Vec::as_slice));
        }
        MEASUREMENT_KEY
            .derive(self.root_secret.expose(), b"", &context)
            .into()
    }
}

impl crate::seal::KeyService for DevKms {
    fn generate_data_key(
        &self,
        recipient_doc: &[u8],
    ) -> Result<crate::seal::DataKey, crate::seal::SealError> {
        let (doc, recipient) = self.recipient(recipient_doc)?;
        let data_key = vettid_crypto::SecretBytes::<32>::random();
        let mut blob = DEV_KMS_MAGIC.to_vec();
        blob.extend(
            self.measurement_key(&doc)
                .seal(DEV_KMS_AAD, data_key.expose()),
        );
        Ok(crate::seal::DataKey {
            ciphertext_blob: blob,
            ciphertext_for_recipient: envelope_for(&recipient, data_key.expose())?,
        })
    }

    fn decrypt(
        &self,
        ciphertext_blob: &[u8],
        recipient_doc: &[u8],
    ) -> Result<Vec<u8>, crate::seal::SealError> {
        let (doc, recipient) = self.recipient(recipient_doc)?;
        let sealed = ciphertext_blob.strip_prefix(DEV_KMS_MAGIC).ok_or(
            crate::seal::SealError::Malformed("not a dev key service blob"),
        )?;
        let data_key = self
            .measurement_key(&doc)
            .open(DEV_KMS_AAD, sealed)
            .map_err(|_| {
                crate::seal::SealError::KeyService(
                    "the blob was not made for this enclave measurement".into(),
                )
            })?;
        envelope_for(&recipient, &data_key)
    }
}

impl DevKms {
    /// Answers one request of the AWS KMS JSON API (`TrentService.GenerateDataKey` and
    /// `TrentService.Decrypt`, each with an attestation `Recipient`), as KMS would: a status
    /// and a JSON body. Requests must carry a SigV4 `Authorization` for service `kms` in
    /// `region` (the dev service does not hold the signer's secret, so it checks the form,
    /// not the signature; what it releases is bound to the attestation document).
    pub fn answer(
        &self,
        request: &crate::seal::kms::http::Request,
        region: &str,
    ) -> (u16, Vec<u8>) {
        use crate::seal::KeyService;
        use base64::Engine;
        use base64::engine::general_purpose::STANDARD as B64;
        let refuse = |status: u16, kind: &str, message: &str| {
            (
                status,
                serde_json::to_vec(&serde_json::json!({"__type": kind, "message": message}))
                    .expect("JSON encodes"),
            )
        };
        let scope = format!("/{region}/kms/aws4_request, SignedHeaders=");
        if !request
            .header("authorization")
            .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 Credential=") && a.contains(&scope))
        {
            return refuse(
                400,
                "IncompleteSignatureException",
                "no SigV4 signature for kms",
            );
        }
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(&request.body) else {
            return refuse(400, "SerializationException", "body is not JSON");
        };
        let b64 = |v: Option<&serde_json::Value>| {
            v.and_then(|v| v.as_str()).and_then(|t| B64.decode(t).ok())
        };
        let Some(doc) = b64(body.pointer("/Recipient/AttestationDocument")) else {
            return refuse(
                400,
                "ValidationException",
                "a Recipient attestation document is required",
            );
        };
        if body
            .pointer("/Recipient/KeyEncryptionAlgorithm")
            .and_then(|v| v.as_str())
            != Some("RSAES_OAEP_SHA_256")
        {
            return refuse(
                400,
                "ValidationException",
                "KeyEncryptionAlgorithm must be RSAES_OAEP_SHA_256",
            );
        }
        let answer = match request.header("x-amz-target") {
            Some("TrentService.GenerateDataKey") => self.generate_data_key(&doc).map(|k| {
                serde_json::json!({
                    "CiphertextBlob": B64.encode(&k.ciphertext_blob),
                    "CiphertextForRecipient": B64.encode(&k.ciphertext_for_recipient),
                    "KeyId": "vettid-dev",
                })
            }),
            Some("TrentService.Decrypt") => {
                let Some(blob) = b64(body.get("CiphertextBlob")) else {
                    return refuse(400, "ValidationException", "CiphertextBlob is required");
                };
                self.decrypt(&blob, &doc).map(|cms| {
                    serde_json::json!({
                        "CiphertextForRecipient": B64.encode(&cms),
                        "KeyId": "vettid-dev",
                    })
                })
            }
            _ => return refuse(400, "UnknownOperationException", "unknown operation"),
        };
        match answer {
            Ok(v) => (200, serde_json::to_vec(&v).expect("JSON encodes")),
            Err(e) => refuse(400, "AccessDeniedException", &e.to_string()),
        }
    }
}

/// CMS EnvelopedData to `recipient` (RSA-OAEP-SHA-256 + AES-256-CBC), BER with indefinite
/// lengths and the content in 16-byte chunks, as AWS KMS sends it.
pub fn envelope_for(
    recipient: &rsa::PublicKey,
    content: &[u8],
) -> Result<Vec<u8>, crate::seal::SealError> {
    use crate::seal::{
        OAEP_SHA256_PARAMS, OID_AES256_CBC, OID_DATA, OID_ENVELOPED_DATA, OID_RSAES_OAEP, tlv,
    };
    use cbc::cipher::{BlockModeEncrypt, KeyIvInit, block_padding::Pkcs7};
    use rsa::pkcs8::EncodePublicKey;
    use sha2::Digest;
    let indefinite = |tag: u8, parts: &[Vec<u8>]| -> Vec<u8> {
        [vec![tag, 0x80], parts.concat(), vec![0, 0]].concat()
    };

    let aes_key = Zeroizing::new(vettid_crypto::random_array::<32>());
    let iv: [u8; 16] = vettid_crypto::random_array();
    let ciphertext = cbc::Encryptor::<aes::Aes256>::new((&*aes_key).into(), (&iv).into())
        .encrypt_padded_vec::<Pkcs7>(content);
    let encrypted_key = recipient
        .encrypt(
            &mut getrandom::SysRng,
            rsa::Oaep::<sha2::Sha256>::new(),
            &aes_key[..],
        )
        .map_err(|e| crate::seal::SealError::KeyService(e.to_string()))?;
    let spki = recipient
        .to_public_key_der()
        .map_err(|e| crate::seal::SealError::KeyService(e.to_string()))?;
    let ski = sha2::Sha256::digest(spki.as_bytes());

    let recipient_info = tlv(
        0x30,
        &[
            tlv(0x02, &[2]),
            tlv(0x80, &ski),
            tlv(
                0x30,
                &[tlv(0x06, OID_RSAES_OAEP), OAEP_SHA256_PARAMS.to_vec()].concat(),
            ),
            tlv(0x04, &encrypted_key),
        ]
        .concat(),
    );
    let chunks: Vec<Vec<u8>> = ciphertext.chunks(16).map(|c| tlv(0x04, c)).collect();
    let encrypted_content_info = indefinite(
        0x30,
        &[
            tlv(0x06, OID_DATA),
            tlv(0x30, &[tlv(0x06, OID_AES256_CBC), tlv(0x04, &iv)].concat()),
            indefinite(0xa0, &chunks),
        ],
    );
    let enveloped = indefinite(
        0x30,
        &[
            tlv(0x02, &[2]),
            tlv(0x31, &recipient_info),
            encrypted_content_info,
        ],
    );
    Ok(indefinite(
        0x30,
        &[
            tlv(0x06, OID_ENVELOPED_DATA),
            indefinite(0xa0, &[enveloped]),
        ],
    ))
}
