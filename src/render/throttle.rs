//! Pacing of the edits of one post.
//!
//! Streaming text changes many times a second; editing on every change
//! floods Mattermost, while a fixed gate that drops changes loses the last
//! state (defect 9 of the old plugin). [`Throttle`] never drops anything: it
//! only says *when* the latest state should be written, and the caller always
//! renders the current state at that moment, so waiting edits coalesce into
//! one. Time is passed in, so tests and callers with paused tokio time see
//! exact behaviour.
//!
//! Every edit resends the whole post and is broadcast to every member of the
//! channel, so a long post is edited less often than a short one: an edit
//! that is not news waits until the text has grown by as much as the post
//! already holds, or until the post's size at [`EDIT_BYTES_PER_SECOND`] has
//! passed. Either way the bytes sent for a post stay within a small multiple
//! of its size, however long it streams.

use std::time::Duration;

use tokio::time::Instant;

/// Resent text one post may cost per second while it streams: a 15 KB post
/// is edited at most every 6 s unless its text doubles sooner. Chosen so a
/// 10 s, 25 KB reply costs under 3x its size (see the README's benchmarks).
pub const EDIT_BYTES_PER_SECOND: usize = 2_500;

/// How edits of one post are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Shortest gap between two edits (`1 / OPENCODE_MM_EDIT_RATE_LIMIT` s).
    pub min_interval: Duration,
    /// Longest a pending change of a short post waits (`OPENCODE_MM_MAX_DELAY`).
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
    /// The configuration defaults: 2 edits/s, 500 ms, 50 chars.
    fn default() -> Pace {
        Pace::from_rate(2, Duration::from_millis(500), 50)
    }
}

/// When to edit one post next; see the module docs.
#[derive(Debug, Clone)]
pub struct Throttle {
    pace: Pace,
    last_sent: Option<Instant>,
    /// Size of the post the last edit wrote.
    last_len: usize,
    /// When the oldest change not yet written happened.
    pending_since: Option<Instant>,
    pending_chars: usize,
    urgent: bool,
    /// The turn's first text: shown at once, even inside `min_interval`.
    first_text: bool,
}

impl Throttle {
    pub fn new(pace: Pace) -> Throttle {
        Throttle {
            pace,
            last_sent: None,
            last_len: 0,
            pending_since: None,
            pending_chars: 0,
            urgent: false,
            first_text: false,
        }
    }

    pub fn pace(&self) -> Pace {
        self.pace
    }

    /// Something visible changed; `added_chars` of new body text (0 for
    /// status changes); `urgent` for changes a person must see promptly
    /// (a tool starting, waiting for permission).
    pub fn changed(&mut self, now: Instant, added_chars: usize, urgent: bool) {
        self.pending_since.get_or_insert(now);
        self.pending_chars = self.pending_chars.saturating_add(added_chars);
        self.urgent |= urgent;
    }

    /// The turn's first text arrived: the one change that does not wait for
    /// the edit before it (the reply post was usually just made).
    pub fn first_text(&mut self, now: Instant, added_chars: usize) {
        self.changed(now, added_chars, true);
        self.first_text = true;
    }

    /// Whether a change is waiting to be written.
    pub fn is_pending(&self) -> bool {
        self.pending_since.is_some()
    }

    /// When the next edit should be sent, or `None` when nothing is pending.
    /// The first text goes at once. Otherwise never earlier than the last
    /// edit + `min_interval`; urgent changes, and new text as long as the
    /// post (at least `buffer_chars`), go as soon as allowed; anything else
    /// waits `max_delay`, or longer for a long post (module docs).
    pub fn due(&self) -> Option<Instant> {
        let since = self.pending_since?;
        if self.first_text {
            return Some(since);
        }
        let grown = self.pending_chars >= self.pace.buffer_chars.max(self.last_len);
        let wanted = if self.urgent || grown {
            since
        } else {
            let resend =
                Duration::from_secs_f64(self.last_len as f64 / EDIT_BYTES_PER_SECOND as f64);
            since + self.pace.max_delay.max(resend)
        };
        let allowed = self.last_sent.map(|t| t + self.pace.min_interval);
        Some(allowed.map_or(wanted, |a| a.max(wanted)))
    }

    /// The earliest moment any edit may go: the final one too, so a turn's
    /// last edit never breaks the rate.
    pub fn earliest(&self) -> Option<Instant> {
        self.last_sent.map(|t| t + self.pace.min_interval)
    }

    /// An edit carrying the latest state was sent at `now`; `len` is the
    /// size of the post it wrote last (`None`: nothing needed writing).
    pub fn sent(&mut self, now: Instant, len: Option<usize>) {
        self.last_sent = Some(now);
        if let Some(len) = len {
            self.last_len = len;
        }
        self.pending_since = None;
        self.pending_chars = 0;
        self.urgent = false;
        self.first_text = false;
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
                throttle.sent(at(ms), Some(0));
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
        assert_eq!(
            Pace::default(),
            Pace::from_rate(2, Duration::from_millis(500), 50)
        );
    }

    #[test]
    fn nothing_pending_means_nothing_due() {
        let mut t = Throttle::new(pace());
        assert_eq!(t.due(), None);
        let now = Instant::now();
        t.changed(now, 1, false);
        t.sent(now, Some(0));
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
        t.sent(now, Some(0));
        t.changed(now + Duration::from_millis(10), 0, true);
        assert_eq!(t.due(), Some(now + Duration::from_millis(100)));
    }

    #[test]
    fn a_full_buffer_goes_as_soon_as_allowed() {
        let now = Instant::now();
        let mut t = Throttle::new(pace());
        t.sent(now, Some(0));
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

    #[test]
    fn the_first_text_goes_at_once_even_right_after_an_edit() {
        let now = Instant::now();
        let mut t = Throttle::new(Pace::default());
        t.sent(now, Some(120));
        let later = now + Duration::from_millis(20);
        t.first_text(later, 3);
        assert_eq!(t.due(), Some(later));
        t.sent(later, Some(123));
        // Later text keeps the pace again.
        t.changed(later, 60, true);
        assert_eq!(t.due(), Some(later + Duration::from_millis(500)));
    }

    #[test]
    fn a_long_post_waits_until_its_text_doubles_or_its_resend_time_passes() {
        let now = Instant::now();
        let mut t = Throttle::new(Pace::default());
        t.sent(now, Some(10_000));
        t.changed(now, 4_000, false);
        // 10 KB at 2.5 KB/s: 4 s, not the 500 ms of a short post.
        assert_eq!(t.due(), Some(now + Duration::from_secs(4)));
        t.changed(now + Duration::from_secs(1), 6_000, false);
        // Doubled: as soon as the edit rate allows.
        assert_eq!(t.due(), Some(now + Duration::from_millis(500)));
    }

    /// Streams `total` bytes over `secs` seconds in 40-byte chunks into
    /// posts that roll over at `post_len`, editing whenever due. Returns
    /// (bytes written by all edits, edits, longest time text waited unseen).
    fn stream(total: usize, secs: u64, post_len: usize) -> (usize, usize, Duration) {
        let t0 = Instant::now();
        let chunks = total / 40;
        let step = Duration::from_secs(secs) / u32::try_from(chunks).unwrap();
        let mut throttle = Throttle::new(Pace::default());
        let (mut written, mut edits, mut stale) = (0, 0, Duration::ZERO);
        let mut post = 0usize; // bytes in the current post
        let mut oldest_unseen: Option<Instant> = None;
        let mut next_chunk = 0;
        let end = t0 + Duration::from_secs(secs + 30);
        let mut now = t0;
        while now <= end {
            while next_chunk < chunks && t0 + step * u32::try_from(next_chunk).unwrap() <= now {
                if post + 40 > post_len {
                    // Rollover: the full post is written once more, final.
                    written += post;
                    edits += 1;
                    post = 0;
                }
                post += 40;
                if next_chunk == 0 {
                    throttle.first_text(now, 40);
                } else {
                    throttle.changed(now, 40, false);
                }
                oldest_unseen.get_or_insert(now);
                next_chunk += 1;
            }
            if throttle.due().is_some_and(|d| d <= now) {
                written += post;
                edits += 1;
                throttle.sent(now, Some(post));
                if let Some(since) = oldest_unseen.take() {
                    stale = stale.max(now - since);
                }
            }
            now += Duration::from_millis(1);
        }
        (written, edits, stale)
    }

    #[test]
    fn a_10_s_25_kb_reply_costs_under_three_times_its_size() {
        let (written, edits, stale) = stream(25_000, 10, 15_000);
        let ratio = written as f64 / 25_000.0;
        assert!(ratio <= 3.0, "{ratio:.2}x in {edits} edits");
        assert!(edits >= 8, "still shown as it streams: {edits} edits");
        // Nothing waits unseen longer than the longest post's resend time.
        assert!(stale <= Duration::from_secs(6), "{stale:?}");
    }
}
