//! The app's path to its vault, against the real stack (`vettid up`: nats-server in operator
//! mode, dev platform, host + enclave, api): a warm vault operation's round trip beside a raw
//! NATS request/reply echo on the same server in the same run — answered by another process,
//! as the host is, and (for reference) by the requesting process itself — and operations per
//! second with 1, 8 and 32 requests in flight beside the echo with as many. Run:
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

/// Set in the echo responder's environment: the bench runs itself as that process.
const ECHO_CREDS: &str = "VETTID_BENCH_ECHO_CREDS";
const ECHO_URL: &str = "VETTID_BENCH_ECHO_URL";

/// The raw responder in a process of its own: answers every request on
/// `OwnerSpace.*.forVault.echo.away` with its payload.
async fn echo_responder(creds: String, url: String) {
    // It ends with the bench: when its standard input closes (the bench exited, however).
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let nats = async_nats::ConnectOptions::with_credentials_file(creds)
        .await
        .unwrap()
        .max_reconnects(1)
        .connect(url)
        .await
        .unwrap();
    let sub = nats
        .subscribe("OwnerSpace.*.forVault.echo.away")
        .await
        .unwrap();
    nats.flush().await.unwrap();
    println!("ready");
    echo_all(nats, sub).await;
}

/// Answers every request `sub` receives with its own payload.
async fn echo_all(nats: async_nats::Client, mut sub: async_nats::Subscriber) {
    while let Some(m) = sub.next().await {
        if let Some(reply) = m.reply {
            let _ = nats.publish(reply, m.payload).await;
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let (Ok(creds), Ok(url)) = (std::env::var(ECHO_CREDS), std::env::var(ECHO_URL)) {
        return echo_responder(creds, url).await;
    }
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
    let echo_of = |member: &str| format!("OwnerSpace.{member}.forVault.echo.ping");
    let echo_subject = echo_of(&member);
    // The same echo from another process (this bench, run again as the responder).
    let away_of = |member: &str| format!("OwnerSpace.{member}.forVault.echo.away");
    let away_subject = away_of(&member);
    let mut away = EchoProcess(
        std::process::Command::new(std::env::current_exe().unwrap())
            .env(ECHO_CREDS, stack.data().join("nats/auth/host.creds"))
            .env(ECHO_URL, &stack.nats)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(away.0.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the echo process did not start");
    }
    let sub = responder.subscribe(echo_of("*")).await.unwrap();
    responder.flush().await.unwrap();
    tokio::spawn(echo_all(responder.clone(), sub));
    let requester = sessions[0].client.nats().unwrap().clone();
    // The responder is ready when a probe from each app gets an answer (interest may take a
    // moment to reach the requesters' side of the server).
    for c in &sessions {
        let nats = c.client.nats().unwrap();
        for subject in [echo_of(c.client.member()), away_of(c.client.member())] {
            for attempt in 0.. {
                match nats.request(subject.clone(), "probe".into()).await {
                    Ok(_) => break,
                    Err(_) if attempt < 100 => tokio::time::sleep(Duration::from_millis(20)).await,
                    Err(e) => panic!("echo responder never answered: {e}"),
                }
            }
        }
    }
    // A payload the size of a warm request on the wire (256-byte padded plaintext + framing).
    let payload = vec![0x42u8; 300];

    let rounds = 10;
    let per_round = 500;
    let (mut echo, mut echo_away, mut warm) = (Vec::new(), Vec::new(), Vec::new());
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
            requester
                .request(away_subject.clone(), payload.clone().into())
                .await
                .unwrap();
            echo_away.push(t.elapsed());
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
    let (a50, a99) = (pct(&mut echo_away, 50), pct(&mut echo_away, 99));
    let (w50, w99) = (pct(&mut warm, 50), pct(&mut warm, 99));
    println!(
        "raw NATS request/reply echo (300 B), answered by another process: p50 {} p99 {}",
        us(a50),
        us(a99)
    );
    println!(
        "raw NATS request/reply echo (300 B), answered in the requesting process: p50 {} p99 {}",
        us(e50),
        us(e99)
    );
    println!(
        "warm vault op (Whoami, session):    p50 {} p99 {}",
        us(w50),
        us(w99)
    );
    support::metric("warm_echo_p50", w50.as_secs_f64() / a50.as_secs_f64());
    support::metric("warm_echo_p99", w99.as_secs_f64() / a99.as_secs_f64());
    support::metric(
        "warm_echo_inprocess_p50",
        w50.as_secs_f64() / e50.as_secs_f64(),
    );
    println!(
        "ratio warm / echo by another process: p50 {:.2}x p99 {:.2}x; / echo in-process: p50 {:.2}x p99 {:.2}x",
        w50.as_secs_f64() / a50.as_secs_f64(),
        w99.as_secs_f64() / a99.as_secs_f64(),
        w50.as_secs_f64() / e50.as_secs_f64(),
        w99.as_secs_f64() / e99.as_secs_f64()
    );

    // Throughput with 1, 8 and 32 requests in flight: each app runs its own session, one
    // request at a time; beside it the raw echo (answered by the other process) with as many
    // requesters in flight, each on its app's own NATS connection and credentials.
    let window = Duration::from_secs(3);
    for n in [1usize, 8, 32] {
        let mut raw_tasks = Vec::new();
        let deadline = Instant::now() + window;
        for c in &sessions[..n] {
            let nats = c.client.nats().unwrap().clone();
            let subject = away_of(c.client.member());
            let payload = payload.clone();
            raw_tasks.push(tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    nats.request(subject.clone(), payload.clone().into())
                        .await
                        .unwrap();
                    done += 1;
                }
                done
            }));
        }
        let mut raw = 0;
        for t in raw_tasks {
            raw += t.await.unwrap();
        }
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
        let mut back = Vec::new();
        for t in tasks {
            let (c, done) = t.await.unwrap();
            total += done;
            back.push(c);
        }
        back.append(&mut sessions);
        sessions = back;
        let secs = window.as_secs_f64();
        support::metric(&format!("throughput_ratio_{n}"), total as f64 / raw as f64);
        println!(
            "{n:>2} in flight: warm vault ops {:.0}/s, raw echo {:.0}/s, ratio {:.2}",
            total as f64 / secs,
            raw as f64 / secs,
            total as f64 / raw as f64
        );
    }
    drop(away);
}

/// The echo responder's process, stopped when the bench ends (a panic included; if the bench
/// is killed, its standard input closes and it stops itself).
struct EchoProcess(std::process::Child);

impl Drop for EchoProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
