//! Vault actors: one slot per vault, each behind its own lock, so a vault's operations run one
//! at a time while different vaults run in parallel. Idle vaults are evicted (LRU and idle
//! timeout); an evicted vault keeps only its master key, wrapped under a key that exists in
//! this enclave process alone, so it reloads without the PIN until the enclave restarts.

use crate::keys::{self, KeyPolicy, LockedVault, MasterKey};
use crate::link::Link;
use crate::objects::Objects;
use crate::vault::{SqlValue, Statement, Vault};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vettid_attest::seal::RecipientSealer;
use vettid_crypto::SecretBytes;
use vettid_crypto::aead::AeadKey;
use vettid_proto::enclave::{
    EnclaveReply, Residency, SignedVersion, VaultError, VaultOp, valid_vault_id,
};

/// Largest record value of the debug table.
const MAX_VALUE: usize = 1024 * 1024;

/// Tunables of the enclave.
#[derive(Debug, Clone)]
pub struct Config {
    /// Guess limit and PIN stretching.
    pub policy: KeyPolicy,
    /// Resident vaults at most; beyond it the least recently used are evicted.
    pub max_resident: usize,
    /// Bytes of resident vault databases at most; beyond it the least recently used are evicted.
    pub memory_budget: u64,
    /// A vault unused this long is evicted.
    pub idle: Duration,
    /// Log entries between snapshots.
    pub snapshot_every: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            policy: KeyPolicy::default(),
            max_resident: 10_000,
            memory_budget: 1 << 30,
            idle: Duration::from_secs(300),
            snapshot_every: crate::vault::SNAPSHOT_EVERY,
        }
    }
}

enum Slot {
    /// Nothing in memory: the PIN is needed.
    Cold,
    /// Unlocked in memory.
    Resident {
        vault: Box<Vault>,
        wrapped: Vec<u8>,
        last_used: Instant,
    },
    /// Evicted; the master key kept wrapped under the instance key.
    Evicted { wrapped: Vec<u8> },
}

/// All vaults of this enclave instance.
pub struct Manager {
    link: Arc<Link>,
    sealer: RecipientSealer<Arc<Link>, Arc<Link>>,
    instance_key: AeadKey,
    config: Config,
    slots: Mutex<HashMap<String, Arc<Mutex<Slot>>>>,
    /// The newest guard record seen per vault in this enclave instance: storage that shows
    /// an older one has been rolled back (to reset the wrong-PIN count) and is refused.
    guards: Mutex<HashMap<String, u64>>,
    /// The newest keys generation seen per vault: an older one is a rollback (say, to a PIN
    /// that was changed) and is refused.
    generations: Mutex<HashMap<String, u64>>,
    /// Registered device keys per vault, read once from the keys record (they change only
    /// with a new keys generation, which this enclave writes itself).
    devices: Mutex<HashMap<String, Vec<[u8; 32]>>>,
    /// The vault version of the newest credential rotation per vault: an older state is a
    /// rollback (to revive a used blob) and is refused.
    credential_generations: Mutex<HashMap<String, u64>>,
    /// Per vault, a number raised by every unlock and lock: a session's unlock holds only while
    /// the number it got is current.
    openings: Mutex<HashMap<String, u64>>,
}

impl Manager {
    /// A manager reaching storage and the key service through `link`.
    pub fn new(link: Arc<Link>, config: Config) -> Self {
        Self {
            sealer: RecipientSealer::new(link.clone(), link.clone()),
            link,
            instance_key: AeadKey::generate(),
            config,
            slots: Mutex::new(HashMap::new()),
            guards: Mutex::new(HashMap::new()),
            generations: Mutex::new(HashMap::new()),
            devices: Mutex::new(HashMap::new()),
            credential_generations: Mutex::new(HashMap::new()),
            openings: Mutex::new(HashMap::new()),
        }
    }

    /// Opens the locked vault, refusing guard state older than this instance has seen.
    fn open_locked(&self, objects: &Objects<'_>) -> Result<LockedVault, VaultError> {
        let locked = LockedVault::open(objects, &self.sealer)?;
        let seen = self
            .guards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(objects.vault())
            .copied();
        if seen.is_some_and(|seen| locked.guard_seq() < seen) {
            return Err(VaultError::Tampered("guard records rolled back".into()));
        }
        {
            let mut generations = self.generations.lock().unwrap_or_else(|p| p.into_inner());
            let seen = generations.entry(objects.vault().to_owned()).or_insert(0);
            if locked.generation() < *seen {
                return Err(VaultError::Tampered("keys record rolled back".into()));
            }
            *seen = locked.generation();
        }
        self.devices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(objects.vault().to_owned(), locked.devices().to_vec());
        Ok(locked)
    }

    /// Remembers the newest guard record after an attempt (whatever its outcome).
    fn note_guard(&self, vault: &str, locked: &LockedVault) {
        let mut guards = self.guards.lock().unwrap_or_else(|p| p.into_inner());
        let seen = guards.entry(vault.to_owned()).or_insert(0);
        *seen = (*seen).max(locked.guard_seq());
    }

    fn slot(&self, vault: &str) -> Arc<Mutex<Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .entry(vault.to_owned())
            .or_insert_with(|| Arc::new(Mutex::new(Slot::Cold)))
            .clone()
    }

    fn resident<'s>(
        &self,
        slot: &'s mut Slot,
        objects: &Objects<'_>,
    ) -> Result<&'s mut Vault, VaultError> {
        if let Slot::Evicted { wrapped } = slot {
            let vmk = MasterKey::unwrap(&self.instance_key, objects.vault(), wrapped)
                .ok_or_else(|| VaultError::Internal("evicted key does not unwrap".into()))?;
            let vault = Vault::load(objects, &vmk)?;
            *slot = Slot::Resident {
                vault: Box::new(vault),
                wrapped: std::mem::take(wrapped),
                last_used: Instant::now(),
            };
        }
        match slot {
            Slot::Resident {
                vault, last_used, ..
            } => {
                *last_used = Instant::now();
                Ok(vault)
            }
            _ => Err(VaultError::NotUnlocked),
        }
    }

    fn make_resident(
        &self,
        slot: &mut Slot,
        mut vault: Vault,
        vmk: &MasterKey,
        id: &str,
    ) -> EnclaveReply {
        let signed = vault.signed_version(id);
        *slot = Slot::Resident {
            vault: Box::new(vault),
            wrapped: vmk.wrap(&self.instance_key, id),
            last_used: Instant::now(),
        };
        EnclaveReply::Open(signed)
    }

    /// Raises vault `id`'s opening number (at every unlock and lock) and returns it.
    fn bump_opening(&self, id: &str) -> u64 {
        let mut openings = self.openings.lock().unwrap_or_else(|p| p.into_inner());
        let n = openings.entry(id.to_owned()).or_insert(0);
        *n += 1;
        *n
    }

    /// Vault `id`'s current opening number: a session's unlock is valid only while the number
    /// it got at its unlock is current (any lock or later unlock ends it).
    pub fn opening(&self, id: &str) -> u64 {
        self.openings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
            .unwrap_or(0)
    }

    /// Checks the PIN (counted durably first) and makes the vault resident.
    fn unlock(
        &self,
        slot: &mut Slot,
        objects: &Objects<'_>,
        pin: &[u8],
    ) -> Result<EnclaveReply, VaultError> {
        let mut locked = self.open_locked(objects)?;
        let result = locked.unlock(objects, pin, &self.config.policy);
        self.note_guard(objects.vault(), &locked);
        let vmk = result?;
        let vault = Vault::load(objects, &vmk)?;
        self.bump_opening(objects.vault());
        Ok(self.make_resident(slot, vault, &vmk, objects.vault()))
    }

    /// Runs one operation on one vault.
    pub fn handle(&self, id: &str, op: VaultOp) -> Result<EnclaveReply, VaultError> {
        if !valid_vault_id(id) {
            return Err(VaultError::BadRequest(
                "vault id must be 1-64 of a-z 0-9 -".into(),
            ));
        }
        let objects = Objects::new(&self.link, id);
        let slot = self.slot(id);
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        let policy = &self.config.policy;
        match op {
            VaultOp::Create { pin } => {
                check_pin(&pin)?;
                let vmk = keys::create(&objects, &self.sealer, &pin, policy, Vec::new())?;
                self.devices
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id.to_owned(), Vec::new());
                let vault = Vault::create(&objects, &vmk)?;
                Ok(self.make_resident(&mut slot, vault, &vmk, id))
            }
            VaultOp::Unlock { pin } => self.unlock(&mut slot, &objects, &pin),
            VaultOp::ChangePin { old, new } => {
                check_pin(&new)?;
                let mut locked = self.open_locked(&objects)?;
                let result = locked.change_pin(&objects, &self.sealer, &old, &new, policy);
                self.note_guard(id, &locked);
                let vmk = result?;
                let vault = Vault::load(&objects, &vmk)?;
                Ok(self.make_resident(&mut slot, vault, &vmk, id))
            }
            VaultOp::Lock => {
                // Leave a snapshot behind if changes are only in the log, so the next load
                // replays nothing. Not required for durability (the log has everything).
                if let Slot::Resident { vault, .. } = &mut *slot
                    && vault.has_unsnapshotted_changes()
                {
                    let _ = vault.snapshot(&objects);
                }
                *slot = Slot::Cold;
                self.bump_opening(id);
                Ok(EnclaveReply::Locked)
            }
            VaultOp::Put { key, value } => {
                if key.is_empty() || key.len() > 256 || value.len() > MAX_VALUE {
                    return Err(VaultError::BadRequest(
                        "key must be 1-256 bytes and value at most 1 MiB".into(),
                    ));
                }
                let result = {
                    let vault = self.resident(&mut slot, &objects)?;
                    vault.write(
                        &objects,
                        vec![Statement {
                            sql: "INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value".into(),
                            params: vec![SqlValue::Text(key), SqlValue::Blob(value)],
                        }],
                    )
                };
                match result {
                    Ok(signed) => Ok(EnclaveReply::Written(signed)),
                    Err(VaultError::Conflict) => {
                        // Our copy is stale: drop it; the next operation reloads from storage.
                        if let Slot::Resident { wrapped, .. } = &mut *slot {
                            *slot = Slot::Evicted {
                                wrapped: std::mem::take(wrapped),
                            };
                        }
                        Err(VaultError::Conflict)
                    }
                    Err(e) => Err(e),
                }
            }
            VaultOp::Get { key } => {
                let vault = self.resident(&mut slot, &objects)?;
                Ok(EnclaveReply::Value(vault.get(&key)?))
            }
            VaultOp::Status => {
                let residency = match &*slot {
                    Slot::Resident { .. } => Residency::Resident,
                    Slot::Evicted { .. } => Residency::Evicted,
                    Slot::Cold => Residency::Locked,
                };
                // Reading the guard needs no hold on the vault: let it be used (and evicted).
                drop(slot);
                let locked = self.open_locked(&objects)?;
                let failures = locked.failures();
                Ok(EnclaveReply::Status {
                    residency,
                    failed_attempts: failures,
                    attempts_left: if locked.locked_out() {
                        0
                    } else {
                        policy.max_failures.saturating_sub(failures)
                    },
                })
            }
        }
    }

    /// Work after an acknowledged write: snapshot and compact if due. Errors are not fatal
    /// (the log still holds everything) and are retried after the next write.
    pub fn maintain(&self, id: &str) {
        let objects = Objects::new(&self.link, id);
        // Only vaults that have a slot (never make one for a name someone merely sent).
        let Some(slot) = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
        else {
            return;
        };
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Slot::Resident { vault, .. } = &mut *slot
            && vault.wants_snapshot(self.config.snapshot_every)
        {
            let _ = vault.snapshot(&objects);
        }
    }

    /// Evicts vaults idle longer than the timeout, then the least recently used beyond the
    /// budget. Busy vaults (locked by a worker) are skipped.
    pub fn evict_idle(&self) -> usize {
        let slots: Vec<(String, Arc<Mutex<Slot>>)> = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut resident: Vec<(Instant, u64, Arc<Mutex<Slot>>)> = Vec::new();
        let mut evicted = 0;
        for (_, slot) in &slots {
            let Ok(mut guard) = slot.try_lock() else {
                continue;
            };
            if let Slot::Resident {
                last_used,
                wrapped,
                vault,
            } = &mut *guard
            {
                if last_used.elapsed() >= self.config.idle {
                    *guard = Slot::Evicted {
                        wrapped: std::mem::take(wrapped),
                    };
                    evicted += 1;
                } else {
                    resident.push((*last_used, vault.db_bytes(), slot.clone()));
                }
            }
        }
        // Oldest first: evict while over the count or the byte budget.
        resident.sort_by_key(|(t, _, _)| *t);
        let mut count = resident.len();
        let mut bytes: u64 = resident.iter().map(|(_, b, _)| b).sum();
        for (_, size, slot) in resident {
            if count <= self.config.max_resident && bytes <= self.config.memory_budget {
                break;
            }
            let Ok(mut guard) = slot.try_lock() else {
                continue;
            };
            if let Slot::Resident { wrapped, .. } = &mut *guard {
                *guard = Slot::Evicted {
                    wrapped: std::mem::take(wrapped),
                };
                evicted += 1;
                count -= 1;
                bytes = bytes.saturating_sub(size);
            }
        }
        evicted
    }
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
    /// The opening number of this unlock (see [`Manager::opening`]).
    pub opening: u64,
}

/// Operations of the app's session (see `session.rs`), on top of the engine above.
impl Manager {
    /// Creates vault `id` under `pin` with `device` registered and a credential around
    /// `verifier`, and leaves it unlocked. `AlreadyExists` if the vault exists.
    pub fn enroll(
        &self,
        id: &str,
        pin: &[u8],
        verifier: &[u8; 32],
        device: [u8; 32],
        device_name: &str,
        now_ms: u64,
    ) -> Result<Enrollment, VaultError> {
        check_pin(pin)?;
        if device_name.is_empty() || device_name.len() > 64 {
            return Err(VaultError::BadRequest(
                "device name must be 1-64 bytes".into(),
            ));
        }
        let objects = Objects::new(&self.link, id);
        let slot = self.slot(id);
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        let policy = &self.config.policy;
        let (vmk, mut vault) = match keys::create(&objects, &self.sealer, pin, policy, vec![device])
        {
            Ok(vmk) => {
                self.devices
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id.to_owned(), vec![device]);
                let vault = Vault::create(&objects, &vmk)?;
                (vmk, vault)
            }
            // An enrollment cut short after its keys were written may be completed by the same
            // (only) device with the same PIN (counted like any unlock), if it made no
            // credential yet. Anything else stays `AlreadyExists`.
            Err(VaultError::AlreadyExists) => {
                let mut locked = self.open_locked(&objects)?;
                if locked.devices() != [device] {
                    return Err(VaultError::AlreadyExists);
                }
                let result = locked.unlock(&objects, pin, policy);
                self.note_guard(id, &locked);
                let vmk = result?;
                let vault = Vault::load(&objects, &vmk)?;
                if vault.meta("credential/key")?.is_some() {
                    return Err(VaultError::AlreadyExists);
                }
                (vmk, vault)
            }
            Err(e) => return Err(e),
        };
        let cek = SecretBytes::<32>::random();
        let credential = crate::credential::seal(id, 1, &cek, verifier, now_ms);
        let meta = "INSERT INTO meta (key, value) VALUES (?1, ?2)";
        let version = vault.write(
            &objects,
            vec![
                Statement {
                    sql: meta.into(),
                    params: vec![
                        SqlValue::Text("credential/key".into()),
                        SqlValue::Blob(cek.expose().to_vec()),
                    ],
                },
                Statement {
                    sql: meta.into(),
                    params: vec![
                        SqlValue::Text("credential/generation".into()),
                        SqlValue::Blob(1u64.to_be_bytes().to_vec()),
                    ],
                },
                Statement {
                    sql: meta.into(),
                    params: vec![
                        SqlValue::Text(format!("device/{}", hex::encode(device))),
                        SqlValue::Blob(device_name.as_bytes().to_vec()),
                    ],
                },
            ],
        )?;
        let enrollment = Enrollment {
            identity: vault.identity_public_key(),
            exchange: vmk.exchange(id).public_key().to_bytes(),
            credential,
            event_key: vault.event_key().clone(),
            version,
            opening: self.bump_opening(id),
        };
        self.make_resident(&mut slot, vault, &vmk, id);
        Ok(enrollment)
    }

    /// The device keys registered with vault `id` (readable without the PIN; cached).
    fn registered_devices(&self, id: &str) -> Result<Vec<[u8; 32]>, VaultError> {
        if let Some(d) = self
            .devices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            return Ok(d.clone());
        }
        let objects = Objects::new(&self.link, id);
        Ok(self.open_locked(&objects)?.devices().to_vec())
    }

    /// Whether `device` is registered with vault `id` (constant-time comparison).
    pub fn has_device(&self, id: &str, device: &[u8; 32]) -> Result<bool, VaultError> {
        Ok(self
            .registered_devices(id)?
            .iter()
            .fold(false, |found, d| found | vettid_crypto::ct_eq(d, device)))
    }

    /// Whether vault `id` exists (a cheap listing; no key service call).
    pub fn exists(&self, id: &str) -> Result<bool, VaultError> {
        if !valid_vault_id(id) {
            return Ok(false);
        }
        Ok(!Objects::new(&self.link, id)
            .list(crate::objects::ObjectKind::Keys)?
            .is_empty())
    }

    /// The debug path (`ToEnclave::Vault`, the host's control socket) may touch only vaults
    /// that no app owns: an enrolled vault (one with a registered device) is reachable only
    /// through an attested session, so the host can neither read it nor try PINs on it.
    pub fn debug_allowed(&self, id: &str) -> Result<(), VaultError> {
        let cached = self
            .devices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(Vec::is_empty);
        let app_free = match cached {
            Some(empty) => empty,
            None if !self.exists(id)? => return Ok(()),
            None => self.registered_devices(id)?.is_empty(),
        };
        if app_free {
            Ok(())
        } else {
            Err(VaultError::BadRequest(
                "this vault belongs to an app: only its attested session reaches it".into(),
            ))
        }
    }

    /// Unlocks with the PIN (counted like [`VaultOp::Unlock`]); the version and event key.
    pub fn unlock_for_app(
        &self,
        id: &str,
        pin: &[u8],
        device: &[u8; 32],
        now_ms: u64,
    ) -> Result<(SignedVersion, SecretBytes<32>), VaultError> {
        if !valid_vault_id(id) {
            return Err(VaultError::BadRequest("bad vault id".into()));
        }
        let objects = Objects::new(&self.link, id);
        let slot = self.slot(id);
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        let EnclaveReply::Open(_) = self.unlock(&mut slot, &objects, pin)? else {
            return Err(VaultError::Internal("unexpected unlock answer".into()));
        };
        let vault = self.resident(&mut slot, &objects)?;
        // The feed tells the member; events past their retention lose their content.
        let event = crate::feed::event(
            now_ms,
            vettid_proto::feed::Audience::Feed,
            "vault.unlocked",
            vettid_proto::feed::Retention::Short,
            format!("vault unlocked from device {}", hex::encode(&device[..8])),
        );
        let mut statements = vec![crate::feed::prune(now_ms)];
        statements.extend(crate::feed::append(vault, &[event])?);
        let version = vault.write(&objects, statements)?;
        Ok((version, vault.event_key().clone()))
    }

    /// Runs a secrets operation on the unlocked vault (reloaded if it was evicted).
    pub fn secrets(
        &self,
        id: &str,
        op: vettid_proto::secrets::SecretOp,
        now_ms: u64,
    ) -> Result<vettid_proto::secrets::SecretReply, VaultError> {
        self.with_unlocked(id, |vault, objects| {
            crate::secrets::handle(vault, objects, op, now_ms)
        })
    }

    /// Runs a credential operation: the password attempt is counted durably first (with the
    /// PIN's limit; at the limit the vault locks), then the blob is opened with the vault's
    /// current key and the verifier, the operation runs, and the credential is re-sealed under
    /// a new key. A right password resets the count; anything else leaves it counted.
    pub fn credential(
        &self,
        id: &str,
        blob: &[u8],
        verifier: &[u8; 32],
        op: vettid_proto::credential::CredentialOp,
        now_ms: u64,
    ) -> Result<vettid_proto::credential::CredentialReply, VaultError> {
        use crate::credential::Refused;
        // Locked (by another session) since: no attempt to count.
        self.with_unlocked(id, |_, _| Ok(()))?;
        let objects = Objects::new(&self.link, id);
        let policy = &self.config.policy;
        let mut locked = self.open_locked(&objects)?;
        let counted = locked.count_password_attempt(&objects, policy);
        self.note_guard(id, &locked);
        counted?;
        let checked = self.with_unlocked(id, |vault, objects| {
            crate::credential::check(vault, objects.vault(), blob, verifier)
        });
        let refusal = match checked {
            Ok(Ok(opened)) => {
                // A right password: the count starts over before anything else can fail, and
                // before the key changes (so a failure here leaves the blob good).
                let reset = locked.password_ok(&objects, policy);
                self.note_guard(id, &locked);
                reset?;
                self.refuse_rolled_back_credential(id)?;
                let (result, blob, version) = self.with_unlocked(id, |vault, objects| {
                    crate::credential::apply(vault, objects, opened, op, now_ms)
                })?;
                self.credential_generations
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id.to_owned(), version.version);
                return Ok(vettid_proto::credential::CredentialReply {
                    result,
                    blob,
                    version,
                });
            }
            Ok(Err(Refused::WrongPassword)) => VaultError::WrongPassword {
                attempts_left: locked.password_attempts_left(policy),
            },
            Ok(Err(Refused::Stale)) => VaultError::BadRequest(
                "this credential blob is not the current one (each blob is good for one use)"
                    .into(),
            ),
            Err(e) => e,
        };
        // Not a right password: the attempt stays counted; at the limit the vault closes
        // until recovery.
        if locked.locked_out() {
            self.handle(id, VaultOp::Lock)?;
            return Err(VaultError::LockedOut);
        }
        Err(refusal)
    }

    /// The credential of vault `id` was last rotated at vault version `seen` in this enclave
    /// instance; a credential from an older state (storage rolled back to revive an old blob)
    /// is refused.
    fn refuse_rolled_back_credential(&self, id: &str) -> Result<(), VaultError> {
        let seen = self
            .credential_generations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied();
        let now = self.with_unlocked(id, |vault, _| Ok(vault.version()))?;
        if seen.is_some_and(|seen| now < seen) {
            return Err(VaultError::Tampered("vault state rolled back".into()));
        }
        Ok(())
    }

    /// Runs a domain handler on the unlocked vault `id` (reloaded if it was evicted). A write
    /// fenced by a newer writer drops this enclave's copy; the next operation reloads.
    pub fn with_unlocked<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Vault, &Objects<'_>) -> Result<T, VaultError>,
    ) -> Result<T, VaultError> {
        let objects = Objects::new(&self.link, id);
        let slot = self.slot(id);
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        let result = {
            let vault = self.resident(&mut slot, &objects)?;
            f(vault, &objects)
        };
        if matches!(result, Err(VaultError::Conflict))
            && let Slot::Resident { wrapped, .. } = &mut *slot
        {
            // Fenced by a newer writer: drop our copy; the next operation reloads.
            *slot = Slot::Evicted {
                wrapped: std::mem::take(wrapped),
            };
        }
        result
    }

    /// Locks; the event key if the vault was open (to tell the apps).
    pub fn lock_for_app(&self, id: &str) -> Result<Option<SecretBytes<32>>, VaultError> {
        let objects = Objects::new(&self.link, id);
        let key = {
            let slot = self.slot(id);
            let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
            self.resident(&mut slot, &objects)
                .ok()
                .map(|v| v.event_key().clone())
        };
        self.handle(id, VaultOp::Lock)?;
        Ok(key)
    }

    /// Residency, guess-limit state and (when unlocked) the signed version.
    pub fn status_for_app(&self, id: &str) -> Result<vettid_proto::session::AppReply, VaultError> {
        let EnclaveReply::Status {
            residency,
            attempts_left,
            ..
        } = self.handle(id, VaultOp::Status)?
        else {
            return Err(VaultError::Internal("unexpected status answer".into()));
        };
        let unlocked = residency != Residency::Locked;
        let version = if unlocked { self.whoami(id)?.1 } else { None };
        Ok(vettid_proto::session::AppReply::Status {
            unlocked,
            attempts_left,
            version,
        })
    }

    /// The identity key and, when unlocked (resident or reloadable), the signed version. Warm
    /// path: no storage access when the vault is resident.
    pub fn whoami(&self, id: &str) -> Result<([u8; 32], Option<SignedVersion>), VaultError> {
        let objects = Objects::new(&self.link, id);
        {
            let slot = self.slot(id);
            let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
            if let Ok(vault) = self.resident(&mut slot, &objects) {
                return Ok((vault.identity_public_key(), Some(vault.signed_version(id))));
            }
        }
        let locked = self.open_locked(&objects)?;
        let identity = locked
            .identity()
            .try_into()
            .map_err(|_| VaultError::Tampered("identity key length".into()))?;
        Ok((identity, None))
    }
}

fn check_pin(pin: &[u8]) -> Result<(), VaultError> {
    if (4..=64).contains(&pin.len()) {
        Ok(())
    } else {
        Err(VaultError::BadRequest("PIN must be 4 to 64 bytes".into()))
    }
}
