//! The secrets store: typed items with a version history, tombstones and delta sync.
//!
//! Every change to an item is a new version (older versions stay readable and restorable);
//! a delete is a tombstone. Each item remembers the vault state version of its last change,
//! so a device that has seen the vault at version N asks for exactly what changed after N.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Longest item name, folder, tag or field name (bytes).
pub const MAX_NAME: usize = 256;
/// Longest single field value (bytes).
pub const MAX_VALUE: usize = 16 * 1024;
/// Most tags and custom fields per item.
pub const MAX_ENTRIES: usize = 64;
/// Largest encoded item content (bytes), so that any item fits one session message.
pub const MAX_ITEM: usize = 32 * 1024;
/// Encoded bytes of items per list or sync answer at most (the rest comes on the next page).
pub const PAGE_BYTES: usize = 56 * 1024;

/// An item id (16 random bytes, chosen by the vault).
pub type ItemId = [u8; 16];

/// A secret value: wiped when dropped, never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Secret(pub Zeroizing<String>);

impl Secret {
    /// Wraps `s`.
    pub fn new(s: &str) -> Self {
        Self(Zeroizing::new(s.to_owned()))
    }

    /// The value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// What an item holds, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecretData {
    /// A website or app login; `totp` is a base32 TOTP secret (RFC 6238), if any.
    Login {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
        /// Where it is used.
        url: String,
        /// TOTP secret (base32).
        totp: Option<Secret>,
    },
    /// A payment card.
    Card {
        /// Cardholder.
        holder: String,
        /// Card number.
        number: Secret,
        /// Expiry (`MM/YY`).
        expiry: String,
        /// Security code.
        cvv: Secret,
    },
    /// An identity document.
    Identity {
        /// Document kind (passport, licence…).
        document: String,
        /// Its number.
        number: Secret,
        /// Holder's full name.
        full_name: String,
        /// Expiry date.
        expiry: String,
    },
    /// A free-form note.
    Note {
        /// The text.
        text: Secret,
    },
    /// An API key.
    ApiKey {
        /// Service.
        service: String,
        /// The key.
        key: Secret,
    },
    /// A crypto wallet.
    Wallet {
        /// Chain or network.
        chain: String,
        /// Public address.
        address: String,
        /// Seed phrase or private key.
        secret: Secret,
    },
    /// Only custom fields.
    Custom,
}

impl SecretData {
    /// The kind's name.
    pub fn kind(&self) -> &'static str {
        match self {
            SecretData::Login { .. } => "login",
            SecretData::Card { .. } => "card",
            SecretData::Identity { .. } => "identity",
            SecretData::Note { .. } => "note",
            SecretData::ApiKey { .. } => "api_key",
            SecretData::Wallet { .. } => "wallet",
            SecretData::Custom => "custom",
        }
    }
}

/// A named extra field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomField {
    /// Field name.
    pub name: String,
    /// Value.
    pub value: Secret,
    /// Whether apps hide it until asked.
    pub hidden: bool,
}

/// The content of one version of an item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemContent {
    /// Display name (searchable).
    pub name: String,
    /// Folder, if any.
    pub folder: Option<String>,
    /// Tags (searchable).
    pub tags: Vec<String>,
    /// The typed data.
    pub data: SecretData,
    /// Extra fields.
    pub fields: Vec<CustomField>,
}

impl ItemContent {
    /// Checks sizes and counts: the first problem.
    pub fn check(&self) -> Result<(), SecretError> {
        let name_ok = |s: &str| !s.is_empty() && s.len() <= MAX_NAME;
        if !name_ok(&self.name) {
            return Err(SecretError::Name);
        }
        if self.folder.as_deref().is_some_and(|f| !name_ok(f)) {
            return Err(SecretError::Folder);
        }
        if self.tags.len() > MAX_ENTRIES || self.fields.len() > MAX_ENTRIES {
            return Err(SecretError::TooManyEntries);
        }
        if !self.tags.iter().all(|t| name_ok(t)) {
            return Err(SecretError::Tag);
        }
        if self
            .fields
            .iter()
            .any(|f| !name_ok(&f.name) || f.value.expose().len() > MAX_VALUE)
        {
            return Err(SecretError::Field);
        }
        let values: Vec<&str> = match &self.data {
            SecretData::Login {
                username,
                password,
                url,
                totp,
            } => {
                if let Some(t) = totp
                    && crate::secrets::totp_secret(t.expose()).is_none()
                {
                    return Err(SecretError::TotpSecret);
                }
                vec![username, password.expose(), url]
            }
            SecretData::Card {
                holder,
                number,
                expiry,
                cvv,
            } => vec![holder, number.expose(), expiry, cvv.expose()],
            SecretData::Identity {
                document,
                number,
                full_name,
                expiry,
            } => vec![document, number.expose(), full_name, expiry],
            SecretData::Note { text } => vec![text.expose()],
            SecretData::ApiKey { service, key } => vec![service, key.expose()],
            SecretData::Wallet {
                chain,
                address,
                secret,
            } => vec![chain, address, secret.expose()],
            SecretData::Custom => vec![],
        };
        if values.iter().any(|v| v.len() > MAX_VALUE) {
            return Err(SecretError::Value);
        }
        if postcard::to_allocvec(self).map_or(true, |b| b.len() > MAX_ITEM) {
            return Err(SecretError::ItemSize);
        }
        Ok(())
    }
}

/// Decodes a base32 (RFC 4648, no padding needed, case-insensitive, spaces ignored) TOTP
/// secret of 10–64 bytes.
pub fn totp_secret(text: &str) -> Option<Vec<u8>> {
    let mut bits: u64 = 0;
    let mut n = 0u32;
    let mut out = Vec::new();
    for c in text.chars().filter(|c| !c.is_whitespace() && *c != '=') {
        let v = match c.to_ascii_uppercase() {
            c @ 'A'..='Z' => c as u64 - 'A' as u64,
            c @ '2'..='7' => c as u64 - '2' as u64 + 26,
            _ => return None,
        };
        bits = (bits << 5) | v;
        n += 5;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    (10..=64).contains(&out.len()).then_some(out)
}

/// An item as listed: no secret values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemSummary {
    /// Id.
    pub id: ItemId,
    /// Kind (`login`, `card`…).
    pub kind: String,
    /// Name.
    pub name: String,
    /// Folder.
    pub folder: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Current version of the item (1 for a new one).
    pub version: u32,
    /// Whether it is deleted (a tombstone).
    pub deleted: bool,
    /// The vault state version of its last change.
    pub changed_at: u64,
}

/// One version of an item, with its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemVersion {
    /// Item id.
    pub id: ItemId,
    /// Version number.
    pub version: u32,
    /// When it was made (the host's clock, ms).
    pub created_ms: u64,
    /// Its content.
    pub content: ItemContent,
}

/// A change since a given vault version: the item's current state, or its tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Created or updated (or restored): the current version.
    Upsert(Box<ItemVersion>),
    /// Deleted.
    Tombstone {
        /// Item id.
        id: ItemId,
        /// The vault state version of the delete.
        changed_at: u64,
    },
}

/// Secrets operations (inside the session; the vault must have been unlocked in it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecretOp {
    /// Create an item.
    Create(ItemContent),
    /// Replace an item's content; `expected` (if given) must be its current version.
    Update {
        /// Item.
        id: ItemId,
        /// Optimistic concurrency: the version the app edited.
        expected: Option<u32>,
        /// New content.
        content: ItemContent,
    },
    /// Delete (tombstone; versions stay restorable).
    Delete {
        /// Item.
        id: ItemId,
    },
    /// Read the current version, or an older one.
    Get {
        /// Item.
        id: ItemId,
        /// A version number (current when `None`).
        version: Option<u32>,
    },
    /// List items: metadata only, filtered by a name substring, a tag or a folder, in id
    /// order from after `after` (one page; the answer names the next).
    List {
        /// Continue after this item.
        after: Option<ItemId>,
        /// Case-insensitive substring of the name.
        name: Option<String>,
        /// Exact tag.
        tag: Option<String>,
        /// Exact folder.
        folder: Option<String>,
        /// Include tombstones.
        deleted: bool,
    },
    /// An item's version numbers and dates.
    Versions {
        /// Item.
        id: ItemId,
    },
    /// Make an older version current again (as a new version).
    Restore {
        /// Item.
        id: ItemId,
        /// The version to bring back.
        version: u32,
    },
    /// What changed after vault version `since` (oldest first, one page of [`PAGE_BYTES`]).
    Sync {
        /// The vault version the app has.
        since: u64,
    },
    /// The current TOTP code of a login item.
    Totp {
        /// Item.
        id: ItemId,
    },
    /// How many live items each folder holds (`None`: items in no folder), by folder name, from
    /// after `after` (one page of [`PAGE_BYTES`]; the answer names the next).
    Folders {
        /// Continue after this folder (`None`: from the start, items in no folder first).
        after: Option<String>,
    },
}

/// Why a secrets operation was refused (the caller's mistake; nothing changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SecretError {
    /// An item's name is 1–[`MAX_NAME`] bytes.
    #[error("name must be 1-{MAX_NAME} bytes")]
    Name,
    /// A folder is 1–[`MAX_NAME`] bytes.
    #[error("folder must be 1-{MAX_NAME} bytes")]
    Folder,
    /// At most [`MAX_ENTRIES`] tags and as many custom fields.
    #[error("at most {MAX_ENTRIES} tags and {MAX_ENTRIES} fields")]
    TooManyEntries,
    /// A tag is 1–[`MAX_NAME`] bytes.
    #[error("tags must be 1-{MAX_NAME} bytes")]
    Tag,
    /// A custom field's name is 1–[`MAX_NAME`] bytes and its value at most [`MAX_VALUE`].
    #[error("field names must be 1-{MAX_NAME} bytes and values at most {MAX_VALUE}")]
    Field,
    /// A TOTP secret must be base32.
    #[error("the TOTP secret is not base32")]
    TotpSecret,
    /// A value is at most [`MAX_VALUE`] bytes.
    #[error("values must be at most {MAX_VALUE} bytes")]
    Value,
    /// An item is at most [`MAX_ITEM`] bytes encoded.
    #[error("an item is at most {MAX_ITEM} bytes in all")]
    ItemSize,
    /// The item is a tombstone: restore it before editing it.
    #[error("the item is deleted; restore it first")]
    Deleted,
    /// The app edited another version than the current one.
    #[error("the item is at version {actual}, not {expected}: reload it and edit again")]
    VersionMismatch {
        /// The version the app edited.
        expected: u32,
        /// The item's current version.
        actual: u32,
    },
    /// The item has used every version number.
    #[error("the item has too many versions")]
    TooManyVersions,
    /// A sync asked from a version the vault has not reached.
    #[error("sync from version {since}, but the vault is at {current}")]
    SinceAhead {
        /// The version asked from.
        since: u64,
        /// The vault's version.
        current: u64,
    },
    /// A TOTP code was asked of an item that holds no TOTP secret.
    #[error("this item has no TOTP secret")]
    NoTotp,
}

/// Answers to [`SecretOp`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecretReply {
    /// Created, updated, deleted or restored: the item's new state and the vault version.
    Changed {
        /// The item now.
        item: ItemSummary,
        /// The signed vault version of the change.
        version: crate::enclave::SignedVersion,
    },
    /// One version.
    Item(ItemVersion),
    /// Listed items; `next` continues the listing when more match.
    Items {
        /// This page.
        items: Vec<ItemSummary>,
        /// Pass as `after` for the next page.
        next: Option<ItemId>,
    },
    /// Version numbers and creation times.
    Versions(Vec<(u32, u64)>),
    /// Changes after `since`, oldest first; `upto` is the vault version they bring the app to
    /// (ask again from `upto` while `more`).
    Changes {
        /// The changes.
        changes: Vec<Change>,
        /// The version reached.
        upto: u64,
        /// Whether more changes follow.
        more: bool,
    },
    /// A TOTP code and the seconds it stays valid.
    Totp {
        /// The code (6 digits).
        code: String,
        /// Seconds left in its period.
        valid_for: u64,
    },
    /// Live items per folder, in folder order (`None` first: items in no folder).
    Folders {
        /// This page.
        folders: Vec<(Option<String>, u32)>,
        /// Pass as `after` for the next page.
        next: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_totp_secrets_decode_and_garbage_does_not() {
        // RFC 6238's SHA-1 test secret "12345678901234567890".
        assert_eq!(
            totp_secret("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap(),
            b"12345678901234567890"
        );
        assert_eq!(
            totp_secret("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").unwrap(),
            b"12345678901234567890"
        );
        assert!(totp_secret("not base32!").is_none());
        assert!(totp_secret("GEZA").is_none(), "too short");
    }

    #[test]
    fn content_limits_are_checked() {
        let ok = ItemContent {
            name: "bank".into(),
            folder: None,
            tags: vec!["money".into()],
            data: SecretData::Note {
                text: Secret::new("hi"),
            },
            fields: vec![],
        };
        assert!(ok.check().is_ok());
        let mut bad = ok.clone();
        bad.name = String::new();
        assert!(bad.check().is_err());
        let mut bad = ok.clone();
        bad.tags = vec!["t".into(); MAX_ENTRIES + 1];
        assert!(bad.check().is_err());
        let mut bad = ok.clone();
        bad.data = SecretData::Note {
            text: Secret::new(&"x".repeat(MAX_VALUE + 1)),
        };
        assert!(bad.check().is_err());
        let mut bad = ok;
        bad.data = SecretData::Login {
            username: "u".into(),
            password: Secret::new("p"),
            url: String::new(),
            totp: Some(Secret::new("???")),
        };
        assert!(bad.check().is_err());
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(..)");
    }
}
