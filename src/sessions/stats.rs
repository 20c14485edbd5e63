//! Counters and latency samples of the remote-control loop, for
//! `mattermost_status`, `!status` and the benchmarks.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The most recent durations of one kind, for percentiles.
#[derive(Debug, Default)]
pub struct Samples(Mutex<std::collections::VecDeque<Duration>>);

impl Samples {
    const KEEP: usize = 10_000;

    pub(crate) fn record(&self, d: Duration) {
        let mut recent = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if recent.len() >= Self::KEEP {
            recent.pop_front();
        }
        recent.push_back(d);
    }

    /// Median and 99th percentile, if anything was recorded.
    pub fn median_p99(&self) -> Option<(Duration, Duration)> {
        let mut all: Vec<Duration> = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .copied()
            .collect();
        if all.is_empty() {
            return None;
        }
        all.sort();
        let at = |q: f64| all[((all.len() - 1) as f64 * q).round() as usize];
        Some((at(0.5), at(0.99)))
    }

    fn describe(&self, what: &str) -> String {
        match self.median_p99() {
            Some((median, p99)) => format!(
                ", {what} median {:.2} ms, p99 {:.2} ms",
                median.as_secs_f64() * 1000.0,
                p99.as_secs_f64() * 1000.0
            ),
            None => String::new(),
        }
    }
}

/// Counters for status and benchmarks.
#[derive(Debug, Default)]
pub struct BridgeStats {
    pub posts_seen: AtomicU64,
    pub prompts: AtomicU64,
    pub reply_posts: AtomicU64,
    pub edits: AtomicU64,
    pub sessions_created: AtomicU64,
    /// Chat prompts waiting for their session's running turn.
    pub queued: AtomicU64,
    /// Prompts that waited for a running turn, in all.
    pub queued_total: AtomicU64,
    /// Inbound events whose handling panicked (the worker went on).
    pub worker_panics: AtomicU64,
    /// OpenCode events dropped because their session's queue was full.
    pub events_dropped: AtomicU64,
    /// Post received → `prompt_async` sent, for posts in an existing
    /// session: the bridge's own overhead.
    pub follow_up_latency: Samples,
    /// The same for posts that start a session: it includes OpenCode
    /// creating the session and the card post.
    pub new_session_latency: Samples,
}

impl BridgeStats {
    pub(crate) fn edit(&self) {
        self.edits.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn post(&self) {
        self.reply_posts.fetch_add(1, Ordering::Relaxed);
    }

    /// A prompt went to OpenCode. Prompts that were queued behind a running
    /// turn are counted but not timed.
    pub(crate) fn prompt_sent(&self, latency: Duration, new_session: bool, queued: bool) {
        self.prompts.fetch_add(1, Ordering::Relaxed);
        if queued {
            self.queued_total.fetch_add(1, Ordering::Relaxed);
        } else if new_session {
            self.new_session_latency.record(latency);
        } else {
            self.follow_up_latency.record(latency);
        }
    }

    /// The counters in one line, for status answers.
    pub fn summary(&self) -> String {
        format!(
            "{} posts seen, {} sessions started, {} prompts{}{}, {} queued now ({} in all), {} \
             reply posts, {} edits",
            self.posts_seen.load(Ordering::Relaxed),
            self.sessions_created.load(Ordering::Relaxed),
            self.prompts.load(Ordering::Relaxed),
            self.follow_up_latency
                .describe("post → prompt in a session"),
            self.new_session_latency
                .describe("post → prompt with a new session"),
            self.queued.load(Ordering::Relaxed),
            self.queued_total.load(Ordering::Relaxed),
            self.reply_posts.load(Ordering::Relaxed),
            self.edits.load(Ordering::Relaxed),
        ) + &match self.worker_panics.load(Ordering::Relaxed) {
            0 => String::new(),
            n => format!(", {n} inbound events failed with a bug (see the log)"),
        } + &match self.events_dropped.load(Ordering::Relaxed) {
            0 => String::new(),
            n => format!(", {n} OpenCode events dropped by a full session queue (resynced)"),
        }
    }
}
