//! The app's path to its vault, against the real stack (`vettid up`: nats-server in operator
//! mode, dev platform, host + enclave, api): a warm vault operation's round trip beside a raw
//! NATS request/reply echo on the same server in the same run, and operations per second with
//! 1 and 32 concurrent apps. Run:
//! `cargo build --release -p vettid-enclave && cargo bench -p vettid --bench session`.
//! Results: docs/BENCHMARKS.md.

#[path = "../tests/support/mod.rs"]
mod support;

use futures::StreamExt;
use std::time::{Duration, Instant};
use support::journey::UpStack;
use vettid_proto::session::{AppOp, AppReply};

fn pct(v: &mut [Duration], p: usize) -> Duration {
    v.sort();
    v[(v.len() * p / 100).min(v.len() - 1)]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // Rate limits scaled: 32 members register and sign in from one address.
    let stack = UpStack::start_with(&["--api-rate-limit-scale", "100"]);
    let apps = 32;
    eprintln!("enrolling and unlocking {apps} members…");
    let mut sessions = Vec::new();
    for i in 0..apps {
        let mut profile = stack.enrolled(&format!("bench{i}"), "4821").await;
        let mut c = vettid_client::app::connect(&mut profile).await.unwrap();
        let r = c
            .session
            .unchecked_call(AppOp::Unlock {
                pin: zeroize::Zeroizing::new(b"4821".to_vec()),
            })
            .await
            .unwrap();
        assert!(matches!(r, AppReply::Unlocked { .. }));
        sessions.push(c);
    }

    // The echo: a responder with the host's creds on a subject the router does not take
    // (5 tokens), the requester with member 0's creds and inbox — the same hops minus the
    // host ↔ enclave leg and the vault's work.
    let creds = stack.data().join("nats/auth/host.creds");
    let responder = async_nats::ConnectOptions::with_credentials_file(creds)
        .await
        .unwrap()
        .connect(&stack.nats)
        .await
        .unwrap();
    let member = sessions[0].client.member().to_owned();
    let echo_subject = format!("OwnerSpace.{member}.forVault.echo.ping");
    let mut sub = responder.subscribe(echo_subject.clone()).await.unwrap();
    responder.flush().await.unwrap();
    let r2 = responder.clone();
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(reply) = m.reply {
                let _ = r2.publish(reply, m.payload).await;
            }
        }
    });
    let requester = sessions[0].client.nats().unwrap().clone();
    // The responder is ready when a probe gets an answer (interest may take a moment to
    // reach the requester's side of the server).
    for attempt in 0.. {
        match requester
            .request(echo_subject.clone(), "probe".into())
            .await
        {
            Ok(_) => break,
            Err(_) if attempt < 100 => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("echo responder never answered: {e}"),
        }
    }
    // A payload the size of a warm request on the wire (256-byte padded plaintext + framing).
    let payload = vec![0x42u8; 300];

    let rounds = 10;
    let per_round = 500;
    let (mut echo, mut warm) = (Vec::new(), Vec::new());
    // Warm up both paths.
    for _ in 0..500 {
        requester
            .request(echo_subject.clone(), payload.clone().into())
            .await
            .unwrap();
        sessions[0]
            .session
            .unchecked_call(AppOp::Whoami)
            .await
            .unwrap();
    }
    // Interleave blocks so both see the same machine conditions.
    for _ in 0..rounds {
        for _ in 0..per_round {
            let t = Instant::now();
            requester
                .request(echo_subject.clone(), payload.clone().into())
                .await
                .unwrap();
            echo.push(t.elapsed());
        }
        for _ in 0..per_round {
            let t = Instant::now();
            let r = sessions[0]
                .session
                .unchecked_call(AppOp::Whoami)
                .await
                .unwrap();
            warm.push(t.elapsed());
            assert!(matches!(r, AppReply::Whoami { .. }));
        }
    }
    let mut ping = Vec::new();
    for _ in 0..2000 {
        let t = Instant::now();
        sessions[0]
            .session
            .unchecked_call(AppOp::Ping)
            .await
            .unwrap();
        ping.push(t.elapsed());
    }
    println!(
        "session Ping (no vault access):      p50 {} p99 {}",
        us(pct(&mut ping, 50)),
        us(pct(&mut ping, 99))
    );
    let (e50, e99) = (pct(&mut echo, 50), pct(&mut echo, 99));
    let (w50, w99) = (pct(&mut warm, 50), pct(&mut warm, 99));
    println!(
        "raw NATS request/reply echo (300 B): p50 {} p99 {}",
        us(e50),
        us(e99)
    );
    println!(
        "warm vault op (Whoami, session):    p50 {} p99 {}",
        us(w50),
        us(w99)
    );
    println!(
        "ratio warm / echo: p50 {:.2}x p99 {:.2}x",
        w50.as_secs_f64() / e50.as_secs_f64(),
        w99.as_secs_f64() / e99.as_secs_f64()
    );

    // Throughput: each app runs its own session, one request at a time.
    let window = Duration::from_secs(5);
    for n in [1usize, 32] {
        let deadline = Instant::now() + window;
        let mut tasks = Vec::new();
        for mut c in sessions.drain(..n) {
            tasks.push(tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    c.session.unchecked_call(AppOp::Whoami).await.unwrap();
                    done += 1;
                }
                (c, done)
            }));
        }
        let mut total = 0;
        for t in tasks {
            let (c, done) = t.await.unwrap();
            total += done;
            sessions.push(c);
        }
        println!(
            "{n:>2} concurrent app(s): {:.0} ops/s ({total} warm ops in {} s)",
            total as f64 / window.as_secs_f64(),
            window.as_secs()
        );
    }
}
