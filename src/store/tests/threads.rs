//! Contract tests of thread bindings and channel selections.

use pretty_assertions::assert_eq;

use super::*;

contract!(
    threads_round_trip_and_filter,
    binding_a_thread_twice,
    a_thread_bound_by_two_stores_at_once_answers_one_session,
    thread_status_and_model,
    a_thread_can_be_pointed_at_another_session,
    channel_selection_set_replace_and_clear,
    a_bad_thread_status_is_corrupt_not_a_panic,
);

// ---- threads --------------------------------------------------------------

async fn threads_round_trip_and_filter(db: &Db) {
    let store = db.open().await;
    assert_eq!(store.thread("nope").await.unwrap(), None);

    let t1 = ThreadBinding {
        model: Some("anthropic/claude-sonnet".into()),
        ..binding("r1", "s1", "i1", 300)
    };
    let t2 = binding("r2", "s1", "i2", 100);
    let t3 = ThreadBinding {
        status: ThreadStatus::Ended,
        ..binding("r3", "s2", "i1", 200)
    };
    for t in [&t1, &t2, &t3] {
        store.bind_thread(t).await.unwrap();
    }

    assert_eq!(store.thread("r1").await.unwrap(), Some(t1.clone()));
    assert_eq!(store.thread("r3").await.unwrap(), Some(t3.clone()));
    assert_eq!(
        store.threads_of_session("s1").await.unwrap(),
        vec![t2.clone(), t1.clone()],
        "oldest first"
    );
    assert_eq!(
        store.threads_of_instance("i1").await.unwrap(),
        vec![t3.clone(), t1.clone()]
    );
    assert_eq!(store.threads_of_session("none").await.unwrap(), vec![]);
    assert_eq!(
        store.threads().await.unwrap(),
        vec![t2.clone(), t3.clone(), t1.clone()],
        "every instance's, oldest first"
    );
}

async fn binding_a_thread_twice(db: &Db) {
    let store = db.open().await;
    let first = binding("r1", "s1", "i1", 1);
    store.bind_thread(&first).await.unwrap();

    // Same session again: accepted, the first row stays.
    let again = binding("r1", "s1", "i2", 2);
    store.bind_thread(&again).await.unwrap();
    assert_eq!(store.thread("r1").await.unwrap(), Some(first.clone()));

    // Another session: refused, nothing changes.
    let err = store
        .bind_thread(&binding("r1", "s2", "i1", 3))
        .await
        .unwrap_err();
    match &err {
        StoreError::Conflict(m) => {
            assert!(m.contains("r1") && m.contains("s1") && m.contains("s2"))
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.thread("r1").await.unwrap(), Some(first));
}

/// Two agents bind one thread to different sessions at once, 100 times:
/// one wins, the other is told the thread answers to another session.
async fn a_thread_bound_by_two_stores_at_once_answers_one_session(db: &Db) {
    let (a, b) = (db.open().await, db.open().await);
    for round in 0..100 {
        let root = format!("race-{round}");
        let (first, second) = (
            binding(&root, "s-a", "i1", 1),
            binding(&root, "s-b", "i2", 2),
        );
        let (ra, rb) = tokio::join!(a.bind_thread(&first), b.bind_thread(&second));
        let bound = a.thread(&root).await.unwrap().unwrap().session_id;
        let (won, lost) = if bound == "s-a" { (ra, rb) } else { (rb, ra) };
        assert!(won.is_ok(), "{round}: {won:?}");
        assert!(
            matches!(lost, Err(StoreError::Conflict(_))),
            "{round}: {lost:?}"
        );
    }
}

async fn thread_status_and_model(db: &Db) {
    let store = db.open().await;
    store
        .bind_thread(&binding("r1", "s1", "i1", 1))
        .await
        .unwrap();

    store
        .set_thread_status("r1", ThreadStatus::Ended)
        .await
        .unwrap();
    store
        .set_thread_model("r1", Some("openai/gpt-5"))
        .await
        .unwrap();
    let t = store.thread("r1").await.unwrap().unwrap();
    assert_eq!(t.status, ThreadStatus::Ended);
    assert_eq!(t.model.as_deref(), Some("openai/gpt-5"));

    store
        .set_thread_status("r1", ThreadStatus::Active)
        .await
        .unwrap();
    store.set_thread_model("r1", None).await.unwrap();
    let t = store.thread("r1").await.unwrap().unwrap();
    assert_eq!(t.status, ThreadStatus::Active);
    assert_eq!(t.model, None);

    assert!(matches!(
        store.set_thread_status("zz", ThreadStatus::Ended).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.set_thread_model("zz", Some("a/b")).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn a_thread_can_be_pointed_at_another_session(db: &Db) {
    let store = db.open().await;
    store
        .bind_thread(&binding("r1", "s1", "i1", 1))
        .await
        .unwrap();
    store
        .set_thread_status("r1", ThreadStatus::Ended)
        .await
        .unwrap();
    store.set_thread_session("r1", "s2").await.unwrap();
    let thread = store.thread("r1").await.unwrap().unwrap();
    assert_eq!(thread.session_id, "s2");
    assert_eq!(thread.status, ThreadStatus::Active);
    assert!(store.threads_of_session("s1").await.unwrap().is_empty());
    assert!(matches!(
        store.set_thread_session("nope", "s2").await,
        Err(StoreError::NotFound(_))
    ));
}

async fn channel_selection_set_replace_and_clear(db: &Db) {
    let store = db.open().await;
    assert_eq!(store.selection("dm").await.unwrap(), None);
    store.select_thread("dm", Some("r1"), 1).await.unwrap();
    store.select_thread("dm", Some("r2"), 2).await.unwrap();
    store.select_thread("other", Some("r9"), 2).await.unwrap();
    assert_eq!(store.selection("dm").await.unwrap().as_deref(), Some("r2"));
    store.select_thread("dm", None, 3).await.unwrap();
    assert_eq!(store.selection("dm").await.unwrap(), None);
    assert_eq!(
        store.selection("other").await.unwrap().as_deref(),
        Some("r9")
    );
    // Clearing what is not set is fine.
    store.select_thread("dm", None, 4).await.unwrap();
}

async fn a_bad_thread_status_is_corrupt_not_a_panic(db: &Db) {
    let store = db.open().await;
    db.exec("INSERT INTO threads VALUES ('bad-status', 'c', 's', 'i1', 'u', 1, 'paused', NULL)")
        .await;
    let corrupt = |r: Result<(), StoreError>| match r {
        Err(StoreError::Corrupt(m)) => m,
        other => panic!("expected Corrupt, got {other:?}"),
    };
    let m = corrupt(store.thread("bad-status").await.map(|_| ()));
    assert!(m.contains("paused"), "{m}");
    corrupt(store.threads_of_instance("i1").await.map(|_| ()));
    corrupt(store.threads_of_session("s").await.map(|_| ()));
    corrupt(store.threads().await.map(|_| ()));
}
