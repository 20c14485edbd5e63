//! The REST client against the Mattermost simulator: typed calls, clear
//! errors, the shared rate budget under 429 storms and 5xx bursts.

// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use mattermost_sim::{Account, RateLimit, Simulator};
use opencode_mattermost::config::Secret;
use opencode_mattermost::mattermost::{
    MattermostError, NewPost, Priority, RateBudget, RestClient, RetryPolicy,
};

struct World {
    sim: Simulator,
    bot: Account,
    alice: Account,
    dm: String,
}

impl World {
    async fn new() -> World {
        let sim = Simulator::start().await.unwrap();
        let bot = sim.create_bot("opencode").unwrap();
        let alice = sim.create_user("alice").unwrap();
        let dm = sim.direct_channel(&alice.id, &bot.id).unwrap().id;
        World {
            sim,
            bot,
            alice,
            dm,
        }
    }

    fn client(&self, token: &str, budget: RateBudget, retry: RetryPolicy) -> RestClient {
        RestClient::new(
            &self.sim.api_url(),
            Secret::new(token),
            Arc::new(budget),
            retry,
        )
        .unwrap()
    }

    fn bot_client(&self) -> RestClient {
        self.client(
            &self.bot.token,
            RateBudget::new(1000.0, 1000.0),
            fast_retry(),
        )
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        ..RetryPolicy::default()
    }
}

fn post(channel: &str, message: &str) -> NewPost {
    NewPost {
        channel_id: channel.to_owned(),
        message: message.to_owned(),
        ..NewPost::default()
    }
}

#[tokio::test]
async fn typed_calls_work_against_the_simulator() {
    let w = World::new().await;
    let c = w.bot_client();
    let me = c.me().await.unwrap();
    assert_eq!((me.id.as_str(), me.is_bot), (w.bot.id.as_str(), true));
    assert_eq!(c.user(&w.alice.id).await.unwrap().username, "alice");
    assert_eq!(c.user_by_username("@alice").await.unwrap().id, w.alice.id);
    let cfg = c.client_config().await.unwrap();
    assert_eq!(cfg.max_post_size(), Some(16383));
    assert!(cfg.version().is_some());
    let dm = c.direct_channel(&w.bot.id, &w.alice.id).await.unwrap();
    assert_eq!((dm.id.as_str(), dm.kind.as_str()), (w.dm.as_str(), "D"));

    let root = c
        .create_post(&w.bot.id, &post(&w.dm, "root"), Priority::Normal)
        .await
        .unwrap();
    let mut reply = post(&w.dm, "reply");
    reply.root_id = root.id.clone();
    let reply = c
        .create_post(&w.bot.id, &reply, Priority::Urgent)
        .await
        .unwrap();
    let edited = c
        .patch_post(&reply.id, "reply, edited", None, Priority::Progress)
        .await
        .unwrap();
    assert_eq!(edited.message, "reply, edited");
    let thread = c.thread(&root.id).await.unwrap();
    let texts: Vec<&str> = thread.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(texts, ["root", "reply, edited"]);
    let since = c.posts_since(&w.dm, root.create_at - 1).await.unwrap();
    assert!(since.iter().any(|p| p.id == reply.id));

    let file = c
        .upload_file(&w.dm, "notes.txt", b"hello file".to_vec())
        .await
        .unwrap();
    assert_eq!(c.file_info(&file.id).await.unwrap().size, 10);
    assert_eq!(
        c.download_file(&file.id, 1024).await.unwrap(),
        b"hello file"
    );
    let e = c.download_file(&file.id, 5).await.unwrap_err();
    assert!(e.to_string().contains("above the 5-byte limit"), "{e}");

    c.add_reaction(&w.bot.id, &root.id, "eyes").await.unwrap();
    let reactions = c.reactions(&root.id).await.unwrap();
    assert_eq!(reactions.len(), 1);
    c.remove_reaction(&w.bot.id, &root.id, "eyes")
        .await
        .unwrap();
    assert!(c.reactions(&root.id).await.unwrap().is_empty());
    c.typing(&w.bot.id, &w.dm, "").await.unwrap();
}

#[tokio::test]
async fn errors_are_clear_and_bad_input_never_reaches_the_server() {
    let w = World::new().await;
    let bad = w.client("not-a-token", RateBudget::new(100.0, 100.0), fast_retry());
    let e = bad.me().await.unwrap_err();
    assert!(matches!(e, MattermostError::InvalidToken { .. }), "{e}");
    assert!(e.to_string().contains("MATTERMOST_TOKEN"), "{e}");
    // A bad token is not retried: exactly one request reached the server.
    let me_calls = w
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/users/me"))
        .count();
    assert_eq!(me_calls, 1);

    let c = w.bot_client();
    w.sim.clear_requests();
    for id in [
        "",
        "../../users/me",
        "abc",
        "x".repeat(27).as_str(),
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    ] {
        let e = c.channel(id).await.unwrap_err();
        assert!(
            matches!(e, MattermostError::InvalidInput { .. }),
            "{id}: {e}"
        );
        let e = c
            .create_post(&w.bot.id, &post(id, "x"), Priority::Normal)
            .await
            .unwrap_err();
        assert!(
            matches!(e, MattermostError::InvalidInput { .. }),
            "{id}: {e}"
        );
    }
    assert!(c.user_by_username("a/b").await.is_err());
    assert!(c.remove_reaction(&w.bot.id, &w.dm, "a/b").await.is_err());
    assert!(w.sim.requests().is_empty(), "{:?}", w.sim.requests());

    // A channel the bot is not in, a missing post, an oversized message.
    let bob = w.sim.create_user("bob").unwrap();
    let other = w.sim.direct_channel(&w.alice.id, &bob.id).unwrap();
    let e = c
        .create_post(&w.bot.id, &post(&other.id, "hi"), Priority::Normal)
        .await
        .unwrap_err();
    assert!(matches!(e, MattermostError::Forbidden { .. }), "{e}");
    assert!(e.to_string().contains("add the bot"), "{e}");
    let e = c.post("abcdefghijklmnopqrstuvwxyz").await.unwrap_err();
    assert!(matches!(e, MattermostError::NotFound { .. }), "{e}");
    let e = c
        .create_post(
            &w.bot.id,
            &post(&w.dm, &"x".repeat(16384)),
            Priority::Normal,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("message_length"), "{e}");
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error_without_a_retry_storm() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let c = RestClient::new(
        &format!("http://127.0.0.1:{port}/api/v4"),
        Secret::new("secret-token-123"),
        Arc::new(RateBudget::new(100.0, 100.0)),
        RetryPolicy {
            attempts: 3,
            ..fast_retry()
        },
    )
    .unwrap();
    let e = c.me().await.unwrap_err();
    assert!(matches!(e, MattermostError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    assert!(!e.to_string().contains("secret-token-123"));
    assert_eq!(
        c.stats.requests.load(std::sync::atomic::Ordering::Relaxed),
        3
    );
}

#[tokio::test]
async fn a_429_storm_creates_every_post_once_in_order_and_obeys_retry_after() {
    let w = World::new().await;
    let c = w.bot_client();
    w.sim.fail_next("POST", "/posts", 429, 4);
    for i in 0..10 {
        c.create_post(&w.bot.id, &post(&w.dm, &format!("m{i}")), Priority::Normal)
            .await
            .unwrap();
    }
    let mine: Vec<String> = w
        .sim
        .posts()
        .into_iter()
        .filter(|p| p.user_id == w.bot.id && p.delete_at == 0)
        .map(|p| p.message)
        .collect();
    let want: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    assert_eq!(mine, want);
    // After every 429 (Retry-After: 1) the next request waited at least 1 s.
    let log: Vec<_> = w
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/posts"))
        .collect();
    let mut limited = 0;
    for pair in log.windows(2) {
        if pair[0].status == 429 {
            limited += 1;
            let gap = pair[1].at - pair[0].at;
            assert!(gap >= 990, "sent {gap} ms after a 429 with Retry-After: 1");
        }
    }
    assert_eq!(limited, 4);
    assert_eq!(c.budget().stats().rate_limited, 4);
}

#[tokio::test]
async fn a_5xx_burst_is_retried_and_each_post_exists_once() {
    let w = World::new().await;
    let c = w.bot_client();
    w.sim.fail_next("POST", "/posts", 503, 3);
    w.sim.fail_next("PUT", "/posts/*/patch", 500, 2);
    let p = c
        .create_post(&w.bot.id, &post(&w.dm, "after the storm"), Priority::Normal)
        .await
        .unwrap();
    c.patch_post(&p.id, "patched", None, Priority::Progress)
        .await
        .unwrap();
    let copies = w
        .sim
        .posts()
        .into_iter()
        .filter(|q| q.user_id == w.bot.id && q.original_id.is_empty())
        .count();
    assert_eq!(copies, 1);
    assert_eq!(w.sim.post(&p.id).unwrap().message, "patched");
    assert_eq!(
        c.stats.retries.load(std::sync::atomic::Ordering::Relaxed),
        5
    );

    // A burst longer than the policy allows surfaces as a clear error.
    w.sim.fail_next("POST", "/posts", 502, 10);
    let e = c
        .create_post(&w.bot.id, &post(&w.dm, "doomed"), Priority::Normal)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            MattermostError::Server {
                status: 502,
                attempts: 5,
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn the_real_rate_limiter_is_obeyed_with_no_lost_or_doubled_post() {
    let w = World::new().await;
    w.sim.rate_limit(Some(RateLimit {
        per_second: 20,
        burst: 5,
    }));
    // Our own budget is far more generous than the server's, so the server's
    // headers and 429s must do the pacing.
    let c = Arc::new(w.bot_client());
    let mut tasks = Vec::new();
    for t in 0..3 {
        let (c, bot, dm) = (c.clone(), w.bot.id.clone(), w.dm.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                c.create_post(&bot, &post(&dm, &format!("t{t}-{i}")), Priority::Normal)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let posts = w.sim.posts();
    for t in 0..3 {
        let mine: Vec<String> = posts
            .iter()
            .filter(|p| p.message.starts_with(&format!("t{t}-")))
            .map(|p| p.message.clone())
            .collect();
        let want: Vec<String> = (0..10).map(|i| format!("t{t}-{i}")).collect();
        assert_eq!(mine, want, "task {t}");
    }
}

#[tokio::test]
async fn a_tracked_upload_reports_its_bytes_up_to_the_whole_file() {
    let w = World::new().await;
    let c = w.bot_client();
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let progress: opencode_mattermost::mattermost::probe::Progress =
        Arc::new(move |n| record.lock().unwrap().push(n));
    let info = c
        .upload_file_tracked(&w.dm, "big.bin", bytes.clone(), progress)
        .await
        .unwrap();
    assert_eq!(info.size, 300_000);
    assert_eq!(c.download_file(&info.id, 1 << 20).await.unwrap(), bytes);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.first(), Some(&0));
    assert_eq!(seen.last(), Some(&300_000));
    assert!(seen.len() > 2, "{seen:?}");
    assert!(seen.windows(2).all(|p| p[0] <= p[1]), "{seen:?}");
    // The upload declared its length, as a raw upload must.
    let upload = w
        .sim
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/v4/files")
        .unwrap();
    assert_eq!(upload.body_bytes, 300_000);
}
