//! Backups through the real stack (`vettid up`): a vault filled with ~48 MiB of
//! incompressible secrets, backed up (sealed in the enclave, written through the host, opened
//! again at once: the restore test) and verified again, against the raw limit measured in the
//! same run: XChaCha20-Poly1305 and STREAM over the same bytes, in 1 MiB chunks, one thread.
//! Run: `cargo build --release -p vettid -p vettid-enclave && cargo bench -p vettid --bench
//! backup`. Results: docs/BENCHMARKS.md.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};
use support::journey::UpStack;
use vettid_proto::secrets::{ItemContent, Secret, SecretData};

/// Items of ~16 KiB each (random hex: nothing compresses).
const ITEMS: usize = 3_000;

fn item(i: usize) -> ItemContent {
    let random: [u8; 8 * 1024] = vettid_crypto::random_array();
    ItemContent {
        name: format!("item {i:05}"),
        folder: None,
        tags: vec![],
        data: SecretData::Note {
            text: Secret::new(&hex::encode(&random[..8000])),
        },
        fields: vec![],
    }
}

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

fn raw_limits(bytes: usize) -> (Duration, Duration) {
    use vettid_crypto::aead::AeadKey;
    use vettid_crypto::stream::{PREFIX_LEN, StreamSealer};
    let data = vec![0x5au8; bytes];
    let key = AeadKey::generate();
    let chunk = vettid_proto::backup::CHUNK;
    let t = Instant::now();
    let mut n = 0;
    for c in data.chunks(chunk) {
        n += key.seal(b"aad", c).len();
    }
    let aead = t.elapsed();
    let t = Instant::now();
    let mut s = StreamSealer::new(&key, &[1; PREFIX_LEN], b"aad");
    let all: Vec<&[u8]> = data.chunks(chunk).collect();
    let (last, rest) = all.split_last().expect("some data");
    for c in rest {
        n += s.next(c).unwrap().len();
    }
    n += s.last(last).len();
    let stream = t.elapsed();
    assert!(n > bytes);
    (aead, stream)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let stack = UpStack::start();
    let (_, mut s) = stack.unlocked_in_memory("bench", "4821").await;
    let s = &mut s;
    eprintln!("filling the vault with {ITEMS} items of ~16 KiB…");
    for i in 0..ITEMS {
        s.create_secret(item(i)).await.unwrap();
    }
    let t = Instant::now();
    let made = s.backup_now().await.unwrap();
    let backup = t.elapsed();
    let mut verify = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        s.verify_backup(made.id).await.unwrap();
        verify.push(t.elapsed());
    }
    verify.sort();
    let verify = verify[1];
    let (aead, stream) = raw_limits(made.bytes as usize);
    let (b, a, st, v) = (
        mib_s(made.bytes, backup),
        mib_s(made.bytes, aead),
        mib_s(made.bytes, stream),
        mib_s(made.bytes, verify),
    );
    println!(
        "database of {:.1} MiB in {} chunks",
        made.bytes as f64 / (1 << 20) as f64,
        made.chunks
    );
    println!(
        "raw limit, one thread: XChaCha20-Poly1305 {a:.0} MiB/s; STREAM {st:.0} MiB/s ({:.2}× the raw AEAD)",
        st / a
    );
    println!(
        "backup now (serialize, seal, write every chunk through the host, header, then open it all again): {:.2} s = {b:.0} MiB/s = {:.3}× raw AEAD",
        backup.as_secs_f64(),
        b / a
    );
    println!(
        "verify (read every chunk back through the host, open, integrity-check the database), median of 3: {:.2} s = {v:.0} MiB/s = {:.3}× raw AEAD",
        verify.as_secs_f64(),
        v / a
    );
}
