//! Injected failures and the rate limiter, both switched on by tests.
//!
//! The rate limiter reproduces the real server's (the `throttled` GCRA
//! limiter keyed by remote address): same headers, same arithmetic, same
//! plain-text 429 body.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Per-second rate and burst, like `RateLimitSettings`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Requests per second (`PerSec`, real default 10).
    pub per_second: u32,
    /// Extra requests allowed at once (`MaxBurst`, real default 100).
    pub burst: u32,
}

/// The outcome of one rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub limited: bool,
    /// `X-Ratelimit-Limit`: burst + 1.
    pub limit: u32,
    /// `X-Ratelimit-Remaining`.
    pub remaining: u32,
    /// `X-Ratelimit-Reset`: whole seconds until the bucket is full.
    pub reset_secs: u64,
    /// `Retry-After`, only when limited.
    pub retry_after_secs: u64,
}

/// GCRA state: the theoretical arrival time per remote address.
#[derive(Debug)]
pub struct RateLimiter {
    quota: RateLimit,
    base: Instant,
    tat: HashMap<IpAddr, i128>,
}

impl RateLimiter {
    /// A limiter with an empty history.
    pub fn new(quota: RateLimit) -> Self {
        RateLimiter {
            quota,
            base: Instant::now(),
            tat: HashMap::new(),
        }
    }

    /// Checks (and on success records) one request from `key`.
    pub fn check(&mut self, key: IpAddr) -> RateDecision {
        let now = i128::try_from(self.base.elapsed().as_nanos()).unwrap_or(i128::MAX);
        self.check_at(key, now)
    }

    fn check_at(&mut self, key: IpAddr, now: i128) -> RateDecision {
        let per_second = i128::from(self.quota.per_second.max(1));
        let emission = 1_000_000_000 / per_second;
        let tolerance = emission * (i128::from(self.quota.burst) + 1);
        let limit = self.quota.burst + 1;
        let tat = self.tat.get(&key).copied().unwrap_or(now).max(now);
        let new_tat = tat + emission;
        let allow_at = new_tat - tolerance;
        let diff = now - allow_at;
        let (limited, ttl, retry_after) = if diff < 0 {
            (true, tat - now, -diff)
        } else {
            self.tat.insert(key, new_tat);
            (false, new_tat - now, 0)
        };
        let next = tolerance - ttl;
        let remaining = if next > -emission {
            u32::try_from((next / emission).max(0)).unwrap_or(0)
        } else {
            0
        };
        RateDecision {
            limited,
            limit,
            remaining,
            reset_secs: ceil_secs(ttl),
            retry_after_secs: ceil_secs(retry_after),
        }
    }
}

fn ceil_secs(nanos: i128) -> u64 {
    let n = nanos.max(0);
    u64::try_from((n + 999_999_999) / 1_000_000_000).unwrap_or(u64::MAX)
}

/// What an injected fault does to a matching request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultAction {
    /// Answer with this status instead of running the handler: an AppError
    /// for 5xx/4xx, or the rate limiter's plain-text reply for 429.
    Status {
        status: u16,
        #[serde(default = "one")]
        retry_after_secs: u64,
    },
    /// Hold the request this long, then run it normally.
    Delay { millis: u64 },
    /// Run the request, then hold its answer this long: the change is made
    /// but the client does not learn it (a crash or lost answer mid-call).
    DelayAnswer { millis: u64 },
}

fn one() -> u64 {
    1
}

/// One rule: applies to the next `remaining` requests matching method and path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// HTTP method, or `*` for any.
    pub method: String,
    /// Path glob: `*` matches within one segment, `**` across segments. A
    /// pattern without the `/api/v4` prefix gets it added.
    pub path: String,
    pub action: FaultAction,
    /// How many more requests it applies to.
    pub remaining: u32,
    /// Matching requests to let through untouched before it applies.
    #[serde(default)]
    pub skip: u32,
}

/// The faults to inject, consumed as requests arrive.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Vec<FaultRule>,
}

/// What to do with one request.
#[derive(Debug, Default, PartialEq)]
pub struct Injection {
    pub delay: Option<Duration>,
    /// Held after the handler ran, before the answer goes out.
    pub answer_delay: Option<Duration>,
    pub status: Option<(u16, u64)>,
}

impl Faults {
    /// Adds a rule.
    pub fn add(&mut self, mut rule: FaultRule) {
        if !rule.path.starts_with("/api/v4") {
            let sep = if rule.path.starts_with('/') { "" } else { "/" };
            rule.path = format!("/api/v4{sep}{}", rule.path);
        }
        self.rules.push(rule);
    }

    /// Removes every rule.
    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// Rules still pending.
    pub fn rules(&self) -> Vec<FaultRule> {
        self.rules.clone()
    }

    /// Consumes the rules matching this request: every matching delay adds
    /// up, and the first matching status wins.
    pub fn take(&mut self, method: &str, path: &str) -> Injection {
        let mut out = Injection::default();
        for rule in &mut self.rules {
            if rule.remaining == 0
                || !(rule.method == "*" || rule.method.eq_ignore_ascii_case(method))
                || !glob(rule.path.as_bytes(), path.as_bytes())
            {
                continue;
            }
            if rule.skip > 0 {
                rule.skip -= 1;
                continue;
            }
            match rule.action {
                FaultAction::Delay { millis } => {
                    rule.remaining -= 1;
                    let d = out.delay.unwrap_or_default() + Duration::from_millis(millis);
                    out.delay = Some(d);
                }
                FaultAction::DelayAnswer { millis } => {
                    rule.remaining -= 1;
                    let d = out.answer_delay.unwrap_or_default() + Duration::from_millis(millis);
                    out.answer_delay = Some(d);
                }
                FaultAction::Status {
                    status,
                    retry_after_secs,
                } if out.status.is_none() => {
                    rule.remaining -= 1;
                    out.status = Some((status, retry_after_secs));
                }
                FaultAction::Status { .. } => {}
            }
        }
        self.rules.retain(|r| r.remaining > 0);
        out
    }
}

/// Glob match: `**` crosses `/`, `*` does not.
fn glob(pat: &[u8], s: &[u8]) -> bool {
    match pat.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => {
            if let Some(rest2) = rest.strip_prefix(b"*") {
                (0..=s.len()).any(|i| glob(rest2, &s[i..]))
            } else {
                let seg_end = s.iter().position(|&c| c == b'/').unwrap_or(s.len());
                (0..=seg_end).any(|i| glob(rest, &s[i..]))
            }
        }
        Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn glob_segments() {
        assert!(glob(b"/api/v4/posts/*/patch", b"/api/v4/posts/abc/patch"));
        assert!(!glob(b"/api/v4/posts/*", b"/api/v4/posts/abc/patch"));
        assert!(glob(b"/api/v4/**", b"/api/v4/posts/abc/patch"));
        assert!(glob(b"/api/v4/posts", b"/api/v4/posts"));
        assert!(!glob(b"/api/v4/posts", b"/api/v4/posts/x"));
    }

    #[test]
    fn gcra_matches_throttled() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut rl = RateLimiter::new(RateLimit {
            per_second: 1,
            burst: 2,
        });
        let d1 = rl.check_at(ip, 0);
        assert_eq!(
            (d1.limited, d1.limit, d1.remaining, d1.reset_secs),
            (false, 3, 2, 1)
        );
        let d2 = rl.check_at(ip, 0);
        assert_eq!((d2.limited, d2.remaining), (false, 1));
        let d3 = rl.check_at(ip, 0);
        assert_eq!((d3.limited, d3.remaining, d3.reset_secs), (false, 0, 3));
        let d4 = rl.check_at(ip, 0);
        assert!(d4.limited);
        assert_eq!((d4.remaining, d4.retry_after_secs), (0, 1));
        // One emission interval later a request fits again.
        let d5 = rl.check_at(ip, 1_000_000_000);
        assert!(!d5.limited);
    }

    #[test]
    fn faults_are_consumed() {
        let mut f = Faults::default();
        f.add(FaultRule {
            method: "POST".into(),
            path: "posts".into(),
            action: FaultAction::Status {
                status: 503,
                retry_after_secs: 1,
            },
            remaining: 2,
            skip: 0,
        });
        assert_eq!(f.take("GET", "/api/v4/posts").status, None);
        assert_eq!(f.take("POST", "/api/v4/posts").status, Some((503, 1)));
        assert_eq!(f.take("post", "/api/v4/posts").status, Some((503, 1)));
        assert_eq!(f.take("POST", "/api/v4/posts").status, None);
        assert!(f.rules().is_empty());
    }

    #[test]
    fn skipped_requests_pass_before_a_fault_applies() {
        let mut f = Faults::default();
        f.add(FaultRule {
            method: "POST".into(),
            path: "posts".into(),
            action: FaultAction::DelayAnswer { millis: 5 },
            remaining: 1,
            skip: 1,
        });
        assert_eq!(f.take("POST", "/api/v4/posts"), Injection::default());
        let hit = f.take("POST", "/api/v4/posts");
        assert_eq!(hit.answer_delay, Some(Duration::from_millis(5)));
        assert_eq!(hit.delay, None);
        assert!(f.rules().is_empty());
    }
}
