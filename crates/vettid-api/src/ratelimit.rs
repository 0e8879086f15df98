//! Per-process rate limits: fixed windows per (scope, key), in memory.
//!
//! A window opens with the first event and lasts [`Rate::per`]; within it at most
//! [`Rate::max`] events pass, and the rest are answered 429 with `Retry-After` = the time left.
//! Counters live in this process only (restarts forget them; several API processes each
//! count on their own), which is enough to stop guessing from one address. Keys are client
//! IPs (IPv6 by /48, the smallest prefix a site is usually given, so one site cannot rotate
//! through its own addresses) or email addresses.
//!
//! Memory is bounded: at most [`MAX_WINDOWS`] windows live at once. Windows are also kept in
//! the order they end, so expired ones are dropped in amortised constant time per check; when
//! the table is full of live windows, the oldest one is forgotten to make room
//! (an attacker who fills the table can shorten other keys' windows, not grow memory or slow
//! the checks).

use crate::ApiError;
use crate::config::Rate;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

/// Live windows at most.
pub const MAX_WINDOWS: usize = 200_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    ends_at_ms: u64,
    count: u32,
}

type Key = (&'static str, String);

#[derive(Debug, Default)]
struct Table {
    windows: HashMap<Key, Window>,
    /// When each window (as opened) ends, in the order opened: with one rate per scope and a
    /// clock that does not go back, also the order in which they end. A renewed window leaves
    /// its old entry behind, which is skipped when it comes up.
    ending: VecDeque<(u64, Key)>,
}

impl Table {
    /// Drops the front entry; forgets its window if that entry is the window's current one.
    fn pop_front(&mut self) {
        if let Some((ends, key)) = self.ending.pop_front()
            && self.windows.get(&key).is_some_and(|w| w.ends_at_ms == ends)
        {
            self.windows.remove(&key);
        }
    }

    /// Makes room for one more window: expired ones go, then (if still full) the soonest ending.
    fn make_room(&mut self, now_ms: u64) {
        while self.ending.front().is_some_and(|(ends, _)| *ends <= now_ms) {
            self.pop_front();
        }
        while self.windows.len() >= MAX_WINDOWS {
            self.pop_front();
        }
        // Stale entries of renewed windows cannot outgrow the table for long.
        if self.ending.len() > 2 * MAX_WINDOWS {
            let mut live: Vec<(u64, Key)> = self
                .windows
                .iter()
                .map(|(k, w)| (w.ends_at_ms, k.clone()))
                .collect();
            live.sort_by_key(|(ends, _)| *ends);
            self.ending = live.into();
        }
    }
}

/// Counts events per (scope, key).
#[derive(Debug, Default)]
pub struct RateLimiter {
    table: Mutex<Table>,
}

impl RateLimiter {
    /// Counts one event of `scope` for `key` at `now_ms`; `Err(RateLimited)` if the window is
    /// already full (the refused event is not counted).
    pub fn check(
        &self,
        scope: &'static str,
        key: &str,
        rate: Rate,
        now_ms: u64,
    ) -> Result<(), ApiError> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let per_ms = u64::try_from(rate.per.as_millis()).unwrap_or(u64::MAX);
        let id = (scope, key.to_owned());
        let live = table
            .windows
            .get(&id)
            .is_some_and(|w| w.ends_at_ms > now_ms);
        if !live {
            table.make_room(now_ms);
            let ends_at_ms = now_ms.saturating_add(per_ms);
            table.windows.insert(
                id.clone(),
                Window {
                    ends_at_ms,
                    count: 0,
                },
            );
            table.ending.push_back((ends_at_ms, id.clone()));
        }
        let w = table.windows.get_mut(&id).expect("just made live");
        if w.count >= rate.max {
            let left_ms = w.ends_at_ms - now_ms;
            return Err(ApiError::RateLimited {
                retry_after_secs: left_ms.div_ceil(1000).max(1),
            });
        }
        w.count += 1;
        Ok(())
    }

    /// Live windows (for tests and the benchmark).
    pub fn windows(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .windows
            .len()
    }
}

/// The rate-limit key of a client address: the IPv4 address, or the /48 of an IPv6 one
/// (IPv4-mapped IPv6 addresses count as IPv4).
pub(crate) fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const TWO_PER_MINUTE: Rate = Rate {
        max: 2,
        per: Duration::from_secs(60),
    };

    #[test]
    fn a_full_window_refuses_until_it_ends() {
        let l = RateLimiter::default();
        assert!(l.check("s", "k", TWO_PER_MINUTE, 0).is_ok());
        assert!(l.check("s", "k", TWO_PER_MINUTE, 1_000).is_ok());
        assert_eq!(
            l.check("s", "k", TWO_PER_MINUTE, 10_500),
            Err(ApiError::RateLimited {
                retry_after_secs: 50
            })
        );
        // other keys and scopes are counted apart
        assert!(l.check("s", "other", TWO_PER_MINUTE, 10_500).is_ok());
        assert!(l.check("t", "k", TWO_PER_MINUTE, 10_500).is_ok());
        // the window ends
        assert!(l.check("s", "k", TWO_PER_MINUTE, 60_000).is_ok());
    }

    #[test]
    fn ipv6_addresses_share_their_48() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:ffff:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:2::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b), "one site's /64s are one key");
        assert_ne!(ip_key(a), ip_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(ip_key(mapped), "192.0.2.7");
    }

    #[test]
    fn a_million_keys_stay_within_bounds_and_live_windows_keep_counting() {
        let l = RateLimiter::default();
        // A window that must survive expiries around it.
        assert!(l.check("s", "victim", TWO_PER_MINUTE, 0).is_ok());
        assert!(l.check("s", "victim", TWO_PER_MINUTE, 0).is_ok());
        for i in 0..1_000_000u64 {
            // A fresh key every time, as from rotating addresses; time moves on.
            l.check("s", &format!("k{i}"), TWO_PER_MINUTE, i / 100)
                .unwrap();
            assert!(l.windows() <= MAX_WINDOWS);
        }
        // Expired windows are gone; the table never grew beyond its bound.
        assert!(l.windows() <= MAX_WINDOWS);
        // Keys whose windows ended count afresh.
        assert!(l.check("s", "k0", TWO_PER_MINUTE, 20_000_000).is_ok());
    }

    #[test]
    fn renewed_windows_are_not_forgotten_by_their_old_entries() {
        let l = RateLimiter::default();
        assert!(l.check("s", "k", TWO_PER_MINUTE, 0).is_ok());
        // The window ends and a new one opens; the old queue entry must not drop the new one.
        assert!(l.check("s", "k", TWO_PER_MINUTE, 60_000).is_ok());
        assert!(l.check("s", "other", TWO_PER_MINUTE, 61_000).is_ok());
        assert!(l.check("s", "k", TWO_PER_MINUTE, 61_000).is_ok());
        assert!(
            l.check("s", "k", TWO_PER_MINUTE, 61_000).is_err(),
            "still counted"
        );
    }
}
