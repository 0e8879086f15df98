//! A byte stream as the enclave or the host would read it from the channel: frames, then
//! every message type decoded from each body. Never a panic, and the reader stays in step.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vettid_proto::channel::{Frame, FrameError, from_body};
use vettid_proto::enclave::{EnclaveReply, HostReply, ToEnclave, ToHost, VaultError};

fuzz_target!(|data: &[u8]| {
    let mut stream = data;
    for _ in 0..64 {
        match Frame::read_from(&mut stream) {
            Ok(frame) => {
                let _ = from_body::<ToEnclave>(&frame.body);
                let _ = from_body::<ToHost>(&frame.body);
                let _ = from_body::<HostReply>(&frame.body);
                let _ = from_body::<Result<EnclaveReply, VaultError>>(&frame.body);
            }
            Err(FrameError::Closed(_)) => break,
            Err(_) => {}
        }
    }
});
