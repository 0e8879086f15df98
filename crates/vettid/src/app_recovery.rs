//! `vettid app recover` (a new device takes over a vault after the web's recovery delay) and
//! `vettid app recovery status|cancel` (an enrolled device sees, or refuses, a recovery).

use crate::app::{
    PasswordArgs, PinArgs, TrustArgs, password, pin, pin_trust, read_qr, read_secret,
};
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use vettid_client::api::{Api, QrPayload, RecoveryNotice};
use vettid_client::app::{Proof, RecoverInput};
use vettid_client::profile::Profile;
use vettid_client::recovery::RecoveryPhrase;

#[derive(clap::Args)]
pub(crate) struct RecoverArgs {
    /// Read the recovery QR's payload (JSON, from the web page) from this file.
    #[arg(long, group = "qr")]
    qr_file: Option<PathBuf>,
    /// Read it from this environment variable.
    #[arg(long, group = "qr")]
    qr_env: Option<String>,
    /// Read it from standard input.
    #[arg(long, group = "qr")]
    qr_stdin: bool,
    /// Prove the recovery phrase (read from this environment variable) and set a new PIN
    /// (the only way back into a vault locked by wrong PINs). Without a phrase, the PIN is
    /// the proof and is kept.
    #[arg(long)]
    phrase_env: Option<String>,
    /// Read the recovery phrase from the first line of this file.
    #[arg(long)]
    phrase_file: Option<PathBuf>,
    /// The PIN (the proof), or with a phrase the new PIN.
    #[command(flatten)]
    pin: PinArgs,
    /// The password of the new credential.
    #[command(flatten)]
    password: PasswordArgs,
    /// A name for this device.
    #[arg(long, default_value = "vettid-cli")]
    device_name: String,
    #[command(flatten)]
    trust: TrustArgs,
    /// Connect to this NATS URL instead of the one the API reports.
    #[arg(long)]
    nats_url: Option<String>,
}

#[derive(clap::Args)]
pub(crate) struct RecoveryArgs {
    #[command(subcommand)]
    command: RecoveryCommand,
}

#[derive(clap::Subcommand)]
enum RecoveryCommand {
    /// Whether a recovery of this vault was requested, and when it could complete.
    Status,
    /// Cancel it ("this was not me"); the member is mailed.
    Cancel,
}

fn when(unix: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let in_secs = unix.saturating_sub(i64::try_from(now).unwrap_or(i64::MAX));
    if in_secs > 0 {
        format!("in {}h {:02}m", in_secs / 3600, in_secs % 3600 / 60)
    } else {
        "now".into()
    }
}

fn print_notice(n: &RecoveryNotice) {
    match n.stage.as_str() {
        "waiting" => println!(
            "a recovery of this vault was requested on the web; it can complete {} (at {})",
            when(n.ready_at),
            n.ready_at
        ),
        "ready" => println!("a recovery of this vault was requested and can complete now"),
        other => println!(
            "the recovery is {other}{}",
            n.cancel_reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
    }
}

/// After an unlock from this enrolled device: a recovery under way is cancelled (the enclave
/// would refuse it anyway, since this device just used the vault) and the member is told.
/// Best effort: an API that cannot be reached leaves the enclave's refusal to do the work.
pub(crate) async fn after_unlock(profile: &Profile) {
    match vettid_client::app::device_notices(profile).await {
        Ok((recovery, deletion)) => {
            if let Some(d) = deletion {
                println!(
                    "! a DELETION of this vault was requested on the web at {}; it can be confirmed from {}.",
                    d.requested_at, d.ready_at
                );
                println!(
                    "  If this was not you, sign in on the web and cancel it (a device cannot)."
                );
            }
            if let Some(n) = recovery {
                cancel_seen_recovery(profile, &n).await;
            }
        }
        Err(e) => eprintln!("  (could not ask the API about recoveries or deletions: {e})"),
    }
}

/// A recovery this device saw when it unlocked: shown, then cancelled (the unlock is its use).
async fn cancel_seen_recovery(profile: &Profile, n: &vettid_client::api::RecoveryNotice) {
    print_notice(n);
    println!("  unlocking from this device cancels it (if it was not you, it is stopped):");
    match vettid_client::app::recovery_notice(profile, true).await {
        Ok(_) => println!("✓ recovery cancelled; the member is mailed"),
        Err(e) => eprintln!("  could not tell the API ({e}); the enclave refuses it anyway"),
    }
}

pub(crate) async fn run(dir: &std::path::Path, args: RecoveryArgs) -> anyhow::Result<ExitCode> {
    let profile = Profile::open_enrolled(dir)?;
    let cancel = matches!(args.command, RecoveryCommand::Cancel);
    match vettid_client::app::recovery_notice(&profile, cancel).await? {
        None if cancel => {
            println!("no recovery of this vault is under way: nothing to cancel");
            Ok(ExitCode::FAILURE)
        }
        None => {
            println!("no recovery of this vault is under way");
            Ok(ExitCode::SUCCESS)
        }
        Some(n) => {
            print_notice(&n);
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) async fn recover(dir: &std::path::Path, args: RecoverArgs) -> anyhow::Result<ExitCode> {
    let qr = read_qr(args.qr_env.as_ref(), args.qr_file.as_ref(), args.qr_stdin)?
        .context("the recovery QR's payload is needed (--qr-file, --qr-env or --qr-stdin)")?;
    let qr = QrPayload::parse_recovery(qr.trim())?;
    let phrase = if args.phrase_env.is_some() || args.phrase_file.is_some() {
        let typed = read_secret(
            "recovery phrase",
            None,
            args.phrase_env.as_ref(),
            args.phrase_file.as_ref(),
        )?;
        Some(RecoveryPhrase::parse(
            std::str::from_utf8(&typed).context("the recovery phrase is not UTF-8")?,
        )?)
    } else {
        None
    };
    let mut profile = Profile::open_or_create(dir)?;
    pin_trust(&mut profile, &args.trust)?;
    let pin = pin(&args.pin)?;
    let password = password(&args.password)?;
    let proof = match phrase {
        Some(phrase) => Proof::Phrase {
            phrase,
            new_pin: pin,
        },
        None => Proof::Pin(pin),
    };
    println!(
        "recovering member {}'s vault onto {} with {}",
        qr.member_id,
        dir.display(),
        qr.api_url
    );
    let api = Api::new(&qr.api_url);
    let pending =
        vettid_client::app::begin(&mut profile, &api, &qr.clone().into(), &args.device_name)
            .await?;
    println!();
    println!("  comparison code:   {}", pending.comparison_code());
    println!();
    println!("  Type this code into the recovery page where you signed in, to confirm that");
    println!("  this device is yours. Waiting for confirmation… (cancel on the page to stop)");
    let input = RecoverInput {
        proof,
        password,
        nats_url: args.nats_url.clone(),
    };
    let done = vettid_client::app::recover(&mut profile, &api, pending, input, |phase, detail| {
        println!("  ✓ {phase:<22} {detail}")
    })
    .await?;
    println!(
        "recovered: the vault is this device's at version {} ({} other device(s) removed) — profile {}",
        done.version,
        done.removed_devices,
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
