//! The stall watchdog: a training thread that stops making progress cannot be killed, so its
//! attempt is failed and its slot taken out of service until the thread ends.

use crate::observer::SlotControl;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Watches a training thread's activity counter; fires after `timeout` without a change
/// (never when `timeout` is zero).
pub(super) struct StallWatchdog {
    timeout: Duration,
    seen: u64,
    since: tokio::time::Instant,
    ticks: tokio::time::Interval,
}

impl StallWatchdog {
    /// A watchdog over `control`'s activity counter, as it is now.
    pub(super) fn new(timeout: Duration, control: &SlotControl) -> Self {
        // Checking four times per timeout bounds the overshoot to a quarter of it.
        let every = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(30));
        StallWatchdog {
            timeout,
            seen: control.activity.load(Ordering::SeqCst),
            since: tokio::time::Instant::now(),
            ticks: tokio::time::interval(every),
        }
    }

    /// Waits until the thread has been idle for the timeout (forever when disabled); how long
    /// it has been idle. Cancel-safe: the select loop drops and recreates it.
    pub(super) async fn stalled(&mut self, control: &SlotControl) -> Duration {
        if self.timeout.is_zero() {
            return std::future::pending().await;
        }
        loop {
            self.ticks.tick().await;
            let now = tokio::time::Instant::now();
            let activity = control.activity.load(Ordering::SeqCst);
            if activity != self.seen {
                self.seen = activity;
                self.since = now;
                continue;
            }
            let idle = now.saturating_duration_since(self.since);
            if idle >= self.timeout {
                return idle;
            }
        }
    }
}
