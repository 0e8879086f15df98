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

/// Crockford's base32 alphabet (no I, L, O, U: nothing to misread).
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

const CODE_LOOKUP: vettid_crypto::kdf::Label =
    vettid_crypto::kdf::Label::new("connect-code/lookup");
const CODE_KEY: vettid_crypto::kdf::Label = vettid_crypto::kdf::Label::new("connect-code/key");
const CODE_DELETE: vettid_crypto::kdf::Label =
    vettid_crypto::kdf::Label::new("connect-code/delete");

/// A short code for an invitation (`ABCD-EFGH-JKMN-PQRS`: 80 random bits in Crockford base32),
/// standing for the invitation left sealed in the API's connect-code directory. From the code
/// the app derives the directory's lookup id, the key the invitation is sealed under and the
/// token that withdraws it; the directory sees none of the three but the lookup id (and a
/// hash of the token). `Debug` shows nothing of it.
pub struct ShortCode(zeroize::Zeroizing<[u8; 10]>);

impl std::fmt::Debug for ShortCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShortCode(…)")
    }
}

impl ShortCode {
    /// A new random code.
    pub fn generate() -> ShortCode {
        ShortCode(zeroize::Zeroizing::new(vettid_crypto::random_array()))
    }

    /// Reads a code as a person types it: case, dashes and spaces do not matter, and `I`,
    /// `L` read as 1, `O` as 0.
    pub fn parse(text: &str) -> Result<ShortCode, ClientError> {
        let bad = || {
            ClientError::Protocol(
                "a short code is 16 letters and digits, like ABCD-EFGH-JKMN-PQRS".into(),
            )
        };
        let mut n: u128 = 0;
        let mut count = 0;
        for c in text.chars().filter(|c| !matches!(c, '-' | ' ')) {
            let c = match c.to_ascii_uppercase() {
                'I' | 'L' => '1',
                'O' => '0',
                c => c,
            };
            let v = CROCKFORD
                .iter()
                .position(|a| char::from(*a) == c)
                .ok_or_else(bad)?;
            n = (n << 5) | v as u128;
            count += 1;
            if count > 16 {
                return Err(bad());
            }
        }
        if count != 16 {
            return Err(bad());
        }
        let bytes: [u8; 10] = n.to_be_bytes()[6..].try_into().expect("10 of 16 bytes");
        Ok(ShortCode(zeroize::Zeroizing::new(bytes)))
    }

    /// The code to show: four groups of four.
    pub fn display(&self) -> String {
        let mut word = [0u8; 16];
        word[6..].copy_from_slice(&self.0[..]);
        let n = u128::from_be_bytes(word);
        let chars: Vec<char> = (0..16)
            .rev()
            .map(|i| char::from(CROCKFORD[((n >> (5 * i)) & 31) as usize]))
            .collect();
        chars
            .chunks(4)
            .map(|g| g.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join("-")
    }

    fn lookup(&self) -> String {
        hex::encode(&CODE_LOOKUP.derive(&self.0[..], b"", b"").expose()[..16])
    }

    fn key(&self) -> vettid_crypto::aead::AeadKey {
        CODE_KEY.derive(&self.0[..], b"", b"").into()
    }

    fn delete_token(&self) -> vettid_crypto::SecretBytes<32> {
        CODE_DELETE.derive(&self.0[..], b"", b"")
    }
}

/// Leaves `invitation` sealed in the connect-code directory of the API at `api`: the short
/// code that finds and opens it, until the invitation expires.
///
/// An invitation made to be scanned in person gets no code: it skips the six-digit
/// comparison, and a code can be read out, overheard or typed far away.
pub async fn publish_invitation(
    api: &str,
    invitation: &Invitation,
) -> Result<ShortCode, ClientError> {
    use sha2::Digest;
    if invitation.in_person {
        return Err(ClientError::Protocol(
            "an invitation for scanning in person gets no short code (it skips the code comparison)"
                .into(),
        ));
    }
    let code = ShortCode::generate();
    let lookup = code.lookup();
    let plain = zeroize::Zeroizing::new(
        postcard::to_allocvec(invitation).expect("invitations always encode"),
    );
    let sealed = code.key().seal(lookup.as_bytes(), &plain);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // The directory keeps an entry at most 7 days (by its clock: a minute's margin).
    let expires_at = (invitation.expires_ms / 1000).min(now + 7 * 24 * 3600 - 60);
    let body = serde_json::json!({
        "lookup": lookup,
        "sealed": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&sealed),
        "expires_at": expires_at,
        "delete_hash": hex::encode(sha2::Sha256::digest(code.delete_token().expose())),
    });
    crate::http::json(api, "POST", "/v1/connect-codes", None, Some(&body)).await?;
    Ok(code)
}

/// The invitation `code` stands for, from the connect-code directory of the API at `api`;
/// withdrawn from the directory once read (whoever holds the code may do that), so it cannot
/// be fetched again.
pub async fn fetch_invitation(api: &str, code: &ShortCode) -> Result<Invitation, ClientError> {
    let lookup = code.lookup();
    let answer = crate::http::json(
        api,
        "GET",
        &format!("/v1/connect-codes/{lookup}"),
        None,
        None,
    )
    .await
    .map_err(|e| match e {
        ClientError::Api { status: 404, .. } => ClientError::Protocol(
            "no invitation has this code (mistyped, expired or withdrawn)".into(),
        ),
        other => other,
    })?;
    let damaged =
        || ClientError::Protocol("the directory's answer for this code does not open".into());
    let sealed = answer["sealed"]
        .as_str()
        .and_then(|s| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .ok()
        })
        .ok_or_else(damaged)?;
    let plain = code
        .key()
        .open(lookup.as_bytes(), &sealed)
        .map_err(|_| damaged())?;
    let invitation: Invitation = vettid_proto::session::decode_exact(&plain).ok_or_else(damaged)?;
    // Read once: withdrawn, so nobody fetches it again. Best effort: the invitation is single
    // use in the inviter's vault anyway.
    let _ = withdraw_code(api, code).await;
    Ok(invitation)
}

/// Withdraws the invitation `code` stands for from the directory (the invitation itself is
/// cancelled in the vault).
pub async fn withdraw_code(api: &str, code: &ShortCode) -> Result<(), ClientError> {
    let body = serde_json::json!({ "delete_token": hex::encode(code.delete_token().expose()) });
    let (status, _) = crate::http::call(
        api,
        "DELETE",
        &format!("/v1/connect-codes/{}", code.lookup()),
        None,
        Some(&body),
    )
    .await?;
    match status {
        204 | 404 => Ok(()),
        status => Err(ClientError::Api {
            status,
            code: "withdraw".into(),
            message: "the directory did not withdraw the code".into(),
        }),
    }
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

    /// Cancels an invitation and makes a new one with its label and kind.
    pub async fn resend_invitation(
        &mut self,
        id: InvitationId,
        expires_in_secs: Option<u64>,
    ) -> Result<(InvitationId, Invitation), ClientError> {
        match self
            .run(ConnectionOp::Resend {
                id,
                expires_in_secs,
            })
            .await?
        {
            ConnectionReply::Invited { id, invitation } => Ok((id, invitation)),
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
        self.messages_between(connection, None, before_ms, limit)
            .await
    }

    /// A page of a connection's history sent from `since_ms` on and before `before_ms`,
    /// newest first, and whether older messages (in that span) remain.
    pub async fn messages_between(
        &mut self,
        connection: ConnectionId,
        since_ms: Option<u64>,
        before_ms: Option<u64>,
        limit: u16,
    ) -> Result<(Vec<MessageView>, bool), ClientError> {
        match self
            .run(MessageOp::List {
                connection,
                before_ms,
                since_ms,
                limit,
            })
            .await?
        {
            MessageReply::Messages { messages, more } => Ok((messages, more)),
            _ => Err(unexpected()),
        }
    }

    /// Sends `bytes` as an attachment named `name` (media type `mime`) with an optional
    /// caption: uploaded to the vault in pieces, checked whole there, then sent to the peer's
    /// vault. Its sequence number.
    pub async fn send_file(
        &mut self,
        connection: ConnectionId,
        name: &str,
        mime: &str,
        bytes: &[u8],
        text: Option<String>,
    ) -> Result<u64, ClientError> {
        use sha2::Digest;
        use vettid_proto::messages::{AttachmentInfo, PIECE_BYTES};
        let client_id = vettid_crypto::random_array();
        let info = AttachmentInfo {
            name: name.to_owned(),
            mime: mime.to_owned(),
            size: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
            sha256: sha2::Sha256::digest(bytes).into(),
        };
        for (i, piece) in bytes.chunks(PIECE_BYTES).enumerate() {
            let op = MessageOp::Upload {
                client_id,
                index: u16::try_from(i).unwrap_or(u16::MAX),
                bytes: piece.to_vec(),
            };
            match self.run(op).await? {
                MessageReply::Done => {}
                _ => return Err(unexpected()),
            }
        }
        let op = MessageOp::SendFile {
            connection,
            client_id,
            info,
            text,
        };
        match self.run(op).await? {
            MessageReply::Sent { seq } => Ok(seq),
            _ => Err(unexpected()),
        }
    }

    /// The attachment of message `seq` (sent by this member if `outgoing`), whole.
    pub async fn download(
        &mut self,
        connection: ConnectionId,
        outgoing: bool,
        seq: u64,
    ) -> Result<Vec<u8>, ClientError> {
        let mut all = Vec::new();
        let mut index = 0u16;
        loop {
            let op = MessageOp::Download {
                connection,
                outgoing,
                seq,
                index,
            };
            let MessageReply::Piece { bytes, pieces } = self.run(op).await? else {
                return Err(unexpected());
            };
            all.extend(bytes);
            index += 1;
            if index >= pieces {
                return Ok(all);
            }
        }
    }

    /// Erases a connection's history in this vault (messages and attachments).
    pub async fn clear_history(&mut self, connection: ConnectionId) -> Result<(), ClientError> {
        match self.run(MessageOp::Clear { connection }).await? {
            MessageReply::Done => Ok(()),
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

    #[test]
    fn short_codes_round_trip_as_typed_and_bad_ones_are_refused() {
        let code = ShortCode::generate();
        let shown = code.display();
        assert_eq!(shown.len(), 19);
        assert_eq!(shown.matches('-').count(), 3);
        let typed = shown.to_lowercase().replace('-', " ");
        let again = ShortCode::parse(&typed).unwrap();
        assert_eq!(again.display(), shown);
        assert_eq!(again.lookup(), code.lookup());
        // Misreadable letters read as the digits they look like.
        let ones = ShortCode::parse("IIII-LLLL-OOOO-0000").unwrap();
        assert_eq!(ones.display(), "1111-1111-0000-0000");
        assert_ne!(ones.lookup(), code.lookup());
        for bad in [
            "",
            "ABCD-EFGH-JKMN-PQR",
            "ABCD-EFGH-JKMN-PQRST",
            "ABCD-EFGH-JKMN-PQRU",
        ] {
            assert!(ShortCode::parse(bad).is_err(), "{bad}");
        }
        // Every bit counts: the largest code survives the round trip.
        let top = ShortCode::parse("ZZZZ-ZZZZ-ZZZZ-ZZZZ").unwrap();
        assert_eq!(&top.0[..], &[0xff; 10]);
        assert_eq!(format!("{top:?}"), "ShortCode(…)");
    }
}
