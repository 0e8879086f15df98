//! `vettid host`: the untrusted host process. Has the dev platform launch the enclave (and
//! launch it again when it dies), serves its storage in `<data>/objects`, relays its
//! key-service TLS bytes, and opens the control socket `<data>/host.sock` for `vettid vault …`.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use vettid_host::host::{Channel, Host, HostConfig, KeyServiceEndpoint, Objects};

#[derive(clap::Args)]
pub(crate) struct HostArgs {
    /// The data directory.
    #[arg(long, default_value = ".vettid")]
    data_dir: PathBuf,
    /// The object store directory (default: `<data-dir>/objects`).
    #[arg(long)]
    objects: Option<PathBuf>,
    /// Store objects in this S3 bucket instead of a directory (build with feature `s3`;
    /// credentials from the `AWS_*` environment).
    #[arg(long, conflicts_with = "objects")]
    s3_bucket: Option<String>,
    /// An S3-compatible endpoint for `--s3-bucket`.
    #[arg(long, requires = "s3_bucket")]
    s3_endpoint: Option<String>,
    /// The dev platform socket (default: `<data-dir>/platform.sock`).
    #[arg(long)]
    platform: Option<PathBuf>,
    /// Where the enclave's key service is: `unix:PATH` (default: the dev key service,
    /// `<data-dir>/kms.sock`) or `tcp:HOST:PORT` (AWS KMS, `tcp:kms.<region>.amazonaws.com:443`).
    #[arg(long)]
    key_service: Option<String>,
    /// Wait for a Nitro Enclave to connect over vsock on this port instead of starting the
    /// enclave process (build with feature `vsock`).
    #[arg(long)]
    vsock_port: Option<u32>,
    /// Route apps' NATS messages (`OwnerSpace.*.forVault.*`) from this server to the enclave.
    #[arg(long, requires = "nats_creds")]
    nats_url: Option<String>,
    /// The host's NATS creds file (made by `vettid up` in `<data-dir>/nats/auth`).
    #[arg(long, requires = "nats_url")]
    nats_creds: Option<PathBuf>,
    /// Resource settings for the enclave (`--max-resident N`, `--memory-budget-mib N`,
    /// `--idle-secs N`, `--rest-secs N`, `--snapshot-every N`). Policy is not the host's to set: it is in the
    /// enclave's measured configuration.
    #[arg(last = true)]
    enclave_args: Vec<String>,
}

pub(crate) fn run(args: HostArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let channel = match args.vsock_port {
        Some(port) => Channel::Vsock { port },
        None => Channel::Local {
            // Absolute: the platform launches the enclave from its own directory.
            socket: std::path::absolute(args.data_dir.join("enclave.sock"))?,
            platform: args
                .platform
                .clone()
                .unwrap_or_else(|| args.data_dir.join("platform.sock")),
            tunables: args.enclave_args,
        },
    };
    let key_service = match args.key_service.as_deref() {
        None => KeyServiceEndpoint::Unix(args.data_dir.join("kms.sock")),
        Some(s) => match s.split_once(':') {
            Some(("unix", path)) => KeyServiceEndpoint::Unix(path.into()),
            Some(("tcp", addr)) => KeyServiceEndpoint::Tcp(addr.into()),
            _ => anyhow::bail!("--key-service: expected unix:PATH or tcp:HOST:PORT, got {s}"),
        },
    };
    let config = HostConfig {
        channel,
        objects: match args.s3_bucket {
            Some(bucket) => Objects::S3 {
                bucket,
                endpoint: args.s3_endpoint,
            },
            None => Objects::Local(
                args.objects
                    .unwrap_or_else(|| args.data_dir.join("objects")),
            ),
        },
        key_service,
    };
    let control = args.data_dir.join("host.sock");
    // One thread: the host's work per message is small, and cross-thread wake-ups dominate
    // its latency (blocking storage work runs on tokio's blocking pool).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let terminated = crate::up::signals::terminated();
        let host = Arc::new(Host::start(config).await.context("starting the host")?);
        host.ready(Duration::from_secs(60)).await?;
        let _control = vettid_host::control::serve(host.clone(), &control).await?;
        if let (Some(url), Some(creds)) = (&args.nats_url, &args.nats_creds) {
            let router = vettid_host::nats::connect(url, creds)
                .await
                .map_err(|e| anyhow::anyhow!("connecting to NATS at {url}: {e}"))?;
            let host = host.clone();
            tokio::spawn(async move {
                if let Err(e) = router.serve(host).await {
                    tracing::error!(error = %e, "NATS routing stopped");
                }
            });
            println!("host: routing OwnerSpace.*.forVault.* from {url}");
        }
        println!(
            "host: enclave pid {}, control socket {}",
            host.enclave_pid(),
            control.display()
        );
        println!("ready");
        terminated.await;
        Ok(ExitCode::SUCCESS)
    })
}
