//! The whole path from invite to refreshed NATS credentials, and revocation.

use crate::harness::{Enrolling, Harness, TestDevice, jwt_claims};
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use vettid_crypto::sign::SigningKey;

/// Every allow-list subject names `member` and no one else.
#[track_caller]
fn only_member_subjects(claims: &Value, member: &str) {
    for dir in ["pub", "sub"] {
        let allow = claims["nats"][dir]["allow"]
            .as_array()
            .expect("an allow list");
        assert!(!allow.is_empty());
        for s in allow {
            let s = s.as_str().unwrap();
            assert!(s.contains(member), "{dir} {s} names the member");
            assert!(!s.starts_with('>') && !s.starts_with('*'), "{dir} {s}");
            assert!(!s.contains(".*."), "{dir} {s} has no wildcard member");
        }
    }
}

fn refresh_body(member: &str, device: &SigningKey, nats_key: &str, timestamp: u64) -> Value {
    let message = vettid_api::refresh_message(member, nats_key, timestamp);
    json!({
        "member_id": member,
        "device_public_key": hex::encode(device.verifying_key().to_bytes()),
        "nats_public_key": nats_key,
        "timestamp": timestamp,
        "signature": hex::encode(device.sign(&message).to_bytes()),
    })
}

#[tokio::test]
async fn full_flow_from_invite_to_refreshed_credentials() {
    let h = Harness::new().await;
    // register (auto-approve) → magic link → verify
    let member = h.approved_member("alice@example.com").await;
    let other = h.approved_member("bob@example.com").await;
    let session = h.sign_in("alice@example.com").await;

    // enrollment session, as the web page shows it
    let s = h.enrollment_session(&session).await;
    let code = s["code"].as_str().unwrap();
    assert!(code.len() == 9 && &code[4..5] == "-", "{code}");
    assert_eq!(s["qr"]["type"], "vettid_enrollment");
    assert_eq!(s["qr"]["version"], 1);
    assert_eq!(s["qr"]["api_url"], "https://api.test.example");
    assert_eq!(s["qr"]["member_id"], member.as_str());
    let qr_text: Value = serde_json::from_str(s["qr_text"].as_str().unwrap()).unwrap();
    assert_eq!(qr_text, s["qr"]);
    assert!(s["qr_terminal"].as_str().unwrap().lines().count() > 10);
    let sid = s["session_id"].as_str().unwrap();
    let view = h
        .get(&format!("/v1/enroll/sessions/{sid}"))
        .bearer(&session)
        .send()
        .await;
    assert_eq!(view.status, StatusCode::OK);
    assert_eq!(view.body["phase"], "created");

    // the app types the code: lower case, no dash
    let typed = code.replace('-', "").to_lowercase();
    let phone = TestDevice::new();
    let auth = h
        .authenticate(json!({
            "code": typed,
            "email": "Alice@Example.com",
            "device_name": "Pixel",
            "device_public_key": phone.device_hex(),
            "session_public_key": hex::encode(phone.session_key),
        }))
        .await;
    assert_eq!(auth.status, StatusCode::OK, "{}", auth.body);
    assert_eq!(auth.body["expires_in"], 600);
    assert_eq!(auth.body["member_id"], member.as_str());
    assert_eq!(auth.body["enrollment_session_id"], sid);
    let et = auth.body["enrollment_token"].as_str().unwrap().to_owned();
    let e = Enrolling {
        member_id: member.clone(),
        session: session.clone(),
        token: et.clone(),
        session_id: sid.to_owned(),
        device: phone,
        salt: crate::harness::salt_of(&auth.body),
    };

    // the web page shows the device waiting; the member types the app's comparison code
    let view = h
        .get(&format!("/v1/enroll/sessions/{sid}"))
        .bearer(&session)
        .send()
        .await;
    assert_eq!(view.body["phase"], "authenticated");
    assert_eq!(view.body["device_name"], "Pixel");
    assert_eq!(view.body["awaiting_confirmation"], true);
    let waiting = h.get("/v1/enroll/confirmation").bearer(&et).send().await;
    assert_eq!(waiting.body["confirmed"], false, "{}", waiting.body);
    let r = h.confirm(&e, &e.comparison_code().replace(' ', "-")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let confirmed = h.get("/v1/enroll/confirmation").bearer(&et).send().await;
    assert_eq!(confirmed.body["confirmed"], true, "{}", confirmed.body);

    // enrollment-scoped NATS credentials for the app's own key
    let enroll_key = nkeys::KeyPair::new_user();
    let creds = h
        .post("/v1/enroll/nats")
        .bearer(&et)
        .json(&json!({ "nats_public_key": enroll_key.public_key() }))
        .send()
        .await;
    assert_eq!(creds.status, StatusCode::OK, "{}", creds.body);
    assert_eq!(creds.body["owner_space"], format!("OwnerSpace.{member}"));
    assert_eq!(creds.body["inbox_prefix"], format!("_INBOX_{member}"));
    assert_eq!(creds.body["nats_url"], "nats://127.0.0.1:1");
    let claims = jwt_claims(creds.body["jwt"].as_str().unwrap());
    assert_eq!(claims["sub"], enroll_key.public_key());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
    assert_eq!(claims["exp"], creds.body["expires_at"]);
    only_member_subjects(&claims, &member);
    let publish = claims["nats"]["pub"]["allow"].to_string();
    assert!(!publish.contains(&other), "no other member");
    assert!(
        !publish.contains("forVault.>"),
        "enrollment scope is narrow: {publish}"
    );

    // phases: forward, skipping ahead; the same or backward is refused
    let report = |phase: &'static str| {
        h.post("/v1/enroll/status")
            .bearer(&et)
            .json(&json!({ "phase": phase }))
            .send()
    };
    assert_eq!(report("nats_connected").await.status, StatusCode::OK);
    assert_eq!(report("pin_set").await.status, StatusCode::OK);
    report("attestation_verified")
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    report("pin_set")
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    report("completed")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    let view = h
        .get(&format!("/v1/enroll/sessions/{sid}"))
        .bearer(&session)
        .send()
        .await;
    assert_eq!(view.body["phase"], "pin_set");

    // finalize: the confirmed device key registered with the vault's receipt
    let device = e.device.device.clone();
    let app_key = nkeys::KeyPair::new_user();
    let fin = h
        .post("/v1/enroll/finalize")
        .bearer(&et)
        .json(&e.finalize_body(&app_key.public_key()))
        .send()
        .await;
    assert_eq!(fin.status, StatusCode::OK, "{}", fin.body);
    assert_eq!(fin.body["member_id"], member.as_str());
    assert_eq!(fin.body["inbox_prefix"], format!("_INBOX_{member}"));
    let claims = jwt_claims(fin.body["jwt"].as_str().unwrap());
    assert_eq!(claims["sub"], app_key.public_key());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        86_400
    );
    only_member_subjects(&claims, &member);

    let view = h
        .get(&format!("/v1/enroll/sessions/{sid}"))
        .bearer(&session)
        .send()
        .await;
    assert_eq!(view.body["phase"], "completed");
    let names: Vec<_> = view.body["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "created",
            "authenticated",
            "confirmed",
            "nats_connected",
            "pin_set",
            "completed"
        ]
    );

    // the enrollment token is spent
    report("password_set")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    // enrolled members get no second enrollment session
    let again = h.post("/v1/enroll/sessions").bearer(&session).send().await;
    again.assert_error(StatusCode::CONFLICT, "conflict");
    assert_eq!(h.count("nats_user_keys").await, 2, "both keys recorded");

    // refresh with the device key (a second after finalize)
    let refresh = |body: Value| h.post("/v1/nats/refresh").json(&body).send();
    h.advance(1);
    let t = h.now();
    let body = refresh_body(&member, &device, &app_key.public_key(), t);
    let ok = refresh(body.clone()).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let renewed = jwt_claims(ok.body["jwt"].as_str().unwrap());
    assert_eq!(renewed["sub"], app_key.public_key());
    assert_eq!(renewed["iat"], t);
    // the JWTs it replaces (finalize's, of the same key) are revoked: issued up to t − 1
    let revocations = || {
        let issuer = vettid_nats::Issuer::load(&h.dir.path().join("nats")).unwrap();
        jwt_claims(&issuer.account_jwt().unwrap())["nats"]["revocations"].clone()
    };
    assert_eq!(revocations()[app_key.public_key()], t - 1);
    // a new request in the same second: wait a second (its JWT could not end this one); the
    // refusal spends nothing, so the same signed request works a second later
    let same_second = refresh_body(&member, &device, &app_key.public_key(), t + 1);
    refresh(same_second.clone())
        .await
        .assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    h.advance(1);
    // the first request again: replay; an older (but in-window) timestamp: replay
    refresh(body)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let older = refresh_body(&member, &device, &app_key.public_key(), t - 1);
    refresh(older)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let retried = refresh(same_second).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.body);
    // a key that is not the registered device's
    let stranger = SigningKey::generate();
    let wrong = refresh_body(&member, &stranger, &app_key.public_key(), t + 2);
    refresh(wrong)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    // the device's key claiming another member
    let hijack = refresh_body(&other, &device, &app_key.public_key(), t + 3);
    refresh(hijack)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    // a signature over other bytes
    let fresh_key = nkeys::KeyPair::new_user();
    let mut tampered = refresh_body(&member, &device, &app_key.public_key(), t + 4);
    tampered["nats_public_key"] = json!(fresh_key.public_key());
    refresh(tampered)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    // stale and future timestamps, outside ±120 s
    let stale = refresh_body(&member, &device, &app_key.public_key(), t - 121);
    refresh(stale)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let future = refresh_body(&member, &device, &app_key.public_key(), t + 122);
    refresh(future)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    // the boundary is inside the window
    h.advance(1);
    let edge = refresh_body(&member, &device, &app_key.public_key(), t + 121);
    assert_eq!(refresh(edge).await.status, StatusCode::OK);
    assert_eq!(revocations()[app_key.public_key()], t + 1);
    // a fresh NATS key for the device: the old key is revoked outright, for good
    h.advance(1);
    let newer = refresh_body(&member, &device, &fresh_key.public_key(), t + 122);
    assert_eq!(refresh(newer).await.status, StatusCode::OK);
    assert!(revocations()[app_key.public_key()].as_u64().unwrap() >= t + 2);
    assert!(
        revocations()[fresh_key.public_key()].is_null(),
        "a key's first JWT replaces nothing of its own"
    );
    h.advance(1);
    let back = refresh_body(&member, &device, &app_key.public_key(), t + 123);
    refresh(back)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
}

#[tokio::test]
async fn revocation_refuses_every_key_and_reports_an_unreachable_server() {
    let h = Harness::new().await;
    let e = h.enrolling_member("carol@example.com").await;
    let first = nkeys::KeyPair::new_user();
    let r = h
        .post("/v1/enroll/nats")
        .bearer(&e.token)
        .json(&json!({ "nats_public_key": first.public_key() }))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let device = e.device.device.clone();
    let second = nkeys::KeyPair::new_user();
    let fin = h
        .post("/v1/enroll/finalize")
        .bearer(&e.token)
        .json(&e.finalize_body(&second.public_key()))
        .send()
        .await;
    assert_eq!(fin.status, StatusCode::OK, "{}", fin.body);

    // the configured NATS server (port 1) is not there: 502, but the revocation holds here
    let uri = format!("/v1/admin/members/{}/revoke-nats", e.member_id);
    let r = h.admin(Method::POST, &uri).send().await;
    r.assert_error(StatusCode::BAD_GATEWAY, "bad_gateway");
    let revoked: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM nats_user_keys WHERE revoked_at IS NOT NULL")
            .fetch_one(&h.db)
            .await
            .unwrap();
    assert_eq!(revoked, 2, "every key ever issued");
    // the issuer's account JWT lists both keys
    let issuer = vettid_nats::Issuer::load(&h.dir.path().join("nats")).unwrap();
    let account = jwt_claims(&issuer.account_jwt().unwrap());
    let revocations = &account["nats"]["revocations"];
    assert!(revocations.get(first.public_key()).is_some(), "{account}");
    assert!(revocations.get(second.public_key()).is_some(), "{account}");

    // the device can no longer refresh, with either key
    for key in [&second, &nkeys::KeyPair::new_user()] {
        let message = vettid_api::refresh_message(&e.member_id, &key.public_key(), h.now());
        let r = h
            .post("/v1/nats/refresh")
            .json(&json!({
                "member_id": e.member_id,
                "device_public_key": hex::encode(device.verifying_key().to_bytes()),
                "nats_public_key": key.public_key(),
                "timestamp": h.now(),
                "signature": hex::encode(device.sign(&message).to_bytes()),
            }))
            .send()
            .await;
        r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // the vault exists: no second enrollment (a new device comes through recovery)
    h.post("/v1/enroll/sessions")
        .bearer(&e.session)
        .send()
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");

    // unknown member: 404; malformed member id: 400
    let unknown = "/v1/admin/members/00000000-0000-4000-8000-000000000000/revoke-nats";
    h.admin(Method::POST, unknown)
        .send()
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    let bad = "/v1/admin/members/NOT-A-UUID/revoke-nats";
    h.admin(Method::POST, bad)
        .send()
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn without_a_nats_setup_nats_routes_answer_503() {
    let h = Harness::with(|c| c.nats_dir = None).await;
    let e = h.enrolling_member("dan@example.com").await;
    let before = h.snapshot().await;
    let key = nkeys::KeyPair::new_user().public_key();
    let r = h
        .post("/v1/enroll/nats")
        .bearer(&e.token)
        .json(&json!({ "nats_public_key": key }))
        .send()
        .await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    let r = h
        .post("/v1/enroll/finalize")
        .bearer(&e.token)
        .json(&e.finalize_body(&key))
        .send()
        .await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    let uri = format!("/v1/admin/members/{}/revoke-nats", e.member_id);
    let r = h.admin(Method::POST, &uri).send().await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    assert_eq!(h.snapshot().await, before, "nothing changed");
}

/// Each renewal with a new key leaves a revocation in the account JWT for up to a week, so
/// a device brings at most four new keys a day (the account JWT stays within what the server
/// accepts).
#[tokio::test]
async fn a_device_brings_few_new_nats_keys_a_day() {
    let h = Harness::new().await;
    let e = h.enrolling_member("rotate@example.com").await;
    let fin = h
        .post("/v1/enroll/finalize")
        .bearer(&e.token)
        .json(&e.finalize_body(&nkeys::KeyPair::new_user().public_key()))
        .send()
        .await;
    assert_eq!(fin.status, StatusCode::OK, "{}", fin.body);
    let device = &e.device.device;
    let refresh = |key: String| {
        h.advance(1);
        let body = refresh_body(&e.member_id, device, &key, h.now());
        h.post("/v1/nats/refresh").json(&body).send()
    };
    for _ in 0..3 {
        let r = refresh(nkeys::KeyPair::new_user().public_key()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    refresh(nkeys::KeyPair::new_user().public_key())
        .await
        .assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    h.advance(24 * 3600);
    let r = refresh(nkeys::KeyPair::new_user().public_key()).await;
    assert_eq!(r.status, StatusCode::OK, "a day later: {}", r.body);
}
