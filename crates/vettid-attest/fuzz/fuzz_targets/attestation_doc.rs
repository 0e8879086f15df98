//! The attestation document parser and verifier on arbitrary bytes: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vettid_attest::{Policy, TrustedRoot, verify};

static ROOT: OnceLock<TrustedRoot> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let root = ROOT.get_or_init(|| {
        TrustedRoot::from_pem(include_str!("../../tests/fixtures/nitro/aws-nitro-root-g1.pem")).unwrap()
    });
    let mut policy = Policy::new(root, 1_736_179_685);
    policy.nonce = Some(b"nonce");
    let _ = verify(data, &policy);
    let _ = vettid_attest::AttestationDoc::from_cbor(data);
});
