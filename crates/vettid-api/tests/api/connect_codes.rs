//! Connect codes: sealed invitations kept under a code-derived lookup id until they expire or
//! their maker deletes them; anyone may create, so rates, sizes, expiry and a global cap bound
//! abuse.

use crate::harness::{Harness, Resp, generous_limits};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::Digest as _;
use std::net::IpAddr;
use vettid_api::{Limits, Rate};

const WEEK: u64 = 7 * 24 * 3600;

/// What an inviter's app derives from one short code, and the invitation it seals.
struct Code {
    lookup: String,
    token: [u8; 32],
    sealed: Vec<u8>,
}

impl Code {
    fn new() -> Code {
        Code {
            lookup: hex::encode(rand::random::<[u8; 16]>()),
            token: rand::random(),
            sealed: (0..1300).map(|_| rand::random::<u8>()).collect(),
        }
    }

    fn uri(&self) -> String {
        format!("/v1/connect-codes/{}", self.lookup)
    }

    fn delete_hash(&self) -> String {
        hex::encode(sha2::Sha256::digest(self.token))
    }

    fn sealed_text(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.sealed)
    }

    /// A valid creation body expiring at `expires_at`.
    fn body(&self, expires_at: u64) -> Value {
        json!({
            "lookup": self.lookup,
            "sealed": self.sealed_text(),
            "expires_at": expires_at,
            "delete_hash": self.delete_hash(),
        })
    }
}

async fn create(h: &Harness, body: &Value) -> Resp {
    h.post("/v1/connect-codes").json(body).send().await
}

async fn delete(h: &Harness, code: &Code, token: &str) -> Resp {
    h.delete(&code.uri())
        .json(&json!({ "delete_token": token }))
        .send()
        .await
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn an_invitation_is_fetched_back_as_sealed_until_it_expires() {
    let h = Harness::new().await;
    let code = Code::new();
    let expires_at = h.now() + 3600;
    let r = create(&h, &code.body(expires_at)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        r.body,
        json!({ "lookup": code.lookup, "expires_at": expires_at })
    );

    let r = h.get(&code.uri()).send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body,
        json!({ "sealed": code.sealed_text(), "expires_at": expires_at })
    );
    let blob = URL_SAFE_NO_PAD
        .decode(r.body["sealed"].as_str().unwrap())
        .unwrap();
    assert_eq!(blob, code.sealed, "byte for byte");

    h.advance(3599);
    assert_eq!(h.get(&code.uri()).send().await.status, StatusCode::OK);
    // At `expires_at` it is gone, and looks exactly like a lookup never made.
    h.advance(1);
    let expired = h.get(&code.uri()).send().await;
    expired.assert_error(StatusCode::NOT_FOUND, "not_found");
    let never = h.get(&Code::new().uri()).send().await;
    never.assert_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        expired.bytes, never.bytes,
        "expired and absent are one answer"
    );
}

#[tokio::test]
async fn nobody_replaces_a_live_invitation_under_its_lookup() {
    let h = Harness::new().await;
    let first = Code::new();
    let r = create(&h, &first.body(h.now() + 60)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // Someone else, with the same lookup and their own blob and delete hash.
    let squatter = Code {
        lookup: first.lookup.clone(),
        ..Code::new()
    };
    let before = h.snapshot().await;
    let r = create(&h, &squatter.body(h.now() + 3600)).await;
    r.assert_error(StatusCode::CONFLICT, "conflict");
    assert_eq!(h.snapshot().await, before, "the refusal changed nothing");
    let r = h.get(&first.uri()).send().await;
    assert_eq!(r.body["sealed"], first.sealed_text(), "the first one stays");

    // Once it expired, the lookup is free again: the expired row goes as the new one is made.
    h.advance(60);
    let r = create(&h, &squatter.body(h.now() + 3600)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(h.count("connect_codes").await, 1);
    let r = h.get(&first.uri()).send().await;
    assert_eq!(r.body["sealed"], squatter.sealed_text());
}

#[tokio::test]
async fn expired_rows_are_deleted_when_new_ones_are_made() {
    let h = Harness::new().await;
    let (soon, later, next) = (Code::new(), Code::new(), Code::new());
    assert_eq!(
        create(&h, &soon.body(h.now() + 60)).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        create(&h, &later.body(h.now() + 3600)).await.status,
        StatusCode::CREATED
    );
    h.advance(60);
    assert_eq!(h.count("connect_codes").await, 2, "not swept by reading");
    assert_eq!(
        create(&h, &next.body(h.now() + 60)).await.status,
        StatusCode::CREATED
    );
    let mut left: Vec<String> = sqlx::query_scalar("SELECT lookup FROM connect_codes")
        .fetch_all(&h.db)
        .await
        .unwrap();
    left.sort();
    let mut expected = vec![later.lookup.clone(), next.lookup.clone()];
    expected.sort();
    assert_eq!(left, expected, "only the expired row went");
}

#[tokio::test]
async fn malformed_entries_are_400_and_store_nothing() {
    let h = Harness::new().await;
    let code = Code::new();
    let now = h.now();
    let valid = code.body(now + WEEK);
    let with = |field: &str, value: Value| {
        let mut b = valid.clone();
        b[field] = value;
        b
    };
    let sealed_of = |n: usize| json!(URL_SAFE_NO_PAD.encode(vec![7u8; n]));
    let mut missing = valid.clone();
    missing.as_object_mut().unwrap().remove("delete_hash");
    let cases = [
        (
            "uppercase lookup",
            with("lookup", json!(code.lookup.to_uppercase())),
        ),
        ("short lookup", with("lookup", json!(&code.lookup[..30]))),
        (
            "long lookup",
            with("lookup", json!(format!("{}00", code.lookup))),
        ),
        ("non-hex lookup", with("lookup", json!("zz".repeat(16)))),
        ("empty sealed", with("sealed", json!(""))),
        ("sealed over 4096 bytes", with("sealed", sealed_of(4097))),
        ("padded sealed", with("sealed", json!("AQ=="))),
        ("standard-alphabet sealed", with("sealed", json!("+/v7"))),
        ("expiry now", with("expires_at", json!(now))),
        ("expiry past", with("expires_at", json!(now - 1))),
        ("expiry too far", with("expires_at", json!(now + WEEK + 1))),
        (
            "expiry as text",
            with("expires_at", json!((now + 60).to_string())),
        ),
        (
            "uppercase delete_hash",
            with("delete_hash", json!(code.delete_hash().to_uppercase())),
        ),
        (
            "short delete_hash",
            with("delete_hash", json!(&code.delete_hash()[..62])),
        ),
        (
            "non-hex delete_hash",
            with("delete_hash", json!("g".repeat(64))),
        ),
        ("unknown field", with("member_id", json!("someone"))),
        ("missing delete_hash", missing),
    ];
    for (name, body) in cases {
        let r = create(&h, &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{name}: {}", r.body);
        r.assert_error(StatusCode::BAD_REQUEST, "bad_request");
        assert_eq!(h.count("connect_codes").await, 0, "{name} stored nothing");
    }
    // The template itself, at both bounds (4096 bytes, seven days), is accepted: each refusal
    // above was its one defect's.
    let r = create(&h, &with("sealed", sealed_of(4096))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    for lookup in [
        code.lookup.to_uppercase(),
        code.lookup[..30].to_owned(),
        "not-hex".into(),
        "%FF".into(),
    ] {
        let uri = format!("/v1/connect-codes/{lookup}");
        let r = h.get(&uri).send().await;
        r.assert_error(StatusCode::BAD_REQUEST, "bad_request");
        let r = h
            .delete(&uri)
            .json(&json!({ "delete_token": hex::encode(code.token) }))
            .send()
            .await;
        r.assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
    let before = h.snapshot().await;
    for token in [
        hex::encode(code.token).to_uppercase(),
        hex::encode(&code.token[..31]),
        "x".repeat(64),
    ] {
        delete(&h, &code, &token)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
    let r = h
        .delete(&code.uri())
        .json(&json!({ "delete_token": hex::encode(code.token), "lookup": code.lookup }))
        .send()
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(h.snapshot().await, before, "no malformed delete removed it");
    assert_eq!(h.get(&code.uri()).send().await.status, StatusCode::OK);
}

#[tokio::test]
async fn only_the_delete_token_removes_an_invitation_and_a_wrong_one_learns_nothing() {
    let h = Harness::new().await;
    let code = Code::new();
    let r = create(&h, &code.body(h.now() + 3600)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    let wrong = delete(&h, &code, &hex::encode(rand::random::<[u8; 32]>())).await;
    wrong.assert_error(StatusCode::NOT_FOUND, "not_found");
    // The stored hash, which the server holds, is not itself a delete token.
    let hash = delete(&h, &code, &code.delete_hash()).await;
    hash.assert_error(StatusCode::NOT_FOUND, "not_found");
    let r = h.get(&code.uri()).send().await;
    assert_eq!(r.status, StatusCode::OK, "still there: {}", r.body);
    // An absent entry gets the same answer as a wrong token.
    let absent = delete(&h, &Code::new(), &hex::encode(code.token)).await;
    assert_eq!(absent.status, StatusCode::NOT_FOUND);
    assert_eq!(wrong.bytes, absent.bytes, "no hint that the entry exists");
    assert_eq!(hash.bytes, absent.bytes);

    let r = delete(&h, &code, &hex::encode(code.token)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert!(r.bytes.is_empty());
    h.get(&code.uri())
        .send()
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    delete(&h, &code, &hex::encode(code.token))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(h.count("connect_codes").await, 0);

    // An expired one is absent to its maker too.
    let old = Code::new();
    assert_eq!(
        create(&h, &old.body(h.now() + 60)).await.status,
        StatusCode::CREATED
    );
    h.advance(60);
    delete(&h, &old, &hex::encode(old.token))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn creation_is_limited_to_30_per_ip_per_hour() {
    let h = Harness::with(|c| {
        c.limits = Limits {
            connect_code_create_per_ip: Limits::default().connect_code_create_per_ip,
            ..generous_limits()
        }
    })
    .await;
    assert_eq!(
        Limits::default().connect_code_create_per_ip,
        Rate::per_hour(30)
    );
    let make = |from: &'static str| {
        h.post("/v1/connect-codes")
            .ip(ip(from))
            .json(&Code::new().body(h.now() + 3600))
            .send()
    };
    for _ in 0..30 {
        assert_eq!(make("192.0.2.1").await.status, StatusCode::CREATED);
    }
    let before = h.snapshot().await;
    let r = make("192.0.2.1").await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    assert_eq!(h.snapshot().await, before, "the refused one was not stored");
    assert_eq!(make("192.0.2.2").await.status, StatusCode::CREATED);
    h.advance(3600);
    assert_eq!(make("192.0.2.1").await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn fetching_and_deleting_count_together_120_per_ip_per_hour() {
    let h = Harness::with(|c| {
        c.limits = Limits {
            connect_code_lookup_per_ip: Limits::default().connect_code_lookup_per_ip,
            ..generous_limits()
        }
    })
    .await;
    assert_eq!(
        Limits::default().connect_code_lookup_per_ip,
        Rate::per_hour(120)
    );
    let code = Code::new();
    assert_eq!(
        create(&h, &code.body(h.now() + 2 * 3600)).await.status,
        StatusCode::CREATED
    );
    let guesser = ip("198.51.100.7");
    let fetch = |from: IpAddr| h.get(&code.uri()).ip(from).send();
    let delete_from = |from: IpAddr, token: [u8; 32]| {
        h.delete(&code.uri())
            .ip(from)
            .json(&json!({ "delete_token": hex::encode(token) }))
            .send()
    };
    for _ in 0..60 {
        assert_eq!(fetch(guesser).await.status, StatusCode::OK);
        let r = delete_from(guesser, rand::random()).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    fetch(guesser)
        .await
        .assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // Over the limit even the right token is refused, before it is checked.
    let r = delete_from(guesser, code.token).await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(fetch(ip("198.51.100.8")).await.status, StatusCode::OK);
    h.advance(3600);
    assert_eq!(fetch(guesser).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_full_directory_is_503_until_entries_expire_or_are_deleted() {
    assert_eq!(Limits::default().connect_codes_max_live, 100_000);
    let h = Harness::with(|c| c.limits.connect_codes_max_live = 3).await;
    let codes: Vec<Code> = (0..3).map(|_| Code::new()).collect();
    for (code, life) in codes.iter().zip([60, 3600, 3600]) {
        let r = create(&h, &code.body(h.now() + life)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let extra = Code::new();
    let before = h.snapshot().await;
    let r = create(&h, &extra.body(h.now() + 3600)).await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("full"),
        "{}",
        r.body
    );
    assert_eq!(h.snapshot().await, before);

    // A deletion makes room…
    let r = delete(&h, &codes[2], &hex::encode(codes[2].token)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        create(&h, &extra.body(h.now() + 3600)).await.status,
        StatusCode::CREATED
    );
    let another = Code::new();
    let r = create(&h, &another.body(h.now() + 3600)).await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    // …and so does an expiry: expired rows do not count.
    h.advance(60);
    let r = create(&h, &another.body(h.now() + 3600)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(h.count("connect_codes").await, 3);
}

#[tokio::test]
async fn the_server_keeps_only_the_lookup_the_blob_the_expiry_and_the_hash() {
    let h = Harness::new().await;
    let code = Code::new();
    let expires_at = h.now() + 3600;
    let r = create(&h, &code.body(expires_at)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let columns: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_info('connect_codes') ORDER BY cid")
            .fetch_all(&h.db)
            .await
            .unwrap();
    assert_eq!(columns, ["lookup", "sealed", "expires_at", "delete_hash"]);
    let row: (String, String, i64, String) =
        sqlx::query_as("SELECT lookup, sealed, expires_at, delete_hash FROM connect_codes")
            .fetch_one(&h.db)
            .await
            .unwrap();
    assert_eq!(
        row,
        (
            code.lookup.clone(),
            code.sealed_text(),
            i64::try_from(expires_at).unwrap(),
            code.delete_hash(),
        )
    );
    assert_ne!(row.3, hex::encode(code.token), "the token is never stored");
}
