//! Messages between connected members, end to end between their vaults (inside the session;
//! the vault must have been unlocked in it). Each vault keeps the history of its connections.

use crate::connections::ConnectionId;
use serde::{Deserialize, Serialize};

/// Longest text (characters).
pub const MAX_TEXT_CHARS: usize = 10_000;
/// Messages per page of history at most.
pub const PAGE: usize = 50;
/// How long after sending a member may edit or delete a message for everyone (24 h).
pub const EDIT_WINDOW_SECS: u64 = 24 * 3600;
/// Longest retention a member may set (days).
pub const MAX_RETENTION_DAYS: u32 = 3650;

/// Message operations.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageOp {
    /// Send a text on an active connection. A retry with the same `client_id` is the same
    /// message (sent again to the peer, kept once by both vaults).
    Send {
        /// The connection.
        connection: ConnectionId,
        /// The app's id of this message (random, the same in every retry).
        client_id: [u8; 16],
        /// 1–[`MAX_TEXT_CHARS`] characters.
        text: String,
    },
    /// History of a connection, newest first: up to `limit` (≤ [`PAGE`]) messages sent or
    /// received before `before_ms` (all when `None`).
    List {
        /// The connection.
        connection: ConnectionId,
        /// Only messages from before this time (the page's oldest, to go on).
        before_ms: Option<u64>,
        /// At most this many.
        limit: u16,
    },
    /// The member read the peer's message `seq` (and every earlier one): a read receipt goes
    /// to the peer.
    Read {
        /// The connection.
        connection: ConnectionId,
        /// The peer's sequence number.
        seq: u64,
    },
    /// Replace the text of this member's message `seq` for everyone, within
    /// [`EDIT_WINDOW_SECS`] of sending it.
    Edit {
        /// The connection.
        connection: ConnectionId,
        /// This member's message.
        seq: u64,
        /// The new text (1–[`MAX_TEXT_CHARS`] characters).
        text: String,
    },
    /// Delete this member's message `seq` for everyone (both vaults erase its text), within
    /// [`EDIT_WINDOW_SECS`] of sending it.
    Delete {
        /// The connection.
        connection: ConnectionId,
        /// This member's message.
        seq: u64,
    },
    /// Keep messages `days` days (in this vault; `None`: for ever), for one connection or, with
    /// `connection: None`, for every connection without its own setting. Older ones are erased.
    SetRetention {
        /// One connection, or the default.
        connection: Option<ConnectionId>,
        /// 1–[`MAX_RETENTION_DAYS`] days, or `None`.
        days: Option<u32>,
    },
    /// The retention in force for a connection (or the default).
    Retention {
        /// One connection, or the default.
        connection: Option<ConnectionId>,
    },
}

crate::redact::redacted_debug!(MessageOp);

/// One message of a history.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    /// Sent by this member (`false`: received).
    pub outgoing: bool,
    /// The sender's sequence number on the connection.
    pub seq: u64,
    /// The text.
    pub text: String,
    /// When it was sent (the sender's host's clock).
    pub sent_ms: u64,
    /// When the receiving vault stored it (outgoing: its delivered receipt arrived).
    pub delivered_ms: Option<u64>,
    /// When the receiving member read it.
    pub read_ms: Option<u64>,
    /// When it was last edited (the editing vault's clock), if it was.
    pub edited_ms: Option<u64>,
    /// Deleted for everyone (its text is erased).
    pub deleted: bool,
}

crate::redact::redacted_debug!(MessageView);

/// Answers to [`MessageOp`]s.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageReply {
    /// The message is stored and on its way (the peer's vault receives it from JetStream).
    Sent {
        /// Its sequence number.
        seq: u64,
    },
    /// A page of history, newest first, and whether older messages remain.
    Messages {
        /// The page.
        messages: Vec<MessageView>,
        /// More before the oldest of this page.
        more: bool,
    },
    /// The retention in force, in days (`None`: for ever).
    Retention(Option<u32>),
    /// Done.
    Done,
}

crate::redact::redacted_debug!(MessageReply);

/// Why a message operation was refused: nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MessageError {
    /// A text is 1–[`MAX_TEXT_CHARS`] characters.
    #[error("a message is 1-{MAX_TEXT_CHARS} characters")]
    BadText,
    /// The connection is not active.
    #[error("the connection is not active")]
    NotActive,
    /// No such connection or message.
    #[error("no such connection or message")]
    Unknown,
    /// The message was sent more than [`EDIT_WINDOW_SECS`] ago (or is deleted).
    #[error(
        "a message can be edited or deleted for everyone only within 24 hours of sending, and not once deleted"
    )]
    TooLate,
    /// The peer does not take messages on this connection.
    #[error("the peer does not take messages on this connection")]
    NotAllowed,
    /// A retention is 1–[`MAX_RETENTION_DAYS`] days.
    #[error("a retention is 1-{MAX_RETENTION_DAYS} days (or none: keep for ever)")]
    BadRetention,
}
