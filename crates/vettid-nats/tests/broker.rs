//! Tenant isolation against a real nats-server (DESIGN §3.5): what each user may and may not do.

mod support;

use async_nats::Event;
use async_nats::jetstream::consumer::IntoConsumerConfig;
use async_nats::jetstream::{self, stream, stream::ConsumerErrorKind};
use futures::{FutureExt, StreamExt};
use std::time::{Duration, SystemTime};
use support::{Broker, WITHIN, claims, expect_event, expect_violation};
use vettid_nats::{EVENTS_STREAM, MemberScope, member_consumer_config, push_account};

async fn create_events_stream(host: &async_nats::Client) -> jetstream::Context {
    let js = jetstream::new(host.clone());
    js.get_or_create_stream(stream::Config {
        name: EVENTS_STREAM.into(),
        subjects: vec!["OwnerSpace.*.forApp.>".into()],
        ..Default::default()
    })
    .await
    .expect("host creates the events stream");
    js
}

#[tokio::test]
async fn platform_users_connect_and_host_runs_jetstream() {
    let b = Broker::start().await;
    let host = b.connect_creds(&b.setup.host_creds()).await;
    let js = create_events_stream(&host).await;
    let ack = js
        .publish("OwnerSpace.alice.forApp.hello", "event".into())
        .await
        .expect("publish")
        .await
        .expect("stream acknowledges");
    assert_eq!((ack.stream.as_str(), ack.sequence), (EVENTS_STREAM, 1));
    let api = b.connect_creds(&b.setup.api_creds()).await;
    api.flush().await.expect("api is connected");
    let sys = b.connect_creds(&b.setup.sys_creds()).await;
    sys.flush().await.expect("sys is connected");
}

#[tokio::test]
async fn a_member_request_reaches_the_host_and_the_reply_its_own_inbox() {
    let b = Broker::start().await;
    let (_host, mut seen) = b.start_host_router().await;
    let (alice, _events, _) = b.member("alice", MemberScope::Member).await;
    let reply = alice
        .request("OwnerSpace.alice.forVault.session", "hi".into())
        .await
        .expect("the host's reply reaches _INBOX_alice");
    assert_eq!(&reply.payload[..], b"ack:OwnerSpace.alice.forVault.session");
    assert_eq!(
        seen.recv().await.unwrap(),
        "OwnerSpace.alice.forVault.session"
    );
}

#[tokio::test]
async fn a_member_cannot_publish_to_another_members_vault() {
    let b = Broker::start().await;
    let (_host, mut seen) = b.start_host_router().await;
    let (alice, mut events, _) = b.member("alice", MemberScope::Member).await;
    alice
        .publish("OwnerSpace.bob.forVault.session", "forged".into())
        .await
        .unwrap();
    alice
        .publish("OwnerSpace.alice.forVault.session", "own".into())
        .await
        .unwrap();
    expect_violation(&mut events, "OwnerSpace.bob.forVault.session").await;
    // In-order delivery: had the forged message got through, the host would have seen it first.
    assert_eq!(
        seen.recv().await.unwrap(),
        "OwnerSpace.alice.forVault.session"
    );
}

#[tokio::test]
async fn a_member_cannot_subscribe_to_another_members_events() {
    let b = Broker::start().await;
    let host = b.connect_creds(&b.setup.host_creds()).await;
    let (alice, mut events, _) = b.member("alice", MemberScope::Member).await;
    let mut bobs = alice.subscribe("OwnerSpace.bob.forApp.>").await.unwrap();
    let mut own = alice.subscribe("OwnerSpace.alice.forApp.>").await.unwrap();
    alice.flush().await.unwrap();
    expect_violation(&mut events, "OwnerSpace.bob.forApp.>").await;
    // Bob's message, then alice's, until alice has hers (a message published while the
    // server is still settling the refused subscription was seen lost once under load).
    let deadline = tokio::time::Instant::now() + WITHIN;
    let mine = loop {
        host.publish("OwnerSpace.bob.forApp.x", "secret".into())
            .await
            .unwrap();
        host.publish("OwnerSpace.alice.forApp.x", "mine".into())
            .await
            .unwrap();
        host.flush().await.unwrap();
        if let Ok(m) = tokio::time::timeout(Duration::from_secs(1), own.next()).await {
            break m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice never got hers"
        );
    };
    assert_eq!(&mine.unwrap().payload[..], b"mine");
    // Delivered in order on one connection: bob's message would be queued by now.
    assert!(bobs.next().now_or_never().is_none());
}

#[tokio::test]
async fn the_enrollment_scope_reaches_only_attestation_and_enroll() {
    let b = Broker::start().await;
    let (_host, mut seen) = b.start_host_router().await;
    let (app, mut events, _) = b.member("carol", MemberScope::Enrollment).await;
    app.publish("OwnerSpace.carol.forVault.session", "x".into())
        .await
        .unwrap();
    let reply = app
        .request("OwnerSpace.carol.forVault.attestation", "nonce".into())
        .await
        .expect("attestation request answered");
    assert_eq!(
        &reply.payload[..],
        b"ack:OwnerSpace.carol.forVault.attestation"
    );
    app.request("OwnerSpace.carol.forVault.enroll", "e".into())
        .await
        .expect("enroll request answered");
    expect_violation(&mut events, "OwnerSpace.carol.forVault.session").await;
    assert_eq!(
        seen.recv().await.unwrap(),
        "OwnerSpace.carol.forVault.attestation"
    );
    assert_eq!(
        seen.recv().await.unwrap(),
        "OwnerSpace.carol.forVault.enroll"
    );
    app.subscribe("OwnerSpace.carol.forApp.>").await.unwrap();
    expect_violation(&mut events, "OwnerSpace.carol.forApp.>").await;
}

/// What the host does when it first routes a member's enroll or session message.
async fn host_creates_durable_of(host_js: &jetstream::Context, member: &str) {
    host_js
        .create_consumer_on_stream(member_consumer_config(member).unwrap(), EVENTS_STREAM)
        .await
        .expect("the host creates the member's durable");
}

/// Asserts, as the host, that `consumer` does not exist on the events stream.
async fn assert_no_consumer(host_js: &jetstream::Context, consumer: &str) {
    let err = host_js
        .get_consumer_from_stream::<jetstream::consumer::Config, _, _>(consumer, EVENTS_STREAM)
        .await
        .map(|_| ())
        .expect_err("the consumer exists");
    assert!(
        matches!(err.kind(), ConsumerErrorKind::JetStream(e)
            if e.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND),
        "{consumer}: {err}"
    );
}

#[tokio::test]
async fn a_member_has_no_jetstream_api_even_on_its_own_durable() {
    let b = Broker::start().await;
    let host = b.connect_creds(&b.setup.host_creds()).await;
    let host_js = create_events_stream(&host).await;
    host_creates_durable_of(&host_js, "alice").await;
    let (alice, mut events, _) = b.member("alice", MemberScope::Member).await;
    // Catching up goes through the host (`forVault.events`): the JetStream API answers to any
    // reply subject the requester names, so no member may call it.
    for subject in [
        "$JS.API.CONSUMER.INFO.VETTID_EVENTS.alice",
        "$JS.API.CONSUMER.MSG.NEXT.VETTID_EVENTS.alice",
        "$JS.ACK.VETTID_EVENTS.alice.1.1.1.1.0",
        "$JS.API.INFO",
    ] {
        alice.publish(subject, "{}".into()).await.unwrap();
        expect_violation(&mut events, subject).await;
    }
}

#[tokio::test]
async fn a_member_cannot_create_any_consumer() {
    let b = Broker::start().await;
    let host = b.connect_creds(&b.setup.host_creds()).await;
    let host_js = create_events_stream(&host).await;
    let (alice, mut events, _) = b.member("alice", MemberScope::Member).await;
    let js = jetstream::new(alice.clone());

    let own = member_consumer_config("alice").unwrap();
    // nats-server #8274: a push durable delivers wherever its creator says.
    let push = jetstream::consumer::push::Config {
        durable_name: Some("alice".into()),
        deliver_subject: "OwnerSpace.bob.forVault.session".into(),
        filter_subject: own.filter_subject.clone(),
        ..Default::default()
    };
    let ephemeral = jetstream::consumer::pull::Config {
        filter_subject: own.filter_subject.clone(),
        ..Default::default()
    };
    let attempts: [(jetstream::consumer::Config, &str); 4] = [
        (
            own.into_consumer_config(),
            "$JS.API.CONSUMER.CREATE.VETTID_EVENTS.alice.OwnerSpace.alice.forApp.>",
        ),
        (
            push.into_consumer_config(),
            "$JS.API.CONSUMER.CREATE.VETTID_EVENTS.alice.OwnerSpace.alice.forApp.>",
        ),
        (
            member_consumer_config("bob")
                .unwrap()
                .into_consumer_config(),
            "$JS.API.CONSUMER.CREATE.VETTID_EVENTS.bob.OwnerSpace.bob.forApp.>",
        ),
        (
            ephemeral.into_consumer_config(),
            "$JS.API.CONSUMER.CREATE.VETTID_EVENTS",
        ),
    ];
    let mut refused = Vec::new();
    for (config, subject) in attempts {
        // One at a time, so each violation is matched to its own attempt; the requests
        // themselves go unanswered and time out together at the end.
        let js = js.clone();
        refused.push(tokio::spawn(async move {
            js.create_consumer_on_stream(config, EVENTS_STREAM).await
        }));
        expect_violation(&mut events, subject).await;
    }
    // Nor the unfiltered or the legacy (pre-2.9) create subjects.
    for subject in [
        "$JS.API.CONSUMER.CREATE.VETTID_EVENTS.alice",
        "$JS.API.CONSUMER.DURABLE.CREATE.VETTID_EVENTS.alice",
    ] {
        alice.publish(subject, "{}".into()).await.unwrap();
        expect_violation(&mut events, subject).await;
    }
    for attempt in refused {
        assert!(attempt.await.unwrap().is_err());
    }
    for name in ["alice", "bob"] {
        assert_no_consumer(&host_js, name).await;
    }
    let mut stream = host_js.get_stream(EVENTS_STREAM).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.consumer_count, 0);
}

#[tokio::test]
async fn a_member_cannot_reach_another_members_consumer() {
    let b = Broker::start().await;
    let host = b.connect_creds(&b.setup.host_creds()).await;
    let host_js = create_events_stream(&host).await;
    host_creates_durable_of(&host_js, "bob").await;
    let (alice, mut events, _) = b.member("alice", MemberScope::Member).await;
    let forbidden = [
        "$JS.API.CONSUMER.INFO.VETTID_EVENTS.bob",
        "$JS.API.CONSUMER.MSG.NEXT.VETTID_EVENTS.bob",
        "$JS.API.CONSUMER.DELETE.VETTID_EVENTS.bob",
        "$JS.API.STREAM.INFO.VETTID_EVENTS",
        "$JS.API.STREAM.MSG.GET.VETTID_EVENTS",
        "$JS.API.DIRECT.GET.VETTID_EVENTS",
        "$JS.ACK.VETTID_EVENTS.bob.1.1.1.1.0",
    ];
    for subject in forbidden {
        alice.publish(subject, "{}".into()).await.unwrap();
        expect_violation(&mut events, subject).await;
    }
}

#[tokio::test]
async fn an_expired_member_jwt_is_refused_at_connect() {
    let b = Broker::start().await;
    let user = nkeys::KeyPair::new_user();
    let issued = b
        .setup
        .issuer()
        .unwrap()
        .member_jwt_at(
            "alice",
            &user.public_key(),
            MemberScope::Member,
            Duration::from_secs(60),
            SystemTime::now() - Duration::from_secs(3600),
        )
        .unwrap();
    assert!(issued.expires_at < SystemTime::now());
    let creds = vettid_nats::creds_file(&issued.jwt, &user.seed().unwrap());
    let err = b.connect_member("alice", &creds).await.unwrap_err();
    assert_eq!(
        err.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation,
        "{err}"
    );
}

#[tokio::test]
async fn a_revoked_member_is_cut_off_and_stays_out_after_a_restart() {
    let mut b = Broker::start().await;
    let (_host, _seen) = b.start_host_router().await;
    let (alice_issued, alice_creds) = b.member_creds("alice", MemberScope::Member);
    let (alice, mut alice_events) = b.connect_member("alice", &alice_creds).await.unwrap();
    let (_, bob_creds) = b.member_creds("bob", MemberScope::Member);
    let (bob, _) = b.connect_member("bob", &bob_creds).await.unwrap();

    let jwt = b
        .setup
        .issuer()
        .unwrap()
        .revoke(std::slice::from_ref(&alice_issued.user_public_key))
        .unwrap();
    assert!(claims(&jwt)["nats"]["revocations"][&alice_issued.user_public_key].is_u64());
    push_account(&b.url, &b.setup.sys_creds(), &jwt)
        .await
        .expect("the server accepts the account update");

    expect_event(&mut alice_events, |e| matches!(e, Event::Disconnected)).await;
    let refused = b.connect_member("alice", &alice_creds).await.unwrap_err();
    assert_eq!(
        refused.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation
    );
    drop(alice);
    bob.request("OwnerSpace.bob.forVault.session", "hi".into())
        .await
        .expect("bob is unaffected");

    // The revocation is in the account JWT the next server start preloads.
    b.restart().await;
    let (_host, _seen) = b.start_host_router().await;
    assert!(b.connect_member("alice", &alice_creds).await.is_err());
    let (bob, _) = b.connect_member("bob", &bob_creds).await.unwrap();
    bob.request("OwnerSpace.bob.forVault.session", "hi".into())
        .await
        .expect("bob works after the restart");
}

#[tokio::test]
async fn a_refused_account_push_is_an_error() {
    let b = Broker::start().await;
    // A user JWT is not an account claim: the server answers with an error.
    let host_creds = std::fs::read_to_string(b.setup.host_creds()).unwrap();
    let user_jwt = host_creds.lines().nth(1).unwrap();
    let err = push_account(&b.url, &b.setup.sys_creds(), user_jwt)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, vettid_nats::NatsError::Server(m) if m.contains("refused")),
        "{err}"
    );
}

#[tokio::test]
async fn the_broker_lets_a_member_aim_a_reply_at_another_inbox_so_the_host_must_check() {
    let b = Broker::start().await;
    let (_host, _seen) = b.start_host_router().await; // answers blindly, unlike vettid-host must
    let (alice, _, _) = b.member("alice", MemberScope::Member).await;
    let (bob, _, _) = b.member("bob", MemberScope::Member).await;
    let mut bobs_inbox = bob.subscribe("_INBOX_bob.spoofed").await.unwrap();
    bob.flush().await.unwrap();
    alice
        .publish_with_reply(
            "OwnerSpace.alice.forVault.session",
            "_INBOX_bob.spoofed",
            "x".into(),
        )
        .await
        .unwrap();
    let got = tokio::time::timeout(WITHIN, bobs_inbox.next())
        .await
        .unwrap();
    assert_eq!(
        &got.unwrap().payload[..],
        b"ack:OwnerSpace.alice.forVault.session"
    );
    assert!(!vettid_nats::is_member_reply_subject(
        "alice",
        "_INBOX_bob.spoofed"
    ));
}

/// A member cannot make the server publish into another member's subjects: the JetStream
/// API answers to whatever reply subject a request names, so with rights on its own durable,
/// bob could aim 20 answers at `OwnerSpace.alice.forApp.x` and fill alice's pending events
/// (seen on the earlier permissions: alice's pending count went to 20).
#[tokio::test]
async fn a_member_cannot_make_jetstream_answer_into_another_members_events() {
    let b = Broker::start().await;
    let host = b.connect_creds(&b.setup.host_creds()).await;
    let host_js = create_events_stream(&host).await;
    host_creates_durable_of(&host_js, "alice").await;
    host_creates_durable_of(&host_js, "bob").await;
    let pending = |js: jetstream::Context| async move {
        let mut c: jetstream::consumer::PullConsumer = js
            .get_consumer_from_stream("alice", EVENTS_STREAM)
            .await
            .unwrap();
        c.info().await.unwrap().num_pending
    };
    let before = pending(host_js.clone()).await;
    let (bob, mut events, _) = b.member("bob", MemberScope::Member).await;
    let subject = "$JS.API.CONSUMER.INFO.VETTID_EVENTS.bob";
    for _ in 0..20 {
        bob.publish_with_reply(subject, "OwnerSpace.alice.forApp.x", "".into())
            .await
            .unwrap();
    }
    bob.flush().await.unwrap();
    // The server refused them (and so made no answer to aim anywhere).
    expect_violation(&mut events, subject).await;
    assert_eq!(
        pending(host_js).await,
        before,
        "alice's pending events are unchanged"
    );
}

/// Issue 11, finding 4: member JWTs limit message size and subscriptions; the server refuses
/// beyond them.
#[tokio::test]
async fn member_connections_are_limited_in_payload_and_subscriptions() {
    let b = Broker::start().await;
    let (alice, mut events, _) = b.member("alice", MemberScope::Member).await;
    let mut subs = Vec::new();
    for i in 0..(vettid_nats::MEMBER_SUBSCRIPTIONS + 4) {
        subs.push(
            alice
                .subscribe(format!("OwnerSpace.alice.forApp.s{i}"))
                .await
                .unwrap(),
        );
    }
    alice.flush().await.unwrap();
    let found = tokio::time::timeout(WITHIN, async {
        while let Some(e) = events.recv().await {
            if let Event::ServerError(err) = &e
                && err
                    .to_string()
                    .to_lowercase()
                    .contains("maximum subscriptions")
            {
                return;
            }
        }
    })
    .await;
    assert!(found.is_ok(), "no refusal beyond the subscription limit");
    drop(subs);

    let (big, mut big_events, _) = b.member("alice", MemberScope::Member).await;
    let payload = vec![0u8; vettid_nats::MEMBER_PAYLOAD as usize + 1];
    let _ = big
        .publish("OwnerSpace.alice.forVault.session", payload.into())
        .await;
    let _ = big.flush().await;
    let refused = tokio::time::timeout(WITHIN, async {
        while let Some(e) = big_events.recv().await {
            match &e {
                Event::ServerError(err) if err.to_string().to_lowercase().contains("payload") => {
                    return true;
                }
                Event::Disconnected | Event::Closed => return true,
                _ => {}
            }
        }
        false
    })
    .await;
    assert_eq!(
        refused,
        Ok(true),
        "a message over the payload limit was refused"
    );
}

/// Vault-to-vault subjects (`MessageSpace`) are the hosts' alone, and asking for a vault's
/// shred is the API's: a member's real credentials can neither publish nor subscribe on
/// `MessageSpace` nor ask for a shred; the API's user can ask (and hears the answer in its own
/// inbox) but can touch no member's subjects.
#[tokio::test]
async fn members_cannot_reach_messagespace_or_ask_for_a_shred_and_the_api_can_only_ask() {
    let b = Broker::start().await;
    let host = b.connect_creds(&b.setup.host_creds()).await;
    let mut shreds = host.subscribe(vettid_nats::SHRED_SUBJECT).await.unwrap();
    host.flush().await.unwrap();
    let (alice, mut events, _) = b.member("alice", MemberScope::Member).await;
    for subject in [
        "MessageSpace.bob.forOwner.msg.c1",
        "MessageSpace.alice.forOwner.msg.c1",
        vettid_nats::SHRED_SUBJECT,
    ] {
        alice.publish(subject, "forged".into()).await.unwrap();
        expect_violation(&mut events, subject).await;
    }
    alice.subscribe("MessageSpace.>").await.unwrap();
    expect_violation(&mut events, "MessageSpace.>").await;

    let api_creds = std::fs::read_to_string(b.setup.api_creds()).unwrap();
    let (api, mut api_events) = b.connect_member("api", &api_creds).await.unwrap();
    let asking = {
        let api = api.clone();
        tokio::spawn(async move {
            api.request(vettid_nats::SHRED_SUBJECT, "alice".into())
                .await
                .map(|m| m.payload.to_vec())
        })
    };
    let request = tokio::time::timeout(WITHIN, shreds.next())
        .await
        .expect("the host hears the API")
        .unwrap();
    assert_eq!(
        &request.payload[..],
        b"alice",
        "the member's forged request never reached the host"
    );
    host.publish(request.reply.unwrap(), "shredded".into())
        .await
        .unwrap();
    assert_eq!(asking.await.unwrap().unwrap(), b"shredded");
    api.publish("OwnerSpace.alice.forVault.session", "x".into())
        .await
        .unwrap();
    expect_violation(&mut api_events, "OwnerSpace.alice.forVault.session").await;
    api.subscribe("OwnerSpace.>").await.unwrap();
    expect_violation(&mut api_events, "OwnerSpace.>").await;
}
