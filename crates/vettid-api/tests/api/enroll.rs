//! Enrollment codes, QR tokens and enrollment tokens: lifetimes and single use.

use crate::harness::Harness;
use axum::http::StatusCode;
use serde_json::json;
use vettid_crypto::sign::SigningKey;

#[tokio::test]
async fn an_enrollment_code_expires_after_5_minutes() {
    let h = Harness::new().await;
    h.approved_member("late@example.com").await;
    let session = h.sign_in("late@example.com").await;
    let s = h.enrollment_session(&session).await;
    assert_eq!(s["expires_at"].as_i64().unwrap() - h.now() as i64, 300);
    h.advance(300);
    let before = h.snapshot().await;
    h.authenticate(json!({ "code": s["code"] }))
        .await
        .assert_error(StatusCode::GONE, "gone");
    let qr = json!({ "session_token": s["qr"]["session_token"] });
    h.authenticate(qr)
        .await
        .assert_error(StatusCode::GONE, "gone");
    assert_eq!(h.snapshot().await, before);

    let s = h.enrollment_session(&session).await;
    h.advance(299);
    let r = h.authenticate(json!({ "code": s["code"] })).await;
    assert_eq!(r.status, StatusCode::OK, "one second before: {}", r.body);
}

#[tokio::test]
async fn an_enrollment_code_and_its_qr_work_once_together() {
    let h = Harness::new().await;
    h.approved_member("once@example.com").await;
    let session = h.sign_in("once@example.com").await;
    let s = h.enrollment_session(&session).await;
    let qr = json!({ "session_token": s["qr"]["session_token"] });
    let first = h.authenticate(qr.clone()).await;
    assert_eq!(
        first.status,
        StatusCode::OK,
        "the QR token authenticates: {}",
        first.body
    );
    let before = h.snapshot().await;
    h.authenticate(qr)
        .await
        .assert_error(StatusCode::GONE, "gone");
    h.authenticate(json!({ "code": s["code"] }))
        .await
        .assert_error(StatusCode::GONE, "gone");
    assert_eq!(h.snapshot().await, before);
}

#[tokio::test]
async fn unknown_codes_are_401_and_malformed_ones_400() {
    let h = Harness::new().await;
    let r = h.authenticate(json!({ "code": "ZZZZ-ZZZZ" })).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let r = h
        .authenticate(json!({ "session_token": "A".repeat(43) }))
        .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    for body in [
        json!({ "code": "ZZZZ-ZZZ" }),
        json!({ "code": "ZZZZ-ZZZU" }),
        json!({ "code": "ZZZZ-ZZZZ", "session_token": "A".repeat(43) }),
        json!({}),
        json!({ "code": "ZZZZ-ZZZZ", "device_name": "" }),
        json!({ "code": "ZZZZ-ZZZZ", "device_name": "x".repeat(101) }),
        json!({ "code": "ZZZZ-ZZZZ", "device_name": "tab\there" }),
    ] {
        h.authenticate(body)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
}

#[tokio::test]
async fn a_new_session_ends_the_unused_code_of_the_previous_one() {
    let h = Harness::new().await;
    h.approved_member("twice@example.com").await;
    let session = h.sign_in("twice@example.com").await;
    let old = h.enrollment_session(&session).await;
    let new = h.enrollment_session(&session).await;
    h.authenticate(json!({ "code": old["code"] }))
        .await
        .assert_error(StatusCode::GONE, "gone");
    let r = h.authenticate(json!({ "code": new["code"] })).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn an_enrollment_token_expires_after_10_minutes() {
    let h = Harness::new().await;
    let e = h.enrolling_member("token@example.com").await;
    let key = nkeys::KeyPair::new_user().public_key();
    h.advance(599);
    let r = h
        .post("/v1/enroll/status")
        .bearer(&e.token)
        .json(&json!({"phase": "nats_connected"}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    h.advance(1);
    let before = h.snapshot().await;
    let r = h
        .post("/v1/enroll/nats")
        .bearer(&e.token)
        .json(&json!({"nats_public_key": key}))
        .send()
        .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let device = SigningKey::generate();
    let r = h
        .post("/v1/enroll/finalize")
        .bearer(&e.token)
        .json(&json!({
            "device_public_key": hex::encode(device.verifying_key().to_bytes()),
            "nats_public_key": key,
        }))
        .send()
        .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(h.snapshot().await, before);
}

#[tokio::test]
async fn finalize_works_once_and_a_device_key_belongs_to_one_member() {
    let h = Harness::new().await;
    let e = h.enrolling_member("fin@example.com").await;
    let device = SigningKey::generate();
    let body = json!({
        "device_public_key": hex::encode(device.verifying_key().to_bytes()),
        "nats_public_key": nkeys::KeyPair::new_user().public_key(),
    });
    let finalize = |token: String, body: serde_json::Value| {
        h.post("/v1/enroll/finalize")
            .bearer(&token)
            .json(&body)
            .send()
    };
    assert_eq!(
        finalize(e.token.clone(), body.clone()).await.status,
        StatusCode::OK
    );
    let before = h.snapshot().await;
    finalize(e.token.clone(), body.clone())
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(h.snapshot().await, before);

    // another member presenting the same device key
    let other = h.enrolling_member("copy@example.com").await;
    let mut copy = body.clone();
    copy["nats_public_key"] = json!(nkeys::KeyPair::new_user().public_key());
    let before = h.snapshot().await;
    finalize(other.token.clone(), copy)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    assert_eq!(
        h.snapshot().await,
        before,
        "the enrollment token was not spent"
    );
    let mut fresh = body;
    fresh["device_public_key"] = json!(hex::encode(
        SigningKey::generate().verifying_key().to_bytes()
    ));
    fresh["nats_public_key"] = json!(nkeys::KeyPair::new_user().public_key());
    assert_eq!(finalize(other.token, fresh).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_status_route_takes_only_app_reported_phases() {
    let h = Harness::new().await;
    let e = h.enrolling_member("phase@example.com").await;
    let before = h.snapshot().await;
    for phase in [
        "created",
        "authenticated",
        "completed",
        "NATS_CONNECTED",
        "flying",
        "",
    ] {
        let r = h
            .post("/v1/enroll/status")
            .bearer(&e.token)
            .json(&json!({ "phase": phase }))
            .send()
            .await;
        r.assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
    assert_eq!(h.snapshot().await, before);
    let r = h
        .post("/v1/enroll/status")
        .bearer(&e.token)
        .json(&json!({"phase": "password_set"}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "skipping ahead is allowed");
    let uri = format!("/v1/enroll/sessions/{}", e.session_id);
    let view = h.get(&uri).bearer(&e.session).send().await;
    assert_eq!(view.body["phase"], "password_set");
}

/// Issue 11, finding 6: an enrollment code has ~40 bits; stored as a plain hash, whoever reads
/// the database inverts it within its 5 minutes. Codes and tokens are stored under a key.
#[tokio::test]
async fn codes_and_tokens_are_stored_under_a_server_key_not_as_plain_hashes() {
    use sha2::Digest;
    let h = Harness::new().await;
    h.approved_member("keyed@example.com").await;
    let session = h.sign_in("keyed@example.com").await;
    let s = h.enrollment_session(&session).await;
    let code = s["code"].as_str().unwrap();
    let (code_hash, qr_hash): (String, String) =
        sqlx::query_as("SELECT code_hash, qr_token_hash FROM enrollment_sessions")
            .fetch_one(&h.db)
            .await
            .unwrap();
    let plain = |t: &str| hex::encode(sha2::Sha256::digest(t.as_bytes()));
    for form in [code.to_owned(), code.replace('-', "")] {
        assert_ne!(
            code_hash,
            plain(&form),
            "the code is not stored as a plain hash"
        );
    }
    assert_ne!(qr_hash, plain(s["qr"]["session_token"].as_str().unwrap()));
    // The key is the server's own file.
    use std::os::unix::fs::PermissionsExt;
    let key = h.dir.path().join("data/secrets.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(std::fs::read(&key).unwrap().len(), 32);
    // And the code still works.
    let r = h.authenticate(json!({ "code": code })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
