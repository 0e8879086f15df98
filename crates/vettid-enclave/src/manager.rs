//! Vault actors: one record per vault, each behind its own lock, so a vault's operations run
//! one at a time while different vaults run in parallel. Idle vaults are evicted (LRU and idle
//! timeout); an evicted vault keeps only its master key, wrapped under a key that exists in
//! this enclave process alone, so it reloads without the PIN until the enclave restarts.
//!
//! What the record remembers for the enclave's lifetime is what the host could otherwise undo
//! unseen: the newest guard record, keys generation and credential generation, the vault's
//! identity, and the highest state (version and hash) seen. Everything in it comes from
//! authenticated reads or from the enclave's own writes, and only ever tightens: a host that
//! answers "nothing there" or "stored" falsely can make an operation fail, never make the
//! enclave trust something it did not check.

use crate::keys::{self, KeyPolicy, LockedVault, MasterKey};
use crate::link::Link;
use crate::objects::{ObjectKind, Objects};
use crate::vault::{Head, Limits, SqlValue, Statement, Vault};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use vettid_attest::seal::Sealer;
use vettid_crypto::SecretBytes;
use vettid_crypto::aead::AeadKey;
use vettid_proto::enclave::{
    EnclaveReply, Invalid, Outbound, PeerRest, Residency, SignedVersion, VaultError, VaultOp,
    valid_vault_id,
};
use zeroize::Zeroizing;

/// What became of a batch of messages from other vaults ([`Manager::peers`]).
#[derive(Debug)]
pub struct PeerBatch {
    /// How many, from the batch's start, were dealt with (and are durable).
    pub done: u32,
    /// What becomes of the others, if any.
    pub rest: Option<PeerRest>,
    /// What the ones dealt with send (receipts, answers, events for the member's apps).
    pub out: Vec<Outbound>,
}

/// Largest record value of the debug table.
const MAX_VALUE: usize = 1024 * 1024;

/// What the enclave's measured configuration decides: the guess limit and stretching, and the
/// per-vault quotas. Never taken from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Guess limit and PIN stretching.
    pub keys: KeyPolicy,
    /// Per-vault quotas.
    pub limits: Limits,
    /// Staged recovery waits until no enrolled device has unlocked the vault for this long
    /// (ms; default 24 h).
    pub recovery_delay_ms: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            keys: KeyPolicy::default(),
            limits: Limits::default(),
            recovery_delay_ms: vettid_proto::platform::DEFAULT_RECOVERY_DELAY_SECS * 1000,
        }
    }
}

/// Tunables of the enclave: its policy, and resource settings the host may choose (they can
/// only cost availability, which the host controls anyway).
#[derive(Debug, Clone)]
pub struct Config {
    /// The measured policy.
    pub policy: Policy,
    /// Resident vaults at most; beyond it the least recently used are evicted.
    pub max_resident: usize,
    /// Bytes of resident vaults at most, as accounted (database or image plus a fixed cost per
    /// vault); beyond it the least recently used are evicted.
    pub memory_budget: u64,
    /// A vault unused this long is evicted.
    pub idle: Duration,
    /// A vault unused this long is put at rest ([`crate::vault::Vault::rest`]): it stays
    /// resident as a compressed, sealed image, and its next use opens it again.
    pub rest: Duration,
    /// Log entries between snapshots.
    pub snapshot_every: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            max_resident: 10_000,
            memory_budget: 1 << 30,
            idle: Duration::from_secs(300),
            rest: Duration::from_secs(10),
            snapshot_every: crate::vault::SNAPSHOT_EVERY,
        }
    }
}

/// Who opened a resident vault: an app's session (the keys record has registered devices) or
/// the debug path (it has none). The debug path never reaches an app's vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    App,
    Debug,
}

enum Slot {
    /// Nothing in memory: the PIN is needed.
    Cold,
    /// Unlocked in memory (open, or at rest until its next use).
    Resident {
        vault: Tier,
        wrapped: Vec<u8>,
        owner: Owner,
        last_used: Instant,
    },
    /// Evicted; the master key kept wrapped under the instance key.
    Evicted { wrapped: Vec<u8>, owner: Owner },
}

impl Slot {
    fn owner(&self) -> Option<Owner> {
        match self {
            Slot::Cold => None,
            Slot::Resident { owner, .. } | Slot::Evicted { owner, .. } => Some(*owner),
        }
    }

    /// Drops the copy in memory (keeping the key to reload it).
    fn evict(&mut self) {
        if let Slot::Resident { wrapped, owner, .. } = self {
            *self = Slot::Evicted {
                wrapped: std::mem::take(wrapped),
                owner: *owner,
            };
        }
    }
}

/// How a resident vault is held.
enum Tier {
    /// Its database open.
    Open(Box<Vault>),
    /// Idle: its database compressed and sealed ([`Vault::rest`]), reopened by its next use.
    Resting(Box<Vault<crate::vault::Image>>),
}

/// Memory an open vault costs beyond its database pages: SQLite's connection, lookaside and
/// page headers (measured: 341 KiB of RSS per open vault holding 232 KiB of pages).
const OPEN_OVERHEAD: u64 = 112 << 10;
/// Memory a vault costs in this enclave beyond its database or image: its keys, state and
/// records (measured with 10,000 resting vaults, `cargo bench -p vettid --bench density`).
const VAULT_OVERHEAD: u64 = 5 << 10;

impl Tier {
    /// Bytes it is accounted in the memory budget: an estimate of what it holds in memory.
    fn memory_bytes(&self) -> u64 {
        VAULT_OVERHEAD
            + match self {
                Tier::Open(v) => v.db_bytes() + OPEN_OVERHEAD,
                Tier::Resting(v) => v.db_bytes(),
            }
    }
}

/// A vault larger than this stays open when idle (resting and waking cost time in proportion
/// to the database, under its lock); it leaves memory by eviction instead.
const REST_MAX_BYTES: u64 = 16 << 20;

impl Slot {
    /// When a resident vault was last used.
    fn last_used(&self) -> Option<Instant> {
        match self {
            Slot::Resident { last_used, .. } => Some(*last_used),
            _ => None,
        }
    }

    /// Sets when a resident vault was last used.
    fn set_last_used(&mut self, t: Instant) {
        if let Slot::Resident { last_used, .. } = self {
            *last_used = t;
        }
    }

    /// Bytes of database an open resident vault holds (0 otherwise).
    fn db_bytes(&self) -> u64 {
        match self {
            Slot::Resident {
                vault: Tier::Open(v),
                ..
            } => v.db_bytes(),
            _ => 0,
        }
    }

    /// Puts an open resident vault at rest (left open if it cannot be serialized).
    fn rest(&mut self) {
        if !matches!(
            self,
            Slot::Resident {
                vault: Tier::Open(_),
                ..
            }
        ) {
            return;
        }
        if let Slot::Resident {
            vault: Tier::Open(vault),
            wrapped,
            owner,
            last_used,
        } = std::mem::replace(self, Slot::Cold)
        {
            let vault = match vault.rest() {
                Ok(resting) => Tier::Resting(resting),
                Err(open) => Tier::Open(open),
            };
            *self = Slot::Resident {
                vault,
                wrapped,
                owner,
                last_used,
            };
        }
    }

    /// Opens a resting resident vault again. If its image does not open (a fault in this
    /// enclave's memory) the vault is evicted: the next use reloads it from storage.
    fn wake(&mut self) -> Result<(), VaultError> {
        if !matches!(
            self,
            Slot::Resident {
                vault: Tier::Resting(_),
                ..
            }
        ) {
            return Ok(());
        }
        let Slot::Resident {
            vault: Tier::Resting(vault),
            wrapped,
            owner,
            last_used,
        } = std::mem::replace(self, Slot::Cold)
        else {
            return Ok(());
        };
        match vault.wake() {
            Ok(open) => {
                *self = Slot::Resident {
                    vault: Tier::Open(open),
                    wrapped,
                    owner,
                    last_used,
                };
                Ok(())
            }
            Err(e) => {
                *self = Slot::Evicted { wrapped, owner };
                Err(e)
            }
        }
    }
}

/// Everything the enclave holds about one vault, behind one lock.
struct VaultState {
    slot: Slot,
    /// Raised by every unlock and lock: a session's unlock holds only while the number it got
    /// is current.
    opening: u64,
    /// The newest guard record seen: storage that shows an older one was rolled back.
    guard_seq: u64,
    /// The newest keys generation seen.
    generation: Option<u64>,
    /// Devices of the newest keys record read and authenticated (never from a listing or a
    /// write the host claims to have stored): the handshake's pre-check. The decisive check
    /// is against the record each unlock opens.
    devices: Option<Vec<[u8; 32]>>,
    /// The vault's identity, from its keys record or its creation: another one later means
    /// the host substituted a different vault.
    identity: Option<[u8; 32]>,
    /// The highest state seen (loaded, written, or shown by an app as a vault-signed
    /// version): storage that does not extend it is refused as `RolledBack`.
    high_water: Option<Head>,
    /// The newest credential generation seen.
    credential_generation: u64,
    /// Versions apps showed (signed by the vault) while it was not in memory: the next load
    /// must extend each of them too.
    anchors: Vec<Head>,
    /// Set once storage is proven rolled back or forked (`RolledBack`): the vault is refused
    /// for the rest of this enclave's life, to every session.
    refused: Option<VaultError>,
    /// By the enclave's monotonic clock: when it first dealt with this vault, and when a
    /// registered device last unlocked it. Staged recovery waits the delay from the later of
    /// the two, whatever the host says the time is (a restart only makes the wait longer).
    watched_since_ms: u64,
    last_unlock_ms: Option<u64>,
    /// An export or restore in progress, and the opening it belongs to: it ends with that
    /// unlock (a lock, a newer unlock, an eviction), so at most one per vault is held.
    transfer: Option<(u64, Box<crate::backup::Transfer>)>,
    /// Connection handshakes this vault started and waits on (memory only; a lock forgets
    /// them).
    handshakes: crate::connections::Handshakes,
    /// When its next scheduled backup is due, as read from the open database before it last
    /// went to rest or was evicted: the background pass opens only vaults that are due.
    backup_due: BackupDue,
}

/// A vault's next scheduled backup, as last read from its open database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BackupDue {
    /// Not read since the vault left the open tier in a way that did not record it.
    Unknown,
    /// No schedule.
    Never,
    /// Due at this time (milliseconds since the Unix epoch, by the background clock).
    At(u64),
}

/// Anchors kept for a vault not in memory at most (the newest).
const MAX_ANCHORS: usize = 16;

impl VaultState {
    fn new(uptime_ms: u64) -> Self {
        Self {
            watched_since_ms: uptime_ms,
            last_unlock_ms: None,
            slot: Slot::Cold,
            opening: 0,
            guard_seq: 0,
            generation: None,
            devices: None,
            identity: None,
            high_water: None,
            credential_generation: 0,
            anchors: Vec::new(),
            refused: None,
            transfer: None,
            handshakes: Default::default(),
            backup_due: BackupDue::Unknown,
        }
    }

    /// Records when the open vault's next backup is due (before it rests or is evicted).
    fn note_backup_due(&mut self) {
        if let Slot::Resident {
            vault: Tier::Open(v),
            ..
        } = &self.slot
        {
            self.backup_due = match crate::backup::next_due_ms(v) {
                Ok(Some(t)) => BackupDue::At(t),
                Ok(None) => BackupDue::Never,
                Err(_) => BackupDue::Unknown,
            };
        }
    }

    /// Refused already? Then that refusal.
    fn check(&self) -> Result<(), VaultError> {
        self.refused.clone().map_or(Ok(()), Err)
    }

    /// A proven rollback or fork closes the vault for everyone (other errors pass through).
    fn settle(&mut self, e: VaultError) -> VaultError {
        if matches!(e, VaultError::RolledBack { .. }) {
            self.refused = Some(e.clone());
            self.slot = Slot::Cold;
            self.opening += 1;
        }
        e
    }

    /// Whether this enclave knows the vault exists (it read or made it).
    fn known(&self) -> bool {
        self.generation.is_some() || self.high_water.is_some()
    }

    /// Raises the high-water mark to `head` if it is newer.
    fn saw(&mut self, head: Head) {
        if self.high_water.is_none_or(|h| head.version > h.version) {
            self.high_water = Some(head);
        }
    }

    /// Records the vault's identity; a different one than before is a substitution.
    fn same_identity(&mut self, identity: [u8; 32]) -> Result<(), VaultError> {
        match self.identity {
            Some(known) if !vettid_crypto::ct_eq(&known, &identity) => Err(VaultError::Tampered(
                "the host substituted a different vault".into(),
            )),
            _ => {
                self.identity = Some(identity);
                Ok(())
            }
        }
    }
}

/// All vaults of this enclave instance.
pub struct Manager {
    link: Arc<Link>,
    sealer: Box<dyn Sealer + Send + Sync>,
    instance_key: AeadKey,
    config: Config,
    vaults: Mutex<HashMap<String, Arc<Mutex<VaultState>>>>,
    /// The newest time an app's request carried, and when it arrived (see [`Manager::app_time`]).
    clock: Mutex<Option<(u64, Instant)>>,
    /// When this enclave started: its own monotonic clock, which the host cannot set.
    started: Instant,
    /// Tests move the monotonic clock forward.
    #[cfg(test)]
    skipped_ms: std::sync::atomic::AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A session's proof that it gave the PIN of one vault: made only here, by an unlock or an
/// enrollment, and good for that vault while no lock or later unlock has happened since
/// (checked under the vault's lock). Neither `Clone` nor constructible outside this module:
///
/// ```compile_fail,E0451
/// let forged = vettid_enclave::manager::Opening { vault: "alice".into(), number: 7 };
/// ```
#[derive(Debug, PartialEq, Eq)]
pub struct Opening {
    vault: String,
    number: u64,
}

impl Opening {
    fn of(vault: &str, number: u64) -> Opening {
        Opening {
            vault: vault.to_owned(),
            number,
        }
    }

    /// Whether this is the current unlock of `vault` (`current`: its opening number now).
    fn holds(&self, vault: &str, current: u64) -> bool {
        self.vault == vault && self.number == current
    }
}

/// The value every domain handler needs: made only by [`Manager::domain`] after it checked the
/// session's [`Opening`] under the vault's lock, and alive only for that one operation. Outside
/// this module a domain handler never receives a bare [`Vault`]; an operation that forgets the
/// check has no way to make one of these and does not compile (inside it, the session's own
/// operations — status, whoami, anchor — read the resident vault without an `Opening`):
///
/// ```compile_fail,E0451
/// use vettid_enclave::{manager::UnlockedVault, objects::Objects, vault::Vault};
/// fn forge<'a>(vault: &'a mut Vault, objects: &'a Objects<'a>) -> UnlockedVault<'a> {
///     UnlockedVault { vault, objects, now_ms: 0 }
/// }
/// ```
pub struct UnlockedVault<'a> {
    vault: &'a mut Vault,
    objects: &'a Objects<'a>,
    now_ms: u64,
    transfer: &'a mut Option<Box<crate::backup::Transfer>>,
    handshakes: &'a mut crate::connections::Handshakes,
}

impl<'a> UnlockedVault<'a> {
    /// The unlocked vault, the storage it writes through, and the host's clock (timestamps only).
    pub fn parts(&mut self) -> (&mut Vault, &Objects<'a>, u64) {
        (self.vault, self.objects, self.now_ms)
    }

    /// The vault's export or restore in progress under this unlock (backups only), with the
    /// parts.
    pub(crate) fn with_transfer(
        &mut self,
    ) -> (
        &mut Vault,
        &Objects<'a>,
        u64,
        &mut Option<Box<crate::backup::Transfer>>,
    ) {
        (self.vault, self.objects, self.now_ms, self.transfer)
    }

    /// The connection handshakes this vault waits on (connections only), with the parts.
    pub(crate) fn with_handshakes(
        &mut self,
    ) -> (
        &mut Vault,
        &Objects<'a>,
        u64,
        &mut crate::connections::Handshakes,
    ) {
        (self.vault, self.objects, self.now_ms, self.handshakes)
    }
}

/// What a guarded domain operation may do (see [`Manager::gated`]): reach the unlocked vault,
/// and count secrets it checks with the vault's durable guess limit — each attempt counted
/// before the secret is compared, a wrong one at the limit closing the vault.
pub(crate) struct Gate<'a> {
    manager: &'a Manager,
    st: &'a mut VaultState,
    objects: &'a Objects<'a>,
    id: &'a str,
}

impl Gate<'_> {
    /// The vault id.
    pub(crate) fn id(&self) -> &str {
        self.id
    }

    /// Runs `f` on the unlocked vault.
    pub(crate) fn vault<T>(
        &mut self,
        f: impl FnOnce(&mut Vault, &Objects<'_>) -> Result<T, VaultError>,
    ) -> Result<T, VaultError> {
        self.manager
            .with_vault(self.st, self.objects, Owner::App, f)
    }

    /// The newest credential generation this enclave saw of the vault.
    pub(crate) fn credential_generation(&self) -> u64 {
        self.st.credential_generation
    }

    /// Records a credential generation the vault wrote.
    pub(crate) fn saw_credential_generation(&mut self, generation: u64) {
        self.st.credential_generation = self.st.credential_generation.max(generation);
    }

    /// Checks a password: the attempt is counted durably first (no count, no answer), then
    /// `matches` is asked; a right one resets the count before this returns, a wrong one is
    /// `WrongPassword` — or `LockedOut` at the limit, and the vault closes until recovery.
    pub(crate) fn check_password(
        &mut self,
        matches: impl FnOnce() -> bool,
    ) -> Result<(), VaultError> {
        let policy = self.manager.policy();
        let mut locked = self.manager.open_locked(self.st, self.objects)?;
        let counted = locked.count_password_attempt(self.objects, policy);
        Manager::note_guard(self.st, &locked);
        counted?;
        if !matches() {
            if locked.locked_out() {
                self.manager.lock_slot(self.st, self.objects);
                return Err(VaultError::LockedOut);
            }
            return Err(VaultError::WrongPassword {
                attempts_left: locked.password_attempts_left(policy),
            });
        }
        let reset = locked.password_ok(self.objects, policy);
        Manager::note_guard(self.st, &locked);
        reset
    }
}

/// What opens a vault: its PIN, or — for a member who forgot it — the recovery phrase, which
/// sets a new PIN. Both are counted with the same durable guess limit.
#[derive(Clone, Copy)]
pub enum Opener<'a> {
    /// The PIN.
    Pin(&'a [u8]),
    /// The recovery phrase's entropy and the new PIN.
    Phrase {
        /// The phrase.
        phrase: &'a [u8; keys::RECOVERY_BYTES],
        /// The PIN from now on (4–64 bytes).
        new_pin: &'a [u8],
    },
}

/// What enrollment made.
pub struct Enrollment {
    /// The vault's identity public key.
    pub identity: [u8; 32],
    /// The vault's exchange public key.
    pub exchange: [u8; 32],
    /// The credential blob for the app.
    pub credential: Vec<u8>,
    /// The key of the vault's events.
    pub event_key: SecretBytes<32>,
    /// The first signed version.
    pub version: SignedVersion,
    /// The session's proof of this unlock (see [`Manager::domain`]).
    pub opening: Opening,
    /// The recovery phrase's entropy, for the member's eyes only (the vault keeps a wrap).
    pub recovery_phrase: Zeroizing<[u8; keys::RECOVERY_BYTES]>,
}

/// What a staged recovery made for the new device.
pub struct Recovery {
    /// The vault's identity public key.
    pub identity: [u8; 32],
    /// The vault's exchange public key.
    pub exchange: [u8; 32],
    /// The new credential blob.
    pub credential: Vec<u8>,
    /// The key of the vault's events.
    pub event_key: SecretBytes<32>,
    /// The signed version after the recovery.
    pub version: SignedVersion,
    /// The session's proof of this unlock.
    pub opening: Opening,
    /// Devices removed.
    pub removed: u32,
}

/// What an app's unlock gives its session.
pub struct Unlocked {
    /// The signed version.
    pub version: SignedVersion,
    /// The key of the vault's events.
    pub event_key: SecretBytes<32>,
    /// The session's proof of this unlock while it is current.
    pub opening: Opening,
}

impl Manager {
    /// A manager reaching storage through `link` and sealing with `sealer`.
    pub fn new(link: Arc<Link>, sealer: Box<dyn Sealer + Send + Sync>, config: Config) -> Self {
        Self {
            sealer,
            link,
            instance_key: AeadKey::generate(),
            config,
            vaults: Mutex::new(HashMap::new()),
            clock: Mutex::new(None),
            started: Instant::now(),
            #[cfg(test)]
            skipped_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Milliseconds since this enclave started, by its own monotonic clock.
    fn uptime_ms(&self) -> u64 {
        let up = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        #[cfg(test)]
        let up = up.saturating_add(self.skipped_ms.load(std::sync::atomic::Ordering::Relaxed));
        up
    }

    /// Moves the monotonic clock forward (tests).
    #[cfg(test)]
    pub(crate) fn skip(&self, ms: u64) {
        self.skipped_ms
            .fetch_add(ms, std::sync::atomic::Ordering::Relaxed);
    }

    fn policy(&self) -> &KeyPolicy {
        &self.config.policy.keys
    }

    fn limits(&self) -> Limits {
        self.config.policy.limits
    }

    fn state(&self, vault: &str) -> Arc<Mutex<VaultState>> {
        lock(&self.vaults)
            .entry(vault.to_owned())
            .or_insert_with(|| Arc::new(Mutex::new(VaultState::new(self.uptime_ms()))))
            .clone()
    }

    /// Opens the locked vault, refusing guard state, keys generations or an identity other than
    /// this instance has seen, and remembers what it authenticated.
    fn open_locked(
        &self,
        st: &mut VaultState,
        objects: &Objects<'_>,
    ) -> Result<LockedVault, VaultError> {
        let locked = LockedVault::open(objects, &*self.sealer)?;
        if locked.guard_seq() < st.guard_seq {
            return Err(VaultError::Tampered("guard records rolled back".into()));
        }
        if st.generation.is_some_and(|g| locked.generation() < g) {
            return Err(VaultError::Tampered("keys record rolled back".into()));
        }
        let identity = locked
            .identity()
            .try_into()
            .map_err(|_| VaultError::Tampered("identity key length".into()))?;
        st.same_identity(identity)?;
        st.generation = Some(locked.generation());
        st.devices = Some(locked.devices().to_vec());
        st.guard_seq = locked.guard_seq();
        Ok(locked)
    }

    /// Reads the locked vault *without* holding its lock through the key service's round trip
    /// (status and handshake checks must not wait for, or hold up, the vault's work), checked
    /// against what was known when it started: anything the vault's own work writes meanwhile
    /// can only be newer.
    fn peek_locked(
        &self,
        state: &Mutex<VaultState>,
        objects: &Objects<'_>,
    ) -> Result<LockedVault, VaultError> {
        let (guard_seq, generation) = {
            let st = lock(state);
            (st.guard_seq, st.generation)
        };
        let locked = LockedVault::open(objects, &*self.sealer)?;
        if locked.guard_seq() < guard_seq {
            return Err(VaultError::Tampered("guard records rolled back".into()));
        }
        if generation.is_some_and(|g| locked.generation() < g) {
            return Err(VaultError::Tampered("keys record rolled back".into()));
        }
        let identity = locked
            .identity()
            .try_into()
            .map_err(|_| VaultError::Tampered("identity key length".into()))?;
        let mut st = lock(state);
        st.same_identity(identity)?;
        if st.generation.is_none_or(|g| locked.generation() >= g) {
            st.generation = Some(locked.generation());
            st.devices = Some(locked.devices().to_vec());
        }
        st.guard_seq = st.guard_seq.max(locked.guard_seq());
        Ok(locked)
    }

    /// Remembers the newest guard record after an attempt (whatever its outcome).
    fn note_guard(st: &mut VaultState, locked: &LockedVault) {
        st.guard_seq = st.guard_seq.max(locked.guard_seq());
    }

    /// Loads the vault from storage, refusing a state that does not extend the high-water mark.
    fn load(
        &self,
        st: &mut VaultState,
        objects: &Objects<'_>,
        vmk: &MasterKey,
    ) -> Result<Vault, VaultError> {
        st.check()?;
        let vault = Vault::load(
            objects,
            vmk,
            self.limits(),
            crate::domains::schema(),
            st.high_water,
        )
        .and_then(|v| {
            for anchor in &st.anchors {
                v.extends(objects, *anchor)?;
            }
            Ok(v)
        })
        .map_err(|e| st.settle(e))?;
        st.same_identity(vault.identity_public_key())?;
        st.anchors.clear();
        st.saw(vault.head());
        Ok(vault)
    }

    /// The resident vault (reloaded if it was evicted) if it was opened by `owner`.
    fn resident<'s>(
        &self,
        st: &'s mut VaultState,
        objects: &Objects<'_>,
        owner: Owner,
    ) -> Result<&'s mut Vault, VaultError> {
        st.check()?;
        match st.slot.owner() {
            None => return Err(VaultError::NotUnlocked),
            Some(o) if o != owner => {
                return Err(match owner {
                    Owner::Debug => VaultError::AppOwned,
                    Owner::App => VaultError::NotUnlocked,
                });
            }
            Some(_) => {}
        }
        if let Slot::Evicted { wrapped, .. } = &mut st.slot {
            let wrapped = std::mem::take(wrapped);
            let vmk = MasterKey::unwrap(&self.instance_key, objects.vault(), &wrapped)
                .ok_or_else(|| VaultError::Internal("evicted key does not unwrap".into()))?;
            let loaded = self.load(st, objects, &vmk);
            let vault = match loaded {
                Ok(v) => v,
                Err(e) => {
                    // Keep the key: the host may yet serve the right state.
                    st.slot = Slot::Evicted { wrapped, owner };
                    return Err(e);
                }
            };
            st.slot = Slot::Resident {
                vault: Tier::Open(Box::new(vault)),
                wrapped,
                owner,
                last_used: Instant::now(),
            };
        }
        st.slot.wake()?;
        match &mut st.slot {
            Slot::Resident {
                vault: Tier::Open(vault),
                last_used,
                ..
            } => {
                *last_used = Instant::now();
                Ok(vault)
            }
            _ => Err(VaultError::NotUnlocked),
        }
    }

    /// Runs `f` on the resident vault; afterwards the high-water mark follows what it wrote,
    /// and a write fenced by a newer writer drops this copy (the next use reloads and is
    /// checked against the mark).
    fn with_vault<T>(
        &self,
        st: &mut VaultState,
        objects: &Objects<'_>,
        owner: Owner,
        f: impl FnOnce(&mut Vault, &Objects<'_>) -> Result<T, VaultError>,
    ) -> Result<T, VaultError> {
        let vault = self.resident(st, objects, owner)?;
        let result = f(vault, objects);
        let head = vault.head();
        st.saw(head);
        if matches!(result, Err(VaultError::Conflict)) {
            st.slot.evict();
        }
        result
    }

    fn make_resident(
        &self,
        st: &mut VaultState,
        mut vault: Vault,
        vmk: &MasterKey,
        id: &str,
        owner: Owner,
    ) -> SignedVersion {
        let signed = vault.signed_version(id);
        st.saw(vault.head());
        st.slot = Slot::Resident {
            vault: Tier::Open(Box::new(vault)),
            wrapped: vmk.wrap(&self.instance_key, id),
            owner,
            last_used: Instant::now(),
        };
        signed
    }

    /// Checks the PIN and makes the vault resident. For an app (`device` given) the device must
    /// be registered in the keys record this unlock opens — checked before the PIN is even
    /// counted; for the debug path the record must have no devices at all.
    fn unlock(
        &self,
        st: &mut VaultState,
        objects: &Objects<'_>,
        opener: Opener<'_>,
        device: Option<(&[u8; 32], u64)>,
    ) -> Result<SignedVersion, VaultError> {
        st.check()?;
        let mut locked = self.open_locked(st, objects)?;
        let owner = match device {
            Some((d, _)) if !locked.has_device(d) => return Err(VaultError::DeviceNotRegistered),
            Some(_) => Owner::App,
            None if !locked.devices().is_empty() => return Err(VaultError::AppOwned),
            None => Owner::Debug,
        };
        // An enrolled device's unlock is recorded: it holds off a staged recovery.
        let used = device.map(|(_, at)| at);
        let result = match opener {
            Opener::Pin(pin) => locked.unlock(objects, pin, self.policy(), used),
            Opener::Phrase { phrase, new_pin } => {
                check_pin(new_pin)?;
                let result =
                    locked.reset_pin(objects, &*self.sealer, phrase, new_pin, self.policy(), used);
                if result.is_ok() {
                    st.generation = st.generation.max(Some(locked.generation()));
                }
                result
            }
        };
        Self::note_guard(st, &locked);
        if result.is_err() && locked.locked_out() {
            // The limit was reached from this session: sessions still open lose the vault too.
            self.lock_slot(st, objects);
        }
        let vmk = result?;
        if used.is_some() {
            st.last_unlock_ms = Some(self.uptime_ms());
        }
        let vault = self.load(st, objects, &vmk)?;
        st.opening += 1;
        Ok(self.make_resident(st, vault, &vmk, objects.vault(), owner))
    }

    /// Shreds vault `id` ([`ToEnclave::Shred`](vettid_proto::enclave::ToEnclave::Shred)):
    /// forgets it in memory (the resident database and the master key sealed for reloads are
    /// dropped, and zeroized with them), deletes every keys record (the VMK's wraps under the
    /// PIN and the recovery phrase, and the sealed secret S) and then every other object,
    /// backups included, and checks that the listing shows none left. Once the keys records
    /// are gone no backup of the vault opens in any enclave; an export the member keeps opens
    /// only with the phrase. The number of objects deleted.
    ///
    /// The host asks for this on the API's word: it is the operator who could always delete
    /// the objects; what the enclave adds is forgetting the keys it holds, deleting the wraps
    /// first, and that an interrupted shred is finished by the next one.
    pub fn shred(&self, id: &str) -> Result<u64, VaultError> {
        if !valid_vault_id(id) {
            return Err(Invalid::VaultId.into());
        }
        let objects = Objects::new(&self.link, id);
        let state = self.state(id);
        let mut st = lock(&state);
        // Whatever happens below, this enclave no longer holds the vault: a fresh state, with
        // the opening number moved on so that no session's proof of unlock holds.
        let opening = st.opening.wrapping_add(1);
        *st = VaultState::new(self.uptime_ms());
        st.opening = opening;
        let mut deleted = 0;
        for kind in ObjectKind::SHRED_ORDER {
            let numbers = objects.list(kind)?;
            for batch in numbers.chunks(256) {
                objects.delete(kind, batch)?;
                deleted += batch.len() as u64;
            }
        }
        for kind in ObjectKind::SHRED_ORDER {
            if !objects.list(kind)?.is_empty() {
                return Err(VaultError::Storage(
                    "the host still lists objects of a shredded vault".into(),
                ));
            }
        }
        Ok(deleted)
    }

    /// The debug path (`ToEnclave::Vault`, the host's control socket): vaults no app owns.
    pub fn handle(&self, id: &str, op: VaultOp) -> Result<EnclaveReply, VaultError> {
        if !valid_vault_id(id) {
            return Err(Invalid::VaultId.into());
        }
        let objects = Objects::new(&self.link, id);
        let state = self.state(id);
        let mut guard = lock(&state);
        let st = &mut *guard;
        match op {
            VaultOp::Create { pin } => {
                check_pin(&pin)?;
                if st.known() {
                    return Err(VaultError::AlreadyExists);
                }
                let vmk = keys::create(
                    &objects,
                    &*self.sealer,
                    &pin,
                    None,
                    self.policy(),
                    Vec::new(),
                )?;
                let vault = Vault::create(&objects, &vmk, self.limits(), crate::domains::schema())?;
                st.same_identity(vault.identity_public_key())?;
                Ok(self.open_for_debug(st, vault, &vmk, id))
            }
            VaultOp::Unlock { pin } => self
                .unlock(st, &objects, Opener::Pin(&pin), None)
                .map(EnclaveReply::Open),
            VaultOp::ChangePin { old, new } => {
                check_pin(&new)?;
                let mut locked = self.open_locked(st, &objects)?;
                if !locked.devices().is_empty() {
                    return Err(VaultError::AppOwned);
                }
                let result = locked.change_pin(&objects, &*self.sealer, &old, &new, self.policy());
                Self::note_guard(st, &locked);
                let vmk = result?;
                st.generation = Some(locked.generation());
                let vault = self.load(st, &objects, &vmk)?;
                Ok(self.open_for_debug(st, vault, &vmk, id))
            }
            VaultOp::Lock => {
                if st.slot.owner() == Some(Owner::App) {
                    return Err(VaultError::AppOwned);
                }
                self.lock_slot(st, &objects);
                Ok(EnclaveReply::Locked)
            }
            VaultOp::Put { key, value } => {
                if key.is_empty() || key.len() > 256 || value.len() > MAX_VALUE {
                    return Err(Invalid::Record.into());
                }
                self.with_vault(st, &objects, Owner::Debug, |vault, objects| {
                    vault.write(
                        objects,
                        vec![Statement {
                            sql: "INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value".into(),
                            params: vec![SqlValue::Text(key), SqlValue::Blob(value)],
                        }],
                    )
                })
                .map(EnclaveReply::Written)
            }
            VaultOp::Get { key } => self
                .with_vault(st, &objects, Owner::Debug, |vault, _| vault.get(&key))
                .map(EnclaveReply::Value),
            VaultOp::Status => {
                if st.slot.owner() == Some(Owner::App) {
                    return Err(VaultError::AppOwned);
                }
                let residency = residency(&st.slot);
                drop(guard);
                let locked = self.peek_locked(&state, &objects)?;
                if !locked.devices().is_empty() {
                    return Err(VaultError::AppOwned);
                }
                Ok(EnclaveReply::Status {
                    residency,
                    failed_attempts: locked.failures(),
                    attempts_left: locked.attempts_left(self.policy()),
                })
            }
        }
    }

    /// Makes a vault the debug path opened resident (a new opening).
    fn open_for_debug(
        &self,
        st: &mut VaultState,
        vault: Vault,
        vmk: &MasterKey,
        id: &str,
    ) -> EnclaveReply {
        st.opening += 1;
        EnclaveReply::Open(self.make_resident(st, vault, vmk, id, Owner::Debug))
    }

    /// Locks: a snapshot if changes are only in the log (so the next load replays nothing; not
    /// needed for durability), the keys forgotten, the opening number raised.
    fn lock_slot(&self, st: &mut VaultState, objects: &Objects<'_>) {
        // A resting vault with changes only in the log is opened for it (a failure only skips
        // the snapshot).
        if let Slot::Resident {
            vault: Tier::Resting(v),
            ..
        } = &st.slot
            && v.has_unsnapshotted_changes()
        {
            let _ = st.slot.wake();
        }
        if let Slot::Resident {
            vault: Tier::Open(vault),
            ..
        } = &mut st.slot
            && vault.has_unsnapshotted_changes()
        {
            let _ = vault.snapshot(objects);
        }
        st.slot = Slot::Cold;
        st.opening += 1;
        st.handshakes.clear();
    }

    /// Work after an acknowledged write: snapshot and compact if due. Errors are not fatal
    /// (the log still holds everything) and are retried after the next write.
    pub fn maintain(&self, id: &str) {
        let objects = Objects::new(&self.link, id);
        // Only vaults that have a record (never make one for a name someone merely sent).
        let Some(state) = lock(&self.vaults).get(id).cloned() else {
            return;
        };
        let mut st = lock(&state);
        if let Slot::Resident {
            vault: Tier::Open(vault),
            ..
        } = &mut st.slot
            && vault.wants_snapshot(self.config.snapshot_every)
        {
            let _ = vault.snapshot(&objects);
        }
    }

    /// Records the time an app's request carried (its own clock, which the host's was within
    /// the session's skew of): the background work's clock runs from the newest one on this
    /// enclave's monotonic clock, so a host cannot move it.
    pub fn app_time(&self, at_ms: u64) {
        let mut clock = lock(&self.clock);
        let now = clock.map_or(0, |(at, since): (u64, Instant)| {
            at.saturating_add(since.elapsed().as_millis() as u64)
        });
        if at_ms > now {
            *clock = Some((at_ms, Instant::now()));
        }
    }

    /// The time by the newest app request and the monotonic clock since (`None` before the
    /// first request).
    pub fn trusted_now(&self) -> Option<u64> {
        lock(&self.clock).map(|(at, since)| at.saturating_add(since.elapsed().as_millis() as u64))
    }

    /// Makes the scheduled backups due at `now_ms` ([`Manager::trusted_now`]) of the apps' vaults whose
    /// keys this enclave holds (resident or evicted); a busy or failing vault waits for the
    /// next pass. The number made.
    pub fn scheduled_backups(&self, now_ms: u64) -> usize {
        let states: Vec<(String, Arc<Mutex<VaultState>>)> = lock(&self.vaults)
            .iter()
            .map(|(id, st)| (id.clone(), st.clone()))
            .collect();
        let mut made = 0;
        for (id, state) in states {
            let Ok(mut st) = state.try_lock() else {
                continue;
            };
            if st.check().is_err() || st.slot.owner() != Some(Owner::App) {
                continue;
            }
            // A vault at rest or evicted is opened only when its backup is due (or unknown):
            // background work must not undo what resting and eviction saved.
            let (open, resting) = match &st.slot {
                Slot::Resident { vault, .. } => (
                    matches!(vault, Tier::Open(_)),
                    matches!(vault, Tier::Resting(_)),
                ),
                _ => (false, false),
            };
            let due = match st.backup_due {
                BackupDue::Unknown => true,
                BackupDue::Never => false,
                BackupDue::At(t) => t <= now_ms,
            };
            if !open && !due {
                continue;
            }
            let last_used = st.slot.last_used();
            let objects = Objects::new(&self.link, &id);
            if let Ok(Some(_)) = self.with_vault(&mut st, &objects, Owner::App, |vault, objects| {
                crate::backup::scheduled(vault, objects, now_ms)
            }) {
                made += 1;
            }
            st.note_backup_due();
            // Background work is not use: the vault goes back where it was.
            if !open {
                if resting {
                    st.slot.rest();
                } else {
                    st.slot.evict();
                }
            }
            if let Some(t) = last_used {
                st.slot.set_last_used(t);
            }
        }
        made
    }

    /// How many vaults are open, at rest and evicted, and the MiB the resident ones are
    /// accounted, rounded up (busy vaults, locked by a worker, are counted as open with no
    /// bytes). Whole MiB: the host, which may ask at any moment, must not learn one vault's
    /// compressed size from the difference.
    pub fn stats(&self) -> EnclaveReply {
        let states: Vec<Arc<Mutex<VaultState>>> = lock(&self.vaults).values().cloned().collect();
        let (mut open, mut resting, mut evicted, mut accounted_bytes) = (0, 0, 0, 0);
        for state in states {
            let Ok(st) = state.try_lock() else {
                open += 1;
                continue;
            };
            match &st.slot {
                Slot::Resident { vault, .. } => {
                    match vault {
                        Tier::Open(_) => open += 1,
                        Tier::Resting(_) => resting += 1,
                    }
                    accounted_bytes += vault.memory_bytes();
                }
                Slot::Evicted { .. } => evicted += 1,
                Slot::Cold => {}
            }
        }
        EnclaveReply::Stats {
            open,
            resting,
            evicted,
            accounted_mib: accounted_bytes.div_ceil(1 << 20),
        }
    }

    /// Evicts vaults idle longer than the timeout and puts those idle longer than the rest
    /// time at rest, then evicts the least recently used beyond the count or the byte budget
    /// (a resting vault counts its image). Busy vaults (locked by a worker) are skipped. Records of vaults the enclave
    /// knows nothing about (a name someone merely sent) are forgotten.
    pub fn evict_idle(&self) -> usize {
        let states: Vec<Arc<Mutex<VaultState>>> = {
            let mut vaults = lock(&self.vaults);
            // A record nobody else holds (workers clone it under this same lock) and that
            // knows nothing is a name someone merely sent.
            vaults.retain(|_, s| {
                Arc::strong_count(s) > 1
                    || s.try_lock()
                        .map_or(true, |s| s.known() || !matches!(s.slot, Slot::Cold))
            });
            vaults.values().cloned().collect()
        };
        let mut resident: Vec<(Instant, u64, Arc<Mutex<VaultState>>)> = Vec::new();
        let mut evicted = 0;
        for state in &states {
            let Ok(mut st) = state.try_lock() else {
                continue;
            };
            if let Slot::Resident { last_used, .. } = &st.slot {
                let idle = last_used.elapsed();
                if idle >= self.config.idle {
                    st.note_backup_due();
                    st.slot.evict();
                    st.transfer = None;
                    evicted += 1;
                    continue;
                }
                // An export or restore in progress keeps its vault open.
                if idle >= self.config.rest
                    && st.transfer.is_none()
                    && st.slot.db_bytes() <= REST_MAX_BYTES
                {
                    st.note_backup_due();
                    st.slot.rest();
                }
                if let Slot::Resident {
                    last_used, vault, ..
                } = &st.slot
                {
                    resident.push((*last_used, vault.memory_bytes(), state.clone()));
                }
            }
        }
        // Oldest first: evict while over the count or the byte budget.
        resident.sort_by_key(|(t, _, _)| *t);
        let mut count = resident.len();
        let mut bytes: u64 = resident.iter().map(|(_, b, _)| b).sum();
        for (_, size, state) in resident {
            if count <= self.config.max_resident && bytes <= self.config.memory_budget {
                break;
            }
            let Ok(mut st) = state.try_lock() else {
                continue;
            };
            if matches!(st.slot, Slot::Resident { .. }) {
                st.note_backup_due();
                st.slot.evict();
                st.transfer = None;
                evicted += 1;
                count -= 1;
                bytes = bytes.saturating_sub(size);
            }
        }
        evicted
    }
}

/// A change to a vault's devices ([`Manager::change_devices`]).
pub enum DeviceChange<'a> {
    /// Register this device.
    Add(NewDevice<'a>),
    /// Remove the device of this session key.
    Remove([u8; 32]),
}

/// The device an enrollment registers.
pub struct NewDevice<'a> {
    /// The static key of its sessions (what later sessions are checked against).
    pub session_key: [u8; 32],
    /// Its Ed25519 device key, whose proof for `session_key` the session checked.
    pub device_key: [u8; 32],
    /// Its name, for the member's own lists (1–64 bytes).
    pub name: &'a str,
}

/// Operations of the app's session (see `session.rs`), on top of the engine above.
impl Manager {
    /// Creates vault `id` under `pin` with `device` registered and a credential around
    /// `verifier`, and leaves it unlocked; the enrollment carries the identity key's receipt
    /// for the device's two keys. `AlreadyExists` if the vault exists.
    pub fn enroll(
        &self,
        id: &str,
        pin: &[u8],
        verifier: &[u8; 32],
        device: NewDevice<'_>,
        now_ms: u64,
    ) -> Result<Enrollment, VaultError> {
        let NewDevice {
            session_key: device,
            device_key,
            name: device_name,
        } = device;
        check_pin(pin)?;
        if !vettid_proto::devices::valid_name(device_name) {
            return Err(Invalid::DeviceName.into());
        }
        let objects = Objects::new(&self.link, id);
        let state = self.state(id);
        let mut st = lock(&state);
        let st = &mut *st;
        // The recovery phrase: made here, wrapped around the VMK, shown to the member once.
        let phrase = Zeroizing::new(vettid_crypto::random_array::<{ keys::RECOVERY_BYTES }>());
        let created = if st.known() {
            Err(VaultError::AlreadyExists)
        } else {
            keys::create(
                &objects,
                &*self.sealer,
                pin,
                Some(&phrase),
                self.policy(),
                vec![device],
            )
        };
        let (vmk, mut vault) = match created {
            Ok(vmk) => {
                let vault = Vault::create(&objects, &vmk, self.limits(), crate::domains::schema())?;
                st.same_identity(vault.identity_public_key())?;
                (vmk, vault)
            }
            // An enrollment cut short after its keys were written may be completed by the same
            // (only) device with the same PIN (counted like any unlock), if it made no
            // credential yet. Anything else stays `AlreadyExists`.
            Err(VaultError::AlreadyExists) => {
                let mut locked = self.open_locked(st, &objects)?;
                if locked.devices() != [device] {
                    return Err(VaultError::AlreadyExists);
                }
                let result = locked.unlock(&objects, pin, self.policy(), Some(now_ms));
                Self::note_guard(st, &locked);
                let vmk = result?;
                let vault = self.load(st, &objects, &vmk)?;
                if vault.meta("credential/key")?.is_some() {
                    return Err(VaultError::AlreadyExists);
                }
                // The phrase of the first attempt never reached the member: wrap a new one.
                locked.replace_recovery(
                    &objects,
                    &*self.sealer,
                    &vmk,
                    pin,
                    &phrase,
                    self.policy(),
                )?;
                st.generation = Some(locked.generation());
                (vmk, vault)
            }
            Err(e) => return Err(e),
        };
        let (credential, statements) = crate::credential::enroll(id, verifier, now_ms);
        let mut statements = statements;
        statements.extend(crate::backup::enroll_statements(
            id,
            &phrase,
            self.policy().cost,
        )?);
        statements.extend(device_rows(&NewDevice {
            session_key: device,
            device_key,
            name: device_name,
        }));
        let version = vault.write(&objects, statements)?;
        st.credential_generation = 1;
        // Enrollment is the first device's use: a recovery to another waits the delay from it.
        st.last_unlock_ms = Some(self.uptime_ms());
        st.opening += 1;
        let enrollment = Enrollment {
            identity: vault.identity_public_key(),
            exchange: vmk.exchange(id).public_key().to_bytes(),
            credential,
            event_key: vault.event_key().clone(),
            version,
            opening: Opening::of(id, st.opening),
            recovery_phrase: phrase,
        };
        self.make_resident(st, vault, &vmk, id, Owner::App);
        Ok(enrollment)
    }

    /// Staged recovery's last step, from a device vault `id` does not know: after `proof`
    /// (see [`LockedVault::recover`]: refused while an enrolled device unlocked the vault
    /// within the recovery delay), the vault is re-keyed to `device` alone — every other
    /// device removed, their sessions' unlocks void — with a new credential around
    /// `verifier`, and left unlocked for the new device's session. The feed tells the member.
    pub fn recover(
        &self,
        id: &str,
        proof: keys::RecoveryProof<'_>,
        verifier: &[u8; 32],
        device: NewDevice<'_>,
        now_ms: u64,
    ) -> Result<Recovery, VaultError> {
        if !valid_vault_id(id) {
            return Err(Invalid::VaultId.into());
        }
        match proof {
            keys::RecoveryProof::Pin(pin) => check_pin(pin)?,
            keys::RecoveryProof::Phrase { new_pin, .. } => check_pin(new_pin)?,
        }
        if !vettid_proto::devices::valid_name(device.name) {
            return Err(Invalid::DeviceName.into());
        }
        let objects = Objects::new(&self.link, id);
        let state = self.state(id);
        let mut st = lock(&state);
        let st = &mut *st;
        st.check()?;
        let mut locked = self.open_locked(st, &objects)?;
        if locked.devices().is_empty() {
            return Err(VaultError::AppOwned);
        }
        let removed = locked
            .devices()
            .iter()
            .filter(|d| !vettid_crypto::ct_eq(*d, &device.session_key))
            .count();
        // The enclave's own clock first: the host chooses `now_ms`.
        let delay = self.config.policy.recovery_delay_ms;
        let since = st.last_unlock_ms.unwrap_or(0).max(st.watched_since_ms);
        if removed > 0 && self.uptime_ms().saturating_sub(since) < delay {
            return Err(VaultError::RecentlyUsed);
        }
        let result = locked.prove_for_recovery(
            &objects,
            proof,
            &device.session_key,
            self.policy(),
            delay,
            now_ms,
        );
        Self::note_guard(st, &locked);
        let vmk = result?;
        // Whatever the old devices' sessions had open is closed.
        self.lock_slot(st, &objects);
        let mut vault = self.load(st, &objects, &vmk)?;
        // The vault's records first, the keys record last: a failure in between leaves the
        // old devices registered and the same recovery able to run again.
        let (credential, mut statements, generation) =
            crate::credential::reissue(&vault, id, verifier, now_ms)?;
        statements.push(Statement {
            sql: "DELETE FROM meta WHERE key LIKE 'device/%' OR key LIKE 'device-key/%'".into(),
            params: vec![],
        });
        statements.extend(device_rows(&device));
        let event = crate::feed::event(
            now_ms,
            vettid_proto::feed::Audience::Feed,
            "vault.recovered",
            vettid_proto::feed::Retention::Standard,
            format!(
                "vault recovered to device {} ({}); {removed} other device(s) removed",
                hex::encode(&device.session_key[..8]),
                device.name,
            ),
        );
        statements.extend(crate::feed::append(&vault, &[event])?);
        let version = vault.write(&objects, statements)?;
        st.saw(vault.head());
        st.credential_generation = generation;
        let pin = match proof {
            keys::RecoveryProof::Pin(pin) => pin,
            keys::RecoveryProof::Phrase { new_pin, .. } => new_pin,
        };
        let rekeyed = locked.rekey_to_device(
            &objects,
            &*self.sealer,
            &vmk,
            pin,
            device.session_key,
            self.policy(),
        );
        st.generation = st.generation.max(Some(locked.generation()));
        rekeyed?;
        st.devices = Some(locked.devices().to_vec());
        // The new device's recovery is a use: another one waits the delay from it.
        let noted = locked.note_device_use(&objects, now_ms);
        Self::note_guard(st, &locked);
        noted?;
        st.last_unlock_ms = Some(self.uptime_ms());
        st.opening += 1;
        let recovery = Recovery {
            identity: vault.identity_public_key(),
            exchange: vmk.exchange(id).public_key().to_bytes(),
            credential,
            event_key: vault.event_key().clone(),
            version,
            opening: Opening::of(id, st.opening),
            removed: u32::try_from(removed).unwrap_or(u32::MAX),
        };
        self.make_resident(st, vault, &vmk, id, Owner::App);
        Ok(recovery)
    }

    /// Adds or removes a device of vault `id` for the session whose unlock got `opening`,
    /// proven again with the PIN (counted like an unlock: a wrong one is `WrongPin` and
    /// changes nothing else; at the limit the vault locks). An added device's records (name,
    /// device key, a feed event) come before the keys generation that admits it; a removed
    /// device leaves the keys generation first, then its records go and a tombstone keeps its
    /// device key: either way a failure in between can run again, and a removal can be asked
    /// for again (nothing changes then) to have the document for the API once more. The
    /// device as registered (for a removal: as it was) and the vault's identity key.
    pub fn change_devices(
        &self,
        id: &str,
        opening: &Opening,
        pin: &[u8],
        change: DeviceChange<'_>,
        now_ms: u64,
    ) -> Result<(vettid_proto::devices::Device, [u8; 32]), VaultError> {
        use vettid_proto::devices::{Device, DeviceError, MAX_DEVICES};
        let objects = Objects::new(&self.link, id);
        let state = self.state(id);
        let mut st = lock(&state);
        let st = &mut *st;
        st.check()?;
        if !opening.holds(id, st.opening) {
            return Err(VaultError::NotUnlocked);
        }
        let mut locked = self.open_locked(st, &objects)?;
        let registered = locked.devices().to_vec();
        let known = |key: &[u8; 32]| registered.iter().any(|d| vettid_crypto::ct_eq(d, key));
        // What the vault's records say of a device being removed: its name and device key,
        // from its rows or (removed before) its tombstone.
        let removing = match &change {
            DeviceChange::Remove(device) => {
                let key = hex::encode(device);
                let vault = self.resident(st, &objects, Owner::App)?;
                let name = vault
                    .meta(&format!("device/{key}"))?
                    .map(|n| String::from_utf8_lossy(&n).into_owned())
                    .unwrap_or_default();
                let device_key = match vault.meta(&format!("device-key/{key}"))? {
                    Some(k) => Some(k),
                    None => vault.meta(&format!("device-removed/{key}"))?,
                }
                .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok());
                Some((name, device_key))
            }
            DeviceChange::Add(_) => None,
        };
        // What is asked must make sense before the PIN is even counted. `None`: the keys
        // generation stays as it is (a removal asked again).
        let devices: Option<Vec<[u8; 32]>> = match (&change, &removing) {
            (DeviceChange::Add(new), _) => {
                if !vettid_proto::devices::valid_name(new.name) {
                    return Err(DeviceError::Name.into());
                }
                if known(&new.session_key) {
                    return Err(DeviceError::AlreadyRegistered.into());
                }
                if registered.len() >= MAX_DEVICES {
                    return Err(DeviceError::TooMany.into());
                }
                let mut all = registered.clone();
                all.push(new.session_key);
                Some(all)
            }
            (DeviceChange::Remove(device), Some((_, device_key))) => {
                if known(device) {
                    if registered.len() == 1 {
                        return Err(DeviceError::LastDevice.into());
                    }
                    device_key.ok_or(DeviceError::NoDeviceKey)?;
                    Some(
                        registered
                            .iter()
                            .filter(|d| !vettid_crypto::ct_eq(*d, device))
                            .copied()
                            .collect(),
                    )
                } else if device_key.is_some() {
                    None
                } else {
                    return Err(DeviceError::NoSuchDevice.into());
                }
            }
            (DeviceChange::Remove(_), None) => unreachable!("read above"),
        };
        let result = locked.unlock(&objects, pin, self.policy(), None);
        Self::note_guard(st, &locked);
        if result.is_err() && locked.locked_out() {
            // The limit was reached from this session: it loses the vault, as on an unlock.
            self.lock_slot(st, &objects);
        }
        let vmk = result?;
        let (device, statements, what) = match (&change, removing) {
            (DeviceChange::Add(new), _) => {
                let key = hex::encode(new.session_key);
                let mut statements = vec![Statement {
                    sql: "DELETE FROM meta WHERE key = ?1 OR key = ?2 OR key = ?3".into(),
                    params: vec![
                        SqlValue::Text(format!("device/{key}")),
                        SqlValue::Text(format!("device-key/{key}")),
                        SqlValue::Text(format!("device-removed/{key}")),
                    ],
                }];
                statements.extend(device_rows(new));
                let device = Device {
                    session_key: new.session_key,
                    device_key: Some(new.device_key),
                    name: new.name.to_owned(),
                };
                (device, statements, "added")
            }
            (DeviceChange::Remove(session_key), Some((name, device_key))) => {
                let key = hex::encode(session_key);
                let device_key = device_key.ok_or(DeviceError::NoDeviceKey)?;
                let statements = vec![
                    Statement {
                        sql: "DELETE FROM meta WHERE key = ?1 OR key = ?2".into(),
                        params: vec![
                            SqlValue::Text(format!("device/{key}")),
                            SqlValue::Text(format!("device-key/{key}")),
                        ],
                    },
                    Statement {
                        sql: "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)".into(),
                        params: vec![
                            SqlValue::Text(format!("device-removed/{key}")),
                            SqlValue::Blob(device_key.to_vec()),
                        ],
                    },
                ];
                let device = Device {
                    session_key: *session_key,
                    device_key: Some(device_key),
                    name,
                };
                (device, statements, "removed")
            }
            (DeviceChange::Remove(_), None) => unreachable!("read above"),
        };
        let vault = self.resident(st, &objects, Owner::App)?;
        let identity = vault.identity_public_key();
        // Asked again after the keys generation already left the device out: the same answer;
        // if its records were not removed then (a failure in between), they go now, audited.
        let unfinished = devices.is_none()
            && vault
                .meta(&format!("device-key/{}", hex::encode(device.session_key)))?
                .is_some();
        if devices.is_none() && !unfinished {
            return Ok((device, identity));
        }
        let event = crate::feed::event(
            now_ms,
            vettid_proto::feed::Audience::Feed,
            &format!("devices.{what}"),
            vettid_proto::feed::Retention::Standard,
            format!(
                "device {} ({}) {what}",
                hex::encode(&device.session_key[..8]),
                device.name
            ),
        );
        let mut statements = statements;
        statements.extend(crate::feed::append(vault, &[event])?);
        let Some(devices) = devices else {
            vault.write(&objects, statements)?;
            let head = vault.head();
            st.saw(head);
            return Ok((device, identity));
        };
        let adding = matches!(change, DeviceChange::Add(_));
        if adding {
            vault.write(&objects, std::mem::take(&mut statements))?;
            let head = vault.head();
            st.saw(head);
        }
        let rekeyed =
            locked.set_devices(&objects, &*self.sealer, &vmk, pin, devices, self.policy());
        st.generation = st.generation.max(Some(locked.generation()));
        rekeyed?;
        st.devices = Some(locked.devices().to_vec());
        if !adding {
            let vault = self.resident(st, &objects, Owner::App)?;
            vault.write(&objects, statements)?;
            let head = vault.head();
            st.saw(head);
        }
        Ok((device, identity))
    }

    /// Whether `device` is registered with vault `id` (constant-time comparison), from the
    /// newest keys record this enclave authenticated (read now if it has none).
    pub fn has_device(&self, id: &str, device: &[u8; 32]) -> Result<bool, VaultError> {
        if !valid_vault_id(id) {
            return Ok(false);
        }
        let state = self.state(id);
        if lock(&state).devices.is_none() {
            self.peek_locked(&state, &Objects::new(&self.link, id))?;
        }
        Ok(lock(&state)
            .devices
            .iter()
            .flatten()
            .fold(false, |found, d| found | vettid_crypto::ct_eq(d, device)))
    }

    /// Unlocks with the PIN for the session of `device` (which must be registered in the keys
    /// record this unlock opens), refusing a state that does not extend `seen` (what this
    /// session's app showed it had seen). The opening number is taken under the vault's lock.
    pub fn unlock_for_app(
        &self,
        id: &str,
        opener: Opener<'_>,
        device: &[u8; 32],
        seen: Option<Head>,
        now_ms: u64,
    ) -> Result<Unlocked, VaultError> {
        if !valid_vault_id(id) {
            return Err(Invalid::VaultId.into());
        }
        let objects = Objects::new(&self.link, id);
        let state = self.state(id);
        let mut st = lock(&state);
        let st = &mut *st;
        let (kind, what) = match opener {
            Opener::Pin(_) => ("vault.unlocked", "vault unlocked"),
            Opener::Phrase { .. } => (
                "vault.pin_reset",
                "PIN reset with the recovery phrase; vault unlocked",
            ),
        };
        self.unlock(st, &objects, opener, Some((device, now_ms)))?;
        let opening = Opening::of(id, st.opening);
        if let Some(seen) = seen {
            self.with_vault(st, &objects, Owner::App, |vault, objects| {
                vault.extends(objects, seen)
            })
            .map_err(|e| st.settle(e))?;
        }
        self.with_vault(st, &objects, Owner::App, |vault, objects| {
            // The feed tells the member; events past their retention lose their content.
            let event = crate::feed::event(
                now_ms,
                vettid_proto::feed::Audience::Feed,
                kind,
                vettid_proto::feed::Retention::Short,
                format!("{what} from device {}", hex::encode(&device[..8])),
            );
            let mut statements = vec![crate::feed::prune(now_ms)];
            statements.extend(crate::feed::append(vault, &[event])?);
            let version = vault.write(objects, statements)?;
            Ok(Unlocked {
                version,
                event_key: vault.event_key().clone(),
                opening,
            })
        })
    }

    /// An app shows a version of vault `id` it has seen, signed by the vault: the enclave
    /// checks the signature against the vault's identity, raises its high-water mark to it,
    /// and (when the vault is in memory) checks that the current state extends it.
    pub fn anchor(&self, id: &str, seen: &SignedVersion) -> Result<Head, VaultError> {
        let objects = Objects::new(&self.link, id);
        let state = self.state(id);
        let mut st = lock(&state);
        let st = &mut *st;
        st.check()?;
        if st.identity.is_none() {
            self.open_locked(st, &objects)?;
        }
        let identity = st.identity.ok_or(VaultError::NotFound)?;
        let head = verify_signed(id, &identity, seen)?;
        if let Some(hw) = st.high_water
            && hw.version == head.version
            && !vettid_crypto::ct_eq(&hw.hash, &head.hash)
        {
            let forked = VaultError::RolledBack {
                seen: head.version,
                current: hw.version,
            };
            return Err(st.settle(forked));
        }
        if st.slot.owner() == Some(Owner::App) {
            // In memory: check now (a state it does not extend closes the vault).
            self.with_vault(st, &objects, Owner::App, |vault, objects| {
                vault.extends(objects, head)
            })
            .map_err(|e| st.settle(e))?;
        } else {
            // Not in memory: the next load must extend it (verified, never just trusted).
            st.anchors.push(head);
            st.anchors.sort_by_key(|h| std::cmp::Reverse(h.version));
            st.anchors.truncate(MAX_ANCHORS);
        }
        Ok(head)
    }

    /// Runs a domain handler on vault `id` for the session whose unlock got `opening`: only
    /// while that unlock is current (no lock or later unlock since), checked under the vault's
    /// lock together with the work. The handler gets the [`UnlockedVault`] guard, nothing less.
    /// Returns its answer — or its refusal of the request ([`VaultError::is_refusal`]: nothing
    /// changed) — with the vault's signed version after it, taken under the same lock (what the
    /// app checks for rollback). Other failures are the `Err` of the whole.
    #[allow(clippy::type_complexity)]
    pub fn domain<T>(
        &self,
        id: &str,
        opening: &Opening,
        now_ms: u64,
        f: impl FnOnce(&mut UnlockedVault<'_>) -> Result<T, VaultError>,
    ) -> Result<(Result<T, VaultError>, SignedVersion), VaultError> {
        let objects = Objects::new(&self.link, id);
        let state = self.state(id);
        let mut st = lock(&state);
        st.check()?;
        if !opening.holds(id, st.opening) {
            return Err(VaultError::NotUnlocked);
        }
        self.run_unlocked(&mut st, &objects, now_ms, |u| match f(u) {
            Err(e) if !e.is_refusal() => Err(e),
            answer => Ok((answer, u.vault.signed_version(id))),
        })
    }

    /// Runs `f` on the open vault of `st` with the vault's in-memory extras (its transfer
    /// under the current opening, its pending handshakes), which stay with the vault while it
    /// stays open (a transfer only while it stays resident).
    fn run_unlocked<T>(
        &self,
        st: &mut VaultState,
        objects: &Objects<'_>,
        now_ms: u64,
        f: impl FnOnce(&mut UnlockedVault<'_>) -> Result<T, VaultError>,
    ) -> Result<T, VaultError> {
        let current = st.opening;
        let mut transfer = st
            .transfer
            .take()
            .filter(|(opening, _)| *opening == current)
            .map(|(_, t)| t);
        let mut handshakes = std::mem::take(&mut st.handshakes);
        let result = self.with_vault(st, objects, Owner::App, |vault, objects| {
            f(&mut UnlockedVault {
                vault,
                objects,
                now_ms,
                transfer: &mut transfer,
                handshakes: &mut handshakes,
            })
        });
        if st.opening == current && st.slot.owner() == Some(Owner::App) {
            st.handshakes = handshakes;
            if matches!(st.slot, Slot::Resident { .. }) {
                st.transfer = transfer.map(|t| (current, t));
            }
        }
        result
    }

    /// Whether vault `id` is open to its peers: unlocked by its member's app since this
    /// enclave started and not locked since (in memory, or evicted and reloadable).
    pub fn accepts_peers(&self, id: &str) -> bool {
        let Some(state) = lock(&self.vaults).get(id).cloned() else {
            return false;
        };
        let st = lock(&state);
        st.refused.is_none() && st.slot.owner() == Some(Owner::App)
    }

    /// Runs `f` — a domain's handling of one message from another vault — on each of
    /// `bodies` in order, on vault `id` while it is open to its peers, as one group
    /// ([`Vault::begin_group`]): what they change becomes durable together, with one log
    /// entry, before this returns. A message `f` refuses for good is dropped (counted as
    /// done, nothing of it kept); one that fails otherwise stops the batch there, undone, and
    /// it and the rest come back ([`PeerRest::Retry`]). If the group cannot be made durable,
    /// nothing of it is kept and the whole batch is an `Err` (the host retries it; what was
    /// kept comes again as duplicates, which the domains take once). A message that finishes
    /// a handshake (whose state lives only in memory) is made durable before the next.
    pub fn peers(
        &self,
        id: &str,
        now_ms: u64,
        bodies: &[impl AsRef<[u8]>],
        mut f: impl FnMut(&mut UnlockedVault<'_>, &[u8]) -> Result<Vec<Outbound>, VaultError>,
    ) -> Result<PeerBatch, VaultError> {
        let closed = || PeerBatch {
            done: 0,
            rest: Some(PeerRest::Later),
            out: Vec::new(),
        };
        if !valid_vault_id(id) {
            return Err(Invalid::VaultId.into());
        }
        let objects = Objects::new(&self.link, id);
        let Some(state) = lock(&self.vaults).get(id).cloned() else {
            return Ok(closed());
        };
        let mut st = lock(&state);
        match st.check() {
            Err(VaultError::RolledBack { .. }) => return Ok(closed()),
            other => other?,
        }
        let batch = self.run_unlocked(&mut st, &objects, now_ms, |u| {
            u.vault.begin_group()?;
            // A bug in a domain must not leave the group open: it is rolled back, then the
            // panic goes on to the worker's catch.
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut batch = PeerBatch {
                    done: 0,
                    rest: None,
                    out: Vec::new(),
                };
                for body in bodies {
                    let mark = u.vault.mark()?;
                    let waiting = u.handshakes.len();
                    match f(u, body.as_ref()) {
                        Ok(out) => {
                            u.vault.keep_since_mark()?;
                            batch.out.extend(out);
                            if u.handshakes.len() != waiting {
                                // A handshake finished: what it wrote is made durable now,
                                // as it would be alone (the handshake, in memory only, is
                                // gone and would not come back with a rolled-back group).
                                u.vault.end_group(u.objects)?;
                                u.vault.begin_group()?;
                            }
                        }
                        // Never to be taken (the vault is full; the message breaks a rule):
                        // dropped, so that it does not hold up the ones behind it.
                        Err(e)
                            if e.is_refusal() || matches!(e, VaultError::QuotaExceeded { .. }) =>
                        {
                            u.vault.undo_to(mark)?;
                        }
                        Err(_) => {
                            u.vault.undo_to(mark)?;
                            batch.rest = Some(PeerRest::Retry);
                            break;
                        }
                    }
                    batch.done += 1;
                }
                Ok(batch)
            }));
            match run {
                Ok(Ok(batch)) => {
                    u.vault.end_group(u.objects)?;
                    Ok(batch)
                }
                Ok(Err(e)) => {
                    u.vault.abort_group();
                    Err(e)
                }
                Err(panic) => {
                    u.vault.abort_group();
                    std::panic::resume_unwind(panic)
                }
            }
        });
        match batch {
            // Not open (locked, or never unlocked since this enclave started), or refused to
            // everyone (rolled-back storage): for later.
            Err(VaultError::NotUnlocked | VaultError::RolledBack { .. }) => Ok(closed()),
            other => other,
        }
    }

    /// Runs `f` — a domain operation that needs a secret checked against the vault's guess
    /// limit (the credential's password) — for the session whose unlock got `opening`, all of
    /// it under the vault's lock. `f` gets the [`Gate`]: the vault, and the durable count of
    /// attempts, nothing more of the manager.
    pub(crate) fn gated<T>(
        &self,
        id: &str,
        opening: &Opening,
        f: impl FnOnce(&mut Gate<'_>) -> Result<T, VaultError>,
    ) -> Result<T, VaultError> {
        let objects = Objects::new(&self.link, id);
        let state = self.state(id);
        let mut st = lock(&state);
        st.check()?;
        if !opening.holds(id, st.opening) {
            return Err(VaultError::NotUnlocked);
        }
        f(&mut Gate {
            manager: self,
            st: &mut st,
            objects: &objects,
            id,
        })
    }

    /// Locks; the event key if the vault was open (to tell the apps).
    pub fn lock_for_app(&self, id: &str) -> Result<Option<SecretBytes<32>>, VaultError> {
        let objects = Objects::new(&self.link, id);
        let state = self.state(id);
        let mut st = lock(&state);
        let key = self
            .resident(&mut st, &objects, Owner::App)
            .ok()
            .map(|v| v.event_key().clone());
        self.lock_slot(&mut st, &objects);
        Ok(key)
    }

    /// Residency, guess-limit state and (when unlocked) the signed version.
    pub fn status_for_app(&self, id: &str) -> Result<vettid_proto::session::AppReply, VaultError> {
        let objects = Objects::new(&self.link, id);
        let state = self.state(id);
        let attempts_left = self
            .peek_locked(&state, &objects)?
            .attempts_left(self.policy());
        let mut st = lock(&state);
        let version = match self.with_vault(&mut st, &objects, Owner::App, |vault, _| {
            Ok(vault.signed_version(id))
        }) {
            Ok(v) => Some(v),
            Err(VaultError::NotUnlocked) => None,
            Err(e) => return Err(e),
        };
        Ok(vettid_proto::session::AppReply::Status {
            unlocked: version.is_some(),
            attempts_left,
            version,
        })
    }

    /// The identity key and, when unlocked (resident or reloadable), the signed version. Warm
    /// path: no storage access when the vault is resident.
    pub fn whoami(&self, id: &str) -> Result<([u8; 32], Option<SignedVersion>), VaultError> {
        let objects = Objects::new(&self.link, id);
        let state = self.state(id);
        let mut st = lock(&state);
        let st = &mut *st;
        match self.with_vault(st, &objects, Owner::App, |vault, _| {
            Ok((vault.identity_public_key(), Some(vault.signed_version(id))))
        }) {
            Err(VaultError::NotUnlocked) => {}
            other => return other,
        }
        let locked = self.open_locked(st, &objects)?;
        let identity = locked
            .identity()
            .try_into()
            .map_err(|_| VaultError::Tampered("identity key length".into()))?;
        Ok((identity, None))
    }
}

/// The `meta` rows naming a registered device (see `devices.rs`).
fn device_rows(device: &NewDevice<'_>) -> [Statement; 2] {
    let key = hex::encode(device.session_key);
    [
        Statement {
            sql: "INSERT INTO meta (key, value) VALUES (?1, ?2)".into(),
            params: vec![
                SqlValue::Text(format!("device/{key}")),
                SqlValue::Blob(device.name.as_bytes().to_vec()),
            ],
        },
        Statement {
            sql: "INSERT INTO meta (key, value) VALUES (?1, ?2)".into(),
            params: vec![
                SqlValue::Text(format!("device-key/{key}")),
                SqlValue::Blob(device.device_key.to_vec()),
            ],
        },
    ]
}

fn residency(slot: &Slot) -> Residency {
    match slot {
        Slot::Resident {
            vault: Tier::Open(_),
            ..
        } => Residency::Resident,
        Slot::Resident {
            vault: Tier::Resting(_),
            ..
        } => Residency::Resting,
        Slot::Evicted { .. } => Residency::Evicted,
        Slot::Cold => Residency::Locked,
    }
}

/// Checks that `signed` is vault `id`'s signature (identity `identity`) of a version; the head
/// it names.
fn verify_signed(
    id: &str,
    identity: &[u8; 32],
    signed: &SignedVersion,
) -> Result<Head, VaultError> {
    let refused = || VaultError::Tampered("that version is not signed by this vault".into());
    let hash: [u8; 32] = signed
        .change_hash
        .as_slice()
        .try_into()
        .map_err(|_| refused())?;
    let signature: [u8; 64] = signed
        .signature
        .as_slice()
        .try_into()
        .map_err(|_| refused())?;
    let key = vettid_crypto::sign::VerifyingKey::from_bytes(identity).map_err(|_| refused())?;
    key.verify(
        &crate::vault::version_message(id, signed.version, &hash),
        &vettid_crypto::sign::Signature::from_bytes(signature),
    )
    .map_err(|_| refused())?;
    Ok(Head {
        version: signed.version,
        hash,
    })
}

fn check_pin(pin: &[u8]) -> Result<(), VaultError> {
    if (4..=64).contains(&pin.len()) {
        Ok(())
    } else {
        Err(Invalid::Pin.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::{fast, manager};

    const DEVICE: [u8; 32] = [1; 32];

    fn new_device() -> NewDevice<'static> {
        NewDevice {
            session_key: DEVICE,
            device_key: [9; 32],
            name: "phone",
        }
    }

    fn enrolled() -> Manager {
        let (m, _) = manager(fast(10));
        m.enroll("alice", b"1111", &[0; 32], new_device(), 0)
            .unwrap();
        m
    }

    /// A manager whose vaults rest at the janitor's first pass.
    fn resting_manager() -> (Manager, crate::harness::Store) {
        let (link, store) = crate::harness::host();
        let config = Config {
            policy: Policy {
                keys: fast(10),
                ..Default::default()
            },
            rest: Duration::ZERO,
            ..Default::default()
        };
        let m = Manager::new(link, Box::new(crate::harness::TestSealer::new()), config);
        (m, store)
    }

    /// Alice's member asks for a daily backup, three kept.
    fn daily_backups(m: &Manager, opening: &Opening) {
        use vettid_proto::backup::{BackupOp, Every, Schedule};
        let (r, _) = m
            .domain("alice", opening, 0, |u| {
                crate::backup::handle(
                    u,
                    BackupOp::SetSchedule(Schedule {
                        every: Every::Daily,
                        keep: 3,
                        max_age_days: 0,
                    }),
                )
            })
            .unwrap();
        r.unwrap();
    }

    fn residency_of(m: &Manager, id: &str) -> Residency {
        residency(&lock(lock(&m.vaults).get(id).unwrap()).slot)
    }

    #[test]
    fn background_backups_open_only_the_resting_vaults_that_are_due_and_leave_them_at_rest() {
        let (m, store) = resting_manager();
        let opening = m
            .enroll("alice", b"1111", &[0; 32], new_device(), 0)
            .unwrap()
            .opening;
        daily_backups(&m, &opening);
        assert_eq!(m.scheduled_backups(1_000), 1);
        m.evict_idle();
        assert_eq!(residency_of(&m, "alice"), Residency::Resting);
        let used = lock(lock(&m.vaults).get("alice").unwrap()).slot.last_used();
        let stored = store.lock().unwrap().clone();
        // Not due: the pass does not open it (nothing read, nothing written, still at rest).
        assert_eq!(m.scheduled_backups(2_000), 0);
        assert_eq!(residency_of(&m, "alice"), Residency::Resting);
        assert_eq!(*store.lock().unwrap(), stored);
        // Due: made, and the vault is back at rest, as unused as it was.
        assert_eq!(m.scheduled_backups(1_000 + 24 * 3_600_000), 1);
        assert_eq!(residency_of(&m, "alice"), Residency::Resting);
        assert_eq!(
            lock(lock(&m.vaults).get("alice").unwrap()).slot.last_used(),
            used
        );
        assert_ne!(*store.lock().unwrap(), stored);
        // A resting vault locks like an open one.
        m.lock_for_app("alice").unwrap();
        assert_eq!(residency_of(&m, "alice"), Residency::Locked);
    }

    #[test]
    fn an_idle_vault_rests_in_memory_and_its_next_use_wakes_it_unchanged() {
        let (m, store) = resting_manager();
        let opening = m
            .enroll("alice", b"1111", &[0; 32], new_device(), 0)
            .unwrap()
            .opening;
        let put = |value: &[u8]| {
            m.domain("alice", &opening, 0, |u| {
                let (vault, objects, _) = u.parts();
                vault.write(
                    objects,
                    vec![Statement {
                        sql: "INSERT OR REPLACE INTO kv (key, value) VALUES ('k', ?1)".into(),
                        params: vec![SqlValue::Blob(value.to_vec())],
                    }],
                )
            })
            .unwrap()
            .0
            .unwrap()
        };
        let get = || {
            m.domain("alice", &opening, 0, |u| u.parts().0.get("k"))
                .unwrap()
                .0
                .unwrap()
        };
        let written = put(b"one");
        let residency_now = || residency_of(&m, "alice");
        assert_eq!(residency_now(), Residency::Resident);
        let stored = store.lock().unwrap().clone();

        assert_eq!(m.evict_idle(), 0, "resting is not eviction");
        assert_eq!(residency_now(), Residency::Resting);
        assert_eq!(*store.lock().unwrap(), stored, "resting writes nothing");
        // The next use opens it again, where it was, with no storage read or PIN.
        assert_eq!(get(), Some(b"one".to_vec()));
        assert_eq!(residency_now(), Residency::Resident);
        assert_eq!(*store.lock().unwrap(), stored);
        let next = put(b"two");
        assert_eq!(next.version, written.version + 1);

        // An image that no longer opens (a fault in memory) evicts the vault: its next use
        // reloads the same state from storage.
        m.evict_idle();
        if let Slot::Resident {
            vault: Tier::Resting(v),
            ..
        } = &mut lock(lock(&m.vaults).get("alice").unwrap()).slot
        {
            v.corrupt();
        } else {
            panic!("not at rest");
        }
        assert!(matches!(
            m.domain("alice", &opening, 0, |u| u.parts().0.get("k")),
            Err(VaultError::Internal(_))
        ));
        assert_eq!(residency_now(), Residency::Evicted);
        assert_eq!(get(), Some(b"two".to_vec()));
        assert_eq!(residency_now(), Residency::Resident);
    }

    #[test]
    fn only_the_newest_unlock_opens_vault_data_and_a_lock_ends_it() {
        let m = enrolled();
        let a = m
            .unlock_for_app("alice", Opener::Pin(b"1111"), &DEVICE, None, 0)
            .unwrap();
        let b = m
            .unlock_for_app("alice", Opener::Pin(b"1111"), &DEVICE, None, 0)
            .unwrap();
        assert!(a.opening.number < b.opening.number);
        let touch = |opening: &Opening| m.domain("alice", opening, 0, |_| Ok(())).map(|_| ());
        assert_eq!(touch(&a.opening), Err(VaultError::NotUnlocked));
        assert_eq!(touch(&b.opening), Ok(()));
        m.lock_for_app("alice").unwrap();
        assert_eq!(touch(&b.opening), Err(VaultError::NotUnlocked));
    }

    #[test]
    fn one_vaults_unlock_opens_no_other_vault() {
        let m = enrolled();
        m.enroll("bob", b"2222", &[0; 32], new_device(), 0).unwrap();
        let bob = m
            .unlock_for_app("bob", Opener::Pin(b"2222"), &DEVICE, None, 0)
            .unwrap();
        let alice = m
            .unlock_for_app("alice", Opener::Pin(b"1111"), &DEVICE, None, 0)
            .unwrap();
        // Same opening numbers by construction (each vault: enroll, then one unlock).
        assert_eq!(alice.opening.number, bob.opening.number);
        assert_eq!(
            m.domain("bob", &alice.opening, 0, |_| Ok(())),
            Err(VaultError::NotUnlocked)
        );
        assert!(m.domain("bob", &bob.opening, 0, |_| Ok(())).is_ok());
    }

    #[test]
    fn two_unlocks_at_once_leave_exactly_one_current() {
        let m = Arc::new(enrolled());
        for _ in 0..5 {
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let m = m.clone();
                    std::thread::spawn(move || {
                        m.unlock_for_app("alice", Opener::Pin(b"1111"), &DEVICE, None, 0)
                            .unwrap()
                            .opening
                    })
                })
                .collect();
            let openings: Vec<Opening> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            assert_ne!(openings[0], openings[1], "each unlock has its own number");
            let current = openings
                .iter()
                .filter(|o| m.domain("alice", o, 0, |_| Ok(())).is_ok())
                .count();
            assert_eq!(current, 1);
        }
    }

    #[test]
    fn an_unregistered_device_is_refused_before_its_pin_is_counted() {
        let (m, store) = manager(fast(10));
        m.enroll("alice", b"1111", &[0; 32], new_device(), 0)
            .unwrap();
        let guards = |s: &crate::harness::Store| {
            s.lock()
                .unwrap()
                .keys()
                .filter(|k| k.contains("/guard/"))
                .count()
        };
        let before = guards(&store);
        assert_eq!(
            m.unlock_for_app("alice", Opener::Pin(b"1111"), &[2; 32], None, 0)
                .err(),
            Some(VaultError::DeviceNotRegistered)
        );
        assert_eq!(guards(&store), before);
        assert!(!m.has_device("alice", &[2; 32]).unwrap());
        assert!(m.has_device("alice", &DEVICE).unwrap());
    }

    #[test]
    fn the_recovery_phrase_sets_a_new_pin_counted_like_one_and_never_reaches_storage() {
        let (m, store) = manager(fast(10));
        let phrase = m
            .enroll("alice", b"1111", &[0; 32], new_device(), 0)
            .unwrap()
            .recovery_phrase;
        let reset = |phrase: &[u8; keys::RECOVERY_BYTES], new_pin: &[u8]| {
            m.unlock_for_app(
                "alice",
                Opener::Phrase { phrase, new_pin },
                &DEVICE,
                None,
                0,
            )
            .map(|_| ())
        };
        let mut wrong = *phrase;
        wrong[0] ^= 1;
        assert_eq!(
            reset(&wrong, b"2222"),
            Err(VaultError::WrongRecoveryPhrase { attempts_left: 9 })
        );
        assert_eq!(reset(&phrase, b"12"), Err(Invalid::Pin.into()));
        assert_eq!(reset(&phrase, b"2222"), Ok(()));
        // The old PIN is gone, the new one opens, and the count started over.
        let unlock = |pin: &[u8]| {
            m.unlock_for_app("alice", Opener::Pin(pin), &DEVICE, None, 0)
                .map(|_| ())
        };
        assert_eq!(
            unlock(b"1111"),
            Err(VaultError::WrongPin { attempts_left: 9 })
        );
        assert_eq!(unlock(b"2222"), Ok(()));
        // The phrase keeps working after the PIN changed (its wrap carries over).
        assert_eq!(reset(&phrase, b"3333"), Ok(()));
        assert_eq!(unlock(b"3333"), Ok(()));
        // Nothing stored holds the phrase.
        for bytes in store.lock().unwrap().values() {
            assert!(!bytes.windows(phrase.len()).any(|w| w == &phrase[..]));
        }
        // At the limit, neither the PIN nor the phrase opens the vault (staged recovery does).
        for _ in 0..10 {
            let _ = unlock(b"0000");
        }
        assert_eq!(unlock(b"3333"), Err(VaultError::LockedOut));
        assert_eq!(reset(&phrase, b"4444"), Err(VaultError::LockedOut));
    }

    const HOUR: u64 = 3600 * 1000;
    const NEW: [u8; 32] = [2; 32];

    fn new_phone() -> NewDevice<'static> {
        NewDevice {
            session_key: NEW,
            device_key: [8; 32],
            name: "new phone",
        }
    }

    fn names(m: &Manager, opening: &Opening) -> Vec<String> {
        let devices = m
            .domain("alice", opening, 0, |u| {
                crate::devices::handle(u, vettid_proto::devices::DeviceOp::List)
            })
            .unwrap()
            .0
            .unwrap();
        match devices {
            vettid_proto::devices::DeviceReply::Devices(d) => {
                d.into_iter().map(|d| d.name).collect()
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn recovery_waits_out_the_delay_after_any_device_unlock_and_rekeys_to_the_new_device() {
        let (m, _) = manager(fast(10));
        let phrase = m
            .enroll("alice", b"1111", &[0; 32], new_device(), 0)
            .unwrap()
            .recovery_phrase;
        let day = 24 * HOUR;
        // The enrolled phone unlocks at hour 5.
        let phone = m
            .unlock_for_app("alice", Opener::Pin(b"1111"), &DEVICE, None, 5 * HOUR)
            .unwrap();
        let recover = |proof, at| {
            m.recover("alice", proof, &[7; 32], new_phone(), at)
                .map(|r| r.opening)
        };
        let by_phrase = keys::RecoveryProof::Phrase {
            phrase: &phrase,
            new_pin: b"2222",
        };
        // A host that says a hundred days have passed: the enclave's own clock says not.
        assert_eq!(
            recover(by_phrase, 5 * HOUR + 100 * day).err(),
            Some(VaultError::RecentlyUsed)
        );
        // A day passes on the enclave's clock, but the host's time is within a day of the
        // recorded unlock: refused too, and nothing counted.
        m.skip(day);
        assert_eq!(
            recover(by_phrase, 5 * HOUR + day - 1).err(),
            Some(VaultError::RecentlyUsed)
        );
        let status = m.status_for_app("alice").unwrap();
        assert!(
            matches!(
                status,
                vettid_proto::session::AppReply::Status {
                    attempts_left: 10,
                    ..
                }
            ),
            "{status:?}"
        );
        // A wrong PIN is counted as usual; a bad new PIN is refused before anything.
        assert_eq!(
            recover(keys::RecoveryProof::Pin(b"9999"), 5 * HOUR + day).err(),
            Some(VaultError::WrongPin { attempts_left: 9 })
        );
        let short = keys::RecoveryProof::Phrase {
            phrase: &phrase,
            new_pin: b"12",
        };
        assert_eq!(
            recover(short, 5 * HOUR + day).err(),
            Some(Invalid::Pin.into())
        );
        // After the delay: the vault is the new phone's alone, under the new PIN.
        let opening = recover(by_phrase, 5 * HOUR + day).unwrap();
        assert_eq!(names(&m, &opening), ["new phone"]);
        assert!(!m.has_device("alice", &DEVICE).unwrap());
        assert!(m.has_device("alice", &NEW).unwrap());
        assert_eq!(
            m.domain("alice", &phone.opening, 0, |_| Ok(())).map(|_| ()),
            Err(VaultError::NotUnlocked),
            "the old phone's unlock is void"
        );
        assert_eq!(
            m.unlock_for_app("alice", Opener::Pin(b"1111"), &DEVICE, None, 0)
                .map(|_| ())
                .err(),
            Some(VaultError::DeviceNotRegistered)
        );
        assert!(
            m.unlock_for_app("alice", Opener::Pin(b"2222"), &NEW, None, 0)
                .is_ok()
        );
        // The new device's answer lost: it may recover again at once (it is the only device).
        assert!(recover(by_phrase, 5 * HOUR + day).is_ok());
        // The member's feed says what happened.
        let opening = m
            .unlock_for_app("alice", Opener::Pin(b"2222"), &NEW, None, 0)
            .unwrap()
            .opening;
        let feed = m
            .domain("alice", &opening, 0, |u| {
                crate::feed::handle(
                    u,
                    vettid_proto::feed::FeedOp::List {
                        after: 0,
                        archived: false,
                    },
                )
            })
            .unwrap()
            .0
            .unwrap();
        let vettid_proto::feed::FeedReply::Events { events, .. } = feed else {
            panic!("{feed:?}")
        };
        assert!(
            events.iter().any(|e| e
                .content
                .as_ref()
                .is_some_and(|c| c.kind == "vault.recovered")),
            "{events:?}"
        );
    }

    #[test]
    fn a_vault_the_guess_limit_locked_reopens_only_by_recovery_with_the_phrase() {
        let (m, _) = manager(fast(10));
        let phrase = m
            .enroll("alice", b"1111", &[0; 32], new_device(), 0)
            .unwrap()
            .recovery_phrase;
        for _ in 0..10 {
            let _ = m.unlock_for_app("alice", Opener::Pin(b"0000"), &DEVICE, None, 0);
        }
        let day = 24 * HOUR;
        m.skip(day);
        let recover = |proof| {
            m.recover("alice", proof, &[7; 32], new_phone(), day)
                .map(|r| r.opening)
        };
        assert_eq!(
            recover(keys::RecoveryProof::Pin(b"1111")).err(),
            Some(VaultError::LockedOut),
            "the PIN does not reopen a locked vault"
        );
        let mut wrong = *phrase;
        wrong[3] ^= 0x40;
        let by = |phrase| keys::RecoveryProof::Phrase {
            phrase,
            new_pin: b"2222",
        };
        assert_eq!(
            recover(by(&wrong)).err(),
            Some(VaultError::WrongRecoveryPhrase { attempts_left: 9 })
        );
        let opening = recover(by(&phrase)).unwrap();
        assert_eq!(names(&m, &opening), ["new phone"]);
        // Every count starts over: ten wrong PINs are needed to lock it again.
        assert_eq!(
            m.unlock_for_app("alice", Opener::Pin(b"0000"), &NEW, None, day)
                .map(|_| ())
                .err(),
            Some(VaultError::WrongPin { attempts_left: 9 })
        );
    }

    #[test]
    fn wrong_recovery_phrases_are_limited_even_in_a_locked_vault() {
        let (m, _) = manager(fast(3));
        let phrase = m
            .enroll("alice", b"1111", &[0; 32], new_device(), 0)
            .unwrap()
            .recovery_phrase;
        let mut wrong = *phrase;
        wrong[0] ^= 1;
        m.skip(48 * HOUR);
        let recover = |phrase| {
            m.recover(
                "alice",
                keys::RecoveryProof::Phrase {
                    phrase,
                    new_pin: b"2222",
                },
                &[7; 32],
                new_phone(),
                48 * HOUR,
            )
            .map(|_| ())
        };
        assert_eq!(
            recover(&wrong),
            Err(VaultError::WrongRecoveryPhrase { attempts_left: 2 })
        );
        assert_eq!(
            recover(&wrong),
            Err(VaultError::WrongRecoveryPhrase { attempts_left: 1 })
        );
        // The member's right PIN starts that count over too (no one can use up the phrase's
        // attempts of a member who still uses the vault).
        assert!(
            m.unlock_for_app("alice", Opener::Pin(b"1111"), &DEVICE, None, 0)
                .is_ok()
        );
        m.skip(48 * HOUR);
        assert_eq!(
            recover(&wrong),
            Err(VaultError::WrongRecoveryPhrase { attempts_left: 2 })
        );
        assert_eq!(
            recover(&wrong),
            Err(VaultError::WrongRecoveryPhrase { attempts_left: 1 })
        );
        assert_eq!(recover(&wrong), Err(VaultError::LockedOut));
        assert_eq!(recover(&phrase), Err(VaultError::LockedOut));
        assert!(m.has_device("alice", &DEVICE).unwrap(), "nothing re-keyed");
    }

    #[test]
    fn a_refused_second_enrollment_leaves_the_phrase_the_member_was_shown() {
        let (m, _) = manager(fast(10));
        let first = m
            .enroll("alice", b"1111", &[0; 32], new_device(), 0)
            .unwrap()
            .recovery_phrase;
        assert_eq!(
            m.enroll("alice", b"1111", &[0; 32], new_device(), 0)
                .map(|_| ()),
            Err(VaultError::AlreadyExists)
        );
        let reset = m.unlock_for_app(
            "alice",
            Opener::Phrase {
                phrase: &first,
                new_pin: b"2222",
            },
            &DEVICE,
            None,
            0,
        );
        assert!(reset.is_ok(), "the phrase the member was shown still works");
    }

    #[test]
    fn due_backups_are_made_by_the_enclave_itself() {
        let m = enrolled();
        let opening = m
            .unlock_for_app("alice", Opener::Pin(b"1111"), &DEVICE, None, 0)
            .unwrap()
            .opening;
        assert_eq!(m.scheduled_backups(1_000), 0, "no schedule: nothing due");
        daily_backups(&m, &opening);
        assert_eq!(m.scheduled_backups(1_000), 1);
        assert_eq!(m.scheduled_backups(2_000), 0, "made an instant ago");
        assert_eq!(m.scheduled_backups(1_000 + 24 * 3_600_000), 1);
        // Locked: the enclave has no key, and makes none.
        m.lock_for_app("alice").unwrap();
        assert_eq!(m.scheduled_backups(1_000 + 72 * 3_600_000), 0);
    }

    #[test]
    fn the_background_clock_runs_from_the_apps_time_and_never_back() {
        let (m, _) = manager(fast(10));
        assert_eq!(
            m.trusted_now(),
            None,
            "no app request yet: no background clock"
        );
        m.app_time(1_000_000);
        let t = m.trusted_now().unwrap();
        assert!(t >= 1_000_000);
        m.app_time(5);
        assert!(
            m.trusted_now().unwrap() >= t,
            "an older time does not move it back"
        );
    }
}
