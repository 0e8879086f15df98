//! Backups made by the vault, from the app: one method per operation on an [`Unlocked`]
//! session (every answer's vault version is checked there).

use crate::ClientError;
use crate::recovery::RecoveryPhrase;
use crate::vault::{Seen, Unlocked};
use std::io::{Read, Write};
use vettid_proto::backup::{
    BackupInfo, BackupOp, BackupReply, CHUNK, EXPORT_MAGIC, PIECE, Part, Schedule, Status,
};

/// Longest header an export may carry.
const MAX_HEADER: usize = 64 * 1024;
/// Longest sealed chunk (a chunk and its tag).
const MAX_SEALED_CHUNK: usize = CHUNK + 16;

fn file_error(e: std::io::Error) -> ClientError {
    ClientError::Export(e.to_string())
}

/// Reads one length-prefixed object of at most `max` bytes; `None` at a clean end of file.
fn read_object(file: &mut impl Read, max: usize) -> Result<Option<Vec<u8>>, ClientError> {
    let mut len = [0u8; 4];
    match file.read(&mut len[..1]).map_err(file_error)? {
        0 => return Ok(None),
        _ => file.read_exact(&mut len[1..]).map_err(file_error)?,
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > max {
        return Err(ClientError::Export(
            "not an export file (bad length)".into(),
        ));
    }
    let mut bytes = vec![0; len];
    file.read_exact(&mut bytes)
        .map_err(|_| ClientError::Export("the file ends in the middle of a part".into()))?;
    Ok(Some(bytes))
}

fn write_object(file: &mut impl Write, bytes: &[u8]) -> Result<(), ClientError> {
    let len =
        u32::try_from(bytes.len()).map_err(|_| ClientError::Export("part too long".into()))?;
    file.write_all(&len.to_be_bytes()).map_err(file_error)?;
    file.write_all(bytes).map_err(file_error)
}

fn unexpected() -> ClientError {
    ClientError::Protocol("unexpected answer to a backup operation".into())
}

impl<S: Seen> Unlocked<S> {
    /// Backs the vault up now: what was stored.
    pub async fn backup_now(&mut self) -> Result<BackupInfo, ClientError> {
        match self.run(BackupOp::Now).await? {
            BackupReply::Made(info) => Ok(info),
            _ => Err(unexpected()),
        }
    }

    /// The backups the vault made, oldest first.
    pub async fn backups(&mut self) -> Result<Vec<BackupInfo>, ClientError> {
        match self.run(BackupOp::List).await? {
            BackupReply::Backups(all) => Ok(all),
            _ => Err(unexpected()),
        }
    }

    /// Has the enclave open backup `id` (every chunk and the database in it).
    pub async fn verify_backup(&mut self, id: u64) -> Result<BackupInfo, ClientError> {
        match self.run(BackupOp::Verify { id }).await? {
            BackupReply::Verified(info) => Ok(info),
            _ => Err(unexpected()),
        }
    }

    /// Sets when the vault backs itself up and which backups it keeps.
    pub async fn set_backup_schedule(
        &mut self,
        schedule: Schedule,
    ) -> Result<Schedule, ClientError> {
        match self.run(BackupOp::SetSchedule(schedule)).await? {
            BackupReply::Scheduled(s) => Ok(s),
            _ => Err(unexpected()),
        }
    }

    /// One of backup `id`'s objects, as stored (sealed), read piece by piece.
    async fn backup_object(&mut self, id: u64, part: Part) -> Result<Vec<u8>, ClientError> {
        let max = match part {
            Part::Header => MAX_HEADER,
            Part::Chunk(_) => MAX_SEALED_CHUNK,
        };
        let mut out = Vec::new();
        loop {
            let offset = u32::try_from(out.len()).map_err(|_| unexpected())?;
            let BackupReply::Piece { bytes, total } =
                self.run(BackupOp::Read { id, part, offset }).await?
            else {
                return Err(unexpected());
            };
            if total as usize > max || bytes.is_empty() && out.len() < total as usize {
                return Err(unexpected());
            }
            out.extend_from_slice(&bytes);
            if out.len() >= total as usize {
                out.truncate(total as usize);
                return Ok(out);
            }
        }
    }

    /// Writes backup `backup` to `file` as the member's own export
    /// ([`vettid_proto::backup::EXPORT_MAGIC`], the header, each sealed chunk): exactly what
    /// the vault stored, which nobody opens without the recovery phrase. `progress(done,
    /// total)` after each chunk. The bytes written.
    pub async fn export_backup(
        &mut self,
        backup: &BackupInfo,
        file: &mut impl Write,
        mut progress: impl FnMut(u32, u32),
    ) -> Result<u64, ClientError> {
        file.write_all(EXPORT_MAGIC).map_err(file_error)?;
        let header = self.backup_object(backup.id, Part::Header).await?;
        write_object(file, &header)?;
        let mut written = (EXPORT_MAGIC.len() + 4 + header.len()) as u64;
        for index in 0..backup.chunks {
            let chunk = self.backup_object(backup.id, Part::Chunk(index)).await?;
            write_object(file, &chunk)?;
            written += 4 + chunk.len() as u64;
            progress(index + 1, backup.chunks);
        }
        file.flush().map_err(file_error)?;
        Ok(written)
    }

    /// Restores the export in `file` into this vault with the `phrase` of the vault that made
    /// it: the enclave checks every chunk (a truncated, reordered, extended or altered file is
    /// refused with a typed error, and nothing is written), then replaces this vault's secrets,
    /// personal data and feed with the backup's. `progress(done, total)` after each chunk. What
    /// the backup was, and the rows restored.
    pub async fn restore_export(
        &mut self,
        file: &mut impl Read,
        phrase: &RecoveryPhrase,
        mut progress: impl FnMut(u32, u32),
    ) -> Result<(BackupInfo, u64), ClientError> {
        let mut magic = [0u8; EXPORT_MAGIC.len()];
        file.read_exact(&mut magic)
            .map_err(|_| ClientError::Export("not an export file".into()))?;
        if &magic != EXPORT_MAGIC {
            return Err(ClientError::Export("not an export file".into()));
        }
        let header = read_object(file, MAX_HEADER)?
            .ok_or_else(|| ClientError::Export("the file has no header".into()))?;
        let begin = BackupOp::RestoreBegin {
            header,
            phrase: phrase.entropy(),
        };
        let BackupReply::RestoreReady(info) = self.run(begin).await? else {
            return Err(unexpected());
        };
        let mut index = 0u32;
        while let Some(chunk) = read_object(file, MAX_SEALED_CHUNK)? {
            for piece in chunk.chunks(PIECE) {
                let op = BackupOp::RestorePiece {
                    chunk: index,
                    bytes: piece.to_vec(),
                };
                if !matches!(self.run(op).await?, BackupReply::RestoreProgress { .. }) {
                    return Err(unexpected());
                }
            }
            // (A chunk beyond the last is the enclave's to refuse: `Trailing`.)
            index += 1;
            progress(index.min(info.chunks), info.chunks);
        }
        match self.run(BackupOp::RestoreFinish).await? {
            BackupReply::Restored { rows } => Ok((info, rows)),
            _ => Err(unexpected()),
        }
    }

    /// The schedule, the newest backup, the newest one proven to open, the next due.
    pub async fn backup_status(&mut self) -> Result<Status, ClientError> {
        match self.run(BackupOp::Status).await? {
            BackupReply::Status(s) => Ok(s),
            _ => Err(unexpected()),
        }
    }
}
