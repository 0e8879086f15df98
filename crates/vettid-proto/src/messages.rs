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
/// Largest attachment (1 MiB).
pub const MAX_ATTACHMENT_BYTES: u32 = 1024 * 1024;
/// An attachment travels in pieces of this size (the last one shorter): app → vault in
/// `Upload`s and `Download`s, vault → vault in `PeerBody::Piece`s.
pub const PIECE_BYTES: usize = 48 * 1024;
/// Longest attachment name and media type (bytes).
pub const MAX_ATTACHMENT_NAME: usize = 128;
/// Uploads a vault holds unfinished at most (the oldest goes).
pub const MAX_UPLOADS: usize = 4;

/// What an attachment is (`Debug` shows its size only: the name is the member's).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentInfo {
    /// Its file name (1–[`MAX_ATTACHMENT_NAME`] bytes, no `/`, `\\` or control characters).
    pub name: String,
    /// Its media type (e.g. `image/png`; 1–[`MAX_ATTACHMENT_NAME`] bytes).
    pub mime: String,
    /// Its size in bytes (1–[`MAX_ATTACHMENT_BYTES`]).
    pub size: u32,
    /// SHA-256 of its bytes.
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for AttachmentInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachmentInfo")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for AttachmentView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachmentView")
            .field("info", &self.info)
            .field("complete", &self.complete)
            .finish()
    }
}

impl AttachmentInfo {
    /// Whether the name, type and size are within the rules.
    pub fn is_valid(&self) -> bool {
        // No control or direction-changing characters (a name that reads other than it is).
        let text = |s: &str| {
            (1..=MAX_ATTACHMENT_NAME).contains(&s.len())
                && !s.chars().any(|c| {
                    c.is_control()
                        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
                })
        };
        text(&self.name)
            && !self.name.contains(['/', '\\'])
            && !matches!(self.name.as_str(), "." | "..")
            && text(&self.mime)
            && (1..=MAX_ATTACHMENT_BYTES).contains(&self.size)
    }

    /// How many pieces it travels in.
    pub fn pieces(&self) -> u16 {
        (self.size as usize).div_ceil(PIECE_BYTES) as u16
    }
}

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
        /// Only messages from this time on (a search by time; `None`: from the start).
        since_ms: Option<u64>,
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
    /// One piece of an attachment the app is about to send (`index` from 0, each
    /// [`PIECE_BYTES`] but the last): kept in the vault until `SendFile` names the same
    /// `client_id`.
    Upload {
        /// The app's id of the message the attachment goes with.
        client_id: [u8; 16],
        /// The piece's number.
        index: u16,
        /// Its bytes.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Send the attachment uploaded under `client_id` (every piece there, matching `info`) with
    /// an optional text, as one message. A retry with the same `client_id` is the same message.
    SendFile {
        /// The connection.
        connection: ConnectionId,
        /// The app's id of this message (that of the uploads).
        client_id: [u8; 16],
        /// What the attachment is.
        info: AttachmentInfo,
        /// A caption (up to [`MAX_TEXT_CHARS`] characters, or none).
        text: Option<String>,
    },
    /// One piece of a message's attachment (once it is whole in this vault).
    Download {
        /// The connection.
        connection: ConnectionId,
        /// Sent by this member (`false`: received).
        outgoing: bool,
        /// The message's sequence number.
        seq: u64,
        /// The piece's number.
        index: u16,
    },
    /// Erase a connection's history in this vault (messages and attachments; the peer's stay
    /// in its vault).
    Clear {
        /// The connection.
        connection: ConnectionId,
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
    /// Its attachment, if it has one.
    pub attachment: Option<AttachmentView>,
}

/// A message's attachment as a history shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentView {
    /// What it is.
    pub info: AttachmentInfo,
    /// Every piece is here and its hash matched (received attachments fill in as pieces come).
    pub complete: bool,
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
    /// A piece of an attachment.
    Piece {
        /// Its bytes.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        /// How many pieces the attachment has.
        pieces: u16,
    },
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
    /// An attachment's name, type or size breaks the rules, its pieces do not add up to it
    /// (missing, out of range, or the hash does not match), or too many uploads are open.
    #[error(
        "an attachment is 1 byte to 1 MiB, uploaded in 48 KiB pieces that match its size and SHA-256, with a name and type of 1-128 bytes"
    )]
    BadAttachment,
    /// The attachment is not (yet) whole in this vault.
    #[error("the attachment is not all here yet")]
    Incomplete,
    /// A retention is 1–[`MAX_RETENTION_DAYS`] days.
    #[error("a retention is 1-{MAX_RETENTION_DAYS} days (or none: keep for ever)")]
    BadRetention,
}
