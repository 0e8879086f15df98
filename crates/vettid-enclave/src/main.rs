//! The enclave process: `vettid-enclave --socket PATH [options]`. It connects to the host's
//! channel socket and serves it until the host goes away.
#![forbid(unsafe_code)]

use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Duration;
use vettid_crypto::password::Cost;
use vettid_enclave::manager::Config;

const USAGE: &str = "usage: vettid-enclave (--socket PATH | --vsock-port PORT) [--pin-attempts N] [--max-resident N] [--memory-budget-mib N] [--idle-secs N] [--snapshot-every N] [--argon2-memory-kib N] [--argon2-passes N]";

/// Where the host is.
enum Channel {
    /// A Unix socket (local development).
    Unix(String),
    /// vsock to the parent instance (CID 3) on a port (Nitro; feature `nitro`).
    Vsock(u32),
}

fn parse(args: &[String]) -> Result<(Channel, Config), String> {
    let mut socket = None;
    let mut config = Config::default();
    let mut cost = Cost::DEFAULT;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: &String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "--socket" => socket = Some(Channel::Unix(value()?.clone())),
            "--vsock-port" => {
                let port = number(value()?)?;
                socket = Some(Channel::Vsock(
                    u32::try_from(port).map_err(|_| "--vsock-port: too large")?,
                ));
            }
            "--pin-attempts" => {
                config.policy.keys.max_failures = number(value()?)?.clamp(1, 1000) as u32
            }
            "--max-resident" => config.max_resident = number(value()?)? as usize,
            "--memory-budget-mib" => {
                config.memory_budget = number(value()?)?.saturating_mul(1 << 20)
            }
            "--idle-secs" => config.idle = Duration::from_secs(number(value()?)?),
            "--snapshot-every" => config.snapshot_every = number(value()?)?.max(1),
            "--argon2-memory-kib" => cost.memory_kib = number(value()?)? as u32,
            "--argon2-passes" => cost.passes = number(value()?)? as u32,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    config.policy.keys.cost = cost;
    Ok((
        socket.ok_or("--socket or --vsock-port is required")?,
        config,
    ))
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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (socket, config) = match parse(&args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("vettid-enclave: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let halves = match connect(&socket) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("vettid-enclave: cannot connect to the host: {e}");
            return ExitCode::FAILURE;
        }
    };
    match vettid_enclave::server::serve(halves.0, halves.1, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vettid-enclave: {e}");
            ExitCode::FAILURE
        }
    }
}
