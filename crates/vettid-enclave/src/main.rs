//! The enclave process: `vettid-enclave (--socket PATH | --vsock-port PORT) [options]`. It
//! takes its configuration and attestation documents from its device — the launching dev
//! platform over stdin/stdout, or the NSM and the measured image on Nitro — connects to the
//! host's channel and serves it until the host goes away. Policy (guess limit, stretching,
//! quotas, the key service's identity) comes only from the measured configuration; the
//! arguments set resources, which the host may choose.
#![forbid(unsafe_code)]

use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use vettid_attest::seal::Attestor;
use vettid_crypto::password::Cost;
use vettid_enclave::keys::KeyPolicy;
use vettid_enclave::manager::{Config, Policy};
use vettid_enclave::vault::Limits;
use vettid_proto::platform::EnclaveConfig;

const USAGE: &str = "usage: vettid-enclave (--socket PATH | --vsock-port PORT) [--config PATH (Nitro)] [--max-resident N] [--memory-budget-mib N] [--idle-secs N] [--snapshot-every N]";

/// Where the host is.
enum Channel {
    /// A Unix socket (local development).
    Unix(String),
    /// vsock to the parent instance (CID 3) on a port (Nitro; feature `nitro`).
    Vsock(u32),
}

struct Args {
    channel: Channel,
    /// The configuration file inside the measured image (Nitro).
    config: Option<String>,
    resources: Config,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut channel = None;
    let mut config_path = None;
    let mut resources = Config::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: &String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "--socket" => channel = Some(Channel::Unix(value()?.clone())),
            "--vsock-port" => {
                let port = number(value()?)?;
                channel = Some(Channel::Vsock(
                    u32::try_from(port).map_err(|_| "--vsock-port: too large")?,
                ));
            }
            "--config" => config_path = Some(value()?.clone()),
            "--max-resident" => resources.max_resident = number(value()?)? as usize,
            "--memory-budget-mib" => {
                resources.memory_budget = number(value()?)?.saturating_mul(1 << 20)
            }
            "--idle-secs" => resources.idle = Duration::from_secs(number(value()?)?),
            "--rest-secs" => resources.rest = Duration::from_secs(number(value()?)?),
            "--snapshot-every" => resources.snapshot_every = number(value()?)?.max(1),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        channel: channel.ok_or("--socket or --vsock-port is required")?,
        config: config_path,
        resources,
    })
}

/// The policy a measured configuration sets.
fn policy(config: &EnclaveConfig) -> Policy {
    let p = &config.policy;
    Policy {
        keys: KeyPolicy {
            max_failures: p.pin_attempts,
            cost: Cost {
                memory_kib: p.argon2_memory_kib,
                passes: p.argon2_passes,
                lanes: p.argon2_lanes,
            },
        },
        limits: Limits {
            vault_bytes: p.vault_quota_bytes,
            versions_per_item: p.versions_per_item,
            feed_rows: p.feed_rows,
        },
        recovery_delay_ms: p.recovery_delay_secs.saturating_mul(1000),
    }
}

type Device = Arc<dyn Attestor + Send + Sync>;

/// The device and the measured configuration document.
#[cfg(not(feature = "nitro"))]
fn device(_config: Option<&str>) -> Result<(Device, Vec<u8>), String> {
    let device = vettid_enclave::device::StdioDevice::open();
    let config = device.config().map_err(|e| {
        format!("{e} (the enclave is launched by its platform: `vettid dev-platform`)")
    })?;
    Ok((Arc::new(device), config))
}

/// The device and the measured configuration document.
#[cfg(feature = "nitro")]
fn device(config: Option<&str>) -> Result<(Device, Vec<u8>), String> {
    let path = config.unwrap_or("/etc/vettid/enclave.json");
    let config = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let nsm = vettid_attest::nitro::NsmAttestor::open().map_err(|e| e.to_string())?;
    Ok((Arc::new(nsm), config))
}

type Halves = (
    Box<dyn std::io::Read + Send>,
    Box<dyn std::io::Write + Send>,
);

fn connect(channel: &Channel) -> Result<Halves, String> {
    match channel {
        Channel::Unix(path) => {
            let s = UnixStream::connect(path).map_err(|e| format!("{path}: {e}"))?;
            let r = s.try_clone().map_err(|e| e.to_string())?;
            Ok((Box::new(r), Box::new(s)))
        }
        #[cfg(feature = "nitro")]
        Channel::Vsock(port) => {
            // CID 3 is the parent instance, as seen from a Nitro Enclave.
            let s = vsock::VsockStream::connect_with_cid_port(3, *port)
                .map_err(|e| format!("vsock port {port}: {e}"))?;
            let r = s.try_clone().map_err(|e| e.to_string())?;
            Ok((Box::new(r), Box::new(s)))
        }
        #[cfg(not(feature = "nitro"))]
        Channel::Vsock(port) => Err(format!(
            "vsock port {port}: this build has no vsock support (feature `nitro`)"
        )),
    }
}

fn run(args: Args) -> Result<(), String> {
    let (device, document) = device(args.config.as_deref())?;
    let measured = EnclaveConfig::parse(&document).map_err(|e| e.to_string())?;
    let config = Config {
        policy: policy(&measured),
        ..args.resources
    };
    let k = measured.key_service;
    let trust = vettid_attest::seal::kms::Trust {
        server_name: k.server_name,
        roots_pem: k.roots_pem,
        key_id: k.key_id,
        region: k.region,
    };
    let (reader, writer) =
        connect(&args.channel).map_err(|e| format!("cannot connect to the host: {e}"))?;
    vettid_enclave::server::serve(reader, writer, config, device, trust).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("vettid-enclave: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vettid-enclave: {e}");
            ExitCode::FAILURE
        }
    }
}
