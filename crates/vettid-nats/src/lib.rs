//! # vettid-nats: NATS in operator mode, with the project's own keys and JWTs
//!
//! Tenant isolation is enforced by the broker (DESIGN §3.5): every member connects with a user
//! JWT that lets it touch only its own subjects, and the server refuses the rest. This crate
//! makes those keys and JWTs, the server configuration that trusts them, and the revocations.
//!
//! ```text
//!  operator (self-signed) ──signs──► account SYS ──signs──► user sys      (pushes account JWTs)
//!        │
//!        └──────────signs──────────► account VETTID (JetStream on, revocations)
//!                                       └─ signing key ──signs──► users host, api, members
//! ```
//!
//! - [`Setup::create_or_load`] makes (once) and then loads, in one directory, the operator,
//!   the system account `SYS`, the platform account `VETTID` (with an account signing key)
//!   and the platform users `host`, `api` and `sys`, each with a creds file. It never
//!   regenerates keys: an incomplete directory is an error, not a reason to start over.
//! - [`Setup::server_config`] writes a nats-server configuration in operator mode with the
//!   `full` resolver, so account JWTs (and so revocations) can be pushed at run time.
//! - [`Issuer`] (used by the API) signs per-member user JWTs ([`MemberScope`]) and revokes
//!   user keys by re-signing the platform account JWT; [`push_account`] sends it to the server.
//! - [`creds_file`] renders the standard creds-file text from a JWT and a user seed.
//!
//! What it deliberately does not do: TLS, clustering, operator signing keys, or key rotation.
//! It has no opinion on payloads: those are encrypted end to end above NATS.
//!
//! ## Subjects each user may use
//!
//! | user | publish | subscribe |
//! |---|---|---|
//! | `host` | `OwnerSpace.*.forApp.>`, `MessageSpace.*.forOwner.>` (vault-to-vault, through JetStream), `$JS.API.>` (the events and peers streams and their durables), one reply per request received | `OwnerSpace.*.forVault.>`, `_INBOX.>` |
//! | `api` | nothing | nothing |
//! | `sys` (account SYS) | `$SYS.REQ.CLAIMS.UPDATE` | `_INBOX.>` |
//! | member `m`, enrollment | `OwnerSpace.m.forVault.attestation`, `….enroll` | `_INBOX_m.>` |
//! | member `m` | `OwnerSpace.m.forVault.>` | `OwnerSpace.m.forApp.>`, `_INBOX_m.>` |
//!
//! Members must connect with [`member_inbox_prefix`] as their inbox prefix.
//!
//! Members have **no JetStream API rights at all**. The JetStream API answers to whatever
//! reply subject a request names, so even `CONSUMER.INFO` on a member's own durable let it
//! make the server publish into another member's `forApp` subjects (into that member's
//! events); and `CONSUMER.CREATE` would let it turn a durable into a push consumer delivering
//! anywhere (nats-server #8274). An app catches up on its events by asking the host on
//! `OwnerSpace.m.forVault.events`: the host fetches from the member's durable
//! ([`member_consumer_config`]) and answers only into the member's own inbox.
//!
//! ## Example
//!
//! ```
//! use std::time::Duration;
//! use vettid_nats::{MemberScope, Setup};
//!
//! let tmp = tempfile::tempdir()?;
//! let setup = Setup::create_or_load(&tmp.path().join("auth"))?;
//! let user = nkeys::KeyPair::new_user(); // made by the app; only the public key travels
//! let issued = setup.issuer()?.member_jwt(
//!     "alice",
//!     &user.public_key(),
//!     MemberScope::Member,
//!     Duration::from_secs(3600),
//! )?;
//! let creds = vettid_nats::creds_file(&issued.jwt, &user.seed()?);
//! assert!(creds.contains(&issued.jwt));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]

mod files;
mod jwt;

use jwt::Permissions;
use nkeys::KeyPair;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The JetStream stream that keeps vault → app events (`OwnerSpace.*.forApp.>`).
pub const EVENTS_STREAM: &str = "VETTID_EVENTS";

/// The queue group the host subscribes to `OwnerSpace.*.forVault.>` with.
pub const HOST_QUEUE_GROUP: &str = "vettid-host";

/// The longest a member JWT may live. A revocation older than this can only refuse JWTs that
/// have expired anyway, so the account drops it: the revocation list stays bounded by what
/// was revoked within this window.
pub const MAX_MEMBER_JWT_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

const OPERATOR_SEED: &str = "operator.nk";
const OPERATOR_JWT: &str = "operator.jwt";
const SYS_ACCOUNT_SEED: &str = "sys-account.nk";
const SYS_ACCOUNT_JWT: &str = "sys-account.jwt";
const ACCOUNT_SEED: &str = "vettid-account.nk";
const ACCOUNT_SIGNING_SEED: &str = "vettid-signing.nk";
/// The mutable part of the VETTID account (issue time, revocations); its JWT is derived.
const ACCOUNT_STATE: &str = "vettid-account.json";
const ACCOUNT_LOCK: &str = "vettid-account.lock";
const SYS_CREDS: &str = "sys.creds";
const HOST_CREDS: &str = "host.creds";
const API_CREDS: &str = "api.creds";
const CONFIG: &str = "nats-server.conf";

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// A key, JWT or creds text is malformed (the caller's input).
    #[error("invalid: {0}")]
    Invalid(String),
    /// Reading or writing the key directory failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The NATS server refused or did not answer.
    #[error("nats server: {0}")]
    Server(String),
}

/// Ports and directories for the nats-server configuration.
#[derive(Debug, Clone)]
pub struct ServerPlan {
    /// Client port on 127.0.0.1.
    pub client_port: u16,
    /// Monitoring port on 127.0.0.1, or none (the default: the monitor is unauthenticated
    /// and lists connections by member, so any local user could read who is online).
    pub monitor_port: Option<u16>,
    /// JetStream store directory.
    pub jetstream_dir: PathBuf,
    /// Resolver directory (account JWTs).
    pub resolver_dir: PathBuf,
}

/// The operator, accounts and platform users of one deployment, kept in one directory
/// (0700; seeds and creds 0600).
pub struct Setup {
    dir: PathBuf,
    sys_account: String,
    sys_account_jwt: String,
    issuer: Issuer,
}

impl fmt::Debug for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Setup")
            .field("dir", &self.dir)
            .field("sys_account", &self.sys_account)
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl Setup {
    /// Creates the keys, JWTs and creds files in `dir` if it is absent or empty, else loads
    /// them. Creation happens in a private sibling directory that is renamed into place, so
    /// `dir` is never seen half-written, and two racing callers end up with the same keys.
    /// A non-empty `dir` missing a file is an error: keys are never regenerated.
    pub fn create_or_load(dir: &Path) -> Result<Setup, NatsError> {
        let dir = std::path::absolute(dir)?;
        if files::missing_or_empty(&dir)? {
            create(&dir)?;
        }
        Setup::load(&dir)
    }

    fn load(dir: &Path) -> Result<Setup, NatsError> {
        for name in [OPERATOR_JWT, SYS_CREDS, HOST_CREDS, API_CREDS] {
            if !dir.join(name).is_file() {
                return Err(NatsError::Invalid(format!(
                    "{} is incomplete (no {name}); refusing to regenerate keys",
                    dir.display()
                )));
            }
        }
        Ok(Setup {
            sys_account: read_seed(dir, SYS_ACCOUNT_SEED, 'A')?.public_key(),
            sys_account_jwt: read_text(&dir.join(SYS_ACCOUNT_JWT))?,
            issuer: Issuer::load(dir)?,
            dir: dir.to_owned(),
        })
    }

    /// Writes the nats-server configuration for `plan` into the setup directory and returns
    /// its path. It preloads the current account JWTs (with every revocation so far).
    pub fn server_config(&self, plan: &ServerPlan) -> Result<PathBuf, NatsError> {
        let path = self.dir.join(CONFIG);
        files::replace_private(&path, self.server_config_text(plan)?.as_bytes())?;
        Ok(path)
    }

    /// The text [`Setup::server_config`] writes, for callers that keep it elsewhere.
    /// Paths containing quotes, backslashes or control characters are refused.
    pub fn server_config_text(&self, plan: &ServerPlan) -> Result<String, NatsError> {
        Ok(format!(
            "# Written by vettid-nats; rewritten at every start.\n\
             server_name: vettid_local\n\
             listen: 127.0.0.1:{client}\n\
             {monitor}\
             operator: {operator}\n\
             system_account: {sys}\n\
             resolver: {{ type: full, dir: {resolver}, allow_delete: false, interval: \"2m\" }}\n\
             resolver_preload: {{\n  {sys}: \"{sys_jwt}\"\n  {account}: \"{account_jwt}\"\n}}\n\
             jetstream: {{ store_dir: {jetstream} }}\n",
            client = plan.client_port,
            monitor = plan
                .monitor_port
                .map(|p| format!("http: 127.0.0.1:{p}\n"))
                .unwrap_or_default(),
            operator = quote(&self.dir.join(OPERATOR_JWT))?,
            sys = self.sys_account,
            resolver = quote(&std::path::absolute(&plan.resolver_dir)?)?,
            sys_jwt = self.sys_account_jwt,
            account = self.issuer.account,
            account_jwt = self.issuer.account_jwt()?,
            jetstream = quote(&std::path::absolute(&plan.jetstream_dir)?)?,
        ))
    }

    /// Creds file of the platform user `host` (routes OwnerSpace ↔ enclave, publishes events,
    /// manages the events stream).
    pub fn host_creds(&self) -> PathBuf {
        self.dir.join(HOST_CREDS)
    }

    /// Creds file of the platform user `api`: it may only ask the hosts to shred a deleted
    /// vault ([`SHRED_SUBJECT`]) and hear their answers; the API pushes revocations with
    /// [`Setup::sys_creds`]. (A setup made before deletion existed has an `api` user with no
    /// rights and a `host` user without the shred subscription: deletion then answers 503
    /// until the setup is made anew.)
    pub fn api_creds(&self) -> PathBuf {
        self.dir.join(API_CREDS)
    }

    /// Creds file of a system-account user (pushes account JWTs: `$SYS.REQ.CLAIMS.UPDATE`).
    pub fn sys_creds(&self) -> PathBuf {
        self.dir.join(SYS_CREDS)
    }

    /// The issuer the API uses for member credentials.
    pub fn issuer(&self) -> Result<Issuer, NatsError> {
        Issuer::load(&self.dir)
    }
}

/// Makes every key and file in a private temporary sibling of `dir`, then renames it into place.
fn create(dir: &Path) -> Result<(), NatsError> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Err(NatsError::Invalid(format!(
            "{} has no parent",
            dir.display()
        )));
    };
    std::fs::create_dir_all(parent)?;
    static ATTEMPT: AtomicU32 = AtomicU32::new(0);
    let tmp = parent.join(format!(
        ".{}.creating-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        ATTEMPT.fetch_add(1, Ordering::Relaxed)
    ));
    files::create_private_dir(&tmp)?;
    let made = write_new_setup(&tmp).and_then(|()| Ok(files::sync_dir(&tmp)?));
    let placed = made.and_then(|()| match std::fs::rename(&tmp, dir) {
        Ok(()) => Ok(files::sync_dir(parent)?),
        // Another process created it first: use theirs.
        Err(_) if !files::missing_or_empty(dir)? => Ok(()),
        Err(e) => Err(e.into()),
    });
    if tmp.exists() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    placed
}

fn write_new_setup(dir: &Path) -> Result<(), NatsError> {
    let iat = now_secs();
    let operator = KeyPair::new_operator();
    let sys = KeyPair::new_account();
    let account = KeyPair::new_account();
    let signing = KeyPair::new_account();
    for (name, key) in [
        (OPERATOR_SEED, &operator),
        (SYS_ACCOUNT_SEED, &sys),
        (ACCOUNT_SEED, &account),
        (ACCOUNT_SIGNING_SEED, &signing),
    ] {
        files::write_new_private(&dir.join(name), seed_of(key)?.as_bytes())?;
    }
    let (op_pub, sys_pub, acc_pub) = (
        operator.public_key(),
        sys.public_key(),
        account.public_key(),
    );
    let operator_jwt = jwt::sign(&operator, jwt::operator(&op_pub, &sys_pub, iat))?;
    files::write_new_private(&dir.join(OPERATOR_JWT), operator_jwt.as_bytes())?;
    let sys_claims = jwt::account("SYS", &sys_pub, None, false, &BTreeMap::new(), iat);
    let sys_jwt = jwt::sign(&operator, sys_claims)?;
    files::write_new_private(&dir.join(SYS_ACCOUNT_JWT), sys_jwt.as_bytes())?;
    let state = AccountState {
        iat,
        revocations: BTreeMap::new(),
        needed_until: BTreeMap::new(),
    };
    files::write_new_private(&dir.join(ACCOUNT_STATE), &state.to_json()?)?;

    let users = [
        (SYS_CREDS, "sys", &sys, None, sys_permissions()),
        (
            HOST_CREDS,
            "host",
            &signing,
            Some(&*acc_pub),
            host_permissions(),
        ),
        (
            API_CREDS,
            "api",
            &signing,
            Some(&*acc_pub),
            api_permissions(),
        ),
    ];
    for (file, name, signer, issuer_account, perms) in users {
        let user = KeyPair::new_user();
        let claims = jwt::user(name, &user.public_key(), issuer_account, &perms, iat, None);
        let creds = creds_file(&jwt::sign(signer, claims)?, &seed_of(&user)?);
        files::write_new_private(&dir.join(file), creds.as_bytes())?;
    }
    Ok(())
}

fn host_permissions() -> Permissions {
    Permissions {
        publish: strings(&[
            "OwnerSpace.*.forApp.>",
            "MessageSpace.*.forOwner.>",
            "$JS.API.>",
        ]),
        subscribe: strings(&["OwnerSpace.*.forVault.>", "_INBOX.>", SHRED_SUBJECT]),
        nothing: false,
        // Replies go to each member's own inbox prefix, which host may not publish to otherwise.
        responses: true,
        limits: None,
    }
}

/// Where the API asks the hosts to shred a confirmed deletion's vault: the payload is the
/// member id, the answer a postcard `Result<EnclaveReply, VaultError>` (the enclave's
/// `ToEnclave::Shred`). Only the platform's `api` user may publish here, and `host` users
/// subscribe.
pub const SHRED_SUBJECT: &str = "vettid.platform.shred";

/// The inbox prefix of the platform's `api` user (its requests' answers come there).
pub const API_INBOX_PREFIX: &str = "_INBOX_api";

/// The API asks the hosts to shred a deleted member's vault, and hears the answer; nothing
/// else.
fn api_permissions() -> Permissions {
    Permissions {
        publish: strings(&[SHRED_SUBJECT]),
        subscribe: strings(&[&format!("{API_INBOX_PREFIX}.>")]),
        ..Permissions::default()
    }
}

/// Only what [`push_account`] needs.
fn sys_permissions() -> Permissions {
    Permissions {
        publish: strings(&["$SYS.REQ.CLAIMS.UPDATE"]),
        subscribe: strings(&["_INBOX.>"]),
        ..Permissions::default()
    }
}

/// The exact subjects a member may use. `member` must already be validated.
fn member_permissions(m: &str, scope: MemberScope) -> Permissions {
    let publish = match scope {
        MemberScope::Enrollment => vec![
            format!("OwnerSpace.{m}.forVault.attestation"),
            format!("OwnerSpace.{m}.forVault.enroll"),
        ],
        // No JetStream API: its answers go to any reply subject the requester names.
        MemberScope::Member => vec![format!("OwnerSpace.{m}.forVault.>")],
    };
    let mut subscribe = vec![format!("{}.>", member_inbox_prefix(m))];
    if scope == MemberScope::Member {
        subscribe.insert(0, format!("OwnerSpace.{m}.forApp.>"));
    }
    Permissions {
        publish,
        subscribe,
        nothing: false,
        responses: false,
        // An app message is one session message (≤ 64 KiB) in a small envelope; an app needs
        // its inbox, its events subject and a few requests at once.
        limits: Some(jwt::UserLimits {
            subs: MEMBER_SUBSCRIPTIONS,
            payload: MEMBER_PAYLOAD,
        }),
    }
}

/// Subscriptions a member's connection may hold at once.
pub const MEMBER_SUBSCRIPTIONS: i64 = 16;
/// Largest message a member may publish, bytes.
pub const MEMBER_PAYLOAD: i64 = 128 * 1024;

/// What a member's user JWT allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberScope {
    /// During enrollment: publish `OwnerSpace.<m>.forVault.attestation` and
    /// `OwnerSpace.<m>.forVault.enroll`; subscribe to the member inbox prefix.
    Enrollment,
    /// An enrolled app: publish `OwnerSpace.<m>.forVault.>`; subscribe `OwnerSpace.<m>.forApp.>`
    /// and the member inbox prefix. No JetStream API (the host fetches its events for it).
    Member,
}

/// The inbox prefix a member's connection must use (`ConnectOptions::custom_inbox_prefix`).
pub fn member_inbox_prefix(member: &str) -> String {
    format!("_INBOX_{member}")
}

/// Whether `reply` is on `member`'s own inbox prefix. The broker lets the host answer any
/// reply subject it receives, and a member chooses its reply subject freely: the host MUST
/// check this before answering on `OwnerSpace.<member>.forVault.*`, or a member could have
/// answers delivered into another member's inbox.
pub fn is_member_reply_subject(member: &str, reply: &str) -> bool {
    reply
        .strip_prefix(member_inbox_prefix(member).as_str())
        .is_some_and(|rest| rest.starts_with('.') && rest.len() > 1)
}

/// The one consumer a member reads on [`EVENTS_STREAM`]: durable, named `member`, pull,
/// explicit acks, filtered to `OwnerSpace.<member>.forApp.>`.
///
/// The **host** creates it, with its own `$JS.API.>` permission, when it first routes one of
/// the member's enroll or session messages:
/// `host_jetstream.create_consumer_on_stream(config, EVENTS_STREAM)` (a no-op when the durable
/// already exists with this config). The member may not: with `$JS.API.CONSUMER.CREATE` a
/// member can turn its durable into a push consumer with any `deliver_subject`, and the server
/// then publishes the events to a subject the member itself may not publish to (nats-server
/// #8274: it does not check the creator's permissions on the deliver subject).
///
/// The host also fetches from it and acknowledges, for the app that asks on
/// `OwnerSpace.<member>.forVault.events`; the app itself has no JetStream rights.
pub fn member_consumer_config(
    member: &str,
) -> Result<async_nats::jetstream::consumer::pull::Config, NatsError> {
    check_member(member)?;
    Ok(async_nats::jetstream::consumer::pull::Config {
        durable_name: Some(member.to_owned()),
        filter_subject: format!("OwnerSpace.{member}.forApp.>"),
        ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
        ..Default::default()
    })
}

/// The JetStream stream of vault-to-vault messages: `MessageSpace.*.forOwner.>`.
pub const PEERS_STREAM: &str = "VETTID_PEERS";

/// The consumer through which a member's vault receives its peers' messages on
/// [`PEERS_STREAM`]: durable, named `peer-<member>`, pull, filtered to
/// `MessageSpace.<member>.forOwner.>`, explicit acknowledgement. Only hosts use it: the host
/// serving the vault takes each message to the enclave and acknowledges it once the vault
/// dealt with it (or leaves it for later while the vault is locked).
pub fn peer_consumer_config(
    member: &str,
) -> Result<async_nats::jetstream::consumer::pull::Config, NatsError> {
    check_member(member)?;
    Ok(async_nats::jetstream::consumer::pull::Config {
        durable_name: Some(format!("peer-{member}")),
        filter_subject: format!("MessageSpace.{member}.forOwner.>"),
        ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
        ack_wait: std::time::Duration::from_secs(60),
        max_ack_pending: 256,
        // A message that keeps failing (its vault's storage is down) is given up after this
        // many deliveries rather than holding up the rest for ever. Giving one back while the
        // vault is locked counts too (once per unlock at most): hence the generous bound.
        max_deliver: 1000,
        ..Default::default()
    })
}

/// A signed user JWT.
#[derive(Debug, Clone)]
pub struct IssuedJwt {
    /// The JWT text.
    pub jwt: String,
    /// The user public key (`U…`) it was issued to.
    pub user_public_key: String,
    /// When it was issued (its `iat`, whole seconds).
    pub issued_at: SystemTime,
    /// When it expires.
    pub expires_at: SystemTime,
}

/// Signs member user JWTs with the platform account's signing key, and revokes them.
pub struct Issuer {
    dir: PathBuf,
    operator: KeyPair,
    account: String,
    signing: KeyPair,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("dir", &self.dir)
            .field("operator", &self.operator.public_key())
            .field("account", &self.account)
            .field("signing_key", &self.signing.public_key())
            .finish()
    }
}

/// The mutable part of the VETTID account, persisted as JSON.
#[derive(Serialize, Deserialize)]
struct AccountState {
    /// `iat` of the current account JWT; strictly increases with each change so the server
    /// never keeps an older JWT.
    iat: u64,
    /// User public key → revoked at (Unix seconds): user JWTs issued up to then are refused.
    revocations: BTreeMap<String, u64>,
    /// User public key → when the last JWT its revocation refuses expires: after that the
    /// entry refuses nothing and is dropped. (Entries without one are kept for
    /// [`MAX_MEMBER_JWT_LIFETIME`] after their revocation.)
    #[serde(default)]
    needed_until: BTreeMap<String, u64>,
}

/// One revocation: JWTs issued to `key` at or before `issued_until` are refused;
/// `needed_until` is when the last of them expires (the entry is dropped an hour after).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The user public key (`U…`).
    pub key: String,
    /// JWTs issued up to this time (Unix seconds) are refused.
    pub issued_until: u64,
    /// The latest expiry of a JWT this refuses (Unix seconds).
    pub needed_until: u64,
}

impl AccountState {
    fn to_json(&self) -> Result<Vec<u8>, NatsError> {
        serde_json::to_vec_pretty(self).map_err(|e| NatsError::Invalid(e.to_string()))
    }
}

impl Issuer {
    /// Loads the issuer from a setup directory.
    pub fn load(dir: &Path) -> Result<Issuer, NatsError> {
        Ok(Issuer {
            dir: dir.to_owned(),
            operator: read_seed(dir, OPERATOR_SEED, 'O')?,
            account: read_seed(dir, ACCOUNT_SEED, 'A')?.public_key(),
            signing: read_seed(dir, ACCOUNT_SIGNING_SEED, 'A')?,
        })
    }

    /// Signs a user JWT for `user_public_key` (a `U…` nkey) of `member`, valid for `lifetime`
    /// (at least one second). `member` must be a valid subject token (1–64 of `a-z 0-9 -`).
    pub fn member_jwt(
        &self,
        member: &str,
        user_public_key: &str,
        scope: MemberScope,
        lifetime: Duration,
    ) -> Result<IssuedJwt, NatsError> {
        self.member_jwt_at(member, user_public_key, scope, lifetime, SystemTime::now())
    }

    /// [`Issuer::member_jwt`] as if issued at `issued_at` (for tests and replays: a past
    /// `issued_at` with a short `lifetime` gives an already expired JWT).
    pub fn member_jwt_at(
        &self,
        member: &str,
        user_public_key: &str,
        scope: MemberScope,
        lifetime: Duration,
        issued_at: SystemTime,
    ) -> Result<IssuedJwt, NatsError> {
        check_member(member)?;
        check_user_key(user_public_key)?;
        let iat = issued_at
            .duration_since(UNIX_EPOCH)
            .map_err(|_| NatsError::Invalid("issue time before 1970".into()))?
            .as_secs();
        if lifetime > MAX_MEMBER_JWT_LIFETIME {
            return Err(NatsError::Invalid("lifetime must be 7 days or less".into()));
        }
        let exp = Some(lifetime.as_secs())
            .filter(|s| *s > 0)
            .and_then(|s| iat.checked_add(s))
            .ok_or_else(|| NatsError::Invalid("lifetime must be 1 s or more".into()))?;
        let perms = member_permissions(member, scope);
        let claims = jwt::user(
            member,
            user_public_key,
            Some(&self.account),
            &perms,
            iat,
            Some(exp),
        );
        Ok(IssuedJwt {
            jwt: jwt::sign(&self.signing, claims)?,
            user_public_key: user_public_key.to_owned(),
            issued_at: UNIX_EPOCH + Duration::from_secs(iat),
            expires_at: UNIX_EPOCH + Duration::from_secs(exp),
        })
    }

    /// Adds `user_public_keys` to the platform account's revocations (JWTs issued to them up
    /// to now are refused), persists it, and returns the re-signed account JWT to push with
    /// [`push_account`]. Until it is pushed (or the server restarts with
    /// [`Setup::server_config`]), the running server still accepts the revoked keys.
    pub fn revoke(&self, user_public_keys: &[String]) -> Result<String, NatsError> {
        let now = now_secs();
        let entries: Vec<Revocation> = user_public_keys
            .iter()
            .map(|k| Revocation {
                key: k.clone(),
                issued_until: now,
                needed_until: now + MAX_MEMBER_JWT_LIFETIME.as_secs(),
            })
            .collect();
        self.revoke_issued_until(&entries)
    }

    /// Like [`Issuer::revoke`], per key: JWTs issued to the key at or before `issued_until`
    /// are refused, later ones stay valid (how a renewal ends the credentials it replaces). A
    /// key's revocation time only moves forward. Entries an hour past their `needed_until`
    /// are dropped, so the account JWT holds only revocations that still refuse a live JWT.
    pub fn revoke_issued_until(&self, entries: &[Revocation]) -> Result<String, NatsError> {
        for r in entries {
            check_user_key(&r.key)?;
        }
        // Serialise read-modify-write between processes sharing the directory.
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(self.dir.join(ACCOUNT_LOCK))?;
        lock.lock()?;
        let mut state = self.state()?;
        for r in entries {
            // An entry from before `needed_until` existed keeps its implied window.
            let implied = state
                .revocations
                .get(&r.key)
                .map_or(0, |at| at.saturating_add(MAX_MEMBER_JWT_LIFETIME.as_secs()));
            let at = state
                .revocations
                .entry(r.key.clone())
                .or_insert(r.issued_until);
            *at = (*at).max(r.issued_until);
            let needed = state
                .needed_until
                .entry(r.key.clone())
                .or_insert(implied.max(r.needed_until));
            *needed = (*needed).max(r.needed_until);
        }
        let now = now_secs();
        let kept_from = now.saturating_sub(3600);
        let AccountState {
            revocations,
            needed_until,
            ..
        } = &mut state;
        revocations.retain(|key, until| {
            let needed = needed_until
                .get(key)
                .copied()
                .unwrap_or_else(|| until.saturating_add(MAX_MEMBER_JWT_LIFETIME.as_secs()));
            needed >= kept_from
        });
        needed_until.retain(|key, _| revocations.contains_key(key));
        state.iat = now.max(state.iat.saturating_add(1));
        files::replace_private(&self.dir.join(ACCOUNT_STATE), &state.to_json()?)?;
        self.sign_account(&state)
    }

    /// The current platform account JWT (with every revocation so far).
    pub fn account_jwt(&self) -> Result<String, NatsError> {
        self.sign_account(&self.state()?)
    }

    fn state(&self) -> Result<AccountState, NatsError> {
        let text = read_text(&self.dir.join(ACCOUNT_STATE))?;
        serde_json::from_str(&text).map_err(|e| NatsError::Invalid(format!("{ACCOUNT_STATE}: {e}")))
    }

    fn sign_account(&self, state: &AccountState) -> Result<String, NatsError> {
        let signing = self.signing.public_key();
        let claims = jwt::account(
            "VETTID",
            &self.account,
            Some(&signing),
            true,
            &state.revocations,
            state.iat,
        );
        jwt::sign(&self.operator, claims)
    }
}

/// Pushes `account_jwt` to the running server at `nats_url` as a system-account user
/// (`$SYS.REQ.CLAIMS.UPDATE`); `Ok` only when the server stored it (code 200). Connected
/// users whose keys the JWT revokes are disconnected by the server.
///
/// Note: nats-server 2.15 also stores (and answers 200 for) an account JWT signed by an
/// operator it does not trust; such an account still lets no user in.
pub async fn push_account(
    nats_url: &str,
    sys_creds: &Path,
    account_jwt: &str,
) -> Result<(), NatsError> {
    let client = async_nats::ConnectOptions::with_credentials_file(sys_creds)
        .await?
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(10)))
        .connect(nats_url)
        .await
        .map_err(|e| NatsError::Server(format!("connecting to {nats_url}: {e}")))?;
    let answer = client
        .request("$SYS.REQ.CLAIMS.UPDATE", account_jwt.to_owned().into())
        .await
        .map_err(|e| NatsError::Server(format!("pushing the account JWT: {e}")))?;
    let reply: serde_json::Value = serde_json::from_slice(&answer.payload)
        .map_err(|_| NatsError::Server("unreadable answer to a claims update".into()))?;
    // The full resolver answers {"data":{"code":200,..}} or {"error":{"code":..,"description":..}}.
    if reply.pointer("/data/code").and_then(|c| c.as_u64()) == Some(200) {
        return Ok(());
    }
    let why = reply
        .pointer("/error/description")
        .and_then(|d| d.as_str())
        .unwrap_or("no reason given");
    Err(NatsError::Server(format!("account JWT refused: {why}")))
}

/// Asks the hosts (as the platform's `api` user, `api_creds`) to shred `member`'s vault
/// ([`SHRED_SUBJECT`]) and returns the host's answer unread: a postcard
/// `Result<EnclaveReply, VaultError>`. An error when no host answers within `timeout`.
pub async fn request_shred(
    nats_url: &str,
    api_creds: &Path,
    member: &str,
    timeout: Duration,
) -> Result<Vec<u8>, NatsError> {
    check_member(member)?;
    let client = async_nats::ConnectOptions::with_credentials_file(api_creds)
        .await?
        .custom_inbox_prefix(API_INBOX_PREFIX)
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(timeout))
        .connect(nats_url)
        .await
        .map_err(|e| NatsError::Server(format!("connecting to {nats_url}: {e}")))?;
    let answer = client
        .request(SHRED_SUBJECT, member.to_owned().into())
        .await
        .map_err(|e| NatsError::Server(format!("asking the hosts to shred: {e}")))?;
    Ok(answer.payload.to_vec())
}

/// The standard creds-file text (`-----BEGIN NATS USER JWT-----` … seed …).
pub fn creds_file(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    )
}

/// 1–64 of `a-z 0-9 -`: one subject token, no wildcard, usable as a consumer name.
fn check_member(m: &str) -> Result<(), NatsError> {
    let ok = (1..=64).contains(&m.len())
        && m.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(NatsError::Invalid(
            "a member id is 1 to 64 of a-z, 0-9 and -".into(),
        ))
    }
}

fn check_user_key(k: &str) -> Result<(), NatsError> {
    if k.starts_with('U') && KeyPair::from_public_key(k).is_ok() {
        Ok(())
    } else {
        Err(NatsError::Invalid("not a user public nkey (U…)".into()))
    }
}

fn read_seed(dir: &Path, name: &str, kind: char) -> Result<KeyPair, NatsError> {
    let seed = read_text(&dir.join(name))?;
    KeyPair::from_seed(seed.trim())
        .ok()
        .filter(|k| k.public_key().starts_with(kind))
        .ok_or_else(|| NatsError::Invalid(format!("{name} is not a seed of the right kind")))
}

fn seed_of(key: &KeyPair) -> Result<String, NatsError> {
    key.seed()
        .map_err(|e| NatsError::Invalid(format!("no seed: {e}")))
}

fn read_text(path: &Path) -> Result<String, NatsError> {
    Ok(std::fs::read_to_string(path)?)
}

/// A path as a quoted nats-config string.
fn quote(path: &Path) -> Result<String, NatsError> {
    let s = path
        .to_str()
        .ok_or_else(|| NatsError::Invalid(format!("{} is not UTF-8", path.display())))?;
    if s.contains(['"', '\\']) || s.chars().any(char::is_control) {
        return Err(NatsError::Invalid(format!(
            "{} may not contain quotes, backslashes or control characters",
            path.display()
        )));
    }
    Ok(format!("\"{s}\""))
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_subjects_are_exactly_its_own() {
        let p = member_permissions("a-1", MemberScope::Member);
        assert_eq!(p.publish, ["OwnerSpace.a-1.forVault.>"]);
        assert_eq!(p.subscribe, ["OwnerSpace.a-1.forApp.>", "_INBOX_a-1.>"]);
        let e = member_permissions("a-1", MemberScope::Enrollment);
        assert_eq!(
            e.publish,
            [
                "OwnerSpace.a-1.forVault.attestation",
                "OwnerSpace.a-1.forVault.enroll"
            ]
        );
        assert_eq!(e.subscribe, ["_INBOX_a-1.>"]);
    }

    #[test]
    fn only_a_members_own_inbox_is_its_reply_subject() {
        assert!(is_member_reply_subject("ab", "_INBOX_ab.x.1"));
        for reply in [
            "_INBOX_abc.x",
            "_INBOX_a.x",
            "_INBOX_ab",
            "_INBOX_ab.",
            "_INBOX.x",
        ] {
            assert!(!is_member_reply_subject("ab", reply), "{reply}");
        }
    }

    #[test]
    fn config_paths_with_quotes_backslashes_or_newlines_are_refused() {
        for bad in ["/tmp/a\"b", "/tmp/a\\b", "/tmp/a\nb"] {
            assert!(matches!(quote(Path::new(bad)), Err(NatsError::Invalid(_))));
        }
        assert_eq!(quote(Path::new("/tmp/ok dir")).unwrap(), "\"/tmp/ok dir\"");
    }
}
