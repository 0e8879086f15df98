//! Issue 11, finding 3: an admin can evict a member, and a vault is enrolled once.

use crate::harness::Harness;
use axum::http::{Method, StatusCode};
use serde_json::json;
use vettid_crypto::sign::SigningKey;

/// A member with a finalized enrollment: (member id, web session, device key).
async fn enrolled(h: &Harness, email: &str) -> (String, String, SigningKey) {
    let e = h.enrolling_member(email).await;
    let fin = h
        .post("/v1/enroll/finalize")
        .bearer(&e.token)
        .json(&e.finalize_body(&nkeys::KeyPair::new_user().public_key()))
        .send()
        .await;
    assert_eq!(fin.status, StatusCode::OK, "{}", fin.body);
    (e.member_id, e.session, e.device.device)
}

#[tokio::test]
async fn a_suspended_member_loses_sessions_sign_in_enrollment_and_renewal() {
    let h = Harness::new().await;
    let (member, session, device) = enrolled(&h, "sus@example.com").await;
    let unused_link = h.magic_link_token("sus@example.com").await;

    let r = h
        .admin(Method::POST, &format!("/v1/admin/members/{member}/suspend"))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["sessions_ended"], 1);

    // The web session is gone; a link sent before does not sign in.
    h.post("/v1/enroll/sessions")
        .bearer(&session)
        .send()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    h.post("/v1/auth/verify")
        .json(&json!({ "token": unused_link }))
        .send()
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    // No new link is mailed (the answer is the same as for anyone).
    let r = h
        .post("/v1/auth/magic-link")
        .json(&json!({ "email": "sus@example.com" }))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    h.app.background_idle().await;
    assert!(h.take_mails("sus@example.com").is_empty(), "no mail");
    // The device cannot renew its credentials.
    let key = nkeys::KeyPair::new_user();
    let message = vettid_api::refresh_message(&member, &key.public_key(), h.now());
    let r = h
        .post("/v1/nats/refresh")
        .json(&json!({
            "member_id": member,
            "device_public_key": hex::encode(device.verifying_key().to_bytes()),
            "nats_public_key": key.public_key(),
            "timestamp": h.now(),
            "signature": hex::encode(device.sign(&message).to_bytes()),
        }))
        .send()
        .await;
    assert!(
        matches!(r.status, StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED),
        "{}",
        r.body
    );

    // Lifted: the member signs in again, but a second enrollment needs recovery.
    let r = h
        .admin(
            Method::POST,
            &format!("/v1/admin/members/{member}/unsuspend"),
        )
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let session = h.sign_in("sus@example.com").await;
    h.post("/v1/enroll/sessions")
        .bearer(&session)
        .send()
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
}

#[tokio::test]
async fn a_member_whose_devices_were_revoked_cannot_enroll_a_second_vault() {
    let h = Harness::new().await;
    let (member, session, _) = enrolled(&h, "again@example.com").await;
    // Revocation reaches the database even when the server push fails (502 here).
    let _ = h
        .admin(
            Method::POST,
            &format!("/v1/admin/members/{member}/revoke-nats"),
        )
        .send()
        .await;
    h.post("/v1/enroll/sessions")
        .bearer(&session)
        .send()
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
}
