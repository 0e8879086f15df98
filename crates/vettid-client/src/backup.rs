//! Backups made by the vault, from the app: one method per operation on an [`Unlocked`]
//! session (every answer's vault version is checked there).

use crate::ClientError;
use crate::vault::{Seen, Unlocked};
use vettid_proto::backup::{BackupInfo, BackupOp, BackupReply, Schedule, Status};

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

    /// The schedule, the newest backup, the newest one proven to open, the next due.
    pub async fn backup_status(&mut self) -> Result<Status, ClientError> {
        match self.run(BackupOp::Status).await? {
            BackupReply::Status(s) => Ok(s),
            _ => Err(unexpected()),
        }
    }
}
