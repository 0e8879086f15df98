//! `vettid app --profile DIR credential …`: the split-custody credential from a terminal.
//! Each command unlocks the vault in its session (PIN) and sends the profile's blob with the
//! password's verifier; the vault answers with the next blob, which replaces the old one.

use crate::app::{PasswordArgs, PinArgs, connect, password, pin, read_secret};
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use vettid_client::profile::Profile;
use vettid_proto::credential::{CredentialOp, CredentialResult, CriticalKind};
use vettid_proto::secrets::Secret;
use zeroize::Zeroizing;

#[derive(clap::Args)]
pub(crate) struct CredentialArgs {
    #[command(flatten)]
    pin: PinArgs,
    #[command(flatten)]
    password: PasswordArgs,
    #[command(subcommand)]
    command: CredentialCommand,
}

/// A kind as the vault names it (`seed-phrase`, `private-key`, …).
fn kind(name: &str) -> Result<CriticalKind, String> {
    CriticalKind::parse(name).ok_or_else(|| {
        let names: Vec<_> = CriticalKind::ALL.iter().map(|k| k.name()).collect();
        format!("one of {}", names.join(", "))
    })
}

#[derive(clap::Subcommand)]
pub(crate) enum CredentialCommand {
    /// List the critical secrets (no values).
    List,
    /// Add a critical secret (value from --value-env or --value-file).
    Add {
        /// What it is: seed-phrase, private-key, signing-key, master-password, recovery-key
        /// or other.
        #[arg(long, value_parser = kind)]
        kind: CriticalKind,
        /// A label.
        #[arg(long)]
        label: String,
        /// Environment variable holding the value.
        #[arg(long)]
        value_env: Option<String>,
        /// File whose first line is the value.
        #[arg(long)]
        value_file: Option<PathBuf>,
    },
    /// Show one critical secret's value.
    Get {
        /// Its id (hex).
        id: String,
    },
    /// Remove a critical secret.
    Delete {
        /// Its id (hex).
        id: String,
    },
    /// Change the password (the new one from --new-password-env or a prompt).
    ChangePassword {
        /// Environment variable holding the new password.
        #[arg(long)]
        new_password_env: Option<String>,
    },
}

fn id(hex_id: &str) -> anyhow::Result<[u8; 16]> {
    let mut id = [0u8; 16];
    hex::decode_to_slice(hex_id, &mut id).context("an id is 32 hex digits")?;
    Ok(id)
}

pub(crate) async fn run(dir: &std::path::Path, args: CredentialArgs) -> anyhow::Result<ExitCode> {
    let pin = pin(&args.pin)?;
    let password = password(&args.password)?;
    let op = match &args.command {
        CredentialCommand::List => CredentialOp::List,
        CredentialCommand::Add {
            kind,
            label,
            value_env,
            value_file,
        } => {
            let value = read_secret("value", None, value_env.as_ref(), value_file.as_ref())?;
            CredentialOp::Add {
                kind: *kind,
                label: label.clone(),
                value: Secret(Zeroizing::new(
                    String::from_utf8(value.to_vec()).context("the value is not UTF-8")?,
                )),
            }
        }
        CredentialCommand::Get { id: i } => CredentialOp::Get { id: id(i)? },
        CredentialCommand::Delete { id: i } => CredentialOp::Delete { id: id(i)? },
        CredentialCommand::ChangePassword { new_password_env } => {
            let new = read_secret("new password", None, new_password_env.as_ref(), None)?;
            // The profile is opened (and locked) for the member id only; released here.
            let member = Profile::open_enrolled(dir)?.member()?.to_owned();
            CredentialOp::ChangePassword {
                new_verifier: Zeroizing::new(vettid_client::password_verifier(&member, &new)),
            }
        }
    };
    let mut profile = Profile::open_enrolled(dir)?;
    let c = connect(&mut profile).await?;
    let mut s = c.session.unlock(pin, &mut profile).await?;
    match s.credential(&password, op).await? {
        CredentialResult::Listed(items) => {
            for m in &items {
                println!("{}  {:<16} {}", hex::encode(m.id), m.kind.name(), m.label);
            }
            println!("{} critical secret(s)", items.len());
        }
        CredentialResult::Added(m) => println!("✓ added {} ({})", hex::encode(m.id), m.label),
        CredentialResult::Value { meta, value } => {
            println!("{}: {}", meta.label, value.expose())
        }
        CredentialResult::Deleted => println!("✓ deleted"),
        CredentialResult::PasswordChanged => println!("✓ password changed"),
    }
    println!("  (the credential was re-sealed under a new key; the profile holds the new blob)");
    Ok(ExitCode::SUCCESS)
}
