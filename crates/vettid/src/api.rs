//! `vettid api`: the HTTP API as its own process.

use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct ApiArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The API's state: database (api.db), admin.token, outbox/.
    #[arg(long, default_value = ".vettid")]
    data_dir: PathBuf,
    /// NATS URL handed to apps with their credentials.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// vettid-nats setup directory (operator and account keys). Without it, the API issues no
    /// NATS credentials (those routes answer 503).
    #[arg(long)]
    nats_dir: Option<PathBuf>,
    /// URL members and apps reach the API at (default: http://<listen>).
    #[arg(long)]
    public_url: Option<String>,
    /// Signed PCR manifest to serve (default: <data-dir>/manifest/pcr-manifest.json if present).
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Dev attestation root to serve (default: <data-dir>/dev-attestor/root.pem if present).
    #[arg(long)]
    dev_root: Option<PathBuf>,
    /// Root (PEM) the enclave's enrollment documents must chain to: the AWS Nitro root in
    /// production (default: the dev root above).
    #[arg(long)]
    attestation_root: Option<PathBuf>,
    /// The PCR manifest's signing key, hex (default: <data-dir>/manifest/signing.pub if
    /// present). Without it and a root, enrollments cannot be finalized.
    #[arg(long)]
    manifest_key: Option<String>,
    /// A reverse proxy in front of the API (repeatable): requests from it are counted under
    /// the client address it appends to X-Forwarded-For. Other peers' headers are ignored.
    #[arg(long = "trusted-proxy")]
    trusted_proxies: Vec<std::net::IpAddr>,
    /// Lifetime of members' NATS credentials, in seconds (default 24 h).
    #[arg(long, default_value_t = 24 * 3600, value_parser = clap::value_parser!(u64).range(60..=7 * 24 * 3600))]
    member_jwt_lifetime_secs: u64,
    /// Staged recovery: seconds between a request and its QR (default 24 h; match the
    /// enclave's `--recovery-delay-secs`).
    #[arg(long, default_value_t = 24 * 3600, value_parser = clap::value_parser!(u64).range(0..=30 * 24 * 3600))]
    recovery_delay_secs: u64,
    /// Vault deletion: seconds between a request and its confirmation (default 24 h).
    #[arg(long, default_value_t = 24 * 3600, value_parser = clap::value_parser!(u64).range(0..=30 * 24 * 3600))]
    deletion_delay_secs: u64,
    /// Multiply every rate limit by this (for load tests from one address; default 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    rate_limit_scale: u32,
}

impl ApiArgs {
    fn config(self) -> vettid_api::ApiConfig {
        let present = |p: PathBuf| p.is_file().then_some(p);
        let mut config = vettid_api::ApiConfig::new(&self.data_dir);
        config.public_url = self
            .public_url
            .unwrap_or_else(|| format!("http://{}", self.listen));
        config.nats_url = self.nats_url;
        config.nats_dir = self.nats_dir;
        config.manifest_path = self
            .manifest
            .or_else(|| present(self.data_dir.join("manifest").join("pcr-manifest.json")));
        config.dev_root_path = self
            .dev_root
            .or_else(|| present(self.data_dir.join("dev-attestor").join("root.pem")));
        config.attestation_root_path = self.attestation_root.or_else(|| {
            let dev = config.dev_root_path.clone();
            if let Some(path) = &dev {
                tracing::warn!(
                    root = %path.display(),
                    "enrollments are checked against the dev attestation root (development \
                     only; pass --attestation-root with the AWS Nitro root in production)"
                );
            }
            dev
        });
        config.trusted_proxies = self.trusted_proxies;
        config.manifest_key = self.manifest_key.or_else(|| {
            std::fs::read_to_string(self.data_dir.join("manifest").join("signing.pub"))
                .ok()
                .map(|k| k.trim().to_owned())
        });
        config.limits.member_jwt_lifetime =
            std::time::Duration::from_secs(self.member_jwt_lifetime_secs);
        config.limits.recovery_delay = std::time::Duration::from_secs(self.recovery_delay_secs);
        config.limits.deletion_delay = std::time::Duration::from_secs(self.deletion_delay_secs);
        let scale = self.rate_limit_scale;
        for rate in [
            &mut config.limits.register_per_ip,
            &mut config.limits.magic_link_per_email,
            &mut config.limits.magic_link_per_ip,
            &mut config.limits.verify_per_ip,
            &mut config.limits.enroll_authenticate_per_ip,
            &mut config.limits.refresh_per_ip,
            &mut config.limits.connect_code_create_per_ip,
            &mut config.limits.connect_code_lookup_per_ip,
        ] {
            rate.max = rate.max.saturating_mul(scale);
        }
        config
    }
}

pub(crate) fn run(args: ApiArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let listen = args.listen;
    let config = args.config();
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        let app = vettid_api::App::open(config)
            .await
            .context("opening the API")?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        tracing::info!(addr = %listener.local_addr()?, "api listening");
        app.serve(listener, crate::up::signals::terminated())
            .await
            .context("serving the API")?;
        tracing::info!("api stopped");
        Ok(ExitCode::SUCCESS)
    })
}
