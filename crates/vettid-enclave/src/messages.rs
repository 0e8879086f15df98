//! The messages domain: each connection's history, kept in the vault (`vettid_proto::messages`).
//!
//! ```text
//! messages (connection, outgoing, seq, client_id, text, sent_ms, delivered_ms, read_ms,
//!           edited_ms, edit_seq, deleted)
//! message_retention (connection, days)     X'' is the default; days NULL: for ever
//! ```
//!
//! Edits and deletes for everyone are the sender's, within
//! [`vettid_proto::messages::EDIT_WINDOW_SECS`] of sending (by the sender's clock, on both
//! sides). One that arrives before its message (reordered by the hosts) is kept in its place:
//! the message, when it comes, takes the edit's text, and a later edit never loses to an
//! earlier one (the peer's sequence numbers order them). A deleted message keeps no text.
//!
//! A message is identified by its sender's sequence number on the connection: a redelivered
//! one is kept once, a retried send (same client id) is the same message.

use crate::manager::UnlockedVault;
use crate::vault::{Migration, SqlValue, Statement, Vault};
use vettid_proto::connections::ConnectionId;
use vettid_proto::enclave::{Outbound, VaultError};
use vettid_proto::messages::{
    EDIT_WINDOW_SECS, MAX_RETENTION_DAYS, MAX_TEXT_CHARS, MessageError, MessageOp, MessageReply,
    MessageView, PAGE,
};
use vettid_proto::peer::PeerBody;

const SCHEMA: &str = "
CREATE TABLE messages (
    connection BLOB NOT NULL, outgoing INTEGER NOT NULL, seq INTEGER NOT NULL, client_id BLOB,
    text TEXT NOT NULL, sent_ms INTEGER NOT NULL, delivered_ms INTEGER, read_ms INTEGER,
    PRIMARY KEY (connection, outgoing, seq));
CREATE UNIQUE INDEX messages_by_client ON messages (connection, client_id);
CREATE INDEX messages_by_time ON messages (connection, sent_ms);";

/// Edits, deletes for everyone, and retention.
const EDITS_AND_RETENTION: &str = "
ALTER TABLE messages ADD COLUMN edited_ms INTEGER;
ALTER TABLE messages ADD COLUMN edit_seq INTEGER;
ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
CREATE TABLE message_retention (connection BLOB PRIMARY KEY, days INTEGER);";

/// This domain's migrations, append-only (see `domains.rs`).
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        seq: 9,
        sql: SCHEMA,
    },
    Migration {
        seq: 11,
        sql: EDITS_AND_RETENTION,
    },
];

/// When this vault took a message (its own clock): sent, or stored on arrival.
const KEPT: &str = "(CASE outgoing WHEN 1 THEN sent_ms ELSE coalesce(delivered_ms, sent_ms) END)";
/// The retention key of the default.
const DEFAULT: &[u8] = b"";

fn db(e: rusqlite::Error) -> VaultError {
    VaultError::Internal(format!("database: {e}"))
}

/// Whether `text` may be sent: 1–[`MAX_TEXT_CHARS`] characters.
pub(crate) fn valid_text(text: &str) -> bool {
    !text.is_empty() && text.chars().count() <= MAX_TEXT_CHARS
}

/// The statement keeping a received text (the caller checked it is new).
pub(crate) fn received(
    connection: &ConnectionId,
    seq: u64,
    sent_ms: u64,
    text: &str,
    now_ms: u64,
) -> Vec<Statement> {
    vec![Statement {
        // An edit or delete that came first holds its place: it keeps its text.
        sql: "INSERT INTO messages (connection, outgoing, seq, text, sent_ms, delivered_ms) \
              VALUES (?1, 0, ?2, ?3, ?4, ?5) \
              ON CONFLICT (connection, outgoing, seq) DO UPDATE SET sent_ms = excluded.sent_ms"
            .into(),
        params: vec![
            SqlValue::Blob(connection.to_vec()),
            SqlValue::Int(seq as i64),
            SqlValue::Text(text.to_owned()),
            SqlValue::Int(sent_ms as i64),
            SqlValue::Int(now_ms as i64),
        ],
    }]
}

/// The statements marking this member's sent messages `seqs` delivered (or read), once.
pub(crate) fn receipts(
    connection: &ConnectionId,
    seqs: &[u64],
    read: bool,
    now_ms: u64,
) -> Vec<Statement> {
    let column = if read { "read_ms" } else { "delivered_ms" };
    seqs.iter()
        .map(|seq| Statement {
            // A read message was delivered too.
            sql: format!(
                "UPDATE messages SET {column} = coalesce({column}, ?3), \
                 delivered_ms = coalesce(delivered_ms, ?3) \
                 WHERE connection = ?1 AND outgoing = 1 AND seq = ?2"
            ),
            params: vec![
                SqlValue::Blob(connection.to_vec()),
                SqlValue::Int(*seq as i64),
                SqlValue::Int(now_ms as i64),
            ],
        })
        .collect()
}

/// The statements applying the peer's edit (`text`) or delete (`None`) of its message `seq`,
/// carried by its message `edit_seq` sent at `edit_sent_ms`; `None` if it changes nothing
/// (deleted already, a newer edit applied, or past the window).
pub(crate) fn changed(
    vault: &Vault,
    connection: &ConnectionId,
    seq: u64,
    text: Option<&str>,
    edit_seq: u64,
    edit_sent_ms: u64,
    now_ms: u64,
) -> Result<Option<Vec<Statement>>, VaultError> {
    use rusqlite::OptionalExtension;
    if text.is_some_and(|t| !valid_text(t)) || edit_seq <= seq {
        return Ok(None);
    }
    let found: Option<(i64, bool, Option<i64>)> = vault
        .read(|c| {
            c.query_row(
                "SELECT sent_ms, deleted, edit_seq FROM messages \
                 WHERE connection = ?1 AND outgoing = 0 AND seq = ?2",
                rusqlite::params![&connection[..], seq as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
        })
        .map_err(db)?;
    let (insert, sent) = match found {
        None => (true, 0),
        Some((_, true, _)) => return Ok(None),
        Some((_, _, Some(applied))) if applied as u64 >= edit_seq => return Ok(None),
        Some((sent, _, _)) => (false, sent as u64),
    };
    if !insert && edit_sent_ms.saturating_sub(sent) > EDIT_WINDOW_SECS * 1000 {
        return Ok(None);
    }
    let mut params = vec![
        SqlValue::Blob(connection.to_vec()),
        SqlValue::Int(seq as i64),
        SqlValue::Text(text.unwrap_or_default().to_owned()),
        SqlValue::Int(edit_sent_ms as i64),
        SqlValue::Int(edit_seq as i64),
        SqlValue::Int(i64::from(text.is_none())),
    ];
    let sql = if insert {
        params.push(SqlValue::Int(now_ms as i64));
        "INSERT INTO messages (connection, outgoing, seq, text, sent_ms, delivered_ms, \
         edited_ms, edit_seq, deleted) VALUES (?1, 0, ?2, ?3, ?4, ?7, ?4, ?5, ?6)"
    } else {
        "UPDATE messages SET text = ?3, edited_ms = ?4, edit_seq = ?5, deleted = ?6 \
         WHERE connection = ?1 AND outgoing = 0 AND seq = ?2"
    };
    Ok(Some(vec![Statement {
        sql: sql.into(),
        params,
    }]))
}

/// The retention in force for `connection` (its own, else the default), in days.
fn retention(vault: &Vault, connection: &[u8]) -> Result<Option<u32>, VaultError> {
    use rusqlite::OptionalExtension;
    let days: Option<Option<i64>> = vault
        .read(|c| {
            c.query_row(
                "SELECT days FROM message_retention WHERE connection IN (?1, ?2) \
                 ORDER BY length(connection) DESC LIMIT 1",
                rusqlite::params![connection, DEFAULT],
                |r| r.get(0),
            )
            .optional()
        })
        .map_err(db)?;
    Ok(days.flatten().map(|d| d as u32))
}

/// The oldest time a message of `connection` is kept from, under its retention.
fn cutoff(vault: &Vault, connection: &ConnectionId, now_ms: u64) -> Result<u64, VaultError> {
    Ok(retention(vault, connection)?.map_or(0, |d| {
        now_ms.saturating_sub(u64::from(d) * 24 * 3600 * 1000)
    }))
}

/// The statement erasing `connection`'s messages older than its retention, if it has one.
pub(crate) fn purge(
    vault: &Vault,
    connection: &ConnectionId,
    now_ms: u64,
) -> Result<Option<Statement>, VaultError> {
    let cutoff = cutoff(vault, connection, now_ms)?;
    Ok((cutoff > 0).then(|| Statement {
        sql: format!("DELETE FROM messages WHERE connection = ?1 AND {KEPT} < ?2"),
        params: vec![
            SqlValue::Blob(connection.to_vec()),
            SqlValue::Int(cutoff as i64),
        ],
    }))
}

/// seq and text of the message the app sent with `client_id`, if it did.
fn by_client(
    vault: &Vault,
    connection: &ConnectionId,
    client_id: &[u8; 16],
) -> Result<Option<(u64, String)>, VaultError> {
    use rusqlite::OptionalExtension;
    vault
        .read(|c| {
            c.query_row(
                "SELECT seq, text FROM messages WHERE connection = ?1 AND client_id = ?2",
                rusqlite::params![&connection[..], &client_id[..]],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
            )
            .optional()
        })
        .map_err(db)
}

/// Runs one message operation; the messages to send the peer.
pub fn handle(
    unlocked: &mut UnlockedVault<'_>,
    op: MessageOp,
) -> Result<(MessageReply, Vec<Outbound>), VaultError> {
    let (vault, objects, now_ms) = unlocked.parts();
    match op {
        MessageOp::Send {
            connection,
            client_id,
            text,
        } => {
            if !valid_text(&text) {
                return Err(MessageError::BadText.into());
            }
            let row = crate::connections::active(vault, &connection)?;
            if !row.peer_takes_messages() {
                return Err(MessageError::NotAllowed.into());
            }
            if let Some((seq, sent)) = by_client(vault, &connection, &client_id)? {
                // A retry: the same message again (the peer keeps it once).
                let (_, out, _) =
                    crate::connections::seal(&row, PeerBody::Text(sent), now_ms, Some(seq))?;
                return Ok((MessageReply::Sent { seq }, vec![out]));
            }
            let (count, out, seq) =
                crate::connections::seal(&row, PeerBody::Text(text.clone()), now_ms, None)?;
            let mut statements: Vec<Statement> = count.into_iter().collect();
            statements.push(Statement {
                sql: "INSERT INTO messages (connection, outgoing, seq, client_id, text, sent_ms) \
                      VALUES (?1, 1, ?2, ?3, ?4, ?5)"
                    .into(),
                params: vec![
                    SqlValue::Blob(connection.to_vec()),
                    SqlValue::Int(seq as i64),
                    SqlValue::Blob(client_id.to_vec()),
                    SqlValue::Text(text),
                    SqlValue::Int(now_ms as i64),
                ],
            });
            statements.extend(purge(vault, &connection, now_ms)?);
            vault.write(objects, statements)?;
            Ok((MessageReply::Sent { seq }, vec![out]))
        }
        MessageOp::List {
            connection,
            before_ms,
            limit,
        } => {
            crate::connections::get(vault, &connection)
                .map_err(|_| VaultError::from(MessageError::Unknown))?;
            let limit = usize::from(limit).clamp(1, PAGE);
            let kept_from = cutoff(vault, &connection, now_ms)?;
            let mut messages: Vec<MessageView> = vault
                .read(|c| {
                    let mut stmt = c.prepare_cached(&format!(
                        "SELECT outgoing, seq, text, sent_ms, delivered_ms, read_ms, edited_ms, \
                         deleted FROM messages \
                         WHERE connection = ?1 AND sent_ms < ?2 AND {KEPT} >= ?4 \
                         ORDER BY sent_ms DESC, outgoing, seq DESC LIMIT ?3"
                    ))?;
                    let opt = |v: Option<i64>| v.map(|t| t as u64);
                    let rows = stmt.query_map(
                        rusqlite::params![
                            &connection[..],
                            before_ms.map_or(i64::MAX, |b| b as i64),
                            (limit + 1) as i64,
                            kept_from as i64,
                        ],
                        |r| {
                            Ok(MessageView {
                                outgoing: r.get(0)?,
                                seq: r.get::<_, i64>(1)? as u64,
                                text: r.get(2)?,
                                sent_ms: r.get::<_, i64>(3)? as u64,
                                delivered_ms: opt(r.get(4)?),
                                read_ms: opt(r.get(5)?),
                                edited_ms: opt(r.get(6)?),
                                deleted: r.get(7)?,
                            })
                        },
                    )?;
                    rows.collect()
                })
                .map_err(db)?;
            let more = messages.len() > limit;
            messages.truncate(limit);
            Ok((MessageReply::Messages { messages, more }, vec![]))
        }
        MessageOp::Read { connection, seq } => {
            let row = crate::connections::active(vault, &connection)?;
            let unread: Vec<u64> = vault
                .read(|c| {
                    let mut stmt = c.prepare_cached(
                        "SELECT seq FROM messages WHERE connection = ?1 AND outgoing = 0 \
                         AND seq <= ?2 AND read_ms IS NULL ORDER BY seq LIMIT ?3",
                    )?;
                    let rows = stmt.query_map(
                        rusqlite::params![&connection[..], seq as i64, (PAGE * 4) as i64],
                        |r| Ok(r.get::<_, i64>(0)? as u64),
                    )?;
                    rows.collect()
                })
                .map_err(db)?;
            if unread.is_empty() {
                let exists: i64 = vault
                    .read(|c| {
                        c.query_row(
                            "SELECT count(*) FROM messages WHERE connection = ?1 AND outgoing = 0 \
                             AND seq = ?2",
                            rusqlite::params![&connection[..], seq as i64],
                            |r| r.get(0),
                        )
                    })
                    .map_err(db)?;
                if exists == 0 {
                    return Err(MessageError::Unknown.into());
                }
                return Ok((MessageReply::Done, vec![]));
            }
            let (count, out, _) =
                crate::connections::seal(&row, PeerBody::Read(unread.clone()), now_ms, None)?;
            let mut statements: Vec<Statement> = count.into_iter().collect();
            statements.extend(unread.iter().map(|s| {
                Statement {
                    sql: "UPDATE messages SET read_ms = ?3 WHERE connection = ?1 AND outgoing = 0 \
                      AND seq = ?2"
                        .into(),
                    params: vec![
                        SqlValue::Blob(connection.to_vec()),
                        SqlValue::Int(*s as i64),
                        SqlValue::Int(now_ms as i64),
                    ],
                }
            }));
            vault.write(objects, statements)?;
            Ok((MessageReply::Done, vec![out]))
        }
        MessageOp::Edit {
            connection,
            seq,
            text,
        } => change(vault, objects, now_ms, connection, seq, Some(text)),
        MessageOp::Delete { connection, seq } => {
            change(vault, objects, now_ms, connection, seq, None)
        }
        MessageOp::SetRetention { connection, days } => {
            if days.is_some_and(|d| d == 0 || d > MAX_RETENTION_DAYS) {
                return Err(MessageError::BadRetention.into());
            }
            let key = match &connection {
                Some(id) => {
                    crate::connections::get(vault, id)
                        .map_err(|_| VaultError::from(MessageError::Unknown))?;
                    id.to_vec()
                }
                None => DEFAULT.to_vec(),
            };
            let mut statements = vec![Statement {
                sql: "INSERT INTO message_retention (connection, days) VALUES (?1, ?2) \
                      ON CONFLICT (connection) DO UPDATE SET days = excluded.days"
                    .into(),
                params: vec![
                    SqlValue::Blob(key),
                    days.map_or(SqlValue::Null, |d| SqlValue::Int(i64::from(d))),
                ],
            }];
            if let Some(d) = days {
                let cutoff = now_ms.saturating_sub(u64::from(d) * 24 * 3600 * 1000) as i64;
                statements.push(match connection {
                    Some(id) => Statement {
                        sql: format!("DELETE FROM messages WHERE connection = ?1 AND {KEPT} < ?2"),
                        params: vec![SqlValue::Blob(id.to_vec()), SqlValue::Int(cutoff)],
                    },
                    // The default: every connection without a setting of its own.
                    None => Statement {
                        sql: format!(
                            "DELETE FROM messages WHERE {KEPT} < ?1 AND connection NOT IN \
                             (SELECT connection FROM message_retention WHERE length(connection) > 0)"
                        ),
                        params: vec![SqlValue::Int(cutoff)],
                    },
                });
            }
            vault.write(objects, statements)?;
            Ok((MessageReply::Done, vec![]))
        }
        MessageOp::Retention { connection } => {
            let key = match &connection {
                Some(id) => {
                    crate::connections::get(vault, id)
                        .map_err(|_| VaultError::from(MessageError::Unknown))?;
                    id.to_vec()
                }
                None => DEFAULT.to_vec(),
            };
            Ok((MessageReply::Retention(retention(vault, &key)?), vec![]))
        }
    }
}

/// Edits (`text`) or deletes (`None`) this member's message `seq` for everyone.
fn change(
    vault: &mut Vault,
    objects: &crate::objects::Objects<'_>,
    now_ms: u64,
    connection: ConnectionId,
    seq: u64,
    text: Option<String>,
) -> Result<(MessageReply, Vec<Outbound>), VaultError> {
    use rusqlite::OptionalExtension;
    if text.as_deref().is_some_and(|t| !valid_text(t)) {
        return Err(MessageError::BadText.into());
    }
    let row = crate::connections::active(vault, &connection)?;
    let found: Option<(i64, bool)> = vault
        .read(|c| {
            c.query_row(
                "SELECT sent_ms, deleted FROM messages \
                 WHERE connection = ?1 AND outgoing = 1 AND seq = ?2",
                rusqlite::params![&connection[..], seq as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
        .map_err(db)?;
    let Some((sent_ms, deleted)) = found else {
        return Err(MessageError::Unknown.into());
    };
    if deleted || now_ms.saturating_sub(sent_ms as u64) > EDIT_WINDOW_SECS * 1000 {
        return Err(MessageError::TooLate.into());
    }
    let body = match &text {
        Some(t) => PeerBody::Edit {
            seq,
            text: t.clone(),
        },
        None => PeerBody::Delete(seq),
    };
    let (count, out, _) = crate::connections::seal(&row, body, now_ms, None)?;
    let mut statements: Vec<Statement> = count.into_iter().collect();
    statements.push(Statement {
        sql: "UPDATE messages SET text = ?3, edited_ms = ?4, deleted = ?5 \
              WHERE connection = ?1 AND outgoing = 1 AND seq = ?2"
            .into(),
        params: vec![
            SqlValue::Blob(connection.to_vec()),
            SqlValue::Int(seq as i64),
            SqlValue::Text(text.clone().unwrap_or_default()),
            SqlValue::Int(now_ms as i64),
            SqlValue::Int(i64::from(text.is_none())),
        ],
    });
    vault.write(objects, statements)?;
    Ok((MessageReply::Done, vec![out]))
}
