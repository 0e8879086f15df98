//! Time, injected: every expiry and rate-limit window reads the [`Clock`] the [`crate::App`]
//! was opened with, so tests move time forward instead of sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to (tests and simulations). Millisecond resolution.
#[derive(Debug)]
pub struct ManualClock {
    unix_ms: AtomicU64,
}

impl ManualClock {
    /// A clock standing at `unix_secs` seconds after the epoch.
    pub fn at_unix(unix_secs: u64) -> ManualClock {
        ManualClock {
            unix_ms: AtomicU64::new(unix_secs.saturating_mul(1000)),
        }
    }

    /// A clock standing at the operating system's current time.
    pub fn starting_now() -> ManualClock {
        ManualClock {
            unix_ms: AtomicU64::new(unix_ms(SystemTime::now())),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.unix_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `unix_secs` (it may move backwards: a test of clock skew).
    pub fn set_unix(&self, unix_secs: u64) {
        self.unix_ms
            .store(unix_secs.saturating_mul(1000), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.unix_ms.load(Ordering::SeqCst))
    }
}

/// Seconds since the epoch (0 before it; the API never runs then).
pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Milliseconds since the epoch (0 before it).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::at_unix(1_000);
        assert_eq!(unix_secs(c.now()), 1_000);
        c.advance(Duration::from_secs(61));
        assert_eq!(unix_secs(c.now()), 1_061);
        c.set_unix(5);
        assert_eq!(unix_secs(c.now()), 5);
    }
}
