//! Contract tests of the channel tables: teammates per owner, the one-time
//! team import, thread grants and guest requests decided exactly once.

use pretty_assertions::assert_eq;

use super::*;

contract!(
    teammates_are_per_owner_and_added_once,
    the_team_file_is_imported_once_per_owner,
    thread_grants_are_kept_once_per_grantee,
    guest_requests_are_decided_exactly_once,
    channel_rows_survive_reopening_the_store,
);

fn mate(owner: &str, user: &str, name: &str, at: Millis) -> Teammate {
    Teammate {
        owner_user_id: owner.into(),
        user_id: user.into(),
        username: name.into(),
        added_by: owner.into(),
        added_at: at,
    }
}

fn request(post: &str, root: &str, instance: &str, at: Millis) -> GuestRequest {
    GuestRequest {
        post_id: post.into(),
        request_post_id: format!("req-{post}"),
        root_post_id: root.into(),
        channel_id: "chan-1".into(),
        instance_id: instance.into(),
        guest_user_id: "guest".into(),
        guest_username: "gus".into(),
        created_at: at,
        expires_at: at + 1000,
        state: GuestState::Pending,
        decided_by: None,
        decided_at: None,
    }
}

async fn teammates_are_per_owner_and_added_once(db: &Db) {
    let store = db.open().await;
    assert!(store.teammates("o1").await.unwrap().is_empty());
    assert!(
        store
            .add_teammate(&mate("o1", "u2", "zoe", 1))
            .await
            .unwrap()
    );
    assert!(
        store
            .add_teammate(&mate("o1", "u1", "bonnie", 2))
            .await
            .unwrap()
    );
    assert!(
        store
            .add_teammate(&mate("o2", "u1", "bonnie", 3))
            .await
            .unwrap()
    );
    // Again: refused, and the first row stays.
    assert!(
        !store
            .add_teammate(&mate("o1", "u2", "renamed", 9))
            .await
            .unwrap()
    );
    let names = |list: Vec<Teammate>| list.into_iter().map(|t| t.username).collect::<Vec<_>>();
    assert_eq!(
        names(store.teammates("o1").await.unwrap()),
        ["bonnie", "zoe"]
    );
    assert_eq!(
        store.teammates("o1").await.unwrap()[1],
        mate("o1", "u2", "zoe", 1)
    );
    assert!(store.remove_teammate("o1", "u1").await.unwrap());
    assert!(!store.remove_teammate("o1", "u1").await.unwrap());
    assert!(!store.remove_teammate("o1", "nobody").await.unwrap());
    assert_eq!(names(store.teammates("o1").await.unwrap()), ["zoe"]);
    // Another owner's team is untouched.
    assert_eq!(names(store.teammates("o2").await.unwrap()), ["bonnie"]);
    // Odd text is data.
    let odd = mate("o3", "x'; DROP TABLE teammates; --", "名前 ✓", 4);
    assert!(store.add_teammate(&odd).await.unwrap());
    assert_eq!(store.teammates("o3").await.unwrap(), vec![odd]);
}

async fn the_team_file_is_imported_once_per_owner(db: &Db) {
    let store = db.open().await;
    assert!(
        store
            .mark_team_imported("o1", "/a/team.json", 1)
            .await
            .unwrap()
    );
    assert!(
        !store
            .mark_team_imported("o1", "/a/team.json", 2)
            .await
            .unwrap()
    );
    assert!(
        !store
            .mark_team_imported("o1", "/b/other.json", 3)
            .await
            .unwrap()
    );
    assert!(
        store
            .mark_team_imported("o2", "/a/team.json", 4)
            .await
            .unwrap()
    );
}

async fn thread_grants_are_kept_once_per_grantee(db: &Db) {
    let store = db.open().await;
    assert!(store.thread_grants("root").await.unwrap().is_empty());
    let grant = |grantee: Grantee, at| ThreadGrant {
        root_post_id: "root".into(),
        grantee,
        granted_by: "owner".into(),
        granted_at: at,
    };
    store
        .grant_thread(&grant(Grantee::User("bob".into()), 1))
        .await
        .unwrap();
    store
        .grant_thread(&grant(Grantee::User("bob".into()), 5))
        .await
        .unwrap();
    store
        .grant_thread(&grant(Grantee::Everyone, 2))
        .await
        .unwrap();
    assert_eq!(
        store.thread_grants("root").await.unwrap(),
        vec![
            grant(Grantee::User("bob".into()), 1),
            grant(Grantee::Everyone, 2)
        ]
    );
    assert!(store.thread_grants("other").await.unwrap().is_empty());
}

async fn guest_requests_are_decided_exactly_once(db: &Db) {
    let store = db.open().await;
    store
        .add_guest_request(&request("p2", "root", "i1", 2))
        .await
        .unwrap();
    store
        .add_guest_request(&request("p1", "root", "i1", 1))
        .await
        .unwrap();
    store
        .add_guest_request(&request("p3", "root", "i2", 3))
        .await
        .unwrap();
    assert!(matches!(
        store
            .add_guest_request(&request("p1", "root", "i1", 7))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let pending = |list: Vec<GuestRequest>| list.into_iter().map(|r| r.post_id).collect::<Vec<_>>();
    assert_eq!(
        pending(store.pending_guest_requests("i1").await.unwrap()),
        ["p1", "p2"]
    );

    assert!(
        store
            .decide_guest_request("p1", GuestState::User, Some("owner"), 10)
            .await
            .unwrap()
    );
    // The expiry (or a second answer) comes too late.
    assert!(
        !store
            .decide_guest_request("p1", GuestState::Expired, None, 11)
            .await
            .unwrap()
    );
    assert!(
        !store
            .decide_guest_request("missing", GuestState::Denied, None, 11)
            .await
            .unwrap()
    );
    let decided = store.guest_request("p1").await.unwrap().unwrap();
    assert_eq!(decided.state, GuestState::User);
    assert_eq!(decided.decided_by.as_deref(), Some("owner"));
    assert_eq!(decided.decided_at, Some(10));
    assert_eq!(
        pending(store.pending_guest_requests("i1").await.unwrap()),
        ["p2"]
    );
    assert_eq!(
        pending(store.pending_guest_requests("i2").await.unwrap()),
        ["p3"]
    );
    assert_eq!(store.guest_request("missing").await.unwrap(), None);
}

async fn channel_rows_survive_reopening_the_store(db: &Db) {
    {
        let store = db.open().await;
        store
            .add_teammate(&mate("o1", "u1", "bonnie", 1))
            .await
            .unwrap();
        store
            .grant_thread(&ThreadGrant {
                root_post_id: "root".into(),
                grantee: Grantee::Everyone,
                granted_by: "o1".into(),
                granted_at: 2,
            })
            .await
            .unwrap();
        store
            .add_guest_request(&request("p1", "root", "i1", 3))
            .await
            .unwrap();
    }
    let store = db.open().await;
    assert_eq!(store.teammates("o1").await.unwrap().len(), 1);
    assert_eq!(
        store.thread_grants("root").await.unwrap()[0].grantee,
        Grantee::Everyone
    );
    assert_eq!(
        store.pending_guest_requests("i1").await.unwrap(),
        vec![request("p1", "root", "i1", 3)]
    );
}
