//! Cron expressions and time zones: parsing with messages that show the fix,
//! and the scheduled times of an expression, computed in its zone.
//!
//! croner does the calendar work. It is configured for exactly five fields
//! (no seconds, no years), reads weekdays 0 and 7 as Sunday, and joins a
//! restricted day-of-month and day-of-week with OR, as Vixie cron does. In a
//! zone with DST a time that falls in the skipped hour runs once at the first
//! minute after the gap, and a time in the repeated hour runs once (interval
//! expressions such as `*/30` run at every real occurrence). Every search
//! moves forward in real time from an exact instant, so the times returned
//! strictly increase.

use crate::tz::Zone as Tz;
use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use super::ScheduleError;

/// An example to show next to every cron error.
pub const CRON_HELP: &str = "use five fields, minute hour day-of-month month day-of-week, \
     e.g. `0 9 * * 1-5` for 09:00 on weekdays or `*/15 * * * *` for every 15 minutes";

/// Longest expression accepted; real ones are a few dozen characters.
const MAX_EXPR_CHARS: usize = 200;

/// A parsed expression with the zone it is read in.
#[derive(Debug, Clone)]
pub struct When {
    cron: Cron,
    tz: Tz,
}

impl When {
    /// Parse both parts, refusing what cannot be scheduled after `now`.
    pub fn parse(expr: &str, zone: &str, now: DateTime<Utc>) -> Result<When, ScheduleError> {
        let cron = parse_expr(expr)?;
        let tz = parse_zone(zone)?;
        let when = When { cron, tz };
        // An expression such as `0 0 30 2 *` parses but names no real day.
        if when.next_after(now).is_none() {
            return Err(ScheduleError::NeverRuns(expr.trim().to_owned()));
        }
        Ok(when)
    }

    /// The newest scheduled time at or before `at`, if croner finds one.
    /// Only used to place a record of missed times; runs are always found
    /// searching forward.
    pub fn at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = at.with_timezone(&self.tz);
        let prev = self
            .cron
            .find_previous_occurrence(&start, true)
            .ok()?
            .with_timezone(&Utc);
        (prev <= at).then_some(prev)
    }

    pub fn zone(&self) -> Tz {
        self.tz.clone()
    }

    /// The expression in words, e.g. "At 09:00, on Monday … and Friday.".
    pub fn describe(&self) -> String {
        self.cron.describe()
    }

    /// The first scheduled time strictly after `after`; `None` when there is
    /// none within croner's search range (or the date is out of range).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = after.with_timezone(&self.tz);
        let next = self
            .cron
            .find_next_occurrence(&start, false)
            .ok()?
            .with_timezone(&Utc);
        // Strictly later, whatever the library does at the edges; a time
        // at or before `after` would run twice or never stop running.
        (next > after).then_some(next)
    }

    /// The shortest gap between consecutive runs, among the next runs after
    /// `now` (up to 2,000 of them, within a year and a day): every pattern of
    /// minutes and hours repeats daily and every pattern of days yearly.
    pub fn shortest_gap(&self, now: DateTime<Utc>) -> Option<chrono::Duration> {
        const RUNS: usize = 2_000;
        let horizon = now + chrono::Duration::days(366);
        let (times, _) = self.between(now, horizon, RUNS);
        times.windows(2).map(|w| w[1] - w[0]).min()
    }

    /// The scheduled times in `(after, until]`, oldest first, at most `cap`
    /// of them; the flag says whether more were left out.
    pub fn between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        cap: usize,
    ) -> (Vec<DateTime<Utc>>, bool) {
        let mut out = Vec::new();
        let mut cursor = after;
        while let Some(next) = self.next_after(cursor) {
            if next > until {
                return (out, false);
            }
            if out.len() == cap {
                return (out, true);
            }
            out.push(next);
            cursor = next;
        }
        (out, false)
    }
}

/// A 5-field cron expression (or `@hourly`, `@daily`, `@weekly`, `@monthly`,
/// `@yearly`).
pub fn parse_expr(expr: &str) -> Result<Cron, ScheduleError> {
    let text = expr.trim();
    let bad = |reason: String| ScheduleError::BadExpression {
        expr: text.chars().take(MAX_EXPR_CHARS).collect(),
        reason,
    };
    if text.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if text.chars().count() > MAX_EXPR_CHARS {
        return Err(bad(format!(
            "it is longer than {MAX_EXPR_CHARS} characters"
        )));
    }
    const NICKNAMES: [&str; 6] = [
        "@hourly",
        "@daily",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
    ];
    if text.starts_with('@') && !NICKNAMES.iter().any(|n| n.eq_ignore_ascii_case(text)) {
        return Err(bad(format!(
            "the only @ forms are {}",
            NICKNAMES.join(", ")
        )));
    }
    let fields = text.split_whitespace().count();
    if !text.starts_with('@') && fields != 5 {
        return Err(bad(format!(
            "it has {fields} fields, not 5 (seconds are not supported)"
        )));
    }
    let parser = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build();
    parser.parse(text).map_err(|e| bad(e.to_string()))
}

/// An IANA zone name (exact spelling; a near miss gets a suggestion).
pub fn parse_zone(name: &str) -> Result<Tz, ScheduleError> {
    let name = name.trim();
    Tz::get(name).ok_or_else(|| ScheduleError::UnknownZone {
        name: name.chars().take(100).collect(),
        suggestion: suggest_zone(name),
    })
}

/// The zone a user probably meant: a case-insensitive match of the whole
/// name or of its city part, spaces read as underscores.
fn suggest_zone(name: &str) -> Option<String> {
    let wanted = name.trim().replace(' ', "_").to_ascii_lowercase();
    if wanted.is_empty() {
        return None;
    }
    let names = Tz::names();
    let mut city_match = None;
    for candidate in names {
        let lower = candidate.to_ascii_lowercase();
        if lower == wanted {
            return Some(candidate);
        }
        if city_match.is_none() && lower.rsplit('/').next() == Some(wanted.as_str()) {
            city_match = Some(candidate);
        }
    }
    city_match
}

/// A time shown in a zone, with the zone's abbreviation: `2026-03-09 09:00 EDT`.
pub fn local(at: DateTime<Utc>, tz: &Tz) -> String {
    at.with_timezone(tz).format("%Y-%m-%d %H:%M %Z").to_string()
}

/// A UTC time for people: `2026-03-09 13:00 UTC`.
pub fn utc(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}
