//! `vettid app --profile DIR backup …`: backups made by the vault (each command unlocks the
//! vault in its session with the PIN, like the other data commands).

use crate::app::{PinArgs, connect, pin, read_secret};
use anyhow::Context;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
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

#[derive(clap::Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    pin: PinArgs,
    /// The file to write (refused if it exists).
    #[arg(long)]
    out: PathBuf,
    /// Export this backup instead of making a new one.
    #[arg(long)]
    id: Option<u64>,
}

#[derive(clap::Args)]
pub(crate) struct RestoreArgs {
    #[command(flatten)]
    pin: PinArgs,
    /// The exported file.
    #[arg(long)]
    from: PathBuf,
    /// Read the recovery phrase (12 words) of the vault that made the file from this
    /// environment variable.
    #[arg(long)]
    phrase_env: Option<String>,
    /// Read that recovery phrase from the first line of this file.
    #[arg(long)]
    phrase_file: Option<PathBuf>,
}

/// Shows `done/total` chunks on one line.
fn progress(verb: &'static str) -> impl FnMut(u32, u32) {
    move |done, total| {
        print!("\r  {verb} chunk {done}/{total}");
        if done == total {
            println!();
        }
        let _ = std::io::stdout().flush();
    }
}

pub(crate) async fn export(dir: &std::path::Path, args: ExportArgs) -> anyhow::Result<ExitCode> {
    if args.out.exists() {
        anyhow::bail!(
            "{} exists; choose another --out (an export is never overwritten)",
            args.out.display()
        );
    }
    let pin = pin(&args.pin)?;
    let mut profile = Profile::open_enrolled(dir)?;
    let c = connect(&mut profile).await?;
    let s = &mut c.session.unlock(pin, &mut profile).await?;
    let backup = match args.id {
        Some(id) => s
            .backups()
            .await?
            .into_iter()
            .find(|b| b.id == id)
            .with_context(|| format!("there is no backup {id} (vettid app backup list)"))?,
        None => {
            println!("  sealing the vault's database in the enclave…");
            s.backup_now().await?
        }
    };
    if !backup.phrase {
        anyhow::bail!(
            "backup {} has no key wrapped under a recovery phrase: it could not be restored elsewhere",
            backup.id
        );
    }
    // Written beside the target, then linked into place (a link never replaces a file that
    // appeared meanwhile): a cut-short export leaves no file that looks complete.
    let mut partial = args.out.clone().into_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let written = write_export(s, &backup, &partial, &args.out).await;
    let _ = std::fs::remove_file(&partial);
    let written = written?;
    println!(
        "✓ backup {} exported to {} ({written} bytes; it opens only with your recovery phrase)",
        show(&backup),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes the export to `partial`, makes it durable, and links it in as `out`.
async fn write_export(
    s: &mut vettid_client::vault::Unlocked<&mut Profile>,
    backup: &BackupInfo,
    partial: &std::path::Path,
    out: &std::path::Path,
) -> anyhow::Result<u64> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let written = s
        .export_backup(backup, &mut file, progress("exported"))
        .await?;
    file.sync_all()?;
    std::fs::hard_link(partial, out).with_context(|| {
        format!(
            "{} appeared meanwhile; the export was not written over it",
            out.display()
        )
    })?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(written)
}

pub(crate) async fn restore(dir: &std::path::Path, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let mut file = std::io::BufReader::new(
        std::fs::File::open(&args.from)
            .with_context(|| format!("opening {}", args.from.display()))?,
    );
    let typed = read_secret(
        "recovery phrase of the vault that made the file",
        None,
        args.phrase_env.as_ref(),
        args.phrase_file.as_ref(),
    )?;
    let phrase = vettid_client::recovery::RecoveryPhrase::parse(
        std::str::from_utf8(&typed).context("the recovery phrase is not UTF-8")?,
    )?;
    let pin = pin(&args.pin)?;
    let mut profile = Profile::open_enrolled(dir)?;
    let c = connect(&mut profile).await?;
    let s = &mut c.session.unlock(pin, &mut profile).await?;
    println!("  opening the file's key with the phrase in the enclave and checking every chunk…");
    let (backup, rows) = s
        .restore_export(&mut file, &phrase, progress("restored"))
        .await?;
    println!(
        "✓ restored backup {} ({rows} rows: secrets, personal data and feed)",
        show(&backup)
    );
    Ok(ExitCode::SUCCESS)
}
