//! Memory under load: 10,000 vaults resident in one enclave (each created, given a record,
//! then left idle until it rests), with the enclave's and the host's RSS and the memory the
//! enclave accounts against `--memory-budget-mib`. Run:
//! `cargo build --release -p vettid-enclave && cargo bench -p vettid --bench density`.
//! Results: docs/BENCHMARKS.md.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};
use support::*;
use vettid_host::control::Client;
use vettid_proto::enclave::{EnclaveReply, ToEnclave, VaultOp};

const VAULTS: usize = 10_000;
const BUDGET_MIB: u64 = 256;

/// (open, resting, evicted, accounted MiB).
fn stats(c: &mut Client) -> (u64, u64, u64, u64) {
    match c.call(&ToEnclave::Stats).unwrap().unwrap() {
        EnclaveReply::Stats {
            open,
            resting,
            evicted,
            accounted_mib,
        } => (open, resting, evicted, accounted_mib),
        other => panic!("unexpected {other:?}"),
    }
}

fn main() {
    let t = tempfile::tempdir().unwrap();
    let platform = Platform::start_with(&t.path().join("platform"), &FAST_ARGON);
    let budget = BUDGET_MIB.to_string();
    let host = Host::start(
        &t.path().join("host"),
        &platform,
        &t.path().join("objects"),
        &[
            "--rest-secs",
            "0",
            "--max-resident",
            "20000",
            "--memory-budget-mib",
            &budget,
        ],
    );
    let mut c = host.client();
    let enclave = host.enclave_pid().unwrap();
    // Warm-up: one-off allocations (Argon2 buffers, thread stacks) are not counted.
    warm_up(&mut c);
    let (enclave_before, host_before) = (rss_kib(enclave), rss_kib(host.pid()));
    eprintln!("creating {VAULTS} vaults (two at a time)…");
    let began = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|k| {
            let mut c = host.client();
            std::thread::spawn(move || {
                for i in (k..VAULTS).step_by(2) {
                    let v = format!("dense-{i}");
                    op(&mut c, &v, VaultOp::Create { pin: pin("1111") }).unwrap();
                    put(&mut c, &v, "profile", &[7u8; 256]).unwrap();
                    if k == 0 && i % 2000 == 0 && i > 0 {
                        eprintln!("  {i} vaults…");
                    }
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let made = began.elapsed();
    // The enclave's sweep (every half second) puts idle vaults at rest.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (open, resting, evicted, accounted) = loop {
        let s = stats(&mut c);
        if s.0 == 0 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "vaults never came to rest: {s:?}"
        );
        std::thread::yield_now();
    };
    let (enclave_after, host_after) = (rss_kib(enclave), rss_kib(host.pid()));
    let grew = enclave_after.saturating_sub(enclave_before);
    let per = grew as f64 / VAULTS as f64;
    metric("vaults_per_gib_10k", 1024.0 * 1024.0 / per);
    metric(
        "accounted_vs_rss_10k",
        (accounted * 1024) as f64 / grew as f64,
    );
    println!(
        "{VAULTS} vaults created in {:.0} s; resident: {open} open, {resting} at rest, {evicted} evicted",
        made.as_secs_f64()
    );
    println!(
        "enclave RSS {} MiB (+{} MiB for the vaults ⇒ {per:.1} KiB per vault ⇒ {:.0} per GiB); host RSS {} MiB (+{} MiB)",
        enclave_after / 1024,
        grew / 1024,
        1024.0 * 1024.0 / per,
        host_after / 1024,
        host_after.saturating_sub(host_before) / 1024
    );
    println!(
        "accounted by the enclave: {accounted} MiB of the {BUDGET_MIB} MiB budget ({:.2}× the RSS the vaults added); enclave RSS {} MiB ≤ budget + the {} MiB it had before the vaults: {}",
        (accounted * 1024) as f64 / grew as f64,
        enclave_after / 1024,
        enclave_before / 1024,
        enclave_after <= BUDGET_MIB * 1024 + enclave_before
    );
}
