//! Contract tests of instances and claims, including exactly-once claims
//! and taken offers raced between stores on one database (two connections
//! on SQLite, two pools on PostgreSQL).

use std::collections::HashMap;

use pretty_assertions::assert_eq;
use tokio::task::JoinSet;

use super::*;

contract!(
    instances_register_upsert_and_heartbeat,
    instances_offline_too_long_are_pruned,
    claims_round_trip,
    unfinished_claims_filter_by_instance_and_state,
    a_missed_post_is_taken_once_by_its_own_instance,
    an_offline_instances_claims_are_abandoned_once,
    abandoned_claims_raced_by_two_stores_are_each_failed_once,
    missed_posts_raced_by_two_stores_are_each_taken_once,
    claims_are_exactly_once_across_two_stores,
    claims_are_exactly_once_across_four_stores,
    a_pid_out_of_range_is_corrupt_not_a_panic,
);

// ---- instances ------------------------------------------------------------

async fn instances_register_upsert_and_heartbeat(db: &Db) {
    let store = db.open().await;
    assert_eq!(store.instances().await.unwrap(), vec![]);

    let mut a = instance("a", 20);
    let b = Instance {
        owner_user_id: None,
        pid: u32::MAX,
        ..instance("b", 10)
    };
    store.register_instance(&a).await.unwrap();
    store.register_instance(&b).await.unwrap();
    assert_eq!(
        store.instances().await.unwrap(),
        vec![b.clone(), a.clone()],
        "ordered by start time"
    );

    // Re-registering overwrites every field.
    a.host = "other".into();
    a.directory = "/elsewhere".into();
    a.owner_user_id = None;
    a.pid = 7;
    a.started_at = 30;
    a.heartbeat_at = 31;
    store.register_instance(&a).await.unwrap();
    assert_eq!(store.instances().await.unwrap(), vec![b.clone(), a.clone()]);

    store.heartbeat("a", 99).await.unwrap();
    let got = store.instances().await.unwrap();
    assert_eq!(got[1].heartbeat_at, 99);
    assert_eq!(got[1].started_at, 30);

    let err = store.heartbeat("ghost", 1).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound(ref m) if m.contains("ghost")),
        "{err}"
    );
}

async fn instances_offline_too_long_are_pruned(db: &Db) {
    let store = db.open().await;
    let (old, fresh) = (instance("old", 1), instance("fresh", 2));
    store.register_instance(&old).await.unwrap();
    store.register_instance(&fresh).await.unwrap();
    store.heartbeat("old", 100).await.unwrap();
    store.heartbeat("fresh", 200).await.unwrap();
    assert_eq!(
        store.prune_instances(100).await.unwrap(),
        0,
        "at the bound stays"
    );
    assert_eq!(store.prune_instances(150).await.unwrap(), 1);
    let left: Vec<String> = store
        .instances()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(left, vec!["fresh".to_owned()]);
}

// ---- claims ---------------------------------------------------------------

async fn claims_round_trip(db: &Db) {
    let store = db.open().await;
    assert_eq!(store.claim("p1").await.unwrap(), None);

    assert!(store.claim_post("p1", "i1", 10).await.unwrap());
    assert!(
        !store.claim_post("p1", "i1", 11).await.unwrap(),
        "same instance again"
    );
    assert!(
        !store.claim_post("p1", "i2", 12).await.unwrap(),
        "another instance"
    );

    let fresh = Claim {
        post_id: "p1".into(),
        instance_id: "i1".into(),
        claimed_at: 10,
        state: ClaimState::Claimed,
        session_id: None,
        message_id: None,
        root_post_id: None,
        channel_id: None,
    };
    assert_eq!(store.claim("p1").await.unwrap(), Some(fresh.clone()));

    for state in [
        ClaimState::Prompted,
        ClaimState::Done,
        ClaimState::Failed,
        ClaimState::Missed,
    ] {
        let updated = Claim {
            state,
            session_id: Some("s1".into()),
            message_id: Some("msg_1".into()),
            root_post_id: Some("r1".into()),
            channel_id: Some("c1".into()),
            ..fresh.clone()
        };
        store.update_claim(&updated).await.unwrap();
        assert_eq!(store.claim("p1").await.unwrap(), Some(updated));
    }

    // Owner and claim time are not the caller's to rewrite.
    let hijack = Claim {
        instance_id: "i2".into(),
        claimed_at: 99,
        ..fresh.clone()
    };
    store.update_claim(&hijack).await.unwrap();
    let got = store.claim("p1").await.unwrap().unwrap();
    assert_eq!((got.instance_id.as_str(), got.claimed_at), ("i1", 10));

    let ghost = Claim {
        post_id: "never".into(),
        ..fresh
    };
    assert!(matches!(
        store.update_claim(&ghost).await,
        Err(StoreError::NotFound(ref m)) if m.contains("never")
    ));
}

async fn unfinished_claims_filter_by_instance_and_state(db: &Db) {
    let store = db.open().await;
    // Claimed out of time order to check the sorting.
    for (post, inst, at) in [
        ("p3", "i1", 30),
        ("p1", "i1", 10),
        ("p2", "i1", 20),
        ("p4", "i1", 40),
        ("p5", "i1", 50),
        ("q1", "i2", 5),
    ] {
        assert!(store.claim_post(post, inst, at).await.unwrap());
    }
    let set = |post: &str, state| {
        let store = store.clone();
        let post = post.to_owned();
        async move {
            let mut c = store.claim(&post).await.unwrap().unwrap();
            c.state = state;
            store.update_claim(&c).await.unwrap();
        }
    };
    set("p2", ClaimState::Prompted).await;
    set("p4", ClaimState::Done).await;
    set("p5", ClaimState::Failed).await;

    let got: Vec<(String, ClaimState)> = store
        .unfinished_claims("i1")
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.post_id, c.state))
        .collect();
    assert_eq!(
        got,
        vec![
            ("p1".to_owned(), ClaimState::Claimed),
            ("p2".to_owned(), ClaimState::Prompted),
            ("p3".to_owned(), ClaimState::Claimed),
        ]
    );
    assert_eq!(store.unfinished_claims("i2").await.unwrap().len(), 1);
    assert_eq!(store.unfinished_claims("i3").await.unwrap(), vec![]);
}

async fn an_offline_instances_claims_are_abandoned_once(db: &Db) {
    let store = db.open().await;
    store.register_instance(&instance("i1", 100)).await.unwrap();
    store.register_instance(&instance("i2", 100)).await.unwrap();
    store.heartbeat("i2", 10_000).await.unwrap();
    for (post, owner, state) in [
        ("p1", "i1", ClaimState::Claimed),
        ("p2", "i1", ClaimState::Prompted),
        ("p3", "i1", ClaimState::Done),
        ("p4", "i1", ClaimState::Missed),
        ("p5", "i2", ClaimState::Prompted),
    ] {
        assert!(store.claim_post(post, owner, 10).await.unwrap());
        let mut claim = store.claim(post).await.unwrap().unwrap();
        claim.state = state;
        store.update_claim(&claim).await.unwrap();
    }
    assert!(
        !store.abandon_claim("p1", "i1", 50).await.unwrap(),
        "i1 beat at 100, after the cut-off: still online"
    );
    assert!(store.abandon_claim("p1", "i1", 5_000).await.unwrap());
    assert!(
        !store.abandon_claim("p1", "i1", 5_000).await.unwrap(),
        "abandoned once only"
    );
    assert!(store.abandon_claim("p2", "i1", 5_000).await.unwrap());
    assert!(
        !store.abandon_claim("p3", "i1", 5_000).await.unwrap(),
        "done"
    );
    assert!(
        !store.abandon_claim("p4", "i1", 5_000).await.unwrap(),
        "an offer"
    );
    assert!(
        !store.abandon_claim("p5", "i2", 5_000).await.unwrap(),
        "online"
    );
    assert!(
        !store.abandon_claim("p5", "i1", 5_000).await.unwrap(),
        "not i1's"
    );
    assert!(!store.abandon_claim("never", "i1", 5_000).await.unwrap());
    for post in ["p1", "p2"] {
        let claim = store.claim(post).await.unwrap().unwrap();
        assert_eq!(
            (claim.state, claim.instance_id.as_str()),
            (ClaimState::Failed, "i1")
        );
    }
    let open: Vec<String> = store
        .unfinished_claims("i1")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.post_id)
        .collect();
    assert_eq!(open, vec!["p4".to_owned()], "a restart of i1 runs neither");
}

/// Two live agents sweep the same offline instance at once: each of its
/// claims is failed (and so told about) exactly once.
async fn abandoned_claims_raced_by_two_stores_are_each_failed_once(db: &Db) {
    const CLAIMS: usize = 200;
    let stores = [db.open().await, db.open().await];
    stores[0]
        .register_instance(&instance("gone", 100))
        .await
        .unwrap();
    let posts: Vec<String> = (0..CLAIMS).map(|i| format!("orphan-{i:03}")).collect();
    for post in &posts {
        assert!(stores[0].claim_post(post, "gone", 10).await.unwrap());
    }
    let mut tasks = JoinSet::new();
    for post in &posts {
        for store in &stores {
            let (store, post) = (Arc::clone(store), post.clone());
            tasks.spawn(async move {
                let won = store.abandon_claim(&post, "gone", 5_000).await.unwrap();
                (post, won)
            });
        }
    }
    let mut won: HashMap<String, usize> = HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (post, first) = joined.unwrap();
        *won.entry(post).or_default() += usize::from(first);
    }
    assert_eq!(won.len(), CLAIMS);
    assert!(won.values().all(|n| *n == 1), "{won:?}");
}

async fn a_missed_post_is_taken_once_by_its_own_instance(db: &Db) {
    let store = db.open().await;
    assert!(store.claim_post("p1", "i1", 10).await.unwrap());
    assert!(
        !store.take_missed("p1", "i1").await.unwrap(),
        "a plain claim is not an offer"
    );
    let mut claim = store.claim("p1").await.unwrap().unwrap();
    claim.state = ClaimState::Missed;
    claim.message_id = Some("notice1".into());
    claim.channel_id = Some("c1".into());
    store.update_claim(&claim).await.unwrap();
    // Still waiting after a restart: listed with its notice.
    let open = store.unfinished_claims("i1").await.unwrap();
    assert_eq!(open, vec![claim.clone()]);

    assert!(
        !store.take_missed("p1", "i2").await.unwrap(),
        "another instance's offer"
    );
    assert!(store.take_missed("p1", "i1").await.unwrap());
    assert!(
        !store.take_missed("p1", "i1").await.unwrap(),
        "taken once only"
    );
    assert!(!store.take_missed("never", "i1").await.unwrap());
    let taken = store.claim("p1").await.unwrap().unwrap();
    assert_eq!(
        (taken.state, taken.message_id, taken.channel_id),
        (ClaimState::Claimed, None, Some("c1".into()))
    );
}

/// Two stores race to take the same offers, post by post: each offer is
/// taken exactly once, and only by a store of its own instance.
async fn missed_posts_raced_by_two_stores_are_each_taken_once(db: &Db) {
    const OFFERS: usize = 200;
    let stores = [db.open().await, db.open().await];
    let posts: Vec<String> = (0..OFFERS).map(|i| format!("offer-{i:03}")).collect();
    for post in &posts {
        assert!(stores[0].claim_post(post, "i1", 10).await.unwrap());
        let mut claim = stores[0].claim(post).await.unwrap().unwrap();
        claim.state = ClaimState::Missed;
        claim.message_id = Some(format!("notice-{post}"));
        stores[0].update_claim(&claim).await.unwrap();
    }
    let mut tasks = JoinSet::new();
    for post in &posts {
        for store in &stores {
            let (store, post) = (Arc::clone(store), post.clone());
            tasks.spawn(async move {
                let won = store.take_missed(&post, "i1").await.unwrap();
                (post, won)
            });
        }
    }
    let mut taken: HashMap<String, usize> = HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (post, won) = joined.unwrap();
        *taken.entry(post).or_default() += usize::from(won);
    }
    assert_eq!(taken.len(), OFFERS);
    assert!(taken.values().all(|&n| n == 1), "{taken:?}");
    for post in &posts {
        let claim = stores[1].claim(post).await.unwrap().unwrap();
        assert_eq!((claim.state, claim.message_id), (ClaimState::Claimed, None));
    }
}

// ---- exactly-once under contention -------------------------------------------

const POSTS: usize = 500;

/// `stores` separate stores on one database, as separate agent processes
/// would have, race to claim the same posts; each post must be won once.
async fn claims_race(db: &Db, stores: usize) {
    let mut opened = Vec::new();
    for _ in 0..stores {
        opened.push(db.open().await);
    }
    let stores = opened;
    let posts: Vec<String> = (0..POSTS).map(|i| format!("post-{i:04}")).collect();

    let mut tasks = JoinSet::new();
    // Interleave the stores post by post so they collide on every id.
    for post in &posts {
        for (n, store) in stores.iter().enumerate() {
            let store = Arc::clone(store);
            let post = post.clone();
            tasks.spawn(async move {
                let instance = format!("instance-{n}");
                let won = store.claim_post(&post, &instance, 1).await.unwrap();
                (post, instance, won)
            });
        }
    }

    let mut winners: HashMap<String, Vec<String>> = HashMap::new();
    let mut attempts = 0;
    while let Some(joined) = tasks.join_next().await {
        let (post, instance, won) = joined.unwrap();
        attempts += 1;
        if won {
            winners.entry(post).or_default().push(instance);
        }
    }
    assert_eq!(attempts, POSTS * stores.len());
    assert_eq!(winners.len(), POSTS, "every post was won");
    for post in &posts {
        let won_by = &winners[post];
        assert_eq!(won_by.len(), 1, "{post} won by {won_by:?}");
        // Every connection sees the same single owner.
        for store in &stores {
            let claim = store.claim(post).await.unwrap().unwrap();
            assert_eq!(&claim.instance_id, &won_by[0]);
        }
    }
    let spread: std::collections::BTreeSet<&String> = winners.values().flatten().collect();
    eprintln!(
        "{:?}, {} stores: winners spread over {spread:?}",
        db.backend(),
        stores.len()
    );
}

async fn claims_are_exactly_once_across_two_stores(db: &Db) {
    claims_race(db, 2).await;
}

async fn claims_are_exactly_once_across_four_stores(db: &Db) {
    claims_race(db, 4).await;
}

/// A pid that is not a `u32` is bad data, reported, not a panic.
async fn a_pid_out_of_range_is_corrupt_not_a_panic(db: &Db) {
    let store = db.open().await;
    db.exec("INSERT INTO instances VALUES ('bad-pid', 'h', '/d', NULL, -1, 1, 1)")
        .await;
    let err = store.instances().await.unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt(ref m) if m.contains("-1")),
        "{err:?}"
    );
    assert!(err.to_string().contains("restore a backup"), "{err}");
}
