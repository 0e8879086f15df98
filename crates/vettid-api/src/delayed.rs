//! Requests that wait out a delay before they can be completed — staged recovery
//! (`recovery.rs`) and vault deletion (`deletion.rs`): their stages, rows, views and
//! bookkeeping, in one place. Each keeps its own reasons for ending and what completing does.
//!
//! ```text
//!  requested ─► Waiting ─(ready_at)─► Ready ─► Completed
//!                   └────────┴──► Cancelled (a reason) │ Expired (expires_at, recorded when noticed)
//! ```
//!
//! One live (waiting or ready) request per member and kind: a partial unique index on each
//! table, so concurrent requests cannot both start.

use crate::ApiError;
use crate::app::App;
use serde::Serialize;

/// Which kind of request (its table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `recovery_requests`.
    Recovery,
    /// `deletion_requests`.
    Deletion,
}

impl Kind {
    fn table(self) -> &'static str {
        match self {
            Kind::Recovery => "recovery_requests",
            Kind::Deletion => "deletion_requests",
        }
    }
}

/// The stored reason of an expiry (each kind's own reasons are other words).
pub(crate) const EXPIRED: &str = "expired";

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Stage {
    /// The delay is running; the member has been told.
    Waiting,
    /// The delay has passed: it can be completed.
    Ready,
    /// Completed.
    Completed,
    /// Cancelled (see the reason).
    Cancelled,
    /// Not completed in time.
    Expired,
}

/// A request as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Row {
    pub(crate) request_id: String,
    pub(crate) member_id: String,
    pub(crate) requested_at: i64,
    pub(crate) ready_at: i64,
    pub(crate) expires_at: i64,
    pub(crate) cancelled_at: Option<i64>,
    pub(crate) cancel_reason: Option<String>,
    pub(crate) completed_at: Option<i64>,
}

const COLUMNS: &str = "request_id, member_id, requested_at, ready_at, expires_at, cancelled_at, \
                       cancel_reason, completed_at";

impl Row {
    /// A new request of `member` made `now`, ready after `delay` seconds, expiring at
    /// `expires_at`.
    pub(crate) fn new(member: &str, now: i64, delay: i64, expires_at: i64) -> Row {
        Row {
            request_id: crate::secret::new_uuid(),
            member_id: member.to_owned(),
            requested_at: now,
            ready_at: now.saturating_add(delay),
            expires_at,
            cancelled_at: None,
            cancel_reason: None,
            completed_at: None,
        }
    }

    pub(crate) fn stage(&self, now: i64) -> Stage {
        match (self.completed_at, &self.cancel_reason) {
            (Some(_), _) => Stage::Completed,
            (None, Some(r)) if r == EXPIRED => Stage::Expired,
            (None, Some(_)) => Stage::Cancelled,
            (None, None) if now >= self.expires_at => Stage::Expired,
            (None, None) if now >= self.ready_at => Stage::Ready,
            (None, None) => Stage::Waiting,
        }
    }

    /// Waiting or ready.
    pub(crate) fn is_live(&self, now: i64) -> bool {
        matches!(self.stage(now), Stage::Waiting | Stage::Ready)
    }

    /// Past its expiry, and not yet recorded as expired.
    pub(crate) fn expired_unrecorded(&self, now: i64) -> bool {
        self.stage(now) == Stage::Expired && self.cancel_reason.is_none()
    }

    /// The row as it is once ended at `now` for `reason`.
    pub(crate) fn ended(self, now: i64, reason: &str) -> Row {
        Row {
            cancelled_at: Some(now),
            cancel_reason: Some(reason.to_owned()),
            ..self
        }
    }

    pub(crate) fn view(&self, now: i64) -> View {
        View {
            request_id: self.request_id.clone(),
            stage: self.stage(now),
            requested_at: self.requested_at,
            ready_at: self.ready_at,
            expires_at: self.expires_at,
            cancelled_at: self.cancelled_at,
            cancel_reason: self.cancel_reason.clone(),
            completed_at: self.completed_at,
        }
    }
}

/// A request as the web page (and a device) sees it.
#[derive(Serialize)]
pub(crate) struct View {
    request_id: String,
    stage: Stage,
    requested_at: i64,
    ready_at: i64,
    expires_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancelled_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancel_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed_at: Option<i64>,
}

/// The member's live request of `kind` if there is one, else the newest (completed first
/// among those made in the same second).
pub(crate) async fn latest(app: &App, kind: Kind, member: &str) -> Result<Option<Row>, ApiError> {
    // (A completed deletion is what a member wants to see after it, even beside a request of
    // the same second; for recovery the latest ending comes first.)
    let completed_first = match kind {
        Kind::Deletion => "CASE WHEN completed_at IS NULL THEN 1 ELSE 0 END, ",
        Kind::Recovery => "",
    };
    let q = format!(
        "SELECT {COLUMNS} FROM {} WHERE member_id = ? \
         ORDER BY CASE WHEN cancelled_at IS NULL AND completed_at IS NULL THEN 0 ELSE 1 END, \
         requested_at DESC, {completed_first}\
         COALESCE(cancelled_at, completed_at) DESC LIMIT 1",
        kind.table()
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(q))
        .bind(member)
        .fetch_optional(app.db())
        .await?)
}

/// Request `request_id` of `kind`.
pub(crate) async fn by_id(
    app: &App,
    kind: Kind,
    request_id: &str,
) -> Result<Option<Row>, ApiError> {
    let q = format!(
        "SELECT {COLUMNS} FROM {} WHERE request_id = ?",
        kind.table()
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(q))
        .bind(request_id)
        .fetch_optional(app.db())
        .await?)
}

/// Stores a new request; `busy` (409) if the member already has a live one of this kind.
pub(crate) async fn insert(
    app: &App,
    kind: Kind,
    row: &Row,
    busy: &'static str,
) -> Result<(), ApiError> {
    let q = format!(
        "INSERT INTO {} (request_id, member_id, requested_at, ready_at, expires_at) \
         VALUES (?, ?, ?, ?, ?)",
        kind.table()
    );
    let inserted = sqlx::query(sqlx::AssertSqlSafe(q))
        .bind(&row.request_id)
        .bind(&row.member_id)
        .bind(row.requested_at)
        .bind(row.ready_at)
        .bind(row.expires_at)
        .execute(app.db())
        .await;
    match inserted {
        Err(e) if crate::db::is_unique_violation(&e) => Err(ApiError::Conflict(busy)),
        other => other.map(|_| ()).map_err(ApiError::from),
    }
}

/// How long a deletion's confirmation holds off a cancel (its shred answers within a minute;
/// a mark older than this was left by a process that died).
pub(crate) const CONFIRMING_SECS: i64 = 5 * 60;

/// Ends live request `request_id` of `kind` at `now` for `reason`; `false` if it was no
/// longer live (another ending won) or, for a deletion, a confirmation is shredding it.
pub(crate) async fn end(
    db: &mut sqlx::SqliteConnection,
    kind: Kind,
    request_id: &str,
    now: i64,
    reason: &str,
) -> Result<bool, ApiError> {
    let not_confirming = match kind {
        Kind::Deletion => " AND (confirming_at IS NULL OR confirming_at < ?)",
        Kind::Recovery => "",
    };
    let q = format!(
        "UPDATE {} SET cancelled_at = ?, cancel_reason = ? \
         WHERE request_id = ? AND cancelled_at IS NULL AND completed_at IS NULL{not_confirming}",
        kind.table()
    );
    let mut update = sqlx::query(sqlx::AssertSqlSafe(q))
        .bind(now)
        .bind(reason)
        .bind(request_id);
    if kind == Kind::Deletion {
        update = update.bind(now - CONFIRMING_SECS);
    }
    let ended = update.execute(&mut *db).await?;
    Ok(ended.rows_affected() == 1)
}
