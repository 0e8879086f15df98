//! Connections with other members and messages on them, from the app: on an [`Unlocked`]
//! session (every answer's vault version is checked there). The vaults do the cryptography
//! between themselves; the app shows invitations, the peer's profile and the six-digit code,
//! and passes on what its member decides.

use crate::ClientError;
use crate::vault::{Seen, Unlocked};
use base64::Engine as _;
use vettid_proto::connections::{
    BlockView, Capabilities, ConnectionId, ConnectionOp, ConnectionReply, ConnectionView,
    InvitationId, InvitationView, RequestId, RequestView, ShareRule,
};
use vettid_proto::messages::{MessageOp, MessageReply, MessageView};
use vettid_proto::peer::Invitation;

/// The prefix of an invitation as text (the QR code and the link carry the same text).
pub const INVITATION_PREFIX: &str = "vettid:connect:";
/// The link form: `vettid://connect/<invitation>`.
pub const LINK_PREFIX: &str = "vettid://connect/";

/// The invitation as text (what a QR code shows and a link carries).
pub fn encode_invitation(invitation: &Invitation) -> String {
    let bytes = zeroize::Zeroizing::new(
        postcard::to_allocvec(invitation).expect("invitations always encode"),
    );
    format!(
        "{INVITATION_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..])
    )
}

/// The invitation's link form.
pub fn invitation_link(invitation: &Invitation) -> String {
    let text = encode_invitation(invitation);
    format!("{LINK_PREFIX}{}", &text[INVITATION_PREFIX.len()..])
}

/// Reads an invitation from its text or link form (surrounding whitespace ignored).
pub fn decode_invitation(text: &str) -> Result<Invitation, ClientError> {
    let text = text.trim();
    let body = text
        .strip_prefix(INVITATION_PREFIX)
        .or_else(|| text.strip_prefix(LINK_PREFIX))
        .ok_or_else(|| ClientError::Protocol("not a VettID invitation".into()))?;
    let bytes = zeroize::Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body.as_bytes())
            .map_err(|_| ClientError::Protocol("the invitation is damaged".into()))?,
    );
    vettid_proto::session::decode_exact(&bytes)
        .ok_or_else(|| ClientError::Protocol("the invitation is damaged".into()))
}

fn unexpected() -> ClientError {
    ClientError::Protocol("unexpected answer to a connection operation".into())
}

impl<S: Seen> Unlocked<S> {
    /// Makes an invitation (`expires_in_secs`: default 24 h, at most 7 days).
    pub async fn invite(
        &mut self,
        label: Option<String>,
        expires_in_secs: Option<u64>,
        in_person: bool,
    ) -> Result<(InvitationId, Invitation), ClientError> {
        match self
            .run(ConnectionOp::Invite {
                label,
                expires_in_secs,
                in_person,
            })
            .await?
        {
            ConnectionReply::Invited { id, invitation } => Ok((id, invitation)),
            _ => Err(unexpected()),
        }
    }

    /// Pending invitations.
    pub async fn invitations(&mut self) -> Result<Vec<InvitationView>, ClientError> {
        match self.run(ConnectionOp::Invitations).await? {
            ConnectionReply::Invitations(all) => Ok(all),
            _ => Err(unexpected()),
        }
    }

    /// Cancels a pending invitation.
    pub async fn cancel_invitation(&mut self, id: InvitationId) -> Result<(), ClientError> {
        self.done(ConnectionOp::Cancel(id)).await
    }

    /// Starts connecting with the vault that made `invitation`: the new connection's id.
    pub async fn accept_invitation(
        &mut self,
        invitation: Invitation,
    ) -> Result<ConnectionId, ClientError> {
        match self.run(ConnectionOp::Accept(invitation)).await? {
            ConnectionReply::Requested(id) => Ok(id),
            _ => Err(unexpected()),
        }
    }

    /// Every connection, newest first.
    pub async fn connections(&mut self) -> Result<Vec<ConnectionView>, ClientError> {
        match self.run(ConnectionOp::List).await? {
            ConnectionReply::Connections(all) => Ok(all),
            _ => Err(unexpected()),
        }
    }

    /// One connection.
    pub async fn connection(&mut self, id: ConnectionId) -> Result<ConnectionView, ClientError> {
        match self.run(ConnectionOp::Show(id)).await? {
            ConnectionReply::Connection(c) => Ok(*c),
            _ => Err(unexpected()),
        }
    }

    /// Approves a connection under review with the code the member read on the peer's device
    /// (`None` only for an invitation scanned in person).
    pub async fn approve_connection(
        &mut self,
        id: ConnectionId,
        sas: Option<String>,
    ) -> Result<(), ClientError> {
        self.done(ConnectionOp::Approve { id, sas }).await
    }

    /// Rejects a connection under review (the peer is told).
    pub async fn reject_connection(&mut self, id: ConnectionId) -> Result<(), ClientError> {
        self.done(ConnectionOp::Reject(id)).await
    }

    /// Ends a connection (the peer is told, both vaults erase its keys).
    pub async fn revoke_connection(&mut self, id: ConnectionId) -> Result<(), ClientError> {
        self.done(ConnectionOp::Revoke(id)).await
    }

    /// Ends every connection (each peer is told) and cancels every pending invitation; how
    /// many connections ended.
    pub async fn revoke_all_connections(&mut self) -> Result<u32, ClientError> {
        match self.run(ConnectionOp::RevokeAll).await? {
            ConnectionReply::RevokedAll(n) => Ok(n),
            _ => Err(unexpected()),
        }
    }

    /// Blocks the peer of a connection: every connection with its vault ends without telling
    /// it, and its vault is refused until unblocked.
    pub async fn block_connection(&mut self, id: ConnectionId) -> Result<(), ClientError> {
        self.done(ConnectionOp::Block(id)).await
    }

    /// Lifts the block made from connection `id`.
    pub async fn unblock_connection(&mut self, id: ConnectionId) -> Result<(), ClientError> {
        self.done(ConnectionOp::Unblock(id)).await
    }

    /// Blocked members, newest first.
    pub async fn blocked_members(&mut self) -> Result<Vec<BlockView>, ClientError> {
        match self.run(ConnectionOp::Blocked).await? {
            ConnectionReply::Blocked(all) => Ok(all),
            _ => Err(unexpected()),
        }
    }

    /// Starts the rotation of an active connection's keys to the next epoch (the vaults finish
    /// it between themselves; [`ConnectionView::epoch`] shows when).
    pub async fn rotate_connection(&mut self, id: ConnectionId) -> Result<(), ClientError> {
        self.done(ConnectionOp::Rotate(id)).await
    }

    /// How the peer's requests for more of this member's profile are answered.
    pub async fn set_share_rule(
        &mut self,
        id: ConnectionId,
        rule: ShareRule,
    ) -> Result<(), ClientError> {
        self.done(ConnectionOp::SetRule { id, rule }).await
    }

    /// What the peer may do on the connection (its vault is told).
    pub async fn allow(
        &mut self,
        id: ConnectionId,
        capabilities: Capabilities,
    ) -> Result<(), ClientError> {
        self.done(ConnectionOp::Allow { id, capabilities }).await
    }

    /// Asks the peer for more of its profile; the request's id.
    pub async fn ask(
        &mut self,
        id: ConnectionId,
        targets: Vec<vettid_proto::profile::ShareTarget>,
    ) -> Result<RequestId, ClientError> {
        match self.run(ConnectionOp::Ask { id, targets }).await? {
            ConnectionReply::Asked(request) => Ok(request),
            _ => Err(unexpected()),
        }
    }

    /// Requests both ways (of one connection, or all), newest first.
    pub async fn requests(
        &mut self,
        connection: Option<ConnectionId>,
    ) -> Result<Vec<RequestView>, ClientError> {
        match self.run(ConnectionOp::Requests(connection)).await? {
            ConnectionReply::Requests(all) => Ok(all),
            _ => Err(unexpected()),
        }
    }

    /// Grants a peer's pending request for `uses` fetches (the first now) until it expires.
    pub async fn grant(
        &mut self,
        request: RequestId,
        uses: Option<u32>,
        expires_in_secs: Option<u64>,
    ) -> Result<(), ClientError> {
        self.done(ConnectionOp::Grant {
            request,
            uses,
            expires_in_secs,
        })
        .await
    }

    /// Denies a peer's pending request.
    pub async fn deny(&mut self, request: RequestId) -> Result<(), ClientError> {
        self.done(ConnectionOp::Deny(request)).await
    }

    /// Fetches the current values of a request the peer granted (one of its uses).
    pub async fn fetch_granted(&mut self, request: RequestId) -> Result<(), ClientError> {
        self.done(ConnectionOp::Fetch(request)).await
    }

    /// Ends a grant this member gave: the peer's vault erases the values.
    pub async fn end_grant(&mut self, request: RequestId) -> Result<(), ClientError> {
        self.done(ConnectionOp::EndGrant(request)).await
    }

    async fn done(&mut self, op: ConnectionOp) -> Result<(), ClientError> {
        match self.run(op).await? {
            ConnectionReply::Done => Ok(()),
            _ => Err(unexpected()),
        }
    }

    /// Sends a text on an active connection with the app's id for it (retry with the same id:
    /// one message); its sequence number.
    pub async fn send_message_with_id(
        &mut self,
        connection: ConnectionId,
        client_id: [u8; 16],
        text: &str,
    ) -> Result<u64, ClientError> {
        match self
            .run(MessageOp::Send {
                connection,
                client_id,
                text: text.to_owned(),
            })
            .await?
        {
            MessageReply::Sent { seq } => Ok(seq),
            _ => Err(unexpected()),
        }
    }

    /// Sends a text on an active connection; its sequence number.
    pub async fn send_message(
        &mut self,
        connection: ConnectionId,
        text: &str,
    ) -> Result<u64, ClientError> {
        let id = vettid_crypto::random_array();
        self.send_message_with_id(connection, id, text).await
    }

    /// A page of a connection's history, newest first (before `before_ms`), and whether older
    /// messages remain.
    pub async fn messages(
        &mut self,
        connection: ConnectionId,
        before_ms: Option<u64>,
        limit: u16,
    ) -> Result<(Vec<MessageView>, bool), ClientError> {
        match self
            .run(MessageOp::List {
                connection,
                before_ms,
                limit,
            })
            .await?
        {
            MessageReply::Messages { messages, more } => Ok((messages, more)),
            _ => Err(unexpected()),
        }
    }

    /// Replaces the text of this member's message `seq` for everyone (within 24 h of sending).
    pub async fn edit_message(
        &mut self,
        connection: ConnectionId,
        seq: u64,
        text: &str,
    ) -> Result<(), ClientError> {
        let op = MessageOp::Edit {
            connection,
            seq,
            text: text.to_owned(),
        };
        match self.run(op).await? {
            MessageReply::Done => Ok(()),
            _ => Err(unexpected()),
        }
    }

    /// Deletes this member's message `seq` for everyone (within 24 h of sending).
    pub async fn delete_message(
        &mut self,
        connection: ConnectionId,
        seq: u64,
    ) -> Result<(), ClientError> {
        match self.run(MessageOp::Delete { connection, seq }).await? {
            MessageReply::Done => Ok(()),
            _ => Err(unexpected()),
        }
    }

    /// Keeps messages `days` days (`None`: for ever) on one connection, or by default.
    pub async fn set_message_retention(
        &mut self,
        connection: Option<ConnectionId>,
        days: Option<u32>,
    ) -> Result<(), ClientError> {
        match self
            .run(MessageOp::SetRetention { connection, days })
            .await?
        {
            MessageReply::Done => Ok(()),
            _ => Err(unexpected()),
        }
    }

    /// The retention in force on one connection, or the default (days; `None`: for ever).
    pub async fn message_retention(
        &mut self,
        connection: Option<ConnectionId>,
    ) -> Result<Option<u32>, ClientError> {
        match self.run(MessageOp::Retention { connection }).await? {
            MessageReply::Retention(days) => Ok(days),
            _ => Err(unexpected()),
        }
    }

    /// Marks the peer's messages up to `seq` read (a read receipt goes to the peer).
    pub async fn mark_read(
        &mut self,
        connection: ConnectionId,
        seq: u64,
    ) -> Result<(), ClientError> {
        match self.run(MessageOp::Read { connection, seq }).await? {
            MessageReply::Done => Ok(()),
            _ => Err(unexpected()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invitations_round_trip_as_text_and_link_and_damage_is_refused() {
        let inv = Invitation {
            version: 1,
            route: "alice".into(),
            identity: [1; 32],
            static_key: [2; 32],
            kem_key: vec![3; 1216],
            secret: zeroize::Zeroizing::new([4; 32]),
            expires_ms: 5,
            in_person: false,
        };
        let text = encode_invitation(&inv);
        assert!(text.starts_with(INVITATION_PREFIX));
        assert!(decode_invitation(&text).unwrap() == inv);
        assert!(decode_invitation(&format!(" {} \n", invitation_link(&inv))).unwrap() == inv);
        assert!(decode_invitation("vettid:connect:AAAA").is_err());
        assert!(decode_invitation(&text[..text.len() - 3]).is_err());
        assert!(decode_invitation("hello").is_err());
    }
}
