//! Tests of instances and claims, including exactly-once claims raced
//! across connections.

use std::collections::HashMap;

use pretty_assertions::assert_eq;
use tokio::task::JoinSet;

use super::*;

// ---- instances ------------------------------------------------------------

#[tokio::test]
async fn instances_register_upsert_and_heartbeat() {
    let store = mem();
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

// ---- claims ---------------------------------------------------------------

#[tokio::test]
async fn claims_round_trip() {
    let store = mem();
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

#[tokio::test]
async fn unfinished_claims_filter_by_instance_and_state() {
    let store = mem();
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

#[tokio::test]
async fn a_missed_post_is_taken_once_by_its_own_instance() {
    let store = mem();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missed_post_raced_on_several_connections_is_taken_once() {
    let (_dir, path) = temp_db();
    let first = SqliteStore::open(&path).unwrap();
    assert!(first.claim_post("p1", "i1", 10).await.unwrap());
    let mut claim = first.claim("p1").await.unwrap().unwrap();
    claim.state = ClaimState::Missed;
    first.update_claim(&claim).await.unwrap();
    let mut tasks = JoinSet::new();
    for _ in 0..8 {
        let store = SqliteStore::open(&path).unwrap();
        tasks.spawn(async move { store.take_missed("p1", "i1").await.unwrap() });
    }
    let mut won = 0;
    while let Some(joined) = tasks.join_next().await {
        won += usize::from(joined.unwrap());
    }
    assert_eq!(won, 1);
}

// ---- exactly-once under contention -------------------------------------------

const POSTS: usize = 500;

/// `stores` separate connections to one file, as separate agent processes
/// would have, race to claim the same posts; each post must be won once.
async fn claims_race(stores: usize) {
    let (_dir, path) = temp_db();
    let stores: Vec<SqliteStore> = (0..stores)
        .map(|_| SqliteStore::open(&path).unwrap())
        .collect();
    let posts: Vec<String> = (0..POSTS).map(|i| format!("post-{i:04}")).collect();

    let mut tasks = JoinSet::new();
    // Interleave the stores post by post so they collide on every id.
    for post in &posts {
        for (n, store) in stores.iter().enumerate() {
            let store = store.clone();
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
    eprintln!("{} stores: winners spread over {spread:?}", stores.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_are_exactly_once_across_two_connections() {
    claims_race(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_are_exactly_once_across_four_connections() {
    claims_race(4).await;
}
