//! The member's side of an enrollment in progress: confirming the device that authenticated
//! by typing the comparison code it shows, or cancelling.
//!
//! An app that presented a code gets an enrollment token, but nothing that reaches the vault
//! (enrollment NATS credentials, phases, finalize) until the member confirms. The comparison
//! code is derived from the session and both keys the app named
//! ([`vettid_proto::auth::comparison_code`]), so the member confirms those keys, not just "an
//! app": someone who saw the enrollment code and used it first shows a code on *their*
//! screen, which the member never sees. Three wrong comparison codes cancel the enrollment.

use super::{EnrollmentGrant, EnrollmentPhase, record_phase, stored_hex};
use crate::ApiError;
use crate::app::App;
use crate::auth::Member;
use crate::extract::{ApiJson, ApiPath};
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use vettid_proto::auth::{comparison_code, normalize_comparison_code};

/// Wrong comparison codes the member may type before the enrollment is cancelled.
pub(crate) const CONFIRM_ATTEMPTS: i64 = 3;

/// Why an enrollment ended before it completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CancelReason {
    /// The member cancelled it on the web page.
    Member,
    /// The member typed [`CONFIRM_ATTEMPTS`] wrong comparison codes.
    WrongComparison,
    /// A newer recovery QR voided this one's enrollment.
    Superseded,
    /// The recovery it belonged to was cancelled or expired.
    RecoveryEnded,
    /// The recovery it belonged to was completed by another of its enrollments; or, for a
    /// device's join, a recovery moved the vault to another device.
    RecoveryCompleted,
    /// The joining device was removed from the vault before it finished.
    DeviceRemoved,
}

impl CancelReason {
    /// The stored name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CancelReason::Member => "member",
            CancelReason::WrongComparison => "wrong_comparison",
            CancelReason::Superseded => "superseded",
            CancelReason::RecoveryEnded => "recovery_ended",
            CancelReason::RecoveryCompleted => "recovery_completed",
            CancelReason::DeviceRemoved => "device_removed",
        }
    }

    /// Parses a stored name.
    pub(crate) fn parse(s: &str) -> Option<CancelReason> {
        [
            CancelReason::Member,
            CancelReason::WrongComparison,
            CancelReason::Superseded,
            CancelReason::RecoveryEnded,
            CancelReason::RecoveryCompleted,
            CancelReason::DeviceRemoved,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

#[derive(sqlx::FromRow)]
struct Pending {
    phase: String,
    token_expires_at: Option<i64>,
    cancelled_at: Option<i64>,
    device_public_key: Option<String>,
    session_public_key: Option<String>,
    comparison_salt: Option<String>,
}

/// The member's session `id`, or 404 if it is not theirs.
async fn pending(app: &App, member: &Member, id: &str) -> Result<Pending, ApiError> {
    let row: Option<Pending> = sqlx::query_as(
        "SELECT phase, token_expires_at, cancelled_at, device_public_key, session_public_key, \
         comparison_salt FROM enrollment_sessions WHERE session_id = ? AND member_id = ?",
    )
    .bind(id)
    .bind(&member.member_id)
    .fetch_optional(app.db())
    .await?;
    row.ok_or(ApiError::NotFound("no such enrollment session"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfirmRequest {
    comparison_code: String,
}

#[derive(Serialize)]
pub(crate) struct Confirmed {
    confirmed: bool,
    /// Wrong codes left before the enrollment is cancelled (after a wrong one).
    attempts_left: i64,
}

/// `POST /v1/enroll/sessions/{id}/confirm {comparison_code}` (member) → `{confirmed: true}`
/// if the code matches the one the authenticated app shows. A wrong code is 403 and counts;
/// the [`CONFIRM_ATTEMPTS`]th cancels the enrollment (410 from then on). 409 if no app has
/// authenticated yet or the device is already confirmed; 410 if the enrollment was cancelled
/// or its token expired; 400 for anything that is not six digits (not counted).
pub(crate) async fn confirm(
    State(app): State<App>,
    member: Member,
    ApiPath(id): ApiPath,
    ApiJson(req): ApiJson<ConfirmRequest>,
) -> Result<Json<Confirmed>, ApiError> {
    let typed = normalize_comparison_code(&req.comparison_code)
        .ok_or_else(|| ApiError::bad_request("comparison_code must be six digits"))?;
    let row = pending(&app, &member, &id).await?;
    if row.cancelled_at.is_some() {
        return Err(ApiError::Gone("this enrollment was cancelled"));
    }
    let now = app.now();
    match EnrollmentPhase::parse(&row.phase) {
        Some(EnrollmentPhase::Created) => {
            return Err(ApiError::Conflict(
                "no app has used this enrollment's code yet",
            ));
        }
        Some(EnrollmentPhase::Authenticated) => {}
        Some(_) => return Err(ApiError::Conflict("this device is already confirmed")),
        None => return Err(ApiError::internal("enrollment row", "bad phase")),
    }
    if row.token_expires_at.is_none_or(|t| t <= now) {
        return Err(ApiError::Gone(
            "this enrollment expired; start again with a new code",
        ));
    }
    let (Some(device), Some(session), Some(salt)) = (
        row.device_public_key,
        row.session_public_key,
        row.comparison_salt,
    ) else {
        return Err(ApiError::Gone(
            "this enrollment predates device confirmation; start again with a new code",
        ));
    };
    let expected = comparison_code(
        &id,
        &stored_hex(&salt)?,
        &stored_hex(&device)?,
        &stored_hex(&session)?,
    );

    let mut tx = app.db().begin().await?;
    if !vettid_crypto::ct_eq(typed.as_bytes(), expected.as_bytes()) {
        let failures: i64 = sqlx::query_scalar(
            "UPDATE enrollment_sessions SET confirm_failures = confirm_failures + 1 \
             WHERE session_id = ? RETURNING confirm_failures",
        )
        .bind(&id)
        .fetch_one(&mut *tx)
        .await?;
        if failures >= CONFIRM_ATTEMPTS {
            end(&mut tx, &id, CancelReason::WrongComparison, now).await?;
        }
        tx.commit().await?;
        if failures >= CONFIRM_ATTEMPTS {
            revoke_enrollment_keys(&app, &member.member_id).await?;
            return Err(ApiError::Gone(
                "three wrong comparison codes: this enrollment is cancelled; start again",
            ));
        }
        return Err(ApiError::Forbidden(
            "that is not the code the app shows; check the app and type it again",
        ));
    }
    let moved = sqlx::query(
        "UPDATE enrollment_sessions SET confirmed_at = ?, phase = ? WHERE session_id = ? \
         AND phase = ? AND cancelled_at IS NULL AND token_used_at IS NULL",
    )
    .bind(now)
    .bind(EnrollmentPhase::Confirmed.as_str())
    .bind(&id)
    .bind(EnrollmentPhase::Authenticated.as_str())
    .execute(&mut *tx)
    .await?;
    if moved.rows_affected() != 1 {
        return Err(ApiError::Conflict(
            "this enrollment changed; reload the page",
        ));
    }
    record_phase(&mut tx, &id, EnrollmentPhase::Confirmed, now).await?;
    tx.commit().await?;
    Ok(Json(Confirmed {
        confirmed: true,
        attempts_left: CONFIRM_ATTEMPTS,
    }))
}

/// Which enrollment sessions [`end_sessions`] ends.
#[derive(Clone, Copy)]
pub(crate) enum Sessions<'a> {
    /// One, by id.
    Id(&'a str),
    /// Every one of a recovery request's QRs.
    OfRecovery(&'a str),
    /// Every device join of a member not yet finished.
    JoinsOf(&'a str),
}

/// Ends session `id`: its code and token stop working, with `reason` recorded.
async fn end(
    tx: &mut sqlx::SqliteConnection,
    id: &str,
    reason: CancelReason,
    now: i64,
) -> Result<(), ApiError> {
    end_sessions(tx, Sessions::Id(id), reason, now).await
}

/// Ends the `which` sessions not ended or completed yet: their codes, QRs and tokens stop
/// working, with `reason` recorded (the caller revokes their NATS keys after committing).
pub(crate) async fn end_sessions(
    tx: &mut sqlx::SqliteConnection,
    which: Sessions<'_>,
    reason: CancelReason,
    now: i64,
) -> Result<(), ApiError> {
    let (column, value, only_joins) = match which {
        Sessions::Id(id) => ("session_id", id, ""),
        Sessions::OfRecovery(request) => ("recovery_request_id", request, ""),
        Sessions::JoinsOf(member) => ("member_id", member, " AND joined_by IS NOT NULL"),
    };
    let q = format!(
        "UPDATE enrollment_sessions SET cancelled_at = ?, cancel_reason = ?, \
         expires_at = MIN(expires_at, ?), \
         token_expires_at = CASE WHEN token_expires_at IS NULL THEN NULL \
         ELSE MIN(token_expires_at, ?) END \
         WHERE {column} = ?{only_joins} AND cancelled_at IS NULL AND token_used_at IS NULL"
    );
    sqlx::query(sqlx::AssertSqlSafe(q))
        .bind(now)
        .bind(reason.as_str())
        .bind(now)
        .bind(now)
        .bind(value)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Revokes every enrollment-scoped NATS key of `member` (only an enrollment in progress has
/// live ones: a member has one live enrollment at a time), and pushes the account to the
/// server. Returns how many were revoked; 0 without NATS.
pub(crate) async fn revoke_enrollment_keys(app: &App, member: &str) -> Result<usize, ApiError> {
    if app.state.nats.is_none() {
        return Ok(0);
    }
    crate::nats::revoke_issued(app, member, Some(vettid_nats::MemberScope::Enrollment)).await
}

#[derive(Serialize)]
pub(crate) struct Cancelled {
    cancelled: bool,
    /// Enrollment NATS credentials revoked with it.
    nats_keys_revoked: usize,
}

/// `POST /v1/enroll/sessions/{id}/cancel` (member) → the enrollment ends at whatever phase
/// it reached: its code and token stop working and any enrollment NATS credentials the app
/// got are revoked on the server. Cancelling twice answers the same; a completed enrollment
/// cannot be cancelled (409: revoke the device instead).
pub(crate) async fn cancel(
    State(app): State<App>,
    member: Member,
    ApiPath(id): ApiPath,
) -> Result<Json<Cancelled>, ApiError> {
    let row = pending(&app, &member, &id).await?;
    if row.phase == EnrollmentPhase::Completed.as_str() {
        return Err(ApiError::Conflict(
            "this enrollment completed; revoke the device instead",
        ));
    }
    let now = app.now();
    let mut tx = app.db().begin().await?;
    end(&mut tx, &id, CancelReason::Member, now).await?;
    // Finalize may have won since the read above: then nothing was cancelled.
    let cancelled: Option<i64> =
        sqlx::query_scalar("SELECT cancelled_at FROM enrollment_sessions WHERE session_id = ?")
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
    if cancelled.is_none() {
        return Err(ApiError::Conflict(
            "this enrollment completed; revoke the device instead",
        ));
    }
    tx.commit().await?;
    let nats_keys_revoked = revoke_enrollment_keys(&app, &member.member_id).await?;
    Ok(Json(Cancelled {
        cancelled: true,
        nats_keys_revoked,
    }))
}

#[derive(Serialize)]
pub(crate) struct Confirmation {
    confirmed: bool,
    expires_at: i64,
}

/// `GET /v1/enroll/confirmation` (enrollment token) → whether the member has confirmed this
/// device yet; the app polls it while it shows its comparison code. 410 once the member
/// cancels, 401 once the token expires.
pub(crate) async fn confirmation(grant: EnrollmentGrant) -> Json<Confirmation> {
    Json(Confirmation {
        confirmed: grant.confirmed,
        expires_at: grant.expires_at,
    })
}
