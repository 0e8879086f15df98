//! Per-process rate limits: fixed windows per (scope, key), in memory.
//!
//! A window opens with the first event and lasts [`Rate::per`]; within it at most
//! [`Rate::max`] events pass, and the rest are answered 429 with `Retry-After` = the time left.
//! Counters live in this process only (restarts forget them; several API processes each
//! count on their own), which is enough to stop guessing from one address. Keys are client
//! IPs (IPv6 by /64, so one host cannot rotate through its own prefix) or email addresses.

use crate::ApiError;
use crate::config::Rate;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Above this many live windows, expired ones are dropped on the next check.
const PRUNE_ABOVE: usize = 50_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    ends_at_ms: u64,
    count: u32,
}

/// Counts events per (scope, key).
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    windows: Mutex<HashMap<(&'static str, String), Window>>,
}

impl RateLimiter {
    /// Counts one event of `scope` for `key` at `now_ms`; `Err(RateLimited)` if the window is
    /// already full (the refused event is not counted).
    pub(crate) fn check(
        &self,
        scope: &'static str,
        key: &str,
        rate: Rate,
        now_ms: u64,
    ) -> Result<(), ApiError> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > PRUNE_ABOVE {
            windows.retain(|_, w| w.ends_at_ms > now_ms);
        }
        let per_ms = u64::try_from(rate.per.as_millis()).unwrap_or(u64::MAX);
        let w = windows.entry((scope, key.to_owned())).or_insert(Window {
            ends_at_ms: 0,
            count: 0,
        });
        if w.ends_at_ms <= now_ms {
            *w = Window {
                ends_at_ms: now_ms.saturating_add(per_ms),
                count: 0,
            };
        }
        if w.count >= rate.max {
            let left_ms = w.ends_at_ms - now_ms;
            return Err(ApiError::RateLimited {
                retry_after_secs: left_ms.div_ceil(1000).max(1),
            });
        }
        w.count += 1;
        Ok(())
    }
}

/// The rate-limit key of a client address: the IPv4 address, or the /64 of an IPv6 one
/// (IPv4-mapped IPv6 addresses count as IPv4).
pub(crate) fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
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
    fn ipv6_addresses_share_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(ip_key(mapped), "192.0.2.7");
    }
}
