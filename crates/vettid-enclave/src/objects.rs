//! Object names and authenticated encryption of everything the enclave stores.
//!
//! Every object is `AEAD(key, aad = "vettid/v1/object\0" ‖ vault ‖ "\0" ‖ kind ‖ "\0" ‖ number)`:
//! an object moved to another vault's name, another kind, or another number (an older
//! version swapped in) fails to open. Names are `vaults/<vault>/<kind>/<number, zero-padded>`
//! so a listing sorts by number.

use crate::link::{Link, LinkError};
use vettid_crypto::aead::AeadKey;
use vettid_proto::enclave::{HostReply, ToHost, VaultError};
use zeroize::Zeroizing;

/// The kinds of object a vault has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// Sealed vault secret and PIN-wrapped master key; one per PIN generation.
    Keys,
    /// Guess-limit state; one per failed or reset attempt.
    Guard,
    /// One acknowledged change.
    Log,
    /// The whole database at a version: a manifest naming its chunks.
    Snapshot,
    /// One chunk of a snapshot; numbered `version << 16 | index`.
    SnapshotChunk,
    /// A writer's claim on the vault; a newer one fences older writers off.
    Epoch,
    /// The statement digests of the versions a snapshot compacted away; numbered by the
    /// snapshot's version. With them the vault proves that its head extends an older version.
    History,
    /// A backup's header (`backup.rs`); numbered by the backup.
    Backup,
    /// One chunk of a backup, sealed with STREAM; numbered `backup << 24 | index`.
    BackupChunk,
}

impl ObjectKind {
    /// Every kind, in the order a shredded vault's objects are deleted: the keys records
    /// (every wrap of the master key, and the sealed secret) first, so that a shred cut
    /// short has already made the rest unreadable; the writer's claim last.
    pub const SHRED_ORDER: [ObjectKind; 9] = [
        ObjectKind::Keys,
        ObjectKind::Guard,
        ObjectKind::Backup,
        ObjectKind::BackupChunk,
        ObjectKind::Log,
        ObjectKind::Snapshot,
        ObjectKind::SnapshotChunk,
        ObjectKind::History,
        ObjectKind::Epoch,
    ];

    fn dir(self) -> &'static str {
        match self {
            ObjectKind::Keys => "keys",
            ObjectKind::Guard => "guard",
            ObjectKind::Log => "log",
            ObjectKind::Snapshot => "snap",
            ObjectKind::SnapshotChunk => "snapc",
            ObjectKind::Epoch => "epoch",
            ObjectKind::History => "hist",
            ObjectKind::Backup => "backup",
            ObjectKind::BackupChunk => "backupc",
        }
    }
}

/// The objects of one vault.
pub struct Objects<'a> {
    link: &'a Link,
    vault: &'a str,
}

/// A storage failure as the app sees it: in the enclave's words only (the host's own error text
/// is not passed on, so a host cannot put words of its choosing in front of the member).
fn storage(e: LinkError) -> VaultError {
    VaultError::Storage(match e {
        LinkError::Host(_) => "the host could not serve the request".into(),
        e => e.to_string(),
    })
}

impl<'a> Objects<'a> {
    /// The objects of `vault` (a checked vault id), reached through `link`.
    pub fn new(link: &'a Link, vault: &'a str) -> Self {
        Self { link, vault }
    }

    /// The vault id.
    pub fn vault(&self) -> &str {
        self.vault
    }

    /// The object name.
    pub fn name(&self, kind: ObjectKind, number: u64) -> String {
        format!("vaults/{}/{}/{number:020}", self.vault, kind.dir())
    }

    /// The associated data binding an object to its place.
    pub fn aad(&self, kind: ObjectKind, number: u64) -> Vec<u8> {
        let mut aad = b"vettid/v1/object\0".to_vec();
        aad.extend_from_slice(self.vault.as_bytes());
        aad.push(0);
        aad.extend_from_slice(kind.dir().as_bytes());
        aad.push(0);
        aad.extend_from_slice(&number.to_be_bytes());
        aad
    }

    /// Numbers of the existing objects of `kind`, ascending. Foreign names are an error.
    pub fn list(&self, kind: ObjectKind) -> Result<Vec<u64>, VaultError> {
        let prefix = format!("vaults/{}/{}/", self.vault, kind.dir());
        let HostReply::Names(names) = self
            .link
            .call(&ToHost::List {
                prefix: prefix.clone(),
            })
            .map_err(storage)?
        else {
            return Err(VaultError::Storage("unexpected answer to List".into()));
        };
        let mut numbers = names
            .iter()
            .map(|n| {
                n.strip_prefix(&prefix)
                    .filter(|s| s.len() == 20)
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| {
                        VaultError::Tampered("a listing names an unexpected object".into())
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// Reads and opens an object; `None` if it does not exist.
    pub fn read(
        &self,
        key: &AeadKey,
        kind: ObjectKind,
        number: u64,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, VaultError> {
        let Some(bytes) = self.read_raw(kind, number)? else {
            return Ok(None);
        };
        key.open_owned(&self.aad(kind, number), bytes)
            .map(Some)
            .map_err(|_| {
                VaultError::Tampered(format!("{} does not authenticate", self.name(kind, number)))
            })
    }

    /// Reads an object's bytes as stored.
    pub fn read_raw(&self, kind: ObjectKind, number: u64) -> Result<Option<Vec<u8>>, VaultError> {
        match self
            .link
            .call(&ToHost::Get {
                name: self.name(kind, number),
            })
            .map_err(storage)?
        {
            HostReply::Object(bytes) => Ok(bytes),
            _ => Err(VaultError::Storage("unexpected answer to Get".into())),
        }
    }

    /// Seals and creates an object; `Conflict` if the name is taken. Durable when it returns.
    pub fn create(
        &self,
        key: &AeadKey,
        kind: ObjectKind,
        number: u64,
        plaintext: &[u8],
    ) -> Result<(), VaultError> {
        let sealed = key.seal(&self.aad(kind, number), plaintext);
        self.create_raw(kind, number, sealed)
    }

    /// Creates an object from bytes that are already protected.
    pub fn create_raw(
        &self,
        kind: ObjectKind,
        number: u64,
        bytes: Vec<u8>,
    ) -> Result<(), VaultError> {
        match self
            .link
            .call(&ToHost::PutCreate {
                name: self.name(kind, number),
                bytes,
            })
            .map_err(storage)?
        {
            HostReply::Created => Ok(()),
            HostReply::AlreadyExists => Err(VaultError::Conflict),
            _ => Err(VaultError::Storage("unexpected answer to PutCreate".into())),
        }
    }

    /// Deletes objects (compaction).
    pub fn delete(&self, kind: ObjectKind, numbers: &[u64]) -> Result<(), VaultError> {
        if numbers.is_empty() {
            return Ok(());
        }
        let names = numbers.iter().map(|n| self.name(kind, *n)).collect();
        self.link.call(&ToHost::Delete { names }).map_err(storage)?;
        Ok(())
    }
}

/// Encoding of a stored record (postcard: compact, and large values are copied, not parsed).
pub fn encode<T: serde::Serialize>(value: &T) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(postcard::to_allocvec(value).expect("serialising to a Vec cannot fail"))
}

/// Decoding of a stored record; anything that does not decode exactly (including trailing
/// bytes) is reported as tampering rather than a panic.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, VaultError> {
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Ok(value),
        _ => Err(VaultError::Tampered(format!("{what} does not decode"))),
    }
}
