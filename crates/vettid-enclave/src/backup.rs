//! Backups made by the vault (`vettid_proto::backup`).
//!
//! Each vault has one backup key `K_b` (random, in its `meta` table: openable with the master
//! key) and, when it was enrolled by an app, `K_b` wrapped under the recovery phrase
//! (`HKDF(Argon2id(phrase))`, *without* the sealed secret S, so a member can open a backup
//! even if the operator's sealing keys are gone; the phrase's 128 bits make that wrap as
//! strong as the key). A backup `n` is:
//!
//! - chunk objects `backupc/(n << 24 | i)`: the database, [`CHUNK`] bytes at a time, sealed
//!   with STREAM under `K_d = HKDF(K_b, "vault/backup-data", vault ‖ n)`, every chunk bound to
//!   `SHA-256("vettid/v1/backup\0" ‖ header)`;
//! - then the header object `backup/n` (plain: it names the vault, the number, the version,
//!   sizes, the STREAM nonce prefix and the phrase wrap; any change to it fails every chunk);
//! - then a row in this domain's `backups` table.
//!
//! A backup cut short, reordered, extended, altered, or mixed with chunks of another backup or
//! vault fails to open, with a typed [`BackupError`].

use crate::manager::UnlockedVault;
use crate::objects::{ObjectKind, decode, encode};
use crate::vault::{SqlValue, Statement, Vault};
use serde::{Deserialize, Serialize};
use vettid_crypto::aead::AeadKey;
use vettid_crypto::password::{Bounds, Cost, Stretch};
use vettid_crypto::stream::{PREFIX_LEN, StreamOpener, StreamSealer};
use vettid_crypto::{Label, SecretBytes};
use vettid_proto::backup::{
    BackupError, BackupInfo, BackupOp, BackupReply, CHUNK, MAX_KEEP, PIECE, Part, Schedule, Status,
};
use vettid_proto::enclave::VaultError;
use vettid_proto::session::RECOVERY_BYTES;
use zeroize::Zeroizing;

/// The domain's table.
pub const SCHEMA: &str = "
CREATE TABLE backups (
    id INTEGER PRIMARY KEY, created_ms INTEGER NOT NULL, vault_version INTEGER NOT NULL,
    bytes INTEGER NOT NULL, chunks INTEGER NOT NULL, phrase INTEGER NOT NULL);";

/// This domain's migrations, append-only (see `domains.rs`).
pub const MIGRATIONS: &[crate::vault::Migration] = &[
    crate::vault::Migration {
        seq: 6,
        sql: SCHEMA,
    },
    // The header's hash: a backup verifies only as the very one the vault made.
    crate::vault::Migration {
        seq: 7,
        sql: "ALTER TABLE backups ADD COLUMN header_hash BLOB;",
    },
];

const DATA_KEY: Label = Label::new("vault/backup-data");
const PHRASE_KEY: Label = Label::new("vault/backup-phrase");
const FORMAT: u8 = 1;
/// Chunks of one backup at most (numbered below `1 << 24`).
const MAX_CHUNKS: u64 = 1 << 24;

/// `K_b` wrapped under the recovery phrase.
#[derive(Clone, Serialize, Deserialize)]
struct PhraseWrap {
    phc: String,
    #[serde(with = "serde_bytes")]
    wrapped: Vec<u8>,
}

/// A backup's header object.
#[derive(Serialize, Deserialize)]
struct Header {
    format: u8,
    vault: String,
    id: u64,
    created_ms: u64,
    vault_version: u64,
    bytes: u64,
    chunks: u32,
    prefix: [u8; PREFIX_LEN],
    phrase: Option<PhraseWrap>,
}

fn db(e: rusqlite::Error) -> VaultError {
    VaultError::Internal(format!("database: {e}"))
}

fn phrase_aad(vault: &str) -> Vec<u8> {
    [b"vettid/v1/backup-key\0".as_slice(), vault.as_bytes()].concat()
}

fn chunk_aad(header: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::new()
        .chain_update(b"vettid/v1/backup\0")
        .chain_update(header)
        .finalize()
        .to_vec()
}

fn data_key(backup_key: &SecretBytes<32>, vault: &str, id: u64) -> AeadKey {
    let info = [vault.as_bytes(), &[0], &id.to_be_bytes()].concat();
    DATA_KEY.derive(backup_key.expose(), b"", &info).into()
}

fn chunk_number(id: u64, index: u32) -> u64 {
    id << 24 | u64::from(index)
}

/// The statements enrollment adds: a backup key, and (the phrase being in memory only now)
/// its wrap under the phrase, stretched at `cost`.
pub fn enroll_statements(
    vault: &str,
    phrase: &[u8; RECOVERY_BYTES],
    cost: Cost,
) -> Result<Vec<Statement>, VaultError> {
    let key = SecretBytes::<32>::random();
    let stretch = Stretch::generate(cost, &Bounds::DEFAULT)
        .map_err(|e| VaultError::Internal(e.to_string()))?;
    let kek: AeadKey = PHRASE_KEY
        .derive(stretch.derive(phrase).expose(), b"", vault.as_bytes())
        .into();
    let wrap = PhraseWrap {
        phc: stretch.to_phc(),
        wrapped: kek.seal(&phrase_aad(vault), key.expose()),
    };
    // (Replacing: an enrollment resumed after its answer was lost makes them anew.)
    let meta = |k: &str, v: Vec<u8>| put_meta(k, v);
    Ok(vec![
        meta("backup/key", key.expose().to_vec()),
        meta("backup/phrase", encode(&wrap).to_vec()),
    ])
}

/// The vault's backup key and phrase wrap; a key is made (without a phrase wrap) for a vault
/// that has none yet (the statements to store it are returned).
#[allow(clippy::type_complexity)]
fn backup_key(
    vault: &Vault,
) -> Result<(SecretBytes<32>, Option<PhraseWrap>, Vec<Statement>), VaultError> {
    let tampered = || VaultError::Tampered("backup key record".into());
    match vault.meta("backup/key")? {
        Some(k) => {
            let key = SecretBytes::try_from_slice(&k).ok_or_else(tampered)?;
            let wrap = vault
                .meta("backup/phrase")?
                .map(|w| decode::<PhraseWrap>(&w, "backup phrase wrap"))
                .transpose()?;
            Ok((key, wrap, Vec::new()))
        }
        None => {
            let key = SecretBytes::<32>::random();
            let store = Statement {
                sql: "INSERT INTO meta (key, value) VALUES ('backup/key', ?1)".into(),
                params: vec![SqlValue::Blob(key.expose().to_vec())],
            };
            Ok((key, None, vec![store]))
        }
    }
}

/// Sealed bytes a STREAM chunk adds (the Poly1305 tag).
const TAG: usize = 16;
/// Statement parameter bytes per write of a restore (each write is one logged version).
const RESTORE_BATCH_BYTES: usize = 4 << 20;

/// An export or a restore in progress: at most one per vault, ending with the unlock it
/// began under (the manager keeps it with the vault's state).
pub enum Transfer {
    /// An export: every chunk is opened here before a byte of it is handed out.
    Export(Exporting),
    /// A restore of an exported backup.
    Restore(Restoring),
}

/// An export ([`BackupOp::Read`]): the backup, the opener of its chunks, and the chunk
/// being handed out (opened, so a host that altered it is caught before the member's file
/// is written).
pub struct Exporting {
    id: u64,
    chunks: u32,
    next: u32,
    opener: Option<StreamOpener>,
    current: Option<(u32, Vec<u8>)>,
}

/// A restore ([`BackupOp::RestoreBegin`]): the header, the opener of its chunks, the sealed
/// bytes of the chunk being received, and the database opened so far.
pub struct Restoring {
    header: Header,
    opener: Option<StreamOpener>,
    next: u32,
    pending: Vec<u8>,
    out: Zeroizing<Vec<u8>>,
}

impl Restoring {
    /// Sealed bytes of chunk `index`.
    fn sealed_len(&self, index: u32) -> usize {
        let before = u64::from(index) * CHUNK as u64;
        (self.header.bytes.saturating_sub(before)).min(CHUNK as u64) as usize + TAG
    }
}

/// Opens chunk `index` of `chunks` with `opener` (taken for the last one).
fn open_chunk(
    opener: &mut Option<StreamOpener>,
    index: u32,
    chunks: u32,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let corrupt = || VaultError::from(BackupError::Corrupt { index });
    if index + 1 == chunks {
        opener.take().ok_or_else(corrupt)?.last(sealed)
    } else {
        opener.as_mut().ok_or_else(corrupt)?.next(sealed)
    }
    .map_err(|_| corrupt())
}

/// Runs one backup operation on an unlocked vault. An export or restore in progress is
/// ended by any refusal of one of its steps, and by starting another.
pub fn handle(unlocked: &mut UnlockedVault<'_>, op: BackupOp) -> Result<BackupReply, VaultError> {
    let (vault, objects, now_ms, transfer) = unlocked.with_transfer();
    let result = match op {
        BackupOp::Read { id, part, offset } => read(vault, objects, transfer, id, part, offset),
        BackupOp::RestoreBegin { header, phrase } => {
            *transfer = None;
            begin_restore(vault, &header, &phrase).map(|r| {
                let info = info(&r.header);
                *transfer = Some(Box::new(Transfer::Restore(r)));
                BackupReply::RestoreReady(info)
            })
        }
        BackupOp::RestorePiece { chunk, bytes } => match transfer.as_deref_mut() {
            Some(Transfer::Restore(r)) => restore_piece(r, chunk, &bytes)
                .map(|chunks| BackupReply::RestoreProgress { chunks }),
            _ => Err(BackupError::OutOfOrder.into()),
        },
        BackupOp::RestoreFinish => match transfer.take().map(|t| *t) {
            Some(Transfer::Restore(r)) => {
                finish_restore(vault, objects, r, now_ms).map(|rows| BackupReply::Restored { rows })
            }
            _ => Err(BackupError::OutOfOrder.into()),
        },
        other => return plain(vault, objects, now_ms, other),
    };
    if result.is_err() {
        *transfer = None;
    }
    result
}

/// The operations that keep no state between requests.
fn plain(
    vault: &mut Vault,
    objects: &crate::objects::Objects<'_>,
    now_ms: u64,
    op: BackupOp,
) -> Result<BackupReply, VaultError> {
    match op {
        BackupOp::Now => made(vault, objects, now_ms).map(BackupReply::Made),
        BackupOp::List => list(vault).map(BackupReply::Backups),
        BackupOp::Verify { id } => {
            let info = verify(vault, objects, id)?;
            record_verified(vault, objects, id, now_ms)?;
            Ok(BackupReply::Verified(info))
        }
        BackupOp::SetSchedule(schedule) => {
            if !(1..=MAX_KEEP).contains(&schedule.keep) {
                return Err(BackupError::Keep.into());
            }
            vault.write(
                objects,
                vec![put_meta("backup/schedule", encode(&schedule).to_vec())],
            )?;
            Ok(BackupReply::Scheduled(schedule))
        }
        BackupOp::Status => status(vault).map(BackupReply::Status),
        BackupOp::Read { .. }
        | BackupOp::RestoreBegin { .. }
        | BackupOp::RestorePiece { .. }
        | BackupOp::RestoreFinish => Err(BackupError::OutOfOrder.into()),
    }
}

fn put_meta(key: &str, value: Vec<u8>) -> Statement {
    Statement {
        sql: "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)".into(),
        params: vec![SqlValue::Text(key.into()), SqlValue::Blob(value)],
    }
}

fn schedule(vault: &Vault) -> Result<Schedule, VaultError> {
    vault
        .meta("backup/schedule")?
        .map(|b| decode(&b, "backup schedule"))
        .transpose()
        .map(Option::unwrap_or_default)
}

/// When the next scheduled backup is due (`None`: no schedule).
pub fn next_due_ms(vault: &Vault) -> Result<Option<u64>, VaultError> {
    status(vault).map(|s| s.next_due_ms)
}

fn status(vault: &Vault) -> Result<Status, VaultError> {
    let schedule = schedule(vault)?;
    let newest = list(vault)?.pop();
    let verified = vault
        .meta("backup/verified")?
        .map(|b| decode::<(u64, u64)>(&b, "backup verified"))
        .transpose()?;
    let next_due_ms = schedule.every.period_ms().map(|p| {
        newest
            .as_ref()
            .map_or(0, |b| b.created_ms.saturating_add(p))
    });
    Ok(Status {
        schedule,
        newest,
        verified,
        next_due_ms,
    })
}

fn record_verified(
    vault: &mut Vault,
    objects: &crate::objects::Objects<'_>,
    id: u64,
    now_ms: u64,
) -> Result<(), VaultError> {
    vault
        .write(
            objects,
            vec![put_meta("backup/verified", encode(&(id, now_ms)).to_vec())],
        )
        .map(|_| ())
}

/// A backup made now, opened in the enclave at once (the restore test), then the schedule's
/// retention applied.
fn made(
    vault: &mut Vault,
    objects: &crate::objects::Objects<'_>,
    now_ms: u64,
) -> Result<BackupInfo, VaultError> {
    let info = make(vault, objects, now_ms)?;
    verify(vault, objects, info.id)?;
    record_verified(vault, objects, info.id, now_ms)?;
    retain(vault, objects, now_ms)?;
    Ok(info)
}

/// A scheduled backup, if one is due at `now_ms` (the host's clock: a host can delay a
/// backup, as it can refuse any service, but not make the vault skip its restore test or
/// keep fewer than it should).
pub fn scheduled(
    vault: &mut Vault,
    objects: &crate::objects::Objects<'_>,
    now_ms: u64,
) -> Result<Option<BackupInfo>, VaultError> {
    match status(vault)?.next_due_ms {
        Some(due) if due <= now_ms => made(vault, objects, now_ms).map(Some),
        _ => Ok(None),
    }
}

/// Deletes the oldest backups beyond the schedule's `keep`, and those older than its age
/// limit — never the newest.
fn retain(
    vault: &mut Vault,
    objects: &crate::objects::Objects<'_>,
    now_ms: u64,
) -> Result<(), VaultError> {
    let schedule = schedule(vault)?;
    let all = list(vault)?;
    let keep_from = all.len().saturating_sub(schedule.keep as usize);
    let max_age = u64::from(schedule.max_age_days) * 24 * 60 * 60 * 1000;
    let gone: Vec<&BackupInfo> = all
        .iter()
        .enumerate()
        .filter(|(i, b)| {
            *i + 1 < all.len()
                && (*i < keep_from
                    || (max_age > 0 && now_ms.saturating_sub(b.created_ms) > max_age))
        })
        .map(|(_, b)| b)
        .collect();
    if gone.is_empty() {
        return Ok(());
    }
    let mut statements = Vec::new();
    for b in &gone {
        let chunks: Vec<u64> = (0..b.chunks).map(|i| chunk_number(b.id, i)).collect();
        // The header first: what is left of a deletion cut short is not listed as a backup.
        objects.delete(ObjectKind::Backup, &[b.id])?;
        objects.delete(ObjectKind::BackupChunk, &chunks)?;
        statements.push(Statement {
            sql: "DELETE FROM backups WHERE id = ?1".into(),
            params: vec![SqlValue::Int(b.id as i64)],
        });
    }
    vault.write(objects, statements).map(|_| ())
}

fn make(
    vault: &mut Vault,
    objects: &crate::objects::Objects<'_>,
    now_ms: u64,
) -> Result<BackupInfo, VaultError> {
    let name = objects.vault().to_owned();
    let (key, phrase, mut statements) = backup_key(vault)?;
    // Past every number the vault recorded and every one storage holds objects of (a backup
    // cut short leaves chunks behind, which create-only names would refuse to overwrite).
    let recorded = vault
        .read(|c| {
            c.query_row("SELECT COALESCE(MAX(id), 0) FROM backups", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .map_err(db)? as u64;
    let stored = objects
        .list(ObjectKind::BackupChunk)?
        .into_iter()
        .map(|n| n >> 24)
        .chain(objects.list(ObjectKind::Backup)?)
        .max()
        .unwrap_or(0);
    let id = recorded.max(stored) + 1;
    let bytes = vault.serialized()?;
    let chunks: Vec<&[u8]> = if bytes.is_empty() {
        vec![&[][..]]
    } else {
        bytes.chunks(CHUNK).collect()
    };
    if chunks.len() as u64 >= MAX_CHUNKS {
        return Err(VaultError::Internal(
            "the vault is too large to back up".into(),
        ));
    }
    let header = Header {
        format: FORMAT,
        vault: name.clone(),
        id,
        created_ms: now_ms,
        vault_version: vault.version(),
        bytes: bytes.len() as u64,
        chunks: chunks.len() as u32,
        prefix: vettid_crypto::random_array(),
        phrase: phrase.clone(),
    };
    let header_bytes = encode(&header);
    let mut sealer = StreamSealer::new(
        &data_key(&key, &name, id),
        &header.prefix,
        &chunk_aad(&header_bytes),
    );
    let (last, rest) = chunks.split_last().expect("at least one chunk");
    for (i, chunk) in rest.iter().enumerate() {
        let sealed = sealer
            .next(chunk)
            .map_err(|_| VaultError::Internal("backup stream too long".into()))?;
        objects.create_raw(ObjectKind::BackupChunk, chunk_number(id, i as u32), sealed)?;
    }
    objects.create_raw(
        ObjectKind::BackupChunk,
        chunk_number(id, rest.len() as u32),
        sealer.last(last),
    )?;
    // The header last: a backup cut short while being written has none, and is not listed.
    objects.create_raw(ObjectKind::Backup, id, header_bytes.to_vec())?;
    let info = info(&header);
    statements.push(Statement {
        sql:
            "INSERT INTO backups (id, created_ms, vault_version, bytes, chunks, phrase, header_hash)
              VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                .into(),
        params: vec![
            SqlValue::Int(id as i64),
            SqlValue::Int(now_ms as i64),
            SqlValue::Int(info.vault_version as i64),
            SqlValue::Int(info.bytes as i64),
            SqlValue::Int(i64::from(info.chunks)),
            SqlValue::Int(i64::from(info.phrase)),
            SqlValue::Blob(chunk_aad(&header_bytes)),
        ],
    });
    vault.write(objects, statements)?;
    Ok(info)
}

fn info(h: &Header) -> BackupInfo {
    BackupInfo {
        id: h.id,
        created_ms: h.created_ms,
        vault_version: h.vault_version,
        bytes: h.bytes,
        chunks: h.chunks,
        phrase: h.phrase.is_some(),
    }
}

fn list(vault: &Vault) -> Result<Vec<BackupInfo>, VaultError> {
    vault
        .read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, created_ms, vault_version, bytes, chunks, phrase FROM backups
                 ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(BackupInfo {
                    id: r.get::<_, i64>(0)? as u64,
                    created_ms: r.get::<_, i64>(1)? as u64,
                    vault_version: r.get::<_, i64>(2)? as u64,
                    bytes: r.get::<_, i64>(3)? as u64,
                    chunks: r.get(4)?,
                    phrase: r.get(5)?,
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db)
}

/// Backup `id`'s header object and header, if it is the very one this vault recorded under
/// that number (not another one a host kept) and its sizes are sound.
fn recorded_header(
    vault: &Vault,
    objects: &crate::objects::Objects<'_>,
    id: u64,
) -> Result<(Vec<u8>, Header), VaultError> {
    let raw = objects
        .read_raw(ObjectKind::Backup, id)?
        .ok_or(BackupError::NoSuchBackup)?;
    let header: Header = decode(&raw, "backup header").map_err(|_| BackupError::UnknownFormat)?;
    if header.format != FORMAT {
        return Err(BackupError::UnknownFormat.into());
    }
    if header.vault != objects.vault() || header.id != id {
        return Err(BackupError::OtherVault.into());
    }
    let recorded: Option<Vec<u8>> = vault
        .read(|c| {
            use rusqlite::OptionalExtension;
            c.query_row(
                "SELECT header_hash FROM backups WHERE id = ?1",
                [id as i64],
                |r| r.get(0),
            )
            .optional()
        })
        .map_err(db)?
        .flatten();
    match recorded {
        None => return Err(BackupError::NoSuchBackup.into()),
        Some(h) if !vettid_crypto::ct_eq(&h, &chunk_aad(&raw)) => {
            return Err(BackupError::Replaced.into());
        }
        Some(_) => {}
    }
    if header.chunks == 0
        || u64::from(header.chunks) >= MAX_CHUNKS
        || header.bytes > u64::from(header.chunks) * CHUNK as u64
    {
        return Err(BackupError::UnknownFormat.into());
    }
    Ok((raw, header))
}

/// Opens backup `id` of this vault: its header, every chunk in order, and the database.
fn verify(
    vault: &Vault,
    objects: &crate::objects::Objects<'_>,
    id: u64,
) -> Result<BackupInfo, VaultError> {
    let (raw, header) = recorded_header(vault, objects, id)?;
    let (key, _, _) = backup_key(vault)?;
    let database = open_chunks(objects, &header, &raw, &data_key(&key, objects.vault(), id))?;
    check_database(&database)?;
    Ok(info(&header))
}

/// Up to [`PIECE`] bytes at `offset` of one of this vault's backup objects, as stored. The
/// header first (it must be the one the vault recorded: `Replaced` otherwise), then the
/// chunks in order, each opened here before any of it is handed out: a host that serves
/// altered bytes fails the export, not the member's restore later.
fn read(
    vault: &Vault,
    objects: &crate::objects::Objects<'_>,
    transfer: &mut Option<Box<Transfer>>,
    id: u64,
    part: Part,
    offset: u32,
) -> Result<BackupReply, VaultError> {
    let piece = |object: &[u8]| {
        let total = u32::try_from(object.len()).map_err(|_| BackupError::UnknownFormat)?;
        let from = (offset as usize).min(object.len());
        let to = (from + PIECE).min(object.len());
        Ok::<_, VaultError>(BackupReply::Piece {
            bytes: object[from..to].to_vec(),
            total,
        })
    };
    match part {
        Part::Header => {
            let (raw, header) = recorded_header(vault, objects, id)?;
            let (key, _, _) = backup_key(vault)?;
            let opener = StreamOpener::new(
                &data_key(&key, objects.vault(), id),
                &header.prefix,
                &chunk_aad(&raw),
            );
            *transfer = Some(Box::new(Transfer::Export(Exporting {
                id,
                chunks: header.chunks,
                next: 0,
                opener: Some(opener),
                current: None,
            })));
            piece(&raw)
        }
        Part::Chunk(index) => {
            let Some(Transfer::Export(e)) = transfer.as_deref_mut() else {
                return Err(BackupError::OutOfOrder.into());
            };
            if e.id != id {
                return Err(BackupError::OutOfOrder.into());
            }
            if !matches!(&e.current, Some((i, _)) if *i == index) {
                if index != e.next {
                    return Err(BackupError::OutOfOrder.into());
                }
                if index >= e.chunks {
                    return Err(BackupError::Trailing { index }.into());
                }
                let sealed = objects
                    .read_raw(ObjectKind::BackupChunk, chunk_number(id, index))?
                    .ok_or(BackupError::Missing { index })?;
                open_chunk(&mut e.opener, index, e.chunks, &sealed)?;
                e.current = Some((index, sealed));
                e.next += 1;
            }
            let (_, sealed) = e.current.as_ref().expect("just set");
            piece(sealed)
        }
    }
}

/// Checks an exported header and opens its backup key with `phrase`: the restore's start.
fn begin_restore(
    vault: &Vault,
    header_bytes: &[u8],
    phrase: &[u8; RECOVERY_BYTES],
) -> Result<Restoring, VaultError> {
    let header: Header =
        decode(header_bytes, "backup header").map_err(|_| BackupError::UnknownFormat)?;
    if header.format != FORMAT
        || header.chunks == 0
        || u64::from(header.chunks) >= MAX_CHUNKS
        || header.bytes > u64::from(header.chunks) * CHUNK as u64
        || header.bytes <= u64::from(header.chunks - 1) * CHUNK as u64
    {
        return Err(BackupError::UnknownFormat.into());
    }
    if header.bytes > vault.limits().vault_bytes {
        return Err(BackupError::TooLarge.into());
    }
    let wrap = header.phrase.as_ref().ok_or(BackupError::WrongPhrase)?;
    // The stretching parameters come from the file: bounded like every stored PHC string.
    let stretch =
        Stretch::from_phc(&wrap.phc, &Bounds::DEFAULT).map_err(|_| BackupError::UnknownFormat)?;
    let kek: AeadKey = PHRASE_KEY
        .derive(
            stretch.derive(phrase).expose(),
            b"",
            header.vault.as_bytes(),
        )
        .into();
    let key = kek
        .open(&phrase_aad(&header.vault), &wrap.wrapped)
        .map_err(|_| BackupError::WrongPhrase)?;
    let key = SecretBytes::<32>::try_from_slice(&key).ok_or(BackupError::WrongPhrase)?;
    let opener = StreamOpener::new(
        &data_key(&key, &header.vault, header.id),
        &header.prefix,
        &chunk_aad(header_bytes),
    );
    // Sized once (bounded by the quota above): no reallocation leaves copies behind.
    let out = Zeroizing::new(Vec::with_capacity(header.bytes as usize));
    Ok(Restoring {
        header,
        opener: Some(opener),
        next: 0,
        pending: Vec::new(),
        out,
    })
}

/// Takes the next piece of chunk `chunk`; the chunks opened so far.
fn restore_piece(r: &mut Restoring, chunk: u32, bytes: &[u8]) -> Result<u32, VaultError> {
    if chunk >= r.header.chunks {
        return Err(BackupError::Trailing { index: chunk }.into());
    }
    if chunk != r.next || bytes.is_empty() || bytes.len() > PIECE {
        return Err(BackupError::OutOfOrder.into());
    }
    let want = r.sealed_len(chunk);
    if r.pending.len() + bytes.len() > want {
        return Err(BackupError::Corrupt { index: chunk }.into());
    }
    r.pending.extend_from_slice(bytes);
    if r.pending.len() == want {
        let sealed = std::mem::take(&mut r.pending);
        let plain = open_chunk(&mut r.opener, chunk, r.header.chunks, &sealed)?;
        if r.out.len() + plain.len() > r.out.capacity() {
            return Err(BackupError::Database.into());
        }
        r.out.extend_from_slice(&plain);
        r.next += 1;
    }
    Ok(r.next)
}

/// Every chunk in, the database sound and shaped exactly as this release's (the restored
/// tables have this vault's own definitions, no views, no other columns): the member's
/// tables replaced by the backup's, with a `vault.restored` audit event, in writes of about
/// [`RESTORE_BATCH_BYTES`] (the first one also empties them). Checked before the first write:
/// the rows fit the quota beside what the vault keeps. The rows written.
fn finish_restore(
    vault: &mut Vault,
    objects: &crate::objects::Objects<'_>,
    r: Restoring,
    now_ms: u64,
) -> Result<u64, VaultError> {
    if r.next < r.header.chunks {
        return Err(BackupError::Missing { index: r.next }.into());
    }
    if r.out.len() as u64 != r.header.bytes {
        return Err(BackupError::Database.into());
    }
    check_database(&r.out)?;
    let tables = crate::domains::restored_tables();
    let budget = vault.limits().vault_bytes;
    let statements = vault.copy_statements(&r.out, &tables, budget)?;
    let bytes: u64 = statements.iter().map(|s| s.param_bytes() as u64).sum();
    if bytes.saturating_add(vault.db_bytes()) > budget {
        return Err(BackupError::TooLarge.into());
    }
    let rows = statements.iter().filter(|s| !s.params.is_empty()).count() as u64;
    let event = crate::feed::event(
        now_ms,
        vettid_proto::feed::Audience::Audit,
        "vault.restored",
        vettid_proto::feed::Retention::Standard,
        format!(
            "backup {} (vault version {}) restored from an export: {rows} rows",
            r.header.id, r.header.vault_version
        ),
    );
    let mut batch = crate::feed::append(vault, &[event])?;
    let mut size = 0;
    for statement in statements {
        size += statement.param_bytes();
        batch.push(statement);
        if size >= RESTORE_BATCH_BYTES {
            vault.write(objects, std::mem::take(&mut batch))?;
            size = 0;
        }
    }
    if !batch.is_empty() {
        vault.write(objects, batch)?;
    }
    Ok(rows)
}

/// The database a backup holds, chunk by chunk in order; typed errors for what is missing,
/// extra or does not authenticate.
fn open_chunks(
    objects: &crate::objects::Objects<'_>,
    header: &Header,
    header_bytes: &[u8],
    key: &AeadKey,
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let id = header.id;
    let present: Vec<u32> = objects
        .list(ObjectKind::BackupChunk)?
        .into_iter()
        .filter(|n| n >> 24 == id)
        .map(|n| (n & (MAX_CHUNKS - 1)) as u32)
        .collect();
    if let Some(extra) = present.iter().find(|i| **i >= header.chunks) {
        return Err(BackupError::Trailing { index: *extra }.into());
    }
    let mut opener = Some(StreamOpener::new(
        key,
        &header.prefix,
        &chunk_aad(header_bytes),
    ));
    // Grown as chunks authenticate (never sized by what the header claims).
    let mut out = Zeroizing::new(Vec::new());
    for index in 0..header.chunks {
        let sealed = objects
            .read_raw(ObjectKind::BackupChunk, chunk_number(id, index))?
            .ok_or(BackupError::Missing { index })?;
        let corrupt = || VaultError::from(BackupError::Corrupt { index });
        let plain = if index + 1 == header.chunks {
            opener.take().expect("one last chunk").last(&sealed)
        } else {
            opener.as_mut().expect("not after the last").next(&sealed)
        }
        .map_err(|_| corrupt())?;
        out.extend_from_slice(&plain);
    }
    if out.len() as u64 != header.bytes {
        return Err(BackupError::Database.into());
    }
    Ok(out)
}

/// Whether `bytes` are a sound SQLite database (opened in memory, integrity-checked).
fn check_database(bytes: &[u8]) -> Result<(), VaultError> {
    if Vault::database_is_sound(bytes) {
        Ok(())
    } else {
        Err(BackupError::Database.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::Opened;

    fn backup(v: &Opened) -> BackupInfo {
        match v.run(5, |u| handle(u, BackupOp::Now)).unwrap() {
            BackupReply::Made(info) => info,
            other => panic!("{other:?}"),
        }
    }

    fn verify(v: &Opened, id: u64) -> Result<BackupInfo, VaultError> {
        v.run(0, |u| handle(u, BackupOp::Verify { id }))
            .map(|r| match r {
                BackupReply::Verified(info) => info,
                other => panic!("{other:?}"),
            })
    }

    /// Names of a backup's chunk objects, in order.
    fn chunk_names(v: &Opened, id: u64) -> Vec<String> {
        let prefix = "vaults/alice/backupc/";
        let mut names: Vec<String> = v
            .store
            .lock()
            .unwrap()
            .keys()
            .filter(|k| {
                k.strip_prefix(prefix)
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|n| n >> 24 == id)
            })
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// A vault with enough data for a backup of several chunks.
    fn big() -> Opened {
        let v = Opened::new();
        v.run(0, |u| {
            let (vault, objects, _) = u.parts();
            let blob = vec![0x5a; 900 * 1024];
            for i in 0..3 {
                vault.write(
                    objects,
                    vec![Statement {
                        sql: "INSERT INTO kv (key, value) VALUES (?1, ?2)".into(),
                        params: vec![
                            SqlValue::Text(format!("k{i}")),
                            SqlValue::Blob(blob.clone()),
                        ],
                    }],
                )?;
            }
            Ok(())
        })
        .unwrap();
        v
    }

    /// A vault whose member data (secrets) spans several chunks, and one kv row (engine data,
    /// not carried by a restore).
    fn with_secrets() -> Opened {
        let v = Opened::new();
        v.run(0, |u| {
            let (vault, objects, _) = u.parts();
            let mut statements = vec![Statement {
                sql: "INSERT INTO kv (key, value) VALUES ('engine', x'00')".into(),
                params: vec![],
            }];
            for i in 0..3u8 {
                statements.push(Statement {
                    sql: "INSERT INTO secret_items VALUES (?1, 'note', ?2, NULL, x'', 1, 0, 0)"
                        .into(),
                    params: vec![SqlValue::Blob(vec![i; 16]), SqlValue::Text(format!("s{i}"))],
                });
                statements.push(Statement {
                    sql: "INSERT INTO secret_versions VALUES (?1, 1, 0, ?2)".into(),
                    params: vec![
                        SqlValue::Blob(vec![i; 16]),
                        SqlValue::Blob(vec![i; 700 << 10]),
                    ],
                });
            }
            vault.write(objects, statements)
        })
        .unwrap();
        v
    }

    /// A backup's objects as an export reads them: its header and its sealed chunks.
    fn export(v: &Opened, info: &BackupInfo) -> (Vec<u8>, Vec<Vec<u8>>) {
        let read = |part: Part| {
            let mut out = Vec::new();
            loop {
                let op = BackupOp::Read {
                    id: info.id,
                    part,
                    offset: out.len() as u32,
                };
                let BackupReply::Piece { bytes, total } = v.run(0, |u| handle(u, op)).unwrap()
                else {
                    panic!()
                };
                assert!(bytes.len() <= PIECE && !bytes.is_empty());
                out.extend_from_slice(&bytes);
                if out.len() == total as usize {
                    return out;
                }
            }
        };
        let header = read(Part::Header);
        let chunks = (0..info.chunks).map(|i| read(Part::Chunk(i))).collect();
        (header, chunks)
    }

    /// Restores `header` and `chunks` (in the order given, each under the index given) into
    /// `into` with `phrase`.
    fn restore(
        into: &Opened,
        phrase: &[u8; RECOVERY_BYTES],
        header: &[u8],
        chunks: &[(u32, Vec<u8>)],
    ) -> Result<u64, VaultError> {
        let begin = BackupOp::RestoreBegin {
            header: header.to_vec(),
            phrase: Zeroizing::new(*phrase),
        };
        into.run(0, |u| handle(u, begin))?;
        for (index, sealed) in chunks {
            for piece in sealed.chunks(PIECE) {
                let op = BackupOp::RestorePiece {
                    chunk: *index,
                    bytes: piece.to_vec(),
                };
                into.run(0, |u| handle(u, op))?;
            }
        }
        match into.run(0, |u| handle(u, BackupOp::RestoreFinish))? {
            BackupReply::Restored { rows } => Ok(rows),
            other => panic!("{other:?}"),
        }
    }

    /// An export of `db` sealed as a vault of `phrase` would seal it (what a member with a
    /// phrase of their own can make of any database).
    fn crafted(db: &[u8], phrase: &[u8; RECOVERY_BYTES]) -> (Vec<u8>, Vec<(u32, Vec<u8>)>) {
        let key = SecretBytes::<32>::random();
        let stretch = Stretch::generate(crate::harness::fast(10).cost, &Bounds::DEFAULT).unwrap();
        let kek: AeadKey = PHRASE_KEY
            .derive(stretch.derive(phrase).expose(), b"", b"alice")
            .into();
        let parts: Vec<&[u8]> = db.chunks(CHUNK).collect();
        let header = Header {
            format: FORMAT,
            vault: "alice".into(),
            id: 1,
            created_ms: 0,
            vault_version: 1,
            bytes: db.len() as u64,
            chunks: parts.len() as u32,
            prefix: [3; PREFIX_LEN],
            phrase: Some(PhraseWrap {
                phc: stretch.to_phc(),
                wrapped: kek.seal(&phrase_aad("alice"), key.expose()),
            }),
        };
        let raw = encode(&header).to_vec();
        let mut sealer = StreamSealer::new(
            &data_key(&key, "alice", 1),
            &header.prefix,
            &chunk_aad(&raw),
        );
        let (last, rest) = parts.split_last().unwrap();
        let mut chunks: Vec<(u32, Vec<u8>)> = (0..)
            .zip(rest.iter().map(|c| sealer.next(c).unwrap()))
            .collect();
        chunks.push((rest.len() as u32, sealer.last(last)));
        (raw, chunks)
    }

    /// A database with this release's schema, then `change` applied to it.
    fn database_with(change: &str) -> Vec<u8> {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        for sql in crate::domains::schema() {
            c.execute_batch(sql).unwrap();
        }
        c.execute_batch(change).unwrap();
        c.serialize(rusqlite::MAIN_DB).unwrap().to_vec()
    }

    /// A database the member made themselves, sealed under their own phrase: tables shaped
    /// otherwise than this vault's (a column named to smuggle SQL, a view in a table's place,
    /// a negative number) are refused before anything is written; a sound one restores.
    #[test]
    fn a_crafted_database_cannot_reach_beyond_the_members_own_tables() {
        let v = with_secrets();
        let phrase = [5u8; RECOVERY_BYTES];
        let before = secret_bytes(&v);
        for change in [
            "DROP TABLE secret_items; CREATE TABLE secret_items (id BLOB PRIMARY KEY, kind TEXT, \
             name TEXT, folder TEXT, tags BLOB, version INTEGER, deleted INTEGER, changed_at \
             INTEGER, \"x) SELECT value FROM meta --\" BLOB);",
            "DROP TABLE secret_versions; CREATE VIEW secret_versions AS \
             SELECT key AS item, 1 AS version, 0 AS created_ms, value AS content FROM meta;",
            "INSERT INTO secret_items VALUES (x'01', 'note', 'n', NULL, x'', -1, 0, 0);",
        ] {
            let (header, chunks) = crafted(&database_with(change), &phrase);
            assert_eq!(
                restore(&v, &phrase, &header, &chunks),
                Err(BackupError::Database.into()),
                "{change}"
            );
            assert_eq!(secret_bytes(&v), before, "nothing was written");
        }
        let sound = database_with(
            "INSERT INTO secret_items VALUES (x'01', 'note', 'n', NULL, x'', 1, 0, 0); \
             INSERT INTO secret_versions VALUES (x'01', 1, 0, x'aa');",
        );
        let (header, chunks) = crafted(&sound, &phrase);
        assert_eq!(restore(&v, &phrase, &header, &chunks), Ok(2));
        assert_eq!(secret_bytes(&v), (1, 1));
    }

    /// An export opens every chunk before handing it out: a host that altered one fails the
    /// export at once; chunks must be read in order, after the header.
    #[test]
    fn an_export_is_checked_as_it_is_read() {
        let v = with_secrets();
        let made = backup(&v);
        let read = |part: Part, offset: u32| {
            v.run(0, |u| {
                handle(
                    u,
                    BackupOp::Read {
                        id: made.id,
                        part,
                        offset,
                    },
                )
            })
        };
        assert_eq!(
            read(Part::Chunk(0), 0).err(),
            Some(BackupError::OutOfOrder.into()),
            "the header first"
        );
        read(Part::Header, 0).unwrap();
        assert_eq!(
            read(Part::Chunk(1), 0).err(),
            Some(BackupError::OutOfOrder.into())
        );
        let names = chunk_names(&v, made.id);
        v.store.lock().unwrap().get_mut(&names[0]).unwrap()[9] ^= 1;
        read(Part::Header, 0).unwrap();
        assert_eq!(
            read(Part::Chunk(0), 0).err(),
            Some(BackupError::Corrupt { index: 0 }.into())
        );
    }

    fn secret_bytes(v: &Opened) -> (i64, i64) {
        v.run(0, |u| {
            let (vault, _, _) = u.parts();
            vault
                .read(|c| {
                    c.query_row(
                        "SELECT COUNT(*), COALESCE(SUM(length(content)), 0) FROM secret_versions",
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                })
                .map_err(db)
        })
        .unwrap()
    }

    /// The member's own file restores with the phrase into another vault (a new enrollment,
    /// as after the first was deleted): the member's data comes back, the engine's does not.
    #[test]
    fn an_export_restores_with_the_phrase_into_another_vault() {
        let old = with_secrets();
        let made = backup(&old);
        assert!(made.chunks >= 2, "{made:?}");
        let (header, chunks) = export(&old, &made);
        let numbered: Vec<(u32, Vec<u8>)> = (0..).zip(chunks).collect();
        let new = Opened::new();
        assert_eq!(secret_bytes(&new), (0, 0));
        assert_eq!(restore(&new, &old.phrase, &header, &numbered), Ok(6));
        assert_eq!(secret_bytes(&new), (3, 3 * (700 << 10)));
        let kv = new.run(0, |u| {
            let (vault, _, _) = u.parts();
            vault
                .read(|c| c.query_row("SELECT COUNT(*) FROM kv", [], |r| r.get::<_, i64>(0)))
                .map_err(db)
        });
        assert_eq!(kv, Ok(0), "engine rows stay the new vault's");
        // Restored twice: replaced, not doubled.
        assert_eq!(restore(&new, &old.phrase, &header, &numbered), Ok(6));
        assert_eq!(secret_bytes(&new).0, 3);
    }

    /// A file truncated, reordered, extended, altered, with a wrong phrase or another
    /// backup's header is refused with a typed error, and the vault is unchanged.
    #[test]
    fn a_tampered_export_or_a_wrong_phrase_is_refused_and_changes_nothing() {
        let old = with_secrets();
        let a = backup(&old);
        let b = backup(&old);
        let (header, chunks) = export(&old, &a);
        let (other_header, other_chunks) = export(&old, &b);
        let n = chunks.len() as u32;
        let numbered: Vec<(u32, Vec<u8>)> = (0..).zip(chunks.clone()).collect();
        // Into a vault that has data of its own, which no refusal may touch.
        let new = with_secrets();
        let before = secret_bytes(&new);
        let err = |e: BackupError| Err(VaultError::from(e));
        let wrong = [7u8; RECOVERY_BYTES];
        assert_eq!(
            restore(&new, &wrong, &header, &numbered),
            err(BackupError::WrongPhrase)
        );
        let truncated = &numbered[..numbered.len() - 1];
        assert_eq!(
            restore(&new, &old.phrase, &header, truncated),
            err(BackupError::Missing { index: n - 1 })
        );
        let mut swapped = numbered.clone();
        swapped[0].1 = chunks[1].clone();
        swapped[1].1 = chunks[0].clone();
        assert!(matches!(
            restore(&new, &old.phrase, &header, &swapped),
            Err(VaultError::Backup(BackupError::Corrupt { index: 0 }))
        ));
        let mut extended = numbered.clone();
        extended.push((n, chunks[0].clone()));
        assert_eq!(
            restore(&new, &old.phrase, &header, &extended),
            err(BackupError::Trailing { index: n })
        );
        let mut altered = numbered.clone();
        let last = altered.len() - 1;
        altered[last].1[5] ^= 1;
        assert_eq!(
            restore(&new, &old.phrase, &header, &altered),
            err(BackupError::Corrupt { index: n - 1 })
        );
        let mut longer = numbered.clone();
        longer[0].1.push(0);
        assert_eq!(
            restore(&new, &old.phrase, &header, &longer),
            err(BackupError::Corrupt { index: 0 })
        );
        // Another backup's chunks under this header, and this one's under another header.
        let mixed: Vec<(u32, Vec<u8>)> = (0..).zip(other_chunks).collect();
        assert!(matches!(
            restore(&new, &old.phrase, &header, &mixed),
            Err(VaultError::Backup(BackupError::Corrupt { index: 0 }))
        ));
        let mut header_altered = header.clone();
        let at = header_altered.len() - 40;
        header_altered[at] ^= 1;
        assert!(restore(&new, &old.phrase, &header_altered, &numbered).is_err());
        assert!(matches!(
            restore(&new, &old.phrase, &other_header, &numbered),
            Err(VaultError::Backup(BackupError::Corrupt { index: 0 }))
        ));
        // Pieces without a begun restore (every refusal above ended it).
        let piece = BackupOp::RestorePiece {
            chunk: 0,
            bytes: vec![0; 8],
        };
        assert_eq!(
            new.run(0, |u| handle(u, piece)).err(),
            Some(BackupError::OutOfOrder.into())
        );
        assert_eq!(secret_bytes(&new), before, "nothing was written");
    }

    #[test]
    fn a_backup_is_made_listed_and_opens_and_carries_the_phrase_wrap() {
        let v = big();
        let made = backup(&v);
        assert!(made.chunks >= 3, "{made:?}");
        assert!(made.phrase, "an app's vault can be opened with its phrase");
        assert_eq!(verify(&v, made.id), Ok(made.clone()));
        let second = backup(&v);
        assert_eq!(second.id, made.id + 1);
        let BackupReply::Backups(all) = v.run(0, |u| handle(u, BackupOp::List)).unwrap() else {
            panic!()
        };
        assert_eq!(all, [made, second]);
        assert_eq!(verify(&v, 99), Err(BackupError::NoSuchBackup.into()));
    }

    #[test]
    fn truncated_reordered_extended_altered_and_mixed_backups_are_refused() {
        let v = big();
        let a = backup(&v);
        let b = backup(&v);
        let names = chunk_names(&v, a.id);
        let other = chunk_names(&v, b.id);
        let n = names.len();
        let store = v.store.clone();
        let get = |k: &str| store.lock().unwrap().get(k).cloned().unwrap();
        let put = |k: &str, bytes: Vec<u8>| {
            store.lock().unwrap().insert(k.to_owned(), bytes);
        };
        let original: Vec<Vec<u8>> = names.iter().map(|k| get(k)).collect();
        let restore = || {
            for (k, bytes) in names.iter().zip(&original) {
                put(k, bytes.clone());
            }
        };
        // Truncated: the last chunk gone.
        store.lock().unwrap().remove(&names[n - 1]);
        assert_eq!(
            verify(&v, a.id),
            Err(BackupError::Missing {
                index: n as u32 - 1
            }
            .into())
        );
        restore();
        // Reordered: two chunks swapped.
        put(&names[0], original[1].clone());
        put(&names[1], original[0].clone());
        assert_eq!(
            verify(&v, a.id),
            Err(BackupError::Corrupt { index: 0 }.into())
        );
        restore();
        // Extended: a chunk after the last.
        let extra = format!("vaults/alice/backupc/{:020}", chunk_number(a.id, n as u32));
        put(&extra, original[0].clone());
        assert_eq!(
            verify(&v, a.id),
            Err(BackupError::Trailing { index: n as u32 }.into())
        );
        store.lock().unwrap().remove(&extra);
        // Altered: one byte of a middle chunk.
        let mut flipped = original[1].clone();
        flipped[40] ^= 1;
        put(&names[1], flipped);
        assert_eq!(
            verify(&v, a.id),
            Err(BackupError::Corrupt { index: 1 }.into())
        );
        restore();
        // Mixed: a chunk of the other backup at the same position.
        put(&names[1], get(&other[1]));
        assert_eq!(
            verify(&v, a.id),
            Err(BackupError::Corrupt { index: 1 }.into())
        );
        restore();
        // The header changed (a claimed other version): not the one the vault recorded.
        let header_name = format!("vaults/alice/backup/{:020}", a.id);
        let mut header: Header = decode(&get(&header_name), "h").unwrap();
        header.vault_version += 1;
        put(&header_name, encode(&header).to_vec());
        assert_eq!(verify(&v, a.id), Err(BackupError::Replaced.into()));
        // A header claiming more bytes than its chunks can hold: refused before reading.
        let mut huge: Header = decode(&get(&header_name), "h").unwrap();
        huge.vault_version -= 1;
        huge.bytes = u64::MAX;
        put(&header_name, encode(&huge).to_vec());
        assert_eq!(verify(&v, a.id), Err(BackupError::Replaced.into()));
        // A header naming another vault.
        header.vault_version -= 1;
        header.vault = "bob".into();
        put(&header_name, encode(&header).to_vec());
        assert_eq!(verify(&v, a.id), Err(BackupError::OtherVault.into()));
        put(&header_name, b"junk".to_vec());
        assert_eq!(verify(&v, a.id), Err(BackupError::UnknownFormat.into()));
        // Another backup's header and chunks moved under this number: not the one made here.
        let other_header = get(&format!("vaults/alice/backup/{:020}", b.id));
        let mut moved: Header = decode(&other_header, "h").unwrap();
        moved.id = a.id;
        put(&header_name, encode(&moved).to_vec());
        assert_eq!(verify(&v, a.id), Err(BackupError::Replaced.into()));
        // The other backup was never touched.
        assert_eq!(verify(&v, b.id), Ok(b));
    }

    #[test]
    fn scheduled_backups_come_when_due_are_proven_to_open_and_old_ones_go() {
        let v = Opened::new();
        const H: u64 = 60 * 60 * 1000;
        let t0 = 1_000 * H;
        let set = |s: Schedule| v.run(t0, |u| handle(u, BackupOp::SetSchedule(s)));
        assert_eq!(
            set(Schedule {
                keep: 0,
                ..Schedule::default()
            }),
            Err(BackupError::Keep.into())
        );
        let due = |at: u64| {
            v.run(at, |u| {
                let (vault, objects, now) = u.parts();
                scheduled(vault, objects, now)
            })
        };
        // Off: nothing is ever due.
        assert_eq!(due(t0), Ok(None));
        set(Schedule {
            every: vettid_proto::backup::Every::Daily,
            keep: 2,
            max_age_days: 0,
        })
        .unwrap();
        let first = due(t0).unwrap().expect("the first is due at once");
        assert_eq!(due(t0 + H), Ok(None));
        let second = due(t0 + 25 * H).unwrap().expect("a day later");
        let third = due(t0 + 50 * H).unwrap().expect("another day");
        let ids: Vec<u64> = list_all(&v).iter().map(|b| b.id).collect();
        assert_eq!(ids, [second.id, third.id], "keep 2: the oldest went");
        assert!(chunk_names(&v, first.id).is_empty(), "its objects are gone");
        assert!(
            !v.store
                .lock()
                .unwrap()
                .contains_key(&format!("vaults/alice/backup/{:020}", first.id))
        );
        let BackupReply::Status(st) = v.run(0, |u| handle(u, BackupOp::Status)).unwrap() else {
            panic!()
        };
        assert_eq!(
            st.verified.map(|(id, _)| id),
            Some(third.id),
            "the restore test ran"
        );
        assert_eq!(st.next_due_ms, Some(third.created_ms + 24 * H));
        // An age limit: older than a day goes, the newest always stays.
        set(Schedule {
            every: vettid_proto::backup::Every::Weekly,
            keep: 10,
            max_age_days: 1,
        })
        .unwrap();
        let later = due(t0 + 50 * H + 8 * 24 * H)
            .unwrap()
            .expect("a week later");
        let ids: Vec<u64> = list_all(&v).iter().map(|b| b.id).collect();
        assert_eq!(ids, [later.id]);
    }

    fn list_all(v: &Opened) -> Vec<BackupInfo> {
        match v.run(0, |u| handle(u, BackupOp::List)).unwrap() {
            BackupReply::Backups(all) => all,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_backup_cut_short_leaves_no_number_in_the_way() {
        let v = Opened::new();
        // Chunks of a backup 1 that never got its header or row (a crash, a failed write).
        v.store.lock().unwrap().insert(
            format!("vaults/alice/backupc/{:020}", chunk_number(1, 0)),
            b"orphan".to_vec(),
        );
        let made = backup(&v);
        assert_eq!(made.id, 2);
        assert_eq!(verify(&v, 2), Ok(made));
        assert_eq!(verify(&v, 1), Err(BackupError::NoSuchBackup.into()));
    }

    #[test]
    fn nothing_stored_for_a_backup_is_readable() {
        let v = Opened::new();
        v.run(0, |u| {
            let (vault, objects, _) = u.parts();
            vault.write(
                objects,
                vec![Statement {
                    sql: "INSERT INTO kv (key, value) VALUES ('m', 'marker-backup-3c7a')".into(),
                    params: vec![],
                }],
            )
        })
        .unwrap();
        backup(&v);
        for (name, bytes) in v.store.lock().unwrap().iter() {
            assert!(
                !bytes.windows(18).any(|w| w == b"marker-backup-3c7a"),
                "{name} holds the marker"
            );
        }
    }
}
