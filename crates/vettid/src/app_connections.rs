//! `vettid app --profile DIR connections …` and `… messages …`: connections with other members
//! and the messages on them (unlocks the vault in its session with the PIN, like the other data
//! commands; the vault stays open to its peers afterwards, so what they send arrives).

use crate::app::{PinArgs, connect, pin, read_qr};
use anyhow::{Context, bail};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use vettid_client::connections::{decode_invitation, encode_invitation, invitation_link};
use vettid_client::profile::Profile;
use vettid_client::vault::Unlocked;
use vettid_proto::connections::{ConnectionId, ConnectionState, ConnectionView};
use vettid_proto::session::EventKind;

#[derive(clap::Args)]
pub(crate) struct ConnectionsArgs {
    #[command(flatten)]
    pin: PinArgs,
    #[command(subcommand)]
    command: ConnectionsCommand,
}

#[derive(clap::Subcommand)]
pub(crate) enum ConnectionsCommand {
    /// Makes an invitation and shows it as a QR code, a text and a link (single use).
    Invite {
        /// A label for your own list (never sent).
        #[arg(long)]
        label: Option<String>,
        /// For someone scanning the code in front of you: no six-digit code to compare.
        #[arg(long)]
        in_person: bool,
        /// Hours until it expires (default 24, at most 168).
        #[arg(long)]
        expires_hours: Option<u64>,
        /// No short code (by default the invitation is also left, sealed under a short code,
        /// in the API's connect-code directory, which cannot read it).
        #[arg(long)]
        no_code: bool,
    },
    /// Pending invitations.
    Invitations,
    /// Cancels an invitation and makes a new one with its label and kind (to send again).
    Resend {
        /// The invitation's id (hex, as `invitations` shows it).
        id: String,
        /// Hours until the new one expires (default 24, at most 168).
        #[arg(long)]
        expires_hours: Option<u64>,
        /// No short code.
        #[arg(long)]
        no_code: bool,
    },
    /// Cancels a pending invitation (its id, as `invitations` shows it).
    Cancel {
        /// The invitation's id (hex).
        id: String,
    },
    /// Connects with the member whose invitation this is, and waits for their vault.
    Accept {
        /// The invitation text or link.
        #[arg(group = "source")]
        invitation: Option<String>,
        /// The invitation's short code (ABCD-EFGH-JKMN-PQRS), fetched from the API's
        /// connect-code directory and opened here.
        #[arg(long, group = "source")]
        code: Option<String>,
        /// Read it from this environment variable.
        #[arg(long, group = "source")]
        invitation_env: Option<String>,
        /// Read it from this file.
        #[arg(long, group = "source")]
        invitation_file: Option<PathBuf>,
        /// Read it from standard input.
        #[arg(long, group = "source")]
        invitation_stdin: bool,
        /// Wait this long for the inviter's vault to answer.
        #[arg(long, default_value_t = 30)]
        wait_secs: u64,
    },
    /// Every connection.
    List,
    /// One connection: state, the peer's profile, the code to compare.
    Show {
        /// Its id (hex, or a unique beginning of it).
        id: String,
    },
    /// The six-digit code to compare with the peer (read it to each other).
    Sas {
        /// Its id.
        id: String,
    },
    /// Approves a connection under review, with the code the peer read to you.
    Approve {
        /// Its id.
        id: String,
        /// The peer's six-digit code (required unless the invitation was scanned in person).
        #[arg(long)]
        sas: Option<String>,
    },
    /// Rejects a connection under review (the peer is told).
    Reject {
        /// Its id.
        id: String,
    },
    /// Ends a connection: the peer is told, both vaults erase its keys.
    Revoke {
        /// Its id.
        id: String,
    },
    /// Ends every connection (each peer is told) and cancels every invitation: for an account
    /// you think compromised.
    RevokeAll {
        /// Yes, end them all.
        #[arg(long)]
        yes: bool,
    },
    /// Blocks the peer of a connection: every connection with their vault ends without telling
    /// them, and their invitations, requests and messages are dropped from then on.
    Block {
        /// Its id.
        id: String,
    },
    /// Lifts a block (the connection stays ended; connect again with a new invitation).
    Unblock {
        /// The blocked connection's id, as `blocked` shows it.
        id: String,
    },
    /// Blocked members.
    Blocked,
    /// Asks the peer for more of their profile (fields by key, or whole categories).
    Ask {
        /// The connection's id.
        id: String,
        /// A field's key (repeat for more).
        #[arg(long = "field")]
        fields: Vec<String>,
        /// A category: identity, contact, address, financial, health, other (repeat for more).
        #[arg(long = "category")]
        categories: Vec<String>,
    },
    /// Requests for more of a profile, both ways: to decide, and what peers granted you.
    Requests {
        /// Only this connection's.
        id: Option<String>,
    },
    /// Grants a peer's request: the values go now, and they may fetch them again.
    Grant {
        /// The request's id (as `requests` shows it).
        request: String,
        /// Fetches allowed, the first included (default 1, at most 100).
        #[arg(long)]
        uses: Option<u32>,
        /// Days until the grant ends (default 7, at most 365).
        #[arg(long)]
        days: Option<u64>,
    },
    /// Denies a peer's request (they are told).
    Deny {
        /// The request's id.
        request: String,
    },
    /// Fetches again what a peer granted you (one of its uses).
    Fetch {
        /// The request's id.
        request: String,
    },
    /// Ends a grant you gave: the peer's vault erases the values.
    EndGrant {
        /// The request's id.
        request: String,
    },
    /// How a connection's requests are answered: `ask` (you decide each) or `auto`.
    Rule {
        /// The connection's id.
        id: String,
        /// ask | auto
        rule: String,
    },
    /// What the peer may do on the connection (their vault is told).
    Allow {
        /// The connection's id.
        id: String,
        /// Messages: on | off.
        #[arg(long)]
        messaging: Option<String>,
        /// Calls: on | off.
        #[arg(long)]
        calling: Option<String>,
        /// Asking you to present a credential: on | off.
        #[arg(long)]
        presentation: Option<String>,
    },
    /// Rotates an active connection's keys to a new epoch (fresh X-Wing secret, signed with
    /// both vaults' pinned identity keys), and waits for the peer's vault to answer.
    Rotate {
        /// Its id.
        id: String,
        /// Wait this long for the peer's vault.
        #[arg(long, default_value_t = 30)]
        wait_secs: u64,
    },
}

#[derive(clap::Args)]
pub(crate) struct MessagesArgs {
    #[command(flatten)]
    pin: PinArgs,
    #[command(subcommand)]
    command: MessagesCommand,
}

#[derive(clap::Subcommand)]
pub(crate) enum MessagesCommand {
    /// Sends a text (up to 10,000 characters) on an active connection.
    Send {
        /// The connection's id.
        id: String,
        /// The text.
        text: String,
    },
    /// A connection's history, newest first.
    List {
        /// The connection's id.
        id: String,
        /// At most this many (up to 50).
        #[arg(long, default_value_t = 20)]
        limit: u16,
        /// Only messages sent before this time (milliseconds since the epoch; to page on).
        #[arg(long)]
        before_ms: Option<u64>,
        /// Only messages sent from this time on (milliseconds since the epoch).
        #[arg(long)]
        since_ms: Option<u64>,
    },
    /// Marks the peer's messages up to `seq` read (they get a read receipt).
    Read {
        /// The connection's id.
        id: String,
        /// The peer's message number.
        seq: u64,
    },
    /// Erases a connection's history in your vault (messages and files; the peer keeps theirs).
    Clear {
        /// The connection's id.
        id: String,
        /// Yes, erase it.
        #[arg(long)]
        yes: bool,
    },
    /// Sends a file (up to 1 MiB) as an attachment, with an optional caption.
    SendFile {
        /// The connection's id.
        id: String,
        /// The file.
        path: PathBuf,
        /// A caption.
        #[arg(long)]
        text: Option<String>,
        /// Its media type.
        #[arg(long, default_value = "application/octet-stream")]
        mime: String,
    },
    /// Saves a message's attachment to a file.
    Save {
        /// The connection's id.
        id: String,
        /// The message's number.
        seq: u64,
        /// Where to write it (not overwritten if it exists).
        path: PathBuf,
        /// The message is one you sent.
        #[arg(long)]
        outgoing: bool,
    },
    /// Replaces the text of your message for everyone (within 24 hours of sending it).
    Edit {
        /// The connection's id.
        id: String,
        /// Your message's number.
        seq: u64,
        /// The new text.
        text: String,
    },
    /// Deletes your message for everyone: both vaults erase its text (within 24 hours).
    Delete {
        /// The connection's id.
        id: String,
        /// Your message's number.
        seq: u64,
    },
    /// How long this vault keeps messages: one connection's (with an id) or the default.
    Retention {
        /// The connection's id (none: the default for every connection without its own).
        id: Option<String>,
        /// Keep this many days (older messages are erased from the vault).
        #[arg(long, group = "keep")]
        days: Option<u32>,
        /// Keep them for ever.
        #[arg(long, group = "keep")]
        forever: bool,
    },
    /// Shows new messages and receipts as they arrive.
    Watch {
        /// Stop after this many seconds (0: until interrupted).
        #[arg(long, default_value_t = 0)]
        secs: u64,
    },
}

type Session<'a> = Unlocked<&'a mut Profile>;

/// What a peer wrote, safe to print: control characters (a terminal's escape sequences
/// among them) are shown as `�`; line breaks and tabs stay.
fn shown(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

fn short(id: &ConnectionId) -> String {
    hex::encode(id)
}

/// The connection `given` names: its full hex id or a unique beginning of it.
async fn resolve(s: &mut Session<'_>, given: &str) -> anyhow::Result<ConnectionView> {
    let given = given.trim().to_ascii_lowercase();
    if given.len() < 4 || !given.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("a connection id is hex (at least 4 digits), as `connections list` shows it");
    }
    let mut matching: Vec<ConnectionView> = s
        .connections()
        .await?
        .into_iter()
        .filter(|c| hex::encode(c.id).starts_with(&given))
        .collect();
    match matching.len() {
        0 => bail!("no connection {given} (see `vettid app connections list`)"),
        1 => Ok(matching.remove(0)),
        n => bail!("{n} connections begin with {given}: give more digits"),
    }
}

fn print_connection(c: &ConnectionView) {
    println!(
        "{}  {:<15} {}{}",
        short(&c.id),
        c.state.as_str(),
        if c.inviter { "invited " } else { "joined " },
        shown(c.peer_member.as_deref().unwrap_or("?")),
    );
    if let Some(label) = &c.label {
        println!("    label      {label}");
    }
    if let Some(identity) = &c.peer_identity {
        println!("    identity   {}", hex::encode(&identity[..8]));
    }
    for (k, v) in &c.peer_profile {
        println!("    {:<10} {}", shown(k), shown(v));
    }
    if let Some(sas) = &c.sas
        && matches!(
            c.state,
            ConnectionState::PendingReview | ConnectionState::Accepted
        )
    {
        println!(
            "    code       {} {}{}",
            &sas[..3],
            &sas[3..],
            if c.sas_required {
                "  (compare it with the peer's before you approve)"
            } else {
                "  (scanned in person: no need to compare)"
            }
        );
    }
    if c.state == ConnectionState::Accepted {
        println!("    waiting for the peer's approval");
    }
    if c.state == ConnectionState::Active {
        println!(
            "    keys       epoch {}{}",
            c.epoch,
            if c.rotating { " (rotating)" } else { "" }
        );
    }
    if matches!(
        c.state,
        ConnectionState::PendingReview | ConnectionState::Accepted | ConnectionState::Active
    ) {
        let caps = |k: &vettid_proto::connections::Capabilities| {
            [
                ("messages", k.messaging),
                ("calls", k.calling),
                ("credential requests", k.presentation),
            ]
            .iter()
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
        };
        println!(
            "    you allow  {} (requests: {})",
            caps(&c.capabilities),
            c.rule.as_str()
        );
        if let Some(theirs) = &c.peer_capabilities {
            println!("    they allow {}", caps(theirs));
        }
    }
    if c.identity_changed {
        println!(
            "    ⚠ the peer's vault presented a different identity key: refused, the pinned one kept"
        );
    }
}

/// Shows a new invitation: QR code, text, link, and (for a remote one, with an API known) a
/// short code left sealed in the API's directory.
async fn show_invitation(
    api: Option<&str>,
    id: &[u8; 16],
    invitation: &vettid_proto::peer::Invitation,
    no_code: bool,
) {
    let text = encode_invitation(invitation);
    println!(
        "✓ invitation {} made in the enclave (single use, until {} ms since the epoch){}:",
        hex::encode(&id[..4]),
        invitation.expires_ms,
        if invitation.in_person {
            "; let them scan it here"
        } else {
            "; you will compare a six-digit code"
        }
    );
    crate::demo::render_qr(&text);
    println!("{text}");
    println!("link: {}", invitation_link(invitation));
    match (api, no_code || invitation.in_person) {
        (Some(api), false) => {
            match vettid_client::connections::publish_invitation(api, invitation).await {
                Ok(code) => println!(
                    "short code: {}  (the directory keeps it sealed under the code until it is used or expires)",
                    code.display()
                ),
                // The invitation stands: the QR code, text and link still work.
                Err(e) => println!("(no short code: {e})"),
            }
        }
        (None, false) => println!("(no short code: this profile knows no API)"),
        _ => {}
    }
}

/// The request `given` names: its hex id or a unique beginning of it.
async fn resolve_request(
    s: &mut Session<'_>,
    given: &str,
) -> anyhow::Result<vettid_proto::connections::RequestView> {
    let given = given.trim().to_ascii_lowercase();
    if given.len() < 4 || !given.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("a request id is hex (at least 4 digits), as `connections requests` shows it");
    }
    let mut matching: Vec<_> = s
        .requests(None)
        .await?
        .into_iter()
        .filter(|r| hex::encode(r.id).starts_with(&given))
        .collect();
    match matching.len() {
        0 => bail!("no request {given} (see `vettid app connections requests`)"),
        1 => Ok(matching.remove(0)),
        n => bail!("{n} requests begin with {given}: give more digits"),
    }
}

fn on_off(name: &str, given: Option<&str>, now: bool) -> anyhow::Result<bool> {
    match given {
        None => Ok(now),
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(other) => bail!("--{name} is on or off, not {other}"),
    }
}

/// Waits on the vault's events until connection `id` is in one of `states`, or `secs` pass;
/// its view then.
async fn wait_for_state(
    s: &mut Session<'_>,
    id: ConnectionId,
    states: &[ConnectionState],
    secs: u64,
) -> anyhow::Result<ConnectionView> {
    wait_until(s, id, |c| states.contains(&c.state), secs).await
}

/// Waits on the vault's events until connection `id` satisfies `done`, or `secs` pass; its
/// view then.
async fn wait_until(
    s: &mut Session<'_>,
    id: ConnectionId,
    done: impl Fn(&ConnectionView) -> bool,
    secs: u64,
) -> anyhow::Result<ConnectionView> {
    let key = vettid_crypto::SecretBytes::from_array(**s.event_key());
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let c = s.connection(id).await?;
        if done(&c) || Instant::now() >= deadline {
            return Ok(c);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        vettid_client::events::fetch(s.client(), &key, 64, left.min(Duration::from_secs(5)))
            .await?;
    }
}

pub(crate) async fn connections(
    dir: &std::path::Path,
    args: ConnectionsArgs,
) -> anyhow::Result<ExitCode> {
    let the_pin = pin(&args.pin)?;
    let mut profile = Profile::open_enrolled(dir)?;
    let api = profile.state.api_url.clone();
    let c = connect(&mut profile).await?;
    let s = &mut c.session.unlock(the_pin, &mut profile).await?;
    match args.command {
        ConnectionsCommand::Invite {
            label,
            in_person,
            expires_hours,
            no_code,
        } => {
            let (id, invitation) = s
                .invite(
                    label,
                    expires_hours.map(|h| h.saturating_mul(3600)),
                    in_person,
                )
                .await?;
            show_invitation(api.as_deref(), &id, &invitation, no_code).await;
        }
        ConnectionsCommand::Resend {
            id,
            expires_hours,
            no_code,
        } => {
            let mut bytes = [0u8; 16];
            hex::decode_to_slice(id.trim(), &mut bytes)
                .context("an invitation id is 32 hex digits, as `connections invitations` shows")?;
            let (id, invitation) = s
                .resend_invitation(bytes, expires_hours.map(|h| h.saturating_mul(3600)))
                .await?;
            println!("  the old invitation is cancelled: it connects nobody");
            show_invitation(api.as_deref(), &id, &invitation, no_code).await;
        }
        ConnectionsCommand::Invitations => {
            let all = s.invitations().await?;
            for i in &all {
                println!(
                    "{}  until {}  {}{}",
                    hex::encode(i.id),
                    i.expires_ms,
                    i.label.as_deref().unwrap_or("-"),
                    if i.in_person { "  (in person)" } else { "" }
                );
            }
            println!("{} pending invitation(s)", all.len());
        }
        ConnectionsCommand::Cancel { id } => {
            let mut bytes = [0u8; 16];
            hex::decode_to_slice(id.trim(), &mut bytes)
                .context("an invitation id is 32 hex digits, as `connections invitations` shows")?;
            s.cancel_invitation(bytes).await?;
            println!("✓ invitation cancelled: it connects nobody");
        }
        ConnectionsCommand::Accept {
            invitation,
            code,
            invitation_env,
            invitation_file,
            invitation_stdin,
            wait_secs,
        } => {
            let invitation = if let Some(code) = code {
                let code = vettid_client::connections::ShortCode::parse(&code)?;
                let api = api.context("this profile knows no API to look the code up")?;
                println!("  looking the code up in the connect-code directory…");
                vettid_client::connections::fetch_invitation(&api, &code).await?
            } else {
                let text = match invitation {
                    Some(t) => zeroize::Zeroizing::new(t),
                    None => read_qr(
                        invitation_env.as_ref(),
                        invitation_file.as_ref(),
                        invitation_stdin,
                    )?
                    .context("the invitation is needed (as an argument, --code, --invitation-env, --invitation-file or --invitation-stdin)")?,
                };
                decode_invitation(&text)?
            };
            let id = s.accept_invitation(invitation).await?;
            println!(
                "  hello sent to the inviter's vault (hybrid handshake: Noise IKpsk2 + X-Wing); waiting…"
            );
            let c = wait_for_state(s, id, &[ConnectionState::PendingReview], wait_secs).await?;
            if c.state == ConnectionState::Requested {
                println!(
                    "  no answer yet: it comes when the inviter's vault is open (see `connections show {}`)",
                    hex::encode(&id[..4])
                );
            } else {
                println!("✓ keys agreed with the inviter's vault; review:");
            }
            print_connection(&c);
        }
        ConnectionsCommand::List => {
            let all = s.connections().await?;
            for c in &all {
                print_connection(c);
            }
            println!("{} connection(s)", all.len());
        }
        ConnectionsCommand::Show { id } => {
            let c = resolve(s, &id).await?;
            print_connection(&c);
        }
        ConnectionsCommand::Sas { id } => {
            let c = resolve(s, &id).await?;
            match c.sas {
                Some(sas) => println!("{} {}", &sas[..3], &sas[3..]),
                None => bail!(
                    "no code yet: the vaults have not agreed keys ({})",
                    c.state.as_str()
                ),
            }
        }
        ConnectionsCommand::Approve { id, sas } => {
            let c = resolve(s, &id).await?;
            let sas = sas.map(|code| code.chars().filter(|c| !c.is_whitespace()).collect());
            s.approve_connection(c.id, sas).await?;
            let c = s.connection(c.id).await?;
            if c.state == ConnectionState::Active {
                println!("✓ approved: the connection is active");
            } else {
                println!("✓ approved; waiting for the peer's approval");
            }
        }
        ConnectionsCommand::Reject { id } => {
            let c = resolve(s, &id).await?;
            s.reject_connection(c.id).await?;
            println!("✓ rejected; the peer's vault is told");
        }
        ConnectionsCommand::Revoke { id } => {
            let c = resolve(s, &id).await?;
            s.revoke_connection(c.id).await?;
            println!(
                "✓ revoked: both vaults erase its keys; the peer's vault is told (later, if it is locked)"
            );
        }
        ConnectionsCommand::RevokeAll { yes } => {
            if !yes {
                bail!(
                    "this ends every connection and cancels every invitation: run it again with --yes"
                );
            }
            let n = s.revoke_all_connections().await?;
            println!(
                "✓ {n} connection(s) revoked and every invitation cancelled; each peer's vault is told"
            );
        }
        ConnectionsCommand::Block { id } => {
            let c = resolve(s, &id).await?;
            s.block_connection(c.id).await?;
            println!(
                "✓ blocked {}: their vault is not told; what it sends is dropped from now on",
                c.peer_member.as_deref().unwrap_or("the peer")
            );
        }
        ConnectionsCommand::Unblock { id } => {
            let c = resolve(s, &id).await?;
            s.unblock_connection(c.id).await?;
            println!("✓ unblocked; to connect again, exchange a new invitation");
        }
        ConnectionsCommand::Blocked => {
            let all = s.blocked_members().await?;
            for b in &all {
                println!(
                    "{}  since {}  {}{}",
                    short(&b.connection),
                    b.since_ms,
                    b.peer_member.as_deref().unwrap_or("?"),
                    b.label
                        .as_deref()
                        .map(|l| format!("  ({l})"))
                        .unwrap_or_default()
                );
            }
            println!("{} blocked member(s)", all.len());
        }
        ConnectionsCommand::Ask {
            id,
            fields,
            categories,
        } => {
            use vettid_proto::profile::{Category, ShareTarget};
            let c = resolve(s, &id).await?;
            let mut targets: Vec<ShareTarget> =
                fields.into_iter().map(ShareTarget::Field).collect();
            for name in categories {
                let category = Category::parse(&name).with_context(|| {
                    format!("{name}: a category is identity, contact, address, financial, health or other")
                })?;
                targets.push(ShareTarget::Category(category));
            }
            let request = s.ask(c.id, targets).await?;
            println!(
                "✓ request {} sent; their member decides (see `connections requests`)",
                hex::encode(request)
            );
        }
        ConnectionsCommand::Requests { id } => {
            let connection = match id {
                Some(id) => Some(resolve(s, &id).await?.id),
                None => None,
            };
            let all = s.requests(connection).await?;
            for r in &all {
                let what: Vec<String> = r
                    .targets
                    .iter()
                    .map(|t| match t {
                        vettid_proto::profile::ShareTarget::Field(k) => k.clone(),
                        vettid_proto::profile::ShareTarget::Category(c) => {
                            format!("category {}", c.as_str())
                        }
                    })
                    .collect();
                println!(
                    "{}  {} {:<8} {}  on {}{}",
                    hex::encode(r.id),
                    if r.incoming {
                        "asked of you"
                    } else {
                        "you asked  "
                    },
                    r.state.as_str(),
                    what.join(", "),
                    hex::encode(&r.connection[..4]),
                    match (r.uses_left, r.expires_ms) {
                        (Some(u), Some(e))
                            if r.state == vettid_proto::connections::RequestState::Granted =>
                            format!("  ({u} fetch(es) left, until {e})"),
                        _ => String::new(),
                    }
                );
                for (k, v) in &r.values {
                    println!("    {:<20} {}", shown(k), shown(v));
                }
            }
            println!("{} request(s)", all.len());
        }
        ConnectionsCommand::Grant {
            request,
            uses,
            days,
        } => {
            let r = resolve_request(s, &request).await?;
            s.grant(r.id, uses, days.map(|d| d.saturating_mul(24 * 3600)))
                .await?;
            println!("✓ granted: the values are on their way, sealed to their vault");
        }
        ConnectionsCommand::Deny { request } => {
            let r = resolve_request(s, &request).await?;
            s.deny(r.id).await?;
            println!("✓ denied; their vault is told");
        }
        ConnectionsCommand::Fetch { request } => {
            let r = resolve_request(s, &request).await?;
            s.fetch_granted(r.id).await?;
            println!("✓ asked for the current values (see `connections requests`)");
        }
        ConnectionsCommand::EndGrant { request } => {
            let r = resolve_request(s, &request).await?;
            s.end_grant(r.id).await?;
            println!("✓ grant ended: their vault erases what you gave");
        }
        ConnectionsCommand::Rule { id, rule } => {
            let c = resolve(s, &id).await?;
            let rule = vettid_proto::connections::ShareRule::parse(&rule)
                .context("a rule is ask or auto")?;
            s.set_share_rule(c.id, rule).await?;
            println!("✓ requests on this connection: {}", rule.as_str());
        }
        ConnectionsCommand::Allow {
            id,
            messaging,
            calling,
            presentation,
        } => {
            let c = resolve(s, &id).await?;
            let now = c.capabilities;
            let capabilities = vettid_proto::connections::Capabilities {
                messaging: on_off("messaging", messaging.as_deref(), now.messaging)?,
                calling: on_off("calling", calling.as_deref(), now.calling)?,
                presentation: on_off("presentation", presentation.as_deref(), now.presentation)?,
            };
            s.allow(c.id, capabilities).await?;
            let c = s.connection(c.id).await?;
            println!("✓ updated; their vault is told");
            print_connection(&c);
        }
        ConnectionsCommand::Rotate { id, wait_secs } => {
            let c = resolve(s, &id).await?;
            let from = c.epoch;
            s.rotate_connection(c.id).await?;
            println!(
                "  new X-Wing key for epoch {} sent to the peer's vault; waiting…",
                from + 1
            );
            let c = wait_until(s, c.id, |c| c.epoch > from, wait_secs).await?;
            if c.epoch > from {
                println!("✓ keys rotated: epoch {}", c.epoch);
            } else {
                println!(
                    "  no answer yet: the rotation finishes when the peer's vault is open (see `connections show`)"
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn messages(
    dir: &std::path::Path,
    args: MessagesArgs,
) -> anyhow::Result<ExitCode> {
    let the_pin = pin(&args.pin)?;
    let mut profile = Profile::open_enrolled(dir)?;
    let c = connect(&mut profile).await?;
    let s = &mut c.session.unlock(the_pin, &mut profile).await?;
    match args.command {
        MessagesCommand::Send { id, text } => {
            let c = resolve(s, &id).await?;
            let seq = s.send_message(c.id, &text).await?;
            println!(
                "✓ message {seq} stored and on its way (JetStream holds it until their vault takes it)"
            );
        }
        MessagesCommand::List {
            id,
            limit,
            before_ms,
            since_ms,
        } => {
            let c = resolve(s, &id).await?;
            let (all, more) = s.messages_between(c.id, since_ms, before_ms, limit).await?;
            for m in &all {
                let status = if !m.outgoing {
                    if m.read_ms.is_some() {
                        ""
                    } else {
                        "  (unread)"
                    }
                } else if m.read_ms.is_some() {
                    "  ✓✓ read"
                } else if m.delivered_ms.is_some() {
                    "  ✓ delivered"
                } else {
                    "  sent"
                };
                let text = if m.deleted {
                    "(deleted for everyone)"
                } else {
                    &shown(&m.text)
                };
                let edited = if m.edited_ms.is_some() && !m.deleted {
                    "  (edited)"
                } else {
                    ""
                };
                let file = m.attachment.as_ref().map_or(String::new(), |a| {
                    format!(
                        "  [file {} ({}, {} bytes){}]",
                        shown(&a.info.name),
                        shown(&a.info.mime),
                        a.info.size,
                        if a.complete { "" } else { ", arriving" }
                    )
                });
                println!(
                    "{} #{:<4} {} {text}{file}{edited}{status}",
                    m.sent_ms,
                    m.seq,
                    if m.outgoing { "→" } else { "←" },
                );
            }
            if more {
                let oldest = all.last().map_or(0, |m| m.sent_ms);
                println!("(older: --before-ms {oldest})");
            }
        }
        MessagesCommand::Read { id, seq } => {
            let c = resolve(s, &id).await?;
            s.mark_read(c.id, seq).await?;
            println!("✓ read up to #{seq}; the peer gets a read receipt");
        }
        MessagesCommand::Clear { id, yes } => {
            let c = resolve(s, &id).await?;
            if !yes {
                bail!(
                    "this erases every message and file of the connection in your vault: run it again with --yes"
                );
            }
            s.clear_history(c.id).await?;
            println!("✓ history erased from your vault");
        }
        MessagesCommand::SendFile {
            id,
            path,
            text,
            mime,
        } => {
            let c = resolve(s, &id).await?;
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .context("the file needs a name")?
                .to_owned();
            println!(
                "  uploading {name} ({} bytes) to your vault in {} piece(s)…",
                bytes.len(),
                bytes.len().div_ceil(vettid_proto::messages::PIECE_BYTES)
            );
            let seq = s.send_file(c.id, &name, &mime, &bytes, text).await?;
            println!("✓ message {seq} with {name} stored and on its way, piece by piece");
        }
        MessagesCommand::Save {
            id,
            seq,
            path,
            outgoing,
        } => {
            let c = resolve(s, &id).await?;
            let bytes = s.download(c.id, outgoing, seq).await?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .with_context(|| format!("creating {} (it must not exist)", path.display()))?;
            std::io::Write::write_all(&mut file, &bytes)?;
            println!("✓ {} bytes written to {}", bytes.len(), path.display());
        }
        MessagesCommand::Edit { id, seq, text } => {
            let c = resolve(s, &id).await?;
            s.edit_message(c.id, seq, &text).await?;
            println!("✓ message #{seq} edited; the peer's vault is told");
        }
        MessagesCommand::Delete { id, seq } => {
            let c = resolve(s, &id).await?;
            s.delete_message(c.id, seq).await?;
            println!("✓ message #{seq} deleted for everyone: both vaults erase its text");
        }
        MessagesCommand::Retention { id, days, forever } => {
            let connection = match id {
                Some(id) => Some(resolve(s, &id).await?.id),
                None => None,
            };
            let whose = if connection.is_some() {
                "this connection"
            } else {
                "connections without their own setting"
            };
            if days.is_some() || forever {
                s.set_message_retention(connection, days).await?;
            }
            match s.message_retention(connection).await? {
                Some(d) => println!("messages on {whose} are kept {d} day(s), then erased"),
                None => println!("messages on {whose} are kept for ever"),
            }
        }
        MessagesCommand::Watch { secs } => {
            let key = vettid_crypto::SecretBytes::from_array(**s.event_key());
            let deadline = (secs > 0).then(|| Instant::now() + Duration::from_secs(secs));
            println!("watching for messages and receipts (Ctrl-C to stop)…");
            while deadline.is_none_or(|d| Instant::now() < d) {
                let (events, _) =
                    vettid_client::events::fetch(s.client(), &key, 64, Duration::from_secs(5))
                        .await?;
                for e in events {
                    match e.kind {
                        EventKind::Message { connection, seq } => {
                            let (page, _) = s.messages(connection, None, 50).await?;
                            let text = page
                                .iter()
                                .find(|m| !m.outgoing && m.seq == seq)
                                .map_or("(no longer in the history)".to_owned(), |m| {
                                    shown(&m.text)
                                });
                            println!("← {} #{seq}: {text}", hex::encode(&connection[..4]));
                        }
                        EventKind::Receipt {
                            connection,
                            seqs,
                            read,
                        } => println!(
                            "{} {} {:?}",
                            if read { "✓✓ read" } else { "✓ delivered" },
                            hex::encode(&connection[..4]),
                            seqs
                        ),
                        EventKind::Request {
                            connection,
                            request,
                            incoming,
                        } => println!(
                            "{} {} request {}",
                            if incoming {
                                "? asked of you on"
                            } else {
                                "! answered on"
                            },
                            hex::encode(&connection[..4]),
                            hex::encode(request)
                        ),
                        EventKind::MessageChanged {
                            connection,
                            seq,
                            deleted,
                        } => println!(
                            "{} {} #{seq}",
                            if deleted { "✗ deleted" } else { "✎ edited" },
                            hex::encode(&connection[..4])
                        ),
                        EventKind::Connection { id, state } => {
                            println!("connection {} is {}", hex::encode(&id[..4]), state.as_str())
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
