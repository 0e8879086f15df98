//! An unlocked vault: an in-memory SQLite database, persisted as an encrypted change log plus
//! periodic encrypted snapshots, with writers fenced by epochs.
//!
//! **Write** (version v+1): apply the statements in a transaction; create `log/v+1`
//! (create-only: if the name exists another writer got there, `Conflict`); check that no newer
//! epoch than ours exists (else `Conflict`: a newer writer may not see this entry); commit;
//! acknowledge with a [`SignedVersion`]. Cost: one object the size of the change.
//!
//! **Load**: claim epoch e+1 (create-only), open the newest snapshot, replay the log entries
//! after it — contiguous, each chaining the previous entry's hash. A gap, a broken chain or an
//! object that does not authenticate is `Tampered`. (Each entry also carries the vault
//! identity's signature over its version, which is what apps check against rollback.)
//!
//! **Compaction** (after the acknowledgement, see [`Vault::wants_snapshot`]): write `hist/v`
//! (the statement digests of the versions it compacts), then `snap/v`, then delete older log
//! entries and snapshots. Epochs are compacted at load: a writer's fence is "a newer epoch is
//! listed", so only the newest needs to stay.
//!
//! **History**: version `n`'s hash is `H(n, hash(n-1), digest(statements of n))`. From the
//! digests after version `v` anyone who knows `v`'s hash can recompute the head's: that is how
//! the vault checks, against a host that controls storage, that what it loads *extends*
//! whatever it (or an app that showed it a signed version) has seen ([`Vault::extends`]).

use crate::keys::MasterKey;
use crate::objects::{ObjectKind, Objects, decode, encode};
use rusqlite::{Connection, MAIN_DB};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vettid_crypto::SecretBytes;
use vettid_crypto::aead::AeadKey;
use vettid_crypto::sign::SigningKey;
use vettid_proto::enclave::{SignedVersion, VaultError};

/// Log entries between snapshots at most, by default.
pub const SNAPSHOT_EVERY: u64 = 256;
/// Log bytes between snapshots at most.
pub const SNAPSHOT_BYTES: u64 = 8 * 1024 * 1024;

/// A state of the vault's history: a version and its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The version (one per acknowledged write).
    pub version: u64,
    /// Its hash (chains every change before it).
    pub hash: [u8; 32],
}

/// Per-vault limits of the enclave's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of database in use at most: a write that grows it beyond is `QuotaExceeded`.
    pub vault_bytes: u64,
    /// Versions kept per secret item (older ones are dropped as new ones come).
    pub versions_per_item: u32,
    /// Feed and audit events kept (older ones are dropped as new ones come).
    pub feed_rows: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            vault_bytes: 64 << 20,
            versions_per_item: 32,
            feed_rows: 10_000,
        }
    }
}

/// One schema change, numbered in the one sequence of all migrations (`PRAGMA user_version`
/// records how many ran, so a vault only ever runs the ones after it).
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its place in the sequence, from 1: unique, and never reused or moved once shipped.
    pub seq: u32,
    /// The SQL (statements separated by `;`, none inside a literal).
    pub sql: &'static str,
}

/// The engine's own tables. Tables holding large values keep their rowid: in a `WITHOUT
/// ROWID` table an upsert cost 380 µs in a 100 MiB database against 3.4 µs with a rowid
/// (measured here). Domains' tables come from the registry (`domains.rs`), never from here.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        seq: 1,
        sql: "CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL);",
    },
    // Vault-internal settings: credential key and generation, device names.
    Migration {
        seq: 2,
        sql: "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);",
    },
];

/// The whole schema in order, as the registry assembles it: the engine runs what a vault has
/// not run yet and knows nothing of the domains behind it.
pub type Schema = &'static [&'static str];

/// A value in a logged SQL statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SqlValue {
    /// NULL.
    Null,
    /// INTEGER.
    Int(i64),
    /// TEXT.
    Text(String),
    /// BLOB.
    Blob(#[serde(with = "serde_bytes")] Vec<u8>),
}

impl Statement {
    /// Bytes its parameters carry (text and blobs; 8 per other value).
    pub fn param_bytes(&self) -> usize {
        self.params
            .iter()
            .map(|p| match p {
                SqlValue::Text(t) => t.len(),
                SqlValue::Blob(b) => b.len(),
                SqlValue::Null | SqlValue::Int(_) => 8,
            })
            .sum()
    }
}

impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            SqlValue::Null => ValueRef::Null,
            SqlValue::Int(i) => ValueRef::Integer(*i),
            SqlValue::Text(s) => ValueRef::Text(s.as_bytes()),
            SqlValue::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// One statement of a change. Changes are replayed on load, so statements must be
/// deterministic (no `random()`, no `CURRENT_TIMESTAMP`: timestamps come in as values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// SQL text.
    pub sql: String,
    /// Its parameters.
    pub params: Vec<SqlValue>,
}

#[derive(Serialize, Deserialize)]
struct LogEntry {
    #[serde(with = "serde_bytes")]
    prev_hash: Vec<u8>,
    statements: Vec<Statement>,
    #[serde(with = "serde_bytes")]
    signature: Vec<u8>,
}

/// Snapshot chunks are at most this large, so every object fits a channel frame.
const CHUNK: usize = 8 * 1024 * 1024;

/// The statement digests of versions `from ..= from + digests.len() - 1`.
#[derive(Serialize, Deserialize)]
struct History {
    from: u64,
    digests: Vec<[u8; 32]>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotManifest {
    #[serde(with = "serde_bytes")]
    hash: Vec<u8>,
    /// Random per snapshot attempt, repeated in every chunk: chunks of an abandoned attempt
    /// at the same version can never be mixed in.
    #[serde(with = "serde_bytes")]
    id: Vec<u8>,
    chunks: u32,
    len: u64,
}

/// Length of a snapshot attempt's id, which starts every chunk's plaintext (raw bytes, not
/// CBOR: chunks are large, and copying beats parsing).
const SNAPSHOT_ID: usize = 16;

fn chunk_number(version: u64, index: u32) -> u64 {
    (version << 16) | u64::from(index)
}

fn sql_err(e: rusqlite::Error) -> VaultError {
    VaultError::Internal(format!("database: {e}"))
}

/// Bytes of the database's pages in use (free pages excluded).
fn used_bytes(conn: &Connection) -> u64 {
    let pragma = |name: &str| -> i64 {
        conn.pragma_query_value(None, name, |r| r.get(0))
            .unwrap_or(0)
    };
    let pages = pragma("page_count") - pragma("freelist_count");
    (pages.max(0) as u64) * (pragma("page_size").max(0) as u64)
}

/// An unlocked vault in memory: open (`Vault`, its database a SQLite connection) or at rest
/// (`Vault<Image>`, see [`Vault::rest`]).
pub struct Vault<D = Connection> {
    conn: D,
    key: AeadKey,
    identity: SigningKey,
    /// The identity's public key (deriving it costs a scalar multiplication: done once).
    identity_public: [u8; 32],
    /// The signature of the current version, made once per version.
    signed: Option<SignedVersion>,
    event_key: SecretBytes<32>,
    /// The vault's X25519 exchange secret: its Noise static key towards other vaults.
    exchange: SecretBytes<32>,
    epoch: u64,
    version: u64,
    hash: [u8; 32],
    snapshot_version: u64,
    log_bytes: u64,
    /// Statement digests of the versions after the newest snapshot (for its history object).
    tail: Vec<[u8; 32]>,
    limits: Limits,
    /// While a group is open ([`Vault::begin_group`]): the statements its writes staged, in
    /// order, inside one open SQLite transaction.
    staged: Option<Vec<Statement>>,
}

/// The digest of one change's encoded statements.
fn statements_digest(statements: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"vettid/v1/change-statements\0")
        .chain_update(statements)
        .finalize()
        .into()
}

/// Version `version`'s hash: it chains the previous hash and the change's statement digest.
pub fn change_hash(vault: &str, version: u64, prev: &[u8; 32], digest: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"vettid/v1/change\0")
        .chain_update(vault.as_bytes())
        .chain_update([0])
        .chain_update(version.to_be_bytes())
        .chain_update(prev)
        .chain_update(digest)
        .finalize()
        .into()
}

/// What the vault identity signs for a state version.
pub fn version_message(vault: &str, version: u64, hash: &[u8; 32]) -> Vec<u8> {
    [
        b"vettid/v1/state-version\0".as_slice(),
        vault.as_bytes(),
        &[0],
        &version.to_be_bytes(),
        hash,
    ]
    .concat()
}

/// Deleted rows and erased keys are overwritten with zeros in the database's pages, so no
/// snapshot carries them in its free space.
fn secure_delete(conn: &Connection) -> Result<(), VaultError> {
    conn.pragma_update(None, "secure_delete", true)
        .map_err(sql_err)
}

impl Vault {
    /// Creates the first snapshot (version 0, schema applied) of a new vault.
    pub fn create(
        objects: &Objects<'_>,
        vmk: &MasterKey,
        limits: Limits,
        schema: Schema,
    ) -> Result<Vault, VaultError> {
        let conn = Connection::open_in_memory().map_err(sql_err)?;
        secure_delete(&conn)?;
        for (i, m) in schema.iter().enumerate() {
            conn.execute_batch(m).map_err(sql_err)?;
            conn.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(sql_err)?;
        }
        let mut v = Vault::claim(objects, vmk, conn, limits)?;
        v.snapshot(objects)?;
        Ok(v)
    }

    /// A vault at version 0 over `conn`, holding a freshly claimed epoch.
    fn claim(
        objects: &Objects<'_>,
        vmk: &MasterKey,
        conn: Connection,
        limits: Limits,
    ) -> Result<Vault, VaultError> {
        let vault = objects.vault();
        let mut v = Vault {
            conn,
            key: vmk.storage_key(vault),
            identity: vmk.identity(vault),
            identity_public: vmk.identity(vault).verifying_key().to_bytes(),
            signed: None,
            event_key: vmk.event_key(vault),
            exchange: vmk.exchange(vault).to_bytes(),
            epoch: 0,
            version: 0,
            hash: [0; 32],
            snapshot_version: 0,
            log_bytes: 0,
            tail: Vec::new(),
            limits,
            staged: None,
        };
        v.claim_epoch(objects)?;
        Ok(v)
    }

    /// Claims the next epoch, then deletes the older ones: the fence is "a newer epoch than
    /// mine is listed" ([`Vault::write`]), which the newest epoch alone keeps true.
    fn claim_epoch(&mut self, objects: &Objects<'_>) -> Result<(), VaultError> {
        let listed = objects.list(ObjectKind::Epoch)?;
        let next = match listed.last() {
            None => 1,
            Some(e) => e
                .checked_add(1)
                .ok_or_else(|| VaultError::Tampered("epoch sequence exhausted".into()))?,
        };
        objects.create(&self.key, ObjectKind::Epoch, next, &next.to_be_bytes())?;
        self.epoch = next;
        // Not required for safety; a failure leaves them for the next load.
        let _ = objects.delete(ObjectKind::Epoch, &listed);
        Ok(())
    }

    /// Loads the vault: claims a new epoch, then the newest snapshot and the log after it, and
    /// checks that the result extends `floor` (the highest state seen), else `RolledBack`.
    pub fn load(
        objects: &Objects<'_>,
        vmk: &MasterKey,
        limits: Limits,
        schema: Schema,
        floor: Option<Head>,
    ) -> Result<Vault, VaultError> {
        let vault = objects.vault();
        let mut v = Vault::claim(
            objects,
            vmk,
            Connection::open_in_memory().map_err(sql_err)?,
            limits,
        )?;
        // No snapshot at all: the enclave died while creating the vault (after its keys,
        // before the first snapshot). Start empty at version 0; the log, if any, must then
        // start at 1 (a host that deleted snapshots of a longer history shows up as a gap).
        if let Some(&snap) = objects.list(ObjectKind::Snapshot)?.last() {
            let manifest = objects
                .read(&v.key, ObjectKind::Snapshot, snap)?
                .ok_or_else(|| VaultError::Storage("snapshot vanished".into()))?;
            let manifest: SnapshotManifest = decode(&manifest, "snapshot")?;
            let len = usize::try_from(manifest.len)
                .map_err(|_| VaultError::Tampered("snapshot length".into()))?;
            // The chunks are opened and checked first, then handed to SQLite in one pass:
            // no copy of the whole database is made on the way.
            let mut chunks = Vec::with_capacity(manifest.chunks.min(1 << 12) as usize);
            let mut total = 0usize;
            for index in 0..manifest.chunks {
                let chunk = objects
                    .read(&v.key, ObjectKind::SnapshotChunk, chunk_number(snap, index))?
                    .ok_or_else(|| {
                        VaultError::Tampered(format!("snapshot chunk {index} missing"))
                    })?;
                if chunk.len() < SNAPSHOT_ID || chunk[..SNAPSHOT_ID] != manifest.id[..] {
                    return Err(VaultError::Tampered(
                        "snapshot chunk from another attempt".into(),
                    ));
                }
                total = total.saturating_add(chunk.len() - SNAPSHOT_ID);
                if total > len {
                    return Err(VaultError::Tampered("snapshot length".into()));
                }
                chunks.push(chunk);
            }
            if total != len {
                return Err(VaultError::Tampered("snapshot length".into()));
            }
            let parts = Parts {
                rest: chunks.iter(),
                current: &[],
            };
            v.conn
                .deserialize_read_exact(MAIN_DB, parts, len, false)
                .map_err(|_| VaultError::Tampered("snapshot is not a database".into()))?;
            drop(chunks);
            v.version = snap;
            v.snapshot_version = snap;
            v.hash = manifest
                .hash
                .try_into()
                .map_err(|_| VaultError::Tampered("snapshot hash".into()))?;
        }
        secure_delete(&v.conn)?;
        let base = v.snapshot_version;
        for number in objects
            .list(ObjectKind::Log)?
            .into_iter()
            .filter(|n| *n > base)
        {
            if v.version.checked_add(1) != Some(number) {
                return Err(VaultError::Tampered(format!(
                    "log gap before version {number}"
                )));
            }
            let bytes = objects
                .read(&v.key, ObjectKind::Log, number)?
                .ok_or_else(|| VaultError::Storage("log entry vanished".into()))?;
            let entry: LogEntry = decode(&bytes, "log entry")?;
            let digest = statements_digest(&encode(&entry.statements));
            if entry.prev_hash != v.hash {
                return Err(VaultError::Tampered(format!(
                    "log chain broken at version {number}"
                )));
            }
            // The AEAD (under a key only this vault's enclave holds) already authenticates the
            // entry and the chain check catches reordering; the signature is for apps.
            let hash = change_hash(vault, number, &v.hash, &digest);
            v.apply(&entry.statements)?;
            v.version = number;
            v.hash = hash;
            v.tail.push(digest);
            v.log_bytes += bytes.len() as u64;
        }
        if let Some(floor) = floor {
            v.extends(objects, floor)?;
        }
        v.migrate(objects, schema)?;
        Ok(v)
    }

    /// The current version and hash.
    pub fn head(&self) -> Head {
        Head {
            version: self.version,
            hash: self.hash,
        }
    }

    /// The limits this vault runs under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Checks that the current state extends `seen`: `seen` is not newer, and the statement
    /// digests after it (from the log tail and the history objects) lead from its hash to the
    /// current one. `RolledBack` if not; `Tampered` if history the check needs is missing.
    pub fn extends(&self, objects: &Objects<'_>, seen: Head) -> Result<(), VaultError> {
        let rolled_back = || VaultError::RolledBack {
            seen: seen.version,
            current: self.version,
        };
        if seen.version > self.version {
            return Err(rolled_back());
        }
        let mut digests: Vec<[u8; 32]> = Vec::new();
        if seen.version < self.snapshot_version {
            let mut next = seen.version + 1;
            let ends: Vec<u64> = objects
                .list(ObjectKind::History)?
                .into_iter()
                .filter(|end| *end >= next && *end <= self.snapshot_version)
                .collect();
            for end in ends {
                if end < next {
                    continue;
                }
                let bytes = objects
                    .read(&self.key, ObjectKind::History, end)?
                    .ok_or_else(|| VaultError::Storage("history vanished".into()))?;
                let h: History = decode(&bytes, "history")?;
                let last = h.from + h.digests.len() as u64;
                if h.from > next || last != end + 1 {
                    return Err(VaultError::Tampered("history is not contiguous".into()));
                }
                digests.extend_from_slice(&h.digests[(next - h.from) as usize..]);
                next = last;
            }
            if next != self.snapshot_version + 1 {
                return Err(VaultError::Tampered(
                    "history needed to check this version is missing".into(),
                ));
            }
        }
        let tail_from = seen.version.max(self.snapshot_version) - self.snapshot_version;
        digests.extend_from_slice(&self.tail[tail_from as usize..]);
        let vault = objects.vault();
        let mut hash = seen.hash;
        for (i, d) in digests.iter().enumerate() {
            hash = change_hash(vault, seen.version + 1 + i as u64, &hash, d);
        }
        if vettid_crypto::ct_eq(&hash, &self.hash) {
            Ok(())
        } else {
            Err(rolled_back())
        }
    }

    fn apply(&mut self, statements: &[Statement]) -> Result<(), VaultError> {
        let tx = self.conn.transaction().map_err(sql_err)?;
        for s in statements {
            tx.execute(&s.sql, rusqlite::params_from_iter(s.params.iter()))
                .map_err(|e| VaultError::Tampered(format!("log statement does not apply: {e}")))?;
        }
        tx.commit().map_err(sql_err)
    }

    fn migrate(&mut self, objects: &Objects<'_>, schema: Schema) -> Result<(), VaultError> {
        let current: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql_err)?;
        let current =
            usize::try_from(current).map_err(|_| VaultError::Tampered("schema version".into()))?;
        if current > schema.len() {
            return Err(VaultError::Internal(
                "vault schema is newer than this enclave".into(),
            ));
        }
        for (i, m) in schema.iter().enumerate().skip(current) {
            // One logged statement per SQL statement: `execute` runs a single statement, and a
            // domain schema holds several (no migration has a `;` inside a literal).
            let mut stmts: Vec<Statement> = m
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|sql| Statement {
                    sql: sql.to_owned(),
                    params: vec![],
                })
                .collect();
            stmts.push(Statement {
                sql: format!("PRAGMA user_version = {}", i + 1),
                params: vec![],
            });
            self.write(objects, stmts)?;
        }
        Ok(())
    }

    /// The state version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The version signed by the vault identity.
    pub fn signed_version(&mut self, vault: &str) -> SignedVersion {
        if let Some(s) = &self.signed
            && s.version == self.version
            && s.change_hash == self.hash
        {
            return s.clone();
        }
        let signed = SignedVersion {
            version: self.version,
            identity: self.identity_public.to_vec(),
            signature: self
                .identity
                .sign(&version_message(vault, self.version, &self.hash))
                .to_bytes()
                .to_vec(),
            change_hash: self.hash.to_vec(),
        };
        self.signed = Some(signed.clone());
        signed
    }

    /// Applies `statements` as one change and makes it durable before returning.
    ///
    /// Inside a group ([`Vault::begin_group`]) the change is applied and staged instead, not
    /// yet durable, and the version returned is the last durable one: the group's
    /// [`Vault::end_group`] makes every staged change durable as one version, or none of them.
    /// Either way a change that does not apply, or would take the vault over its quota,
    /// changes nothing.
    pub fn write(
        &mut self,
        objects: &Objects<'_>,
        statements: Vec<Statement>,
    ) -> Result<SignedVersion, VaultError> {
        let vault = objects.vault();
        if self.staged.is_some() {
            self.stage(statements)?;
            return Ok(self.signed_version(vault));
        }
        self.begin_group()?;
        if let Err(e) = self.stage(statements) {
            self.abort_group();
            return Err(e);
        }
        self.end_group(objects)?;
        Ok(self.signed_version(vault))
    }

    /// Applies `statements` inside the open group, all or nothing (a savepoint each).
    fn stage(&mut self, statements: Vec<Statement>) -> Result<(), VaultError> {
        let used_before = used_bytes(&self.conn);
        let sp = self.conn.savepoint().map_err(sql_err)?;
        for s in &statements {
            sp.execute(&s.sql, rusqlite::params_from_iter(s.params.iter()))
                .map_err(|e| match e.sqlite_error_code() {
                    // The change breaks a rule of the schema: the caller's fault.
                    Some(rusqlite::ErrorCode::ConstraintViolation) => {
                        VaultError::Invalid(vettid_proto::enclave::Invalid::Constraint)
                    }
                    // Anything else (memory, a full database) is the enclave's.
                    _ => sql_err(e),
                })?;
        }
        let used = used_bytes(&sp);
        if used > self.limits.vault_bytes && used > used_before {
            // Dropping the savepoint rolls it back: nothing changed.
            return Err(VaultError::QuotaExceeded {
                limit_bytes: self.limits.vault_bytes,
            });
        }
        sp.commit().map_err(sql_err)?;
        if let Some(staged) = self.staged.as_mut() {
            staged.extend(statements);
        }
        Ok(())
    }

    /// Opens a group: the writes until [`Vault::end_group`] become durable together, as one
    /// version, with one object written for all of them (what a batch of messages from other
    /// vaults costs). Reads inside the group see its staged writes. A group still open from
    /// an earlier failure is rolled back first.
    pub fn begin_group(&mut self) -> Result<(), VaultError> {
        self.abort_group();
        self.conn.execute_batch("BEGIN").map_err(sql_err)?;
        self.staged = Some(Vec::new());
        Ok(())
    }

    /// A point in the open group that [`Vault::undo_to`] returns to (one request's start).
    pub fn mark(&mut self) -> Result<usize, VaultError> {
        self.conn.execute_batch("SAVEPOINT mark").map_err(sql_err)?;
        Ok(self.staged.as_ref().map_or(0, Vec::len))
    }

    /// Keeps what was staged since the newest [`Vault::mark`].
    pub fn keep_since_mark(&mut self) -> Result<(), VaultError> {
        self.conn.execute_batch("RELEASE mark").map_err(sql_err)
    }

    /// Undoes what was staged since the newest [`Vault::mark`] (which returned `mark`).
    pub fn undo_to(&mut self, mark: usize) -> Result<(), VaultError> {
        self.conn
            .execute_batch("ROLLBACK TO mark; RELEASE mark")
            .map_err(sql_err)?;
        if let Some(staged) = self.staged.as_mut() {
            staged.truncate(mark);
        }
        Ok(())
    }

    /// Whether a group is open.
    pub fn in_group(&self) -> bool {
        self.staged.is_some()
    }

    /// Rolls back an open group — or any transaction left open, say by a panic inside
    /// [`Vault::end_group`]: its staged writes are gone, memory and storage as before it.
    pub fn abort_group(&mut self) {
        self.staged = None;
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    /// `Internal` while a transaction is open: what is in memory then may not be durable, so
    /// it is not serialized (snapshot, backup) until the group ends.
    fn settled(&self) -> Result<(), VaultError> {
        if self.staged.is_some() || !self.conn.is_autocommit() {
            return Err(VaultError::Internal("a group of writes is open".into()));
        }
        Ok(())
    }

    /// Closes the open group: every staged change becomes durable as one version before this
    /// returns, or — if storage fails or a newer writer holds the vault — none does and the
    /// database is as before the group.
    pub fn end_group(&mut self, objects: &Objects<'_>) -> Result<(), VaultError> {
        let Some(statements) = self.staged.take() else {
            return Ok(());
        };
        let logged = match (!statements.is_empty())
            .then(|| self.log(objects, statements))
            .transpose()
        {
            Ok(logged) => logged,
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        };
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(sql_err(e));
        }
        if let Some(l) = logged {
            self.version = l.signed.version;
            self.hash = l.hash;
            self.tail.push(l.digest);
            self.log_bytes += l.bytes;
            self.signed = Some(l.signed);
        }
        Ok(())
    }

    /// Writes the log entry of the next version holding `statements` (already applied to the
    /// open transaction); what the vault becomes once the transaction commits.
    fn log(&self, objects: &Objects<'_>, statements: Vec<Statement>) -> Result<Logged, VaultError> {
        let vault = objects.vault();
        let number = self
            .version
            .checked_add(1)
            .ok_or_else(|| VaultError::Tampered("version sequence exhausted".into()))?;
        let digest = statements_digest(&encode(&statements));
        let hash = change_hash(vault, number, &self.hash, &digest);
        let signature = self.identity.sign(&version_message(vault, number, &hash));
        let entry = LogEntry {
            prev_hash: self.hash.to_vec(),
            statements,
            signature: signature.to_bytes().to_vec(),
        };
        let plaintext = encode(&entry);
        objects.create(&self.key, ObjectKind::Log, number, &plaintext)?;
        if objects
            .list(ObjectKind::Epoch)?
            .last()
            .is_some_and(|newest| *newest > self.epoch)
        {
            return Err(VaultError::Conflict);
        }
        let signed = SignedVersion {
            version: number,
            identity: self.identity_public.to_vec(),
            signature: signature.to_bytes().to_vec(),
            change_hash: hash.to_vec(),
        };
        Ok(Logged {
            hash,
            digest,
            bytes: plaintext.len() as u64,
            signed,
        })
    }

    /// Whether enough log has accumulated for a snapshot: `every` entries or [`SNAPSHOT_BYTES`]
    /// of log, both scaled up with the database so that a snapshot's cost (proportional to
    /// the vault) is spread over proportionally many writes — the amortised cost of a write
    /// stays proportional to the change, not to the vault.
    pub fn wants_snapshot(&self, every: u64) -> bool {
        let db = self.db_bytes();
        self.version - self.snapshot_version >= every.max(db / (16 * 1024))
            || self.log_bytes >= SNAPSHOT_BYTES.max(db / 2)
    }

    /// The whole database as bytes (for a backup).
    pub fn serialized(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, VaultError> {
        self.settled()?;
        let db = self.conn.serialize(MAIN_DB).map_err(sql_err)?;
        Ok(zeroize::Zeroizing::new(db.to_vec()))
    }

    /// Whether `bytes` are a sound database (opened in memory, `PRAGMA integrity_check`).
    pub fn database_is_sound(bytes: &[u8]) -> bool {
        let Ok(mut conn) = Connection::open_in_memory() else {
            return false;
        };
        if conn
            .deserialize_read_exact(MAIN_DB, bytes, bytes.len(), true)
            .is_err()
        {
            return false;
        }
        conn.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
            .is_ok_and(|r| r == "ok")
    }

    /// The statements that replace the rows of `tables` in this vault with those of the
    /// database image `bytes` (a backup's, which the member's phrase authenticates but which
    /// the member may have made themselves): for each table a `DELETE`, then one `INSERT` per
    /// row. Names never come from the image: each table must be a plain table whose
    /// definition is exactly this vault's (`Database` otherwise), and it is read and written
    /// under this vault's own column names; integers must not be negative (no column here
    /// holds one), and the rows' bytes are counted against `budget` as they are read
    /// (`TooLarge` beyond). `tables` are names from the domain registry, never input.
    pub fn copy_statements(
        &self,
        bytes: &[u8],
        tables: &[&str],
        budget: u64,
    ) -> Result<Vec<Statement>, VaultError> {
        use vettid_proto::backup::BackupError;
        let bad = |_: rusqlite::Error| VaultError::from(BackupError::Database);
        let mut image = Connection::open_in_memory().map_err(bad)?;
        image
            .deserialize_read_exact(MAIN_DB, bytes, bytes.len(), true)
            .map_err(bad)?;
        let definition = |c: &Connection, table: &str| -> Result<Option<String>, VaultError> {
            use rusqlite::OptionalExtension;
            c.query_row(
                "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .optional()
            .map_err(bad)
        };
        let mut out = Vec::new();
        let mut used: u64 = 0;
        for table in tables {
            let ours = definition(&self.conn, table)?.ok_or(BackupError::Database)?;
            if definition(&image, table)?.as_deref() != Some(ours.as_str()) {
                return Err(BackupError::Database.into());
            }
            let columns: Vec<String> = self
                .conn
                .prepare(&format!("SELECT * FROM \"{table}\" LIMIT 0"))
                .map_err(bad)?
                .column_names()
                .iter()
                .map(|c| format!("\"{c}\""))
                .collect();
            let list = columns.join(", ");
            let marks: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
            let insert = format!(
                "INSERT INTO \"{table}\" ({list}) VALUES ({})",
                marks.join(", ")
            );
            out.push(Statement {
                sql: format!("DELETE FROM \"{table}\""),
                params: Vec::new(),
            });
            let mut stmt = image
                .prepare(&format!("SELECT {list} FROM \"{table}\""))
                .map_err(bad)?;
            let mut rows = stmt.query([]).map_err(bad)?;
            while let Some(row) = rows.next().map_err(bad)? {
                let mut params = Vec::with_capacity(columns.len());
                for i in 0..columns.len() {
                    use rusqlite::types::ValueRef;
                    params.push(match row.get_ref(i).map_err(bad)? {
                        ValueRef::Null => SqlValue::Null,
                        ValueRef::Integer(v) if v >= 0 => SqlValue::Int(v),
                        ValueRef::Text(t) => SqlValue::Text(
                            String::from_utf8(t.to_vec()).map_err(|_| BackupError::Database)?,
                        ),
                        ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
                        ValueRef::Integer(_) | ValueRef::Real(_) => {
                            return Err(BackupError::Database.into());
                        }
                    });
                }
                let statement = Statement {
                    sql: insert.clone(),
                    params,
                };
                used = used.saturating_add(statement.param_bytes() as u64);
                if used > budget {
                    return Err(BackupError::TooLarge.into());
                }
                out.push(statement);
            }
        }
        Ok(out)
    }

    /// Writes a snapshot at the current version (chunks, then the manifest that names them)
    /// and deletes what it makes redundant.
    pub fn snapshot(&mut self, objects: &Objects<'_>) -> Result<(), VaultError> {
        self.settled()?;
        let db = self.conn.serialize(MAIN_DB).map_err(sql_err)?;
        let id = vettid_crypto::random_array::<SNAPSHOT_ID>().to_vec();
        let chunks: Vec<&[u8]> = if db.is_empty() {
            vec![&[][..]]
        } else {
            db.chunks(CHUNK).collect()
        };
        for (index, bytes) in chunks.iter().enumerate() {
            let mut chunk = zeroize::Zeroizing::new(Vec::with_capacity(SNAPSHOT_ID + bytes.len()));
            chunk.extend_from_slice(&id);
            chunk.extend_from_slice(bytes);
            let number = chunk_number(self.version, index as u32);
            match objects.create(&self.key, ObjectKind::SnapshotChunk, number, &chunk) {
                Ok(()) => {}
                // An abandoned attempt holds these names: skip; a later version will snapshot.
                Err(VaultError::Conflict) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        let manifest = SnapshotManifest {
            hash: self.hash.to_vec(),
            id,
            chunks: chunks.len() as u32,
            len: db.len() as u64,
        };
        drop(db);
        // The digests of the versions this snapshot compacts, before their log entries go.
        if !self.tail.is_empty() {
            let history = History {
                from: self.snapshot_version + 1,
                digests: self.tail.clone(),
            };
            match objects.create(
                &self.key,
                ObjectKind::History,
                self.version,
                &encode(&history),
            ) {
                Ok(()) => {}
                Err(VaultError::Conflict) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        match objects.create(
            &self.key,
            ObjectKind::Snapshot,
            self.version,
            &encode(&manifest),
        ) {
            Ok(()) => {}
            Err(VaultError::Conflict) => return Ok(()),
            Err(e) => return Err(e),
        }
        self.snapshot_version = self.version;
        self.log_bytes = 0;
        self.tail.clear();
        let v = self.version;
        let older = |kind: ObjectKind, keep: &dyn Fn(u64) -> bool| -> Result<(), VaultError> {
            let old: Vec<u64> = objects
                .list(kind)?
                .into_iter()
                .filter(|n| !keep(*n))
                .collect();
            objects.delete(kind, &old)
        };
        older(ObjectKind::Log, &|n| n > v)?;
        older(ObjectKind::Snapshot, &|n| n >= v)?;
        older(ObjectKind::SnapshotChunk, &|n| (n >> 16) >= v)?;
        // Epochs are compacted at load (see `claim_epoch`), not here.
        Ok(())
    }

    /// The vault's identity public key.
    pub fn identity_public_key(&self) -> [u8; 32] {
        self.identity_public
    }

    /// Signs `message` with the vault's identity key (Ed25519). Callers prefix their messages
    /// with their own `vettid/v1/<purpose>\0` label so signatures cannot be reused across purposes.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.identity.sign(message).to_bytes()
    }

    /// The key that seals events for the member's apps.
    pub fn event_key(&self) -> &SecretBytes<32> {
        &self.event_key
    }

    /// The vault's X25519 exchange secret (its Noise static key towards other vaults).
    pub(crate) fn exchange_secret(&self) -> &SecretBytes<32> {
        &self.exchange
    }

    /// Runs read-only queries (domains read here; every change goes through [`Vault::write`],
    /// which logs it).
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        f(&self.conn)
    }

    /// Reads a vault-internal setting.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, VaultError> {
        use rusqlite::OptionalExtension;
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(sql_err)
    }

    /// Reads a record of the debug key-value table.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, VaultError> {
        use rusqlite::OptionalExtension;
        self.conn
            .query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(sql_err)
    }

    /// Approximate memory the database holds.
    pub fn db_bytes(&self) -> u64 {
        let pages: i64 = self
            .conn
            .pragma_query_value(None, "page_count", |r| r.get(0))
            .unwrap_or(0);
        let size: i64 = self
            .conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .unwrap_or(0);
        (pages * size).max(0) as u64
    }
}

/// A vault's database at rest: compressed (LZ4) and sealed under the vault's storage key,
/// bound to its version and hash. It never leaves the enclave's memory; it is what an idle
/// vault costs (an empty vault's 228 KiB of pages take about 7 KiB here).
pub struct Image(Vec<u8>);

impl Image {
    /// Bytes it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it holds nothing (never, for a sealed image).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Resting images are padded to a multiple of this.
const IMAGE_PAD: usize = 4096;

/// What a resting image is sealed with: it binds the image to the state it holds.
fn image_aad(version: u64, hash: &[u8; 32]) -> Vec<u8> {
    [
        b"vettid/v1/resting-vault\0".as_slice(),
        &version.to_be_bytes(),
        hash,
    ]
    .concat()
}

/// A log entry written for the next version ([`Vault::log`]).
struct Logged {
    /// The version's hash.
    hash: [u8; 32],
    /// Its statements' digest (for the history object).
    digest: [u8; 32],
    /// The entry's size.
    bytes: u64,
    /// The version, signed.
    signed: SignedVersion,
}

/// The snapshot's opened chunks read as one stream (each after its snapshot id).
struct Parts<'a> {
    rest: std::slice::Iter<'a, zeroize::Zeroizing<Vec<u8>>>,
    current: &'a [u8],
}

impl std::io::Read for Parts<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rest.next() {
                Some(chunk) => self.current = &chunk[SNAPSHOT_ID..],
                None => return Ok(0),
            }
        }
        self.current.read(buf)
    }
}

/// Moves a vault's keys and state from one form of its database to another.
macro_rules! with_db {
    ($v:expr, $db:expr) => {
        Vault {
            conn: $db,
            key: $v.key,
            identity: $v.identity,
            identity_public: $v.identity_public,
            signed: $v.signed,
            event_key: $v.event_key,
            exchange: $v.exchange,
            epoch: $v.epoch,
            version: $v.version,
            hash: $v.hash,
            snapshot_version: $v.snapshot_version,
            log_bytes: $v.log_bytes,
            tail: $v.tail,
            limits: $v.limits,
            staged: $v.staged,
        }
    };
}

impl Vault {
    /// Puts the vault at rest: its database serialized, compressed and sealed, the SQLite
    /// connection closed (what it held returns to the allocator). Nothing changes in storage.
    /// If the database cannot be serialized the vault comes back open, unchanged.
    pub fn rest(self: Box<Self>) -> Result<Box<Vault<Image>>, Box<Vault>> {
        if self.staged.is_some() || !self.conn.is_autocommit() {
            return Err(self);
        }
        let compressed = match self.conn.serialize(MAIN_DB) {
            Ok(db) => zeroize::Zeroizing::new(lz4_flex::compress_prepend_size(&db)),
            Err(_) => return Err(self),
        };
        // Its length, the compressed database, zeros up to a multiple of 4 KiB: the image's
        // size says less about the content.
        let Ok(len) = u32::try_from(compressed.len()) else {
            return Err(self);
        };
        let padded = (4 + compressed.len()).next_multiple_of(IMAGE_PAD);
        let mut packed = zeroize::Zeroizing::new(Vec::with_capacity(padded));
        packed.extend_from_slice(&len.to_be_bytes());
        packed.extend_from_slice(&compressed);
        drop(compressed);
        packed.resize(padded, 0);
        let v = *self;
        let image = Image(v.key.seal(&image_aad(v.version, &v.hash), &packed));
        drop(packed);
        Ok(Box::new(with_db!(v, image)))
    }
}

impl<D> Vault<D> {
    /// Whether the log holds changes after the newest snapshot.
    pub fn has_unsnapshotted_changes(&self) -> bool {
        self.version > self.snapshot_version
    }
}

impl Vault<Image> {
    /// Opens the database again, exactly as it was put at rest. An image that does not open
    /// (it cannot happen without a fault in this enclave's memory) is `Internal`.
    pub fn wake(self: Box<Self>) -> Result<Box<Vault>, VaultError> {
        let broken = |what: &str| VaultError::Internal(format!("vault at rest: {what}"));
        let packed = self
            .key
            .open(&image_aad(self.version, &self.hash), &self.conn.0)
            .map_err(|_| broken("image does not authenticate"))?;
        let compressed = packed
            .split_first_chunk::<4>()
            .and_then(|(len, rest)| rest.get(..u32::from_be_bytes(*len) as usize))
            .ok_or_else(|| broken("image length"))?;
        let db = zeroize::Zeroizing::new(
            lz4_flex::decompress_size_prepended(compressed).map_err(|_| broken("image"))?,
        );
        drop(packed);
        let mut conn = Connection::open_in_memory().map_err(sql_err)?;
        conn.deserialize_read_exact(MAIN_DB, &db[..], db.len(), false)
            .map_err(|_| broken("not a database"))?;
        drop(db);
        secure_delete(&conn)?;
        let v = *self;
        Ok(Box::new(with_db!(v, conn)))
    }

    /// Bytes its image holds.
    pub fn db_bytes(&self) -> u64 {
        self.conn.len() as u64
    }

    /// Flips a bit of the image (a fault in memory, for tests).
    #[cfg(test)]
    pub(crate) fn corrupt(&mut self) {
        if let Some(b) = self.conn.0.last_mut() {
            *b ^= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(vault: &mut Vault, objects: &Objects<'_>, i: usize) {
        vault
            .write(
                objects,
                vec![Statement {
                    sql: "INSERT INTO kv (key, value) VALUES (?1, ?2)".into(),
                    params: vec![SqlValue::Text(format!("k{i}")), SqlValue::Blob(vec![1])],
                }],
            )
            .unwrap();
    }

    fn keys(vault: &Vault) -> Vec<String> {
        vault
            .read(|c| {
                let mut s = c.prepare("SELECT key FROM kv ORDER BY key")?;
                s.query_map([], |r| r.get(0))?.collect()
            })
            .unwrap()
    }

    #[test]
    fn a_group_of_writes_is_one_durable_version_and_what_it_undid_or_refused_is_not_in_it() {
        let (link, store) = crate::harness::host();
        let objects = Objects::new(&link, "v");
        let vmk = MasterKey::for_tests([9; 32]);
        let limits = Limits::default();
        let mut vault = Vault::create(&objects, &vmk, limits, crate::domains::schema()).unwrap();
        put(&mut vault, &objects, 0);
        let version = vault.version();

        vault.begin_group().unwrap();
        let mark = vault.mark().unwrap();
        put(&mut vault, &objects, 1);
        vault.keep_since_mark().unwrap();
        // Reads inside the group see its staged writes; nothing is durable yet.
        assert_eq!(keys(&vault), ["k0", "k1"]);
        assert_eq!(vault.version(), version);
        let mark2 = vault.mark().unwrap();
        assert!(mark2 > mark);
        put(&mut vault, &objects, 2);
        vault.undo_to(mark2).unwrap();
        // A statement that does not apply (k1 again) changes nothing, in the group or after.
        let dup = vault.write(
            &objects,
            vec![
                Statement {
                    sql: "INSERT INTO kv (key, value) VALUES ('k3', x'01')".into(),
                    params: vec![],
                },
                Statement {
                    sql: "INSERT INTO kv (key, value) VALUES ('k1', x'01')".into(),
                    params: vec![],
                },
            ],
        );
        assert!(dup.is_err());
        put(&mut vault, &objects, 4);
        vault.end_group(&objects).unwrap();
        assert_eq!(vault.version(), version + 1, "one version for the group");
        assert_eq!(keys(&vault), ["k0", "k1", "k4"]);

        // An aborted group leaves memory as before it and writes nothing.
        vault.begin_group().unwrap();
        put(&mut vault, &objects, 5);
        vault.abort_group();
        assert_eq!(keys(&vault), ["k0", "k1", "k4"]);
        assert_eq!(vault.version(), version + 1);
        // And an empty group makes no version.
        vault.begin_group().unwrap();
        vault.end_group(&objects).unwrap();
        assert_eq!(vault.version(), version + 1);
        assert!(!vault.in_group());

        // A group storage refuses (the host squats its log entry's name) is undone in memory
        // too, and a snapshot waits while a group is open.
        let squat = objects.name(ObjectKind::Log, version + 2);
        store.lock().unwrap().insert(squat.clone(), vec![0; 8]);
        vault.begin_group().unwrap();
        put(&mut vault, &objects, 6);
        assert!(vault.snapshot(&objects).is_err());
        assert!(vault.end_group(&objects).is_err());
        assert!(!vault.in_group());
        assert_eq!(keys(&vault), ["k0", "k1", "k4"]);
        assert_eq!(vault.version(), version + 1);
        store.lock().unwrap().remove(&squat);
        put(&mut vault, &objects, 6);
        assert_eq!(keys(&vault), ["k0", "k1", "k4", "k6"]);
        assert_eq!(vault.version(), version + 2);

        // What storage holds is exactly that.
        let loaded = Vault::load(&objects, &vmk, limits, crate::domains::schema(), None).unwrap();
        assert_eq!(loaded.head(), vault.head());
        assert_eq!(keys(&loaded), ["k0", "k1", "k4", "k6"]);
    }

    #[test]
    fn a_vault_at_rest_is_a_small_sealed_image_that_wakes_exactly_as_it_was() {
        let (link, store) = crate::harness::host();
        let objects = Objects::new(&link, "v");
        let vmk = MasterKey::for_tests([9; 32]);
        let mut vault =
            Vault::create(&objects, &vmk, Limits::default(), crate::domains::schema()).unwrap();
        let marker = b"resting-marker-5f3a";
        vault
            .write(
                &objects,
                vec![Statement {
                    sql: "INSERT INTO kv (key, value) VALUES ('m', ?1)".into(),
                    params: vec![SqlValue::Blob(marker.repeat(8))],
                }],
            )
            .unwrap();
        let head = vault.head();
        let open_bytes = vault.db_bytes();
        let before = vault.serialized().unwrap();
        let stored = store.lock().unwrap().clone();

        let resting = Box::new(vault).rest().ok().unwrap();
        // Every domain's tables are present, yet the image is a few KiB: empty pages compress
        // to nothing. It is sealed: the marker is nowhere in it.
        assert!(
            resting.db_bytes() * 16 < open_bytes,
            "{} of {open_bytes}",
            resting.db_bytes()
        );
        assert!(!resting.conn.0.windows(marker.len()).any(|w| w == marker));
        let mut vault = resting.wake().unwrap();
        assert_eq!(
            *store.lock().unwrap(),
            stored,
            "resting and waking touch no storage"
        );
        assert_eq!(vault.head(), head);
        assert_eq!(
            vault.serialized().unwrap(),
            before,
            "the same database, byte for byte"
        );
        let erases: bool = vault
            .read(|c| c.pragma_query_value(None, "secure_delete", |r| r.get(0)))
            .unwrap();
        assert!(erases, "secure_delete holds after a wake as after a load");
        assert_eq!(vault.get("m").unwrap(), Some(marker.repeat(8)));
        put(&mut vault, &objects, 1);
        assert_eq!(vault.version(), head.version + 1);

        // An image changed in memory does not open (and nothing is half-opened).
        let mut resting = vault.rest().ok().unwrap();
        let last = resting.conn.0.len() - 1;
        resting.conn.0[last] ^= 1;
        assert!(matches!(resting.wake(), Err(VaultError::Internal(_))));
    }

    #[test]
    fn the_head_extends_every_earlier_version_through_snapshots_and_forks_are_refused() {
        let (link, store) = crate::harness::host();
        let objects = Objects::new(&link, "v");
        let vmk = MasterKey::for_tests([9; 32]);
        let mut vault =
            Vault::create(&objects, &vmk, Limits::default(), crate::domains::schema()).unwrap();
        let mut heads = vec![vault.head()];
        for i in 0..12 {
            put(&mut vault, &objects, i);
            heads.push(vault.head());
            if i % 4 == 3 {
                vault.snapshot(&objects).unwrap();
            }
        }
        assert!(store.lock().unwrap().keys().any(|k| k.contains("/hist/")));
        for h in &heads {
            vault.extends(&objects, *h).unwrap();
        }
        // A copy loaded from storage proves the same from its history objects.
        let head = *heads.last().unwrap();
        let loaded = Vault::load(
            &objects,
            &vmk,
            Limits::default(),
            crate::domains::schema(),
            Some(head),
        )
        .unwrap();
        for h in &heads {
            loaded.extends(&objects, *h).unwrap();
        }
        // Another hash at a seen version, or a version beyond the head: not this history.
        let forked = Head {
            version: 5,
            hash: [7; 32],
        };
        let ahead = Head {
            version: head.version + 1,
            hash: head.hash,
        };
        for seen in [forked, ahead] {
            assert!(matches!(
                loaded.extends(&objects, seen),
                Err(VaultError::RolledBack { .. })
            ));
        }
        // Loading below what was seen is refused.
        store.lock().unwrap().retain(|k, _| {
            // Drop the newest log entries and snapshot: storage rolled back to version 8.
            !(k.contains("/log/") || k.contains("/snap/00000000000000000012"))
        });
        assert!(matches!(
            Vault::load(
                &objects,
                &vmk,
                Limits::default(),
                crate::domains::schema(),
                Some(head)
            ),
            Err(VaultError::RolledBack { .. })
        ));
        // Without the history it needs, an old version cannot be checked: refused.
        store.lock().unwrap().retain(|k, _| !k.contains("/hist/"));
        assert!(matches!(
            loaded.extends(&objects, heads[2]),
            Err(VaultError::Tampered(_))
        ));
    }
}
