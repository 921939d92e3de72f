//! Time for every component, built once from configuration.
//!
//! A leaf: it imports nothing from the crate, so any module may take a [`SharedClock`].
//! Functions get theirs from [`from_offset`] with `WEMINT_DEV_CLOCK_OFFSET_SECS` (through
//! `wemint::setup::Deps`), so tokens, payment signatures, order windows and expiries all
//! agree with the emulator's movable dev clock; tests use [`FixedClock`].

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Current Unix time in seconds; injectable so signature windows and cache refreshes are testable.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now_unix(&self) -> i64;
    /// Milliseconds since the epoch: orders events that share a second. Clocks that only know
    /// seconds (test clocks) answer the start of the second.
    fn now_millis(&self) -> i64 {
        self.now_unix().saturating_mul(1000)
    }
}

/// A clock shared by the components of one function instance.
pub type SharedClock = Arc<dyn Clock>;

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }
    fn now_millis(&self) -> i64 {
        i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
            .unwrap_or(i64::MAX)
    }
}

/// The system clock plus a fixed offset: the emulator's dev clock as a function sees it.
#[derive(Debug, Clone, Copy)]
pub struct OffsetClock {
    /// Seconds added to the system time.
    pub offset_secs: i64,
}

impl Clock for OffsetClock {
    fn now_unix(&self) -> i64 {
        SystemClock.now_unix().saturating_add(self.offset_secs)
    }
    fn now_millis(&self) -> i64 {
        SystemClock
            .now_millis()
            .saturating_add(self.offset_secs.saturating_mul(1000))
    }
}

/// A clock stuck at one instant (tests, vector checks), adjustable through an atomic.
#[derive(Debug, Default)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    /// A clock reading `unix` seconds.
    pub fn new(unix: i64) -> Self {
        Self(AtomicI64::new(unix))
    }
    /// Move the clock to `unix` seconds.
    pub fn set(&self, unix: i64) {
        self.0.store(unix, Ordering::SeqCst);
    }
    /// Move the clock forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now_unix(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The one clock of a deployment: the system clock, moved by the configured dev clock offset
/// (`Config::dev_clock_offset_secs`, 0 in production).
pub fn from_offset(offset_secs: i64) -> SharedClock {
    if offset_secs == 0 {
        Arc::new(SystemClock)
    } else {
        Arc::new(OffsetClock { offset_secs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_moves_the_system_time() {
        let real = SystemClock.now_unix();
        let later = from_offset(86_400).now_unix();
        assert!((real + 86_400..real + 86_400 + 5).contains(&later));
        assert!(from_offset(0).now_unix() - real < 5);
        assert_eq!(
            OffsetClock {
                offset_secs: i64::MAX
            }
            .now_unix(),
            i64::MAX
        );
    }

    #[test]
    fn fixed_clock_moves_only_when_told() {
        let c = FixedClock::new(100);
        c.advance(5);
        assert_eq!(c.now_unix(), 105);
        c.set(7);
        assert_eq!(c.now_unix(), 7);
    }
}
