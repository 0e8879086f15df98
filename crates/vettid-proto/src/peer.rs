//! Vault ↔ vault messages (`docs/PROTOCOL.md`, "Connections"): what one vault sends another
//! through the hosts and JetStream on `MessageSpace.<recipient>.forOwner.sealed`.
//!
//! **Sealed sender.** On the wire a message is `kid ‖ sealed`, padded to one of [`BUCKETS`]:
//! the broker and the hosts see the recipient (the subject) and a size bucket. The sender,
//! the connection and the kind of message travel inside the encryption; the recipient vault
//! finds the key by `kid`, a 16-byte key id that only the two vaults can derive (from an
//! invitation's secret, a value the invitee chose, or a connection's keys).
//!
//! ```text
//!  invitee                                        inviter
//!    Hello   (Noise IKpsk2 msg 1: -> e, es, s, ss; X-Wing ciphertext, reply kid, SAS commitment)
//!    ───────────────────────────────────────────────►   kid = invitation kid
//!    Welcome (msg 2: <- e, ee, se, psk; SAS reveal, inviter's signature of the transcript)
//!    ◄───────────────────────────────────────────────   kid = reply kid
//!    Confirm (first connection message: SAS reveal, identity, signature, route, profile)
//!    ───────────────────────────────────────────────►   kid = connection kid (invitee → inviter)
//!    Profile, Decision, Text, Delivered, Read, Revoked …   both ways, under the connection keys
//! ```

use serde::{Deserialize, Serialize};

/// The subject's last token: one for every kind of peer message (the kind is inside).
pub const PEER_TOKEN: &str = "sealed";

/// `MessageSpace.<member>.forOwner.sealed`: where peers reach `member`'s vault.
pub fn peer_subject(member: &str) -> String {
    format!("MessageSpace.{member}.forOwner.{PEER_TOKEN}")
}

/// Length of a key id.
pub const KID_LEN: usize = 16;

/// The sizes a peer message on the wire may have (kid and encryption included): a message is
/// padded inside its encryption to the smallest that holds it, and any other size is refused.
pub const BUCKETS: &[usize] = &[1024, 2048, 4096, 8192, 16384, 32768, 65536];

/// The smallest bucket holding `len` bytes, if any does.
pub fn bucket(len: usize) -> Option<usize> {
    BUCKETS.iter().copied().find(|b| *b >= len)
}

/// Splits a wire message into its key id and sealed part; `None` unless its size is a bucket.
pub fn split(wire: &[u8]) -> Option<([u8; KID_LEN], &[u8])> {
    if !BUCKETS.contains(&wire.len()) {
        return None;
    }
    let (kid, rest) = wire.split_at(KID_LEN);
    Some((kid.try_into().ok()?, rest))
}

/// Encodes `value` (postcard) followed by zeros up to exactly `len` bytes; `None` if it does
/// not fit.
pub fn padded<T: Serialize>(value: &T, len: usize) -> Option<Vec<u8>> {
    let mut bytes = postcard::to_allocvec(value).ok()?;
    if bytes.len() > len {
        zeroize::Zeroize::zeroize(&mut bytes);
        return None;
    }
    bytes.resize(len, 0);
    Some(bytes)
}

/// Decodes a padded plaintext: the value, then only zeros.
pub fn unpadded<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
    let (value, rest) = postcard::take_from_bytes(bytes).ok()?;
    rest.iter().all(|b| *b == 0).then_some(value)
}

/// The Noise prologue of a connection handshake: binds it to the invitation.
pub fn prologue(invitation_kid: &[u8; KID_LEN]) -> Vec<u8> {
    [b"vettid/v1/peer-handshake\0".as_slice(), invitation_kid].concat()
}

/// What a vault hands another so it can connect: made by the inviter's vault, shown as a QR
/// code or a link. Only what the invitee's vault needs to reach and authenticate the inviter's
/// vault: its route, identity and keys, and a one-time secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    /// Format version (1).
    pub version: u8,
    /// Where the inviter's vault is reached (its member id: the subject names it).
    pub route: String,
    /// The inviter vault's Ed25519 identity key (pinned by the invitee).
    pub identity: [u8; 32],
    /// The inviter vault's Noise static (X25519) key.
    pub static_key: [u8; 32],
    /// This invitation's own X-Wing key (forgotten when the invitation ends).
    #[serde(with = "serde_bytes")]
    pub kem_key: Vec<u8>,
    /// The invitation's secret: its key id and the handshake's PSK derive from it.
    pub secret: zeroize::Zeroizing<[u8; 32]>,
    /// When it expires (milliseconds since the Unix epoch).
    pub expires_ms: u64,
    /// Made to be scanned in person: the inviter's vault does not ask for the SAS.
    pub in_person: bool,
}

crate::redact::redacted_debug!(Invitation);

/// Inside handshake message 1 (invitee → inviter).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// X-Wing ciphertext to the invitation's KEM key.
    #[serde(with = "serde_bytes")]
    pub kem_ciphertext: Vec<u8>,
    /// Where to send the answer (the invitee's member id).
    pub reply_route: String,
    /// The key id the answer carries (random, chosen by the invitee).
    pub reply_kid: [u8; KID_LEN],
    /// `sas_commitment(reveal)` of the invitee's SAS contribution, revealed only after the
    /// inviter's (commit, then reveal: neither side can choose the code).
    pub commitment: [u8; 32],
}

/// Inside handshake message 2 (inviter → invitee).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The inviter's SAS contribution.
    pub reveal: [u8; 32],
    /// The inviter's identity signature of [`transcript_message`] of the handshake hash after
    /// message 1.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// A message between connected vaults (inside the connection's encryption).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerMessage {
    /// The sender's sequence number on this connection, from 1: the receiver keeps each once
    /// (a redelivery is a duplicate) and orders by it.
    pub seq: u64,
    /// The sender's clock (milliseconds since the Unix epoch; its host's).
    pub sent_ms: u64,
    /// What it says.
    pub body: PeerBody,
}

/// Kinds of [`PeerMessage`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerBody {
    /// The invitee's first message: its SAS contribution (matching its commitment), its
    /// identity and signature of the final handshake hash, its route, and its shared profile.
    Confirm {
        /// The invitee's SAS contribution.
        reveal: [u8; 32],
        /// The invitee vault's identity key.
        identity: [u8; 32],
        /// Its signature of [`transcript_message`] of the final handshake hash.
        #[serde(with = "serde_bytes")]
        signature: Vec<u8>,
        /// The invitee's profile, as it shares it with this connection.
        profile: Vec<(String, String)>,
        /// What the invitee's member lets the inviter's do on this connection.
        offer: crate::connections::Capabilities,
    },
    /// The sender's profile as it shares it with this connection and what it lets the receiver
    /// do on it (sent by the inviter after the confirmation, and by either side when either
    /// changes).
    Profile {
        /// The shared fields.
        fields: Vec<(String, String)>,
        /// What the sender's member allows.
        offer: crate::connections::Capabilities,
    },
    /// The sender's member accepted (`true`) or rejected the connection.
    Decision(bool),
    /// A text message.
    Text(String),
    /// These of the receiver's messages are stored in the sender's vault.
    Delivered(Vec<u64>),
    /// These of the receiver's messages were read by the sender's member.
    Read(Vec<u64>),
    /// The sender ended the connection: both sides erase its keys.
    Revoked,
    /// The sender opens the connection's next epoch: a fresh X-Wing key for the receiver to
    /// encapsulate to, signed ([`rekey_message`]) with the sender's identity key, which the
    /// receiver pinned when they connected.
    Rekey {
        /// The epoch it opens (the current one plus one).
        epoch: u32,
        /// The fresh X-Wing key (its secret is forgotten once the epoch is open).
        #[serde(with = "serde_bytes")]
        kem_key: Vec<u8>,
        /// The sender vault's identity key (must be the pinned one).
        identity: [u8; 32],
        /// Its signature of [`rekey_message`].
        #[serde(with = "serde_bytes")]
        signature: Vec<u8>,
    },
    /// The answer to a [`PeerBody::Rekey`]: the X-Wing ciphertext, signed the same way. The
    /// answering vault takes messages under the new epoch from now on, and sends under it once
    /// the first one arrives ([`PeerBody::EpochOpen`]).
    Rekeyed {
        /// The epoch it opens.
        epoch: u32,
        /// The X-Wing ciphertext to the rekey's key.
        #[serde(with = "serde_bytes")]
        kem_ciphertext: Vec<u8>,
        /// The answering vault's identity key (must be the pinned one).
        identity: [u8; 32],
        /// Its signature of [`rekey_message`].
        #[serde(with = "serde_bytes")]
        signature: Vec<u8>,
    },
    /// The first message under a new epoch: its receiver sends under it too from now on.
    EpochOpen(u32),
    /// The sender's message `seq` has a new text.
    Edit {
        /// The sender's message.
        seq: u64,
        /// Its new text.
        text: String,
    },
    /// The sender's message `seq` is deleted for everyone.
    Delete(u64),
    /// The sender's member asks for more of the receiver's profile than it shares.
    Ask {
        /// The request's id (the sender's).
        request: [u8; 16],
        /// Which fields or categories.
        targets: Vec<crate::profile::ShareTarget>,
    },
    /// The receiver's request `request` is answered.
    Answer {
        /// The receiver's request id.
        request: [u8; 16],
        /// The answer.
        answer: crate::connections::AskAnswer,
    },
    /// A message with an attachment (its pieces follow, each a message of its own).
    File {
        /// What the attachment is.
        info: crate::messages::AttachmentInfo,
        /// A caption.
        text: Option<String>,
    },
    /// One piece of the attachment of the sender's message `file`.
    Piece {
        /// The `File` message's sequence number.
        file: u64,
        /// The piece's number, from 0.
        index: u16,
        /// Its bytes (each [`crate::messages::PIECE_BYTES`] but the last).
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Use the sender's grant for request `request` once more: the current values, please.
    Fetch {
        /// The sender's request id.
        request: [u8; 16],
    },
}

crate::redact::redacted_debug!(PeerBody);

/// What a vault signs of a handshake: the role's label and the handshake hash.
pub fn transcript_message(inviter: bool, handshake_hash: &[u8]) -> Vec<u8> {
    let label: &[u8] = if inviter {
        b"vettid/v1/peer-transcript/inviter\0"
    } else {
        b"vettid/v1/peer-transcript/invitee\0"
    };
    [label, handshake_hash].concat()
}

/// What a vault signs to rotate a connection's keys: the role, the connection's handshake
/// hash (both vaults hold it), the epoch and the X-Wing key (`answer`: the ciphertext).
pub fn rekey_message(answer: bool, handshake_hash: &[u8], epoch: u32, kem: &[u8]) -> Vec<u8> {
    let label: &[u8] = if answer {
        b"vettid/v1/peer-rekeyed\0"
    } else {
        b"vettid/v1/peer-rekey\0"
    };
    [label, handshake_hash, &epoch.to_be_bytes(), kem].concat()
}

/// The commitment to a SAS contribution.
pub fn sas_commitment(reveal: &[u8; 32]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::new()
        .chain_update(b"vettid/v1/sas-commitment\0")
        .chain_update(reveal)
        .finalize()
        .into()
}

/// The six-digit code both members compare: from the final handshake hash and both
/// contributions (the invitee committed to its own before it saw the inviter's).
pub fn sas(handshake_hash: &[u8], inviter_reveal: &[u8; 32], invitee_reveal: &[u8; 32]) -> String {
    use sha2::Digest;
    let d: [u8; 32] = sha2::Sha256::new()
        .chain_update(b"vettid/v1/sas\0")
        .chain_update(handshake_hash)
        .chain_update(inviter_reveal)
        .chain_update(invitee_reveal)
        .finalize()
        .into();
    let n = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % 1_000_000;
    format!("{n:06}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bucket_sizes_split_and_padding_is_checked() {
        for len in [0, 15, 1000, 1025, 65537] {
            assert!(split(&vec![0; len]).is_none(), "{len}");
        }
        let wire = vec![7u8; 2048];
        let (kid, rest) = split(&wire).unwrap();
        assert_eq!(kid, [7; KID_LEN]);
        assert_eq!(rest.len(), 2048 - KID_LEN);
        assert_eq!(bucket(1), Some(1024));
        assert_eq!(bucket(1025), Some(2048));
        assert_eq!(bucket(65537), None);
        let p = padded(&PeerBody::Text("hi".into()), 100).unwrap();
        assert_eq!(p.len(), 100);
        assert!(unpadded::<PeerBody>(&p).is_some());
        let mut junk = p.clone();
        junk[99] = 1;
        assert!(unpadded::<PeerBody>(&junk).is_none());
        assert!(padded(&PeerBody::Text("x".repeat(200)), 100).is_none());
    }

    #[test]
    fn the_sas_depends_on_every_input_and_has_six_digits() {
        let (h, a, b) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let code = sas(&h, &a, &b);
        assert_eq!(code.len(), 6);
        assert!(code.bytes().all(|c| c.is_ascii_digit()));
        assert_ne!(code, sas(&[9; 32], &a, &b));
        assert_ne!(code, sas(&h, &b, &a));
        assert_ne!(sas_commitment(&a), sas_commitment(&b));
        assert_ne!(transcript_message(true, &h), transcript_message(false, &h));
        assert_ne!(
            rekey_message(true, &h, 1, &a),
            rekey_message(false, &h, 1, &a)
        );
        assert_ne!(
            rekey_message(false, &h, 1, &a),
            rekey_message(false, &h, 2, &a)
        );
    }
}
