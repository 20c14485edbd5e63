//! Contract tests of merged-thread locks: the first merge wins, odd input
//! is data, and a lock survives a reopened store.

use pretty_assertions::assert_eq;

use super::*;

contract!(
    a_thread_is_locked_once_and_the_first_merge_wins,
    locks_keep_odd_input_as_data,
    locks_survive_reopening_the_store,
    concurrent_merges_of_one_thread_lock_it_once,
);

fn lock(root: &str, into: &str, by: &str, at: Millis) -> MergeLock {
    MergeLock {
        root_post_id: root.into(),
        channel_id: format!("ch_{root}"),
        into_root_post_id: into.into(),
        into_channel_id: format!("ch_{into}"),
        merged_by: by.into(),
        merged_at: at,
    }
}

async fn a_thread_is_locked_once_and_the_first_merge_wins(db: &Db) {
    let store = db.open().await;
    assert_eq!(store.thread_lock("root_a").await.unwrap(), None);
    assert!(
        store
            .lock_thread(&lock("root_a", "dest_1", "alice", 10))
            .await
            .unwrap()
    );
    assert!(
        !store
            .lock_thread(&lock("root_a", "dest_2", "bob", 20))
            .await
            .unwrap(),
        "already locked"
    );
    assert_eq!(
        store.thread_lock("root_a").await.unwrap(),
        Some(lock("root_a", "dest_1", "alice", 10)),
        "the first merge stays"
    );
    assert_eq!(
        store.thread_lock("dest_1").await.unwrap(),
        None,
        "only the source is locked"
    );
    assert!(
        store
            .lock_thread(&lock("root_b", "dest_1", "alice", 30))
            .await
            .unwrap()
    );
}

async fn locks_keep_odd_input_as_data(db: &Db) {
    let store = db.open().await;
    let odd = lock("r'; DROP TABLE merged_threads; --", "ünïcôde 🙂", "'\"", -1);
    assert!(store.lock_thread(&odd).await.unwrap());
    assert_eq!(
        store.thread_lock(&odd.root_post_id).await.unwrap(),
        Some(odd)
    );
    assert_eq!(store.thread_lock("").await.unwrap(), None);
}

async fn locks_survive_reopening_the_store(db: &Db) {
    {
        let store = db.open().await;
        assert!(
            store
                .lock_thread(&lock("root_k", "dest_k", "alice", 7))
                .await
                .unwrap()
        );
    }
    let store = db.open().await;
    assert_eq!(
        store.thread_lock("root_k").await.unwrap(),
        Some(lock("root_k", "dest_k", "alice", 7))
    );
}

async fn concurrent_merges_of_one_thread_lock_it_once(db: &Db) {
    let (a, b) = (db.open().await, db.open().await);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                store
                    .lock_thread(&lock("root_race", &format!("dest_{i}"), "alice", i))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1, "exactly one merge locks the thread");
    assert!(a.thread_lock("root_race").await.unwrap().is_some());
}
