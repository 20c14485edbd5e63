//! Measures shared by the benchmarks: percentiles, memory, and what a burst
//! of replies cost the server, read back from the simulator afterwards (so
//! nothing polls the simulator while the agent works).

use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use harness::model::ScriptedModel;
use mattermost_sim::RequestRecord;

use super::{Rig, body_of, is_final};

/// `q` quantile of `v` (nearest rank); NaN when empty.
pub fn pct(mut v: Vec<f64>, q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Resident memory of a process, in KiB (0 when unreadable).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Converts `Instant`s (the scripted model's clock) to the Unix
/// milliseconds the simulator stamps posts and requests with.
#[derive(Clone, Copy)]
pub struct Clock {
    unix_ms: i64,
    at: Instant,
}

impl Clock {
    pub fn now() -> Clock {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        Clock {
            unix_ms,
            at: Instant::now(),
        }
    }

    pub fn ms(&self, t: Instant) -> i64 {
        match t.checked_duration_since(self.at) {
            Some(d) => self.unix_ms + d.as_millis() as i64,
            None => self.unix_ms - self.at.duration_since(t).as_millis() as i64,
        }
    }
}

/// When a reply post first showed body text above its footer, in Unix ms.
/// Like Mattermost, the simulator stamps an edit-history row (the replaced
/// version) with the time it was *replaced*, so a version was on screen from
/// the stamp of the row before it (or the post's creation) onwards.
pub fn first_visible_ms(rig: &Rig, post_id: &str) -> Option<i64> {
    let post = rig.sim.post(post_id)?;
    let mut history = rig.sim.edits_of(post_id);
    history.sort_by_key(|p| p.update_at);
    let shown_from = std::iter::once(post.create_at).chain(history.iter().map(|h| h.update_at));
    history
        .iter()
        .chain(std::iter::once(&post))
        .zip(shown_from)
        .find_map(|(version, from)| {
            let (body, _) = version.message.split_once("\n\n---\n")?;
            (!body.trim().is_empty()).then_some(from)
        })
}

/// What one scenario cost and how it felt, for one printed line.
#[derive(Debug, Default)]
pub struct Burst {
    pub replies: usize,
    pub complete: usize,
    pub first_visible_ms: Vec<f64>,
    pub edits_per_reply: Vec<f64>,
    pub edits_per_second: Vec<f64>,
    pub reply_bytes: usize,
    pub request_bytes: u64,
    pub requests: usize,
    pub rate_limited: usize,
    /// Most requests in any 1 s window.
    pub peak_per_second: usize,
    /// Most edits of one post in any 1 s window.
    pub most_edits_in_a_second: usize,
    /// The slowest first text (ms) and where its time went.
    pub slowest: Option<(i64, String)>,
    /// Requests per kind (`METHOD path` with ids as `:id`), most first.
    pub kinds: Vec<(String, usize)>,
}

/// `METHOD /api/v4/posts/:id/patch`: a request's kind, ids left out.
fn kind(r: &RequestRecord) -> String {
    let path: Vec<&str> = r
        .path
        .split('/')
        .map(|seg| {
            if seg.len() == 26 && seg.bytes().all(|b| b.is_ascii_alphanumeric()) {
                ":id"
            } else {
                seg
            }
        })
        .collect();
    format!("{} {}", r.method, path.join("/"))
}

/// Most of the sorted Unix-ms `stamps` that fall in any 1 s window.
fn most_in_a_second(stamps: &[i64]) -> usize {
    let mut most = 0;
    let mut start = 0;
    for end in 0..stamps.len() {
        while stamps[end] - stamps[start] >= 1000 {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

impl Burst {
    /// Reads back the replies of `cards` (one turn each, the card quoting
    /// `stream <tag>`) and the requests since `since_ms`. `expected` gives
    /// each tag's reply text, checked byte for byte.
    pub fn measure(
        rig: &Rig,
        model: &ScriptedModel,
        clock: Clock,
        cards: &[mattermost_sim::model::Post],
        since_ms: i64,
        expected: impl Fn(&str) -> String,
    ) -> Burst {
        let tokens: HashMap<String, i64> = model
            .first_tokens()
            .into_iter()
            .filter_map(|(prompt, at)| {
                let tag = prompt.rsplit("stream ").next()?.split_whitespace().next()?;
                Some((tag.to_owned(), clock.ms(at)))
            })
            .collect();
        let mut b = Burst::default();
        let mut slowest_token = 0;
        for card in cards {
            let Some(tag) = card
                .message
                .lines()
                .find_map(|l| l.strip_prefix("> stream "))
                .map(|t| t.trim().to_owned())
            else {
                continue;
            };
            b.replies += 1;
            let turns = rig.turns(&card.id);
            let want = expected(&tag);
            if turns.len() == 1
                && turns[0].last().is_some_and(|p| is_final(p))
                && body_of(&turns[0]) == want
            {
                b.complete += 1;
            }
            b.reply_bytes += want.len();
            let posts = rig.bot_replies(&card.id);
            let shown = posts
                .iter()
                .filter_map(|p| first_visible_ms(rig, &p.id))
                .min();
            if let (Some(token), Some(shown)) = (tokens.get(&tag), shown) {
                let took = shown - token;
                b.first_visible_ms.push(took as f64);
                // Where the slowest one's time went, from the burst's start.
                if b.slowest.as_ref().is_none_or(|(worst, _)| took > *worst) {
                    slowest_token = *token;
                    let first_post = posts.iter().map(|p| p.create_at).min().unwrap_or(0);
                    b.slowest = Some((
                        took,
                        format!(
                            "card +{} ms, first model token +{} ms, first reply post +{} ms, first text +{} ms",
                            card.create_at - since_ms,
                            token - since_ms,
                            first_post - since_ms,
                            shown - since_ms
                        ),
                    ));
                }
            }
            for p in &posts {
                let history = rig.sim.edits_of(&p.id);
                b.edits_per_reply.push(history.len() as f64);
                // Each version's time: the edits' `update_at` after the first.
                let mut stamps: Vec<i64> = history.iter().map(|h| h.update_at).collect();
                stamps.push(p.update_at);
                stamps.sort_unstable();
                stamps.dedup();
                let edits = &stamps[1..];
                if let (Some(first), Some(last)) = (stamps.first(), stamps.last())
                    && last > first
                {
                    // Intervals per second: n edits after the first version
                    // take n intervals.
                    let secs = (last - first) as f64 / 1000.0;
                    b.edits_per_second.push(edits.len() as f64 / secs);
                }
                b.most_edits_in_a_second = b.most_edits_in_a_second.max(most_in_a_second(edits));
            }
        }
        let requests: Vec<RequestRecord> = rig
            .sim
            .requests()
            .into_iter()
            .filter(|r| r.at >= since_ms)
            .collect();
        if let Some((took, timeline)) = &mut b.slowest {
            // What the server saw while the slowest first text waited.
            let (from, to) = (slowest_token, slowest_token + *took);
            let during: Vec<&RequestRecord> = requests
                .iter()
                .filter(|r| r.at >= from && r.at < to)
                .collect();
            let limited = during.iter().filter(|r| r.status == 429).count();
            timeline.push_str(&format!(
                "; meanwhile the server answered {} requests ({limited} with 429)",
                during.len()
            ));
        }
        b.requests = requests.len();
        b.request_bytes = requests.iter().map(|r| r.body_bytes).sum();
        b.rate_limited = requests.iter().filter(|r| r.status == 429).count();
        let mut kinds: HashMap<String, usize> = HashMap::new();
        for r in &requests {
            *kinds.entry(kind(r)).or_default() += 1;
        }
        b.kinds = kinds.into_iter().collect();
        b.kinds
            .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut stamps: Vec<i64> = requests.iter().map(|r| r.at).collect();
        stamps.sort_unstable();
        b.peak_per_second = most_in_a_second(&stamps);
        b
    }

    /// The scenario's line(s) for `scripts/bench.sh`.
    pub fn print(&self, name: &str) {
        println!("{name}:");
        println!(
            "  first model token -> first visible text: median {:.0} ms, p99 {:.0} ms ({} replies)",
            pct(self.first_visible_ms.clone(), 0.5),
            pct(self.first_visible_ms.clone(), 0.99),
            self.first_visible_ms.len()
        );
        println!(
            "  edits per reply post: median {:.0}, max {:.0}; per second while streaming: median {:.1}, max {:.1}; most of one post in any 1 s: {}",
            pct(self.edits_per_reply.clone(), 0.5),
            pct(self.edits_per_reply.clone(), 1.0),
            pct(self.edits_per_second.clone(), 0.5),
            pct(self.edits_per_second.clone(), 1.0),
            self.most_edits_in_a_second,
        );
        println!(
            "  bytes sent per reply byte: {:.2} ({} request bytes for {} reply bytes)",
            self.request_bytes as f64 / self.reply_bytes.max(1) as f64,
            self.request_bytes,
            self.reply_bytes
        );
        println!(
            "  requests: {}, answered 429: {}, peak {} in any 1 s; replies complete and byte-exact: {}/{}",
            self.requests, self.rate_limited, self.peak_per_second, self.complete, self.replies
        );
        let kinds: Vec<String> = self.kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!("  by kind: {}", kinds.join(", "));
        if let Some((took, timeline)) = &self.slowest {
            println!("  slowest first text ({took} ms): {timeline}");
        }
    }
}
