//! The enclave engine against real processes: dev platform, host, enclave, object store.

mod support;

use support::*;
use vettid_proto::enclave::{EnclaveReply, Invalid, Residency, ToEnclave, VaultError, VaultOp};

#[test]
fn create_write_lock_unlock_and_read_back() {
    let stack = Stack::start(&[]);
    let host = &stack.host;
    let mut c = host.client();
    assert!(
        matches!(op(&mut c, "alice", VaultOp::Create { pin: pin("2468") }), Ok(EnclaveReply::Open(v)) if v.version == 0)
    );
    assert_eq!(
        op(&mut c, "alice", VaultOp::Create { pin: pin("2468") }),
        Err(VaultError::AlreadyExists)
    );
    let Ok(EnclaveReply::Written(w)) = put(&mut c, "alice", "k", b"v1") else {
        panic!()
    };
    assert_eq!(w.version, 1);
    put(&mut c, "alice", "k", b"v2").unwrap();
    assert_eq!(op(&mut c, "alice", VaultOp::Lock), Ok(EnclaveReply::Locked));
    assert_eq!(get(&mut c, "alice", "k"), Err(VaultError::NotUnlocked));
    let Ok(EnclaveReply::Open(v)) = op(&mut c, "alice", VaultOp::Unlock { pin: pin("2468") })
    else {
        panic!()
    };
    assert_eq!(v.version, 2);
    assert_eq!(get(&mut c, "alice", "k"), Ok(Some(b"v2".to_vec())));
    assert_eq!(get(&mut c, "alice", "missing"), Ok(None));
    assert_eq!(
        op(&mut c, "nobody", VaultOp::Unlock { pin: pin("2468") }),
        Err(VaultError::NotFound)
    );
}

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    let stack = Stack::start(&[]);
    let host = &stack.host;
    let mut c = host.client();
    for bad in ["", "UPPER", "a/b", "../x", &"x".repeat(65)] {
        assert!(
            matches!(
                op(&mut c, bad, VaultOp::Create { pin: pin("2468") }),
                Err(VaultError::Invalid(Invalid::VaultId))
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        op(&mut c, "short", VaultOp::Create { pin: pin("12") }),
        Err(VaultError::Invalid(Invalid::Pin))
    ));
    op(&mut c, "v", VaultOp::Create { pin: pin("2468") }).unwrap();
    assert!(matches!(
        put(&mut c, "v", "", b"x"),
        Err(VaultError::Invalid(Invalid::Record))
    ));
    assert!(matches!(
        put(&mut c, "v", "big", &vec![0; 1024 * 1024 + 1]),
        Err(VaultError::Invalid(Invalid::Record))
    ));
    let Ok(EnclaveReply::Written(w)) = put(&mut c, "v", "k", b"x") else {
        panic!()
    };
    assert_eq!(w.version, 1, "refused requests wrote nothing");
    assert!(!stack.objects().join("vaults/short").exists());
}

#[test]
fn guess_limit_locks_and_survives_kill_and_restart() {
    let stack = Stack::start(&["--pin-attempts", "4"]);
    let host = &stack.host;
    let mut c = host.client();
    op(&mut c, "g", VaultOp::Create { pin: pin("1111") }).unwrap();
    put(&mut c, "g", "k", b"v").unwrap();
    assert_eq!(
        op(&mut c, "g", VaultOp::Unlock { pin: pin("0000") }),
        Err(VaultError::WrongPin { attempts_left: 3 })
    );
    assert_eq!(
        op(&mut c, "g", VaultOp::Unlock { pin: pin("0001") }),
        Err(VaultError::WrongPin { attempts_left: 2 })
    );

    host.kill_enclave();
    let mut c = host.client();
    // The count survived the crash: two left, not four.
    assert_eq!(
        op(&mut c, "g", VaultOp::Unlock { pin: pin("0002") }),
        Err(VaultError::WrongPin { attempts_left: 1 })
    );
    assert_eq!(
        op(&mut c, "g", VaultOp::Unlock { pin: pin("0003") }),
        Err(VaultError::LockedOut)
    );

    host.kill_enclave();
    let mut c = host.client();
    assert_eq!(
        op(&mut c, "g", VaultOp::Unlock { pin: pin("1111") }),
        Err(VaultError::LockedOut),
        "right PIN refused once locked"
    );
    assert!(matches!(
        op(&mut c, "g", VaultOp::Status),
        Ok(EnclaveReply::Status {
            attempts_left: 0,
            failed_attempts: 4,
            ..
        })
    ));
}

#[test]
fn a_right_pin_resets_the_count_and_pin_change_keeps_the_data() {
    let stack = Stack::start(&["--pin-attempts", "3"]);
    let host = &stack.host;
    let mut c = host.client();
    op(&mut c, "p", VaultOp::Create { pin: pin("1111") }).unwrap();
    put(&mut c, "p", "k", b"kept").unwrap();
    assert_eq!(
        op(&mut c, "p", VaultOp::Unlock { pin: pin("9999") }),
        Err(VaultError::WrongPin { attempts_left: 2 })
    );
    op(&mut c, "p", VaultOp::Unlock { pin: pin("1111") }).unwrap();
    assert_eq!(
        op(&mut c, "p", VaultOp::Unlock { pin: pin("9999") }),
        Err(VaultError::WrongPin { attempts_left: 2 })
    );
    op(
        &mut c,
        "p",
        VaultOp::ChangePin {
            old: pin("1111"),
            new: pin("2222"),
        },
    )
    .unwrap();
    op(&mut c, "p", VaultOp::Lock).unwrap();
    assert_eq!(
        op(&mut c, "p", VaultOp::Unlock { pin: pin("1111") }),
        Err(VaultError::WrongPin { attempts_left: 2 })
    );
    op(&mut c, "p", VaultOp::Unlock { pin: pin("2222") }).unwrap();
    assert_eq!(get(&mut c, "p", "k"), Ok(Some(b"kept".to_vec())));
}

#[test]
fn idle_vaults_are_evicted_and_reload_without_the_pin_until_the_enclave_restarts() {
    let stack = Stack::start(&["--idle-secs", "0"]);
    let host = &stack.host;
    let mut c = host.client();
    op(&mut c, "r", VaultOp::Create { pin: pin("1111") }).unwrap();
    put(&mut c, "r", "k", b"v").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(EnclaveReply::Status {
            residency: Residency::Evicted,
            ..
        }) = op(&mut c, "r", VaultOp::Status)
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never evicted");
        std::thread::yield_now();
    }
    assert_eq!(
        get(&mut c, "r", "k"),
        Ok(Some(b"v".to_vec())),
        "reloaded without the PIN"
    );
    host.kill_enclave();
    let mut c = host.client();
    assert_eq!(
        get(&mut c, "r", "k"),
        Err(VaultError::NotUnlocked),
        "a new enclave instance needs the PIN"
    );
}

#[test]
fn two_enclaves_writing_one_vault_are_fenced_and_lose_nothing() {
    let t = tempfile::tempdir().unwrap();
    let objects = t.path().join("objects");
    let platform = Platform::start(&t.path().join("platform"));
    let a = Host::start(&t.path().join("a"), &platform, &objects, &[]);
    let b = Host::start(&t.path().join("b"), &platform, &objects, &[]);
    let (mut ca, mut cb) = (a.client(), b.client());
    op(&mut ca, "f", VaultOp::Create { pin: pin("1111") }).unwrap();
    put(&mut ca, "f", "k1", b"a").unwrap();
    op(&mut cb, "f", VaultOp::Unlock { pin: pin("1111") }).unwrap();
    assert_eq!(get(&mut cb, "f", "k1"), Ok(Some(b"a".to_vec())));
    put(&mut cb, "f", "k2", b"b").unwrap();
    // A's copy is stale: exactly one writer wins.
    assert_eq!(put(&mut ca, "f", "k3", b"a"), Err(VaultError::Conflict));
    // A reloads on its next write (no PIN needed) and wins; B is now the stale one.
    put(&mut ca, "f", "k3", b"a").unwrap();
    assert_eq!(put(&mut cb, "f", "k4", b"b"), Err(VaultError::Conflict));
    op(&mut ca, "f", VaultOp::Lock).unwrap();
    op(&mut ca, "f", VaultOp::Unlock { pin: pin("1111") }).unwrap();
    for (k, v) in [
        ("k1", Some(b"a")),
        ("k2", Some(b"b")),
        ("k3", Some(b"a")),
        ("k4", None),
    ] {
        assert_eq!(get(&mut ca, "f", k), Ok(v.map(|v| v.to_vec())), "{k}");
    }
}

fn file(objects: &std::path::Path, vault: &str, kind: &str, n: u64) -> std::path::PathBuf {
    objects.join(format!("vaults/{vault}/{kind}/{n:020}"))
}

#[test]
fn tampered_objects_are_detected_on_load() {
    let stack = Stack::start(&[]);
    let objects = stack.objects();
    let host = &stack.host;
    let mut c = host.client();
    for v in ["swap", "trunc", "moved", "other", "gap"] {
        op(&mut c, v, VaultOp::Create { pin: pin("1111") }).unwrap();
        for i in 0..3 {
            put(&mut c, v, &format!("k{i}"), b"v").unwrap();
        }
    }
    // A crash (not a lock, which would snapshot and compact): the changes stay in the log.
    host.kill_enclave();
    let mut c = host.client();
    // An older log entry swapped in under a newer name.
    std::fs::copy(
        file(&objects, "swap", "log", 1),
        file(&objects, "swap", "log", 3),
    )
    .unwrap();
    // A truncated entry.
    let f = file(&objects, "trunc", "log", 2);
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 1]).unwrap();
    // Another vault's entry moved to this vault's name.
    std::fs::copy(
        file(&objects, "other", "log", 2),
        file(&objects, "moved", "log", 2),
    )
    .unwrap();
    // An entry removed from the middle.
    std::fs::remove_file(file(&objects, "gap", "log", 2)).unwrap();
    for v in ["swap", "trunc", "moved", "gap"] {
        assert!(
            matches!(
                op(&mut c, v, VaultOp::Unlock { pin: pin("1111") }),
                Err(VaultError::Tampered(_))
            ),
            "{v} loaded despite tampering"
        );
    }
    // The untouched vault still loads.
    op(&mut c, "other", VaultOp::Unlock { pin: pin("1111") }).unwrap();
    // A keys object from another vault does not open here either.
    std::fs::copy(
        file(&objects, "other", "keys", 0),
        file(&objects, "swap", "keys", 0),
    )
    .unwrap();
    assert!(matches!(
        op(&mut c, "swap", VaultOp::Unlock { pin: pin("1111") }),
        Err(VaultError::Tampered(_))
    ));
}

#[test]
fn nothing_readable_reaches_storage_or_the_hosts_logs() {
    let stack = Stack::start(&[]);
    let objects = stack.objects();
    let (host, platform) = (&stack.host, &stack.platform);
    let mut c = host.client();
    let markers = ["MARKER-alpha-7f3c", "MARKER-beta-91d2", "MARKER-gamma-c0de"];
    let pin_text = "735911";
    op(&mut c, "zk", VaultOp::Create { pin: pin(pin_text) }).unwrap();
    for (i, m) in markers.iter().enumerate() {
        put(&mut c, "zk", m, format!("value {m} {i}").as_bytes()).unwrap();
    }
    let scan = |stage: &str, must_have: &str| {
        let mut files = vec![host.log(), platform.dir.join("platform.log")];
        let mut dirs = vec![objects.clone()];
        while let Some(dir) = dirs.pop() {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p)
                } else {
                    files.push(p)
                }
            }
        }
        assert!(
            files
                .iter()
                .any(|f| f.to_string_lossy().contains(must_have)),
            "{stage}: no {must_have} object among {files:?}"
        );
        for f in &files {
            let bytes = std::fs::read(f).unwrap();
            for needle in markers
                .iter()
                .map(|m| m.as_bytes())
                .chain([pin_text.as_bytes()])
            {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{stage}: {} found in {}",
                    String::from_utf8_lossy(needle),
                    f.display()
                );
            }
        }
    };
    // The markers in log entries, then (after lock) in a snapshot.
    scan("after writes", "/log/");
    op(&mut c, "zk", VaultOp::Lock).unwrap();
    op(&mut c, "zk", VaultOp::Unlock { pin: pin(pin_text) }).unwrap();
    scan("after lock", "/snapc/");
}

/// The fence and a load on S3 (moto), where create-only puts are `If-None-Match: *`.
#[cfg(feature = "s3")]
#[test]
fn on_s3_two_enclaves_are_fenced_and_vaults_reload() {
    let t = tempfile::tempdir().unwrap();
    let platform = Platform::start(&t.path().join("platform"));
    let a = Host::start_s3(&t.path().join("a"), &platform);
    let b = Host::start_s3(&t.path().join("b"), &platform);
    let vault = format!("s3-{}", std::process::id());
    let (mut ca, mut cb) = (a.client(), b.client());
    op(&mut ca, &vault, VaultOp::Create { pin: pin("1111") }).unwrap();
    put(&mut ca, &vault, "k1", b"a").unwrap();
    op(&mut cb, &vault, VaultOp::Unlock { pin: pin("1111") }).unwrap();
    put(&mut cb, &vault, "k2", b"b").unwrap();
    assert_eq!(put(&mut ca, &vault, "k3", b"a"), Err(VaultError::Conflict));
    op(&mut ca, &vault, VaultOp::Unlock { pin: pin("1111") }).unwrap();
    assert_eq!(get(&mut ca, &vault, "k1"), Ok(Some(b"a".to_vec())));
    assert_eq!(get(&mut ca, &vault, "k2"), Ok(Some(b"b".to_vec())));
    assert_eq!(get(&mut ca, &vault, "k3"), Ok(None));
}

fn wait_evicted(c: &mut vettid_host::control::Client, vault: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !matches!(
        op(c, vault, VaultOp::Status),
        Ok(EnclaveReply::Status {
            residency: Residency::Evicted,
            ..
        })
    ) {
        assert!(
            std::time::Instant::now() < deadline,
            "{vault} never evicted"
        );
        std::thread::yield_now();
    }
}

#[test]
fn an_idle_vault_rests_in_the_enclave_and_answers_as_before() {
    let stack = Stack::start(&["--rest-secs", "0"]);
    let mut c = stack.host.client();
    op(&mut c, "z", VaultOp::Create { pin: pin("1111") }).unwrap();
    put(&mut c, "z", "k", b"kept at rest").unwrap();
    let dir = stack.dir.path().join("objects");
    let objects = |dir: &std::path::Path| {
        let mut all = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().filter_map(Result::ok) {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    all.push((e.path(), std::fs::read(e.path()).unwrap()));
                }
            }
        }
        all.sort();
        all
    };
    // Captured while it is still open (nothing else is due after one write): resting must
    // write nothing either.
    let stored = objects(&dir);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !matches!(
        op(&mut c, "z", VaultOp::Status),
        Ok(EnclaveReply::Status {
            residency: Residency::Resting,
            ..
        })
    ) {
        assert!(std::time::Instant::now() < deadline, "never at rest");
        std::thread::yield_now();
    }
    assert_eq!(objects(&dir), stored, "resting wrote nothing");
    // Counted at rest (a vault the janitor holds at that instant counts as open: ask again).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match c.call(&ToEnclave::Stats).unwrap() {
            Ok(EnclaveReply::Stats {
                open: 0,
                resting: 1,
                evicted: 0,
                accounted_mib,
            }) => {
                assert_eq!(accounted_mib, 1, "a few KiB, in whole MiB");
                break;
            }
            Ok(EnclaveReply::Stats { .. }) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "never counted at rest"
                );
                std::thread::yield_now();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // The operator's view, and a helpful refusal without a vault id.
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_vettid"))
            .args(["vault", "--data-dir", stack.host.dir.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap()
    };
    let stats = cli(&["stats"]);
    assert!(stats.status.success());
    let shown = String::from_utf8_lossy(&stats.stdout);
    assert!(
        shown.contains("0 vault(s) open, 1 at rest, 0 evicted"),
        "{shown}"
    );
    let refused = cli(&["status"]);
    assert_eq!(refused.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--vault <id> is required"));
    let refused = cli(&["--vault", "z", "stats"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("takes no --vault"));
    // Its next use opens it where it was: no PIN, nothing written to storage (a reload would
    // claim an epoch).
    assert_eq!(get(&mut c, "z", "k"), Ok(Some(b"kept at rest".to_vec())));
    assert_eq!(objects(&dir), stored);
    put(&mut c, "z", "k2", b"after").unwrap();
    assert_eq!(get(&mut c, "z", "k2"), Ok(Some(b"after".to_vec())));
}

#[test]
fn the_residency_budget_evicts_least_recently_used_vaults() {
    let stack = Stack::start(&["--max-resident", "2", "--memory-budget-mib", "2"]);
    let host = &stack.host;
    let mut c = host.client();
    for v in ["lru-1", "lru-2", "lru-3"] {
        op(&mut c, v, VaultOp::Create { pin: pin("1111") }).unwrap();
    }
    // Three resident, two allowed: the least recently used goes.
    wait_evicted(&mut c, "lru-1");
    assert!(matches!(
        op(&mut c, "lru-3", VaultOp::Status),
        Ok(EnclaveReply::Status {
            residency: Residency::Resident,
            ..
        })
    ));
    // Over the byte budget (2 MiB): a big vault is evicted although the count allows it.
    op(&mut c, "lru-3", VaultOp::Lock).unwrap();
    op(&mut c, "lru-2", VaultOp::Lock).unwrap();
    for i in 0..3 {
        put(&mut c, "lru-1", &format!("big-{i}"), &vec![1; 1024 * 1024]).unwrap();
    }
    wait_evicted(&mut c, "lru-1");
    assert_eq!(
        get(&mut c, "lru-1", "big-2").map(|v| v.map(|v| v.len())),
        Ok(Some(1024 * 1024))
    );
}

#[test]
fn deleting_guard_records_to_reset_the_count_is_detected() {
    let stack = Stack::start(&["--pin-attempts", "5"]);
    let host = &stack.host;
    let mut c = host.client();
    op(&mut c, "rb", VaultOp::Create { pin: pin("1111") }).unwrap();
    assert_eq!(
        op(&mut c, "rb", VaultOp::Unlock { pin: pin("0000") }),
        Err(VaultError::WrongPin { attempts_left: 4 })
    );
    assert_eq!(
        op(&mut c, "rb", VaultOp::Unlock { pin: pin("0001") }),
        Err(VaultError::WrongPin { attempts_left: 3 })
    );
    // A hostile host deletes the guard records (the newest, 2; older ones are compacted) to
    // give the guesser fresh tries.
    std::fs::remove_file(file(&stack.objects(), "rb", "guard", 2)).unwrap();
    let _ = std::fs::remove_file(file(&stack.objects(), "rb", "guard", 1));
    assert!(matches!(
        op(&mut c, "rb", VaultOp::Unlock { pin: pin("0002") }),
        Err(VaultError::Tampered(_))
    ));
    assert!(matches!(
        op(&mut c, "rb", VaultOp::Unlock { pin: pin("1111") }),
        Err(VaultError::Tampered(_))
    ));
}

#[test]
fn a_host_that_refuses_to_store_the_count_gets_no_answer_about_the_pin() {
    let stack = Stack::start(&[]);
    let host = &stack.host;
    let mut c = host.client();
    op(&mut c, "nocount", VaultOp::Create { pin: pin("1111") }).unwrap();
    // Make every guard write fail: a file where the guard directory would go.
    std::fs::write(
        stack.objects().join("vaults/nocount/guard"),
        b"not a directory",
    )
    .unwrap();
    for attempt in ["0000", "1111"] {
        assert!(
            matches!(
                op(&mut c, "nocount", VaultOp::Unlock { pin: pin(attempt) }),
                Err(VaultError::Storage(_))
            ),
            "PIN {attempt} was evaluated without a durable count"
        );
    }
}

#[test]
fn a_stale_writer_is_fenced_even_after_the_newer_one_compacted() {
    let t = tempfile::tempdir().unwrap();
    let objects = t.path().join("objects");
    let platform = Platform::start(&t.path().join("platform"));
    let a = Host::start(&t.path().join("a"), &platform, &objects, &[]);
    let b = Host::start(
        &t.path().join("b"),
        &platform,
        &objects,
        &["--idle-secs", "0", "--snapshot-every", "1"],
    );
    let (mut ca, mut cb) = (a.client(), b.client());
    op(&mut ca, "stale", VaultOp::Create { pin: pin("1111") }).unwrap();
    put(&mut ca, "stale", "k1", b"a").unwrap();
    op(&mut cb, "stale", VaultOp::Unlock { pin: pin("1111") }).unwrap();
    wait_evicted(&mut cb, "stale");
    // B reloads (a newer epoch), writes version 2, snapshots and compacts the log.
    put(&mut cb, "stale", "k2", b"b").unwrap();
    // A still believes it is at version 1: its write of version 2 must not be acknowledged.
    assert_eq!(put(&mut ca, "stale", "k3", b"a"), Err(VaultError::Conflict));
    op(&mut cb, "stale", VaultOp::Lock).unwrap();
    op(&mut cb, "stale", VaultOp::Unlock { pin: pin("1111") }).unwrap();
    assert_eq!(get(&mut cb, "stale", "k1"), Ok(Some(b"a".to_vec())));
    assert_eq!(get(&mut cb, "stale", "k2"), Ok(Some(b"b".to_vec())));
}

#[test]
fn a_vault_whose_creation_was_cut_short_still_opens() {
    let stack = Stack::start(&[]);
    let host = &stack.host;
    let mut c = host.client();
    op(&mut c, "half", VaultOp::Create { pin: pin("1111") }).unwrap();
    host.kill_enclave();
    // As if the enclave had died after writing the keys and before the first snapshot.
    for dir in ["snap", "snapc"] {
        std::fs::remove_dir_all(stack.objects().join("vaults/half").join(dir)).unwrap();
    }
    let mut c = host.client();
    op(&mut c, "half", VaultOp::Unlock { pin: pin("1111") }).unwrap();
    put(&mut c, "half", "k", b"v").unwrap();
    assert_eq!(get(&mut c, "half", "k"), Ok(Some(b"v".to_vec())));
}
