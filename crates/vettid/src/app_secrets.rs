//! `vettid app --profile DIR secrets …`: the secrets store from a terminal. Each command opens
//! a session and unlocks the vault in it (vault data is open only to the session that gave the
//! PIN), so each takes the PIN like `unlock`. Secret values come from an environment variable
//! or a file, never the command line.

use crate::app::{PinArgs, connect, pin, read_secret};
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use vettid_client::profile::Profile;
use vettid_proto::secrets::{Change, ItemContent, ItemId, Secret, SecretData};
use zeroize::Zeroizing;

#[derive(clap::Args)]
pub(crate) struct SecretsArgs {
    #[command(flatten)]
    pin: PinArgs,
    #[command(subcommand)]
    command: SecretsCommand,
}

/// What an item holds, from flags.
#[derive(clap::Args, Clone)]
pub(crate) struct ItemArgs {
    /// The item's name.
    #[arg(long)]
    name: String,
    /// Folder.
    #[arg(long)]
    folder: Option<String>,
    /// Tag (repeat for more).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// A login for this user name (password from --secret-env/--secret-file).
    #[arg(long, conflicts_with_all = ["note", "api_key"])]
    login: Option<String>,
    /// The login's URL.
    #[arg(long, requires = "login")]
    url: Option<String>,
    /// Environment variable holding the login's TOTP secret (base32).
    #[arg(long, requires = "login")]
    totp_env: Option<String>,
    /// A secure note (text from --secret-env/--secret-file).
    #[arg(long, conflicts_with = "api_key")]
    note: bool,
    /// An API key for this service (key from --secret-env/--secret-file).
    #[arg(long)]
    api_key: Option<String>,
    /// Environment variable holding the secret value.
    #[arg(long)]
    secret_env: Option<String>,
    /// File whose first line is the secret value.
    #[arg(long)]
    secret_file: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
pub(crate) enum SecretsCommand {
    /// Add an item.
    Add(ItemArgs),
    /// Replace an item's content (the old content stays as a version).
    Update {
        /// Item id (hex).
        id: String,
        #[command(flatten)]
        item: ItemArgs,
    },
    /// Show an item (secret values only with --reveal).
    Get {
        /// Item id (hex).
        id: String,
        /// An older version.
        #[arg(long)]
        version: Option<u32>,
        /// Print secret values too.
        #[arg(long)]
        reveal: bool,
    },
    /// List items (names only), optionally filtered.
    List {
        /// Name contains (case-insensitive).
        #[arg(long)]
        name: Option<String>,
        /// Has this tag.
        #[arg(long)]
        tag: Option<String>,
        /// In this folder.
        #[arg(long)]
        folder: Option<String>,
        /// Include deleted items.
        #[arg(long)]
        deleted: bool,
    },
    /// Delete an item (its versions stay restorable).
    Delete {
        /// Item id (hex).
        id: String,
    },
    /// An item's versions.
    Versions {
        /// Item id (hex).
        id: String,
    },
    /// Make an older version current again.
    Restore {
        /// Item id (hex).
        id: String,
        /// The version.
        version: u32,
    },
    /// What changed after vault version N.
    Sync {
        /// The vault version this device has.
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
    /// The current TOTP code of a login.
    Totp {
        /// Item id (hex).
        id: String,
    },
    /// How many items each folder holds.
    Folders,
}

fn item_id(hex_id: &str) -> anyhow::Result<ItemId> {
    let mut id = [0u8; 16];
    hex::decode_to_slice(hex_id, &mut id).context("an item id is 32 hex digits")?;
    Ok(id)
}

fn content(a: &ItemArgs) -> anyhow::Result<ItemContent> {
    let secret = |what| -> anyhow::Result<Secret> {
        let bytes = read_secret(what, None, a.secret_env.as_ref(), a.secret_file.as_ref())?;
        Ok(Secret(Zeroizing::new(
            String::from_utf8(bytes.to_vec()).context("the secret is not UTF-8")?,
        )))
    };
    let data = if let Some(user) = &a.login {
        let totp = match &a.totp_env {
            Some(var) => Some(Secret::new(
                &std::env::var(var).with_context(|| format!("{var} is not set"))?,
            )),
            None => None,
        };
        SecretData::Login {
            username: user.clone(),
            password: secret("password")?,
            url: a.url.clone().unwrap_or_default(),
            totp,
        }
    } else if a.note {
        SecretData::Note {
            text: secret("note")?,
        }
    } else if let Some(service) = &a.api_key {
        SecretData::ApiKey {
            service: service.clone(),
            key: secret("key")?,
        }
    } else {
        SecretData::Custom
    };
    Ok(ItemContent {
        name: a.name.clone(),
        folder: a.folder.clone(),
        tags: a.tags.clone(),
        data,
        fields: Vec::new(),
    })
}

fn show(content: &ItemContent, reveal: bool) {
    let s = |v: &Secret| {
        if reveal {
            v.expose().to_owned()
        } else {
            "•••••• (--reveal)".into()
        }
    };
    println!("name       {}", content.name);
    println!("kind       {}", content.data.kind());
    if let Some(f) = &content.folder {
        println!("folder     {f}");
    }
    if !content.tags.is_empty() {
        println!("tags       {}", content.tags.join(", "));
    }
    match &content.data {
        SecretData::Login {
            username,
            password,
            url,
            totp,
        } => {
            println!("username   {username}");
            println!("password   {}", s(password));
            println!("url        {url}");
            println!("totp       {}", if totp.is_some() { "yes" } else { "no" });
        }
        SecretData::Note { text } => println!("text       {}", s(text)),
        SecretData::ApiKey { service, key } => {
            println!("service    {service}");
            println!("key        {}", s(key));
        }
        other => println!("data       {:?}", other),
    }
}

pub(crate) async fn run(dir: &std::path::Path, args: SecretsArgs) -> anyhow::Result<ExitCode> {
    let pin = pin(&args.pin)?;
    let item = match &args.command {
        SecretsCommand::Add(a) | SecretsCommand::Update { item: a, .. } => Some(content(a)?),
        _ => None,
    };
    let mut profile = Profile::open_enrolled(dir)?;
    let c = connect(&mut profile).await?;
    let s = &mut c.session.unlock(pin, &mut profile).await?;
    match args.command {
        SecretsCommand::Add(_) => {
            let (i, v) = s.create_secret(item.expect("made above")).await?;
            println!(
                "✓ added {} ({}) — vault version {}",
                hex::encode(i.id),
                i.name,
                v.version
            );
        }
        SecretsCommand::Update { id, .. } => {
            let (i, v) = s
                .update_secret(item_id(&id)?, None, item.expect("made above"))
                .await?;
            println!(
                "✓ {} now at version {} — vault version {}",
                i.name, i.version, v.version
            );
        }
        SecretsCommand::Get {
            id,
            version,
            reveal,
        } => {
            let v = s.get_secret(item_id(&id)?, version).await?;
            println!("id         {} (version {})", hex::encode(v.id), v.version);
            show(&v.content, reveal);
        }
        SecretsCommand::List {
            name,
            tag,
            folder,
            deleted,
        } => {
            let items = s.list_secrets(name, tag, folder, deleted).await?;
            for i in &items {
                println!(
                    "{}  {:<9} v{:<3} {}{}",
                    hex::encode(i.id),
                    i.kind,
                    i.version,
                    i.name,
                    if i.deleted { "  (deleted)" } else { "" }
                );
            }
            println!("{} item(s)", items.len());
        }
        SecretsCommand::Delete { id } => {
            let (i, v) = s.delete_secret(item_id(&id)?).await?;
            println!(
                "✓ deleted {} (restorable) — vault version {}",
                i.name, v.version
            );
        }
        SecretsCommand::Versions { id } => {
            for (n, at) in s.secret_versions(item_id(&id)?).await? {
                println!("v{n}  created {at} ms");
            }
        }
        SecretsCommand::Restore { id, version } => {
            let (i, v) = s.restore_secret(item_id(&id)?, version).await?;
            println!(
                "✓ {} restored as version {} — vault version {}",
                i.name, i.version, v.version
            );
        }
        SecretsCommand::Sync { since } => {
            let (changes, upto) = s.sync_secrets(since).await?;
            for ch in &changes {
                match ch {
                    Change::Upsert(v) => println!(
                        "upsert {} v{} {}",
                        hex::encode(v.id),
                        v.version,
                        v.content.name
                    ),
                    Change::Tombstone { id, changed_at } => {
                        println!("delete {} at vault version {changed_at}", hex::encode(id))
                    }
                }
            }
            println!(
                "{} change(s) since {since}; now at vault version {upto}",
                changes.len()
            );
        }
        SecretsCommand::Totp { id } => {
            let (code, valid_for) = s.totp(item_id(&id)?).await?;
            println!("{code}  (valid {valid_for} s more)");
        }
        SecretsCommand::Folders => {
            let folders = s.folders().await?;
            for (folder, n) in &folders {
                println!("{n:>6}  {}", folder.as_deref().unwrap_or("(no folder)"));
            }
            println!("{} folder(s)", folders.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}
