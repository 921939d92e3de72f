//! The dev clock: real time plus an offset the console can move forward, so subscription
//! and order expiry can be tried without waiting. The functions get the same offset through
//! `WEMINT_DEV_CLOCK_OFFSET_SECS` (they are restarted when it changes), and the stand-ins
//! sign with it, so timestamps stay within WeChat Pay's five-minute window on both sides.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Environment variable carrying the offset to the functions.
pub const CLOCK_OFFSET_VAR: &str = "WEMINT_DEV_CLOCK_OFFSET_SECS";

/// A shared clock with a movable offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset: Arc<AtomicI64>,
}

impl Clock {
    /// A clock at real time plus `offset_secs`.
    pub fn with_offset(offset_secs: i64) -> Self {
        Clock {
            offset: Arc::new(AtomicI64::new(offset_secs)),
        }
    }

    /// Current offset in seconds.
    pub fn offset(&self) -> i64 {
        self.offset.load(Ordering::SeqCst)
    }

    /// Moves the clock forward by `secs` (never backward); returns the new offset.
    pub fn advance(&self, secs: i64) -> i64 {
        self.offset.fetch_add(secs.max(0), Ordering::SeqCst) + secs.max(0)
    }

    /// Unix seconds on the dev clock.
    pub fn now(&self) -> i64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        real + self.offset()
    }

    /// Unix milliseconds on the dev clock.
    pub fn now_millis(&self) -> i64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        real + self.offset() * 1000
    }

    /// RFC 3339 time in China Standard Time, as WeChat Pay writes it.
    pub fn rfc3339_cst(unix: i64) -> String {
        let offset = time::UtcOffset::from_hms(8, 0, 0).unwrap_or(time::UtcOffset::UTC);
        time::OffsetDateTime::from_unix_timestamp(unix)
            .map(|t| t.to_offset(offset))
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advances_forward_only_and_formats_cst() {
        let clock = Clock::with_offset(0);
        let before = clock.now();
        assert_eq!(clock.advance(86_400), 86_400);
        assert_eq!(clock.advance(-5), 86_400);
        assert!(clock.now() >= before + 86_400);
        assert_eq!(
            Clock::rfc3339_cst(1_432_099_775),
            "2015-05-20T13:29:35+08:00"
        );
    }
}
