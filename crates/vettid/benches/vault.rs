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
    metric("change_1kib_ms", median(small.clone()).as_secs_f64() * 1e3);
    metric(
        "write_cost_ratio_100mib",
        median(large.clone()).as_secs_f64() / median(small.clone()).as_secs_f64(),
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

    // fsyncs per acknowledged write: the host's, counted by strace over 1 KiB changes
    // (compaction included, as it comes).
    match syncs_per_write(host.pid(), || {
        one_kib_changes(&mut c, "small", 300);
        300
    }) {
        Some((all, log)) => {
            metric("fsyncs_per_write", all);
            metric("fsyncs_per_write_path", log);
            println!(
                "fsyncs per acknowledged write (strace, 300 1 KiB changes): {all:.2} in all, {log:.2} of them on the write path (the log entry and its directory), the rest compaction"
            )
        }
        None => println!("fsyncs per acknowledged write: not measured (strace could not attach)"),
    }

    // Durable writes across 32 vaults at once (one app each, a blocking client per thread),
    // beside the raw limits measured on the same disk in the same run: small files created,
    // each fsynced with its directory, one after another and by 32 threads at once.
    let writers = 32;
    let per_writer = 40;
    for i in 0..writers {
        op(
            &mut c,
            &format!("many-{i}"),
            VaultOp::Create { pin: pin("1111") },
        )
        .unwrap();
    }
    let began = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|i| {
            let mut c = host.client();
            std::thread::spawn(move || {
                let v = format!("many-{i}");
                one_kib_changes(&mut c, &v, per_writer);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let rate = (writers * per_writer) as f64 / began.elapsed().as_secs_f64();
    let raw = raw_durable_creates(&t.path().join("objects"), 1, 300);
    let raw_32 = raw_durable_creates(&t.path().join("objects"), writers, 40);
    metric("durable_writes_per_s_32", rate);
    metric("durable_writes_ratio_raw", rate / raw);
    metric("durable_writes_ratio_raw_32", rate / raw_32);
    println!(
        "durable writes across {writers} vaults at once: {rate:.0}/s; raw file create + fsync + directory fsync: one at a time {raw:.0}/s (ratio {:.2}), {writers} threads at once, each in its own directory {raw_32:.0}/s (ratio {:.2})",
        rate / raw,
        rate / raw_32
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
    metric(
        "cold_load_10mib_ms",
        median(loads.clone())
            .saturating_sub(median(argon.clone()))
            .as_secs_f64()
            * 1e3,
    );
    println!(
        "cold load 10 MiB vault: unlock median {}  Argon2id (19 MiB, t=2) median {}  => load excluding Argon2 ~{}",
        ms(median(loads.clone())),
        ms(median(argon.clone())),
        ms(median(loads).saturating_sub(median(argon)))
    );

    drop(c);
    drop(host);

    // Memory per resident idle vault, on a fresh enclave warmed up with a few vaults first
    // (so one-off allocations such as the Argon2 buffers are not counted): open (rest time
    // beyond the run), then at rest (`--rest-secs 0`: the enclave's next sweep, within a
    // second, puts every idle vault at rest).
    let open_read = memory(&t, &platform, "open", &["--rest-secs", "3600"], false);
    let resting_read = memory(&t, &platform, "resting", &["--rest-secs", "0"], true);
    metric(
        "wake_read_ms",
        median(resting_read.clone()).as_secs_f64() * 1e3,
    );
    println!(
        "read one record: of a resting vault (wakes it) median {}  p99 {}; of an open vault median {}  p99 {}",
        ms(median(resting_read.clone())),
        ms(p99(resting_read)),
        ms(median(open_read.clone())),
        ms(p99(open_read))
    );

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

/// Creates 500 vaults (each with one small record) on a fresh host with `tunables`, waits
/// until they are all at rest if `resting`, and prints the RSS they added. Returns the
/// latencies of reading a record of 50 of them (waking each, if at rest).
fn memory(
    t: &tempfile::TempDir,
    platform: &Platform,
    name: &str,
    tunables: &[&str],
    resting: bool,
) -> Vec<Duration> {
    use vettid_proto::enclave::{EnclaveReply, Residency};
    let host = Host::start(
        &t.path().join(format!("host-memory-{name}")),
        platform,
        &t.path().join(format!("objects-memory-{name}")),
        tunables,
    );
    let mut c = host.client();
    let pid = host.enclave_pid().unwrap();
    warm_up(&mut c);
    let before = rss_kib(pid);
    let count = 500;
    let names: Vec<String> = (0..count).map(|i| format!("idle-{i}")).collect();
    for v in &names {
        op(&mut c, v, VaultOp::Create { pin: pin("1111") }).unwrap();
        put(&mut c, v, "profile", &[7u8; 256]).unwrap();
    }
    let residency = |c: &mut Client, v: &str| match op(c, v, VaultOp::Status).unwrap() {
        EnclaveReply::Status { residency, .. } => residency,
        other => panic!("unexpected {other:?}"),
    };
    let all_resting = |c: &mut Client| names.iter().all(|v| residency(c, v) == Residency::Resting);
    if resting {
        // Status does not wake a vault: poll until the sweep has put them all at rest.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !all_resting(&mut c) {
            assert!(Instant::now() < deadline, "vaults never came to rest");
        }
    }
    let after = rss_kib(pid);
    let per = (after.saturating_sub(before)) as f64 / count as f64;
    metric(&format!("vaults_per_gib_{name}"), 1024.0 * 1024.0 / per);
    println!(
        "memory, {name}: {count} resident idle vaults added {} KiB RSS => {per:.1} KiB per vault => {:.0} vaults per GiB",
        after - before,
        1024.0 * 1024.0 / per
    );
    names
        .iter()
        .take(50)
        .map(|v| {
            let expected = if resting {
                Residency::Resting
            } else {
                Residency::Resident
            };
            assert_eq!(residency(&mut c, v), expected);
            let t = Instant::now();
            assert!(get(&mut c, v, "profile").unwrap().is_some());
            t.elapsed()
        })
        .collect()
}

/// fsync-family calls of process `pid` (all its threads) per write while `writes` runs (it
/// returns how many writes it made), traced by strace with the files they synced: all of
/// them, and those of log entries and their directories. `None` if strace is missing or
/// cannot attach.
fn syncs_per_write(pid: i32, writes: impl FnOnce() -> u64) -> Option<(f64, f64)> {
    let out = tempfile::NamedTempFile::new().ok()?;
    let mut strace = std::process::Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-y",
            "-e",
            "trace=fsync,fdatasync,syncfs,sync_file_range",
        ])
        .args(["-o", out.path().to_str()?, "-p", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    // Attached when every thread of the host names a tracer.
    let traced = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|tasks| {
                tasks.filter_map(Result::ok).all(|t| {
                    std::fs::read_to_string(t.path().join("status")).is_ok_and(|s| {
                        s.lines()
                            .find_map(|l| l.strip_prefix("TracerPid:"))
                            .is_some_and(|v| v.trim() != "0")
                    })
                })
            })
            .unwrap_or(false)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !traced() {
        if Instant::now() > deadline || strace.try_wait().ok()?.is_some() {
            let _ = strace.kill();
            return None;
        }
        std::thread::yield_now();
    }
    let n = writes();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(strace.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .ok()?;
    strace.wait().ok()?;
    let trace = std::fs::read_to_string(out.path()).ok()?;
    // Lines such as `1234  fsync(9</…/vaults/small/log/301>) = 0`.
    let calls: Vec<&str> = trace
        .lines()
        .filter(|l| {
            ["fsync(", "fdatasync(", "syncfs(", "sync_file_range("]
                .iter()
                .any(|c| l.contains(c))
        })
        .collect();
    // The write path: each log entry's file, and its directory synced next by the same
    // thread. A log directory synced otherwise is compaction's (old entries deleted).
    let mut log = 0;
    let mut after_entry = std::collections::HashSet::new();
    for l in &calls {
        let tid = l.split_whitespace().next().unwrap_or("");
        if l.contains("/log/") {
            log += 1;
            after_entry.insert(tid);
        } else if l.contains("/log>") && after_entry.remove(tid) {
            log += 1;
        } else {
            after_entry.remove(tid);
        }
    }
    Some((calls.len() as f64 / n as f64, log as f64 / n as f64))
}

/// Small files created by `threads` threads at once, each in its own directory under `root`,
/// `n` each, every file fsynced with its directory: the disk's floor for durable creates, per
/// second (concurrent fsyncs share the file system's journal commits, as the vaults' do).
fn raw_durable_creates(root: &std::path::Path, threads: usize, n: usize) -> f64 {
    use std::io::Write;
    let dirs: Vec<_> = (0..threads)
        .map(|t| {
            let dir = root.join(format!("raw-floor-{t}"));
            std::fs::create_dir_all(&dir).unwrap();
            dir
        })
        .collect();
    let began = Instant::now();
    std::thread::scope(|s| {
        for dir in &dirs {
            s.spawn(move || {
                for i in 0..n {
                    let path = dir.join(format!("{i}"));
                    let mut f = std::fs::File::create(&path).unwrap();
                    f.write_all(&[0x5a; 1200]).unwrap();
                    f.sync_all().unwrap();
                    std::fs::File::open(dir).unwrap().sync_all().unwrap();
                }
            });
        }
    });
    let rate = (threads * n) as f64 / began.elapsed().as_secs_f64();
    for dir in dirs {
        std::fs::remove_dir_all(dir).unwrap();
    }
    rate
}
