//! More devices through the router: a join approved by a registered device with the enclave's
//! document, its one-time token, and removal — each refused when signed by someone else,
//! replayed, or with a document for other keys (the whole journey against the real stack:
//! `vettid/tests/e2e.rs::a_second_device_joins_with_the_first_ones_approval_and_is_removed`).

use crate::harness::{Enrolling, Harness, TestDevice, test_enclave};
use axum::http::StatusCode;
use serde_json::{Value, json};

fn now_ms(h: &Harness) -> u64 {
    h.now() * 1000
}

/// A join request body, signed by `signer` at `ts`, with the enclave's document for `doc_for`
/// (the keys the document binds).
fn join_body(
    h: &Harness,
    e: &Enrolling,
    signer: &TestDevice,
    new: &TestDevice,
    doc_for: &TestDevice,
    ts: u64,
) -> Value {
    let member = &e.member_id;
    let new_key = new.device.verifying_key().to_bytes();
    let message = vettid_proto::auth::device_join_message(member, ts, &new_key, &new.session_key);
    let binding = vettid_proto::auth::added_device_binding(
        member,
        &doc_for.session_key,
        &doc_for.device.verifying_key().to_bytes(),
        &e.device.vault.verifying_key().to_bytes(),
    );
    json!({
        "member_id": member,
        "device_public_key": hex::encode(signer.device.verifying_key().to_bytes()),
        "timestamp": ts,
        "signature": hex::encode(signer.device.sign(&message).to_bytes()),
        "new_device_public_key": hex::encode(new_key),
        "new_session_public_key": hex::encode(new.session_key),
        "device_name": "laptop",
        "device_attestation": test_enclave().document_at(&binding, h.now()),
    })
}

fn finalize_body(member: &str, device: &TestDevice) -> Value {
    let nats = nkeys::KeyPair::new_user().public_key();
    let message = vettid_proto::auth::device_joined_message(member, &nats);
    json!({
        "device_public_key": hex::encode(device.device.verifying_key().to_bytes()),
        "nats_public_key": nats,
        "signature": hex::encode(device.device.sign(&message).to_bytes()),
    })
}

#[tokio::test]
async fn a_join_needs_a_registered_devices_signature_and_the_enclaves_word_and_its_token_works_once()
 {
    let h = Harness::new().await;
    let e = h.with_vault("two@example.com").await;
    let new = TestDevice::new();
    let stranger = TestDevice::new();
    let join = |body: Value| {
        let h = &h;
        async move { h.post("/v1/devices/join").json(&body).send().await }
    };

    // Signed by a key the member does not have: refused.
    let r = join(join_body(&h, &e, &stranger, &new, &new, now_ms(&h))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    // The enclave's document for other keys than those asked: refused.
    let r = join(join_body(&h, &e, &e.device, &new, &stranger, now_ms(&h))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    // Right: a token. The same signature again: replayed.
    let ts = now_ms(&h) + 1;
    let body = join_body(&h, &e, &e.device, &new, &new, ts);
    let r = join(body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let token = r.body["join_token"].as_str().unwrap().to_owned();
    let r = join(body).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);

    // The token is not an enrollment token.
    let r = h
        .post("/v1/enroll/finalize")
        .bearer(&token)
        .json(&e.finalize_body(&nkeys::KeyPair::new_user().public_key()))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    // Another device with the token: refused; the approved one: credentials, once.
    let finalize = |body: Value| {
        let (h, token) = (&h, &token);
        async move {
            h.post("/v1/devices/join/finalize")
                .bearer(token)
                .json(&body)
                .send()
                .await
        }
    };
    let r = finalize(finalize_body(&e.member_id, &stranger)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    let mut forged = finalize_body(&e.member_id, &stranger);
    forged["device_public_key"] = json!(hex::encode(new.device.verifying_key().to_bytes()));
    let r = finalize(forged).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "the approved key, signed by another: {}",
        r.body
    );
    let r = finalize(finalize_body(&e.member_id, &new)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body["jwt"].is_string());
    let r = finalize(finalize_body(&e.member_id, &new)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);

    // Expired after 15 minutes.
    let other = TestDevice::new();
    let r = join(join_body(&h, &e, &e.device, &other, &other, now_ms(&h) + 2)).await;
    let late = r.body["join_token"].as_str().unwrap().to_owned();
    h.advance(15 * 60);
    let r = h
        .post("/v1/devices/join/finalize")
        .bearer(&late)
        .json(&finalize_body(&e.member_id, &other))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
}

#[tokio::test]
async fn a_removal_needs_the_enclaves_word_for_that_device_and_revokes_it() {
    let h = Harness::new().await;
    let e = h.with_vault("three@example.com").await;
    let new = TestDevice::new();
    let r = h
        .post("/v1/devices/join")
        .json(&join_body(&h, &e, &e.device, &new, &new, now_ms(&h)))
        .send()
        .await;
    let token = r.body["join_token"].as_str().unwrap().to_owned();
    let r = h
        .post("/v1/devices/join/finalize")
        .bearer(&token)
        .json(&finalize_body(&e.member_id, &new))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let remove = |doc_for: &TestDevice, ts: u64| {
        let removed = new.device.verifying_key().to_bytes();
        let message = vettid_proto::auth::device_remove_message(&e.member_id, ts, &removed);
        let binding = vettid_proto::auth::removed_device_binding(
            &e.member_id,
            &doc_for.session_key,
            &doc_for.device.verifying_key().to_bytes(),
            &e.device.vault.verifying_key().to_bytes(),
        );
        json!({
            "member_id": e.member_id,
            "device_public_key": hex::encode(e.device.device.verifying_key().to_bytes()),
            "timestamp": ts,
            "signature": hex::encode(e.device.device.sign(&message).to_bytes()),
            "removed_device_public_key": hex::encode(removed),
            "device_attestation": test_enclave().document_at(&binding, h.now()),
        })
    };
    // The enclave's word for removing the first device is not its word for this one.
    let r = h
        .post("/v1/devices/remove")
        .json(&remove(&e.device, now_ms(&h) + 1))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    // (The harness's NATS server is not reachable: the revocation is recorded, its push 502.)
    let r = h
        .post("/v1/devices/remove")
        .json(&remove(&new, now_ms(&h) + 2))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.body);
    // Nor renew its NATS credentials.
    let nats = nkeys::KeyPair::new_user().public_key();
    let secs = h.now() + 1;
    let message = vettid_proto::auth::nats_refresh_message(&e.member_id, &nats, secs);
    let r = h
        .post("/v1/nats/refresh")
        .json(&json!({
            "member_id": e.member_id,
            "device_public_key": hex::encode(new.device.verifying_key().to_bytes()),
            "nats_public_key": nats,
            "timestamp": secs,
            "signature": hex::encode(new.device.sign(&message).to_bytes()),
        }))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    // The removed device can no longer sign anything for the member.
    let message =
        vettid_proto::auth::device_join_message(&e.member_id, now_ms(&h) + 3, &[1; 32], &[2; 32]);
    let r = h
        .post("/v1/devices/join")
        .json(&json!({
            "member_id": e.member_id,
            "device_public_key": hex::encode(new.device.verifying_key().to_bytes()),
            "timestamp": now_ms(&h) + 3,
            "signature": hex::encode(new.device.sign(&message).to_bytes()),
            "new_device_public_key": hex::encode([1u8; 32]),
            "new_session_public_key": hex::encode([2u8; 32]),
            "device_name": "x",
            "device_attestation": "",
        }))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
}

/// A device removed before it finished joining: its join ends, and its token gets nothing.
#[tokio::test]
async fn a_device_removed_before_it_finished_joining_gets_nothing() {
    let h = Harness::new().await;
    let e = h.with_vault("four@example.com").await;
    let new = TestDevice::new();
    let r = h
        .post("/v1/devices/join")
        .json(&join_body(&h, &e, &e.device, &new, &new, now_ms(&h)))
        .send()
        .await;
    let token = r.body["join_token"].as_str().unwrap().to_owned();
    let removed = new.device.verifying_key().to_bytes();
    let ts = now_ms(&h) + 1;
    let message = vettid_proto::auth::device_remove_message(&e.member_id, ts, &removed);
    let binding = vettid_proto::auth::removed_device_binding(
        &e.member_id,
        &new.session_key,
        &removed,
        &e.device.vault.verifying_key().to_bytes(),
    );
    let r = h
        .post("/v1/devices/remove")
        .json(&json!({
            "member_id": e.member_id,
            "device_public_key": hex::encode(e.device.device.verifying_key().to_bytes()),
            "timestamp": ts,
            "signature": hex::encode(e.device.device.sign(&message).to_bytes()),
            "removed_device_public_key": hex::encode(removed),
            "device_attestation": test_enclave().document_at(&binding, h.now()),
        }))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = h
        .post("/v1/devices/join/finalize")
        .bearer(&token)
        .json(&finalize_body(&e.member_id, &new))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
}
