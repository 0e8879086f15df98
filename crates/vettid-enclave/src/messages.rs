//! The messages domain: each connection's history, kept in the vault (`vettid_proto::messages`).
//!
//! ```text
//! messages (connection, outgoing, seq, client_id, text, sent_ms, delivered_ms, read_ms)
//! ```
//!
//! A message is identified by its sender's sequence number on the connection: a redelivered
//! one is kept once, a retried send (same client id) is the same message.

use crate::manager::UnlockedVault;
use crate::vault::{Migration, SqlValue, Statement, Vault};
use vettid_proto::connections::ConnectionId;
use vettid_proto::enclave::{Outbound, VaultError};
use vettid_proto::messages::{
    MAX_TEXT_CHARS, MessageError, MessageOp, MessageReply, MessageView, PAGE,
};
use vettid_proto::peer::PeerBody;

const SCHEMA: &str = "
CREATE TABLE messages (
    connection BLOB NOT NULL, outgoing INTEGER NOT NULL, seq INTEGER NOT NULL, client_id BLOB,
    text TEXT NOT NULL, sent_ms INTEGER NOT NULL, delivered_ms INTEGER, read_ms INTEGER,
    PRIMARY KEY (connection, outgoing, seq));
CREATE UNIQUE INDEX messages_by_client ON messages (connection, client_id);
CREATE INDEX messages_by_time ON messages (connection, sent_ms);";

/// This domain's migrations, append-only (see `domains.rs`).
pub const MIGRATIONS: &[Migration] = &[Migration {
    seq: 9,
    sql: SCHEMA,
}];

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
        sql: "INSERT INTO messages (connection, outgoing, seq, text, sent_ms, delivered_ms) \
              VALUES (?1, 0, ?2, ?3, ?4, ?5)"
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
            type Raw = (i64, i64, String, i64, Option<i64>, Option<i64>);
            let mut raw: Vec<Raw> = vault
                .read(|c| {
                    let mut stmt = c.prepare_cached(
                        "SELECT outgoing, seq, text, sent_ms, delivered_ms, read_ms FROM messages \
                         WHERE connection = ?1 AND sent_ms < ?2 \
                         ORDER BY sent_ms DESC, outgoing, seq DESC LIMIT ?3",
                    )?;
                    let rows = stmt.query_map(
                        rusqlite::params![
                            &connection[..],
                            before_ms.map_or(i64::MAX, |b| b as i64),
                            (limit + 1) as i64
                        ],
                        |r| {
                            Ok((
                                r.get(0)?,
                                r.get(1)?,
                                r.get(2)?,
                                r.get(3)?,
                                r.get(4)?,
                                r.get(5)?,
                            ))
                        },
                    )?;
                    rows.collect()
                })
                .map_err(db)?;
            let more = raw.len() > limit;
            raw.truncate(limit);
            let messages = raw
                .into_iter()
                .map(|(outgoing, seq, text, sent, delivered, read)| MessageView {
                    outgoing: outgoing != 0,
                    seq: seq as u64,
                    text,
                    sent_ms: sent as u64,
                    delivered_ms: delivered.map(|d| d as u64),
                    read_ms: read.map(|r| r as u64),
                })
                .collect();
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
    }
}
