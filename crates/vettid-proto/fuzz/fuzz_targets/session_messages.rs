//! What the enclave and the app parse from each other: outer session messages (exact
//! postcard), padded inner envelopes and events, and the enclave's side of the Noise
//! handshake (message 1 with its X-Wing ciphertext, then message 3) on arbitrary bytes.
//! Never a panic; a message that does not authenticate is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vettid_crypto::SecretBytes;
use vettid_crypto::noise::{self, KemSecret};
use vettid_proto::session::{
    AppOp, Channel, Event, FromApp, Reply, Request, SealedEvent, ToApp, decode_exact,
    open_plaintext, prologue,
};

fn keys() -> &'static (SecretBytes<32>, KemSecret) {
    static KEYS: OnceLock<(SecretBytes<32>, KemSecret)> = OnceLock::new();
    KEYS.get_or_init(|| {
        (
            SecretBytes::from_array([2; 32]),
            KemSecret::from_seed(&SecretBytes::from_array([5; 32])),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = decode_exact::<FromApp>(data);
    let _ = decode_exact::<ToApp>(data);
    let _ = decode_exact::<SealedEvent>(data);
    let _ = open_plaintext::<Request>(data);
    let _ = open_plaintext::<Reply>(data);
    let _ = open_plaintext::<Event>(data);
    let _ = open_plaintext::<AppOp>(data);

    // The responder on an arbitrary message 1, then (split) message 3.
    let (static_key, kem) = keys();
    // Two bytes of length, then message 1, then message 3 (the seeds are the published
    // vectors' handshake, so the fuzzer starts from messages that authenticate).
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let (first, second) = rest.split_at(usize::from(u16::from_be_bytes(*len)).min(rest.len()));
    let member = "7bf1138e-1311-4fd1-8e43-907f52141e19";
    let Ok(mut hs) = noise::responder(&prologue(member, Channel::Session), static_key) else {
        return;
    };
    let mut payload = vec![0u8; noise::MAX_MESSAGE];
    let Ok(n) = hs.read_message(first, &mut payload) else {
        return;
    };
    let Some(psk) = kem.decapsulate(&payload[..n]) else {
        return;
    };
    if hs.set_psk(3, psk.expose()).is_err() {
        return;
    }
    let mut out = vec![0u8; noise::MAX_MESSAGE];
    if hs.write_message(&[], &mut out).is_err() {
        return;
    }
    let _ = hs.read_message(second, &mut payload);
});
