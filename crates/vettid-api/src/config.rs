//! What an API process is told at start: where its state lives, where it is reachable, which
//! NATS deployment it issues credentials for, and its limits.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Configuration of one API process. Build it with [`ApiConfig::new`] and adjust the fields.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The API's own state: the SQLite database (by default), `admin.token`, `outbox/`.
    pub data_dir: PathBuf,
    /// The metadata database; `None` means `sqlite://<data_dir>/api.db` (created if missing,
    /// WAL). Only `sqlite:` URLs are built in so far.
    pub database_url: Option<String>,
    /// The URL members and apps reach this API at (magic links and QR codes name it).
    pub public_url: String,
    /// The NATS URL handed to apps with their credentials.
    pub nats_url: String,
    /// The `vettid-nats` setup directory (operator, accounts, signing keys). `None`: this
    /// deployment issues no NATS credentials and those routes answer 503.
    pub nats_dir: Option<PathBuf>,
    /// The signed PCR manifest served at `GET /v1/pcr-manifest` (404 when `None` or absent).
    pub manifest_path: Option<PathBuf>,
    /// The dev attestation root (PEM) served at `GET /v1/dev-root` (404 when `None` or absent).
    pub dev_root_path: Option<PathBuf>,
    /// The root (PEM) enclave attestation documents must chain to: the AWS Nitro root in
    /// production, the dev root locally. With [`ApiConfig::manifest_key`] and
    /// [`ApiConfig::manifest_path`], finalize checks the enclave's document for the enrolled
    /// device; without them, finalize answers 503.
    pub attestation_root_path: Option<PathBuf>,
    /// The PCR manifest's signing key (64 hex characters, Ed25519).
    pub manifest_key: Option<String>,
    /// Reverse proxies in front of this API (exact addresses). A request whose peer is one
    /// of them counts, for rate limits, as coming from the nearest `X-Forwarded-For` hop that
    /// is not; from any other peer the header is ignored. A proxy on the API's own host
    /// (127.0.0.1) makes every local user a proxy: bind the API where only the proxy reaches
    /// it.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The `From:` of outgoing mail; `None` means `VettID <no-reply@HOST>`, with the host of
    /// `public_url`.
    pub mail_from: Option<String>,
    /// Rate limits, lifetimes and sizes.
    pub limits: Limits,
}

impl ApiConfig {
    /// A configuration with state in `data_dir`, reachable at `http://127.0.0.1:8080`, pointing
    /// apps at `nats://127.0.0.1:4222`, with no NATS issuing, no manifest, no dev root and the
    /// default [`Limits`].
    pub fn new(data_dir: impl Into<PathBuf>) -> ApiConfig {
        ApiConfig {
            data_dir: data_dir.into(),
            database_url: None,
            public_url: "http://127.0.0.1:8080".into(),
            nats_url: "nats://127.0.0.1:4222".into(),
            nats_dir: None,
            manifest_path: None,
            dev_root_path: None,
            attestation_root_path: None,
            manifest_key: None,
            trusted_proxies: Vec::new(),
            mail_from: None,
            limits: Limits::default(),
        }
    }

    /// The database URL in force (see [`ApiConfig::database_url`]).
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => default_database_url(&self.data_dir),
        }
    }

    /// Where the bootstrap admin token is written.
    pub fn admin_token_path(&self) -> PathBuf {
        self.data_dir.join("admin.token")
    }

    /// The outbox directory of the default mailer.
    pub fn outbox_dir(&self) -> PathBuf {
        self.data_dir.join("outbox")
    }

    /// `public_url` without a trailing `/`.
    pub(crate) fn public_url_trimmed(&self) -> String {
        self.public_url.trim_end_matches('/').to_owned()
    }

    /// The `From:` of outgoing mail (see [`ApiConfig::mail_from`]).
    pub(crate) fn mail_from_resolved(&self) -> String {
        if let Some(from) = &self.mail_from {
            return from.clone();
        }
        let after_scheme = self
            .public_url
            .split_once("://")
            .map_or(self.public_url.as_str(), |(_, rest)| rest);
        let host_port = after_scheme.split(['/', '?', '#']).next().unwrap_or("");
        let host = host_port
            .rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host_port, |(host, _)| host);
        let host = if host.is_empty() { "localhost" } else { host };
        format!("VettID <no-reply@{host}>")
    }
}

fn default_database_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("api.db").display())
}

/// At most `max` events per `per` (a fixed window that starts with the first event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed in one window.
    pub max: u32,
    /// Length of the window.
    pub per: Duration,
}

impl Rate {
    /// `max` events per hour.
    pub const fn per_hour(max: u32) -> Rate {
        Rate {
            max,
            per: Duration::from_secs(3600),
        }
    }
}

/// Rate limits, credential lifetimes and request sizes.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `POST /v1/register` per client IP (default 10/h).
    pub register_per_ip: Rate,
    /// `POST /v1/auth/magic-link` per email address, registered or not (default 5/h).
    pub magic_link_per_email: Rate,
    /// `POST /v1/auth/magic-link` per client IP (default 20/h).
    pub magic_link_per_ip: Rate,
    /// `POST /v1/auth/verify` per client IP (default 30/h).
    pub verify_per_ip: Rate,
    /// `POST /v1/enroll/authenticate` per client IP: the guard against guessing enrollment
    /// codes (default 20/h).
    pub enroll_authenticate_per_ip: Rate,
    /// `POST /v1/nats/refresh` per client IP (default 120/h).
    pub refresh_per_ip: Rate,
    /// `POST /v1/connect-codes` per client IP: anyone may leave a sealed invitation, so this,
    /// the size cap and the expiry bound what one address can store (default 30/h).
    pub connect_code_create_per_ip: Rate,
    /// `GET` and `DELETE /v1/connect-codes/{lookup}` per client IP, counted together
    /// (default 120/h).
    pub connect_code_lookup_per_ip: Rate,
    /// Unexpired connect codes stored at once, from everyone; a new one beyond it is 503
    /// until some expire or are deleted (default 100 000: at most ~550 MB of sealed blobs).
    pub connect_codes_max_live: u32,
    /// Lifetime of a member's NATS user JWT (default 24 h).
    pub member_jwt_lifetime: Duration,
    /// Largest request body accepted (default 16 KiB; larger is 413).
    pub max_body_bytes: usize,
    /// Staged recovery: how long after a request the recovery QR can be had (default 24 h;
    /// the enclave enforces its own measured delay since an enrolled device's last unlock).
    pub recovery_delay: Duration,
    /// Vault deletion: how long after a request it can be confirmed (default 24 h).
    pub deletion_delay: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            register_per_ip: Rate::per_hour(10),
            magic_link_per_email: Rate::per_hour(5),
            magic_link_per_ip: Rate::per_hour(20),
            verify_per_ip: Rate::per_hour(30),
            enroll_authenticate_per_ip: Rate::per_hour(20),
            refresh_per_ip: Rate::per_hour(120),
            connect_code_create_per_ip: Rate::per_hour(30),
            connect_code_lookup_per_ip: Rate::per_hour(120),
            connect_codes_max_live: 100_000,
            member_jwt_lifetime: Duration::from_secs(24 * 3600),
            max_body_bytes: 16 * 1024,
            recovery_delay: Duration::from_secs(24 * 3600),
            deletion_delay: Duration::from_secs(24 * 3600),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_derive_from_the_data_dir() {
        let c = ApiConfig::new("/srv/vettid");
        assert_eq!(c.database_url(), "sqlite:///srv/vettid/api.db");
        assert_eq!(c.admin_token_path(), Path::new("/srv/vettid/admin.token"));
    }

    #[test]
    fn mail_from_takes_the_host_of_the_public_url() {
        let mut c = ApiConfig::new("/d");
        c.public_url = "https://api.vettid.dev:8443/base/".into();
        assert_eq!(c.mail_from_resolved(), "VettID <no-reply@api.vettid.dev>");
        assert_eq!(c.public_url_trimmed(), "https://api.vettid.dev:8443/base");
    }
}
