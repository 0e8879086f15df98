//! `vettid up`: run the whole stack on this machine.
//!
//! Order: take the data directory's lock, find nats-server, make or load its operator-mode keys
//! (`<data>/nats/auth`, see `vettid-nats`), start it (loopback, JetStream),
//! wait until healthy, then start each VettID process and wait until it is healthy, print the
//! URLs and `ready`. On Ctrl-C or SIGTERM, stop the children in reverse order and exit 0; if a
//! child dies on its own, stop the rest and exit non-zero with the end of its log.

pub(crate) mod child;
mod nats;
mod probe;
pub(crate) mod signals;

use anyhow::{Context, bail};
use child::Child;
use std::ffi::OsStr;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long a child may take to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a child may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(clap::Args)]
pub(crate) struct UpArgs {
    /// Where VettID keeps its state (nats config and JetStream, logs, later vaults and the database).
    #[arg(long, default_value = ".vettid")]
    data_dir: PathBuf,
    /// The nats-server binary (2.10 or newer). Default: ./.tools/bin, then PATH.
    #[arg(long, env = "VETTID_NATS_SERVER")]
    nats_server: Option<PathBuf>,
    /// NATS client port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 4222)]
    nats_port: u16,
    /// Turn on NATS monitoring on this port of 127.0.0.1 (0 picks a free one). Off by
    /// default: it is unauthenticated and lists connections by member.
    #[arg(long)]
    nats_monitor_port: Option<u16>,
    /// Address of the HTTP API (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    api_addr: SocketAddr,
    /// Multiply the API's rate limits by this (load tests from one address).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    api_rate_limit_scale: u32,
    /// Staged recovery's delay, in seconds (default 24 h): the API's wait before the recovery
    /// QR, and the enclave's measured wait since an enrolled device last unlocked the vault.
    #[arg(long, default_value_t = 24 * 3600, value_parser = clap::value_parser!(u64).range(0..=30 * 24 * 3600))]
    recovery_delay_secs: u64,
    /// Vault deletion's delay, in seconds (default 24 h): between the request and its
    /// confirmation.
    #[arg(long, default_value_t = 24 * 3600, value_parser = clap::value_parser!(u64).range(0..=30 * 24 * 3600))]
    deletion_delay_secs: u64,
    /// Each vault's quota in MiB (measured into the enclave's configuration; default 64).
    #[arg(long, default_value_t = vettid_proto::platform::PolicyConfig::default().vault_quota_bytes >> 20, value_parser = clap::value_parser!(u64).range(1..=4096))]
    vault_quota_mib: u64,
}

pub(crate) fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    // One thread: children are forked from the main thread, which lives as long as the process,
    // so PR_SET_PDEATHSIG fires exactly when the supervisor goes away.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(supervise(args))
}

async fn supervise(args: UpArgs) -> anyhow::Result<ExitCode> {
    let data_dir = prepare_data_dir(&args.data_dir)?;
    let _lock = lock_data_dir(&data_dir)?;
    let logs = data_dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    println!("vettid up: data directory {}", data_dir.display());

    let nats = nats::locate(args.nats_server.as_deref())?;
    let ports = nats::NatsPorts {
        client: port_or_free(args.nats_port, "--nats-port")?,
        monitor: args
            .nats_monitor_port
            .map(|p| port_or_free(p, "--nats-monitor-port"))
            .transpose()?,
    };
    let api_addr = SocketAddr::new(
        args.api_addr.ip(),
        port_or_free(args.api_addr.port(), "--api-addr")?,
    );
    let rate_limit_scale = args.api_rate_limit_scale.to_string();
    let recovery_delay = args.recovery_delay_secs.to_string();
    let deletion_delay = args.deletion_delay_secs.to_string();
    let vault_quota = args.vault_quota_mib.to_string();
    let nats_files = nats::write_config(&data_dir, ports)?;
    let nats_url = format!("nats://127.0.0.1:{}", ports.client);

    let terminated = signals::terminated();
    tokio::pin!(terminated);
    let (exited_tx, mut exited) = mpsc::unbounded_channel();
    let mut children: Vec<Child> = Vec::new();
    let outcome = {
        let starting = async {
            let client = SocketAddr::from((Ipv4Addr::LOCALHOST, ports.client));
            println!(
                "  starting nats-server {} ({})",
                nats.version,
                nats.path.display()
            );
            children.push(Child::spawn(
                "nats-server",
                &nats.path,
                &[OsStr::new("-c"), nats_files.conf.as_os_str()],
                logs.join("nats-server.log"),
                exited_tx.clone(),
            )?);
            wait_healthy(children.last().expect("just pushed"), Health::Nats(client)).await?;

            let exe = std::env::current_exe().context("locating the vettid binary")?;
            let data = data_dir.as_os_str();
            let enclave = crate::platform::enclave_binary(None)?;
            println!(
                "  starting dev platform (launches and measures {}; attestor and key service)",
                enclave.display()
            );
            children.push(Child::spawn(
                "dev-platform",
                &exe,
                &[
                    OsStr::new("dev-platform"),
                    OsStr::new("--data-dir"),
                    data,
                    OsStr::new("--enclave"),
                    enclave.as_os_str(),
                    OsStr::new("--recovery-delay-secs"),
                    OsStr::new(&recovery_delay),
                    OsStr::new("--vault-quota-mib"),
                    OsStr::new(&vault_quota),
                ],
                logs.join("dev-platform.log"),
                exited_tx.clone(),
            )?);
            wait_healthy(
                children.last().expect("just pushed"),
                Health::Socket(data_dir.join("platform.sock")),
            )
            .await?;

            println!("  starting host (and the enclave)");
            children.push(Child::spawn(
                "host",
                &exe,
                &[
                    OsStr::new("host"),
                    OsStr::new("--data-dir"),
                    data,
                    OsStr::new("--nats-url"),
                    OsStr::new(&nats_url),
                    OsStr::new("--nats-creds"),
                    nats_files.host_creds.as_os_str(),
                ],
                logs.join("host.log"),
                exited_tx.clone(),
            )?);
            wait_healthy(
                children.last().expect("just pushed"),
                Health::Socket(data_dir.join("host.sock")),
            )
            .await?;

            let addr = api_addr.to_string();
            let public_url = format!("http://{api_addr}");
            println!("  starting api");
            children.push(Child::spawn(
                "api",
                &exe,
                &[
                    OsStr::new("api"),
                    OsStr::new("--listen"),
                    OsStr::new(&addr),
                    OsStr::new("--data-dir"),
                    data,
                    OsStr::new("--nats-url"),
                    OsStr::new(&nats_url),
                    OsStr::new("--nats-dir"),
                    nats_files.auth.as_os_str(),
                    OsStr::new("--public-url"),
                    OsStr::new(&public_url),
                    OsStr::new("--rate-limit-scale"),
                    OsStr::new(&rate_limit_scale),
                    OsStr::new("--recovery-delay-secs"),
                    OsStr::new(&recovery_delay),
                    OsStr::new("--deletion-delay-secs"),
                    OsStr::new(&deletion_delay),
                ],
                logs.join("api.log"),
                exited_tx.clone(),
            )?);
            wait_healthy(
                children.last().expect("just pushed"),
                Health::Http(api_addr, "/health"),
            )
            .await
        };
        tokio::select! {
            result = starting => Some(result),
            _ = &mut terminated => None,
        }
    };
    match outcome {
        Some(Ok(())) => {}
        Some(Err(err)) => {
            stop_all(&mut children).await;
            return Err(err);
        }
        None => {
            println!("vettid up: interrupted while starting; stopping");
            stop_all(&mut children).await;
            return Ok(ExitCode::from(130));
        }
    }

    println!();
    println!(
        "  nats     {nats_url} (operator mode; keys in {})",
        nats_files.auth.display()
    );
    println!("  creds    {} (host)", nats_files.host_creds.display());
    println!("  creds    {} (api)", nats_files.api_creds.display());
    println!(
        "  creds    {} (system account: pushes revocations)",
        nats_files.sys_creds.display()
    );
    match ports.monitor {
        Some(port) => println!("  monitor  http://127.0.0.1:{port} (unauthenticated: local only)"),
        None => println!("  monitor  off (--nats-monitor-port PORT turns it on)"),
    }
    println!("  api      http://{api_addr}");
    println!(
        "  vaults   {} (vettid vault --data-dir {} …)",
        data_dir.join("host.sock").display(),
        data_dir.display()
    );
    println!("  logs     {}", logs.display());
    for c in &children {
        println!("  pid      {} {}", c.pid, c.name);
    }
    println!("ready");
    println!("(Ctrl-C stops everything)");

    tokio::select! {
        _ = &mut terminated => {
            println!("vettid up: stopping");
            stop_all(&mut children).await;
            println!("vettid up: stopped");
            Ok(ExitCode::SUCCESS)
        }
        Some(name) = exited.recv() => {
            let report = children
                .iter()
                .find(|c| c.name == name)
                .map(|c| format!(
                    "{name} exited unexpectedly ({}); last lines of {}:\n{}",
                    describe(c.exit_status()),
                    c.log.display(),
                    c.log_tail(15)
                ))
                .unwrap_or_else(|| format!("{name} exited unexpectedly"));
            eprintln!("vettid up: {report}");
            stop_all(&mut children).await;
            Ok(ExitCode::FAILURE)
        }
    }
}

/// How to tell that a child is ready.
enum Health {
    /// `GET path` answers 200.
    Http(SocketAddr, &'static str),
    /// The Unix socket accepts connections (bound only once the process is ready).
    Socket(PathBuf),
    /// A NATS server greets on this address (`INFO {…}`).
    Nats(SocketAddr),
}

impl Health {
    async fn ok(&self) -> bool {
        match self {
            Health::Http(addr, path) => probe::get_status(*addr, path).await == Some(200),
            Health::Socket(path) => tokio::net::UnixStream::connect(path).await.is_ok(),
            Health::Nats(addr) => probe::nats_greets(*addr).await,
        }
    }
}

/// Waits until `child` is healthy, printing progress.
async fn wait_healthy(child: &Child, health: Health) -> anyhow::Result<()> {
    let began = Instant::now();
    loop {
        if let Some(status) = child.exit_status() {
            bail!(
                "{} exited while starting ({}); last lines of {}:\n{}",
                child.name,
                describe(Some(status)),
                child.log.display(),
                child.log_tail(15)
            );
        }
        if health.ok().await {
            println!(
                "  ✓ {} healthy in {} ms",
                child.name,
                began.elapsed().as_millis()
            );
            return Ok(());
        }
        if began.elapsed() > START_TIMEOUT {
            bail!(
                "{} did not become healthy within {} s; last lines of {}:\n{}",
                child.name,
                START_TIMEOUT.as_secs(),
                child.log.display(),
                child.log_tail(15)
            );
        }
        // Polling a health endpoint: the child gives no other readiness signal.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Stops children in reverse start order (API before the broker it uses).
async fn stop_all(children: &mut [Child]) {
    for child in children.iter_mut().rev() {
        let status = child.stop(STOP_GRACE).await;
        println!("  stopped {} ({})", child.name, describe(status));
    }
}

fn describe(status: Option<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Some(s) if s.success() => "exit 0".into(),
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(sig)) => format!("signal {sig}"),
            _ => "unknown status".into(),
        },
        None => "status unknown".into(),
    }
}

fn prepare_data_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    dir.canonicalize()
        .with_context(|| format!("resolving data directory {}", dir.display()))
}

/// Holds an exclusive lock on `<data>/vettid.lock` for as long as the returned file lives.
fn lock_data_dir(dir: &Path) -> anyhow::Result<File> {
    let path = dir.join("vettid.lock");
    let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another `vettid up` is already running with data directory {} (stop it first, or pass another --data-dir)",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// `port`, checked to be free on 127.0.0.1, or a free one when `port` is 0.
fn port_or_free(port: u16, flag: &str) -> anyhow::Result<u16> {
    match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
        Ok(l) => Ok(l.local_addr()?.port()),
        Err(e) => {
            bail!("port {port} on 127.0.0.1 is not available ({e}); choose another with {flag}")
        }
    }
}
