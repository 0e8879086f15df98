//! `vettid app --profile DIR devices …`: the devices registered with the vault (unlocks the
//! vault in its session with the PIN, like the other data commands).

use crate::app::{PinArgs, TrustArgs, connect, pin, pin_trust, read_qr};
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use vettid_client::join::{JoinInvite, JoinRequest};
use vettid_client::profile::Profile;

#[derive(clap::Args)]
pub(crate) struct DevicesArgs {
    #[command(flatten)]
    pin: PinArgs,
    #[command(subcommand)]
    command: DevicesCommand,
}

#[derive(clap::Subcommand)]
pub(crate) enum DevicesCommand {
    /// The devices registered with the vault (this one marked).
    List,
    /// Renames a device.
    Rename {
        /// Its session key (hex, as `list` shows it).
        device: String,
        /// The new name (1–64 bytes).
        name: String,
    },
    /// Lets a new device join: the enclave registers the keys of its join request (`vettid
    /// app join request` on the new device shows it), and this prints the one-time invite
    /// (15 minutes) to give that device.
    Add {
        /// Read the join request (JSON) from this environment variable.
        #[arg(long, group = "request")]
        request_env: Option<String>,
        /// Read it from this file.
        #[arg(long, group = "request")]
        request_file: Option<PathBuf>,
        /// Read it from standard input.
        #[arg(long, group = "request")]
        request_stdin: bool,
    },
    /// Removes a device: its sessions end at once and its credentials are revoked.
    Remove {
        /// Its session key (hex, as `list` shows it).
        device: String,
    },
}

#[derive(clap::Args)]
pub(crate) struct JoinArgs {
    #[command(subcommand)]
    command: JoinCommand,
}

#[derive(clap::Subcommand)]
pub(crate) enum JoinCommand {
    /// On the new device: make its keys and show the join request for the member's device.
    Request {
        /// The API of the member's deployment.
        #[arg(long)]
        api: String,
        /// A name for this device.
        #[arg(long, default_value = "vettid-cli")]
        device_name: String,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// On the new device: finish with the invite the member's device showed (and the PIN).
    Finish {
        /// Read the invite (JSON) from this environment variable.
        #[arg(long, group = "invite")]
        invite_env: Option<String>,
        /// Read it from this file.
        #[arg(long, group = "invite")]
        invite_file: Option<PathBuf>,
        /// Read it from standard input.
        #[arg(long, group = "invite")]
        invite_stdin: bool,
        #[command(flatten)]
        pin: PinArgs,
        /// Connect to this NATS URL instead of the one the API reports.
        #[arg(long)]
        nats_url: Option<String>,
    },
}

/// `vettid app join …` on the new device.
pub(crate) async fn join(dir: &std::path::Path, args: JoinArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        JoinCommand::Request {
            api,
            device_name,
            trust,
        } => {
            let mut profile = Profile::open_or_create(dir)?;
            pin_trust(&mut profile, &trust)?;
            let request = vettid_client::join::request(&mut profile, &api, &device_name)?;
            let text = request.text();
            println!(
                "join request for the member's device (scan it, or copy the line below); fingerprint {}:",
                request.fingerprint()
            );
            crate::demo::render_qr(&text);
            println!("{text}");
            println!(
                "On a device of the vault: vettid app devices add --request-env REQ, then run                  `vettid app join finish` here with the invite it shows."
            );
        }
        JoinCommand::Finish {
            invite_env,
            invite_file,
            invite_stdin,
            pin: pin_args,
            nats_url,
        } => {
            let text = read_qr(invite_env.as_ref(), invite_file.as_ref(), invite_stdin)?
                .context("the invite is needed (--invite-env, --invite-file or --invite-stdin)")?;
            let invite = JoinInvite::parse(&text)?;
            let pin = pin(&pin_args)?;
            let mut profile = Profile::open_or_create(dir)?;
            println!(
                "  taking member credentials for {} at {}…",
                invite.member_id, invite.api_url
            );
            let version = vettid_client::join::finish(&mut profile, &invite, pin, nats_url).await?;
            println!(
                "✓ joined: this device has its own keys and credentials; vault unlocked at version {version} — profile {}",
                dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn run(dir: &std::path::Path, args: DevicesArgs) -> anyhow::Result<ExitCode> {
    let the_pin = pin(&args.pin)?;
    let mut profile = Profile::open_enrolled(dir)?;
    let this = vettid_crypto::noise::public_key(&profile.noise_key()?);
    let c = connect(&mut profile).await?;
    let s = &mut c.session.unlock(the_pin.clone(), &mut profile).await?;
    match args.command {
        DevicesCommand::List => {
            let all = s.devices().await?;
            for d in &all {
                println!(
                    "{}  {:<24}{}",
                    hex::encode(d.session_key),
                    d.name,
                    if d.session_key == this {
                        "  (this device)"
                    } else {
                        ""
                    }
                );
            }
            println!("{} device(s)", all.len());
        }
        DevicesCommand::Rename { device, name } => {
            let mut key = [0u8; 32];
            hex::decode_to_slice(device.trim(), &mut key)
                .context("the device is its session key: 64 hex digits, as `devices list` shows")?;
            let d = s.rename_device(key, &name).await?;
            println!("✓ {} is now “{}”", hex::encode(&d.session_key[..8]), d.name);
        }
        DevicesCommand::Add {
            request_env,
            request_file,
            request_stdin,
        } => {
            let text = read_qr(request_env.as_ref(), request_file.as_ref(), request_stdin)?
                .context(
                    "the join request is needed (--request-env, --request-file or --request-stdin)",
                )?;
            let request = JoinRequest::parse(&text)?;
            println!(
                "  registering “{}” in the enclave; it must show the fingerprint {} (compare before you go on with it)…",
                request.device_name,
                request.fingerprint()
            );
            let (device, document) = s.add_device(the_pin.clone(), &request).await?;
            let invite = vettid_client::join::approve(s.seen(), &request, &document).await?;
            println!(
                "✓ {} added; give it this invite (one use, until {}):",
                device.name, invite.expires_at
            );
            let text = invite.text();
            crate::demo::render_qr(&text);
            println!("{}", &*text);
        }
        DevicesCommand::Remove { device } => {
            let mut key = [0u8; 32];
            hex::decode_to_slice(device.trim(), &mut key)
                .context("the device is its session key: 64 hex digits, as `devices list` shows")?;
            println!("  removing it in the enclave…");
            let (removed, document) = s.remove_device(the_pin.clone(), key).await?;
            let revoked =
                vettid_client::join::report_removal(s.seen(), &removed, &document).await?;
            println!(
                "✓ “{}” removed: its sessions are over and {revoked} NATS key(s) revoked",
                removed.name
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
