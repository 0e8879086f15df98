//! The secrets store from the app: one method per operation, on an [`Unlocked`] session (every
//! answer's vault version is checked there before it is returned).

use crate::ClientError;
use crate::vault::{Seen, Unlocked};
use vettid_proto::enclave::SignedVersion;
use vettid_proto::secrets::{
    Change, ItemContent, ItemId, ItemSummary, ItemVersion, SecretOp, SecretReply,
};

fn unexpected() -> ClientError {
    ClientError::Protocol("unexpected answer to a secrets operation".into())
}

impl<S: Seen> Unlocked<S> {
    async fn changed(&mut self, op: SecretOp) -> Result<(ItemSummary, SignedVersion), ClientError> {
        match self.run(op).await? {
            SecretReply::Changed { item, version } => Ok((item, self.checked(version)?)),
            _ => Err(unexpected()),
        }
    }

    /// Creates an item.
    pub async fn create_secret(
        &mut self,
        content: ItemContent,
    ) -> Result<(ItemSummary, SignedVersion), ClientError> {
        self.changed(SecretOp::Create(content)).await
    }

    /// Replaces an item's content (a new version); `expected` guards against concurrent edits.
    pub async fn update_secret(
        &mut self,
        id: ItemId,
        expected: Option<u32>,
        content: ItemContent,
    ) -> Result<(ItemSummary, SignedVersion), ClientError> {
        self.changed(SecretOp::Update {
            id,
            expected,
            content,
        })
        .await
    }

    /// Deletes an item (a tombstone; its versions stay restorable).
    pub async fn delete_secret(
        &mut self,
        id: ItemId,
    ) -> Result<(ItemSummary, SignedVersion), ClientError> {
        self.changed(SecretOp::Delete { id }).await
    }

    /// Makes an older version current again.
    pub async fn restore_secret(
        &mut self,
        id: ItemId,
        version: u32,
    ) -> Result<(ItemSummary, SignedVersion), ClientError> {
        self.changed(SecretOp::Restore { id, version }).await
    }

    /// Reads the current version, or `version`.
    pub async fn get_secret(
        &mut self,
        id: ItemId,
        version: Option<u32>,
    ) -> Result<ItemVersion, ClientError> {
        match self.run(SecretOp::Get { id, version }).await? {
            SecretReply::Item(v) => Ok(v),
            _ => Err(unexpected()),
        }
    }

    /// Every item matching the filters (all pages), metadata only.
    pub async fn list_secrets(
        &mut self,
        name: Option<String>,
        tag: Option<String>,
        folder: Option<String>,
        deleted: bool,
    ) -> Result<Vec<ItemSummary>, ClientError> {
        let (mut all, mut after) = (Vec::new(), None);
        loop {
            let op = SecretOp::List {
                after,
                name: name.clone(),
                tag: tag.clone(),
                folder: folder.clone(),
                deleted,
            };
            let SecretReply::Items { items, next } = self.run(op).await? else {
                return Err(unexpected());
            };
            all.extend(items);
            match next {
                Some(n) => after = Some(n),
                None => return Ok(all),
            }
        }
    }

    /// An item's versions: (number, created ms).
    pub async fn secret_versions(&mut self, id: ItemId) -> Result<Vec<(u32, u64)>, ClientError> {
        match self.run(SecretOp::Versions { id }).await? {
            SecretReply::Versions(v) => Ok(v),
            _ => Err(unexpected()),
        }
    }

    /// Every change after vault version `since` (all pages): the changes, oldest first, and
    /// the vault version they bring a replica to.
    pub async fn sync_secrets(&mut self, since: u64) -> Result<(Vec<Change>, u64), ClientError> {
        let (mut all, mut from) = (Vec::new(), since);
        loop {
            let SecretReply::Changes {
                changes,
                upto,
                more,
            } = self.run(SecretOp::Sync { since: from }).await?
            else {
                return Err(unexpected());
            };
            if upto > self.version() {
                return Err(ClientError::Protocol(
                    "sync reaches beyond the version its answer carries".into(),
                ));
            }
            all.extend(changes);
            if !more {
                return Ok((all, upto));
            }
            if upto <= from {
                return Err(ClientError::Protocol("sync made no progress".into()));
            }
            from = upto;
        }
    }

    /// How many live items each folder holds (`None`: in no folder), by folder name.
    pub async fn folders(&mut self) -> Result<Vec<(Option<String>, u32)>, ClientError> {
        let (mut all, mut after) = (Vec::new(), None);
        loop {
            let SecretReply::Folders { folders, next } =
                self.run(SecretOp::Folders { after }).await?
            else {
                return Err(unexpected());
            };
            all.extend(folders);
            match next {
                Some(n) => after = Some(n),
                None => return Ok(all),
            }
        }
    }

    /// The current TOTP code of a login item, and the seconds it stays valid.
    pub async fn totp(&mut self, id: ItemId) -> Result<(String, u64), ClientError> {
        match self.run(SecretOp::Totp { id }).await? {
            SecretReply::Totp { code, valid_for } => Ok((code, valid_for)),
            _ => Err(unexpected()),
        }
    }
}

/// A replica of the secrets store built from sync answers: id → current version, or `None`
/// for a tombstone. Applying `sync(N)` to the replica at N gives the vault's current items.
pub fn apply(
    replica: &mut std::collections::BTreeMap<ItemId, Option<ItemVersion>>,
    changes: Vec<Change>,
) {
    for c in changes {
        match c {
            Change::Upsert(v) => {
                replica.insert(v.id, Some(*v));
            }
            Change::Tombstone { id, .. } => {
                replica.insert(id, None);
            }
        }
    }
}
