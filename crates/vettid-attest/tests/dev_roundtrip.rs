//! Documents from the dev attestor verify with the client's code, and only as they should.

use vettid_attest::dev::{DevAttestor, DevError, DevRoot};
use vettid_attest::{AttestRequest, Measurement, Policy, VerifyError, verify};

const NOW: u64 = 1_800_000_000;

fn setup() -> (DevRoot, DevAttestor, Measurement) {
    let root = DevRoot::generate(NOW - 86_400);
    let m = Measurement::of_enclave(b"enclave binary v1", b"{\"pin_attempts\":10}");
    let attestor = DevAttestor::new(&root, m.clone());
    (root, attestor, m)
}

fn request(nonce: &[u8], public_key: &[u8]) -> AttestRequest {
    AttestRequest {
        nonce: Some(nonce.to_vec()),
        public_key: Some(public_key.to_vec()),
        user_data: Some(b"hash of the enclave keys".to_vec()),
    }
}

#[test]
fn round_trip_binds_nonce_public_key_user_data_and_pcrs() {
    let (root, attestor, m) = setup();
    let doc = attestor
        .attest(&request(b"nonce-1", b"noise static key"), NOW)
        .unwrap();
    let trusted = root.trusted();
    let pcrs = m.as_pcrs();
    let mut policy = Policy::new(&trusted, NOW + 10);
    policy.nonce = Some(b"nonce-1");
    policy.pcrs = &pcrs;
    let verified = verify(&doc, &policy).unwrap();
    assert_eq!(
        verified.public_key.as_deref(),
        Some(&b"noise static key"[..])
    );
    assert_eq!(
        verified.user_data.as_deref(),
        Some(&b"hash of the enclave keys"[..])
    );
    assert_eq!(verified.pcrs[&0], m.pcr0.to_vec());
    assert_eq!(verified.timestamp_ms, NOW * 1000);
}

#[test]
fn a_document_from_another_data_directorys_root_is_refused() {
    let (_root, attestor, _) = setup();
    let doc = attestor.attest(&AttestRequest::default(), NOW).unwrap();
    let other = DevRoot::generate(NOW - 86_400).trusted();
    assert_eq!(
        verify(&doc, &Policy::new(&other, NOW)),
        Err(VerifyError::Chain)
    );
}

#[test]
fn nonce_binding_is_checked() {
    let (root, attestor, _) = setup();
    let trusted = root.trusted();
    let doc = attestor.attest(&request(b"nonce-1", b"k"), NOW).unwrap();
    let mut policy = Policy::new(&trusted, NOW);
    policy.nonce = Some(b"nonce-2");
    assert_eq!(verify(&doc, &policy), Err(VerifyError::NonceMismatch));
    let doc = attestor.attest(&AttestRequest::default(), NOW).unwrap();
    assert_eq!(verify(&doc, &policy), Err(VerifyError::NonceMismatch));
}

#[test]
fn public_key_binding_is_checked() {
    let (root, attestor, _) = setup();
    let trusted = root.trusted();
    let doc = attestor.attest(&request(b"n", b"key-A"), NOW).unwrap();
    let mut policy = Policy::new(&trusted, NOW);
    policy.public_key = Some(b"key-A");
    assert!(verify(&doc, &policy).is_ok());
    policy.public_key = Some(b"key-B");
    assert_eq!(verify(&doc, &policy), Err(VerifyError::PublicKeyMismatch));
    let unbound = attestor.attest(&AttestRequest::default(), NOW).unwrap();
    assert_eq!(
        verify(&unbound, &policy),
        Err(VerifyError::PublicKeyMismatch)
    );
}

#[test]
fn a_different_enclave_binary_fails_the_pcr_check() {
    let (root, attestor, _) = setup();
    let doc = attestor.attest(&AttestRequest::default(), NOW).unwrap();
    let other = Measurement::of_enclave(b"enclave binary v2", b"{\"pin_attempts\":10}").as_pcrs();
    let trusted = root.trusted();
    let mut policy = Policy::new(&trusted, NOW);
    policy.pcrs = &other;
    assert_eq!(verify(&doc, &policy), Err(VerifyError::PcrMismatch(0)));
    let other_config = Measurement::of_enclave(b"enclave binary v1", b"{}").as_pcrs();
    policy.pcrs = &other_config;
    assert_eq!(verify(&doc, &policy), Err(VerifyError::PcrMismatch(2)));
}

#[test]
fn leaves_are_short_lived_and_renewed() {
    let (root, attestor, _) = setup();
    let trusted = root.trusted();
    let doc = attestor.attest(&AttestRequest::default(), NOW).unwrap();
    // Four hours later the leaf has expired: refused even with freshness checks off.
    let mut policy = Policy::new(&trusted, NOW + 4 * 3600);
    policy.max_age_secs = None;
    assert_eq!(verify(&doc, &policy), Err(VerifyError::Expired));
    // A document made then carries a renewed leaf and verifies.
    let later = attestor
        .attest(&AttestRequest::default(), NOW + 4 * 3600)
        .unwrap();
    assert!(verify(&later, &Policy::new(&trusted, NOW + 4 * 3600)).is_ok());
}

#[test]
fn stale_and_future_documents_are_refused() {
    let (root, attestor, _) = setup();
    let trusted = root.trusted();
    let doc = attestor.attest(&AttestRequest::default(), NOW).unwrap();
    assert_eq!(
        verify(&doc, &Policy::new(&trusted, NOW + 301)),
        Err(VerifyError::Expired)
    );
    assert_eq!(
        verify(&doc, &Policy::new(&trusted, NOW - 61)),
        Err(VerifyError::NotYetValid)
    );
}

#[test]
fn oversized_requests_are_refused_by_the_attestor() {
    let (_root, attestor, _) = setup();
    let big = AttestRequest {
        nonce: Some(vec![0; 513]),
        ..Default::default()
    };
    assert_eq!(
        attestor.attest(&big, NOW),
        Err(DevError::RequestTooLarge("nonce"))
    );
    let big = AttestRequest {
        public_key: Some(vec![0; 1025]),
        ..Default::default()
    };
    assert_eq!(
        attestor.attest(&big, NOW),
        Err(DevError::RequestTooLarge("public_key"))
    );
}

#[test]
fn the_root_survives_a_round_trip_through_pem_files() {
    let (root, attestor, _) = setup();
    let loaded = DevRoot::from_pem(&root.key_pem(), &root.cert_pem()).unwrap();
    assert_eq!(loaded.cert_pem(), root.cert_pem());
    let doc = attestor.attest(&AttestRequest::default(), NOW).unwrap();
    assert!(verify(&doc, &Policy::new(&loaded.trusted(), NOW)).is_ok());
    let stranger = DevRoot::generate(NOW);
    assert!(matches!(
        DevRoot::from_pem(&stranger.key_pem(), &root.cert_pem()),
        Err(DevError::BadRoot(_))
    ));
    assert!(DevRoot::from_pem("garbage", &root.cert_pem()).is_err());
}

#[test]
fn debug_mode_documents_are_refused_unless_allowed() {
    let root = DevRoot::generate(NOW - 86_400);
    let zero = Measurement {
        pcr0: [0; 48],
        pcr1: [0; 48],
        pcr2: [0; 48],
    };
    let doc = DevAttestor::new(&root, zero)
        .attest(&AttestRequest::default(), NOW)
        .unwrap();
    let trusted = root.trusted();
    let mut policy = Policy::new(&trusted, NOW);
    assert_eq!(verify(&doc, &policy), Err(VerifyError::DebugMode));
    policy.allow_debug = true;
    assert!(verify(&doc, &policy).is_ok());
}
