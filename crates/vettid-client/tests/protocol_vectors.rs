//! The session protocol's test vectors (`docs/protocol-vectors.json`, described in
//! `docs/PROTOCOL.md`): regenerated from fixed seeds with the production code paths and
//! compared byte for byte. `VETTID_REGENERATE_VECTORS=1` rewrites the file (review the diff).

use serde_json::{Value, json};
use sha2::Digest;
use vettid_crypto::SecretBytes;
use vettid_crypto::noise::{self, KemSecret};
use vettid_proto::enclave::VaultError;
use vettid_proto::session::{
    AppOp, AppReply, Channel, FromApp, Reply, Request, ToApp, VERSION, kem_binding, prologue,
    seal_plaintext,
};

fn seed(byte: u8) -> SecretBytes<32> {
    SecretBytes::from_array([byte; 32])
}

fn vectors() -> Value {
    let member = "7bf1138e-1311-4fd1-8e43-907f52141e19";
    let channel = Channel::Session;
    let (app_static, enclave_static) = (seed(0x01), seed(0x02));
    let (app_ephemeral, enclave_ephemeral) = (seed(0x03), seed(0x04));
    let kem = KemSecret::from_seed(&seed(0x05));
    let kem_public = kem.public_key();
    let randomness = [0x06u8; 64];
    let session: [u8; 16] = [0x07; 16];
    let timestamp_ms = 1_800_000_000_000u64;

    let (kem_ciphertext, psk) = noise::encapsulate_with(&kem_public, &randomness).unwrap();
    assert_eq!(kem.decapsulate(&kem_ciphertext).unwrap(), psk);
    let prologue = prologue(member, channel);
    let mut app = noise::initiator_with_ephemeral(
        &prologue,
        &app_static,
        &noise::public_key(&enclave_static),
        &psk,
        &app_ephemeral,
    )
    .unwrap();
    let mut enclave =
        noise::responder_with_ephemeral(&prologue, &enclave_static, &enclave_ephemeral).unwrap();
    let mut buf = vec![0u8; noise::MAX_MESSAGE];
    let mut out = vec![0u8; noise::MAX_MESSAGE];

    let n = app.write_message(&kem_ciphertext, &mut buf).unwrap();
    let msg1 = buf[..n].to_vec();
    let k = enclave.read_message(&msg1, &mut out).unwrap();
    assert_eq!(&out[..k], &kem_ciphertext[..]);
    enclave
        .set_psk(3, kem.decapsulate(&out[..k]).unwrap().expose())
        .unwrap();
    let n = enclave.write_message(&[], &mut buf).unwrap();
    let msg2 = buf[..n].to_vec();
    app.read_message(&msg2, &mut out).unwrap();
    let n = app.write_message(&[], &mut buf).unwrap();
    let msg3 = buf[..n].to_vec();
    enclave.read_message(&msg3, &mut out).unwrap();
    assert_eq!(
        enclave.get_remote_static().unwrap(),
        noise::public_key(&app_static)
    );
    let handshake_hash = app.get_handshake_hash().to_vec();
    assert_eq!(handshake_hash, enclave.get_handshake_hash());
    let app = app.into_stateless_transport_mode().unwrap();
    let enclave = enclave.into_stateless_transport_mode().unwrap();

    let request = seal_plaintext(&Request {
        version: VERSION,
        id: 1,
        timestamp_ms,
        op: AppOp::Unlock {
            pin: zeroize::Zeroizing::new(b"4821".to_vec()),
        },
    });
    let n = app.write_message(1, &request, &mut buf).unwrap();
    let request_ciphertext = buf[..n].to_vec();
    let k = enclave
        .read_message(1, &request_ciphertext, &mut out)
        .unwrap();
    assert_eq!(&out[..k], &request[..]);
    let reply = seal_plaintext(&Reply {
        version: VERSION,
        id: 1,
        result: Err::<AppReply, _>(VaultError::WrongPin { attempts_left: 9 }),
        vault_version: None,
    });
    let n = enclave.write_message(1, &reply, &mut buf).unwrap();
    let reply_ciphertext = buf[..n].to_vec();

    fn h(bytes: impl AsRef<[u8]>) -> String {
        hex::encode(bytes)
    }
    json!({
        "protocol": noise::PROTOCOL,
        "inputs": {
            "member": member,
            "channel": channel.as_str(),
            "app_static_private": h(app_static.expose()),
            "enclave_static_private": h(enclave_static.expose()),
            "app_ephemeral_private": h(app_ephemeral.expose()),
            "enclave_ephemeral_private": h(enclave_ephemeral.expose()),
            "xwing_seed": h(seed(0x05).expose()),
            "xwing_encapsulation_randomness": h(randomness),
            "session_id": h(session),
            "timestamp_ms": timestamp_ms,
            "request": "Unlock { pin: \"4821\" }, id 1",
            "reply": "Err(WrongPin { attempts_left: 9 }), id 1, no vault version",
        },
        "derived": {
            "prologue": h(&prologue),
            "app_static_public": h(noise::public_key(&app_static)),
            "enclave_static_public": h(noise::public_key(&enclave_static)),
            "xwing_public_key": h(&kem_public),
            "xwing_public_key_sha256": h(sha2::Sha256::digest(&kem_public)),
            "attestation_user_data": h(kem_binding(&kem_public)),
            "xwing_ciphertext": h(&kem_ciphertext),
            "psk": h(psk.expose()),
        },
        "messages": {
            "handshake_1": h(&msg1),
            "handshake_2": h(&msg2),
            "handshake_3": h(&msg3),
            "handshake_hash": h(&handshake_hash),
            "wire_hello": h(postcard::to_allocvec(&FromApp::Hello { msg: msg1.clone() }).unwrap()),
            "wire_accept": h(postcard::to_allocvec(&ToApp::Accept { session, msg: msg2.clone() }).unwrap()),
            "wire_finish": h(postcard::to_allocvec(&FromApp::Finish { session, msg: msg3.clone() }).unwrap()),
            "request_plaintext": h(&request),
            "request_ciphertext": h(&request_ciphertext),
            "wire_request": h(postcard::to_allocvec(&FromApp::Request { session, counter: 1, ciphertext: request_ciphertext.clone() }).unwrap()),
            "reply_plaintext": h(&reply),
            "reply_ciphertext": h(&reply_ciphertext),
            "wire_reply": h(postcard::to_allocvec(&ToApp::Reply { counter: 1, ciphertext: reply_ciphertext.clone() }).unwrap()),
        }
    })
}

#[test]
fn the_published_vectors_are_what_the_code_produces() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/protocol-vectors.json");
    let now = vectors();
    if std::env::var_os("VETTID_REGENERATE_VECTORS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&now).unwrap() + "\n").unwrap();
    }
    let published: Value = serde_json::from_str(
        &std::fs::read_to_string(&path)
            .expect("docs/protocol-vectors.json (regenerate with VETTID_REGENERATE_VECTORS=1)"),
    )
    .unwrap();
    assert_eq!(
        published, now,
        "the protocol changed: review, then regenerate the vectors"
    );
}

#[test]
fn the_vectors_are_deterministic() {
    assert_eq!(vectors(), vectors());
}
