//! The app ↔ enclave session (`docs/PROTOCOL.md`).
//!
//! **Outside** the encryption, on `OwnerSpace.<member>.forVault.<channel>` ([`FromApp`] and
//! [`ToApp`], postcard): an attestation request carrying the app's nonce, the three Noise
//! `XKpsk3` handshake messages, and transport messages each tagged with its counter. The host
//! and NATS see only these.
//!
//! **Inside** the encryption: a typed envelope ([`Request`]: version, id, timestamp, op) and
//! its [`Reply`]. The enclave accepts a request only if its counter is above every counter it
//! has accepted on that session (no replay, no reordering), its envelope id equals that
//! counter, and its timestamp is within [`MAX_SKEW_MS`] of the host's clock.
//!
//! Vault → app **events** ([`SealedEvent`]) go to `OwnerSpace.<member>.forApp.vault` through
//! JetStream, sealed under the vault's event key, which only the vault and its apps hold.

use crate::enclave::{SignedVersion, VaultError};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Envelope format version (2: typed errors, and every reply carries the vault's signed
/// version when the session holds its unlock; `docs/PROTOCOL.md`).
pub const VERSION: u16 = 2;
/// How far a request's timestamp may be from the host's clock.
pub const MAX_SKEW_MS: u64 = 5 * 60 * 1000;
/// Bytes of entropy in a recovery phrase (128 bits: 12 BIP-39 words with their checksum).
pub const RECOVERY_BYTES: usize = 16;
/// The event subject token: `OwnerSpace.<member>.forApp.vault`.
pub const EVENT_TOKEN: &str = "vault";

/// A session identifier (random, chosen by the enclave).
pub type SessionId = [u8; 16];

/// The coarse channel named in the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Channel {
    /// Attestation documents for a fresh nonce.
    Attestation,
    /// Sessions of an app being enrolled: only [`AppOp::Enroll`].
    Enroll,
    /// Sessions of an enrolled app (its device key must be registered in the vault).
    Session,
}

impl Channel {
    /// The subject token.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Attestation => "attestation",
            Channel::Enroll => "enroll",
            Channel::Session => "session",
        }
    }

    /// Parses a subject token.
    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "attestation" => Some(Channel::Attestation),
            "enroll" => Some(Channel::Enroll),
            "session" => Some(Channel::Session),
            _ => None,
        }
    }
}

/// Plaintexts inside the session are padded with zeros to a multiple of this, so that lengths
/// (of a PIN, a name, a value) do not show through the encryption within a bucket.
pub const PAD_TO: usize = 256;

/// Encodes `value` (postcard) and pads it with zeros to a multiple of [`PAD_TO`].
pub fn seal_plaintext<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoded once into a buffer that is wiped, then copied into one of the final size (a
    // resize could leave an unpadded copy of secrets behind in freed memory).
    let bytes =
        Zeroizing::new(postcard::to_allocvec(value).expect("session messages always encode"));
    let mut padded = vec![0u8; bytes.len().div_ceil(PAD_TO).max(1) * PAD_TO];
    padded[..bytes.len()].copy_from_slice(&bytes);
    padded
}

/// Decodes a padded plaintext: the value, then only zeros, less than [`PAD_TO`] of them.
pub fn open_plaintext<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
    let (value, rest) = postcard::take_from_bytes(bytes).ok()?;
    (rest.len() < PAD_TO && rest.iter().all(|b| *b == 0)).then_some(value)
}

/// Decodes an outer message (postcard) that must fill `bytes` exactly.
pub fn decode_exact<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
    let (value, rest) = postcard::take_from_bytes(bytes).ok()?;
    rest.is_empty().then_some(value)
}

/// The Noise prologue: binds the handshake to the member and channel the app addressed, so a
/// host cannot move it to another vault or channel.
pub fn prologue(member: &str, channel: Channel) -> Vec<u8> {
    [
        b"vettid/v1/session\0".as_slice(),
        member.as_bytes(),
        &[0],
        channel.as_str().as_bytes(),
    ]
    .concat()
}

/// The attestation document's `user_data` binds the enclave's X-Wing key by this hash.
pub fn kem_binding(kem_public_key: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"vettid/v1/kem-key\0");
    h.update(kem_public_key);
    h.finalize().into()
}

/// App → vault, outside the encryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromApp {
    /// An attestation document binding this nonce and the enclave's session keys.
    Attest {
        /// Fresh random nonce.
        nonce: [u8; 32],
    },
    /// Handshake message 1 (`-> e, es`); its payload is the X-Wing ciphertext.
    Hello {
        /// The Noise message.
        #[serde(with = "serde_bytes")]
        msg: Vec<u8>,
    },
    /// Handshake message 3 (`-> s, se, psk`).
    Finish {
        /// The session from [`ToApp::Accept`].
        session: SessionId,
        /// The Noise message.
        #[serde(with = "serde_bytes")]
        msg: Vec<u8>,
    },
    /// A transport message carrying a [`Request`].
    Request {
        /// The session.
        session: SessionId,
        /// Noise nonce, strictly increasing per session; equals the envelope id.
        counter: u64,
        /// Encrypted [`Request`].
        #[serde(with = "serde_bytes")]
        ciphertext: Vec<u8>,
    },
}

/// Vault → app, outside the encryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToApp {
    /// An attestation document and the X-Wing key it binds through `user_data`.
    Attestation {
        /// COSE_Sign1 attestation document (Nitro format).
        #[serde(with = "serde_bytes")]
        doc: Vec<u8>,
        /// The enclave's X-Wing public key.
        #[serde(with = "serde_bytes")]
        kem_public_key: Vec<u8>,
    },
    /// Handshake message 2 (`<- e, ee`).
    Accept {
        /// Names the session from now on.
        session: SessionId,
        /// The Noise message.
        #[serde(with = "serde_bytes")]
        msg: Vec<u8>,
    },
    /// The handshake is complete.
    Established {
        /// The session.
        session: SessionId,
    },
    /// A transport message carrying a [`Reply`].
    Reply {
        /// The request's counter (the reply's Noise nonce in the other direction).
        counter: u64,
        /// Encrypted [`Reply`].
        #[serde(with = "serde_bytes")]
        ciphertext: Vec<u8>,
    },
    /// The message was refused outside the encryption.
    Refused(SessionError),
}

/// Why a session message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SessionError {
    /// The message does not decode.
    #[error("malformed message")]
    Malformed,
    /// This message does not belong on this channel.
    #[error("wrong channel for this message")]
    WrongChannel,
    /// No such session (expired, or the enclave restarted): handshake again.
    #[error("unknown or expired session")]
    UnknownSession,
    /// A handshake or transport message did not authenticate.
    #[error("handshake or decryption failed")]
    Crypto,
    /// The app's device key is not registered in this vault.
    #[error("device not registered with this vault")]
    DeviceNotRegistered,
    /// The counter is not above every counter already accepted: a replay or reordering.
    #[error("replayed or reordered request")]
    Replayed,
    /// The request's timestamp is too far from the clock.
    #[error("stale request")]
    Stale,
    /// The envelope's version or id does not match.
    #[error("bad envelope")]
    BadEnvelope,
    /// The enclave has too many sessions in progress.
    #[error("too many sessions; retry later")]
    Busy,
    /// The enclave could not produce an attestation document.
    #[error("attestation unavailable")]
    AttestationUnavailable,
    /// The host could not reach the enclave (restarting); retry (a new handshake if the
    /// session is gone).
    #[error("vault service unavailable; retry")]
    Unavailable,
}

/// The envelope inside the encryption, app → vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// [`VERSION`].
    pub version: u16,
    /// Equals the transport counter.
    pub id: u64,
    /// The app's clock, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// What to do.
    pub op: AppOp,
}

/// The envelope inside the encryption, vault → app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// [`VERSION`].
    pub version: u16,
    /// The request's id.
    pub id: u64,
    /// The outcome.
    pub result: Result<AppReply, VaultError>,
    /// The vault's signed state version, taken with the answer under the vault's lock, in
    /// every answer about the vault's state (enroll, unlock, each domain answer and domain
    /// refusal, credential, status and whoami while the vault is open): the app checks every
    /// one against the highest it has seen (rollback and fork), reads as well as writes.
    pub vault_version: Option<SignedVersion>,
}

/// An operation an app sends, with the type of its answer: what the SDK's one generic call
/// returns for it.
pub trait Operation: Into<AppOp> {
    /// The answer on success.
    type Reply;
    /// The answer out of the envelope's [`AppReply`]; `None` when it is of another kind.
    fn reply(reply: AppReply) -> Option<Self::Reply>;
}

/// A domain's operation enum travels as one [`AppOp`] variant and is answered by one
/// [`AppReply`] variant of the same name.
macro_rules! domain_operations {
    ($($variant:ident($op:ty) => $reply:ty),+ $(,)?) => {$(
        impl From<$op> for AppOp {
            fn from(op: $op) -> AppOp {
                AppOp::$variant(op)
            }
        }

        impl Operation for $op {
            type Reply = $reply;
            fn reply(reply: AppReply) -> Option<$reply> {
                match reply {
                    AppReply::$variant(r) => Some(*r),
                    _ => None,
                }
            }
        }
    )+};
}

domain_operations!(
    Secrets(crate::secrets::SecretOp) => crate::secrets::SecretReply,
    Feed(crate::feed::FeedOp) => crate::feed::FeedReply,
    Profile(crate::profile::ProfileOp) => crate::profile::ProfileReply,
    Backup(crate::backup::BackupOp) => crate::backup::BackupReply,
    Devices(crate::devices::DeviceOp) => crate::devices::DeviceReply,
    Connections(crate::connections::ConnectionOp) => crate::connections::ConnectionReply,
    Messages(crate::messages::MessageOp) => crate::messages::MessageReply,
);

/// Operations an app asks of its vault.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppOp {
    /// Enrollment (channel [`Channel::Enroll`] only): create the vault under `pin`, register
    /// this session's device key, and make the credential holding `password_verifier`.
    Enroll {
        /// The PIN (wiped when dropped; same encoding as bytes).
        pin: Zeroizing<Vec<u8>>,
        /// Argon2id of the password, computed by the app (the password never leaves it).
        password_verifier: Zeroizing<[u8; 32]>,
        /// A name for this device, for the member's own lists.
        device_name: String,
        /// The device key this device registers with the API, proven held for this
        /// session's key.
        device: crate::auth::DeviceBinding,
    },
    /// Open the vault with its PIN.
    Unlock {
        /// The PIN (wiped when dropped).
        pin: Zeroizing<Vec<u8>>,
    },
    /// Forget the vault's keys in memory.
    Lock,
    /// Residency and guess-limit state.
    Status,
    /// Who this vault is (identity keys and current version).
    Whoami,
    /// Does nothing; measures the session.
    Ping,
    /// The secrets store (the vault must have been unlocked in this session).
    Secrets(crate::secrets::SecretOp),
    /// The feed and the audit log (the vault must have been unlocked in this session).
    Feed(crate::feed::FeedOp),
    /// The split-custody credential (unlocked in this session, plus the blob and the
    /// password verifier; wrong verifiers are counted).
    Credential {
        /// The blob the app holds.
        #[serde(with = "serde_bytes")]
        blob: Vec<u8>,
        /// Argon2id of the password.
        verifier: Zeroizing<[u8; 32]>,
        /// What to do.
        op: crate::credential::CredentialOp,
        /// The app's id of this request, random, the same in every retry of it: a retry with
        /// the blob that was current (its answer lost) gets the same answer.
        request: [u8; 16],
    },
    /// Personal data and the public profile (the vault must have been unlocked in this session).
    Profile(crate::profile::ProfileOp),
    /// The highest version this app has seen, signed by the vault: the enclave refuses to
    /// serve this session (and raises its own mark) a state that does not extend it.
    Anchor {
        /// The version, as the vault signed it.
        seen: SignedVersion,
    },
    /// Backups (the vault must have been unlocked in this session).
    Backup(crate::backup::BackupOp),
    /// The member's devices (the vault must have been unlocked in this session).
    Devices(crate::devices::DeviceOp),
    /// Connections with other members' vaults (the vault must have been unlocked in this
    /// session).
    Connections(crate::connections::ConnectionOp),
    /// Messages on connections (the vault must have been unlocked in this session).
    Messages(crate::messages::MessageOp),
    /// A member who forgot the PIN sets a new one with the recovery phrase (counted with the
    /// PIN's attempts); the vault is then open in this session ([`AppReply::Unlocked`]).
    ResetPin {
        /// The phrase's entropy (the app decodes the words).
        phrase: Zeroizing<[u8; RECOVERY_BYTES]>,
        /// The new PIN.
        new_pin: Zeroizing<Vec<u8>>,
    },
    /// Staged recovery's last step (channel [`Channel::Enroll`] only, from a device the vault
    /// does not know, after the API's delay): prove the PIN or the recovery phrase, and the
    /// vault re-keys to this session's device — every other device is removed — and makes a
    /// new credential around `password_verifier`. Refused while an enrolled device has
    /// unlocked the vault within the enclave's recovery delay.
    Recover {
        /// What the member knows.
        proof: RecoveryProof,
        /// Argon2id of the password of the new credential.
        password_verifier: Zeroizing<[u8; 32]>,
        /// A name for the new device.
        device_name: String,
        /// The new device's key, proven held for this session's key.
        device: crate::auth::DeviceBinding,
    },
}

/// What a member proves to recover their vault on a new device.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecoveryProof {
    /// The PIN (kept): not accepted once the guess limit has locked the vault.
    Pin(Zeroizing<Vec<u8>>),
    /// The recovery phrase, and the PIN from now on: the only way back into a vault the guess
    /// limit locked. Wrong phrases are counted against their own limit.
    Phrase {
        /// The phrase's entropy (the app decodes the words).
        phrase: Zeroizing<[u8; RECOVERY_BYTES]>,
        /// The new PIN.
        new_pin: Zeroizing<Vec<u8>>,
    },
}

crate::redact::redacted_debug!(RecoveryProof);

// Never print PINs, verifiers or content: the variant name only.
crate::redact::redacted_debug!(AppOp);

/// Successful answers to [`AppOp`]s.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppReply {
    /// Answer to [`AppOp::Enroll`].
    Enrolled(Box<Enrolled>),
    /// The vault is open at this version; `event_key` opens its events.
    Unlocked {
        /// The signed state version.
        version: SignedVersion,
        /// The key of [`SealedEvent`]s.
        event_key: Zeroizing<[u8; 32]>,
    },
    /// Locked.
    Locked,
    /// Answer to [`AppOp::Status`].
    Status {
        /// Whether the vault is unlocked.
        unlocked: bool,
        /// Wrong PINs left before the vault locks (0: locked out).
        attempts_left: u32,
        /// The state version, when unlocked.
        version: Option<SignedVersion>,
    },
    /// Answer to [`AppOp::Whoami`].
    Whoami {
        /// The member (vault id).
        member: String,
        /// Ed25519 identity public key.
        identity_public_key: [u8; 32],
        /// The device key of this session.
        device_public_key: [u8; 32],
        /// The state version, when unlocked.
        version: Option<SignedVersion>,
    },
    /// Answer to [`AppOp::Ping`].
    Pong,
    /// Answer to [`AppOp::Secrets`].
    Secrets(Box<crate::secrets::SecretReply>),
    /// Answer to [`AppOp::Feed`].
    Feed(Box<crate::feed::FeedReply>),
    /// Answer to [`AppOp::Credential`].
    Credential(Box<crate::credential::CredentialReply>),
    /// Answer to [`AppOp::Profile`].
    Profile(Box<crate::profile::ProfileReply>),
    /// Answer to [`AppOp::Anchor`]: the vault's state extends it (checked now if the vault is
    /// open, else at the unlock).
    Anchored,
    /// Answer to [`AppOp::Backup`].
    Backup(Box<crate::backup::BackupReply>),
    /// Answer to [`AppOp::Devices`].
    Devices(Box<crate::devices::DeviceReply>),
    /// Answer to [`AppOp::Recover`]: the vault is this device's now, and open in this session.
    Recovered(Box<Recovered>),
    /// Answer to [`AppOp::Connections`].
    Connections(Box<crate::connections::ConnectionReply>),
    /// Answer to [`AppOp::Messages`].
    Messages(Box<crate::messages::MessageReply>),
}

// Never print the event key, the credential or vault data: the variant name only.
crate::redact::redacted_debug!(AppReply);

/// What enrollment returns.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolled {
    /// Ed25519 identity public key of the new vault.
    pub identity_public_key: [u8; 32],
    /// X25519 exchange public key of the new vault.
    pub exchange_public_key: [u8; 32],
    /// The split-custody credential: the app keeps it; only the vault can open it.
    #[serde(with = "serde_bytes")]
    pub credential: Vec<u8>,
    /// The key of [`SealedEvent`]s.
    pub event_key: Zeroizing<[u8; 32]>,
    /// The vault's first signed version.
    pub version: SignedVersion,
    /// The recovery phrase's entropy, made in the enclave and shown to the member once (the
    /// vault keeps only keys wrapped under it: the master key, and the backup key).
    pub recovery_phrase: Zeroizing<[u8; RECOVERY_BYTES]>,
    /// An attestation document of this enclave whose `user_data` is
    /// [`crate::auth::enrolled_device_binding`] for the member, this session's key, the
    /// enrolled device key and the identity key: the API registers the device with it.
    #[serde(with = "serde_bytes")]
    pub device_attestation: Vec<u8>,
}

/// What a recovery gives the new device.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovered {
    /// The vault's Ed25519 identity public key (unchanged by the recovery).
    pub identity_public_key: [u8; 32],
    /// The vault's X25519 exchange public key.
    pub exchange_public_key: [u8; 32],
    /// A new split-custody credential around the new password (the lost device's blob no
    /// longer opens).
    #[serde(with = "serde_bytes")]
    pub credential: Vec<u8>,
    /// The key of [`SealedEvent`]s.
    pub event_key: Zeroizing<[u8; 32]>,
    /// The vault's signed version after the recovery.
    pub version: SignedVersion,
    /// How many devices the recovery removed.
    pub removed_devices: u32,
    /// An attestation document of this enclave whose `user_data` is
    /// [`crate::auth::recovered_device_binding`] for the member, this session's key, the new
    /// device key and the identity key: the API replaces the member's devices with it.
    #[serde(with = "serde_bytes")]
    pub device_attestation: Vec<u8>,
}

crate::redact::redacted_debug!(Recovered);

/// An event as published: sealed under the vault's event key with
/// `vettid/v1/event ‖ member ‖ id` as associated data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedEvent {
    /// Random id (also the JetStream de-duplication id).
    pub id: [u8; 16],
    /// XChaCha20-Poly1305 of an [`Event`].
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

/// The subject token on which an app asks the **host** for its pending events:
/// `OwnerSpace.<member>.forVault.events`. The host fetches them from the member's durable
/// consumer (members have no JetStream rights) and answers only into the member's own inbox.
pub const EVENTS_CHANNEL: &str = "events";

/// Most events one [`FetchEvents`] returns.
pub const MAX_FETCH: u16 = 256;
/// Longest wait for the first event, milliseconds.
pub const MAX_FETCH_WAIT_MS: u32 = 10_000;

/// App → host on [`EVENTS_CHANNEL`]: up to `max` pending events, waiting at most `wait_ms` for
/// the first. The host acknowledges what it returns (they are not delivered again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchEvents {
    /// At most this many (capped at [`MAX_FETCH`]).
    pub max: u16,
    /// Waiting at most this long (capped at [`MAX_FETCH_WAIT_MS`]).
    pub wait_ms: u32,
}

/// Host → app on [`EVENTS_CHANNEL`]: the events, each a postcard [`SealedEvent`] as the vault
/// sealed it (the host cannot read them), oldest first; or why there are none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchedEvents {
    /// The events.
    Events(Vec<Vec<u8>>),
    /// The request did not decode.
    Malformed,
    /// The events could not be fetched now; retry.
    Unavailable,
}

/// The associated data of a [`SealedEvent`].
pub fn event_aad(member: &str, id: &[u8; 16]) -> Vec<u8> {
    [b"vettid/v1/event\0".as_slice(), member.as_bytes(), &[0], id].concat()
}

/// A vault → app event (inside a [`SealedEvent`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The host's clock when it happened (milliseconds since the Unix epoch).
    pub at_ms: u64,
    /// What happened.
    pub kind: EventKind,
}

/// Kinds of [`Event`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// The vault was unlocked from this device.
    Unlocked {
        /// The device key that unlocked it.
        device_public_key: [u8; 32],
    },
    /// The vault was locked.
    Locked,
    /// A connection changed state because of its peer (a request arrived, the peer
    /// approved, rejected or revoked).
    Connection {
        /// Which.
        id: crate::connections::ConnectionId,
        /// Its state now.
        state: crate::connections::ConnectionState,
    },
    /// A message arrived and is stored in the vault.
    Message {
        /// The connection.
        connection: crate::connections::ConnectionId,
        /// The peer's sequence number.
        seq: u64,
    },
    /// The peer's vault stored (`read: false`) or its member read (`read: true`) messages
    /// this member sent.
    Receipt {
        /// The connection.
        connection: crate::connections::ConnectionId,
        /// The sequence numbers.
        seqs: Vec<u64>,
        /// Read, not only delivered.
        read: bool,
    },
    /// A request for more of a profile: a peer asked (`incoming`), or the peer answered one of
    /// this member's.
    Request {
        /// The connection.
        connection: crate::connections::ConnectionId,
        /// The request (this vault's id).
        request: crate::connections::RequestId,
        /// A peer's request to decide.
        incoming: bool,
    },
    /// The peer edited or deleted one of its messages.
    MessageChanged {
        /// The connection.
        connection: crate::connections::ConnectionId,
        /// The peer's sequence number.
        seq: u64,
        /// Deleted for everyone (not only edited).
        deleted: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_round_trip_their_tokens() {
        for c in [Channel::Attestation, Channel::Enroll, Channel::Session] {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
        }
        assert_eq!(Channel::parse("forApp"), None);
    }

    #[test]
    fn prologues_differ_by_member_and_channel() {
        let a = prologue("alice", Channel::Session);
        assert_ne!(a, prologue("bob", Channel::Session));
        assert_ne!(a, prologue("alice", Channel::Enroll));
        // No ambiguity between member and channel.
        assert_ne!(
            prologue("a", Channel::Session),
            prologue("a\0s", Channel::Session)
        );
    }

    #[test]
    fn padding_hides_lengths_within_a_bucket_and_is_checked() {
        let short = seal_plaintext(&AppOp::Unlock {
            pin: Zeroizing::new(b"1234".to_vec()),
        });
        let long = seal_plaintext(&AppOp::Unlock {
            pin: Zeroizing::new(vec![b'9'; 64]),
        });
        assert_eq!(short.len(), PAD_TO);
        assert_eq!(long.len(), PAD_TO);
        assert!(open_plaintext::<AppOp>(&short).is_some());
        let mut junk = short.clone();
        *junk.last_mut().unwrap() = 1;
        assert!(open_plaintext::<AppOp>(&junk).is_none());
        let mut extra = short.clone();
        extra.extend([0u8; PAD_TO]);
        assert!(open_plaintext::<AppOp>(&extra).is_none());
        assert!(open_plaintext::<AppOp>(&[]).is_none());
    }

    #[test]
    fn secrets_do_not_print() {
        let op = AppOp::Unlock {
            pin: Zeroizing::new(b"123456".to_vec()),
        };
        assert_eq!(format!("{op:?}"), "Unlock");
        let r = AppReply::Unlocked {
            version: SignedVersion {
                version: 1,
                identity: vec![],
                signature: vec![],
                change_hash: vec![],
            },
            event_key: Zeroizing::new([7; 32]),
        };
        assert!(!format!("{r:?}").contains('7'));
    }
}
