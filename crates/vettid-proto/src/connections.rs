//! Connections between members' vaults, as the app sees them (inside the session; the vault
//! must have been unlocked in it). What travels between the vaults is in [`crate::peer`].
//!
//! ```text
//! invitee: Accept ──► Requested ──Welcome──► PendingReview ─┐
//! inviter:            (Hello) ──► Confirming ──Confirm──► PendingReview ─┤
//!                                                                        ├─ approve ──► Accepted ──(peer's approval)──► Active
//!                                                                        └─ reject  ──► Rejected
//! Active ── revoke (either side; the peer is told) ──► Revoked
//! any ──── block (the peer is not told; its vault's keys are refused from then on) ──► Blocked
//! ```
//!
//! An active connection's keys rotate by epochs: `Rotate` (or either vault on its own) sends
//! a fresh X-Wing key signed with the vault's pinned identity key; the peer answers with a
//! signed ciphertext; both derive the next epoch's keys from the current ones and the KEM
//! secret, and keep the previous epoch's receiving key for [`PREVIOUS_EPOCH_SECS`] only.

use serde::{Deserialize, Serialize};

/// A connection's id (random, made by each vault for its own record).
pub type ConnectionId = [u8; 16];
/// An invitation's id.
pub type InvitationId = [u8; 16];

/// Pending invitations a vault holds at most.
pub const MAX_PENDING_INVITATIONS: usize = 10;
/// An invitation's default lifetime.
pub const DEFAULT_INVITATION_SECS: u64 = 24 * 3600;
/// An invitation's longest lifetime.
pub const MAX_INVITATION_SECS: u64 = 7 * 24 * 3600;
/// Longest label (bytes).
pub const MAX_LABEL: usize = 64;
/// How long a vault still opens messages under a connection's previous epoch (16 days).
pub const PREVIOUS_EPOCH_SECS: u64 = 16 * 24 * 3600;
/// Members a vault blocks at most.
pub const MAX_BLOCKED: usize = 10_000;
/// Fields or categories one request asks for at most.
pub const MAX_ASK_TARGETS: usize = 16;
/// Requests from one peer that wait for the member's decision at most (later ones are dropped).
pub const MAX_PENDING_ASKS: usize = 20;
/// Requests from one peer a vault keeps at most (the oldest decided ones make room; when
/// none is decided, later ones are dropped).
pub const MAX_KEPT_ASKS: usize = 100;
/// Uses of a grant at most (the first answer is one).
pub const MAX_GRANT_USES: u32 = 100;
/// A grant's default lifetime (7 days).
pub const DEFAULT_GRANT_SECS: u64 = 7 * 24 * 3600;
/// A grant's longest lifetime (365 days).
pub const MAX_GRANT_SECS: u64 = 365 * 24 * 3600;
/// A request's id.
pub type RequestId = [u8; 16];

/// What a member lets one connection's peer do (offered at the handshake, changeable at any
/// time; the peer's vault is told, and this vault enforces it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Send messages.
    pub messaging: bool,
    /// Call.
    pub calling: bool,
    /// Ask this member to present a credential.
    pub presentation: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            messaging: true,
            calling: true,
            presentation: false,
        }
    }
}

/// How a connection's requests for more of the profile are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShareRule {
    /// The member decides each (a feed item and an event; the default).
    Ask,
    /// Granted at once, once, for [`DEFAULT_GRANT_SECS`], and only what the member shares
    /// openly: non-sensitive fields no override withholds from the connection.
    Auto,
}

impl ShareRule {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ShareRule::Ask => "ask",
            ShareRule::Auto => "auto",
        }
    }

    /// The rule named `s`.
    pub fn parse(s: &str) -> Option<ShareRule> {
        [ShareRule::Ask, ShareRule::Auto]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// A request's answer, from the vault asked.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AskAnswer {
    /// Granted: the values now, and how many more fetches the grant allows until when.
    Granted {
        /// The fields asked for that the member has.
        values: Vec<(String, String)>,
        /// Fetches left.
        uses_left: u32,
        /// When the grant ends (the granting vault's clock).
        expires_ms: u64,
    },
    /// Denied.
    Denied,
    /// The grant ended (used up, expired, or ended by the member): the values go.
    Ended,
}

crate::redact::redacted_debug!(AskAnswer);

/// Where a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestState {
    /// Waiting for the asked member's decision.
    Pending,
    /// Granted (values may be fetched while uses last).
    Granted,
    /// Denied.
    Denied,
    /// Used up, expired or ended.
    Ended,
}

impl RequestState {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Granted => "granted",
            RequestState::Denied => "denied",
            RequestState::Ended => "ended",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<RequestState> {
        [
            RequestState::Pending,
            RequestState::Granted,
            RequestState::Denied,
            RequestState::Ended,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// A request for more of a profile, either way.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestView {
    /// Its id in this vault.
    pub id: RequestId,
    /// On which connection.
    pub connection: ConnectionId,
    /// The peer asked this member (`false`: this member asked the peer).
    pub incoming: bool,
    /// What was asked for.
    pub targets: Vec<crate::profile::ShareTarget>,
    /// Where it is.
    pub state: RequestState,
    /// When it was asked.
    pub asked_ms: u64,
    /// Fetches the grant has left.
    pub uses_left: Option<u32>,
    /// When the grant ends.
    pub expires_ms: Option<u64>,
    /// The values received (asked by this member, granted, not expired).
    pub values: Vec<(String, String)>,
    /// Asked of this member: the keys of the fields a grant gives (while it waits for the
    /// decision, what granting it now would give; once granted, what it gave).
    pub would_share: Vec<String>,
}

impl std::fmt::Debug for RequestView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestView")
            .field("id", &crate::redact::Hex(&self.id))
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectionState {
    /// The invitee's vault sent its hello and waits for the inviter's vault.
    Requested,
    /// The inviter's vault answered a hello and waits for the invitee's confirmation.
    Confirming,
    /// Keys are agreed and the peer's profile is here: the member reviews it (and compares
    /// the SAS) and approves or rejects.
    PendingReview,
    /// This member approved; the peer's member has not yet.
    Accepted,
    /// Both approved: messages flow.
    Active,
    /// One side rejected.
    Rejected,
    /// One side ended it; its keys are erased.
    Revoked,
    /// This member blocked the peer: its keys are erased and the peer's vault is refused (its
    /// invitations, hellos and messages dropped without an answer) until unblocked.
    Blocked,
}

impl ConnectionState {
    /// Every state.
    pub const ALL: [ConnectionState; 8] = [
        ConnectionState::Requested,
        ConnectionState::Confirming,
        ConnectionState::PendingReview,
        ConnectionState::Accepted,
        ConnectionState::Active,
        ConnectionState::Rejected,
        ConnectionState::Revoked,
        ConnectionState::Blocked,
    ];

    /// The state named `s` ([`ConnectionState::as_str`]).
    pub fn parse(s: &str) -> Option<ConnectionState> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Requested => "requested",
            ConnectionState::Confirming => "confirming",
            ConnectionState::PendingReview => "pending-review",
            ConnectionState::Accepted => "accepted",
            ConnectionState::Active => "active",
            ConnectionState::Rejected => "rejected",
            ConnectionState::Revoked => "revoked",
            ConnectionState::Blocked => "blocked",
        }
    }
}

/// Connection operations.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectionOp {
    /// Make an invitation.
    Invite {
        /// A label for the member's own lists (never sent), ≤ [`MAX_LABEL`] bytes.
        label: Option<String>,
        /// Lifetime in seconds (default [`DEFAULT_INVITATION_SECS`], at most
        /// [`MAX_INVITATION_SECS`]).
        expires_in_secs: Option<u64>,
        /// To be scanned in person: the SAS is not required.
        in_person: bool,
    },
    /// Pending invitations.
    Invitations,
    /// Cancel a pending invitation.
    Cancel(InvitationId),
    /// Cancel an invitation (pending or expired) and make a new one with its label and kind:
    /// the new one answers `Invited`.
    Resend {
        /// The invitation.
        id: InvitationId,
        /// The new one's lifetime (default [`DEFAULT_INVITATION_SECS`]).
        expires_in_secs: Option<u64>,
    },
    /// Connect with the vault that made `invitation` (the app decoded it).
    Accept(crate::peer::Invitation),
    /// Every connection.
    List,
    /// One connection.
    Show(ConnectionId),
    /// Approve a connection under review; `sas` is the code the member read on the peer's
    /// device (required unless the invitation was scanned in person).
    Approve {
        /// Which.
        id: ConnectionId,
        /// The peer's code.
        sas: Option<String>,
    },
    /// Reject a connection under review (the peer is told).
    Reject(ConnectionId),
    /// End a connection (the peer is told; both erase its keys).
    Revoke(ConnectionId),
    /// End every connection (each peer is told) and cancel every pending invitation: for an
    /// account the member thinks compromised.
    RevokeAll,
    /// Block the peer of a connection: every connection with its vault ends without telling
    /// it, and its vault is refused from then on.
    Block(ConnectionId),
    /// Lift the block made from this connection (its connections stay ended: connect again).
    Unblock(ConnectionId),
    /// Blocked members.
    Blocked,
    /// Open the next epoch of an active connection's keys.
    Rotate(ConnectionId),
    /// How the peer's requests for more are answered.
    SetRule {
        /// Which connection.
        id: ConnectionId,
        /// The rule.
        rule: ShareRule,
    },
    /// What the peer may do on the connection (the peer's vault is told).
    Allow {
        /// Which connection.
        id: ConnectionId,
        /// What it may do.
        capabilities: Capabilities,
    },
    /// Ask the peer for more of its profile (1–[`MAX_ASK_TARGETS`] fields or categories).
    Ask {
        /// Which connection.
        id: ConnectionId,
        /// What.
        targets: Vec<crate::profile::ShareTarget>,
    },
    /// Requests, both ways (of one connection, or all), newest first.
    Requests(Option<ConnectionId>),
    /// Grant a peer's pending request: the values go now (one use), and the peer may fetch
    /// them again `uses - 1` times until the grant expires.
    Grant {
        /// The request (this vault's id for it).
        request: RequestId,
        /// 1–[`MAX_GRANT_USES`] (default 1).
        uses: Option<u32>,
        /// Lifetime (default [`DEFAULT_GRANT_SECS`], at most [`MAX_GRANT_SECS`]).
        expires_in_secs: Option<u64>,
    },
    /// Deny a peer's pending request (the peer is told).
    Deny(RequestId),
    /// Fetch the current values of a request the peer granted (one of its uses).
    Fetch(RequestId),
    /// End a grant early: the peer is told and its vault erases the values.
    EndGrant(RequestId),
}

crate::redact::redacted_debug!(ConnectionOp);

/// A pending invitation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationView {
    /// Its id.
    pub id: InvitationId,
    /// Its label.
    pub label: Option<String>,
    /// When it expires.
    pub expires_ms: u64,
    /// Made to be scanned in person.
    pub in_person: bool,
}

/// A connection as the app sees it (`Debug` shows its id and state only).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionView {
    /// Its id in this vault.
    pub id: ConnectionId,
    /// Where it is.
    pub state: ConnectionState,
    /// This vault made the invitation.
    pub inviter: bool,
    /// The invitation's label (inviter side).
    pub label: Option<String>,
    /// The peer vault's identity key (pinned), once known.
    pub peer_identity: Option<[u8; 32]>,
    /// The peer's member id (where its vault is reached), once known.
    pub peer_member: Option<String>,
    /// What the peer shares with this connection.
    pub peer_profile: Vec<(String, String)>,
    /// The six-digit code to compare with the peer's, once keys are agreed.
    pub sas: Option<String>,
    /// Whether approving needs the peer's code.
    pub sas_required: bool,
    /// This member approved.
    pub we_accepted: bool,
    /// The peer's member approved.
    pub they_accepted: bool,
    /// How the peer's requests for more are answered.
    pub rule: ShareRule,
    /// What this member lets the peer do.
    pub capabilities: Capabilities,
    /// What the peer lets this member do, once it said.
    pub peer_capabilities: Option<Capabilities>,
    /// When it was made (the host's clock).
    pub created_ms: u64,
    /// The epoch of its keys (0 from the handshake, one more at each rotation).
    pub epoch: u32,
    /// A rotation of its keys is under way.
    pub rotating: bool,
    /// The peer's vault once presented another identity key than the pinned one (refused:
    /// the connection kept the pinned key; connect again to trust a new one).
    pub identity_changed: bool,
}

/// A blocked member, as the block was made.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockView {
    /// The connection the block was made from (what `Unblock` takes).
    pub connection: ConnectionId,
    /// Its label.
    pub label: Option<String>,
    /// The peer's member id, if it was known.
    pub peer_member: Option<String>,
    /// When.
    pub since_ms: u64,
}

impl std::fmt::Debug for BlockView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockView")
            .field("connection", &crate::redact::Hex(&self.connection))
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ConnectionView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionView")
            .field("id", &crate::redact::Hex(&self.id))
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Answers to [`ConnectionOp`]s.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectionReply {
    /// A new invitation, to show.
    Invited {
        /// Its id.
        id: InvitationId,
        /// The invitation.
        invitation: crate::peer::Invitation,
    },
    /// Pending invitations.
    Invitations(Vec<InvitationView>),
    /// The connection the accepted invitation started.
    Requested(ConnectionId),
    /// Connections, newest first.
    Connections(Vec<ConnectionView>),
    /// One connection.
    Connection(Box<ConnectionView>),
    /// Blocked members, newest first.
    Blocked(Vec<BlockView>),
    /// How many connections `RevokeAll` ended.
    RevokedAll(u32),
    /// The request asked of the peer.
    Asked(RequestId),
    /// Requests, newest first.
    Requests(Vec<RequestView>),
    /// Done.
    Done,
}

crate::redact::redacted_debug!(ConnectionReply);

/// Why a connection operation was refused: nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ConnectionError {
    /// The invitation does not decode, or is of an unknown version.
    #[error("not a VettID invitation (or of an unknown version)")]
    BadInvitation,
    /// The invitation expired.
    #[error("the invitation expired")]
    Expired,
    /// This vault made the invitation.
    #[error("this is your own invitation")]
    OwnInvitation,
    /// Already [`MAX_PENDING_INVITATIONS`] pending.
    #[error("at most {MAX_PENDING_INVITATIONS} invitations may be pending; cancel one")]
    TooManyInvitations,
    /// Already [`MAX_PENDING_INVITATIONS`] requests wait for an inviter's answer.
    #[error("at most {MAX_PENDING_INVITATIONS} requests may wait for an answer; revoke one")]
    TooManyRequests,
    /// A label is at most [`MAX_LABEL`] bytes without control characters; a lifetime at most
    /// [`MAX_INVITATION_SECS`].
    #[error(
        "a label is 1-{MAX_LABEL} bytes without control characters; an invitation lives at most 7 days"
    )]
    BadInvitationSettings,
    /// No such connection or pending invitation.
    #[error("no such connection or invitation")]
    Unknown,
    /// Not possible in the connection's state.
    #[error("not possible while the connection is {}", .0.as_str())]
    WrongState(ConnectionState),
    /// Approving needs the peer's six-digit code.
    #[error("compare the six-digit code with the peer and give it to approve")]
    SasRequired,
    /// The code given is not this connection's: someone may be in the middle. Nothing was
    /// approved; reject the connection unless it was a typing mistake.
    #[error("the code does not match: do not approve (someone may be in the middle)")]
    SasMismatch,
    /// The invitation is from a member this member blocked.
    #[error("you blocked this member: unblock them first")]
    Blocked,
    /// Already [`MAX_BLOCKED`] members are blocked.
    #[error("at most {MAX_BLOCKED} members may be blocked")]
    TooManyBlocked,
    /// A request names 1–[`MAX_ASK_TARGETS`] valid fields or categories; a grant 1–100 uses and
    /// at most 365 days.
    #[error(
        "a request names 1-{MAX_ASK_TARGETS} fields or categories; a grant has 1-{MAX_GRANT_USES} uses and lasts at most 365 days"
    )]
    BadRequest,
    /// No such request (or not one this operation applies to: granting needs a peer's pending
    /// request, fetching a grant the peer gave).
    #[error("no such request (see `connections requests`)")]
    UnknownRequest,
    /// The grant is used up, expired or ended.
    #[error("the grant is used up, expired or ended: ask again")]
    GrantEnded,
}
