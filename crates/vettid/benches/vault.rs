//! Vault engine benchmarks against the real processes (dev platform, host, enclave, local
//! object store). Run: `cargo build --release -p vettid-enclave && cargo bench -p vettid --bench vault`.
//! Results and their reading: docs/BENCHMARKS.md.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};
use support::*;
use vettid_host::control::Client;
use vettid_proto::enclave::{ToEnclave, VaultOp};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

fn mean(v: &[Duration]) -> Duration {
    v.iter().sum::<Duration>() / v.len() as u32
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// Fills `vault` to about `mib` MiB with 1 MiB records.
fn fill(c: &mut Client, vault: &str, mib: usize) {
    let value = vec![0x5a; 1024 * 1024 - 64];
    for i in 0..mib {
        put(c, vault, &format!("fill-{i}"), &value).unwrap();
    }
}

/// Latencies of `n` 1 KiB updates.
fn one_kib_changes(c: &mut Client, vault: &str, n: usize) -> Vec<Duration> {
    let value = vec![0xa5; 1024];
    (0..n)
        .map(|i| {
            let t = Instant::now();
            put(c, vault, &format!("small-{}", i % 64), &value).unwrap();
            t.elapsed()
        })
        .collect()
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn main() {
    let t = tempfile::tempdir().unwrap();
    // A 100 MiB vault needs more than the default 64 MiB quota (a measured policy setting).
    let platform = Platform::start_with(
        &t.path().join("platform"),
        &[&FAST_ARGON[..], &["--vault-quota-mib", "256"]].concat(),
    );
    let host = Host::start(
        &t.path().join("host"),
        &platform,
        &t.path().join("objects"),
        &[],
    );
    let mut c = host.client();
    println!("vault engine benchmarks (release build, 2 vCPU; see docs/BENCHMARKS.md)");

    // 1 KiB change in a 1 MiB and a 100 MiB vault: fill both first, let the disk settle
    // (`sync`), then alternate the two so both see the same disk and cache conditions.
    let n = 300;
    op(&mut c, "small", VaultOp::Create { pin: pin("1111") }).unwrap();
    fill(&mut c, "small", 1);
    op(&mut c, "large", VaultOp::Create { pin: pin("1111") }).unwrap();
    let t_fill = Instant::now();
    fill(&mut c, "large", 100);
    let fill_time = t_fill.elapsed();
    std::process::Command::new("sync").status().unwrap();
    let (mut small, mut large) = (Vec::new(), Vec::new());
    for _ in 0..n / 10 {
        small.extend(one_kib_changes(&mut c, "small", 10));
        large.extend(one_kib_changes(&mut c, "large", 10));
    }
    println!(
        "1 KiB change, 1 MiB vault:   median {}  p99 {}  mean {}",
        ms(median(small.clone())),
        ms(p99(small.clone())),
        ms(mean(&small))
    );
    println!(
        "1 KiB change, 100 MiB vault: median {}  p99 {}  mean {}",
        ms(median(large.clone())),
        ms(p99(large.clone())),
        ms(mean(&large))
    );
    println!(
        "ratio 100 MiB / 1 MiB: median {:.2}x  mean {:.2}x   (filling 100 MiB took {})",
        median(large.clone()).as_secs_f64() / median(small.clone()).as_secs_f64(),
        mean(&large).as_secs_f64() / mean(&small).as_secs_f64(),
        ms(fill_time)
    );

    // Where an unlock's time goes besides the data: unsealing the vault secret and reading
    // the guard (what Status does), and the whole unlock of an empty vault.
    let status: Vec<Duration> = (0..7)
        .map(|_| {
            let t = Instant::now();
            op(&mut c, "small", VaultOp::Status).unwrap();
            t.elapsed()
        })
        .collect();
    op(&mut c, "empty", VaultOp::Create { pin: pin("1111") }).unwrap();
    let mut empty = Vec::new();
    for _ in 0..7 {
        op(&mut c, "empty", VaultOp::Lock).unwrap();
        let t = Instant::now();
        op(&mut c, "empty", VaultOp::Unlock { pin: pin("1111") }).unwrap();
        empty.push(t.elapsed());
    }
    println!(
        "unseal + guard (Status) median {}; unlock of an empty vault (19 MiB Argon2id) median {}",
        ms(median(status)),
        ms(median(empty))
    );

    // Cold load of a 10 MiB vault: unlock time, and Argon2id alone with the same cost.
    op(&mut c, "ten", VaultOp::Create { pin: pin("1111") }).unwrap();
    fill(&mut c, "ten", 10);
    let mut loads = Vec::new();
    for _ in 0..7 {
        op(&mut c, "ten", VaultOp::Lock).unwrap();
        let t = Instant::now();
        op(&mut c, "ten", VaultOp::Unlock { pin: pin("1111") }).unwrap();
        loads.push(t.elapsed());
    }
    let stretch = vettid_crypto::password::Stretch::generate(
        vettid_crypto::password::Cost {
            memory_kib: 19456,
            passes: 2,
            lanes: 1,
        },
        &vettid_crypto::password::Bounds::DEFAULT,
    )
    .unwrap();
    let argon: Vec<Duration> = (0..7)
        .map(|_| {
            let t = Instant::now();
            let _ = stretch.derive(b"1111");
            t.elapsed()
        })
        .collect();
    println!(
        "cold load 10 MiB vault: unlock median {}  Argon2id (19 MiB, t=2) median {}  => load excluding Argon2 ~{}",
        ms(median(loads.clone())),
        ms(median(argon.clone())),
        ms(median(loads).saturating_sub(median(argon)))
    );

    drop(c);
    drop(host);

    // Memory per resident idle vault, on a fresh enclave warmed up with a few vaults first
    // (so one-off allocations such as the Argon2 buffers are not counted).
    let host = Host::start(
        &t.path().join("host-memory"),
        &platform,
        &t.path().join("objects-memory"),
        &[],
    );
    let mut c = host.client();
    let pid = host.enclave_pid().unwrap();
    for i in 0..20 {
        op(
            &mut c,
            &format!("warm-{i}"),
            VaultOp::Create { pin: pin("1111") },
        )
        .unwrap();
    }
    let before = rss_kib(pid);
    let count = 500;
    for i in 0..count {
        let v = format!("idle-{i}");
        op(&mut c, &v, VaultOp::Create { pin: pin("1111") }).unwrap();
        put(&mut c, &v, "profile", &[7u8; 256]).unwrap();
    }
    let after = rss_kib(pid);
    let per = (after.saturating_sub(before)) as f64 / count as f64;
    println!(
        "memory: {count} resident idle vaults added {} KiB RSS => {per:.1} KiB per vault => {:.0} vaults per GiB",
        after - before,
        1024.0 * 1024.0 / per
    );
    drop(c);
    drop(host);

    // Unlock with the default Argon2id parameters (64 MiB, t=3, p=1): a platform measuring
    // the default policy.
    let default_platform = Platform::start_with(&t.path().join("platform-default"), &[]);
    let host = Host::start(
        &t.path().join("host-default"),
        &default_platform,
        &t.path().join("objects-default"),
        &[],
    );
    let mut c = host.client();
    op(&mut c, "d", VaultOp::Create { pin: pin("1111") }).unwrap();
    let mut unlocks = Vec::new();
    for _ in 0..7 {
        op(&mut c, "d", VaultOp::Lock).unwrap();
        let t = Instant::now();
        op(&mut c, "d", VaultOp::Unlock { pin: pin("1111") }).unwrap();
        unlocks.push(t.elapsed());
    }
    println!(
        "unlock, default Argon2id (64 MiB, t=3, p=1), empty vault: median {}",
        ms(median(unlocks))
    );
    let _ = c.call(&ToEnclave::Ping);
}
