//! Contract tests of schedules and their runs: names, claims, overlaps, and
//! exactly-once runs raced between stores on one database.

use std::collections::HashMap;

use pretty_assertions::assert_eq;
use tokio::task::JoinSet;

use super::*;

contract!(
    schedules_round_trip_and_names_are_unique,
    schedule_runs_claim_update_and_overlap,
    corrupt_schedule_rows_are_errors_not_panics,
    schedule_runs_are_exactly_once_across_stores,
    overlapping_runs_claimed_by_two_stores_at_once_run_one,
);

// ---- schedules and their runs -------------------------------------------------

fn schedule(id: &str, name: &str) -> Schedule {
    Schedule {
        id: id.into(),
        name: name.into(),
        cron: "0 9 * * 1-5".into(),
        timezone: "America/New_York".into(),
        prompt: "Summarise the open PRs".into(),
        target_user_id: "user-1".into(),
        agent: Some("plan".into()),
        model: None,
        directory: "/src/project".into(),
        enabled: true,
        created_by: "user-1".into(),
        created_at: 10,
        active_since: 10,
    }
}

fn run(schedule_id: &str, at: Millis, instance: &str, state: RunState) -> ScheduleRun {
    ScheduleRun {
        schedule_id: schedule_id.into(),
        scheduled_at: at,
        trigger: RunTrigger::Cron,
        instance_id: instance.into(),
        claimed_at: at,
        deadline_at: at + 100_000,
        state,
        session_id: None,
        finished_at: None,
        detail: None,
        post_id: None,
    }
}

async fn schedules_round_trip_and_names_are_unique(db: &Db) {
    let store = db.open().await;
    assert_eq!(store.schedules().await.unwrap(), vec![]);
    let b = schedule("s-b", "beta");
    let a = Schedule {
        model: Some("p/m".into()),
        agent: None,
        ..schedule("s-a", "alpha")
    };
    store.add_schedule(&b).await.unwrap();
    store.add_schedule(&a).await.unwrap();
    assert_eq!(store.schedules().await.unwrap(), vec![a.clone(), b.clone()]);
    assert_eq!(
        store.schedule_by_name("beta").await.unwrap(),
        Some(b.clone())
    );
    assert_eq!(store.schedule_by_name("gamma").await.unwrap(), None);

    let err = store
        .add_schedule(&schedule("s-c", "alpha"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(ref m) if m.contains("alpha")),
        "{err:?}"
    );

    // Disabling keeps `active_since`; enabling a disabled one moves it.
    store.set_schedule_enabled("s-a", false, 50).await.unwrap();
    let got = store.schedule_by_name("alpha").await.unwrap().unwrap();
    assert_eq!((got.enabled, got.active_since), (false, 10));
    store.set_schedule_enabled("s-a", true, 60).await.unwrap();
    store.set_schedule_enabled("s-a", true, 70).await.unwrap();
    let got = store.schedule_by_name("alpha").await.unwrap().unwrap();
    assert_eq!((got.enabled, got.active_since), (true, 60));
    assert!(matches!(
        store.set_schedule_enabled("nope", true, 1).await,
        Err(StoreError::NotFound(_))
    ));

    // Removing a schedule removes its runs.
    assert_eq!(
        store
            .claim_schedule_run(&run("s-a", 60_000, "i1", RunState::Done))
            .await
            .unwrap(),
        RunClaim::Won
    );
    assert_eq!(store.last_cron_run_at("s-a").await.unwrap(), Some(60_000));
    store.remove_schedule("s-a").await.unwrap();
    assert_eq!(store.schedule_runs("s-a", 10).await.unwrap(), vec![]);
    assert_eq!(store.last_cron_run_at("s-a").await.unwrap(), None);
    assert!(matches!(
        store.remove_schedule("s-a").await,
        Err(StoreError::NotFound(_))
    ));
}

async fn schedule_runs_claim_update_and_overlap(db: &Db) {
    let store = db.open().await;
    store.add_schedule(&schedule("s1", "one")).await.unwrap();

    let first = run("s1", 60_000, "i1", RunState::Running);
    assert_eq!(
        store.claim_schedule_run(&first).await.unwrap(),
        RunClaim::Won
    );
    assert_eq!(
        store.claim_schedule_run(&first).await.unwrap(),
        RunClaim::Taken
    );
    // The next time while the first still runs: recorded as skipped.
    let second = run("s1", 120_000, "i2", RunState::Running);
    let claim = store.claim_schedule_run(&second).await.unwrap();
    assert_eq!(claim, RunClaim::Overlap(first.clone()));
    let runs = store.schedule_runs("s1", 10).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].state, RunState::Skipped);
    assert!(runs[0].detail.as_deref().unwrap().contains("still going"));
    assert_eq!(runs[0].finished_at, Some(120_000));

    // Past its deadline a running row no longer blocks.
    let late = ScheduleRun {
        claimed_at: 160_001,
        ..run("s1", 180_000, "i2", RunState::Running)
    };
    assert_eq!(
        store.claim_schedule_run(&late).await.unwrap(),
        RunClaim::Won
    );

    // Manual runs do not move the cron cursor.
    let manual = ScheduleRun {
        trigger: RunTrigger::Manual,
        ..run("s1", 200_001, "i1", RunState::Done)
    };
    store.claim_schedule_run(&manual).await.unwrap();
    assert_eq!(store.last_cron_run_at("s1").await.unwrap(), Some(180_000));

    let mut done = late.clone();
    done.state = RunState::Done;
    done.session_id = Some("ses_1".into());
    done.post_id = Some("post_1".into());
    done.finished_at = Some(190_000);
    store.update_schedule_run(&done).await.unwrap();
    let got = store.schedule_runs("s1", 2).await.unwrap();
    assert_eq!(
        got,
        vec![manual.clone(), done.clone()],
        "newest first, limited"
    );
    assert!(matches!(
        store
            .update_schedule_run(&run("s1", 1, "i1", RunState::Done))
            .await,
        Err(StoreError::NotFound(_))
    ));

    // A restarted instance fails only its own running rows.
    store
        .claim_schedule_run(&run("s1", 240_000, "i1", RunState::Running))
        .await
        .unwrap();
    assert_eq!(store.fail_running_runs("i2", 9, "gone").await.unwrap(), 0);
    assert_eq!(store.fail_running_runs("i1", 9, "gone").await.unwrap(), 2);
    let states: Vec<RunState> = store
        .schedule_runs("s1", 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.state)
        .collect();
    assert!(!states.contains(&RunState::Running), "{states:?}");

    // Disabled or removed schedules take no cron runs; disabled ones still
    // take manual runs.
    store.set_schedule_enabled("s1", false, 1).await.unwrap();
    assert_eq!(
        store
            .claim_schedule_run(&run("s1", 300_000, "i1", RunState::Running))
            .await
            .unwrap(),
        RunClaim::Inactive
    );
    let manual = ScheduleRun {
        trigger: RunTrigger::Manual,
        ..run("s1", 300_001, "i1", RunState::Running)
    };
    assert_eq!(
        store.claim_schedule_run(&manual).await.unwrap(),
        RunClaim::Won
    );
    assert_eq!(
        store
            .claim_schedule_run(&run("ghost", 1, "i1", RunState::Running))
            .await
            .unwrap(),
        RunClaim::Inactive
    );
}

async fn corrupt_schedule_rows_are_errors_not_panics(db: &Db) {
    let store = db.open().await;
    store.add_schedule(&schedule("s1", "one")).await.unwrap();
    db.exec(
        "INSERT INTO schedule_runs VALUES ('s1', 1, 'sometimes', 'i', 1, 2, 'done', NULL, NULL, NULL, NULL);
         INSERT INTO schedule_runs VALUES ('s1', 2, 'cron', 'i', 1, 2, 'exploded', NULL, NULL, NULL, NULL);",
    )
    .await;
    match store.schedule_runs("s1", 10).await {
        Err(StoreError::Corrupt(m)) => {
            assert!(m.contains("exploded") || m.contains("sometimes"), "{m}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// Agents with stores of their own race to claim the same scheduled times;
/// each time must be won exactly once.
async fn schedule_runs_are_exactly_once_across_stores(db: &Db) {
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(db.open().await);
    }
    stores[0]
        .add_schedule(&schedule("s1", "one"))
        .await
        .unwrap();
    let mut tasks = JoinSet::new();
    for minute in 0..200i64 {
        for (n, store) in stores.iter().enumerate() {
            let store = Arc::clone(store);
            tasks.spawn(async move {
                let r = run("s1", minute * 60_000, &format!("i{n}"), RunState::Done);
                (minute, store.claim_schedule_run(&r).await.unwrap())
            });
        }
    }
    let mut won: HashMap<i64, usize> = HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (minute, claim) = joined.unwrap();
        if claim == RunClaim::Won {
            *won.entry(minute).or_default() += 1;
        } else {
            assert_eq!(claim, RunClaim::Taken);
        }
    }
    assert_eq!(won.len(), 200);
    assert!(won.values().all(|&n| n == 1), "{won:?}");
}

/// Two agents claim *different* times of one schedule at once, both as
/// `Running`, 200 times: one runs and the other is recorded as skipped,
/// never both running (each must see the other's claim).
async fn overlapping_runs_claimed_by_two_stores_at_once_run_one(db: &Db) {
    let (a, b) = (db.open().await, db.open().await);
    for round in 0..200 {
        let id = format!("s{round}");
        a.add_schedule(&schedule(&id, &format!("sched-{round}")))
            .await
            .unwrap();
        let (first, second) = (
            run(&id, 60_000, "i1", RunState::Running),
            run(&id, 120_000, "i2", RunState::Running),
        );
        let (ra, rb) = tokio::join!(a.claim_schedule_run(&first), b.claim_schedule_run(&second));
        let mut outcomes = [ra.unwrap(), rb.unwrap()];
        outcomes.sort_by_key(|c| matches!(c, RunClaim::Overlap(_)));
        assert_eq!(outcomes[0], RunClaim::Won, "round {round}");
        assert!(
            matches!(outcomes[1], RunClaim::Overlap(_)),
            "round {round}: {outcomes:?}"
        );
        let running = a
            .schedule_runs(&id, 10)
            .await
            .unwrap()
            .iter()
            .filter(|r| r.state == RunState::Running)
            .count();
        assert_eq!(running, 1, "round {round}");
    }
}
