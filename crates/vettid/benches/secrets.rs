//! The secrets store at 10,000 items, through the real stack (`vettid up`) and an app session:
//! delta sync of recent changes, listing everything, and the storage cost of one update. Run:
//! `cargo build --release -p vettid-enclave && cargo bench -p vettid --bench secrets`.
//! Results: docs/BENCHMARKS.md.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};
use support::journey::UpStack;
use vettid_proto::secrets::{ItemContent, Secret, SecretData};

fn note(i: usize) -> ItemContent {
    ItemContent {
        name: format!("item {i:05}"),
        folder: Some(format!("folder {}", i % 20)),
        tags: vec![format!("tag{}", i % 50)],
        data: SecretData::Note {
            text: Secret::new(&format!("secret note number {i} with some text in it")),
        },
        fields: vec![],
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// The newest log object of the vault and its size.
fn newest_log(objects: &std::path::Path, member: &str) -> (String, u64) {
    let dir = objects.join("vaults").join(member).join("log");
    let newest = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .max_by_key(|e| e.file_name())
        .unwrap();
    (
        newest.file_name().to_string_lossy().into_owned(),
        newest.metadata().unwrap().len(),
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let stack = UpStack::start();
    // Versions checked in memory: the vault's path is measured, not the profile's file writes.
    let (member, mut s) = stack.unlocked_in_memory("bench", "4821").await;
    let s = &mut s;
    let n = 10_000;
    eprintln!("creating {n} items…");
    let began = Instant::now();
    let mut ids = Vec::with_capacity(n);
    let mut creates = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        ids.push(s.create_secret(note(i)).await.unwrap().0.id);
        creates.push(t.elapsed());
    }
    let total = began.elapsed();
    creates.sort();
    let create_median = creates[n / 2];
    support::metric("item_create_ms", create_median.as_secs_f64() * 1e3);
    println!(
        "created {n} items in {:.1} s (median {} per create, p99 {}; round trip incl. a durable write)",
        total.as_secs_f64(),
        ms(create_median),
        ms(creates[n * 99 / 100])
    );

    // The storage cost of one update in a vault of 10,000 items.
    let objects = stack.data().join("objects");
    let (mut updates, mut sizes) = (Vec::new(), Vec::new());
    let mut v = None;
    for i in 0..21 {
        let before = newest_log(&objects, &member);
        let t = Instant::now();
        let (_, version) = s
            .update_secret(ids[(i * 331) % n], None, note(90_000 + i))
            .await
            .unwrap();
        updates.push(t.elapsed());
        let after = newest_log(&objects, &member);
        assert_ne!(before.0, after.0, "the update wrote a new log entry");
        sizes.push(after.1);
        v = Some(version);
    }
    let v = v.expect("updated");
    sizes.sort();
    support::metric(
        "item_update_ms",
        median(updates.clone()).as_secs_f64() * 1e3,
    );
    println!(
        "an update in a vault of {n} items (21 updates): median {} round trip (incl. durable write); one log object each, median {} bytes (min {}, max {})",
        ms(median(updates)),
        sizes[sizes.len() / 2],
        sizes[0],
        sizes[sizes.len() - 1]
    );

    // Delta sync: the changes since N (100 updates after N), in a vault of 10,000 items.
    let (_, since) = s.sync_secrets(v.version).await.unwrap();
    for i in 0..100 {
        s.update_secret(ids[i * 97 % n], None, note(i))
            .await
            .unwrap();
    }
    let mut sync = Vec::new();
    let mut ping = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let (changes, _) = s.sync_secrets(since).await.unwrap();
        sync.push(t.elapsed());
        assert_eq!(changes.len(), 100);
        let t = Instant::now();
        s.ping().await.unwrap();
        ping.push(t.elapsed());
    }
    let (sync, ping) = (median(sync), median(ping));
    println!(
        "delta sync of 100 changes since N (10,000 items): median {} round trip; session Ping {} ⇒ ~{} in the enclave and the larger answer",
        ms(sync),
        ms(ping),
        ms(sync.saturating_sub(ping))
    );

    // Listing everything, metadata only (several pages).
    let mut list = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let all = s.list_secrets(None, None, None, false).await.unwrap();
        list.push(t.elapsed());
        assert_eq!(all.len(), n);
    }
    println!(
        "listing all {n} items (all pages): median {}",
        ms(median(list))
    );
    let mut search = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let found = s
            .list_secrets(Some("item 00999".into()), None, None, false)
            .await
            .unwrap();
        search.push(t.elapsed());
        assert_eq!(found.len(), 1);
    }
    println!("search by name among {n}: median {}", ms(median(search)));
    let t = Instant::now();
    let (all, _) = s.sync_secrets(0).await.unwrap();
    println!(
        "full sync from 0 ({} changes, all pages): {}",
        all.len(),
        ms(t.elapsed())
    );
}
