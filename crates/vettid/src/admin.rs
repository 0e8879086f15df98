//! `vettid admin`: the operator's console, straight on the API's database (no HTTP, no admin
//! token: access to the data directory is the credential).

use anyhow::{Context, anyhow};
use std::path::PathBuf;
use std::process::ExitCode;
use vettid_api::{AdminConsole, ApiConfig, Invite, NewInvite, Registration, RegistrationStatus};

#[derive(clap::Args)]
pub(crate) struct AdminArgs {
    /// The API's data directory (holds api.db).
    #[arg(long, global = true, default_value = ".vettid")]
    data_dir: PathBuf,
    /// Print JSON (one document) instead of lines, for scripts.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(clap::Subcommand)]
enum AdminCommand {
    /// Create an invite code.
    CreateInvite {
        /// Registrations it allows (1–10000).
        #[arg(long, default_value_t = 1)]
        max_uses: u32,
        /// Lifetime in seconds (60 s to 90 days; default 30 days).
        #[arg(long)]
        expires_in: Option<u64>,
        /// Approve registrations made with it at once.
        #[arg(long)]
        auto_approve: bool,
        /// A custom code (12–50 of A-Z a-z 0-9 _ -); default VET-<16 hex>.
        #[arg(long)]
        code: Option<String>,
    },
    /// List invites, newest first.
    ListInvites,
    /// List registrations, oldest first.
    ListRegistrations {
        /// Only those with this status: pending, approved or rejected.
        #[arg(long)]
        status: Option<String>,
    },
    /// Approve a registration, named by its id or its email address.
    Approve {
        /// Registration id or email.
        registration: String,
    },
    /// Make a new one-time admin token (written to <data-dir>/admin.token, 0600), to exchange
    /// at POST /v1/admin/sessions for an admin session of 12 hours. The earlier token stops
    /// working.
    NewToken,
}

pub(crate) fn run(args: AdminArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(execute(args))
}

async fn execute(args: AdminArgs) -> anyhow::Result<ExitCode> {
    let config = ApiConfig::new(&args.data_dir);
    let console = AdminConsole::open(&config)
        .await
        .with_context(|| format!("opening the API database in {}", args.data_dir.display()))?;
    let json = args.json;
    match args.command {
        AdminCommand::CreateInvite {
            max_uses,
            expires_in,
            auto_approve,
            code,
        } => {
            let new = NewInvite {
                code,
                max_uses: Some(max_uses),
                expires_in_secs: expires_in,
                auto_approve: Some(auto_approve),
            };
            let invite = console.create_invite(new).await.map_err(failed)?;
            print(json, &invite, || invite_line(&invite))?;
        }
        AdminCommand::ListInvites => {
            let invites = console.list_invites().await.map_err(failed)?;
            print_list(json, &invites, "no invites", invite_line)?;
        }
        AdminCommand::ListRegistrations { status } => {
            let status = status
                .map(|s| {
                    RegistrationStatus::parse(&s).ok_or_else(|| {
                        anyhow!("unknown status {s:?} (use pending, approved or rejected)")
                    })
                })
                .transpose()?;
            let items = console.list_registrations(status).await.map_err(failed)?;
            print_list(json, &items, "no registrations", registration_line)?;
        }
        AdminCommand::Approve { registration } => {
            let r = console.approve(&registration).await.map_err(failed)?;
            print(json, &r, || format!("approved: {}", registration_line(&r)))?;
        }
        AdminCommand::NewToken => {
            let path = console.new_admin_token(&config).await.map_err(failed)?;
            let shown = serde_json::json!({ "token_file": path });
            print(json, &shown, || {
                format!(
                    "a one-time admin token is in {} (0600); exchange it at POST /v1/admin/sessions",
                    path.display()
                )
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn failed(e: vettid_api::ApiError) -> anyhow::Error {
    anyhow!("{e}")
}

fn print<T: serde::Serialize>(
    json: bool,
    value: &T,
    line: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        println!("{}", line());
    }
    Ok(())
}

fn print_list<T: serde::Serialize>(
    json: bool,
    items: &[T],
    empty: &str,
    line: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "items": items }))?
        );
    } else if items.is_empty() {
        println!("{empty}");
    } else {
        for item in items {
            println!("{}", line(item));
        }
    }
    Ok(())
}

fn invite_line(i: &Invite) -> String {
    format!(
        "{}  uses {}/{}  expires {}  {}",
        i.code,
        i.uses,
        i.max_uses,
        relative(i.expires_at),
        if i.auto_approve {
            "auto-approve"
        } else {
            "needs approval"
        }
    )
}

fn registration_line(r: &Registration) -> String {
    format!(
        "{}  {:<8}  {} {} <{}>  member {}",
        r.registration_id,
        r.status.as_str(),
        r.first_name,
        r.last_name,
        r.email,
        r.member_id
    )
}

/// `in 3d 4h` / `2h 5m ago`, from now.
fn relative(unix: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let delta = unix - now;
    let s = delta.unsigned_abs();
    let text = if s >= 86_400 {
        format!("{}d {}h", s / 86_400, s % 86_400 / 3600)
    } else if s >= 3600 {
        format!("{}h {}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m {}s", s / 60, s % 60)
    };
    if delta >= 0 {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}
