//! `vettid app --profile DIR backup …`: backups made by the vault (each command unlocks the
//! vault in its session with the PIN, like the other data commands).

use crate::app::{PinArgs, connect, pin};
use std::process::ExitCode;
use vettid_client::profile::Profile;
use vettid_proto::backup::{BackupInfo, Every, Schedule};

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
    /// The schedule, the newest backup, the newest one proven to open, the next due.
    Status,
    /// When the vault backs itself up, and which backups it keeps (every new backup is
    /// opened in the enclave at once; the oldest beyond --keep and those older than
    /// --max-age-days go, never the newest).
    Schedule {
        /// off, daily, weekly or monthly.
        #[arg(long, value_enum)]
        every: Cadence,
        /// How many backups to keep (1–100).
        #[arg(long, default_value_t = 10)]
        keep: u32,
        /// Delete backups older than this many days (0: no age limit).
        #[arg(long, default_value_t = 0)]
        max_age_days: u32,
    },
    /// Have the enclave open a backup end to end (every chunk, the database in it).
    Verify {
        /// Its number (the newest when left out).
        id: Option<u64>,
    },
}

#[derive(clap::ValueEnum, Clone, Copy)]
pub(crate) enum Cadence {
    Off,
    Daily,
    Weekly,
    Monthly,
}

fn show(b: &BackupInfo) -> String {
    format!(
        "#{:<4} vault version {:<6} {:>9} bytes in {:>3} chunk(s){}",
        b.id,
        b.vault_version,
        b.bytes,
        b.chunks,
        if b.phrase {
            "  (its key is also wrapped under the recovery phrase)"
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
        BackupCommand::Status => {
            let st = s.backup_status().await?;
            println!(
                "schedule   {:?}, keep {}{}",
                st.schedule.every,
                st.schedule.keep,
                match st.schedule.max_age_days {
                    0 => String::new(),
                    d => format!(", at most {d} day(s) old"),
                }
            );
            match &st.newest {
                Some(b) => println!("newest     {}", show(b)),
                None => println!("newest     no backup yet (vettid app backup now)"),
            }
            match st.verified {
                Some((id, at)) => println!("verified   #{id} opened in the enclave at {at} ms"),
                None => println!("verified   none yet"),
            }
            if let Some(due) = st.next_due_ms {
                println!("next due   {due} ms");
            }
        }
        BackupCommand::Schedule {
            every,
            keep,
            max_age_days,
        } => {
            let every = match every {
                Cadence::Off => Every::Off,
                Cadence::Daily => Every::Daily,
                Cadence::Weekly => Every::Weekly,
                Cadence::Monthly => Every::Monthly,
            };
            let set = s
                .set_backup_schedule(Schedule {
                    every,
                    keep,
                    max_age_days,
                })
                .await?;
            println!(
                "✓ backups {:?}, keeping {} (the enclave makes them itself while it holds the vault's keys)",
                set.every, set.keep
            );
        }
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
