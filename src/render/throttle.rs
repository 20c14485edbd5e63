//! Pacing of the edits of one post.
//!
//! Streaming text changes many times a second; editing on every change
//! floods Mattermost, while a fixed gate that drops changes loses the last
//! state (defect 9 of the old plugin). [`Throttle`] never drops anything: it
//! only says *when* the latest state should be written, and the caller always
//! renders the current state at that moment. Time is passed in, so tests and
//! callers with paused tokio time see exact behaviour.

use std::time::Duration;

use tokio::time::Instant;

/// How edits of one post are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Shortest gap between two edits (`1 / OPENCODE_MM_EDIT_RATE_LIMIT` s).
    pub min_interval: Duration,
    /// Longest a pending change waits (`OPENCODE_MM_MAX_DELAY`).
    pub max_delay: Duration,
    /// New body characters that justify an edit before `max_delay`
    /// (`OPENCODE_MM_BUFFER_SIZE`).
    pub buffer_chars: usize,
}

impl Pace {
    /// The pace for `rate` edits per second (at least one).
    pub fn from_rate(rate: u64, max_delay: Duration, buffer_chars: usize) -> Pace {
        Pace {
            min_interval: Duration::from_secs(1) / u32::try_from(rate.max(1)).unwrap_or(u32::MAX),
            max_delay,
            buffer_chars,
        }
    }
}

impl Default for Pace {
    /// The configuration defaults: 10 edits/s, 500 ms, 50 chars.
    fn default() -> Pace {
        Pace::from_rate(10, Duration::from_millis(500), 50)
    }
}

/// When to edit one post next; see the module docs.
#[derive(Debug, Clone)]
pub struct Throttle {
    pace: Pace,
    last_sent: Option<Instant>,
    /// When the oldest change not yet written happened.
    pending_since: Option<Instant>,
    pending_chars: usize,
    urgent: bool,
}

impl Throttle {
    pub fn new(pace: Pace) -> Throttle {
        Throttle {
            pace,
            last_sent: None,
            pending_since: None,
            pending_chars: 0,
            urgent: false,
        }
    }

    pub fn pace(&self) -> Pace {
        self.pace
    }

    /// Something visible changed; `added_chars` of new body text (0 for
    /// status changes); `urgent` for changes a person must see promptly
    /// (first text of the turn, a tool starting, waiting for permission).
    pub fn changed(&mut self, now: Instant, added_chars: usize, urgent: bool) {
        self.pending_since.get_or_insert(now);
        self.pending_chars = self.pending_chars.saturating_add(added_chars);
        self.urgent |= urgent;
    }

    /// Whether a change is waiting to be written.
    pub fn is_pending(&self) -> bool {
        self.pending_since.is_some()
    }

    /// When the next edit should be sent, or `None` when nothing is pending.
    /// Never earlier than the last edit + `min_interval`. Otherwise urgent
    /// changes and `buffer_chars` of new text go as soon as allowed, and
    /// anything else waits at most `max_delay` after the first pending change.
    pub fn due(&self) -> Option<Instant> {
        let since = self.pending_since?;
        let wanted = if self.urgent || self.pending_chars >= self.pace.buffer_chars {
            since
        } else {
            since + self.pace.max_delay
        };
        let allowed = self.last_sent.map(|t| t + self.pace.min_interval);
        Some(allowed.map_or(wanted, |a| a.max(wanted)))
    }

    /// The earliest moment any edit may go: the final one too, so a turn's
    /// last edit never breaks the rate.
    pub fn earliest(&self) -> Option<Instant> {
        self.last_sent.map(|t| t + self.pace.min_interval)
    }

    /// An edit carrying the latest state was sent at `now`.
    pub fn sent(&mut self, now: Instant) {
        self.last_sent = Some(now);
        self.pending_since = None;
        self.pending_chars = 0;
        self.urgent = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace() -> Pace {
        Pace::from_rate(10, Duration::from_millis(500), 50)
    }

    /// Drive a throttle with changes at the given offsets (ms, chars,
    /// urgent); edit whenever due. Returns the edit times as offsets.
    fn simulate(changes: &[(u64, usize, bool)], until_ms: u64) -> Vec<u64> {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut throttle = Throttle::new(pace());
        let mut edits = Vec::new();
        let mut next = changes.iter().peekable();
        // Step through time 1 ms at a time: fine enough to observe `due`.
        for ms in 0..=until_ms {
            while let Some(&&(when, chars, urgent)) = next.peek() {
                if when > ms {
                    break;
                }
                throttle.changed(at(ms), chars, urgent);
                next.next();
            }
            if throttle.due().is_some_and(|d| d <= at(ms)) {
                throttle.sent(at(ms));
                edits.push(ms);
            }
        }
        assert!(!throttle.is_pending(), "everything is flushed in the end");
        edits
    }

    #[test]
    fn from_rate_converts_edits_per_second() {
        assert_eq!(pace().min_interval, Duration::from_millis(100));
        assert_eq!(
            Pace::from_rate(0, Duration::ZERO, 1).min_interval,
            Duration::from_secs(1)
        );
        assert_eq!(Pace::default(), pace());
    }

    #[test]
    fn nothing_pending_means_nothing_due() {
        let mut t = Throttle::new(pace());
        assert_eq!(t.due(), None);
        let now = Instant::now();
        t.changed(now, 1, false);
        t.sent(now);
        assert_eq!(t.due(), None);
    }

    #[test]
    fn urgent_first_text_is_due_immediately() {
        let now = Instant::now();
        let mut t = Throttle::new(pace());
        t.changed(now, 5, true);
        assert_eq!(t.due(), Some(now));
    }

    #[test]
    fn urgent_change_still_respects_min_interval() {
        let now = Instant::now();
        let mut t = Throttle::new(pace());
        t.sent(now);
        t.changed(now + Duration::from_millis(10), 0, true);
        assert_eq!(t.due(), Some(now + Duration::from_millis(100)));
    }

    #[test]
    fn a_full_buffer_goes_as_soon_as_allowed() {
        let now = Instant::now();
        let mut t = Throttle::new(pace());
        t.sent(now);
        let later = now + Duration::from_millis(300);
        t.changed(later, 30, false);
        assert_eq!(t.due(), Some(later + Duration::from_millis(500)));
        t.changed(later, 30, false);
        assert_eq!(t.due(), Some(later));
    }

    #[test]
    fn no_two_edits_closer_than_min_interval() {
        let changes: Vec<_> = (0..3000)
            .map(|i| (i / 3, if i % 7 == 0 { 80 } else { 1 }, i % 11 == 0))
            .collect();
        let edits = simulate(&changes, 3000);
        for pair in edits.windows(2) {
            assert!(pair[1] - pair[0] >= 100, "{pair:?}");
        }
    }

    #[test]
    fn a_burst_of_tiny_changes_yields_at_most_rate_plus_one_edits() {
        // 1000 one-char changes within one second, some urgent.
        let changes: Vec<_> = (0..1000).map(|i| (i, 1, i % 50 == 0)).collect();
        let edits = simulate(&changes, 1000);
        let within = edits.iter().filter(|&&ms| ms <= 1000).count();
        assert!(within <= 11, "{edits:?}");
        assert!(
            within >= 2,
            "the burst is shown while it happens: {edits:?}"
        );
    }

    #[test]
    fn a_trickle_is_flushed_within_max_delay() {
        // One char every 200 ms: never fills the buffer.
        let changes: Vec<_> = (0..10).map(|i| (i * 200, 1, false)).collect();
        let edits = simulate(&changes, 3000);
        for &(when, _, _) in &changes {
            let shown = edits.iter().find(|&&e| e >= when).copied();
            assert!(
                shown.is_some_and(|e| e - when <= 500),
                "change at {when} shown at {shown:?}; edits {edits:?}"
            );
        }
        assert_eq!(edits.first(), Some(&500));
    }
}
