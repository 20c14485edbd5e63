//! One rate budget per Mattermost server, shared by every request the agent
//! makes: a token bucket that also obeys the server's `X-Ratelimit-*` headers
//! and 429 `Retry-After`, with priority lanes so approvals, questions and
//! final replies never queue behind progress edits.
//!
//! The bucket starts from the configured rate and burst. Mattermost's limiter
//! (a GCRA bucket per client address, off by default) reports itself in every
//! answer: `X-Ratelimit-Limit` is its burst + 1, `-Remaining` what is left,
//! `-Reset` the whole seconds until it is full again. Once a response carries
//! them the bucket follows the server: its capacity becomes the server's, its
//! tokens are what the server says is left (less what we sent since), and
//! between answers they refill at a lower bound of the server's rate worked
//! out from the same three numbers. Progress edits leave a quarter of the
//! bucket to the other lanes. A server without the headers has its limiter
//! off, and the configured budget stays.

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
    /// The budget in force: requests per second and burst, the server's
    /// once it has said (`learned`).
    pub per_second: f64,
    pub burst: f64,
    pub learned: bool,
}

/// What one answer's `X-Ratelimit-*` headers say about the server's bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerLimit {
    /// `X-Ratelimit-Limit`: the bucket's size (Mattermost's burst + 1).
    pub limit: Option<u64>,
    /// `X-Ratelimit-Remaining`.
    pub remaining: Option<u64>,
    /// `X-Ratelimit-Reset`: until the bucket is full, rounded up to seconds.
    pub reset: Option<Duration>,
}

/// Proof that a request took a token: which one it was, so its answer's
/// `Remaining` can be corrected for the requests the server may not have
/// counted yet. Outstanding until dropped (answered, failed or abandoned).
pub struct Ticket<'a> {
    n: u64,
    /// Requests unanswered when this one was taken: any of them may reach
    /// the server after it.
    ahead: u64,
    budget: Option<&'a RateBudget>,
}

impl Ticket<'_> {
    /// A ticket no budget tracks (tests of `observe`).
    #[cfg(test)]
    fn detached(n: u64) -> Ticket<'static> {
        Ticket {
            n,
            ahead: 0,
            budget: None,
        }
    }
}

impl std::fmt::Debug for Ticket<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ticket({})", self.n)
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(budget) = self.budget {
            let mut s = budget.lock();
            s.in_flight = s.in_flight.saturating_sub(1);
        }
    }
}

struct State {
    tokens: f64,
    per_second: f64,
    burst: f64,
    /// The highest lower bound of the server's rate seen since the last 429.
    server_rate: Option<f64>,
    last_refill: Instant,
    /// Tokens taken so far; a [`Ticket`] holds the count at its taking.
    taken: u64,
    /// Tickets whose request has not been answered yet.
    in_flight: u64,
    /// Nothing may be sent before this (429 or an empty server bucket).
    blocked_until: Option<Instant>,
    waiting: [usize; 3],
    stats: BudgetStats,
}

/// The share of the bucket progress edits leave alone, so a burst of
/// streaming replies never spends what the next answer or card needs.
const PROGRESS_RESERVE: f64 = 0.25;

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
    state: Mutex<State>,
}

impl RateBudget {
    /// A bucket refilled at `per_second` holding at most `burst` tokens,
    /// until the server says otherwise.
    pub fn new(per_second: f64, burst: f64) -> Self {
        let per_second = per_second.max(0.1);
        let burst = burst.max(1.0);
        Self {
            state: Mutex::new(State {
                tokens: burst,
                per_second,
                burst,
                server_rate: None,
                last_refill: Instant::now(),
                taken: 0,
                in_flight: 0,
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
    pub async fn acquire(&self, priority: Priority) -> Ticket<'_> {
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
                s.tokens = (s.tokens + elapsed * s.per_second).min(s.burst);
                s.last_refill = now;
                let higher_waiting = s.waiting[lane + 1..].iter().any(|n| *n > 0);
                let floor = if priority == Priority::Progress {
                    1.0 + (s.burst * PROGRESS_RESERVE).floor()
                } else {
                    1.0
                };
                match s.blocked_until {
                    Some(until) if until > now => Some(until - now),
                    _ if s.tokens >= floor && !higher_waiting => {
                        s.tokens -= 1.0;
                        s.taken += 1;
                        if place.held {
                            s.waiting[lane] -= 1;
                            place.held = false;
                            s.stats.waits += 1;
                            s.stats.waited += started.elapsed();
                        }
                        let n = s.taken;
                        let ahead = s.in_flight;
                        s.in_flight += 1;
                        return Ticket {
                            n,
                            ahead,
                            budget: Some(self),
                        };
                    }
                    _ if higher_waiting => Some(Duration::from_millis(5)),
                    _ => Some(Duration::from_secs_f64(
                        ((floor - s.tokens) / s.per_second).max(0.001),
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

    /// Obey a 429: nothing goes out for `retry_after`, and the server's rate
    /// is learnt afresh (its limits may have been lowered).
    pub fn rate_limited(&self, retry_after: Duration) {
        let mut s = self.lock();
        s.stats.rate_limited += 1;
        s.server_rate = None;
        Self::block(&mut s, retry_after);
    }

    /// Follow the server's bucket as one answer (to the request holding
    /// `ticket`) reports it; see the module docs. An empty server bucket
    /// waits for its reset instead of provoking a 429.
    pub fn observe(&self, ticket: Ticket<'_>, server: ServerLimit) {
        let mut s = self.lock();
        if let Some(limit) = server.limit.filter(|l| *l >= 1) {
            s.burst = limit as f64;
            s.stats.learned = true;
            // GCRA: `limit - remaining` tokens are in use and drain at the
            // server's rate in at most `reset` (rounded up, and Remaining
            // rounded down), so `(used - 1) / reset` never overstates it.
            if let (Some(remaining), Some(reset)) = (server.remaining, server.reset)
                && reset >= Duration::from_secs(1)
            {
                let used = limit.saturating_sub(remaining).saturating_sub(1) as f64;
                let bound = used / reset.as_secs_f64();
                if bound > 0.0 {
                    let best = s.server_rate.map_or(bound, |r| r.max(bound));
                    s.server_rate = Some(best);
                    s.per_second = best;
                }
            }
        }
        if let Some(remaining) = server.remaining {
            // The server's count is the truth, up as well as down: the
            // refill rate is only a lower bound, and near a full bucket a
            // poor one. Not in the server's number, perhaps: requests that
            // took a token after this one (answered or not), and those
            // still unanswered when it was taken (any may have reached the
            // server after it, even if answered by now).
            let later = s.taken.saturating_sub(ticket.n);
            let uncounted = (later + ticket.ahead) as f64;
            s.tokens = (remaining as f64 - uncounted).clamp(0.0, s.burst);
            if remaining == 0
                && let Some(reset) = server.reset
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
        let s = self.lock();
        BudgetStats {
            per_second: s.per_second,
            burst: s.burst,
            ..s.stats.clone()
        }
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
        b.observe(
            Ticket::detached(0),
            ServerLimit {
                limit: None,
                remaining: Some(0),
                reset: Some(Duration::from_secs(1)),
            },
        );
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

    /// Mattermost's limiter (GCRA per client, as in `throttled`), on the
    /// tokio clock: the headers it would send, and whether it refused.
    struct Gcra {
        emission: f64,
        tolerance: f64,
        tat: f64,
        base: Instant,
    }

    impl Gcra {
        fn new(per_second: f64, burst: u64) -> Gcra {
            let emission = 1.0 / per_second;
            Gcra {
                emission,
                tolerance: emission * (burst + 1) as f64,
                tat: 0.0,
                base: Instant::now(),
            }
        }

        fn check(&mut self) -> (bool, ServerLimit) {
            let now = self.base.elapsed().as_secs_f64();
            let tat = self.tat.max(now);
            let new_tat = tat + self.emission;
            let limited = now < new_tat - self.tolerance;
            let ttl = if limited { tat - now } else { new_tat - now };
            if !limited {
                self.tat = new_tat;
            }
            let limit = (self.tolerance / self.emission).round() as u64;
            let remaining = ((self.tolerance - ttl) / self.emission).floor().max(0.0) as u64;
            let reset = Duration::from_secs(ttl.max(0.0).ceil() as u64);
            (
                limited,
                ServerLimit {
                    limit: Some(limit),
                    remaining: Some(remaining),
                    reset: Some(reset),
                },
            )
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_generous_budget_learns_the_servers_limit_and_is_never_refused() {
        // Configured for a server without a limiter; the server allows
        // 10/s with a burst of 100 (Mattermost's defaults when it is on).
        let b = RateBudget::new(50.0, 100.0);
        let mut server = Gcra::new(10.0, 100);
        let t0 = Instant::now();
        let mut refused = 0;
        for _ in 0..400 {
            let ticket = b.acquire(Priority::Normal).await;
            let (limited, headers) = server.check();
            refused += u32::from(limited);
            b.observe(ticket, headers);
        }
        assert_eq!(refused, 0);
        let stats = b.stats();
        assert!(stats.learned);
        assert_eq!(stats.burst, 101.0);
        assert!(
            stats.per_second <= 10.0 && stats.per_second > 8.0,
            "{stats:?}"
        );
        // The burst, then no faster than the server refills.
        let took = t0.elapsed().as_secs_f64();
        assert!(took >= (400.0 - 101.0) / 10.0, "{took}");
    }

    #[tokio::test(start_paused = true)]
    async fn progress_edits_leave_a_quarter_of_the_bucket_to_answers() {
        let b = RateBudget::new(0.1, 100.0);
        for _ in 0..75 {
            b.acquire(Priority::Progress).await;
        }
        let waiting_edit =
            tokio::time::timeout(Duration::from_millis(100), b.acquire(Priority::Progress)).await;
        assert!(waiting_edit.is_err(), "the 76th edit must wait");
        let t0 = tokio::time::Instant::now();
        for _ in 0..25 {
            b.acquire(Priority::Normal).await;
        }
        assert_eq!(t0.elapsed(), Duration::ZERO, "answers found their quarter");
    }

    #[tokio::test(start_paused = true)]
    async fn the_servers_remaining_raises_the_tokens_too() {
        // A slow configured refill; the server says far more is left.
        let b = RateBudget::new(0.1, 10.0);
        for _ in 0..10 {
            b.acquire(Priority::Normal).await;
        }
        let ticket = b.acquire(Priority::Normal).await;
        b.observe(
            ticket,
            ServerLimit {
                limit: Some(101),
                remaining: Some(90),
                reset: Some(Duration::from_secs(2)),
            },
        );
        let t0 = tokio::time::Instant::now();
        for _ in 0..90 {
            b.acquire(Priority::Normal).await;
        }
        assert_eq!(t0.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_request_still_unanswered_is_not_counted_by_the_server_yet() {
        let b = RateBudget::new(100.0, 100.0);
        let first = b.acquire(Priority::Normal).await;
        let second = b.acquire(Priority::Normal).await;
        let third = b.acquire(Priority::Normal).await;
        // The second is answered first: the first may have reached the
        // server after it, the third surely did.
        let report = ServerLimit {
            limit: Some(101),
            remaining: Some(10),
            reset: Some(Duration::from_secs(10)),
        };
        b.observe(second, report);
        assert_eq!(b.lock().tokens, 8.0);
        drop(first);
        drop(third);
        assert_eq!(b.lock().in_flight, 0, "dropped tickets are answered");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_in_flight_are_taken_off_the_servers_remaining() {
        let b = RateBudget::new(100.0, 100.0);
        let first = b.acquire(Priority::Normal).await;
        for _ in 0..3 {
            b.acquire(Priority::Normal).await;
        }
        // The first answer says 5 were left; 3 more went out since.
        b.observe(
            first,
            ServerLimit {
                limit: Some(101),
                remaining: Some(5),
                reset: Some(Duration::from_secs(10)),
            },
        );
        assert!(b.lock().tokens <= 2.0, "{}", b.lock().tokens);
    }

    #[test]
    fn the_rate_is_a_lower_bound_of_the_servers() {
        let b = RateBudget::new(50.0, 100.0);
        // 50 tokens in use, full again within 6 s: at least 49/6 per second.
        b.observe(
            Ticket::detached(0),
            ServerLimit {
                limit: Some(101),
                remaining: Some(51),
                reset: Some(Duration::from_secs(6)),
            },
        );
        let stats = b.stats();
        assert!((stats.per_second - 49.0 / 6.0).abs() < 1e-9, "{stats:?}");
        // A smaller sample never lowers the bound learnt.
        b.observe(
            Ticket::detached(0),
            ServerLimit {
                limit: Some(101),
                remaining: Some(99),
                reset: Some(Duration::from_secs(1)),
            },
        );
        assert!((b.stats().per_second - 49.0 / 6.0).abs() < 1e-9);
        // A 429 means the server changed its mind: learn again.
        b.rate_limited(Duration::ZERO);
        b.observe(
            Ticket::detached(0),
            ServerLimit {
                limit: Some(101),
                remaining: Some(97),
                reset: Some(Duration::from_secs(1)),
            },
        );
        assert!((b.stats().per_second - 3.0).abs() < 1e-9);
    }

    #[test]
    fn without_headers_the_configured_budget_stays() {
        let b = RateBudget::new(50.0, 100.0);
        b.observe(Ticket::detached(0), ServerLimit::default());
        let stats = b.stats();
        assert_eq!(
            (stats.per_second, stats.burst, stats.learned),
            (50.0, 100.0, false)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn huge_server_waits_are_capped() {
        let b = RateBudget::new(100.0, 10.0);
        b.observe(
            Ticket::detached(0),
            ServerLimit {
                limit: None,
                remaining: Some(0),
                reset: Some(Duration::from_secs(u64::MAX)),
            },
        );
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
