//! `vettid app --profile DIR devices …`: the devices registered with the vault (unlocks the
//! vault in its session with the PIN, like the other data commands).

use crate::app::{PinArgs, connect, pin};
use anyhow::Context;
use std::process::ExitCode;
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
}

pub(crate) async fn run(dir: &std::path::Path, args: DevicesArgs) -> anyhow::Result<ExitCode> {
    let pin = pin(&args.pin)?;
    let mut profile = Profile::open_enrolled(dir)?;
    let this = vettid_crypto::noise::public_key(&profile.noise_key()?);
    let c = connect(&mut profile).await?;
    let s = &mut c.session.unlock(pin, &mut profile).await?;
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
    }
    Ok(ExitCode::SUCCESS)
}
