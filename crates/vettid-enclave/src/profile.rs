//! The personal-data and profile domain: schema and handlers (`vettid_proto::profile`).
//!
//! ```text
//! personal_fields   (key, value, category, sensitive, sort, updated_ms)   one row per field
//! sharing_defaults  (category, share)                                     absent = do not share
//! sharing_overrides (connection, kind, target, share)                     kind: field | category
//! public_profile    (id = 1, settings, published)                         settings + publication counter
//! profile_photo     (id = 1, kind, bytes, updated_ms)
//! ```
//!
//! Every request is checked in full before its one vault write, so a refused request changes
//! nothing. Deleting a field removes its overrides too (an override never outlives its
//! field); the published field list is filtered at publish time, so a field deleted or made
//! sensitive later is never published.

use crate::vault::{SqlValue, Statement, Vault};
use rusqlite::OptionalExtension;
use std::collections::{BTreeMap, BTreeSet};
use vettid_proto::enclave::VaultError;
use vettid_proto::profile::ProfileError;
use vettid_proto::profile::{
    Category, Field, ImageKind, MAX_BATCH, MAX_FIELDS, MAX_PUBLIC_PROFILE, NewField, Override,
    PAGE_BYTES, Photo, ProfileOp, ProfileReply, PublicField, PublicProfile, PublicSettings, Secret,
    Select, ShareTarget, SignedPublicProfile, check_connection, check_key, check_namespace,
    check_photo, check_set, public_profile_message,
};

/// The domain's first tables.
pub const SCHEMA: &str = "
CREATE TABLE personal_fields (
    key TEXT PRIMARY KEY, value TEXT NOT NULL, category TEXT NOT NULL, sensitive INTEGER NOT NULL,
    sort INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
CREATE TABLE sharing_defaults (category TEXT PRIMARY KEY, share INTEGER NOT NULL);
CREATE TABLE sharing_overrides (
    connection TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL, share INTEGER NOT NULL,
    PRIMARY KEY (connection, kind, target));
CREATE INDEX sharing_overrides_target ON sharing_overrides (kind, target);
CREATE TABLE public_profile (
    id INTEGER PRIMARY KEY CHECK (id = 1), settings BLOB NOT NULL, published INTEGER NOT NULL);
CREATE TABLE profile_photo (
    id INTEGER PRIMARY KEY CHECK (id = 1), kind TEXT NOT NULL, bytes BLOB NOT NULL,
    updated_ms INTEGER NOT NULL);";

/// This domain's migrations, append-only (see `domains.rs`).
pub const MIGRATIONS: &[crate::vault::Migration] = &[crate::vault::Migration {
    seq: 4,
    sql: SCHEMA,
}];

fn db(e: rusqlite::Error) -> VaultError {
    VaultError::Internal(format!("database: {e}"))
}

fn tampered(what: &str) -> VaultError {
    VaultError::Tampered(format!("profile record: {what}"))
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("domain records always encode")
}

fn category(name: &str) -> Result<Category, VaultError> {
    Category::parse(name).ok_or_else(|| tampered("category"))
}

fn statement(sql: &str, params: Vec<SqlValue>) -> Statement {
    Statement {
        sql: sql.into(),
        params,
    }
}

fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.to_owned())
}

fn flag(b: bool) -> SqlValue {
    SqlValue::Int(b.into())
}

/// Every field, in key order (values included: callers decide what to show).
fn fields(vault: &Vault) -> Result<Vec<Field>, VaultError> {
    let rows = vault
        .read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT key, value, category, sensitive, sort, updated_ms FROM personal_fields ORDER BY key",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Secret::new(&r.get::<_, String>(1)?),
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)? != 0,
                    r.get::<_, i32>(4)?,
                    r.get::<_, i64>(5)? as u64,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db)?;
    rows.into_iter()
        .map(|(key, value, cat, sensitive, order, updated_ms)| {
            Ok(Field {
                key,
                value: Some(value),
                category: category(&cat)?,
                sensitive,
                order,
                updated_ms,
            })
        })
        .collect()
}

/// One page of `all` after `after`, at most [`PAGE_BYTES`] encoded.
fn page(all: Vec<Field>, after: Option<String>) -> ProfileReply {
    let (mut out, mut bytes, mut next) = (Vec::new(), 0, None);
    for f in all
        .into_iter()
        .filter(|f| after.as_deref().is_none_or(|a| f.key.as_str() > a))
    {
        let size = encode(&f).len();
        if bytes + size > PAGE_BYTES && !out.is_empty() {
            next = out.last().map(|l: &Field| l.key.clone());
            break;
        }
        bytes += size;
        out.push(f);
    }
    ProfileReply::Fields { fields: out, next }
}

fn set(vault: &Vault, new: &[NewField], now_ms: u64) -> Result<Vec<Statement>, VaultError> {
    check_set(new)?;
    let current = fields(vault)?;
    let existing: BTreeSet<String> = current.iter().map(|f| f.key.clone()).collect();
    let was_sensitive: BTreeSet<String> = current
        .iter()
        .filter(|f| f.sensitive)
        .map(|f| f.key.clone())
        .collect();
    let added = new.iter().filter(|f| !existing.contains(&f.key)).count();
    if existing.len() + added > MAX_FIELDS {
        return Err(ProfileError::TooManyFields.into());
    }
    // A field that becomes sensitive loses the overrides given while it was not: sharing it
    // now takes a new, explicit override.
    let newly_sensitive = new
        .iter()
        .filter(|f| f.sensitive && existing.contains(&f.key) && !was_sensitive.contains(&f.key))
        .map(|f| {
            statement(
                "DELETE FROM sharing_overrides WHERE kind = 'field' AND target = ?1",
                vec![text(&f.key)],
            )
        });
    Ok(newly_sensitive
        .chain(new.iter().map(|f| {
            statement(
                "INSERT INTO personal_fields (key, value, category, sensitive, sort, updated_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (key) DO UPDATE SET value = ?2, \
                 category = ?3, sensitive = ?4, sort = ?5, updated_ms = ?6",
                vec![
                    text(&f.key),
                    text(f.value.expose()),
                    text(f.category.as_str()),
                    flag(f.sensitive),
                    SqlValue::Int(f.order.into()),
                    SqlValue::Int(now_ms as i64),
                ],
            )
        }))
        .collect())
}

fn get(vault: &Vault, select: Select, after: Option<String>) -> Result<ProfileReply, VaultError> {
    let all = fields(vault)?;
    let chosen: Vec<Field> = match select {
        Select::Keys(keys) => {
            if keys.is_empty() || keys.len() > MAX_BATCH {
                return Err(ProfileError::Batch.into());
            }
            keys.iter().try_for_each(|k| check_key(k))?;
            let wanted: BTreeSet<&str> = keys.iter().map(String::as_str).collect();
            let found: Vec<Field> = all
                .into_iter()
                .filter(|f| wanted.contains(f.key.as_str()))
                .collect();
            if found.len() != wanted.len() {
                return Err(VaultError::NotFound);
            }
            found
        }
        Select::Namespace(ns) => {
            check_namespace(&ns)?;
            let prefix = format!("{ns}.");
            all.into_iter()
                .filter(|f| f.key == ns || f.key.starts_with(&prefix))
                .collect()
        }
        Select::Category(c) => all.into_iter().filter(|f| f.category == c).collect(),
    };
    Ok(page(chosen, after))
}

fn delete(vault: &Vault, keys: &[String]) -> Result<Vec<Statement>, VaultError> {
    if keys.is_empty() || keys.len() > MAX_BATCH {
        return Err(ProfileError::Batch.into());
    }
    keys.iter().try_for_each(|k| check_key(k))?;
    let existing: BTreeSet<String> = fields(vault)?.into_iter().map(|f| f.key).collect();
    let unique: BTreeSet<&String> = keys.iter().collect();
    if unique.iter().any(|k| !existing.contains(*k)) {
        return Err(VaultError::NotFound);
    }
    Ok(unique
        .into_iter()
        .flat_map(|k| {
            [
                statement("DELETE FROM personal_fields WHERE key = ?1", vec![text(k)]),
                statement(
                    "DELETE FROM sharing_overrides WHERE kind = 'field' AND target = ?1",
                    vec![text(k)],
                ),
            ]
        })
        .collect())
}

fn defaults(vault: &Vault) -> Result<BTreeMap<Category, bool>, VaultError> {
    let rows = vault
        .read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT category, share FROM sharing_defaults")?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? != 0))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db)?;
    let mut all: BTreeMap<Category, bool> = Category::ALL.iter().map(|c| (*c, false)).collect();
    for (c, share) in rows {
        all.insert(category(&c)?, share);
    }
    Ok(all)
}

fn target_columns(target: &ShareTarget) -> (&'static str, String) {
    match target {
        ShareTarget::Field(k) => ("field", k.clone()),
        ShareTarget::Category(c) => ("category", c.as_str().to_owned()),
    }
}

fn overrides(vault: &Vault, connection: &str) -> Result<Vec<Override>, VaultError> {
    let rows = vault
        .read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT kind, target, share FROM sharing_overrides WHERE connection = ?1 \
                 ORDER BY kind, target",
            )?;
            let rows = stmt.query_map([connection], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)? != 0,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db)?;
    rows.into_iter()
        .map(|(kind, target, share)| {
            let target = match kind.as_str() {
                "field" => ShareTarget::Field(target),
                "category" => ShareTarget::Category(category(&target)?),
                _ => return Err(tampered("override kind")),
            };
            Ok(Override { target, share })
        })
        .collect()
}

fn check_target(vault: &Vault, connection: &str, target: &ShareTarget) -> Result<(), VaultError> {
    check_connection(connection)?;
    if let ShareTarget::Field(k) = target {
        check_key(k)?;
        if !fields(vault)?.iter().any(|f| &f.key == k) {
            return Err(VaultError::NotFound);
        }
    }
    Ok(())
}

/// The keys `connection` would see (see [`ProfileOp::Effective`]).
fn effective(vault: &Vault, connection: &str) -> Result<Vec<String>, VaultError> {
    check_connection(connection)?;
    let defaults = defaults(vault)?;
    let (mut by_field, mut by_category) = (BTreeMap::new(), BTreeMap::new());
    for o in overrides(vault, connection)? {
        match o.target {
            ShareTarget::Field(k) => by_field.insert(k, o.share),
            ShareTarget::Category(c) => by_category.insert(c, o.share),
        };
    }
    Ok(fields(vault)?
        .into_iter()
        .filter(|f| match by_field.get(&f.key) {
            Some(share) => *share,
            None if f.sensitive => false,
            None => *by_category
                .get(&f.category)
                .unwrap_or(&defaults[&f.category]),
        })
        .map(|f| f.key)
        .collect())
}

/// The keys of the member's fields that a request for `targets` from `connection` covers,
/// in key order. `by_member`: the member decides (a field named by its key is covered even if
/// sensitive or withheld from the connection: the member grants it by name; a category
/// covers its non-sensitive fields not withheld one by one). Otherwise (the connection's
/// `auto` rule) only non-sensitive fields that no override withholds from the connection.
pub(crate) fn keys_for(
    vault: &Vault,
    targets: &[ShareTarget],
    connection: &str,
    by_member: bool,
) -> Result<Vec<String>, VaultError> {
    let (mut field_off, mut category_off) = (BTreeSet::new(), BTreeSet::new());
    for o in overrides(vault, connection)?
        .into_iter()
        .filter(|o| !o.share)
    {
        match o.target {
            ShareTarget::Field(k) => field_off.insert(k),
            ShareTarget::Category(c) => category_off.insert(c),
        };
    }
    Ok(fields(vault)?
        .into_iter()
        .filter(|f| {
            let open = !f.sensitive
                && !field_off.contains(&f.key)
                && (by_member || !category_off.contains(&f.category));
            targets.iter().any(|t| match t {
                ShareTarget::Field(k) => *k == f.key && (by_member || open),
                ShareTarget::Category(c) => *c == f.category && open,
            })
        })
        .map(|f| f.key)
        .collect())
}

/// The current values of the member's fields `keys` (those that still exist), in key order.
pub(crate) fn values_of(
    vault: &Vault,
    keys: &[String],
) -> Result<Vec<(String, String)>, VaultError> {
    Ok(fields(vault)?
        .into_iter()
        .filter(|f| keys.contains(&f.key))
        .filter_map(|f| Some((f.key, f.value?.0.as_str().to_owned())))
        .collect())
}

/// The fields and values `connection` would see, in key order (what the vault sends a
/// connection as its profile).
pub(crate) fn shared_with(
    vault: &Vault,
    connection: &str,
) -> Result<Vec<(String, String)>, VaultError> {
    let keys = effective(vault, connection)?;
    Ok(fields(vault)?
        .into_iter()
        .filter(|f| keys.binary_search(&f.key).is_ok())
        .filter_map(|f| Some((f.key, f.value?.0.as_str().to_owned())))
        .collect())
}

fn public(vault: &Vault) -> Result<(PublicSettings, u64), VaultError> {
    let row: Option<(Vec<u8>, i64)> = vault
        .read(|conn| {
            conn.query_row(
                "SELECT settings, published FROM public_profile WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
        .map_err(db)?;
    match row {
        None => Ok((PublicSettings::default(), 0)),
        Some((s, n)) => Ok((
            postcard::from_bytes(&s).map_err(|_| tampered("public settings"))?,
            n as u64,
        )),
    }
}

fn save_public(settings: &PublicSettings, published: u64) -> Statement {
    statement(
        "INSERT INTO public_profile (id, settings, published) VALUES (1, ?1, ?2) \
         ON CONFLICT (id) DO UPDATE SET settings = ?1, published = ?2",
        vec![
            SqlValue::Blob(encode(settings)),
            SqlValue::Int(published as i64),
        ],
    )
}

fn set_public(vault: &Vault, settings: &PublicSettings) -> Result<Vec<Statement>, VaultError> {
    settings.check()?;
    let all = fields(vault)?;
    for k in &settings.fields {
        match all.iter().find(|f| &f.key == k) {
            None => return Err(VaultError::NotFound),
            Some(f) if f.sensitive => {
                return Err(ProfileError::Sensitive.into());
            }
            Some(_) => {}
        }
    }
    Ok(vec![save_public(settings, public(vault)?.1)])
}

/// The signed public profile with the next publication counter, and the statement that
/// records the counter.
fn publish(
    vault: &Vault,
    member: &str,
    now_ms: u64,
) -> Result<(SignedPublicProfile, Statement), VaultError> {
    let (settings, published) = public(vault)?;
    let version = published + 1;
    let all = fields(vault)?;
    let fields = settings
        .fields
        .iter()
        .filter_map(|k| all.iter().find(|f| &f.key == k && !f.sensitive))
        .map(|f| PublicField {
            key: f.key.clone(),
            category: f.category,
            value: f
                .value
                .as_ref()
                .map(|v| v.expose().to_owned())
                .unwrap_or_default(),
        })
        .collect();
    let profile = PublicProfile {
        member: member.to_owned(),
        version,
        issued_ms: now_ms,
        display_name: settings.display_name.clone(),
        bio: settings.bio.clone(),
        links: settings.links.clone(),
        fields,
    };
    let payload = encode(&profile);
    if payload.len() > MAX_PUBLIC_PROFILE {
        return Err(ProfileError::PublicSize.into());
    }
    let signed = SignedPublicProfile {
        signature: vault.sign(&public_profile_message(&payload)).to_vec(),
        identity: vault.identity_public_key(),
        payload,
    };
    Ok((signed, save_public(&settings, version)))
}

fn photo(vault: &Vault) -> Result<Photo, VaultError> {
    let row: Option<(String, Vec<u8>, i64)> = vault
        .read(|conn| {
            conn.query_row(
                "SELECT kind, bytes, updated_ms FROM profile_photo WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
        })
        .map_err(db)?;
    let (kind, bytes, updated_ms) = row.ok_or(VaultError::NotFound)?;
    let kind = match kind.as_str() {
        "jpeg" => ImageKind::Jpeg,
        "png" => ImageKind::Png,
        _ => return Err(tampered("photo kind")),
    };
    Ok(Photo {
        kind,
        bytes,
        updated_ms: updated_ms as u64,
    })
}

/// Runs one profile operation on an unlocked vault; the messages giving connected vaults the
/// member's new shared profile, where a change altered it (sent in a second write, whose
/// version the answer names).
pub fn handle(
    unlocked: &mut crate::manager::UnlockedVault<'_>,
    op: ProfileOp,
) -> Result<(ProfileReply, Vec<vettid_proto::enclave::Outbound>), VaultError> {
    let mut pushes = Vec::new();
    let reply = run(unlocked, op, &mut pushes)?;
    Ok((reply, pushes))
}

fn run(
    unlocked: &mut crate::manager::UnlockedVault<'_>,
    op: ProfileOp,
    pushes: &mut Vec<vettid_proto::enclave::Outbound>,
) -> Result<ProfileReply, VaultError> {
    let (vault, objects, now_ms) = unlocked.parts();
    let mut change = |vault: &mut Vault, statements: Vec<Statement>| {
        let version = vault.write(objects, statements)?;
        let (statements, out) = crate::connections::profile_pushes(vault, now_ms)?;
        if statements.is_empty() {
            return Ok(ProfileReply::Changed(version));
        }
        let version = vault.write(objects, statements)?;
        pushes.extend(out);
        Ok(ProfileReply::Changed(version))
    };
    match op {
        ProfileOp::Set(new) => {
            let statements = set(vault, &new, now_ms)?;
            change(vault, statements)
        }
        ProfileOp::Get { select, after } => get(vault, select, after),
        ProfileOp::Delete(keys) => {
            let statements = delete(vault, &keys)?;
            change(vault, statements)
        }
        ProfileOp::List { reveal, after } => {
            let mut all = fields(vault)?;
            for f in all.iter_mut().filter(|f| f.sensitive && !reveal) {
                f.value = None;
            }
            Ok(page(all, after))
        }
        ProfileOp::SharingDefaults => Ok(ProfileReply::Defaults(
            defaults(vault)?.into_iter().collect(),
        )),
        ProfileOp::SetDefault { category, share } => change(
            vault,
            vec![statement(
                "INSERT INTO sharing_defaults (category, share) VALUES (?1, ?2) \
                 ON CONFLICT (category) DO UPDATE SET share = ?2",
                vec![text(category.as_str()), flag(share)],
            )],
        ),
        ProfileOp::Overrides { connection } => {
            check_connection(&connection)?;
            Ok(ProfileReply::Overrides(overrides(vault, &connection)?))
        }
        ProfileOp::SetOverride {
            connection,
            target,
            share,
        } => {
            check_target(vault, &connection, &target)?;
            let (kind, target) = target_columns(&target);
            change(
                vault,
                vec![statement(
                    "INSERT INTO sharing_overrides (connection, kind, target, share) \
                     VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (connection, kind, target) DO UPDATE SET share = ?4",
                    vec![
                        text(&connection),
                        text(kind),
                        SqlValue::Text(target),
                        flag(share),
                    ],
                )],
            )
        }
        ProfileOp::ClearOverride { connection, target } => {
            check_connection(&connection)?;
            if !overrides(vault, &connection)?
                .iter()
                .any(|o| o.target == target)
            {
                return Err(VaultError::NotFound);
            }
            let (kind, target) = target_columns(&target);
            change(
                vault,
                vec![statement(
                    "DELETE FROM sharing_overrides WHERE connection = ?1 AND kind = ?2 AND target = ?3",
                    vec![text(&connection), text(kind), SqlValue::Text(target)],
                )],
            )
        }
        ProfileOp::Effective { connection } => {
            Ok(ProfileReply::Effective(effective(vault, &connection)?))
        }
        ProfileOp::PublicSettings => Ok(ProfileReply::PublicSettings(public(vault)?.0)),
        ProfileOp::SetPublic(settings) => {
            let statements = set_public(vault, &settings)?;
            change(vault, statements)
        }
        ProfileOp::Publish => {
            let (profile, counter) = publish(vault, objects.vault(), now_ms)?;
            let version = vault.write(objects, vec![counter])?;
            Ok(ProfileReply::Published { profile, version })
        }
        ProfileOp::SetPhoto(bytes) => {
            let kind = match check_photo(&bytes)? {
                ImageKind::Jpeg => "jpeg",
                ImageKind::Png => "png",
            };
            change(
                vault,
                vec![statement(
                    "INSERT INTO profile_photo (id, kind, bytes, updated_ms) VALUES (1, ?1, ?2, ?3) \
                     ON CONFLICT (id) DO UPDATE SET kind = ?1, bytes = ?2, updated_ms = ?3",
                    vec![
                        text(kind),
                        SqlValue::Blob(bytes),
                        SqlValue::Int(now_ms as i64),
                    ],
                )],
            )
        }
        ProfileOp::GetPhoto => Ok(ProfileReply::Photo(photo(vault)?)),
        ProfileOp::DeletePhoto => {
            photo(vault)?;
            change(
                vault,
                vec![statement("DELETE FROM profile_photo WHERE id = 1", vec![])],
            )
        }
    }
}
