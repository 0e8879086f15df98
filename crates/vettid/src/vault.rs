//! `vettid vault …`: drive the enclave through the host's control socket (a debug path
//! until apps reach their vault over NATS). PINs come from an environment variable, a file
//! or standard input — never from the command line.

use anyhow::{Context, bail};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use vettid_host::control::Client;
use vettid_proto::enclave::{EnclaveReply, ToEnclave, VaultOp};

#[derive(clap::Args)]
pub(crate) struct VaultArgs {
    /// The data directory of the running host.
    #[arg(long, default_value = ".vettid")]
    data_dir: PathBuf,
    /// The vault id (every command but `stats`).
    #[arg(long)]
    vault: Option<String>,
    #[command(subcommand)]
    op: VaultCommand,
}

#[derive(clap::Args)]
pub(crate) struct PinSource {
    /// Read the PIN from this environment variable.
    #[arg(long)]
    pin_env: Option<String>,
    /// Read the PIN from the first line of this file.
    #[arg(long)]
    pin_file: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
pub(crate) enum VaultCommand {
    /// Create a vault (PIN from --pin-env, --pin-file or standard input).
    Create(PinSource),
    /// Unlock a vault.
    Unlock(PinSource),
    /// Change the PIN (old PIN from the source, new one from --new-pin-env).
    ChangePin {
        #[command(flatten)]
        pin: PinSource,
        /// Environment variable holding the new PIN.
        #[arg(long)]
        new_pin_env: String,
    },
    /// Lock a vault (forget its keys in the enclave).
    Lock,
    /// Store a record.
    Put {
        /// Record key.
        key: String,
        /// Record value.
        value: String,
    },
    /// Read a record.
    Get {
        /// Record key.
        key: String,
    },
    /// Show residency and the guess-limit state.
    Status,
    /// Show how many vaults the enclave holds (open, at rest, evicted) and the memory it
    /// accounts for them against its budget.
    Stats,
}

fn read_pin(src: &PinSource) -> anyhow::Result<Vec<u8>> {
    let pin = match (&src.pin_env, &src.pin_file) {
        (Some(var), _) => {
            std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?
        }
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        (None, None) => {
            eprint!("PIN: ");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end().to_owned()
        }
    };
    if pin.is_empty() {
        bail!("empty PIN");
    }
    Ok(pin.into_bytes())
}

/// The enclave's counts as one line: vaults open, at rest and evicted, and the MiB it
/// accounts against its memory budget (`ToEnclave::Stats` through the control socket).
pub(crate) fn enclave_stats(client: &mut Client) -> anyhow::Result<String> {
    match client.call(&ToEnclave::Stats)? {
        Ok(EnclaveReply::Stats {
            open,
            resting,
            evicted,
            accounted_mib,
        }) => Ok(format!(
            "{open} vault(s) open, {resting} at rest, {evicted} evicted; {accounted_mib} MiB accounted against the enclave's memory budget"
        )),
        Ok(_) => bail!("unexpected answer from the enclave"),
        Err(e) => bail!("the enclave refused: {e}"),
    }
}

pub(crate) fn run(args: VaultArgs) -> anyhow::Result<ExitCode> {
    let socket = args.data_dir.join("host.sock");
    let connect = || {
        Client::connect(&socket).with_context(|| {
            format!(
                "cannot reach the host at {} (is `vettid up` or `vettid host` running?)",
                socket.display()
            )
        })
    };
    let usage =
        |kind, message: &str| -> ! { clap::Error::raw(kind, format!("{message}\n")).exit() };
    if matches!(args.op, VaultCommand::Stats) {
        if args.vault.is_some() {
            usage(
                clap::error::ErrorKind::ArgumentConflict,
                "stats is about the whole enclave: it takes no --vault",
            );
        }
        println!("enclave holds {}", enclave_stats(&mut connect()?)?);
        return Ok(ExitCode::SUCCESS);
    }
    let Some(vault) = args.vault.clone() else {
        usage(
            clap::error::ErrorKind::MissingRequiredArgument,
            "--vault <id> is required for this command",
        );
    };
    let op = match &args.op {
        VaultCommand::Create(p) => VaultOp::Create { pin: read_pin(p)? },
        VaultCommand::Unlock(p) => VaultOp::Unlock { pin: read_pin(p)? },
        VaultCommand::ChangePin { pin, new_pin_env } => VaultOp::ChangePin {
            old: read_pin(pin)?,
            new: read_pin(&PinSource {
                pin_env: Some(new_pin_env.clone()),
                pin_file: None,
            })?,
        },
        VaultCommand::Lock => VaultOp::Lock,
        VaultCommand::Put { key, value } => VaultOp::Put {
            key: key.clone(),
            value: value.clone().into_bytes(),
        },
        VaultCommand::Get { key } => VaultOp::Get { key: key.clone() },
        VaultCommand::Status => VaultOp::Status,
        VaultCommand::Stats => unreachable!("answered above"),
    };
    let mut client = connect()?;
    match client.call(&ToEnclave::Vault {
        vault: vault.clone(),
        op,
    })? {
        Ok(reply) => {
            match reply {
                EnclaveReply::Open(v) => {
                    println!("vault {} open at version {}", vault, v.version)
                }
                EnclaveReply::Written(v) => println!(
                    "written: version {} (signed by {})",
                    v.version,
                    hex::encode(&v.identity[..8])
                ),
                EnclaveReply::Value(Some(v)) => println!("{}", String::from_utf8_lossy(&v)),
                EnclaveReply::Value(None) => {
                    eprintln!("no such record");
                    return Ok(ExitCode::FAILURE);
                }
                EnclaveReply::Locked => println!("vault {} locked", vault),
                EnclaveReply::Status {
                    residency,
                    failed_attempts,
                    attempts_left,
                } => println!(
                    "vault {}: {residency:?}, {failed_attempts} wrong PIN(s) in a row, {attempts_left} attempt(s) left",
                    vault
                ),
                EnclaveReply::Pong => println!("pong"),
                EnclaveReply::App { .. }
                | EnclaveReply::Stats { .. }
                | EnclaveReply::Shredded { .. }
                | EnclaveReply::Peer { .. }
                | EnclaveReply::Peers { .. } => {
                    bail!("unexpected answer from the enclave")
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("vettid vault: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
