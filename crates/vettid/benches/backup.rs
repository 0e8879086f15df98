//! Backups through the real stack (`vettid up`, vault quota 160 MiB): a vault filled with
//! ~100 MiB of incompressible secrets, backed up (sealed in the enclave, written through the
//! host, opened again at once: the restore test), verified again, exported to a file through
//! the session, and restored from that file with the phrase into another member's vault,
//! against the raw limit measured in the same run: XChaCha20-Poly1305 and STREAM over the same
//! bytes, in 1 MiB chunks, one thread.
//! Run: `cargo build --release -p vettid -p vettid-enclave && cargo bench -p vettid --bench
//! backup`. Results: docs/BENCHMARKS.md.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};
use support::journey::UpStack;
use vettid_proto::secrets::{ItemContent, Secret, SecretData};

/// Items of ~16 KiB each (random hex: nothing compresses).
const ITEMS: usize = 6_300;

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
    let stack = UpStack::start_with(&["--vault-quota-mib", "160"]);
    let (mut profile, phrase) = stack.enrolled_with_phrase("bench", "4821").await;
    let c = vettid_client::app::connect(&mut profile).await.unwrap();
    let mut s = c
        .session
        .unlock(zeroize::Zeroizing::new(b"4821".to_vec()), &mut profile)
        .await
        .unwrap();
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
    let file = stack.dir.path().join("bench.vettid-export");
    let t = Instant::now();
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    let exported = s.export_backup(&made, &mut out, |_, _| {}).await.unwrap();
    drop(out);
    let export = t.elapsed();
    let (_, mut other) = stack.unlocked_in_memory("restored", "1357").await;
    let t = Instant::now();
    let mut input = std::io::BufReader::new(std::fs::File::open(&file).unwrap());
    let (_, rows) = other
        .restore_export(&mut input, &phrase, |_, _| {})
        .await
        .unwrap();
    let restore = t.elapsed();
    assert!(
        rows >= ITEMS as u64 * 2,
        "every item and its version: {rows}"
    );
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
    let (e, r) = (mib_s(made.bytes, export), mib_s(made.bytes, restore));
    support::metric("backup_ratio_raw_aead", b / a);
    support::metric("restore_ratio_raw_aead", r / a);
    println!(
        "export to a file (every sealed chunk read out through the session, 48 KiB a message; {exported} bytes): {:.2} s = {e:.0} MiB/s = {:.3}× raw AEAD",
        export.as_secs_f64(),
        e / a
    );
    println!(
        "restore from the file into another vault (pieces in through the session, every chunk opened, the database checked, {rows} rows written in logged batches): {:.2} s = {r:.0} MiB/s = {:.3}× raw AEAD",
        restore.as_secs_f64(),
        r / a
    );
}
