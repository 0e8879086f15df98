//! Enrollment: a signed-in member links their app to their vault.
//!
//! ```text
//!  web (member session)          app (public)                    app (enrollment token)
//!  POST /v1/enroll/sessions ──► code XXXX-XXXX / QR ──► POST /v1/enroll/authenticate
//!        │ (5 min, single use)                              │ enrollment token (10 min)
//!  GET /v1/enroll/sessions/{id}  ◄── progress ──  POST /v1/enroll/nats      (enrollment JWT)
//!                                                 POST /v1/enroll/status    (phases, forward)
//!                                                 POST /v1/enroll/finalize  (device key,
//!                                                                            member JWT)
//! ```
//!
//! The code and the QR's session token are two ways to present the same one-time secret; the
//! first use spends both. The enrollment token is spent by finalize. All three are stored as
//! SHA-256 digests only. Phases only move forward ([`EnrollmentPhase`]); the API records what
//! the app reports, for the web page to show: it cannot check the app's claims (PIN, password
//! and attestation happen between the app and the enclave).

use crate::ApiError;
use crate::app::App;
use crate::auth::Member;
use crate::extract::{ApiJson, ApiPath, ClientIp, bearer};
use crate::nats::record_key;
use crate::ratelimit::ip_key;
use crate::secret::{Secret, enrollment_code, new_uuid, normalize_code};
use crate::validate;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use vettid_nats::MemberScope;

/// How long a code / QR can be used.
pub(crate) const CODE_SECS: i64 = 5 * 60;
/// How long an enrollment token lasts (`expires_in`).
pub(crate) const TOKEN_SECS: i64 = 10 * 60;
/// Lifetime of the enrollment-scoped NATS JWT.
const ENROLLMENT_JWT: Duration = Duration::from_secs(10 * 60);

/// Where an enrollment stands. The order of the variants is the only order allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrollmentPhase {
    /// The web page showed a code; no app has used it yet.
    Created,
    /// An app presented the code or QR and holds an enrollment token.
    Authenticated,
    /// The app connected to NATS with its enrollment credentials.
    NatsConnected,
    /// The app verified the enclave's attestation.
    AttestationVerified,
    /// The member chose a PIN.
    PinSet,
    /// The member set a password.
    PasswordSet,
    /// Finalized: the device is registered and holds member credentials.
    Completed,
}

impl EnrollmentPhase {
    /// Every phase, in order.
    pub const ALL: [EnrollmentPhase; 7] = [
        EnrollmentPhase::Created,
        EnrollmentPhase::Authenticated,
        EnrollmentPhase::NatsConnected,
        EnrollmentPhase::AttestationVerified,
        EnrollmentPhase::PinSet,
        EnrollmentPhase::PasswordSet,
        EnrollmentPhase::Completed,
    ];

    /// The stored and answered name.
    pub fn as_str(self) -> &'static str {
        match self {
            EnrollmentPhase::Created => "created",
            EnrollmentPhase::Authenticated => "authenticated",
            EnrollmentPhase::NatsConnected => "nats_connected",
            EnrollmentPhase::AttestationVerified => "attestation_verified",
            EnrollmentPhase::PinSet => "pin_set",
            EnrollmentPhase::PasswordSet => "password_set",
            EnrollmentPhase::Completed => "completed",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<EnrollmentPhase> {
        EnrollmentPhase::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The phases strictly before this one (the states it may be entered from).
    fn earlier(self) -> &'static [EnrollmentPhase] {
        &EnrollmentPhase::ALL[..self as usize]
    }

    /// Whether the app may report this phase through `POST /v1/enroll/status` (the first two
    /// are set by the API, `completed` only by finalize).
    fn reportable(self) -> bool {
        self > EnrollmentPhase::Authenticated && self < EnrollmentPhase::Completed
    }
}

/// An app holding a valid, unspent enrollment token (from `Authorization: Bearer`).
pub(crate) struct EnrollmentGrant {
    session_id: String,
    member_id: String,
}

impl FromRequestParts<App> for EnrollmentGrant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        let row: Option<(String, String, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT session_id, member_id, token_expires_at, token_used_at \
             FROM enrollment_sessions WHERE token_hash = ?",
        )
        .bind(app.digest(&token))
        .fetch_optional(app.db())
        .await?;
        let Some((session_id, member_id, expires_at, used_at)) = row else {
            return Err(ApiError::Unauthorized("invalid enrollment token"));
        };
        if used_at.is_some() {
            return Err(ApiError::Unauthorized("enrollment token already used"));
        }
        if expires_at.is_none_or(|t| t <= app.now()) {
            return Err(ApiError::Unauthorized("enrollment token expired"));
        }
        // Every use of an enrollment token (NATS credentials, phases, finalize) stops here
        // for a suspended member.
        crate::auth::ensure_not_suspended(app, &member_id).await?;
        Ok(EnrollmentGrant {
            session_id,
            member_id,
        })
    }
}

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/v1/enroll/sessions", post(create_session))
        .route("/v1/enroll/sessions/{id}", get(get_session))
        .route("/v1/enroll/authenticate", post(authenticate))
        .route("/v1/enroll/nats", post(enrollment_nats))
        .route("/v1/enroll/status", post(report_phase))
        .route("/v1/enroll/finalize", post(finalize))
}

/// Whether `member` has an enrolled device that is not revoked.
/// Whether `member` ever finalized an enrollment: the enclave then holds their vault, revoked
/// devices or not, and a new device can only come through recovery.
async fn has_vault(app: &App, member: &str) -> Result<bool, ApiError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE member_id = ?")
        .bind(member)
        .fetch_one(app.db())
        .await?;
    Ok(n > 0)
}

#[derive(Serialize)]
struct QrPayload<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    version: u32,
    api_url: &'a str,
    session_token: &'a Secret,
    member_id: &'a str,
}

#[derive(Serialize)]
struct SessionCreated {
    session_id: String,
    code: Secret,
    expires_at: i64,
    qr: serde_json::Value,
    qr_text: Secret,
    qr_terminal: Secret,
}

/// `POST /v1/enroll/sessions` (member) → 201 with a fresh code and QR; 409 if the member
/// already has an enrolled device. Codes of the member's earlier, unused sessions stop
/// working (one live code per member).
async fn create_session(
    State(app): State<App>,
    member: Member,
) -> Result<(StatusCode, Json<SessionCreated>), ApiError> {
    if has_vault(&app, &member.member_id).await? {
        return Err(ApiError::Conflict(
            "this member already has a vault; a new device comes through recovery",
        ));
    }
    let now = app.now();
    let (code, code_normalized) = enrollment_code();
    let qr_token = Secret::random_token();
    let session_id = new_uuid();
    let mut tx = app.db().begin().await?;
    supersede_unused_sessions(&mut tx, &member.member_id, now).await?;
    sqlx::query(
        "INSERT INTO enrollment_sessions (session_id, member_id, code_hash, qr_token_hash, phase, \
         created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&session_id)
    .bind(&member.member_id)
    .bind(app.digest(&code_normalized))
    .bind(app.digest(&qr_token))
    .bind(EnrollmentPhase::Created.as_str())
    .bind(now)
    .bind(now + CODE_SECS)
    .execute(&mut *tx)
    .await?;
    record_phase(&mut tx, &session_id, EnrollmentPhase::Created, now).await?;
    tx.commit().await?;

    let payload = QrPayload {
        kind: "vettid_enrollment",
        version: 1,
        api_url: &app.state.public_url,
        session_token: &qr_token,
        member_id: &member.member_id,
    };
    let qr_text = serde_json::to_string(&payload).map_err(|e| ApiError::internal("qr", e))?;
    let created = SessionCreated {
        session_id,
        code,
        expires_at: now + CODE_SECS,
        qr: serde_json::to_value(&payload).map_err(|e| ApiError::internal("qr", e))?,
        qr_terminal: Secret::from_client(render_terminal_qr(&qr_text)?),
        qr_text: Secret::from_client(qr_text),
    };
    Ok((StatusCode::CREATED, Json(created)))
}

/// Ends the codes of `member`'s sessions that no app has used yet.
async fn supersede_unused_sessions(
    tx: &mut sqlx::SqliteConnection,
    member: &str,
    now: i64,
) -> Result<(), ApiError> {
    sqlx::query(
        "UPDATE enrollment_sessions SET expires_at = ? \
         WHERE member_id = ? AND authenticated_at IS NULL AND expires_at > ?",
    )
    .bind(now)
    .bind(member)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// `text` as a QR code of Unicode half blocks, dark modules drawn light so it scans on a
/// dark terminal.
fn render_terminal_qr(text: &str) -> Result<String, ApiError> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M)
        .map_err(|e| ApiError::internal("rendering the QR code", e))?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

async fn record_phase(
    tx: &mut sqlx::SqliteConnection,
    session_id: &str,
    phase: EnrollmentPhase,
    now: i64,
) -> Result<(), ApiError> {
    sqlx::query("INSERT INTO enrollment_phases (session_id, phase, at) VALUES (?, ?, ?)")
        .bind(session_id)
        .bind(phase.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

#[derive(Serialize)]
struct PhaseAt {
    name: EnrollmentPhase,
    at: i64,
}

#[derive(Serialize)]
struct SessionView {
    session_id: String,
    phase: EnrollmentPhase,
    phases: Vec<PhaseAt>,
    expires_at: i64,
}

/// `GET /v1/enroll/sessions/{id}` (member) → the session's progress; 404 if it is not this
/// member's. `expires_at` is the code's deadline until an app authenticates, then the
/// enrollment token's.
async fn get_session(
    State(app): State<App>,
    member: Member,
    ApiPath(id): ApiPath,
) -> Result<Json<SessionView>, ApiError> {
    let row: Option<(String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT phase, expires_at, token_expires_at FROM enrollment_sessions \
         WHERE session_id = ? AND member_id = ?",
    )
    .bind(&id)
    .bind(&member.member_id)
    .fetch_optional(app.db())
    .await?;
    let (phase, code_expires, token_expires) =
        row.ok_or(ApiError::NotFound("no such enrollment session"))?;
    let history: Vec<(String, i64)> = sqlx::query_as(
        "SELECT phase, at FROM enrollment_phases WHERE session_id = ? ORDER BY at, phase",
    )
    .bind(&id)
    .fetch_all(app.db())
    .await?;
    let stored = |s: &str| {
        EnrollmentPhase::parse(s).ok_or_else(|| ApiError::internal("enrollment row", "bad phase"))
    };
    let mut phases = history
        .into_iter()
        .map(|(name, at)| {
            Ok(PhaseAt {
                name: stored(&name)?,
                at,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    phases.sort_by_key(|p| p.name);
    Ok(Json(SessionView {
        session_id: id,
        phase: stored(&phase)?,
        phases,
        expires_at: token_expires.unwrap_or(code_expires),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthenticateRequest {
    code: Option<Secret>,
    session_token: Option<Secret>,
    device_name: Option<String>,
}

#[derive(Serialize)]
struct Authenticated {
    enrollment_token: Secret,
    expires_in: i64,
    member_id: String,
    enrollment_session_id: String,
}

/// How the app names its session.
enum Presented {
    Code(Secret),
    QrToken(Secret),
}

impl AuthenticateRequest {
    fn presented(&self) -> Result<Presented, ApiError> {
        match (&self.code, &self.session_token) {
            (Some(code), None) => normalize_code(code.expose())
                .map(Presented::Code)
                .ok_or_else(|| ApiError::bad_request("code must look like XXXX-XXXX")),
            (None, Some(token)) => {
                validate::token_shape("session_token", token.expose())?;
                Ok(Presented::QrToken(token.clone()))
            }
            _ => Err(ApiError::bad_request(
                "give exactly one of code and session_token",
            )),
        }
    }
}

/// `POST /v1/enroll/authenticate {code | session_token, device_name?}` → an enrollment token.
/// 401 for an unknown code, 410 for an expired or used one; the code or QR token is spent
/// atomically, so two apps racing with it cannot both win. Rate-limited per IP.
async fn authenticate(
    State(app): State<App>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<AuthenticateRequest>,
) -> Result<Json<Authenticated>, ApiError> {
    let presented = req.presented()?;
    let device_name = req
        .device_name
        .as_deref()
        .map(validate::device_name)
        .transpose()?;
    let limits = &app.state.config.limits;
    app.rate_limit(
        "enroll_authenticate",
        &ip_key(ip),
        limits.enroll_authenticate_per_ip,
    )?;

    let (session_id, member_id) = find_session(&app, &presented).await?;
    crate::auth::ensure_not_suspended(&app, &member_id).await?;
    let now = app.now();
    let token = Secret::random_token();
    let mut tx = app.db().begin().await?;
    let spent = sqlx::query(
        "UPDATE enrollment_sessions SET authenticated_at = ?, phase = ?, device_name = ?, \
         token_hash = ?, token_expires_at = ? \
         WHERE session_id = ? AND authenticated_at IS NULL AND expires_at > ?",
    )
    .bind(now)
    .bind(EnrollmentPhase::Authenticated.as_str())
    .bind(device_name)
    .bind(app.digest(&token))
    .bind(now + TOKEN_SECS)
    .bind(&session_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if spent.rows_affected() != 1 {
        return Err(ApiError::Gone(
            "this enrollment code has expired or was already used",
        ));
    }
    record_phase(&mut tx, &session_id, EnrollmentPhase::Authenticated, now).await?;
    tx.commit().await?;
    Ok(Json(Authenticated {
        enrollment_token: token,
        expires_in: TOKEN_SECS,
        member_id,
        enrollment_session_id: session_id,
    }))
}

/// The session a code or QR token names: 401 if none, 410 if it can no longer be used.
async fn find_session(app: &App, presented: &Presented) -> Result<(String, String), ApiError> {
    let row: Option<(String, String, i64, Option<i64>)> = match presented {
        Presented::Code(code) => {
            // Codes are 40 bits and may repeat across time: take the newest session with it.
            sqlx::query_as(
                "SELECT session_id, member_id, expires_at, authenticated_at FROM enrollment_sessions \
                 WHERE code_hash = ? ORDER BY created_at DESC LIMIT 1",
            )
            .bind(app.digest(code))
            .fetch_optional(app.db())
            .await?
        }
        Presented::QrToken(token) => sqlx::query_as(
            "SELECT session_id, member_id, expires_at, authenticated_at FROM enrollment_sessions \
                 WHERE qr_token_hash = ?",
        )
        .bind(app.digest(token))
        .fetch_optional(app.db())
        .await?,
    };
    match row {
        None => Err(ApiError::Unauthorized("unknown enrollment code")),
        Some((_, _, expires_at, authenticated_at))
            if authenticated_at.is_some() || expires_at <= app.now() =>
        {
            Err(ApiError::Gone(
                "this enrollment code has expired or was already used",
            ))
        }
        Some((session_id, member_id, _, _)) => Ok((session_id, member_id)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NatsKeyRequest {
    nats_public_key: String,
}

/// `POST /v1/enroll/nats {nats_public_key}` (enrollment token) → an enrollment-scoped NATS
/// JWT (10 min) for that key, recorded for revocation. 503 without NATS.
async fn enrollment_nats(
    State(app): State<App>,
    grant: EnrollmentGrant,
    ApiJson(req): ApiJson<NatsKeyRequest>,
) -> Result<Json<crate::nats::NatsCreds>, ApiError> {
    let key = validate::nats_user_key(&req.nats_public_key)?;
    let nats = app.nats()?;
    let issued = nats.sign(
        &grant.member_id,
        &key,
        MemberScope::Enrollment,
        ENROLLMENT_JWT,
        app.clock_now(),
    )?;
    record_key(
        app.db(),
        &grant.member_id,
        MemberScope::Enrollment,
        &issued,
        app.now(),
    )
    .await?;
    ensure_grant_live(&app, &grant).await?;
    Ok(Json(nats.creds(&grant.member_id, &issued)))
}

/// Re-checks, after recording a key, that a revocation has not ended the enrollment since the
/// grant was checked (a revocation that ran in between did not see the key).
async fn ensure_grant_live(app: &App, grant: &EnrollmentGrant) -> Result<(), ApiError> {
    let live: Option<String> = sqlx::query_scalar(
        "SELECT session_id FROM enrollment_sessions WHERE session_id = ? \
         AND token_used_at IS NULL AND token_expires_at > ?",
    )
    .bind(&grant.session_id)
    .bind(app.now())
    .fetch_optional(app.db())
    .await?;
    live.map(|_| ())
        .ok_or(ApiError::Unauthorized("enrollment token expired"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PhaseReport {
    phase: String,
}

#[derive(Serialize)]
struct PhaseRecorded {
    session_id: String,
    phase: EnrollmentPhase,
}

/// `POST /v1/enroll/status {phase}` (enrollment token) → the phase, if it is later than the
/// current one (skipping ahead is allowed; the same or an earlier phase is 409). `created`,
/// `authenticated` and `completed` cannot be reported (400).
async fn report_phase(
    State(app): State<App>,
    grant: EnrollmentGrant,
    ApiJson(req): ApiJson<PhaseReport>,
) -> Result<Json<PhaseRecorded>, ApiError> {
    let phase = EnrollmentPhase::parse(&req.phase)
        .filter(|p| p.reportable())
        .ok_or_else(|| {
            ApiError::bad_request(
                "phase must be one of nats_connected, attestation_verified, pin_set, password_set",
            )
        })?;
    let earlier = phase.earlier();
    let name = |i: usize| earlier.get(i).map(|p| p.as_str());
    let now = app.now();
    let mut tx = app.db().begin().await?;
    // The IN list has room for every phase before `password_set`; unused slots are NULL,
    // which matches nothing.
    let moved = sqlx::query(
        "UPDATE enrollment_sessions SET phase = ? WHERE session_id = ? AND token_used_at IS NULL \
         AND phase IN (?, ?, ?, ?, ?)",
    )
    .bind(phase.as_str())
    .bind(&grant.session_id)
    .bind(name(0))
    .bind(name(1))
    .bind(name(2))
    .bind(name(3))
    .bind(name(4))
    .execute(&mut *tx)
    .await?;
    if moved.rows_affected() != 1 {
        return Err(ApiError::Conflict("enrollment phases only move forward"));
    }
    record_phase(&mut tx, &grant.session_id, phase, now).await?;
    tx.commit().await?;
    Ok(Json(PhaseRecorded {
        session_id: grant.session_id,
        phase,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FinalizeRequest {
    device_public_key: String,
    nats_public_key: String,
}

/// `POST /v1/enroll/finalize {device_public_key, nats_public_key}` (enrollment token) →
/// member NATS credentials. In one transaction: spends the enrollment token (a second
/// finalize is 401), refuses if the member already has an active device (409), registers the
/// device key (409 if it is already registered), records the NATS key, marks the session
/// completed. The JWT is signed first but handed out only if all of that commits.
async fn finalize(
    State(app): State<App>,
    grant: EnrollmentGrant,
    ApiJson(req): ApiJson<FinalizeRequest>,
) -> Result<Json<crate::nats::NatsCreds>, ApiError> {
    let device_key = validate::device_public_key(&req.device_public_key)?;
    let nats_key = validate::nats_user_key(&req.nats_public_key)?;
    let nats = app.nats()?;
    let lifetime = app.state.config.limits.member_jwt_lifetime;
    let issued = nats.sign(
        &grant.member_id,
        &nats_key,
        MemberScope::Member,
        lifetime,
        app.clock_now(),
    )?;

    let now = app.now();
    let mut tx = app.db().begin().await?;
    spend_enrollment_token(&mut tx, &grant, now).await?;
    let enrolled: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE member_id = ?")
        .bind(&grant.member_id)
        .fetch_one(&mut *tx)
        .await?;
    if enrolled > 0 {
        return Err(ApiError::Conflict(
            "this member already has a vault; a new device comes through recovery",
        ));
    }
    register_device(&mut tx, &grant, &device_key, now).await?;
    record_key(
        &mut *tx,
        &grant.member_id,
        MemberScope::Member,
        &issued,
        now,
    )
    .await?;
    record_phase(&mut tx, &grant.session_id, EnrollmentPhase::Completed, now).await?;
    tx.commit().await?;
    Ok(Json(nats.creds(&grant.member_id, &issued)))
}

/// Spends the enrollment token and completes the session (only one finalize can).
async fn spend_enrollment_token(
    tx: &mut sqlx::SqliteConnection,
    grant: &EnrollmentGrant,
    now: i64,
) -> Result<(), ApiError> {
    let spent = sqlx::query(
        "UPDATE enrollment_sessions SET token_used_at = ?, completed_at = ?, phase = ? \
         WHERE session_id = ? AND token_used_at IS NULL AND token_expires_at > ?",
    )
    .bind(now)
    .bind(now)
    .bind(EnrollmentPhase::Completed.as_str())
    .bind(&grant.session_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if spent.rows_affected() == 1 {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "enrollment token already used or expired",
        ))
    }
}

async fn register_device(
    tx: &mut sqlx::SqliteConnection,
    grant: &EnrollmentGrant,
    device_key: &str,
    now: i64,
) -> Result<(), ApiError> {
    let inserted = sqlx::query(
        "INSERT INTO devices (device_public_key, member_id, enrollment_session_id, created_at) \
         VALUES (?, ?, ?, ?)",
    )
    .bind(device_key)
    .bind(&grant.member_id)
    .bind(&grant.session_id)
    .bind(now)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if crate::db::is_unique_violation(&e) => {
            Err(ApiError::Conflict("this device key is already registered"))
        }
        other => other.map(|_| ()).map_err(ApiError::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_have_one_order_and_round_trip() {
        for (i, p) in EnrollmentPhase::ALL.iter().enumerate() {
            assert_eq!(EnrollmentPhase::parse(p.as_str()), Some(*p));
            assert_eq!(p.earlier().len(), i);
        }
        assert!(
            EnrollmentPhase::PasswordSet.earlier().len() <= 5,
            "fits the IN list"
        );
        let reportable: Vec<_> = EnrollmentPhase::ALL
            .into_iter()
            .filter(|p| p.reportable())
            .collect();
        assert_eq!(
            reportable,
            [
                EnrollmentPhase::NatsConnected,
                EnrollmentPhase::AttestationVerified,
                EnrollmentPhase::PinSet,
                EnrollmentPhase::PasswordSet
            ]
        );
    }

    #[test]
    fn the_terminal_qr_renders() {
        let q = render_terminal_qr("{\"type\":\"vettid_enrollment\"}").unwrap();
        assert!(q.lines().count() > 10);
    }
}
