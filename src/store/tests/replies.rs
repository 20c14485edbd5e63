//! Contract tests of reply records, channel cursors and pruning.

use pretty_assertions::assert_eq;

use super::*;

contract!(
    replies_round_trip_and_upsert,
    streaming_replies_filter_by_instance_and_state,
    cursor_never_moves_backwards,
    cursors_advanced_by_two_stores_at_once_keep_the_newest,
    finished_claims_old_offers_and_replies_are_pruned_unfinished_ones_stay,
    bad_reply_rows_are_corrupt_not_a_panic,
);

// ---- replies --------------------------------------------------------------

async fn replies_round_trip_and_upsert(db: &Db) {
    let store = db.open().await;
    assert_eq!(store.reply("s1", "m1").await.unwrap(), None);

    let mut r = reply("s1", "m1", "i1", 5);
    r.post_ids = vec![
        "a".into(),
        "with \"quotes\" and \\ and ünïcode".into(),
        "c".into(),
    ];
    store.save_reply(&r).await.unwrap();
    assert_eq!(store.reply("s1", "m1").await.unwrap(), Some(r.clone()));

    // Same key: every other field is replaced.
    r.post_ids.push("d".into());
    r.state = ReplyState::Done;
    r.instance_id = "i2".into();
    r.channel_id = "chan-2".into();
    r.root_post_id = "root-2".into();
    r.started_at = 6;
    r.pending_post_id = Some("bot:17000".into());
    store.save_reply(&r).await.unwrap();
    assert_eq!(store.reply("s1", "m1").await.unwrap(), Some(r.clone()));
    // Cleared once the post is known.
    r.pending_post_id = None;
    store.save_reply(&r).await.unwrap();
    assert_eq!(store.reply("s1", "m1").await.unwrap(), Some(r.clone()));

    // The key is the pair: other halves do not match.
    assert_eq!(store.reply("s1", "m2").await.unwrap(), None);
    assert_eq!(store.reply("s2", "m1").await.unwrap(), None);

    let empty = Reply {
        post_ids: vec![],
        ..reply("s1", "m2", "i1", 1)
    };
    store.save_reply(&empty).await.unwrap();
    assert_eq!(store.reply("s1", "m2").await.unwrap(), Some(empty));
}

async fn streaming_replies_filter_by_instance_and_state(db: &Db) {
    let store = db.open().await;
    store
        .save_reply(&reply("s1", "m3", "i1", 30))
        .await
        .unwrap();
    store
        .save_reply(&reply("s1", "m1", "i1", 10))
        .await
        .unwrap();
    store
        .save_reply(&Reply {
            state: ReplyState::Done,
            ..reply("s1", "m2", "i1", 20)
        })
        .await
        .unwrap();
    store.save_reply(&reply("s2", "m1", "i2", 1)).await.unwrap();

    let keys: Vec<(String, String)> = store
        .streaming_replies("i1")
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.session_id, r.user_message_id))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("s1".to_owned(), "m1".to_owned()),
            ("s1".to_owned(), "m3".to_owned())
        ]
    );
    assert_eq!(store.streaming_replies("i2").await.unwrap().len(), 1);
    assert_eq!(store.streaming_replies("i9").await.unwrap(), vec![]);
}

// ---- cursors --------------------------------------------------------------

async fn cursor_never_moves_backwards(db: &Db) {
    let store = db.open().await;
    assert_eq!(store.cursors().await.unwrap(), vec![]);

    store.advance_cursor("c1", 100, "mmm").await.unwrap();
    store.advance_cursor("c1", 50, "zzz").await.unwrap(); // older
    store.advance_cursor("c1", 100, "aaa").await.unwrap(); // same time, smaller id
    assert_eq!(store.cursors().await.unwrap(), vec![("c1".to_owned(), 100)]);
    assert_eq!(cursor_post(db, "c1").await, "mmm");

    store.advance_cursor("c1", 100, "mmm").await.unwrap(); // same post: no-op
    store.advance_cursor("c1", 100, "nnn").await.unwrap(); // same time, larger id
    assert_eq!(cursor_post(db, "c1").await, "nnn");

    store.advance_cursor("c1", 101, "aaa").await.unwrap(); // newer
    store.advance_cursor("c0", 7, "x").await.unwrap();
    assert_eq!(
        store.cursors().await.unwrap(),
        vec![("c0".to_owned(), 7), ("c1".to_owned(), 101)]
    );
    assert_eq!(cursor_post(db, "c1").await, "aaa");
}

/// The post id half of a cursor, which the trait does not expose.
async fn cursor_post(db: &Db, channel: &str) -> String {
    db.text(&format!(
        "SELECT post_id FROM cursors WHERE channel_id = '{channel}'"
    ))
    .await
}

/// Two agents advance one cursor at once, in opposite orders: it ends at
/// the newest post whatever the interleaving (the compare and the set are
/// one statement).
async fn cursors_advanced_by_two_stores_at_once_keep_the_newest(db: &Db) {
    let (a, b) = (db.open().await, db.open().await);
    let posts: Vec<(Millis, String)> = (0..100).map(|i| (i / 2, format!("p{i:03}"))).collect();
    let forward = {
        let (a, posts) = (Arc::clone(&a), posts.clone());
        tokio::spawn(async move {
            for (at, post) in &posts {
                a.advance_cursor("c1", *at, post).await.unwrap();
            }
        })
    };
    let backward = {
        let (b, posts) = (Arc::clone(&b), posts.clone());
        tokio::spawn(async move {
            for (at, post) in posts.iter().rev() {
                b.advance_cursor("c1", *at, post).await.unwrap();
            }
        })
    };
    forward.await.unwrap();
    backward.await.unwrap();
    assert_eq!(a.cursors().await.unwrap(), vec![("c1".to_owned(), 49)]);
    assert_eq!(cursor_post(db, "c1").await, "p099");
}

async fn finished_claims_old_offers_and_replies_are_pruned_unfinished_ones_stay(db: &Db) {
    let s = db.open().await;
    let day: Millis = 24 * 60 * 60 * 1000;
    let now = now_millis();
    let old = now - 8 * day;
    for (post, state, at) in [
        ("old-done", ClaimState::Done, old),
        ("old-failed", ClaimState::Failed, old),
        ("old-open", ClaimState::Claimed, old),
        ("old-offer", ClaimState::Missed, old),
        ("new-done", ClaimState::Done, now),
        ("new-offer", ClaimState::Missed, now),
    ] {
        assert!(s.claim_post(post, "i1", at).await.unwrap());
        let mut claim = s.claim(post).await.unwrap().unwrap();
        claim.state = state;
        s.update_claim(&claim).await.unwrap();
    }
    let mut done_old = reply("ses", "m-old", "i1", old);
    done_old.state = ReplyState::Done;
    let streaming_old = reply("ses", "m-streaming", "i1", old);
    let mut done_new = reply("ses", "m-new", "i1", now);
    done_new.state = ReplyState::Done;
    for r in [&done_old, &streaming_old, &done_new] {
        s.save_reply(r).await.unwrap();
    }

    let pruned = s.prune(now - KEEP_FINISHED_MS).await.unwrap();
    assert_eq!(
        pruned,
        Pruned {
            claims: 3,
            replies: 1
        }
    );
    for (post, kept) in [
        ("old-done", false),
        ("old-failed", false),
        ("old-open", true),
        ("old-offer", false),
        ("new-done", true),
        ("new-offer", true),
    ] {
        assert_eq!(s.claim(post).await.unwrap().is_some(), kept, "{post}");
    }
    assert!(s.reply("ses", "m-old").await.unwrap().is_none());
    assert!(s.reply("ses", "m-streaming").await.unwrap().is_some());
    assert!(s.reply("ses", "m-new").await.unwrap().is_some());
    // Again: nothing more to prune.
    assert_eq!(
        s.prune(now - KEEP_FINISHED_MS).await.unwrap(),
        Pruned::default()
    );
}

/// Rows another program wrote with values this build cannot read: an
/// error that says what to do, never a panic.
async fn bad_reply_rows_are_corrupt_not_a_panic(db: &Db) {
    let store = db.open().await;
    db.exec(
        "INSERT INTO replies VALUES ('s', 'bad-ids', 'i2', 'c', 'r', '[1, 2]', 1, 'streaming', NULL);
         INSERT INTO replies VALUES ('s', 'bad-state', 'i3', 'c', 'r', '[]', 1, 'STREAMING', NULL);
         INSERT INTO claims (post_id, instance_id, claimed_at, state)
             VALUES ('bad-state', 'i1', 1, 'bogus');",
    )
    .await;
    let corrupt = |r: Result<(), StoreError>, what: &str| match r {
        Err(StoreError::Corrupt(m)) => m,
        other => panic!("{what}: expected Corrupt, got {other:?}"),
    };
    let m = corrupt(store.reply("s", "bad-ids").await.map(|_| ()), "reply ids");
    assert!(m.contains("post_ids"), "{m}");
    corrupt(
        store.streaming_replies("i2").await.map(|_| ()),
        "streaming replies",
    );
    let m = corrupt(
        store.reply("s", "bad-state").await.map(|_| ()),
        "reply state",
    );
    assert!(m.contains("STREAMING"), "{m}");
    let m = corrupt(store.claim("bad-state").await.map(|_| ()), "claim state");
    assert!(m.contains("bogus"), "{m}");
    corrupt(
        store.unfinished_claims("i1").await.map(|_| ()),
        "unfinished claims",
    );
    let err = store.claim("bad-state").await.unwrap_err().to_string();
    assert!(err.contains("restore a backup"), "{err}");
}
