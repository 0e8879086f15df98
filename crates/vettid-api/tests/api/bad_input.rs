//! Every JSON route answers bad input with 400 (413 for an oversized body) in the JSON error
//! shape, and changes nothing in the database. Each route's template body is valid: it is
//! sent last and must succeed, so every refusal above it was caused by the one defect.

use crate::harness::{Harness, TestDevice};
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

struct Route {
    uri: String,
    bearer: Option<String>,
    valid: Value,
    /// Fields that may not be left out.
    required: &'static [&'static str],
    /// Fields that are hex.
    hex: &'static [&'static str],
}

/// Bodies that are wrong for every route, whatever its fields.
fn shapeless() -> Vec<(Option<&'static str>, Vec<u8>)> {
    let json_ct = Some("application/json");
    vec![
        (json_ct, b"{\"a\":".to_vec()),
        (json_ct, b"hello".to_vec()),
        (json_ct, b"".to_vec()),
        (json_ct, b"[]".to_vec()),
        (json_ct, b"null".to_vec()),
        (json_ct, b"\"text\"".to_vec()),
        (json_ct, b"42".to_vec()),
        (json_ct, b"{\"a\":1}garbage".to_vec()),
        (json_ct, vec![0xff, 0xfe, b'{', b'}']),
    ]
}

/// Bodies derived from the valid one, each with one defect.
fn defects(route: &Route) -> Vec<(String, Option<&'static str>, Vec<u8>)> {
    let valid = route.valid.as_object().unwrap();
    let mut out = Vec::new();
    let bytes = serde_json::to_vec(&route.valid).unwrap();
    out.push(("text/plain".into(), Some("text/plain"), bytes.clone()));
    out.push(("no content type".into(), None, bytes.clone()));
    out.push((
        "form".into(),
        Some("application/x-www-form-urlencoded"),
        bytes,
    ));
    let mut with = |name: String, v: Value| {
        out.push((
            name,
            Some("application/json"),
            serde_json::to_vec(&v).unwrap(),
        ));
    };
    let mut unknown = route.valid.clone();
    unknown["unexpected"] = json!(1);
    with("unknown field".into(), unknown);
    for field in route.required {
        let mut missing = route.valid.clone();
        missing.as_object_mut().unwrap().remove(*field);
        with(format!("missing {field}"), missing);
    }
    for (field, value) in valid {
        let wrong: Vec<Value> = match value {
            Value::String(_) => vec![json!(123), json!(true), json!([]), json!({})],
            Value::Number(_) => vec![json!("12"), json!(-1), json!(1.5), json!(1e30), json!([])],
            Value::Bool(_) => vec![json!("true"), json!(1), json!({})],
            _ => vec![],
        };
        for w in wrong {
            let mut b = route.valid.clone();
            b[field] = w.clone();
            with(format!("{field} = {w}"), b);
        }
        if value.is_string() {
            let mut b = route.valid.clone();
            b[field] = json!("a".repeat(10_000));
            with(format!("oversized {field}"), b);
            if route.required.contains(&field.as_str()) {
                let mut b = route.valid.clone();
                b[field] = Value::Null;
                with(format!("{field} = null"), b);
            }
        }
    }
    for field in route.hex {
        let len = route.valid[*field].as_str().unwrap().len();
        for bad in ["zz".repeat(len / 2), "ab".into(), "ab".repeat(len / 2 + 1)] {
            let mut b = route.valid.clone();
            b[*field] = json!(bad);
            with(format!("bad hex {field}"), b);
        }
    }
    out
}

async fn routes(h: &Harness) -> Vec<Route> {
    // a member whose device is enrolled (for refresh) …
    let done = h.enrolling_member("done@example.com").await;
    let fin = h
        .post("/v1/enroll/finalize")
        .bearer(&done.token)
        .json(&done.finalize_body(&nkeys::KeyPair::new_user().public_key()))
        .send()
        .await;
    assert_eq!(fin.status, StatusCode::OK);
    let device = done.device.device.clone();
    let refresh_key = nkeys::KeyPair::new_user().public_key();
    let t = h.now();
    let message = vettid_api::refresh_message(&done.member_id, &refresh_key, t);
    // … one in the middle of enrolling, one with a sign-in link, and an invite
    let e = h.enrolling_member("midway@example.com").await;
    let waiting = h
        .authenticated_member("waiting@example.com", TestDevice::new())
        .await;
    let phone = TestDevice::new();
    h.approved_member("linked@example.com").await;
    let pending = h.sign_in("linked@example.com").await;
    let link = h.magic_link_token("linked@example.com").await;
    let s = h.enrollment_session(&pending).await;
    let invite = h.invite(json!({"max_uses": 5})).await;
    let connect_token: [u8; 32] = rand::random();
    let admin = Some(h.admin_token.clone());
    let enrolling = Some(e.token.clone());
    vec![
        Route {
            uri: "/v1/admin/invites".into(),
            bearer: admin,
            valid: json!({"code": "VALID-code-01", "max_uses": 2, "expires_in_secs": 3600, "auto_approve": false}),
            required: &[],
            hex: &[],
        },
        Route {
            uri: "/v1/register".into(),
            bearer: None,
            valid: json!({"first_name": "Ada", "last_name": "King", "email": "ada@example.com", "invite_code": invite}),
            required: &["first_name", "last_name", "email", "invite_code"],
            hex: &[],
        },
        Route {
            uri: "/v1/auth/magic-link".into(),
            bearer: None,
            valid: json!({"email": "someone@example.com"}),
            required: &["email"],
            hex: &[],
        },
        Route {
            uri: "/v1/auth/verify".into(),
            bearer: None,
            valid: json!({"token": link}),
            required: &["token"],
            hex: &[],
        },
        Route {
            uri: "/v1/enroll/authenticate".into(),
            bearer: None,
            valid: json!({
                "code": s["code"],
                "email": "linked@example.com",
                "device_name": "Phone",
                "device_public_key": phone.device_hex(),
                "session_public_key": hex::encode(phone.session_key),
            }),
            required: &["code", "email", "device_public_key", "session_public_key"],
            hex: &["device_public_key", "session_public_key"],
        },
        Route {
            uri: format!("/v1/enroll/sessions/{}/confirm", waiting.session_id),
            bearer: Some(waiting.session.clone()),
            valid: json!({ "comparison_code": waiting.comparison_code() }),
            required: &["comparison_code"],
            hex: &[],
        },
        Route {
            uri: "/v1/enroll/nats".into(),
            bearer: enrolling.clone(),
            valid: json!({"nats_public_key": nkeys::KeyPair::new_user().public_key()}),
            required: &["nats_public_key"],
            hex: &[],
        },
        Route {
            uri: "/v1/enroll/status".into(),
            bearer: enrolling.clone(),
            valid: json!({"phase": "nats_connected"}),
            required: &["phase"],
            hex: &[],
        },
        Route {
            uri: "/v1/enroll/finalize".into(),
            bearer: enrolling,
            valid: e.finalize_body(&nkeys::KeyPair::new_user().public_key()),
            required: &[
                "device_public_key",
                "nats_public_key",
                "identity_public_key",
                "device_attestation",
            ],
            hex: &["device_public_key", "identity_public_key"],
        },
        Route {
            uri: "/v1/nats/refresh".into(),
            bearer: None,
            valid: json!({
                "member_id": done.member_id,
                "device_public_key": hex::encode(device.verifying_key().to_bytes()),
                "nats_public_key": refresh_key,
                "timestamp": t,
                "signature": hex::encode(device.sign(&message).to_bytes()),
            }),
            required: &[
                "member_id",
                "device_public_key",
                "nats_public_key",
                "timestamp",
                "signature",
            ],
            hex: &["device_public_key", "signature"],
        },
        Route {
            uri: "/v1/connect-codes".into(),
            bearer: None,
            valid: json!({
                "lookup": hex::encode(rand::random::<[u8; 16]>()),
                "sealed": "c2VhbGVkIGludml0YXRpb24",
                "expires_at": t + 3600,
                "delete_hash": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(connect_token)),
            }),
            required: &["lookup", "sealed", "expires_at", "delete_hash"],
            hex: &["lookup", "delete_hash"],
        },
    ]
}

#[tokio::test]
async fn every_json_route_answers_400_to_bad_bodies_and_changes_nothing() {
    let h = Harness::new().await;
    let routes = routes(&h).await;
    let before = h.snapshot().await;
    let mut checked = 0;
    for route in &routes {
        let call = |ct: Option<&str>, body: Vec<u8>| {
            let mut c = h.post(&route.uri).raw(ct, body);
            if let Some(t) = &route.bearer {
                c = c.bearer(t);
            }
            c.send()
        };
        let mut cases: Vec<(String, Option<&str>, Vec<u8>)> = shapeless()
            .into_iter()
            .map(|(ct, b)| (String::from_utf8_lossy(&b).into_owned(), ct, b))
            .collect();
        cases.extend(defects(route));
        for (name, ct, body) in cases {
            let r = call(ct, body).await;
            assert_eq!(
                r.status,
                StatusCode::BAD_REQUEST,
                "{} {name}: {}",
                route.uri,
                r.body
            );
            r.assert_error(StatusCode::BAD_REQUEST, "bad_request");
            checked += 1;
        }
        // a body over the limit
        let mut big = route.valid.clone();
        big["padding"] = json!("x".repeat(17 * 1024));
        let r = call(Some("application/json"), serde_json::to_vec(&big).unwrap()).await;
        r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    }
    assert!(checked > 200, "{checked} cases");
    assert_eq!(
        h.snapshot().await,
        before,
        "no bad request changed the database"
    );

    // the templates themselves are accepted
    for route in &routes {
        let mut c = h.post(&route.uri).json(&route.valid);
        if let Some(t) = &route.bearer {
            c = c.bearer(t);
        }
        let r = c.send().await;
        assert!(
            r.status.is_success(),
            "{} template: {} {}",
            route.uri,
            r.status,
            r.body
        );
    }
}

#[tokio::test]
async fn bad_query_and_path_parameters_are_400() {
    let h = Harness::new().await;
    for query in [
        "status=bogus",
        "status=",
        "status=pending&extra=1",
        "status=PENDING",
    ] {
        let uri = format!("/v1/admin/registrations?{query}");
        let r = h.admin(Method::GET, &uri).send().await;
        r.assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
    let r = h
        .admin(Method::POST, "/v1/admin/registrations/%FF/approve")
        .send()
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let h = Harness::new().await;
    let r = h.get("/nope").send().await;
    r.assert_error(StatusCode::NOT_FOUND, "not_found");
    let r = h.post("/health").send().await;
    r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let r = h.get("/v1/register").send().await;
    r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let r = h.get("/health").send().await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "ok");
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn public_documents_are_served_as_is_or_404() {
    let h = Harness::with(|c| c.manifest_path = None).await;
    let r = h.get("/v1/pcr-manifest").send().await;
    r.assert_error(StatusCode::NOT_FOUND, "not_found");
    let r = h.get("/v1/dev-root").send().await;
    r.assert_error(StatusCode::NOT_FOUND, "not_found");

    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("pcr-manifest.json");
    let root = dir.path().join("root.pem");
    let manifest_bytes = b"{\"version\":1,  \"pcrs\":{}}\n".to_vec();
    std::fs::write(&manifest, &manifest_bytes).unwrap();
    std::fs::write(
        &root,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let h = Harness::with(|c| {
        c.manifest_path = Some(manifest.clone());
        c.dev_root_path = Some(root.clone());
    })
    .await;
    let r = h.get("/v1/pcr-manifest").send().await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.bytes, manifest_bytes, "byte for byte");
    let r = h.get("/v1/dev-root").send().await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/x-pem-file");
    assert!(
        r.body
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    std::fs::remove_file(&manifest).unwrap();
    let r = h.get("/v1/pcr-manifest").send().await;
    r.assert_error(StatusCode::NOT_FOUND, "not_found");
}
