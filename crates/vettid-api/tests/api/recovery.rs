//! Staged recovery through the router: every stage, the delay, the one-time QRs, expiry,
//! cancellation from the web, from a device and by use, and the finalize that moves the
//! vault, with the manual clock.

use crate::harness::{Enrolling, Harness, TestDevice, salt_of, test_enclave};
use axum::http::StatusCode;
use serde_json::{Value, json};

/// (member, session key, device key, identity key) → a document's `user_data`.
type Binding = fn(&str, &[u8; 32], &[u8; 32], &[u8; 32]) -> [u8; 32];

const DAY: u64 = 24 * 3600;

async fn request(h: &Harness, e: &Enrolling) -> crate::harness::Resp {
    h.post("/v1/recovery").bearer(&e.session).send().await
}

async fn stage(h: &Harness, e: &Enrolling) -> Value {
    let r = h.get("/v1/recovery").bearer(&e.session).send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

async fn qr(h: &Harness, e: &Enrolling) -> crate::harness::Resp {
    h.post("/v1/recovery/qr").bearer(&e.session).send().await
}

/// A new device presenting a recovery QR (as an app presents an enrollment QR).
struct NewDevice {
    keys: TestDevice,
    token: String,
    session_id: String,
    salt: [u8; 16],
    member_id: String,
}

impl NewDevice {
    fn comparison_code(&self) -> String {
        vettid_proto::auth::comparison_code(
            &self.session_id,
            &self.salt,
            &self.keys.device.verifying_key().to_bytes(),
            &self.keys.session_key,
        )
    }

    /// A finalize body whose document binds `binding` of this device's keys and `identity`.
    fn finalize_body(&self, h: &Harness, binding: Binding, identity: [u8; 32]) -> Value {
        let device_key = self.keys.device.verifying_key().to_bytes();
        json!({
            "device_public_key": hex::encode(device_key),
            "nats_public_key": nkeys::KeyPair::new_user().public_key(),
            "identity_public_key": hex::encode(identity),
            "device_attestation": test_enclave().document_at(
                &binding(&self.member_id, &self.keys.session_key, &device_key, &identity),
                h.now(),
            ),
        })
    }
}

async fn present(h: &Harness, issued: &Value) -> Result<NewDevice, crate::harness::Resp> {
    let keys = TestDevice::new();
    let r = h
        .authenticate(json!({
            "session_token": issued["qr"]["session_token"],
            "member_id": issued["qr"]["member_id"],
            "device_name": "new phone",
            "device_public_key": keys.device_hex(),
            "session_public_key": hex::encode(keys.session_key),
        }))
        .await;
    if r.status != StatusCode::OK {
        return Err(r);
    }
    Ok(NewDevice {
        salt: salt_of(&r.body),
        token: r.body["enrollment_token"].as_str().unwrap().to_owned(),
        session_id: r.body["enrollment_session_id"].as_str().unwrap().to_owned(),
        member_id: r.body["member_id"].as_str().unwrap().to_owned(),
        keys,
    })
}

/// Signs in again (the web session of before the delay has expired), after taking the
/// member's mails so the magic link is the only new one.
async fn sign_in_again(h: &Harness, email: &str) -> String {
    h.take_mails(email);
    h.sign_in(email).await
}

fn identity_of(e: &Enrolling) -> [u8; 32] {
    e.device.vault.verifying_key().to_bytes()
}

#[tokio::test]
async fn a_recovery_waits_out_its_delay_then_one_time_qrs_move_the_vault_to_a_new_device() {
    let h = Harness::new().await;
    let email = "lost@example.com";
    let mut e = h.with_vault(email).await;
    h.take_mails(email);

    let r = request(&h, &e).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["stage"], "waiting");
    assert_eq!(
        r.body["ready_at"].as_i64().unwrap() - r.body["requested_at"].as_i64().unwrap(),
        DAY as i64
    );
    assert_eq!(
        r.body["expires_at"].as_i64().unwrap() - r.body["requested_at"].as_i64().unwrap(),
        7 * DAY as i64
    );
    let mails = h.take_mails(email);
    assert_eq!(mails.len(), 1, "the member is told at once");
    assert!(mails[0].contains("cancel"), "{}", mails[0]);
    request(&h, &e)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");

    // No QR during the delay, not even a second before its end.
    h.advance(DAY - 1);
    e.session = sign_in_again(&h, email).await;
    let before = h.snapshot().await;
    qr(&h, &e)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    assert_eq!(h.snapshot().await, before);
    assert_eq!(stage(&h, &e).await["stage"], "waiting");
    h.advance(1);
    // (The web session from before the delay has expired: the member signs in again.)
    e.session = sign_in_again(&h, email).await;
    assert_eq!(stage(&h, &e).await["stage"], "ready");

    // Each QR voids the one before it.
    let first = qr(&h, &e).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.body["qr"]["type"], "vettid_recovery");
    assert_eq!(
        first.body["expires_at"].as_i64().unwrap(),
        h.now() as i64 + 600
    );
    let second = qr(&h, &e).await.body;
    present(&h, &first.body)
        .await
        .err()
        .expect("a voided QR is refused")
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let device = present(&h, &second)
        .await
        .unwrap_or_else(|r| panic!("{}", r.body));
    // The web page still shows the voided one, and why.
    let r = h
        .get(&format!(
            "/v1/enroll/sessions/{}",
            first.body["session_id"].as_str().unwrap()
        ))
        .bearer(&e.session)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    present(&h, &second)
        .await
        .err()
        .expect("a used QR is refused")
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");

    // Nothing before the member confirms the new device on the web page.
    let finalize = |token: String, body: Value| {
        h.post("/v1/recovery/finalize")
            .bearer(&token)
            .json(&body)
            .send()
    };
    let recovered = device.finalize_body(
        &h,
        vettid_proto::auth::recovered_device_binding,
        identity_of(&e),
    );
    finalize(device.token.clone(), recovered.clone())
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    let r = h
        .post(&format!(
            "/v1/enroll/sessions/{}/confirm",
            device.session_id
        ))
        .bearer(&e.session)
        .json(&json!({ "comparison_code": device.comparison_code() }))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // The enrollment's finalize does not finish a recovery, and the recovery's finalize
    // takes only the enclave's word that it re-keyed *this* member's vault.
    let before = h.snapshot().await;
    h.post("/v1/enroll/finalize")
        .bearer(&device.token)
        .json(&device.finalize_body(
            &h,
            vettid_proto::auth::enrolled_device_binding,
            identity_of(&e),
        ))
        .send()
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    finalize(
        device.token.clone(),
        device.finalize_body(
            &h,
            vettid_proto::auth::enrolled_device_binding,
            identity_of(&e),
        ),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    finalize(
        device.token.clone(),
        device.finalize_body(&h, vettid_proto::auth::recovered_device_binding, [5; 32]),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(h.snapshot().await, before, "refusals changed nothing");

    let r = finalize(device.token.clone(), recovered.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body["jwt"].as_str().is_some_and(|j| !j.is_empty()));
    assert_eq!(stage(&h, &e).await["stage"], "completed");
    finalize(device.token.clone(), recovered)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");

    // The old device is revoked, with every NATS key it had; the new one is registered.
    let old = e.device.device_hex();
    let revoked: Option<i64> =
        sqlx::query_scalar("SELECT revoked_at FROM devices WHERE device_public_key = ?")
            .bind(&old)
            .fetch_one(&h.db)
            .await
            .unwrap();
    assert!(revoked.is_some(), "the lost device is revoked");
    let live_old_keys: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM nats_user_keys WHERE device_public_key = ? AND revoked_at IS NULL",
    )
    .bind(&old)
    .fetch_one(&h.db)
    .await
    .unwrap();
    assert_eq!(live_old_keys, 0, "its NATS keys are revoked");
    let new: Option<i64> =
        sqlx::query_scalar("SELECT revoked_at FROM devices WHERE device_public_key = ?")
            .bind(device.keys.device_hex())
            .fetch_one(&h.db)
            .await
            .unwrap();
    assert_eq!(new, None);
    let mails = h.take_mails(email);
    assert!(
        mails
            .iter()
            .any(|m| m.contains("recovered to a new device")),
        "{mails:?}"
    );
    // A new recovery may follow a completed one.
    assert_eq!(request(&h, &e).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_recovery_qr_lasts_ten_minutes_and_a_request_seven_days() {
    let h = Harness::new().await;
    let mut e = h.with_vault("slow@example.com").await;
    assert_eq!(request(&h, &e).await.status, StatusCode::CREATED);
    h.advance(DAY);
    e.session = sign_in_again(&h, "slow@example.com").await;
    let issued = qr(&h, &e).await.body;
    h.advance(600);
    present(&h, &issued)
        .await
        .err()
        .expect("an expired QR is refused")
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    // A token from a QR dies with its request's expiry.
    let issued = qr(&h, &e).await.body;
    let device = present(&h, &issued)
        .await
        .unwrap_or_else(|r| panic!("{}", r.body));
    h.advance(6 * DAY - 600);
    e.session = sign_in_again(&h, "slow@example.com").await;
    assert_eq!(stage(&h, &e).await["stage"], "expired");
    qr(&h, &e)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    h.post("/v1/recovery/used")
        .bearer(&device.token)
        .send()
        .await
        .assert_error(StatusCode::GONE, "gone");
    // An expired request makes room for a new one.
    let r = request(&h, &e).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["stage"], "waiting");
}

fn device_question(e: &Enrolling, timestamp: u64, cancel: bool) -> Value {
    let message = vettid_proto::auth::recovery_device_message(&e.member_id, timestamp, cancel);
    json!({
        "member_id": e.member_id,
        "device_public_key": e.device.device_hex(),
        "timestamp": timestamp,
        "signature": hex::encode(e.device.device.sign(&message).to_bytes()),
        "cancel": cancel,
    })
}

#[tokio::test]
async fn a_recovery_is_cancelled_on_the_web_from_a_device_or_by_the_vaults_use() {
    let h = Harness::new().await;
    let mut e = h.with_vault("kept@example.com").await;
    let stranger = h.with_vault("other@example.com").await;
    let enrolling = h.enrolling_member("new@example.com").await;
    // An ordinary enrollment has no recovery to report on.
    h.post("/v1/recovery/used")
        .bearer(&enrolling.token)
        .send()
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    let ask = |body: Value| h.post("/v1/recovery/device").json(&body).send();

    // Nothing under way: the device is told so; the web has nothing to cancel.
    let r = ask(device_question(&e, h.now() * 1000 + 1, false)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["recovery"], Value::Null);
    h.post("/v1/recovery/cancel")
        .bearer(&e.session)
        .send()
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");

    // On the web, and the QR's enrollment dies with it.
    assert_eq!(request(&h, &e).await.status, StatusCode::CREATED);
    h.advance(DAY);
    e.session = sign_in_again(&h, "kept@example.com").await;
    let device = present(&h, &qr(&h, &e).await.body)
        .await
        .unwrap_or_else(|r| panic!("{}", r.body));
    let r = h
        .post("/v1/recovery/cancel")
        .bearer(&e.session)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["stage"], "cancelled");
    assert_eq!(r.body["cancel_reason"], "cancelled_by_member");
    h.post("/v1/enroll/nats")
        .bearer(&device.token)
        .json(&json!({ "nats_public_key": nkeys::KeyPair::new_user().public_key() }))
        .send()
        .await
        .assert_error(StatusCode::GONE, "gone");

    // From an enrolled device, which sees it first; forged and stale questions are refused.
    assert_eq!(request(&h, &e).await.status, StatusCode::CREATED);
    let r = ask(device_question(&e, h.now() * 1000 + 2, false)).await;
    assert_eq!(r.body["recovery"]["stage"], "waiting", "{}", r.body);
    let mut forged = device_question(&e, h.now() * 1000 + 3, false);
    forged["cancel"] = json!(true);
    ask(forged)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    ask(device_question(&e, (h.now() - 121) * 1000, true))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    // Another member's registered device cannot speak for this member.
    let message =
        vettid_proto::auth::recovery_device_message(&e.member_id, h.now() * 1000 + 4, true);
    let theirs = json!({
        "member_id": e.member_id,
        "device_public_key": stranger.device.device_hex(),
        "timestamp": h.now() * 1000 + 4,
        "signature": hex::encode(stranger.device.device.sign(&message).to_bytes()),
        "cancel": true,
    });
    let before = h.snapshot().await;
    ask(theirs)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(h.snapshot().await, before);
    assert_eq!(stage(&h, &e).await["stage"], "waiting");
    let cancel = device_question(&e, h.now() * 1000 + 5, true);
    let r = ask(cancel.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["recovery"]["cancel_reason"], "cancelled_on_device");
    // The same signed question again: refused (each is good once).
    assert_eq!(request(&h, &e).await.status, StatusCode::CREATED);
    ask(cancel)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(stage(&h, &e).await["stage"], "waiting");
    h.post("/v1/recovery/cancel")
        .bearer(&e.session)
        .send()
        .await;

    // By use: the new device reports the enclave's refusal.
    assert_eq!(request(&h, &e).await.status, StatusCode::CREATED);
    h.advance(DAY);
    e.session = sign_in_again(&h, "kept@example.com").await;
    let device = present(&h, &qr(&h, &e).await.body)
        .await
        .unwrap_or_else(|r| panic!("{}", r.body));
    // (Only once the member confirmed the new device: whoever only scanned the QR cannot.)
    h.post("/v1/recovery/used")
        .bearer(&device.token)
        .send()
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    let r = h
        .post(&format!(
            "/v1/enroll/sessions/{}/confirm",
            device.session_id
        ))
        .bearer(&e.session)
        .json(&json!({ "comparison_code": device.comparison_code() }))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    h.take_mails("kept@example.com");
    let r = h
        .post("/v1/recovery/used")
        .bearer(&device.token)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["cancel_reason"], "device_used");
    let mails = h.take_mails("kept@example.com");
    assert!(
        mails.iter().any(|m| m.contains("cancelled")),
        "the member is told: {mails:?}"
    );
}

#[tokio::test]
async fn only_a_signed_in_member_with_a_vault_can_ask_for_recovery() {
    let h = Harness::new().await;
    h.post("/v1/recovery")
        .send()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    h.approved_member("novault@example.com").await;
    let session = sign_in_again(&h, "novault@example.com").await;
    let before = h.snapshot().await;
    h.post("/v1/recovery")
        .bearer(&session)
        .send()
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    h.get("/v1/recovery")
        .bearer(&session)
        .send()
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(h.snapshot().await, before);
}
