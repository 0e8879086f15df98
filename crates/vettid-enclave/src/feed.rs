//! The feed and audit domain: one hash chain of events (`vettid_proto::feed`).
//!
//! ```text
//! events (seq, at_ms, audience, kind, keep_until, content, content_hash, hash, read, archived)
//! ```
//!
//! Other domains add events to the same write as the change they record
//! ([`append`]), so an event exists exactly when its change does. Deleting or pruning an
//! event clears its content and keeps its hashes: the chain still verifies.

use crate::vault::{SqlValue, Statement, Vault};
use vettid_proto::enclave::VaultError;
use vettid_proto::feed::{
    Audience, ChainedEvent, EventContent, ExportFormat, FeedOp, FeedReply, Retention, chain_hash,
    content_hash,
};

/// The domain's table (a vault migration).
pub const SCHEMA: &str = "
CREATE TABLE events (
    seq INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, audience INTEGER NOT NULL, kind TEXT NOT NULL,
    keep_until INTEGER, content BLOB, content_hash BLOB NOT NULL, hash BLOB NOT NULL,
    read INTEGER NOT NULL DEFAULT 0, archived INTEGER NOT NULL DEFAULT 0);";

/// This domain's migrations, append-only (see `domains.rs`).
pub const MIGRATIONS: &[crate::vault::Migration] = &[crate::vault::Migration {
    seq: 5,
    sql: SCHEMA,
}];

/// Encoded events per answer at most (the rest on the next page).
const PAGE_BYTES: usize = 56 * 1024;
/// Rendered export bytes per answer at most.
const EXPORT_BYTES: usize = 48 * 1024;

fn db(e: rusqlite::Error) -> VaultError {
    VaultError::Internal(format!("database: {e}"))
}

/// The newest event's sequence and hash (0 and zeros when there is none).
fn head(vault: &Vault) -> Result<(u64, [u8; 32]), VaultError> {
    use rusqlite::OptionalExtension;
    let row: Option<(i64, Vec<u8>)> = vault
        .read(|c| {
            c.query_row(
                "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
        .map_err(db)?;
    Ok(match row {
        None => (0, [0; 32]),
        Some((seq, hash)) => (
            seq as u64,
            hash.try_into()
                .map_err(|_| VaultError::Tampered("event hash".into()))?,
        ),
    })
}

/// An event to record.
pub fn event(
    at_ms: u64,
    audience: Audience,
    kind: &str,
    retention: Retention,
    text: String,
) -> EventContent {
    EventContent {
        at_ms,
        audience,
        kind: kind.to_owned(),
        retention,
        text,
    }
}

/// The statements that append `events` to the chain (to add to a write), and drop the oldest
/// events beyond the vault's `feed_rows` quota (the chain still verifies from any event kept).
pub fn append(vault: &Vault, events: &[EventContent]) -> Result<Vec<Statement>, VaultError> {
    let (mut seq, mut prev) = head(vault)?;
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        seq += 1;
        let ch = content_hash(e);
        prev = chain_hash(&prev, seq, &ch);
        let keep_until = e.retention.keep_ms().map_or(SqlValue::Null, |k| {
            SqlValue::Int(e.at_ms.saturating_add(k) as i64)
        });
        out.push(Statement {
            sql: "INSERT INTO events (seq, at_ms, audience, kind, keep_until, content, content_hash, hash) \
                  VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                .into(),
            params: vec![
                SqlValue::Int(seq as i64),
                SqlValue::Int(e.at_ms as i64),
                SqlValue::Int(matches!(e.audience, Audience::Feed) as i64),
                SqlValue::Text(e.kind.clone()),
                keep_until,
                SqlValue::Blob(postcard::to_allocvec(e).expect("events always encode")),
                SqlValue::Blob(ch.to_vec()),
                SqlValue::Blob(prev.to_vec()),
            ],
        });
    }
    let keep = u64::from(vault.limits().feed_rows.max(1));
    if seq > keep {
        out.push(Statement {
            sql: "DELETE FROM events WHERE seq <= ?1".into(),
            params: vec![SqlValue::Int((seq - keep) as i64)],
        });
    }
    Ok(out)
}

/// The statement that drops the content of events past their retention at `now_ms`.
pub fn prune(now_ms: u64) -> Statement {
    Statement {
        sql: "UPDATE events SET content = NULL WHERE keep_until IS NOT NULL AND keep_until <= ?1 \
              AND content IS NOT NULL"
            .into(),
        params: vec![SqlValue::Int(now_ms as i64)],
    }
}

/// seq, content, content hash, hash, read, archived.
type Row = (i64, Option<Vec<u8>>, Vec<u8>, Vec<u8>, i64, i64);

fn events(
    vault: &Vault,
    where_sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<ChainedEvent>, VaultError> {
    let rows: Vec<Row> = vault
        .read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT seq, content, content_hash, hash, read, archived FROM events {where_sql} ORDER BY seq"
            ))?;
            let rows = stmt.query_map(params, |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
            })?;
            rows.collect()
        })
        .map_err(db)?;
    let tampered = || VaultError::Tampered("event record".into());
    rows.into_iter()
        .map(|(seq, content, ch, hash, read, archived)| {
            Ok(ChainedEvent {
                seq: seq as u64,
                content: content
                    .map(|c| postcard::from_bytes(&c).map_err(|_| tampered()))
                    .transpose()?,
                content_hash: ch.try_into().map_err(|_| tampered())?,
                hash: hash.try_into().map_err(|_| tampered())?,
                read: read != 0,
                archived: archived != 0,
            })
        })
        .collect()
}

/// Keeps whole events up to the page size; whether more remained.
fn page(mut all: Vec<ChainedEvent>) -> (Vec<ChainedEvent>, bool) {
    let mut bytes = 0;
    for (i, e) in all.iter().enumerate() {
        bytes += postcard::to_allocvec(e).map_or(0, |b| b.len());
        if bytes > PAGE_BYTES && i > 0 {
            all.truncate(i);
            return (all, true);
        }
    }
    (all, false)
}

fn feed_item(vault: &Vault, seq: u64) -> Result<(), VaultError> {
    let found = events(
        vault,
        "WHERE seq = ?1 AND audience = 1 AND content IS NOT NULL",
        &[&(seq as i64)],
    )?;
    if found.is_empty() {
        Err(VaultError::NotFound)
    } else {
        Ok(())
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Runs one feed or audit operation on an unlocked vault.
pub fn handle(
    unlocked: &mut crate::manager::UnlockedVault<'_>,
    op: FeedOp,
) -> Result<FeedReply, VaultError> {
    let (vault, objects, _now_ms) = unlocked.parts();
    let set = |vault: &mut Vault, seq: u64, sql: &str| -> Result<FeedReply, VaultError> {
        feed_item(vault, seq)?;
        vault.write(
            objects,
            vec![Statement {
                sql: sql.into(),
                params: vec![SqlValue::Int(seq as i64)],
            }],
        )?;
        Ok(FeedReply::Done)
    };
    match op {
        FeedOp::List { after, archived } => {
            let filter = if archived { "" } else { "AND archived = 0" };
            let all = events(
                vault,
                &format!("WHERE seq > ?1 AND audience = 1 AND content IS NOT NULL {filter}"),
                &[&(after as i64)],
            )?;
            let (events, more) = page(all);
            Ok(FeedReply::Events { events, more })
        }
        FeedOp::Read { seq } => set(vault, seq, "UPDATE events SET read = 1 WHERE seq = ?1"),
        FeedOp::Archive { seq } => set(vault, seq, "UPDATE events SET archived = 1 WHERE seq = ?1"),
        FeedOp::Delete { seq } => set(
            vault,
            seq,
            "UPDATE events SET content = NULL WHERE seq = ?1",
        ),
        FeedOp::Sync { since } => {
            let (events, more) = page(events(vault, "WHERE seq > ?1", &[&(since as i64)])?);
            Ok(FeedReply::Events { events, more })
        }
        FeedOp::Query {
            after,
            from_ms,
            to_ms,
            kind,
        } => {
            if from_ms > to_ms {
                return Err(vettid_proto::feed::FeedError::TimeRange.into());
            }
            let all = events(
                vault,
                "WHERE seq > ?1 AND at_ms >= ?2 AND at_ms < ?3 AND content IS NOT NULL",
                &[&(after as i64), &(from_ms as i64), &(to_ms as i64)],
            )?;
            let all = all
                .into_iter()
                .filter(|e| {
                    kind.as_deref()
                        .is_none_or(|k| e.content.as_ref().is_some_and(|c| c.kind.starts_with(k)))
                })
                .collect();
            let (events, more) = page(all);
            Ok(FeedReply::Events { events, more })
        }
        FeedOp::Export { format, after } => {
            let all = events(
                vault,
                "WHERE seq > ?1 AND content IS NOT NULL",
                &[&(after as i64)],
            )?;
            let mut document = match format {
                ExportFormat::Json => String::from("["),
                ExportFormat::Csv => String::from("seq,at_ms,kind,audience,retention,text,hash\n"),
            };
            let (mut last, mut more, mut first) = (after, false, true);
            for e in all {
                let Some(c) = e.content else { continue };
                let hash = hex::encode(e.hash);
                let row = match format {
                    ExportFormat::Json => format!(
                        "{}{}",
                        if first { "" } else { "," },
                        serde_json::json!({
                            "seq": e.seq, "at_ms": c.at_ms, "kind": c.kind, "text": c.text,
                            "audience": format!("{:?}", c.audience).to_lowercase(),
                            "retention": format!("{:?}", c.retention).to_lowercase(),
                            "hash": hash,
                        })
                    ),
                    ExportFormat::Csv => format!(
                        "{},{},{},{:?},{:?},{},{hash}\n",
                        e.seq,
                        c.at_ms,
                        csv_field(&c.kind),
                        c.audience,
                        c.retention,
                        csv_field(&c.text)
                    ),
                };
                // Keep the rendered page inside one session message.
                if document.len() + row.len() > EXPORT_BYTES && !first {
                    more = true;
                    break;
                }
                document.push_str(&row);
                last = e.seq;
                first = false;
            }
            if format == ExportFormat::Json {
                document.push(']');
            }
            Ok(FeedReply::Export {
                document,
                last,
                more,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Retention: at unlock, events past their class's time lose their content; the rest and
    /// permanent ones keep it; hashes stay.
    #[test]
    fn pruning_drops_only_expired_contents() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        let day = 24 * 3600 * 1000u64;
        for (seq, retention) in [
            (1, Retention::Short),
            (2, Retention::Standard),
            (3, Retention::Permanent),
        ] {
            let keep = retention.keep_ms().map(|k| (k) as i64);
            conn.execute(
                "INSERT INTO events (seq, at_ms, audience, kind, keep_until, content, content_hash, hash) \
                 VALUES (?1, 0, 1, 'k', ?2, x'01', x'02', x'03')",
                rusqlite::params![seq, keep],
            )
            .unwrap();
        }
        let run = |now: u64| {
            let p = prune(now);
            conn.execute(&p.sql, rusqlite::params_from_iter(p.params.iter()))
                .unwrap();
            let kept: Vec<i64> = conn
                .prepare("SELECT seq FROM events WHERE content IS NOT NULL ORDER BY seq")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            kept
        };
        assert_eq!(run(29 * day), [1, 2, 3]);
        assert_eq!(run(31 * day), [2, 3]);
        assert_eq!(run(400 * day), [3]);
        let hashes: i64 = conn
            .query_row(
                "SELECT count(*) FROM events WHERE hash IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(hashes, 3, "hashes stay");
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }
}
