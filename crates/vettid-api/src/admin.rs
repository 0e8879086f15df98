//! Administration: the admin principal ([`Admin`], from `Authorization: Bearer <admin session
//! token>`), the first admin's bootstrap, the admin routes, and [`AdminConsole`], the same
//! operations straight on the database for the `vettid admin` command.
//!
//! The admin token (`<data>/admin.token`) is a one-time credential: `POST /v1/admin/sessions
//! {token}` spends it for an admin session of 12 hours. A new one comes from `vettid admin
//! new-token` on the API's machine (file access to the database is that credential).
//!
//! Every admin action is written to `admin_audit` (who, what, on what, when).

use crate::app::App;
use crate::config::ApiConfig;
use crate::db::Db;
use crate::extract::{ApiJson, ApiPath, ApiQuery, ClientIp, bearer};
use crate::invites::{self, Invite, NewInvite};
use crate::ratelimit::ip_key;
use crate::registration::{self, Decision, Registration, RegistrationStatus};
use crate::secret::{Secret, new_uuid};
use crate::{ApiError, nats};
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// An authenticated administrator. Handlers that take one are admin-only.
pub(crate) struct Admin {
    pub(crate) admin_id: String,
}

impl FromRequestParts<App> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Admin, ApiError> {
        let token = bearer(parts)?;
        let admin_id: Option<String> = sqlx::query_scalar(
            "SELECT admin_id FROM admin_sessions WHERE token_hash = ? AND expires_at > ?",
        )
        .bind(app.digest(&token))
        .bind(app.now())
        .fetch_optional(app.db())
        .await?;
        admin_id.map(|admin_id| Admin { admin_id }).ok_or(ApiError::Unauthorized(
            "invalid or expired admin session (exchange an admin token at POST /v1/admin/sessions)",
        ))
    }
}

/// Lifetime of an admin session.
pub(crate) const ADMIN_SESSION_SECS: i64 = 12 * 3600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminSessionRequest {
    token: Secret,
}

#[derive(Serialize)]
struct AdminSession {
    session_token: Secret,
    admin_id: String,
    expires_at: i64,
}

/// `POST /v1/admin/sessions {token}` → 201 an admin session (12 h) for a one-time admin
/// token, which is spent (401 for an unknown or spent one, alike). Rate-limited per IP.
async fn start_session(
    State(app): State<App>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<AdminSessionRequest>,
) -> Result<(StatusCode, Json<AdminSession>), ApiError> {
    crate::validate::token_shape("token", req.token.expose())?;
    let limits = &app.state.config.limits;
    app.rate_limit("admin_session", &ip_key(ip), limits.verify_per_ip)?;
    let now = app.now();
    let mut tx = app.db().begin().await?;
    let admin_id: Option<String> = sqlx::query_scalar(
        "UPDATE admins SET token_used_at = ? WHERE token_hash = ? AND token_used_at IS NULL \
         RETURNING admin_id",
    )
    .bind(now)
    .bind(app.digest(&req.token))
    .fetch_optional(&mut *tx)
    .await?;
    let admin_id = admin_id.ok_or(ApiError::Unauthorized(
        "unknown or already used admin token (make one with `vettid admin new-token`)",
    ))?;
    let session = Secret::random_token();
    sqlx::query(
        "INSERT INTO admin_sessions (token_hash, admin_id, created_at, expires_at) \
         VALUES (?, ?, ?, ?)",
    )
    .bind(app.digest(&session))
    .bind(&admin_id)
    .bind(now)
    .bind(now + ADMIN_SESSION_SECS)
    .execute(&mut *tx)
    .await?;
    audit(&mut *tx, &admin_id, "admin.session", &admin_id, now).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(AdminSession {
            session_token: session,
            admin_id,
            expires_at: now + ADMIN_SESSION_SECS,
        }),
    ))
}

#[derive(Serialize)]
struct SignedOut {
    signed_out: bool,
}

/// `POST /v1/admin/sign-out` (admin) → every session of this admin ends.
async fn sign_out(State(app): State<App>, admin: Admin) -> Result<Json<SignedOut>, ApiError> {
    sqlx::query("UPDATE admin_sessions SET expires_at = ? WHERE admin_id = ? AND expires_at > ?")
        .bind(app.now())
        .bind(&admin.admin_id)
        .bind(app.now())
        .execute(app.db())
        .await?;
    Ok(Json(SignedOut { signed_out: true }))
}

/// The id of the bootstrap admin.
const FIRST_ADMIN: &str = "admin";

/// If no admin exists, creates one with a random token, writes the token to
/// `config.admin_token_path()` (created `0600`, replaced atomically) and returns that path.
/// The admin row and the file appear together: the row is inserted in a transaction that
/// commits only after the file is written, and a concurrent bootstrap loses on the primary key
/// before it writes anything. An existing admin is left alone and the file is not rewritten.
pub(crate) async fn bootstrap(
    db: &Db,
    config: &ApiConfig,
    key: &crate::secret::DigestKey,
    now: i64,
) -> Result<Option<PathBuf>, ApiError> {
    let admins: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM admins")
        .fetch_one(db)
        .await?;
    if admins > 0 {
        return Ok(None);
    }
    let token = Secret::random_token();
    let mut tx = db.begin().await?;
    let inserted =
        sqlx::query("INSERT INTO admins (admin_id, token_hash, created_at) VALUES (?, ?, ?)")
            .bind(FIRST_ADMIN)
            .bind(key.digest(&token))
            .bind(now)
            .execute(&mut *tx)
            .await;
    match inserted {
        Err(e) if crate::db::is_unique_violation(&e) => return Ok(None),
        other => other?,
    };
    let path = config.admin_token_path();
    let contents = format!("{}\n", token.expose());
    crate::mail::write_atomically(&config.data_dir, "admin.token", contents.as_bytes())
        .map_err(|e| ApiError::internal("writing the admin token file", e))?;
    tx.commit().await?;
    Ok(Some(path))
}

/// Records an admin action.
pub(crate) async fn audit<'e, E>(
    db: E,
    actor: &str,
    action: &str,
    subject: &str,
    now: i64,
) -> Result<(), ApiError>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    sqlx::query(
        "INSERT INTO admin_audit (audit_id, at, actor, action, subject) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(new_uuid())
    .bind(now)
    .bind(actor)
    .bind(action)
    .bind(subject)
    .execute(db)
    .await?;
    Ok(())
}

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/v1/admin/sessions", post(start_session))
        .route("/v1/admin/sign-out", post(sign_out))
        .route("/v1/admin/invites", post(create_invite).get(list_invites))
        .route("/v1/admin/registrations", get(list_registrations))
        .route("/v1/admin/registrations/{id}/approve", post(approve))
        .route("/v1/admin/registrations/{id}/reject", post(reject))
        .route(
            "/v1/admin/members/{member_id}/revoke-nats",
            post(revoke_nats),
        )
        .route("/v1/admin/members/{member_id}/suspend", post(suspend))
        .route("/v1/admin/members/{member_id}/unsuspend", post(unsuspend))
}

#[derive(Serialize)]
struct Items<T> {
    items: Vec<T>,
}

/// `POST /v1/admin/invites` → 201 with the invite.
async fn create_invite(
    State(app): State<App>,
    admin: Admin,
    ApiJson(new): ApiJson<NewInvite>,
) -> Result<(StatusCode, Json<Invite>), ApiError> {
    let invite = invites::create(app.db(), new, &admin.admin_id, app.now()).await?;
    audit(
        app.db(),
        &admin.admin_id,
        "invite.create",
        &invite.code,
        app.now(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(invite)))
}

/// `GET /v1/admin/invites` → every invite, newest first.
async fn list_invites(
    State(app): State<App>,
    _admin: Admin,
) -> Result<Json<Items<Invite>>, ApiError> {
    let items = invites::list(app.db()).await?;
    Ok(Json(Items { items }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistrationFilter {
    status: Option<RegistrationStatus>,
}

/// `GET /v1/admin/registrations?status=` → registrations, oldest first.
async fn list_registrations(
    State(app): State<App>,
    _admin: Admin,
    ApiQuery(filter): ApiQuery<RegistrationFilter>,
) -> Result<Json<Items<Registration>>, ApiError> {
    let items = registration::list(app.db(), filter.status).await?;
    Ok(Json(Items { items }))
}

/// `POST /v1/admin/registrations/{id}/approve` → the registration (idempotent).
async fn approve(
    State(app): State<App>,
    admin: Admin,
    ApiPath(id): ApiPath,
) -> Result<Json<Registration>, ApiError> {
    decide(&app, &admin, &id, Decision::Approve).await
}

/// `POST /v1/admin/registrations/{id}/reject` → the registration (idempotent).
async fn reject(
    State(app): State<App>,
    admin: Admin,
    ApiPath(id): ApiPath,
) -> Result<Json<Registration>, ApiError> {
    decide(&app, &admin, &id, Decision::Reject).await
}

async fn decide(
    app: &App,
    admin: &Admin,
    id: &str,
    decision: Decision,
) -> Result<Json<Registration>, ApiError> {
    let r = registration::decide(app.db(), id, decision, &admin.admin_id, app.now()).await?;
    audit(
        app.db(),
        &admin.admin_id,
        decision.audit_action(),
        id,
        app.now(),
    )
    .await?;
    Ok(Json(r))
}

#[derive(Serialize)]
struct Revoked {
    revoked: usize,
    devices_revoked: u64,
}

/// `POST /v1/admin/members/{member_id}/revoke-nats` → `{revoked, devices_revoked}`.
async fn revoke_nats(
    State(app): State<App>,
    admin: Admin,
    ApiPath(member_id): ApiPath,
) -> Result<Json<Revoked>, ApiError> {
    let outcome = nats::revoke_member(&app, &member_id).await?;
    audit(
        app.db(),
        &admin.admin_id,
        "member.revoke_nats",
        &member_id,
        app.now(),
    )
    .await?;
    Ok(Json(Revoked {
        revoked: outcome.keys,
        devices_revoked: outcome.devices,
    }))
}

#[derive(Serialize)]
struct Suspended {
    suspended: bool,
    sessions_ended: u64,
    /// Whether the NATS revocation reached the server (if not, it holds in the database and
    /// `revoke-nats` pushes it again).
    nats_pushed: bool,
}

/// `POST /v1/admin/members/{member_id}/suspend` → the member's web sessions end, enrollments
/// in progress end, devices and NATS credentials are revoked (when NATS is set up), and until
/// `unsuspend` they cannot sign in, enroll or renew credentials.
async fn suspend(
    State(app): State<App>,
    admin: Admin,
    ApiPath(member_id): ApiPath,
) -> Result<Json<Suspended>, ApiError> {
    let member = crate::validate::member_id(&member_id)?;
    let known: Option<String> =
        sqlx::query_scalar("SELECT member_id FROM registrations WHERE member_id = ?")
            .bind(&member)
            .fetch_optional(app.db())
            .await?;
    known.ok_or(ApiError::NotFound("no such member"))?;
    let now = app.now();
    let mut tx = app.db().begin().await?;
    sqlx::query(
        "INSERT INTO member_suspensions (member_id, suspended_at, suspended_by) VALUES (?, ?, ?)          ON CONFLICT (member_id) DO NOTHING",
    )
    .bind(&member)
    .bind(now)
    .bind(&admin.admin_id)
    .execute(&mut *tx)
    .await?;
    let sessions_ended = sqlx::query("DELETE FROM member_sessions WHERE member_id = ?")
        .bind(&member)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    audit(app.db(), &admin.admin_id, "member.suspend", &member, now).await?;
    let nats_pushed = match app.state.nats.is_some() {
        false => false,
        true => match nats::revoke_member(&app, &member).await {
            Ok(_) => true,
            Err(ApiError::BadGateway(_)) => false,
            Err(e) => return Err(e),
        },
    };
    Ok(Json(Suspended {
        suspended: true,
        sessions_ended,
        nats_pushed,
    }))
}

/// `POST /v1/admin/members/{member_id}/unsuspend` → the member may sign in again (their
/// revoked devices stay revoked: a new device comes through recovery).
async fn unsuspend(
    State(app): State<App>,
    admin: Admin,
    ApiPath(member_id): ApiPath,
) -> Result<Json<Suspended>, ApiError> {
    let member = crate::validate::member_id(&member_id)?;
    let lifted = sqlx::query("DELETE FROM member_suspensions WHERE member_id = ?")
        .bind(&member)
        .execute(app.db())
        .await?
        .rows_affected();
    if lifted == 0 {
        return Err(ApiError::NotFound("no such suspension"));
    }
    audit(
        app.db(),
        &admin.admin_id,
        "member.unsuspend",
        &member,
        app.now(),
    )
    .await?;
    Ok(Json(Suspended {
        suspended: false,
        sessions_ended: 0,
        nats_pushed: false,
    }))
}

/// The admin operations of the API straight on its database, for the `vettid admin` command
/// on the API's machine (no HTTP, no admin token: file access to the database is the
/// credential). Actions are audited with the actor `console`.
pub struct AdminConsole {
    db: Db,
}

/// The actor recorded for console actions.
const CONSOLE: &str = "console";

impl AdminConsole {
    /// Opens the database of `config` (creating and migrating it if needed). The data
    /// directory must already exist, so a mistyped `--data-dir` does not create a stray
    /// database.
    pub async fn open(config: &ApiConfig) -> Result<AdminConsole, crate::OpenError> {
        if config.database_url.is_none() && !config.data_dir.is_dir() {
            return Err(crate::OpenError::DataDir {
                path: config.data_dir.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such directory (start `vettid api` with it once, or pass the right --data-dir)",
                ),
            });
        }
        let db = crate::db::open(config)
            .await
            .map_err(|e| crate::OpenError::Database(e.to_string()))?;
        Ok(AdminConsole { db })
    }

    /// Creates an invite (same rules as `POST /v1/admin/invites`).
    pub async fn create_invite(&self, new: NewInvite) -> Result<Invite, ApiError> {
        let now = now();
        let invite = invites::create(&self.db, new, CONSOLE, now).await?;
        audit(&self.db, CONSOLE, "invite.create", &invite.code, now).await?;
        Ok(invite)
    }

    /// Makes a new one-time admin token for the first admin (the earlier one, used or not,
    /// stops working, and so do the admin's sessions: a rotation also ends whatever a leaked
    /// token gave), writes it to `config.admin_token_path()` (0600) and returns that path.
    pub async fn new_admin_token(&self, config: &ApiConfig) -> Result<PathBuf, ApiError> {
        let key = crate::secret::DigestKey::load_or_create(&config.data_dir)
            .map_err(|e| ApiError::internal("reading the server key", e))?;
        let token = Secret::random_token();
        let now = now();
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO admins (admin_id, token_hash, created_at) VALUES (?, ?, ?) \
             ON CONFLICT (admin_id) DO UPDATE SET token_hash = excluded.token_hash, \
             token_used_at = NULL",
        )
        .bind(FIRST_ADMIN)
        .bind(key.digest(&token))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE admin_sessions SET expires_at = ? WHERE admin_id = ? AND expires_at > ?",
        )
        .bind(now)
        .bind(FIRST_ADMIN)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        audit(&mut *tx, CONSOLE, "admin.new_token", FIRST_ADMIN, now).await?;
        let contents = format!("{}\n", token.expose());
        crate::mail::write_atomically(&config.data_dir, "admin.token", contents.as_bytes())
            .map_err(|e| ApiError::internal("writing the admin token file", e))?;
        tx.commit().await?;
        Ok(config.admin_token_path())
    }

    /// Every invite, newest first.
    pub async fn list_invites(&self) -> Result<Vec<Invite>, ApiError> {
        invites::list(&self.db).await
    }

    /// Registrations with `status` (all when `None`), oldest first.
    pub async fn list_registrations(
        &self,
        status: Option<RegistrationStatus>,
    ) -> Result<Vec<Registration>, ApiError> {
        registration::list(&self.db, status).await
    }

    /// Approves the registration with this id, or with this email address (idempotent; 404
    /// unknown, 409 if rejected).
    pub async fn approve(&self, registration_id_or_email: &str) -> Result<Registration, ApiError> {
        let now = now();
        let id = if registration_id_or_email.contains('@') {
            let email = crate::validate::email(registration_id_or_email)?;
            registration::find_by_email(&self.db, &email)
                .await?
                .ok_or(ApiError::NotFound("no registration with this email"))?
                .registration_id
        } else {
            registration_id_or_email.to_owned()
        };
        let r = registration::decide(&self.db, &id, Decision::Approve, CONSOLE, now).await?;
        audit(
            &self.db,
            CONSOLE,
            Decision::Approve.audit_action(),
            &id,
            now,
        )
        .await?;
        Ok(r)
    }
}

fn now() -> i64 {
    crate::clock::unix_secs(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn open(dir: &std::path::Path) -> (Db, ApiConfig) {
        let config = ApiConfig::new(dir);
        let db = crate::db::open(&config).await.unwrap();
        (db, config)
    }

    #[tokio::test]
    async fn bootstrap_writes_a_private_token_once() {
        let dir = tempfile::tempdir().unwrap();
        let (db, config) = open(dir.path()).await;

        let key = crate::secret::DigestKey::fixed(3);
        let path = bootstrap(&db, &config, &key, 1_000)
            .await
            .unwrap()
            .expect("first admin");
        assert_eq!(path, dir.path().join("admin.token"));
        let token = std::fs::read_to_string(&path).unwrap();
        let token = token.trim_end();
        assert_eq!(token.len(), 43);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // only the hash is stored
        let stored: String = sqlx::query_scalar("SELECT token_hash FROM admins")
            .fetch_one(&db)
            .await
            .unwrap();
        let secret = crate::secret::Secret::from_client(token.to_owned());
        assert_eq!(stored, key.digest(&secret));
        assert_ne!(stored, token);

        // a second start leaves admin and file alone
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(bootstrap(&db, &config, &key, 2_000).await.unwrap(), None);
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim_end(), token);
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            modified
        );
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM admins")
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!(count, 1);
    }

    #[tokio::test]
    async fn bootstrap_rolls_back_when_the_file_cannot_be_written() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut config) = open(dir.path()).await;
        config.data_dir = dir.path().join("missing-dir");
        assert!(
            bootstrap(&db, &config, &crate::secret::DigestKey::fixed(3), 1_000)
                .await
                .is_err()
        );
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM admins")
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!(count, 0, "no admin without its token file");
    }
}
