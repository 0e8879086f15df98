//! `vettid app --profile DIR feed …`: the vault's feed and audit log (each command unlocks the
//! vault in its session with the PIN, like the other data commands).

use crate::app::{PinArgs, connect, pin};
use anyhow::bail;
use std::process::ExitCode;
use vettid_client::profile::Profile;
use vettid_proto::feed::{ExportFormat, FeedOp, FeedReply};

#[derive(clap::Args)]
pub(crate) struct FeedArgs {
    #[command(flatten)]
    pin: PinArgs,
    #[command(subcommand)]
    command: FeedCommand,
}

#[derive(clap::ValueEnum, Clone, Copy)]
pub(crate) enum Format {
    Json,
    Csv,
}

#[derive(clap::Subcommand)]
pub(crate) enum FeedCommand {
    /// The feed (newest last).
    List {
        /// Include archived items.
        #[arg(long)]
        archived: bool,
    },
    /// Mark an item read.
    Read {
        /// Its sequence number.
        seq: u64,
    },
    /// Archive an item.
    Archive {
        /// Its sequence number.
        seq: u64,
    },
    /// Delete an item's content (the chain keeps its hash).
    Delete {
        /// Its sequence number.
        seq: u64,
    },
    /// Fetch every event and verify the hash chain.
    Verify,
    /// Audit events of a kind prefix (e.g. `secrets.`), all time.
    Audit {
        /// Kind prefix.
        #[arg(long)]
        kind: Option<String>,
    },
    /// Export the audit log.
    Export {
        /// JSON or CSV.
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
    },
}

pub(crate) async fn run(dir: &std::path::Path, args: FeedArgs) -> anyhow::Result<ExitCode> {
    let pin = pin(&args.pin)?;
    let mut profile = Profile::open_enrolled(dir)?;
    let c = connect(&mut profile).await?;
    let s = &mut c.session.unlock(pin, &mut profile).await?;
    let show = |e: &vettid_proto::feed::ChainedEvent| match &e.content {
        Some(c) => println!(
            "{:>5}  {}  {:<28} {}{}",
            e.seq,
            c.at_ms,
            c.kind,
            c.text,
            if e.read { "" } else { "  •" }
        ),
        None => println!("{:>5}  (deleted)", e.seq),
    };
    match args.command {
        FeedCommand::List { archived } => {
            let items = s.feed_items(0, archived).await?;
            items.iter().for_each(show);
            println!("{} item(s)", items.len());
        }
        FeedCommand::Read { seq } => {
            s.run(FeedOp::Read { seq }).await?;
            println!("✓ read");
        }
        FeedCommand::Archive { seq } => {
            s.run(FeedOp::Archive { seq }).await?;
            println!("✓ archived");
        }
        FeedCommand::Delete { seq } => {
            s.run(FeedOp::Delete { seq }).await?;
            println!("✓ deleted (the chain keeps its hash)");
        }
        FeedCommand::Verify => {
            let (events, head) = s.sync_events(0, [0; 32]).await?;
            println!(
                "✓ chain of {} event(s) verifies; head {}",
                events.len(),
                hex::encode(head)
            );
        }
        FeedCommand::Audit { kind } => {
            let FeedReply::Events { events, more } = s
                .run(FeedOp::Query {
                    after: 0,
                    from_ms: 0,
                    to_ms: u64::MAX >> 1,
                    kind,
                })
                .await?
            else {
                bail!("unexpected answer");
            };
            events.iter().for_each(show);
            println!(
                "{} event(s){}",
                events.len(),
                if more { " (more)" } else { "" }
            );
        }
        FeedCommand::Export { format } => {
            let format = match format {
                Format::Json => ExportFormat::Json,
                Format::Csv => ExportFormat::Csv,
            };
            print!("{}", s.export_audit(format).await?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
