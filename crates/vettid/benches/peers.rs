//! Vault to vault over the real stack (`vettid up`): connection setup (invite to active, both
//! vaults resident), messages per second from one app to another vault with persistence on
//! both sides and a delivered receipt back for each, beside raw JetStream publish-with-ack on
//! the same server; one message's latency from the sender's app to the receiver's app, beside
//! two raw NATS round trips. Run:
//! `cargo build --release -p vettid-enclave && cargo bench -p vettid --bench peers`.
//! Results: docs/BENCHMARKS.md.

#[path = "../tests/support/mod.rs"]
mod support;

use futures::StreamExt;
use std::time::{Duration, Instant};
use support::journey::UpStack;
use vettid_proto::connections::ConnectionState;
use vettid_proto::session::EventKind;

fn pct(v: &mut [Duration], p: usize) -> Duration {
    v.sort();
    v[(v.len() * p / 100).min(v.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

const WAIT: Duration = Duration::from_secs(60);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let stack = UpStack::start();
    let (alice_member, mut alice) = stack.unlocked_in_memory("alice", "4821").await;
    let (_, mut bob) = stack.unlocked_in_memory("bob", "4822").await;
    let review = |e: &EventKind| {
        matches!(
            e,
            EventKind::Connection {
                state: ConnectionState::PendingReview,
                ..
            }
        )
    };
    let active = |e: &EventKind| {
        matches!(
            e,
            EventKind::Connection {
                state: ConnectionState::Active,
                ..
            }
        )
    };

    // Connection setup, five times.
    let mut setups = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let t = Instant::now();
        let (_, invitation) = alice.invite(None, None, false).await.unwrap();
        let b = bob.accept_invitation(invitation).await.unwrap();
        assert!(bob.wait_for_event(WAIT, review).await.unwrap());
        assert!(alice.wait_for_event(WAIT, review).await.unwrap());
        let a = alice.connections().await.unwrap().remove(0);
        alice.approve_connection(a.id, a.sas.clone()).await.unwrap();
        bob.approve_connection(b, a.sas.clone()).await.unwrap();
        assert!(alice.wait_for_event(WAIT, active).await.unwrap());
        setups.push(t.elapsed());
        last = Some((a.id, b));
    }
    let (a_id, b_id) = last.unwrap();
    let setup_p50 = pct(&mut setups, 50);

    // Throughput: 300 texts from alice's app; done when her vault has every delivered receipt.
    let n = 300u64;
    let text = "x".repeat(200);
    let t = Instant::now();
    let mut first = 0;
    let mut each = Vec::new();
    for i in 0..n {
        let s = Instant::now();
        let seq = alice.send_message(a_id, &text).await.unwrap();
        each.push(s.elapsed());
        if i == 0 {
            first = seq;
        }
    }
    let sent = t.elapsed();
    println!(
        "one send (app → its vault, durable, on its way): p50 {} p90 {} max {}",
        ms(pct(&mut each, 50)),
        ms(pct(&mut each, 90)),
        ms(pct(&mut each, 100))
    );
    let mut delivered = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while (delivered.len() as u64) < n && Instant::now() < deadline {
        let key = vettid_crypto::SecretBytes::from_array(**alice.event_key());
        let (events, _) =
            vettid_client::events::fetch(alice.client(), &key, 256, Duration::from_secs(2))
                .await
                .unwrap();
        for e in events {
            if let EventKind::Receipt {
                seqs, read: false, ..
            } = e.kind
            {
                delivered.extend(seqs.into_iter().filter(|s| *s >= first));
            }
        }
    }
    let vault_rate = n as f64 / t.elapsed().as_secs_f64();
    assert_eq!(delivered.len() as u64, n, "every message delivered");

    // Raw JetStream publish-with-ack of the same wire size, one at a time, on the same server.
    let host = async_nats::ConnectOptions::with_credentials_file(
        stack.data().join("nats/auth/host.creds"),
    )
    .await
    .unwrap()
    .connect(&stack.nats)
    .await
    .unwrap();
    let js = async_nats::jetstream::new(host.clone());
    let payload = bytes_of(1024);
    let t = Instant::now();
    for i in 0..n {
        // Into the peers stream, to a recipient nobody drains.
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("bench-{i}").as_str());
        js.publish_with_headers(
            vettid_proto::peer::peer_subject("nobody-bench"),
            headers,
            payload.clone().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let raw_rate = n as f64 / t.elapsed().as_secs_f64();
    // The same against JetStream made as durable as the vaults are (a server whose stream
    // syncs every message to disk before it acknowledges: `sync_interval: always`).
    let synced_rate = synced_jetstream_rate(n, &payload).await;

    // Latency: sender's app → receiver's app (bob's long-poll for events sees it).
    let mut lat = Vec::new();
    // Bob's app first takes the events the throughput run left.
    let bob_key = vettid_crypto::SecretBytes::from_array(**bob.event_key());
    loop {
        let (events, _) =
            vettid_client::events::fetch(bob.client(), &bob_key, 256, Duration::from_millis(500))
                .await
                .unwrap();
        if events.is_empty() {
            break;
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Instant>(1);
    let watcher = tokio::spawn(async move {
        let key = vettid_crypto::SecretBytes::from_array(**bob.event_key());
        loop {
            let (events, _) =
                vettid_client::events::fetch(bob.client(), &key, 256, Duration::from_secs(5))
                    .await
                    .unwrap();
            for e in events {
                if matches!(e.kind, EventKind::Message { .. })
                    && tx.send(Instant::now()).await.is_err()
                {
                    return bob;
                }
            }
        }
    });
    for _ in 0..40 {
        let t = Instant::now();
        alice.send_message(a_id, "ping").await.unwrap();
        let seen = rx.recv().await.unwrap();
        lat.push(seen - t);
    }
    drop(rx);
    watcher.abort();
    let lat_p50 = pct(&mut lat, 50);
    let lat_p95 = pct(&mut lat, 95);

    // Two raw NATS round trips on the same server and the same hops: alice's app's
    // credentials and inbox to a responder with the host's (a subject the router does not take).
    let echo_subject = format!("OwnerSpace.{alice_member}.forVault.echo.ping");
    let mut sub = host.subscribe(echo_subject.clone()).await.unwrap();
    host.flush().await.unwrap();
    let h2 = host.clone();
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(r) = m.reply {
                let _ = h2.publish(r, m.payload).await;
            }
        }
    });
    let requester = alice.client().nats().unwrap().clone();
    // Ready when a probe is answered (interest reaches the requester's side of the server).
    let mut probes = 0;
    while requester
        .request(echo_subject.clone(), "probe".into())
        .await
        .is_err()
    {
        probes += 1;
        assert!(probes < 100, "the echo responder never answered");
    }
    let mut echo = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        for _ in 0..2 {
            requester
                .request(echo_subject.clone(), "p".into())
                .await
                .unwrap();
        }
        echo.push(t.elapsed());
    }
    let echo_p50 = pct(&mut echo, 50);
    let _ = b_id;

    support::metric("peer_setup_ms", setup_p50.as_secs_f64() * 1e3);
    support::metric("peer_throughput_ratio", vault_rate / raw_rate);
    support::metric("peer_throughput_synced_ratio", vault_rate / synced_rate);
    support::metric(
        "peer_latency_ratio",
        lat_p50.as_secs_f64() / echo_p50.as_secs_f64(),
    );
    println!(
        "connection setup (invite → active, both resident), p50 of 5: {}",
        ms(setup_p50)
    );
    println!(
        "messages/s with persistence and delivered receipts: {vault_rate:.0} (sends took {}); raw JetStream publish+ack: {raw_rate:.0}/s; ratio {:.3}",
        ms(sent),
        vault_rate / raw_rate
    );
    println!(
        "raw JetStream publish+ack with every message synced to disk (sync_interval: always): {synced_rate:.0}/s; ratio {:.3}",
        vault_rate / synced_rate
    );
    println!(
        "one message, sender app → receiver app: p50 {} p95 {}; two raw NATS round trips p50 {}; ratio {:.1}×",
        ms(lat_p50),
        ms(lat_p95),
        ms(echo_p50),
        lat_p50.as_secs_f64() / echo_p50.as_secs_f64()
    );
}

/// Publish-with-ack, one at a time, to a file stream on a nats-server of its own started with
/// `jetstream { sync_interval: always }`: messages per second.
async fn synced_jetstream_rate(n: u64, payload: &[u8]) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.path().join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: 127.0.0.1:{port}\njetstream {{ store_dir: \"{}\", sync_interval: always }}\n",
            dir.path().join("js").display()
        ),
    )
    .unwrap();
    let mut server = std::process::Command::new(support::journey::nats_server())
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    let mut client = None;
    for _ in 0..200 {
        if let Ok(c) = async_nats::connect(&url).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let js = async_nats::jetstream::new(client.expect("the synced nats-server started"));
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: "SYNCED".into(),
        subjects: vec!["synced.>".into()],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
    let t = Instant::now();
    for i in 0..n {
        js.publish(format!("synced.{i}"), payload.to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    let _ = server.kill();
    let _ = server.wait();
    rate
}

fn bytes_of(n: usize) -> Vec<u8> {
    vec![0x5a; n]
}
