//! Messages of the host ↔ enclave channel (bodies of [`crate::channel::Frame`]s).
//!
//! Requests the host sends ([`ToEnclave`]) carry client operations; requests the enclave
//! sends ([`ToHost`]) ask for storage, the key service and the clock — the only ways the
//! enclave reaches the world. Everything the enclave hands the host to store is already
//! encrypted and authenticated.

use serde::{Deserialize, Serialize};

/// A vault identifier: 1–64 of `a-z 0-9 -` (checked by [`valid_vault_id`]).
pub type VaultId = String;

/// Whether `id` is an acceptable vault identifier (it becomes part of object names).
pub fn valid_vault_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Host → enclave requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToEnclave {
    /// Liveness.
    Ping,
    /// An operation on one vault.
    Vault {
        /// Which vault.
        vault: VaultId,
        /// What to do.
        op: VaultOp,
    },
    /// A message an app sent to `OwnerSpace.<member>.forVault.<channel>`, passed on unread.
    App {
        /// The member named in the subject (= vault id).
        member: VaultId,
        /// The channel named in the subject.
        channel: crate::session::Channel,
        /// The host's clock (milliseconds since the Unix epoch; untrusted).
        now_ms: u64,
        /// A postcard [`crate::session::FromApp`].
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
    /// Destroy vault `vault` (the member's confirmed deletion, relayed by the host from
    /// `vettid_nats::SHRED_SUBJECT`): every wrap of its master key and its sealed secret first,
    /// then every other object, backups included; the enclave forgets it and ends its
    /// sessions. Answered with [`EnclaveReply::Shredded`]; a vault that does not exist is
    /// shredded with nothing to delete, so a retry after a lost answer succeeds.
    Shred {
        /// Which vault.
        vault: VaultId,
    },
    /// A message another vault sent to `MessageSpace.<member>.forOwner.sealed`, taken from
    /// JetStream by the host and passed on unread ([`crate::peer`]). Answered with
    /// [`EnclaveReply::Peer`].
    Peer {
        /// The recipient named in the subject.
        member: VaultId,
        /// The host's clock (untrusted).
        now_ms: u64,
        /// The wire message.
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
    /// How many vaults this enclave holds and the memory it accounts for them, answered with
    /// [`EnclaveReply::Stats`] (aggregates only, the memory in whole MiB: no vault is named,
    /// and one vault's size does not show).
    Stats,
    /// Messages other vaults sent to `member` ([`ToEnclave::Peer`]), in the order JetStream
    /// delivered them: taken in that order and made durable together (one log entry for the
    /// batch). Answered with [`EnclaveReply::Peers`].
    Peers {
        /// The recipient named in the subjects.
        member: VaultId,
        /// The host's clock (untrusted).
        now_ms: u64,
        /// The wire messages, at most [`MAX_PEER_BATCH`].
        bodies: Vec<serde_bytes::ByteBuf>,
    },
}

/// At most this many messages in one [`ToEnclave::Peers`].
pub const MAX_PEER_BATCH: usize = 64;
/// At most this many bytes of messages in one [`ToEnclave::Peers`] (more than one message
/// only below it): well inside what the enclave reads from the host in one request.
pub const MAX_PEER_BATCH_BYTES: usize = 2 << 20;

/// What the host does with the messages of a [`ToEnclave::Peers`] batch after the first
/// `done` ([`EnclaveReply::Peers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerRest {
    /// The vault is not open: they wait in JetStream until it is unlocked.
    Later,
    /// One could not be taken now (the enclave or its storage failed): they come again
    /// after a pause.
    Retry,
}

/// Where the host publishes an [`Outbound`] message (JetStream in both cases).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Destination {
    /// `OwnerSpace.<member>.forApp.<token>`: an event for the vault's own apps.
    App {
        /// The subject's last token.
        token: String,
    },
    /// `MessageSpace.<member>.forOwner.sealed`: a message for another vault.
    Peer {
        /// The recipient.
        member: VaultId,
    },
}

/// A message for the host to publish (JetStream) before it answers the request that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbound {
    /// Where.
    pub to: Destination,
    /// JetStream de-duplication id (random, or a hash the sender alone can make: it names
    /// no member or connection).
    pub id: String,
    /// A postcard [`crate::session::SealedEvent`], or a peer wire message.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// What became of a peer message ([`ToEnclave::Peer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerDisposition {
    /// Dealt with: stored, a duplicate, or refused for good (it does not authenticate under
    /// any key of the vault's). The host acknowledges it.
    Done,
    /// The vault is not open (locked since the enclave started, or locked by its member): the
    /// host leaves the message in JetStream until the vault is unlocked.
    Later,
}

/// Vault operations. PINs travel here only on the debug path (`vettid vault …`); apps send
/// them inside the attested session.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VaultOp {
    /// Create a vault protected by `pin`.
    Create {
        /// The PIN.
        #[serde(with = "serde_bytes")]
        pin: Vec<u8>,
    },
    /// Open the vault with its PIN.
    Unlock {
        /// The PIN.
        #[serde(with = "serde_bytes")]
        pin: Vec<u8>,
    },
    /// Change the PIN (re-wraps the master key; no data is re-encrypted).
    ChangePin {
        /// The current PIN.
        #[serde(with = "serde_bytes")]
        old: Vec<u8>,
        /// The new PIN.
        #[serde(with = "serde_bytes")]
        new: Vec<u8>,
    },
    /// Forget the vault's keys in memory; the PIN is needed again.
    Lock,
    /// Store a record (debug key-value table).
    Put {
        /// Record key (1–256 bytes).
        key: String,
        /// Record value (≤ 1 MiB).
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Read a record.
    Get {
        /// Record key.
        key: String,
    },
    /// Version, residency and guess-limit state.
    Status,
}

// Never print PINs or values: the variant name only.
crate::redact::redacted_debug!(VaultOp);

/// A state version the vault signed: an app keeps the highest it has seen and refuses older.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedVersion {
    /// Monotonic state version (one per acknowledged write).
    pub version: u64,
    /// Ed25519 public key of the vault's identity.
    #[serde(with = "serde_bytes")]
    pub identity: Vec<u8>,
    /// Signature over `vettid/v1/state-version ‖ vault id ‖ version ‖ hash of the change`.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    /// Hash of the change at this version (chains to the previous one).
    #[serde(with = "serde_bytes")]
    pub change_hash: Vec<u8>,
}

/// Successful answers to [`ToEnclave`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnclaveReply {
    /// Answer to [`ToEnclave::Ping`].
    Pong,
    /// Answer to [`ToEnclave::App`]: the reply for the app, and events to publish.
    App {
        /// A postcard [`crate::session::ToApp`].
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
        /// Events for the member's apps, and messages for other vaults.
        events: Vec<Outbound>,
        /// The member's vault is open after this request: the host delivers the messages
        /// waiting for it in JetStream.
        open: bool,
    },
    /// Answer to [`ToEnclave::Peer`].
    Peer {
        /// Acknowledge it, or keep it for later.
        disposition: PeerDisposition,
        /// What to publish first (receipts, answers, events for the member's apps).
        out: Vec<Outbound>,
    },
    /// The vault exists and is unlocked at this version.
    Open(SignedVersion),
    /// Locked.
    Locked,
    /// A write is durable at this version.
    Written(SignedVersion),
    /// A record's value, if present.
    Value(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// Vault status.
    Status {
        /// Unlocked, evicted but reloadable without the PIN, or locked.
        residency: Residency,
        /// Consecutive wrong PINs.
        failed_attempts: u32,
        /// Wrong PINs left before the vault locks (0: locked out).
        attempts_left: u32,
    },
    /// Answer to [`ToEnclave::Shred`]: how many objects were deleted.
    Shredded {
        /// Objects deleted (0: there was no such vault, or it was already shredded).
        objects: u64,
    },
    /// Answer to [`ToEnclave::Stats`].
    Stats {
        /// Vaults resident with their database open.
        open: u64,
        /// Vaults resident at rest (compressed and sealed in memory).
        resting: u64,
        /// Vaults evicted (reloadable from storage without the PIN).
        evicted: u64,
        /// MiB the resident vaults are accounted, rounded up (database or image, plus a fixed
        /// cost per vault): what `--memory-budget-mib` bounds.
        accounted_mib: u64,
    },
    /// Answer to [`ToEnclave::Peers`]: the first `done` messages were dealt with (stored, a
    /// duplicate, or refused for good) and are durable; the host acknowledges them after
    /// publishing `out`. The rest, if any, go back as `rest` says.
    Peers {
        /// How many of the batch, from its start, were dealt with.
        done: u32,
        /// What becomes of the others (`None` when there are none).
        rest: Option<PeerRest>,
        /// What to publish first (receipts, answers, events for the member's apps).
        out: Vec<Outbound>,
    },
}

/// Where a vault is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Residency {
    /// In memory and unlocked.
    Resident,
    /// Evicted from memory; reloads without the PIN while this enclave instance lives.
    Evicted,
    /// Needs the PIN.
    Locked,
    /// In memory and unlocked, at rest: its database compressed and sealed until its next use
    /// opens it again (no storage access, no PIN).
    Resting,
}

/// Why a vault operation failed. Each says whose fault it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum VaultError {
    /// The caller's request is invalid: nothing changed.
    #[error("bad request: {0}")]
    Invalid(#[from] Invalid),
    /// A secrets operation was refused (the caller's mistake): nothing changed.
    #[error("{0}")]
    Secrets(#[from] crate::secrets::SecretError),
    /// A personal-data or profile operation was refused: nothing changed.
    #[error("{0}")]
    Profile(#[from] crate::profile::ProfileError),
    /// A feed operation was refused: nothing changed.
    #[error("{0}")]
    Feed(#[from] crate::feed::FeedError),
    /// A credential operation was refused: nothing changed.
    #[error("{0}")]
    Credential(#[from] crate::credential::CredentialError),
    /// No such vault.
    #[error("no such vault")]
    NotFound,
    /// The vault already exists.
    #[error("vault already exists")]
    AlreadyExists,
    /// The vault must be unlocked first.
    #[error("vault is locked; unlock it with the PIN")]
    NotUnlocked,
    /// Wrong PIN; the vault locks after `attempts_left` more.
    #[error("wrong PIN ({attempts_left} attempts left)")]
    WrongPin {
        /// Wrong PINs left before the vault locks.
        attempts_left: u32,
    },
    /// Wrong password (credential verifier); the vault locks after `attempts_left` more.
    #[error("wrong password ({attempts_left} attempts left)")]
    WrongPassword {
        /// Wrong passwords left before the vault locks.
        attempts_left: u32,
    },
    /// Too many wrong PINs or passwords: only recovery can reopen the vault.
    #[error("vault locked after too many wrong PINs; use recovery")]
    LockedOut,
    /// Another writer changed the vault (fenced off); reload and retry.
    #[error("conflict: another writer changed the vault")]
    Conflict,
    /// Stored data failed authentication: swapped, truncated, moved or rolled back objects.
    #[error("stored data failed verification: {0}")]
    Tampered(String),
    /// The host could not store or fetch data.
    #[error("storage unavailable: {0}")]
    Storage(String),
    /// Sealing or the key service failed.
    #[error("sealing failed: {0}")]
    Sealing(String),
    /// The enclave is busy or failed internally.
    #[error("enclave error: {0}")]
    Internal(String),
    /// Storage holds an older state than one already seen (by this enclave, or by an app that
    /// showed the vault-signed version it saw), or a state that does not extend it: the host
    /// rolled storage back or forked it. Nothing is served until storage is restored.
    #[error("the vault's storage was rolled back (at version {current}, version {seen} was seen)")]
    RolledBack {
        /// The highest version seen.
        seen: u64,
        /// The version storage shows.
        current: u64,
    },
    /// The session's device is not registered in the vault's keys.
    #[error("this device is not registered with the vault")]
    DeviceNotRegistered,
    /// A write would grow the vault's database beyond its quota (deleting makes room).
    #[error("the vault is full ({limit_bytes} bytes); delete something first")]
    QuotaExceeded {
        /// The quota.
        limit_bytes: u64,
    },
    /// The credential blob is not the current one (each blob is good for one use, and for
    /// retries of that one request): nothing was counted.
    #[error("this credential blob is not the current one")]
    StaleCredential,
    /// The debug path was asked to touch a vault that an app owns.
    #[error("this vault belongs to an app: only its attested session reaches it")]
    AppOwned,
    /// Wrong recovery phrase; counted with wrong PINs: the vault locks after `attempts_left`
    /// more.
    #[error("wrong recovery phrase ({attempts_left} attempts left)")]
    WrongRecoveryPhrase {
        /// Wrong PINs or phrases left before the vault locks.
        attempts_left: u32,
    },
    /// This vault has no recovery phrase (made before phrases existed, or on the debug path).
    #[error("this vault has no recovery phrase")]
    NoRecoveryPhrase,
    /// A backup operation was refused, or a backup does not open.
    #[error("{0}")]
    Backup(#[from] crate::backup::BackupError),
    /// A device operation was refused: nothing changed.
    #[error("{0}")]
    Devices(#[from] crate::devices::DeviceError),
    /// A connection operation was refused: nothing changed.
    #[error("{0}")]
    Connections(#[from] crate::connections::ConnectionError),
    /// A message operation was refused: nothing changed.
    #[error("{0}")]
    Messages(#[from] crate::messages::MessageError),
    /// A recovery was refused because an enrolled device unlocked the vault within the
    /// enclave's recovery delay: whoever holds that device is using it, so the recovery is
    /// cancelled (nothing was counted or changed). Request a new one if it was you.
    #[error("an enrolled device unlocked this vault during the recovery delay: recovery cancelled")]
    RecentlyUsed,
}

impl VaultError {
    /// Whether this refuses the request itself (the caller's mistake, or what it asked for does
    /// not exist): nothing was changed or attempted, so the vault's state is the one before.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            VaultError::Invalid(_)
                | VaultError::Secrets(_)
                | VaultError::Profile(_)
                | VaultError::Feed(_)
                | VaultError::Credential(_)
                | VaultError::Backup(_)
                | VaultError::Devices(_)
                | VaultError::Connections(_)
                | VaultError::Messages(_)
                | VaultError::NotFound
        )
    }
}

/// Requests refused whatever the domain: the caller sent something no vault accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Invalid {
    /// A vault id is 1–64 of `a-z 0-9 -` ([`valid_vault_id`]).
    #[error("vault id must be 1-64 of a-z 0-9 -")]
    VaultId,
    /// A PIN is 4–64 bytes.
    #[error("PIN must be 4 to 64 bytes")]
    Pin,
    /// A device name is 1–64 bytes without control characters.
    #[error("device name must be 1-64 bytes, without control characters")]
    DeviceName,
    /// A debug record's key is 1–256 bytes and its value at most 1 MiB.
    #[error("key must be 1-256 bytes and value at most 1 MiB")]
    Record,
    /// The device key's binding to the session key does not verify.
    #[error("the device key's binding to this session does not verify")]
    DeviceBinding,
    /// Enrollment happens on the enroll channel, and only enrollment does.
    #[error("enrollment sessions only enroll; enrolled apps use the session channel")]
    WrongChannel,
    /// The debug path does not exist in Nitro builds.
    #[error("the debug path is not part of Nitro builds")]
    NoDebugPath,
    /// The request does not decode.
    #[error("malformed request")]
    Malformed,
    /// The change breaks a rule of the vault's tables (a domain let through what its schema
    /// refuses): nothing was written.
    #[error("the change breaks a rule of the vault's tables")]
    Constraint,
}

/// Enclave → host requests: storage, the clock, and a byte relay to the key service. There is
/// no attestation request: documents come from the enclave's own device, never the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToHost {
    /// Read an object.
    Get {
        /// Object name (`vaults/<id>/…`).
        name: String,
    },
    /// Create an object only if it does not exist; durable when answered.
    PutCreate {
        /// Object name.
        name: String,
        /// Encrypted bytes.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Names under a prefix, sorted.
    List {
        /// Prefix (`vaults/<id>/log/`).
        prefix: String,
    },
    /// Delete objects (compaction); missing ones are ignored.
    Delete {
        /// Object names.
        names: Vec<String>,
    },
    /// The host's clock (milliseconds since the Unix epoch). Untrusted: used for timestamps only.
    Now,
    /// Opens a byte stream to the key service (AWS KMS, or the dev key service). The enclave
    /// speaks TLS over it and checks the service's certificate against the roots in its
    /// measured configuration: the host carries bytes it can neither read nor forge.
    Connect,
    /// Sends bytes on a stream from [`ToHost::Connect`].
    Send {
        /// The stream.
        conn: u64,
        /// TLS records.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// The next bytes that arrived on a stream (waits for at least one; none: it ended).
    Receive {
        /// The stream.
        conn: u64,
    },
    /// Closes a stream.
    Close {
        /// The stream.
        conn: u64,
    },
    /// Credentials to sign key-service requests with (AWS on Nitro: the instance role's; a
    /// fixed pair in development). They authenticate the caller to AWS only; what the key
    /// service releases is bound to the enclave's attestation document, not to them.
    Credentials,
}

/// Answers to [`ToHost`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostReply {
    /// The object, if it exists.
    Object(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// Created and durable.
    Created,
    /// Not created: the name is taken (another writer got there first).
    AlreadyExists,
    /// Object names.
    Names(Vec<String>),
    /// Done.
    Done,
    /// Milliseconds since the Unix epoch.
    Now(u64),
    /// A stream is open.
    Connected(u64),
    /// Bytes (empty: the stream ended).
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Credentials for request signatures.
    Credentials(AwsCredentials),
    /// The host could not do it.
    Error(String),
}

/// AWS credentials for signing key-service requests. `Debug` shows only the key id.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: zeroize::Zeroizing<String>,
    /// Session token, for temporary credentials.
    pub session_token: Option<zeroize::Zeroizing<String>>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}
