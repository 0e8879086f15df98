//! The secrets domain: schema and handlers (`vettid_proto::secrets`).
//!
//! ```text
//! secret_items    (id, kind, name, folder, tags, version, deleted, changed_at)   one row per item
//! secret_versions (item, version, created_ms, content)        the newest `versions_per_item` kept
//! ```
//!
//! `changed_at` is the vault state version of the item's last change (create, update,
//! delete, restore): a delta sync from version N is "the items with `changed_at > N`, in
//! that order", tombstones included. Each change is one vault write (one log entry, the size
//! of the change).

use crate::vault::{SqlValue, Statement, Vault};
use rusqlite::OptionalExtension;
use vettid_proto::enclave::VaultError;
use vettid_proto::feed::{Audience, Retention};
use vettid_proto::secrets::SecretError;
use vettid_proto::secrets::{
    Change, ItemContent, ItemId, ItemSummary, ItemVersion, MAX_NAME, PAGE_BYTES, SecretData,
    SecretOp, SecretReply, totp_secret,
};

/// The domain's first tables.
pub const SCHEMA: &str = "
CREATE TABLE secret_items (
    id BLOB PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL, folder TEXT, tags BLOB NOT NULL,
    version INTEGER NOT NULL, deleted INTEGER NOT NULL, changed_at INTEGER NOT NULL);
CREATE INDEX secret_items_changed ON secret_items (changed_at);
CREATE TABLE secret_versions (
    item BLOB NOT NULL, version INTEGER NOT NULL, created_ms INTEGER NOT NULL, content BLOB NOT NULL,
    PRIMARY KEY (item, version));";

/// This domain's migrations, append-only (see `domains.rs`).
pub const MIGRATIONS: &[crate::vault::Migration] = &[crate::vault::Migration {
    seq: 3,
    sql: SCHEMA,
}];

const SUMMARY: &str =
    "SELECT id, kind, name, folder, tags, version, deleted, changed_at FROM secret_items";

fn db(e: rusqlite::Error) -> VaultError {
    VaultError::Internal(format!("database: {e}"))
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("domain records always encode")
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, VaultError> {
    postcard::from_bytes(bytes).map_err(|_| VaultError::Tampered("secrets record".into()))
}

fn summary(row: &rusqlite::Row<'_>) -> rusqlite::Result<(ItemSummary, Vec<u8>)> {
    let id: Vec<u8> = row.get(0)?;
    let tags: Vec<u8> = row.get(4)?;
    Ok((
        ItemSummary {
            id: id.as_slice().try_into().unwrap_or([0; 16]),
            kind: row.get(1)?,
            name: row.get(2)?,
            folder: row.get(3)?,
            tags: Vec::new(),
            version: row.get(5)?,
            deleted: row.get::<_, i64>(6)? != 0,
            changed_at: row.get::<_, i64>(7)? as u64,
        },
        tags,
    ))
}

fn summaries(
    vault: &Vault,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<ItemSummary>, VaultError> {
    vault
        .read(|conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt.query_map(params, summary)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db)?
        .into_iter()
        .map(|(mut s, tags)| {
            s.tags = decode(&tags)?;
            Ok(s)
        })
        .collect()
}

fn item(vault: &Vault, id: &ItemId) -> Result<ItemSummary, VaultError> {
    summaries(
        vault,
        &format!("{SUMMARY} WHERE id = ?1"),
        &[&id.as_slice()],
    )?
    .pop()
    .ok_or(VaultError::NotFound)
}

fn version(vault: &Vault, id: &ItemId, number: u32) -> Result<ItemVersion, VaultError> {
    let row: Option<(i64, Vec<u8>)> = vault
        .read(|conn| {
            conn.query_row(
                "SELECT created_ms, content FROM secret_versions WHERE item = ?1 AND version = ?2",
                rusqlite::params![id.as_slice(), number],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
        .map_err(db)?;
    let (created_ms, content) = row.ok_or(VaultError::NotFound)?;
    Ok(ItemVersion {
        id: *id,
        version: number,
        created_ms: created_ms as u64,
        content: decode(&content)?,
    })
}

/// The statements that make `content` version `number` of item `id` at vault version `at`,
/// keeping the newest `keep` versions (the quota of the enclave's policy).
fn put_version(
    id: &ItemId,
    number: u32,
    content: &ItemContent,
    (at, now_ms): (u64, u64),
    insert: bool,
    keep: u32,
) -> Vec<Statement> {
    let item = if insert {
        "INSERT INTO secret_items (kind, name, folder, tags, version, deleted, changed_at, id) \
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7)"
    } else {
        "UPDATE secret_items SET kind = ?1, name = ?2, folder = ?3, tags = ?4, version = ?5, \
         deleted = 0, changed_at = ?6 WHERE id = ?7"
    };
    vec![
        Statement {
            sql: "INSERT INTO secret_versions (item, version, created_ms, content) VALUES (?1, ?2, ?3, ?4)"
                .into(),
            params: vec![
                SqlValue::Blob(id.to_vec()),
                SqlValue::Int(number.into()),
                SqlValue::Int(now_ms as i64),
                SqlValue::Blob(encode(content)),
            ],
        },
        Statement {
            sql: item.into(),
            params: vec![
                SqlValue::Text(content.data.kind().into()),
                SqlValue::Text(content.name.clone()),
                content
                    .folder
                    .clone()
                    .map_or(SqlValue::Null, SqlValue::Text),
                SqlValue::Blob(encode(&content.tags)),
                SqlValue::Int(number.into()),
                SqlValue::Int(at as i64),
                SqlValue::Blob(id.to_vec()),
            ],
        },
    ]
    .into_iter()
    // Beyond the quota of versions, the oldest goes in the same write.
    .chain((number > keep.max(1)).then(|| Statement {
        sql: "DELETE FROM secret_versions WHERE item = ?1 AND version <= ?2".into(),
        params: vec![
            SqlValue::Blob(id.to_vec()),
            SqlValue::Int(i64::from(number) - i64::from(keep.max(1))),
        ],
    }))
    .collect()
}

/// The number of an item's next version.
fn next_item_version(item: &ItemSummary) -> Result<u32, VaultError> {
    item.version
        .checked_add(1)
        .ok_or(SecretError::TooManyVersions.into())
}

/// Runs one secrets operation on an unlocked vault.
pub fn handle(
    unlocked: &mut crate::manager::UnlockedVault<'_>,
    op: SecretOp,
) -> Result<SecretReply, VaultError> {
    let (vault, objects, now_ms) = unlocked.parts();
    let next = vault
        .version()
        .checked_add(1)
        .ok_or_else(|| VaultError::Tampered("version sequence exhausted".into()))?;
    let keep = vault.limits().versions_per_item;
    // Each change is recorded in the audit chain, in the same write.
    let change = |vault: &mut Vault, id: ItemId, what: &str, mut statements: Vec<Statement>| {
        let event = crate::feed::event(
            now_ms,
            Audience::Audit,
            &format!("secrets.{what}"),
            Retention::Standard,
            format!("secret {} {what}", hex::encode(id)),
        );
        statements.extend(crate::feed::append(vault, &[event])?);
        let version = vault.write(objects, statements)?;
        Ok(SecretReply::Changed {
            item: item(vault, &id)?,
            version,
        })
    };
    match op {
        SecretOp::Create(content) => {
            content.check()?;
            let id: ItemId = vettid_crypto::random_array();
            change(
                vault,
                id,
                "created",
                put_version(&id, 1, &content, (next, now_ms), true, keep),
            )
        }
        SecretOp::Update {
            id,
            expected,
            content,
        } => {
            content.check()?;
            let current = item(vault, &id)?;
            if current.deleted {
                return Err(SecretError::Deleted.into());
            }
            if let Some(expected) = expected
                && expected != current.version
            {
                return Err(SecretError::VersionMismatch {
                    expected,
                    actual: current.version,
                }
                .into());
            }
            let number = next_item_version(&current)?;
            change(
                vault,
                id,
                "updated",
                put_version(&id, number, &content, (next, now_ms), false, keep),
            )
        }
        SecretOp::Delete { id } => {
            if item(vault, &id)?.deleted {
                return Err(VaultError::NotFound);
            }
            change(
                vault,
                id,
                "deleted",
                vec![Statement {
                    sql: "UPDATE secret_items SET deleted = 1, changed_at = ?1 WHERE id = ?2"
                        .into(),
                    params: vec![SqlValue::Int(next as i64), SqlValue::Blob(id.to_vec())],
                }],
            )
        }
        SecretOp::Restore { id, version: from } => {
            let current = item(vault, &id)?;
            let old = version(vault, &id, from)?;
            let number = next_item_version(&current)?;
            change(
                vault,
                id,
                "restored",
                put_version(&id, number, &old.content, (next, now_ms), false, keep),
            )
        }
        SecretOp::Get { id, version: v } => {
            let current = item(vault, &id)?;
            match v {
                None if current.deleted => Err(VaultError::NotFound),
                None => Ok(SecretReply::Item(version(vault, &id, current.version)?)),
                Some(n) => Ok(SecretReply::Item(version(vault, &id, n)?)),
            }
        }
        SecretOp::Versions { id } => {
            item(vault, &id)?;
            let versions = vault
                .read(|conn| {
                    let mut stmt = conn.prepare_cached(
                        "SELECT version, created_ms FROM secret_versions WHERE item = ?1 ORDER BY version",
                    )?;
                    let rows = stmt.query_map([id.as_slice()], |r| {
                        Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)? as u64))
                    })?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(db)?;
            Ok(SecretReply::Versions(versions))
        }
        SecretOp::List {
            after,
            name,
            tag,
            folder,
            deleted,
        } => {
            let after = after.unwrap_or([0; 16]);
            let needle = name.map(|n| n.to_lowercase());
            let all = summaries(
                vault,
                &format!("{SUMMARY} WHERE id > ?1 ORDER BY id"),
                &[&after.as_slice()],
            )?;
            let (mut items, mut bytes, mut next) = (Vec::new(), 0, None);
            for s in all.into_iter().filter(|s| {
                (deleted || !s.deleted)
                    && needle
                        .as_deref()
                        .is_none_or(|n| s.name.to_lowercase().contains(n))
                    && tag.as_deref().is_none_or(|t| s.tags.iter().any(|x| x == t))
                    && folder
                        .as_deref()
                        .is_none_or(|f| s.folder.as_deref() == Some(f))
            }) {
                let size = encode(&s).len();
                if bytes + size > PAGE_BYTES {
                    next = items.last().map(|l: &ItemSummary| l.id);
                    break;
                }
                bytes += size;
                items.push(s);
            }
            Ok(SecretReply::Items { items, next })
        }
        SecretOp::Sync { since } => {
            if since > vault.version() {
                return Err(SecretError::SinceAhead {
                    since,
                    current: vault.version(),
                }
                .into());
            }
            let changed = summaries(
                vault,
                &format!("{SUMMARY} WHERE changed_at > ?1 ORDER BY changed_at"),
                &[&(since as i64)],
            )?;
            let (mut changes, mut bytes, mut more) = (Vec::new(), 0, false);
            let mut upto = vault.version();
            for s in changed {
                let c = if s.deleted {
                    Change::Tombstone {
                        id: s.id,
                        changed_at: s.changed_at,
                    }
                } else {
                    Change::Upsert(Box::new(version(vault, &s.id, s.version)?))
                };
                let size = encode(&c).len();
                if bytes + size > PAGE_BYTES && !changes.is_empty() {
                    more = true;
                    break;
                }
                bytes += size;
                upto = s.changed_at;
                changes.push(c);
            }
            if !more {
                upto = vault.version();
            }
            Ok(SecretReply::Changes {
                changes,
                upto,
                more,
            })
        }
        SecretOp::Totp { id } => {
            let current = item(vault, &id)?;
            if current.deleted {
                return Err(VaultError::NotFound);
            }
            let content = version(vault, &id, current.version)?.content;
            let SecretData::Login { totp: Some(t), .. } = content.data else {
                return Err(SecretError::NoTotp.into());
            };
            let key = totp_secret(t.expose()).ok_or(SecretError::TotpSecret)?;
            let (code, valid_for) = totp(&key, now_ms / 1000);
            Ok(SecretReply::Totp { code, valid_for })
        }
        SecretOp::Folders { after } => {
            if after
                .as_deref()
                .is_some_and(|f| f.is_empty() || f.len() > MAX_NAME)
            {
                return Err(SecretError::Folder.into());
            }
            let counts: Vec<(Option<String>, u32)> = vault
                .read(|conn| {
                    let mut stmt = conn.prepare_cached(
                        "SELECT folder, COUNT(*) FROM secret_items
                         WHERE deleted = 0 AND (?1 IS NULL OR folder > ?1)
                         GROUP BY folder ORDER BY folder",
                    )?;
                    let rows = stmt.query_map([&after], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(db)?;
            let (mut folders, mut bytes, mut next) = (Vec::new(), 0, None);
            for entry in counts {
                let size = encode(&entry).len();
                if bytes + size > PAGE_BYTES {
                    next = folders
                        .last()
                        .and_then(|(f, _): &(Option<String>, u32)| f.clone());
                    break;
                }
                bytes += size;
                folders.push(entry);
            }
            Ok(SecretReply::Folders { folders, next })
        }
    }
}

/// RFC 6238 TOTP (HMAC-SHA-1, 30-second steps, 6 digits) at `unix_secs`; the seconds left in
/// the step.
pub fn totp(key: &[u8], unix_secs: u64) -> (String, u64) {
    use hmac::{KeyInit, Mac};
    let step = unix_secs / 30;
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    (format!("{:06}", binary % 1_000_000), 30 - unix_secs % 30)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::Opened;

    fn note(name: &str, folder: Option<&str>) -> ItemContent {
        ItemContent {
            name: name.into(),
            folder: folder.map(Into::into),
            tags: vec![],
            data: SecretData::Note {
                text: vettid_proto::secrets::Secret::new("x"),
            },
            fields: vec![],
        }
    }

    fn create(v: &Opened, content: ItemContent) -> ItemSummary {
        match v.run(0, |u| handle(u, SecretOp::Create(content))).unwrap() {
            SecretReply::Changed { item, .. } => item,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn folders_count_live_items_only() {
        let v = Opened::new();
        let folders = |v: &Opened| match v
            .run(0, |u| handle(u, SecretOp::Folders { after: None }))
            .unwrap()
        {
            SecretReply::Folders { folders, next } => {
                assert_eq!(next, None);
                folders
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(folders(&v), []);
        create(&v, note("a", Some("work")));
        create(&v, note("b", Some("work")));
        create(&v, note("c", None));
        let gone = create(&v, note("d", Some("home")));
        v.run(0, |u| handle(u, SecretOp::Delete { id: gone.id }))
            .unwrap();
        assert_eq!(folders(&v), [(None, 1), (Some("work".into()), 2)]);
    }

    #[test]
    fn folders_come_in_pages_that_fit_a_session_message() {
        let v = Opened::new();
        // Long distinct folder names: more than one page's worth.
        let name = |i: usize| format!("{i:04}{}", "f".repeat(MAX_NAME - 4));
        let n = PAGE_BYTES / MAX_NAME + 20;
        for i in 0..n {
            create(&v, note("x", Some(&name(i))));
        }
        create(&v, note("loose", None));
        let (mut all, mut after, mut pages) = (Vec::new(), None, 0);
        loop {
            let SecretReply::Folders { folders, next } = v
                .run(0, |u| {
                    handle(
                        u,
                        SecretOp::Folders {
                            after: after.clone(),
                        },
                    )
                })
                .unwrap()
            else {
                panic!()
            };
            assert!(encode(&folders).len() <= PAGE_BYTES);
            pages += 1;
            all.extend(folders);
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert!(pages > 1, "{pages} page(s)");
        assert_eq!(all.len(), n + 1);
        assert_eq!(all[0], (None, 1));
        assert!(
            all[1..]
                .iter()
                .enumerate()
                .all(|(i, f)| f == &(Some(name(i)), 1))
        );
    }

    #[test]
    fn stale_edits_and_edits_of_tombstones_are_typed_and_change_nothing() {
        let v = Opened::new();
        let item = create(&v, note("a", None));
        let update = |expected| SecretOp::Update {
            id: item.id,
            expected,
            content: note("b", None),
        };
        v.run(0, |u| handle(u, update(Some(1)))).unwrap();
        assert_eq!(
            v.run(0, |u| handle(u, update(Some(1)))),
            Err(SecretError::VersionMismatch {
                expected: 1,
                actual: 2
            }
            .into())
        );
        v.run(0, |u| handle(u, SecretOp::Delete { id: item.id }))
            .unwrap();
        assert_eq!(
            v.run(0, |u| handle(u, update(None))),
            Err(SecretError::Deleted.into())
        );
        let SecretReply::Versions(versions) = v
            .run(0, |u| handle(u, SecretOp::Versions { id: item.id }))
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(versions.len(), 2, "the create and the update; nothing more");
    }

    #[test]
    fn a_sync_from_the_future_is_refused_with_both_versions() {
        let v = Opened::new();
        let r = v.run(0, |u| handle(u, SecretOp::Sync { since: 1_000 }));
        assert!(
            matches!(
                r,
                Err(VaultError::Secrets(SecretError::SinceAhead { since: 1_000, current })) if current < 1_000
            ),
            "{r:?}"
        );
    }

    /// RFC 6238 appendix B, SHA-1 rows (8 digits there; the last 6 are ours).
    #[test]
    fn totp_matches_rfc_6238() {
        let key = b"12345678901234567890";
        for (t, code) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(totp(key, t).0, code[2..], "T = {t}");
        }
        assert_eq!(totp(key, 59).1, 1);
        assert_eq!(totp(key, 60).1, 30);
    }
}
