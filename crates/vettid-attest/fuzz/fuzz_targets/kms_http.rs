//! What reaches the enclave from its key service, and its measured configuration: the HTTP
//! response and request readers and the configuration parser on arbitrary bytes, never a
//! panic and never more than their bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vettid_attest::seal::kms::http;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = http::read_response(&mut &data[..]) {
        assert!(r.body.len() <= http::MAX_BODY);
    }
    let _ = http::read_request(&mut &data[..]);
    let _ = vettid_proto::platform::EnclaveConfig::parse(data);
});
