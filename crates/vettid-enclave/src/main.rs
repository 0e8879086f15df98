//! The enclave process: `vettid-enclave --socket PATH [options]`. It connects to the host's
//! channel socket and serves it until the host goes away.
#![forbid(unsafe_code)]

use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Duration;
use vettid_crypto::password::Cost;
use vettid_enclave::manager::Config;

const USAGE: &str = "usage: vettid-enclave --socket PATH [--pin-attempts N] [--max-resident N] [--memory-budget-mib N] [--idle-secs N] [--snapshot-every N] [--argon2-memory-kib N] [--argon2-passes N]";

fn parse(args: &[String]) -> Result<(String, Config), String> {
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
            "--socket" => socket = Some(value()?.clone()),
            "--pin-attempts" => {
                config.policy.max_failures = number(value()?)?.clamp(1, 1000) as u32
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
    config.policy.cost = cost;
    Ok((socket.ok_or("--socket is required")?, config))
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
    let stream = match UnixStream::connect(&socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vettid-enclave: cannot connect to the host at {socket}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match vettid_enclave::server::serve(stream, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vettid-enclave: {e}");
            ExitCode::FAILURE
        }
    }
}
