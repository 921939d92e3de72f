//! The functions' timer triggers, fired on the dev clock: as in `cloudbaserc.json`, reconcile
//! every minute (so expired orders close and release their stock locally), ugcUpload's
//! moderation sweep every 10 minutes, wxPush's receipts purge every hour, gatedContent's
//! renewal reminders daily at 10:00 China time and reconcile's bill reconciliation of the
//! previous day daily at 10:30 China time. A trigger fires once when one or more of its
//! periods have passed on the dev clock since it last fired: as real time goes by, and right
//! after the dev clock is advanced (one firing for a jump, like a platform catching up).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::clock::Clock;
use crate::scf::Outcome;
use crate::suite::Suite;

/// One timer trigger of a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timer {
    /// Deployed function name.
    pub function: &'static str,
    /// Trigger name (`cloudbaserc.json`).
    pub trigger: &'static str,
    /// Fires every this many seconds…
    pub period_secs: i64,
    /// …at this offset into the period (UTC), e.g. 02:00 UTC = 10:00 in China.
    pub phase_secs: i64,
}

/// The triggers of `cloudbaserc.json`.
pub const TIMERS: [Timer; 7] = [
    Timer {
        function: "reconcile",
        trigger: "every-minute",
        period_secs: 60,
        phase_secs: 0,
    },
    Timer {
        function: "ugcUpload",
        trigger: "moderation-sweep",
        period_secs: 600,
        phase_secs: 0,
    },
    Timer {
        function: "wxPush",
        trigger: "receipts-purge",
        period_secs: 3600,
        phase_secs: 0,
    },
    Timer {
        function: "gatedContent",
        trigger: "renewal-reminders",
        period_secs: 86_400,
        phase_secs: 2 * 3600,
    },
    // Yesterday's WeChat Pay bills, at 10:30 China time (bills are ready from about 09:00).
    Timer {
        function: "reconcile",
        trigger: "daily-bills",
        period_secs: 86_400,
        phase_secs: 2 * 3600 + 1800,
    },
    // Analytics (issue 20): new backend facts every minute; yesterday's aggregates and the
    // raw-event retention daily at 02:30 China time (18:30 UTC).
    Timer {
        function: "analytics",
        trigger: "every-minute",
        period_secs: 60,
        phase_secs: 0,
    },
    Timer {
        function: "analytics",
        trigger: "daily-analytics",
        period_secs: 86_400,
        phase_secs: 18 * 3600 + 1800,
    },
];

impl Timer {
    /// The index of the period `now` is in; the trigger fires when it grows.
    pub fn period_of(&self, now: i64) -> i64 {
        (now - self.phase_secs).div_euclid(self.period_secs)
    }
}

/// The timer event SCF delivers.
pub fn event(trigger: &str, unix: i64) -> Value {
    let time = time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    json!({"Type": "Timer", "TriggerName": trigger, "Time": time, "Message": ""})
}

/// Fires one trigger now; returns the function's reply (or why there is none).
pub async fn fire(suite: &Suite, timer: &Timer) -> Value {
    let event = event(timer.trigger, suite.clock.now());
    match suite
        .functions
        .invoke(timer.function, &event, suite.function_env())
        .await
    {
        Ok(Outcome::Response(body)) => serde_json::from_slice(&body)
            .unwrap_or_else(|_| json!({"ok": false, "error": "non-JSON reply"})),
        Ok(Outcome::Error(body)) => {
            json!({"ok": false, "error": String::from_utf8_lossy(&body)})
        }
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    }
}

/// Fires every trigger now (`POST /dev/timers/run`), in order; returns each reply by function.
pub async fn fire_all(suite: &Suite) -> Value {
    fire_named(suite, None).await
}

/// Fires the triggers named `only` (a trigger name such as `every-minute`), or every trigger
/// for `None` (`POST /dev/timers/run {"trigger": …}`), in order; returns each reply by function.
pub async fn fire_named(suite: &Suite, only: Option<&str>) -> Value {
    let mut out = serde_json::Map::new();
    for timer in TIMERS
        .iter()
        .filter(|t| only.is_none_or(|n| n == t.trigger))
    {
        // A function's second trigger is keyed `function/trigger`.
        let key = if out.contains_key(timer.function) {
            format!("{}/{}", timer.function, timer.trigger)
        } else {
            timer.function.to_owned()
        };
        out.insert(key, fire(suite, timer).await);
    }
    Value::Object(out)
}

/// Fires the triggers whose period has changed since `last` (updated).
async fn fire_due(suite: &Suite, clock: &Clock, last: &mut [i64; TIMERS.len()]) {
    let now = clock.now();
    for (timer, seen) in TIMERS.iter().zip(last.iter_mut()) {
        let period = timer.period_of(now);
        if period > *seen {
            *seen = period;
            let reply = fire(suite, timer).await;
            if reply["ok"] != json!(true) {
                tracing::warn!(function = timer.function, trigger = timer.trigger, %reply, "timer failed");
            }
        }
    }
}

/// Runs until the suite shuts down: wakes each real second and whenever the dev clock moves.
pub async fn run(suite: Arc<Suite>) {
    let mut shutdown = suite.shutdown_signal();
    let clock = suite.clock.clone();
    let start = clock.now();
    let mut last = TIMERS.map(|t| t.period_of(start));
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            () = suite.timers_wake.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        fire_due(&suite, &clock, &mut last).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_follow_the_clock_and_the_daily_trigger_is_at_10_in_china() {
        let minute = TIMERS[0];
        assert_eq!(minute.period_of(119), 1);
        assert_eq!(minute.period_of(120), 2);
        let daily = TIMERS[3];
        // 2025-11-24 01:59:59 UTC is before 10:00 in China, 02:00:00 UTC is at it.
        assert_eq!(
            daily.period_of(1_763_949_599) + 1,
            daily.period_of(1_763_949_600)
        );
        // A jump of 31 days moves the daily trigger by 31 periods; it fires once.
        assert_eq!(
            daily.period_of(86_400 * 40) - daily.period_of(86_400 * 9),
            31
        );
        assert_eq!(
            event("every-minute", 1_763_949_600)["Time"],
            "2025-11-24T02:00:00Z"
        );
    }
}
