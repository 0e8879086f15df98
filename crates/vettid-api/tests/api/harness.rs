//! An API over a real SQLite file and a real vettid-nats setup in a tempdir, driven through
//! its router with `oneshot`, with a manual clock.

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sqlx::SqlitePool;
use sqlx::sqlite::SqliteConnectOptions;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tower::ServiceExt;
use vettid_api::{ApiConfig, App, Limits, ManualClock, OutboxMailer, Rate};
use vettid_crypto::sign::SigningKey;

pub(crate) const DEFAULT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));

pub(crate) struct Harness {
    pub(crate) dir: TempDir,
    pub(crate) app: App,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) router: Router,
    pub(crate) admin_token: String,
    pub(crate) db: SqlitePool,
}

/// Limits high enough that only the rate-limit tests meet them.
pub(crate) fn generous_limits() -> Limits {
    let lots = Rate::per_hour(10_000);
    Limits {
        register_per_ip: lots,
        magic_link_per_email: lots,
        magic_link_per_ip: lots,
        verify_per_ip: lots,
        enroll_authenticate_per_ip: lots,
        refresh_per_ip: lots,
        connect_code_create_per_ip: lots,
        connect_code_lookup_per_ip: lots,
        ..Limits::default()
    }
}

impl Harness {
    /// With NATS issuing (a fresh vettid-nats setup) and generous limits.
    pub(crate) async fn new() -> Harness {
        Harness::with(|_| {}).await
    }

    /// As [`Harness::new`], after `adjust` changes the configuration.
    pub(crate) async fn with(adjust: impl FnOnce(&mut ApiConfig)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut config = ApiConfig::new(&data);
        config.public_url = "https://api.test.example/".into();
        config.nats_url = "nats://127.0.0.1:1".into();
        config.nats_dir = Some(dir.path().join("nats"));
        config.limits = generous_limits();
        let trust = dir.path().join("attestation");
        std::fs::create_dir_all(&trust).unwrap();
        let enclave = test_enclave();
        std::fs::write(trust.join("root.pem"), enclave.root.cert_pem()).unwrap();
        std::fs::write(trust.join("pcr-manifest.json"), &enclave.manifest).unwrap();
        config.attestation_root_path = Some(trust.join("root.pem"));
        config.manifest_path = Some(trust.join("pcr-manifest.json"));
        config.manifest_key = Some(enclave.manifest_key.clone());
        adjust(&mut config);
        let clock = Arc::new(ManualClock::starting_now());
        let mailer = Arc::new(OutboxMailer::new(config.outbox_dir()));
        let app = App::open_with(config, clock.clone(), mailer).await.unwrap();
        let admin_token = std::fs::read_to_string(data.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned();
        let db =
            SqlitePool::connect_with(SqliteConnectOptions::new().filename(data.join("api.db")))
                .await
                .unwrap();
        let mut h = Harness {
            router: app.router(),
            dir,
            app,
            clock,
            admin_token: String::new(),
            db,
        };
        // The one-time admin token, exchanged for an admin session.
        let r = h
            .post("/v1/admin/sessions")
            .json(&json!({ "token": admin_token }))
            .send()
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        h.admin_token = r.body["session_token"].as_str().unwrap().to_owned();
        h
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub(crate) fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }

    pub(crate) fn now(&self) -> u64 {
        self.clock.now_unix()
    }

    pub(crate) fn req(&self, method: Method, uri: &str) -> Call<'_> {
        Call {
            h: self,
            method,
            uri: uri.to_owned(),
            bearer: None,
            ip: DEFAULT_IP,
            content_type: None,
            extra: Vec::new(),
            body: Vec::new(),
        }
    }

    pub(crate) fn post(&self, uri: &str) -> Call<'_> {
        self.req(Method::POST, uri)
    }

    pub(crate) fn get(&self, uri: &str) -> Call<'_> {
        self.req(Method::GET, uri)
    }

    pub(crate) fn delete(&self, uri: &str) -> Call<'_> {
        self.req(Method::DELETE, uri)
    }

    pub(crate) fn admin(&self, method: Method, uri: &str) -> Call<'_> {
        self.req(method, uri).bearer(&self.admin_token)
    }

    /// A fingerprint of every table's rows that any route could change.
    pub(crate) async fn snapshot(&self) -> Vec<String> {
        let queries = [
            "SELECT 'admins ' || COUNT(*) FROM admins",
            "SELECT 'audit ' || COUNT(*) FROM admin_audit",
            "SELECT 'invites ' || COUNT(*) || ' ' || COALESCE(SUM(uses), 0) FROM invites",
            "SELECT 'registrations ' || COUNT(*) || ' ' || COALESCE(group_concat(status), '') FROM registrations",
            "SELECT 'links ' || COUNT(*) || ' ' || COALESCE(group_concat(COALESCE(used_at, '-')), '') FROM magic_links",
            "SELECT 'sessions ' || COUNT(*) FROM member_sessions",
            "SELECT 'enrollments ' || COUNT(*) || ' ' || COALESCE(group_concat(phase || COALESCE(authenticated_at, '-') || COALESCE(token_used_at, '-') || expires_at), '') FROM enrollment_sessions",
            "SELECT 'phases ' || COUNT(*) FROM enrollment_phases",
            "SELECT 'devices ' || COUNT(*) || ' ' || COALESCE(group_concat(COALESCE(last_refresh_ts, '-') || COALESCE(revoked_at, '-')), '') FROM devices",
            "SELECT 'keys ' || COUNT(*) || ' ' || COALESCE(group_concat(last_issued_at || COALESCE(revoked_at, '-')), '') FROM nats_user_keys",
            "SELECT 'recoveries ' || COUNT(*) || ' ' || COALESCE(group_concat(COALESCE(cancel_reason, '-') || COALESCE(completed_at, '-')), '') FROM recovery_requests",
            "SELECT 'cancelled ' || COUNT(*) FROM enrollment_sessions WHERE cancelled_at IS NOT NULL",
            "SELECT 'connect codes ' || COUNT(*) || ' ' || COALESCE(group_concat(lookup || expires_at), '') FROM connect_codes",
        ];
        let mut out = Vec::new();
        for q in queries {
            out.push(
                sqlx::query_scalar::<_, String>(q)
                    .fetch_one(&self.db)
                    .await
                    .unwrap(),
            );
        }
        out
    }

    pub(crate) async fn count(&self, table: &str) -> i64 {
        let q = format!("SELECT COUNT(*) FROM {table}");
        sqlx::query_scalar(sqlx::AssertSqlSafe(q))
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    /// Creates an invite; returns its code.
    pub(crate) async fn invite(&self, body: Value) -> String {
        let r = self
            .admin(Method::POST, "/v1/admin/invites")
            .json(&body)
            .send()
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["code"].as_str().unwrap().to_owned()
    }

    /// Registers `email` with an auto-approve invite; returns the member id.
    pub(crate) async fn approved_member(&self, email: &str) -> String {
        let code = self.invite(json!({"auto_approve": true})).await;
        let r = self.register(email, &code).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        assert_eq!(r.body["status"], "approved");
        r.body["member_id"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn register(&self, email: &str, invite: &str) -> Resp {
        self.post("/v1/register")
            .json(&json!({
                "first_name": "Zoë", "last_name": "O'Brien", "email": email, "invite_code": invite
            }))
            .send()
            .await
    }

    /// Asks for a magic link and returns the token from the mail (exactly one new mail).
    pub(crate) async fn magic_link_token(&self, email: &str) -> String {
        let r = self
            .post("/v1/auth/magic-link")
            .json(&json!({ "email": email }))
            .send()
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
        self.app.background_idle().await;
        let mails = self.take_mails(email);
        assert_eq!(mails.len(), 1, "one mail to {email}");
        token_of(&mails[0])
    }

    /// Signs `email` in by magic link; returns the member session token.
    /// A member whose first device finalized its enrollment (the member has a vault).
    pub(crate) async fn with_vault(&self, email: &str) -> Enrolling {
        let e = self.enrolling_member(email).await;
        let r = self
            .post("/v1/enroll/finalize")
            .bearer(&e.token)
            .json(&e.finalize_body(&nkeys::KeyPair::new_user().public_key()))
            .send()
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        e
    }

    pub(crate) async fn sign_in(&self, email: &str) -> String {
        let token = self.magic_link_token(email).await;
        let r = self
            .post("/v1/auth/verify")
            .json(&json!({ "token": token }))
            .send()
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["session_token"].as_str().unwrap().to_owned()
    }

    /// The mails in the outbox addressed to `to`, removed from it.
    pub(crate) fn take_mails(&self, to: &str) -> Vec<String> {
        let outbox = self.data_dir().join("outbox");
        let Ok(entries) = std::fs::read_dir(&outbox) else {
            return Vec::new();
        };
        let mut names: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        names.sort();
        let mut mails = Vec::new();
        for path in names {
            let text = std::fs::read_to_string(&path).unwrap();
            if text.contains(&format!("\r\nTo: {to}\r\n")) {
                std::fs::remove_file(&path).unwrap();
                mails.push(text);
            }
        }
        mails
    }

    /// Creates an enrollment session for the signed-in member.
    pub(crate) async fn enrollment_session(&self, session: &str) -> Value {
        let r = self
            .post("/v1/enroll/sessions")
            .bearer(session)
            .send()
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body
    }

    /// `POST /v1/enroll/authenticate` with `body`; a body without device keys gets the
    /// keys of [`TestDevice::fixed`].
    pub(crate) async fn authenticate(&self, body: Value) -> Resp {
        let mut body = body;
        if let Some(fields) = body.as_object_mut() {
            let fixed = TestDevice::fixed();
            fields
                .entry("device_public_key")
                .or_insert(json!(fixed.device_hex()));
            fields
                .entry("session_public_key")
                .or_insert(json!(hex::encode(fixed.session_key)));
        }
        self.post("/v1/enroll/authenticate")
            .json(&body)
            .send()
            .await
    }

    /// A member signed in whose app (with `device`'s keys) authenticated with the code, and
    /// who has not confirmed it yet.
    pub(crate) async fn authenticated_member(&self, email: &str, device: TestDevice) -> Enrolling {
        let member_id = self.approved_member(email).await;
        let session = self.sign_in(email).await;
        let s = self.enrollment_session(&session).await;
        let r = self
            .authenticate(json!({
                "code": s["code"],
                "email": email,
                "device_name": "test phone",
                "device_public_key": device.device_hex(),
                "session_public_key": hex::encode(device.session_key),
            }))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let session_id = s["session_id"].as_str().unwrap().to_owned();
        assert_eq!(r.body["enrollment_session_id"], session_id.as_str());
        Enrolling {
            member_id,
            session,
            token: r.body["enrollment_token"].as_str().unwrap().to_owned(),
            session_id,
            device,
            salt: salt_of(&r.body),
        }
    }

    /// The member types `comparison_code` into the web page of `e`'s enrollment.
    pub(crate) async fn confirm(&self, e: &Enrolling, comparison_code: &str) -> Resp {
        self.post(&format!("/v1/enroll/sessions/{}/confirm", e.session_id))
            .bearer(&e.session)
            .json(&json!({ "comparison_code": comparison_code }))
            .send()
            .await
    }

    /// A member signed in and holding an enrollment token for a new device, which they
    /// confirmed on the web page.
    pub(crate) async fn enrolling_member(&self, email: &str) -> Enrolling {
        let e = self.authenticated_member(email, TestDevice::new()).await;
        let r = self.confirm(&e, &e.comparison_code()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        e
    }
}

/// An enrolling app's keys, and the identity key of the vault it creates.
pub(crate) struct TestDevice {
    pub(crate) device: SigningKey,
    pub(crate) session_key: [u8; 32],
    pub(crate) vault: SigningKey,
}

impl TestDevice {
    /// Fresh keys.
    pub(crate) fn new() -> TestDevice {
        TestDevice {
            device: SigningKey::generate(),
            session_key: rand::random(),
            vault: SigningKey::generate(),
        }
    }

    /// The same keys every time (for bodies that do not care).
    pub(crate) fn fixed() -> TestDevice {
        let seed = |b| vettid_crypto::SecretBytes::from_array([b; 32]);
        TestDevice {
            device: SigningKey::from_seed(&seed(1)),
            session_key: [2; 32],
            vault: SigningKey::from_seed(&seed(3)),
        }
    }

    pub(crate) fn device_hex(&self) -> String {
        hex::encode(self.device.verifying_key().to_bytes())
    }
}

/// A dev root, an attestor under it, and a signed PCR manifest listing its measurement: the
/// enclave whose documents every harness's finalize trusts.
pub(crate) struct TestEnclave {
    pub(crate) root: vettid_attest::dev::DevRoot,
    pub(crate) attestor: vettid_attest::dev::DevAttestor,
    manifest: String,
    manifest_key: String,
}

/// The one [`TestEnclave`] of this test binary.
pub(crate) fn test_enclave() -> &'static TestEnclave {
    static ENCLAVE: std::sync::OnceLock<TestEnclave> = std::sync::OnceLock::new();
    ENCLAVE.get_or_init(|| {
        let now = unix_now();
        let root = vettid_attest::dev::DevRoot::generate(now);
        let measurement = vettid_attest::Measurement::of_enclave(b"test enclave", b"");
        let key = SigningKey::generate();
        let manifest = vettid_attest::manifest::Manifest {
            serial: 1,
            issued_at: now,
            sets: vec![vettid_attest::manifest::PcrSet::new(
                "test",
                &measurement,
                0,
                now + 30 * 24 * 3600,
                true,
            )],
        }
        .sign(&key)
        .unwrap();
        TestEnclave {
            attestor: vettid_attest::dev::DevAttestor::new(&root, measurement),
            root,
            manifest,
            manifest_key: hex::encode(key.verifying_key().to_bytes()),
        }
    })
}

impl TestEnclave {
    /// A document (base64) of this enclave binding `user_data`, as the enclave's enrollment
    /// path asks for.
    pub(crate) fn document(&self, user_data: &[u8; 32]) -> String {
        document_of(&self.attestor, user_data)
    }

    /// As [`TestEnclave::document`], made at `now` (unix seconds: a harness's moved clock).
    pub(crate) fn document_at(&self, user_data: &[u8; 32], now: u64) -> String {
        use base64::Engine;
        let doc = self
            .attestor
            .attest(
                &vettid_attest::AttestRequest {
                    nonce: None,
                    public_key: None,
                    user_data: Some(user_data.to_vec()),
                },
                now,
            )
            .unwrap();
        base64::engine::general_purpose::STANDARD.encode(doc)
    }
}

/// A document (base64) of `attestor` binding `user_data`, now.
pub(crate) fn document_of(
    attestor: &vettid_attest::dev::DevAttestor,
    user_data: &[u8; 32],
) -> String {
    use base64::Engine;
    let doc = attestor
        .attest(
            &vettid_attest::AttestRequest {
                nonce: None,
                public_key: None,
                user_data: Some(user_data.to_vec()),
            },
            unix_now(),
        )
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(doc)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub(crate) struct Enrolling {
    pub(crate) member_id: String,
    pub(crate) session: String,
    pub(crate) token: String,
    pub(crate) session_id: String,
    pub(crate) device: TestDevice,
    /// The comparison salt the API answered.
    pub(crate) salt: [u8; 16],
}

/// The comparison salt of an authenticate answer.
pub(crate) fn salt_of(answer: &Value) -> [u8; 16] {
    let mut salt = [0u8; 16];
    hex::decode_to_slice(answer["comparison_salt"].as_str().unwrap(), &mut salt).unwrap();
    salt
}

impl Enrolling {
    /// The comparison code this enrollment's app shows.
    pub(crate) fn comparison_code(&self) -> String {
        vettid_proto::auth::comparison_code(
            &self.session_id,
            &self.salt,
            &self.device.device.verifying_key().to_bytes(),
            &self.device.session_key,
        )
    }

    /// A finalize body for `nats_public_key` with the test enclave's document for this
    /// enrollment.
    pub(crate) fn finalize_body(&self, nats_public_key: &str) -> Value {
        let device_key = self.device.device.verifying_key().to_bytes();
        let identity = self.device.vault.verifying_key().to_bytes();
        json!({
            "device_public_key": hex::encode(device_key),
            "nats_public_key": nats_public_key,
            "identity_public_key": hex::encode(identity),
            "device_attestation": test_enclave().document(&vettid_proto::auth::enrolled_device_binding(
                &self.member_id,
                &self.device.session_key,
                &device_key,
                &identity,
            )),
        })
    }
}

pub(crate) trait NowUnix {
    fn now_unix(&self) -> u64;
}

impl NowUnix for ManualClock {
    fn now_unix(&self) -> u64 {
        use vettid_api::Clock;
        self.now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }
}

/// The bare token of a magic-link mail (`Token: …` line), checked against the link.
pub(crate) fn token_of(mail: &str) -> String {
    let token = mail
        .lines()
        .find_map(|l| l.strip_prefix("Token: "))
        .expect("a Token: line")
        .to_owned();
    assert!(
        mail.contains(&format!("https://api.test.example/auth#token={token}\r\n")),
        "the link carries the same token"
    );
    token
}

pub(crate) struct Call<'a> {
    h: &'a Harness,
    method: Method,
    uri: String,
    bearer: Option<String>,
    ip: IpAddr,
    content_type: Option<String>,
    extra: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Call<'_> {
    pub(crate) fn bearer(mut self, token: &str) -> Self {
        self.bearer = Some(format!("Bearer {token}"));
        self
    }

    /// An `Authorization` header with exactly `value`.
    pub(crate) fn bearer_raw(mut self, value: &str) -> Self {
        self.bearer = Some(value.to_owned());
        self
    }

    pub(crate) fn ip(mut self, ip: IpAddr) -> Self {
        self.ip = ip;
        self
    }

    /// Another header.
    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.extra.push((name.to_owned(), value.to_owned()));
        self
    }

    pub(crate) fn json(mut self, v: &Value) -> Self {
        self.content_type = Some("application/json".into());
        self.body = serde_json::to_vec(v).unwrap();
        self
    }

    pub(crate) fn raw(mut self, content_type: Option<&str>, body: impl Into<Vec<u8>>) -> Self {
        self.content_type = content_type.map(str::to_owned);
        self.body = body.into();
        self
    }

    pub(crate) async fn send(self) -> Resp {
        let mut b = Request::builder().method(self.method).uri(&self.uri);
        if let Some(t) = &self.bearer {
            b = b.header(header::AUTHORIZATION, t);
        }
        if let Some(ct) = &self.content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        for (name, value) in &self.extra {
            b = b.header(name, value);
        }
        let mut req = b.body(Body::from(self.body)).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(self.ip, 40_000)));
        let res = self.h.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = if headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.to_str().unwrap().starts_with("application/json"))
        {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        } else {
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        };
        Resp {
            status,
            headers,
            body,
            bytes: bytes.to_vec(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
    pub(crate) bytes: Vec<u8>,
}

impl Resp {
    /// Asserts the JSON error shape with `status` and `code`.
    #[track_caller]
    pub(crate) fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.body["error"]["code"], code, "body: {}", self.body);
        assert!(
            self.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "a message: {}",
            self.body
        );
    }
}

/// The claims of a JWT (the middle part, base64url).
pub(crate) fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).expect("three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}
