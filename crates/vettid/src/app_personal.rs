//! `vettid app --profile DIR personal …`: personal data, sharing settings, the public profile
//! and the photo from a terminal. Each command opens a session and unlocks the vault in it
//! (vault data is open only to the session that gave the PIN), so each takes the PIN like
//! `unlock`. Field values come from an environment variable or a file, never the command line.

use crate::app::{PinArgs, connect, pin, read_secret};
use anyhow::{Context, bail};
use std::path::PathBuf;
use std::process::ExitCode;
use vettid_client::profile::Profile;
use vettid_proto::profile::{Category, Field, Link, NewField, Secret, Select, ShareTarget};
use zeroize::Zeroizing;

#[derive(clap::Args)]
pub(crate) struct PersonalArgs {
    #[command(flatten)]
    pin: PinArgs,
    #[command(subcommand)]
    command: PersonalCommand,
}

/// On or off.
#[derive(clap::ValueEnum, Clone, Copy)]
pub(crate) enum Switch {
    On,
    Off,
}

#[derive(clap::Subcommand)]
pub(crate) enum PersonalCommand {
    /// Set a field (value from --value-env or --value-file).
    Set {
        /// Namespaced key (e.g. contact.email).
        key: String,
        /// Environment variable holding the value.
        #[arg(long)]
        value_env: Option<String>,
        /// File whose first line is the value.
        #[arg(long)]
        value_file: Option<PathBuf>,
        /// identity, contact, address, financial, health or other.
        #[arg(long, default_value = "other")]
        category: String,
        /// Hidden in listings, never shared by default, never public.
        #[arg(long)]
        sensitive: bool,
        /// Display order (lower first).
        #[arg(long, default_value_t = 0)]
        order: i32,
    },
    /// Show fields by key, namespace or category (with values).
    Get {
        /// Keys.
        keys: Vec<String>,
        /// Every field under this namespace.
        #[arg(long, conflicts_with_all = ["keys", "category"])]
        namespace: Option<String>,
        /// Every field of this category.
        #[arg(long, conflicts_with = "keys")]
        category: Option<String>,
    },
    /// List fields (sensitive values only with --reveal).
    List {
        /// Show sensitive values too.
        #[arg(long)]
        reveal: bool,
    },
    /// Delete fields.
    Delete {
        /// Keys.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Show (no arguments) or set a category's sharing default.
    ShareDefault {
        /// Category.
        category: Option<String>,
        /// Share by default or not.
        #[arg(requires = "category")]
        switch: Option<Switch>,
    },
    /// Share or withhold a field (key with a dot) or a category with one connection.
    Share {
        /// Connection id.
        connection: String,
        /// Field key, or category name.
        target: String,
        /// Share or withhold.
        switch: Switch,
        /// Remove the override instead.
        #[arg(long)]
        clear: bool,
    },
    /// The fields a connection would see.
    Effective {
        /// Connection id.
        connection: String,
    },
    /// Update the public profile settings (if any flag is given), sign it and verify it.
    Publish {
        /// Display name.
        #[arg(long)]
        display_name: Option<String>,
        /// Bio.
        #[arg(long)]
        bio: Option<String>,
        /// A link as LABEL=URL (repeat for more; replaces the links).
        #[arg(long = "link")]
        links: Vec<String>,
        /// A non-sensitive field to publish (repeat for more; replaces the list).
        #[arg(long = "field")]
        fields: Vec<String>,
    },
    /// Set the photo (JPEG or PNG).
    PhotoSet {
        /// Image file.
        file: PathBuf,
    },
    /// Write the photo to a file.
    PhotoGet {
        /// Output file.
        out: PathBuf,
    },
    /// Delete the photo.
    PhotoDelete,
}

fn category(name: &str) -> anyhow::Result<Category> {
    Category::parse(name).with_context(|| {
        let all: Vec<_> = Category::ALL.iter().map(|c| c.as_str()).collect();
        format!("unknown category {name:?} (one of {})", all.join(", "))
    })
}

fn target(t: &str) -> anyhow::Result<ShareTarget> {
    Ok(if t.contains('.') {
        ShareTarget::Field(t.to_owned())
    } else {
        ShareTarget::Category(category(t)?)
    })
}

fn show(fields: &[Field]) {
    for f in fields {
        let value = match (&f.value, f.sensitive) {
            (Some(v), _) => v.expose().to_owned(),
            (None, true) => "•••••• (--reveal)".into(),
            (None, false) => String::new(),
        };
        println!(
            "{:<32} {:<9} {}{}",
            f.key,
            f.category.as_str(),
            if f.sensitive { "[sensitive] " } else { "" },
            value
        );
    }
    println!("{} field(s)", fields.len());
}

fn publish_settings(
    current: vettid_proto::profile::PublicSettings,
    display_name: Option<String>,
    bio: Option<String>,
    links: Vec<String>,
    fields: Vec<String>,
) -> anyhow::Result<Option<vettid_proto::profile::PublicSettings>> {
    if display_name.is_none() && bio.is_none() && links.is_empty() && fields.is_empty() {
        return Ok(None);
    }
    let mut s = current;
    s.display_name = display_name.unwrap_or(s.display_name);
    s.bio = bio.unwrap_or(s.bio);
    if !links.is_empty() {
        s.links = links
            .iter()
            .map(|l| {
                let (label, url) = l.split_once('=').context("a link is LABEL=URL")?;
                Ok(Link {
                    label: label.into(),
                    url: url.into(),
                })
            })
            .collect::<anyhow::Result<_>>()?;
    }
    if !fields.is_empty() {
        s.fields = fields;
    }
    Ok(Some(s))
}

pub(crate) async fn run(dir: &std::path::Path, args: PersonalArgs) -> anyhow::Result<ExitCode> {
    let pin = pin(&args.pin)?;
    let value = match &args.command {
        PersonalCommand::Set {
            value_env,
            value_file,
            ..
        } => {
            let bytes = read_secret("value", None, value_env.as_ref(), value_file.as_ref())?;
            Some(Secret(Zeroizing::new(
                String::from_utf8(bytes.to_vec()).context("the value is not UTF-8")?,
            )))
        }
        _ => None,
    };
    let photo = match &args.command {
        PersonalCommand::PhotoSet { file } => {
            Some(std::fs::read(file).with_context(|| format!("reading {}", file.display()))?)
        }
        _ => None,
    };
    let mut profile = Profile::open_enrolled(dir)?;
    let c = connect(&mut profile).await?;
    let s = &mut c.session.unlock(pin, &mut profile).await?;
    match args.command {
        PersonalCommand::Set {
            key,
            category: cat,
            sensitive,
            order,
            ..
        } => {
            let field = NewField {
                key: key.clone(),
                value: value.expect("read above"),
                category: category(&cat)?,
                sensitive,
                order,
            };
            let v = s.set_fields(vec![field]).await?;
            println!("✓ set {key} — vault version {}", v.version);
        }
        PersonalCommand::Get {
            keys,
            namespace,
            category: cat,
        } => {
            let select = match (namespace, cat) {
                (Some(ns), _) => Select::Namespace(ns),
                (None, Some(c)) => Select::Category(category(&c)?),
                (None, None) if keys.is_empty() => bail!("give keys, --namespace or --category"),
                (None, None) => Select::Keys(keys),
            };
            show(&s.get_fields(select).await?);
        }
        PersonalCommand::List { reveal } => {
            show(&s.list_fields(reveal).await?);
        }
        PersonalCommand::Delete { keys } => {
            let n = keys.len();
            let v = s.delete_fields(keys).await?;
            println!("✓ deleted {n} field(s) — vault version {}", v.version);
        }
        PersonalCommand::ShareDefault {
            category: cat,
            switch,
        } => match (cat, switch) {
            (Some(cat), Some(switch)) => {
                let share = matches!(switch, Switch::On);
                let v = s.set_sharing_default(category(&cat)?, share).await?;
                println!(
                    "✓ {cat} shared by default: {} — vault version {}",
                    if share { "on" } else { "off" },
                    v.version
                );
            }
            _ => {
                for (c, share) in s.sharing_defaults().await? {
                    println!("{:<10} {}", c.as_str(), if share { "on" } else { "off" });
                }
            }
        },
        PersonalCommand::Share {
            connection,
            target: t,
            switch,
            clear,
        } => {
            let v = if clear {
                s.clear_sharing_override(&connection, target(&t)?).await?
            } else {
                let share = matches!(switch, Switch::On);
                s.set_sharing_override(&connection, target(&t)?, share)
                    .await?
            };
            println!("✓ {connection}: {t} updated — vault version {}", v.version);
        }
        PersonalCommand::Effective { connection } => {
            let keys = s.effective_sharing(&connection).await?;
            for k in &keys {
                println!("{k}");
            }
            println!("{} field(s) shared with {connection}", keys.len());
        }
        PersonalCommand::Publish {
            display_name,
            bio,
            links,
            fields,
        } => {
            let current = s.public_settings().await?;
            if let Some(new) = publish_settings(current, display_name, bio, links, fields)? {
                s.set_public_settings(new).await?;
            }
            // Verified against the identity pinned at enrollment, not one the vault states now.
            let identity = s
                .seen()
                .state
                .identity()
                .context("the profile has no vault identity")?;
            let (signed, p, _) = s.publish_profile(&identity).await?;
            println!("public profile of {} (version {})", p.member, p.version);
            println!("  display name  {}", p.display_name);
            println!("  bio           {}", p.bio);
            for l in &p.links {
                println!("  link          {} {}", l.label, l.url);
            }
            for f in &p.fields {
                println!("  {:<32} {}", f.key, f.value);
            }
            println!("payload    {}", hex::encode(&signed.payload));
            println!("signature  {}", hex::encode(&signed.signature));
            println!("identity   {}", hex::encode(signed.identity));
            println!("✓ signature verified");
        }
        PersonalCommand::PhotoSet { .. } => {
            let v = s.set_photo(photo.expect("read above")).await?;
            println!("✓ photo set — vault version {}", v.version);
        }
        PersonalCommand::PhotoGet { out } => {
            let p = s.photo().await?;
            std::fs::write(&out, &p.bytes).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "✓ {} ({} bytes) written to {}",
                p.kind.mime(),
                p.bytes.len(),
                out.display()
            );
        }
        PersonalCommand::PhotoDelete => {
            let v = s.delete_photo().await?;
            println!("✓ photo deleted — vault version {}", v.version);
        }
    };
    Ok(ExitCode::SUCCESS)
}
