//! The messages domain: each connection's history, kept in the vault (`vettid_proto::messages`).
//!
//! ```text
//! messages (connection, outgoing, seq, client_id, text, sent_ms, delivered_ms, read_ms,
//!           edited_ms, edit_seq, deleted)
//!           attachment, complete, held, receipt_seq
//! message_retention (connection, days)     X'' is the default; days NULL: for ever
//! attachment_pieces (connection, outgoing, seq, idx, bytes)
//! uploads           (client_id, idx, bytes, at_ms)     pieces the app sent before `SendFile`
//! ```
//!
//! An attachment (at most [`MAX_ATTACHMENT_BYTES`]) comes from the app in pieces of
//! [`PIECE_BYTES`] (`Upload`), is checked whole against its size and SHA-256 at `SendFile`, and
//! travels to the peer as a `File` message followed by one `Piece` message per piece, piece
//! `i` numbered `file + 1 + i` (so a piece belongs to exactly one file). The receiver stores
//! pieces as they come, in any order, but only for a file still arriving and within its piece
//! count (before its `File` message, for two files at a time); when the last one is in and the
//! hash matches, the message is complete: its delivered receipt goes and the member's apps are
//! told.
//!
//! Edits and deletes for everyone are the sender's, within
//! [`vettid_proto::messages::EDIT_WINDOW_SECS`] of sending (by the sender's clock, on both
//! sides). One that arrives before its message (reordered by the hosts) is kept in its place,
//! hidden (`held`) until the message comes and takes the edit's text; a later edit never loses
//! to an earlier one (the peer's sequence numbers order them). A deleted message keeps no text.
//!
//! A message is identified by its sender's sequence number on the connection: a redelivered
//! one is kept once, a retried send (same client id) is the same message.

use crate::manager::UnlockedVault;
use crate::vault::{Migration, SqlValue, Statement, Vault};
use vettid_proto::connections::ConnectionId;
use vettid_proto::enclave::{Outbound, VaultError};
use vettid_proto::messages::{
    AttachmentInfo, AttachmentView, EDIT_WINDOW_SECS, MAX_ATTACHMENT_BYTES, MAX_RETENTION_DAYS,
    MAX_TEXT_CHARS, MAX_UPLOADS, MessageError, MessageOp, MessageReply, MessageView, PAGE,
    PIECE_BYTES,
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
CREATE TABLE message_retention (connection BLOB PRIMARY KEY, days INTEGER);
ALTER TABLE messages ADD COLUMN attachment BLOB;
ALTER TABLE messages ADD COLUMN complete INTEGER NOT NULL DEFAULT 1;
ALTER TABLE messages ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN receipt_seq INTEGER;
CREATE TABLE attachment_pieces (connection BLOB NOT NULL, outgoing INTEGER NOT NULL,
    seq INTEGER NOT NULL, idx INTEGER NOT NULL, bytes BLOB NOT NULL,
    PRIMARY KEY (connection, outgoing, seq, idx));
CREATE TABLE uploads (client_id BLOB NOT NULL, idx INTEGER NOT NULL, bytes BLOB NOT NULL,
    at_ms INTEGER NOT NULL, PRIMARY KEY (client_id, idx));";

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
              ON CONFLICT (connection, outgoing, seq) DO UPDATE SET sent_ms = excluded.sent_ms, \
              held = 0"
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

/// The number of the delivered receipt this vault sent for the peer's message `seq`, if it
/// stored the message (shown and whole) and sent one.
pub(crate) fn receipt_of(
    vault: &Vault,
    connection: &ConnectionId,
    seq: u64,
) -> Result<Option<u64>, VaultError> {
    use rusqlite::OptionalExtension;
    let found: Option<Option<i64>> = vault
        .read(|c| {
            c.query_row(
                "SELECT receipt_seq FROM messages WHERE connection = ?1 AND outgoing = 0 \
                 AND seq = ?2 AND held = 0 AND complete = 1",
                rusqlite::params![&connection[..], i64::try_from(seq).unwrap_or(i64::MAX)],
                |r| r.get(0),
            )
            .optional()
        })
        .map_err(db)?;
    Ok(found.flatten().map(|s| s as u64))
}

/// The statement recording that the delivered receipt for the peer's message `seq` went as
/// this vault's message `receipt_seq`.
pub(crate) fn receipt_sent(connection: &ConnectionId, seq: u64, receipt_seq: u64) -> Statement {
    Statement {
        sql: "UPDATE messages SET receipt_seq = ?3 WHERE connection = ?1 AND outgoing = 0 \
              AND seq = ?2"
            .into(),
        params: vec![
            SqlValue::Blob(connection.to_vec()),
            SqlValue::Int(seq as i64),
            SqlValue::Int(receipt_seq as i64),
        ],
    }
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
         edited_ms, edit_seq, deleted, held) VALUES (?1, 0, ?2, ?3, ?4, ?7, ?4, ?5, ?6, 1)"
    } else {
        "UPDATE messages SET text = ?3, edited_ms = ?4, edit_seq = ?5, deleted = ?6, \
         attachment = CASE WHEN ?6 = 1 THEN NULL ELSE attachment END \
         WHERE connection = ?1 AND outgoing = 0 AND seq = ?2"
    };
    let mut statements = vec![Statement {
        sql: sql.into(),
        params,
    }];
    if text.is_none() {
        statements.push(forget_attachment(connection, false, seq));
    }
    Ok(Some(statements))
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
) -> Result<Vec<Statement>, VaultError> {
    let cutoff = cutoff(vault, connection, now_ms)?;
    if cutoff == 0 {
        return Ok(Vec::new());
    }
    Ok(older_than(
        "connection = ?1",
        vec![SqlValue::Blob(connection.to_vec())],
        cutoff,
    ))
}

/// The statements erasing the messages `which` (a condition on `messages` whose parameters
/// are `params`) kept before `cutoff`, with their attachments.
fn older_than(which: &str, mut params: Vec<SqlValue>, cutoff: u64) -> Vec<Statement> {
    params.push(SqlValue::Int(i64::try_from(cutoff).unwrap_or(i64::MAX)));
    let n = params.len();
    vec![
        Statement {
            sql: format!(
                "DELETE FROM attachment_pieces WHERE (connection, outgoing, seq) IN \
                 (SELECT connection, outgoing, seq FROM messages WHERE {which} AND {KEPT} < ?{n} \
                 AND (held = 0 OR seq <= (SELECT recv_floor FROM connections c \
                 WHERE c.id = messages.connection)))"
            ),
            params: params.clone(),
        },
        Statement {
            // A held place (an edit or delete whose message has not come) stays: erasing it
            // would let the message come back as it was.
            sql: format!(
                "DELETE FROM messages WHERE {which} AND {KEPT} < ?{n} AND (held = 0 OR seq <= \
                 (SELECT recv_floor FROM connections c WHERE c.id = messages.connection))"
            ),
            params,
        },
    ]
}

/// The statement erasing the attachment of message (`connection`, `outgoing`, `seq`).
fn forget_attachment(connection: &ConnectionId, outgoing: bool, seq: u64) -> Statement {
    Statement {
        sql: "DELETE FROM attachment_pieces WHERE connection = ?1 AND outgoing = ?2 AND seq = ?3"
            .into(),
        params: vec![
            SqlValue::Blob(connection.to_vec()),
            SqlValue::Int(i64::from(outgoing)),
            SqlValue::Int(seq as i64),
        ],
    }
}

/// The message the app sent with `client_id`, if it did.
fn by_client(
    vault: &Vault,
    connection: &ConnectionId,
    client_id: &[u8; 16],
) -> Result<Option<Sent>, VaultError> {
    use rusqlite::OptionalExtension;
    let found: Option<(i64, String, Option<Vec<u8>>, bool)> = vault
        .read(|c| {
            c.query_row(
                "SELECT seq, text, attachment, deleted FROM messages \
                 WHERE connection = ?1 AND client_id = ?2",
                rusqlite::params![&connection[..], &client_id[..]],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
        })
        .map_err(db)?;
    found
        .map(|(seq, text, attachment, deleted)| {
            Ok(Sent {
                seq: seq as u64,
                text,
                deleted,
                attachment: attachment
                    .map(|b| postcard::from_bytes(&b))
                    .transpose()
                    .map_err(|_| VaultError::Tampered("attachment".into()))?,
            })
        })
        .transpose()
}

/// A message this member sent, as its retry finds it.
struct Sent {
    seq: u64,
    text: String,
    deleted: bool,
    attachment: Option<AttachmentInfo>,
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
            if let Some(sent) = by_client(vault, &connection, &client_id)? {
                if sent.deleted {
                    // Deleted since: nothing to send again.
                    return Ok((MessageReply::Sent { seq: sent.seq }, vec![]));
                }
                if sent.attachment.is_some() {
                    // That id went with a file: not a retry of this.
                    return Err(MessageError::BadText.into());
                }
                // A retry: the same message again (the peer keeps it once).
                let seq = sent.seq;
                let (_, out, _) =
                    crate::connections::seal(&row, PeerBody::Text(sent.text), now_ms, Some(seq))?;
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
            since_ms,
            limit,
        } => {
            known(vault, &connection)?;
            let limit = usize::from(limit).clamp(1, PAGE);
            let kept_from = cutoff(vault, &connection, now_ms)?;
            let since = since_ms.unwrap_or(0);
            let mut messages: Vec<MessageView> = vault
                .read(|c| {
                    let mut stmt = c.prepare_cached(&format!(
                        "SELECT outgoing, seq, text, sent_ms, delivered_ms, read_ms, edited_ms, \
                         deleted, attachment, complete FROM messages \
                         WHERE connection = ?1 AND sent_ms < ?2 AND sent_ms >= ?5 AND {KEPT} >= ?4 \
                         AND held = 0 \
                         ORDER BY sent_ms DESC, outgoing, seq DESC LIMIT ?3"
                    ))?;
                    let opt = |v: Option<i64>| v.map(|t| t as u64);
                    let rows = stmt.query_map(
                        rusqlite::params![
                            &connection[..],
                            before_ms.map_or(i64::MAX, |b| b as i64),
                            (limit + 1) as i64,
                            kept_from as i64,
                            i64::try_from(since).unwrap_or(i64::MAX),
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
                                attachment: r
                                    .get::<_, Option<Vec<u8>>>(8)?
                                    .and_then(|b| postcard::from_bytes(&b).ok())
                                    .map(|info| AttachmentView {
                                        info,
                                        complete: r.get(9).unwrap_or(false),
                                    }),
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
                         AND seq <= ?2 AND read_ms IS NULL AND held = 0 AND complete = 1 \
                         ORDER BY seq LIMIT ?3",
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
        MessageOp::Upload {
            client_id,
            index,
            bytes,
        } => {
            let most = (MAX_ATTACHMENT_BYTES as usize).div_ceil(PIECE_BYTES);
            if bytes.is_empty() || bytes.len() > PIECE_BYTES || usize::from(index) >= most {
                return Err(MessageError::BadAttachment.into());
            }
            let open: Vec<(Vec<u8>, i64)> = vault
                .read(|c| {
                    let mut stmt = c.prepare_cached(
                        "SELECT client_id, min(at_ms) FROM uploads GROUP BY client_id \
                         ORDER BY min(at_ms), client_id",
                    )?;
                    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    rows.collect()
                })
                .map_err(db)?;
            let mut statements = Vec::new();
            let others = open.iter().filter(|(c, _)| c[..] != client_id[..]).count();
            if others >= MAX_UPLOADS {
                // The oldest unfinished upload goes to make room.
                statements.push(Statement {
                    sql: "DELETE FROM uploads WHERE client_id = ?1".into(),
                    params: vec![SqlValue::Blob(open[0].0.clone())],
                });
            }
            statements.push(Statement {
                sql: "INSERT OR REPLACE INTO uploads (client_id, idx, bytes, at_ms) \
                      VALUES (?1, ?2, ?3, ?4)"
                    .into(),
                params: vec![
                    SqlValue::Blob(client_id.to_vec()),
                    SqlValue::Int(i64::from(index)),
                    SqlValue::Blob(bytes),
                    SqlValue::Int(now_ms as i64),
                ],
            });
            vault.write(objects, statements)?;
            Ok((MessageReply::Done, vec![]))
        }
        MessageOp::SendFile {
            connection,
            client_id,
            info,
            text,
        } => send_file(vault, objects, now_ms, connection, client_id, info, text),
        MessageOp::Download {
            connection,
            outgoing,
            seq,
            index,
        } => {
            use rusqlite::OptionalExtension;
            let found: Option<(Option<Vec<u8>>, bool)> = vault
                .read(|c| {
                    c.query_row(
                        "SELECT attachment, complete FROM messages \
                         WHERE connection = ?1 AND outgoing = ?2 AND seq = ?3",
                        rusqlite::params![&connection[..], outgoing, seq as i64],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                })
                .map_err(db)?;
            let Some((Some(info), complete)) = found else {
                return Err(MessageError::Unknown.into());
            };
            if !complete {
                return Err(MessageError::Incomplete.into());
            }
            let info: AttachmentInfo = postcard::from_bytes(&info)
                .map_err(|_| VaultError::Tampered("attachment".into()))?;
            if index >= info.pieces() {
                return Err(MessageError::Unknown.into());
            }
            let bytes =
                piece(vault, &connection, outgoing, seq, index)?.ok_or(MessageError::Unknown)?;
            Ok((
                MessageReply::Piece {
                    bytes,
                    pieces: info.pieces(),
                },
                vec![],
            ))
        }
        MessageOp::Clear { connection } => {
            known(vault, &connection)?;
            let c = SqlValue::Blob(connection.to_vec());
            vault.write(
                objects,
                vec![
                    Statement {
                        sql: "DELETE FROM attachment_pieces WHERE connection = ?1".into(),
                        params: vec![c.clone()],
                    },
                    Statement {
                        sql: "DELETE FROM messages WHERE connection = ?1".into(),
                        params: vec![c],
                    },
                ],
            )?;
            Ok((MessageReply::Done, vec![]))
        }
        MessageOp::SetRetention { connection, days } => {
            if days.is_some_and(|d| d == 0 || d > MAX_RETENTION_DAYS) {
                return Err(MessageError::BadRetention.into());
            }
            let key = retention_key(vault, connection.as_ref())?;
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
                let cutoff = now_ms.saturating_sub(u64::from(d) * 24 * 3600 * 1000);
                statements.extend(match connection {
                    Some(id) => {
                        older_than("connection = ?1", vec![SqlValue::Blob(id.to_vec())], cutoff)
                    }
                    // The default: every connection without a setting of its own.
                    None => older_than(
                        "connection NOT IN (SELECT connection FROM message_retention \
                         WHERE length(connection) > 0)",
                        vec![],
                        cutoff,
                    ),
                });
            }
            vault.write(objects, statements)?;
            Ok((MessageReply::Done, vec![]))
        }
        MessageOp::Retention { connection } => {
            let key = retention_key(vault, connection.as_ref())?;
            Ok((MessageReply::Retention(retention(vault, &key)?), vec![]))
        }
    }
}

/// `Unknown` unless this vault has connection `id`.
fn known(vault: &Vault, id: &ConnectionId) -> Result<(), VaultError> {
    crate::connections::get(vault, id)
        .map(|_| ())
        .map_err(|_| MessageError::Unknown.into())
}

/// The retention settings' key of `connection` (which must exist), or of the default.
fn retention_key(vault: &Vault, connection: Option<&ConnectionId>) -> Result<Vec<u8>, VaultError> {
    match connection {
        Some(id) => known(vault, id).map(|()| id.to_vec()),
        None => Ok(DEFAULT.to_vec()),
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
    if text.is_none() {
        statements.push(forget_attachment(&connection, true, seq));
    }
    statements.push(Statement {
        sql: "UPDATE messages SET text = ?3, edited_ms = ?4, deleted = ?5, \
              attachment = CASE WHEN ?5 = 1 THEN NULL ELSE attachment END \
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

fn piece(
    vault: &Vault,
    connection: &ConnectionId,
    outgoing: bool,
    seq: u64,
    index: u16,
) -> Result<Option<Vec<u8>>, VaultError> {
    use rusqlite::OptionalExtension;
    vault
        .read(|c| {
            c.query_row(
                "SELECT bytes FROM attachment_pieces \
                 WHERE connection = ?1 AND outgoing = ?2 AND seq = ?3 AND idx = ?4",
                rusqlite::params![&connection[..], outgoing, seq as i64, index],
                |r| r.get(0),
            )
            .optional()
        })
        .map_err(db)
}

/// Every piece of message (`connection`, `outgoing`, `seq`), in order.
fn pieces(
    vault: &Vault,
    connection: &ConnectionId,
    outgoing: bool,
    seq: u64,
) -> Result<Vec<(u16, Vec<u8>)>, VaultError> {
    vault
        .read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT idx, bytes FROM attachment_pieces \
                 WHERE connection = ?1 AND outgoing = ?2 AND seq = ?3 ORDER BY idx",
            )?;
            let rows = stmt.query_map(
                rusqlite::params![&connection[..], outgoing, seq as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            rows.collect()
        })
        .map_err(db)
}

/// Whether `parts` (indexes in order) are exactly the pieces of `info` and hash to it.
fn whole(info: &AttachmentInfo, parts: &[(u16, Vec<u8>)]) -> bool {
    use sha2::Digest;
    let n = usize::from(info.pieces());
    if parts.len() != n
        || parts
            .iter()
            .enumerate()
            .any(|(i, (idx, _))| usize::from(*idx) != i)
    {
        return false;
    }
    let sized = parts.iter().enumerate().all(|(i, (_, b))| {
        if i + 1 < n {
            b.len() == PIECE_BYTES
        } else {
            !b.is_empty() && b.len() <= PIECE_BYTES
        }
    });
    let total: usize = parts.iter().map(|(_, b)| b.len()).sum();
    let mut hash = sha2::Sha256::new();
    for (_, b) in parts {
        hash.update(b);
    }
    sized && total == info.size as usize && <[u8; 32]>::from(hash.finalize()) == info.sha256
}

/// `SendFile`: the uploaded pieces checked whole, stored with the message, sent as a `File`
/// message and its pieces (again, with the same numbers, on a retry).
#[allow(clippy::too_many_arguments)]
fn send_file(
    vault: &mut Vault,
    objects: &crate::objects::Objects<'_>,
    now_ms: u64,
    connection: ConnectionId,
    client_id: [u8; 16],
    info: AttachmentInfo,
    text: Option<String>,
) -> Result<(MessageReply, Vec<Outbound>), VaultError> {
    if !info.is_valid() || text.as_deref().is_some_and(|t| !valid_text(t)) {
        return Err(MessageError::BadAttachment.into());
    }
    let row = crate::connections::active(vault, &connection)?;
    if !row.peer_takes_messages() {
        return Err(MessageError::NotAllowed.into());
    }
    let seal_all = |info: &AttachmentInfo,
                    text: &Option<String>,
                    seq: Option<u64>,
                    parts: &[(u16, Vec<u8>)]| {
        let body = PeerBody::File {
            info: info.clone(),
            text: text.clone(),
        };
        let (count, first, seq) = crate::connections::seal(&row, body, now_ms, seq)?;
        let mut out = vec![first];
        for (i, bytes) in parts {
            let body = PeerBody::Piece {
                file: seq,
                index: *i,
                bytes: bytes.clone(),
            };
            let (_, o, _) =
                crate::connections::seal(&row, body, now_ms, Some(seq + 1 + u64::from(*i)))?;
            out.push(o);
        }
        Ok::<_, VaultError>((count, out, seq))
    };
    if let Some(sent) = by_client(vault, &connection, &client_id)? {
        if sent.deleted {
            return Ok((MessageReply::Sent { seq: sent.seq }, vec![]));
        }
        // A retry: the same message and pieces again, as stored (the peer keeps each once).
        let Some(stored) = sent.attachment else {
            return Err(MessageError::BadAttachment.into());
        };
        let parts = pieces(vault, &connection, true, sent.seq)?;
        let caption = (!sent.text.is_empty()).then_some(sent.text);
        let (_, out, _) = seal_all(&stored, &caption, Some(sent.seq), &parts)?;
        return Ok((MessageReply::Sent { seq: sent.seq }, out));
    }
    let parts: Vec<(u16, Vec<u8>)> = vault
        .read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT idx, bytes FROM uploads WHERE client_id = ?1 ORDER BY idx",
            )?;
            let rows = stmt.query_map([&client_id[..]], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .map_err(db)?;
    if !whole(&info, &parts) {
        return Err(MessageError::BadAttachment.into());
    }
    let (count, out, seq) = seal_all(&info, &text, None, &parts)?;
    let last = seq + u64::from(info.pieces());
    let mut statements: Vec<Statement> = count.into_iter().collect();
    statements.push(Statement {
        sql: "UPDATE connections SET send_seq = ?2 WHERE id = ?1".into(),
        params: vec![
            SqlValue::Blob(connection.to_vec()),
            SqlValue::Int(last as i64),
        ],
    });
    statements.push(Statement {
        sql: "INSERT INTO messages (connection, outgoing, seq, client_id, text, sent_ms, \
              attachment, complete) VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, 1)"
            .into(),
        params: vec![
            SqlValue::Blob(connection.to_vec()),
            SqlValue::Int(seq as i64),
            SqlValue::Blob(client_id.to_vec()),
            SqlValue::Text(text.unwrap_or_default()),
            SqlValue::Int(now_ms as i64),
            SqlValue::Blob(postcard::to_allocvec(&info).expect("infos encode")),
        ],
    });
    for (i, bytes) in parts {
        statements.push(Statement {
            sql: "INSERT INTO attachment_pieces (connection, outgoing, seq, idx, bytes) \
                  VALUES (?1, 1, ?2, ?3, ?4)"
                .into(),
            params: vec![
                SqlValue::Blob(connection.to_vec()),
                SqlValue::Int(seq as i64),
                SqlValue::Int(i64::from(i)),
                SqlValue::Blob(bytes),
            ],
        });
    }
    statements.push(Statement {
        sql: "DELETE FROM uploads WHERE client_id = ?1".into(),
        params: vec![SqlValue::Blob(client_id.to_vec())],
    });
    statements.extend(purge(vault, &connection, now_ms)?);
    vault.write(objects, statements)?;
    Ok((MessageReply::Sent { seq }, out))
}

/// Files of one peer whose pieces may wait for their `File` message at most (what the hosts
/// reorder); pieces for more are dropped.
const WAITING_FILES: i64 = 2;

/// What arrived of an attachment on `connection`: the peer's `File` message `seq` (with
/// `info`), or one of its pieces. The statements (`None`: nothing to keep), and the message's
/// number once it is whole (its receipt and event are then due).
///
/// A piece is kept only for a file still arriving, within the file's piece count; before its
/// `File` message, only for [`WAITING_FILES`] files at a time.
pub(crate) fn file_part(
    vault: &Vault,
    connection: &ConnectionId,
    floor: u64,
    part: FilePart,
    now_ms: u64,
) -> Result<Taken, VaultError> {
    use rusqlite::OptionalExtension;
    let most = (MAX_ATTACHMENT_BYTES as usize).div_ceil(PIECE_BYTES);
    let seq = match &part {
        FilePart::File { seq, .. } => *seq,
        FilePart::Piece { file, .. } => *file,
    };
    // The message as stored: (attachment, complete, held, deleted).
    type Header = (Option<Vec<u8>>, bool, bool, bool);
    let header: Option<Header> = vault
        .read(|c| {
            c.query_row(
                "SELECT attachment, complete, held, deleted FROM messages \
                 WHERE connection = ?1 AND outgoing = 0 AND seq = ?2",
                rusqlite::params![&connection[..], seq as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
        })
        .map_err(db)?;
    let (info, new_piece, mut statements) = match part {
        FilePart::File {
            seq,
            sent_ms,
            info,
            text,
        } => {
            if !info.is_valid() || text.as_deref().is_some_and(|t| !valid_text(t)) {
                // Refused: pieces that came for it go.
                return Ok(Taken::Kept(
                    vec![forget_attachment(connection, false, seq)],
                    None,
                ));
            }
            let stmt = Statement {
                // An edit or delete that came first holds the place: the text stays the edit's,
                // a deleted message takes no attachment.
                sql: "INSERT INTO messages (connection, outgoing, seq, text, sent_ms, attachment, \
                      complete, delivered_ms) VALUES (?1, 0, ?2, ?3, ?4, ?5, 0, ?6) \
                      ON CONFLICT (connection, outgoing, seq) DO UPDATE SET \
                      sent_ms = excluded.sent_ms, held = 0, \
                      attachment = CASE WHEN deleted = 1 THEN NULL ELSE excluded.attachment END, \
                      complete = deleted"
                    .into(),
                params: vec![
                    SqlValue::Blob(connection.to_vec()),
                    SqlValue::Int(seq as i64),
                    SqlValue::Text(text.unwrap_or_default()),
                    SqlValue::Int(sent_ms as i64),
                    SqlValue::Blob(postcard::to_allocvec(&info).expect("infos encode")),
                    SqlValue::Int(now_ms as i64),
                ],
            };
            match header {
                // New, or in the place an edit held for it.
                None | Some((_, _, true, false)) => (info, None, vec![stmt]),
                // Deleted before it came: it stays deleted, and pieces that came go.
                Some((_, _, true, true)) => {
                    return Ok(Taken::Kept(
                        vec![stmt, forget_attachment(connection, false, seq)],
                        None,
                    ));
                }
                Some(_) => return Ok(Taken::Dropped),
            }
        }
        FilePart::Piece {
            own_seq,
            file,
            index,
            bytes,
        } => {
            // Piece `i` of a file is the sender's message `file + 1 + i`: nothing else.
            let placed = file.checked_add(1 + u64::from(index)) == Some(own_seq);
            if !placed
                || usize::from(index) >= most
                || bytes.is_empty()
                || bytes.len() > PIECE_BYTES
            {
                return Ok(Taken::Dropped);
            }
            let stmt = Statement {
                sql: "INSERT OR IGNORE INTO attachment_pieces (connection, outgoing, seq, idx, \
                      bytes) VALUES (?1, 0, ?2, ?3, ?4)"
                    .into(),
                params: vec![
                    SqlValue::Blob(connection.to_vec()),
                    SqlValue::Int(file as i64),
                    SqlValue::Int(i64::from(index)),
                    SqlValue::Blob(bytes.clone()),
                ],
            };
            match header {
                // Still arriving: within its count.
                Some((Some(b), false, false, false)) => {
                    let info: AttachmentInfo = postcard::from_bytes(&b)
                        .map_err(|_| VaultError::Tampered("attachment".into()))?;
                    if index >= info.pieces() {
                        return Ok(Taken::Dropped);
                    }
                    (info, Some((index, bytes)), vec![stmt])
                }
                // Its `File` has not come (an edit may hold its place): a few files may wait.
                None | Some((_, _, true, false)) => {
                    // Its `File` was taken already (refused, or given up): an orphan.
                    let file_taken: bool = file <= floor
                        || vault
                            .read(|c| {
                                c.query_row(
                                    "SELECT EXISTS (SELECT 1 FROM peer_inbox \
                                     WHERE connection = ?1 AND seq = ?2)",
                                    rusqlite::params![&connection[..], file as i64],
                                    |r| r.get(0),
                                )
                            })
                            .map_err(db)?;
                    if file_taken {
                        return Ok(Taken::Dropped);
                    }
                    let (waiting, this_one): (i64, bool) = vault
                        .read(|c| {
                            c.query_row(
                                "SELECT count(DISTINCT p.seq), coalesce(sum(p.seq = ?2), 0) > 0 \
                                 FROM attachment_pieces p WHERE p.connection = ?1 \
                                 AND p.outgoing = 0 AND NOT EXISTS (SELECT 1 FROM messages m \
                                 WHERE m.connection = p.connection AND m.outgoing = 0 \
                                 AND m.seq = p.seq AND m.held = 0)",
                                rusqlite::params![&connection[..], file as i64],
                                |r| Ok((r.get(0)?, r.get(1)?)),
                            )
                        })
                        .map_err(db)?;
                    if !this_one && waiting >= WAITING_FILES {
                        return Ok(Taken::NoRoom);
                    }
                    return Ok(Taken::Kept(vec![stmt], None));
                }
                // Whole already, deleted, or not a file: nothing to keep.
                Some(_) => return Ok(Taken::Dropped),
            }
        }
    };
    // Whole now? Counted first: the bytes are read only once the last piece is in.
    let n = info.pieces();
    let (stored, has_new): (i64, bool) = vault
        .read(|c| {
            c.query_row(
                "SELECT count(*), coalesce(sum(idx = ?3), 0) > 0 FROM attachment_pieces \
                 WHERE connection = ?1 AND outgoing = 0 AND seq = ?2 AND idx < ?4",
                rusqlite::params![
                    &connection[..],
                    seq as i64,
                    new_piece.as_ref().map_or(-1, |(i, _)| i64::from(*i)),
                    n
                ],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .map_err(db)?;
    let count = stored as usize + usize::from(new_piece.is_some() && !has_new);
    if count != usize::from(n) {
        return Ok(Taken::Kept(statements, None));
    }
    let mut parts: Vec<(u16, Vec<u8>)> = pieces(vault, connection, false, seq)?
        .into_iter()
        .filter(|(i, _)| *i < n)
        .collect();
    if let Some((index, bytes)) = new_piece
        && !parts.iter().any(|(i, _)| *i == index)
    {
        parts.push((index, bytes));
        parts.sort_by_key(|(i, _)| *i);
    }
    if !whole(&info, &parts) {
        // Not what the sender's vault checked: a peer that breaks the rules keeps nothing.
        statements.push(forget_attachment(connection, false, seq));
        return Ok(Taken::Kept(statements, None));
    }
    statements.push(Statement {
        // Pieces beyond the count (kept before the count was known) go.
        sql: "DELETE FROM attachment_pieces WHERE connection = ?1 AND outgoing = 0 \
              AND seq = ?2 AND idx >= ?3"
            .into(),
        params: vec![
            SqlValue::Blob(connection.to_vec()),
            SqlValue::Int(seq as i64),
            SqlValue::Int(i64::from(n)),
        ],
    });
    statements.push(Statement {
        sql: "UPDATE messages SET complete = 1, delivered_ms = ?3 \
              WHERE connection = ?1 AND outgoing = 0 AND seq = ?2"
            .into(),
        params: vec![
            SqlValue::Blob(connection.to_vec()),
            SqlValue::Int(seq as i64),
            SqlValue::Int(now_ms as i64),
        ],
    });
    Ok(Taken::Kept(statements, Some(seq)))
}

/// What became of part of an attachment.
pub(crate) enum Taken {
    /// Taken: the statements, and the message's number once it is whole.
    Kept(Vec<Statement>, Option<u64>),
    /// Taken (its number is the peer's) and dropped: breaks a rule, or nothing to keep.
    Dropped,
    /// Not taken: no room for a piece whose file has not come (a retry may land).
    NoRoom,
}

/// A part of an attachment from the peer.
pub(crate) enum FilePart {
    /// The message.
    File {
        seq: u64,
        sent_ms: u64,
        info: AttachmentInfo,
        text: Option<String>,
    },
    /// One piece (the peer's message `own_seq`).
    Piece {
        own_seq: u64,
        file: u64,
        index: u16,
        bytes: Vec<u8>,
    },
}
