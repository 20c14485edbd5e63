//! `opencode-mattermost send`, the real binary in a clean environment,
//! against the Mattermost simulator: text to a DM, stdin to a channel, a
//! file, a reply in a thread, and a clear error with a non-zero exit (and
//! no post) for each refusal.

// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod cli_support;

use std::process::Output;
use std::sync::Arc;

use cli_support::{World, text};
use mattermost_sim::{Channel, ChannelType, Post};
use opencode_mattermost::config::Secret;
use opencode_mattermost::mattermost::{RateBudget, RestClient, RetryPolicy};

struct Place {
    w: World,
    /// A public channel the bot is in.
    town: Channel,
}

async fn place() -> Place {
    let w = World::new().await;
    let town = w
        .sim
        .create_channel(&w.team.id, "town", "Town", ChannelType::Open)
        .unwrap();
    w.sim.add_member(&town.id, &w.bot.id).unwrap();
    w.sim.add_member(&town.id, &w.alice.id).unwrap();
    Place { w, town }
}

async fn send(w: &World, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut all = vec!["send"];
    all.extend_from_slice(args);
    let out = w.run(&[], &all, stdin).await;
    for stream in [&out.stdout, &out.stderr] {
        assert!(!text(stream).contains(&w.bot.token), "token in the output");
    }
    out
}

/// The one post the bot made, and the permalink the command printed for it.
fn sent(w: &World, out: &Output) -> Post {
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mine: Vec<Post> = w
        .sim
        .posts()
        .into_iter()
        .filter(|p| p.user_id == w.bot.id)
        .collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    let post = mine.into_iter().next().unwrap();
    let link = text(&out.stdout);
    assert!(
        link.trim_end().ends_with(&format!("/pl/{}", post.id)),
        "{link}"
    );
    post
}

/// Refused: non-zero exit, the message on stderr, nothing posted.
fn refused(w: &World, out: &Output, says: &str) {
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains(says), "`{says}` not in: {err}");
    assert!(w.sim.posts().iter().all(|p| p.user_id != w.bot.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_goes_to_the_users_dm() {
    let Place { w, .. } = place().await;
    let out = send(&w, &["--to", "@alice", "deploy done"], None).await;
    let post = sent(&w, &out);
    let dm = w.sim.direct_channel(&w.bot.id, &w.alice.id).unwrap();
    assert_eq!(
        (
            post.channel_id.as_str(),
            post.message.as_str(),
            post.root_id.as_str()
        ),
        (dm.id.as_str(), "deploy done", "")
    );
    assert_eq!(
        text(&out.stdout),
        format!("{}/_redirect/pl/{}\n", w.sim.base_url(), post.id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_goes_to_a_channel_without_its_last_newline() {
    let Place { w, town } = place().await;
    let log = b"build 41 failed\n  at step `test`\n";
    let out = send(&w, &["--to", "~town"], Some(log)).await;
    let post = sent(&w, &out);
    assert_eq!(post.channel_id, town.id);
    assert_eq!(post.message, "build 41 failed\n  at step `test`");
    assert_eq!(
        text(&out.stdout),
        format!("{}/eng/pl/{}\n", w.sim.base_url(), post.id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dash_reads_stdin_too() {
    let Place { w, town } = place().await;
    let out = send(
        &w,
        &["--to", "~town", "--team", "eng", "-"],
        Some(b"from a pipe"),
    )
    .await;
    let post = sent(&w, &out);
    assert_eq!(
        (post.channel_id, post.message),
        (town.id, "from a pipe".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_is_uploaded_and_attached() {
    let Place { w, town } = place().await;
    let report = w.home.path().join("report.csv");
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&report, &bytes).unwrap();
    let out = send(
        &w,
        &[
            "--to",
            "~town",
            "--file",
            report.to_str().unwrap(),
            "nightly report",
        ],
        None,
    )
    .await;
    let post = sent(&w, &out);
    assert_eq!(post.message, "nightly report");
    assert_eq!(post.channel_id, town.id);
    let [file_id] = post.file_ids.as_slice() else {
        panic!("{:?}", post.file_ids)
    };
    let rest = RestClient::new(
        &w.sim.api_url(),
        Secret::new(w.alice.token.clone()),
        Arc::new(RateBudget::new(100.0, 100.0)),
        RetryPolicy::default(),
    )
    .unwrap();
    assert_eq!(rest.file_info(file_id).await.unwrap().name, "report.csv");
    assert_eq!(rest.download_file(file_id, 1 << 20).await.unwrap(), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permalink_replies_in_that_posts_thread() {
    let Place { w, town } = place().await;
    let root = w
        .sim
        .post_as(&w.alice.id, &town.id, "release?", None)
        .unwrap();
    let reply = w
        .sim
        .post_as(&w.alice.id, &town.id, "any news?", Some(&root.id))
        .unwrap();
    // A link to a reply answers in its thread, under the root.
    let link = format!("{}/eng/pl/{}", w.sim.base_url(), reply.id);
    let out = send(&w, &["--to", &link, "shipped"], None).await;
    let post = sent(&w, &out);
    assert_eq!(
        (
            post.root_id.as_str(),
            post.channel_id.as_str(),
            post.message.as_str()
        ),
        (root.id.as_str(), town.id.as_str(), "shipped")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_is_an_error() {
    let Place { w, .. } = place().await;
    let out = send(&w, &["--to", "@nobody", "hi"], None).await;
    refused(&w, &out, "unknown user: no @nobody");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_channel_is_an_error() {
    let Place { w, .. } = place().await;
    let out = send(&w, &["--to", "~nowhere", "hi"], None).await;
    refused(&w, &out, "unknown channel: no ~nowhere in the team eng");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_permission_is_an_error() {
    let Place { w, .. } = place().await;
    // A public channel the bot is not in: the server refuses the post.
    w.sim
        .create_channel(&w.team.id, "lobby", "Lobby", ChannelType::Open)
        .unwrap();
    let out = send(&w, &["--to", "~lobby", "hi"], None).await;
    refused(
        &w,
        &out,
        "no permission: the server refused to let the bot post in ~lobby",
    );
    // A private channel it is not in: the server refuses to show it.
    w.sim
        .create_channel(&w.team.id, "secret", "Secret", ChannelType::Private)
        .unwrap();
    let out = send(&w, &["--to", "~secret", "hi"], None).await;
    refused(
        &w,
        &out,
        "no permission: the server refused to let the bot read ~secret",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_too_big_file_is_an_error() {
    let Place { w, .. } = place().await;
    let missing = w.home.path().join("missing.txt");
    let out = send(
        &w,
        &["--to", "~town", "--file", missing.to_str().unwrap()],
        None,
    )
    .await;
    refused(&w, &out, "missing.txt: no such file");
    let dir = w.home.path().to_str().unwrap();
    let out = send(&w, &["--to", "~town", "--file", dir, "hi"], None).await;
    refused(&w, &out, "not a regular file");
    let out = send(&w, &["--to", "~town", "--team", "sales", "hi"], None).await;
    refused(
        &w,
        &out,
        "the bot is not in a team named sales (it is in: eng)",
    );
    w.sim.configure(|c| c.max_file_size = 1000);
    let big = w.home.path().join("big.bin");
    std::fs::write(&big, vec![7u8; 1001]).unwrap();
    let out = send(
        &w,
        &["--to", "~town", "--file", big.to_str().unwrap()],
        None,
    )
    .await;
    refused(
        &w,
        &out,
        "big.bin is 1001 bytes; this server takes files up to 1000 bytes",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_targets_and_empty_messages_are_refused_before_any_request() {
    let Place { w, .. } = place().await;
    for (args, stdin, says) in [
        (
            vec!["--to", "alice", "hi"],
            None,
            "--to takes @user, ~channel or a post's permalink",
        ),
        (
            vec!["--to", "@", "hi"],
            None,
            "a username must follow the @",
        ),
        (
            vec![
                "--to",
                "https://elsewhere.example.com/eng/pl/abcdefghijklmnopqrstuvwxyz",
                "hi",
            ],
            None,
            "not on the configured server",
        ),
        (vec!["--to", "~town"], Some(&b"\n"[..]), "nothing to send"),
        (
            vec!["--to", "~town", "-"],
            Some(&[0xff, 0xfe][..]),
            "not UTF-8",
        ),
    ] {
        w.sim.clear_requests();
        let out = send(&w, &args, stdin).await;
        refused(&w, &out, says);
        assert!(w.sim.requests().is_empty(), "{args:?}");
    }
    let out = send(&w, &["--to"], None).await;
    refused(&w, &out, "a value is required for '--to <TARGET>'");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_shows_a_progress_bar_on_a_terminal_only() {
    let Place { w, town } = place().await;
    let big = w.home.path().join("big.bin");
    std::fs::write(&big, vec![1u8; 3 << 20]).unwrap();
    let bin = env!("CARGO_BIN_EXE_opencode-mattermost");
    let command = format!(
        "{bin} send --to ~town --file {} 'on a terminal'",
        big.display()
    );
    // util-linux `script` runs the command on a pseudo-terminal (with a
    // TERM: indicatif draws nothing on a terminal it takes for dumb).
    let out =
        cli_support::run_with("script", w.home.path(), &["-qec", &command, "/dev/null"]).await;
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("big.bin ["), "{shown}");
    assert!(shown.contains("/3.00 MiB"), "{shown}");
    let post = sent_to(&w, &town.id, "on a terminal");
    assert_eq!(post.file_ids.len(), 1);
    // Piped, the same upload draws nothing.
    let out = send(
        &w,
        &["--to", "~town", "--file", big.to_str().unwrap(), "piped"],
        None,
    )
    .await;
    assert!(out.status.success());
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

fn sent_to(w: &World, channel: &str, message: &str) -> Post {
    w.sim
        .posts()
        .into_iter()
        .find(|p| p.user_id == w.bot.id && p.channel_id == channel && p.message == message)
        .unwrap_or_else(|| panic!("no post `{message}`"))
}
