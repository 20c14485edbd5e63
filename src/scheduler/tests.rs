//! The scheduler with an injected clock: parsing, next runs across DST in
//! several zones, overlap, missed runs, exactly-once with two schedulers on
//! one database file, the operations behind the tools and chat command, and
//! a run against a fake OpenCode.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use pretty_assertions::assert_eq;
use serde_json::json;

use super::cron::{self, When};
use super::exec::{self, Ending, Produced};
use super::ops::{AddRequest, Caller, LookupError, Ops, People};
use super::syntax::{self, Command};
use super::*;
use crate::mattermost::types::User;
use crate::opencode::message::MessageWithParts;
use crate::opencode::{Activity, Health, OpenCode, OpenCodeError, Prompt, Session};
use crate::store::{SqliteStore, ThreadStatus};

// ---- fixtures ----------------------------------------------------------------

/// A clock the test sets by hand.
struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    fn at(t: DateTime<Utc>) -> Arc<ManualClock> {
        Arc::new(ManualClock(Mutex::new(t)))
    }
    fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap() = t;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

fn secs(t: DateTime<Utc>, s: i64) -> DateTime<Utc> {
    t + chrono::Duration::seconds(s)
}

const DIR: &str = "/src/project";
const ALICE: &str = "aliceaaaaaaaaaaaaaaaaaaaaa";
const BOB: &str = "bobbbbbbbbbbbbbbbbbbbbbbbb";
const OWNER: &str = "ownerrrrrrrrrrrrrrrrrrrrrr";

fn policy() -> Policy {
    Policy {
        grace: Duration::from_secs(600),
        timeout: Duration::from_secs(1800),
    }
}

fn scheduler(store: Arc<dyn Store>, clock: Arc<ManualClock>, instance: &str) -> Scheduler {
    Scheduler::new(store, clock, instance, DIR, policy())
}

fn schedule(id: &str, cron: &str, tz: &str, since: DateTime<Utc>) -> Schedule {
    Schedule {
        id: id.into(),
        name: format!("name-{id}"),
        cron: cron.into(),
        timezone: tz.into(),
        prompt: "summarise".into(),
        target_user_id: ALICE.into(),
        agent: None,
        model: None,
        directory: DIR.into(),
        enabled: true,
        created_by: OWNER.into(),
        created_at: millis(since),
        active_since: millis(since),
    }
}

fn mem() -> Arc<dyn Store> {
    Arc::new(SqliteStore::open_in_memory().unwrap())
}

/// The scheduled times, in UTC, from a list of runs.
fn times(due: &[Due]) -> Vec<DateTime<Utc>> {
    due.iter()
        .map(|d| from_millis(d.run.scheduled_at))
        .collect()
}

async fn finish(store: &dyn Store, due: &Due, state: RunState) {
    let mut run = due.run.clone();
    run.state = state;
    run.finished_at = Some(run.claimed_at + 1000);
    store.update_schedule_run(&run).await.unwrap();
}

/// Every scheduled time in `(after, until]` in a zone, printed locally.
fn local_runs(expr: &str, zone: &str, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<String> {
    let when = When::parse(expr, zone, after).unwrap();
    let tz: Tz = zone.parse().unwrap();
    when.between(after, until, 1000)
        .0
        .into_iter()
        .map(|t| format!("{} = {}", cron::local(t, tz), cron::utc(t)))
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
                assert_eq!(s, suggestion, "{zone}");
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

// ---- the scheduler ---------------------------------------------------------------

#[tokio::test]
async fn on_time_runs_are_claimed_once_and_next_is_reported() {
    let store = mem();
    let t0 = utc(2026, 3, 2, 8, 0);
    let clock = ManualClock::at(t0);
    let s = scheduler(store.clone(), clock.clone(), "a");
    store
        .add_schedule(&schedule("s1", "0 9 * * *", "UTC", t0))
        .await
        .unwrap();

    let pass = s.pass().await.unwrap();
    assert!(pass.due.is_empty());
    assert_eq!(pass.next, Some(utc(2026, 3, 2, 9, 0)));
    // The loop would sleep in slices; never past MAX_SLEEP.
    assert_eq!(sleep_for(pass.next, t0), MAX_SLEEP);
    assert_eq!(
        sleep_for(pass.next, secs(utc(2026, 3, 2, 9, 0), -5)),
        Duration::from_millis(5005)
    );
    assert_eq!(sleep_for(None, t0), MAX_SLEEP);
    assert_eq!(sleep_for(Some(secs(t0, -10)), t0), MAX_SLEEP);

    clock.set(secs(utc(2026, 3, 2, 9, 0), 1));
    let pass = s.pass().await.unwrap();
    assert_eq!(times(&pass.due), [utc(2026, 3, 2, 9, 0)]);
    let run = &pass.due[0].run;
    assert_eq!(run.state, RunState::Running);
    assert_eq!(run.trigger, RunTrigger::Cron);
    assert_eq!(run.instance_id, "a");
    assert_eq!(pass.next, Some(utc(2026, 3, 3, 9, 0)));

    // The same time is never claimed again, by this pass or a later one.
    clock.set(secs(utc(2026, 3, 2, 9, 0), 20));
    assert!(s.pass().await.unwrap().due.is_empty());
    finish(store.as_ref(), &pass.due[0], RunState::Done).await;
    assert!(s.pass().await.unwrap().due.is_empty());
    clock.set(utc(2026, 3, 3, 9, 0));
    assert_eq!(times(&s.pass().await.unwrap().due), [utc(2026, 3, 3, 9, 0)]);
}

#[tokio::test]
async fn a_run_still_going_skips_the_next_and_records_it() {
    let store = mem();
    let t0 = utc(2026, 3, 2, 8, 59);
    let clock = ManualClock::at(t0);
    let s = scheduler(store.clone(), clock.clone(), "a");
    store
        .add_schedule(&schedule("s1", "* * * * *", "UTC", t0))
        .await
        .unwrap();

    clock.set(utc(2026, 3, 2, 9, 0));
    let first = s.pass().await.unwrap().due;
    assert_eq!(times(&first), [utc(2026, 3, 2, 9, 0)]);

    // 09:01 and 09:02: the 09:00 run is still going.
    for minute in [1, 2] {
        clock.set(utc(2026, 3, 2, 9, minute));
        assert!(s.pass().await.unwrap().due.is_empty(), "09:0{minute}");
    }
    let runs = store.schedule_runs("s1", 10).await.unwrap();
    let states: Vec<(DateTime<Utc>, RunState)> = runs
        .iter()
        .map(|r| (from_millis(r.scheduled_at), r.state))
        .collect();
    assert_eq!(
        states,
        [
            (utc(2026, 3, 2, 9, 2), RunState::Skipped),
            (utc(2026, 3, 2, 9, 1), RunState::Skipped),
            (utc(2026, 3, 2, 9, 0), RunState::Running),
        ]
    );
    let detail = runs[0].detail.as_deref().unwrap();
    assert!(
        detail.contains("2026-03-02 09:00 UTC was still going"),
        "{detail}"
    );

    // Once it finished, the next time runs again.
    finish(store.as_ref(), &first[0], RunState::Done).await;
    clock.set(utc(2026, 3, 2, 9, 3));
    assert_eq!(times(&s.pass().await.unwrap().due), [utc(2026, 3, 2, 9, 3)]);

    // A manual run is refused while a run is going, and never takes a
    // scheduled time's key.
    let manual = store.schedule_by_name("name-s1").await.unwrap().unwrap();
    let (claim, run) = s.claim_now(&manual).await.unwrap();
    assert!(
        matches!(claim, RunClaim::Overlap(ref busy) if busy.scheduled_at == millis(utc(2026, 3, 2, 9, 3)))
    );
    assert_eq!(run.scheduled_at % 60_000, 1, "moved off the whole minute");
    assert_eq!(run.trigger, RunTrigger::Manual);
}

#[tokio::test]
async fn a_running_row_past_its_deadline_no_longer_blocks() {
    let store = mem();
    let t0 = utc(2026, 3, 2, 8, 0);
    let clock = ManualClock::at(t0);
    let s = scheduler(store.clone(), clock.clone(), "a");
    store
        .add_schedule(&schedule("s1", "0 * * * *", "UTC", t0))
        .await
        .unwrap();
    clock.set(utc(2026, 3, 2, 9, 0));
    assert_eq!(s.pass().await.unwrap().due.len(), 1);
    // The agent running it died; timeout 30 min + delivery margin 2 min.
    clock.set(utc(2026, 3, 2, 10, 0));
    assert_eq!(
        times(&s.pass().await.unwrap().due),
        [utc(2026, 3, 2, 10, 0)]
    );

    // After a restart, this instance's leftovers are failed.
    assert_eq!(s.recover().await.unwrap(), 2);
    let runs = store.schedule_runs("s1", 5).await.unwrap();
    assert!(runs.iter().all(|r| r.state == RunState::Failed));
    assert!(runs[0].detail.as_deref().unwrap().contains("interrupted"));
    let other = scheduler(store.clone(), clock.clone(), "b");
    assert_eq!(other.recover().await.unwrap(), 0);
}

#[tokio::test]
async fn a_missed_time_within_the_grace_window_runs_once_at_start_up() {
    let store = mem();
    let t0 = utc(2026, 3, 2, 8, 0);
    store
        .add_schedule(&schedule("s1", "0 9 * * *", "America/New_York", t0))
        .await
        .unwrap();
    // No agent from 08:00 until 14:05 UTC; 09:00 New York is 14:00 UTC.
    let clock = ManualClock::at(utc(2026, 3, 2, 14, 5));
    let s = scheduler(store.clone(), clock.clone(), "a");
    let due = s.pass().await.unwrap().due;
    assert_eq!(times(&due), [utc(2026, 3, 2, 14, 0)]);
    assert_eq!(
        store.schedule_runs("s1", 10).await.unwrap().len(),
        1,
        "nothing recorded missed"
    );
    finish(store.as_ref(), &due[0], RunState::Done).await;
    assert!(s.pass().await.unwrap().due.is_empty());
}

#[tokio::test]
async fn missed_times_outside_the_grace_window_are_recorded_not_run() {
    let store = mem();
    let t0 = utc(2026, 3, 2, 8, 0);
    store
        .add_schedule(&schedule("s1", "0 9 * * *", "UTC", t0))
        .await
        .unwrap();
    // Down for three days; back at 09:30, outside the 10-minute grace.
    let clock = ManualClock::at(utc(2026, 3, 5, 9, 30));
    let s = scheduler(store.clone(), clock.clone(), "a");
    let pass = s.pass().await.unwrap();
    assert!(pass.due.is_empty());
    assert_eq!(pass.next, Some(utc(2026, 3, 6, 9, 0)));
    let runs = store.schedule_runs("s1", 10).await.unwrap();
    assert_eq!(runs.len(), 1, "one record for the whole gap: {runs:?}");
    assert_eq!(runs[0].state, RunState::Missed);
    assert_eq!(from_millis(runs[0].scheduled_at), utc(2026, 3, 5, 9, 0));
    let detail = runs[0].detail.as_deref().unwrap();
    assert!(
        detail
            .contains("missed 4 scheduled times from 2026-03-02 09:00 UTC to 2026-03-05 09:00 UTC"),
        "{detail}"
    );
    // Nothing is owed any more.
    assert!(s.pass().await.unwrap().due.is_empty());
    assert_eq!(store.schedule_runs("s1", 10).await.unwrap().len(), 1);
    clock.set(utc(2026, 3, 6, 9, 0));
    assert_eq!(s.pass().await.unwrap().due.len(), 1);
}

#[tokio::test]
async fn after_a_long_sleep_only_the_newest_time_runs() {
    let store = mem();
    let t0 = utc(2026, 3, 2, 8, 0);
    store
        .add_schedule(&schedule("s1", "*/5 * * * *", "UTC", t0))
        .await
        .unwrap();
    let clock = ManualClock::at(t0);
    let s = scheduler(store.clone(), clock.clone(), "a");
    assert!(s.pass().await.unwrap().due.is_empty());
    // The laptop slept from 08:00 to 10:07; 10:05 is within grace.
    clock.set(utc(2026, 3, 2, 10, 7));
    let due = s.pass().await.unwrap().due;
    assert_eq!(times(&due), [utc(2026, 3, 2, 10, 5)]);
    let runs = store.schedule_runs("s1", 10).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1].state, RunState::Missed);
    assert_eq!(from_millis(runs[1].scheduled_at), utc(2026, 3, 2, 10, 0));
    assert!(
        runs[1]
            .detail
            .as_deref()
            .unwrap()
            .contains("missed 24 scheduled times")
    );
}

#[tokio::test]
async fn an_enormous_backlog_is_counted_up_to_a_cap_and_never_replayed() {
    let store = mem();
    let t0 = utc(2025, 1, 1, 0, 0);
    store
        .add_schedule(&schedule("s1", "* * * * *", "UTC", t0))
        .await
        .unwrap();
    // A year of minutes later.
    let clock = ManualClock::at(secs(utc(2026, 1, 1, 0, 0), 30));
    let s = scheduler(store.clone(), clock.clone(), "a");
    let due = s.pass().await.unwrap().due;
    assert_eq!(times(&due), [utc(2026, 1, 1, 0, 0)]);
    let runs = store.schedule_runs("s1", 10).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(from_millis(runs[1].scheduled_at), utc(2025, 12, 31, 23, 59));
    assert!(
        runs[1].detail.as_deref().unwrap().contains("more than"),
        "{runs:?}"
    );
}

#[tokio::test]
async fn disabled_schedules_do_not_run_or_owe_runs() {
    let store = mem();
    let t0 = utc(2026, 3, 2, 8, 0);
    let clock = ManualClock::at(t0);
    let s = scheduler(store.clone(), clock.clone(), "a");
    store
        .add_schedule(&schedule("s1", "0 9 * * *", "UTC", t0))
        .await
        .unwrap();
    store
        .set_schedule_enabled("s1", false, millis(t0))
        .await
        .unwrap();
    clock.set(utc(2026, 3, 4, 9, 0));
    let pass = s.pass().await.unwrap();
    assert!(pass.due.is_empty());
    assert_eq!(pass.next, None);
    // Enabled again at 09:05: 09:00 passed while disabled and is not owed.
    clock.set(utc(2026, 3, 4, 9, 5));
    store
        .set_schedule_enabled("s1", true, millis(clock.now()))
        .await
        .unwrap();
    assert!(s.pass().await.unwrap().due.is_empty());
    assert!(store.schedule_runs("s1", 10).await.unwrap().is_empty());
    // Enabling twice keeps the first time.
    store
        .set_schedule_enabled("s1", true, millis(utc(2026, 3, 9, 0, 0)))
        .await
        .unwrap();
    clock.set(utc(2026, 3, 5, 9, 0));
    assert_eq!(s.pass().await.unwrap().due.len(), 1);
}

#[tokio::test]
async fn schedules_of_other_projects_are_left_to_their_agents() {
    let store = mem();
    let t0 = utc(2026, 3, 2, 8, 0);
    let clock = ManualClock::at(t0);
    let s = scheduler(store.clone(), clock.clone(), "a");
    let mut other = schedule("s1", "0 9 * * *", "UTC", t0);
    other.directory = "/src/elsewhere".into();
    store.add_schedule(&other).await.unwrap();
    clock.set(utc(2026, 3, 2, 9, 0));
    let pass = s.pass().await.unwrap();
    assert!(pass.due.is_empty());
    assert_eq!(pass.next, None);
}

#[tokio::test]
async fn a_removed_schedule_cannot_be_claimed() {
    let store = mem();
    let t0 = utc(2026, 3, 2, 8, 0);
    let clock = ManualClock::at(t0);
    let s = scheduler(store.clone(), clock.clone(), "a");
    let sch = schedule("s1", "0 9 * * *", "UTC", t0);
    store.add_schedule(&sch).await.unwrap();
    store.remove_schedule("s1").await.unwrap();
    let (claim, _) = s.claim_now(&sch).await.unwrap();
    assert_eq!(claim, RunClaim::Inactive);
}

/// Two agents on one database file race over a day of five-minute runs
/// with the same clock; every scheduled time must run exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_schedulers_on_one_file_run_each_time_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let a_store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let b_store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let t0 = utc(2026, 3, 2, 0, 0);
    a_store
        .add_schedule(&schedule("s1", "*/5 * * * *", "Europe/Berlin", t0))
        .await
        .unwrap();
    a_store
        .add_schedule(&schedule("s2", "*/7 * * * *", "America/New_York", t0))
        .await
        .unwrap();
    let clock = ManualClock::at(t0);
    let a = Arc::new(scheduler(a_store.clone(), clock.clone(), "agent-a"));
    let b = Arc::new(scheduler(b_store.clone(), clock.clone(), "agent-b"));

    let mut won: HashMap<(String, i64), Vec<String>> = HashMap::new();
    for minute in 1..=24 * 60 {
        clock.set(secs(t0, minute * 60));
        let (ra, rb) = tokio::join!(
            {
                let a = a.clone();
                tokio::spawn(async move { a.pass().await.unwrap().due })
            },
            {
                let b = b.clone();
                tokio::spawn(async move { b.pass().await.unwrap().due })
            }
        );
        for (agent, due, store) in [("a", ra.unwrap(), &a_store), ("b", rb.unwrap(), &b_store)] {
            for d in due {
                finish(store.as_ref(), &d, RunState::Done).await;
                won.entry((d.schedule.id.clone(), d.run.scheduled_at))
                    .or_default()
                    .push(agent.to_owned());
            }
        }
    }
    let every_5: usize = won.keys().filter(|(id, _)| id == "s1").count();
    let every_7: usize = won.keys().filter(|(id, _)| id == "s2").count();
    assert_eq!(every_5, 24 * 12, "every five-minute time of the day ran");
    // */7 matches minutes 0,7,...,56 of each hour: 9 a hour.
    assert_eq!(every_7, 24 * 9);
    for (key, agents) in &won {
        assert_eq!(agents.len(), 1, "{key:?} ran on {agents:?}");
    }
    let spread: std::collections::BTreeSet<&String> = won.values().flatten().collect();
    eprintln!("runs spread over agents {spread:?}");
    // Both stores agree, and nothing was recorded missed or skipped.
    for store in [&a_store, &b_store] {
        let runs = store.schedule_runs("s1", 1000).await.unwrap();
        assert_eq!(runs.len(), 24 * 12);
        assert!(runs.iter().all(|r| r.state == RunState::Done));
    }
}

// ---- operations (tools and chat share these) ----------------------------------------

struct FakePeople {
    users: Vec<User>,
    connected: bool,
}

fn user(id: &str, name: &str) -> User {
    User {
        id: id.into(),
        username: name.into(),
        ..User::default()
    }
}

impl FakePeople {
    fn new() -> FakePeople {
        let mut bot = user("botttttttttttttttttttttttt", "opencode-bot");
        bot.is_bot = true;
        let mut gone = user("gonegonegonegonegonegonego", "gone");
        gone.delete_at = 5;
        FakePeople {
            users: vec![
                user(ALICE, "alice"),
                user(BOB, "bob"),
                user(OWNER, "owner"),
                bot,
                gone,
            ],
            connected: true,
        }
    }
}

#[async_trait]
impl People for FakePeople {
    async fn by_id(&self, id: &str) -> Result<User, LookupError> {
        if !self.connected {
            return Err(LookupError::NotConnected);
        }
        self.users
            .iter()
            .find(|u| u.id == id)
            .cloned()
            .ok_or(LookupError::NotFound)
    }
    async fn by_username(&self, username: &str) -> Result<User, LookupError> {
        if !self.connected {
            return Err(LookupError::NotConnected);
        }
        self.users
            .iter()
            .find(|u| u.username == username)
            .cloned()
            .ok_or(LookupError::NotFound)
    }
    fn permalink(&self, post_id: &str) -> Option<String> {
        Some(format!("http://chat/_redirect/pl/{post_id}"))
    }
}

fn add(name: &str, cron: &str, prompt: &str) -> AddRequest {
    AddRequest {
        name: name.into(),
        cron: cron.into(),
        prompt: prompt.into(),
        ..AddRequest::default()
    }
}

const TOOL: Caller<'static> = Caller::OpenCode {
    session: Some("ses_1"),
};

#[tokio::test]
async fn add_list_enable_disable_remove() {
    let store = mem();
    // Friday 2026-03-06, 15:00 in New York.
    let clock = ManualClock::at(utc(2026, 3, 6, 20, 0));
    let s = scheduler(store.clone(), clock.clone(), "a");
    let people = FakePeople::new();
    let ops = Ops {
        store: store.as_ref(),
        scheduler: &s,
        people: &people,
        owner: Some(OWNER),
        default_zone: chrono_tz::Europe::Berlin,
    };

    assert!(ops.list().await.unwrap().contains("No schedules yet"));

    let mut req = add("weekday-prs", " 0 9 * * 1-5 ", "  Summarise the open PRs ");
    req.timezone = Some("America/New_York".into());
    req.user = Some("@alice".into());
    req.model = Some("scripted/scripted-2".into());
    req.agent = Some("plan".into());
    let text = ops.add(req, TOOL).await.unwrap();
    assert!(
        text.contains("Added schedule `weekday-prs`: `0 9 * * 1-5`"),
        "{text}"
    );
    // Next is Monday 09:00, after DST began on Sunday.
    assert!(
        text.contains("Next run: 2026-03-09 09:00 EDT (2026-03-09 13:00 UTC)"),
        "{text}"
    );
    assert!(text.contains("@alice"), "{text}");

    let stored = store
        .schedule_by_name("weekday-prs")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.cron, "0 9 * * 1-5");
    assert_eq!(stored.prompt, "Summarise the open PRs");
    assert_eq!(stored.target_user_id, ALICE);
    assert_eq!(stored.model.as_deref(), Some("scripted/scripted-2"));
    assert_eq!(stored.agent.as_deref(), Some("plan"));
    assert_eq!(stored.directory, DIR);
    assert_eq!(stored.created_by, "opencode:ses_1");
    assert!(stored.id.starts_with("sch_"), "{}", stored.id);

    // Defaults: the configured zone and the owner.
    let text = ops
        .add(add("nightly", "@daily", "Check the build"), TOOL)
        .await
        .unwrap();
    assert!(text.contains("in Europe/Berlin"), "{text}");
    assert!(text.contains("@owner"), "{text}");

    let list = ops.list().await.unwrap();
    assert!(list.contains("**Schedules** (2)"), "{list}");
    assert!(
        list.contains(
            "**weekday-prs** · 🟢 enabled · `0 9 * * 1-5` · America/New_York · DM to @alice"
        ),
        "{list}"
    );
    assert!(
        list.contains("- Next: 2026-03-09 09:00 EDT (2026-03-09 13:00 UTC)"),
        "{list}"
    );
    assert!(
        list.contains("- Next: 2026-03-07 00:00 CET (2026-03-06 23:00 UTC)"),
        "{list}"
    );
    assert!(list.contains("- Last: never ran"), "{list}");
    assert!(list.contains("- When: At 09:00"), "{list}");
    assert!(list.contains("- Prompt: Summarise the open PRs"), "{list}");

    // A run and its outcome show up, with a link to the result.
    let due = {
        let (claim, mut run) = s.claim_now(&stored).await.unwrap();
        assert_eq!(claim, RunClaim::Won);
        run.state = RunState::Done;
        run.finished_at = Some(run.claimed_at + 42_000);
        run.post_id = Some("post1".into());
        store.update_schedule_run(&run).await.unwrap();
        run
    };
    let list = ops.list().await.unwrap();
    assert!(
        list.contains("- Last: ✅ 2026-03-06 15:00 EST (on demand): done in 42s · [result](http://chat/_redirect/pl/post1)"),
        "{list}"
    );
    let _ = due;

    let text = ops.set_enabled("weekday-prs", false).await.unwrap();
    assert!(text.contains("Disabled"), "{text}");
    assert!(
        ops.set_enabled("weekday-prs", false)
            .await
            .unwrap()
            .contains("already disabled")
    );
    let list = ops.list().await.unwrap();
    assert!(list.contains("🔴 disabled"), "{list}");
    assert!(list.contains("- Next: none while disabled"), "{list}");
    let text = ops.set_enabled("weekday-prs", true).await.unwrap();
    assert!(
        text.contains("next run 2026-03-09 09:00 EDT (2026-03-09 13:00 UTC)"),
        "{text}"
    );

    let text = ops.remove("nightly").await.unwrap();
    assert!(text.contains("Removed schedule `nightly`"), "{text}");
    assert!(store.schedule_by_name("nightly").await.unwrap().is_none());
}

#[tokio::test]
async fn every_bad_input_is_refused_with_the_fix() {
    let store = mem();
    let clock = ManualClock::at(utc(2026, 3, 6, 12, 0));
    let s = scheduler(store.clone(), clock.clone(), "a");
    let mut people = FakePeople::new();
    let ops = Ops {
        store: store.as_ref(),
        scheduler: &s,
        people: &people,
        owner: Some(OWNER),
        default_zone: Tz::UTC,
    };
    ops.add(add("taken", "0 9 * * *", "p"), TOOL).await.unwrap();

    let with = |f: &dyn Fn(&mut AddRequest)| {
        let mut r = add("fresh", "0 9 * * *", "do it");
        f(&mut r);
        r
    };
    let cases: Vec<(AddRequest, &str)> = vec![
        (with(&|r| r.cron = "0 9 * *".into()), "e.g. `0 9 * * 1-5`"),
        (
            with(&|r| r.cron = "0 0 31 2 *".into()),
            "never matches a real date",
        ),
        (
            with(&|r| r.timezone = Some("Mars/Base".into())),
            "use an IANA name such as `America/New_York`",
        ),
        (
            with(&|r| r.timezone = Some("berlin".into())),
            "did you mean `Europe/Berlin`?",
        ),
        (
            with(&|r| r.user = Some("@nobody".into())),
            "no Mattermost user `@nobody`: check the spelling",
        ),
        (
            with(&|r| r.user = Some("@opencode-bot".into())),
            "is a bot or a deactivated account",
        ),
        (
            with(&|r| r.user = Some("gone".into())),
            "is a bot or a deactivated account",
        ),
        (
            with(&|r| r.name = "taken".into()),
            "already exists: pick another name, or remove the old one first",
        ),
        (with(&|r| r.name = "two words".into()), "e.g. `daily-prs`"),
        (with(&|r| r.name = String::new()), "e.g. `daily-prs`"),
        (with(&|r| r.name = "x".repeat(65)), "1 to 64"),
        (with(&|r| r.prompt = "  \n ".into()), "the prompt is empty"),
        (
            with(&|r| r.model = Some("gpt-4".into())),
            "use provider/model",
        ),
        (
            with(&|r| r.agent = Some("rm -rf".into())),
            "invalid agent name",
        ),
    ];
    for (req, says) in cases {
        let err = ops.add(req.clone(), TOOL).await.unwrap_err().to_string();
        assert!(err.contains(says), "{req:?}: {err}");
    }
    assert_eq!(
        store.schedules().await.unwrap().len(),
        1,
        "nothing was stored"
    );

    for (op, err) in [
        ("remove", ops.remove("nope").await.unwrap_err()),
        ("enable", ops.set_enabled("nope", true).await.unwrap_err()),
        ("disable", ops.set_enabled("nope", false).await.unwrap_err()),
        ("run", ops.claim_now("nope").await.map(|_| ()).unwrap_err()),
    ] {
        let m = err.to_string();
        assert!(
            m.contains("no schedule named `nope`; existing schedules: `taken`"),
            "{op}: {m}"
        );
    }

    // Without an owner, a tool must name the user.
    let no_owner = Ops { owner: None, ..ops };
    let err = no_owner
        .add(add("fresh", "0 9 * * *", "p"), TOOL)
        .await
        .unwrap_err();
    assert_eq!(err, ScheduleError::NoTarget);
    assert!(err.to_string().contains("MATTERMOST_OWNER_USER_ID"));

    // Chat: the caller by default; only the owner may name someone else.
    let bob = Caller::Chat { user_id: BOB };
    let mut req = add("for-bob", "0 9 * * *", "p");
    ops.add(req.clone(), bob).await.unwrap();
    assert_eq!(
        store
            .schedule_by_name("for-bob")
            .await
            .unwrap()
            .unwrap()
            .target_user_id,
        BOB
    );
    req.name = "for-alice".into();
    req.user = Some("@alice".into());
    assert_eq!(
        ops.add(req.clone(), bob).await.unwrap_err(),
        ScheduleError::OthersTarget
    );
    ops.add(req, Caller::Chat { user_id: OWNER }).await.unwrap();

    // Naming a user needs the connection.
    people.connected = false;
    let offline = Ops {
        store: store.as_ref(),
        scheduler: &s,
        people: &people,
        owner: Some(OWNER),
        default_zone: Tz::UTC,
    };
    let mut req = add("offline", "0 9 * * *", "p");
    req.user = Some("@alice".into());
    let err = offline.add(req, TOOL).await.unwrap_err().to_string();
    assert!(err.contains("run `mattermost_connect` first"), "{err}");

    // A schedule of another project runs only there.
    let mut elsewhere = schedule("s9", "0 9 * * *", "UTC", utc(2026, 3, 1, 0, 0));
    elsewhere.name = "elsewhere".into();
    elsewhere.directory = "/src/other".into();
    store.add_schedule(&elsewhere).await.unwrap();
    let err = offline
        .claim_now("elsewhere")
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("run it from the OpenCode serving that directory"),
        "{err}"
    );
    assert!(
        offline
            .list()
            .await
            .unwrap()
            .contains("runs in `/src/other`")
    );
}

// ---- chat syntax --------------------------------------------------------------------

#[test]
fn chat_syntax_parses_every_form() {
    let parsed = syntax::parse(
        "add weekday-prs \"0 9 * * 1-5\" tz=America/New_York user=@bob model=a/b agent=plan \
         Summarise the open PRs\nand list the stale ones",
    )
    .unwrap();
    assert_eq!(
        parsed,
        Command::Add(AddRequest {
            name: "weekday-prs".into(),
            cron: "0 9 * * 1-5".into(),
            prompt: "Summarise the open PRs\nand list the stale ones".into(),
            timezone: Some("America/New_York".into()),
            user: Some("@bob".into()),
            agent: Some("plan".into()),
            model: Some("a/b".into()),
            enabled: None,
        })
    );
    for (text, cron, prompt) in [
        ("add x '*/5 * * * *' go", "*/5 * * * *", "go"),
        ("add x `0 9 * * *` go", "0 9 * * *", "go"),
        ("add x “0 9 * * *” go on", "0 9 * * *", "go on"),
        ("add x 0 9 * * 1-5 go now", "0 9 * * 1-5", "go now"),
        ("add x @daily check things", "@daily", "check things"),
        (
            "add x \"0 9 * * *\" a=b is not an option",
            "0 9 * * *",
            "a=b is not an option",
        ),
    ] {
        match syntax::parse(text).unwrap() {
            Command::Add(r) => {
                assert_eq!(
                    (r.cron.as_str(), r.prompt.as_str()),
                    (cron, prompt),
                    "{text}"
                );
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    match syntax::parse("add x \"0 9 * * *\" enabled=false tz=UTC p").unwrap() {
        Command::Add(r) => {
            assert_eq!(r.enabled, Some(false));
            assert_eq!(r.timezone.as_deref(), Some("UTC"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(syntax::parse("").unwrap(), Command::Help);
    assert_eq!(syntax::parse("help").unwrap(), Command::Help);
    assert_eq!(syntax::parse("LIST").unwrap(), Command::List);
    assert_eq!(
        syntax::parse("remove a").unwrap(),
        Command::Remove("a".into())
    );
    assert_eq!(
        syntax::parse("enable a").unwrap(),
        Command::Enable("a".into())
    );
    assert_eq!(
        syntax::parse("disable a").unwrap(),
        Command::Disable("a".into())
    );
    assert_eq!(syntax::parse("run a").unwrap(), Command::Run("a".into()));

    for (text, says) in [
        ("frobnicate", "use add, list, remove"),
        ("remove", "which schedule?"),
        ("run a b", "takes one schedule name"),
        ("list all", "takes no arguments"),
        ("add", "needs a name, a cron expression and a prompt"),
        ("add x \"0 9 * * *", "closing quote is missing"),
        ("add x", "cron expression is missing"),
        (
            "add x \"0 9 * * *\" enabled=maybe p",
            "enabled=true or enabled=false",
        ),
    ] {
        let err = syntax::parse(text).unwrap_err();
        assert!(err.contains(says), "{text}: {err}");
    }
    assert!(syntax::USAGE.contains("!schedule add <name> \"<cron>\""));
}

// ---- a run against a fake OpenCode --------------------------------------------------

/// Answers like OpenCode would: a session, then (after `busy_polls` busy
/// answers) the stored messages.
#[derive(Default)]
struct FakeOpenCode {
    reply: Mutex<Vec<serde_json::Value>>,
    busy_polls: Mutex<u32>,
    forever_busy: bool,
    prompts: Mutex<Vec<Prompt>>,
    aborted: Mutex<Vec<String>>,
    fail_session: bool,
}

#[async_trait]
impl OpenCode for FakeOpenCode {
    async fn list_sessions(&self) -> Result<Vec<Session>, OpenCodeError> {
        Ok(Vec::new())
    }
    async fn get_session(&self, id: &str) -> Result<Session, OpenCodeError> {
        Err(OpenCodeError::NotFound {
            what: "session",
            id: id.into(),
        })
    }
    async fn health(&self) -> Result<Health, OpenCodeError> {
        Ok(Health::default())
    }
    async fn create_session(&self, title: Option<&str>) -> Result<Session, OpenCodeError> {
        if self.fail_session {
            return Err(OpenCodeError::Unreachable("connection refused".into()));
        }
        Ok(Session {
            id: "ses_sched1234".into(),
            title: title.unwrap_or_default().into(),
            ..Session::default()
        })
    }
    async fn prompt_async(&self, _session: &str, prompt: &Prompt) -> Result<(), OpenCodeError> {
        self.prompts.lock().unwrap().push(prompt.clone());
        Ok(())
    }
    async fn messages(&self, _session: &str) -> Result<Vec<MessageWithParts>, OpenCodeError> {
        let user = self
            .prompts
            .lock()
            .unwrap()
            .last()
            .map(|p| p.message_id.clone())
            .unwrap_or_default();
        let reply = self.reply.lock().unwrap().clone();
        let mut out = vec![
            json!({"info": {"id": user, "sessionID": "ses_sched1234", "role": "user"}, "parts": []}),
        ];
        if !reply.is_empty() {
            out.push(json!({
                "info": {"id": "msg_zz1", "sessionID": "ses_sched1234", "role": "assistant",
                         "parentID": user, "time": {"created": 1, "completed": 2}, "finish": "stop"},
                "parts": reply,
            }));
        }
        Ok(out
            .into_iter()
            .map(|v| serde_json::from_value(v).unwrap())
            .collect())
    }
    async fn activity(&self) -> Result<Vec<(String, Activity)>, OpenCodeError> {
        let mut busy = self.busy_polls.lock().unwrap();
        if self.forever_busy || *busy > 0 {
            *busy = busy.saturating_sub(1);
            return Ok(vec![("ses_sched1234".into(), Activity::Busy)]);
        }
        Ok(Vec::new())
    }
    async fn abort(&self, session_id: &str) -> Result<bool, OpenCodeError> {
        self.aborted.lock().unwrap().push(session_id.into());
        Ok(true)
    }

    async fn providers(&self) -> Result<crate::opencode::Providers, OpenCodeError> {
        Ok(crate::opencode::Providers::default())
    }
    async fn reply_permission(
        &self,
        _request_id: &str,
        _reply: crate::opencode::PermissionReply,
    ) -> Result<(), OpenCodeError> {
        Ok(())
    }
    async fn reply_question(
        &self,
        _request_id: &str,
        _answers: &[Vec<String>],
    ) -> Result<(), OpenCodeError> {
        Ok(())
    }
    async fn reject_question(&self, _request_id: &str) -> Result<(), OpenCodeError> {
        Ok(())
    }
    async fn pending_permissions(
        &self,
    ) -> Result<Vec<crate::opencode::events::PermissionAsked>, OpenCodeError> {
        Ok(Vec::new())
    }
    async fn pending_questions(
        &self,
    ) -> Result<Vec<crate::opencode::events::QuestionAsked>, OpenCodeError> {
        Ok(Vec::new())
    }
}

fn text_part(id: &str, text: &str) -> serde_json::Value {
    json!({"id": id, "sessionID": "ses_sched1234", "messageID": "msg_zz1", "type": "text", "text": text})
}

async fn claimed(store: &Arc<dyn Store>) -> (Schedule, ScheduleRun) {
    let t0 = utc(2026, 3, 2, 8, 0);
    let s = scheduler(store.clone(), ManualClock::at(t0), "a");
    let mut sch = schedule("s1", "0 9 * * 1-5", "America/New_York", t0);
    sch.name = "weekday-prs".into();
    sch.model = Some("scripted/scripted-2".into());
    sch.agent = Some("plan".into());
    store.add_schedule(&sch).await.unwrap();
    let (claim, run) = s.claim_now(&sch).await.unwrap();
    assert_eq!(claim, RunClaim::Won);
    (sch, run)
}

#[tokio::test(start_paused = true)]
async fn a_run_sends_the_prompt_to_a_new_session_and_takes_the_final_text() {
    let store = mem();
    let (sch, mut run) = claimed(&store).await;
    let oc = FakeOpenCode {
        reply: Mutex::new(vec![
            text_part("prt_1", "First part."),
            text_part("prt_2", "Second part."),
        ]),
        busy_polls: Mutex::new(3),
        ..FakeOpenCode::default()
    };
    let produced = exec::produce(
        &oc,
        store.as_ref(),
        &sch,
        &mut run,
        "run for 09:00",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(produced.ending, Ending::Done);
    assert_eq!(produced.text, "First part.\n\nSecond part.");
    let session = produced.session.clone().unwrap();
    assert_eq!(session.title, "Scheduled: weekday-prs");
    let prompts = oc.prompts.lock().unwrap().clone();
    assert_eq!(prompts.len(), 1);
    assert!(
        prompts[0].text.starts_with(
            "[Scheduled prompt \"weekday-prs\" (0 9 * * 1-5 in America/New_York), run for 09:00;"
        ),
        "{}",
        prompts[0].text
    );
    assert!(prompts[0].text.ends_with("\nsummarise"));
    assert_eq!(prompts[0].agent.as_deref(), Some("plan"));
    assert_eq!(
        prompts[0].model.as_ref().map(|m| m.to_string()).as_deref(),
        Some("scripted/scripted-2")
    );
    // The session was recorded on the run as soon as it existed.
    let stored = store.schedule_runs("s1", 1).await.unwrap();
    assert_eq!(stored[0].session_id.as_deref(), Some("ses_sched1234"));

    let body = exec::result_body("weekday-prs", &produced);
    assert_eq!(
        body,
        ":bell: **Scheduled: weekday-prs**\n\nFirst part.\n\nSecond part."
    );
    let footer = exec::result_footer(&sch, &produced);
    assert!(footer.starts_with("✅ Done in "), "{footer}");
    assert!(
        footer.contains("`0 9 * * 1-5` (America/New_York)"),
        "{footer}"
    );
    assert!(footer.contains("session `ses_sche`"), "{footer}");
    assert!(
        footer.contains("Reply in this thread to continue this session."),
        "{footer}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_run_that_outlives_its_timeout_is_stopped_and_reported() {
    let store = mem();
    let (sch, mut run) = claimed(&store).await;
    let oc = FakeOpenCode {
        reply: Mutex::new(vec![text_part("prt_1", "Half an answer")]),
        forever_busy: true,
        ..FakeOpenCode::default()
    };
    let produced = exec::produce(
        &oc,
        store.as_ref(),
        &sch,
        &mut run,
        "now",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(produced.ending, Ending::TimedOut(Duration::from_secs(30)));
    assert_eq!(oc.aborted.lock().unwrap().clone(), ["ses_sched1234"]);
    let body = exec::result_body(&sch.name, &produced);
    assert!(
        body.starts_with(
            ":bell: **Scheduled: weekday-prs**\n\n:hourglass: The run timed out after 30s"
        ),
        "{body}"
    );
    assert!(
        body.ends_with("What it said so far:\n\nHalf an answer"),
        "{body}"
    );
    assert!(exec::result_footer(&sch, &produced).starts_with("⏱️ Timed out after 30"));
}

#[tokio::test(start_paused = true)]
async fn failures_become_the_result() {
    let store = mem();
    let (sch, mut run) = claimed(&store).await;
    let oc = FakeOpenCode {
        fail_session: true,
        ..FakeOpenCode::default()
    };
    let produced = exec::produce(
        &oc,
        store.as_ref(),
        &sch,
        &mut run,
        "now",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        matches!(&produced.ending, Ending::Failed(e) if e.contains("could not start an OpenCode session"))
    );
    assert!(produced.session.is_none());
    let body = exec::result_body(&sch.name, &produced);
    assert!(
        body.contains(":warning: The run failed: could not start an OpenCode session"),
        "{body}"
    );
    let footer = exec::result_footer(&sch, &produced);
    assert!(footer.starts_with("❌ Failed after"), "{footer}");
    assert!(
        !footer.contains("Reply in this thread"),
        "no session to continue: {footer}"
    );

    // Idle without ever answering: given up after a while, not forever.
    let oc = FakeOpenCode::default();
    let produced = exec::produce(
        &oc,
        store.as_ref(),
        &sch,
        &mut run,
        "now",
        Duration::from_secs(600),
    )
    .await;
    assert_eq!(
        produced.ending,
        Ending::Failed("OpenCode went idle without answering the prompt".into())
    );
    assert!(produced.elapsed < Duration::from_secs(60));
}

#[test]
fn long_results_split_across_posts_and_rebuild_exactly() {
    let text: String = (0..4000).map(|i| format!("line {i}\n")).collect();
    let produced = Produced {
        session: Some(Session {
            id: "ses_x".into(),
            ..Session::default()
        }),
        text: text.clone(),
        ending: Ending::Done,
        elapsed: Duration::from_secs(3),
    };
    let sch = schedule("s1", "0 9 * * *", "UTC", utc(2026, 1, 1, 0, 0));
    let limits = crate::render::Limits::new(4000);
    let posts = crate::render::layout::posts(
        &exec::result_body("big", &produced),
        &exec::result_footer(&sch, &produced),
        crate::render::MetaKind::Final,
        &limits,
    );
    assert!(posts.len() > 5);
    assert!(posts.iter().all(|p| p.chars().count() <= 4000));
    assert!(posts[0].starts_with(":bell: **Scheduled: big**\n\nline 0\n"));
    let mut rebuilt = String::new();
    for (i, p) in posts.iter().enumerate() {
        if i + 1 == posts.len() {
            rebuilt.push_str(&p[..p.rfind(crate::render::layout::SEPARATOR).unwrap()]);
        } else {
            rebuilt.push_str(p.strip_suffix(crate::render::layout::CONTINUED).unwrap());
        }
    }
    assert_eq!(rebuilt, format!(":bell: **Scheduled: big**\n\n{text}"));
}

#[test]
fn store_spellings_round_trip() {
    for s in [
        RunState::Running,
        RunState::Done,
        RunState::Failed,
        RunState::TimedOut,
        RunState::Skipped,
        RunState::Missed,
    ] {
        assert_eq!(RunState::parse(s.as_str()), Some(s));
    }
    for t in [RunTrigger::Cron, RunTrigger::Manual] {
        assert_eq!(RunTrigger::parse(t.as_str()), Some(t));
    }
    let _ = ThreadStatus::Active;
    let _: BTreeMap<(), ()> = BTreeMap::new();
}

// ---- properties -------------------------------------------------------------------------

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn field(max: u32) -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_owned()),
            (0..=max).prop_map(|n| n.to_string()),
            (0..=max, 0..=max).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
            (1..=max.max(1)).prop_map(|n| format!("*/{n}")),
            (0..=max, 0..=max).prop_map(|(a, b)| format!("{a},{b}")),
        ]
    }

    fn expr() -> impl Strategy<Value = String> {
        (field(59), field(23), field(31), field(12), field(7))
            .prop_map(|(m, h, dom, mon, dow)| format!("{m} {h} {dom} {mon} {dow}"))
    }

    fn zone() -> impl Strategy<Value = String> {
        prop_oneof![
            (0..chrono_tz::TZ_VARIANTS.len())
                .prop_map(|i| chrono_tz::TZ_VARIANTS[i].name().to_owned()),
            ".{0,40}",
        ]
    }

    /// 1970 to 2200, to the millisecond.
    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        (0i64..7_258_118_400_000).prop_map(|ms| DateTime::from_timestamp_millis(ms).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Well-formed expressions in any zone: the next run is strictly
        /// later, and following it again keeps moving forward.
        #[test]
        fn next_run_is_always_in_the_future(e in expr(), z in zone(), now in instant()) {
            if let Ok(when) = When::parse(&e, &z, now) {
                let next = when.next_after(now);
                prop_assert!(next.is_some(), "parse checked that {e} runs after {now}");
                let next = next.unwrap();
                prop_assert!(next > now, "{e} in {z}: {next} is not after {now}");
                if let Some(after) = when.next_after(next) {
                    prop_assert!(after > next);
                }
                prop_assert_eq!(next.timestamp() % 60, 0, "whole minutes only");
            }
        }

        /// Anything at all: no panic, and any run found is in the future.
        #[test]
        fn any_input_never_panics(e in "\\PC{0,60}", z in "\\PC{0,40}", now in instant()) {
            match When::parse(&e, &z, now) {
                Ok(when) => {
                    let next = when.next_after(now);
                    prop_assert!(next.is_some_and(|n| n > now));
                }
                Err(err) => prop_assert!(!err.to_string().is_empty()),
            }
            let _ = syntax::parse(&e);
        }

        /// Cron-shaped noise (digits and cron punctuation) exercises the
        /// parser's error paths harder than random text.
        #[test]
        fn cron_shaped_noise_never_panics(
            e in "[0-9*/,\\-LW#?+ ]{0,40}",
            z in zone(),
            now in instant(),
        ) {
            if let Ok(when) = When::parse(&e, &z, now) {
                prop_assert!(when.next_after(now).is_some_and(|n| n > now));
            }
        }
    }
}
