//! `kill -9` of the enclave at random moments during a stream of writes to several vaults:
//! after every restart each acknowledged write is present and every vault loads.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;
use vettid_proto::enclave::{VaultError, VaultOp};

const VAULTS: [&str; 3] = ["crash-a", "crash-b", "crash-c"];
const KILLS: usize = 20;
const PIN: &str = "3141";

#[test]
fn every_acknowledged_write_survives_twenty_kills() {
    // Snapshots every 8 entries, so kills also land during compaction.
    let stack = Stack::start(&["--snapshot-every", "8"]);
    let host = &stack.host;
    let mut c = host.client();
    for v in VAULTS {
        op(&mut c, v, VaultOp::Create { pin: pin(PIN) }).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    // Writers hold off while the test checks a restarted enclave, so each check is bounded.
    let paused = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    let acked: Vec<Arc<Mutex<BTreeSet<u64>>>> = VAULTS.iter().map(|_| Arc::default()).collect();
    let writers: Vec<_> = VAULTS
        .iter()
        .zip(&acked)
        .map(|(vault, acked)| {
            let (stop, paused, acks, acked) =
                (stop.clone(), paused.clone(), acks.clone(), acked.clone());
            let socket = host.dir.join("host.sock");
            let vault = vault.to_string();
            std::thread::spawn(move || {
                let mut c = vettid_host::control::Client::connect(&socket).unwrap();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if paused.load(Ordering::Relaxed) {
                        std::thread::yield_now();
                        continue;
                    }
                    n += 1;
                    match put(&mut c, &vault, &format!("w{n}"), &n.to_be_bytes()) {
                        Ok(_) => {
                            acked.lock().unwrap().insert(n);
                            acks.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(VaultError::NotUnlocked) => {
                            let _ = op(&mut c, &vault, VaultOp::Unlock { pin: pin(PIN) });
                        }
                        // The enclave died mid-call: not acknowledged, so nothing promised.
                        Err(_) => {}
                    }
                }
            })
        })
        .collect();

    for round in 0..KILLS {
        // Kill after a random number (1-8) of further acknowledgements: a random moment in the stream.
        let wait_for =
            acks.load(Ordering::Relaxed) + 1 + u64::from(vettid_crypto::random_array::<1>()[0] % 8);
        let deadline = Instant::now() + Duration::from_secs(120);
        while acks.load(Ordering::Relaxed) < wait_for {
            assert!(Instant::now() < deadline, "writes stalled in round {round}");
            std::thread::yield_now();
        }
        host.kill_enclave();
        paused.store(true, Ordering::Relaxed);
        let promised: Vec<BTreeSet<u64>> =
            acked.iter().map(|a| a.lock().unwrap().clone()).collect();
        let mut c = host.client();
        for (vault, promised) in VAULTS.iter().zip(&promised) {
            op(&mut c, vault, VaultOp::Unlock { pin: pin(PIN) })
                .unwrap_or_else(|e| panic!("round {round}: {vault} does not load: {e}"));
            for n in promised {
                assert_eq!(
                    get(&mut c, vault, &format!("w{n}")),
                    Ok(Some(n.to_be_bytes().to_vec())),
                    "round {round}: {vault} lost acknowledged write {n}"
                );
            }
        }
        paused.store(false, Ordering::Relaxed);
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let total: usize = acked.iter().map(|a| a.lock().unwrap().len()).sum();
    assert!(total >= KILLS, "only {total} acknowledged writes");
    eprintln!("{KILLS} kills, {total} acknowledged writes, all present");
}
