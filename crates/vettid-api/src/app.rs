//! The running API: its state, its router and its server.

use crate::clock::{Clock, SystemClock, unix_ms, unix_secs};
use crate::config::ApiConfig;
use crate::db::{self, Db};
use crate::mail::{Mailer, OutboxMailer};
use crate::nats::NatsIssuing;
use crate::ratelimit::RateLimiter;
use crate::{ApiError, admin, auth, enroll, health, nats, public, registration};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Why [`App::open`] failed. Each variant is an operator problem (configuration or
/// environment), never a client's.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The data directory could not be created or written.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The database could not be opened or migrated.
    #[error("{0}")]
    Database(String),
    /// The admin token could not be created.
    #[error("bootstrapping the admin: {0}")]
    Bootstrap(String),
    /// The configuration is invalid (the message says which setting).
    #[error("configuration: {0}")]
    Config(String),
    /// The NATS setup directory could not be loaded.
    #[error("NATS setup in {path}: {message}")]
    Nats {
        /// The setup directory.
        path: PathBuf,
        /// The cause.
        message: String,
    },
}

/// The API: configuration, database, clock, mailer, rate limits and (optionally) the NATS
/// issuer. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct App {
    pub(crate) state: Arc<State>,
}

pub(crate) struct State {
    pub(crate) config: ApiConfig,
    pub(crate) public_url: String,
    pub(crate) mail_from: String,
    pub(crate) db: Db,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) mailer: Arc<dyn Mailer>,
    pub(crate) limiter: RateLimiter,
    pub(crate) nats: Option<NatsIssuing>,
    /// Keys the digests under which tokens and codes are stored.
    pub(crate) digest_key: crate::secret::DigestKey,
    background: Mutex<Vec<JoinHandle<()>>>,
}

impl App {
    /// Opens the API with the system clock and the outbox mailer (`<data>/outbox/`).
    /// See [`App::open_with`].
    pub async fn open(config: ApiConfig) -> Result<App, OpenError> {
        let mailer = Arc::new(OutboxMailer::new(config.outbox_dir()));
        App::open_with(config, Arc::new(SystemClock), mailer).await
    }

    /// Opens the API: creates the data directory (`0700`) if missing, opens and migrates the
    /// database, creates the first admin if there is none (its token is written to
    /// `<data>/admin.token`, mode `0600`, and only the path is logged), and loads the NATS
    /// setup if `config.nats_dir` is set.
    pub async fn open_with(
        config: ApiConfig,
        clock: Arc<dyn Clock>,
        mailer: Arc<dyn Mailer>,
    ) -> Result<App, OpenError> {
        if config.limits.member_jwt_lifetime > vettid_nats::MAX_MEMBER_JWT_LIFETIME
            || config.limits.member_jwt_lifetime.as_secs() == 0
        {
            return Err(OpenError::Config(
                "member_jwt_lifetime must be from 1 s to 7 days".into(),
            ));
        }
        create_data_dir(&config)?;
        let db = db::open(&config)
            .await
            .map_err(|e| OpenError::Database(e.to_string()))?;
        let now = unix_secs(clock.now());
        let digest_key = crate::secret::DigestKey::load_or_create(&config.data_dir)
            .map_err(|e| OpenError::Bootstrap(format!("the secrets key: {e}")))?;
        if let Some(path) = admin::bootstrap(&db, &config, &digest_key, now)
            .await
            .map_err(|e| OpenError::Bootstrap(e.to_string()))?
        {
            tracing::info!(path = %path.display(), "created the first admin; its token is in this file");
        }
        let nats = match &config.nats_dir {
            Some(dir) => {
                Some(
                    NatsIssuing::load(dir, &config.nats_url).map_err(|e| OpenError::Nats {
                        path: dir.clone(),
                        message: e.to_string(),
                    })?,
                )
            }
            None => None,
        };
        Ok(App {
            state: Arc::new(State {
                public_url: config.public_url_trimmed(),
                mail_from: config.mail_from_resolved(),
                config,
                db,
                clock,
                mailer,
                limiter: RateLimiter::default(),
                nats,
                digest_key,
                background: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The configuration the API was opened with.
    pub fn config(&self) -> &ApiConfig {
        &self.state.config
    }

    /// The stored form of a token or code (keyed: see `secret.rs`).
    pub(crate) fn digest(&self, secret: &crate::secret::Secret) -> String {
        self.state.digest_key.digest(secret)
    }

    /// All routes, with the JSON 404/405 fallbacks, the body-size limit and the security
    /// headers (`Cache-Control: no-store`, `X-Content-Type-Options: nosniff`).
    pub fn router(&self) -> Router {
        Router::new()
            .merge(health::routes())
            .merge(public::routes())
            .merge(admin::routes())
            .merge(registration::routes())
            .merge(auth::routes())
            .merge(enroll::routes())
            .merge(nats::routes())
            .merge(crate::recovery::routes())
            .merge(crate::deletion::routes())
            .merge(crate::devices::routes())
            .merge(crate::connect_codes::routes())
            .fallback(|| async { ApiError::NotFound("no such route") })
            .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
            .layer(DefaultBodyLimit::max(
                self.state.config.limits.max_body_bytes,
            ))
            .layer(axum::middleware::map_response(security_headers))
            .with_state(self.clone())
    }

    /// Serves the API on `listener` (with each connection's address, for per-IP limits)
    /// until `shutdown` completes, then finishes in-flight requests and background work.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let service = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, service)
            .with_graceful_shutdown(shutdown)
            .await?;
        self.background_idle().await;
        Ok(())
    }

    /// Waits until the background work started so far (mail sending) has finished. Responses
    /// that must not reveal whether work happened (magic links) return before it does.
    pub async fn background_idle(&self) {
        let handles = std::mem::take(&mut *self.lock_background());
        for handle in handles {
            if let Err(e) = handle.await {
                tracing::error!(error = %e, "background task failed");
            }
        }
    }

    fn lock_background(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.state
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `work` after the response, tracked by [`App::background_idle`].
    pub(crate) fn spawn_background(&self, work: impl Future<Output = ()> + Send + 'static) {
        let mut handles = self.lock_background();
        handles.retain(|h| !h.is_finished());
        handles.push(tokio::spawn(work));
    }

    /// Sends `mail` to `member`'s registered address through the configured mailer
    /// (`greeting` gets the first name and returns the mail). Nothing happens for an unknown
    /// member.
    pub(crate) async fn mail_member(
        &self,
        member: &str,
        mail: impl FnOnce(&str) -> (String, String),
    ) -> Result<(), ApiError> {
        let to: Option<(String, String)> =
            sqlx::query_as("SELECT email, first_name FROM registrations WHERE member_id = ?")
                .bind(member)
                .fetch_optional(self.db())
                .await?;
        let Some((to, first_name)) = to else {
            return Ok(());
        };
        let (subject, body) = mail(&first_name);
        let mail = crate::mail::Mail {
            from: self.state.mail_from.clone(),
            to,
            subject,
            body,
        };
        let mailer = self.state.mailer.clone();
        let date = self.state.clock.now();
        tokio::task::spawn_blocking(move || mailer.send(&mail, date))
            .await
            .map_err(|e| ApiError::internal("mail task", e))?
            .map_err(|e| ApiError::internal("sending mail", e))
    }

    /// Now, in unix seconds, from the injected clock.
    pub(crate) fn now(&self) -> i64 {
        unix_secs(self.state.clock.now())
    }

    /// Now, from the injected clock.
    pub(crate) fn clock_now(&self) -> std::time::SystemTime {
        self.state.clock.now()
    }

    /// Now, in unix milliseconds (rate-limit windows).
    pub(crate) fn now_ms(&self) -> u64 {
        unix_ms(self.state.clock.now())
    }

    pub(crate) fn db(&self) -> &Db {
        &self.state.db
    }

    /// Counts one event against `rate` for (`scope`, `key`); 429 if over.
    pub(crate) fn rate_limit(
        &self,
        scope: &'static str,
        key: &str,
        rate: crate::config::Rate,
    ) -> Result<(), ApiError> {
        self.state.limiter.check(scope, key, rate, self.now_ms())
    }

    /// The NATS issuer, or 503 when this deployment has none.
    pub(crate) fn nats(&self) -> Result<&NatsIssuing, ApiError> {
        self.state.nats.as_ref().ok_or(ApiError::ServiceUnavailable(
            "NATS credentials are not available on this deployment",
        ))
    }
}

fn create_data_dir(config: &ApiConfig) -> Result<(), OpenError> {
    let err = |source| OpenError::DataDir {
        path: config.data_dir.clone(),
        source,
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(&config.data_dir).map_err(err)
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
