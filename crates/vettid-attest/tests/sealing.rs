//! Sealing through the KMS-shaped path with the dev key service: bound to the measurement,
//! the context and every byte of the blob.

use vettid_attest::dev::{DevAttestor, DevKms, DevRoot, envelope_for};
use vettid_attest::seal::{Attestor, KeyService, RecipientKey, RecipientSealer, SealError, Sealer};
use vettid_attest::{AttestRequest, Measurement};
use vettid_crypto::SecretBytes;

const NOW: u64 = 1_800_000_000;

/// The dev attestor at a fixed time.
struct At<'a>(&'a DevAttestor, u64);

impl Attestor for At<'_> {
    fn attest(&self, request: &AttestRequest) -> Result<Vec<u8>, SealError> {
        self.0
            .attest(request, self.1)
            .map_err(|e| SealError::Attestation(e.to_string()))
    }
}

struct World {
    root: DevRoot,
    kms: DevKms,
}

impl World {
    fn new() -> Self {
        let root = DevRoot::generate(NOW - 3600);
        let kms = DevKms::new(SecretBytes::from_array([7; 32]), root.trusted(), || NOW);
        Self { root, kms }
    }

    fn attestor(&self, binary: &[u8]) -> DevAttestor {
        DevAttestor::new(&self.root, Measurement::of_enclave(binary, b"config"))
    }
}

#[test]
fn sealed_for_one_measurement_opens_only_for_that_measurement() {
    let w = World::new();
    let v1 = w.attestor(b"enclave v1");
    let v2 = w.attestor(b"enclave v2");
    let sealer_v1 = RecipientSealer::new(At(&v1, NOW), &w.kms);
    let sealed = sealer_v1
        .seal(b"vault-1/secret", b"the per-vault secret S")
        .unwrap();
    assert_eq!(
        &sealer_v1.unseal(b"vault-1/secret", &sealed).unwrap()[..],
        b"the per-vault secret S"
    );

    // A restarted enclave of the same binary (new recipient key) opens it too.
    let restarted = RecipientSealer::new(At(&v1, NOW), &w.kms);
    assert_eq!(
        &restarted.unseal(b"vault-1/secret", &sealed).unwrap()[..],
        b"the per-vault secret S"
    );

    // Another binary, same host, same dev root and root secret: refused.
    let sealer_v2 = RecipientSealer::new(At(&v2, NOW), &w.kms);
    assert!(matches!(
        sealer_v2.unseal(b"vault-1/secret", &sealed),
        Err(SealError::KeyService(_))
    ));
}

#[test]
fn the_context_is_bound() {
    let w = World::new();
    let v1 = w.attestor(b"enclave v1");
    let sealer = RecipientSealer::new(At(&v1, NOW), &w.kms);
    let sealed = sealer.seal(b"vault-1", b"secret").unwrap();
    assert_eq!(
        sealer.unseal(b"vault-2", &sealed),
        Err(SealError::DecryptionFailed)
    );
}

#[test]
fn another_root_secret_cannot_unwrap() {
    let w = World::new();
    let v1 = w.attestor(b"enclave v1");
    let sealed = RecipientSealer::new(At(&v1, NOW), &w.kms)
        .seal(b"c", b"secret")
        .unwrap();
    let other_kms = DevKms::new(SecretBytes::from_array([8; 32]), w.root.trusted(), || NOW);
    let sealer = RecipientSealer::new(At(&v1, NOW), &other_kms);
    assert!(matches!(
        sealer.unseal(b"c", &sealed),
        Err(SealError::KeyService(_))
    ));
}

#[test]
fn every_altered_byte_or_truncation_is_refused() {
    let w = World::new();
    let v1 = w.attestor(b"enclave v1");
    let sealer = RecipientSealer::new(At(&v1, NOW), &w.kms);
    let sealed = sealer.seal(b"c", b"secret").unwrap();
    for i in 0..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x01;
        assert!(sealer.unseal(b"c", &bad).is_err(), "byte {i}");
    }
    for len in 0..sealed.len() {
        assert!(sealer.unseal(b"c", &sealed[..len]).is_err(), "len {len}");
    }
}

#[test]
fn the_key_service_refuses_documents_it_cannot_verify() {
    let w = World::new();
    let stranger_root = DevRoot::generate(NOW - 3600);
    let stranger = DevAttestor::new(
        &stranger_root,
        Measurement::of_enclave(b"enclave v1", b"config"),
    );
    let sealer = RecipientSealer::new(At(&stranger, NOW), &w.kms);
    assert!(matches!(
        sealer.seal(b"c", b"secret"),
        Err(SealError::KeyService(_))
    ));
    // A stale document (made an hour before the key service's clock) is refused too.
    let v1 = w.attestor(b"enclave v1");
    let sealer = RecipientSealer::new(At(&v1, NOW - 3600), &w.kms);
    assert!(matches!(
        sealer.seal(b"c", b"secret"),
        Err(SealError::KeyService(_))
    ));
    // A document without a recipient key cannot get a data key.
    let doc = v1.attest(&AttestRequest::default(), NOW).unwrap();
    assert!(matches!(
        w.kms.generate_data_key(&doc),
        Err(SealError::KeyService(_))
    ));
}

#[test]
fn cms_envelopes_open_only_for_their_recipient() {
    use rsa::pkcs8::DecodePublicKey;
    let alice = RecipientKey::generate();
    let bob = RecipientKey::generate();
    let alice_pub = rsa::PublicKey::from_public_key_der(alice.public_der()).unwrap();
    let cms = envelope_for(&alice_pub, b"content that is longer than one AES block").unwrap();
    assert_eq!(
        &alice.unwrap(&cms).unwrap()[..],
        b"content that is longer than one AES block"
    );
    assert_eq!(bob.unwrap(&cms), Err(SealError::DecryptionFailed));
    // The data-key form insists on exactly 32 bytes.
    assert_eq!(
        alice.unwrap_data_key(&cms),
        Err(SealError::DecryptionFailed)
    );
    let cms = envelope_for(&alice_pub, &[9; 32]).unwrap();
    assert_eq!(alice.unwrap_data_key(&cms).unwrap().expose(), &[9; 32]);
    // Altered envelopes never yield the original key. AES-CBC (KMS's choice) has no integrity
    // of its own: a changed IV yields a different key, which then fails the AEAD of whatever
    // it is used for. The recipient identifier (a key hash) is informational only: the RSA
    // decryption is what checks the recipient.
    use sha2::Digest;
    let ski = sha2::Sha256::digest(alice.public_der());
    let rid_at = cms.windows(32).position(|w| w == &ski[..]).unwrap();
    for i in (0..cms.len()).filter(|i| !(rid_at..rid_at + 32).contains(i)) {
        let mut bad = cms.clone();
        bad[i] ^= 0x04;
        let got = alice.unwrap_data_key(&bad).map(|k| *k.expose());
        assert_ne!(got, Ok([9; 32]), "byte {i}");
    }
}

/// A hostile host that alters one byte of every key-service answer it relays.
struct Tampering<'a>(&'a DevKms, usize);

impl KeyService for Tampering<'_> {
    fn generate_data_key(&self, doc: &[u8]) -> Result<vettid_attest::seal::DataKey, SealError> {
        self.0.generate_data_key(doc)
    }
    fn decrypt(&self, blob: &[u8], doc: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut cms = self.0.decrypt(blob, doc)?;
        let i = self.1 % cms.len();
        cms[i] ^= 0x01;
        Ok(cms)
    }
}

#[test]
fn a_host_altering_the_key_services_answer_is_detected() {
    let w = World::new();
    let v1 = w.attestor(b"enclave v1");
    let sealed = RecipientSealer::new(At(&v1, NOW), &w.kms)
        .seal(b"c", b"secret")
        .unwrap();
    // Bytes 33..65 are the recipient identifier, which is informational (see above).
    for position in (0..470).step_by(5).filter(|p| !(33..65).contains(p)) {
        let sealer = RecipientSealer::new(At(&v1, NOW), Tampering(&w.kms, position));
        assert!(sealer.unseal(b"c", &sealed).is_err(), "position {position}");
    }
}
