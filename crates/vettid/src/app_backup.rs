//! `vettid app --profile DIR backup …`: backups made by the vault (each command unlocks the
//! vault in its session with the PIN, like the other data commands).

use crate::app::{PinArgs, connect, pin};
use std::process::ExitCode;
use vettid_client::profile::Profile;
use vettid_proto::backup::BackupInfo;

#[derive(clap::Args)]
pub(crate) struct BackupArgs {
    #[command(flatten)]
    pin: PinArgs,
    #[command(subcommand)]
    command: BackupCommand,
}

#[derive(clap::Subcommand)]
pub(crate) enum BackupCommand {
    /// Back the vault up now (sealed in the enclave; the operator stores what it cannot read).
    Now,
    /// The backups made.
    List,
    /// The newest backup and how many there are.
    Status,
    /// Have the enclave open a backup end to end (every chunk, the database in it).
    Verify {
        /// Its number (the newest when left out).
        id: Option<u64>,
    },
}

fn show(b: &BackupInfo) -> String {
    format!(
        "#{:<4} vault version {:<6} {:>9} bytes in {:>3} chunk(s){}",
        b.id,
        b.vault_version,
        b.bytes,
        b.chunks,
        if b.phrase {
            "  (opens with the recovery phrase too)"
        } else {
            ""
        }
    )
}

pub(crate) async fn run(dir: &std::path::Path, args: BackupArgs) -> anyhow::Result<ExitCode> {
    let pin = pin(&args.pin)?;
    let mut profile = Profile::open_enrolled(dir)?;
    let c = connect(&mut profile).await?;
    let s = &mut c.session.unlock(pin, &mut profile).await?;
    match args.command {
        BackupCommand::Now => {
            println!("  sealing the vault's database in the enclave and storing it…");
            let b = s.backup_now().await?;
            println!("✓ backup {}", show(&b));
        }
        BackupCommand::List => {
            let all = s.backups().await?;
            for b in &all {
                println!("{}", show(b));
            }
            println!("{} backup(s)", all.len());
        }
        BackupCommand::Status => match s.backups().await?.last() {
            Some(b) => println!("newest {}", show(b)),
            None => println!("no backup yet (vettid app backup now)"),
        },
        BackupCommand::Verify { id } => {
            let id = match id {
                Some(id) => id,
                None => match s.backups().await?.last() {
                    Some(b) => b.id,
                    None => anyhow::bail!("there is no backup to verify yet"),
                },
            };
            println!("  opening backup {id} in the enclave…");
            let b = s.verify_backup(id).await?;
            println!(
                "✓ backup {} opens: every chunk authenticated, database sound",
                show(&b)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
