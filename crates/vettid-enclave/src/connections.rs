//! The connections domain: invitations, the hybrid handshake between vaults, mutual consent
//! with a commit-then-reveal SAS, and the sealed messages of a connection
//! (`vettid_proto::connections`, `vettid_proto::peer`).
//!
//! ```text
//! invitations (id, kid, label, secret, kem_seed, in_person, created_ms, expires_ms)
//! connections (id, state, inviter, label, invitation_kid, peer_member, peer_identity, peer_profile,
//!              reply_kid, own_reveal, peer_commitment, inviter_reveal, handshake_hash,
//!              root, send_kid, recv_kid, send_seq, sas, sas_required, we_accepted, they_accepted, …)
//!              + peer_static, epoch, next_root, next_recv_kid, rekey_seed, rekey_reply,
//!                identity_changed, shared_digest, share_rule, capabilities,
//!                peer_capabilities                                     (migration 10)
//! previous_keys (connection, epoch, root, recv_kid, until_ms)   the last epochs' receiving keys
//! peer_inbox  (connection, seq)            peer messages above `recv_floor` (every one up to
//!                                          the floor was taken): each is kept once
//! blocked     (connection, identity, static_key, label, peer_member, since_ms)
//! ```
//!
//! **Epochs.** A connection's keys are those of its epoch: the handshake opens epoch 0, and
//! each rotation derives the next epoch's root from the current one and a fresh X-Wing secret
//! (`Rekey` → `Rekeyed` → `EpochOpen`, each signed with the sender's pinned identity key). The
//! answering vault takes messages under the new epoch at once and sends under it once the
//! first one arrives. Each keeps the receiving keys of its last [`MAX_PREVIOUS_EPOCHS`]
//! epochs until [`vettid_proto::connections::PREVIOUS_EPOCH_SECS`] after the peer switched
//! away from them (the opener's clock starts at the peer's first message under the new
//! epoch; a message under the old one before that makes it send `EpochOpen` again), so what
//! the hosts delay by less than that is not lost.
//!
//! A peer message that does not authenticate under a key of this vault — a replay to another
//! vault, a forgery, a message for an ended connection — is dropped without an answer: the
//! host learns nothing from the vault's behaviour but that it took the message.

use crate::manager::UnlockedVault;
use crate::vault::{Migration, SqlValue, Statement, Vault};
use std::collections::HashMap;
use vettid_crypto::SecretBytes;
use vettid_crypto::aead::{AeadKey, OVERHEAD};
use vettid_crypto::kdf::Label;
use vettid_crypto::noise::{self, HandshakeState, KemSecret};
use vettid_proto::connections::{
    BlockView, Capabilities, ConnectionError, ConnectionId, ConnectionOp, ConnectionReply,
    ConnectionState, ConnectionView, DEFAULT_INVITATION_SECS, InvitationView, MAX_BLOCKED,
    MAX_INVITATION_SECS, MAX_LABEL, MAX_PENDING_INVITATIONS, PREVIOUS_EPOCH_SECS, ShareRule,
};
use vettid_proto::enclave::{Destination, Outbound, VaultError, valid_vault_id};
use vettid_proto::peer::{
    self, Hello, Invitation, KID_LEN, PeerBody, PeerMessage, Welcome, padded, unpadded,
};
use vettid_proto::session::EventKind;

/// The domain's tables (a vault migration).
const SCHEMA: &str = "
CREATE TABLE invitations (
    id BLOB PRIMARY KEY, kid BLOB NOT NULL UNIQUE, label TEXT, secret BLOB NOT NULL,
    kem_seed BLOB NOT NULL, in_person INTEGER NOT NULL, created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL);
CREATE TABLE connections (
    id BLOB PRIMARY KEY, state TEXT NOT NULL, inviter INTEGER NOT NULL, label TEXT,
    invitation_kid BLOB, peer_member TEXT, peer_identity BLOB, peer_profile BLOB,
    reply_kid BLOB UNIQUE, own_reveal BLOB, peer_commitment BLOB, inviter_reveal BLOB,
    handshake_hash BLOB, root BLOB, send_kid BLOB, recv_kid BLOB UNIQUE,
    send_seq INTEGER NOT NULL DEFAULT 0, sas TEXT, sas_required INTEGER NOT NULL,
    we_accepted INTEGER NOT NULL DEFAULT 0, they_accepted INTEGER NOT NULL DEFAULT 0,
    hello_digest BLOB, welcome BLOB,
    created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
CREATE TABLE peer_inbox (connection BLOB NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (connection, seq));";

/// Epochs of a connection's keys, the peer's static key, and the block list.
const EPOCHS_AND_BLOCKS: &str = "
ALTER TABLE connections ADD COLUMN peer_static BLOB;
ALTER TABLE connections ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN next_root BLOB;
ALTER TABLE connections ADD COLUMN next_recv_kid BLOB;
ALTER TABLE connections ADD COLUMN rekey_seed BLOB;
ALTER TABLE connections ADD COLUMN rekey_reply BLOB;
ALTER TABLE connections ADD COLUMN identity_changed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN shared_digest BLOB;
ALTER TABLE connections ADD COLUMN share_rule TEXT NOT NULL DEFAULT 'ask';
ALTER TABLE connections ADD COLUMN capabilities BLOB;
ALTER TABLE connections ADD COLUMN peer_capabilities BLOB;
ALTER TABLE connections ADD COLUMN profile_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN recv_floor INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX connections_next_kid ON connections (next_recv_kid);
CREATE TABLE previous_keys (connection BLOB NOT NULL, epoch INTEGER NOT NULL,
    root BLOB NOT NULL, recv_kid BLOB NOT NULL UNIQUE, until_ms INTEGER,
    PRIMARY KEY (connection, epoch));
CREATE TABLE blocked (connection BLOB PRIMARY KEY, identity BLOB, static_key BLOB,
    label TEXT, peer_member TEXT, since_ms INTEGER NOT NULL);
CREATE INDEX blocked_by_identity ON blocked (identity);
CREATE INDEX blocked_by_static ON blocked (static_key);";

/// This domain's migrations, append-only (see `domains.rs`).
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        seq: 8,
        sql: SCHEMA,
    },
    Migration {
        seq: 10,
        sql: EPOCHS_AND_BLOCKS,
    },
];

const INVITATION_KID: Label = Label::new("peer/invitation-kid");
const HANDSHAKE_PSK: Label = Label::new("peer/handshake-psk");
const CONNECTION_ROOT: Label = Label::new("peer/connection-root");
const EPOCH_KEY: Label = Label::new("peer/epoch-key");
const EPOCH_KID: Label = Label::new("peer/epoch-kid");
const EPOCH_ROOT: Label = Label::new("peer/epoch-root");
const MESSAGE_ID: Label = Label::new("peer/message-id");

/// Noise bytes around message 1's payload (`e`, encrypted `s`, the payload's tag).
const HELLO_OVERHEAD: usize = 32 + 32 + 16 + 16;
/// Noise bytes around message 2's payload (`e`, the payload's tag).
const WELCOME_OVERHEAD: usize = 32 + 16;
/// Handshakes an invitee's vault waits on at most (the oldest goes first).
const MAX_HANDSHAKES: usize = 16;
/// How long an invitee's vault waits for the inviter's answer (enclave memory only).
const HANDSHAKE_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Handshakes this vault started as the invitee and waits on, by their reply key id: in
/// enclave memory only (a restart or a lock forgets them; the member accepts again).
#[derive(Default)]
pub struct Handshakes(HashMap<[u8; KID_LEN], Waiting>);

struct Waiting {
    handshake: HandshakeState,
    /// The handshake hash after message 1 (what the inviter signs).
    after_hello: Vec<u8>,
    since: std::time::Instant,
}

impl Handshakes {
    /// How many are waiting.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Forgets every handshake (the vault was locked).
    pub fn clear(&mut self) {
        self.0.clear();
    }

    fn insert(&mut self, kid: [u8; KID_LEN], waiting: Waiting) {
        self.0.retain(|_, w| w.since.elapsed() < HANDSHAKE_TTL);
        if self.0.len() >= MAX_HANDSHAKES
            && let Some(oldest) = self.0.iter().min_by_key(|(_, w)| w.since).map(|(k, _)| *k)
        {
            self.0.remove(&oldest);
        }
        self.0.insert(kid, waiting);
    }
}

pub(crate) fn db(e: rusqlite::Error) -> VaultError {
    VaultError::Internal(format!("database: {e}"))
}

fn tampered(what: &str) -> VaultError {
    VaultError::Tampered(format!("connection record: {what}"))
}

pub(crate) fn st(sql: &str, params: Vec<SqlValue>) -> Statement {
    Statement {
        sql: sql.into(),
        params,
    }
}

pub(crate) fn blob(b: &[u8]) -> SqlValue {
    SqlValue::Blob(b.to_vec())
}

pub(crate) fn int(n: u64) -> SqlValue {
    // The host's clock can be anything: a time past i64 is the largest one.
    SqlValue::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

fn opt_text(s: &Option<String>) -> SqlValue {
    s.clone().map_or(SqlValue::Null, SqlValue::Text)
}

fn state_name(s: ConnectionState) -> SqlValue {
    SqlValue::Text(s.as_str().into())
}

fn parse_state(s: &str) -> Result<ConnectionState, VaultError> {
    ConnectionState::parse(s).ok_or_else(|| tampered("state"))
}

fn array<const N: usize>(v: Option<Vec<u8>>, what: &str) -> Result<Option<[u8; N]>, VaultError> {
    v.map(|b| b.try_into().map_err(|_| tampered(what)))
        .transpose()
}

/// The invitation kid: what the invitee's hello carries, derived from the invitation's secret.
fn invitation_kid(secret: &[u8; 32]) -> [u8; KID_LEN] {
    let k = INVITATION_KID.derive(secret, b"", b"");
    k.expose()[..KID_LEN].try_into().expect("16 of 32 bytes")
}

/// Direction and epoch of a connection's keys: one byte (from the inviter, or to it), then
/// the epoch.
fn direction(from_inviter: bool, epoch: u32) -> [u8; 5] {
    let e = epoch.to_be_bytes();
    [u8::from(from_inviter), e[0], e[1], e[2], e[3]]
}

fn epoch_key(root: &[u8; 32], from_inviter: bool, epoch: u32) -> AeadKey {
    EPOCH_KEY
        .derive(root, b"", &direction(from_inviter, epoch))
        .into()
}

fn epoch_kid(root: &[u8; 32], from_inviter: bool, epoch: u32) -> [u8; KID_LEN] {
    let k = EPOCH_KID.derive(root, b"", &direction(from_inviter, epoch));
    k.expose()[..KID_LEN].try_into().expect("16 of 32 bytes")
}

/// The root of epoch `epoch`: from the previous epoch's root and the rotation's KEM secret.
fn next_root(
    previous: &SecretBytes<32>,
    kem_secret: &SecretBytes<32>,
    epoch: u32,
) -> SecretBytes<32> {
    EPOCH_ROOT.derive(kem_secret.expose(), previous.expose(), &epoch.to_be_bytes())
}

/// Whether `signature` is `identity`'s of `message`.
fn signed_by(identity: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    vettid_crypto::sign::VerifyingKey::from_bytes(identity)
        .and_then(|k| {
            k.verify(
                message,
                &vettid_crypto::sign::Signature::from_slice(signature)?,
            )
        })
        .is_ok()
}

/// The SET clause erasing every key of a connection.
const ERASE_KEYS: &str = "root = NULL, send_kid = NULL, recv_kid = NULL, reply_kid = NULL, \
    handshake_hash = NULL, next_root = NULL, next_recv_kid = NULL, rekey_seed = NULL, \
    rekey_reply = NULL";

/// Forgets the previous epochs' keys of every connection whose keys were erased.
const FORGET_PREVIOUS: &str =
    "DELETE FROM previous_keys WHERE connection IN (SELECT id FROM connections WHERE root IS NULL)";

/// Previous epochs whose receiving keys a connection keeps at most.
pub const MAX_PREVIOUS_EPOCHS: u32 = 4;

/// One connection's row.
#[derive(Clone)]
pub(crate) struct Row {
    pub(crate) id: ConnectionId,
    pub(crate) state: ConnectionState,
    inviter: bool,
    label: Option<String>,
    peer_member: Option<String>,
    peer_identity: Option<[u8; 32]>,
    peer_static: Option<[u8; 32]>,
    peer_profile: Vec<(String, String)>,
    own_reveal: Option<[u8; 32]>,
    peer_commitment: Option<[u8; 32]>,
    inviter_reveal: Option<[u8; 32]>,
    handshake_hash: Option<Vec<u8>>,
    root: Option<SecretBytes<32>>,
    recv_kid: Option<[u8; KID_LEN]>,
    send_seq: u64,
    sas: Option<String>,
    sas_required: bool,
    we_accepted: bool,
    they_accepted: bool,
    created_ms: u64,
    epoch: u32,
    next_root: Option<SecretBytes<32>>,
    next_recv_kid: Option<[u8; KID_LEN]>,
    rekey_seed: Option<SecretBytes<32>>,
    rekey_reply: Option<Vec<u8>>,
    identity_changed: bool,
    shared_digest: Option<Vec<u8>>,
    share_rule: ShareRule,
    capabilities: Capabilities,
    peer_capabilities: Option<Capabilities>,
    profile_seq: u64,
    recv_floor: u64,
}

impl Row {
    /// How the peer's requests for more are answered.
    pub(crate) fn rule(&self) -> ShareRule {
        self.share_rule
    }

    /// Whether the peer said it takes messages on this connection (yes until it says).
    pub(crate) fn peer_takes_messages(&self) -> bool {
        self.peer_capabilities.is_none_or(|c| c.messaging)
    }
}

/// A row as stored, before its values are checked.
struct Raw {
    id: Vec<u8>,
    state: String,
    inviter: bool,
    label: Option<String>,
    peer_member: Option<String>,
    peer_identity: Option<Vec<u8>>,
    peer_static: Option<Vec<u8>>,
    peer_profile: Option<Vec<u8>>,
    own_reveal: Option<Vec<u8>>,
    peer_commitment: Option<Vec<u8>>,
    inviter_reveal: Option<Vec<u8>>,
    handshake_hash: Option<Vec<u8>>,
    root: Option<Vec<u8>>,
    recv_kid: Option<Vec<u8>>,
    send_seq: i64,
    sas: Option<String>,
    sas_required: bool,
    we_accepted: bool,
    they_accepted: bool,
    created_ms: i64,
    epoch: i64,
    next_root: Option<Vec<u8>>,
    next_recv_kid: Option<Vec<u8>>,
    rekey_seed: Option<Vec<u8>>,
    rekey_reply: Option<Vec<u8>>,
    identity_changed: bool,
    shared_digest: Option<Vec<u8>>,
    share_rule: String,
    capabilities: Option<Vec<u8>>,
    peer_capabilities: Option<Vec<u8>>,
    profile_seq: i64,
    recv_floor: i64,
}

impl Raw {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Raw> {
        Ok(Raw {
            id: r.get("id")?,
            state: r.get("state")?,
            inviter: r.get("inviter")?,
            label: r.get("label")?,
            peer_member: r.get("peer_member")?,
            peer_identity: r.get("peer_identity")?,
            peer_static: r.get("peer_static")?,
            peer_profile: r.get("peer_profile")?,
            own_reveal: r.get("own_reveal")?,
            peer_commitment: r.get("peer_commitment")?,
            inviter_reveal: r.get("inviter_reveal")?,
            handshake_hash: r.get("handshake_hash")?,
            root: r.get("root")?,
            recv_kid: r.get("recv_kid")?,
            send_seq: r.get("send_seq")?,
            sas: r.get("sas")?,
            sas_required: r.get("sas_required")?,
            we_accepted: r.get("we_accepted")?,
            they_accepted: r.get("they_accepted")?,
            created_ms: r.get("created_ms")?,
            epoch: r.get("epoch")?,
            next_root: r.get("next_root")?,
            next_recv_kid: r.get("next_recv_kid")?,
            rekey_seed: r.get("rekey_seed")?,
            rekey_reply: r.get("rekey_reply")?,
            identity_changed: r.get("identity_changed")?,
            shared_digest: r.get("shared_digest")?,
            share_rule: r.get("share_rule")?,
            capabilities: r.get("capabilities")?,
            peer_capabilities: r.get("peer_capabilities")?,
            profile_seq: r.get("profile_seq")?,
            recv_floor: r.get("recv_floor")?,
        })
    }

    fn check(self) -> Result<Row, VaultError> {
        let secret = |v: Option<Vec<u8>>, what| {
            Ok::<_, VaultError>(array::<32>(v, what)?.map(SecretBytes::from_array))
        };
        Ok(Row {
            id: self.id.try_into().map_err(|_| tampered("id"))?,
            state: parse_state(&self.state)?,
            inviter: self.inviter,
            label: self.label,
            peer_member: self.peer_member,
            peer_identity: array(self.peer_identity, "identity")?,
            peer_static: array(self.peer_static, "static key")?,
            peer_profile: self
                .peer_profile
                .map(|b| postcard::from_bytes(&b).map_err(|_| tampered("profile")))
                .transpose()?
                .unwrap_or_default(),
            own_reveal: array(self.own_reveal, "reveal")?,
            peer_commitment: array(self.peer_commitment, "commitment")?,
            inviter_reveal: array(self.inviter_reveal, "reveal")?,
            handshake_hash: self.handshake_hash,
            root: secret(self.root, "root")?,
            recv_kid: array(self.recv_kid, "kid")?,
            send_seq: self.send_seq as u64,
            sas: self.sas,
            sas_required: self.sas_required,
            we_accepted: self.we_accepted,
            they_accepted: self.they_accepted,
            created_ms: self.created_ms as u64,
            epoch: u32::try_from(self.epoch).map_err(|_| tampered("epoch"))?,
            next_root: secret(self.next_root, "root")?,
            next_recv_kid: array(self.next_recv_kid, "kid")?,
            rekey_seed: secret(self.rekey_seed, "rekey seed")?,
            rekey_reply: self.rekey_reply,
            identity_changed: self.identity_changed,
            shared_digest: self.shared_digest,
            share_rule: ShareRule::parse(&self.share_rule).ok_or_else(|| tampered("rule"))?,
            capabilities: self
                .capabilities
                .map(|b| postcard::from_bytes(&b).map_err(|_| tampered("capabilities")))
                .transpose()?
                .unwrap_or_default(),
            peer_capabilities: self
                .peer_capabilities
                .map(|b| postcard::from_bytes(&b).map_err(|_| tampered("capabilities")))
                .transpose()?,
            profile_seq: self.profile_seq as u64,
            recv_floor: self.recv_floor as u64,
        })
    }
}

fn rows(vault: &Vault, filter: &str, param: &[u8]) -> Result<Vec<Row>, VaultError> {
    let raw: Vec<Raw> = vault
        .read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT * FROM connections {filter} ORDER BY created_ms DESC, id"
            ))?;
            let params: &[&dyn rusqlite::ToSql] = if filter.is_empty() { &[] } else { &[&param] };
            let rows = stmt.query_map(params, Raw::read)?;
            rows.collect()
        })
        .map_err(db)?;
    raw.into_iter().map(Raw::check).collect()
}

fn one(vault: &Vault, filter: &str, param: &[u8]) -> Result<Option<Row>, VaultError> {
    Ok(rows(vault, filter, param)?.into_iter().next())
}

/// Connection `id`, or `Unknown`.
pub(crate) fn get(vault: &Vault, id: &ConnectionId) -> Result<Row, VaultError> {
    one(vault, "WHERE id = ?1", id)?.ok_or_else(|| ConnectionError::Unknown.into())
}

fn view(r: Row) -> ConnectionView {
    ConnectionView {
        id: r.id,
        state: r.state,
        inviter: r.inviter,
        label: r.label,
        peer_identity: r.peer_identity,
        peer_member: r.peer_member,
        peer_profile: r.peer_profile,
        sas: r.sas,
        sas_required: r.sas_required,
        we_accepted: r.we_accepted,
        they_accepted: r.they_accepted,
        created_ms: r.created_ms,
        epoch: r.epoch,
        rotating: r.rekey_seed.is_some() || r.next_root.is_some(),
        identity_changed: r.identity_changed,
        rule: r.share_rule,
        capabilities: r.capabilities,
        peer_capabilities: r.peer_capabilities,
    }
}

/// The connection id as the profile's sharing settings name it (lowercase hex).
pub(crate) fn sharing_name(id: &ConnectionId) -> String {
    hex::encode(id)
}

/// Seals `body` as `row`'s next message to its peer: the statement that counts it, the
/// outbound message, and its sequence number. `seq` given: that one again (a retried send).
pub(crate) fn seal(
    row: &Row,
    body: PeerBody,
    now_ms: u64,
    seq: Option<u64>,
) -> Result<(Option<Statement>, Outbound, u64), VaultError> {
    let root = row
        .root
        .as_ref()
        .ok_or(ConnectionError::WrongState(row.state))?;
    let peer_member = row.peer_member.clone().ok_or_else(|| tampered("route"))?;
    let (seq, count) = match seq {
        Some(s) => (s, None),
        None => {
            let s = row.send_seq + 1;
            let count = st(
                "UPDATE connections SET send_seq = ?2 WHERE id = ?1",
                vec![blob(&row.id), int(s)],
            );
            (s, Some(count))
        }
    };
    let message = PeerMessage {
        seq,
        sent_ms: now_ms,
        body,
    };
    let encoded_len = postcard::to_allocvec(&message).map_or(usize::MAX, |b| b.len());
    let total = peer::bucket(KID_LEN + OVERHEAD + encoded_len)
        .ok_or(vettid_proto::messages::MessageError::BadText)?;
    let plain = zeroize::Zeroizing::new(
        padded(&message, total - KID_LEN - OVERHEAD).ok_or_else(|| tampered("padding"))?,
    );
    let kid = epoch_kid(root.expose(), row.inviter, row.epoch);
    let sealed = epoch_key(root.expose(), row.inviter, row.epoch).seal(&kid, &plain);
    let id = MESSAGE_ID.derive(root.expose(), b"", &[&kid[..], &seq.to_be_bytes()].concat());
    Ok((
        count,
        Outbound {
            to: Destination::Peer {
                member: peer_member,
            },
            id: hex::encode(&id.expose()[..16]),
            body: [&kid[..], &sealed].concat(),
        },
        seq,
    ))
}

/// The connection `id` if it is active (for the grants domain: a connection error otherwise).
pub(crate) fn active_connection(vault: &Vault, id: &ConnectionId) -> Result<Row, VaultError> {
    let row = get(vault, id)?;
    if row.state != ConnectionState::Active {
        return Err(ConnectionError::WrongState(row.state).into());
    }
    Ok(row)
}

/// The connection `id` if it is active (messages flow only then).
pub(crate) fn active(vault: &Vault, id: &ConnectionId) -> Result<Row, VaultError> {
    let row =
        one(vault, "WHERE id = ?1", id)?.ok_or(vettid_proto::messages::MessageError::Unknown)?;
    if row.state != ConnectionState::Active {
        return Err(vettid_proto::messages::MessageError::NotActive.into());
    }
    Ok(row)
}

fn event(member: &str, vault: &Vault, now_ms: u64, kind: EventKind) -> Outbound {
    crate::session::seal_event(member, vault.event_key(), now_ms, kind)
}

fn set_state(id: &ConnectionId, state: ConnectionState, now_ms: u64) -> Statement {
    st(
        "UPDATE connections SET state = ?2, updated_ms = ?3 WHERE id = ?1",
        vec![blob(id), state_name(state), int(now_ms)],
    )
}

/// Erases a connection's keys (rejected, revoked or blocked): later messages find no key.
fn erase_keys(id: &ConnectionId) -> Vec<Statement> {
    let mut statements = vec![
        st(
            &format!("UPDATE connections SET {ERASE_KEYS} WHERE id = ?1"),
            vec![blob(id)],
        ),
        st(FORGET_PREVIOUS, vec![]),
    ];
    statements.extend(crate::grants::forget_ended());
    statements
}

/// The statements adding a feed item of `kind` saying `text` (for the member and the audit
/// log), to go in the same write as the change it records.
pub(crate) fn feed_item(
    vault: &Vault,
    now_ms: u64,
    kind: &str,
    text: String,
) -> Result<Vec<Statement>, VaultError> {
    crate::feed::append(
        vault,
        &[crate::feed::event(
            now_ms,
            vettid_proto::feed::Audience::Feed,
            kind,
            vettid_proto::feed::Retention::Standard,
            text,
        )],
    )
}

fn pending_invitations(vault: &Vault, now_ms: u64) -> Result<Vec<InvitationView>, VaultError> {
    type Raw = (Vec<u8>, Option<String>, i64, i64);
    let raw: Vec<Raw> = vault
        .read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, label, expires_ms, in_person FROM invitations WHERE expires_ms > ?1 \
                 ORDER BY created_ms",
            )?;
            let rows = stmt.query_map([now_ms as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
            rows.collect()
        })
        .map_err(db)?;
    raw.into_iter()
        .map(|(id, label, expires_ms, in_person)| {
            Ok(InvitationView {
                id: id.try_into().map_err(|_| tampered("invitation id"))?,
                label,
                expires_ms: expires_ms as u64,
                in_person: in_person != 0,
            })
        })
        .collect()
}

/// Runs one connection operation; the messages to send the peers.
pub fn handle(
    unlocked: &mut UnlockedVault<'_>,
    op: ConnectionOp,
) -> Result<(ConnectionReply, Vec<Outbound>), VaultError> {
    let (vault, objects, now_ms, handshakes) = unlocked.with_handshakes();
    let member = objects.vault().to_owned();
    match op {
        ConnectionOp::Invite {
            label,
            expires_in_secs,
            in_person,
        } => {
            let (id, invitation, statements) = invite(
                vault,
                &member,
                label,
                expires_in_secs,
                in_person,
                now_ms,
                None,
            )?;
            vault.write(objects, statements)?;
            Ok((ConnectionReply::Invited { id, invitation }, vec![]))
        }
        ConnectionOp::Resend {
            id,
            expires_in_secs,
        } => {
            use rusqlite::OptionalExtension;
            let found: Option<(Option<String>, bool)> = vault
                .read(|c| {
                    c.query_row(
                        "SELECT label, in_person FROM invitations WHERE id = ?1",
                        [&id[..]],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                })
                .map_err(db)?;
            let (label, in_person) = found.ok_or(ConnectionError::Unknown)?;
            let (new, invitation, statements) = invite(
                vault,
                &member,
                label,
                expires_in_secs,
                in_person,
                now_ms,
                Some(&id),
            )?;
            vault.write(objects, statements)?;
            Ok((
                ConnectionReply::Invited {
                    id: new,
                    invitation,
                },
                vec![],
            ))
        }
        ConnectionOp::Invitations => Ok((
            ConnectionReply::Invitations(pending_invitations(vault, now_ms)?),
            vec![],
        )),
        ConnectionOp::Cancel(id) => {
            let found: i64 = vault
                .read(|c| {
                    c.query_row(
                        "SELECT count(*) FROM invitations WHERE id = ?1 AND expires_ms > ?2",
                        rusqlite::params![&id[..], now_ms as i64],
                        |r| r.get(0),
                    )
                })
                .map_err(db)?;
            if found == 0 {
                return Err(ConnectionError::Unknown.into());
            }
            vault.write(
                objects,
                vec![st("DELETE FROM invitations WHERE id = ?1", vec![blob(&id)])],
            )?;
            Ok((ConnectionReply::Done, vec![]))
        }
        ConnectionOp::Accept(invitation) => {
            let out = accept(vault, objects, handshakes, &member, invitation, now_ms)?;
            Ok((ConnectionReply::Requested(out.0), vec![out.1]))
        }
        ConnectionOp::List => Ok((
            ConnectionReply::Connections(rows(vault, "", &[])?.into_iter().map(view).collect()),
            vec![],
        )),
        ConnectionOp::Show(id) => Ok((
            ConnectionReply::Connection(Box::new(view(get(vault, &id)?))),
            vec![],
        )),
        ConnectionOp::Approve { id, sas } => {
            let row = get(vault, &id)?;
            if row.state != ConnectionState::PendingReview {
                return Err(ConnectionError::WrongState(row.state).into());
            }
            match (&sas, &row.sas) {
                (Some(given), Some(ours))
                    if vettid_crypto::ct_eq(given.as_bytes(), ours.as_bytes()) => {}
                (Some(_), _) => return Err(ConnectionError::SasMismatch.into()),
                (None, _) if row.sas_required => return Err(ConnectionError::SasRequired.into()),
                (None, _) => {}
            }
            let next = if row.they_accepted {
                ConnectionState::Active
            } else {
                ConnectionState::Accepted
            };
            let (count, out, _) = seal(&row, PeerBody::Decision(true), now_ms, None)?;
            let mut statements: Vec<Statement> = count.into_iter().collect();
            statements.push(set_state(&id, next, now_ms));
            statements.push(st(
                "UPDATE connections SET we_accepted = 1 WHERE id = ?1",
                vec![blob(&id)],
            ));
            statements.extend(feed_item(
                vault,
                now_ms,
                "connection.approved",
                format!("connection {} approved", hex::encode(&id[..4])),
            )?);
            vault.write(objects, statements)?;
            Ok((ConnectionReply::Done, vec![out]))
        }
        ConnectionOp::Reject(id) | ConnectionOp::Revoke(id) => {
            let revoke = matches!(op, ConnectionOp::Revoke(_));
            let row = get(vault, &id)?;
            let allowed = if revoke {
                live(row.state)
            } else {
                matches!(
                    row.state,
                    ConnectionState::PendingReview | ConnectionState::Accepted
                )
            };
            if !allowed {
                return Err(ConnectionError::WrongState(row.state).into());
            }
            let (state, kind) = if revoke {
                (ConnectionState::Revoked, "connection.revoked")
            } else {
                (ConnectionState::Rejected, "connection.rejected")
            };
            let (mut statements, told) = end(&row, revoke, now_ms)?;
            statements.extend(feed_item(
                vault,
                now_ms,
                kind,
                format!("connection {} {}", hex::encode(&id[..4]), state.as_str()),
            )?);
            vault.write(objects, statements)?;
            Ok((ConnectionReply::Done, told.into_iter().collect()))
        }
        ConnectionOp::RevokeAll => {
            let mut statements = vec![st("DELETE FROM invitations", vec![])];
            let mut told = Vec::new();
            let mut ended = 0u32;
            for row in rows(vault, "", &[])?.into_iter().filter(|r| live(r.state)) {
                let (ends, tell) = end(&row, true, now_ms)?;
                statements.extend(ends);
                told.extend(tell);
                ended += 1;
            }
            statements.extend(feed_item(
                vault,
                now_ms,
                "connection.revoked-all",
                format!("every connection revoked ({ended}) and every invitation cancelled"),
            )?);
            vault.write(objects, statements)?;
            handshakes.clear();
            Ok((ConnectionReply::RevokedAll(ended), told))
        }
        ConnectionOp::Block(id) => {
            let row = get(vault, &id)?;
            // Only keys the handshake authenticated name whom to block: the inviter's vault
            // proved its keys once its welcome verified (the invitee's record has a code
            // then), the invitee's static key with its hello and its identity with its
            // confirmation. A request still waiting names keys anyone could have written
            // into an invitation: revoke it instead.
            let authenticated = row.inviter || row.sas.is_some();
            if row.state == ConnectionState::Blocked || !authenticated {
                return Err(ConnectionError::WrongState(row.state).into());
            }
            let count: i64 = vault
                .read(|c| c.query_row("SELECT count(*) FROM blocked", [], |r| r.get(0)))
                .map_err(db)?;
            if count as usize >= MAX_BLOCKED {
                return Err(ConnectionError::TooManyBlocked.into());
            }
            let key = |k: &Option<[u8; 32]>| k.map_or(SqlValue::Null, |k| blob(&k));
            let mut statements = vec![
                st(
                    "INSERT INTO blocked (connection, identity, static_key, label, peer_member, \
                     since_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    vec![
                        blob(&id),
                        key(&row.peer_identity),
                        key(&row.peer_static),
                        opt_text(&row.label),
                        opt_text(&row.peer_member),
                        int(now_ms),
                    ],
                ),
                // Every connection with the peer's vault ends, without a word to it.
                st(
                    &format!(
                        "UPDATE connections SET state = ?4, updated_ms = ?5, {ERASE_KEYS} \
                         WHERE id = ?1 OR peer_identity = ?2 OR peer_static = ?3"
                    ),
                    vec![
                        blob(&id),
                        key(&row.peer_identity),
                        key(&row.peer_static),
                        state_name(ConnectionState::Blocked),
                        int(now_ms),
                    ],
                ),
                st(FORGET_PREVIOUS, vec![]),
            ];
            statements.extend(crate::grants::forget_ended());
            statements.extend(feed_item(
                vault,
                now_ms,
                "connection.blocked",
                format!("connection {} blocked", hex::encode(&id[..4])),
            )?);
            vault.write(objects, statements)?;
            Ok((ConnectionReply::Done, vec![]))
        }
        ConnectionOp::Unblock(id) => {
            use rusqlite::OptionalExtension;
            type Keys = (Option<Vec<u8>>, Option<Vec<u8>>);
            let keys: Option<Keys> = vault
                .read(|c| {
                    c.query_row(
                        "SELECT identity, static_key FROM blocked WHERE connection = ?1",
                        [&id[..]],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                })
                .map_err(db)?;
            let Some((identity, static_key)) = keys else {
                return Err(ConnectionError::Unknown.into());
            };
            let key = |k: Option<Vec<u8>>| k.map_or(SqlValue::Null, SqlValue::Blob);
            let mut statements = vec![
                st("DELETE FROM blocked WHERE connection = ?1", vec![blob(&id)]),
                // The blocked connections stay ended: connecting again takes a new invitation.
                st(
                    "UPDATE connections SET state = ?4, updated_ms = ?5 WHERE state = ?6 AND \
                     (id = ?1 OR peer_identity = ?2 OR peer_static = ?3)",
                    vec![
                        blob(&id),
                        key(identity),
                        key(static_key),
                        state_name(ConnectionState::Revoked),
                        int(now_ms),
                        state_name(ConnectionState::Blocked),
                    ],
                ),
            ];
            statements.extend(feed_item(
                vault,
                now_ms,
                "connection.unblocked",
                format!("connection {} unblocked", hex::encode(&id[..4])),
            )?);
            vault.write(objects, statements)?;
            Ok((ConnectionReply::Done, vec![]))
        }
        ConnectionOp::Blocked => Ok((ConnectionReply::Blocked(blocked(vault)?), vec![])),
        ConnectionOp::SetRule { id, rule } => {
            get(vault, &id)?;
            vault.write(
                objects,
                vec![st(
                    "UPDATE connections SET share_rule = ?2 WHERE id = ?1",
                    vec![blob(&id), SqlValue::Text(rule.as_str().into())],
                )],
            )?;
            Ok((ConnectionReply::Done, vec![]))
        }
        ConnectionOp::Allow { id, capabilities } => {
            get(vault, &id)?;
            vault.write(
                objects,
                vec![st(
                    "UPDATE connections SET capabilities = ?2 WHERE id = ?1",
                    vec![
                        blob(&id),
                        SqlValue::Blob(postcard::to_allocvec(&capabilities).expect("encodes")),
                    ],
                )],
            )?;
            // The peer's vault is told with the profile (where keys allow).
            let (statements, out) = profile_pushes(vault, now_ms)?;
            if !statements.is_empty() {
                vault.write(objects, statements)?;
            }
            Ok((ConnectionReply::Done, out))
        }
        ConnectionOp::Ask { id, targets } => {
            let row = active_connection(vault, &id)?;
            let (request, statements, out) = crate::grants::ask(&row, targets, now_ms)?;
            vault.write(objects, statements)?;
            Ok((ConnectionReply::Asked(request), vec![out]))
        }
        ConnectionOp::Requests(connection) => Ok((
            ConnectionReply::Requests(crate::grants::list(vault, connection.as_ref(), now_ms)?),
            vec![],
        )),
        ConnectionOp::Grant {
            request,
            uses,
            expires_in_secs,
        } => decided(
            vault,
            objects,
            crate::grants::Decision::Grant {
                request,
                uses,
                expires_in_secs,
            },
            now_ms,
        ),
        ConnectionOp::Deny(request) => decided(
            vault,
            objects,
            crate::grants::Decision::Deny(request),
            now_ms,
        ),
        ConnectionOp::Fetch(request) => decided(
            vault,
            objects,
            crate::grants::Decision::Fetch(request),
            now_ms,
        ),
        ConnectionOp::EndGrant(request) => decided(
            vault,
            objects,
            crate::grants::Decision::End(request),
            now_ms,
        ),
        ConnectionOp::Rotate(id) => {
            let row = get(vault, &id)?;
            if row.state != ConnectionState::Active {
                return Err(ConnectionError::WrongState(row.state).into());
            }
            if row.next_root.is_some() {
                // The peer's rotation is under way: it opens the next epoch.
                return Ok((ConnectionReply::Done, vec![]));
            }
            // A rotation still waiting for its answer is asked again, with the same key.
            let seed = row.rekey_seed.clone().unwrap_or_else(SecretBytes::random);
            let (count, out, _) = seal(&row, rekey(vault, &row, &seed)?, now_ms, None)?;
            let mut statements: Vec<Statement> = count.into_iter().collect();
            statements.push(st(
                "UPDATE connections SET rekey_seed = ?2 WHERE id = ?1",
                vec![blob(&id), blob(seed.expose())],
            ));
            vault.write(objects, statements)?;
            Ok((ConnectionReply::Done, vec![out]))
        }
    }
}

fn decided(
    vault: &mut Vault,
    objects: &crate::objects::Objects<'_>,
    decision: crate::grants::Decision,
    now_ms: u64,
) -> Result<(ConnectionReply, Vec<Outbound>), VaultError> {
    let (statements, out) = crate::grants::decide(vault, decision, now_ms)?;
    vault.write(objects, statements)?;
    Ok((ConnectionReply::Done, vec![out]))
}

/// A new invitation (replacing `replaced`, which is cancelled): its id, the invitation, and
/// the statements that record it.
fn invite(
    vault: &Vault,
    member: &str,
    label: Option<String>,
    expires_in_secs: Option<u64>,
    in_person: bool,
    now_ms: u64,
    replaced: Option<&[u8; 16]>,
) -> Result<([u8; 16], Invitation, Vec<Statement>), VaultError> {
    let secs = expires_in_secs.unwrap_or(DEFAULT_INVITATION_SECS);
    let label_ok = label
        .as_ref()
        .is_none_or(|l| (1..=MAX_LABEL).contains(&l.len()) && !l.chars().any(char::is_control));
    if !label_ok || secs == 0 || secs > MAX_INVITATION_SECS {
        return Err(ConnectionError::BadInvitationSettings.into());
    }
    let pending = pending_invitations(vault, now_ms)?;
    let replacing = replaced.is_some_and(|r| pending.iter().any(|p| p.id == *r));
    if pending.len() - usize::from(replacing) >= MAX_PENDING_INVITATIONS {
        return Err(ConnectionError::TooManyInvitations.into());
    }
    let id: [u8; 16] = vettid_crypto::random_array();
    let secret = zeroize::Zeroizing::new(vettid_crypto::random_array::<32>());
    let kem_seed = SecretBytes::<32>::random();
    let kem = KemSecret::from_seed(&kem_seed);
    let expires_ms = now_ms.saturating_add(secs * 1000);
    let kid = invitation_kid(&secret);
    let invitation = Invitation {
        version: 1,
        route: member.to_owned(),
        identity: vault.identity_public_key(),
        static_key: noise::public_key(vault.exchange_secret()),
        kem_key: kem.public_key(),
        secret: secret.clone(),
        expires_ms,
        in_person,
    };
    let mut statements = vec![
        // Ended invitations go as new ones come.
        st(
            "DELETE FROM invitations WHERE expires_ms <= ?1",
            vec![int(now_ms)],
        ),
    ];
    if let Some(old) = replaced {
        statements.push(st("DELETE FROM invitations WHERE id = ?1", vec![blob(old)]));
    }
    statements.push(st(
        "INSERT INTO invitations (id, kid, label, secret, kem_seed, in_person, created_ms, \
         expires_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        vec![
            blob(&id),
            blob(&kid),
            opt_text(&label),
            blob(&secret[..]),
            blob(kem_seed.expose()),
            SqlValue::Int(i64::from(in_person)),
            int(now_ms),
            int(expires_ms),
        ],
    ));
    Ok((id, invitation, statements))
}

/// Whether a connection in `state` has not ended.
fn live(state: ConnectionState) -> bool {
    matches!(
        state,
        ConnectionState::Active
            | ConnectionState::Accepted
            | ConnectionState::PendingReview
            | ConnectionState::Confirming
            | ConnectionState::Requested
    )
}

/// Ends `row` (revoked, or rejected): the statements, and the peer's notice when there are
/// keys to tell it with.
fn end(
    row: &Row,
    revoke: bool,
    now_ms: u64,
) -> Result<(Vec<Statement>, Option<Outbound>), VaultError> {
    let (state, body) = if revoke {
        (ConnectionState::Revoked, PeerBody::Revoked)
    } else {
        (ConnectionState::Rejected, PeerBody::Decision(false))
    };
    let told = row
        .root
        .is_some()
        .then(|| seal(row, body, now_ms, None))
        .transpose()?;
    Ok((
        [vec![set_state(&row.id, state, now_ms)], erase_keys(&row.id)].concat(),
        told.map(|(_, out, _)| out),
    ))
}

/// Blocked members, newest first.
fn blocked(vault: &Vault) -> Result<Vec<BlockView>, VaultError> {
    type Raw = (Vec<u8>, Option<String>, Option<String>, i64);
    let raw: Vec<Raw> = vault
        .read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT connection, label, peer_member, since_ms FROM blocked \
                 ORDER BY since_ms DESC, connection",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            rows.collect()
        })
        .map_err(db)?;
    raw.into_iter()
        .map(|(connection, label, peer_member, since_ms)| {
            Ok(BlockView {
                connection: connection.try_into().map_err(|_| tampered("blocked"))?,
                label,
                peer_member,
                since_ms: since_ms as u64,
            })
        })
        .collect()
}

/// The invitee's side: checks the invitation, starts the handshake, records the request.
fn accept(
    vault: &mut Vault,
    objects: &crate::objects::Objects<'_>,
    handshakes: &mut Handshakes,
    member: &str,
    invitation: Invitation,
    now_ms: u64,
) -> Result<(ConnectionId, Outbound), VaultError> {
    if invitation.version != 1
        || !valid_vault_id(&invitation.route)
        || invitation.kem_key.len() != noise::KEM_PUBLIC_LEN
    {
        return Err(ConnectionError::BadInvitation.into());
    }
    if invitation.expires_ms <= now_ms {
        return Err(ConnectionError::Expired.into());
    }
    if invitation.route == member || invitation.identity == vault.identity_public_key() {
        return Err(ConnectionError::OwnInvitation.into());
    }
    if is_blocked(
        vault,
        Some(&invitation.identity),
        Some(&invitation.static_key),
    )? {
        return Err(ConnectionError::Blocked.into());
    }
    let waiting: i64 = vault
        .read(|c| {
            c.query_row(
                "SELECT count(*) FROM connections WHERE state = ?1",
                [ConnectionState::Requested.as_str()],
                |r| r.get(0),
            )
        })
        .map_err(db)?;
    if waiting as usize >= MAX_PENDING_INVITATIONS {
        return Err(ConnectionError::TooManyRequests.into());
    }
    let kid = invitation_kid(&invitation.secret);
    let (kem_ciphertext, kem_secret) =
        noise::encapsulate(&invitation.kem_key).ok_or(ConnectionError::BadInvitation)?;
    let psk = HANDSHAKE_PSK.derive(kem_secret.expose(), &invitation.secret[..], b"");
    let mut handshake = noise::peer_initiator(
        &peer::prologue(&kid),
        vault.exchange_secret(),
        &invitation.static_key,
        &psk,
    )
    .map_err(|_| ConnectionError::BadInvitation)?;
    let id: ConnectionId = vettid_crypto::random_array();
    let reply_kid: [u8; KID_LEN] = vettid_crypto::random_array();
    let reveal: [u8; 32] = vettid_crypto::random_array();
    let hello = Hello {
        kem_ciphertext,
        reply_route: member.to_owned(),
        reply_kid,
        commitment: peer::sas_commitment(&reveal),
    };
    let payload_len = peer::bucket(KID_LEN + HELLO_OVERHEAD + 1400).expect("a bucket holds it")
        - KID_LEN
        - HELLO_OVERHEAD;
    let payload = padded(&hello, payload_len).ok_or_else(|| tampered("hello"))?;
    let mut msg = vec![0u8; payload_len + HELLO_OVERHEAD];
    let n = handshake
        .write_message(&payload, &mut msg)
        .map_err(|_| VaultError::Internal("handshake".into()))?;
    msg.truncate(n);
    let after_hello = handshake.get_handshake_hash().to_vec();
    let statements = vec![st(
        "INSERT INTO connections (id, state, inviter, invitation_kid, peer_member, peer_identity, \
         reply_kid, own_reveal, sas_required, created_ms, updated_ms, peer_static) \
         VALUES (?1, ?2, 0, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10)",
        vec![
            blob(&id),
            state_name(ConnectionState::Requested),
            blob(&kid),
            SqlValue::Text(invitation.route.clone()),
            blob(&invitation.identity),
            blob(&reply_kid),
            blob(&reveal),
            SqlValue::Int(i64::from(!invitation.in_person)),
            int(now_ms),
            blob(&invitation.static_key),
        ],
    )];
    vault.write(objects, statements)?;
    handshakes.insert(
        reply_kid,
        Waiting {
            handshake,
            after_hello,
            since: std::time::Instant::now(),
        },
    );
    let out = Outbound {
        to: Destination::Peer {
            member: invitation.route,
        },
        id: hex::encode(vettid_crypto::random_array::<16>()),
        body: [&kid[..], &msg].concat(),
    };
    Ok((id, out))
}

/// One message from another vault ([`vettid_proto::enclave::ToEnclave::Peer`]): what to send
/// in return (answers, receipts, events for the member's apps). A message that does not
/// authenticate, or does not fit the connection's state, is dropped: `Ok` with nothing to send.
pub fn receive(unlocked: &mut UnlockedVault<'_>, wire: &[u8]) -> Result<Vec<Outbound>, VaultError> {
    let (vault, objects, now_ms, handshakes) = unlocked.with_handshakes();
    let member = objects.vault().to_owned();
    let Some((kid, sealed)) = peer::split(wire) else {
        return Ok(vec![]);
    };
    if let Some(row) = one(
        vault,
        "WHERE root IS NOT NULL AND (recv_kid = ?1 OR next_recv_kid = ?1 OR id = \
         (SELECT connection FROM previous_keys WHERE recv_kid = ?1))",
        &kid,
    )? {
        return connection_message(vault, objects, &member, row, &kid, sealed, now_ms);
    }
    if let Some(waiting) = handshakes.0.get_mut(&kid) {
        // Kept until a message 2 decrypts under it (a forgery cannot: it takes the inviter's
        // static key); one that does is the inviter's, whatever becomes of it.
        let (read, out) = welcome(vault, objects, &member, &kid, waiting, sealed, now_ms);
        if read {
            handshakes.0.remove(&kid);
        }
        return out;
    }
    hello(vault, objects, &kid, sealed, now_ms)
}

/// The inviter's side of message 1: answer with message 2, record the connection as confirming.
fn hello(
    vault: &mut Vault,
    objects: &crate::objects::Objects<'_>,
    kid: &[u8; KID_LEN],
    msg: &[u8],
    now_ms: u64,
) -> Result<Vec<Outbound>, VaultError> {
    type Inv = (Option<String>, Vec<u8>, Vec<u8>, i64, i64);
    let found: Option<Inv> = {
        use rusqlite::OptionalExtension;
        vault
            .read(|c| {
                c.query_row(
                    "SELECT label, secret, kem_seed, in_person, expires_ms FROM invitations \
                     WHERE kid = ?1",
                    [&kid[..]],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()
            })
            .map_err(db)?
    };
    let digest = hello_digest(kid, msg);
    let Some((label, secret, kem_seed, in_person, expires_ms)) = found else {
        // The invitation is used up by its first hello: the same hello again (a redelivery)
        // gets the same welcome again; any other gets nothing.
        return Ok(repeated_welcome(vault, &digest)?.into_iter().collect());
    };
    if expires_ms as u64 <= now_ms {
        return Ok(vec![]);
    }
    let secret: [u8; 32] = secret.try_into().map_err(|_| tampered("secret"))?;
    let kem_seed: [u8; 32] = kem_seed.try_into().map_err(|_| tampered("kem seed"))?;
    let Ok(mut handshake) = noise::peer_responder(&peer::prologue(kid), vault.exchange_secret())
    else {
        return Ok(vec![]);
    };
    let mut payload = zeroize::Zeroizing::new(vec![0u8; msg.len()]);
    let Ok(n) = handshake.read_message(msg, &mut payload) else {
        return Ok(vec![]);
    };
    let Some(hello) = unpadded::<Hello>(&payload[..n]) else {
        return Ok(vec![]);
    };
    let peer_static: [u8; 32] = match handshake.get_remote_static().map(<[u8; 32]>::try_from) {
        Some(Ok(k)) => k,
        _ => return Ok(vec![]),
    };
    // A blocked member's vault gets no answer (and does not use the invitation up).
    if is_blocked(vault, None, Some(&peer_static))? {
        return Ok(vec![]);
    }
    if !valid_vault_id(&hello.reply_route) {
        return Ok(vec![]);
    }
    let kem = KemSecret::from_seed(&SecretBytes::from_array(kem_seed));
    let Some(kem_secret) = kem.decapsulate(&hello.kem_ciphertext) else {
        return Ok(vec![]);
    };
    let psk = HANDSHAKE_PSK.derive(kem_secret.expose(), &secret, b"");
    if handshake.set_psk(2, psk.expose()).is_err() {
        return Ok(vec![]);
    }
    let after_hello = handshake.get_handshake_hash().to_vec();
    let reveal: [u8; 32] = vettid_crypto::random_array();
    let welcome = Welcome {
        reveal,
        signature: vault
            .sign(&peer::transcript_message(true, &after_hello))
            .to_vec(),
    };
    let payload_len = 1024 - KID_LEN - WELCOME_OVERHEAD;
    let payload = padded(&welcome, payload_len).ok_or_else(|| tampered("welcome"))?;
    let mut out = vec![0u8; payload_len + WELCOME_OVERHEAD];
    let n = handshake
        .write_message(&payload, &mut out)
        .map_err(|_| VaultError::Internal("handshake".into()))?;
    out.truncate(n);
    let hash = handshake.get_handshake_hash().to_vec();
    let root = split_root(&mut handshake, &hash);
    let id: ConnectionId = vettid_crypto::random_array();
    let reply = Outbound {
        to: Destination::Peer {
            member: hello.reply_route.clone(),
        },
        id: hex::encode(&digest[..16]),
        body: [&hello.reply_kid[..], &out].concat(),
    };
    let statements = vec![
        // Single use, from the first authenticated hello: the inviter reveals its half of
        // the code once per invitation (commit, then reveal: a middle cannot try again).
        st("DELETE FROM invitations WHERE kid = ?1", vec![blob(kid)]),
        st(
            "INSERT INTO connections (id, state, inviter, label, invitation_kid, peer_member, \
             peer_commitment, inviter_reveal, handshake_hash, root, send_kid, recv_kid, \
             sas_required, created_ms, updated_ms, hello_digest, welcome, peer_static) \
             VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, ?14, ?15, ?16)",
            vec![
                blob(&id),
                state_name(ConnectionState::Confirming),
                opt_text(&label),
                blob(kid),
                SqlValue::Text(hello.reply_route.clone()),
                blob(&hello.commitment),
                blob(&reveal),
                blob(&hash),
                blob(root.expose()),
                blob(&epoch_kid(root.expose(), true, 0)),
                blob(&epoch_kid(root.expose(), false, 0)),
                SqlValue::Int(i64::from(in_person == 0)),
                int(now_ms),
                blob(&digest),
                SqlValue::Blob(postcard::to_allocvec(&reply).expect("outbounds encode")),
                blob(&peer_static),
            ],
        ),
    ];
    vault.write(objects, statements)?;
    Ok(vec![reply])
}

/// Whether this member blocked the vault with `identity` or Noise static key `static_key`.
fn is_blocked(
    vault: &Vault,
    identity: Option<&[u8; 32]>,
    static_key: Option<&[u8; 32]>,
) -> Result<bool, VaultError> {
    let n: i64 = vault
        .read(|c| {
            c.query_row(
                "SELECT count(*) FROM blocked WHERE identity = ?1 OR static_key = ?2",
                rusqlite::params![identity.map(|k| &k[..]), static_key.map(|k| &k[..])],
                |r| r.get(0),
            )
        })
        .map_err(db)?;
    Ok(n > 0)
}

fn hello_digest(kid: &[u8; KID_LEN], msg: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::new()
        .chain_update(b"vettid/v1/peer-hello\0")
        .chain_update(kid)
        .chain_update(msg)
        .finalize()
        .into()
}

/// The welcome this vault answered a hello with `digest` (while that connection awaits its
/// confirmation).
fn repeated_welcome(vault: &Vault, digest: &[u8; 32]) -> Result<Option<Outbound>, VaultError> {
    use rusqlite::OptionalExtension;
    let stored: Option<Vec<u8>> = vault
        .read(|c| {
            c.query_row(
                "SELECT welcome FROM connections WHERE hello_digest = ?1 AND state = ?2",
                rusqlite::params![&digest[..], ConnectionState::Confirming.as_str()],
                |r| r.get(0),
            )
            .optional()
        })
        .map_err(db)?;
    stored
        .map(|b| postcard::from_bytes(&b).map_err(|_| tampered("welcome")))
        .transpose()
}

/// The connection's root key from the finished handshake.
fn split_root(handshake: &mut HandshakeState, hash: &[u8]) -> SecretBytes<32> {
    let (a, b) = noise::split_keys(handshake);
    let ikm = zeroize::Zeroizing::new([*a.expose(), *b.expose()].concat());
    CONNECTION_ROOT.derive(&ikm, b"", hash)
}

/// The invitee's side of message 2: check the inviter's signature, agree the keys, confirm.
/// Whether message 2 was read (the handshake is spent), and what to send.
fn welcome(
    vault: &mut Vault,
    objects: &crate::objects::Objects<'_>,
    member: &str,
    kid: &[u8; KID_LEN],
    waiting: &mut Waiting,
    msg: &[u8],
    now_ms: u64,
) -> (bool, Result<Vec<Outbound>, VaultError>) {
    let row = match one(vault, "WHERE reply_kid = ?1", kid) {
        Ok(Some(row)) if row.state == ConnectionState::Requested => row,
        Ok(_) => return (true, Ok(vec![])),
        Err(e) => return (false, Err(e)),
    };
    let mut payload = zeroize::Zeroizing::new(vec![0u8; msg.len()]);
    // snow restores its state when a message does not decrypt: the real one can still come.
    let Ok(n) = waiting.handshake.read_message(msg, &mut payload) else {
        return (false, Ok(vec![]));
    };
    (
        true,
        welcomed(vault, objects, member, row, waiting, &payload[..n], now_ms),
    )
}

fn welcomed(
    vault: &mut Vault,
    objects: &crate::objects::Objects<'_>,
    member: &str,
    row: Row,
    waiting: &mut Waiting,
    payload: &[u8],
    now_ms: u64,
) -> Result<Vec<Outbound>, VaultError> {
    let n = payload.len();
    let Some(welcome) = unpadded::<Welcome>(&payload[..n]) else {
        return Ok(vec![]);
    };
    let identity = row.peer_identity.ok_or_else(|| tampered("identity"))?;
    let message = peer::transcript_message(true, &waiting.after_hello);
    if !signed_by(&identity, &message, &welcome.signature) {
        return Ok(vec![]);
    }
    let own_reveal = row.own_reveal.ok_or_else(|| tampered("reveal"))?;
    let hash = waiting.handshake.get_handshake_hash().to_vec();
    let root = split_root(&mut waiting.handshake, &hash);
    let sas = peer::sas(&hash, &welcome.reveal, &own_reveal);
    let profile = shared_profile(vault, &row.id)?;
    let sent = shared(&row.id, &profile, &row.capabilities);
    let confirm = PeerBody::Confirm {
        reveal: own_reveal,
        identity: vault.identity_public_key(),
        signature: vault.sign(&peer::transcript_message(false, &hash)).to_vec(),
        profile,
        offer: row.capabilities,
    };
    let keyed = Row {
        root: Some(root.clone()),
        ..row
    };
    let (count, out, _) = seal(&keyed, confirm, now_ms, None)?;
    let mut statements = vec![st(
        "UPDATE connections SET state = ?2, root = ?3, send_kid = ?4, recv_kid = ?5, \
         handshake_hash = ?6, inviter_reveal = ?7, sas = ?8, reply_kid = NULL, updated_ms = ?9 \
         WHERE id = ?1",
        vec![
            blob(&keyed.id),
            state_name(ConnectionState::PendingReview),
            blob(root.expose()),
            blob(&epoch_kid(root.expose(), false, 0)),
            blob(&epoch_kid(root.expose(), true, 0)),
            blob(&hash),
            blob(&welcome.reveal),
            SqlValue::Text(sas),
            int(now_ms),
        ],
    )];
    statements.extend(count);
    statements.push(sent);
    vault.write(objects, statements)?;
    let note = event(
        member,
        vault,
        now_ms,
        EventKind::Connection {
            id: keyed.id,
            state: ConnectionState::PendingReview,
        },
    );
    Ok(vec![out, note])
}

/// A message under a connection's keys.
fn connection_message(
    vault: &mut Vault,
    objects: &crate::objects::Objects<'_>,
    member: &str,
    mut row: Row,
    kid: &[u8; KID_LEN],
    sealed: &[u8],
    now_ms: u64,
) -> Result<Vec<Outbound>, VaultError> {
    // Which of the connection's receiving keys: the current epoch's, the next one's (the
    // peer opened it: this vault sends under it from now on) or a previous one's (for what
    // the hosts delayed, until it expires).
    let (root, epoch, key) = if row.recv_kid.as_ref() == Some(kid) {
        (row.root.clone(), row.epoch, Key::Current)
    } else if row.next_recv_kid.as_ref() == Some(kid) {
        (row.next_root.clone(), row.epoch.wrapping_add(1), Key::Next)
    } else {
        match previous_key(vault, &row.id, kid, now_ms)? {
            Some((root, epoch, waiting)) => (Some(root), epoch, Key::Previous { waiting }),
            None => return Ok(vec![]),
        }
    };
    let root = root.ok_or_else(|| tampered("root"))?;
    let Ok(plain) = epoch_key(root.expose(), !row.inviter, epoch).open(kid, sealed) else {
        return Ok(vec![]);
    };
    if key == Key::Next {
        row = open_epoch(vault, objects, row, root, now_ms)?;
    }
    let Some(message) = unpadded::<PeerMessage>(&plain) else {
        return Ok(vec![]);
    };
    let seen: i64 = vault
        .read(|c| {
            c.query_row(
                "SELECT count(*) FROM peer_inbox WHERE connection = ?1 AND seq = ?2",
                rusqlite::params![&row.id[..], message.seq as i64],
                |r| r.get(0),
            )
        })
        .map_err(db)?;
    if seen > 0 || message.seq <= row.recv_floor {
        // A redelivery: kept once. The delivered receipt of a message this vault stored goes
        // again (the first may not have left), under the number it had: the peer keeps it
        // once, and replays mint no new messages.
        let again = match crate::messages::receipt_of(vault, &row.id, message.seq)? {
            Some(receipt_seq) if row.state == ConnectionState::Active => {
                let body = PeerBody::Delivered(vec![message.seq]);
                vec![seal(&row, body, now_ms, Some(receipt_seq))?.1]
            }
            _ => vec![],
        };
        return Ok(again);
    }
    // A number no honest sender reaches (and the store could not keep): junk.
    if message.seq > i64::MAX as u64 {
        return Ok(vec![]);
    }
    let mut statements = inbox(vault, &row, message.seq)?;
    let mut out = Vec::new();
    statements.extend(previous_keys_upkeep(vault, &row.id, key, now_ms)?);
    statements.extend(crate::grants::sweep(vault, now_ms)?);
    if key == (Key::Previous { waiting: true }) {
        // The peer still sends under the epoch this vault left: its `EpochOpen` may have
        // been lost. Once more (the peer switches at the first message under the new one).
        let (count, again, seq) = seal(&row, PeerBody::EpochOpen(row.epoch), now_ms, None)?;
        statements.extend(count);
        out.push(again);
        row.send_seq = seq;
    }
    // Everything but the handshake's messages, profiles, decisions and revocations comes only
    // once the peer approved: while this side still waits for that approval (the decision
    // was delayed or reordered), it means the peer did.
    let approves = !matches!(
        message.body,
        PeerBody::Confirm { .. }
            | PeerBody::Profile { .. }
            | PeerBody::Decision(_)
            | PeerBody::Revoked
    );
    if row.state == ConnectionState::Accepted && approves {
        statements.push(st(
            "UPDATE connections SET they_accepted = 1, state = ?2, updated_ms = ?3 WHERE id = ?1",
            vec![
                blob(&row.id),
                state_name(ConnectionState::Active),
                int(now_ms),
            ],
        ));
        out.push(event(
            member,
            vault,
            now_ms,
            EventKind::Connection {
                id: row.id,
                state: ConnectionState::Active,
            },
        ));
        row.state = ConnectionState::Active;
    }
    let tell = |state: ConnectionState| {
        event(
            member,
            vault,
            now_ms,
            EventKind::Connection { id: row.id, state },
        )
    };
    use ConnectionState::*;
    match (message.body, row.state) {
        (
            PeerBody::Confirm {
                reveal,
                identity,
                signature,
                profile,
                offer,
            },
            Confirming,
        ) if row.inviter => {
            let committed = row
                .peer_commitment
                .is_some_and(|c| vettid_crypto::ct_eq(&c, &peer::sas_commitment(&reveal)));
            let hash = row.handshake_hash.clone().ok_or_else(|| tampered("hash"))?;
            let signed = signed_by(
                &identity,
                &peer::transcript_message(false, &hash),
                &signature,
            );
            if committed && signed && is_blocked(vault, Some(&identity), row.peer_static.as_ref())?
            {
                // A blocked member's vault, authenticated now: this connection is blocked
                // too (without a word), and the block learns its static key.
                statements.push(set_state(&row.id, Blocked, now_ms));
                statements.extend(erase_keys(&row.id));
                if let Some(static_key) = &row.peer_static {
                    statements.push(st(
                        "UPDATE blocked SET static_key = coalesce(static_key, ?2) \
                         WHERE identity = ?1",
                        vec![blob(&identity), blob(static_key)],
                    ));
                }
                vault.write(objects, statements)?;
                return Ok(vec![]);
            }
            if !committed || !signed || !valid_profile(&profile) {
                // Taken (its number is the peer's), changing nothing.
                vault.write(objects, statements)?;
                return Ok(vec![]);
            }
            let inviter_reveal = row.inviter_reveal.ok_or_else(|| tampered("reveal"))?;
            let sas = peer::sas(&hash, &inviter_reveal, &reveal);
            statements.push(st(
                "UPDATE connections SET state = ?2, peer_identity = ?3, peer_profile = ?4, \
                 sas = ?5, updated_ms = ?6, welcome = NULL, hello_digest = NULL, \
                 peer_capabilities = ?7, profile_seq = ?8 WHERE id = ?1",
                vec![
                    blob(&row.id),
                    state_name(PendingReview),
                    blob(&identity),
                    SqlValue::Blob(postcard::to_allocvec(&profile).expect("profiles encode")),
                    SqlValue::Text(sas),
                    int(now_ms),
                    SqlValue::Blob(postcard::to_allocvec(&offer).expect("offers encode")),
                    int(message.seq),
                ],
            ));
            let ours = shared_profile(vault, &row.id)?;
            statements.push(shared(&row.id, &ours, &row.capabilities));
            let body = PeerBody::Profile {
                fields: ours,
                offer: row.capabilities,
            };
            let (count, profile_out, _) = seal(&row, body, now_ms, None)?;
            statements.extend(count);
            out.push(profile_out);
            out.push(tell(PendingReview));
        }
        // Only a newer profile than the one applied (the hosts may reorder pushes).
        (PeerBody::Profile { fields, offer }, PendingReview | Accepted | Active)
            if valid_profile(&fields) && message.seq > row.profile_seq =>
        {
            statements.push(st(
                "UPDATE connections SET peer_profile = ?2, updated_ms = ?3, \
                 peer_capabilities = ?4, profile_seq = ?5 WHERE id = ?1",
                vec![
                    blob(&row.id),
                    SqlValue::Blob(postcard::to_allocvec(&fields).expect("profiles encode")),
                    int(now_ms),
                    SqlValue::Blob(postcard::to_allocvec(&offer).expect("offers encode")),
                    int(message.seq),
                ],
            ));
        }
        (
            body @ (PeerBody::Ask { .. } | PeerBody::Answer { .. } | PeerBody::Fetch { .. }),
            Active,
        ) => {
            let (more, answers) =
                crate::grants::receive(vault, member, &row, (body, message.seq), now_ms)?;
            statements.extend(more);
            out.extend(answers);
        }
        // The invitee approved before its confirmation was taken (reordered): remembered.
        (PeerBody::Decision(true), Confirming) => {
            statements.push(st(
                "UPDATE connections SET they_accepted = 1 WHERE id = ?1",
                vec![blob(&row.id)],
            ));
        }
        (PeerBody::Decision(true), PendingReview | Accepted) => {
            let next = if row.we_accepted { Active } else { row.state };
            statements.push(st(
                "UPDATE connections SET they_accepted = 1, state = ?2, updated_ms = ?3 WHERE id = ?1",
                vec![blob(&row.id), state_name(next), int(now_ms)],
            ));
            out.push(tell(next));
        }
        (PeerBody::Decision(false), Confirming | PendingReview | Accepted) => {
            statements.push(set_state(&row.id, Rejected, now_ms));
            statements.extend(erase_keys(&row.id));
            out.push(tell(Rejected));
        }
        (PeerBody::Revoked, _) => {
            statements.push(set_state(&row.id, Revoked, now_ms));
            statements.extend(erase_keys(&row.id));
            statements.extend(feed_item(
                vault,
                now_ms,
                "connection.revoked",
                format!(
                    "connection {} revoked by the peer",
                    hex::encode(&row.id[..4])
                ),
            )?);
            out.push(tell(Revoked));
        }
        (body @ (PeerBody::Text(_) | PeerBody::Delivered(_) | PeerBody::Read(_)), Active) => {
            let (seqs, read) = match body {
                // Not valid, or the member does not take messages from this peer: taken (its
                // number is the peer's) and dropped.
                PeerBody::Text(text)
                    if !crate::messages::valid_text(&text) || !row.capabilities.messaging =>
                {
                    (Vec::new(), false)
                }
                PeerBody::Text(text) => {
                    statements.extend(crate::messages::received(
                        &row.id,
                        message.seq,
                        message.sent_ms,
                        &text,
                        now_ms,
                    ));
                    statements.extend(crate::messages::purge(vault, &row.id, now_ms)?);
                    let (count, receipt, receipt_seq) =
                        seal(&row, PeerBody::Delivered(vec![message.seq]), now_ms, None)?;
                    statements.extend(count);
                    statements.push(crate::messages::receipt_sent(
                        &row.id,
                        message.seq,
                        receipt_seq,
                    ));
                    out.push(receipt);
                    out.push(event(
                        member,
                        vault,
                        now_ms,
                        EventKind::Message {
                            connection: row.id,
                            seq: message.seq,
                        },
                    ));
                    (Vec::new(), false)
                }
                PeerBody::Read(seqs) => (seqs, true),
                PeerBody::Delivered(seqs) => (seqs, false),
                _ => (Vec::new(), false),
            };
            if !seqs.is_empty() && seqs.len() <= vettid_proto::messages::PAGE * 4 {
                statements.extend(crate::messages::receipts(&row.id, &seqs, read, now_ms));
                out.push(event(
                    member,
                    vault,
                    now_ms,
                    EventKind::Receipt {
                        connection: row.id,
                        seqs,
                        read,
                    },
                ));
            }
        }
        (
            PeerBody::Rekey {
                epoch,
                kem_key,
                identity,
                signature,
            },
            Active,
        ) => {
            let hash = row.handshake_hash.clone().ok_or_else(|| tampered("hash"))?;
            if row.peer_identity != Some(identity) {
                if !row.identity_changed {
                    statements.extend(identity_alert(vault, &row, now_ms)?);
                    out.push(tell(row.state));
                }
            } else if !signed_by(
                &identity,
                &peer::rekey_message(false, &hash, epoch, &kem_key),
                &signature,
            ) || epoch != row.epoch.wrapping_add(1)
            {
                // Not the peer's, or not the next epoch (a stale rotation): nothing to do.
            } else if row.next_root.is_some() {
                // Asked again (the answer may have been lost): the same answer.
                if let Some(answer) = &row.rekey_reply {
                    let body = postcard::from_bytes(answer).map_err(|_| tampered("rekey"))?;
                    let (count, again, _) = seal(&row, body, now_ms, None)?;
                    statements.extend(count);
                    out.push(again);
                }
            } else if let Some(seed) = row.rekey_seed.as_ref().filter(|_| row.inviter) {
                // Both vaults rotated at once: the inviter's rotation goes on. Its rekey again
                // (the first may have been lost; the peer answers one of them, the same way).
                let (count, again, _) = seal(&row, rekey(vault, &row, seed)?, now_ms, None)?;
                statements.extend(count);
                out.push(again);
            } else if let Some((kem_ciphertext, kem_secret)) = noise::encapsulate(&kem_key) {
                let current = row.root.clone().ok_or_else(|| tampered("root"))?;
                let next = next_root(&current, &kem_secret, epoch);
                let answer = PeerBody::Rekeyed {
                    epoch,
                    signature: vault
                        .sign(&peer::rekey_message(
                            true,
                            &hash,
                            epoch,
                            &[&kem_key[..], &kem_ciphertext].concat(),
                        ))
                        .to_vec(),
                    kem_ciphertext,
                    identity: vault.identity_public_key(),
                };
                statements.push(st(
                    "UPDATE connections SET next_root = ?2, next_recv_kid = ?3, \
                     rekey_seed = NULL, rekey_reply = ?4 WHERE id = ?1",
                    vec![
                        blob(&row.id),
                        blob(next.expose()),
                        blob(&epoch_kid(next.expose(), !row.inviter, epoch)),
                        SqlValue::Blob(postcard::to_allocvec(&answer).expect("bodies encode")),
                    ],
                ));
                let (count, answered, _) = seal(&row, answer, now_ms, None)?;
                statements.extend(count);
                out.push(answered);
            }
        }
        (
            PeerBody::Rekeyed {
                epoch,
                kem_ciphertext,
                identity,
                signature,
            },
            Active,
        ) => {
            let hash = row.handshake_hash.clone().ok_or_else(|| tampered("hash"))?;
            let seed = row.rekey_seed.clone();
            if row.peer_identity != Some(identity) {
                if !row.identity_changed {
                    statements.extend(identity_alert(vault, &row, now_ms)?);
                    out.push(tell(Active));
                }
            } else if let Some(seed) = seed.filter(|_| epoch == row.epoch.wrapping_add(1)) {
                let kem = KemSecret::from_seed(&seed);
                let signed = signed_by(
                    &identity,
                    &peer::rekey_message(
                        true,
                        &hash,
                        epoch,
                        &[&kem.public_key()[..], &kem_ciphertext].concat(),
                    ),
                    &signature,
                );
                if let Some(kem_secret) = kem.decapsulate(&kem_ciphertext).filter(|_| signed) {
                    let current = row.root.clone().ok_or_else(|| tampered("root"))?;
                    let next = next_root(&current, &kem_secret, epoch);
                    // This vault's part is done: the new epoch is this vault's, the peer
                    // switches when the first message under it arrives.
                    statements.extend(promote(&row, &next, now_ms, false));
                    let opened = Row {
                        root: Some(next),
                        epoch,
                        rekey_seed: None,
                        ..row.clone()
                    };
                    let (count, first, _) =
                        seal(&opened, PeerBody::EpochOpen(epoch), now_ms, None)?;
                    statements.extend(count);
                    out.push(first);
                    out.push(tell(Active));
                    statements.extend(feed_item(
                        vault,
                        now_ms,
                        "connection.rotated",
                        format!(
                            "connection {} keys rotated (epoch {epoch})",
                            hex::encode(&row.id[..4])
                        ),
                    )?);
                }
            }
        }
        (PeerBody::File { info, text }, Active) if row.capabilities.messaging => {
            let part = crate::messages::FilePart::File {
                seq: message.seq,
                sent_ms: message.sent_ms,
                info,
                text,
            };
            let Some((more, answers)) = file_arrived(vault, member, &row, part, now_ms)? else {
                return Ok(vec![]);
            };
            statements.extend(more);
            out.extend(answers);
        }
        (PeerBody::Piece { file, index, bytes }, Active) if row.capabilities.messaging => {
            let part = crate::messages::FilePart::Piece {
                own_seq: message.seq,
                file,
                index,
                bytes,
            };
            // No room for it yet: not taken (a retry of the file may land).
            let Some((more, answers)) = file_arrived(vault, member, &row, part, now_ms)? else {
                return Ok(vec![]);
            };
            statements.extend(more);
            out.extend(answers);
        }
        (PeerBody::Edit { seq, text }, Active) if row.capabilities.messaging => {
            let (more, told) = peer_changed(
                vault,
                member,
                &row,
                (seq, Some(&text)),
                (message.seq, message.sent_ms),
                now_ms,
            )?;
            statements.extend(more);
            out.extend(told);
        }
        (PeerBody::Delete(seq), Active) if row.capabilities.messaging => {
            let (more, told) = peer_changed(
                vault,
                member,
                &row,
                (seq, None),
                (message.seq, message.sent_ms),
                now_ms,
            )?;
            statements.extend(more);
            out.extend(told);
        }
        // Opened the epoch (done above, when its key was first used).
        (PeerBody::EpochOpen(_), _) => {}
        // Out of place for the connection's state: kept once (not processed again), dropped.
        _ => {}
    }
    vault.write(objects, statements)?;
    Ok(out)
}

/// The peer edited (`text`) or deleted its message `seq` with its message `by_seq` (sent at
/// `sent_ms`): the statements and,
/// if it changed anything, the event for the member's apps.
fn peer_changed(
    vault: &Vault,
    member: &str,
    row: &Row,
    (seq, text): (u64, Option<&str>),
    (by_seq, sent_ms): (u64, u64),
    now_ms: u64,
) -> Result<Answered, VaultError> {
    let Some(change) =
        crate::messages::changed(vault, &row.id, seq, text, by_seq, sent_ms, now_ms)?
    else {
        return Ok((Vec::new(), Vec::new()));
    };
    let note = event(
        member,
        vault,
        now_ms,
        EventKind::MessageChanged {
            connection: row.id,
            seq,
            deleted: text.is_none(),
        },
    );
    Ok((change, vec![note]))
}

/// What to write and to send for a peer message.
type Answered = (Vec<Statement>, Vec<Outbound>);

/// Part of an attachment from the peer of `row`: the statements, and once the message is
/// whole its delivered receipt and the event for the member's apps.
fn file_arrived(
    vault: &Vault,
    member: &str,
    row: &Row,
    part: crate::messages::FilePart,
    now_ms: u64,
) -> Result<Option<Answered>, VaultError> {
    use crate::messages::Taken;
    let (mut statements, whole) =
        match crate::messages::file_part(vault, &row.id, row.recv_floor, part, now_ms)? {
            Taken::Kept(statements, whole) => (statements, whole),
            Taken::Dropped => return Ok(Some((Vec::new(), Vec::new()))),
            Taken::NoRoom => return Ok(None),
        };
    let mut out = Vec::new();
    if let Some(seq) = whole {
        let (count, receipt, receipt_seq) =
            seal(row, PeerBody::Delivered(vec![seq]), now_ms, None)?;
        statements.extend(count);
        statements.push(crate::messages::receipt_sent(&row.id, seq, receipt_seq));
        out.push(receipt);
        out.push(event(
            member,
            vault,
            now_ms,
            EventKind::Message {
                connection: row.id,
                seq,
            },
        ));
        statements.extend(crate::messages::purge(vault, &row.id, now_ms)?);
    }
    Ok(Some((statements, out)))
}

/// Which receiving key a peer message came under.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    /// The current epoch's.
    Current,
    /// The next epoch's (the peer opened it).
    Next,
    /// A previous epoch's; `waiting`: the peer has not yet been seen to leave it.
    Previous { waiting: bool },
}

/// A previous epoch's receiving key of connection `id` with key id `kid`, unless it expired:
/// its root, its epoch, and whether the peer has not yet been seen to leave it.
fn previous_key(
    vault: &Vault,
    id: &ConnectionId,
    kid: &[u8; KID_LEN],
    now_ms: u64,
) -> Result<Option<(SecretBytes<32>, u32, bool)>, VaultError> {
    use rusqlite::OptionalExtension;
    let found: Option<(Vec<u8>, i64, Option<i64>)> = vault
        .read(|c| {
            c.query_row(
                "SELECT root, epoch, until_ms FROM previous_keys \
                 WHERE connection = ?1 AND recv_kid = ?2",
                rusqlite::params![&id[..], &kid[..]],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
        })
        .map_err(db)?;
    let Some((root, epoch, until)) = found else {
        return Ok(None);
    };
    if until.is_some_and(|u| u as u64 <= now_ms) {
        return Ok(None);
    }
    let root: [u8; 32] = root.try_into().map_err(|_| tampered("previous root"))?;
    let epoch = u32::try_from(epoch).map_err(|_| tampered("epoch"))?;
    Ok(Some((
        SecretBytes::from_array(root),
        epoch,
        until.is_none(),
    )))
}

/// Upkeep of previous epochs' keys at an authenticated message under `key`: the peer's first
/// message under the current epoch starts the clock of the one it left; expired keys go.
fn previous_keys_upkeep(
    vault: &Vault,
    id: &ConnectionId,
    key: Key,
    now_ms: u64,
) -> Result<Vec<Statement>, VaultError> {
    let (waiting, expired): (i64, i64) = vault
        .read(|c| {
            c.query_row(
                "SELECT (SELECT count(*) FROM previous_keys WHERE connection = ?1 \
                 AND until_ms IS NULL), (SELECT count(*) FROM previous_keys WHERE until_ms <= ?2)",
                rusqlite::params![&id[..], i64::try_from(now_ms).unwrap_or(i64::MAX)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .map_err(db)?;
    let mut statements = Vec::new();
    if expired > 0 {
        statements.push(st(
            "DELETE FROM previous_keys WHERE until_ms <= ?1",
            vec![int(now_ms)],
        ));
    }
    if waiting > 0 && key == Key::Current {
        statements.push(st(
            "UPDATE previous_keys SET until_ms = ?2 WHERE connection = ?1 AND until_ms IS NULL",
            vec![
                blob(id),
                int(now_ms.saturating_add(PREVIOUS_EPOCH_SECS * 1000)),
            ],
        ));
    }
    Ok(statements)
}

/// The statements making `next` the connection's current epoch (one more than `row`'s) and
/// keeping the current one's receiving key among the last [`MAX_PREVIOUS_EPOCHS`]: for
/// [`PREVIOUS_EPOCH_SECS`] from now if `peer_switched`, else from the peer's first message
/// under the new epoch.
fn promote(row: &Row, next: &SecretBytes<32>, now_ms: u64, peer_switched: bool) -> Vec<Statement> {
    let epoch = row.epoch.wrapping_add(1);
    let until = if peer_switched {
        int(now_ms.saturating_add(PREVIOUS_EPOCH_SECS * 1000))
    } else {
        SqlValue::Null
    };
    vec![
        st(
            "INSERT OR REPLACE INTO previous_keys (connection, epoch, root, recv_kid, until_ms) \
             SELECT id, epoch, root, recv_kid, ?2 FROM connections \
             WHERE id = ?1 AND root IS NOT NULL AND recv_kid IS NOT NULL",
            vec![blob(&row.id), until],
        ),
        st(
            "UPDATE connections SET root = ?2, send_kid = ?3, recv_kid = ?4, epoch = ?5, \
             next_root = NULL, next_recv_kid = NULL, rekey_seed = NULL, rekey_reply = NULL \
             WHERE id = ?1",
            vec![
                blob(&row.id),
                blob(next.expose()),
                blob(&epoch_kid(next.expose(), row.inviter, epoch)),
                blob(&epoch_kid(next.expose(), !row.inviter, epoch)),
                int(u64::from(epoch)),
            ],
        ),
        st(
            "DELETE FROM previous_keys WHERE connection = ?1 AND epoch + ?2 < ?3",
            vec![
                blob(&row.id),
                int(u64::from(MAX_PREVIOUS_EPOCHS)),
                int(u64::from(epoch)),
            ],
        ),
    ]
}

/// The peer sent its first message under the epoch this vault agreed to: it is the current
/// one from now on (written at once, before the message itself is processed: if that fails,
/// its redelivery comes under the current key).
fn open_epoch(
    vault: &mut Vault,
    objects: &crate::objects::Objects<'_>,
    row: Row,
    next: SecretBytes<32>,
    now_ms: u64,
) -> Result<Row, VaultError> {
    vault.write(objects, promote(&row, &next, now_ms, true))?;
    let epoch = row.epoch.wrapping_add(1);
    Ok(Row {
        recv_kid: row.next_recv_kid,
        root: Some(next),
        epoch,
        next_root: None,
        next_recv_kid: None,
        rekey_reply: None,
        ..row
    })
}

/// This vault's rekey of `row` to its next epoch with the X-Wing key from `seed`, signed.
fn rekey(vault: &Vault, row: &Row, seed: &SecretBytes<32>) -> Result<PeerBody, VaultError> {
    let kem_key = KemSecret::from_seed(seed).public_key();
    let epoch = row.epoch.wrapping_add(1);
    let hash = row
        .handshake_hash
        .as_ref()
        .ok_or_else(|| tampered("hash"))?;
    Ok(PeerBody::Rekey {
        epoch,
        signature: vault
            .sign(&peer::rekey_message(false, hash, epoch, &kem_key))
            .to_vec(),
        kem_key,
        identity: vault.identity_public_key(),
    })
}

/// The peer's vault presented another identity key than the one pinned when they connected:
/// nothing rotates, and the member is told.
fn identity_alert(vault: &Vault, row: &Row, now_ms: u64) -> Result<Vec<Statement>, VaultError> {
    let mut statements = vec![st(
        "UPDATE connections SET identity_changed = 1, updated_ms = ?2 WHERE id = ?1",
        vec![blob(&row.id), int(now_ms)],
    )];
    statements.extend(feed_item(
        vault,
        now_ms,
        "connection.identity-changed",
        format!(
            "connection {}: the peer's vault presented a different identity key; it was \
                 refused and the pinned one kept (connect again only if you trust the change)",
            hex::encode(&row.id[..4])
        ),
    )?);
    Ok(statements)
}

/// Messages above the floor (taken out of order, after one that has not come) one
/// connection keeps at most: beyond, the floor moves past the oldest gap (what never came by
/// then counts as lost).
const MAX_PEER_MESSAGES: u64 = 20_000;

/// The statements recording the peer's new message `seq`: the floor rises over every number
/// taken in a row, and only numbers above it are kept one by one.
fn inbox(vault: &Vault, row: &Row, seq: u64) -> Result<Vec<Statement>, VaultError> {
    let id = &row.id[..];
    let mut floor = row.recv_floor;
    let kept: i64 = vault
        .read(|c| {
            c.query_row(
                "SELECT count(*) FROM peer_inbox WHERE connection = ?1",
                [id],
                |r| r.get(0),
            )
        })
        .map_err(db)?;
    if kept as u64 >= MAX_PEER_MESSAGES {
        // Too far ahead of a gap: the oldest gap is given up.
        let lowest: i64 = vault
            .read(|c| {
                c.query_row(
                    "SELECT min(seq) FROM peer_inbox WHERE connection = ?1",
                    [id],
                    |r| r.get(0),
                )
            })
            .map_err(db)?;
        floor = floor.max((lowest as u64).min(seq).saturating_sub(1));
    }
    // The floor rises over numbers taken in a row: read only what follows it, until a gap.
    let mut next = floor.saturating_add(1);
    let mut took_this = false;
    loop {
        if next == seq {
            took_this = true;
            floor = seq;
            next = seq.saturating_add(1);
            continue;
        }
        let found: i64 = vault
            .read(|c| {
                c.query_row(
                    "SELECT count(*) FROM peer_inbox WHERE connection = ?1 AND seq = ?2",
                    rusqlite::params![id, i64::try_from(next).unwrap_or(i64::MAX)],
                    |r| r.get(0),
                )
            })
            .map_err(db)?;
        if found == 0 || next == u64::MAX {
            break;
        }
        floor = next;
        next += 1;
    }
    let mut statements = Vec::new();
    if !took_this && seq > floor {
        statements.push(st(
            "INSERT INTO peer_inbox (connection, seq) VALUES (?1, ?2)",
            vec![blob(&row.id), int(seq)],
        ));
    }
    if floor != row.recv_floor {
        statements.push(st(
            "DELETE FROM peer_inbox WHERE connection = ?1 AND seq <= ?2",
            vec![blob(&row.id), int(floor)],
        ));
        statements.push(st(
            "UPDATE connections SET recv_floor = ?2 WHERE id = ?1",
            vec![blob(&row.id), int(floor)],
        ));
    }
    Ok(statements)
}
/// Encoded bytes of a profile one message carries at most (it must fit a bucket).
const PROFILE_BYTES: usize = 32 * 1024;

/// What this vault shares with connection `id`, in key order, up to [`PROFILE_BYTES`].
fn shared_profile(vault: &Vault, id: &ConnectionId) -> Result<Vec<(String, String)>, VaultError> {
    let mut total = 0;
    Ok(crate::profile::shared_with(vault, &sharing_name(id))?
        .into_iter()
        .filter(valid_field)
        .take_while(|(k, v)| {
            total += k.len() + v.len() + 8;
            total <= PROFILE_BYTES
        })
        .collect())
}

/// What identifies a shared profile (to send it again only when it changed).
fn profile_digest(profile: &[(String, String)], offer: &Capabilities) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::new()
        .chain_update(b"vettid/v1/shared-profile\0")
        .chain_update(postcard::to_allocvec(&(profile, offer)).expect("profiles encode"))
        .finalize()
        .to_vec()
}

/// The statement recording that connection `id` was sent `profile` and `offer`.
fn shared(id: &ConnectionId, profile: &[(String, String)], offer: &Capabilities) -> Statement {
    st(
        "UPDATE connections SET shared_digest = ?2 WHERE id = ?1",
        vec![blob(id), SqlValue::Blob(profile_digest(profile, offer))],
    )
}

/// After the member changed what they share: the statements and messages giving each
/// connection that has keys and its peer's review or approval its new shared profile, where
/// it changed.
pub(crate) fn profile_pushes(
    vault: &Vault,
    now_ms: u64,
) -> Result<(Vec<Statement>, Vec<Outbound>), VaultError> {
    use ConnectionState::*;
    let (mut statements, mut out) = (Vec::new(), Vec::new());
    for row in rows(vault, "", &[])? {
        if !matches!(row.state, PendingReview | Accepted | Active) || row.root.is_none() {
            continue;
        }
        let profile = shared_profile(vault, &row.id)?;
        if row.shared_digest.as_deref() == Some(&profile_digest(&profile, &row.capabilities)) {
            continue;
        }
        statements.push(shared(&row.id, &profile, &row.capabilities));
        let body = PeerBody::Profile {
            fields: profile,
            offer: row.capabilities,
        };
        let (count, push, _) = seal(&row, body, now_ms, None)?;
        statements.extend(count);
        out.push(push);
    }
    Ok((statements, out))
}

fn valid_field((k, v): &(String, String)) -> bool {
    (1..=128).contains(&k.len()) && v.len() <= 4096
}

/// A profile a peer sent: at most 256 fields of reasonable size.
fn valid_profile(profile: &[(String, String)]) -> bool {
    profile.len() <= 256 && profile.iter().all(valid_field)
}

#[cfg(test)]
mod tests;
