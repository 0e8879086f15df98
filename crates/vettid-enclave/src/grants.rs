//! The grants domain: a connected peer asks for more of the member's profile than the member
//! shares with it, the member (or the connection's `auto` rule) grants it, counted and
//! expiring, or denies it (`vettid_proto::connections`: `Ask`, `Grant`, `Deny`, `Fetch`,
//! `EndGrant`; `PeerBody::{Ask, Answer, Fetch}`).
//!
//! ```text
//! share_requests  (id, connection, incoming, peer_request, targets, state, asked_ms,
//!                  uses_left, expires_ms, granted_keys, answer_seq)   both ways; `id` is ours
//! received_values (request, key, value, fetched_ms)   what a peer granted this member
//! ```
//!
//! A grant covers the fields it named when it was given (`granted_keys`): later fields of a
//! granted category are not added. Under the `auto` rule only what the member shares openly
//! goes (non-sensitive fields that no override withholds from the connection); a member's
//! own grant may name a sensitive or withheld field by its key.
//!
//! Values travel only inside the connection's encryption (sealed to the asking vault's
//! connection key). The asking vault keeps them while the grant lasts: past its expiry they
//! are no longer shown and are erased at the connection's next message, and when the
//! granting member ends the grant (or the connection ends) they are erased. Answers apply in
//! the granter's order (`answer_seq`): a denial or an end is final, whatever arrives later.
//! What the asking vault does is the asking side's code: the granting member cannot make the
//! asking member forget what it once showed them. A peer's request waits for the member's decision
//! (a feed item and an event) unless the connection's rule is `auto`; at most
//! [`MAX_PENDING_ASKS`] of one peer's wait, later ones are dropped.

use crate::connections::{Row, blob, db, feed_item as feed, int, st};
use crate::vault::{Migration, SqlValue, Statement, Vault};
use vettid_proto::connections::{
    AskAnswer, ConnectionError, ConnectionId, DEFAULT_GRANT_SECS, MAX_ASK_TARGETS, MAX_GRANT_SECS,
    MAX_GRANT_USES, MAX_KEPT_ASKS, MAX_PENDING_ASKS, RequestId, RequestState, RequestView,
    ShareRule,
};
use vettid_proto::enclave::{Outbound, VaultError};
use vettid_proto::peer::PeerBody;
use vettid_proto::profile::ShareTarget;
use vettid_proto::session::EventKind;

const SCHEMA: &str = "
CREATE TABLE share_requests (
    id BLOB PRIMARY KEY, connection BLOB NOT NULL, incoming INTEGER NOT NULL, peer_request BLOB,
    targets BLOB NOT NULL, state TEXT NOT NULL, asked_ms INTEGER NOT NULL, uses_left INTEGER,
    expires_ms INTEGER, granted_keys BLOB, answer_seq INTEGER, auto INTEGER NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX share_requests_by_peer ON share_requests (connection, peer_request);
CREATE INDEX share_requests_by_time ON share_requests (connection, asked_ms);
CREATE TABLE received_values (request BLOB NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    fetched_ms INTEGER NOT NULL, PRIMARY KEY (request, key));";

/// This domain's migrations, append-only (see `domains.rs`).
pub const MIGRATIONS: &[Migration] = &[Migration {
    seq: 12,
    sql: SCHEMA,
}];

/// Encoded bytes of values one answer carries at most (it must fit a bucket).
const VALUE_BYTES: usize = 32 * 1024;

fn tampered(what: &str) -> VaultError {
    VaultError::Tampered(format!("share request: {what}"))
}

fn state(s: RequestState) -> SqlValue {
    SqlValue::Text(s.as_str().into())
}

/// One request as stored.
struct Request {
    id: RequestId,
    connection: ConnectionId,
    incoming: bool,
    peer_request: Option<RequestId>,
    targets: Vec<ShareTarget>,
    state: RequestState,
    asked_ms: u64,
    uses_left: Option<u32>,
    expires_ms: Option<u64>,
    granted_keys: Vec<String>,
    answer_seq: u64,
}

type RawRequest = (
    Vec<u8>,
    Vec<u8>,
    bool,
    Option<Vec<u8>>,
    Vec<u8>,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    (Option<Vec<u8>>, Option<i64>),
);

fn requests(
    vault: &Vault,
    filter: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<Request>, VaultError> {
    let raw: Vec<RawRequest> = vault
        .read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT id, connection, incoming, peer_request, targets, state, asked_ms, \
                 uses_left, expires_ms, granted_keys, answer_seq FROM share_requests {filter} \
                 ORDER BY asked_ms DESC, id LIMIT 200"
            ))?;
            let rows = stmt.query_map(params, |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    (r.get(9)?, r.get(10)?),
                ))
            })?;
            rows.collect()
        })
        .map_err(db)?;
    raw.into_iter()
        .map(|r| {
            Ok(Request {
                id: r.0.try_into().map_err(|_| tampered("id"))?,
                connection: r.1.try_into().map_err(|_| tampered("connection"))?,
                incoming: r.2,
                peer_request: r
                    .3
                    .map(|p| p.try_into().map_err(|_| tampered("peer id")))
                    .transpose()?,
                targets: postcard::from_bytes(&r.4).map_err(|_| tampered("targets"))?,
                state: RequestState::parse(&r.5).ok_or_else(|| tampered("state"))?,
                asked_ms: r.6 as u64,
                uses_left: r.7.map(|u| u as u32),
                expires_ms: r.8.map(|e| e as u64),
                granted_keys: r
                    .9
                    .0
                    .map(|b| postcard::from_bytes(&b).map_err(|_| tampered("keys")))
                    .transpose()?
                    .unwrap_or_default(),
                answer_seq: r.9.1.map_or(0, |s| s as u64),
            })
        })
        .collect()
}

fn one(vault: &Vault, id: &RequestId, incoming: bool) -> Result<Request, VaultError> {
    requests(
        vault,
        "WHERE id = ?1 AND incoming = ?2",
        &[&&id[..], &incoming],
    )?
    .into_iter()
    .next()
    .ok_or_else(|| ConnectionError::UnknownRequest.into())
}

/// Whether `targets` is a request this vault makes or takes: 1–[`MAX_ASK_TARGETS`] distinct
/// fields (keys of 1–128 bytes) or categories.
fn valid_targets(targets: &[ShareTarget]) -> bool {
    let distinct: std::collections::BTreeSet<&ShareTarget> = targets.iter().collect();
    (1..=MAX_ASK_TARGETS).contains(&targets.len())
        && distinct.len() == targets.len()
        && targets.iter().all(|t| match t {
            ShareTarget::Field(k) => (1..=128).contains(&k.len()) && !k.contains(char::is_control),
            ShareTarget::Category(_) => true,
        })
}

/// Values a peer granted: at most 256 fields of reasonable size.
fn valid_values(values: &[(String, String)]) -> bool {
    values.len() <= 256
        && values
            .iter()
            .all(|(k, v)| (1..=128).contains(&k.len()) && v.len() <= 4096)
}

fn event(member: &str, vault: &Vault, now_ms: u64, kind: EventKind) -> Outbound {
    crate::session::seal_event(member, vault.event_key(), now_ms, kind)
}

fn describe(targets: &[ShareTarget]) -> String {
    targets
        .iter()
        .map(|t| match t {
            ShareTarget::Field(k) => k.clone(),
            ShareTarget::Category(c) => format!("every {} field", c.as_str()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The member asks the peer of active connection `row` for `targets`: the statements, the
/// message, the request's id.
pub(crate) fn ask(
    row: &Row,
    targets: Vec<ShareTarget>,
    now_ms: u64,
) -> Result<(RequestId, Vec<Statement>, Outbound), VaultError> {
    if !valid_targets(&targets) {
        return Err(ConnectionError::BadRequest.into());
    }
    let id: RequestId = vettid_crypto::random_array();
    let (count, out, _) = crate::connections::seal(
        row,
        PeerBody::Ask {
            request: id,
            targets: targets.clone(),
        },
        now_ms,
        None,
    )?;
    let mut statements: Vec<Statement> = count.into_iter().collect();
    statements.push(st(
        "INSERT INTO share_requests (id, connection, incoming, targets, state, asked_ms) \
         VALUES (?1, ?2, 0, ?3, ?4, ?5)",
        vec![
            blob(&id),
            blob(&row.id),
            SqlValue::Blob(postcard::to_allocvec(&targets).expect("targets encode")),
            state(RequestState::Pending),
            int(now_ms),
        ],
    ));
    Ok((id, statements, out))
}

/// The statements and the answer granting `request` (an incoming pending one) with `uses` and
/// `secs`: the values go now, as the first use.
fn granted(
    vault: &Vault,
    row: &Row,
    request: &Request,
    (uses, secs, by_member): (u32, u64, bool),
    now_ms: u64,
) -> Result<(Vec<Statement>, Outbound), VaultError> {
    let expires_ms = now_ms.saturating_add(secs * 1000);
    let keys = crate::profile::keys_for(
        vault,
        &request.targets,
        &crate::connections::sharing_name(&row.id),
        by_member,
    )?;
    let values = bounded(crate::profile::values_of(vault, &keys)?);
    let keys: Vec<String> = values.iter().map(|(k, _)| k.clone()).collect();
    let granted = AskAnswer::Granted {
        values,
        uses_left: uses - 1,
        expires_ms,
    };
    let (mut statements, out) = answer(row, request, granted, now_ms)?;
    statements.push(st(
        "UPDATE share_requests SET state = ?2, uses_left = ?3, expires_ms = ?4, \
         granted_keys = ?5, auto = ?6 WHERE id = ?1",
        vec![
            blob(&request.id),
            state(RequestState::Granted),
            int(u64::from(uses - 1)),
            int(expires_ms),
            SqlValue::Blob(postcard::to_allocvec(&keys).expect("keys encode")),
            SqlValue::Int(i64::from(!by_member)),
        ],
    ));
    Ok((statements, out))
}

/// Values up to [`VALUE_BYTES`].
fn bounded(values: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut total = 0;
    values
        .into_iter()
        .take_while(|(k, v)| {
            total += k.len() + v.len() + 8;
            total <= VALUE_BYTES
        })
        .collect()
}

/// The statements and the answer `answer` to the peer's request `request`.
fn answer(
    row: &Row,
    request: &Request,
    answer: AskAnswer,
    now_ms: u64,
) -> Result<(Vec<Statement>, Outbound), VaultError> {
    let peer_request = request.peer_request.ok_or_else(|| tampered("peer id"))?;
    let (count, out, _) = crate::connections::seal(
        row,
        PeerBody::Answer {
            request: peer_request,
            answer,
        },
        now_ms,
        None,
    )?;
    Ok((count.into_iter().collect(), out))
}

/// The statements and the answer ending the peer's request `request` for good: denied
/// (`AskAnswer::Denied`) or ended (any other answer).
fn closed(
    row: &Row,
    request: &Request,
    final_answer: AskAnswer,
    now_ms: u64,
) -> Result<(Vec<Statement>, Outbound), VaultError> {
    let to = if final_answer == AskAnswer::Denied {
        RequestState::Denied
    } else {
        RequestState::Ended
    };
    let (mut statements, out) = answer(row, request, final_answer, now_ms)?;
    statements.push(st(
        "UPDATE share_requests SET state = ?2, \
         uses_left = CASE WHEN ?2 = ?3 THEN 0 ELSE uses_left END WHERE id = ?1",
        vec![blob(&request.id), state(to), state(RequestState::Ended)],
    ));
    Ok((statements, out))
}

/// The member decides on, fetches or ends a request: `Grant`, `Deny`, `Fetch`, `EndGrant`.
/// The statements and the message to the peer.
pub(crate) fn decide(
    vault: &Vault,
    op: Decision,
    now_ms: u64,
) -> Result<(Vec<Statement>, Outbound), VaultError> {
    match op {
        Decision::Grant {
            request,
            uses,
            expires_in_secs,
        } => {
            let uses = uses.unwrap_or(1);
            let secs = expires_in_secs.unwrap_or(DEFAULT_GRANT_SECS);
            if !(1..=MAX_GRANT_USES).contains(&uses) || secs == 0 || secs > MAX_GRANT_SECS {
                return Err(ConnectionError::BadRequest.into());
            }
            let request = one(vault, &request, true)?;
            if request.state != RequestState::Pending {
                return Err(ConnectionError::UnknownRequest.into());
            }
            let row = crate::connections::active_connection(vault, &request.connection)?;
            let (mut statements, out) = granted(vault, &row, &request, (uses, secs, true), now_ms)?;
            statements.extend(feed(
                vault,
                now_ms,
                "connection.granted",
                format!(
                    "granted {} to connection {} ({uses} use(s))",
                    describe(&request.targets),
                    hex::encode(&request.connection[..4])
                ),
            )?);
            Ok((statements, out))
        }
        Decision::Deny(request) => {
            let request = one(vault, &request, true)?;
            if request.state != RequestState::Pending {
                return Err(ConnectionError::UnknownRequest.into());
            }
            let row = crate::connections::active_connection(vault, &request.connection)?;
            closed(&row, &request, AskAnswer::Denied, now_ms)
        }
        Decision::Fetch(request) => {
            let request = one(vault, &request, false)?;
            let live = request.state == RequestState::Granted
                && request.uses_left.is_some_and(|u| u > 0)
                && request.expires_ms.is_some_and(|e| e > now_ms);
            if !live {
                return Err(ConnectionError::GrantEnded.into());
            }
            let row = crate::connections::active_connection(vault, &request.connection)?;
            let (count, out, _) = crate::connections::seal(
                &row,
                PeerBody::Fetch {
                    request: request.id,
                },
                now_ms,
                None,
            )?;
            Ok((count.into_iter().collect(), out))
        }
        Decision::End(request) => {
            let request = one(vault, &request, true)?;
            if request.state != RequestState::Granted {
                return Err(ConnectionError::UnknownRequest.into());
            }
            let row = crate::connections::active_connection(vault, &request.connection)?;
            closed(&row, &request, AskAnswer::Ended, now_ms)
        }
    }
}

/// What the member does with a request.
pub(crate) enum Decision {
    /// Grant a peer's pending request.
    Grant {
        request: RequestId,
        uses: Option<u32>,
        expires_in_secs: Option<u64>,
    },
    /// Deny a peer's pending request.
    Deny(RequestId),
    /// Fetch again what the peer granted.
    Fetch(RequestId),
    /// End a grant this member gave.
    End(RequestId),
}

/// Requests of `connection` (or all), both ways, newest first; received values while their
/// grant lasts.
pub(crate) fn list(
    vault: &Vault,
    connection: Option<&ConnectionId>,
    now_ms: u64,
) -> Result<Vec<RequestView>, VaultError> {
    let all = match connection {
        Some(c) => requests(vault, "WHERE connection = ?1", &[&&c[..]])?,
        None => requests(vault, "", &[])?,
    };
    all.into_iter()
        .map(|r| {
            let lasting = r.expires_ms.is_some_and(|e| e > now_ms);
            let values = if !r.incoming && r.state == RequestState::Granted && lasting {
                received(vault, &r.id)?
            } else {
                Vec::new()
            };
            let would_share = match (r.incoming, r.state) {
                (true, RequestState::Pending) => crate::profile::keys_for(
                    vault,
                    &r.targets,
                    &crate::connections::sharing_name(&r.connection),
                    true,
                )?,
                (true, RequestState::Granted) => r.granted_keys.clone(),
                _ => Vec::new(),
            };
            Ok(RequestView {
                id: r.id,
                connection: r.connection,
                incoming: r.incoming,
                targets: r.targets,
                state: r.state,
                asked_ms: r.asked_ms,
                uses_left: r.uses_left,
                expires_ms: r.expires_ms,
                values,
                would_share,
            })
        })
        .collect()
}

fn received(vault: &Vault, request: &RequestId) -> Result<Vec<(String, String)>, VaultError> {
    vault
        .read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT key, value FROM received_values WHERE request = ?1 ORDER BY key",
            )?;
            let rows = stmt.query_map([&request[..]], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .map_err(db)
}

/// A peer message of this domain on active connection `row`: the statements to write with
/// it and what to send (answers to the peer, events for the member's apps). What breaks the
/// rules changes nothing.
pub(crate) fn receive(
    vault: &Vault,
    member: &str,
    row: &Row,
    (body, seq): (PeerBody, u64),
    now_ms: u64,
) -> Result<(Vec<Statement>, Vec<Outbound>), VaultError> {
    let nothing = Ok((Vec::new(), Vec::new()));
    match body {
        PeerBody::Ask { request, targets } => {
            if !valid_targets(&targets) {
                return nothing;
            }
            let waiting: i64 = vault
                .read(|c| {
                    c.query_row(
                        "SELECT count(*) FROM share_requests WHERE connection = ?1 \
                         AND incoming = 1 AND state = ?2",
                        rusqlite::params![&row.id[..], RequestState::Pending.as_str()],
                        |r| r.get(0),
                    )
                })
                .map_err(db)?;
            let known = !requests(
                vault,
                "WHERE connection = ?1 AND peer_request = ?2",
                &[&&row.id[..], &&request[..]],
            )?
            .is_empty();
            if known || waiting as usize >= MAX_PENDING_ASKS {
                return nothing;
            }
            let (kept, oldest_decided): (i64, Option<Vec<u8>>) = vault
                .read(|c| {
                    c.query_row(
                        "SELECT (SELECT count(*) FROM share_requests WHERE connection = ?1 \
                         AND incoming = 1), (SELECT id FROM share_requests WHERE connection = ?1 \
                         AND incoming = 1 AND (state IN (?2, ?3) OR (state = ?4 AND \
                         (expires_ms <= ?5 OR uses_left = 0))) ORDER BY asked_ms, id LIMIT 1)",
                        rusqlite::params![
                            &row.id[..],
                            RequestState::Denied.as_str(),
                            RequestState::Ended.as_str(),
                            RequestState::Granted.as_str(),
                            i64::try_from(now_ms).unwrap_or(i64::MAX)
                        ],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                })
                .map_err(db)?;
            let mut room = Vec::new();
            if kept as usize >= MAX_KEPT_ASKS {
                // The oldest decided request makes room; none decided: this one is dropped.
                let Some(oldest) = oldest_decided else {
                    return nothing;
                };
                room.push(st(
                    "DELETE FROM share_requests WHERE id = ?1",
                    vec![SqlValue::Blob(oldest)],
                ));
            }
            let incoming = Request {
                id: vettid_crypto::random_array(),
                connection: row.id,
                incoming: true,
                peer_request: Some(request),
                targets,
                state: RequestState::Pending,
                asked_ms: now_ms,
                uses_left: None,
                expires_ms: None,
                granted_keys: Vec::new(),
                answer_seq: 0,
            };
            let mut statements = room;
            statements.push(st(
                "INSERT INTO share_requests (id, connection, incoming, peer_request, targets, \
                 state, asked_ms) VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6)",
                vec![
                    blob(&incoming.id),
                    blob(&row.id),
                    blob(&request),
                    SqlValue::Blob(
                        postcard::to_allocvec(&incoming.targets).expect("targets encode"),
                    ),
                    state(RequestState::Pending),
                    int(now_ms),
                ],
            ));
            let mut out = Vec::new();
            if row.rule() == ShareRule::Auto {
                // No feed item: the requests list shows them (a peer cannot crowd the feed).
                let (grant, answer) = granted(
                    vault,
                    row,
                    &incoming,
                    (1, DEFAULT_GRANT_SECS, false),
                    now_ms,
                )?;
                statements.extend(grant);
                out.push(answer);
            } else {
                statements.extend(feed(
                    vault,
                    now_ms,
                    "connection.request",
                    format!(
                        "connection {} asks for {}: grant or deny request {}",
                        hex::encode(&row.id[..4]),
                        describe(&incoming.targets),
                        hex::encode(incoming.id)
                    ),
                )?);
                out.push(event(
                    member,
                    vault,
                    now_ms,
                    EventKind::Request {
                        connection: row.id,
                        request: incoming.id,
                        incoming: true,
                    },
                ));
            }
            Ok((statements, out))
        }
        PeerBody::Answer { request, answer } => {
            let Ok(mine) = one(vault, &request, false) else {
                return nothing;
            };
            // Only this connection's, and only newer than the last answer applied (the hosts
            // may reorder): a denial or an end is final.
            if mine.connection != row.id || seq <= mine.answer_seq {
                return nothing;
            }
            let mut statements = vec![st(
                "DELETE FROM received_values WHERE request IN (SELECT id FROM share_requests \
                 WHERE incoming = 0 AND expires_ms <= ?1)",
                vec![int(now_ms)],
            )];
            match answer {
                AskAnswer::Granted {
                    values,
                    uses_left,
                    expires_ms,
                } if matches!(mine.state, RequestState::Pending | RequestState::Granted)
                    && valid_values(&values)
                    && uses_left <= MAX_GRANT_USES =>
                {
                    statements.push(st(
                        "DELETE FROM received_values WHERE request = ?1",
                        vec![blob(&mine.id)],
                    ));
                    for (k, v) in values {
                        statements.push(st(
                            "INSERT INTO received_values (request, key, value, fetched_ms) \
                             VALUES (?1, ?2, ?3, ?4)",
                            vec![
                                blob(&mine.id),
                                SqlValue::Text(k),
                                SqlValue::Text(v),
                                int(now_ms),
                            ],
                        ));
                    }
                    statements.push(st(
                        "UPDATE share_requests SET state = ?2, uses_left = ?3, expires_ms = ?4 \
                         WHERE id = ?1",
                        vec![
                            blob(&mine.id),
                            state(RequestState::Granted),
                            int(u64::from(uses_left)),
                            int(expires_ms),
                        ],
                    ));
                }
                AskAnswer::Denied if mine.state == RequestState::Pending => {
                    statements.push(st(
                        "UPDATE share_requests SET state = ?2 WHERE id = ?1",
                        vec![blob(&mine.id), state(RequestState::Denied)],
                    ));
                }
                AskAnswer::Ended
                    if matches!(mine.state, RequestState::Pending | RequestState::Granted) =>
                {
                    statements.push(st(
                        "DELETE FROM received_values WHERE request = ?1",
                        vec![blob(&mine.id)],
                    ));
                    statements.push(st(
                        "UPDATE share_requests SET state = ?2, uses_left = 0 WHERE id = ?1",
                        vec![blob(&mine.id), state(RequestState::Ended)],
                    ));
                }
                _ => return nothing,
            }
            statements.push(st(
                "UPDATE share_requests SET answer_seq = ?2 WHERE id = ?1",
                vec![blob(&mine.id), int(seq)],
            ));
            let note = event(
                member,
                vault,
                now_ms,
                EventKind::Request {
                    connection: row.id,
                    request: mine.id,
                    incoming: false,
                },
            );
            Ok((statements, vec![note]))
        }
        PeerBody::Fetch { request } => {
            let Some(given) = requests(
                vault,
                "WHERE connection = ?1 AND peer_request = ?2 AND incoming = 1",
                &[&&row.id[..], &&request[..]],
            )?
            .into_iter()
            .next() else {
                return nothing;
            };
            let lasting = given.state == RequestState::Granted
                && given.expires_ms.is_some_and(|e| e > now_ms);
            if !lasting {
                if given.state == RequestState::Granted {
                    // Expired: the peer's vault is told, and drops the values.
                    let (statements, out) = closed(row, &given, AskAnswer::Ended, now_ms)?;
                    return Ok((statements, vec![out]));
                }
                return nothing;
            }
            let Some(left) = given.uses_left.and_then(|u| u.checked_sub(1)) else {
                // Used up: the peer's vault knew; it keeps what it has until the expiry.
                return nothing;
            };
            let expires_ms = given.expires_ms.unwrap_or(now_ms);
            // What the grant named, as far as it still may go: a field that became sensitive or
            // was withheld since drops out (for the member's own grants, what it named by key
            // stays).
            let auto: bool = vault
                .read(|c| {
                    c.query_row(
                        "SELECT auto FROM share_requests WHERE id = ?1",
                        [&given.id[..]],
                        |r| r.get(0),
                    )
                })
                .map_err(db)?;
            let allowed = crate::profile::keys_for(
                vault,
                &given.targets,
                &crate::connections::sharing_name(&row.id),
                !auto,
            )?;
            let keys: Vec<String> = given
                .granted_keys
                .iter()
                .filter(|k| allowed.contains(k))
                .cloned()
                .collect();
            let values = bounded(crate::profile::values_of(vault, &keys)?);
            let (mut statements, out) = self::answer(
                row,
                &given,
                AskAnswer::Granted {
                    values,
                    uses_left: left,
                    expires_ms,
                },
                now_ms,
            )?;
            statements.push(st(
                "UPDATE share_requests SET uses_left = ?2 WHERE id = ?1",
                vec![blob(&given.id), int(u64::from(left))],
            ));
            Ok((statements, vec![out]))
        }
        _ => nothing,
    }
}

/// The statement erasing values whose grant expired (if there are any).
pub(crate) fn sweep(vault: &Vault, now_ms: u64) -> Result<Vec<Statement>, VaultError> {
    const EXPIRED: &str = "DELETE FROM received_values WHERE request IN (SELECT id FROM \
        share_requests WHERE incoming = 0 AND expires_ms <= ?1)";
    let any: bool = vault
        .read(|c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM received_values WHERE request IN (SELECT id FROM \
                 share_requests WHERE incoming = 0 AND expires_ms <= ?1))",
                [i64::try_from(now_ms).unwrap_or(i64::MAX)],
                |r| r.get(0),
            )
        })
        .map_err(db)?;
    Ok(if any {
        vec![st(EXPIRED, vec![int(now_ms)])]
    } else {
        Vec::new()
    })
}

/// The statements ending the requests of every connection whose keys were erased, and
/// erasing what their peers granted.
pub(crate) fn forget_ended() -> Vec<Statement> {
    const ENDED: &str = "(SELECT id FROM connections WHERE root IS NULL)";
    vec![
        st(
            &format!(
                "DELETE FROM received_values WHERE request IN \
                 (SELECT id FROM share_requests WHERE connection IN {ENDED})"
            ),
            vec![],
        ),
        st(
            &format!(
                "UPDATE share_requests SET state = ?1, uses_left = 0 WHERE connection IN {ENDED} \
                 AND state IN (?2, ?3)"
            ),
            vec![
                state(RequestState::Ended),
                state(RequestState::Pending),
                state(RequestState::Granted),
            ],
        ),
    ]
}
