//! The scheduler loop's passes with a hand-set clock: on-time runs, overlap,
//! missed runs and the grace window, disabled and removed schedules,
//! exactly-once with two schedulers on one database file, and the stored
//! spellings of run states and triggers.

use std::collections::{BTreeMap, HashMap};

use pretty_assertions::assert_eq;

use super::*;
use crate::store::ThreadStatus;

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
