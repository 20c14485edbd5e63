//! Unit tests of the link's pure parts: resume URLs, backoff bounds, the
//! dedupe memory, header-only auth and token scrubbing, and catch-up
//! filtering and start times. Network behaviour is tested in `tests/mm_link.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;
use url::Url;

use super::dedupe::Seen;
use super::shared::{Shared, lock};
use super::socket::{End, Worker, backoff, connect_url};
use super::{CatchUp, Inbound, LinkConfig, LinkState};
use crate::config::Secret;
use crate::mattermost::types::Post;

#[test]
fn resume_url_replaces_old_parameters() {
    let base = Url::parse("wss://mm.example/sub/api/v4/websocket?connection_id=old&x=1").unwrap();
    let fresh = connect_url(&base, None);
    assert_eq!(fresh.as_str(), "wss://mm.example/sub/api/v4/websocket?x=1");
    let resume = connect_url(&base, Some(("abc", 7)));
    assert_eq!(
        resume.as_str(),
        "wss://mm.example/sub/api/v4/websocket?x=1&connection_id=abc&sequence_number=7"
    );
    let plain = Url::parse("ws://h/api/v4/websocket").unwrap();
    assert_eq!(
        connect_url(&plain, None).as_str(),
        "ws://h/api/v4/websocket"
    );
}

#[test]
fn backoff_is_bounded_and_grows() {
    let initial = Duration::from_millis(100);
    let max = Duration::from_secs(2);
    for n in 1..40 {
        let d = backoff(n, initial, max);
        let bound = initial.saturating_mul(1u32 << (n - 1).min(31)).min(max);
        assert!(d <= bound, "{n}: {d:?} > {bound:?}");
    }
    // Large attempt numbers never overflow.
    assert!(backoff(u32::MAX, initial, max) <= max);
}

#[test]
fn seen_ids_forget_the_oldest() {
    let mut seen = Seen::new(3);
    for id in ["a", "b", "c"] {
        assert!(seen.insert(id.to_owned()));
    }
    assert!(!seen.insert("a".to_owned()));
    assert!(seen.insert("d".to_owned()));
    assert!(!seen.contains("a"));
    assert!(seen.contains("b") && seen.contains("d"));
    assert_eq!(seen.order.len(), 3);
}

struct Never;

#[async_trait::async_trait]
impl CatchUp for Never {
    async fn posts_since(&self, _: &str, _: i64) -> Result<Vec<Post>, String> {
        Ok(Vec::new())
    }
}

/// A worker that is never run, for its pure parts; keeps the stop sender
/// alive with it.
fn worker(events: mpsc::Sender<Inbound>) -> (Worker, watch::Sender<bool>) {
    let (state, _) = watch::channel(LinkState::Stopped);
    let (stop_tx, stop) = watch::channel(false);
    let worker = Worker {
        cfg: LinkConfig::new(
            Url::parse("ws://h/api/v4/websocket").unwrap(),
            Secret::new("tok-secret-123"),
            "bot",
        ),
        catch_up: Arc::new(Never),
        events,
        shared: Arc::new(Shared::default()),
        state,
        stop,
        session: None,
        last_connection_id: None,
        resume_failures: 0,
        seen: Seen::new(10),
        seen_edits: Seen::new(10),
        pending: BTreeMap::new(),
        events_lost: false,
        action_seq: 0,
        actions: tokio::sync::mpsc::channel(1).1,
    };
    (worker, stop_tx)
}

#[test]
fn request_carries_the_token_only_in_the_header() {
    let (events, _rx) = mpsc::channel(1);
    let (worker, _stop) = worker(events);
    let url = connect_url(&worker.cfg.ws_url, Some(("c", 3)));
    let req = worker.request(&url).unwrap();
    assert!(!req.uri().to_string().contains("tok-secret-123"));
    let auth = req.headers().get(AUTHORIZATION).unwrap();
    assert!(auth.is_sensitive());
    assert_eq!(auth.to_str().unwrap(), "Bearer tok-secret-123");
    assert!(!format!("{:?}", worker.cfg).contains("tok-secret-123"));
    match worker.lost("failed near tok-secret-123", false) {
        End::Lost { error, .. } => assert!(!error.contains("tok-secret-123")),
        End::Stop => panic!("expected Lost"),
    }
}

fn post(id: &str, create_at: i64) -> Post {
    Post {
        id: id.to_owned(),
        create_at,
        update_at: create_at,
        user_id: "alice".to_owned(),
        channel_id: "c1".to_owned(),
        ..Post::default()
    }
}

#[tokio::test]
async fn catch_up_skips_history_deleted_own_old_and_seen_posts() {
    let (events, mut rx) = mpsc::channel(16);
    let (mut worker, _stop) = worker(events);
    worker.seen.insert("seen".to_owned());
    let history = Post {
        original_id: "p2".to_owned(),
        delete_at: 1_500,
        ..post("hist", 1_400)
    };
    let deleted = Post {
        delete_at: 1_600,
        ..post("gone", 1_300)
    };
    let own = Post {
        user_id: "bot".to_owned(),
        ..post("mine", 1_200)
    };
    // An old root bumped by a reply: updated after `since`, created before.
    let old_root = Post {
        update_at: 1_900,
        ..post("root", 500)
    };
    let posts = vec![
        post("p2", 1_800),
        history,
        deleted,
        own,
        old_root,
        post("seen", 1_100),
        post("p1", 1_700),
    ];
    let n = worker.deliver_caught_up("c1", 1_000, posts).await.unwrap();
    assert_eq!(n, 2);
    let mut got = Vec::new();
    while let Ok(Inbound::Posted {
        post, caught_up, ..
    }) = rx.try_recv()
    {
        assert!(caught_up);
        got.push(post.id);
    }
    assert_eq!(got, vec!["p1", "p2"], "oldest first, each once");
    let marks = lock(&worker.shared.channels).clone();
    assert_eq!(
        marks.get("c1").and_then(|m| m.newest_create_at),
        Some(1_800)
    );
    // A second catch-up over the same window delivers nothing new.
    let again = worker
        .deliver_caught_up("c1", 1_000, vec![post("p1", 1_700), post("p2", 1_800)])
        .await
        .unwrap();
    assert_eq!(again, 0);
}

#[test]
fn catch_up_starts_before_the_newest_delivered_post() {
    let (events, _rx) = mpsc::channel(1);
    let (mut worker, _stop) = worker(events);
    worker.shared.note_post(&post("a", 50_000));
    worker.shared.note_post(&post("b", 40_000));
    worker.schedule_catch_up();
    assert_eq!(worker.pending.get("c1").map(|p| p.since_ms), Some(49_000));
    // A later gap never moves an outstanding start forward.
    worker.shared.note_post(&post("c", 90_000));
    worker.schedule_catch_up();
    assert_eq!(worker.pending.get("c1").map(|p| p.since_ms), Some(49_000));
}

#[tokio::test]
async fn after_lost_events_the_consumer_is_told_once_posts_are_caught_up() {
    let (events, mut rx) = mpsc::channel(4);
    let (mut worker, _stop) = worker(events);
    // Nothing lost: a catch-up pass says nothing.
    worker.run_catch_up().await.unwrap();
    assert!(rx.try_recv().is_err());
    // A refused resume with a served channel: its posts first, then the word.
    worker.shared.note_post(&post("a", 50_000));
    worker.schedule_catch_up();
    worker.run_catch_up().await.unwrap();
    assert_eq!(rx.try_recv().ok(), Some(Inbound::CaughtUp));
    assert!(worker.pending.is_empty());
    worker.run_catch_up().await.unwrap();
    assert!(rx.try_recv().is_err(), "told once per loss");
}
