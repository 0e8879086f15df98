//! Registration: a person with an invite asks to become a member. The registration is
//! `pending` until an admin approves or rejects it (or `approved` at once with an
//! auto-approve invite). Each registration gets its `member_id`, the name the member has on
//! NATS subjects and in the vault.

use crate::ApiError;
use crate::app::App;
use crate::db::{Db, is_unique_violation};
use crate::extract::{ApiJson, ClientIp};
use crate::ratelimit::ip_key;
use crate::secret::new_uuid;
use crate::validate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

/// Where a registration stands.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationStatus {
    /// Waiting for an admin.
    Pending,
    /// A member: may sign in and enroll.
    Approved,
    /// Refused.
    Rejected,
}

impl RegistrationStatus {
    /// The stored and answered name.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationStatus::Pending => "pending",
            RegistrationStatus::Approved => "approved",
            RegistrationStatus::Rejected => "rejected",
        }
    }

    /// Parses a stored or typed name.
    pub fn parse(s: &str) -> Option<RegistrationStatus> {
        match s {
            "pending" => Some(RegistrationStatus::Pending),
            "approved" => Some(RegistrationStatus::Approved),
            "rejected" => Some(RegistrationStatus::Rejected),
            _ => None,
        }
    }
}

/// A registration as listed to admins.
#[derive(Serialize, Debug, Clone)]
pub struct Registration {
    /// Its id.
    pub registration_id: String,
    /// The member's id (UUID v4).
    pub member_id: String,
    /// Lowercased email address.
    pub email: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Where it stands.
    pub status: RegistrationStatus,
    /// Unix seconds of registration.
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
struct RegistrationRow {
    registration_id: String,
    member_id: String,
    email: String,
    first_name: String,
    last_name: String,
    status: String,
    created_at: i64,
}

impl TryFrom<RegistrationRow> for Registration {
    type Error = ApiError;

    fn try_from(r: RegistrationRow) -> Result<Registration, ApiError> {
        let status = RegistrationStatus::parse(&r.status)
            .ok_or_else(|| ApiError::internal("registration row", "unknown status"))?;
        Ok(Registration {
            registration_id: r.registration_id,
            member_id: r.member_id,
            email: r.email,
            first_name: r.first_name,
            last_name: r.last_name,
            status,
            created_at: r.created_at,
        })
    }
}

pub(crate) fn routes() -> Router<App> {
    Router::new().route("/v1/register", post(register))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    first_name: String,
    last_name: String,
    email: String,
    invite_code: String,
}

#[derive(Serialize)]
struct Registered {
    registration_id: String,
    member_id: String,
    status: RegistrationStatus,
}

/// `POST /v1/register` → 201 `{registration_id, member_id, status}`.
///
/// Order matters for privacy: the invite is checked before the email, so only an invite
/// holder can learn (through 409) that an address is registered, and a refused registration
/// gives its invite use back (one transaction).
async fn register(
    State(app): State<App>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    let first_name = validate::person_name("first_name", &req.first_name)?;
    let last_name = validate::person_name("last_name", &req.last_name)?;
    let email = validate::email(&req.email)?;
    let code = validate::invite_code(&req.invite_code)
        .map_err(|_| ApiError::bad_request("the invite code is not valid"))?;
    let limits = &app.state.config.limits;
    app.rate_limit("register", &ip_key(ip), limits.register_per_ip)?;

    let now = app.now();
    let mut tx = app.db().begin().await?;
    let invite = crate::invites::take_use(&mut tx, &code, now).await?;
    let status = if invite.auto_approve {
        RegistrationStatus::Approved
    } else {
        RegistrationStatus::Pending
    };
    let done = Registered {
        registration_id: new_uuid(),
        member_id: new_uuid(),
        status,
    };
    let inserted = sqlx::query(
        "INSERT INTO registrations (registration_id, member_id, email, first_name, last_name, \
         invite_code, status, created_at, decided_at, decided_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&done.registration_id)
    .bind(&done.member_id)
    .bind(&email)
    .bind(&first_name)
    .bind(&last_name)
    .bind(&code)
    .bind(status.as_str())
    .bind(now)
    .bind(invite.auto_approve.then_some(now))
    .bind(invite.auto_approve.then_some("auto"))
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            return Err(ApiError::Conflict(
                "registration could not be completed with these details",
            ));
        }
        other => other?,
    };
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(done)))
}

/// Registrations with `status` (all when `None`), oldest first.
pub(crate) async fn list(
    db: &Db,
    status: Option<RegistrationStatus>,
) -> Result<Vec<Registration>, ApiError> {
    let rows: Vec<RegistrationRow> = sqlx::query_as(
        "SELECT registration_id, member_id, email, first_name, last_name, status, created_at \
         FROM registrations WHERE (? IS NULL OR status = ?) ORDER BY created_at, registration_id",
    )
    .bind(status.map(RegistrationStatus::as_str))
    .bind(status.map(RegistrationStatus::as_str))
    .fetch_all(db)
    .await?;
    rows.into_iter().map(Registration::try_from).collect()
}

/// The registration of `email` (already canonical), if any.
pub(crate) async fn find_by_email(db: &Db, email: &str) -> Result<Option<Registration>, ApiError> {
    let row: Option<RegistrationRow> = sqlx::query_as(
        "SELECT registration_id, member_id, email, first_name, last_name, status, created_at \
         FROM registrations WHERE email = ?",
    )
    .bind(email)
    .fetch_optional(db)
    .await?;
    row.map(Registration::try_from).transpose()
}

async fn find(db: &Db, registration_id: &str) -> Result<Option<Registration>, ApiError> {
    let row: Option<RegistrationRow> = sqlx::query_as(
        "SELECT registration_id, member_id, email, first_name, last_name, status, created_at \
         FROM registrations WHERE registration_id = ?",
    )
    .bind(registration_id)
    .fetch_optional(db)
    .await?;
    row.map(Registration::try_from).transpose()
}

/// An admin's decision on a pending registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Approve,
    Reject,
}

impl Decision {
    fn target(self) -> RegistrationStatus {
        match self {
            Decision::Approve => RegistrationStatus::Approved,
            Decision::Reject => RegistrationStatus::Rejected,
        }
    }

    pub(crate) fn audit_action(self) -> &'static str {
        match self {
            Decision::Approve => "registration.approve",
            Decision::Reject => "registration.reject",
        }
    }
}

/// Moves a pending registration to approved or rejected. Deciding the same way twice is
/// idempotent (the registration is returned); the other way is 409; unknown is 404. Atomic:
/// only a `pending` row is changed.
pub(crate) async fn decide(
    db: &Db,
    registration_id: &str,
    decision: Decision,
    actor: &str,
    now: i64,
) -> Result<Registration, ApiError> {
    let target = decision.target();
    sqlx::query(
        "UPDATE registrations SET status = ?, decided_at = ?, decided_by = ? \
         WHERE registration_id = ? AND status = 'pending'",
    )
    .bind(target.as_str())
    .bind(now)
    .bind(actor)
    .bind(registration_id)
    .execute(db)
    .await?;
    let r = find(db, registration_id)
        .await?
        .ok_or(ApiError::NotFound("no such registration"))?;
    if r.status == target {
        Ok(r)
    } else {
        Err(ApiError::Conflict(match decision {
            Decision::Approve => "the registration was rejected",
            Decision::Reject => "the registration was approved",
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for s in [
            RegistrationStatus::Pending,
            RegistrationStatus::Approved,
            RegistrationStatus::Rejected,
        ] {
            assert_eq!(RegistrationStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(RegistrationStatus::parse("Approved"), None);
    }
}
