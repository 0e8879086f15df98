//! Enrollment codes, QR tokens and enrollment tokens: lifetimes and single use; the member's
//! confirmation of the device, cancellation, and the enclave's attestation of the enrolled
//! device (issue 11, finding 2).

use crate::harness::{Enrolling, Harness, TestDevice, jwt_claims};
use axum::http::StatusCode;
use serde_json::{Value, json};

/// An app's authenticate body for `code` of the member with `email`, with `device`'s keys.
fn code_body(code: &Value, email: &str, device: &TestDevice) -> Value {
    json!({
        "code": code,
        "email": email,
        "device_name": "a phone",
        "device_public_key": device.device_hex(),
        "session_public_key": hex::encode(device.session_key),
    })
}

#[tokio::test]
async fn an_enrollment_code_expires_after_5_minutes() {
    let h = Harness::new().await;
    h.approved_member("late@example.com").await;
    let session = h.sign_in("late@example.com").await;
    let s = h.enrollment_session(&session).await;
    assert_eq!(s["expires_at"].as_i64().unwrap() - h.now() as i64, 300);
    h.advance(300);
    let before = h.snapshot().await;
    h.authenticate(json!({ "code": s["code"], "email": "late@example.com" }))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let qr =
        json!({ "session_token": s["qr"]["session_token"], "member_id": s["qr"]["member_id"] });
    h.authenticate(qr)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(h.snapshot().await, before);

    let s = h.enrollment_session(&session).await;
    h.advance(299);
    let r = h
        .authenticate(json!({ "code": s["code"], "email": "late@example.com" }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "one second before: {}", r.body);
}

#[tokio::test]
async fn an_enrollment_code_and_its_qr_work_once_together() {
    let h = Harness::new().await;
    h.approved_member("once@example.com").await;
    let session = h.sign_in("once@example.com").await;
    let s = h.enrollment_session(&session).await;
    let qr =
        json!({ "session_token": s["qr"]["session_token"], "member_id": s["qr"]["member_id"] });
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
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    h.authenticate(json!({ "code": s["code"], "email": "once@example.com" }))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(h.snapshot().await, before);
}

#[tokio::test]
async fn unknown_codes_are_401_and_malformed_ones_400() {
    let h = Harness::new().await;
    let r = h
        .authenticate(json!({ "code": "ZZZZ-ZZZZ", "email": "who@example.com" }))
        .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let member = "00000000-0000-4000-8000-000000000000";
    let r = h
        .authenticate(json!({ "session_token": "A".repeat(43), "member_id": member }))
        .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let email = "who@example.com";
    for body in [
        json!({ "code": "ZZZZ-ZZZ", "email": email }),
        json!({ "code": "ZZZZ-ZZZU", "email": email }),
        json!({ "code": "ZZZZ-ZZZZ", "email": email, "session_token": "A".repeat(43) }),
        json!({}),
        json!({ "code": "ZZZZ-ZZZZ" }),
        json!({ "code": "ZZZZ-ZZZZ", "email": "not an email" }),
        json!({ "session_token": "A".repeat(43) }),
        json!({ "session_token": "A".repeat(43), "member_id": "NOT-A-UUID" }),
        json!({ "code": "ZZZZ-ZZZZ", "email": email, "device_name": "" }),
        json!({ "code": "ZZZZ-ZZZZ", "email": email, "device_name": "x".repeat(101) }),
        json!({ "code": "ZZZZ-ZZZZ", "email": email, "device_name": "tab\there" }),
        json!({ "code": "ZZZZ-ZZZZ", "email": email, "device_public_key": "00".repeat(31) }),
        json!({ "code": "ZZZZ-ZZZZ", "email": email, "session_public_key": "zz".repeat(32) }),
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
    h.authenticate(json!({ "code": old["code"], "email": "twice@example.com" }))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let r = h
        .authenticate(json!({ "code": new["code"], "email": "twice@example.com" }))
        .await;
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
    let r = h
        .post("/v1/enroll/finalize")
        .bearer(&e.token)
        .json(&e.finalize_body(&key))
        .send()
        .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(h.snapshot().await, before);
}

#[tokio::test]
async fn finalize_works_once_and_a_device_key_belongs_to_one_member() {
    let h = Harness::new().await;
    let seed = |b| vettid_crypto::SecretBytes::from_array([b; 32]);
    let same_keys = || TestDevice {
        device: vettid_crypto::sign::SigningKey::from_seed(&seed(7)),
        ..TestDevice::new()
    };
    let e = h.authenticated_member("fin@example.com", same_keys()).await;
    assert_eq!(
        h.confirm(&e, &e.comparison_code()).await.status,
        StatusCode::OK
    );
    let finalize = |token: String, body: Value| {
        h.post("/v1/enroll/finalize")
            .bearer(&token)
            .json(&body)
            .send()
    };
    let body = e.finalize_body(&nkeys::KeyPair::new_user().public_key());
    assert_eq!(
        finalize(e.token.clone(), body.clone()).await.status,
        StatusCode::OK
    );
    let before = h.snapshot().await;
    finalize(e.token.clone(), body)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(h.snapshot().await, before);

    // another member's app presenting the same device key (which its member confirmed)
    let other = h
        .authenticated_member("copy@example.com", same_keys())
        .await;
    assert_eq!(
        h.confirm(&other, &other.comparison_code()).await.status,
        StatusCode::OK
    );
    let before = h.snapshot().await;
    finalize(
        other.token.clone(),
        other.finalize_body(&nkeys::KeyPair::new_user().public_key()),
    )
    .await
    .assert_error(StatusCode::CONFLICT, "conflict");
    assert_eq!(
        h.snapshot().await,
        before,
        "the enrollment token was not spent, no vault recorded"
    );
}

#[tokio::test]
async fn the_status_route_takes_only_app_reported_phases() {
    let h = Harness::new().await;
    let e = h.enrolling_member("phase@example.com").await;
    let before = h.snapshot().await;
    for phase in [
        "created",
        "authenticated",
        "confirmed",
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
    let r = h
        .authenticate(json!({ "code": code, "email": "keyed@example.com" }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// The member's web view of `e`'s enrollment.
async fn view(h: &Harness, e: &Enrolling) -> Value {
    let r = h
        .get(&format!("/v1/enroll/sessions/{}", e.session_id))
        .bearer(&e.session)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

/// `e`'s app asks for enrollment NATS credentials.
async fn enrollment_nats(h: &Harness, e: &Enrolling, key: &str) -> crate::harness::Resp {
    h.post("/v1/enroll/nats")
        .bearer(&e.token)
        .json(&json!({ "nats_public_key": key }))
        .send()
        .await
}

/// Issue 11, finding 2: whoever saw the code and used it first got an enrollment token that
/// reached the vault and finalized a device, with nothing for the member to confirm. Now the
/// app gets nothing that reaches the vault until the member types the code it shows, and the
/// member sees the device waiting and can end it.
#[tokio::test]
async fn whoever_used_a_code_first_gets_nothing_until_the_member_confirms() {
    let h = Harness::new().await;
    // Eve saw Alice's code over her shoulder and typed it (with Alice's email) first.
    let eve = h
        .authenticated_member("alice@example.com", TestDevice::new())
        .await;
    let before = h.snapshot().await;
    let key = nkeys::KeyPair::new_user().public_key();
    enrollment_nats(&h, &eve, &key)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    h.post("/v1/enroll/status")
        .bearer(&eve.token)
        .json(&json!({ "phase": "nats_connected" }))
        .send()
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    h.post("/v1/enroll/finalize")
        .bearer(&eve.token)
        .json(&eve.finalize_body(&key))
        .send()
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    let waiting = h
        .get("/v1/enroll/confirmation")
        .bearer(&eve.token)
        .send()
        .await;
    assert_eq!(waiting.status, StatusCode::OK, "{}", waiting.body);
    assert_eq!(waiting.body["confirmed"], false);
    assert_eq!(
        h.snapshot().await,
        before,
        "nothing issued, nothing recorded"
    );

    // Alice's own app is refused (the code is spent) and her page shows a device waiting;
    // the code her app would show is not the one Eve's shows.
    let alice_phone = TestDevice::new();
    let s_code = h
        .authenticate(code_body(
            &json!("ZZZZ-ZZZZ"),
            "alice@example.com",
            &alice_phone,
        ))
        .await;
    s_code.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let page = view(&h, &eve).await;
    assert_eq!(page["awaiting_confirmation"], true, "{page}");
    assert_eq!(page["device_name"], "test phone");
    let alices_code = vettid_proto::auth::comparison_code(
        &eve.session_id,
        &eve.salt,
        &alice_phone.device.verifying_key().to_bytes(),
        &alice_phone.session_key,
    );
    assert_ne!(alices_code, eve.comparison_code());

    // She cancels: Eve's token is dead everywhere.
    let r = h
        .post(&format!("/v1/enroll/sessions/{}/cancel", eve.session_id))
        .bearer(&eve.session)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["cancelled"], true);
    assert_eq!(view(&h, &eve).await["cancelled"], "member");
    for r in [
        h.get("/v1/enroll/confirmation")
            .bearer(&eve.token)
            .send()
            .await,
        enrollment_nats(&h, &eve, &key).await,
    ] {
        r.assert_error(StatusCode::GONE, "gone");
    }
    // Too late to confirm it now, even with Eve's code.
    h.confirm(&eve, &eve.comparison_code())
        .await
        .assert_error(StatusCode::GONE, "gone");

    // A new code for Alice works for Alice's phone.
    let s = h.enrollment_session(&eve.session).await;
    let r = h
        .authenticate(code_body(&s["code"], "alice@example.com", &alice_phone))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn three_wrong_comparison_codes_cancel_the_enrollment() {
    let h = Harness::new().await;
    let e = h
        .authenticated_member("typo@example.com", TestDevice::new())
        .await;
    let right = e.comparison_code();
    let wrong = if right == "000 000" {
        "000 001"
    } else {
        "000 000"
    };
    // Not six digits: 400, not counted.
    let before = h.snapshot().await;
    for typed in ["", "12345", "1234567", "abcdef", "12 34 5x"] {
        h.confirm(&e, typed)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
    assert_eq!(h.snapshot().await, before);
    for left in [2, 1] {
        h.confirm(&e, wrong)
            .await
            .assert_error(StatusCode::FORBIDDEN, "forbidden");
        assert_eq!(view(&h, &e).await["confirm_attempts_left"], left);
    }
    h.confirm(&e, wrong)
        .await
        .assert_error(StatusCode::GONE, "gone");
    let page = view(&h, &e).await;
    assert_eq!(page["cancelled"], "wrong_comparison", "{page}");
    assert_eq!(page["awaiting_confirmation"], false);
    h.confirm(&e, &right)
        .await
        .assert_error(StatusCode::GONE, "gone");
    h.get("/v1/enroll/confirmation")
        .bearer(&e.token)
        .send()
        .await
        .assert_error(StatusCode::GONE, "gone");
}

#[tokio::test]
async fn the_member_can_cancel_at_every_phase_before_completion() {
    let h = Harness::new().await;
    let cancel = |e: &Enrolling| {
        h.post(&format!("/v1/enroll/sessions/{}/cancel", e.session_id))
            .bearer(&e.session)
            .send()
    };
    // Before any app used the code: the code stops working.
    h.approved_member("early@example.com").await;
    let session = h.sign_in("early@example.com").await;
    let s = h.enrollment_session(&session).await;
    let r = h
        .post(&format!(
            "/v1/enroll/sessions/{}/cancel",
            s["session_id"].as_str().unwrap()
        ))
        .bearer(&session)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    h.authenticate(code_body(
        &s["code"],
        "early@example.com",
        &TestDevice::new(),
    ))
    .await
    .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");

    // Authenticated, confirmed, and past the phases the app reports.
    for (n, reach) in [None, Some(None), Some(Some("pin_set"))]
        .into_iter()
        .enumerate()
    {
        let e = h
            .authenticated_member(&format!("phase{n}@example.com"), TestDevice::new())
            .await;
        if let Some(report) = reach {
            assert_eq!(
                h.confirm(&e, &e.comparison_code()).await.status,
                StatusCode::OK
            );
            if let Some(phase) = report {
                let r = h
                    .post("/v1/enroll/status")
                    .bearer(&e.token)
                    .json(&json!({ "phase": phase }))
                    .send()
                    .await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            }
        }
        for _ in 0..2 {
            let r = cancel(&e).await;
            assert_eq!(r.status, StatusCode::OK, "twice alike: {}", r.body);
        }
        h.post("/v1/enroll/finalize")
            .bearer(&e.token)
            .json(&e.finalize_body(&nkeys::KeyPair::new_user().public_key()))
            .send()
            .await
            .assert_error(StatusCode::GONE, "gone");
    }

    // With enrollment NATS credentials issued: they are revoked in the account (the test's
    // NATS server is unreachable, so the push is reported as 502; the revocation holds).
    let e = h.enrolling_member("connected@example.com").await;
    let key = nkeys::KeyPair::new_user().public_key();
    assert_eq!(enrollment_nats(&h, &e, &key).await.status, StatusCode::OK);
    cancel(&e)
        .await
        .assert_error(StatusCode::BAD_GATEWAY, "bad_gateway");
    let issuer = vettid_nats::Issuer::load(&h.dir.path().join("nats")).unwrap();
    let account = jwt_claims(&issuer.account_jwt().unwrap());
    assert!(
        account["nats"]["revocations"].get(&key).is_some(),
        "{account}"
    );
    enrollment_nats(&h, &e, &nkeys::KeyPair::new_user().public_key())
        .await
        .assert_error(StatusCode::GONE, "gone");

    // Completed: nothing to cancel (the device is revoked instead); others' are not found.
    let done = h.enrolling_member("done@example.com").await;
    let r = h
        .post("/v1/enroll/finalize")
        .bearer(&done.token)
        .json(&done.finalize_body(&nkeys::KeyPair::new_user().public_key()))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    cancel(&done)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    let someone_elses = Enrolling {
        session: e.session.clone(),
        ..done
    };
    cancel(&someone_elses)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    h.confirm(&someone_elses, "123456")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

/// Codes have ~40 bits and the per-address limit does not stop many addresses: wrong codes
/// for one member are counted against their live code, which stops working at the fifth. Its
/// QR token (256 bits) still works, so knowing the member's email does not lock them out.
#[tokio::test]
async fn wrong_codes_for_a_member_stop_their_live_code_but_not_its_qr() {
    let h = Harness::new().await;
    let member = h.approved_member("target@example.com").await;
    let session = h.sign_in("target@example.com").await;
    let s = h.enrollment_session(&session).await;
    let right = s["code"].as_str().unwrap();
    let device = TestDevice::new();
    for n in 0..5 {
        let guess = format!("ZZZZ-{n:04}");
        assert_ne!(guess, right);
        let from: std::net::IpAddr = format!("198.51.100.{n}").parse().unwrap();
        h.post("/v1/enroll/authenticate")
            .ip(from)
            .json(&code_body(&json!(guess), "target@example.com", &device))
            .send()
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    h.authenticate(code_body(&json!(right), "target@example.com", &device))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let uri = format!("/v1/enroll/sessions/{}", s["session_id"].as_str().unwrap());
    let page = h.get(&uri).bearer(&session).send().await;
    assert_eq!(page.body["code_locked"], true, "{}", page.body);
    assert_eq!(page.body["cancelled"], Value::Null);
    // The QR code of the same session still works.
    let r = h
        .authenticate(json!({
            "session_token": s["qr"]["session_token"],
            "member_id": member,
            "device_public_key": device.device_hex(),
            "session_public_key": hex::encode(device.session_key),
        }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The code is also refused with someone else's email (one answer for all).
    h.approved_member("other@example.com").await;
    let other = h.sign_in("other@example.com").await;
    let s = h.enrollment_session(&other).await;
    h.authenticate(code_body(&s["code"], "target@example.com", &device))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

/// Finalize registers the device the member confirmed, and only with a trusted enclave's
/// attestation that it registered exactly those keys in the vault named.
#[tokio::test]
async fn finalize_registers_only_the_confirmed_device_with_the_enclaves_attestation() {
    use crate::harness::{document_of, test_enclave};
    use vettid_proto::auth::enrolled_device_binding;
    let h = Harness::new().await;
    let e = h.enrolling_member("receipt@example.com").await;
    let key = nkeys::KeyPair::new_user().public_key();
    let finalize = |body: Value| {
        h.post("/v1/enroll/finalize")
            .bearer(&e.token)
            .json(&body)
            .send()
    };
    let before = h.snapshot().await;
    let device = e.device.device.verifying_key().to_bytes();
    let identity = e.device.vault.verifying_key().to_bytes();
    let with_document = |doc: String| {
        let mut body = e.finalize_body(&key);
        body["device_attestation"] = json!(doc);
        body
    };
    let bind = |member: &str, session: &[u8; 32], device: &[u8; 32], identity: &[u8; 32]| {
        enrolled_device_binding(member, session, device, identity)
    };
    // Another device key than the confirmed one (with a document for it).
    let other = Enrolling {
        member_id: e.member_id.clone(),
        session: e.session.clone(),
        token: e.token.clone(),
        session_id: e.session_id.clone(),
        device: TestDevice::new(),
        salt: e.salt,
    };
    let mut another_identity = e.finalize_body(&key);
    another_identity["identity_public_key"] = json!(hex::encode([5u8; 32]));
    // An enclave under another root, and one whose release the manifest does not list.
    let stranger_root = vettid_attest::dev::DevRoot::generate(h.now());
    let stranger = vettid_attest::dev::DevAttestor::new(
        &stranger_root,
        test_enclave().attestor.measurement().clone(),
    );
    let unlisted = vettid_attest::dev::DevAttestor::new(
        &test_enclave().root,
        vettid_attest::Measurement::of_enclave(b"an older release", b""),
    );
    let right = bind(&e.member_id, &e.device.session_key, &device, &identity);
    for (why, body) in [
        ("another device", other.finalize_body(&key)),
        (
            "another session key",
            with_document(test_enclave().document(&bind(
                &e.member_id,
                &[9; 32],
                &device,
                &identity,
            ))),
        ),
        (
            "another member",
            with_document(test_enclave().document(&bind(
                "00000000-0000-4000-8000-000000000000",
                &e.device.session_key,
                &device,
                &identity,
            ))),
        ),
        ("another identity than the one bound", another_identity),
        (
            "another root",
            with_document(document_of(&stranger, &right)),
        ),
        (
            "an unlisted release",
            with_document(document_of(&unlisted, &right)),
        ),
        ("not a document", with_document("AAAA".into())),
        ("not base64", with_document("%%%".into())),
    ] {
        let r = finalize(body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{why}: {}", r.body);
    }
    assert_eq!(h.snapshot().await, before, "nothing spent or recorded");

    let r = finalize(e.finalize_body(&key)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let (device, session_key): (String, String) = sqlx::query_as(
        "SELECT device_public_key, session_public_key FROM devices WHERE member_id = ?",
    )
    .bind(&e.member_id)
    .fetch_one(&h.db)
    .await
    .unwrap();
    assert_eq!(device, e.device.device_hex());
    assert_eq!(session_key, hex::encode(e.device.session_key));
    let identity: String =
        sqlx::query_scalar("SELECT identity_public_key FROM vaults WHERE member_id = ?")
            .bind(&e.member_id)
            .fetch_one(&h.db)
            .await
            .unwrap();
    assert_eq!(
        identity,
        hex::encode(e.device.vault.verifying_key().to_bytes())
    );
}

/// A deployment that cannot check the enclave's documents finalizes nothing.
#[tokio::test]
async fn without_attestation_trust_finalize_answers_503() {
    let h = Harness::with(|c| c.manifest_key = None).await;
    let e = h.enrolling_member("untrusting@example.com").await;
    let before = h.snapshot().await;
    h.post("/v1/enroll/finalize")
        .bearer(&e.token)
        .json(&e.finalize_body(&nkeys::KeyPair::new_user().public_key()))
        .send()
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    assert_eq!(h.snapshot().await, before);
}

/// Every key an enrollment gets credentials for may become an entry of the account's
/// revocations (a cancel revokes them): an enrollment gets them for two keys at most.
#[tokio::test]
async fn an_enrollment_gets_nats_credentials_for_few_keys() {
    let h = Harness::new().await;
    let e = h.enrolling_member("keys@example.com").await;
    let (first, second) = (
        nkeys::KeyPair::new_user().public_key(),
        nkeys::KeyPair::new_user().public_key(),
    );
    for key in [&first, &second, &first] {
        let r = enrollment_nats(&h, &e, key).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    enrollment_nats(&h, &e, &nkeys::KeyPair::new_user().public_key())
        .await
        .assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}
