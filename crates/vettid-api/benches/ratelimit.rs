//! The rate limiter under a million keys (issue 11, finding 5): a check's cost against a bare
//! `HashMap` insert of the same keys, measured in the same run. Run:
//! `cargo bench -p vettid-api --bench ratelimit`. Results: docs/BENCHMARKS.md.

use std::collections::HashMap;
use std::time::{Duration, Instant};
use vettid_api::{MAX_WINDOWS, Rate, RateLimiter};

const KEYS: u64 = 1_000_000;

fn main() {
    let rate = Rate {
        max: 5,
        per: Duration::from_secs(3600),
    };
    let keys: Vec<String> = (0..KEYS).map(|i| format!("2001:db8:{i:x}::/48")).collect();

    // The raw limit: one map insert per key, nothing else.
    let t = Instant::now();
    let mut map: HashMap<(&'static str, String), (u64, u32)> = HashMap::new();
    for k in &keys {
        map.insert(("ip", k.clone()), (0, 1));
    }
    let raw = t.elapsed();
    drop(map);

    // A million fresh keys within one window (as from rotating addresses): all live, so the
    // table is full for most of the run and makes room by forgetting the oldest.
    let l = RateLimiter::default();
    let t = Instant::now();
    for (i, k) in keys.iter().enumerate() {
        let _ = l.check("ip", k, rate, i as u64 / 1000);
    }
    let fresh = t.elapsed();
    assert!(l.windows() <= MAX_WINDOWS);

    // Then a steady load on keys that already have windows.
    let t = Instant::now();
    for k in keys.iter().rev().take(200_000) {
        let _ = l.check("ip", k, rate, KEYS / 1000);
    }
    let steady = t.elapsed();

    let per = |d: Duration, n: u64| d.as_nanos() as f64 / n as f64;
    println!(
        "raw HashMap insert: {:.0} ns per key ({KEYS} keys)",
        per(raw, KEYS)
    );
    println!(
        "limiter, {KEYS} fresh keys: {:.0} ns per check ({:.2}x the raw insert); {} windows kept (bound {MAX_WINDOWS})",
        per(fresh, KEYS),
        per(fresh, KEYS) / per(raw, KEYS),
        l.windows()
    );
    println!(
        "limiter, 200000 checks of live keys: {:.0} ns per check",
        per(steady, 200_000)
    );
}
