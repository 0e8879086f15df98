//! The vault's feed and audit log: one hash chain of events inside the vault.
//!
//! Every event gets the next sequence number and
//! `hash = SHA-256("vettid/v1/event-chain\0" ‖ prev_hash ‖ seq ‖ content_hash)` with
//! `content_hash = SHA-256(postcard(EventContent))`. The feed is the events meant for the
//! member (notifications: read, archive, delete); the audit log is all of them. Deleting or
//! pruning (retention) drops an event's content but keeps its `content_hash`, so the chain still
//! verifies: [`verify_chain`].

use serde::{Deserialize, Serialize};
use sha2::Digest;

/// How long an event's content is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Retention {
    /// 30 days.
    Short,
    /// One year.
    Standard,
    /// Until deleted.
    Permanent,
}

impl Retention {
    /// Milliseconds the content is kept (`None`: forever).
    pub fn keep_ms(self) -> Option<u64> {
        match self {
            Retention::Short => Some(30 * 24 * 3600 * 1000),
            Retention::Standard => Some(365 * 24 * 3600 * 1000),
            Retention::Permanent => None,
        }
    }
}

/// Who an event is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Audience {
    /// The member's feed (and the audit log).
    Feed,
    /// The audit log only.
    Audit,
}

/// What an event says (hashed into the chain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventContent {
    /// When (the host's clock, ms).
    pub at_ms: u64,
    /// Feed or audit only.
    pub audience: Audience,
    /// A dotted kind, e.g. `vault.unlocked`, `secrets.created`.
    pub kind: String,
    /// Retention class.
    pub retention: Retention,
    /// A short human-readable text.
    pub text: String,
}

/// One event as stored and answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainedEvent {
    /// Sequence number (1, 2, …).
    pub seq: u64,
    /// Its content; `None` once deleted or pruned.
    pub content: Option<EventContent>,
    /// SHA-256 of the content's postcard encoding.
    pub content_hash: [u8; 32],
    /// The chain hash up to and including this event.
    pub hash: [u8; 32],
    /// Read in the feed.
    pub read: bool,
    /// Archived in the feed.
    pub archived: bool,
}

/// The content hash of `content`.
pub fn content_hash(content: &EventContent) -> [u8; 32] {
    sha2::Sha256::digest(postcard::to_allocvec(content).expect("events always encode")).into()
}

/// The chain hash of event `seq` after `prev`.
pub fn chain_hash(prev: &[u8; 32], seq: u64, content_hash: &[u8; 32]) -> [u8; 32] {
    sha2::Sha256::new()
        .chain_update(b"vettid/v1/event-chain\0")
        .chain_update(prev)
        .chain_update(seq.to_be_bytes())
        .chain_update(content_hash)
        .finalize()
        .into()
}

/// Why a feed operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FeedError {
    /// A query's `from_ms` is after its `to_ms`.
    #[error("from_ms must not be after to_ms")]
    TimeRange,
}

/// Where a chain of events the app received breaks (see [`verify_chain`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    /// An event is missing or out of order.
    #[error("gap or reorder at {got} (expected {expected})")]
    Gap {
        /// The sequence number expected.
        expected: u64,
        /// The one received.
        got: u64,
    },
    /// An event's content does not match its hash.
    #[error("event {0}: content does not match its hash")]
    Content(u64),
    /// An event's chain hash does not follow from the one before.
    #[error("event {0}: chain hash mismatch")]
    Hash(u64),
}

/// Checks that `events` (consecutive, starting right after `prev` at `prev_seq`) form an
/// unbroken chain and that every content present matches its hash. The last hash on success.
pub fn verify_chain(
    prev_seq: u64,
    prev: [u8; 32],
    events: &[ChainedEvent],
) -> Result<[u8; 32], ChainBreak> {
    let (mut seq, mut hash) = (prev_seq, prev);
    for e in events {
        seq += 1;
        if e.seq != seq {
            return Err(ChainBreak::Gap {
                expected: seq,
                got: e.seq,
            });
        }
        if let Some(c) = &e.content
            && content_hash(c) != e.content_hash
        {
            return Err(ChainBreak::Content(seq));
        }
        hash = chain_hash(&hash, seq, &e.content_hash);
        if hash != e.hash {
            return Err(ChainBreak::Hash(seq));
        }
    }
    Ok(hash)
}

/// Audit export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExportFormat {
    /// A JSON array.
    Json,
    /// CSV with a header row.
    Csv,
}

/// Feed and audit operations (inside the session; the vault must have been unlocked in it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeedOp {
    /// Feed items after `after` (oldest first, one page), optionally with archived ones.
    List {
        /// Sequence to start after.
        after: u64,
        /// Include archived items.
        archived: bool,
    },
    /// Mark a feed item read.
    Read {
        /// Its sequence.
        seq: u64,
    },
    /// Archive a feed item.
    Archive {
        /// Its sequence.
        seq: u64,
    },
    /// Delete a feed item's content (the chain keeps its hash).
    Delete {
        /// Its sequence.
        seq: u64,
    },
    /// Every event after `since` with hashes (one page), to sync and to verify the chain.
    Sync {
        /// Sequence the app has.
        since: u64,
    },
    /// Audit events in a time range, optionally of one kind prefix, after sequence `after`
    /// (one page).
    Query {
        /// Sequence to start after.
        after: u64,
        /// From (ms, inclusive).
        from_ms: u64,
        /// To (ms, exclusive).
        to_ms: u64,
        /// Kind prefix, e.g. `secrets.`.
        kind: Option<String>,
    },
    /// The audit log (contents present) as a document, from after sequence `after` (one page).
    Export {
        /// JSON or CSV.
        format: ExportFormat,
        /// Sequence to start after.
        after: u64,
    },
}

/// Answers to [`FeedOp`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeedReply {
    /// Events (oldest first); `more` when another page follows.
    Events {
        /// This page.
        events: Vec<ChainedEvent>,
        /// Whether more follow.
        more: bool,
    },
    /// Done.
    Done,
    /// One page of an export: a JSON array or CSV with its header.
    Export {
        /// The document.
        document: String,
        /// The last sequence in it (pass as `after` for the next page).
        last: u64,
        /// Whether more follow.
        more: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<ChainedEvent> {
        let mut prev = [0u8; 32];
        (1..=n)
            .map(|seq| {
                let content = EventContent {
                    at_ms: seq,
                    audience: Audience::Feed,
                    kind: "test".into(),
                    retention: Retention::Short,
                    text: format!("event {seq}"),
                };
                let ch = content_hash(&content);
                prev = chain_hash(&prev, seq, &ch);
                ChainedEvent {
                    seq,
                    content: Some(content),
                    content_hash: ch,
                    hash: prev,
                    read: false,
                    archived: false,
                }
            })
            .collect()
    }

    #[test]
    fn a_chain_verifies_with_deleted_contents_but_not_when_altered() {
        let mut c = chain(5);
        assert!(verify_chain(0, [0; 32], &c).is_ok());
        c[2].content = None; // deleted: still verifies
        assert!(verify_chain(0, [0; 32], &c).is_ok());
        let mut altered = c.clone();
        altered[1].content.as_mut().unwrap().text = "changed".into();
        assert!(verify_chain(0, [0; 32], &altered).is_err());
        let mut gap = c.clone();
        gap.remove(3);
        assert!(verify_chain(0, [0; 32], &gap).is_err());
        // A suffix verifies from its predecessor's hash.
        assert!(verify_chain(2, c[1].hash, &c[2..]).is_ok());
        assert!(verify_chain(2, [9; 32], &c[2..]).is_err());
    }
}
