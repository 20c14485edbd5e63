//! Contract tests of session monitors: upserts, removal, odd input, and
//! surviving a reopened store.

use pretty_assertions::assert_eq;

use super::*;

contract!(
    monitors_round_trip_upsert_and_remove,
    monitors_keep_odd_input_as_data,
    monitors_survive_reopening_the_store,
);

// ---- monitors -------------------------------------------------------------

fn monitor(session: &str, target: &str, persistent: bool, created_at: Millis) -> MonitorRow {
    MonitorRow {
        session_id: session.into(),
        target_user_id: target.into(),
        persistent,
        created_at,
        last_alert: None,
    }
}

async fn monitors_round_trip_upsert_and_remove(db: &Db) {
    let store = db.open().await;
    assert!(store.monitors().await.unwrap().is_empty());
    assert!(store.monitors_of("ses_1").await.unwrap().is_empty());

    store
        .add_monitor(&monitor("ses_1", "bob", true, 1))
        .await
        .unwrap();
    store
        .add_monitor(&monitor("ses_1", "alice", false, 2))
        .await
        .unwrap();
    store
        .add_monitor(&monitor("ses_2", "alice", true, 3))
        .await
        .unwrap();
    let of_1 = store.monitors_of("ses_1").await.unwrap();
    assert_eq!(
        of_1,
        vec![
            monitor("ses_1", "alice", false, 2),
            monitor("ses_1", "bob", true, 1)
        ],
        "by target"
    );
    let all: Vec<(String, String)> = store
        .monitors()
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.session_id, m.target_user_id))
        .collect();
    assert_eq!(
        all,
        vec![
            ("ses_1".to_owned(), "alice".to_owned()),
            ("ses_1".to_owned(), "bob".to_owned()),
            ("ses_2".to_owned(), "alice".to_owned()),
        ]
    );

    // The alert key is recorded per target.
    store
        .set_monitor_alert("ses_1", "alice", "permission:per_1")
        .await
        .unwrap();
    let of_1 = store.monitors_of("ses_1").await.unwrap();
    assert_eq!(of_1[0].last_alert.as_deref(), Some("permission:per_1"));
    assert_eq!(of_1[1].last_alert, None);

    // Adding again replaces the kind and forgets what was alerted.
    store
        .add_monitor(&monitor("ses_1", "alice", true, 9))
        .await
        .unwrap();
    let of_1 = store.monitors_of("ses_1").await.unwrap();
    assert_eq!(of_1[0], monitor("ses_1", "alice", true, 9));
    assert_eq!(store.monitors().await.unwrap().len(), 3, "no duplicate row");

    // Remove one target, then all of a session; counts say what went.
    assert_eq!(
        store.remove_monitors("ses_1", Some("bob")).await.unwrap(),
        1
    );
    assert_eq!(
        store.remove_monitors("ses_1", Some("bob")).await.unwrap(),
        0
    );
    store
        .add_monitor(&monitor("ses_1", "carol", true, 10))
        .await
        .unwrap();
    assert_eq!(store.remove_monitors("ses_1", None).await.unwrap(), 2);
    assert!(store.monitors_of("ses_1").await.unwrap().is_empty());
    assert_eq!(store.remove_monitors("ses_1", None).await.unwrap(), 0);
    assert_eq!(store.monitors().await.unwrap().len(), 1, "ses_2 stays");

    // Recording an alert for a monitor that is gone says so.
    assert!(matches!(
        store.set_monitor_alert("ses_1", "alice", "idle:1").await,
        Err(StoreError::NotFound(_))
    ));
}

async fn monitors_keep_odd_input_as_data(db: &Db) {
    let store = db.open().await;
    let odd = [
        "",
        "'; DROP TABLE monitors; --",
        "ses_%",
        "ünïcödé 🔔",
        "line\nbreak",
        "tab\there",
    ];
    for (i, text) in odd.iter().enumerate() {
        let mut m = monitor(text, text, i % 2 == 0, i as Millis);
        m.last_alert = Some((*text).to_owned());
        store.add_monitor(&m).await.unwrap();
        let back = store.monitors_of(text).await.unwrap();
        assert_eq!(back, vec![m], "{text:?}");
    }
    assert_eq!(store.monitors().await.unwrap().len(), odd.len());
    // A LIKE-style pattern matches only itself.
    assert_eq!(store.remove_monitors("ses_%", None).await.unwrap(), 1);
    assert_eq!(
        store
            .remove_monitors("'; DROP TABLE monitors; --", Some("x"))
            .await
            .unwrap(),
        0
    );
    store
        .set_monitor_alert("line\nbreak", "line\nbreak", &"k".repeat(100_000))
        .await
        .unwrap();
    let long = store.monitors_of("line\nbreak").await.unwrap();
    assert_eq!(long[0].last_alert.as_ref().map(String::len), Some(100_000));
    assert_eq!(store.monitors().await.unwrap().len(), odd.len() - 1);
}

async fn monitors_survive_reopening_the_store(db: &Db) {
    {
        let store = db.open().await;
        store
            .add_monitor(&monitor("ses_1", "alice", true, 5))
            .await
            .unwrap();
        store
            .set_monitor_alert("ses_1", "alice", "question:que_1")
            .await
            .unwrap();
    }
    let store = db.open().await;
    let back = store.monitors_of("ses_1").await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].last_alert.as_deref(), Some("question:que_1"));
    assert!(back[0].persistent);
}
