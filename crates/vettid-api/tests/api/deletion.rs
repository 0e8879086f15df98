//! Vault deletion through the router: the delay, cancellation, expiry, one request at a time,
//! and a confirmation that changes nothing when no host can shred the vault (the shred itself,
//! against the real stack: `vettid/tests/e2e.rs`
//! `a_deleted_vault_is_shredded_old_backups_no_longer_open_and_the_members_export_restores_into_a_new_vault`).

use crate::harness::Harness;
use axum::http::StatusCode;
use serde_json::Value;

const DAY: u64 = 24 * 3600;

async fn call(h: &Harness, session: &str, path: &str) -> crate::harness::Resp {
    h.post(path).bearer(session).send().await
}

async fn stage(h: &Harness, session: &str) -> Value {
    let r = h.get("/v1/vault/deletion").bearer(session).send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

#[tokio::test]
async fn a_deletion_waits_out_its_delay_is_cancelled_and_one_runs_at_a_time() {
    let h = Harness::new().await;
    let email = "leaving@example.com";
    let e = h.with_vault(email).await;
    h.take_mails(email);
    let s = e.session.clone();

    assert_eq!(
        h.get("/v1/vault/deletion").bearer(&s).send().await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&h, &s, "/v1/vault/deletion/cancel").await.status,
        StatusCode::CONFLICT,
        "nothing to cancel"
    );
    let r = call(&h, &s, "/v1/vault/deletion").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["stage"], "waiting");
    assert_eq!(
        r.body["ready_at"].as_i64().unwrap() - r.body["requested_at"].as_i64().unwrap(),
        DAY as i64
    );
    let mails = h.take_mails(email);
    assert!(
        mails.len() == 1 && mails[0].contains("delete your vault"),
        "{mails:?}"
    );
    assert_eq!(
        call(&h, &s, "/v1/vault/deletion").await.status,
        StatusCode::CONFLICT,
        "one at a time"
    );
    let r = call(&h, &s, "/v1/vault/deletion/confirm").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(
        stage(&h, &s).await["stage"],
        "waiting",
        "a refused confirm changed nothing"
    );

    let r = call(&h, &s, "/v1/vault/deletion/cancel").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["stage"], "cancelled");
    assert_eq!(r.body["cancel_reason"], "cancelled_by_member");
    assert!(h.take_mails(email)[0].contains("cancelled"));
    assert_eq!(
        call(&h, &s, "/v1/vault/deletion/confirm").await.status,
        StatusCode::CONFLICT,
        "a cancelled deletion cannot be confirmed"
    );

    // Again, past the delay: no host answers the shred here, so the confirmation is refused
    // (503): the request is ready again (and cannot have been cancelled meanwhile), the API
    // still counts the vault, but the devices were cut off first.
    call(&h, &s, "/v1/vault/deletion").await;
    h.advance(DAY);
    h.take_mails(email);
    let s = h.sign_in(email).await;
    assert_eq!(stage(&h, &s).await["stage"], "ready");
    let r = call(&h, &s, "/v1/vault/deletion/confirm").await;
    assert_eq!(
        r.status,
        StatusCode::BAD_GATEWAY,
        "the revocation could not be pushed: {}",
        r.body
    );
    assert_eq!(stage(&h, &s).await["stage"], "ready");
    let r = h.post("/v1/enroll/sessions").bearer(&s).send().await;
    assert_eq!(
        r.status,
        StatusCode::CONFLICT,
        "the member still has a vault: {}",
        r.body
    );

    // Not confirmed within a week of becoming ready: expired, and a new one may start.
    h.advance(7 * DAY);
    h.take_mails(email);
    let s = h.sign_in(email).await;
    assert_eq!(stage(&h, &s).await["stage"], "expired");
    assert_eq!(
        call(&h, &s, "/v1/vault/deletion").await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn a_member_the_api_knows_no_vault_of_can_ask_and_only_signed_in_members_can() {
    let h = Harness::new().await;
    // (The enclave may hold a vault someone else enrolled for this member.)
    let e = h.enrolling_member("novault@example.com").await;
    let r = call(&h, &e.session, "/v1/vault/deletion").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    for path in [
        "/v1/vault/deletion",
        "/v1/vault/deletion/cancel",
        "/v1/vault/deletion/confirm",
    ] {
        assert_eq!(
            h.post(path).send().await.status,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
}

/// While a confirmation is shredding the vault (its mark set, as `confirm` sets it before it
/// asks the hosts), the member cannot cancel or start another deletion; a mark left by a
/// process that died stops counting after five minutes.
#[tokio::test]
async fn a_deletion_being_confirmed_cannot_be_cancelled_until_its_mark_goes_stale() {
    let h = Harness::new().await;
    let email = "confirming@example.com";
    let e = h.with_vault(email).await;
    call(&h, &e.session, "/v1/vault/deletion").await;
    h.advance(DAY);
    h.take_mails(email);
    let s = h.sign_in(email).await;
    sqlx::query("UPDATE deletion_requests SET confirming_at = ?")
        .bind(h.now() as i64)
        .execute(&h.db)
        .await
        .unwrap();
    let r = call(&h, &s, "/v1/vault/deletion/cancel").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let r = call(&h, &s, "/v1/vault/deletion/confirm").await;
    assert_eq!(
        r.status,
        StatusCode::CONFLICT,
        "a second confirmation: {}",
        r.body
    );
    let r = call(&h, &s, "/v1/vault/deletion").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    h.advance(5 * 60 + 1);
    h.take_mails(email);
    let s = h.sign_in(email).await;
    let r = call(&h, &s, "/v1/vault/deletion/cancel").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// The member's devices hear of a deletion under way when they ask about recoveries (signed
/// with their device key), and can do nothing about it there.
#[tokio::test]
async fn devices_hear_of_a_deletion_under_way() {
    let h = Harness::new().await;
    let e = h.with_vault("told@example.com").await;
    let ask = |ts: u64, cancel: bool| {
        let message = vettid_proto::auth::recovery_device_message(&e.member_id, ts, cancel);
        serde_json::json!({
            "member_id": e.member_id,
            "device_public_key": hex::encode(e.device.device.verifying_key().to_bytes()),
            "timestamp": ts,
            "signature": hex::encode(e.device.device.sign(&message).to_bytes()),
            "cancel": cancel,
        })
    };
    let r = h
        .post("/v1/recovery/device")
        .json(&ask(h.now() * 1000, false))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body["deletion"].is_null(), "{}", r.body);
    call(&h, &e.session, "/v1/vault/deletion").await;
    let r = h
        .post("/v1/recovery/device")
        .json(&ask(h.now() * 1000 + 1, true))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["deletion"]["stage"], "waiting", "{}", r.body);
    assert_eq!(
        stage(&h, &e.session).await["stage"],
        "waiting",
        "a device's cancel is for recoveries only"
    );
}
