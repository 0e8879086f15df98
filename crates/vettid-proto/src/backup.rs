//! Backups made by the vault (inside the session; the vault must have been unlocked in it).
//!
//! A backup is the vault's whole database at one version, sealed with STREAM
//! (`vettid_crypto::stream`: chunked XChaCha20-Poly1305 with a last-chunk flag) under a key
//! only the vault derives, and written through the host as a header object and chunk objects.
//! The vault opens its backups with its master key. Each header also carries the backup key
//! wrapped under the recovery phrase, without the operator's sealed secret, so that a backup
//! can be opened with the phrase alone even if the operator's sealing keys are gone: an export
//! to the member's own file ([`BackupOp::Read`], [`EXPORT_MAGIC`]) restores with the phrase
//! into any vault of theirs ([`BackupOp::RestoreBegin`] … [`BackupOp::RestoreFinish`]).

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The first bytes of an export file. Then: the backup's header (`u32` big-endian length, the
/// bytes), then each sealed chunk in order (the same framing). Nothing in it is readable
/// without the recovery phrase, and any change to it fails the restore.
pub const EXPORT_MAGIC: &[u8; 16] = b"vettid-export\x00v1";

/// Largest piece of an object in one [`BackupOp::Read`] answer or [`BackupOp::RestorePiece`]
/// (a session message is under 64 KiB).
pub const PIECE: usize = 48 * 1024;

/// Bytes of database per chunk (the last one may be shorter).
pub const CHUNK: usize = 1024 * 1024;

/// Backup operations.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackupOp {
    /// Back the vault up now.
    Now,
    /// The backups made (newest last).
    List,
    /// Opens a backup inside the enclave — every chunk, in order, and the database in it —
    /// without restoring it: proves it can be restored.
    Verify {
        /// Its number.
        id: u64,
    },
    /// Sets when the vault backs itself up and which backups it keeps.
    SetSchedule(Schedule),
    /// The schedule, the newest backup and the newest one proven to open.
    Status,
    /// Up to [`PIECE`] bytes at `offset` of one of backup `id`'s objects, as stored (sealed):
    /// for an export to the member's own file.
    Read {
        /// The backup.
        id: u64,
        /// Which of its objects.
        part: Part,
        /// Where in it.
        offset: u32,
    },
    /// Starts restoring an exported backup into this vault: its header, and the recovery
    /// phrase that opens its key (of the vault that made it, which may be an earlier vault of
    /// this member's). Replaces a restore this session had begun.
    RestoreBegin {
        /// The header object, as exported.
        #[serde(with = "serde_bytes")]
        header: Vec<u8>,
        /// The recovery phrase's entropy of the vault that made the backup.
        phrase: Zeroizing<[u8; crate::session::RECOVERY_BYTES]>,
    },
    /// The next piece of the restore: chunks in order, each chunk's pieces in order.
    RestorePiece {
        /// The chunk it belongs to.
        chunk: u32,
        /// Up to [`PIECE`] sealed bytes.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Ends the restore: every chunk opened, the database sound; the member's data (secrets,
    /// personal data, feed) in this vault is replaced by the backup's.
    RestoreFinish,
}

crate::redact::redacted_debug!(BackupOp);

/// One of a backup's objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Part {
    /// Its header.
    Header,
    /// Its sealed chunk of this index.
    Chunk(u32),
}

/// How often scheduled backups are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Every {
    /// Only on demand.
    Off,
    /// Once a day.
    Daily,
    /// Once a week.
    Weekly,
    /// Once every 30 days.
    Monthly,
}

impl Every {
    /// The period in milliseconds (`None`: off).
    pub fn period_ms(self) -> Option<u64> {
        const DAY: u64 = 24 * 60 * 60 * 1000;
        match self {
            Every::Off => None,
            Every::Daily => Some(DAY),
            Every::Weekly => Some(7 * DAY),
            Every::Monthly => Some(30 * DAY),
        }
    }
}

/// Most backups a vault keeps.
pub const MAX_KEEP: u32 = 100;

/// When backups are made and how long they are kept. Every new backup (scheduled or not) is
/// opened in the enclave right away (the restore test), then the oldest beyond `keep`, and
/// those older than `max_age_days` (never the newest), are deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// How often.
    pub every: Every,
    /// How many to keep (1–[`MAX_KEEP`]).
    pub keep: u32,
    /// Delete backups older than this many days (0: no age limit).
    pub max_age_days: u32,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            every: Every::Off,
            keep: 10,
            max_age_days: 0,
        }
    }
}

/// What [`BackupOp::Status`] shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The schedule.
    pub schedule: Schedule,
    /// The newest backup.
    pub newest: Option<BackupInfo>,
    /// The newest backup proven to open, and when (ms).
    pub verified: Option<(u64, u64)>,
    /// When the next scheduled backup is due (ms), if scheduled.
    pub next_due_ms: Option<u64>,
}

/// What a backup is, as the vault lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// Its number (rising).
    pub id: u64,
    /// When it was made (the host's clock, ms).
    pub created_ms: u64,
    /// The vault version it holds.
    pub vault_version: u64,
    /// Database bytes in it.
    pub bytes: u64,
    /// Its chunks.
    pub chunks: u32,
    /// Whether its key is also wrapped under the recovery phrase (for a restore without the
    /// operator).
    pub phrase: bool,
}

/// Answers to [`BackupOp`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackupReply {
    /// Made and stored.
    Made(BackupInfo),
    /// The backups.
    Backups(Vec<BackupInfo>),
    /// It opened, every chunk and the database.
    Verified(BackupInfo),
    /// The schedule is set.
    Scheduled(Schedule),
    /// Answer to [`BackupOp::Status`].
    Status(Status),
    /// Answer to [`BackupOp::Read`].
    Piece {
        /// The bytes (fewer than asked at the object's end; none past it).
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        /// The object's whole length.
        total: u32,
    },
    /// Answer to [`BackupOp::RestoreBegin`]: what the header says is coming.
    RestoreReady(BackupInfo),
    /// Answer to [`BackupOp::RestorePiece`]: chunks opened so far.
    RestoreProgress {
        /// Chunks complete and authenticated.
        chunks: u32,
    },
    /// Answer to [`BackupOp::RestoreFinish`]: rows restored.
    Restored {
        /// Rows written into the vault's tables.
        rows: u64,
    },
}

/// Why a backup does not open (or an operation on backups was refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum BackupError {
    /// No backup of that number.
    #[error("no such backup")]
    NoSuchBackup,
    /// Its header names another vault.
    #[error("this backup belongs to another vault")]
    OtherVault,
    /// Its header is not one this release reads.
    #[error("unknown backup format")]
    UnknownFormat,
    /// A chunk is missing (the backup was truncated, or a chunk deleted).
    #[error("chunk {index} of the backup is missing")]
    Missing {
        /// The first missing chunk.
        index: u32,
    },
    /// There are chunks after its last one.
    #[error("the backup has data after its last chunk ({index})")]
    Trailing {
        /// The first chunk too many.
        index: u32,
    },
    /// A chunk does not open: altered, moved, from another backup or another vault.
    #[error("chunk {index} of the backup does not authenticate")]
    Corrupt {
        /// The chunk.
        index: u32,
    },
    /// Every chunk opened but what they hold is not a sound database.
    #[error("the backup's database does not open")]
    Database,
    /// The header under this number is not the one the vault made (another backup, or one a
    /// host kept from before).
    #[error("this is not the backup the vault made under that number")]
    Replaced,
    /// A schedule keeps 1 to [`MAX_KEEP`] backups.
    #[error("keep 1 to {MAX_KEEP} backups")]
    Keep,
    /// The phrase does not open this backup (a wrong phrase, or a backup made without one).
    #[error("the recovery phrase does not open this backup")]
    WrongPhrase,
    /// A restore piece out of order, too long, or with no restore begun.
    #[error("restore pieces must come in order, after RestoreBegin")]
    OutOfOrder,
    /// The backup holds more than this vault may (its quota).
    #[error("the backup is larger than this vault may hold")]
    TooLarge,
}
