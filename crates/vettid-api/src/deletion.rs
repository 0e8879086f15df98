//! Vault deletion: the member destroys their vault for good.
//!
//! ```text
//!  web (member)  POST /v1/vault/deletion ──► Waiting ──(delay, default 24 h)──► Ready
//!                  mail to the member            │                                │
//!                                                │       POST /v1/vault/deletion/confirm
//!                                                │         the hosts shred the vault in
//!                                                │         the enclave ──► Completed
//!  cancelled:    on the web (POST /v1/vault/deletion/cancel), at any stage before completion
//!  expired:      7 days after the delay ended without a confirmation
//! ```
//!
//! On completion every NATS key the member's devices and enrollments were ever given is
//! revoked, the devices stop counting as a vault, any recovery under way ends, and the member
//! may enroll a new device into a new, empty vault: this is also how a member takes back an
//! account whose enrollment code someone else used first. A device cannot cancel a deletion
//! (a device in the wrong hands would keep the vault); it is the web account's decision, with
//! the delay and the mail as the member's warning that someone else signed in as them.

use crate::ApiError;
use crate::app::App;
use crate::auth::Member;
use crate::delayed::{self, Kind, Row, Stage, View};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};

/// A request not confirmed this long after its delay ended expires.
pub(crate) const CONFIRM_WINDOW_SECS: i64 = 7 * 24 * 3600;

/// Why a request ended without completing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The member, on the web.
    Member,
    /// Noticed past its expiry.
    Expired,
    /// The member's mail could not be sent, so the request did not start.
    NotNotified,
}

impl Ended {
    fn as_str(self) -> &'static str {
        match self {
            Ended::Member => "cancelled_by_member",
            Ended::Expired => delayed::EXPIRED,
            Ended::NotNotified => "member_not_notified",
        }
    }
}

/// A request that is waiting or ready: only it can be cancelled or confirmed.
struct Live(Row);

impl Live {
    /// Ends the request; the row as it is now. Only one ending wins: 409 for the others.
    async fn end(self, app: &App, why: Ended) -> Result<Row, ApiError> {
        let now = app.now();
        let mut db = app.db().acquire().await?;
        if !delayed::end(
            &mut db,
            Kind::Deletion,
            &self.0.request_id,
            now,
            why.as_str(),
        )
        .await?
        {
            return Err(ApiError::Conflict("this deletion has already ended"));
        }
        Ok(self.0.ended(now, why.as_str()))
    }
}

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/v1/vault/deletion", post(request).get(status))
        .route("/v1/vault/deletion/cancel", post(cancel))
        .route("/v1/vault/deletion/confirm", post(confirm))
}

/// The member's live request if there is one, else the newest; a live one past its expiry is
/// recorded as expired.
async fn latest(app: &App, member: &str) -> Result<Option<Row>, ApiError> {
    match delayed::latest(app, Kind::Deletion, member).await? {
        Some(r) if r.expired_unrecorded(app.now()) => {
            Live(r).end(app, Ended::Expired).await.map(Some)
        }
        other => Ok(other),
    }
}

/// The member's live request, or 409.
async fn live(app: &App, member: &str) -> Result<Live, ApiError> {
    let now = app.now();
    latest(app, member)
        .await?
        .filter(|r| r.is_live(now))
        .map(Live)
        .ok_or(ApiError::Conflict("no deletion is under way"))
}

/// `POST /v1/vault/deletion` (member) → 201 with the new request. 409 if a deletion is
/// already under way. The member is mailed; a request whose mail
/// could not be sent does not start.
async fn request(
    State(app): State<App>,
    member: Member,
) -> Result<(StatusCode, Json<View>), ApiError> {
    // No check that the API knows of a vault: the enclave may hold one the member never
    // finalized (someone else's enrollment, a lost answer); shredding nothing is harmless.
    latest(&app, &member.member_id).await?;
    let now = app.now();
    let delay = i64::try_from(app.state.config.limits.deletion_delay.as_secs()).unwrap_or(i64::MAX);
    let ready_at = now.saturating_add(delay);
    let row = Row::new(
        &member.member_id,
        now,
        delay,
        ready_at.saturating_add(CONFIRM_WINDOW_SECS),
    );
    delayed::insert(
        &app,
        Kind::Deletion,
        &row,
        "a deletion is already under way; cancel it first",
    )
    .await?;
    let ready = crate::mail::rfc5322_date(row.ready_at);
    let told = app.mail_member(&member.member_id, |name| {
        (
            "Deletion of your VettID vault was requested".into(),
            format!(
                "Hello {name},\n\n\
                 Someone signed in as you asked to delete your vault. From {ready} it can be\n\
                 confirmed, and then the vault and every backup of it are destroyed for good\n\
                 (a file you exported yourself still opens with your recovery phrase).\n\n\
                 If this was not you, sign in and cancel it.\n"
            ),
        )
    });
    if let Err(e) = told.await {
        Live(row).end(&app, Ended::NotNotified).await?;
        return Err(e);
    }
    Ok((StatusCode::CREATED, Json(row.view(now))))
}

/// `GET /v1/vault/deletion` (member) → the newest request; 404 if there never was one.
async fn status(State(app): State<App>, member: Member) -> Result<Json<View>, ApiError> {
    let row = latest(&app, &member.member_id)
        .await?
        .ok_or(ApiError::NotFound("no deletion was requested"))?;
    Ok(Json(row.view(app.now())))
}

/// `POST /v1/vault/deletion/cancel` (member) → the cancelled request; 409 if none is under
/// way. The member is mailed.
async fn cancel(State(app): State<App>, member: Member) -> Result<Json<View>, ApiError> {
    let row = live(&app, &member.member_id)
        .await?
        .end(&app, Ended::Member)
        .await?;
    app.mail_member(&member.member_id, |name| {
        (
            "The deletion of your VettID vault was cancelled".into(),
            format!("Hello {name},\n\nThe deletion of your vault was cancelled; it stays.\n"),
        )
    })
    .await?;
    Ok(Json(row.view(app.now())))
}

/// `POST /v1/vault/deletion/confirm` (member) → the completed request. 409 while the delay
/// runs or when no deletion is under way. The request is claimed first (a cancel can no longer
/// win), then the member is cut off — any recovery ends, every device and NATS key is revoked
/// (pushed to the server), so nobody holding a device can enroll a vault again in the moment
/// the shred frees the slot — and then the hosts shred the vault. If the revocation or the
/// shred fails (502/503) the request is ready again and confirming again finishes it; the
/// devices stay revoked. Then the devices stop counting as a vault and the member is mailed.
async fn confirm(State(app): State<App>, member: Member) -> Result<Json<View>, ApiError> {
    let Live(row) = live(&app, &member.member_id).await?;
    let now = app.now();
    if row.stage(now) != Stage::Ready {
        return Err(ApiError::Conflict(
            "the deletion delay has not passed yet (see ready_at)",
        ));
    }
    app.nats()?;
    // Claimed: a cancel now gets 409 and the request stays the member's live one (so no new
    // one starts beside it); a claim left by a process that died stops counting after
    // `CONFIRMING_SECS`.
    let claimed = sqlx::query(
        "UPDATE deletion_requests SET confirming_at = ? WHERE request_id = ? \
         AND cancelled_at IS NULL AND completed_at IS NULL \
         AND (confirming_at IS NULL OR confirming_at < ?)",
    )
    .bind(now)
    .bind(&row.request_id)
    .bind(now - delayed::CONFIRMING_SECS)
    .execute(app.db())
    .await?;
    if claimed.rows_affected() != 1 {
        return Err(ApiError::Conflict(
            "this deletion has already ended, or is being confirmed",
        ));
    }
    // The rest runs to its end even if the member's connection drops.
    let work = {
        let (app, member_id, row) = (app.clone(), member.member_id.clone(), row.clone());
        tokio::spawn(async move { complete(&app, &member_id, row, now).await })
    };
    work.await
        .map_err(|e| ApiError::internal("deletion task", e))?
        .map(Json)
}

/// The confirmed deletion's work: cut the member off, shred, record. A failed revocation push
/// or shred releases the claim (ready again; the devices stay revoked).
async fn complete(app: &App, member: &str, row: Row, now: i64) -> Result<View, ApiError> {
    let shredded = async {
        crate::recovery::end_for_deletion(app, member).await?;
        crate::nats::revoke_member(app, member).await?;
        app.nats()?.shred(member).await
    }
    .await;
    let objects = match shredded {
        Ok(objects) => objects,
        Err(e) => {
            sqlx::query("UPDATE deletion_requests SET confirming_at = NULL WHERE request_id = ?")
                .bind(&row.request_id)
                .execute(app.db())
                .await?;
            return Err(e);
        }
    };
    let mut tx = app.db().begin().await?;
    sqlx::query("UPDATE deletion_requests SET completed_at = ? WHERE request_id = ?")
        .bind(now)
        .bind(&row.request_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM vaults WHERE member_id = ?")
        .bind(member)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE devices SET vault_deleted_at = ?, revoked_at = COALESCE(revoked_at, ?) \
         WHERE member_id = ? AND vault_deleted_at IS NULL",
    )
    .bind(now)
    .bind(now)
    .bind(member)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(objects, "vault shredded on the member's confirmation");
    app.mail_member(member, |name| {
        (
            "Your VettID vault was deleted".into(),
            format!(
                "Hello {name},\n\nYour vault and its backups were destroyed. You can enroll a \
                 device again to start a new, empty vault, and restore a file you exported \
                 into it with your recovery phrase.\n"
            ),
        )
    })
    .await?;
    Ok(Row {
        completed_at: Some(now),
        ..row
    }
    .view(now))
}
