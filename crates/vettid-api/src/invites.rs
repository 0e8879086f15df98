//! Invites: codes an admin hands out, each good for `max_uses` registrations until it
//! expires. A use is taken atomically (`UPDATE … WHERE uses < max_uses`), so concurrent
//! registrations can never exceed `max_uses`.

use crate::ApiError;
use crate::db::{Db, is_unique_violation};
use crate::secret::random_bytes;
use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;

/// How long an invite lasts when no lifetime is given.
pub(crate) const DEFAULT_LIFETIME_SECS: u64 = 30 * 86_400;
const MIN_LIFETIME_SECS: u64 = 60;
const MAX_LIFETIME_SECS: u64 = 90 * 86_400;
const MAX_USES: u32 = 10_000;

/// A request for a new invite (body of `POST /v1/admin/invites`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewInvite {
    /// A custom code: 12–50 of `[A-Za-z0-9_-]`, case-sensitive. Default `VET-` + 16 upper hex.
    pub code: Option<String>,
    /// Registrations it allows, 1–10000 (default 1).
    pub max_uses: Option<u32>,
    /// Lifetime in seconds, 60 s to 90 days (default 30 days).
    pub expires_in_secs: Option<u64>,
    /// Whether registrations with it are approved at once (default false).
    pub auto_approve: Option<bool>,
}

/// An invite as stored.
#[derive(Serialize, Clone)]
pub struct Invite {
    /// The code registrants type.
    pub code: String,
    /// Registrations it allows.
    pub max_uses: u32,
    /// Registrations it was used for.
    pub uses: u32,
    /// Unix seconds after which it is refused.
    pub expires_at: i64,
    /// Whether registrations with it are approved at once.
    pub auto_approve: bool,
    /// Unix seconds of creation.
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
struct InviteRow {
    code: String,
    max_uses: i64,
    uses: i64,
    expires_at: i64,
    auto_approve: i64,
    created_at: i64,
}

impl From<InviteRow> for Invite {
    fn from(r: InviteRow) -> Invite {
        Invite {
            code: r.code,
            max_uses: u32::try_from(r.max_uses).unwrap_or(u32::MAX),
            uses: u32::try_from(r.uses).unwrap_or(u32::MAX),
            expires_at: r.expires_at,
            auto_approve: r.auto_approve != 0,
            created_at: r.created_at,
        }
    }
}

/// Checks `new` and stores the invite; 400 for values out of range, 409 if the code exists.
pub(crate) async fn create(
    db: &Db,
    new: NewInvite,
    actor: &str,
    now: i64,
) -> Result<Invite, ApiError> {
    let code = match new.code {
        Some(code) => crate::validate::invite_code(&code)?,
        None => format!("VET-{}", hex::encode_upper(random_bytes::<8>())),
    };
    let max_uses = new.max_uses.unwrap_or(1);
    if !(1..=MAX_USES).contains(&max_uses) {
        return Err(ApiError::bad_request("max_uses must be 1 to 10000"));
    }
    let lifetime = new.expires_in_secs.unwrap_or(DEFAULT_LIFETIME_SECS);
    if !(MIN_LIFETIME_SECS..=MAX_LIFETIME_SECS).contains(&lifetime) {
        return Err(ApiError::bad_request(
            "expires_in_secs must be 60 to 7776000 (90 days)",
        ));
    }
    let invite = Invite {
        code,
        max_uses,
        uses: 0,
        expires_at: now + i64::try_from(lifetime).unwrap_or(0),
        auto_approve: new.auto_approve.unwrap_or(false),
        created_at: now,
    };
    let inserted = sqlx::query(
        "INSERT INTO invites (code, max_uses, uses, expires_at, auto_approve, created_at, created_by) \
         VALUES (?, ?, 0, ?, ?, ?, ?)",
    )
    .bind(&invite.code)
    .bind(i64::from(invite.max_uses))
    .bind(invite.expires_at)
    .bind(i64::from(invite.auto_approve))
    .bind(now)
    .bind(actor)
    .execute(db)
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            Err(ApiError::Conflict("an invite with this code exists"))
        }
        other => other.map(|_| invite).map_err(ApiError::from),
    }
}

/// Every invite, newest first.
pub(crate) async fn list(db: &Db) -> Result<Vec<Invite>, ApiError> {
    let rows: Vec<InviteRow> = sqlx::query_as(
        "SELECT code, max_uses, uses, expires_at, auto_approve, created_at FROM invites \
         ORDER BY created_at DESC, code",
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(Invite::from).collect())
}

/// Takes one use of `code` inside the caller's transaction: 400 if unknown, 410 if expired or
/// used up. Atomic: the use is counted only if one is left at the moment of the update.
pub(crate) async fn take_use(
    tx: &mut SqliteConnection,
    code: &str,
    now: i64,
) -> Result<Invite, ApiError> {
    let taken = sqlx::query(
        "UPDATE invites SET uses = uses + 1 WHERE code = ? AND uses < max_uses AND expires_at > ?",
    )
    .bind(code)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let row: Option<InviteRow> = sqlx::query_as(
        "SELECT code, max_uses, uses, expires_at, auto_approve, created_at FROM invites WHERE code = ?",
    )
    .bind(code)
    .fetch_optional(&mut *tx)
    .await?;
    // Unknown, expired and spent invites get one answer: a guesser learns nothing of which
    // codes exist.
    match (taken.rows_affected(), row) {
        (1, Some(row)) => Ok(row.into()),
        _ => Err(ApiError::bad_request(
            "the invite code is not valid (unknown, expired or used up)",
        )),
    }
}
