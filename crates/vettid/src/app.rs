//! `vettid app --profile DIR …`: what the member's phone does, from a terminal. The profile
//! directory plays the phone's secure storage (see `vettid_client::profile`).
//!
//! PINs and passwords come from a prompt, an environment variable or a file; `--pin` and
//! `--password` exist for scripts that have no better place, and are never used in the docs.

use anyhow::{Context, bail};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use vettid_client::ClientError;
use vettid_client::api::{Api, EnrollmentSecret, QrPayload};
use vettid_client::profile::Profile;
use vettid_proto::enclave::VaultError;
use zeroize::Zeroizing;

#[derive(clap::Args)]
pub(crate) struct AppArgs {
    /// The profile directory (the app's private storage).
    #[arg(long)]
    profile: PathBuf,
    /// Also trust this CA (PEM) for an `https://` API, besides the system's roots.
    #[arg(long, env = "VETTID_API_CA")]
    api_ca: Option<PathBuf>,
    #[command(subcommand)]
    command: AppCommand,
}

/// Where a secret comes from.
#[derive(clap::Args, Clone, Default)]
pub(crate) struct SecretSource {
    /// Read it from this environment variable.
    #[arg(long)]
    env: Option<String>,
    /// Read it from the first line of this file.
    #[arg(long)]
    file: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct PinArgs {
    /// Read the PIN from this environment variable.
    #[arg(long)]
    pin_env: Option<String>,
    /// Read the PIN from the first line of this file.
    #[arg(long)]
    pin_file: Option<PathBuf>,
    /// The PIN itself (visible to other users of this machine; prefer the others).
    #[arg(long)]
    pin: Option<String>,
}

#[derive(clap::Args)]
pub(crate) struct ResetPinArgs {
    /// Read the recovery phrase (12 words) from this environment variable.
    #[arg(long)]
    phrase_env: Option<String>,
    /// Read the recovery phrase from the first line of this file.
    #[arg(long)]
    phrase_file: Option<PathBuf>,
    /// The new PIN.
    #[command(flatten)]
    pin: PinArgs,
}

/// Where the password comes from (a prompt when none is given).
#[derive(clap::Args)]
pub(crate) struct PasswordArgs {
    /// Read the password from this environment variable.
    #[arg(long)]
    password_env: Option<String>,
    /// Read the password from the first line of this file.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// The password itself (visible to other users of this machine; prefer the others).
    #[arg(long)]
    password: Option<String>,
}

#[derive(clap::Subcommand)]
pub(crate) enum AppCommand {
    /// Enroll this profile with a code or QR payload from the web (PIN and password from
    /// prompts, --pin-env/--password-env or --pin-file/--password-file).
    Enroll(Box<EnrollArgs>),
    /// Open the vault with the PIN.
    Unlock(PinArgs),
    /// Forgot the PIN: set a new one with the recovery phrase shown at enrollment (counted
    /// like a PIN attempt). The new PIN from --pin-env/--pin-file or a prompt.
    ResetPin(ResetPinArgs),
    /// Lost your device? On a new one, with the recovery QR the web page shows after the
    /// delay: prove your PIN or recovery phrase and the vault moves to this device (every
    /// other device is removed). Run with a new --profile.
    Recover(Box<crate::app_recovery::RecoverArgs>),
    /// A recovery of this vault requested on the web: see it, or cancel it ("not me").
    Recovery(crate::app_recovery::RecoveryArgs),
    /// Lock the vault (the enclave forgets its keys).
    Lock,
    /// Show whether the vault is unlocked and how many PIN attempts are left.
    Status,
    /// Show the member, the vault's identity and this device.
    Whoami,
    /// Renew this app's NATS credentials with its device key.
    RefreshCreds,
    /// The split-custody credential: list, add, get, delete critical secrets; change password.
    Credential(Box<crate::app_credential::CredentialArgs>),
    /// The feed and audit log: list, read, archive, delete, verify, audit, export.
    Feed(Box<crate::app_feed::FeedArgs>),
    /// Backups made by the vault: now, list, status, verify, schedule.
    Backup(Box<crate::app_backup::BackupArgs>),
    /// Write a backup (a new one, or --id) to your own file: sealed, it opens only with the
    /// recovery phrase, in any vault of yours, even without this operator.
    Export(Box<crate::app_backup::ExportArgs>),
    /// Restore your exported file into this vault with the phrase of the vault that made it
    /// (its secrets, personal data and feed replace this vault's).
    Restore(Box<crate::app_backup::RestoreArgs>),
    /// The devices registered with the vault: list, rename, add (approve a joining device),
    /// remove.
    Devices(Box<crate::app_devices::DevicesArgs>),
    /// On a new device: join the vault with a device's approval (request, then finish).
    Join(Box<crate::app_devices::JoinArgs>),
    /// The secrets store: add, get, list, update, delete, versions, restore, sync, totp.
    Secrets(Box<crate::app_secrets::SecretsArgs>),
    /// Personal data, sharing, the public profile and the photo.
    Personal(Box<crate::app_personal::PersonalArgs>),
    /// Connections with other members: invite, accept, list, show, sas, approve, reject,
    /// revoke.
    Connections(Box<crate::app_connections::ConnectionsArgs>),
    /// Messages on connections: send, list, read, watch.
    Messages(Box<crate::app_connections::MessagesArgs>),
    /// Show the vault's events (including those sent while this app was offline).
    Events {
        /// Wait at most this long for the first event.
        #[arg(long, default_value_t = 2)]
        wait_secs: u64,
    },
}

#[derive(clap::Args)]
pub(crate) struct EnrollArgs {
    /// The API (http://host:port).
    #[arg(long)]
    api: Option<String>,
    /// The email of the member the code was made for (needed with a code, not a QR).
    #[arg(long)]
    email: Option<String>,
    /// Read the short code shown on the web (XXXX-XXXX) from this environment variable.
    #[arg(long, group = "secret")]
    code_env: Option<String>,
    /// Read the short code from the first line of this file.
    #[arg(long, group = "secret")]
    code_file: Option<PathBuf>,
    /// Read the QR code's payload (JSON) from this file.
    #[arg(long, group = "secret")]
    qr_file: Option<PathBuf>,
    /// Read the QR code's payload from this environment variable.
    #[arg(long, group = "secret")]
    qr_env: Option<String>,
    /// Read the QR code's payload from standard input.
    #[arg(long, group = "secret")]
    qr_stdin: bool,
    #[command(flatten)]
    pin: PinArgs,
    #[command(flatten)]
    password: PasswordArgs,
    /// A name for this device.
    #[arg(long, default_value = "vettid-cli")]
    device_name: String,
    #[command(flatten)]
    trust_args: TrustArgs,
    /// Connect to this NATS URL instead of the one the API reports.
    #[arg(long)]
    nats_url: Option<String>,
}

/// The trust anchors a new profile pins before it talks to an enclave.
#[derive(clap::Args)]
pub(crate) struct TrustArgs {
    /// Pin the trust anchors of a local stack: its data directory's dev root
    /// (`dev-attestor/root.pem`) and manifest key (`manifest/signing.pub`).
    #[arg(long)]
    trust: Option<PathBuf>,
    /// Pin this attestation root (PEM) instead.
    #[arg(long, requires = "manifest_key", conflicts_with = "trust")]
    root: Option<PathBuf>,
    /// Pin this PCR-manifest key (hex Ed25519) instead.
    #[arg(long, requires = "root")]
    manifest_key: Option<String>,
}

/// Pins the anchors `args` name in `profile` (or keeps those pinned already).
pub(crate) fn pin_trust(profile: &mut Profile, args: &TrustArgs) -> anyhow::Result<()> {
    match (&args.trust, &args.root, &args.manifest_key) {
        (Some(data), _, _) => {
            let root = std::fs::read_to_string(data.join("dev-attestor/root.pem"))
                .with_context(|| format!("no dev root in {}", data.display()))?;
            let key = std::fs::read_to_string(data.join("manifest/signing.pub"))
                .with_context(|| format!("no manifest key in {}", data.display()))?;
            profile.pin_trust(&root, &key)?;
        }
        (None, Some(root), Some(key)) => {
            let root = std::fs::read_to_string(root)
                .with_context(|| format!("reading {}", root.display()))?;
            profile.pin_trust(&root, key)?;
        }
        _ if profile.dir().join("trust/root.pem").exists() => {}
        _ => bail!(
            "no trust anchors pinned: pass --trust DATA_DIR (a local stack) or --root PEM --manifest-key HEX"
        ),
    }
    Ok(())
}

pub(crate) fn read_secret(
    what: &str,
    value: Option<&String>,
    env: Option<&String>,
    file: Option<&PathBuf>,
) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let text = Zeroizing::new(match (value, env, file) {
        (Some(v), _, _) => v.clone(),
        (None, Some(var), _) => {
            std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?
        }
        (None, None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        (None, None, None) => prompt(what)?,
    });
    if text.is_empty() {
        bail!("empty {what}");
    }
    Ok(Zeroizing::new(text.as_bytes().to_vec()))
}

/// Reads a line from standard input, without echo when it is a terminal.
fn prompt(what: &str) -> anyhow::Result<String> {
    use nix::sys::termios;
    let stdin = std::io::stdin();
    eprint!("{what}: ");
    std::io::stderr().flush()?;
    let saved = if stdin.is_terminal() {
        let saved = termios::tcgetattr(&stdin).ok();
        if let Some(t) = &saved {
            let mut quiet = t.clone();
            quiet.local_flags.remove(termios::LocalFlags::ECHO);
            let _ = termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &quiet);
        }
        saved
    } else {
        None
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(t) = saved {
        let _ = termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &t);
        eprintln!();
    }
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

pub(crate) fn pin(p: &PinArgs) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    read_secret(
        "PIN",
        p.pin.as_ref(),
        p.pin_env.as_ref(),
        p.pin_file.as_ref(),
    )
}

/// Shows the recovery phrase once, as numbered words.
fn show_phrase(phrase: &vettid_client::recovery::RecoveryPhrase) {
    println!();
    println!("  Your recovery phrase (made in the enclave; shown this once, kept by nobody):");
    println!();
    for (i, chunk) in phrase
        .words()
        .split(' ')
        .collect::<Vec<_>>()
        .chunks(4)
        .enumerate()
    {
        let numbered: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(j, w)| format!("{:>2}. {w:<10}", i * 4 + j + 1))
            .collect();
        println!("    {}", numbered.join(" "));
    }
    println!();
    println!("  Write it down and keep it safe: with it you can set a new PIN");
    println!("  (`vettid app reset-pin`) if you forget yours.");
    println!();
}

/// The password from the arguments, or a prompt.
pub(crate) fn password(p: &PasswordArgs) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    read_secret(
        "password",
        p.password.as_ref(),
        p.password_env.as_ref(),
        p.password_file.as_ref(),
    )
}

pub(crate) fn run(args: AppArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match rt.block_on(dispatch(args)) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("vettid app: {}", explain(&e));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// A message that says what to do next, where there is something to do.
fn explain(e: &anyhow::Error) -> String {
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Vault(VaultError::WrongPin { attempts_left })) => {
            format!("wrong PIN; {attempts_left} attempt(s) left before the vault locks")
        }
        Some(ClientError::Vault(VaultError::LockedOut)) => {
            "the vault is locked after too many wrong PINs; only recovery can reopen it: request one on the web, then `vettid app recover` with your recovery phrase".into()
        }
        Some(ClientError::Vault(VaultError::RecentlyUsed)) => {
            "an enrolled device unlocked the vault during the recovery delay, so the enclave refused and the recovery is cancelled; if that device is yours, use it — otherwise request a new recovery".into()
        }
        Some(ClientError::Vault(VaultError::NotUnlocked)) => {
            "the vault is locked: run `vettid app --profile … unlock` first".into()
        }
        Some(ClientError::Untrusted(why)) => format!(
            "refusing to talk to the enclave: {why}\n(nothing secret was sent; check the pinned trust anchors in the profile's trust/ directory)"
        ),
        Some(ClientError::Nats(why)) if why.contains("uthorization") => format!(
            "NATS refused this app's credentials ({why}); they may have expired or been revoked: try `vettid app --profile … refresh-creds`"
        ),
        _ => format!("{e:#}"),
    }
}

async fn dispatch(args: AppArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.api_ca {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("reading the API CA {}", path.display()))?;
        vettid_client::http::add_trusted_root(&pem)?;
    }
    match args.command {
        AppCommand::Enroll(e) => enroll(&args.profile, *e).await,
        AppCommand::Unlock(p) => {
            let pin = pin(&p)?;
            let mut profile = Profile::open_enrolled(&args.profile)?;
            let c = connect(&mut profile).await?;
            println!("  unlocking (the enclave stretches the PIN with Argon2id)…");
            let mut s = c
                .session
                .unlock(zeroize::Zeroizing::new(pin.to_vec()), &mut profile)
                .await?;
            let (version, event_key) = (s.version(), s.event_key().clone());
            s.seen().store_event_key(&event_key)?;
            println!("✓ vault unlocked at version {version}");
            crate::app_recovery::after_unlock(&profile).await;
            Ok(ExitCode::SUCCESS)
        }
        AppCommand::Recover(r) => crate::app_recovery::recover(&args.profile, *r).await,
        AppCommand::Recovery(r) => crate::app_recovery::run(&args.profile, r).await,
        AppCommand::ResetPin(r) => {
            let typed = read_secret(
                "recovery phrase",
                None,
                r.phrase_env.as_ref(),
                r.phrase_file.as_ref(),
            )?;
            let phrase = vettid_client::recovery::RecoveryPhrase::parse(
                std::str::from_utf8(&typed).context("the recovery phrase is not UTF-8")?,
            )?;
            let pin = pin(&r.pin)?;
            let mut profile = Profile::open_enrolled(&args.profile)?;
            let c = connect(&mut profile).await?;
            println!("  checking the phrase in the enclave (counted like a PIN attempt)…");
            let s = c.session.reset_pin(&phrase, pin, &mut profile).await?;
            println!(
                "✓ new PIN set; vault unlocked at version {} (the old PIN no longer opens it)",
                s.version()
            );
            Ok(ExitCode::SUCCESS)
        }
        AppCommand::Lock => {
            let mut profile = Profile::open_enrolled(&args.profile)?;
            let mut c = connect(&mut profile).await?;
            c.session.lock().await?;
            println!("✓ vault locked (the enclave forgot its keys)");
            Ok(ExitCode::SUCCESS)
        }
        AppCommand::Status => {
            let mut profile = Profile::open_enrolled(&args.profile)?;
            let mut c = connect(&mut profile).await?;
            let status = c.session.status(&mut profile).await?;
            println!("member         {}", profile.member()?);
            println!(
                "vault          {}",
                if status.unlocked {
                    "unlocked"
                } else {
                    "locked"
                }
            );
            println!("PIN attempts   {} left", status.attempts_left);
            println!(
                "version        {} (highest seen {})",
                status.version.map_or("-".into(), |v| v.to_string()),
                profile.state.highest_version
            );
            println!(
                "enclave        {} ({})",
                c.enclave.release, c.enclave.module_id
            );
            Ok(ExitCode::SUCCESS)
        }
        AppCommand::Whoami => {
            let mut profile = Profile::open_enrolled(&args.profile)?;
            let mut c = connect(&mut profile).await?;
            let who = c.session.whoami(&mut profile).await?;
            println!("member     {}", who.member);
            println!("identity   {}", hex::encode(who.identity_public_key));
            println!("device     {}", hex::encode(who.device_public_key));
            println!(
                "version    {}",
                who.version.map_or("locked".into(), |v| v.to_string())
            );
            Ok(ExitCode::SUCCESS)
        }
        AppCommand::RefreshCreds => {
            let profile = Profile::open_enrolled(&args.profile)?;
            let issued = vettid_client::app::refresh(&profile).await?;
            println!(
                "✓ new NATS credentials in {} (expire {}); the ones they replace are revoked",
                profile.dir().join("nats.creds").display(),
                issued.expires_at
            );
            Ok(ExitCode::SUCCESS)
        }
        AppCommand::Credential(c) => crate::app_credential::run(&args.profile, *c).await,
        AppCommand::Feed(f) => crate::app_feed::run(&args.profile, *f).await,
        AppCommand::Backup(b) => crate::app_backup::run(&args.profile, *b).await,
        AppCommand::Export(e) => crate::app_backup::export(&args.profile, *e).await,
        AppCommand::Restore(r) => crate::app_backup::restore(&args.profile, *r).await,
        AppCommand::Devices(d) => crate::app_devices::run(&args.profile, *d).await,
        AppCommand::Join(j) => crate::app_devices::join(&args.profile, *j).await,
        AppCommand::Secrets(s) => crate::app_secrets::run(&args.profile, *s).await,
        AppCommand::Personal(p) => crate::app_personal::run(&args.profile, *p).await,
        AppCommand::Connections(c) => crate::app_connections::connections(&args.profile, *c).await,
        AppCommand::Messages(m) => crate::app_connections::messages(&args.profile, *m).await,
        AppCommand::Events { wait_secs } => {
            let profile = Profile::open_enrolled(&args.profile)?;
            let key = profile
                .event_key()?
                .context("no event key yet (unlock the vault once)")?;
            let client = vettid_client::vault::connect(
                profile.state.nats_url.as_deref().context("no NATS URL")?,
                &profile.creds()?,
                profile.member()?,
            )
            .await?;
            let (events, skipped) = vettid_client::events::fetch(
                &client,
                &key,
                1000,
                std::time::Duration::from_secs(wait_secs),
            )
            .await?;
            for e in &events {
                println!("{} {:?}", e.at_ms, e.kind);
            }
            println!(
                "{} event(s){}",
                events.len(),
                if skipped > 0 {
                    format!(", {skipped} unreadable skipped")
                } else {
                    String::new()
                }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) async fn connect(
    profile: &mut Profile,
) -> anyhow::Result<vettid_client::app::Connected> {
    let c = vettid_client::app::connect(profile).await?;
    eprintln!(
        "  ✓ enclave attested: release {} — session open (Noise XKpsk3 + X-Wing)",
        c.enclave.release
    );
    Ok(c)
}

/// The code or QR token the member gives, and the API to present it to. A QR payload names
/// its API; a code needs `--api` and `--email`. With neither, the code is prompted for.
/// A QR payload from an environment variable, a file or standard input (`None`: none named).
/// The payload is JSON, possibly over several lines: it is read whole.
pub(crate) fn read_qr(
    env: Option<&String>,
    file: Option<&PathBuf>,
    stdin: bool,
) -> anyhow::Result<Option<Zeroizing<String>>> {
    Ok(match (env, file, stdin) {
        (Some(var), _, _) => {
            Some(Zeroizing::new(std::env::var(var).with_context(|| {
                format!("environment variable {var} is not set")
            })?))
        }
        (None, Some(path), _) => Some(Zeroizing::new(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        )),
        (None, None, true) => {
            let mut all = Zeroizing::new(String::new());
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut all)
                .context("reading the QR payload from standard input")?;
            Some(all)
        }
        (None, None, false) => None,
    })
}

fn enrollment_secret(args: &EnrollArgs) -> anyhow::Result<(EnrollmentSecret, String)> {
    let text = |bytes: Zeroizing<Vec<u8>>| -> anyhow::Result<Zeroizing<String>> {
        String::from_utf8(bytes.to_vec())
            .map(Zeroizing::new)
            .context("the code or QR payload is not UTF-8")
    };
    let qr = read_qr(args.qr_env.as_ref(), args.qr_file.as_ref(), args.qr_stdin)?;
    if let Some(qr) = qr {
        let qr = QrPayload::parse(qr.trim())?;
        let api = args.api.clone().unwrap_or_else(|| qr.api_url.clone());
        return Ok((qr.into(), api));
    }
    let api = args
        .api
        .clone()
        .context("--api is needed with a code (a QR payload names its API)")?;
    let email = args
        .email
        .clone()
        .context("--email is needed with a code: the email the member signed in with")?;
    let code = text(read_secret(
        "enrollment code (XXXX-XXXX)",
        None,
        args.code_env.as_ref(),
        args.code_file.as_ref(),
    )?)?;
    Ok((
        EnrollmentSecret::Code {
            code: code.trim().to_owned(),
            email,
        },
        api,
    ))
}

async fn enroll(dir: &std::path::Path, args: EnrollArgs) -> anyhow::Result<ExitCode> {
    let (secret, api_url) = enrollment_secret(&args)?;
    let mut profile = Profile::open_or_create(dir)?;
    pin_trust(&mut profile, &args.trust_args)?;
    let pin = pin(&args.pin)?;
    let password = password(&args.password)?;
    println!("enrolling {} with {api_url}", dir.display());
    let api = Api::new(&api_url);
    let pending = vettid_client::app::begin(&mut profile, &api, &secret, &args.device_name).await?;
    println!();
    println!("  comparison code:   {}", pending.comparison_code());
    println!();
    println!("  Type this code into the enrollment page where you signed in, to confirm that");
    println!("  this device is yours. Waiting for confirmation… (cancel on the page to stop)");
    let input = vettid_client::app::EnrollInput {
        pin,
        password,
        nats_url: args.nats_url.clone(),
    };
    vettid_client::app::finish(
        &mut profile,
        &api,
        pending,
        input,
        |phase, detail| println!("  ✓ {phase:<22} {detail}"),
        |phrase| show_phrase(&phrase),
    )
    .await?;
    println!(
        "enrolled: member {} — profile {}",
        profile.member()?,
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
