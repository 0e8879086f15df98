//! NATS credentials for members: issuing (at enrollment and on refresh), recording every user
//! key ever issued, and revoking them all.
//!
//! The API signs user JWTs with the platform account's signing key (`vettid-nats`); the app
//! keeps its own nkey seed and sends only the public key. Every issued key is recorded in
//! `nats_user_keys` *before* its JWT is handed out, so a revocation can name all of them.
//!
//! Refresh is authorized by the device key registered at enrollment: the app signs
//! [`refresh_message`] with it. A timestamp within ±120 s of the server's clock and strictly
//! newer than the last one accepted for that device makes each signature usable once.

use crate::ApiError;
use crate::app::App;
use crate::extract::{ApiJson, ClientIp};
use crate::ratelimit::ip_key;
use crate::validate;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use vettid_nats::{IssuedJwt, Issuer, MemberScope, NatsError, Revocation, Setup};

/// Domain separation of the refresh signature (see [`refresh_message`]).
pub const REFRESH_CONTEXT: &[u8] = b"vettid/v1/nats-refresh\0";

/// How far a refresh timestamp may be from the server's clock.
pub(crate) const REFRESH_WINDOW_SECS: i64 = 120;

/// How long the API waits for the hosts to shred a vault.
const SHRED_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the API waits for the NATS server to accept an account update.
const PUSH_TIMEOUT: Duration = Duration::from_secs(15);

/// The bytes a device signs (Ed25519, with the key registered at enrollment) to refresh its
/// NATS credentials:
///
/// `"vettid/v1/nats-refresh\0"` ‖ `member_id` ‖ `0x00` ‖ `nats_public_key` ‖ `0x00` ‖
/// `timestamp` (unix seconds, 8 bytes big-endian).
///
/// The NUL separators are unambiguous because neither a member id (UUID) nor a NATS public
/// key contains NUL. This is the one definition the app shares
/// (`vettid_proto::auth::nats_refresh_message`), re-exported here for API users.
pub fn refresh_message(member_id: &str, nats_public_key: &str, timestamp: u64) -> Vec<u8> {
    vettid_proto::auth::nats_refresh_message(member_id, nats_public_key, timestamp)
}

/// The issuer of this deployment, with what revocation needs to reach the server.
pub(crate) struct NatsIssuing {
    issuer: Arc<Mutex<Issuer>>,
    sys_creds: PathBuf,
    /// The platform's `api` user: asks the hosts to shred deleted vaults.
    api_creds: PathBuf,
    nats_url: String,
}

impl NatsIssuing {
    /// Loads (creating if absent) the `vettid-nats` setup in `dir`.
    pub(crate) fn load(dir: &Path, nats_url: &str) -> Result<NatsIssuing, NatsError> {
        let setup = Setup::create_or_load(dir)?;
        Ok(NatsIssuing {
            issuer: Arc::new(Mutex::new(setup.issuer()?)),
            sys_creds: setup.sys_creds(),
            api_creds: setup.api_creds(),
            nats_url: nats_url.to_owned(),
        })
    }

    /// Has the hosts shred `member`'s vault in the enclave (the member's confirmed deletion);
    /// the number of objects deleted. 503 when no host answers or the enclave could not
    /// finish (a retry finishes it: shredding is idempotent).
    pub(crate) async fn shred(&self, member: &str) -> Result<u64, ApiError> {
        use vettid_proto::enclave::{EnclaveReply, VaultError};
        let unavailable = || {
            ApiError::ServiceUnavailable("the vault could not be shredded now; try again shortly")
        };
        let answer =
            vettid_nats::request_shred(&self.nats_url, &self.api_creds, member, SHRED_TIMEOUT)
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "shred request failed");
                    unavailable()
                })?;
        match vettid_proto::channel::from_body::<Result<EnclaveReply, VaultError>>(&answer) {
            Ok(Ok(EnclaveReply::Shredded { objects })) => Ok(objects),
            other => {
                tracing::warn!(answer = ?other.map(|r| r.map(|_| ()).map_err(|e| e.to_string())), "shred refused");
                Err(unavailable())
            }
        }
    }

    /// Signs a user JWT for `user_key` of `member` (both already validated), issued `now`
    /// (the API's clock).
    pub(crate) fn sign(
        &self,
        member: &str,
        user_key: &str,
        scope: MemberScope,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<IssuedJwt, ApiError> {
        let issuer = self.issuer.lock().unwrap_or_else(|p| p.into_inner());
        issuer
            .member_jwt_at(member, user_key, scope, lifetime, now)
            .map_err(|e| match e {
                NatsError::Invalid(_) => ApiError::bad_request("nats_public_key was refused"),
                other => ApiError::internal("signing a member JWT", other),
            })
    }

    /// The answer carrying `issued` to the member's app.
    pub(crate) fn creds(&self, member: &str, issued: &IssuedJwt) -> NatsCreds {
        NatsCreds {
            jwt: issued.jwt.clone(),
            expires_at: crate::clock::unix_secs(issued.expires_at),
            member_id: member.to_owned(),
            nats_url: self.nats_url.clone(),
            owner_space: format!("OwnerSpace.{member}"),
            inbox_prefix: vettid_nats::member_inbox_prefix(member),
        }
    }
}

/// NATS credentials as answered to an app (its seed never leaves it).
#[derive(Serialize)]
pub(crate) struct NatsCreds {
    jwt: String,
    expires_at: i64,
    member_id: String,
    nats_url: String,
    owner_space: String,
    inbox_prefix: String,
}

/// The stored name of a scope.
fn scope_name(scope: MemberScope) -> &'static str {
    match scope {
        MemberScope::Enrollment => "enrollment",
        MemberScope::Member => "member",
    }
}

/// Records that `issued` was issued to `member` for `device` (its device key, hex) (upsert).
/// 409 if the key was issued to another member or has been revoked: such a key gets no new
/// JWT.
pub(crate) async fn record_key<'e, E>(
    db: E,
    member: &str,
    scope: MemberScope,
    issued: &IssuedJwt,
    device: &str,
) -> Result<(), ApiError>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let at = crate::clock::unix_secs(issued.issued_at);
    let recorded = sqlx::query(
        "INSERT INTO nats_user_keys (user_public_key, member_id, scope, first_issued_at, \
         last_issued_at, last_expires_at, device_public_key) VALUES (?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (user_public_key) DO UPDATE SET scope = excluded.scope, \
         last_issued_at = excluded.last_issued_at, \
         last_expires_at = MAX(nats_user_keys.last_expires_at, excluded.last_expires_at), \
         device_public_key = excluded.device_public_key \
         WHERE nats_user_keys.member_id = excluded.member_id AND nats_user_keys.revoked_at IS NULL",
    )
    .bind(&issued.user_public_key)
    .bind(member)
    .bind(scope_name(scope))
    .bind(at)
    .bind(at)
    .bind(crate::clock::unix_secs(issued.expires_at))
    .bind(device)
    .execute(db)
    .await?;
    if recorded.rows_affected() == 1 {
        Ok(())
    } else {
        Err(ApiError::Conflict(
            "this NATS key cannot be used (revoked, or not yours); generate a new one",
        ))
    }
}

pub(crate) fn routes() -> Router<App> {
    Router::new().route("/v1/nats/refresh", post(refresh))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    member_id: String,
    device_public_key: String,
    nats_public_key: String,
    timestamp: u64,
    signature: String,
}

/// `POST /v1/nats/refresh` → a member JWT for `nats_public_key`, if the device signature,
/// timestamp window and replay guard pass (else 401).
async fn refresh(
    State(app): State<App>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<Json<NatsCreds>, ApiError> {
    let member = validate::member_id(&req.member_id)?;
    let device_key = validate::device_public_key(&req.device_public_key)?;
    let nats_key = validate::nats_user_key(&req.nats_public_key)?;
    let signature = validate::hex_bytes::<64>("signature", &req.signature)?;
    let timestamp = i64::try_from(req.timestamp)
        .map_err(|_| ApiError::bad_request("timestamp is out of range"))?;
    let limits = &app.state.config.limits;
    app.rate_limit("refresh", &ip_key(ip), limits.refresh_per_ip)?;
    let nats = app.nats()?;

    let proof = RefreshProof {
        member: &member,
        device_key: &device_key,
        nats_key: &nats_key,
        timestamp,
        signature,
    };
    proof.verify(&app).await?;
    crate::auth::ensure_not_suspended(&app, &member).await?;
    // Before the timestamp is spent, so that the same signed request may be retried.
    let earlier = earlier_issue(&app, &nats_key).await?;
    if earlier.is_some_and(|(issued, _)| issued >= app.now()) {
        return Err(ApiError::RateLimited {
            retry_after_secs: 1,
        });
    }
    if earlier.is_none() {
        ensure_few_new_keys(&app, &member, &device_key).await?;
    }
    proof.spend(&app).await?;
    let lifetime = limits.member_jwt_lifetime;
    let issued = nats.sign(
        &member,
        &nats_key,
        MemberScope::Member,
        lifetime,
        app.clock_now(),
    )?;
    record_key(app.db(), &member, MemberScope::Member, &issued, &device_key).await?;
    // A revocation that ran since the check has not seen this key: refuse to hand it out.
    ensure_device_active(&app, &device_key).await?;
    end_replaced(&app, &member, &device_key, &issued, earlier).await?;
    Ok(Json(nats.creds(&member, &issued)))
}

/// When `nats_key` was last issued a JWT and when that expires, if ever. A renewal in that
/// same second is refused (429, retry in 1 s): it could not end that JWT without ending its
/// own (revocations are by issue second).
async fn earlier_issue(app: &App, nats_key: &str) -> Result<Option<(i64, i64)>, ApiError> {
    Ok(sqlx::query_as(
        "SELECT last_issued_at, last_expires_at FROM nats_user_keys WHERE user_public_key = ?",
    )
    .bind(nats_key)
    .fetch_optional(app.db())
    .await?)
}

/// New NATS keys one device may bring in a day: each renewal with a new key leaves a
/// revocation in the account JWT for as long as the JWT it replaces could live, so they are
/// few.
const NEW_KEYS_PER_DAY: i64 = 4;

/// 429 if the device brought [`NEW_KEYS_PER_DAY`] new keys within the last day.
async fn ensure_few_new_keys(app: &App, member: &str, device_key: &str) -> Result<(), ApiError> {
    let recent: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM nats_user_keys WHERE member_id = ? AND device_public_key = ? \
         AND first_issued_at > ?",
    )
    .bind(member)
    .bind(device_key)
    .bind(app.now() - 24 * 3600)
    .fetch_one(app.db())
    .await?;
    if recent >= NEW_KEYS_PER_DAY {
        return Err(ApiError::RateLimited {
            retry_after_secs: 3600,
        });
    }
    Ok(())
}

/// Ends the credentials a renewal replaces: the earlier JWTs of the same key, if it had any
/// (revoked up to the second before the new one), and the device's other keys issued before
/// it (revoked for good; only those still unexpired need an entry in the account JWT),
/// recorded in the account JWT and pushed. A key issued in the same second (a concurrent
/// renewal) is left alone. The push is best effort: the new credentials are handed out even
/// if the server is unreachable (logged), and the next push or server start carries the
/// revocations.
async fn end_replaced(
    app: &App,
    member: &str,
    device_key: &str,
    issued: &IssuedJwt,
    earlier: Option<(i64, i64)>,
) -> Result<(), ApiError> {
    let nats = app.nats()?;
    let iat = crate::clock::unix_secs(issued.issued_at);
    let others: Vec<(String, i64)> = sqlx::query_as(
        "SELECT user_public_key, last_expires_at FROM nats_user_keys WHERE member_id = ? \
         AND device_public_key = ? AND user_public_key != ? AND revoked_at IS NULL \
         AND last_issued_at < ? ORDER BY user_public_key",
    )
    .bind(member)
    .bind(device_key)
    .bind(&issued.user_public_key)
    .bind(iat)
    .fetch_all(app.db())
    .await?;
    let now = app.now();
    // Up to the second before this JWT, so a concurrent renewal's newer JWT of another key
    // stays valid.
    let until = iat.unsigned_abs().saturating_sub(1);
    let mut entries: Vec<Revocation> = others
        .iter()
        .filter(|(_, expires)| may_live(app, *expires))
        .map(|(k, expires)| revocation(app, k, until, *expires))
        .collect();
    if let Some((_, expires)) = earlier.filter(|(_, expires)| may_live(app, *expires)) {
        entries.push(revocation(app, &issued.user_public_key, until, expires));
    }
    // The account first: a failure there leaves the keys unrevoked here too, for a retry.
    let account_jwt = if entries.is_empty() {
        None
    } else {
        Some(revoke_until(nats, entries).await?)
    };
    mark_revoked(app, others.iter().map(|(k, _)| k.as_str()), now, iat).await?;
    if let Some(jwt) = account_jwt
        && push(nats, &jwt).await.is_err()
    {
        tracing::warn!("renewal: replaced credentials revoked here, not yet on the server");
    }
    Ok(())
}

struct RefreshProof<'a> {
    member: &'a str,
    device_key: &'a str,
    nats_key: &'a str,
    timestamp: i64,
    signature: [u8; 64],
}

impl RefreshProof<'_> {
    /// Verifies the device (registered to the member, not revoked), its signature and the
    /// timestamp window. Spends nothing: see [`RefreshProof::spend`].
    async fn verify(&self, app: &App) -> Result<(), ApiError> {
        let refused = ApiError::Unauthorized("refresh refused: unknown device or bad signature");
        let device: Option<(String, Option<i64>)> =
            sqlx::query_as("SELECT member_id, revoked_at FROM devices WHERE device_public_key = ?")
                .bind(self.device_key)
                .fetch_optional(app.db())
                .await?;
        if !matches!(&device, Some((m, None)) if m == self.member) {
            return Err(refused);
        }
        let key_bytes = hex::decode(self.device_key).map_err(|_| refused.clone())?;
        let key = vettid_crypto::sign::VerifyingKey::from_slice(&key_bytes)
            .map_err(|_| refused.clone())?;
        let message = refresh_message(self.member, self.nats_key, self.timestamp.unsigned_abs());
        let signature = vettid_crypto::sign::Signature::from_bytes(self.signature);
        key.verify(&message, &signature).map_err(|_| refused)?;

        if (self.timestamp - app.now()).abs() > REFRESH_WINDOW_SECS {
            return Err(ApiError::Unauthorized(
                "timestamp is more than 120 s from the server's clock",
            ));
        }
        Ok(())
    }

    /// Spends the timestamp atomically (only an update that moves `last_refresh_ts` forward
    /// succeeds), so a signature cannot be replayed, not even concurrently.
    async fn spend(&self, app: &App) -> Result<(), ApiError> {
        let spent = sqlx::query(
            "UPDATE devices SET last_refresh_ts = ? WHERE device_public_key = ? AND member_id = ? \
             AND revoked_at IS NULL AND (last_refresh_ts IS NULL OR last_refresh_ts < ?)",
        )
        .bind(self.timestamp)
        .bind(self.device_key)
        .bind(self.member)
        .bind(self.timestamp)
        .execute(app.db())
        .await?;
        if spent.rows_affected() == 1 {
            Ok(())
        } else {
            Err(ApiError::Unauthorized(
                "timestamp is not newer than the last refresh (replayed request?)",
            ))
        }
    }
}

async fn ensure_device_active(app: &App, device_key: &str) -> Result<(), ApiError> {
    let revoked: Option<Option<i64>> =
        sqlx::query_scalar("SELECT revoked_at FROM devices WHERE device_public_key = ?")
            .bind(device_key)
            .fetch_optional(app.db())
            .await?;
    match revoked {
        Some(None) => Ok(()),
        _ => Err(ApiError::Unauthorized("this device has been revoked")),
    }
}

/// What a revocation did.
pub(crate) struct RevokeOutcome {
    pub(crate) keys: usize,
    pub(crate) devices: u64,
}

/// Cuts a member off NATS: ends their enrollments in progress, revokes their devices (so no
/// refresh succeeds), then revokes every user key ever issued to them in the account JWT and
/// pushes it to the server. The database is updated before the push, so a failed push (502)
/// leaves the member revoked here and a retry pushes again.
pub(crate) async fn revoke_member(app: &App, member: &str) -> Result<RevokeOutcome, ApiError> {
    app.nats()?;
    let member = validate::member_id(member)?;
    let known: Option<String> =
        sqlx::query_scalar("SELECT member_id FROM registrations WHERE member_id = ?")
            .bind(&member)
            .fetch_optional(app.db())
            .await?;
    known.ok_or(ApiError::NotFound("no such member"))?;

    let now = app.now();
    end_enrollments(app, &member, now).await?;
    let devices =
        sqlx::query("UPDATE devices SET revoked_at = ? WHERE member_id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(&member)
            .execute(app.db())
            .await?
            .rows_affected();
    let keys = revoke_issued(app, &member, None).await?;
    Ok(RevokeOutcome { keys, devices })
}

/// Revokes on the server every NATS user key ever issued to `member` (of `scope`, or any),
/// and pushes the account JWT. The database is updated before the push, so a failed push
/// (502) leaves the keys revoked here and a retry revokes and pushes them again. Returns how
/// many keys were revoked.
pub(crate) async fn revoke_issued(
    app: &App,
    member: &str,
    scope: Option<MemberScope>,
) -> Result<usize, ApiError> {
    revoke_keys(app, member, scope, Devices::All).await
}

/// As [`revoke_issued`], for every key of `member` except those issued to `keep_device`
/// (staged recovery: the new device keeps its credentials, every other device loses them).
pub(crate) async fn revoke_other_devices(
    app: &App,
    member: &str,
    keep_device: &str,
) -> Result<usize, ApiError> {
    revoke_keys(app, member, None, Devices::AllBut(keep_device)).await
}

/// As [`revoke_issued`], for the keys issued to `device` alone (a device removed from the
/// vault by another).
pub(crate) async fn revoke_device(
    app: &App,
    member: &str,
    device: &str,
) -> Result<usize, ApiError> {
    revoke_keys(app, member, None, Devices::Only(device)).await
}

/// Whose keys a revocation takes.
#[derive(Clone, Copy)]
enum Devices<'a> {
    All,
    AllBut(&'a str),
    Only(&'a str),
}

async fn revoke_keys(
    app: &App,
    member: &str,
    scope: Option<MemberScope>,
    devices: Devices<'_>,
) -> Result<usize, ApiError> {
    let nats = app.nats()?;
    let scope = scope.map(scope_name);
    let (keep, only) = match devices {
        Devices::All => (None, None),
        Devices::AllBut(d) => (Some(d), None),
        Devices::Only(d) => (None, Some(d)),
    };
    let keys: Vec<(String, i64)> = sqlx::query_as(
        "SELECT user_public_key, last_expires_at FROM nats_user_keys WHERE member_id = ? \
         AND (? IS NULL OR scope = ?) \
         AND (? IS NULL OR device_public_key IS NULL OR device_public_key != ?) \
         AND (? IS NULL OR device_public_key = ?) \
         ORDER BY user_public_key",
    )
    .bind(member)
    .bind(scope)
    .bind(scope)
    .bind(keep)
    .bind(keep)
    .bind(only)
    .bind(only)
    .fetch_all(app.db())
    .await?;
    let now = app.now();
    // Only keys with a JWT that may still be alive need a place in the account.
    let entries: Vec<Revocation> = keys
        .iter()
        .filter(|(_, expires)| may_live(app, *expires))
        .map(|(k, expires)| revocation(app, k, now.unsigned_abs(), *expires))
        .collect();
    let names = || keys.iter().map(|(k, _)| k.as_str());
    if entries.is_empty() {
        mark_revoked(app, names(), now, i64::MAX).await?;
        return Ok(keys.len());
    }
    let account_jwt = revoke_until(nats, entries).await?;
    mark_revoked(app, names(), now, i64::MAX).await?;
    push(nats, &account_jwt).await?;
    Ok(keys.len())
}

/// Expires every enrollment code and enrollment token of `member` still usable.
async fn end_enrollments(app: &App, member: &str, now: i64) -> Result<(), ApiError> {
    sqlx::query(
        "UPDATE enrollment_sessions SET expires_at = ? WHERE member_id = ? AND authenticated_at IS NULL AND expires_at > ?",
    )
    .bind(now)
    .bind(member)
    .bind(now)
    .execute(app.db())
    .await?;
    sqlx::query(
        "UPDATE enrollment_sessions SET token_expires_at = ? WHERE member_id = ? AND token_used_at IS NULL AND token_expires_at > ?",
    )
    .bind(now)
    .bind(member)
    .bind(now)
    .execute(app.db())
    .await?;
    Ok(())
}

/// Whether a JWT that the API recorded as expiring at `expires` may still be accepted by the
/// server (an hour of slack for the server's clock).
fn may_live(app: &App, expires: i64) -> bool {
    expires > app.now() - 3600
}

/// A revocation of `key` for JWTs issued up to `until`, kept until the later of the recorded
/// expiry and the longest any JWT issued up to `until` can live (so that a JWT recorded
/// after the expiry was read is still covered).
fn revocation(app: &App, key: &str, until: u64, expires: i64) -> Revocation {
    let longest = app
        .state
        .config
        .limits
        .member_jwt_lifetime
        .max(crate::enroll::ENROLLMENT_JWT)
        .as_secs();
    Revocation {
        key: key.to_owned(),
        issued_until: until,
        needed_until: expires.unsigned_abs().max(until.saturating_add(longest)),
    }
}

/// Adds `entries` (key, revoked for JWTs issued up to then) to the account's revocations
/// and returns the account JWT to push.
async fn revoke_until(nats: &NatsIssuing, entries: Vec<Revocation>) -> Result<String, ApiError> {
    let issuer = nats.issuer.clone();
    tokio::task::spawn_blocking(move || {
        let issuer = issuer.lock().unwrap_or_else(|p| p.into_inner());
        issuer.revoke_issued_until(&entries)
    })
    .await
    .map_err(|e| ApiError::internal("revocation task", e))?
    .map_err(|e| ApiError::internal("revoking NATS user keys", e))
}

/// Records `keys` as revoked at `now` (those not revoked already, and last issued before
/// `issued_before`: a key renewed meanwhile is left alone).
async fn mark_revoked<'k>(
    app: &App,
    keys: impl Iterator<Item = &'k str>,
    now: i64,
    issued_before: i64,
) -> Result<(), ApiError> {
    for key in keys {
        sqlx::query(
            "UPDATE nats_user_keys SET revoked_at = ? WHERE user_public_key = ? \
             AND revoked_at IS NULL AND last_issued_at < ?",
        )
        .bind(now)
        .bind(key)
        .bind(issued_before)
        .execute(app.db())
        .await?;
    }
    Ok(())
}

async fn push(nats: &NatsIssuing, account_jwt: &str) -> Result<(), ApiError> {
    let failed = ApiError::BadGateway(
        "the revocation is recorded but the NATS server did not confirm it; retry",
    );
    let pushed = tokio::time::timeout(
        PUSH_TIMEOUT,
        vettid_nats::push_account(&nats.nats_url, &nats.sys_creds, account_jwt),
    )
    .await;
    match pushed {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "pushing the account JWT failed");
            Err(failed)
        }
        Err(_) => {
            tracing::warn!("pushing the account JWT timed out");
            Err(failed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_message_layout_is_fixed() {
        let m = refresh_message("m", "UK", 0x0102_0304_0506_0708);
        let mut expected = b"vettid/v1/nats-refresh\0m\0UK\0".to_vec();
        expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(m, expected);
    }
}
