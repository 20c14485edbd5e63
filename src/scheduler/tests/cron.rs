//! Cron expressions and time zones: what parses and what is refused with
//! the fix, and the next runs across DST changes in several zones.

use crate::tz::Zone as Tz;
use chrono::{DateTime, Utc};
use pretty_assertions::assert_eq;

use super::*;
use crate::scheduler::cron::{self, When};

/// Every scheduled time in `(after, until]` in a zone, printed locally.
fn local_runs(expr: &str, zone: &str, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<String> {
    let when = When::parse(expr, zone, after).unwrap();
    let tz = Tz::get(zone).unwrap();
    when.between(after, until, 1000)
        .0
        .into_iter()
        .map(|t| format!("{} = {}", cron::local(t, &tz), cron::utc(t)))
        .collect()
}

// ---- parsing -------------------------------------------------------------------

#[test]
fn good_expressions_parse() {
    let now = utc(2026, 1, 1, 0, 0);
    for expr in [
        "0 9 * * 1-5",
        "*/15 * * * *",
        "0 0 * * 0",
        "0 0 * * 7",
        "0 9 13 * 5",
        "0 9 * * MON-FRI",
        "5,35 */2 1-10 1,6 *",
        "  0 9 * * *  ",
        "@daily",
        "@hourly",
        "0 12 L * *",
    ] {
        assert!(When::parse(expr, "UTC", now).is_ok(), "{expr}");
    }
}

#[test]
fn bad_expressions_are_refused_with_the_fix() {
    let now = utc(2026, 1, 1, 0, 0);
    for (expr, says) in [
        ("", "empty"),
        ("* * * *", "4 fields"),
        ("0 0 9 * * 1", "6 fields"),
        ("0 0 9 * * 1 2026", "7 fields"),
        ("61 9 * * *", "out of bounds"),
        ("0 25 * * *", "out of bounds"),
        ("every day", "2 fields"),
        ("a b c d e", "illegal character"),
        ("0 9 * * 8", "out of bounds"),
        ("@sometimes", "@hourly, @daily"),
        ("@reboot", "@hourly, @daily"),
    ] {
        let err = When::parse(expr, "UTC", now).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, ScheduleError::BadExpression { .. }),
            "{expr}: {err:?}"
        );
        assert!(
            message.to_lowercase().contains(says),
            "{expr}: {message} should say {says}"
        );
        assert!(
            message.contains("`0 9 * * 1-5`"),
            "{expr}: {message} shows an example"
        );
    }
    let err = When::parse("0 0 30 2 *", "UTC", now).unwrap_err();
    assert_eq!(err, ScheduleError::NeverRuns("0 0 30 2 *".into()));
    assert!(err.to_string().contains("`0 9 28 2 *`"));
    let long = "1 ".repeat(300);
    assert!(When::parse(&long, "UTC", now).is_err());
}

#[test]
fn zones_are_iana_names_and_near_misses_get_a_suggestion() {
    let now = utc(2026, 1, 1, 0, 0);
    for zone in [
        "UTC",
        "America/New_York",
        "Europe/Berlin",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
    ] {
        assert_eq!(
            When::parse("0 9 * * *", zone, now).unwrap().zone().name(),
            zone
        );
    }
    for (zone, suggestion) in [
        ("Mars/Base", None),
        ("", None),
        ("europe/berlin", Some("Europe/Berlin")),
        ("Berlin", Some("Europe/Berlin")),
        ("new york", Some("America/New_York")),
        ("EST5EDT ", None),
    ] {
        match When::parse("0 9 * * *", zone, now) {
            Err(ScheduleError::UnknownZone {
                name,
                suggestion: s,
            }) => {
                assert_eq!(name, zone.trim());
                assert_eq!(s.as_deref(), suggestion, "{zone}");
                let message = ScheduleError::UnknownZone {
                    name,
                    suggestion: s,
                }
                .to_string();
                assert!(message.contains("America/New_York"), "{message}");
            }
            // `EST5EDT` is a real (legacy) IANA name; trimming makes it valid.
            Ok(w) => assert_eq!(w.zone().name(), zone.trim()),
            Err(other) => panic!("{zone}: {other:?}"),
        }
    }
}

// ---- next runs -----------------------------------------------------------------

#[test]
fn weekday_zero_and_seven_are_sunday_and_day_fields_are_ored() {
    // 2026-11-01 is a Sunday.
    let after = utc(2026, 10, 31, 12, 0);
    for expr in ["0 9 * * 0", "0 9 * * 7", "0 9 * * SUN"] {
        let when = When::parse(expr, "UTC", after).unwrap();
        assert_eq!(
            when.next_after(after),
            Some(utc(2026, 11, 1, 9, 0)),
            "{expr}"
        );
    }
    // Every 13th OR every Friday (Vixie cron), not Friday the 13th only.
    let runs = local_runs(
        "0 9 13 * 5",
        "UTC",
        utc(2026, 11, 1, 0, 0),
        utc(2026, 12, 14, 0, 0),
    );
    assert_eq!(
        runs,
        [
            "2026-11-06 09:00 UTC = 2026-11-06 09:00 UTC",
            "2026-11-13 09:00 UTC = 2026-11-13 09:00 UTC",
            "2026-11-20 09:00 UTC = 2026-11-20 09:00 UTC",
            "2026-11-27 09:00 UTC = 2026-11-27 09:00 UTC",
            "2026-12-04 09:00 UTC = 2026-12-04 09:00 UTC",
            "2026-12-11 09:00 UTC = 2026-12-11 09:00 UTC",
            "2026-12-13 09:00 UTC = 2026-12-13 09:00 UTC",
        ]
    );
    // Weekdays 1-5 are Monday to Friday.
    let runs = local_runs(
        "0 9 * * 1-5",
        "UTC",
        utc(2026, 11, 1, 0, 0),
        utc(2026, 11, 8, 0, 0),
    );
    assert_eq!(runs.len(), 5);
    assert!(runs[0].starts_with("2026-11-02"), "{runs:?}");
}

#[test]
fn new_york_spring_forward_runs_once_right_after_the_gap() {
    // 2026-03-08 02:00 EST jumps to 03:00 EDT.
    let runs = local_runs(
        "30 2 * * *",
        "America/New_York",
        utc(2026, 3, 7, 0, 0),
        utc(2026, 3, 10, 0, 0),
    );
    assert_eq!(
        runs,
        [
            "2026-03-07 02:30 EST = 2026-03-07 07:30 UTC",
            "2026-03-08 03:00 EDT = 2026-03-08 07:00 UTC",
            "2026-03-09 02:30 EDT = 2026-03-09 06:30 UTC",
        ]
    );
    // A time outside the gap is untouched that day.
    let runs = local_runs(
        "0 9 * * *",
        "America/New_York",
        utc(2026, 3, 7, 0, 0),
        utc(2026, 3, 9, 0, 0),
    );
    assert_eq!(
        runs,
        [
            "2026-03-07 09:00 EST = 2026-03-07 14:00 UTC",
            "2026-03-08 09:00 EDT = 2026-03-08 13:00 UTC",
        ]
    );
}

#[test]
fn new_york_fall_back_runs_once_in_the_repeated_hour() {
    // 2026-11-01 02:00 EDT falls back to 01:00 EST: 01:30 happens twice.
    let runs = local_runs(
        "30 1 * * *",
        "America/New_York",
        utc(2026, 10, 31, 0, 0),
        utc(2026, 11, 3, 0, 0),
    );
    assert_eq!(
        runs,
        [
            "2026-10-31 01:30 EDT = 2026-10-31 05:30 UTC",
            "2026-11-01 01:30 EDT = 2026-11-01 05:30 UTC",
            "2026-11-02 01:30 EST = 2026-11-02 06:30 UTC",
        ]
    );
    // Interval expressions run at every real occurrence, forward in time.
    let runs = local_runs(
        "*/30 * * * *",
        "America/New_York",
        utc(2026, 11, 1, 4, 45),
        utc(2026, 11, 1, 7, 15),
    );
    assert_eq!(
        runs,
        [
            "2026-11-01 01:00 EDT = 2026-11-01 05:00 UTC",
            "2026-11-01 01:30 EDT = 2026-11-01 05:30 UTC",
            "2026-11-01 01:00 EST = 2026-11-01 06:00 UTC",
            "2026-11-01 01:30 EST = 2026-11-01 06:30 UTC",
            "2026-11-01 02:00 EST = 2026-11-01 07:00 UTC",
        ]
    );
}

#[test]
fn berlin_dst_both_ways() {
    // 2026-03-29 02:00 CET jumps to 03:00 CEST; 2026-10-25 03:00 CEST falls
    // back to 02:00 CET.
    let spring = local_runs(
        "30 2 * * *",
        "Europe/Berlin",
        utc(2026, 3, 28, 0, 0),
        utc(2026, 3, 31, 0, 0),
    );
    assert_eq!(
        spring,
        [
            "2026-03-28 02:30 CET = 2026-03-28 01:30 UTC",
            "2026-03-29 03:00 CEST = 2026-03-29 01:00 UTC",
            "2026-03-30 02:30 CEST = 2026-03-30 00:30 UTC",
        ]
    );
    let autumn = local_runs(
        "30 2 * * *",
        "Europe/Berlin",
        utc(2026, 10, 24, 0, 0),
        utc(2026, 10, 27, 0, 0),
    );
    assert_eq!(
        autumn,
        [
            "2026-10-24 02:30 CEST = 2026-10-24 00:30 UTC",
            "2026-10-25 02:30 CEST = 2026-10-25 00:30 UTC",
            "2026-10-26 02:30 CET = 2026-10-26 01:30 UTC",
        ]
    );
}

#[test]
fn lord_howe_half_hour_dst_both_ways() {
    // Lord Howe shifts by 30 minutes: on 2026-04-05 02:00 (+11) falls back
    // to 01:30 (+10:30); on 2026-10-04 02:00 (+10:30) jumps to 02:30 (+11).
    let autumn = local_runs(
        "45 1 * * *",
        "Australia/Lord_Howe",
        utc(2026, 4, 3, 0, 0),
        utc(2026, 4, 6, 0, 0),
    );
    assert_eq!(
        autumn,
        [
            "2026-04-04 01:45 +11 = 2026-04-03 14:45 UTC",
            "2026-04-05 01:45 +11 = 2026-04-04 14:45 UTC",
            "2026-04-06 01:45 +1030 = 2026-04-05 15:15 UTC",
        ]
    );
    let spring = local_runs(
        "15 2 * * *",
        "Australia/Lord_Howe",
        utc(2026, 10, 2, 0, 0),
        utc(2026, 10, 5, 0, 0),
    );
    assert_eq!(
        spring,
        [
            "2026-10-03 02:15 +1030 = 2026-10-02 15:45 UTC",
            "2026-10-04 02:30 +11 = 2026-10-03 15:30 UTC",
            "2026-10-05 02:15 +11 = 2026-10-04 15:15 UTC",
        ]
    );
}

#[test]
fn next_run_is_strictly_later_even_on_the_minute() {
    let when = When::parse("0 9 * * *", "UTC", utc(2026, 1, 1, 0, 0)).unwrap();
    let at = utc(2026, 1, 1, 9, 0);
    assert_eq!(when.next_after(at), Some(utc(2026, 1, 2, 9, 0)));
    assert_eq!(when.next_after(secs(at, -1)), Some(at));
    let ms = at - chrono::Duration::milliseconds(1);
    assert_eq!(when.next_after(ms), Some(at));
}
