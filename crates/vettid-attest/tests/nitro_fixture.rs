//! A real AWS Nitro attestation document (tests/fixtures/nitro/README.md), replayed with an
//! injected time: accepted one minute after it was made, refused in every other situation.

use vettid_attest::{Policy, TrustedRoot, VerifyError, verify};

const DOC: &[u8] = include_bytes!("fixtures/nitro/attestation.cose");
const ROOT_PEM: &str = include_str!("fixtures/nitro/aws-nitro-root-g1.pem");
/// One minute after the document's timestamp (1736179625472 ms).
const AT: u64 = 1_736_179_685;
const MODULE_ID: &str = "i-0bee92034f3d60691-enc01943c5eaab3ad6a";

fn root() -> TrustedRoot {
    TrustedRoot::from_pem(ROOT_PEM).unwrap()
}

#[test]
fn accepted_one_minute_after_issue() {
    let root = root();
    let doc = verify(DOC, &Policy::new(&root, AT)).unwrap();
    assert_eq!(doc.module_id, MODULE_ID);
    assert_eq!(doc.timestamp_ms, 1_736_179_625_472);
    assert_eq!(doc.pcrs.len(), 16);
    assert_eq!(doc.public_key.as_ref().map(Vec::len), Some(294));
    assert_eq!((doc.user_data.as_ref(), doc.nonce.as_ref()), (None, None));
    assert_eq!(doc.cabundle.len(), 4);
}

#[test]
fn accepted_with_its_own_pcrs_expected() {
    let root = root();
    let doc = verify(DOC, &Policy::new(&root, AT)).unwrap();
    let expected: Vec<(u8, Vec<u8>)> = (0..3).map(|i| (i, doc.pcrs[&i].clone())).collect();
    let mut policy = Policy::new(&root, AT);
    policy.pcrs = &expected;
    assert!(verify(DOC, &policy).is_ok());
}

#[test]
fn refused_as_expired_at_the_current_time() {
    let root = root();
    // 2026-11-28: the leaf certificate lived only a few hours in January 2025.
    let mut policy = Policy::new(&root, 1_795_000_000);
    policy.max_age_secs = None; // the certificate alone must already refuse it
    assert_eq!(verify(DOC, &policy), Err(VerifyError::Expired));
    assert_eq!(
        verify(DOC, &Policy::new(&root, 1_795_000_000)),
        Err(VerifyError::Expired)
    );
}

#[test]
fn refused_as_not_yet_valid_before_its_certificates() {
    let root = root();
    assert_eq!(
        verify(DOC, &Policy::new(&root, 1_736_000_000)),
        Err(VerifyError::NotYetValid)
    );
}

#[test]
fn refused_when_stale_even_inside_certificate_validity() {
    // Two hours later the leaf is still valid, but the document is too old to be fresh.
    let root = root();
    assert_eq!(
        verify(DOC, &Policy::new(&root, AT + 7200)),
        Err(VerifyError::Expired)
    );
}

#[test]
fn refused_against_another_root() {
    let other = vettid_attest::dev::DevRoot::generate(AT).trusted();
    assert_eq!(
        verify(DOC, &Policy::new(&other, AT)),
        Err(VerifyError::Chain)
    );
}

#[test]
fn refused_with_a_wrong_pcr0() {
    let root = root();
    for index in [0u8, 1, 2, 8] {
        let wrong = vec![(index, vec![0x11; 48])];
        let mut policy = Policy::new(&root, AT);
        policy.pcrs = &wrong;
        assert_eq!(verify(DOC, &policy), Err(VerifyError::PcrMismatch(index)));
    }
}

#[test]
fn refused_when_a_nonce_was_expected() {
    let root = root();
    let mut policy = Policy::new(&root, AT);
    policy.nonce = Some(b"fresh");
    assert_eq!(verify(DOC, &policy), Err(VerifyError::NonceMismatch));
}

/// Every single-byte change is refused, or fails to parse. Each position is flipped once
/// (xor 0x01) and every 7th also to 0x00 and 0xff: about 6,800 variants.
#[test]
fn refused_with_any_single_byte_changed() {
    let root = root();
    let policy = Policy::new(&root, AT);
    let mut accepted = Vec::new();
    for i in 0..DOC.len() {
        let mut variants = vec![DOC[i] ^ 0x01];
        if i % 7 == 0 {
            variants.extend([0x00, 0xff].into_iter().filter(|v| *v != DOC[i]));
        }
        for v in variants {
            let mut doc = DOC.to_vec();
            doc[i] = v;
            if verify(&doc, &policy).is_ok() {
                accepted.push((i, v));
            }
        }
    }
    assert!(
        accepted.is_empty(),
        "accepted after changing (offset, byte): {accepted:?}"
    );
}

#[test]
fn refused_when_truncated_or_extended() {
    let root = root();
    let policy = Policy::new(&root, AT);
    for len in (0..DOC.len()).step_by(97).chain([DOC.len() - 1]) {
        assert!(verify(&DOC[..len], &policy).is_err(), "len {len}");
    }
    let mut longer = DOC.to_vec();
    longer.push(0);
    assert!(verify(&longer, &policy).is_err());
}
