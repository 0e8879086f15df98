//! The PCR manifest reader on arbitrary text: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vettid_attest::manifest::Manifest;
use vettid_crypto::sign::SigningKey;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let key = SigningKey::from_seed(&vettid_crypto::SecretBytes::from_array([1; 32])).verifying_key();
        let _ = Manifest::verify(text, &key, 0);
    }
});
