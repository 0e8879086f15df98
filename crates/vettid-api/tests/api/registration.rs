//! Invites, registration and the admin's decisions.

use crate::harness::Harness;
use axum::http::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn invites_default_to_one_use_and_a_vet_code() {
    let h = Harness::new().await;
    let r = h
        .admin(Method::POST, "/v1/admin/invites")
        .json(&json!({}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let code = r.body["code"].as_str().unwrap();
    assert!(code.starts_with("VET-") && code.len() == 20, "{code}");
    assert!(
        code[4..]
            .chars()
            .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
    );
    assert_eq!(r.body["max_uses"], 1);
    assert_eq!(r.body["uses"], 0);
    assert_eq!(r.body["auto_approve"], false);
    let lifetime = r.body["expires_at"].as_i64().unwrap() - h.now() as i64;
    assert_eq!(lifetime, 30 * 86_400);

    let custom = json!({"code": "friends_2026", "max_uses": 5, "expires_in_secs": 3600, "auto_approve": true});
    let r = h
        .admin(Method::POST, "/v1/admin/invites")
        .json(&custom)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["code"], "friends_2026");
    let dup = h
        .admin(Method::POST, "/v1/admin/invites")
        .json(&custom)
        .send()
        .await;
    dup.assert_error(StatusCode::CONFLICT, "conflict");

    let list = h.admin(Method::GET, "/v1/admin/invites").send().await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["items"].as_array().unwrap().len(), 2);
    let audited: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM admin_audit WHERE action = 'invite.create'")
            .fetch_one(&h.db)
            .await
            .unwrap();
    assert_eq!(audited, 2, "each creation audited");
}

#[tokio::test]
async fn invite_ranges_are_enforced() {
    let h = Harness::new().await;
    let before = h.snapshot().await;
    for body in [
        json!({"max_uses": 0}),
        json!({"max_uses": 10_001}),
        json!({"max_uses": -1}),
        json!({"expires_in_secs": 59}),
        json!({"expires_in_secs": 90 * 86_400 + 1}),
        json!({"code": "abc"}),
        json!({"code": "a".repeat(51)}),
        json!({"code": "has space"}),
        json!({"code": "ünï"}),
        json!({"auto_approve": "yes"}),
    ] {
        let r = h
            .admin(Method::POST, "/v1/admin/invites")
            .json(&body)
            .send()
            .await;
        r.assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
    assert_eq!(h.snapshot().await, before);
    let edge = json!({"max_uses": 10_000, "expires_in_secs": 90 * 86_400, "code": "a".repeat(50)});
    let r = h
        .admin(Method::POST, "/v1/admin/invites")
        .json(&edge)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

#[tokio::test]
async fn an_invite_is_exhausted_after_max_uses() {
    let h = Harness::new().await;
    let code = h.invite(json!({"max_uses": 2})).await;
    assert_eq!(
        h.register("a1@example.com", &code).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        h.register("a2@example.com", &code).await.status,
        StatusCode::CREATED
    );
    let before = h.snapshot().await;
    // Spent invites answer as unknown ones do.
    h.register("a3@example.com", &code)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(h.snapshot().await, before);
    let list = h.admin(Method::GET, "/v1/admin/invites").send().await;
    assert_eq!(list.body["items"][0]["uses"], 2);
}

#[tokio::test]
async fn an_invite_expires_with_the_clock() {
    let h = Harness::new().await;
    let code = h
        .invite(json!({"expires_in_secs": 60, "max_uses": 3}))
        .await;
    h.advance(59);
    assert_eq!(
        h.register("early@example.com", &code).await.status,
        StatusCode::CREATED
    );
    h.advance(1);
    let before = h.snapshot().await;
    h.register("late@example.com", &code)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(h.snapshot().await, before);
}

#[tokio::test]
async fn an_unknown_invite_is_400_and_codes_are_case_sensitive() {
    let h = Harness::new().await;
    h.invite(json!({"code": "CaseCode-2026"})).await;
    let before = h.snapshot().await;
    for code in ["NOPE-12345678", "casecode-2026"] {
        h.register("x@example.com", code)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
    assert_eq!(h.snapshot().await, before);
}

#[tokio::test]
async fn a_duplicate_email_is_409_and_gives_the_invite_use_back() {
    let h = Harness::new().await;
    let code = h.invite(json!({"max_uses": 3})).await;
    let first = h.register("Dup@Example.com", &code).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.body["status"], "pending");
    let before = h.snapshot().await;
    // the same address, differently cased and padded
    let again = h.register("  dup@example.COM ", &code).await;
    again.assert_error(StatusCode::CONFLICT, "conflict");
    let message = again.body["error"]["message"].as_str().unwrap();
    assert!(
        !message.contains("email") && !message.contains("exists"),
        "generic: {message}"
    );
    assert_eq!(h.snapshot().await, before, "the invite use was given back");
}

#[tokio::test]
async fn admins_list_approve_and_reject_registrations() {
    let h = Harness::new().await;
    let code = h.invite(json!({"max_uses": 3})).await;
    let a = h.register("pending-a@example.com", &code).await.body;
    h.advance(1); // listed oldest first
    let b = h.register("pending-b@example.com", &code).await.body;
    let a_id = a["registration_id"].as_str().unwrap();
    let b_id = b["registration_id"].as_str().unwrap();

    let pending = h
        .admin(Method::GET, "/v1/admin/registrations?status=pending")
        .send()
        .await;
    assert_eq!(pending.status, StatusCode::OK);
    let items = pending.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["email"], "pending-a@example.com");
    assert_eq!(items[0]["first_name"], "Zoë");
    assert_eq!(items[0]["member_id"], a["member_id"]);

    let approve = format!("/v1/admin/registrations/{a_id}/approve");
    let r = h.admin(Method::POST, &approve).send().await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "approved");
    let twice = h.admin(Method::POST, &approve).send().await;
    assert_eq!(
        twice.status,
        StatusCode::OK,
        "approving twice is idempotent"
    );
    let reject_a = format!("/v1/admin/registrations/{a_id}/reject");
    h.admin(Method::POST, &reject_a)
        .send()
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");

    let reject_b = format!("/v1/admin/registrations/{b_id}/reject");
    let r = h.admin(Method::POST, &reject_b).send().await;
    assert_eq!(r.body["status"], "rejected");
    let approve_b = format!("/v1/admin/registrations/{b_id}/approve");
    h.admin(Method::POST, &approve_b)
        .send()
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");

    let unknown = "/v1/admin/registrations/no-such-id/approve";
    h.admin(Method::POST, unknown)
        .send()
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");

    for (status, n) in [("approved", 1), ("rejected", 1), ("pending", 0)] {
        let uri = format!("/v1/admin/registrations?status={status}");
        let r = h.admin(Method::GET, &uri).send().await;
        assert_eq!(r.body["items"].as_array().unwrap().len(), n, "{status}");
    }
    let all = h.admin(Method::GET, "/v1/admin/registrations").send().await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 2);

    // an approved registration can sign in; a rejected one silently gets no mail
    h.sign_in("pending-a@example.com").await;
    let r = h
        .post("/v1/auth/magic-link")
        .json(&json!({"email": "pending-b@example.com"}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    h.app.background_idle().await;
    assert!(h.take_mails("pending-b@example.com").is_empty());
}

/// Issue 11, finding 7: custom invite codes are long enough not to be guessed, and an unknown
/// code, an expired one and a spent one get the same answer.
#[tokio::test]
async fn short_custom_codes_are_refused_and_invites_answer_alike() {
    let h = Harness::new().await;
    let r = h
        .admin(Method::POST, "/v1/admin/invites")
        .json(&json!({"code": "ABCD"}))
        .send()
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "bad_request");
    let spent = h.invite(json!({"max_uses": 1})).await;
    assert_eq!(
        h.register("first@example.com", &spent).await.status,
        StatusCode::CREATED
    );
    let expired = h.invite(json!({"expires_in_secs": 60})).await;
    h.advance(61);
    let answers: Vec<(StatusCode, String)> =
        register_each(&h, &[&spent, &expired, "VET-00000000000000AA"]).await;
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
}

async fn register_each(h: &Harness, codes: &[&str]) -> Vec<(StatusCode, String)> {
    let mut out = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        let r = h.register(&format!("probe{i}@example.com"), code).await;
        out.push((r.status, r.body["error"]["message"].to_string()));
    }
    out
}
