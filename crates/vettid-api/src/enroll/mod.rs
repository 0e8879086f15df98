//! Enrollment: a signed-in member links their app to their vault.
//!
//! ```text
//!  web (member session)          app (public)                    app (enrollment token)
//!  POST /v1/enroll/sessions ──► code XXXX-XXXX / QR ──► POST /v1/enroll/authenticate
//!        │ (5 min, single use)      + the member's email     │ enrollment token (10 min),
//!        │                          (or the QR's member id)  │ device + session keys named
//!        │                                                   ▼
//!        │                                       app shows comparison code 123 456
//!  POST /v1/enroll/sessions/{id}/confirm ◄── the member types it ──┘
//!  POST /v1/enroll/sessions/{id}/cancel   (any phase before completed)
//!  GET /v1/enroll/sessions/{id}  ◄── progress ──  GET  /v1/enroll/confirmation (waits)
//!                                                 POST /v1/enroll/nats      (enrollment JWT)
//!                                                 POST /v1/enroll/status    (phases, forward)
//!                                                 POST /v1/enroll/finalize  (the enclave's
//!                                                       attestation of the keys; member JWT)
//! ```
//!
//! The code and the QR's session token are two ways to present the same one-time secret; the
//! first use spends both. A code counts only with the email of the member it was made for,
//! and after five wrong codes for a member their live code stops working (the QR does not).
//! The app that authenticated gets nothing that reaches the vault until the member has typed
//! the comparison code it shows (derived from the session, a salt the API chose and the
//! device's keys, [`vettid_proto::auth::comparison_code`]) into the web page: whoever saw a
//! code and used it first still cannot enroll unless the member confirms their device.
//! Finalize registers only the confirmed device key, and only with the enclave's attestation
//! that it registered both confirmed keys in the vault it names ([`attested`]). The
//! enrollment token is spent by finalize. Secrets are stored as keyed digests only. Phases
//! only move forward ([`EnrollmentPhase`]); the API records what the app reports, for the web
//! page to show.

pub(crate) mod attested;
pub(crate) mod confirm;

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
pub(crate) const ENROLLMENT_JWT: Duration = Duration::from_secs(10 * 60);

/// Where an enrollment stands. The order of the variants is the only order allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrollmentPhase {
    /// The web page showed a code; no app has used it yet.
    Created,
    /// An app presented the code or QR and holds an enrollment token.
    Authenticated,
    /// The member typed the app's comparison code into the web page.
    Confirmed,
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
    pub const ALL: [EnrollmentPhase; 8] = [
        EnrollmentPhase::Created,
        EnrollmentPhase::Authenticated,
        EnrollmentPhase::Confirmed,
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
            EnrollmentPhase::Confirmed => "confirmed",
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

    /// The phases an app's report of this one may move on from: from `confirmed` up to it
    /// (so no report can skip the member's confirmation).
    fn reported_from(self) -> &'static [EnrollmentPhase] {
        let from = EnrollmentPhase::Confirmed as usize;
        EnrollmentPhase::ALL
            .get(from..(self as usize).max(from))
            .unwrap_or_default()
    }

    /// Whether the app may report this phase through `POST /v1/enroll/status` (the first
    /// three are set by the API and the member, `completed` only by finalize).
    fn reportable(self) -> bool {
        self > EnrollmentPhase::Confirmed && self < EnrollmentPhase::Completed
    }
}

/// An app holding a valid, unspent enrollment token (from `Authorization: Bearer`) of an
/// enrollment the member has not cancelled.
pub(crate) struct EnrollmentGrant {
    pub(crate) session_id: String,
    pub(crate) member_id: String,
    /// Whether the member confirmed this app's device on the web page.
    confirmed: bool,
    /// The device key (hex Ed25519) the app named when it authenticated.
    device_key: String,
    /// The session key (hex X25519) the app named when it authenticated.
    session_key: String,
    /// When the enrollment token expires.
    expires_at: i64,
    /// The recovery request this enrollment finishes, if it is a recovery's.
    pub(crate) recovery: Option<String>,
}

/// An enrollment session row as a grant reads it.
#[derive(sqlx::FromRow)]
struct GrantRow {
    session_id: String,
    member_id: String,
    token_expires_at: Option<i64>,
    token_used_at: Option<i64>,
    confirmed_at: Option<i64>,
    cancelled_at: Option<i64>,
    device_public_key: Option<String>,
    session_public_key: Option<String>,
    recovery_request_id: Option<String>,
    joined_by: Option<String>,
}

impl FromRequestParts<App> for EnrollmentGrant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        let row: Option<GrantRow> = sqlx::query_as(
            "SELECT session_id, member_id, token_expires_at, token_used_at, confirmed_at, \
             cancelled_at, device_public_key, session_public_key, recovery_request_id, \
             joined_by FROM enrollment_sessions WHERE token_hash = ?",
        )
        .bind(app.digest(&token))
        .fetch_optional(app.db())
        .await?;
        let Some(row) = row else {
            return Err(ApiError::Unauthorized("invalid enrollment token"));
        };
        if row.cancelled_at.is_some() {
            return Err(ApiError::Gone(
                "this enrollment was cancelled on the web page",
            ));
        }
        // A join's token is spent by its own finalize, never by an enrollment's routes.
        if row.joined_by.is_some() {
            return Err(ApiError::Unauthorized(
                "this token finishes a device join: use /v1/devices/join/finalize",
            ));
        }
        if row.token_used_at.is_some() {
            return Err(ApiError::Unauthorized("enrollment token already used"));
        }
        let expires_at = row.token_expires_at.unwrap_or_default();
        if expires_at <= app.now() {
            return Err(ApiError::Unauthorized("enrollment token expired"));
        }
        // (A token from before device confirmation existed has no keys: it is of no use.)
        let (Some(device_key), Some(session_key)) = (row.device_public_key, row.session_public_key)
        else {
            return Err(ApiError::Unauthorized(
                "this enrollment token predates device confirmation; start again",
            ));
        };
        // Every use of an enrollment token (NATS credentials, phases, finalize) stops here
        // for a suspended member.
        crate::auth::ensure_not_suspended(app, &row.member_id).await?;
        // A recovery's enrollment lives only as long as its request.
        if let Some(request) = &row.recovery_request_id {
            crate::recovery::ensure_live(app, request).await?;
        }
        Ok(EnrollmentGrant {
            session_id: row.session_id,
            member_id: row.member_id,
            confirmed: row.confirmed_at.is_some(),
            device_key,
            session_key,
            expires_at,
            recovery: row.recovery_request_id,
        })
    }
}

/// Bytes the API stored as hex itself (keys and salts of enrollment rows); a row that does not
/// decode is the server's fault.
pub(crate) fn stored_hex<const N: usize>(hex_text: &str) -> Result<[u8; N], ApiError> {
    validate::hex_bytes::<N>("stored value", hex_text)
        .map_err(|_| ApiError::internal("enrollment row", "a stored value is not hex of its size"))
}

impl EnrollmentGrant {
    /// `Conflict` until the member has confirmed this device.
    pub(crate) fn ensure_confirmed(&self) -> Result<(), ApiError> {
        if self.confirmed {
            Ok(())
        } else {
            Err(ApiError::Conflict(
                "the member has not confirmed this device on the web page yet",
            ))
        }
    }
}

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/v1/enroll/sessions", post(create_session))
        .route("/v1/enroll/sessions/{id}", get(get_session))
        .route("/v1/enroll/sessions/{id}/confirm", post(confirm::confirm))
        .route("/v1/enroll/sessions/{id}/cancel", post(confirm::cancel))
        .route("/v1/enroll/authenticate", post(authenticate))
        .route("/v1/enroll/confirmation", get(confirm::confirmation))
        .route("/v1/enroll/nats", post(enrollment_nats))
        .route("/v1/enroll/status", post(report_phase))
        .route("/v1/enroll/finalize", post(finalize))
}

/// Whether `member` ever finalized an enrollment: the enclave then holds their vault, revoked
/// devices or not, and a new device can only come through recovery.
pub(crate) async fn has_vault(app: &App, member: &str) -> Result<bool, ApiError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM devices WHERE member_id = ? AND vault_deleted_at IS NULL",
    )
    .bind(member)
    .fetch_one(app.db())
    .await?;
    Ok(n > 0)
}

#[derive(Serialize)]
pub(crate) struct QrPayload<'a> {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) version: u32,
    pub(crate) api_url: &'a str,
    pub(crate) session_token: &'a Secret,
    pub(crate) member_id: &'a str,
}

impl QrPayload<'_> {
    /// The payload as JSON, its text, and that text as a terminal QR code.
    pub(crate) fn rendered(&self) -> Result<(serde_json::Value, Secret, Secret), ApiError> {
        let text = serde_json::to_string(self).map_err(|e| ApiError::internal("qr", e))?;
        Ok((
            serde_json::to_value(self).map_err(|e| ApiError::internal("qr", e))?,
            Secret::from_client(render_terminal_qr(&text)?),
            Secret::from_client(text),
        ))
    }
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
    let (qr, qr_terminal, qr_text) = payload.rendered()?;
    let created = SessionCreated {
        session_id,
        code,
        expires_at: now + CODE_SECS,
        qr,
        qr_terminal,
        qr_text,
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

pub(crate) async fn record_phase(
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
    /// The name the app gave, once one authenticated.
    device_name: Option<String>,
    /// An app authenticated and waits for the member to type its comparison code.
    awaiting_confirmation: bool,
    /// Wrong comparison codes the member may still type before the enrollment is cancelled.
    confirm_attempts_left: i64,
    /// Why the enrollment was cancelled, if it was.
    cancelled: Option<confirm::CancelReason>,
    /// Five wrong codes were presented for it: only its QR code still works.
    code_locked: bool,
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    phase: String,
    expires_at: i64,
    token_expires_at: Option<i64>,
    device_name: Option<String>,
    confirm_failures: i64,
    code_failures: i64,
    cancel_reason: Option<String>,
}

/// `GET /v1/enroll/sessions/{id}` (member) → the session's progress; 404 if it is not this
/// member's. `expires_at` is the code's deadline until an app authenticates, then the
/// enrollment token's.
async fn get_session(
    State(app): State<App>,
    member: Member,
    ApiPath(id): ApiPath,
) -> Result<Json<SessionView>, ApiError> {
    let row: Option<SessionRow> = sqlx::query_as(
        "SELECT phase, expires_at, token_expires_at, device_name, confirm_failures, \
         code_failures, cancel_reason FROM enrollment_sessions \
         WHERE session_id = ? AND member_id = ?",
    )
    .bind(&id)
    .bind(&member.member_id)
    .fetch_optional(app.db())
    .await?;
    let row = row.ok_or(ApiError::NotFound("no such enrollment session"))?;
    let cancelled = row
        .cancel_reason
        .as_deref()
        .map(|r| {
            confirm::CancelReason::parse(r)
                .ok_or_else(|| ApiError::internal("enrollment row", "bad cancel reason"))
        })
        .transpose()?;
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
    let phase = stored(&row.phase)?;
    let live = row.token_expires_at.is_some_and(|t| t > app.now());
    Ok(Json(SessionView {
        session_id: id,
        phase,
        phases,
        expires_at: row.token_expires_at.unwrap_or(row.expires_at),
        device_name: row.device_name,
        awaiting_confirmation: phase == EnrollmentPhase::Authenticated
            && cancelled.is_none()
            && live,
        confirm_attempts_left: (confirm::CONFIRM_ATTEMPTS - row.confirm_failures).max(0),
        cancelled,
        code_locked: phase == EnrollmentPhase::Created && row.code_failures >= CODE_ATTEMPTS,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthenticateRequest {
    code: Option<Secret>,
    /// With `code`: the email of the member the code was made for.
    email: Option<String>,
    session_token: Option<Secret>,
    /// With `session_token`: the member id the QR code carries.
    member_id: Option<String>,
    device_name: Option<String>,
    /// The app's Ed25519 device key (hex), the one finalize will register.
    device_public_key: String,
    /// The app's X25519 session key (hex), the one the vault will register.
    session_public_key: String,
}

#[derive(Serialize)]
struct Authenticated {
    enrollment_token: Secret,
    expires_in: i64,
    member_id: String,
    enrollment_session_id: String,
    /// Hex; with the session id and the device's keys it gives the comparison code.
    comparison_salt: String,
}

/// How the app names its session.
enum Presented {
    /// A typed code and the member's email.
    Code(Secret, String),
    /// The QR's token and the member id beside it.
    QrToken(Secret, String),
}

impl AuthenticateRequest {
    fn presented(&self) -> Result<Presented, ApiError> {
        match (&self.code, &self.session_token) {
            (Some(code), None) => {
                let code = normalize_code(code.expose())
                    .ok_or_else(|| ApiError::bad_request("code must look like XXXX-XXXX"))?;
                let email = self.email.as_deref().ok_or_else(|| {
                    ApiError::bad_request("a code needs the email of the member it was made for")
                })?;
                Ok(Presented::Code(code, validate::email(email)?))
            }
            (None, Some(token)) => {
                validate::token_shape("session_token", token.expose())?;
                let member = self.member_id.as_deref().ok_or_else(|| {
                    ApiError::bad_request("a session_token needs the QR code's member_id")
                })?;
                Ok(Presented::QrToken(
                    token.clone(),
                    validate::member_id(member)?,
                ))
            }
            _ => Err(ApiError::bad_request(
                "give exactly one of code and session_token",
            )),
        }
    }
}

/// The one answer to a code or QR token that does not open a live enrollment: unknown,
/// someone else's, expired, used or voided all look alike.
const NO_SUCH_CODE: ApiError = ApiError::Unauthorized(
    "no live enrollment matches this code (check it and the email; codes work once, within 5 minutes)",
);

/// Wrong codes presented for one member's live session before it is voided.
pub(crate) const CODE_ATTEMPTS: i64 = 5;

/// `POST /v1/enroll/authenticate {code + email | session_token + member_id, device_name?,
/// device_public_key, session_public_key}` → an enrollment token, and the session id from
/// which the app derives the comparison code the member must type into the web page. 401 for
/// anything that does not open a live enrollment (one answer for all); a wrong code counts
/// against the member's live session, whose code stops working at the fifth (the QR still
/// works: its token cannot be guessed). The code or QR token is
/// spent atomically, so two apps racing with it cannot both win. Rate-limited per IP.
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
    let device_key = validate::device_public_key(&req.device_public_key)?;
    let session_key = hex::encode(validate::hex_bytes::<32>(
        "session_public_key",
        &req.session_public_key,
    )?);
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
    let salt = hex::encode(rand::random::<[u8; 16]>());
    // A code counts only while fewer than CODE_ATTEMPTS wrong ones were presented (a wrong
    // one counted in between is seen here); a QR token is 256 bits and is not limited so.
    let code_limit = match presented {
        Presented::Code(..) => CODE_ATTEMPTS,
        Presented::QrToken(..) => i64::MAX,
    };
    let mut tx = app.db().begin().await?;
    let spent = sqlx::query(
        "UPDATE enrollment_sessions SET authenticated_at = ?, phase = ?, device_name = ?, \
         token_hash = ?, token_expires_at = ?, device_public_key = ?, session_public_key = ?, \
         comparison_salt = ? WHERE session_id = ? AND authenticated_at IS NULL \
         AND cancelled_at IS NULL AND expires_at > ? AND code_failures < ?",
    )
    .bind(now)
    .bind(EnrollmentPhase::Authenticated.as_str())
    .bind(device_name)
    .bind(app.digest(&token))
    .bind(now + TOKEN_SECS)
    .bind(&device_key)
    .bind(&session_key)
    .bind(&salt)
    .bind(&session_id)
    .bind(now)
    .bind(code_limit)
    .execute(&mut *tx)
    .await?;
    if spent.rows_affected() != 1 {
        return Err(NO_SUCH_CODE);
    }
    record_phase(&mut tx, &session_id, EnrollmentPhase::Authenticated, now).await?;
    tx.commit().await?;
    Ok(Json(Authenticated {
        enrollment_token: token,
        expires_in: TOKEN_SECS,
        member_id,
        enrollment_session_id: session_id,
        comparison_salt: salt,
    }))
}

/// The live session a code (for the member with that email) or QR token (for that member)
/// opens, or [`NO_SUCH_CODE`]. A wrong code for a member with a live session counts against
/// it; from the [`CODE_ATTEMPTS`]th its code no longer works.
async fn find_session(app: &App, presented: &Presented) -> Result<(String, String), ApiError> {
    let now = app.now();
    match presented {
        Presented::Code(code, email) => {
            let Some(r) = crate::registration::find_by_email(app.db(), email).await? else {
                return Err(NO_SUCH_CODE);
            };
            let live: Option<(String, String)> = sqlx::query_as(
                "SELECT session_id, code_hash FROM enrollment_sessions WHERE member_id = ? \
                 AND recovery_request_id IS NULL \
                 AND authenticated_at IS NULL AND cancelled_at IS NULL AND expires_at > ? \
                 AND code_failures < ? ORDER BY created_at DESC LIMIT 1",
            )
            .bind(&r.member_id)
            .bind(now)
            .bind(CODE_ATTEMPTS)
            .fetch_optional(app.db())
            .await?;
            let Some((session_id, code_hash)) = live else {
                return Err(NO_SUCH_CODE);
            };
            if vettid_crypto::ct_eq(app.digest(code).as_bytes(), code_hash.as_bytes()) {
                return Ok((session_id, r.member_id));
            }
            count_wrong_code(app, &session_id).await?;
            Err(NO_SUCH_CODE)
        }
        Presented::QrToken(token, member) => {
            let row: Option<(String, String)> = sqlx::query_as(
                "SELECT session_id, member_id FROM enrollment_sessions WHERE qr_token_hash = ? \
                 AND authenticated_at IS NULL AND cancelled_at IS NULL AND expires_at > ?",
            )
            .bind(app.digest(token))
            .bind(now)
            .fetch_optional(app.db())
            .await?;
            match row {
                Some((session_id, owner)) if owner == *member => Ok((session_id, owner)),
                _ => Err(NO_SUCH_CODE),
            }
        }
    }
}

/// Counts a wrong code against a live session: from the [`CODE_ATTEMPTS`]th its code no
/// longer works (its QR token still does).
async fn count_wrong_code(app: &App, session_id: &str) -> Result<(), ApiError> {
    sqlx::query(
        "UPDATE enrollment_sessions SET code_failures = code_failures + 1 \
         WHERE session_id = ? AND authenticated_at IS NULL",
    )
    .bind(session_id)
    .execute(app.db())
    .await?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NatsKeyRequest {
    nats_public_key: String,
}

/// `POST /v1/enroll/nats {nats_public_key}` (enrollment token) → an enrollment-scoped NATS
/// JWT (10 min) for that key, recorded for revocation; 409 until the member has confirmed
/// the device. 503 without NATS.
async fn enrollment_nats(
    State(app): State<App>,
    grant: EnrollmentGrant,
    ApiJson(req): ApiJson<NatsKeyRequest>,
) -> Result<Json<crate::nats::NatsCreds>, ApiError> {
    grant.ensure_confirmed()?;
    let key = validate::nats_user_key(&req.nats_public_key)?;
    let nats = app.nats()?;
    ensure_few_enrollment_keys(&app, &grant, &key).await?;
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
        &grant.device_key,
    )
    .await?;
    ensure_grant_live(&app, &grant).await?;
    Ok(Json(nats.creds(&grant.member_id, &issued)))
}

/// Distinct NATS keys one enrollment may get credentials for (an app uses one; a retry with
/// the same key is not counted): each may become an entry of the account's revocations.
const ENROLLMENT_KEYS: i64 = 2;

/// 429 if this enrollment's device already got credentials for [`ENROLLMENT_KEYS`] other keys.
async fn ensure_few_enrollment_keys(
    app: &App,
    grant: &EnrollmentGrant,
    key: &str,
) -> Result<(), ApiError> {
    // Within one token's life: an enrollment lasts no longer.
    let others: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM nats_user_keys WHERE member_id = ? AND device_public_key = ? \
         AND scope = 'enrollment' AND user_public_key != ? AND first_issued_at > ?",
    )
    .bind(&grant.member_id)
    .bind(&grant.device_key)
    .bind(key)
    .bind(app.now() - TOKEN_SECS)
    .fetch_one(app.db())
    .await?;
    if others >= ENROLLMENT_KEYS {
        return Err(ApiError::RateLimited {
            retry_after_secs: TOKEN_SECS.unsigned_abs(),
        });
    }
    Ok(())
}

/// Re-checks, after recording a key, that a revocation or cancellation has not ended the
/// enrollment since the grant was checked (one that ran in between did not see the key).
async fn ensure_grant_live(app: &App, grant: &EnrollmentGrant) -> Result<(), ApiError> {
    let live: Option<String> = sqlx::query_scalar(
        "SELECT session_id FROM enrollment_sessions WHERE session_id = ? \
         AND token_used_at IS NULL AND cancelled_at IS NULL AND token_expires_at > ?",
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
/// current one (skipping ahead is allowed; the same or an earlier phase is 409, and so is any
/// report before the member confirmed the device). `created`, `authenticated`, `confirmed`
/// and `completed` cannot be reported (400).
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
    grant.ensure_confirmed()?;
    let from = phase.reported_from();
    let name = |i: usize| from.get(i).map(|p| p.as_str());
    let now = app.now();
    let mut tx = app.db().begin().await?;
    // The IN list has room for every phase from `confirmed` to before `password_set`; unused
    // slots are NULL, which matches nothing.
    let moved = sqlx::query(
        "UPDATE enrollment_sessions SET phase = ? WHERE session_id = ? AND token_used_at IS NULL \
         AND cancelled_at IS NULL AND confirmed_at IS NOT NULL AND phase IN (?, ?, ?, ?)",
    )
    .bind(phase.as_str())
    .bind(&grant.session_id)
    .bind(name(0))
    .bind(name(1))
    .bind(name(2))
    .bind(name(3))
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
pub(crate) struct FinalizeRequest {
    /// The device key the member confirmed (hex Ed25519).
    pub(crate) device_public_key: String,
    pub(crate) nats_public_key: String,
    /// The vault's identity key (hex Ed25519).
    pub(crate) identity_public_key: String,
    /// The enclave's attestation document for the enrollment (base64), binding the member,
    /// both confirmed keys and the identity key (see [`attested`]).
    pub(crate) device_attestation: String,
}

/// `POST /v1/enroll/finalize {device_public_key, nats_public_key, identity_public_key,
/// device_attestation}` (enrollment token of a confirmed device) → member NATS credentials.
/// 409 before the member confirmed; 400 unless the device key is the confirmed one and the
/// document is a trusted enclave's word that it registered both confirmed keys in the vault
/// of that identity key. In one transaction: spends the enrollment token (a second finalize
/// is 401), records the vault's identity key (409 if the member already has a vault),
/// registers the device (409 if the key is already registered), records the NATS key and
/// marks the session completed. The JWT is signed first but handed out only if all of that
/// commits.
async fn finalize(
    State(app): State<App>,
    grant: EnrollmentGrant,
    ApiJson(req): ApiJson<FinalizeRequest>,
) -> Result<Json<crate::nats::NatsCreds>, ApiError> {
    if grant.recovery.is_some() {
        return Err(ApiError::Conflict(
            "this enrollment finishes a recovery: use /v1/recovery/finalize",
        ));
    }
    let Finalizing {
        device_key,
        identity,
        issued,
    } = Finalizing::check(
        &app,
        &grant,
        &req,
        vettid_proto::auth::enrolled_device_binding,
    )
    .await?;
    let nats = app.nats()?;
    let identity = hex::encode(identity);

    let now = app.now();
    let mut tx = app.db().begin().await?;
    spend_enrollment_token(&mut tx, &grant, now).await?;
    let vault = sqlx::query(
        "INSERT INTO vaults (member_id, identity_public_key, created_at) VALUES (?, ?, ?) \
         ON CONFLICT (member_id) DO NOTHING",
    )
    .bind(&grant.member_id)
    .bind(&identity)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let enrolled: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM devices WHERE member_id = ? AND vault_deleted_at IS NULL",
    )
    .bind(&grant.member_id)
    .fetch_one(&mut *tx)
    .await?;
    if vault.rows_affected() != 1 || enrolled > 0 {
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
        &device_key,
    )
    .await?;
    record_phase(&mut tx, &grant.session_id, EnrollmentPhase::Completed, now).await?;
    tx.commit().await?;
    Ok(Json(nats.creds(&grant.member_id, &issued)))
}

/// What an enclave's document binds for a device: (member, session key, device key, identity
/// key) → `user_data` ([`vettid_proto::auth::enrolled_device_binding`] or
/// [`vettid_proto::auth::recovered_device_binding`]).
pub(crate) type Binding = fn(&str, &[u8; 32], &[u8; 32], &[u8; 32]) -> [u8; 32];

/// What a finalize (of an enrollment or a recovery) has checked before its transaction: the
/// confirmed device's key, the vault's identity key the enclave's document names, and member
/// credentials for the app's NATS key, signed but not yet handed out.
pub(crate) struct Finalizing {
    pub(crate) device_key: String,
    pub(crate) identity: [u8; 32],
    pub(crate) issued: vettid_nats::IssuedJwt,
}

impl Finalizing {
    /// 409 before the member confirmed; 400 unless the device key is the confirmed one and
    /// the document is a trusted enclave's word binding (`binding` of) the member, the
    /// confirmed keys and the identity key.
    pub(crate) async fn check(
        app: &App,
        grant: &EnrollmentGrant,
        req: &FinalizeRequest,
        binding: Binding,
    ) -> Result<Finalizing, ApiError> {
        grant.ensure_confirmed()?;
        let device_key = validate::device_public_key(&req.device_public_key)?;
        if !vettid_crypto::ct_eq(device_key.as_bytes(), grant.device_key.as_bytes()) {
            return Err(ApiError::bad_request(
                "device_public_key is not the device the member confirmed",
            ));
        }
        let nats_key = validate::nats_user_key(&req.nats_public_key)?;
        let identity = validate::hex_bytes::<32>("identity_public_key", &req.identity_public_key)?;
        let nats = app.nats()?;
        let expected = binding(
            &grant.member_id,
            &stored_hex(&grant.session_key)?,
            &stored_hex(&grant.device_key)?,
            &identity,
        );
        attested::check(app, &expected, &req.device_attestation).await?;
        let issued = nats.sign(
            &grant.member_id,
            &nats_key,
            MemberScope::Member,
            app.state.config.limits.member_jwt_lifetime,
            app.clock_now(),
        )?;
        Ok(Finalizing {
            device_key,
            identity,
            issued,
        })
    }
}

/// Spends the enrollment token and completes the session (only one finalize can).
pub(crate) async fn spend_enrollment_token(
    tx: &mut sqlx::SqliteConnection,
    grant: &EnrollmentGrant,
    now: i64,
) -> Result<(), ApiError> {
    let spent = sqlx::query(
        "UPDATE enrollment_sessions SET token_used_at = ?, completed_at = ?, phase = ? \
         WHERE session_id = ? AND token_used_at IS NULL AND cancelled_at IS NULL \
         AND confirmed_at IS NOT NULL AND token_expires_at > ?",
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

pub(crate) async fn register_device(
    tx: &mut sqlx::SqliteConnection,
    grant: &EnrollmentGrant,
    device_key: &str,
    now: i64,
) -> Result<(), ApiError> {
    // A device of this member's deleted vault may enroll again with the same key.
    sqlx::query(
        "DELETE FROM devices WHERE device_public_key = ? AND member_id = ? \
         AND vault_deleted_at IS NOT NULL",
    )
    .bind(device_key)
    .bind(&grant.member_id)
    .execute(&mut *tx)
    .await?;
    let inserted = sqlx::query(
        "INSERT INTO devices (device_public_key, member_id, enrollment_session_id, \
         session_public_key, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(device_key)
    .bind(&grant.member_id)
    .bind(&grant.session_id)
    .bind(&grant.session_key)
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
        for p in EnrollmentPhase::ALL {
            assert_eq!(EnrollmentPhase::parse(p.as_str()), Some(p));
            assert!(p.reported_from().iter().all(|q| *q < p));
            assert!(!p.reported_from().contains(&EnrollmentPhase::Authenticated));
        }
        assert_eq!(
            EnrollmentPhase::PasswordSet.reported_from().len(),
            4,
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
