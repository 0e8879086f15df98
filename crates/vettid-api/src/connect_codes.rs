//! Connect codes: a directory of sealed connection invitations that the server cannot read.
//!
//! A member's vault makes a connection invitation (about 1.3 KB, too long to type). The app
//! shows it as a QR code and as a short code (`ABCD-EFGH-JKMN-PQRS`, 80 bits) from which it
//! derives, on the device, a lookup id, an AEAD key and a delete token. It seals the
//! invitation under the key and leaves it here; the invitee's app derives the same three from
//! the typed code, fetches the blob by lookup id and opens it.
//!
//! ```text
//!  inviter app  POST /v1/connect-codes {lookup, sealed, expires_at, delete_hash}  ──► 201
//!  invitee app  GET /v1/connect-codes/{lookup}  ──► 200 {sealed, expires_at} ──► opens it
//!  inviter app  DELETE /v1/connect-codes/{lookup} {delete_token}  ──► 204 (gone at once)
//! ```
//!
//! ## What the server sees
//!
//! Per entry: the lookup id (16 bytes), the sealed blob (opaque, at most
//! [`MAX_SEALED_BYTES`]), its expiry and SHA-256 of the delete token. Never the code, the key,
//! the token itself or the invitation; no member, address or creation time is stored with an
//! entry, and nothing of an entry is logged. Lookup ids travel in URL paths, so a proxy's
//! access log may hold them: a lookup id fetches the blob, which is useless without the code.
//!
//! ## What it guarantees
//!
//! - An entry is answered only until its `expires_at` (at most [`MAX_LIFETIME_SECS`] after it
//!   was made); from then on it is absent (404, the same answer as for a lookup never made),
//!   and its row is deleted when the next entry is made.
//! - Only the holder of the delete token removes an entry before it expires; a wrong token and
//!   an absent entry get the same 404. The presented token is hashed and compared in constant
//!   time.
//! - One lookup id has at most one live entry (409 for a second): nobody can replace an
//!   invitation they did not make.
//!
//! ## What it does not guarantee
//!
//! Anyone may create an entry (no member session: a blob is useless without its code), so
//! abuse is bounded only by the per-IP rates ([`crate::Limits::connect_code_create_per_ip`],
//! [`crate::Limits::connect_code_lookup_per_ip`]), the size cap, the expiry and a global cap
//! on live entries ([`crate::Limits::connect_codes_max_live`]; beyond it, 503 until some
//! expire). A full directory denies service to new invitations; that is the price of not
//! asking who makes them. Whoever reads the database can try codes offline against a blob
//! until it expires: the code's 80 bits and the app's key derivation are what protect it.

use crate::ApiError;
use crate::app::App;
use crate::db::is_unique_violation;
use crate::extract::{ApiJson, ApiPath, ClientIp};
use crate::ratelimit::ip_key;
use crate::validate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// Largest sealed invitation accepted, in bytes (an invitation is about 1.3 KB).
pub(crate) const MAX_SEALED_BYTES: usize = 4096;
/// Longest time an entry may live: its `expires_at` is at most this far from now.
pub(crate) const MAX_LIFETIME_SECS: i64 = 7 * 24 * 3600;

/// The one answer for an entry that is absent, expired, or not deletable with this token.
const ABSENT: ApiError = ApiError::NotFound("no such connect code, or it has expired");

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/v1/connect-codes", post(create))
        .route("/v1/connect-codes/{lookup}", get(fetch).delete(remove))
}

/// A lookup id in its one accepted spelling: 16 bytes as 32 lowercase hex characters (the
/// stored and answered form).
struct Lookup(String);

impl Lookup {
    fn parse(value: &str) -> Result<Lookup, ApiError> {
        validate::lower_hex::<16>("lookup", value)?;
        Ok(Lookup(value.to_owned()))
    }
}

/// A sealed invitation, checked for size before and after decoding; its canonical base64url
/// text (the stored and answered form).
fn sealed(value: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "sealed must be 1 to {MAX_SEALED_BYTES} bytes, base64url without padding"
        ))
    };
    // Refused before decoding: no work for a blob that cannot fit.
    if value.is_empty() || value.len() > MAX_SEALED_BYTES.div_ceil(3) * 4 {
        return Err(bad());
    }
    let bytes = URL_SAFE_NO_PAD.decode(value).map_err(|_| bad())?;
    if !(1..=MAX_SEALED_BYTES).contains(&bytes.len()) {
        return Err(bad());
    }
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// An expiry that is in the future and at most [`MAX_LIFETIME_SECS`] away.
fn expiry(expires_at: i64, now: i64) -> Result<i64, ApiError> {
    if expires_at <= now || expires_at > now.saturating_add(MAX_LIFETIME_SECS) {
        return Err(ApiError::bad_request(
            "expires_at must be in the future and at most 7 days from now (unix seconds)",
        ));
    }
    Ok(expires_at)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    lookup: String,
    sealed: String,
    expires_at: i64,
    delete_hash: String,
}

/// An entry whose every field was checked, ready to store.
struct NewEntry {
    lookup: Lookup,
    sealed: String,
    expires_at: i64,
    delete_hash: String,
}

impl NewEntry {
    fn parse(req: CreateRequest, now: i64) -> Result<NewEntry, ApiError> {
        let lookup = Lookup::parse(&req.lookup)?;
        let sealed = sealed(&req.sealed)?;
        let expires_at = expiry(req.expires_at, now)?;
        validate::lower_hex::<32>("delete_hash", &req.delete_hash)?;
        Ok(NewEntry {
            lookup,
            sealed,
            expires_at,
            delete_hash: req.delete_hash,
        })
    }

    /// Stores the entry, after deleting every expired one (so an expired lookup can be made
    /// again). 409 if the lookup is live; 503 if `max_live` entries are. The cap is checked in
    /// the insert itself, so concurrent creations cannot pass it together.
    async fn insert(&self, app: &App, now: i64, max_live: u32) -> Result<(), ApiError> {
        let mut tx = app.db().begin().await?;
        sqlx::query("DELETE FROM connect_codes WHERE expires_at <= ?")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO connect_codes (lookup, sealed, expires_at, delete_hash) \
             SELECT ?, ?, ?, ? WHERE (SELECT COUNT(*) FROM connect_codes) < ?",
        )
        .bind(&self.lookup.0)
        .bind(&self.sealed)
        .bind(self.expires_at)
        .bind(&self.delete_hash)
        .bind(i64::from(max_live))
        .execute(&mut *tx)
        .await;
        let inserted = match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(ApiError::Conflict(
                    "a connect code with this lookup exists until it expires",
                ));
            }
            other => other?,
        };
        if inserted.rows_affected() != 1 {
            return Err(ApiError::ServiceUnavailable(
                "the connect-code directory is full; try again later",
            ));
        }
        tx.commit().await?;
        Ok(())
    }
}

#[derive(Serialize)]
struct Created {
    lookup: String,
    expires_at: i64,
}

/// `POST /v1/connect-codes` (anyone) `{lookup, sealed, expires_at, delete_hash}` → 201
/// `{lookup, expires_at}`. 400 for any malformed field, 409 while an entry with this lookup
/// lives, 429 over the per-IP rate, 503 when the directory is full.
async fn create(
    State(app): State<App>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<CreateRequest>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let now = app.now();
    let entry = NewEntry::parse(req, now)?;
    let limits = &app.state.config.limits;
    app.rate_limit(
        "connect_code_create",
        &ip_key(ip),
        limits.connect_code_create_per_ip,
    )?;
    entry
        .insert(&app, now, limits.connect_codes_max_live)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            lookup: entry.lookup.0,
            expires_at: entry.expires_at,
        }),
    ))
}

/// Counts one `GET` or `DELETE` of an entry against the client's rate.
fn count_lookup(app: &App, ip: std::net::IpAddr) -> Result<(), ApiError> {
    let rate = app.state.config.limits.connect_code_lookup_per_ip;
    app.rate_limit("connect_code_lookup", &ip_key(ip), rate)
}

#[derive(Serialize)]
struct Entry {
    sealed: String,
    expires_at: i64,
}

/// `GET /v1/connect-codes/{lookup}` (anyone) → 200 `{sealed, expires_at}`. 400 for a malformed
/// lookup, 404 for an absent or expired entry (one answer for both), 429 over the per-IP rate.
async fn fetch(
    State(app): State<App>,
    ClientIp(ip): ClientIp,
    ApiPath(lookup): ApiPath,
) -> Result<Json<Entry>, ApiError> {
    let lookup = Lookup::parse(&lookup)?;
    count_lookup(&app, ip)?;
    let entry: Option<(String, i64)> = sqlx::query_as(
        "SELECT sealed, expires_at FROM connect_codes WHERE lookup = ? AND expires_at > ?",
    )
    .bind(&lookup.0)
    .bind(app.now())
    .fetch_optional(app.db())
    .await?;
    let (sealed, expires_at) = entry.ok_or(ABSENT)?;
    Ok(Json(Entry { sealed, expires_at }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteRequest {
    delete_token: String,
}

/// `DELETE /v1/connect-codes/{lookup}` (the maker) `{delete_token}` → 204 when SHA-256 of the
/// token's 32 bytes is the entry's `delete_hash`. 404 for a wrong token and for an absent or
/// expired entry alike; 400 for a malformed lookup or token; 429 over the per-IP rate (shared
/// with `GET`).
async fn remove(
    State(app): State<App>,
    ClientIp(ip): ClientIp,
    ApiPath(lookup): ApiPath,
    ApiJson(req): ApiJson<DeleteRequest>,
) -> Result<StatusCode, ApiError> {
    let lookup = Lookup::parse(&lookup)?;
    let token = validate::lower_hex::<32>("delete_token", &req.delete_token)?;
    count_lookup(&app, ip)?;
    let presented = sha2::Sha256::digest(token);
    let stored: Option<String> = sqlx::query_scalar(
        "SELECT delete_hash FROM connect_codes WHERE lookup = ? AND expires_at > ?",
    )
    .bind(&lookup.0)
    .bind(app.now())
    .fetch_optional(app.db())
    .await?;
    let matches = stored.as_deref().is_some_and(|stored| {
        hex::decode(stored).is_ok_and(|stored| vettid_crypto::ct_eq(&stored, &presented))
    });
    if !matches {
        return Err(ABSENT);
    }
    let deleted = sqlx::query("DELETE FROM connect_codes WHERE lookup = ?")
        .bind(&lookup.0)
        .execute(app.db())
        .await?;
    // Zero rows: a concurrent delete with the same token won; this one finds nothing.
    if deleted.rows_affected() != 1 {
        return Err(ABSENT);
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_blobs_are_1_to_4096_bytes_of_unpadded_base64url() {
        let of = |n: usize| URL_SAFE_NO_PAD.encode(vec![0xa5; n]);
        assert_eq!(sealed(&of(1)).unwrap(), of(1));
        assert_eq!(sealed(&of(MAX_SEALED_BYTES)).unwrap(), of(MAX_SEALED_BYTES));
        let padded = base64::engine::general_purpose::URL_SAFE.encode([1u8]);
        let standard = base64::engine::general_purpose::STANDARD_NO_PAD.encode([0xfb; 3]);
        for bad in [
            String::new(),
            of(MAX_SEALED_BYTES + 1),
            padded,
            standard,
            "A".into(),  // not a whole byte
            "AB".into(), // trailing bits set: not the canonical spelling of one byte
            "a b c d".into(),
        ] {
            assert!(sealed(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn expiry_is_after_now_and_within_seven_days() {
        let now = 1_000_000;
        assert!(expiry(now + 1, now).is_ok());
        assert!(expiry(now + MAX_LIFETIME_SECS, now).is_ok());
        for bad in [
            now,
            now - 1,
            now + MAX_LIFETIME_SECS + 1,
            i64::MIN,
            i64::MAX,
        ] {
            assert!(expiry(bad, now).is_err(), "{bad}");
        }
    }
}
