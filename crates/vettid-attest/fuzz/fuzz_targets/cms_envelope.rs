//! The BER/CMS reader behind `CiphertextForRecipient` on arbitrary bytes: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vettid_attest::seal::RecipientKey;

static KEY: OnceLock<RecipientKey> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let key = KEY.get_or_init(RecipientKey::generate);
    let _ = key.unwrap(data);
});
