//! One rate budget per Mattermost server, shared by every request the agent
//! makes: a token bucket that also obeys the server's `X-Ratelimit-*` headers
//! and 429 `Retry-After`, with priority lanes so approvals, questions and
//! final replies never queue behind progress edits.

use std::sync::Mutex;
use std::time::Duration;

// tokio's clock, so tests can run on paused time.
use tokio::time::Instant;

/// Request priority; a request waits while any request of a higher lane waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Progress edits of a streaming reply: first to yield.
    Progress = 0,
    /// Ordinary reads and writes, final replies.
    Normal = 1,
    /// Approvals, questions and their answers.
    Urgent = 2,
}

/// Counters shown by `mattermost_status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BudgetStats {
    /// Requests that had to wait for the budget.
    pub waits: u64,
    pub waited: Duration,
    /// 429 answers received.
    pub rate_limited: u64,
}

struct State {
    tokens: f64,
    last_refill: Instant,
    /// Nothing may be sent before this (429 or an empty server bucket).
    blocked_until: Option<Instant>,
    waiting: [usize; 3],
    stats: BudgetStats,
}

/// The longest a 429 or an empty server bucket stops every request.
pub const MAX_BLOCK: Duration = Duration::from_secs(60);

/// A request's place in its lane while it waits; released if the wait is
/// dropped, so an abandoned request never holds lower lanes back.
struct Place<'a> {
    budget: &'a RateBudget,
    lane: usize,
    held: bool,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if self.held {
            self.budget.lock().waiting[self.lane] -= 1;
        }
    }
}

pub struct RateBudget {
    per_second: f64,
    burst: f64,
    state: Mutex<State>,
}

impl RateBudget {
    /// A bucket refilled at `per_second` holding at most `burst` tokens.
    pub fn new(per_second: f64, burst: f64) -> Self {
        let per_second = per_second.max(0.1);
        let burst = burst.max(1.0);
        Self {
            per_second,
            burst,
            state: Mutex::new(State {
                tokens: burst,
                last_refill: Instant::now(),
                blocked_until: None,
                waiting: [0; 3],
                stats: BudgetStats::default(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait until a request of `priority` may be sent, and take its token.
    /// Cancel-safe: a wait that is dropped gives its place in the lane back.
    pub async fn acquire(&self, priority: Priority) {
        let lane = priority as usize;
        let started = Instant::now();
        let mut place = Place {
            budget: self,
            lane,
            held: false,
        };
        loop {
            let wait = {
                let mut s = self.lock();
                let now = Instant::now();
                let elapsed = now.duration_since(s.last_refill).as_secs_f64();
                s.tokens = (s.tokens + elapsed * self.per_second).min(self.burst);
                s.last_refill = now;
                let higher_waiting = s.waiting[lane + 1..].iter().any(|n| *n > 0);
                match s.blocked_until {
                    Some(until) if until > now => Some(until - now),
                    _ if s.tokens >= 1.0 && !higher_waiting => {
                        s.tokens -= 1.0;
                        if place.held {
                            s.waiting[lane] -= 1;
                            place.held = false;
                            s.stats.waits += 1;
                            s.stats.waited += started.elapsed();
                        }
                        return;
                    }
                    _ if higher_waiting => Some(Duration::from_millis(5)),
                    _ => Some(Duration::from_secs_f64(
                        ((1.0 - s.tokens) / self.per_second).max(0.001),
                    )),
                }
            };
            if !place.held {
                self.lock().waiting[lane] += 1;
                place.held = true;
            }
            if let Some(wait) = wait {
                tokio::time::sleep(wait).await;
            }
        }
    }

    /// Obey a 429: nothing goes out for `retry_after`.
    pub fn rate_limited(&self, retry_after: Duration) {
        let mut s = self.lock();
        s.stats.rate_limited += 1;
        Self::block(&mut s, retry_after);
    }

    /// Obey `X-Ratelimit-Remaining` / `-Reset`: when the server's bucket is
    /// empty, wait for its reset instead of provoking a 429.
    pub fn observe(&self, remaining: Option<u64>, reset: Option<Duration>) {
        let mut s = self.lock();
        if let Some(remaining) = remaining {
            s.tokens = s.tokens.min(remaining as f64);
            if remaining == 0
                && let Some(reset) = reset
            {
                Self::block(&mut s, reset);
            }
        }
    }

    fn block(s: &mut State, d: Duration) {
        // A server's number is capped: a hostile or broken header must not
        // overflow the clock or silence the agent for hours.
        let until = Instant::now() + d.min(MAX_BLOCK);
        if s.blocked_until.is_none_or(|b| b < until) {
            s.blocked_until = Some(until);
        }
        s.tokens = 0.0;
    }

    pub fn stats(&self) -> BudgetStats {
        self.lock().stats.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn paces_after_the_burst() {
        let b = RateBudget::new(10.0, 3.0);
        let t0 = tokio::time::Instant::now();
        for _ in 0..5 {
            b.acquire(Priority::Normal).await;
        }
        // 3 from the burst, then 2 at 10/s.
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(190), "{took:?}");
        assert_eq!(b.stats().waits, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_blocks_everyone_for_retry_after() {
        let b = RateBudget::new(100.0, 10.0);
        b.rate_limited(Duration::from_secs(2));
        let t0 = tokio::time::Instant::now();
        b.acquire(Priority::Urgent).await;
        assert!(t0.elapsed() >= Duration::from_secs(2));
        assert_eq!(b.stats().rate_limited, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_server_bucket_waits_for_its_reset() {
        let b = RateBudget::new(100.0, 10.0);
        b.observe(Some(0), Some(Duration::from_secs(1)));
        let t0 = tokio::time::Instant::now();
        b.acquire(Priority::Normal).await;
        assert!(t0.elapsed() >= Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn urgent_requests_overtake_waiting_progress_edits() {
        let b = Arc::new(RateBudget::new(10.0, 1.0));
        b.acquire(Priority::Normal).await; // empty the bucket
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (b, order) = (b.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                b.acquire(Priority::Progress).await;
                order.lock().unwrap().push(format!("progress{i}"));
            }));
        }
        tokio::task::yield_now().await;
        let (b2, order2) = (b.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            b2.acquire(Priority::Urgent).await;
            order2.lock().unwrap().push("urgent".to_owned());
        }));
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        let urgent_at = order.iter().position(|s| s == "urgent").unwrap();
        assert!(urgent_at <= 1, "urgent went out at {urgent_at}: {order:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn huge_server_waits_are_capped() {
        let b = RateBudget::new(100.0, 10.0);
        b.observe(Some(0), Some(Duration::from_secs(u64::MAX)));
        b.rate_limited(Duration::MAX);
        let t0 = tokio::time::Instant::now();
        b.acquire(Priority::Urgent).await;
        let waited = t0.elapsed();
        assert!(waited >= MAX_BLOCK && waited < MAX_BLOCK * 2, "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_wait_gives_its_place_back() {
        let b = RateBudget::new(10.0, 1.0);
        b.acquire(Priority::Normal).await; // empty the bucket
        // An urgent request gives up while waiting (its caller timed out).
        let gave_up =
            tokio::time::timeout(Duration::from_millis(10), b.acquire(Priority::Urgent)).await;
        assert!(gave_up.is_err());
        assert_eq!(b.lock().waiting, [0, 0, 0]);
        // Progress edits are not held back by the urgent request that left.
        let progress =
            tokio::time::timeout(Duration::from_secs(1), b.acquire(Priority::Progress)).await;
        assert!(
            progress.is_ok(),
            "a progress edit waits for a request that left"
        );
    }
}
