//! Member sign-in by magic link, and member sessions.
//!
//! `POST /v1/auth/magic-link` answers 202 whatever the address, at once, and does the work
//! (find an approved registration, create a token, queue the mail) after the response, so
//! neither the answer nor its timing tells whether the address is registered. The link's token
//! is single-use and lives 15 minutes, and a newer link ends the older unused ones;
//! `POST /v1/auth/verify` spends it for a member session (12 hours), which
//! `POST /v1/auth/sign-out` ends. Both are stored only as keyed digests.

use crate::ApiError;
use crate::app::App;
use crate::extract::{ApiJson, ClientIp, bearer};
use crate::mail::Mail;
use crate::ratelimit::ip_key;
use crate::secret::Secret;
use crate::validate;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

/// Lifetime of a magic-link token.
pub(crate) const MAGIC_LINK_SECS: i64 = 15 * 60;
/// Lifetime of a member session.
pub(crate) const MEMBER_SESSION_SECS: i64 = 12 * 3600;

/// A signed-in member (from `Authorization: Bearer <session token>`) whose registration is
/// approved. Handlers that take one act only for this member.
pub(crate) struct Member {
    pub(crate) member_id: String,
    /// The digest of the session token presented.
    session_hash: String,
}

impl FromRequestParts<App> for Member {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Member, ApiError> {
        let token = bearer(parts)?;
        let session_hash = app.digest(&token);
        let row: Option<(String, i64)> = sqlx::query_as(
            "SELECT s.member_id, s.expires_at FROM member_sessions s \
             JOIN registrations r ON r.member_id = s.member_id \
             WHERE s.token_hash = ? AND r.status = 'approved'",
        )
        .bind(&session_hash)
        .fetch_optional(app.db())
        .await?;
        match row {
            None => Err(ApiError::Unauthorized("invalid session token")),
            Some((_, expires_at)) if expires_at <= app.now() => {
                Err(ApiError::Unauthorized("session expired; sign in again"))
            }
            Some((member_id, _)) => {
                ensure_not_suspended(app, &member_id).await?;
                Ok(Member {
                    member_id,
                    session_hash,
                })
            }
        }
    }
}

/// Whether an admin has suspended `member`.
pub(crate) async fn is_suspended(app: &App, member: &str) -> Result<bool, ApiError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM member_suspensions WHERE member_id = ?")
        .bind(member)
        .fetch_one(app.db())
        .await?;
    Ok(n > 0)
}

/// `Forbidden` for a suspended member: checked by the member extractor, sign-in, enrollment,
/// finalize and credential renewal.
pub(crate) async fn ensure_not_suspended(app: &App, member: &str) -> Result<(), ApiError> {
    if is_suspended(app, member).await? {
        return Err(ApiError::Forbidden("this membership is suspended"));
    }
    Ok(())
}

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/v1/auth/magic-link", post(magic_link))
        .route("/v1/auth/verify", post(verify))
        .route("/v1/auth/sign-out", post(sign_out))
}

#[derive(Serialize)]
struct SignedOut {
    signed_out: bool,
}

/// `POST /v1/auth/sign-out` (member) → this session token stops working at once (other
/// sessions of the member are not touched).
async fn sign_out(State(app): State<App>, member: Member) -> Result<Json<SignedOut>, ApiError> {
    sqlx::query(
        "UPDATE member_sessions SET expires_at = ? WHERE token_hash = ? AND expires_at > ?",
    )
    .bind(app.now())
    .bind(&member.session_hash)
    .bind(app.now())
    .execute(app.db())
    .await?;
    Ok(Json(SignedOut { signed_out: true }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MagicLinkRequest {
    email: String,
}

#[derive(Serialize)]
struct MagicLinkAccepted {
    status: &'static str,
}

/// `POST /v1/auth/magic-link {email}` → always 202 `{"status":"sent_if_registered"}` (400
/// for a malformed address, 429 over the per-IP or per-address limit, counted for every
/// address alike).
async fn magic_link(
    State(app): State<App>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<MagicLinkRequest>,
) -> Result<(StatusCode, Json<MagicLinkAccepted>), ApiError> {
    let email = validate::email(&req.email)?;
    let limits = &app.state.config.limits;
    app.rate_limit("magic_link_ip", &ip_key(ip), limits.magic_link_per_ip)?;
    // Per address *and* email, so that from other addresses nobody can spend a member's
    // allowance; and ten times that per email from everywhere, so mail to one address stays
    // bounded.
    let key = format!("{}|{email}", ip_key(ip));
    app.rate_limit("magic_link_email", &key, limits.magic_link_per_email)?;
    let all = crate::config::Rate {
        max: limits.magic_link_per_email.max.saturating_mul(10),
        per: limits.magic_link_per_email.per,
    };
    app.rate_limit("magic_link_email_all", &email, all)?;
    let worker = app.clone();
    app.spawn_background(async move {
        if let Err(e) = send_magic_link(&worker, &email).await {
            tracing::warn!(error = %e, "a magic link could not be sent");
        }
    });
    let accepted = MagicLinkAccepted {
        status: "sent_if_registered",
    };
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// If `email` belongs to an approved registration: stores a new single-use token, ends the
/// member's older unused ones, and mails the link. Otherwise does nothing.
async fn send_magic_link(app: &App, email: &str) -> Result<(), ApiError> {
    let Some(r) = crate::registration::find_by_email(app.db(), email).await? else {
        return Ok(());
    };
    if r.status != crate::registration::RegistrationStatus::Approved
        || is_suspended(app, &r.member_id).await?
    {
        return Ok(());
    }
    let now = app.now();
    let token = Secret::random_token();
    let mut tx = app.db().begin().await?;
    sqlx::query(
        "UPDATE magic_links SET expires_at = ? WHERE member_id = ? AND used_at IS NULL \
         AND expires_at > ?",
    )
    .bind(now)
    .bind(&r.member_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO magic_links (token_hash, member_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
    )
    .bind(app.digest(&token))
    .bind(&r.member_id)
    .bind(now)
    .bind(now + MAGIC_LINK_SECS)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let mail = magic_link_mail(app, &r.email, &r.first_name, &token);
    let mailer = app.state.mailer.clone();
    let date = app.state.clock.now();
    tokio::task::spawn_blocking(move || mailer.send(&mail, date))
        .await
        .map_err(|e| ApiError::internal("mail task", e))?
        .map_err(|e| ApiError::internal("sending a magic link", e))
}

fn magic_link_mail(app: &App, to: &str, first_name: &str, token: &Secret) -> Mail {
    let link = format!("{}/auth#token={}", app.state.public_url, token.expose());
    Mail {
        from: app.state.mail_from.clone(),
        to: to.to_owned(),
        subject: "Your VettID sign-in link".into(),
        body: format!(
            "Hello {first_name},\n\n\
             Sign in to VettID with this link. It works once, within 15 minutes:\n\n\
             {link}\n\n\
             Or paste this token where the app asks for it:\n\n\
             Token: {}\n\n\
             If you did not ask to sign in, ignore this message.\n",
            token.expose()
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    token: Secret,
}

#[derive(Serialize)]
struct SessionIssued {
    session_token: Secret,
    member_id: String,
    expires_at: i64,
}

/// `POST /v1/auth/verify {token}` → 200 `{session_token, member_id, expires_at}`; the token is
/// spent atomically (a second use, or an expired token, is 410; an unknown one 401).
async fn verify(
    State(app): State<App>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> Result<Json<SessionIssued>, ApiError> {
    validate::token_shape("token", req.token.expose())?;
    let limits = &app.state.config.limits;
    app.rate_limit("verify", &ip_key(ip), limits.verify_per_ip)?;
    let member_id = spend_magic_link(&app, &req.token).await?;
    let session = start_session(&app, &member_id).await?;
    Ok(Json(session))
}

/// Spends a magic-link token once (only the request whose update changed the row wins) and
/// returns the member it signs in, who must still be approved.
async fn spend_magic_link(app: &App, token: &Secret) -> Result<String, ApiError> {
    let now = app.now();
    let hash = app.digest(token);
    let spent = sqlx::query(
        "UPDATE magic_links SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?",
    )
    .bind(now)
    .bind(&hash)
    .bind(now)
    .execute(app.db())
    .await?;
    let member: Option<(String, String)> = sqlx::query_as(
        "SELECT m.member_id, r.status FROM magic_links m \
         JOIN registrations r ON r.member_id = m.member_id WHERE m.token_hash = ?",
    )
    .bind(&hash)
    .fetch_optional(app.db())
    .await?;
    match (spent.rows_affected(), member) {
        (_, None) => Err(ApiError::Unauthorized("invalid sign-in token")),
        (0, Some(_)) => Err(ApiError::Gone(
            "this sign-in link has expired or was already used",
        )),
        (_, Some((_, status))) if status != "approved" => {
            Err(ApiError::Unauthorized("this account is not active"))
        }
        (_, Some((member_id, _))) => Ok(member_id),
    }
}

async fn start_session(app: &App, member_id: &str) -> Result<SessionIssued, ApiError> {
    ensure_not_suspended(app, member_id).await?;
    let now = app.now();
    let token = Secret::random_token();
    let expires_at = now + MEMBER_SESSION_SECS;
    sqlx::query(
        "INSERT INTO member_sessions (token_hash, member_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
    )
    .bind(app.digest(&token))
    .bind(member_id)
    .bind(now)
    .bind(expires_at)
    .execute(app.db())
    .await?;
    Ok(SessionIssued {
        session_token: token,
        member_id: member_id.to_owned(),
        expires_at,
    })
}
