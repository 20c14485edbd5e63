//! The Mattermost WebSocket link against the protocol-faithful simulator:
//! connect, events, own posts, resume after every kind of kill, refused
//! resumes caught up over REST, dead links, a server that is not there, a slow
//! consumer, and the acceptance run (500 posts, 50 kills, each post delivered
//! exactly once).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod link_support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use link_support::{SimCatchUp, WAIT, World, eventually, next, next_post};
use mattermost_sim::{KillMode, SimConfig};
use opencode_mattermost::config::Secret;
use opencode_mattermost::mattermost::types::Post;
use opencode_mattermost::mattermost::ws::{self, CatchUp, Inbound, LinkConfig, LinkState};
use tokio::sync::mpsc;
use url::Url;

#[tokio::test]
async fn connects_after_hello_and_delivers_every_event_kind() {
    let w = World::start(SimConfig::default()).await;
    let (link, mut rx) = w.spawn(w.link_config(), 64);
    let id = link.wait_connected(WAIT).await.unwrap();
    let conns = w.sim.connections();
    assert!(
        conns
            .iter()
            .any(|c| c.connection_id == id && c.user_id == w.bot.id && c.active),
        "{conns:?}"
    );
    match link.state() {
        LinkState::Connected { server_version, .. } => {
            assert!(server_version.starts_with("9.8.1."), "{server_version}");
        }
        other => panic!("{other:?}"),
    }
    let stats = link.stats();
    assert_eq!((stats.connects, stats.reconnects, stats.resumes), (1, 0, 0));

    let post = w
        .sim
        .post_as(&w.alice.id, &w.dm.id, "hello bot", None)
        .unwrap();
    match next(&mut rx).await {
        Inbound::Posted {
            post: got,
            channel_type,
            sender_name,
            mentions,
            caught_up,
        } => {
            assert_eq!(got.id, post.id);
            assert_eq!(got.message, "hello bot");
            assert_eq!(channel_type, "D");
            assert_eq!(sender_name, "@alice");
            assert_eq!(mentions, vec![w.bot.id.clone()]);
            assert!(!caught_up);
        }
        other => panic!("{other:?}"),
    }

    w.sim.react_as(&w.alice.id, &post.id, "eyes").unwrap();
    match next(&mut rx).await {
        Inbound::ReactionAdded(r) => {
            assert_eq!(
                (r.post_id.as_str(), r.emoji_name.as_str()),
                (post.id.as_str(), "eyes")
            );
        }
        other => panic!("{other:?}"),
    }

    let http = reqwest::Client::new();
    let resp = http
        .put(format!("{}/posts/{}/patch", w.sim.api_url(), post.id))
        .bearer_auth(&w.alice.token)
        .json(&serde_json::json!({"message": "hello bot (edited)"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    match next(&mut rx).await {
        Inbound::PostEdited(p) => {
            assert_eq!(
                (p.id.as_str(), p.message.as_str()),
                (post.id.as_str(), "hello bot (edited)")
            );
        }
        other => panic!("{other:?}"),
    }

    let resp = http
        .delete(format!("{}/posts/{}", w.sim.api_url(), post.id))
        .bearer_auth(&w.alice.token)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    match next(&mut rx).await {
        Inbound::PostDeleted(p) => assert_eq!(p.id, post.id),
        other => panic!("{other:?}"),
    }

    let stats = link.stats();
    assert_eq!(stats.events_delivered, 4);
    assert!(stats.last_event.is_some());
    assert_eq!(link.served_channels(), vec![w.dm.id.clone()]);

    link.disconnect().await;
    assert_eq!(link.state(), LinkState::Stopped);
    eventually("the bot's socket is detached", || !w.bot_online()).await;
}

#[tokio::test]
async fn dropping_the_handle_stops_the_link() {
    let w = World::start(SimConfig::default()).await;
    let (link, mut rx) = w.spawn(w.link_config(), 8);
    link.wait_connected(WAIT).await.unwrap();
    let mut state = link.subscribe();
    drop(link);
    tokio::time::timeout(WAIT, state.wait_for(|s| *s == LinkState::Stopped))
        .await
        .unwrap()
        .ok();
    assert!(
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .is_none()
    );
    eventually("the bot's socket is detached", || !w.bot_online()).await;
}

#[tokio::test]
async fn own_posts_and_edits_are_ignored() {
    let w = World::start(SimConfig::default()).await;
    let (link, mut rx) = w.spawn(w.link_config(), 8);
    link.wait_connected(WAIT).await.unwrap();
    let mine = w
        .sim
        .post_as(&w.bot.id, &w.dm.id, "from the bot", None)
        .unwrap();
    let http = reqwest::Client::new();
    let resp = http
        .put(format!("{}/posts/{}/patch", w.sim.api_url(), mine.id))
        .bearer_auth(&w.bot.token)
        .json(&serde_json::json!({"message": "from the bot, edited"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let theirs = w
        .sim
        .post_as(&w.alice.id, &w.dm.id, "from alice", None)
        .unwrap();
    let (got, _) = next_post(&mut rx).await;
    assert_eq!(got.id, theirs.id);
    assert_eq!(link.stats().own_dropped, 2);
    assert!(rx.try_recv().is_err());
}

/// Kills with `mode` while posts are made, on a single-threaded runtime so the
/// kill and the posts happen before the link can react.
async fn resumes_after(mode: KillMode) {
    let w = World::start(SimConfig::default()).await;
    let (link, mut rx) = w.spawn(w.link_config(), 64);
    let first = link.wait_connected(WAIT).await.unwrap();
    let before = w
        .sim
        .post_as(&w.alice.id, &w.dm.id, "before", None)
        .unwrap();
    assert_eq!(next_post(&mut rx).await.0.id, before.id);

    let killed_at = Instant::now();
    assert_eq!(w.sim.kill_sockets(&w.bot.id, mode), 1);
    let missed: Vec<String> = (0..5)
        .map(|i| {
            w.sim
                .post_as(&w.alice.id, &w.dm.id, &format!("while away {i}"), None)
                .unwrap()
                .id
        })
        .collect();
    let again = link.wait_connected_after(killed_at, WAIT).await.unwrap();
    assert_eq!(again, first, "a resume keeps the connection id");
    for id in &missed {
        let (post, caught_up) = next_post(&mut rx).await;
        assert_eq!(&post.id, id, "replayed in order");
        assert!(!caught_up);
    }
    let stats = link.stats();
    assert_eq!(
        (stats.resumes, stats.resumes_refused, stats.reconnects),
        (1, 0, 1)
    );
    assert_eq!(stats.catch_ups, 0);
    assert!(rx.try_recv().is_err(), "nothing delivered twice");
}

#[tokio::test]
async fn resumes_after_a_close_kill() {
    resumes_after(KillMode::Close).await;
}

#[tokio::test]
async fn resumes_after_a_drop_kill() {
    resumes_after(KillMode::Drop).await;
}

#[tokio::test]
async fn refused_resume_catches_up_every_served_channel() {
    let w = World::start(SimConfig {
        ws_resume_buffer: 16,
        ..SimConfig::default()
    })
    .await;
    let town = w.town();

    let (link, mut rx) = w.spawn(w.link_config(), 64);
    let first = link.wait_connected(WAIT).await.unwrap();
    // The DM becomes served by a delivered post, `town` explicitly.
    let seed = w.sim.post_as(&w.alice.id, &w.dm.id, "seed", None).unwrap();
    assert_eq!(next_post(&mut rx).await.0.id, seed.id);
    link.serve_channel(&town.id);

    let killed_at = Instant::now();
    assert_eq!(w.sim.kill_sockets(&w.bot.id, KillMode::Drop), 1);
    let mut missed = HashSet::new();
    for i in 0..12 {
        for ch in [&w.dm.id, &town.id] {
            let p = w
                .sim
                .post_as(&w.alice.id, ch, &format!("lost {i}"), None)
                .unwrap();
            missed.insert(p.id);
        }
    }
    let own = w.sim.post_as(&w.bot.id, &town.id, "mine", None).unwrap();
    let again = link.wait_connected_after(killed_at, WAIT).await.unwrap();
    assert_ne!(again, first, "the resume was refused");
    let mut got = HashSet::new();
    while got.len() < missed.len() {
        let (post, caught_up) = next_post(&mut rx).await;
        assert!(caught_up, "only REST can recover these");
        assert!(missed.contains(&post.id), "unexpected {post:?}");
        assert_ne!(post.id, own.id);
        assert!(got.insert(post.id), "delivered twice");
    }
    // Reactions made meanwhile are not replayed: the consumer is told to
    // look for itself once the posts are in.
    assert_eq!(next(&mut rx).await, Inbound::CaughtUp);
    let stats = link.stats();
    assert_eq!(stats.resumes_refused, 1);
    assert_eq!(stats.posts_recovered, 24);
    assert!(stats.catch_ups >= 1);

    // The link keeps working on the new connection.
    let after = w.sim.post_as(&w.alice.id, &town.id, "after", None).unwrap();
    let (post, caught_up) = next_post(&mut rx).await;
    assert_eq!((post.id, caught_up), (after.id, false));
}

/// A catch-up source that creates a post just before it reads, so the post
/// comes both from REST and, a moment later, from the socket.
struct RacingCatchUp {
    inner: SimCatchUp,
    sim: Arc<mattermost_sim::Simulator>,
    alice: String,
    channel: String,
    raced: std::sync::Mutex<Option<String>>,
}

#[async_trait::async_trait]
impl CatchUp for RacingCatchUp {
    async fn posts_since(&self, channel_id: &str, since_ms: i64) -> Result<Vec<Post>, String> {
        {
            let mut raced = self.raced.lock().unwrap();
            if raced.is_none() {
                let p = self
                    .sim
                    .post_as(&self.alice, &self.channel, "raced", None)
                    .map_err(|e| e.to_string())?;
                *raced = Some(p.id);
            }
        }
        self.inner.posts_since(channel_id, since_ms).await
    }
}

#[tokio::test]
async fn a_post_seen_by_rest_and_socket_is_delivered_once() {
    let w = World::start(SimConfig {
        ws_resume_buffer: 4,
        ..SimConfig::default()
    })
    .await;
    let racing = Arc::new(RacingCatchUp {
        inner: SimCatchUp::new(&w.sim, &w.bot.token),
        sim: w.sim.clone(),
        alice: w.alice.id.clone(),
        channel: w.dm.id.clone(),
        raced: std::sync::Mutex::new(None),
    });
    let (tx, mut rx) = mpsc::channel(64);
    let link = ws::spawn(w.link_config(), racing.clone(), tx);
    link.wait_connected(WAIT).await.unwrap();
    let seed = w.sim.post_as(&w.alice.id, &w.dm.id, "seed", None).unwrap();
    assert_eq!(next_post(&mut rx).await.0.id, seed.id);

    let killed_at = Instant::now();
    w.sim.kill_sockets(&w.bot.id, KillMode::Close);
    let mut expected: HashSet<String> = (0..8)
        .map(|i| {
            w.sim
                .post_as(&w.alice.id, &w.dm.id, &format!("lost {i}"), None)
                .unwrap()
                .id
        })
        .collect();
    link.wait_connected_after(killed_at, WAIT).await.unwrap();
    let mut got = HashMap::new();
    loop {
        let (post, caught_up) = next_post(&mut rx).await;
        assert!(caught_up, "{post:?}");
        // The raced post is created by the first catch-up call.
        if let Some(raced) = racing.raced.lock().unwrap().clone() {
            expected.insert(raced);
        }
        assert!(expected.contains(&post.id), "{post:?}");
        assert!(got.insert(post.id.clone(), ()).is_none(), "twice: {post:?}");
        if got.len() == 9 {
            break;
        }
    }
    assert_eq!(got.len(), expected.len());
    // The socket's copy of the raced post arrives after REST delivered it;
    // a sentinel posted afterwards proves it was dropped, not pending.
    let sentinel = w
        .sim
        .post_as(&w.alice.id, &w.dm.id, "sentinel", None)
        .unwrap();
    assert_eq!(next_post(&mut rx).await.0.id, sentinel.id);
    assert_eq!(link.stats().duplicates_dropped, 1);
}

#[tokio::test]
async fn a_stalled_link_is_declared_dead_and_reconnects() {
    let w = World::start(SimConfig::default()).await;
    let mut cfg = w.link_config();
    cfg.ping_interval = Duration::from_millis(100);
    cfg.dead_after = Duration::from_millis(400);
    let (link, mut rx) = w.spawn(cfg, 64);
    link.wait_connected(WAIT).await.unwrap();
    // Served, so a refused resume would be caught up too.
    link.serve_channel(&w.dm.id);
    let stalled_at = Instant::now();
    assert_eq!(w.sim.stall_sockets(&w.bot.id, Duration::from_secs(3)), 1);
    let during = w
        .sim
        .post_as(&w.alice.id, &w.dm.id, "during the stall", None)
        .unwrap();
    match link
        .wait_for(WAIT, |s| matches!(s, LinkState::Reconnecting { .. }))
        .await
        .unwrap()
    {
        LinkState::Reconnecting { last_error, .. } => {
            assert!(last_error.contains("presumed dead"), "{last_error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        stalled_at.elapsed() < Duration::from_secs(3),
        "detected before the stall ended"
    );
    link.wait_connected_after(stalled_at, WAIT).await.unwrap();
    let (post, _) = next_post(&mut rx).await;
    assert_eq!(post.id, during.id);
    let after = w.sim.post_as(&w.alice.id, &w.dm.id, "after", None).unwrap();
    assert_eq!(next_post(&mut rx).await.0.id, after.id);
    assert_eq!(link.stats().reconnects, 1);
}

#[tokio::test]
async fn no_server_means_reconnecting_with_growing_attempts() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = LinkConfig::new(
        Url::parse(&format!("ws://127.0.0.1:{port}/api/v4/websocket")).unwrap(),
        Secret::new("token-that-must-not-leak"),
        "botid",
    );
    cfg.backoff_initial = Duration::from_millis(5);
    cfg.backoff_max = Duration::from_millis(20);
    let (tx, _rx) = mpsc::channel(1);
    let sim = World::start(SimConfig::default()).await;
    let link = ws::spawn(cfg, sim.catch_up(), tx);
    let mut seen = Vec::new();
    link.wait_for(WAIT, |s| {
        if let LinkState::Reconnecting {
            attempt,
            last_error,
            ..
        } = s
        {
            assert!(!last_error.contains("token-that-must-not-leak"));
            seen.push(*attempt);
        }
        matches!(s, LinkState::Reconnecting { attempt, .. } if *attempt >= 6)
    })
    .await
    .unwrap();
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert_eq!(link.stats().connects, 0);
    link.disconnect().await;
    assert_eq!(link.state(), LinkState::Stopped);
}

/// A socket that never authenticates keeps reconnecting while REST does
/// not say the token is bad (here: the link's REST view uses another token).
#[tokio::test]
async fn a_bad_token_never_counts_as_connected() {
    let w = World::start(SimConfig {
        ws_auth_timeout: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await;
    let mut cfg = w.link_config();
    cfg.token = Secret::new("not-a-valid-token-at-all");
    cfg.hello_timeout = Duration::from_millis(500);
    let (link, _rx) = w.spawn(cfg, 1);
    let state = link
        .wait_for(
            WAIT,
            |s| matches!(s, LinkState::Reconnecting { attempt, .. } if *attempt >= 3),
        )
        .await
        .unwrap();
    let LinkState::Reconnecting { last_error, .. } = state else {
        unreachable!()
    };
    assert!(!last_error.contains("not-a-valid-token-at-all"));
    assert!(last_error.contains("not authenticated"), "{last_error}");
    assert_eq!(link.stats().connects, 0);
}

/// An admin revokes the bot's token while the link is up: the server keeps
/// the socket open but silent and answers our ping with 401. One REST check
/// confirms it, and the link ends there instead of reconnecting forever.
#[tokio::test]
async fn a_revoked_token_ends_the_link_after_one_confirmation() {
    let w = World::start(SimConfig::default()).await;
    let catch_up = w.catch_up();
    let (tx, _rx) = mpsc::channel(16);
    let cfg = w
        .link_config()
        .with_ping_interval(Duration::from_millis(200));
    let link = ws::spawn(cfg, catch_up.clone(), tx);
    link.wait_connected(WAIT).await.unwrap();
    assert_eq!(catch_up.token_checks.load(Ordering::SeqCst), 0);
    let upgrades = |w: &World| {
        w.sim
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/websocket"))
            .count()
    };
    assert_eq!(upgrades(&w), 1, "socket upgrades are in the request log");
    w.sim.clear_requests();

    assert_eq!(w.sim.revoke_tokens(&w.bot.id), 1, "one socket was open");
    let state = link
        .wait_for(WAIT, |s| matches!(s, LinkState::TokenRejected { .. }))
        .await
        .unwrap();
    let LinkState::TokenRejected { at_ms } = state else {
        unreachable!()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!((now - at_ms).abs() < 60_000, "{at_ms} vs {now}");
    assert_eq!(catch_up.token_checks.load(Ordering::SeqCst), 1);
    assert_eq!(upgrades(&w), 0, "no reconnect after the 401");
    assert!(link.state().is_ended());
    let line = opencode_mattermost::mattermost::connection::token_rejected_line(at_ms);
    assert!(line.contains("token rejected at"), "{line}");
    assert!(line.contains("mattermost_connect"), "{line}");
}

/// After the token was refused, `connect` with a good token makes a new
/// connection instead of handing back the dead one.
#[tokio::test]
async fn connect_starts_again_after_the_token_was_refused() {
    use opencode_mattermost::config::Config;
    use opencode_mattermost::mattermost::connection::Connector;

    let w = World::start(SimConfig::default()).await;
    let team = w.sim.create_team("eng", "Engineering");
    w.sim.add_to_team(&team.id, &w.bot.id).unwrap();
    let config_with = |token: &str| {
        let env: HashMap<&str, String> = HashMap::from([
            ("MATTERMOST_URL", w.sim.base_url()),
            ("MATTERMOST_TOKEN", token.to_owned()),
        ]);
        Config::from_sources(&|k| env.get(k).cloned(), None)
    };
    let (tx, _rx) = mpsc::channel(16);
    let connector = Connector::new(tx);
    let (first, fresh) = connector.connect(&config_with(&w.bot.token)).await.unwrap();
    assert!(fresh);
    w.sim.revoke_tokens(&w.bot.id);
    // The socket is silent now; a socket drop makes the link try again at
    // once rather than at its next 30 s ping.
    w.sim.kill_sockets(&w.bot.id, KillMode::Drop);
    first
        .link
        .wait_for(WAIT, |s| matches!(s, LinkState::TokenRejected { .. }))
        .await
        .unwrap();

    let token = w.sim.issue_token(&w.bot.id);
    let (second, fresh) = connector.connect(&config_with(&token)).await.unwrap();
    assert!(fresh, "a new connection, not the dead one");
    second.link.wait_connected(WAIT).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_gets_every_event() {
    let w = World::start(SimConfig::default()).await;
    let (link, mut rx) = w.spawn(w.link_config(), 1);
    link.wait_connected(WAIT).await.unwrap();
    let ids: Vec<String> = (0..200)
        .map(|i| {
            w.sim
                .post_as(&w.alice.id, &w.dm.id, &format!("slow {i}"), None)
                .unwrap()
                .id
        })
        .collect();
    let mut got = Vec::new();
    while got.len() < ids.len() {
        let (post, _) = next_post(&mut rx).await;
        got.push(post.id);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), ids.len());
    assert_eq!(unique, ids.iter().collect::<HashSet<_>>());
}

/// The acceptance run: 500 posts at random moments in two channels, 50 socket
/// kills (close and drop, every fourth followed by a burst larger than the 16-event
/// resume buffer). Every post arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_posts_fifty_kills_each_post_exactly_once() {
    const POSTS: usize = 500;
    const KILLS: usize = 50;
    link_support::init_tracing();
    let w = World::start(SimConfig {
        ws_resume_buffer: 16,
        ..SimConfig::default()
    })
    .await;
    let town = w.town();
    let channels = [w.dm.id.clone(), town.id.clone()];

    let started = Instant::now();
    let mut cfg = w.link_config();
    // Reconnects take long enough (0–30 ms) for a burst to overflow the buffer.
    cfg.backoff_initial = Duration::from_millis(30);
    cfg.backoff_max = Duration::from_millis(60);
    let (link, mut rx) = w.spawn(cfg, 32);
    link.wait_connected(WAIT).await.unwrap();
    for ch in &channels {
        link.serve_channel(ch);
    }

    // The consumer counts every post it is given.
    let counts = Arc::new(std::sync::Mutex::new(HashMap::<String, usize>::new()));
    let received = Arc::new(AtomicUsize::new(0));
    let (done_tx, mut done_rx) = mpsc::channel::<String>(1024);
    let consumer = {
        let counts = counts.clone();
        let received = received.clone();
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                if let Inbound::Posted { post, .. } = event {
                    *counts.lock().unwrap().entry(post.id.clone()).or_default() += 1;
                    received.fetch_add(1, Ordering::SeqCst);
                    let _ = done_tx.send(post.id).await;
                }
            }
        })
    };

    // Kill points and burst sizes, chosen up front.
    let mut rng = fastrand::Rng::with_seed(0x5eed_1234);
    let mut kill_at: Vec<usize> = Vec::new();
    while kill_at.len() < KILLS {
        let i = rng.usize(1..POSTS - 10);
        if !kill_at.contains(&i) {
            kill_at.push(i);
        }
    }
    kill_at.sort_unstable();
    let mut posted: Vec<String> = Vec::with_capacity(POSTS);
    let mut kills = 0;
    let mut last_kill = started;
    let mut burst = 0usize;
    let mut n = 0usize;
    while n < POSTS {
        if burst == 0 && kill_at.first().is_some_and(|k| *k <= n) {
            kill_at.remove(0);
            // Only kill a link that is back up, so every kill ends a socket.
            link.wait_connected_after(last_kill, WAIT).await.unwrap();
            let mode = if rng.bool() {
                KillMode::Close
            } else {
                KillMode::Drop
            };
            let t = Instant::now();
            if w.sim.kill_sockets(&w.bot.id, mode) > 0 {
                kills += 1;
                last_kill = t;
            } else {
                tracing::warn!("kill found no socket");
            }
            // Every fourth kill is followed by more posts than the resume
            // buffer holds, posted before the link can come back.
            if kills % 4 == 0 {
                burst = rng.usize(17..25);
            }
        }
        let ch = &channels[rng.usize(0..channels.len())];
        let p = w
            .sim
            .post_as(&w.alice.id, ch, &format!("post {n}"), None)
            .unwrap();
        posted.push(p.id);
        n += 1;
        if burst > 0 {
            burst -= 1;
        } else if rng.u8(0..4) == 0 {
            tokio::time::sleep(Duration::from_millis(rng.u64(0..8))).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
    // Make sure every planned kill happened.
    while kills < KILLS {
        link.wait_connected_after(last_kill, WAIT).await.unwrap();
        let t = Instant::now();
        if w.sim.kill_sockets(&w.bot.id, KillMode::Drop) > 0 {
            kills += 1;
            last_kill = t;
        }
    }

    let expected: HashSet<String> = posted.iter().cloned().collect();
    assert_eq!(expected.len(), POSTS);
    let mut seen = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !expected.is_subset(&seen) {
        let id = tokio::time::timeout_at(deadline, done_rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {POSTS} posts arrived; stats {:?}",
                    seen.intersection(&expected).count(),
                    link.stats()
                )
            })
            .unwrap();
        seen.insert(id);
    }
    // A sentinel after everything: duplicates, if any, would come before it.
    link.wait_connected(WAIT).await.unwrap();
    let sentinel = w
        .sim
        .post_as(&w.alice.id, &w.dm.id, "sentinel", None)
        .unwrap();
    loop {
        let id = tokio::time::timeout(WAIT, done_rx.recv())
            .await
            .unwrap()
            .unwrap();
        if id == sentinel.id {
            break;
        }
    }

    let counts = counts.lock().unwrap().clone();
    let delivered: HashSet<String> = counts.keys().cloned().collect();
    let mut all = expected.clone();
    all.insert(sentinel.id.clone());
    assert_eq!(delivered, all, "exactly the posted set");
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c != 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert_eq!(received.load(Ordering::SeqCst), POSTS + 1);

    let stats = link.stats();
    tracing::info!(?stats, "acceptance run");
    assert_eq!(kills, KILLS);
    assert!(stats.reconnects >= KILLS as u64, "{stats:?}");
    assert!(stats.resumes > 0, "{stats:?}");
    assert!(stats.resumes_refused > 0, "{stats:?}");
    assert!(stats.posts_recovered > 0, "{stats:?}");
    drop(link);
    let _ = tokio::time::timeout(WAIT, consumer).await;
}

/// `mattermost_status` and streaming edits read the connection while a
/// connect waits on the network: they must not wait with it.
#[tokio::test]
async fn a_slow_connect_never_blocks_readers_of_the_connection() {
    use opencode_mattermost::config::Config;
    use opencode_mattermost::mattermost::connection::Connector;

    let w = World::start(SimConfig::default()).await;
    let team = w.sim.create_team("eng", "Engineering");
    w.sim.add_to_team(&team.id, &w.bot.id).unwrap();
    let env: HashMap<&str, String> = HashMap::from([
        ("MATTERMOST_URL", w.sim.base_url()),
        ("MATTERMOST_TOKEN", w.bot.token.clone()),
    ]);
    let config = Config::from_sources(&|k| env.get(k).cloned(), None);
    let (tx, _rx) = mpsc::channel(16);
    let connector = Arc::new(Connector::new(tx));
    // The second request of a connect (the bot's teams) is slow.
    w.sim
        .delay_next("GET", "/users/me/teams", Duration::from_secs(3), 1);
    let connecting = {
        let (connector, config) = (connector.clone(), config.clone());
        tokio::spawn(async move { connector.connect(&config).await.map(|_| ()) })
    };
    // Once its first request is answered, the connect is in the slow one.
    eventually("the connect to check the token", || {
        w.sim
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/users/me"))
    })
    .await;
    let read = tokio::time::timeout(Duration::from_millis(500), connector.current()).await;
    assert!(matches!(read, Ok(None)), "a reader waited for the connect");
    connecting.await.unwrap().unwrap();
    assert!(connector.current().await.is_some());
}

/// The agent process tells the TUI through the shim (a `tui/toast`) when
/// Mattermost refuses its token, and `mattermost_status` says since when.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_toasts_and_reports_a_refused_token() {
    use harness::agent::AgentProcess;
    use serde_json::json;

    let w = World::start(SimConfig::default()).await;
    let team = w.sim.create_team("eng", "Engineering");
    w.sim.add_to_team(&team.id, &w.bot.id).unwrap();
    let url = w.sim.base_url();
    let mut agent = AgentProcess::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_opencode-mattermost")),
        &[
            ("MATTERMOST_URL", url.as_str()),
            ("MATTERMOST_TOKEN", w.bot.token.as_str()),
            ("MATTERMOST_AUTO_CONNECT", "true"),
            ("OPENCODE_MM_FETCH_TIMEOUT", "300"),
        ],
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    agent
        .initialize(&dir.path().display().to_string())
        .await
        .unwrap();
    eventually("the agent's socket", || w.bot_online()).await;
    w.sim.revoke_tokens(&w.bot.id);
    w.sim.kill_sockets(&w.bot.id, KillMode::Drop);

    let toast = loop {
        let frame = agent.recv(WAIT).await.unwrap();
        if frame["method"] == "tui/toast" {
            break frame;
        }
    };
    assert_eq!(toast["params"]["variant"], "error");
    let message = toast["params"]["message"].as_str().unwrap();
    assert!(message.contains("token rejected at"), "{message}");
    assert!(!message.contains(&w.bot.token), "the token never leaves");

    agent
        .send(&json!({"jsonrpc": "2.0", "id": "s", "method": "tools/call",
                      "params": {"name": "mattermost_status", "arguments": {}}}))
        .await
        .unwrap();
    let answer = loop {
        let frame = agent.recv(WAIT).await.unwrap();
        if frame["id"] == "s" {
            break frame;
        }
    };
    let text = answer["result"]["output"].as_str().unwrap();
    assert!(text.contains("WebSocket: token rejected at"), "{text}");
    assert!(!text.contains(&w.bot.token));
}

/// Reads `socket` until an event named `name` arrives, or fails after WAIT.
async fn next_event_named(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    name: &str,
) -> serde_json::Value {
    use futures::StreamExt;
    tokio::time::timeout(WAIT, async {
        loop {
            let frame = socket.next().await.unwrap().unwrap();
            let Ok(text) = frame.to_text() else { continue };
            let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
                continue;
            };
            if value["event"] == name {
                return value;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {name} event within {WAIT:?}"))
}

#[tokio::test]
async fn typing_goes_over_the_socket_and_costs_no_request() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let w = World::start(SimConfig::default()).await;
    // Alice's own client socket: what her screen would be told.
    let mut request = w.sim.ws_url().into_client_request().unwrap();
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", w.alice.token).parse().unwrap(),
    );
    let (mut alice, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    next_event_named(&mut alice, "hello").await;

    let (link, _rx) = w.spawn(w.link_config(), 64);
    link.wait_connected(WAIT).await.unwrap();
    w.sim.clear_requests();
    link.typing(&w.dm.id, "").unwrap();

    let typing = next_event_named(&mut alice, "typing").await;
    assert_eq!(typing["data"]["user_id"], w.bot.id.as_str(), "{typing}");
    assert_eq!(
        typing["broadcast"]["channel_id"],
        w.dm.id.as_str(),
        "{typing}"
    );
    let rest: Vec<_> = w.sim.requests();
    assert!(
        rest.iter().all(|r| !r.path.contains("typing")),
        "typing went over REST: {rest:?}"
    );
}

#[tokio::test]
async fn typing_is_refused_while_the_link_is_down() {
    let w = World::start(SimConfig::default()).await;
    let mut config = w.link_config();
    config.ws_url = Url::parse("ws://127.0.0.1:9/api/v4/websocket").unwrap();
    let (link, _rx) = w.spawn(config, 8);
    assert_eq!(
        link.typing(&w.dm.id, ""),
        Err(ws::ActionRefused::NotConnected)
    );
}
