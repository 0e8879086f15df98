//! The key hierarchy of a vault (DESIGN.md §5) and its guess limit.
//!
//! ```text
//! S   = 32 random bytes per vault, sealed to the enclave measurement (only an enclave opens it)
//! KEK = HKDF("vault/kek", Argon2id(PIN, salt) ‖ S, vault id)
//! VMK = 32 random bytes, stored only as AEAD(KEK, VMK)             ← a PIN change re-wraps this
//! storage key, identity (Ed25519), exchange (X25519) = HKDF(VMK, label, vault id)
//! guard key, keys-record key = HKDF(S, label, vault id)             ← usable before the PIN
//! ```
//!
//! Knowing the PIN without an enclave gives nothing (S is sealed); the stored bytes without the
//! PIN give nothing (Argon2id + AEAD). Wrong PINs are counted in guard objects written *before*
//! the answer leaves the enclave.

use crate::objects::{ObjectKind, Objects, decode, encode};
use serde::{Deserialize, Serialize};
use vettid_attest::seal::Sealer;
use vettid_crypto::aead::AeadKey;
use vettid_crypto::password::{Bounds, Cost, Stretch};
use vettid_crypto::sign::SigningKey;
use vettid_crypto::{Label, SecretBytes};
use vettid_proto::enclave::VaultError;
use zeroize::Zeroizing;

const KEK: Label = Label::new("vault/kek");
const STORAGE: Label = Label::new("vault/storage");
const IDENTITY: Label = Label::new("vault/identity");
const EXCHANGE: Label = Label::new("vault/exchange");
const RECORD: Label = Label::new("vault/keys-record");
const GUARD: Label = Label::new("vault/guard");
const EVENTS: Label = Label::new("vault/app-events");
const RECOVERY_KEK: Label = Label::new("vault/recovery-kek");
const SEAL_CONTEXT: &[u8] = b"vettid/v1/vault-secret\0";

/// Bytes of entropy in a recovery phrase (12 BIP-39 words in the app).
pub const RECOVERY_BYTES: usize = vettid_proto::session::RECOVERY_BYTES;

/// How many wrong PINs lock a vault, and how hard PINs are stretched. It comes from the
/// enclave's *measured* configuration (never from the host), and each vault's keys record
/// keeps the limit it was created with: a later enclave applies the stricter of the two, and
/// a PIN change never stretches less than before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Wrong PINs in a row before the vault locks (default 10).
    pub max_failures: u32,
    /// Argon2id cost for new and changed PINs.
    pub cost: Cost,
}

impl KeyPolicy {
    /// The strictest guess limit accepted in a configuration, and the loosest.
    pub const MAX_FAILURES: std::ops::RangeInclusive<u32> = 1..=10;
}

impl Default for KeyPolicy {
    fn default() -> Self {
        Self {
            max_failures: 10,
            cost: Cost::DEFAULT,
        }
    }
}

/// The vault master key. Everything else the vault encrypts derives from it.
pub struct MasterKey(SecretBytes<32>);

impl MasterKey {
    /// The key that encrypts the vault's log and snapshots.
    pub fn storage_key(&self, vault: &str) -> AeadKey {
        STORAGE
            .derive(self.0.expose(), b"", vault.as_bytes())
            .into()
    }

    /// The vault's Ed25519 identity.
    pub fn identity(&self, vault: &str) -> SigningKey {
        SigningKey::from_seed(&IDENTITY.derive(self.0.expose(), b"", vault.as_bytes()))
    }

    /// The vault's X25519 exchange key (for peer vaults and services).
    pub fn exchange(&self, vault: &str) -> vettid_crypto::agree::ExchangeSecret {
        vettid_crypto::agree::ExchangeSecret::from_bytes(&EXCHANGE.derive(
            self.0.expose(),
            b"",
            vault.as_bytes(),
        ))
    }

    /// The key that seals the vault's events for its apps (given to them at unlock).
    pub fn event_key(&self, vault: &str) -> SecretBytes<32> {
        EVENTS.derive(self.0.expose(), b"", vault.as_bytes())
    }

    /// A fixed key (unit tests).
    #[cfg(test)]
    pub(crate) fn for_tests(bytes: [u8; 32]) -> MasterKey {
        MasterKey(SecretBytes::from_array(bytes))
    }

    /// Wraps this key for keeping while the vault is evicted (see the manager).
    pub fn wrap(&self, key: &AeadKey, vault: &str) -> Vec<u8> {
        key.seal(
            &[b"vettid/v1/evicted\0", vault.as_bytes()].concat(),
            self.0.expose(),
        )
    }

    /// Reverses [`Self::wrap`].
    pub fn unwrap(key: &AeadKey, vault: &str, wrapped: &[u8]) -> Option<MasterKey> {
        let bytes = key
            .open(
                &[b"vettid/v1/evicted\0", vault.as_bytes()].concat(),
                wrapped,
            )
            .ok()?;
        SecretBytes::try_from_slice(&bytes).map(MasterKey)
    }
}

#[derive(Serialize, Deserialize)]
struct KeysOuter {
    format: u8,
    #[serde(with = "serde_bytes")]
    sealed_secret: Vec<u8>,
    #[serde(with = "serde_bytes")]
    inner: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct KeysInner {
    phc: String,
    #[serde(with = "serde_bytes")]
    wrapped_vmk: Vec<u8>,
    #[serde(with = "serde_bytes")]
    identity: Vec<u8>,
    /// Static Noise keys of the member's registered devices: only these may open a session
    /// (and so try a PIN) on this vault.
    devices: Vec<[u8; 32]>,
    /// The guess limit this vault was created under: no later enclave may loosen it.
    max_failures: u32,
    /// The master key wrapped a second time, under a key stretched from the recovery phrase
    /// and S (apps' vaults; the debug path's have none). Carried from generation to generation.
    recovery: Option<RecoveryWrap>,
}

/// The VMK under `HKDF(Argon2id(phrase) ‖ S)`; its associated data names the vault, not a
/// generation, so that it carries over when the PIN changes.
#[derive(Serialize, Deserialize, Clone)]
struct RecoveryWrap {
    phc: String,
    #[serde(with = "serde_bytes")]
    wrapped_vmk: Vec<u8>,
}

/// What a member proves in staged recovery ([`LockedVault::recover`]).
#[derive(Clone, Copy)]
pub enum RecoveryProof<'a> {
    /// The PIN, kept.
    Pin(&'a [u8]),
    /// The recovery phrase, and the PIN from now on.
    Phrase {
        /// The phrase's entropy.
        phrase: &'a [u8; RECOVERY_BYTES],
        /// The new PIN.
        new_pin: &'a [u8],
    },
}

/// Format 3, before recovery phrases: read, never written.
#[derive(Deserialize)]
struct KeysInnerV3 {
    phc: String,
    #[serde(with = "serde_bytes")]
    wrapped_vmk: Vec<u8>,
    #[serde(with = "serde_bytes")]
    identity: Vec<u8>,
    devices: Vec<[u8; 32]>,
    max_failures: u32,
}

/// The keys object's format (4: with the recovery wrap).
const KEYS_FORMAT: u8 = 4;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
struct GuardState {
    /// Consecutive wrong PINs.
    failures: u32,
    locked: bool,
    /// Consecutive wrong passwords (credential operations), under the same limit.
    password_failures: u32,
    /// Consecutive wrong recovery phrases in staged recovery, under the same limit; they are
    /// counted even in a vault the PINs locked (the phrase is the way back into it).
    recovery_failures: u32,
    /// When an enrolled device last unlocked the vault (the enclave's request time, ms): a
    /// recovery to a new device waits until this is the recovery delay in the past.
    last_device_unlock_ms: u64,
}

/// The guard record before staged recovery: read, never written.
#[derive(Deserialize)]
struct GuardStateV1 {
    failures: u32,
    locked: bool,
    password_failures: u32,
}

impl GuardState {
    /// Decodes either format (each decodes only exactly, so one of them at most).
    fn decode(bytes: &[u8]) -> Result<GuardState, VaultError> {
        decode::<GuardState>(bytes, "guard record").or_else(|_| {
            decode::<GuardStateV1>(bytes, "guard record").map(|v1| GuardState {
                failures: v1.failures,
                locked: v1.locked,
                password_failures: v1.password_failures,
                ..GuardState::default()
            })
        })
    }
}

/// A vault whose sealed secret is open but whose master key is not: what the enclave holds
/// before the PIN. `unlock` turns it into a [`MasterKey`] or counts a failure.
pub struct LockedVault {
    secret: SecretBytes<32>,
    generation: u64,
    inner: KeysInner,
    guard_seq: u64,
    guard: GuardState,
}

fn kek(pin_key: &SecretBytes<32>, secret: &SecretBytes<32>, vault: &str) -> AeadKey {
    let ikm = Zeroizing::new([&pin_key.expose()[..], &secret.expose()[..]].concat());
    KEK.derive(&ikm, b"", vault.as_bytes()).into()
}

fn kek_aad(vault: &str, generation: u64) -> Vec<u8> {
    [
        b"vettid/v1/kek\0".as_slice(),
        vault.as_bytes(),
        &generation.to_be_bytes(),
    ]
    .concat()
}

fn recovery_kek(stretched: &SecretBytes<32>, secret: &SecretBytes<32>, vault: &str) -> AeadKey {
    let ikm = Zeroizing::new([&stretched.expose()[..], &secret.expose()[..]].concat());
    RECOVERY_KEK.derive(&ikm, b"", vault.as_bytes()).into()
}

fn recovery_aad(vault: &str) -> Vec<u8> {
    [b"vettid/v1/recovery-kek\0".as_slice(), vault.as_bytes()].concat()
}

/// The recovery wrap of `vmk` under `phrase` (stretched with the vault's PIN cost).
fn wrap_for_recovery(
    phrase: &[u8; RECOVERY_BYTES],
    secret: &SecretBytes<32>,
    vmk: &MasterKey,
    vault: &str,
    policy: &KeyPolicy,
) -> Result<RecoveryWrap, VaultError> {
    let stretch = Stretch::generate(policy.cost, &Bounds::DEFAULT)
        .map_err(|e| VaultError::Internal(e.to_string()))?;
    let kek = recovery_kek(&stretch.derive(phrase), secret, vault);
    Ok(RecoveryWrap {
        phc: stretch.to_phc(),
        wrapped_vmk: kek.seal(&recovery_aad(vault), vmk.0.expose()),
    })
}

fn record_key(secret: &SecretBytes<32>, vault: &str) -> AeadKey {
    RECORD.derive(secret.expose(), b"", vault.as_bytes()).into()
}

fn guard_key(secret: &SecretBytes<32>, vault: &str) -> AeadKey {
    GUARD.derive(secret.expose(), b"", vault.as_bytes()).into()
}

/// Writes keys generation `generation` for `vmk` under `pin`.
#[allow(clippy::too_many_arguments)]
fn write_keys(
    objects: &Objects<'_>,
    sealer: &dyn Sealer,
    secret: &SecretBytes<32>,
    generation: u64,
    vmk: &MasterKey,
    pin: &[u8],
    policy: &KeyPolicy,
    devices: Vec<[u8; 32]>,
    recovery: Option<RecoveryWrap>,
) -> Result<(), VaultError> {
    let vault = objects.vault();
    let stretch = Stretch::generate(policy.cost, &Bounds::DEFAULT)
        .map_err(|e| VaultError::Internal(e.to_string()))?;
    let kek = kek(&stretch.derive(pin), secret, vault);
    let inner = KeysInner {
        phc: stretch.to_phc(),
        wrapped_vmk: kek.seal(&kek_aad(vault, generation), vmk.0.expose()),
        identity: vmk.identity(vault).verifying_key().to_bytes().to_vec(),
        devices,
        max_failures: policy.max_failures,
        recovery,
    };
    let sealed_secret = sealer
        .seal(&[SEAL_CONTEXT, vault.as_bytes()].concat(), secret.expose())
        .map_err(|e| VaultError::Sealing(e.to_string()))?;
    let outer = KeysOuter {
        format: KEYS_FORMAT,
        sealed_secret,
        inner: record_key(secret, vault)
            .seal(&objects.aad(ObjectKind::Keys, generation), &encode(&inner)),
    };
    objects.create_raw(ObjectKind::Keys, generation, encode(&outer).to_vec())
}

/// Creates a vault: a new S and VMK, keys generation 0, with `devices` registered and, when
/// given, a second wrap of the VMK under the recovery `phrase` (which is not kept).
/// `AlreadyExists` if it exists.
pub fn create(
    objects: &Objects<'_>,
    sealer: &dyn Sealer,
    pin: &[u8],
    phrase: Option<&[u8; RECOVERY_BYTES]>,
    policy: &KeyPolicy,
    devices: Vec<[u8; 32]>,
) -> Result<MasterKey, VaultError> {
    if !objects.list(ObjectKind::Keys)?.is_empty() {
        return Err(VaultError::AlreadyExists);
    }
    let secret = SecretBytes::random();
    let vmk = MasterKey(SecretBytes::random());
    let recovery = phrase
        .map(|p| wrap_for_recovery(p, &secret, &vmk, objects.vault(), policy))
        .transpose()?;
    write_keys(
        objects, sealer, &secret, 0, &vmk, pin, policy, devices, recovery,
    )
    .map_err(|e| match e {
        VaultError::Conflict => VaultError::AlreadyExists,
        e => e,
    })?;
    Ok(vmk)
}

impl LockedVault {
    /// Reads the newest keys generation and guard state and unseals S.
    pub fn open(objects: &Objects<'_>, sealer: &dyn Sealer) -> Result<Self, VaultError> {
        let vault = objects.vault();
        let generation = *objects
            .list(ObjectKind::Keys)?
            .last()
            .ok_or(VaultError::NotFound)?;
        let raw = objects
            .read_raw(ObjectKind::Keys, generation)?
            .ok_or_else(|| VaultError::Storage("keys object vanished".into()))?;
        let outer: KeysOuter = decode(&raw, "keys object")?;
        if outer.format != KEYS_FORMAT && outer.format != 3 {
            return Err(VaultError::Tampered("unknown keys format".into()));
        }
        let secret = sealer
            .unseal(
                &[SEAL_CONTEXT, vault.as_bytes()].concat(),
                &outer.sealed_secret,
            )
            .map_err(|e| match e {
                vettid_attest::seal::SealError::DecryptionFailed
                | vettid_attest::seal::SealError::Malformed(_) => {
                    VaultError::Tampered("sealed vault secret does not open".into())
                }
                e => VaultError::Sealing(e.to_string()),
            })?;
        let secret = SecretBytes::try_from_slice(&secret)
            .ok_or_else(|| VaultError::Tampered("vault secret length".into()))?;
        let inner = record_key(&secret, vault)
            .open(&objects.aad(ObjectKind::Keys, generation), &outer.inner)
            .map_err(|_| VaultError::Tampered("keys object does not authenticate".into()))?;
        let inner: KeysInner = if outer.format == 3 {
            let old: KeysInnerV3 = decode(&inner, "keys record")?;
            KeysInner {
                phc: old.phc,
                wrapped_vmk: old.wrapped_vmk,
                identity: old.identity,
                devices: old.devices,
                max_failures: old.max_failures,
                recovery: None,
            }
        } else {
            decode(&inner, "keys record")?
        };
        let (guard_seq, guard) = match objects.list(ObjectKind::Guard)?.last() {
            None => (0, GuardState::default()),
            Some(&seq) => {
                let bytes = objects
                    .read(&guard_key(&secret, vault), ObjectKind::Guard, seq)?
                    .ok_or_else(|| VaultError::Storage("guard object vanished".into()))?;
                (seq, GuardState::decode(&bytes)?)
            }
        };
        Ok(Self {
            secret,
            generation,
            inner,
            guard_seq,
            guard,
        })
    }

    /// The sequence number of the newest guard record (0: none yet).
    pub fn guard_seq(&self) -> u64 {
        self.guard_seq
    }

    /// Consecutive wrong PINs so far.
    pub fn failures(&self) -> u32 {
        self.guard.failures
    }

    /// Wrong PINs left before the vault locks, under the enclave's `policy`.
    pub fn attempts_left(&self, policy: &KeyPolicy) -> u32 {
        if self.guard.locked {
            0
        } else {
            self.effective(policy)
                .max_failures
                .saturating_sub(self.guard.failures)
        }
    }

    /// Whether the guess limit has locked the vault.
    pub fn locked_out(&self) -> bool {
        self.guard.locked
    }

    /// The keys generation (raised by every PIN change).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The registered device keys.
    pub fn devices(&self) -> &[[u8; 32]] {
        &self.inner.devices
    }

    /// The policy for this vault under the enclave's `policy`: the stricter guess limit of the
    /// two, and for new PINs a cost no lower than the current PIN's in any dimension.
    pub fn effective(&self, policy: &KeyPolicy) -> KeyPolicy {
        let cost = Stretch::from_phc(&self.inner.phc, &Bounds::DEFAULT)
            .map(|s| s.cost())
            .unwrap_or(policy.cost);
        KeyPolicy {
            max_failures: self.inner.max_failures.min(policy.max_failures).max(1),
            cost: Cost {
                memory_kib: cost.memory_kib.max(policy.cost.memory_kib),
                passes: cost.passes.max(policy.cost.passes),
                lanes: cost.lanes.max(policy.cost.lanes),
            },
        }
    }

    /// Whether `device` (a static Noise key) is registered with this vault (constant time).
    pub fn has_device(&self, device: &[u8; 32]) -> bool {
        self.inner
            .devices
            .iter()
            .fold(false, |found, d| found | vettid_crypto::ct_eq(d, device))
    }

    /// The public identity key recorded with the keys.
    pub fn identity(&self) -> &[u8] {
        &self.inner.identity
    }

    fn record_guard(&mut self, objects: &Objects<'_>, next: GuardState) -> Result<(), VaultError> {
        let seq = self
            .guard_seq
            .checked_add(1)
            .ok_or_else(|| VaultError::Tampered("guard sequence exhausted".into()))?;
        objects.create(
            &guard_key(&self.secret, objects.vault()),
            ObjectKind::Guard,
            seq,
            &encode(&next),
        )?;
        self.guard_seq = seq;
        self.guard = next;
        // Only the newest record counts; older ones are compacted (the enclave's own memory of
        // the newest sequence is what refuses a rollback). A failure leaves them for later.
        let _ = objects.delete(ObjectKind::Guard, &[seq - 1, seq.saturating_sub(2)]);
        Ok(())
    }

    /// Counts a password attempt durably, *before* the password is evaluated (like a PIN
    /// attempt); at the limit the vault locks. `LockedOut` if it is locked already.
    pub fn count_password_attempt(
        &mut self,
        objects: &Objects<'_>,
        policy: &KeyPolicy,
    ) -> Result<(), VaultError> {
        if self.guard.locked {
            return Err(VaultError::LockedOut);
        }
        let policy = &self.effective(policy);
        let password_failures = self.guard.password_failures.saturating_add(1);
        self.record_guard(
            objects,
            GuardState {
                password_failures,
                locked: password_failures >= policy.max_failures,
                ..self.guard
            },
        )
    }

    /// Wrong passwords left before the vault locks.
    pub fn password_attempts_left(&self, policy: &KeyPolicy) -> u32 {
        let policy = &self.effective(policy);
        if self.guard.locked {
            0
        } else {
            policy
                .max_failures
                .saturating_sub(self.guard.password_failures)
        }
    }

    /// A right password: its count starts over (the attempt that was just counted may have
    /// reached the limit; a right answer undoes that, as for the PIN), while a lock that wrong
    /// PINs caused stays.
    pub fn password_ok(
        &mut self,
        objects: &Objects<'_>,
        policy: &KeyPolicy,
    ) -> Result<(), VaultError> {
        let policy = &self.effective(policy);
        self.record_guard(
            objects,
            GuardState {
                password_failures: 0,
                locked: self.guard.failures >= policy.max_failures,
                ..self.guard
            },
        )
    }

    /// Checks `pin`. The attempt is counted durably *before* the PIN is even evaluated (so a
    /// host that refuses to store the count gets no answer at all, and a crash at any point
    /// leaves the attempt counted); a right PIN then resets the count. At the limit the vault
    /// locks.
    ///
    /// `device_use`: the time of an enrolled device's unlock, recorded with the reset count
    /// (what holds off a staged recovery; see [`Self::recover`]).
    pub fn unlock(
        &mut self,
        objects: &Objects<'_>,
        pin: &[u8],
        policy: &KeyPolicy,
        device_use: Option<u64>,
    ) -> Result<MasterKey, VaultError> {
        if self.guard.locked {
            return Err(VaultError::LockedOut);
        }
        let stretch = Stretch::from_phc(&self.inner.phc, &Bounds::DEFAULT)
            .map_err(|_| VaultError::Tampered("PIN parameters out of bounds".into()))?;
        let (vault, generation) = (objects.vault(), self.generation);
        let wrapped = self.inner.wrapped_vmk.clone();
        self.attempt(
            objects,
            policy,
            device_use,
            |secret| {
                kek(&stretch.derive(pin), secret, vault)
                    .open(&kek_aad(vault, generation), &wrapped)
                    .ok()
            },
            |attempts_left| VaultError::WrongPin { attempts_left },
        )
    }

    /// One attempt at the guess limit: `LockedOut` if locked; else the attempt is counted
    /// durably, *then* `open` (given S) evaluates the secret; a right one resets the count, a
    /// wrong one is `wrong(attempts left)` — or `LockedOut` at the limit.
    fn attempt(
        &mut self,
        objects: &Objects<'_>,
        policy: &KeyPolicy,
        device_use: Option<u64>,
        open: impl FnOnce(&SecretBytes<32>) -> Option<Zeroizing<Vec<u8>>>,
        wrong: impl FnOnce(u32) -> VaultError,
    ) -> Result<MasterKey, VaultError> {
        if self.guard.locked {
            return Err(VaultError::LockedOut);
        }
        let policy = self.effective(policy);
        let failures = self.guard.failures.saturating_add(1);
        self.record_guard(
            objects,
            GuardState {
                failures,
                locked: failures >= policy.max_failures,
                ..self.guard
            },
        )?;
        let Some(vmk) = open(&self.secret) else {
            return Err(if self.guard.locked {
                VaultError::LockedOut
            } else {
                wrong(policy.max_failures.saturating_sub(failures))
            });
        };
        let vmk = MasterKey(
            SecretBytes::try_from_slice(&vmk)
                .ok_or_else(|| VaultError::Tampered("master key length".into()))?,
        );
        self.record_guard(
            objects,
            GuardState {
                failures: 0,
                locked: false,
                recovery_failures: 0,
                last_device_unlock_ms: device_use.map_or(self.guard.last_device_unlock_ms, |at| {
                    at.max(self.guard.last_device_unlock_ms)
                }),
                ..self.guard
            },
        )?;
        Ok(vmk)
    }

    /// Changes the PIN: checks `old` (counted like [`Self::unlock`]), then writes a new keys
    /// generation wrapping the same master key under `new`. No data is re-encrypted.
    pub fn change_pin(
        &mut self,
        objects: &Objects<'_>,
        sealer: &dyn Sealer,
        old: &[u8],
        new: &[u8],
        policy: &KeyPolicy,
    ) -> Result<MasterKey, VaultError> {
        let vmk = self.unlock(objects, old, policy, None)?;
        self.rekey(objects, sealer, &vmk, new, policy)?;
        Ok(vmk)
    }

    /// Replaces the recovery wrap with one under a new `phrase` (an enrollment completed
    /// after its first answer was lost: the phrase that answer carried never reached the
    /// member), in a new keys generation under `pin`.
    pub fn replace_recovery(
        &mut self,
        objects: &Objects<'_>,
        sealer: &dyn Sealer,
        vmk: &MasterKey,
        pin: &[u8],
        phrase: &[u8; RECOVERY_BYTES],
        policy: &KeyPolicy,
    ) -> Result<(), VaultError> {
        let effective = self.effective(policy);
        self.inner.recovery = Some(wrap_for_recovery(
            phrase,
            &self.secret,
            vmk,
            objects.vault(),
            &effective,
        )?);
        self.rekey(objects, sealer, vmk, pin, policy)
    }

    /// Writes the next keys generation wrapping `vmk` under `pin`, keeping the devices and
    /// the recovery wrap, and reads it back.
    fn rekey(
        &mut self,
        objects: &Objects<'_>,
        sealer: &dyn Sealer,
        vmk: &MasterKey,
        pin: &[u8],
        policy: &KeyPolicy,
    ) -> Result<(), VaultError> {
        let policy = &self.effective(policy);
        let next = self
            .generation
            .checked_add(1)
            .ok_or_else(|| VaultError::Tampered("keys generation exhausted".into()))?;
        write_keys(
            objects,
            sealer,
            &self.secret,
            next,
            vmk,
            pin,
            policy,
            self.inner.devices.clone(),
            self.inner.recovery.clone(),
        )?;
        *self = LockedVault::open(objects, sealer)?;
        // A host that hides the generation just written would have the old PIN work again.
        if self.generation != next {
            return Err(VaultError::Tampered(
                "the keys generation just written is not the newest listed".into(),
            ));
        }
        Ok(())
    }

    /// Sets a new PIN with the recovery `phrase` (a member who forgot the PIN): the attempt is
    /// counted with the PIN's, durably and before the phrase is evaluated, exactly as for a
    /// PIN; a right phrase resets the count and writes a keys generation under `new_pin`. A
    /// vault locked by the guess limit stays locked (staged recovery reopens it).
    pub fn reset_pin(
        &mut self,
        objects: &Objects<'_>,
        sealer: &dyn Sealer,
        phrase: &[u8; RECOVERY_BYTES],
        new_pin: &[u8],
        policy: &KeyPolicy,
        device_use: Option<u64>,
    ) -> Result<MasterKey, VaultError> {
        if self.guard.locked {
            return Err(VaultError::LockedOut);
        }
        let vault = objects.vault();
        let open = self.phrase_opener(vault, phrase)?;
        let vmk = self.attempt(objects, policy, device_use, open, |attempts_left| {
            VaultError::WrongRecoveryPhrase { attempts_left }
        })?;
        self.rekey(objects, sealer, &vmk, new_pin, policy)?;
        Ok(vmk)
    }

    /// What opens the recovery wrap with `phrase` (given S): `NoRecoveryPhrase` if the vault
    /// has none.
    fn phrase_opener<'p>(
        &self,
        vault: &'p str,
        phrase: &'p [u8; RECOVERY_BYTES],
    ) -> Result<impl FnOnce(&SecretBytes<32>) -> Option<Zeroizing<Vec<u8>>> + 'p, VaultError> {
        let Some(wrap) = self.inner.recovery.clone() else {
            return Err(VaultError::NoRecoveryPhrase);
        };
        let stretch = Stretch::from_phc(&wrap.phc, &Bounds::DEFAULT)
            .map_err(|_| VaultError::Tampered("recovery parameters out of bounds".into()))?;
        Ok(move |secret: &SecretBytes<32>| {
            recovery_kek(&stretch.derive(phrase), secret, vault)
                .open(&recovery_aad(vault), &wrap.wrapped_vmk)
                .ok()
        })
    }

    /// Staged recovery's proof, from the new session's `device`: the master key.
    ///
    /// Refused with [`VaultError::RecentlyUsed`] — before anything is counted — while an
    /// enrolled device unlocked the vault less than `delay_ms` before `now_ms` (by the record;
    /// the manager also checks its own monotonic clock), unless `device` is already the only
    /// one registered (a retry whose answer was lost). A PIN is counted as in
    /// [`Self::unlock`] and refused in a locked vault. A phrase is counted durably *before* it
    /// is evaluated against its own limit (`recovery_failures`), also in a locked vault, which
    /// it reopens: a right phrase clears every count and the lock. Nothing is re-keyed yet:
    /// see [`Self::rekey_to_device`].
    pub fn prove_for_recovery(
        &mut self,
        objects: &Objects<'_>,
        proof: RecoveryProof<'_>,
        device: &[u8; 32],
        policy: &KeyPolicy,
        delay_ms: u64,
        now_ms: u64,
    ) -> Result<MasterKey, VaultError> {
        let sole = self.inner.devices.len() == 1 && self.has_device(device);
        if !sole && now_ms.saturating_sub(self.guard.last_device_unlock_ms) < delay_ms {
            return Err(VaultError::RecentlyUsed);
        }
        match proof {
            RecoveryProof::Pin(pin) => self.unlock(objects, pin, policy, None),
            RecoveryProof::Phrase { phrase, .. } => {
                self.recover_with_phrase(objects, phrase, policy)
            }
        }
    }

    /// Writes the next keys generation wrapping `vmk` under `pin`, with `device` the only
    /// registered device (staged recovery, after the vault's own records were written).
    pub fn rekey_to_device(
        &mut self,
        objects: &Objects<'_>,
        sealer: &dyn Sealer,
        vmk: &MasterKey,
        pin: &[u8],
        device: [u8; 32],
        policy: &KeyPolicy,
    ) -> Result<(), VaultError> {
        self.inner.devices = vec![device];
        self.rekey(objects, sealer, vmk, pin, policy)
    }

    /// Writes the next keys generation wrapping `vmk` under `pin` with `devices` the
    /// registered devices (a device added or removed, after the vault's own records).
    pub fn set_devices(
        &mut self,
        objects: &Objects<'_>,
        sealer: &dyn Sealer,
        vmk: &MasterKey,
        pin: &[u8],
        devices: Vec<[u8; 32]>,
        policy: &KeyPolicy,
    ) -> Result<(), VaultError> {
        self.inner.devices = devices;
        self.rekey(objects, sealer, vmk, pin, policy)
    }

    /// Records a use of the vault by a registered device at `at_ms` (enrollment, recovery):
    /// a later recovery to another device waits the delay from it.
    pub fn note_device_use(&mut self, objects: &Objects<'_>, at_ms: u64) -> Result<(), VaultError> {
        self.record_guard(
            objects,
            GuardState {
                last_device_unlock_ms: at_ms.max(self.guard.last_device_unlock_ms),
                ..self.guard
            },
        )
    }

    /// One phrase attempt of staged recovery, counted against its own limit.
    fn recover_with_phrase(
        &mut self,
        objects: &Objects<'_>,
        phrase: &[u8; RECOVERY_BYTES],
        policy: &KeyPolicy,
    ) -> Result<MasterKey, VaultError> {
        let limit = self.effective(policy).max_failures;
        if self.guard.recovery_failures >= limit {
            return Err(VaultError::LockedOut);
        }
        let open = self.phrase_opener(objects.vault(), phrase)?;
        let recovery_failures = self.guard.recovery_failures.saturating_add(1);
        self.record_guard(
            objects,
            GuardState {
                recovery_failures,
                ..self.guard
            },
        )?;
        let Some(vmk) = open(&self.secret) else {
            return Err(if recovery_failures >= limit {
                VaultError::LockedOut
            } else {
                VaultError::WrongRecoveryPhrase {
                    attempts_left: limit - recovery_failures,
                }
            });
        };
        let vmk = MasterKey(
            SecretBytes::try_from_slice(&vmk)
                .ok_or_else(|| VaultError::Tampered("master key length".into()))?,
        );
        self.record_guard(
            objects,
            GuardState {
                last_device_unlock_ms: self.guard.last_device_unlock_ms,
                ..GuardState::default()
            },
        )?;
        Ok(vmk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_records_of_the_first_format_still_read_and_garbage_is_tampering() {
        #[derive(Serialize)]
        struct V1 {
            failures: u32,
            locked: bool,
            password_failures: u32,
        }
        let old = encode(&V1 {
            failures: 3,
            locked: false,
            password_failures: 1,
        });
        assert_eq!(
            GuardState::decode(&old).unwrap(),
            GuardState {
                failures: 3,
                password_failures: 1,
                ..GuardState::default()
            }
        );
        let new = GuardState {
            recovery_failures: 2,
            last_device_unlock_ms: 1 << 40,
            ..GuardState::default()
        };
        assert_eq!(GuardState::decode(&encode(&new)).unwrap(), new);
        let mut trailing = encode(&new).to_vec();
        trailing.push(0);
        assert!(matches!(
            GuardState::decode(&trailing),
            Err(VaultError::Tampered(_))
        ));
    }

    #[test]
    fn derived_keys_are_distinct_per_purpose_and_vault_and_stable() {
        let vmk = MasterKey(SecretBytes::from_array([3; 32]));
        let other = MasterKey(SecretBytes::from_array([4; 32]));
        assert_eq!(
            vmk.identity("a").verifying_key(),
            vmk.identity("a").verifying_key()
        );
        assert_ne!(
            vmk.identity("a").verifying_key(),
            vmk.identity("b").verifying_key()
        );
        assert_ne!(
            vmk.identity("a").verifying_key(),
            other.identity("a").verifying_key()
        );
        assert_eq!(
            vmk.exchange("a").public_key(),
            vmk.exchange("a").public_key()
        );
        assert_ne!(
            vmk.exchange("a").public_key(),
            vmk.exchange("b").public_key()
        );
        assert_ne!(vmk.storage_key("a"), vmk.storage_key("b"));
        assert_ne!(
            vmk.storage_key("a").expose(),
            &vmk.identity("a").to_seed().expose().clone()
        );
    }

    #[test]
    fn a_vault_keeps_the_guess_limit_and_stretching_it_was_created_with() {
        use crate::harness::{TestSealer, fast, host};
        let (link, _store) = host();
        let objects = Objects::new(&link, "v");
        let sealer = TestSealer::new();
        let strict = KeyPolicy {
            cost: Cost {
                passes: 3,
                ..fast(3).cost
            },
            ..fast(3)
        };
        create(&objects, &sealer, b"1111", None, &strict, Vec::new()).unwrap();
        // A later enclave with a looser policy: the vault's own limit and cost hold.
        let loose = fast(10);
        let mut locked = LockedVault::open(&objects, &sealer).unwrap();
        assert_eq!(locked.attempts_left(&loose), 3);
        assert_eq!(locked.effective(&loose).cost.passes, 3);
        for left in [2, 1] {
            assert_eq!(
                locked.unlock(&objects, b"0000", &loose, None).err(),
                Some(VaultError::WrongPin {
                    attempts_left: left
                })
            );
        }
        assert_eq!(
            locked.unlock(&objects, b"0000", &loose, None).err(),
            Some(VaultError::LockedOut)
        );
        assert_eq!(
            locked.unlock(&objects, b"1111", &loose, None).err(),
            Some(VaultError::LockedOut)
        );
    }

    #[test]
    fn evicted_keys_unwrap_only_with_the_instance_key_and_vault() {
        let vmk = MasterKey(SecretBytes::from_array([5; 32]));
        let instance = AeadKey::generate();
        let wrapped = vmk.wrap(&instance, "a");
        assert!(MasterKey::unwrap(&instance, "a", &wrapped).is_some());
        assert!(MasterKey::unwrap(&instance, "b", &wrapped).is_none());
        assert!(MasterKey::unwrap(&AeadKey::generate(), "a", &wrapped).is_none());
    }
}
