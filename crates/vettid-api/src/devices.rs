//! More devices: a registered device lets a new one join the vault, or removes one.
//!
//! ```text
//!  join    new device ── its device and session keys, name (the join request it shows) ──► member's device
//!          member's device: the enclave adds it (`Devices(Add)`, with the PIN) ─► document `device-added`
//!          member's device  POST /v1/devices/join  (signed with its device key, the document)
//!                           ─► a one-time join token, 15 minutes ─► shown to the new device
//!          new device       POST /v1/devices/join/finalize (the token; signed with its device key)
//!                           ─► member NATS credentials; it opens sessions with its own keys
//!  remove  member's device: the enclave removes it (`Devices(Remove)`, with the PIN) ─► document `device-removed`
//!          member's device  POST /v1/devices/remove (signed, the document) ─► the device and every NATS key it had revoked
//! ```
//!
//! The API never decides which devices a vault admits: the enclave's documents say what it did,
//! and a device's requests are signed with a key registered to the member. A device transfer
//! (the old phone approves the new one, no delay) is a join and then the old phone's removal.

use crate::ApiError;
use crate::app::App;
use crate::enroll::EnrollmentPhase;
use crate::extract::{ApiJson, ClientIp};
use crate::ratelimit::ip_key;
use crate::secret::{Secret, new_uuid};
use crate::validate;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use vettid_nats::MemberScope;

/// A join token can be used this long.
pub(crate) const JOIN_SECS: i64 = 15 * 60;
/// A device's signed request may be this far from the server's clock.
const DEVICE_WINDOW_SECS: i64 = 120;

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/v1/devices/join", post(join))
        .route("/v1/devices/join/finalize", post(finalize))
        .route("/v1/devices/remove", post(remove))
}

/// Checks that `signature` (hex) over `message` is by `device_key` (hex), a device registered
/// to `member` and not revoked, with `timestamp` (Unix ms) within two minutes of the server's
/// clock and newer than any this device signed before (each signature works once). 401
/// otherwise. Shared by every request a registered device signs.
pub(crate) async fn signed_by_device(
    app: &App,
    member: &str,
    device_key: &str,
    signature: &str,
    timestamp: i64,
    message: &[u8],
) -> Result<(), ApiError> {
    let signature = validate::hex_bytes::<64>("signature", signature)?;
    let refused = ApiError::Unauthorized("unknown device or bad signature");
    let registered: Option<(String, Option<i64>)> =
        sqlx::query_as("SELECT member_id, revoked_at FROM devices WHERE device_public_key = ?")
            .bind(device_key)
            .fetch_optional(app.db())
            .await?;
    if !matches!(&registered, Some((m, None)) if m == member) {
        return Err(refused);
    }
    let key = vettid_crypto::sign::VerifyingKey::from_bytes(&validate::hex_bytes::<32>(
        "device_public_key",
        device_key,
    )?)
    .map_err(|_| refused.clone())?;
    key.verify(
        message,
        &vettid_crypto::sign::Signature::from_bytes(signature),
    )
    .map_err(|_| refused)?;
    if (timestamp / 1000 - app.now()).abs() > DEVICE_WINDOW_SECS {
        return Err(ApiError::Unauthorized(
            "timestamp is more than 120 s from the server's clock",
        ));
    }
    let spent = sqlx::query(
        "UPDATE devices SET last_recovery_ts = ? WHERE device_public_key = ? AND member_id = ? \
         AND revoked_at IS NULL AND (last_recovery_ts IS NULL OR last_recovery_ts < ?)",
    )
    .bind(timestamp)
    .bind(device_key)
    .bind(member)
    .bind(timestamp)
    .execute(app.db())
    .await?;
    if spent.rows_affected() != 1 {
        return Err(ApiError::Unauthorized(
            "timestamp is not newer than this device's last signed request (replayed?)",
        ));
    }
    Ok(())
}

/// The vault identity key the API recorded for `member` (its first enrollment), or 409.
async fn identity_of(app: &App, member: &str) -> Result<[u8; 32], ApiError> {
    let identity: Option<String> =
        sqlx::query_scalar("SELECT identity_public_key FROM vaults WHERE member_id = ?")
            .bind(member)
            .fetch_optional(app.db())
            .await?;
    let identity = identity.ok_or(ApiError::Conflict("this member has no vault"))?;
    crate::enroll::stored_hex(&identity)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinRequest {
    member_id: String,
    /// The approving device's key (registered to the member).
    device_public_key: String,
    /// Unix ms (see [`signed_by_device`]).
    timestamp: i64,
    /// Ed25519 (hex) over [`vettid_proto::auth::device_join_message`].
    signature: String,
    /// The new device's Ed25519 device key (hex).
    new_device_public_key: String,
    /// The new device's X25519 session key (hex).
    new_session_public_key: String,
    /// Its name.
    device_name: String,
    /// The enclave's document (base64) binding
    /// [`vettid_proto::auth::added_device_binding`] of the new device's keys.
    device_attestation: String,
}

#[derive(Serialize)]
struct JoinIssued {
    join_token: Secret,
    expires_at: i64,
}

/// `POST /v1/devices/join` (signed by a registered device) → 201 with a one-time join token
/// for the new device, valid [`JOIN_SECS`]. 401 for an unknown or revoked device, a bad or
/// replayed signature; 400 unless the document is a trusted enclave's word that it added
/// exactly these keys to this member's vault; 409 for a key already registered.
async fn join(
    State(app): State<App>,
    ClientIp(ip): ClientIp,
    ApiJson(q): ApiJson<JoinRequest>,
) -> Result<(StatusCode, Json<JoinIssued>), ApiError> {
    let member = validate::member_id(&q.member_id)?;
    let approver = validate::device_public_key(&q.device_public_key)?;
    let new_device = validate::device_public_key(&q.new_device_public_key)?;
    let device_key = validate::hex_bytes::<32>("new_device_public_key", &new_device)?;
    let session_key =
        validate::hex_bytes::<32>("new_session_public_key", &q.new_session_public_key)?;
    let name = validate::device_name(&q.device_name)?;
    app.rate_limit(
        "device_join",
        &ip_key(ip),
        app.state.config.limits.refresh_per_ip,
    )?;
    let message = vettid_proto::auth::device_join_message(
        &member,
        q.timestamp.unsigned_abs(),
        &device_key,
        &session_key,
    );
    signed_by_device(
        &app,
        &member,
        &approver,
        &q.signature,
        q.timestamp,
        &message,
    )
    .await?;
    let identity = identity_of(&app, &member).await?;
    let expected =
        vettid_proto::auth::added_device_binding(&member, &session_key, &device_key, &identity);
    crate::enroll::attested::check(&app, &expected, &q.device_attestation).await?;
    let taken: Option<String> =
        sqlx::query_scalar("SELECT member_id FROM devices WHERE device_public_key = ?")
            .bind(&new_device)
            .fetch_optional(app.db())
            .await?;
    if taken.is_some() {
        return Err(ApiError::Conflict("this device key is already registered"));
    }
    let now = app.now();
    let token = Secret::random_token();
    let expires_at = now.saturating_add(JOIN_SECS);
    let session_id = new_uuid();
    // An enrollment session of its own kind, confirmed by the approving device: its QR token
    // and code are random and never shown, so no enrollment route reaches it.
    sqlx::query(
        "INSERT INTO enrollment_sessions (session_id, member_id, code_hash, qr_token_hash, \
         phase, created_at, expires_at, authenticated_at, device_name, token_hash, \
         token_expires_at, device_public_key, session_public_key, confirmed_at, joined_by) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&session_id)
    .bind(&member)
    .bind(app.digest(&Secret::random_token()))
    .bind(app.digest(&Secret::random_token()))
    .bind(EnrollmentPhase::Confirmed.as_str())
    .bind(now)
    .bind(expires_at)
    .bind(now)
    .bind(&name)
    .bind(app.digest(&token))
    .bind(expires_at)
    .bind(&new_device)
    .bind(hex::encode(session_key))
    .bind(now)
    .bind(&approver)
    .execute(app.db())
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(JoinIssued {
            join_token: token,
            expires_at,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinFinalize {
    /// The new device's key: the one the member's device approved.
    device_public_key: String,
    nats_public_key: String,
    /// Ed25519 (hex) by that key over [`vettid_proto::auth::device_joined_message`].
    signature: String,
}

/// A join's session as its finalize reads it.
#[derive(sqlx::FromRow)]
struct JoinRow {
    session_id: String,
    member_id: String,
    device_public_key: Option<String>,
    session_public_key: Option<String>,
    token_expires_at: Option<i64>,
    token_used_at: Option<i64>,
    cancelled_at: Option<i64>,
}

/// `POST /v1/devices/join/finalize {device_public_key, nats_public_key, signature}` (bearer:
/// the join token) → member NATS credentials. 401 for an unknown, used or expired token, a
/// device key other than the approved one, or a signature that is not that key's; in one
/// transaction the token is spent, the device registered and its NATS key recorded.
async fn finalize(
    State(app): State<App>,
    headers: HeaderMap,
    ApiJson(q): ApiJson<JoinFinalize>,
) -> Result<Json<crate::nats::NatsCreds>, ApiError> {
    let token = crate::extract::bearer_of(&headers)?;
    let row: Option<JoinRow> = sqlx::query_as(
        "SELECT session_id, member_id, device_public_key, session_public_key, token_expires_at, \
         token_used_at, cancelled_at FROM enrollment_sessions \
         WHERE token_hash = ? AND joined_by IS NOT NULL",
    )
    .bind(app.digest(&token))
    .fetch_optional(app.db())
    .await?;
    let refused = ApiError::Unauthorized("invalid, used or expired join token");
    let row = row.ok_or(refused.clone())?;
    let now = app.now();
    if row.token_used_at.is_some()
        || row.cancelled_at.is_some()
        || row.token_expires_at.unwrap_or_default() <= now
    {
        return Err(refused);
    }
    crate::auth::ensure_not_suspended(&app, &row.member_id).await?;
    let device = validate::device_public_key(&q.device_public_key)?;
    let approved = row.device_public_key.unwrap_or_default();
    if !vettid_crypto::ct_eq(device.as_bytes(), approved.as_bytes()) {
        return Err(ApiError::Unauthorized(
            "device_public_key is not the device that was approved",
        ));
    }
    let nats_key = validate::nats_user_key(&q.nats_public_key)?;
    let key =
        vettid_crypto::sign::VerifyingKey::from_bytes(&crate::enroll::stored_hex::<32>(&device)?)
            .map_err(|_| ApiError::Unauthorized("bad device key"))?;
    let signature = validate::hex_bytes::<64>("signature", &q.signature)?;
    key.verify(
        &vettid_proto::auth::device_joined_message(&row.member_id, &nats_key),
        &vettid_crypto::sign::Signature::from_bytes(signature),
    )
    .map_err(|_| ApiError::Unauthorized("the signature is not the approved device's"))?;
    let nats = app.nats()?;
    let issued = nats.sign(
        &row.member_id,
        &nats_key,
        MemberScope::Member,
        app.state.config.limits.member_jwt_lifetime,
        app.clock_now(),
    )?;
    let mut tx = app.db().begin().await?;
    // Spent only while unexpired (an ending sets the expiry to its own time) and while the
    // device that approved it is still registered — checked in the same write, so a
    // revocation or deletion either comes first and wins, or comes after and takes this
    // device and its key with the others.
    let now = app.now();
    let spent = sqlx::query(
        "UPDATE enrollment_sessions SET token_used_at = ?, completed_at = ?, phase = ? \
         WHERE session_id = ? AND token_used_at IS NULL AND cancelled_at IS NULL \
         AND token_expires_at > ? AND EXISTS (SELECT 1 FROM devices d \
         WHERE d.device_public_key = enrollment_sessions.joined_by \
         AND d.member_id = enrollment_sessions.member_id \
         AND d.revoked_at IS NULL AND d.vault_deleted_at IS NULL)",
    )
    .bind(now)
    .bind(now)
    .bind(EnrollmentPhase::Completed.as_str())
    .bind(&row.session_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if spent.rows_affected() != 1 {
        return Err(ApiError::Unauthorized(
            "join token already used or expired, or the device that approved it was removed",
        ));
    }
    let inserted = sqlx::query(
        "INSERT INTO devices (device_public_key, member_id, enrollment_session_id, \
         session_public_key, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&device)
    .bind(&row.member_id)
    .bind(&row.session_id)
    .bind(&row.session_public_key)
    .bind(now)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if crate::db::is_unique_violation(&e) => {
            return Err(ApiError::Conflict("this device key is already registered"));
        }
        other => other?,
    };
    crate::nats::record_key(
        &mut *tx,
        &row.member_id,
        MemberScope::Member,
        &issued,
        &device,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(nats.creds(&row.member_id, &issued)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveRequest {
    member_id: String,
    /// The device asking (registered to the member; it may be the one removed).
    device_public_key: String,
    /// Unix ms (see [`signed_by_device`]).
    timestamp: i64,
    /// Ed25519 (hex) over [`vettid_proto::auth::device_remove_message`].
    signature: String,
    /// The removed device's key.
    removed_device_public_key: String,
    /// The enclave's document (base64) binding [`vettid_proto::auth::removed_device_binding`].
    device_attestation: String,
}

#[derive(Serialize)]
struct Removed {
    device_public_key: String,
    nats_keys_revoked: usize,
}

/// `POST /v1/devices/remove` (signed by a registered device) → the removed device revoked and
/// every NATS key it was given revoked on the server. 401 as for a join; 400 unless the
/// document is a trusted enclave's word that it removed exactly that device (its registered
/// session key) from this member's vault; 404 for a device this member does not have.
async fn remove(
    State(app): State<App>,
    ClientIp(ip): ClientIp,
    ApiJson(q): ApiJson<RemoveRequest>,
) -> Result<Json<Removed>, ApiError> {
    let member = validate::member_id(&q.member_id)?;
    let asking = validate::device_public_key(&q.device_public_key)?;
    let removed = validate::device_public_key(&q.removed_device_public_key)?;
    let removed_key = validate::hex_bytes::<32>("removed_device_public_key", &removed)?;
    app.rate_limit(
        "device_remove",
        &ip_key(ip),
        app.state.config.limits.refresh_per_ip,
    )?;
    let message = vettid_proto::auth::device_remove_message(
        &member,
        q.timestamp.unsigned_abs(),
        &removed_key,
    );
    signed_by_device(&app, &member, &asking, &q.signature, q.timestamp, &message).await?;
    let session: Option<Option<String>> = sqlx::query_scalar(
        "SELECT session_public_key FROM devices WHERE device_public_key = ? AND member_id = ? \
         AND vault_deleted_at IS NULL",
    )
    .bind(&removed)
    .bind(&member)
    .fetch_optional(app.db())
    .await?;
    let identity = identity_of(&app, &member).await?;
    let Some(session) = session else {
        // Removed before it finished joining: its join ends, so its token gets nothing.
        return end_join(
            &app,
            &member,
            &removed,
            &removed_key,
            &identity,
            &q.device_attestation,
        )
        .await;
    };
    let session = session.ok_or(ApiError::Conflict(
        "this device was registered before session keys were recorded",
    ))?;
    let expected = vettid_proto::auth::removed_device_binding(
        &member,
        &crate::enroll::stored_hex(&session)?,
        &removed_key,
        &identity,
    );
    crate::enroll::attested::check(&app, &expected, &q.device_attestation).await?;
    sqlx::query(
        "UPDATE devices SET revoked_at = COALESCE(revoked_at, ?) WHERE device_public_key = ?",
    )
    .bind(app.now())
    .bind(&removed)
    .execute(app.db())
    .await?;
    let nats_keys_revoked = crate::nats::revoke_device(&app, &member, &removed).await?;
    Ok(Json(Removed {
        device_public_key: removed,
        nats_keys_revoked,
    }))
}

/// A removal of a device that has not finished joining: the enclave's document must name the
/// keys one of its live joins was approved for; that join is cancelled. 404 when there is no
/// such join; 409 when it finished meanwhile (ask again: the device is registered now).
async fn end_join(
    app: &App,
    member: &str,
    removed: &str,
    removed_key: &[u8; 32],
    identity: &[u8; 32],
    document: &str,
) -> Result<Json<Removed>, ApiError> {
    let joins: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT session_id, session_public_key FROM enrollment_sessions \
         WHERE member_id = ? AND device_public_key = ? AND joined_by IS NOT NULL \
         AND token_used_at IS NULL AND cancelled_at IS NULL",
    )
    .bind(member)
    .bind(removed)
    .fetch_all(app.db())
    .await?;
    let mut found = None;
    for (session_id, session_key) in joins {
        let Some(session_key) = session_key else {
            continue;
        };
        let expected = vettid_proto::auth::removed_device_binding(
            member,
            &crate::enroll::stored_hex(&session_key)?,
            removed_key,
            identity,
        );
        if crate::enroll::attested::check(app, &expected, document)
            .await
            .is_ok()
        {
            found = Some(session_id);
            break;
        }
    }
    let session_id = found.ok_or(ApiError::NotFound("this member has no such device"))?;
    let now = app.now();
    let ended = sqlx::query(
        "UPDATE enrollment_sessions SET cancelled_at = ?, cancel_reason = ?, \
         token_expires_at = MIN(COALESCE(token_expires_at, ?), ?) \
         WHERE session_id = ? AND cancelled_at IS NULL AND token_used_at IS NULL",
    )
    .bind(now)
    .bind(crate::enroll::confirm::CancelReason::DeviceRemoved.as_str())
    .bind(now)
    .bind(now)
    .bind(&session_id)
    .execute(app.db())
    .await?;
    if ended.rows_affected() != 1 {
        return Err(ApiError::Conflict(
            "the device finished joining meanwhile: ask to remove it again",
        ));
    }
    Ok(Json(Removed {
        device_public_key: removed.to_owned(),
        nats_keys_revoked: 0,
    }))
}
