//! Backups made by the vault (inside the session; the vault must have been unlocked in it).
//!
//! A backup is the vault's whole database at one version, sealed with STREAM
//! (`vettid_crypto::stream`: chunked XChaCha20-Poly1305 with a last-chunk flag) under a key
//! only the vault derives, and written through the host as a header object and chunk objects.
//! The vault opens its backups with its master key, and a member can open one with the
//! recovery phrase alone (the header carries the backup key wrapped under the phrase, without
//! the operator's sealed secret), so a member is never locked in.

use serde::{Deserialize, Serialize};

/// Bytes of database per chunk (the last one may be shorter).
pub const CHUNK: usize = 1024 * 1024;

/// Backup operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Whether it also opens with the recovery phrase.
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
}
