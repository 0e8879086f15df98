//! Two (or three) vaults in one in-memory enclave, their peer messages carried by the test as
//! a host would — and altered, replayed, reordered and redirected as a hostile one would.

use super::*;
use crate::harness::{fast, manager};
use crate::manager::{Manager, NewDevice, Opening};
use vettid_proto::enclave::Destination;
use vettid_proto::messages::{MessageError, MessageOp, MessageReply};

const NOW: u64 = 1_800_000_000_000;

struct Vaults {
    manager: Manager,
    openings: HashMap<&'static str, Opening>,
    /// The in-memory host's objects.
    store: crate::harness::Store,
}

impl Vaults {
    fn new(names: &[&'static str]) -> Vaults {
        let (manager, store) = manager(fast(10));
        let mut openings = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            let device = NewDevice {
                session_key: [i as u8 + 1; 32],
                device_key: [i as u8 + 100; 32],
                name: "phone",
            };
            let e = manager.enroll(name, b"1111", &[0; 32], device, 0).unwrap();
            openings.insert(*name, e.opening);
        }
        Vaults {
            manager,
            openings,
            store,
        }
    }

    fn op(
        &self,
        who: &str,
        op: ConnectionOp,
    ) -> Result<(ConnectionReply, Vec<Outbound>), VaultError> {
        self.manager
            .domain(who, &self.openings[who], NOW, |u| handle(u, op))
            .and_then(|(a, _)| a)
    }

    fn msg(&self, who: &str, op: MessageOp) -> Result<(MessageReply, Vec<Outbound>), VaultError> {
        self.msg_at(who, op, NOW)
    }

    fn msg_at(
        &self,
        who: &str,
        op: MessageOp,
        now_ms: u64,
    ) -> Result<(MessageReply, Vec<Outbound>), VaultError> {
        self.manager
            .domain(who, &self.openings[who], now_ms, |u| {
                crate::messages::handle(u, op)
            })
            .and_then(|(a, _)| a)
    }

    /// Delivers one wire message to `to`'s vault: what it sends back.
    fn deliver(&self, to: &str, wire: &[u8]) -> Vec<Outbound> {
        self.deliver_at(to, wire, NOW)
    }

    /// The same, with the host's clock at `now_ms` (as the host does: a batch of one).
    fn deliver_at(&self, to: &str, wire: &[u8], now_ms: u64) -> Vec<Outbound> {
        match crate::server::peers(&self.manager, to, now_ms, &[wire]) {
            Ok(vettid_proto::enclave::EnclaveReply::Peers {
                done: 1,
                rest: None,
                out,
            }) => out,
            other => panic!("the vault did not take the message: {other:?}"),
        }
    }

    /// `inviter` invites `invitee`, both approve: the connection's id in each vault.
    fn connect(&self, inviter: &str, invitee: &str) -> (ConnectionId, ConnectionId) {
        let invitation = self.invite(inviter, false);
        let (reply, out) = self.op(invitee, ConnectionOp::Accept(invitation)).unwrap();
        let ConnectionReply::Requested(theirs) = reply else {
            panic!("{reply:?}")
        };
        self.pump(out);
        let ours = self
            .list(inviter)
            .into_iter()
            .find(|c| {
                c.peer_member.as_deref() == Some(invitee)
                    && c.state == ConnectionState::PendingReview
            })
            .expect("the inviter reviews the request");
        let sas = ours.sas.clone();
        for (who, id) in [(inviter, ours.id), (invitee, theirs)] {
            let (_, out) = self
                .op(
                    who,
                    ConnectionOp::Approve {
                        id,
                        sas: sas.clone(),
                    },
                )
                .unwrap();
            self.pump(out);
        }
        assert_eq!(self.show(inviter, ours.id).state, ConnectionState::Active);
        (ours.id, theirs)
    }

    /// Runs `f` on `who`'s vault as its enclave would (to forge what a peer could send, or
    /// to write what an older vault held).
    fn inside<T>(
        &self,
        who: &str,
        f: impl FnOnce(&mut Vault, &crate::objects::Objects<'_>) -> Result<T, VaultError>,
    ) -> T {
        self.manager
            .domain(who, &self.openings[who], NOW, |u| {
                let (vault, objects, _) = u.parts();
                f(vault, objects)
            })
            .unwrap()
            .0
            .unwrap()
    }

    fn list(&self, who: &str) -> Vec<ConnectionView> {
        match self.op(who, ConnectionOp::List).unwrap().0 {
            ConnectionReply::Connections(c) => c,
            other => panic!("{other:?}"),
        }
    }

    fn feed_kinds(&self, who: &str) -> Vec<String> {
        self.manager
            .domain(who, &self.openings[who], NOW, |u| {
                let (vault, _, _) = u.parts();
                vault
                    .read(|c| {
                        let mut s = c.prepare("SELECT kind FROM events")?;
                        let r = s.query_map([], |r| r.get::<_, String>(0))?;
                        r.collect::<rusqlite::Result<Vec<String>>>()
                    })
                    .map_err(db)
            })
            .unwrap()
            .0
            .unwrap()
    }

    /// Carries every peer message (and those they cause) to its recipient, in order; the
    /// events for each member's apps.
    fn pump(&self, mut out: Vec<Outbound>) -> Vec<EventKind> {
        let mut events = Vec::new();
        while !out.is_empty() {
            let mut next = Vec::new();
            for o in out {
                match o.to {
                    Destination::Peer { member } => next.extend(self.deliver(&member, &o.body)),
                    Destination::App { .. } => events.push(o),
                }
            }
            out = next;
        }
        events.iter().map(|e| self.open_event(e)).collect()
    }

    fn open_event(&self, o: &Outbound) -> EventKind {
        let sealed: vettid_proto::session::SealedEvent = postcard::from_bytes(&o.body).unwrap();
        for who in self.openings.keys() {
            let key = self
                .manager
                .domain(who, &self.openings[who], NOW, |u| {
                    Ok(u.parts().0.event_key().clone())
                })
                .unwrap()
                .0
                .unwrap();
            let aad = vettid_proto::session::event_aad(who, &sealed.id);
            if let Ok(plain) = AeadKey::from(key).open(&aad, &sealed.ciphertext) {
                let e: vettid_proto::session::Event =
                    vettid_proto::session::open_plaintext(&plain).unwrap();
                return e.kind;
            }
        }
        panic!("an event no vault sealed")
    }

    fn show(&self, who: &str, id: ConnectionId) -> ConnectionView {
        match self.op(who, ConnectionOp::Show(id)).unwrap().0 {
            ConnectionReply::Connection(c) => *c,
            other => panic!("{other:?}"),
        }
    }

    fn only(&self, who: &str) -> ConnectionView {
        match self.op(who, ConnectionOp::List).unwrap().0 {
            ConnectionReply::Connections(mut c) => {
                assert_eq!(c.len(), 1, "{who} has one connection");
                c.remove(0)
            }
            other => panic!("{other:?}"),
        }
    }

    fn invite(&self, who: &str, in_person: bool) -> Invitation {
        match self
            .op(
                who,
                ConnectionOp::Invite {
                    label: Some("for bob".into()),
                    expires_in_secs: None,
                    in_person,
                },
            )
            .unwrap()
            .0
        {
            ConnectionReply::Invited { invitation, .. } => invitation,
            other => panic!("{other:?}"),
        }
    }

    /// alice invites bob; both vaults run the handshake: both under review.
    fn reviewed(&self) -> (ConnectionView, ConnectionView) {
        let invitation = self.invite("alice", false);
        let (_, out) = self.op("bob", ConnectionOp::Accept(invitation)).unwrap();
        self.pump(out);
        (self.only("alice"), self.only("bob"))
    }

    fn connected(&self) -> (ConnectionId, ConnectionId) {
        let (a, b) = self.reviewed();
        let sas = a.sas.clone().unwrap();
        let (_, out) = self
            .op(
                "alice",
                ConnectionOp::Approve {
                    id: a.id,
                    sas: Some(sas.clone()),
                },
            )
            .unwrap();
        self.pump(out);
        let (_, out) = self
            .op(
                "bob",
                ConnectionOp::Approve {
                    id: b.id,
                    sas: Some(sas),
                },
            )
            .unwrap();
        self.pump(out);
        (a.id, b.id)
    }

    fn send(&self, who: &str, id: ConnectionId, text: &str) -> Vec<Outbound> {
        self.msg(
            who,
            MessageOp::Send {
                connection: id,
                client_id: vettid_crypto::random_array(),
                text: text.into(),
            },
        )
        .unwrap()
        .1
    }

    fn history(&self, who: &str, id: ConnectionId) -> Vec<vettid_proto::messages::MessageView> {
        match self
            .msg(
                who,
                MessageOp::List {
                    connection: id,
                    before_ms: None,
                    since_ms: None,
                    limit: 50,
                },
            )
            .unwrap()
            .0
        {
            MessageReply::Messages { messages, .. } => messages,
            other => panic!("{other:?}"),
        }
    }
}

fn peer_wires(out: &[Outbound]) -> Vec<Vec<u8>> {
    out.iter()
        .filter(|o| matches!(o.to, Destination::Peer { .. }))
        .map(|o| o.body.clone())
        .collect()
}

#[test]
fn invite_handshake_sas_approval_messages_receipts_and_revocation() {
    let v = Vaults::new(&["alice", "bob"]);
    let (a, b) = v.reviewed();
    assert_eq!(a.state, ConnectionState::PendingReview);
    assert_eq!(b.state, ConnectionState::PendingReview);
    assert!(a.inviter && !b.inviter);
    assert_eq!(a.sas, b.sas, "both vaults compute the same code");
    assert!(
        a.sas_required && b.sas_required,
        "a remote invitation needs the code"
    );
    assert_eq!(a.peer_member.as_deref(), Some("bob"));
    assert_eq!(b.peer_member.as_deref(), Some("alice"));
    assert_eq!(a.label.as_deref(), Some("for bob"));

    // A wrong code or none is refused, and nothing changes.
    let wrong = if a.sas.as_deref() == Some("000000") {
        "111111"
    } else {
        "000000"
    };
    assert_eq!(
        v.op(
            "alice",
            ConnectionOp::Approve {
                id: a.id,
                sas: Some(wrong.into())
            }
        )
        .unwrap_err(),
        VaultError::Connections(ConnectionError::SasMismatch)
    );
    assert_eq!(
        v.op(
            "alice",
            ConnectionOp::Approve {
                id: a.id,
                sas: None
            }
        )
        .unwrap_err(),
        VaultError::Connections(ConnectionError::SasRequired)
    );
    assert_eq!(v.show("alice", a.id).state, ConnectionState::PendingReview);
    // No messages before both approve.
    assert_eq!(
        v.msg(
            "alice",
            MessageOp::Send {
                connection: a.id,
                client_id: [1; 16],
                text: "too early".into()
            }
        )
        .unwrap_err(),
        VaultError::Messages(MessageError::NotActive)
    );

    let sas = a.sas.clone();
    let (_, out) = v
        .op(
            "alice",
            ConnectionOp::Approve {
                id: a.id,
                sas: sas.clone(),
            },
        )
        .unwrap();
    v.pump(out);
    assert_eq!(v.show("alice", a.id).state, ConnectionState::Accepted);
    assert!(v.show("bob", b.id).they_accepted);
    let (_, out) = v
        .op("bob", ConnectionOp::Approve { id: b.id, sas })
        .unwrap();
    let events = v.pump(out);
    assert_eq!(v.show("alice", a.id).state, ConnectionState::Active);
    assert_eq!(v.show("bob", b.id).state, ConnectionState::Active);
    assert!(events.iter().any(|e| matches!(
        e,
        EventKind::Connection {
            state: ConnectionState::Active,
            ..
        }
    )));

    // A message, its delivered receipt, the read receipt.
    let out = v.send("alice", a.id, "hello bob");
    let events = v.pump(out);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EventKind::Message { seq, .. } if *seq > 0))
    );
    let bob_sees = v.history("bob", b.id);
    assert_eq!(bob_sees.len(), 1);
    assert_eq!(bob_sees[0].text, "hello bob");
    assert!(!bob_sees[0].outgoing);
    let alice_sees = v.history("alice", a.id);
    assert!(alice_sees[0].outgoing && alice_sees[0].delivered_ms.is_some());
    assert!(alice_sees[0].read_ms.is_none());
    let (_, out) = v
        .msg(
            "bob",
            MessageOp::Read {
                connection: b.id,
                seq: bob_sees[0].seq,
            },
        )
        .unwrap();
    v.pump(out);
    assert!(v.history("alice", a.id)[0].read_ms.is_some());

    // Revoked by bob: alice is told, both erase the keys, an old message replayed is dropped.
    let replay = peer_wires(&v.send("alice", a.id, "second"));
    let (_, out) = v.op("bob", ConnectionOp::Revoke(b.id)).unwrap();
    v.pump(out);
    assert_eq!(v.show("alice", a.id).state, ConnectionState::Revoked);
    assert_eq!(v.show("bob", b.id).state, ConnectionState::Revoked);
    assert!(v.deliver("bob", &replay[0]).is_empty());
    assert_eq!(
        v.history("bob", b.id).len(),
        1,
        "refused after the revocation"
    );
    assert_eq!(
        v.msg(
            "alice",
            MessageOp::Send {
                connection: a.id,
                client_id: [2; 16],
                text: "after".into()
            }
        )
        .unwrap_err(),
        VaultError::Messages(MessageError::NotActive)
    );
}

#[test]
fn a_hostile_host_replaying_reordering_altering_or_redirecting_achieves_nothing() {
    let v = Vaults::new(&["alice", "bob", "carol"]);
    let (a, b) = v.connected();
    let first = peer_wires(&v.send("alice", a, "one"));
    let second = peer_wires(&v.send("alice", a, "two"));
    // Reordered: the second first. Both kept, each once, in the sender's order.
    let r2 = v.deliver("bob", &second[0]);
    let r1 = v.deliver("bob", &first[0]);
    assert!(!r1.is_empty() && !r2.is_empty());
    // Replayed: kept once (the receipt goes again; the sender keeps it once).
    let again = v.deliver("bob", &first[0]);
    v.pump(again);
    let texts: Vec<(u64, String)> = v
        .history("bob", b)
        .into_iter()
        .map(|m| (m.seq, m.text))
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    let mut seqs: Vec<u64> = texts.iter().map(|t| t.0).collect();
    seqs.sort();
    let one = texts.iter().find(|t| t.1 == "one").unwrap().0;
    let two = texts.iter().find(|t| t.1 == "two").unwrap().0;
    assert!(one < two, "the sender's order survives the reordering");
    // Redirected to carol: no key there, dropped without an answer.
    assert!(v.deliver("carol", &first[0]).is_empty());
    // Altered, truncated or padded to another size: dropped.
    let mut altered = second[0].clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    assert!(v.deliver("bob", &altered).is_empty());
    assert!(
        v.deliver("bob", &second[0][..second[0].len() - 1])
            .is_empty()
    );
    let mut longer = second[0].clone();
    longer.resize(longer.len() * 2, 0);
    assert!(v.deliver("bob", &longer).is_empty());
    assert_eq!(v.history("bob", b).len(), 2);
    // A retried send (same client id) is the same message.
    let send = |text: &str| {
        v.msg(
            "alice",
            MessageOp::Send {
                connection: a,
                client_id: [7; 16],
                text: text.into(),
            },
        )
        .unwrap()
    };
    let (MessageReply::Sent { seq: s1 }, out1) = send("three") else {
        panic!()
    };
    let (MessageReply::Sent { seq: s2 }, out2) = send("three") else {
        panic!()
    };
    assert_eq!(s1, s2);
    v.pump(out1);
    v.pump(out2);
    assert_eq!(v.history("bob", b).len(), 3);
    assert_eq!(v.history("alice", a).len(), 3);
}

#[test]
fn invitations_are_single_use_expire_cancel_and_are_bounded() {
    let v = Vaults::new(&["alice", "bob", "carol"]);
    let invitation = v.invite("alice", true);
    let (_, out) = v
        .op("bob", ConnectionOp::Accept(invitation.clone()))
        .unwrap();
    v.pump(out);
    let a = v.only("alice");
    assert_eq!(a.state, ConnectionState::PendingReview);
    assert!(!a.sas_required, "scanned in person");
    assert!(a.sas.is_some(), "the code is shown anyway");
    // Carol with the same (used) invitation gets no answer: her request stays requested.
    let (ConnectionReply::Requested(c), out) = v
        .op("carol", ConnectionOp::Accept(invitation.clone()))
        .unwrap()
    else {
        panic!()
    };
    v.pump(out);
    assert_eq!(v.show("carol", c).state, ConnectionState::Requested);
    assert_eq!(v.only("alice").id, a.id, "alice has still one connection");
    // An in-person connection approves without the code.
    v.op(
        "alice",
        ConnectionOp::Approve {
            id: a.id,
            sas: None,
        },
    )
    .unwrap();
    // Own invitation, expired, cancelled.
    let own = v.invite("alice", false);
    assert_eq!(
        v.op("alice", ConnectionOp::Accept(own)).unwrap_err(),
        VaultError::Connections(ConnectionError::OwnInvitation)
    );
    let mut expired = v.invite("alice", false);
    expired.expires_ms = NOW - 1;
    assert_eq!(
        v.op("bob", ConnectionOp::Accept(expired)).unwrap_err(),
        VaultError::Connections(ConnectionError::Expired)
    );
    let ConnectionReply::Invited {
        id: cancelled_id,
        invitation: cancelled,
    } = v
        .op(
            "alice",
            ConnectionOp::Invite {
                label: None,
                expires_in_secs: Some(60),
                in_person: false,
            },
        )
        .unwrap()
        .0
    else {
        panic!()
    };
    v.op("alice", ConnectionOp::Cancel(cancelled_id)).unwrap();
    let (_, out) = v.op("carol", ConnectionOp::Accept(cancelled)).unwrap();
    v.pump(out);
    assert_eq!(
        v.only("alice").id,
        a.id,
        "a cancelled invitation connects nobody"
    );
    // At most ten pending.
    let ConnectionReply::Invitations(pending) = v.op("alice", ConnectionOp::Invitations).unwrap().0
    else {
        panic!()
    };
    for _ in pending.len()..MAX_PENDING_INVITATIONS {
        v.invite("alice", false);
    }
    assert_eq!(
        v.op(
            "alice",
            ConnectionOp::Invite {
                label: None,
                expires_in_secs: None,
                in_person: false
            }
        )
        .unwrap_err(),
        VaultError::Connections(ConnectionError::TooManyInvitations)
    );
    assert_eq!(
        v.op(
            "alice",
            ConnectionOp::Invite {
                label: Some("x".repeat(65)),
                expires_in_secs: None,
                in_person: false
            }
        )
        .unwrap_err(),
        VaultError::Connections(ConnectionError::BadInvitationSettings)
    );
}

#[test]
fn a_rejection_reaches_the_peer_and_a_locked_vault_takes_messages_later() {
    let v = Vaults::new(&["alice", "bob"]);
    let (a, b) = v.reviewed();
    let (_, out) = v.op("bob", ConnectionOp::Reject(b.id)).unwrap();
    v.pump(out);
    assert_eq!(v.show("alice", a.id).state, ConnectionState::Rejected);
    assert_eq!(v.show("bob", b.id).state, ConnectionState::Rejected);

    let v = Vaults::new(&["alice", "bob"]);
    let (a, _) = v.connected();
    let wire = peer_wires(&v.send("alice", a, "while locked"));
    v.manager.lock_for_app("bob").unwrap();
    assert!(!v.manager.accepts_peers("bob"));
    match crate::server::peer(&v.manager, "bob", NOW, &wire[0]).unwrap() {
        vettid_proto::enclave::EnclaveReply::Peer { disposition, out } => {
            assert_eq!(disposition, vettid_proto::enclave::PeerDisposition::Later);
            assert!(out.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn texts_over_the_limit_are_refused() {
    let v = Vaults::new(&["alice", "bob"]);
    let (a, _) = v.connected();
    let long = "é".repeat(vettid_proto::messages::MAX_TEXT_CHARS + 1);
    for text in [String::new(), long] {
        assert_eq!(
            v.msg(
                "alice",
                MessageOp::Send {
                    connection: a,
                    client_id: [3; 16],
                    text
                }
            )
            .unwrap_err(),
            VaultError::Messages(MessageError::BadText)
        );
    }
    let max = "é".repeat(vettid_proto::messages::MAX_TEXT_CHARS);
    let out = v.send("alice", a, &max);
    assert!(peer_wires(&out)[0].len() <= 65536);
}

#[test]
fn redelivered_handshake_messages_and_texts_leave_the_connection_working() {
    let v = Vaults::new(&["alice", "bob"]);
    let invitation = v.invite("alice", false);
    let (_, out) = v.op("bob", ConnectionOp::Accept(invitation)).unwrap();
    let hello = peer_wires(&out)[0].clone();
    // The hello twice: the same welcome twice (the inviter reveals its half once).
    let w1 = peer_wires(&v.deliver("alice", &hello));
    let w2 = peer_wires(&v.deliver("alice", &hello));
    assert_eq!(w1, w2, "a repeated hello gets the same welcome");
    // Junk under the reply kid before the real welcome: the handshake survives it.
    let mut junk = w1[0].clone();
    junk[KID_LEN + 5] ^= 0xff;
    assert!(v.deliver("bob", &junk).is_empty());
    let confirm = v.deliver("bob", &w1[0]);
    assert!(
        !peer_wires(&confirm).is_empty(),
        "the real welcome still opens"
    );
    v.pump(confirm);
    // The second welcome (a redelivery) changes nothing.
    assert!(v.deliver("bob", &w2[0]).is_empty());
    let (a, b) = (v.only("alice"), v.only("bob"));
    assert_eq!(a.state, ConnectionState::PendingReview);
    assert_eq!(a.sas, b.sas);
    for (who, id) in [("alice", a.id), ("bob", b.id)] {
        let (_, out) = v
            .op(
                who,
                ConnectionOp::Approve {
                    id,
                    sas: a.sas.clone(),
                },
            )
            .unwrap();
        v.pump(out);
    }
    assert_eq!(v.show("alice", a.id).state, ConnectionState::Active);
    // A text redelivered: its receipt goes again with a number of its own, and the next
    // messages both ways still arrive.
    let first = peer_wires(&v.send("alice", a.id, "one"));
    v.pump(v.deliver("bob", &first[0]));
    v.pump(v.deliver("bob", &first[0]));
    v.pump(v.send("bob", b.id, "reply"));
    v.pump(v.send("alice", a.id, "two"));
    let texts: Vec<String> = v.history("bob", b.id).into_iter().map(|m| m.text).collect();
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(texts.contains(&"two".to_owned()));
    assert_eq!(v.history("alice", a.id).len(), 3);
    assert!(
        v.history("alice", a.id)
            .iter()
            .filter(|m| m.outgoing)
            .all(|m| m.delivered_ms.is_some())
    );
}

#[test]
fn rotation_opens_a_new_epoch_on_both_sides_and_loses_nothing_in_flight() {
    let v = Vaults::new(&["alice", "bob"]);
    let (a, b) = v.connected();
    // Messages sealed under epoch 0 that the host holds back until after the rotation.
    let late_from_alice = peer_wires(&v.send("alice", a, "sent before the rotation"));
    let late_from_bob = peer_wires(&v.send("bob", b, "bob, before the rotation"));

    let (_, out) = v.op("alice", ConnectionOp::Rotate(a)).unwrap();
    let rekey = peer_wires(&out);
    assert!(v.show("alice", a).rotating);
    // Asked again while the answer is out: the same key, and bob answers the same.
    let (_, again) = v.op("alice", ConnectionOp::Rotate(a)).unwrap();
    let answer = peer_wires(&v.deliver("bob", &rekey[0]));
    assert_eq!(answer.len(), 1, "bob answers the rotation");
    assert!(v.show("bob", b).rotating && v.show("bob", b).epoch == 0);
    let answer_again = peer_wires(&v.deliver("bob", &peer_wires(&again)[0]));
    assert_eq!(
        answer_again.len(),
        1,
        "a repeated rotation gets the same answer"
    );
    // Alice takes the answer: epoch 1 is hers; her first message under it opens it for bob.
    let open = v.deliver("alice", &answer[0]);
    assert_eq!(v.show("alice", a).epoch, 1);
    // The second answer changes nothing; coming under the epoch she left, it only makes
    // her vault open the new one again (bob may not have heard).
    let reopen = v.deliver("alice", &answer_again[0]);
    assert_eq!(peer_wires(&reopen).len(), 1);
    assert_eq!(v.show("alice", a).epoch, 1, "answered once");
    v.pump(open);
    v.pump(reopen);
    let (ca, cb) = (v.show("alice", a), v.show("bob", b));
    assert_eq!((ca.epoch, cb.epoch), (1, 1));
    assert!(!ca.rotating && !cb.rotating);

    // Messages flow under the new epoch, with receipts, and the held-back ones still land.
    v.pump(v.send("alice", a, "after the rotation"));
    v.pump(v.send("bob", b, "bob, after"));
    v.pump(v.deliver("bob", &late_from_alice[0]));
    v.pump(v.deliver("alice", &late_from_bob[0]));
    let texts = |who, id| -> Vec<String> {
        let mut t: Vec<String> = v.history(who, id).into_iter().map(|m| m.text).collect();
        t.sort();
        t
    };
    assert_eq!(
        texts("bob", b),
        [
            "after the rotation",
            "bob, after",
            "bob, before the rotation",
            "sent before the rotation"
        ]
    );
    assert!(
        v.history("alice", a)
            .iter()
            .filter(|m| m.outgoing)
            .all(|m| m.delivered_ms.is_some())
    );
    assert!(
        v.feed_kinds("alice")
            .contains(&"connection.rotated".to_string())
    );

    // The old rotation replayed changes nothing; the previous epoch's key expires.
    assert!(peer_wires(&v.deliver("bob", &rekey[0])).is_empty());
    assert_eq!(v.show("bob", b).epoch, 1);
    let held = peer_wires(&v.send("alice", a, "held past the grace"));
    v.op("alice", ConnectionOp::Rotate(a))
        .map(|(_, out)| v.pump(out))
        .unwrap();
    assert_eq!(v.show("bob", b).epoch, 2);
    let later = NOW + PREVIOUS_EPOCH_SECS * 1000 + 1;
    assert!(v.deliver_at("bob", &held[0], later).is_empty());
    assert!(
        !texts("bob", b).contains(&"held past the grace".to_string()),
        "an expired epoch's message is refused"
    );
    v.pump(v.send("bob", b, "still connected"));
    assert!(texts("alice", a).contains(&"still connected".to_string()));
}

#[test]
fn both_vaults_rotating_at_once_agree_on_one_epoch() {
    let v = Vaults::new(&["alice", "bob"]);
    let (a, b) = v.connected();
    let (_, from_alice) = v.op("alice", ConnectionOp::Rotate(a)).unwrap();
    let (_, from_bob) = v.op("bob", ConnectionOp::Rotate(b)).unwrap();
    // Crossing in flight: each vault gets the other's rotation.
    let mut out = v.deliver("bob", &peer_wires(&from_alice)[0]);
    out.extend(v.deliver("alice", &peer_wires(&from_bob)[0]));
    v.pump(out);
    let (ca, cb) = (v.show("alice", a), v.show("bob", b));
    assert_eq!((ca.epoch, cb.epoch), (1, 1), "the inviter's rotation wins");
    assert!(!ca.rotating && !cb.rotating);
    v.pump(v.send("bob", b, "one epoch"));
    assert_eq!(v.history("alice", a)[0].text, "one epoch");
}

#[test]
fn a_rotation_under_another_identity_key_is_refused_and_the_member_alerted() {
    let v = Vaults::new(&["alice", "bob"]);
    let (a, b) = v.connected();
    // Someone holding the connection's keys but not alice's identity key tries to rotate.
    let forged = v
        .manager
        .domain("alice", &v.openings["alice"], NOW, |u| {
            let (vault, _, _) = u.parts();
            let row = get(vault, &a)?;
            let other = vettid_crypto::sign::SigningKey::generate();
            let kem_key = KemSecret::generate().public_key();
            let hash = row.handshake_hash.clone().unwrap();
            let body = PeerBody::Rekey {
                epoch: 1,
                signature: other
                    .sign(&peer::rekey_message(false, &hash, 1, &kem_key))
                    .to_bytes()
                    .to_vec(),
                kem_key,
                identity: other.verifying_key().to_bytes(),
            };
            // A number of its own (alice's next message keeps hers).
            Ok(seal(&row, body, NOW, Some(1000))?.1)
        })
        .unwrap()
        .0
        .unwrap();
    let events = v.pump(v.deliver("bob", &forged.body));
    let cb = v.show("bob", b);
    assert!(cb.identity_changed, "the change is shown");
    assert_eq!(cb.epoch, 0, "nothing rotated");
    assert!(!cb.rotating);
    assert!(!events.is_empty(), "bob's apps are told");
    assert!(
        v.feed_kinds("bob")
            .contains(&"connection.identity-changed".to_string())
    );
    // The connection still works under the pinned key.
    v.pump(v.send("alice", a, "still me"));
    assert_eq!(v.history("bob", b)[0].text, "still me");
}

#[test]
fn a_block_ends_every_connection_with_the_peer_silently_and_refuses_its_vault() {
    let v = Vaults::new(&["alice", "bob"]);
    let (a, b) = v.connected();
    let queued = peer_wires(&v.send("alice", a, "before the block"));
    let (_, told) = v.op("bob", ConnectionOp::Block(b)).unwrap();
    assert!(told.is_empty(), "alice is not told");
    assert_eq!(v.show("bob", b).state, ConnectionState::Blocked);
    assert_eq!(
        v.show("alice", a).state,
        ConnectionState::Active,
        "alice learns nothing"
    );
    assert!(
        v.deliver("bob", &queued[0]).is_empty(),
        "her messages are dropped"
    );
    assert!(v.history("bob", b).is_empty());
    assert_eq!(
        v.op("bob", ConnectionOp::Block(b)).unwrap_err(),
        VaultError::Connections(ConnectionError::WrongState(ConnectionState::Blocked))
    );

    // Her invitations are refused by bob's vault; his, accepted by her, get no answer.
    assert_eq!(
        v.op("bob", ConnectionOp::Accept(v.invite("alice", false)))
            .unwrap_err(),
        VaultError::Connections(ConnectionError::Blocked)
    );
    let invitation = v.invite("bob", false);
    let (_, hello) = v.op("alice", ConnectionOp::Accept(invitation)).unwrap();
    assert!(
        v.deliver("bob", &peer_wires(&hello)[0]).is_empty(),
        "no answer"
    );
    let pending = |who| match v.op(who, ConnectionOp::Invitations).unwrap().0 {
        ConnectionReply::Invitations(i) => i.len(),
        other => panic!("{other:?}"),
    };
    assert_eq!(pending("bob"), 1, "the invitation is not used up");

    // The block list, and unblocking: the connection stays ended, a new one can be made.
    let blocks = match v.op("bob", ConnectionOp::Blocked).unwrap().0 {
        ConnectionReply::Blocked(b) => b,
        other => panic!("{other:?}"),
    };
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].connection, b);
    assert_eq!(blocks[0].peer_member.as_deref(), Some("alice"));
    v.op("bob", ConnectionOp::Unblock(b)).unwrap();
    assert_eq!(v.show("bob", b).state, ConnectionState::Revoked);
    assert_eq!(
        v.op("bob", ConnectionOp::Unblock(b)).unwrap_err(),
        VaultError::Connections(ConnectionError::Unknown)
    );
    let (a2, b2) = v.connect("alice", "bob");
    v.pump(v.send("alice", a2, "again"));
    assert_eq!(v.history("bob", b2)[0].text, "again");
    assert!(
        v.feed_kinds("bob")
            .contains(&"connection.blocked".to_string())
    );
}

#[test]
fn revoke_all_ends_every_connection_tells_every_peer_and_cancels_invitations() {
    let v = Vaults::new(&["alice", "bob", "carol"]);
    let (ab, ba) = v.connect("alice", "bob");
    let (ca, ac) = v.connect("carol", "alice");
    v.invite("alice", false);
    let (reply, out) = v.op("alice", ConnectionOp::RevokeAll).unwrap();
    assert_eq!(reply, ConnectionReply::RevokedAll(2));
    assert_eq!(peer_wires(&out).len(), 2, "each peer is told");
    v.pump(out);
    for (who, id) in [("alice", ab), ("alice", ac), ("bob", ba), ("carol", ca)] {
        assert_eq!(v.show(who, id).state, ConnectionState::Revoked, "{who}");
    }
    assert!(matches!(
        v.op("alice", ConnectionOp::Invitations).unwrap().0,
        ConnectionReply::Invitations(i) if i.is_empty()
    ));
    assert_eq!(
        v.op("alice", ConnectionOp::RevokeAll).unwrap().0,
        ConnectionReply::RevokedAll(0)
    );
}

fn page(
    v: &Vaults,
    who: &str,
    id: ConnectionId,
    now_ms: u64,
) -> Vec<vettid_proto::messages::MessageView> {
    let op = MessageOp::List {
        connection: id,
        before_ms: None,
        since_ms: None,
        limit: 50,
    };
    match v.msg_at(who, op, now_ms).unwrap().0 {
        MessageReply::Messages { messages, .. } => messages,
        other => panic!("{other:?}"),
    }
}

fn sent_seq(out: &[Outbound], v: &Vaults, who: &str, id: ConnectionId) -> u64 {
    assert!(!peer_wires(out).is_empty());
    v.history(who, id)
        .iter()
        .filter(|m| m.outgoing)
        .map(|m| m.seq)
        .max()
        .unwrap()
}

#[test]
fn edits_and_deletes_reach_the_peer_within_the_window_whatever_the_order() {
    use vettid_proto::messages::EDIT_WINDOW_SECS;
    let v = Vaults::new(&["alice", "bob"]);
    let (a, b) = v.connected();
    let edit = |seq, text: &str| MessageOp::Edit {
        connection: a,
        seq,
        text: text.into(),
    };
    let text_of = |seq| {
        v.history("bob", b)
            .into_iter()
            .find(|m| m.seq == seq && !m.outgoing)
            .unwrap()
    };

    // An edit reaches bob, and his apps are told.
    let out = v.send("alice", a, "first");
    let first = sent_seq(&out, &v, "alice", a);
    v.pump(out);
    let (_, out) = v.msg("alice", edit(first, "first, edited")).unwrap();
    let events = v.pump(out);
    assert!(events.iter().any(|e| matches!(
        e,
        EventKind::MessageChanged { seq, deleted: false, .. } if *seq == first
    )));
    let m = text_of(first);
    assert_eq!(m.text, "first, edited");
    assert!(m.edited_ms.is_some() && !m.deleted);
    assert_eq!(v.history("alice", a)[0].text, "first, edited");

    // The hosts deliver an edit before its message, and two edits the wrong way round.
    let out = v.send("alice", a, "second");
    let second = sent_seq(&out, &v, "alice", a);
    let original = peer_wires(&out);
    let v1 = peer_wires(&v.msg("alice", edit(second, "second v1")).unwrap().1);
    let v2 = peer_wires(&v.msg("alice", edit(second, "second v2")).unwrap().1);
    v.pump(v.deliver("bob", &v2[0]));
    v.pump(v.deliver("bob", &original[0]));
    v.pump(v.deliver("bob", &v1[0]));
    assert_eq!(text_of(second).text, "second v2", "the newest edit wins");
    assert_eq!(
        v.history("bob", b)
            .iter()
            .filter(|m| m.seq == second)
            .count(),
        1,
        "one message"
    );

    // Deleted for everyone: no text on either side, and nothing brings it back (an edit of
    // it the hosts held back comes after the delete).
    let held_edit = peer_wires(&v.msg("alice", edit(first, "resurrected?")).unwrap().1);
    let (_, out) = v
        .msg(
            "alice",
            MessageOp::Delete {
                connection: a,
                seq: first,
            },
        )
        .unwrap();
    v.pump(out);
    let m = text_of(first);
    assert!(m.deleted && m.text.is_empty());
    v.pump(v.deliver("bob", &held_edit[0]));
    let m = text_of(first);
    assert!(
        m.deleted && m.text.is_empty(),
        "the late edit changed nothing"
    );
    assert_eq!(
        v.msg("alice", edit(first, "back")).unwrap_err(),
        VaultError::Messages(MessageError::TooLate)
    );

    // Only the sender's own messages, only within the window, only valid texts.
    let bobs = MessageOp::Edit {
        connection: b,
        seq: second,
        text: "not mine".into(),
    };
    assert_eq!(
        v.msg("bob", bobs).unwrap_err(),
        VaultError::Messages(MessageError::Unknown)
    );
    let late = NOW + EDIT_WINDOW_SECS * 1000 + 1;
    assert_eq!(
        v.msg_at("alice", edit(second, "too late"), late)
            .unwrap_err(),
        VaultError::Messages(MessageError::TooLate)
    );
    assert_eq!(
        v.msg("alice", edit(second, "")).unwrap_err(),
        VaultError::Messages(MessageError::BadText)
    );
    assert_eq!(text_of(second).text, "second v2");
}

#[test]
fn retention_erases_old_messages_per_connection_or_by_default() {
    let v = Vaults::new(&["alice", "bob", "carol"]);
    let (ab, ba) = v.connect("alice", "bob");
    let (ac, ca) = v.connect("alice", "carol");
    v.pump(v.send("bob", ba, "from bob"));
    v.pump(v.send("carol", ca, "from carol"));
    let day = 24 * 3600 * 1000;
    let set = |connection, days| {
        v.msg("alice", MessageOp::SetRetention { connection, days })
            .map(|(r, _)| r)
    };
    assert_eq!(
        set(None, Some(0)).unwrap_err(),
        VaultError::Messages(MessageError::BadRetention)
    );
    set(None, Some(1)).unwrap();
    set(Some(ac), Some(7)).unwrap();
    let get = |connection| match v
        .msg("alice", MessageOp::Retention { connection })
        .unwrap()
        .0
    {
        MessageReply::Retention(d) => d,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (get(None), get(Some(ab)), get(Some(ac))),
        (Some(1), Some(1), Some(7))
    );

    // Two days on: bob's message is past the default, carol's within her connection's week.
    assert!(page(&v, "alice", ab, NOW + 2 * day).is_empty());
    assert_eq!(page(&v, "alice", ac, NOW + 2 * day).len(), 1);
    // Erased, not hidden: a message received later purges the old ones from the vault.
    let later = peer_wires(&v.send("bob", ba, "two days later"));
    v.deliver_at("alice", &later[0], NOW + 2 * day);
    set(None, None).unwrap();
    let kept: Vec<String> = page(&v, "alice", ab, NOW + 2 * day)
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(kept, ["two days later"]);
    assert_eq!(get(None), None, "kept for ever again");
}

#[test]
fn forged_stale_or_unsigned_rotation_messages_change_nothing() {
    let v = Vaults::new(&["alice", "bob"]);
    let (a, b) = v.connected();
    v.op("alice", ConnectionOp::Rotate(a))
        .map(|(_, out)| v.pump(out))
        .unwrap();
    assert_eq!((v.show("alice", a).epoch, v.show("bob", b).epoch), (1, 1));

    // Alice's vault itself re-sends a rekey for the epoch already open (a fresh number, so
    // it is not a duplicate): stale, ignored.
    let stale = v.inside("alice", |vault, _| {
        let row = get(vault, &a)?;
        let old = Row {
            epoch: 0,
            ..row.clone()
        };
        let body = rekey(vault, &old, &SecretBytes::random())?;
        Ok(seal(&row, body, NOW, Some(1000))?.1)
    });
    assert!(peer_wires(&v.deliver("bob", &stale.body)).is_empty());
    assert!(!v.show("bob", b).rotating);

    // An answer to alice's next rotation, under bob's keys but not signed by his identity.
    let (_, pending) = v.op("alice", ConnectionOp::Rotate(a)).unwrap();
    drop(pending);
    let seed = v.inside("alice", |vault, _| Ok(get(vault, &a)?.rekey_seed.unwrap()));
    let kem_key = KemSecret::from_seed(&seed).public_key();
    let forged = v.inside("bob", |vault, _| {
        let row = get(vault, &b)?;
        let (kem_ciphertext, _) = noise::encapsulate(&kem_key).unwrap();
        let body = PeerBody::Rekeyed {
            epoch: 2,
            kem_ciphertext,
            identity: row
                .peer_identity
                .map(|_| vault.identity_public_key())
                .unwrap(),
            signature: vec![7; 64],
        };
        Ok(seal(&row, body, NOW, Some(1000))?.1)
    });
    assert!(peer_wires(&v.deliver("alice", &forged.body)).is_empty());
    let ca = v.show("alice", a);
    assert_eq!((ca.epoch, ca.rotating), (1, true), "not taken");
}

#[test]
fn a_lost_epoch_open_is_sent_again_and_the_old_key_waits_for_the_peer() {
    let v = Vaults::new(&["alice", "bob"]);
    let (a, b) = v.connected();
    let (_, out) = v.op("alice", ConnectionOp::Rotate(a)).unwrap();
    let answer = v.deliver("bob", &peer_wires(&out)[0]);
    let open = v.deliver("alice", &peer_wires(&answer)[0]);
    assert_eq!(peer_wires(&open).len(), 1);
    drop(open); // the host drops alice's EpochOpen
    // Weeks later by the host's clock, bob (still under epoch 0) writes: alice's vault takes
    // it (the old key waits for bob's switch), and opens the epoch again.
    let late = NOW + 3 * PREVIOUS_EPOCH_SECS * 1000;
    let text = peer_wires(&v.send("bob", b, "still on epoch 0"));
    let back = v.deliver_at("alice", &text[0], late);
    assert_eq!(v.history("alice", a)[0].text, "still on epoch 0");
    v.pump(back);
    assert_eq!(v.show("bob", b).epoch, 1, "bob switched");
    v.pump(v.send("bob", b, "on epoch 1"));
    assert_eq!(v.history("alice", a)[0].text, "on epoch 1");
}

#[test]
fn messages_held_across_two_rotations_still_land() {
    let v = Vaults::new(&["alice", "bob"]);
    let (a, b) = v.connected();
    let held = peer_wires(&v.send("alice", a, "from epoch 0"));
    for _ in 0..2 {
        v.op("alice", ConnectionOp::Rotate(a))
            .map(|(_, out)| v.pump(out))
            .unwrap();
    }
    assert_eq!(v.show("bob", b).epoch, 2);
    v.pump(v.deliver("bob", &held[0]));
    assert_eq!(v.history("bob", b)[0].text, "from epoch 0");
}

#[test]
fn a_rotation_while_this_side_waits_for_the_approval_means_the_peer_approved() {
    let v = Vaults::new(&["alice", "bob"]);
    let (ra, rb) = v.reviewed();
    let sas = ra.sas.clone();
    let (_, out) = v
        .op(
            "alice",
            ConnectionOp::Approve {
                id: ra.id,
                sas: sas.clone(),
            },
        )
        .unwrap();
    v.pump(out);
    let (_, decision) = v
        .op("bob", ConnectionOp::Approve { id: rb.id, sas })
        .unwrap();
    assert_eq!(v.show("bob", rb.id).state, ConnectionState::Active);
    assert_eq!(v.show("alice", ra.id).state, ConnectionState::Accepted);
    // Bob's approval is held back; his rotation arrives first.
    let (_, out) = v.op("bob", ConnectionOp::Rotate(rb.id)).unwrap();
    v.pump(out);
    v.pump(decision);
    let (ca, cb) = (v.show("alice", ra.id), v.show("bob", rb.id));
    assert_eq!(ca.state, ConnectionState::Active);
    assert_eq!((ca.epoch, cb.epoch), (1, 1));
}

#[test]
fn blocks_name_only_authenticated_keys_and_spare_everyone_else() {
    let v = Vaults::new(&["alice", "bob", "carol"]);
    // Two connections between alice and bob, one between alice and carol.
    let (ab1, ba1) = v.connect("alice", "bob");
    let (ba2, ab2) = v.connect("bob", "alice");
    let (ac, ca) = v.connect("alice", "carol");
    // A request that never got an answer names keys anyone could write: not blockable.
    let mut forged = v.invite("carol", false);
    forged.identity = v.show("alice", ab1).peer_identity.unwrap();
    let (reply, _) = v.op("alice", ConnectionOp::Accept(forged)).unwrap();
    let ConnectionReply::Requested(pending) = reply else {
        panic!()
    };
    assert_eq!(
        v.op("alice", ConnectionOp::Block(pending)).unwrap_err(),
        VaultError::Connections(ConnectionError::WrongState(ConnectionState::Requested))
    );
    // Alice blocks bob from the connection she made (the inviter's side).
    v.op("alice", ConnectionOp::Block(ab1)).unwrap();
    assert_eq!(v.show("alice", ab1).state, ConnectionState::Blocked);
    assert_eq!(
        v.show("alice", ab2).state,
        ConnectionState::Blocked,
        "every one with bob"
    );
    assert_eq!(
        v.show("alice", ac).state,
        ConnectionState::Active,
        "carol is spared"
    );
    assert_eq!(
        v.show("alice", pending).state,
        ConnectionState::Blocked,
        "a pending request naming bob's keys ends too"
    );
    v.pump(v.send("carol", ca, "carol still gets through"));
    assert_eq!(v.history("alice", ac)[0].text, "carol still gets through");
    for (from, id) in [("bob", ba1), ("bob", ba2)] {
        let wire = peer_wires(&v.send(from, id, "dropped"));
        assert!(v.deliver("alice", &wire[0]).is_empty());
    }
    // Bob's invitations are refused by her vault; his hellos to hers get no answer.
    assert_eq!(
        v.op("alice", ConnectionOp::Accept(v.invite("bob", false)))
            .unwrap_err(),
        VaultError::Connections(ConnectionError::Blocked)
    );
    let (_, hello) = v
        .op("bob", ConnectionOp::Accept(v.invite("alice", false)))
        .unwrap();
    assert!(v.deliver("alice", &peer_wires(&hello)[0]).is_empty());
}

#[test]
fn a_blocked_identity_found_at_the_confirmation_blocks_that_connection_too() {
    let v = Vaults::new(&["alice", "bob"]);
    let bob_identity = v.inside("bob", |vault, _| Ok(vault.identity_public_key()));
    // A block entry naming bob's identity only (no static key known).
    v.inside("alice", |vault, objects| {
        vault.write(
            objects,
            vec![st(
                "INSERT INTO blocked (connection, identity, since_ms) VALUES (?1, ?2, 0)",
                vec![blob(&[9; 16]), blob(&bob_identity)],
            )],
        )
    });
    let (_, out) = v
        .op("bob", ConnectionOp::Accept(v.invite("alice", false)))
        .unwrap();
    v.pump(out);
    let c = v.only("alice");
    assert_eq!(
        c.state,
        ConnectionState::Blocked,
        "refused at the confirmation"
    );
    assert!(c.sas.is_none() && c.peer_profile.is_empty());
    // The block learned bob's static key: his next hello gets no answer at all.
    let (_, hello) = v
        .op("bob", ConnectionOp::Accept(v.invite("alice", false)))
        .unwrap();
    assert!(v.deliver("alice", &peer_wires(&hello)[0]).is_empty());
}

#[test]
fn a_change_to_what_a_member_shares_is_pushed_to_the_connections_that_see_it() {
    use vettid_proto::profile::{Category, NewField, ProfileOp, ShareTarget};
    let v = Vaults::new(&["alice", "bob", "carol"]);
    let (_, ba) = v.connect("alice", "bob");
    let (ac, ca) = v.connect("alice", "carol");
    let profile = |op: ProfileOp| {
        v.manager
            .domain("alice", &v.openings["alice"], NOW, |u| {
                crate::profile::handle(u, op)
            })
            .and_then(|(a, _)| a)
            .unwrap()
            .1
    };
    let field = |key: &str, value: &str, category| NewField {
        key: key.into(),
        value: vettid_proto::secrets::Secret::new(value),
        category,
        sensitive: false,
        order: 0,
    };
    // Contact details, shared by default: both connections get them.
    profile(ProfileOp::SetDefault {
        category: Category::Contact,
        share: true,
    });
    let out = profile(ProfileOp::Set(vec![field(
        "contact.email",
        "alice@example.org",
        Category::Contact,
    )]));
    assert_eq!(peer_wires(&out).len(), 2, "one push per connection");
    v.pump(out);
    let seen = |who, id| v.show(who, id).peer_profile;
    let email = vec![("contact.email".to_string(), "alice@example.org".to_string())];
    assert_eq!(seen("bob", ba), email);
    assert_eq!(seen("carol", ca), email);
    // A field nobody sees changes nothing for them: no message at all.
    let out = profile(ProfileOp::Set(vec![field(
        "health.note",
        "x",
        Category::Health,
    )]));
    assert!(peer_wires(&out).is_empty());
    // Withheld from carol only: she is told, bob is not bothered.
    let out = profile(ProfileOp::SetOverride {
        connection: sharing_name(&ac),
        target: ShareTarget::Category(Category::Contact),
        share: false,
    });
    assert_eq!(peer_wires(&out).len(), 1);
    v.pump(out);
    assert!(seen("carol", ca).is_empty());
    assert_eq!(seen("bob", ba), email);
}

fn requests(v: &Vaults, who: &str) -> Vec<vettid_proto::connections::RequestView> {
    match v.op(who, ConnectionOp::Requests(None)).unwrap().0 {
        ConnectionReply::Requests(r) => r,
        other => panic!("{other:?}"),
    }
}

fn set_fields(
    v: &Vaults,
    who: &str,
    fields: &[(&str, &str, vettid_proto::profile::Category, bool)],
) {
    let op = vettid_proto::profile::ProfileOp::Set(
        fields
            .iter()
            .map(|(k, val, c, sensitive)| vettid_proto::profile::NewField {
                key: (*k).into(),
                value: vettid_proto::secrets::Secret::new(val),
                category: *c,
                sensitive: *sensitive,
                order: 0,
            })
            .collect(),
    );
    v.manager
        .domain(who, &v.openings[who], NOW, |u| {
            crate::profile::handle(u, op)
        })
        .and_then(|(a, _)| a)
        .unwrap();
}

#[test]
fn a_peer_asks_for_more_the_member_grants_counted_and_expiring_or_denies() {
    use vettid_proto::connections::{RequestState, ShareRule};
    use vettid_proto::profile::{Category, ShareTarget};
    let v = Vaults::new(&["alice", "bob"]);
    let (a, b) = v.connected();
    set_fields(
        &v,
        "alice",
        &[
            ("contact.phone", "+1 555 0100", Category::Contact, false),
            ("identity.passport", "X1234567", Category::Identity, true),
            ("address.home", "1 Main St", Category::Address, false),
        ],
    );
    // Bob asks for alice's phone and her passport number (a sensitive field, by name).
    let ask = ConnectionOp::Ask {
        id: b,
        targets: vec![
            ShareTarget::Category(Category::Contact),
            ShareTarget::Field("identity.passport".into()),
        ],
    };
    let (reply, out) = v.op("bob", ask).unwrap();
    let ConnectionReply::Asked(asked) = reply else {
        panic!("{reply:?}")
    };
    let events = v.pump(out);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EventKind::Request { incoming: true, .. }))
    );
    assert!(
        v.feed_kinds("alice")
            .contains(&"connection.request".to_string())
    );
    let incoming = requests(&v, "alice");
    assert_eq!(incoming.len(), 1);
    assert!(incoming[0].incoming && incoming[0].state == RequestState::Pending);
    assert!(incoming[0].values.is_empty());

    // Alice grants it for three uses, a day: bob's vault has the values.
    let day = 24 * 3600;
    let grant = ConnectionOp::Grant {
        request: incoming[0].id,
        uses: Some(3),
        expires_in_secs: Some(day),
    };
    let (_, out) = v.op("alice", grant).unwrap();
    v.pump(out);
    let mine = requests(&v, "bob");
    assert_eq!(mine[0].id, asked);
    assert_eq!(mine[0].state, RequestState::Granted);
    assert_eq!(mine[0].uses_left, Some(2));
    assert_eq!(
        mine[0].values,
        [
            ("contact.phone".to_string(), "+1 555 0100".to_string()),
            ("identity.passport".to_string(), "X1234567".to_string())
        ]
    );
    // A changed value comes with the next fetch; the uses count down, then run out.
    set_fields(
        &v,
        "alice",
        &[("contact.phone", "+1 555 0199", Category::Contact, false)],
    );
    for left in [1, 0] {
        let (_, out) = v.op("bob", ConnectionOp::Fetch(asked)).unwrap();
        v.pump(out);
        assert_eq!(requests(&v, "bob")[0].uses_left, Some(left));
    }
    assert_eq!(requests(&v, "bob")[0].values[0].1, "+1 555 0199");
    assert_eq!(
        v.op("bob", ConnectionOp::Fetch(asked)).unwrap_err(),
        VaultError::Connections(ConnectionError::GrantEnded)
    );
    // Alice ends the grant: bob's vault erases the values.
    let (_, out) = v
        .op("alice", ConnectionOp::EndGrant(incoming[0].id))
        .unwrap();
    v.pump(out);
    let ended = &requests(&v, "bob")[0];
    assert_eq!(ended.state, RequestState::Ended);
    assert_eq!(received_rows(&v, "bob"), 0, "erased, not hidden");

    // Denied: bob is told, nothing is sent. Bad requests and decisions are refused.
    let (reply, out) = v
        .op(
            "bob",
            ConnectionOp::Ask {
                id: b,
                targets: vec![ShareTarget::Category(Category::Address)],
            },
        )
        .unwrap();
    let ConnectionReply::Asked(second) = reply else {
        panic!()
    };
    v.pump(out);
    let pending = requests(&v, "alice")
        .into_iter()
        .find(|r| r.state == RequestState::Pending)
        .unwrap();
    let (_, out) = v.op("alice", ConnectionOp::Deny(pending.id)).unwrap();
    v.pump(out);
    let denied = requests(&v, "bob")
        .into_iter()
        .find(|r| r.id == second)
        .unwrap();
    assert_eq!(denied.state, RequestState::Denied);
    assert!(denied.values.is_empty());
    assert_eq!(
        v.op(
            "alice",
            ConnectionOp::Grant {
                request: pending.id,
                uses: None,
                expires_in_secs: None
            }
        )
        .unwrap_err(),
        VaultError::Connections(ConnectionError::UnknownRequest),
        "decided already"
    );
    for bad in [vec![], vec![ShareTarget::Field(String::new())]] {
        assert_eq!(
            v.op(
                "bob",
                ConnectionOp::Ask {
                    id: b,
                    targets: bad
                }
            )
            .unwrap_err(),
            VaultError::Connections(ConnectionError::BadRequest)
        );
    }

    // Alice's rule for bob becomes auto: his next request is granted at once, once.
    v.op(
        "alice",
        ConnectionOp::SetRule {
            id: a,
            rule: ShareRule::Auto,
        },
    )
    .unwrap();
    let (reply, out) = v
        .op(
            "bob",
            ConnectionOp::Ask {
                id: b,
                targets: vec![ShareTarget::Field("address.home".into())],
            },
        )
        .unwrap();
    let ConnectionReply::Asked(third) = reply else {
        panic!()
    };
    v.pump(out);
    let auto = requests(&v, "bob")
        .into_iter()
        .find(|r| r.id == third)
        .unwrap();
    assert_eq!(auto.state, RequestState::Granted);
    assert_eq!(
        auto.values,
        [("address.home".to_string(), "1 Main St".to_string())]
    );
    // Past its expiry the values are no longer shown.
    let later = NOW + (vettid_proto::connections::DEFAULT_GRANT_SECS + 1) * 1000;
    let shown = match v
        .manager
        .domain("bob", &v.openings["bob"], later, |u| {
            handle(u, ConnectionOp::Requests(Some(b)))
        })
        .and_then(|(a, _)| a)
        .unwrap()
        .0
    {
        ConnectionReply::Requests(r) => r,
        other => panic!("{other:?}"),
    };
    assert!(shown.iter().all(|r| r.values.is_empty()));
    // Erased at the connection's next message after the expiry.
    assert_eq!(received_rows(&v, "bob"), 1);
    let ping = peer_wires(&v.send("alice", a, "ping"));
    v.deliver_at("bob", &ping[0], later);
    assert_eq!(received_rows(&v, "bob"), 0, "expired values erased");
    // A revocation erases what was granted and ends every request.
    let (_, out) = v.op("alice", ConnectionOp::Revoke(a)).unwrap();
    v.pump(out);
    assert!(
        requests(&v, "bob")
            .iter()
            .all(|r| r.values.is_empty() && r.state != RequestState::Granted)
    );
}

#[test]
fn capabilities_are_offered_at_the_handshake_and_enforced_by_both_vaults() {
    use vettid_proto::connections::Capabilities;
    let v = Vaults::new(&["alice", "bob"]);
    let (a, b) = v.connected();
    assert_eq!(
        v.show("bob", b).peer_capabilities,
        Some(Capabilities::default())
    );
    assert_eq!(
        v.show("alice", a).peer_capabilities,
        Some(Capabilities::default())
    );
    // Alice stops taking messages from bob: his vault is told and refuses to send.
    let quiet = Capabilities {
        messaging: false,
        ..Capabilities::default()
    };
    let (_, out) = v
        .op(
            "alice",
            ConnectionOp::Allow {
                id: a,
                capabilities: quiet,
            },
        )
        .unwrap();
    assert_eq!(peer_wires(&out).len(), 1);
    v.pump(out);
    assert_eq!(v.show("bob", b).peer_capabilities, Some(quiet));
    assert_eq!(
        v.msg(
            "bob",
            MessageOp::Send {
                connection: b,
                client_id: [3; 16],
                text: "hi".into()
            }
        )
        .unwrap_err(),
        VaultError::Messages(MessageError::NotAllowed)
    );
    // A text sealed anyway (a vault that ignores the offer) is dropped by alice's vault.
    let forced = v.inside("bob", |vault, _| {
        let row = get(vault, &b)?;
        Ok(seal(&row, PeerBody::Text("ignored".into()), NOW, None)?.1)
    });
    assert!(peer_wires(&v.deliver("alice", &forced.body)).is_empty());
    assert!(v.history("alice", a).is_empty());
    // She still writes to him.
    v.pump(v.send("alice", a, "one way"));
    assert_eq!(v.history("bob", b)[0].text, "one way");
}

#[test]
fn attachments_travel_in_pieces_in_any_order_and_arrive_whole_or_not_at_all() {
    use sha2::Digest;
    use vettid_proto::messages::{AttachmentInfo, PIECE_BYTES};
    let v = Vaults::new(&["alice", "bob"]);
    let (a, b) = v.connected();
    let bytes: Vec<u8> = (0..2 * PIECE_BYTES + 4000)
        .map(|i| (i % 251) as u8)
        .collect();
    let info = AttachmentInfo {
        name: "photo.png".into(),
        mime: "image/png".into(),
        size: bytes.len() as u32,
        sha256: sha2::Sha256::digest(&bytes).into(),
    };
    let upload = |client_id: [u8; 16], parts: &[&[u8]]| {
        for (i, p) in parts.iter().enumerate() {
            v.msg(
                "alice",
                MessageOp::Upload {
                    client_id,
                    index: i as u16,
                    bytes: p.to_vec(),
                },
            )
            .unwrap();
        }
    };
    let chunks: Vec<&[u8]> = bytes.chunks(PIECE_BYTES).collect();
    let send = |client_id, info: &AttachmentInfo| {
        v.msg(
            "alice",
            MessageOp::SendFile {
                connection: a,
                client_id,
                info: info.clone(),
                text: Some("the beach".into()),
            },
        )
    };

    // Pieces that do not add up are refused, and nothing is sent or kept.
    upload([1; 16], &chunks[..2]);
    assert_eq!(
        send([1; 16], &info).unwrap_err(),
        VaultError::Messages(MessageError::BadAttachment),
        "a piece missing"
    );
    upload([2; 16], &chunks);
    let wrong = AttachmentInfo {
        sha256: [0; 32],
        ..info.clone()
    };
    assert_eq!(
        send([2; 16], &wrong).unwrap_err(),
        VaultError::Messages(MessageError::BadAttachment),
        "the hash does not match"
    );
    assert!(v.history("alice", a).is_empty());
    assert_eq!(
        v.msg(
            "alice",
            MessageOp::Upload {
                client_id: [3; 16],
                index: 0,
                bytes: vec![0; PIECE_BYTES + 1]
            }
        )
        .unwrap_err(),
        VaultError::Messages(MessageError::BadAttachment)
    );

    // Sent: one File message and three pieces, which the hosts deliver out of order.
    let (reply, out) = send([2; 16], &info).unwrap();
    let MessageReply::Sent { seq } = reply else {
        panic!("{reply:?}")
    };
    let wires = peer_wires(&out);
    assert_eq!(wires.len(), 4);
    let mut events = Vec::new();
    for i in [2, 0, 3] {
        events.extend(v.pump(v.deliver("bob", &wires[i])));
        let m = &v.history("bob", b);
        assert!(
            m.is_empty() || !m[0].attachment.as_ref().unwrap().complete,
            "not whole before the last piece"
        );
    }
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, EventKind::Message { .. }))
    );
    assert!(
        v.history("alice", a)[0].delivered_ms.is_none(),
        "no receipt before the last piece"
    );
    let events = v.pump(v.deliver("bob", &wires[1]));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EventKind::Message { seq: s, .. } if *s == seq))
    );
    let got = &v.history("bob", b)[0];
    assert_eq!(got.text, "the beach");
    let view = got.attachment.clone().unwrap();
    assert!(view.complete && view.info == info);
    assert!(
        v.history("alice", a)[0].delivered_ms.is_some(),
        "receipt when whole"
    );
    let download = |who, outgoing, index| {
        let op = MessageOp::Download {
            connection: if who == "bob" { b } else { a },
            outgoing,
            seq,
            index,
        };
        match v.msg(who, op).unwrap().0 {
            MessageReply::Piece { bytes, pieces } => (bytes, pieces),
            other => panic!("{other:?}"),
        }
    };
    let mut joined = Vec::new();
    for i in 0..3 {
        let (piece, n) = download("bob", false, i);
        assert_eq!(n, 3);
        joined.extend(piece);
    }
    assert_eq!(joined, bytes);
    assert_eq!(download("alice", true, 2).0, chunks[2]);

    // A retry is the same message; a delete for everyone takes the attachment too.
    let (again, out) = send([2; 16], &info).unwrap();
    assert_eq!(again, MessageReply::Sent { seq });
    v.pump(out);
    assert_eq!(v.history("bob", b).len(), 1);
    let (_, out) = v
        .msg("alice", MessageOp::Delete { connection: a, seq })
        .unwrap();
    v.pump(out);
    let gone = &v.history("bob", b)[0];
    assert!(gone.deleted && gone.attachment.is_none());
    for who in ["alice", "bob"] {
        assert_eq!(piece_rows(&v, who), 0, "{who}'s vault erased the pieces");
    }
    // A piece the hosts replay after the delete is not kept.
    v.pump(v.deliver("bob", &wires[2]));
    assert_eq!(piece_rows(&v, "bob"), 0);
    // The next text takes the number after the last piece: it is not mistaken for one.
    v.pump(v.send("alice", a, "after the file"));
    assert_eq!(v.history("bob", b)[0].text, "after the file");
    let op = MessageOp::Download {
        connection: b,
        outgoing: false,
        seq,
        index: 0,
    };
    assert_eq!(
        v.msg("bob", op).unwrap_err(),
        VaultError::Messages(MessageError::Unknown)
    );
}

fn received_rows(v: &Vaults, who: &str) -> i64 {
    v.inside(who, |vault, _| {
        vault
            .read(|c| c.query_row("SELECT count(*) FROM received_values", [], |r| r.get(0)))
            .map_err(db)
    })
}

#[test]
fn auto_grants_only_what_is_shared_openly_and_grants_never_grow() {
    use vettid_proto::connections::{RequestState, ShareRule};
    use vettid_proto::profile::{Category, ProfileOp, ShareTarget};
    let v = Vaults::new(&["alice", "bob"]);
    let (a, b) = v.connected();
    set_fields(
        &v,
        "alice",
        &[
            ("contact.email", "a@example.org", Category::Contact, false),
            ("contact.phone", "+1 555 0100", Category::Contact, false),
            ("identity.passport", "X1234567", Category::Identity, true),
        ],
    );
    // Alice withholds her phone from bob, and lets his requests through automatically.
    let withhold = ProfileOp::SetOverride {
        connection: sharing_name(&a),
        target: ShareTarget::Field("contact.phone".into()),
        share: false,
    };
    v.manager
        .domain("alice", &v.openings["alice"], NOW, |u| {
            crate::profile::handle(u, withhold)
        })
        .and_then(|(r, _)| r)
        .unwrap();
    v.op(
        "alice",
        ConnectionOp::SetRule {
            id: a,
            rule: ShareRule::Auto,
        },
    )
    .unwrap();
    let ask = |targets| v.op("bob", ConnectionOp::Ask { id: b, targets }).unwrap();
    let (_, out) = ask(vec![
        ShareTarget::Category(Category::Contact),
        ShareTarget::Field("contact.phone".into()),
        ShareTarget::Field("identity.passport".into()),
    ]);
    v.pump(out);
    let got = &requests(&v, "bob")[0];
    assert_eq!(got.state, RequestState::Granted);
    assert_eq!(
        got.values,
        [("contact.email".to_string(), "a@example.org".to_string())],
        "no sensitive field, nothing withheld, without alice deciding"
    );
    // Asked of her member instead, the passport named by its key may be granted: she sees
    // what a grant would give before she decides.
    v.op(
        "alice",
        ConnectionOp::SetRule {
            id: a,
            rule: ShareRule::Ask,
        },
    )
    .unwrap();
    let (_, out) = ask(vec![ShareTarget::Field("identity.passport".into())]);
    v.pump(out);
    let pending = requests(&v, "alice")
        .into_iter()
        .find(|r| r.state == RequestState::Pending)
        .unwrap();
    assert_eq!(pending.would_share, ["identity.passport"]);

    // A grant of a category covers its fields as they were: one added later does not come
    // with the next fetch.
    let (_, out) = ask(vec![ShareTarget::Category(Category::Contact)]);
    v.pump(out);
    let contact = requests(&v, "alice")
        .into_iter()
        .find(|r| {
            r.state == RequestState::Pending
                && r.targets.len() == 1
                && r.would_share == ["contact.email"]
        })
        .unwrap();
    let (_, out) = v
        .op(
            "alice",
            ConnectionOp::Grant {
                request: contact.id,
                uses: Some(2),
                expires_in_secs: None,
            },
        )
        .unwrap();
    v.pump(out);
    set_fields(
        &v,
        "alice",
        &[("contact.fax", "+1 555 0111", Category::Contact, false)],
    );
    let mine = requests(&v, "bob")
        .into_iter()
        .find(|r| r.state == RequestState::Granted && r.uses_left == Some(1))
        .unwrap();
    let (_, out) = v.op("bob", ConnectionOp::Fetch(mine.id)).unwrap();
    v.pump(out);
    let fetched = requests(&v, "bob")
        .into_iter()
        .find(|r| r.id == mine.id)
        .unwrap();
    assert_eq!(fetched.uses_left, Some(0), "the fetch was answered");
    assert_eq!(
        fetched.values,
        [("contact.email".to_string(), "a@example.org".to_string())],
        "no field added after the grant"
    );
}

#[test]
fn answers_apply_in_the_granters_order_and_an_end_is_final() {
    use vettid_proto::connections::RequestState;
    use vettid_proto::profile::{Category, ShareTarget};
    let v = Vaults::new(&["alice", "bob"]);
    let (a, b) = v.connected();
    let _ = a;
    set_fields(
        &v,
        "alice",
        &[("contact.email", "a@example.org", Category::Contact, false)],
    );
    let (_, out) = v
        .op(
            "bob",
            ConnectionOp::Ask {
                id: b,
                targets: vec![ShareTarget::Category(Category::Contact)],
            },
        )
        .unwrap();
    v.pump(out);
    let incoming = requests(&v, "alice")[0].id;
    let (_, granted) = v
        .op(
            "alice",
            ConnectionOp::Grant {
                request: incoming,
                uses: Some(5),
                expires_in_secs: None,
            },
        )
        .unwrap();
    let (_, ended) = v.op("alice", ConnectionOp::EndGrant(incoming)).unwrap();
    // The hosts deliver the end first, then the grant.
    v.pump(v.deliver("bob", &peer_wires(&ended)[0]));
    v.pump(v.deliver("bob", &peer_wires(&granted)[0]));
    let mine = &requests(&v, "bob")[0];
    assert_eq!(mine.state, RequestState::Ended, "the end stands");
    assert_eq!(received_rows(&v, "bob"), 0, "the late grant left nothing");
}

#[test]
fn a_profile_push_overtaken_by_a_newer_one_is_ignored() {
    use vettid_proto::profile::{Category, ProfileOp};
    let v = Vaults::new(&["alice", "bob"]);
    let (_, b) = v.connected();
    let profile = |op: ProfileOp| {
        v.manager
            .domain("alice", &v.openings["alice"], NOW, |u| {
                crate::profile::handle(u, op)
            })
            .and_then(|(r, _)| r)
            .unwrap()
            .1
    };
    profile(ProfileOp::SetDefault {
        category: Category::Contact,
        share: true,
    });
    let first = profile(ProfileOp::Set(vec![vettid_proto::profile::NewField {
        key: "contact.email".into(),
        value: vettid_proto::secrets::Secret::new("old@example.org"),
        category: Category::Contact,
        sensitive: false,
        order: 0,
    }]));
    let second = profile(ProfileOp::Set(vec![vettid_proto::profile::NewField {
        key: "contact.email".into(),
        value: vettid_proto::secrets::Secret::new("new@example.org"),
        category: Category::Contact,
        sensitive: false,
        order: 0,
    }]));
    v.pump(v.deliver("bob", &peer_wires(&second)[0]));
    v.pump(v.deliver("bob", &peer_wires(&first)[0]));
    assert_eq!(
        v.show("bob", b).peer_profile,
        [("contact.email".to_string(), "new@example.org".to_string())]
    );
}

#[test]
fn with_messaging_off_no_edit_gets_in_and_an_early_edit_stays_hidden_until_its_message() {
    use vettid_proto::connections::Capabilities;
    let v = Vaults::new(&["alice", "bob"]);
    let (a, b) = v.connected();
    // An edit for a message not yet here is held out of sight.
    let out = v.send("bob", b, "original");
    let seq = v.history("bob", b)[0].seq;
    let original = peer_wires(&out);
    let (_, edit) = v
        .msg(
            "bob",
            MessageOp::Edit {
                connection: b,
                seq,
                text: "edited".into(),
            },
        )
        .unwrap();
    v.pump(v.deliver("alice", &peer_wires(&edit)[0]));
    assert!(
        v.history("alice", a).is_empty(),
        "nothing shown before the message"
    );
    v.pump(v.deliver("alice", &original[0]));
    assert_eq!(v.history("alice", a)[0].text, "edited");

    // Alice stops taking messages: an "edit" of a number never used is no way in.
    let quiet = Capabilities {
        messaging: false,
        ..Capabilities::default()
    };
    let (_, out) = v
        .op(
            "alice",
            ConnectionOp::Allow {
                id: a,
                capabilities: quiet,
            },
        )
        .unwrap();
    v.pump(out);
    let forged = v.inside("bob", |vault, _| {
        let row = get(vault, &b)?;
        let body = PeerBody::Edit {
            seq: 500,
            text: "sneaking in".into(),
        };
        Ok(seal(&row, body, NOW, Some(900))?.1)
    });
    v.pump(v.deliver("alice", &forged.body));
    let texts: Vec<String> = v.inside("alice", |vault, _| {
        vault
            .read(|c| {
                let mut st = c.prepare("SELECT text FROM messages")?;
                let r = st.query_map([], |r| r.get::<_, String>(0))?;
                r.collect::<rusqlite::Result<Vec<String>>>()
            })
            .map_err(db)
    });
    assert_eq!(texts, ["edited"]);
}

#[test]
fn a_peer_cannot_queue_more_than_twenty_requests_for_the_member() {
    use vettid_proto::connections::MAX_PENDING_ASKS;
    use vettid_proto::profile::{Category, ShareTarget};
    let v = Vaults::new(&["alice", "bob"]);
    let (_, b) = v.connected();
    for _ in 0..MAX_PENDING_ASKS + 5 {
        let (_, out) = v
            .op(
                "bob",
                ConnectionOp::Ask {
                    id: b,
                    targets: vec![ShareTarget::Category(Category::Other)],
                },
            )
            .unwrap();
        v.pump(out);
    }
    assert_eq!(
        requests(&v, "alice").iter().filter(|r| r.incoming).count(),
        MAX_PENDING_ASKS
    );
}

#[test]
fn a_resent_invitation_replaces_the_old_one_which_then_connects_nobody() {
    let v = Vaults::new(&["alice", "bob"]);
    let (reply, _) = v
        .op(
            "alice",
            ConnectionOp::Invite {
                label: Some("bob".into()),
                expires_in_secs: None,
                in_person: false,
            },
        )
        .unwrap();
    let ConnectionReply::Invited {
        id,
        invitation: old,
    } = reply
    else {
        panic!()
    };
    let (reply, _) = v
        .op(
            "alice",
            ConnectionOp::Resend {
                id,
                expires_in_secs: Some(3600),
            },
        )
        .unwrap();
    let ConnectionReply::Invited {
        id: new_id,
        invitation: new,
    } = reply
    else {
        panic!()
    };
    assert_ne!(new_id, id);
    let pending = match v.op("alice", ConnectionOp::Invitations).unwrap().0 {
        ConnectionReply::Invitations(i) => i,
        other => panic!("{other:?}"),
    };
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].id, pending[0].label.as_deref()),
        (new_id, Some("bob"))
    );
    assert_eq!(new.expires_ms, NOW + 3600 * 1000);
    // The old one gets no answer; the new one connects.
    let (_, hello) = v.op("bob", ConnectionOp::Accept(old)).unwrap();
    assert!(v.deliver("alice", &peer_wires(&hello)[0]).is_empty());
    let (_, hello) = v.op("bob", ConnectionOp::Accept(new)).unwrap();
    v.pump(hello);
    assert!(
        v.list("alice")
            .iter()
            .any(|c| c.state == ConnectionState::PendingReview)
    );
    assert_eq!(
        v.op(
            "alice",
            ConnectionOp::Resend {
                id,
                expires_in_secs: None
            }
        )
        .unwrap_err(),
        VaultError::Connections(ConnectionError::Unknown)
    );
}

fn piece_rows(v: &Vaults, who: &str) -> i64 {
    v.inside(who, |vault, _| {
        vault
            .read(|c| c.query_row("SELECT count(*) FROM attachment_pieces", [], |r| r.get(0)))
            .map_err(db)
    })
}

#[test]
fn pieces_are_kept_only_for_files_still_arriving_and_the_file_may_come_last() {
    use sha2::Digest;
    use vettid_proto::messages::{AttachmentInfo, PIECE_BYTES};
    let v = Vaults::new(&["alice", "bob"]);
    let (a, b) = v.connected();
    let bytes: Vec<u8> = (0..PIECE_BYTES + 10).map(|i| (i % 7) as u8).collect();
    let info = AttachmentInfo {
        name: "notes.txt".into(),
        mime: "text/plain".into(),
        size: bytes.len() as u32,
        sha256: sha2::Sha256::digest(&bytes).into(),
    };
    for (i, p) in bytes.chunks(PIECE_BYTES).enumerate() {
        v.msg(
            "alice",
            MessageOp::Upload {
                client_id: [4; 16],
                index: i as u16,
                bytes: p.to_vec(),
            },
        )
        .unwrap();
    }
    let (_, out) = v
        .msg(
            "alice",
            MessageOp::SendFile {
                connection: a,
                client_id: [4; 16],
                info: info.clone(),
                text: None,
            },
        )
        .unwrap();
    let wires = peer_wires(&out);
    // Both pieces first, the File message last: whole when it comes.
    v.pump(v.deliver("bob", &wires[1]));
    v.pump(v.deliver("bob", &wires[2]));
    assert!(v.history("bob", b).is_empty());
    let events = v.pump(v.deliver("bob", &wires[0]));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EventKind::Message { .. }))
    );
    assert!(v.history("bob", b)[0].attachment.as_ref().unwrap().complete);

    // Alice's vault crafts pieces: beyond a file's count, for a finished file, and for more
    // files that never come than may wait: none of those is kept.
    let file_seq = v.history("bob", b)[0].seq;
    let forge = |file: u64, index: u16| {
        v.inside("alice", |vault, _| {
            let row = get(vault, &a)?;
            let body = PeerBody::Piece {
                file,
                index,
                bytes: vec![1; 10],
            };
            Ok(seal(&row, body, NOW, Some(file + 1 + u64::from(index)))?.1)
        })
    };
    let before = piece_rows(&v, "bob");
    v.deliver("bob", &forge(file_seq, 5).body);
    assert_eq!(
        piece_rows(&v, "bob"),
        before,
        "a finished file takes no more pieces"
    );
    for (n, file) in [1000u64, 2000, 3000].iter().enumerate() {
        v.deliver("bob", &forge(*file, 0).body);
        let expected = before + (n as i64 + 1).min(2);
        assert_eq!(piece_rows(&v, "bob"), expected, "at most two files wait");
    }
    v.deliver("bob", &forge(1000, 30).body);
    assert_eq!(
        piece_rows(&v, "bob"),
        before + 2,
        "no piece beyond 1 MiB's count"
    );
    // Clearing the history erases every piece.
    v.msg("bob", MessageOp::Clear { connection: b }).unwrap();
    assert_eq!(piece_rows(&v, "bob"), 0);
    assert!(v.history("bob", b).is_empty());
}

#[test]
fn the_inbox_keeps_only_numbers_above_the_floor_and_a_late_one_fills_its_gap() {
    let v = Vaults::new(&["alice", "bob"]);
    let (a, b) = v.connected();
    let inbox_rows = |who| -> i64 {
        v.inside(who, |vault, _| {
            vault
                .read(|c| c.query_row("SELECT count(*) FROM peer_inbox", [], |r| r.get(0)))
                .map_err(db)
        })
    };
    assert_eq!(inbox_rows("bob"), 0, "in order: nothing kept one by one");
    let one = peer_wires(&v.send("alice", a, "one"));
    let two = peer_wires(&v.send("alice", a, "two"));
    let three = peer_wires(&v.send("alice", a, "three"));
    v.deliver("bob", &one[0]);
    v.deliver("bob", &three[0]);
    assert_eq!(inbox_rows("bob"), 1, "three waits above the gap");
    v.deliver("bob", &two[0]);
    assert_eq!(inbox_rows("bob"), 0, "the gap filled: the floor rose");
    // Each kept once, whatever comes again.
    for w in [&one[0], &two[0], &three[0]] {
        v.deliver("bob", w);
    }
    let mut texts: Vec<String> = v.history("bob", b).into_iter().map(|m| m.text).collect();
    texts.sort();
    assert_eq!(texts, ["one", "three", "two"]);
}

#[test]
fn retention_keeps_the_place_of_a_delete_whose_message_has_not_come() {
    let v = Vaults::new(&["alice", "bob"]);
    let (a, b) = v.connected();
    let day = 24 * 3600 * 1000;
    v.msg(
        "bob",
        MessageOp::SetRetention {
            connection: None,
            days: Some(1),
        },
    )
    .unwrap();
    let original = peer_wires(&v.send("alice", a, "to be deleted"));
    let seq = v.history("alice", a)[0].seq;
    let (_, delete) = v
        .msg("alice", MessageOp::Delete { connection: a, seq })
        .unwrap();
    v.pump(v.deliver("bob", &peer_wires(&delete)[0]));
    // Days later something else arrives (retention runs), then the held-back message.
    let other = peer_wires(&v.send("alice", a, "later"));
    v.deliver_at("bob", &other[0], NOW + 3 * day);
    v.deliver_at("bob", &original[0], NOW + 3 * day);
    let m = page(&v, "bob", b, NOW + 3 * day);
    let deleted = m.iter().find(|m| m.seq == seq);
    assert!(
        deleted.is_none_or(|m| m.deleted && m.text.is_empty()),
        "the deleted message did not come back: {m:?}"
    );
}

#[test]
fn a_redelivery_gets_its_receipt_again_under_the_same_number_and_a_refused_text_none() {
    use vettid_proto::connections::Capabilities;
    let v = Vaults::new(&["alice", "bob"]);
    let (a, b) = v.connected();
    let bob_row = |v: &Vaults| v.inside("bob", |vault, _| get(vault, &b));
    let text = peer_wires(&v.send("alice", a, "hello"));
    let first = peer_wires(&v.deliver("bob", &text[0]));
    let sent = bob_row(&v).send_seq;
    // The same text again: the receipt again, numbered as before (no new message minted).
    let mut agains = Vec::new();
    for _ in 0..3 {
        let again = peer_wires(&v.deliver("bob", &text[0]));
        assert_eq!(again.len(), 1);
        assert_eq!(bob_row(&v).send_seq, sent, "no new number");
        agains.extend(again);
    }
    v.pump(v.deliver("alice", &first[0]));
    assert!(v.history("alice", a)[0].delivered_ms.is_some());
    let alice_floor = |v: &Vaults| v.inside("alice", |vault, _| get(vault, &a)).recv_floor;
    let floor_then = alice_floor(&v);
    for again in &agains {
        v.deliver("alice", again);
    }
    assert_eq!(
        alice_floor(&v),
        floor_then,
        "alice's vault takes them as the one receipt"
    );

    // Bob stops taking messages; a text sealed anyway is taken (no gap) and never answered.
    let quiet = Capabilities {
        messaging: false,
        ..Capabilities::default()
    };
    let (_, out) = v
        .op(
            "bob",
            ConnectionOp::Allow {
                id: b,
                capabilities: quiet,
            },
        )
        .unwrap();
    v.pump(out);
    let forced = v.inside("alice", |vault, _| {
        let row = get(vault, &a)?;
        seal(&row, PeerBody::Text("ignored".into()), NOW, None)
    });
    let floor = bob_row(&v).recv_floor;
    assert!(peer_wires(&v.deliver("bob", &forced.1.body)).is_empty());
    assert_eq!(
        bob_row(&v).recv_floor,
        floor + 1,
        "taken: the floor rose over it"
    );
    assert!(
        peer_wires(&v.deliver("bob", &forced.1.body)).is_empty(),
        "no receipt on replay"
    );
}

#[test]
fn history_is_searched_by_time_and_paged() {
    let v = Vaults::new(&["alice", "bob"]);
    let (a, b) = v.connected();
    let minute = 60_000;
    for i in 0..5u64 {
        let op = MessageOp::Send {
            connection: a,
            client_id: [i as u8 + 10; 16],
            text: format!("minute {i}"),
        };
        let (_, out) = v.msg_at("alice", op, NOW + i * minute).unwrap();
        v.pump(out);
    }
    let span = |since: Option<u64>, before: Option<u64>, limit| {
        let op = MessageOp::List {
            connection: b,
            before_ms: before,
            since_ms: since,
            limit,
        };
        match v.msg("bob", op).unwrap().0 {
            MessageReply::Messages { messages, more } => (
                messages.into_iter().map(|m| m.text).collect::<Vec<_>>(),
                more,
            ),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        span(Some(NOW + minute), Some(NOW + 4 * minute), 50),
        (
            vec!["minute 3".into(), "minute 2".into(), "minute 1".into()],
            false
        )
    );
    let (page, more) = span(None, None, 2);
    assert_eq!(
        (page, more),
        (vec!["minute 4".into(), "minute 3".into()], true)
    );
}

/// The version `who`'s vault is at, and how many log objects it has in storage.
fn version_and_logs(v: &Vaults, who: &str) -> (u64, usize) {
    let version = v.manager.whoami(who).unwrap().1.unwrap().version;
    let prefix = format!("vaults/{who}/log/");
    let logs = v
        .store
        .lock()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with(&prefix))
        .count();
    (version, logs)
}

#[test]
fn a_batch_of_peer_messages_is_taken_in_order_and_made_durable_as_one_version() {
    use vettid_proto::enclave::{EnclaveReply, PeerRest};
    let v = Vaults::new(&["alice", "bob"]);
    let (a, b) = v.connected();
    let mut batch: Vec<Vec<u8>> = (0..5)
        .flat_map(|i| peer_wires(&v.send("alice", a, &format!("text {i}"))))
        .collect();
    // A hostile host slips in junk and a replay: dropped, the others taken in order.
    batch.insert(2, vec![0x42; 1024]);
    batch.insert(4, batch[1].clone());
    let (version, logs) = version_and_logs(&v, "bob");
    let EnclaveReply::Peers { done, rest, out } =
        crate::server::peers(&v.manager, "bob", NOW, &batch).unwrap()
    else {
        panic!("not a batch answer")
    };
    assert_eq!((done as usize, rest), (batch.len(), None));
    let (after, logs_after) = version_and_logs(&v, "bob");
    assert_eq!(after, version + 1, "one version for the whole batch");
    assert_eq!(logs_after, logs + 1, "one log object for the whole batch");
    // Newest first.
    let texts: Vec<String> = v.history("bob", b).into_iter().map(|m| m.text).collect();
    let expected: Vec<String> = (0..5).rev().map(|i| format!("text {i}")).collect();
    assert_eq!(texts, expected, "each text once, in order");
    // Every text's receipt goes back (the replay's too, under the number it had).
    assert!(peer_wires(&out).len() >= 5);
    v.pump(out);
    assert_eq!(
        v.history("alice", a)
            .iter()
            .filter(|m| m.delivered_ms.is_some())
            .count(),
        5
    );

    // Locked: the whole batch is for later, nothing taken.
    v.manager.lock_for_app("bob").unwrap();
    let EnclaveReply::Peers { done, rest, out } =
        crate::server::peers(&v.manager, "bob", NOW, &batch).unwrap()
    else {
        panic!("not a batch answer")
    };
    assert_eq!((done, rest, out.len()), (0, Some(PeerRest::Later), 0));
}

#[test]
fn a_batch_whose_write_the_host_refuses_keeps_nothing_and_lands_once_when_it_comes_again() {
    use vettid_proto::enclave::EnclaveReply;
    let v = Vaults::new(&["alice", "bob"]);
    let (a, b) = v.connected();
    let batch: Vec<Vec<u8>> = (0..3)
        .flat_map(|i| peer_wires(&v.send("alice", a, &format!("text {i}"))))
        .collect();
    let before = v.history("bob", b).len();
    let (version, _) = version_and_logs(&v, "bob");
    // The host squats the name of the batch's log entry: the write cannot be made.
    let squat = format!("vaults/bob/log/{:020}", version + 1);
    v.store.lock().unwrap().insert(squat.clone(), vec![0; 8]);
    assert!(crate::server::peers(&v.manager, "bob", NOW, &batch).is_err());
    // (A vault reloaded now would find the squatter and refuse it as tampered.)
    v.store.lock().unwrap().remove(&squat);
    assert_eq!(version_and_logs(&v, "bob").0, version, "no version made");
    assert_eq!(
        v.history("bob", b).len(),
        before,
        "nothing of the batch kept"
    );
    // JetStream delivers it again once the host behaves: each text lands once.
    let EnclaveReply::Peers { done, rest, .. } =
        crate::server::peers(&v.manager, "bob", NOW, &batch).unwrap()
    else {
        panic!("not a batch answer")
    };
    assert_eq!((done, rest), (3, None));
    assert_eq!(v.history("bob", b).len(), before + 3);
    assert_eq!(version_and_logs(&v, "bob").0, version + 1);
}
