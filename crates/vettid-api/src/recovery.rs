//! Staged recovery: a member who lost their device moves their vault to a new one.
//!
//! ```text
//!  web (member)  POST /v1/recovery ──► Waiting ──(delay, default 24 h)──► Ready ──► Completed
//!                  mail to the member       │                               │
//!                  devices see it ──────────┤ POST /v1/recovery/qr: a one-time QR (10 min;
//!                  (POST /v1/recovery/device)  each new one voids the last)
//!  cancelled:    on the web (POST /v1/recovery/cancel), from a device (…/device {cancel}),
//!                or when the enclave refuses because an enrolled device unlocked the vault
//!                meanwhile (the new device reports it: POST /v1/recovery/used)
//!  expired:      7 days after the request
//!
//!  new device: QR ─► POST /v1/enroll/authenticate ─► comparison code typed into the web page
//!              ─► /v1/enroll/nats ─► the enclave: attestation, PIN or recovery phrase, re-key
//!              ─► POST /v1/recovery/finalize (the enclave's document) ─► member credentials;
//!                 every other device and its NATS credentials revoked
//! ```
//!
//! The API's delay and notices protect against someone who learnt the member's email sign-in
//! and their PIN or phrase; the enclave independently refuses to re-key while an enrolled
//! device unlocked the vault within its own measured delay, and counts every PIN and phrase.
//! An operator who skips the API's delay still needs the PIN or the phrase.

use crate::ApiError;
use crate::app::App;
use crate::auth::Member;
use crate::delayed::{self, Kind, Row, Stage, View};
use crate::enroll::confirm::{CancelReason, Sessions};
use crate::enroll::{EnrollmentGrant, EnrollmentPhase, FinalizeRequest, Finalizing, QrPayload};
use crate::extract::{ApiJson, ClientIp};
use crate::ratelimit::ip_key;
use crate::secret::{Secret, new_uuid};
use crate::validate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use vettid_nats::MemberScope;

/// A request expires this long after it was made.
pub(crate) const EXPIRY_SECS: i64 = 7 * 24 * 3600;
/// A recovery QR can be used this long.
pub(crate) const QR_SECS: i64 = 10 * 60;

/// Why a request ended without completing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The member, on the web.
    Member,
    /// An enrolled device, with its device key.
    Device,
    /// The enclave refused: an enrolled device unlocked the vault during the delay.
    DeviceUsed,
    /// Noticed past its expiry.
    Expired,
    /// The member's mail could not be sent, so the request did not start.
    NotNotified,
    /// The member deleted the vault.
    VaultDeleted,
}

impl Ended {
    fn as_str(self) -> &'static str {
        match self {
            Ended::Member => "cancelled_by_member",
            Ended::Device => "cancelled_on_device",
            Ended::DeviceUsed => "device_used",
            Ended::Expired => delayed::EXPIRED,
            Ended::NotNotified => "member_not_notified",
            Ended::VaultDeleted => "vault_deleted",
        }
    }
}

/// The request as a live one, if it is (waiting or ready).
fn as_live(row: Row, now: i64) -> Option<Live> {
    row.is_live(now).then_some(Live(row))
}

/// A request that is waiting or ready: only it can be cancelled or give a QR.
struct Live(Row);

/// A live request whose delay has passed.
struct Ready(Row);

impl Live {
    fn ready(self, now: i64) -> Result<Ready, ApiError> {
        if self.0.stage(now) == Stage::Ready {
            Ok(Ready(self.0))
        } else {
            Err(ApiError::Conflict(
                "the recovery delay has not passed yet (see ready_at)",
            ))
        }
    }

    /// Ends the request (and every enrollment of its QRs); the row as it is now. Only one
    /// ending wins: a request ended meanwhile is 409.
    async fn end(self, app: &App, why: Ended) -> Result<Row, ApiError> {
        let now = app.now();
        let mut tx = app.db().begin().await?;
        if !delayed::end(
            &mut tx,
            Kind::Recovery,
            &self.0.request_id,
            now,
            why.as_str(),
        )
        .await?
        {
            return Err(ApiError::Conflict("this recovery has already ended"));
        }
        void_sessions(
            &mut tx,
            &self.0.request_id,
            now,
            CancelReason::RecoveryEnded,
        )
        .await?;
        tx.commit().await?;
        // Enrollment credentials a QR of it gave would still reach the enclave: revoked.
        crate::enroll::confirm::revoke_enrollment_keys(app, &self.0.member_id).await?;
        Ok(self.0.ended(now, why.as_str()))
    }
}

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/v1/recovery", post(request).get(status))
        .route("/v1/recovery/cancel", post(cancel))
        .route("/v1/recovery/qr", post(qr))
        .route("/v1/recovery/device", post(device))
        .route("/v1/recovery/used", post(used))
        .route("/v1/recovery/finalize", post(finalize))
}

/// The member's live request if there is one (at most one: the index), else the newest;
/// a live one past its expiry is recorded as expired (so that the index admits a new one).
async fn latest(app: &App, member: &str) -> Result<Option<Row>, ApiError> {
    match delayed::latest(app, Kind::Recovery, member).await? {
        Some(r) if r.expired_unrecorded(app.now()) => {
            Live(r).end(app, Ended::Expired).await.map(Some)
        }
        other => Ok(other),
    }
}

/// Ends `member`'s recovery under way, if any: their vault was deleted.
pub(crate) async fn end_for_deletion(app: &App, member: &str) -> Result<(), ApiError> {
    if let Some(live) = latest(app, member)
        .await?
        .and_then(|r| as_live(r, app.now()))
    {
        match live.end(app, Ended::VaultDeleted).await {
            Ok(_) | Err(ApiError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The member's live request, or 409.
async fn live(app: &App, member: &str) -> Result<Live, ApiError> {
    latest(app, member)
        .await?
        .and_then(|r| as_live(r, app.now()))
        .ok_or(ApiError::Conflict("no recovery is under way"))
}

/// `Gone` unless recovery request `request_id` is live (an enrollment of its QR is usable only
/// while it is).
pub(crate) async fn ensure_live(app: &App, request_id: &str) -> Result<(), ApiError> {
    let row = delayed::by_id(app, Kind::Recovery, request_id).await?;
    row.and_then(|r| as_live(r, app.now()))
        .map(|_| ())
        .ok_or(ApiError::Gone(
            "this recovery was cancelled, completed or has expired",
        ))
}

/// Cancels every enrollment of `request`'s QRs that has not completed.
async fn void_sessions(
    tx: &mut sqlx::SqliteConnection,
    request: &str,
    now: i64,
    reason: CancelReason,
) -> Result<(), ApiError> {
    crate::enroll::confirm::end_sessions(tx, Sessions::OfRecovery(request), reason, now).await
}

fn when(unix: i64) -> String {
    crate::mail::rfc5322_date(unix)
}

/// `POST /v1/recovery` (member) → 201 with the new request. 409 if the member has no vault
/// (enroll instead) or a recovery is already under way. The member is mailed.
async fn request(
    State(app): State<App>,
    member: Member,
) -> Result<(StatusCode, Json<View>), ApiError> {
    if !crate::enroll::has_vault(&app, &member.member_id).await? {
        return Err(ApiError::Conflict(
            "this member has no vault to recover; enroll a device instead",
        ));
    }
    latest(&app, &member.member_id).await?;
    let now = app.now();
    let delay = i64::try_from(app.state.config.limits.recovery_delay.as_secs()).unwrap_or(i64::MAX);
    let row = Row::new(
        &member.member_id,
        now,
        delay,
        now.saturating_add(EXPIRY_SECS),
    );
    delayed::insert(
        &app,
        Kind::Recovery,
        &row,
        "a recovery is already under way; cancel it first",
    )
    .await?;
    let ready = when(row.ready_at);
    let told = app.mail_member(&member.member_id, |name| {
        (
            "A recovery of your VettID vault was requested".into(),
            format!(
                "Hello {name},\n\n\
                 Someone signed in as you asked to move your vault to a new device. From\n\
                 {ready} it can be completed with your PIN or recovery phrase.\n\n\
                 If this was not you, sign in and cancel it. Unlocking your vault from one\n\
                 of your devices before then cancels it too.\n"
            ),
        )
    });
    // A recovery the member was not told of does not run.
    if let Err(e) = told.await {
        sqlx::query(
            "UPDATE recovery_requests SET cancelled_at = ?, cancel_reason = ? \
             WHERE request_id = ? AND cancelled_at IS NULL",
        )
        .bind(now)
        .bind(Ended::NotNotified.as_str())
        .bind(&row.request_id)
        .execute(app.db())
        .await?;
        return Err(e);
    }
    Ok((StatusCode::CREATED, Json(row.view(now))))
}

/// `GET /v1/recovery` (member) → the newest request; 404 if there never was one.
async fn status(State(app): State<App>, member: Member) -> Result<Json<View>, ApiError> {
    let row = latest(&app, &member.member_id)
        .await?
        .ok_or(ApiError::NotFound("no recovery was requested"))?;
    Ok(Json(row.view(app.now())))
}

/// `POST /v1/recovery/cancel` (member) → the cancelled request; 409 if none is under way.
async fn cancel(State(app): State<App>, member: Member) -> Result<Json<View>, ApiError> {
    let row = live(&app, &member.member_id)
        .await?
        .end(&app, Ended::Member)
        .await?;
    mail_ended(&app, &row).await?;
    Ok(Json(row.view(app.now())))
}

async fn mail_ended(app: &App, row: &Row) -> Result<(), ApiError> {
    let why = match row.cancel_reason.as_deref() {
        Some("cancelled_on_device") => "from one of your devices",
        Some("device_used") => "because one of your devices unlocked the vault",
        _ => "on the web",
    };
    app.mail_member(&row.member_id, |name| {
        (
            "The recovery of your VettID vault was cancelled".into(),
            format!(
                "Hello {name},\n\nThe recovery of your vault was cancelled {why}. Your vault \
                 stays with your devices.\n"
            ),
        )
    })
    .await
}

#[derive(Serialize)]
struct QrIssued {
    /// The enrollment session the QR opens (the web page confirms the device on it).
    session_id: String,
    expires_at: i64,
    qr: serde_json::Value,
    qr_text: Secret,
    qr_terminal: Secret,
}

/// `POST /v1/recovery/qr` (member) → 201 with a one-time recovery QR, valid [`QR_SECS`]; the
/// QRs issued before it stop working. 409 while the delay runs or when no recovery is under
/// way.
async fn qr(
    State(app): State<App>,
    member: Member,
) -> Result<(StatusCode, Json<QrIssued>), ApiError> {
    let now = app.now();
    let Ready(row) = live(&app, &member.member_id).await?.ready(now)?;
    let token = Secret::random_token();
    let unused_code = Secret::random_token();
    let session_id = new_uuid();
    let expires_at = now.saturating_add(QR_SECS).min(row.expires_at);
    let mut tx = app.db().begin().await?;
    void_sessions(&mut tx, &row.request_id, now, CancelReason::Superseded).await?;
    sqlx::query(
        "INSERT INTO enrollment_sessions (session_id, member_id, code_hash, qr_token_hash, phase, \
         created_at, expires_at, recovery_request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&session_id)
    .bind(&member.member_id)
    .bind(app.digest(&unused_code))
    .bind(app.digest(&token))
    .bind(EnrollmentPhase::Created.as_str())
    .bind(now)
    .bind(expires_at)
    .bind(&row.request_id)
    .execute(&mut *tx)
    .await?;
    crate::enroll::record_phase(&mut tx, &session_id, EnrollmentPhase::Created, now).await?;
    tx.commit().await?;
    // The voided QRs' enrollment credentials; best effort (their tokens are dead already).
    if let Err(e) = crate::enroll::confirm::revoke_enrollment_keys(&app, &member.member_id).await {
        tracing::warn!(error = %e, "recovery QR: earlier enrollment keys not yet revoked on the server");
    }
    let (qr, qr_terminal, qr_text) = QrPayload {
        kind: "vettid_recovery",
        version: 1,
        api_url: &app.state.public_url,
        session_token: &token,
        member_id: &member.member_id,
    }
    .rendered()?;
    Ok((
        StatusCode::CREATED,
        Json(QrIssued {
            session_id,
            expires_at,
            qr,
            qr_text,
            qr_terminal,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceQuestion {
    member_id: String,
    device_public_key: String,
    /// Unix milliseconds, within two minutes of the server's clock, and later than this
    /// device's previous question (each signature is good once).
    timestamp: i64,
    /// Ed25519 (hex) over [`vettid_proto::auth::recovery_device_message`].
    signature: String,
    /// Cancel the live request.
    #[serde(default)]
    cancel: bool,
}

#[derive(Serialize)]
struct DeviceAnswer {
    /// The live request, or the one just cancelled; `null` when none is under way.
    recovery: Option<View>,
    /// A deletion of the vault under way (the device cannot cancel it: the member can, on
    /// the web), so that every device hears of it too.
    #[serde(skip_serializing_if = "Option::is_none")]
    deletion: Option<View>,
}

/// `POST /v1/recovery/device {member_id, device_public_key, timestamp, signature, cancel}` →
/// what an enrolled device (signing with its device key) is told: the live request, if any,
/// and a vault deletion under way, if any;
/// with `cancel`, it is cancelled (and the member mailed). 401 for an unknown or revoked
/// device, a bad signature, a timestamp off by more than two minutes or not newer than the
/// device's last question (a replay). Rate-limited per IP.
async fn device(
    State(app): State<App>,
    ClientIp(ip): ClientIp,
    ApiJson(q): ApiJson<DeviceQuestion>,
) -> Result<Json<DeviceAnswer>, ApiError> {
    let member = validate::member_id(&q.member_id)?;
    let device_key = validate::device_public_key(&q.device_public_key)?;
    app.rate_limit(
        "recovery_device",
        &ip_key(ip),
        app.state.config.limits.refresh_per_ip,
    )?;
    let message =
        vettid_proto::auth::recovery_device_message(&member, q.timestamp.unsigned_abs(), q.cancel);
    crate::devices::signed_by_device(
        &app,
        &member,
        &device_key,
        &q.signature,
        q.timestamp,
        &message,
    )
    .await?;
    let now = app.now();
    let deletion = delayed::latest(&app, Kind::Deletion, &member)
        .await?
        .filter(|r| r.is_live(now))
        .map(|r| r.view(now));
    let Some(live) = latest(&app, &member).await?.and_then(|r| as_live(r, now)) else {
        return Ok(Json(DeviceAnswer {
            recovery: None,
            deletion,
        }));
    };
    if !q.cancel {
        return Ok(Json(DeviceAnswer {
            recovery: Some(live.0.view(now)),
            deletion,
        }));
    }
    let row = live.end(&app, Ended::Device).await?;
    mail_ended(&app, &row).await?;
    Ok(Json(DeviceAnswer {
        recovery: Some(row.view(now)),
        deletion,
    }))
}

/// The recovery request a recovery enrollment finishes, or 409 for an ordinary enrollment.
fn request_of(grant: &EnrollmentGrant) -> Result<&str, ApiError> {
    grant
        .recovery
        .as_deref()
        .ok_or(ApiError::Conflict("this enrollment is not a recovery"))
}

/// `POST /v1/recovery/used` (recovery enrollment token) → the cancelled request: the new
/// device reports that the enclave refused the recovery because an enrolled device unlocked
/// the vault during the delay. (It can only end its own recovery.)
async fn used(State(app): State<App>, grant: EnrollmentGrant) -> Result<Json<View>, ApiError> {
    request_of(&grant)?;
    grant.ensure_confirmed()?;
    let row = live(&app, &grant.member_id)
        .await?
        .end(&app, Ended::DeviceUsed)
        .await?;
    mail_ended(&app, &row).await?;
    Ok(Json(row.view(app.now())))
}

/// `POST /v1/recovery/finalize {device_public_key, nats_public_key, identity_public_key,
/// device_attestation}` (recovery enrollment token of a confirmed device) → member NATS
/// credentials. As the enrollment's finalize, but the document must be the enclave's word
/// that it re-keyed the vault to this device
/// ([`vettid_proto::auth::recovered_device_binding`]), and the identity key the member's
/// vault's (400 otherwise). In one transaction: spends the token, completes the request (410
/// if it ended meanwhile), revokes every other device and registers this one; then every
/// NATS key of the other devices is revoked on the server (best effort: logged if the push
/// fails; the devices can no longer renew, and the enclave no longer knows them).
async fn finalize(
    State(app): State<App>,
    grant: EnrollmentGrant,
    ApiJson(req): ApiJson<FinalizeRequest>,
) -> Result<Json<crate::nats::NatsCreds>, ApiError> {
    let request_id = request_of(&grant)?.to_owned();
    let Finalizing {
        device_key,
        identity,
        issued,
    } = Finalizing::check(
        &app,
        &grant,
        &req,
        vettid_proto::auth::recovered_device_binding,
    )
    .await?;
    let known: Option<String> =
        sqlx::query_scalar("SELECT identity_public_key FROM vaults WHERE member_id = ?")
            .bind(&grant.member_id)
            .fetch_optional(app.db())
            .await?;
    if !known.is_some_and(|k| vettid_crypto::ct_eq(k.as_bytes(), hex::encode(identity).as_bytes()))
    {
        return Err(ApiError::bad_request(
            "identity_public_key is not the key of this member's vault",
        ));
    }
    let nats = app.nats()?;
    let now = app.now();
    let mut tx = app.db().begin().await?;
    crate::enroll::spend_enrollment_token(&mut tx, &grant, now).await?;
    let completed = sqlx::query(
        "UPDATE recovery_requests SET completed_at = ? WHERE request_id = ? \
         AND cancelled_at IS NULL AND completed_at IS NULL AND expires_at > ?",
    )
    .bind(now)
    .bind(&request_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if completed.rows_affected() != 1 {
        return Err(ApiError::Gone(
            "this recovery was cancelled, completed or has expired",
        ));
    }
    void_sessions(&mut tx, &request_id, now, CancelReason::RecoveryCompleted).await?;
    // Joins the old devices approved would bring a device the vault no longer admits.
    crate::enroll::confirm::end_sessions(
        &mut tx,
        Sessions::JoinsOf(&grant.member_id),
        CancelReason::RecoveryCompleted,
        now,
    )
    .await?;
    sqlx::query("UPDATE devices SET revoked_at = ? WHERE member_id = ? AND revoked_at IS NULL")
        .bind(now)
        .bind(&grant.member_id)
        .execute(&mut *tx)
        .await?;
    crate::enroll::register_device(&mut tx, &grant, &device_key, now).await?;
    crate::nats::record_key(
        &mut *tx,
        &grant.member_id,
        MemberScope::Member,
        &issued,
        &device_key,
    )
    .await?;
    crate::enroll::record_phase(&mut tx, &grant.session_id, EnrollmentPhase::Completed, now)
        .await?;
    tx.commit().await?;
    if let Err(e) = crate::nats::revoke_other_devices(&app, &grant.member_id, &device_key).await {
        tracing::warn!(error = %e, "recovery: old devices revoked here, not yet on the server");
    }
    // The device holds the vault now: a mail that fails is logged, not the device's problem.
    if let Err(e) = app
        .mail_member(&grant.member_id, |name| {
            (
                "Your VettID vault moved to a new device".into(),
                format!(
                    "Hello {name},\n\nYour vault was recovered to a new device. Your other \
                     devices were removed and can no longer reach it.\n"
                ),
            )
        })
        .await
    {
        tracing::warn!(error = %e, "recovery completed; the member's mail failed");
    }
    Ok(Json(nats.creds(&grant.member_id, &issued)))
}
