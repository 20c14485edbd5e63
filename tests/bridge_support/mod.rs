//! Shared fixture for the remote-control tests: the simulator, the scripted
//! model, real OpenCode with the plugin, and readers for what the bot posted.

#![allow(dead_code)]

pub mod bench;
pub mod shared_store;
pub mod steps;

use std::path::PathBuf;
use std::time::Duration;

use harness::model::ScriptedModel;
use harness::opencode::{OpenCode, Options};
use mattermost_sim::Simulator;
use mattermost_sim::model::Post;

pub struct Rig {
    pub sim: Simulator,
    pub bot: mattermost_sim::Account,
    pub alice: mattermost_sim::Account,
    pub team: mattermost_sim::model::Team,
    /// Bot posts that are not turns (answers to commands), left out of
    /// [`Rig::turns`].
    pub not_turns: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Rig {
    /// A simulator with a bot and its owner alice, both in one team.
    pub async fn new() -> Rig {
        let sim = Simulator::start().await.unwrap();
        let bot = sim.create_bot("opencode-bot").unwrap();
        let alice = sim.create_user("alice").unwrap();
        let team = sim.create_team("eng", "Engineering");
        sim.add_to_team(&team.id, &bot.id).unwrap();
        sim.add_to_team(&team.id, &alice.id).unwrap();
        Rig {
            sim,
            bot,
            alice,
            team,
            not_turns: Default::default(),
        }
    }

    /// Environment for an agent that connects at start, with `extra` on top.
    pub fn env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = vec![
            ("MATTERMOST_URL".to_owned(), self.sim.base_url()),
            ("MATTERMOST_TOKEN".to_owned(), self.bot.token.clone()),
            ("MATTERMOST_AUTO_CONNECT".to_owned(), "true".to_owned()),
            // End-of-turn notices are extra posts; the tests that want them
            // turn them on.
            (
                "OPENCODE_MM_NOTIFY_COMPLETION".to_owned(),
                "false".to_owned(),
            ),
            ("OPENCODE_MM_NOTIFY_ERROR".to_owned(), "false".to_owned()),
        ];
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        env
    }

    /// Start OpenCode with the plugin and wait until its agent is connected.
    pub async fn opencode(&self, model: &ScriptedModel, env: Vec<(String, String)>) -> OpenCode {
        let connected_before = self.bot_sockets();
        let oc = OpenCode::serve(Options {
            model,
            agent_bin: PathBuf::from(env!("CARGO_BIN_EXE_opencode-mattermost")),
            env,
        })
        .await
        .unwrap();
        // The plugin loads with the project's first request.
        oc.get("/session").await.unwrap();
        wait_until(Duration::from_secs(60), "the agent connects", || {
            self.bot_sockets() > connected_before
        })
        .await;
        oc
    }

    /// Start OpenCode with the plugin and load it, without waiting for a
    /// WebSocket: for agents that do not connect (`MATTERMOST_AUTO_CONNECT=false`).
    pub async fn opencode_unconnected(
        &self,
        model: &ScriptedModel,
        env: Vec<(String, String)>,
    ) -> OpenCode {
        let oc = OpenCode::serve(Options {
            model,
            agent_bin: PathBuf::from(env!("CARGO_BIN_EXE_opencode-mattermost")),
            env,
        })
        .await
        .unwrap();
        // The plugin loads with the project's first request.
        oc.get("/session").await.unwrap();
        oc
    }

    pub fn bot_sockets(&self) -> usize {
        self.sim
            .connections()
            .iter()
            .filter(|c| c.user_id == self.bot.id && c.active)
            .count()
    }

    pub fn dm(&self, user_id: &str) -> String {
        self.sim.direct_channel(&self.bot.id, user_id).unwrap().id
    }

    /// Current (not deleted, not history) posts, in creation order.
    pub fn live_posts(&self) -> Vec<Post> {
        self.sim
            .posts()
            .into_iter()
            .filter(|p| p.original_id.is_empty() && p.delete_at == 0)
            .collect()
    }

    /// The bot's posts in a thread (root excluded), in creation order.
    pub fn bot_replies(&self, root: &str) -> Vec<Post> {
        self.live_posts()
            .into_iter()
            .filter(|p| p.root_id == root && p.user_id == self.bot.id)
            .collect()
    }

    /// The bot's top-level posts in a channel, in creation order.
    pub fn bot_roots(&self, channel: &str) -> Vec<Post> {
        self.live_posts()
            .into_iter()
            .filter(|p| p.channel_id == channel && p.root_id.is_empty() && p.user_id == self.bot.id)
            .collect()
    }

    /// A public channel with alice and the bot in it.
    pub fn channel_with_bot(&self, name: &str) -> mattermost_sim::model::Channel {
        let channel = self
            .sim
            .create_channel(&self.team.id, name, name, mattermost_sim::ChannelType::Open)
            .unwrap();
        for u in [&self.alice.id, &self.bot.id] {
            self.sim.add_member(&channel.id, u).unwrap();
        }
        channel
    }

    /// A synchronisation point: `!help` typed by `user_id` at the top of
    /// their DM, answered (by the help, or by the one-time notice of an
    /// agent nobody may use). Posts and reactions are handled in order, so
    /// by then everything sent before it was handled.
    pub async fn sentinel(&self, user_id: &str) -> Post {
        let dm = self.dm(user_id);
        let post = self.sim.post_as(user_id, &dm, "!help", None).unwrap();
        wait_until(Duration::from_secs(60), "the sentinel answered", || {
            !self.bot_replies(&post.id).is_empty()
        })
        .await;
        post
    }

    /// The thread the bot opened for a top-level DM post: its card.
    pub async fn card_for(&self, channel: &str, after: usize) -> Post {
        let mut found = None;
        wait_until(Duration::from_secs(60), "a session card", || {
            found = self.bot_roots(channel).into_iter().nth(after);
            found.is_some()
        })
        .await;
        found.unwrap()
    }

    /// Reply posts of turns in a thread, grouped per turn: a turn's posts
    /// run from one that is not a continuation up to its final post.
    pub fn turns(&self, root: &str) -> Vec<Vec<String>> {
        let mut turns: Vec<Vec<String>> = Vec::new();
        for p in self.bot_replies(root) {
            // The card in a channel thread and echoes of TUI prompts are
            // not turns.
            if p.message.starts_with(":rocket:")
                || p.message.starts_with(TUI_ECHO)
                || is_side_post(&p.message)
                || self.not_turns.lock().unwrap().contains(&p.id)
            {
                continue;
            }
            let continues = turns
                .last()
                .and_then(|t| t.last())
                .is_some_and(|prev| prev.ends_with(CONTINUED));
            if continues {
                turns.last_mut().unwrap().push(p.message);
            } else {
                turns.push(vec![p.message]);
            }
        }
        turns
    }

    /// Wait until the thread has `n` finished turns; return their texts.
    pub async fn finished_turns(&self, root: &str, n: usize) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        wait_until(
            Duration::from_secs(120),
            &format!("{n} finished turns"),
            || {
                out = self.turns(root);
                out.len() >= n && out.iter().all(|t| t.last().is_some_and(|p| is_final(p)))
            },
        )
        .await;
        out
    }
}

/// Posts beside a turn's reply: permission requests, questions, notices.
pub fn is_side_post(text: &str) -> bool {
    [
        "#### :lock:",
        "#### :question:",
        ":bell: :white_check_mark: **Done**",
        ":bell: :x: **Failed**",
        ":hourglass: Nobody answered",
    ]
    .iter()
    .any(|p| text.starts_with(p))
}

/// How a prompt typed at the TUI shows in its thread.
pub const TUI_ECHO: &str = ":keyboard: **[TUI]** ";

/// The marker every post but a turn's last ends with.
pub const CONTINUED: &str = "\n\n_(continued below)_";

/// Whether a turn's last post carries the final footer.
pub fn is_final(text: &str) -> bool {
    let meta = text.rsplit("\n\n---\n").next().unwrap_or(text);
    ["✅ Done", "❌ Failed", "🛑 Stopped"]
        .iter()
        .any(|m| meta.starts_with(m))
}

/// The reply text a turn's posts carry, rebuilt independently of the
/// renderer: continuation markers, re-opened code fences and the footer
/// come off; everything else must be the model's bytes.
pub fn body_of(posts: &[String]) -> String {
    let mut out = String::new();
    let mut reopen: Option<String> = None;
    for (i, post) in posts.iter().enumerate() {
        let mut text = post.as_str();
        if let Some(opener) = reopen.take() {
            text = text
                .strip_prefix(&format!("{opener}\n"))
                .unwrap_or_else(|| panic!("post {i} does not reopen {opener:?}"));
        }
        if i + 1 == posts.len() {
            text = match text.rfind("\n\n---\n") {
                Some(at) => &text[..at],
                None => "",
            };
            out.push_str(text);
        } else {
            text = text
                .strip_suffix(CONTINUED)
                .unwrap_or_else(|| panic!("post {i} lacks the continuation marker"));
            let (head, last_line) = text.rsplit_once('\n').unwrap_or(("", text));
            let mut probe = out.clone();
            probe.push_str(head);
            let next = posts.get(i + 1).map(String::as_str).unwrap_or("");
            match open_fence(&probe) {
                Some(opener)
                    if is_fence_line(last_line) && next.starts_with(&format!("{opener}\n")) =>
                {
                    out.push_str(head);
                    reopen = Some(opener);
                }
                _ => out.push_str(text),
            }
        }
    }
    out
}

fn is_fence_line(line: &str) -> bool {
    let t = line.trim_start_matches(' ');
    line.len() - t.len() <= 3 && (t.starts_with("```") || t.starts_with("~~~"))
}

/// The opening line of the fence still open at the end of `text`, if any.
fn open_fence(text: &str) -> Option<String> {
    let mut open: Option<(char, usize, String)> = None;
    for line in text.split('\n') {
        let t = line.trim_start_matches(' ');
        if line.len() - t.len() > 3 {
            continue;
        }
        let Some(c) = t.chars().next().filter(|c| *c == '`' || *c == '~') else {
            continue;
        };
        let run = t.chars().take_while(|x| *x == c).count();
        if run < 3 {
            continue;
        }
        match &open {
            None => open = Some((c, run, line.to_owned())),
            Some((oc, orun, _)) if *oc == c && run >= *orun && t[run..].trim().is_empty() => {
                open = None
            }
            _ => {}
        }
    }
    open.map(|(_, _, line)| line)
}

/// The text of the last user message of a model request: the prompt it answers.
pub fn last_user_text(request: &serde_json::Value) -> String {
    request["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .map(harness::model::content_text)
        .unwrap_or_default()
}

/// How many model requests answered a prompt containing `phrase`.
pub fn requests_for(model: &ScriptedModel, phrase: &str) -> usize {
    model
        .requests()
        .iter()
        .filter(|r| last_user_text(r).contains(phrase))
        .count()
}

pub async fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A 40,000-character reply whose code fence crosses the first rollover
/// point of a 15,000-character post.
pub fn long_reply() -> String {
    let mut text = String::new();
    let mut n = 0;
    while text.chars().count() < 11_000 {
        n += 1;
        text.push_str(&format!(
            "Paragraph {n}: the quick brown fox jumps over the lazy dog, twice — ünïcödé too.\n\n"
        ));
    }
    text.push_str("```rust\n");
    while text.chars().count() < 30_000 {
        n += 1;
        text.push_str(&format!(
            "    let value_{n} = compute({n}); // keep going\n"
        ));
    }
    text.push_str("```\n\n");
    while text.chars().count() < 40_000 {
        n += 1;
        text.push_str(&format!(
            "Line {n} of the tail, with a few words to wrap.\n"
        ));
    }
    let cut: String = text.chars().take(40_000).collect();
    cut
}

#[test]
fn body_of_undoes_fences_and_markers() {
    let posts = vec![
        format!("intro\n```rust\nlet a = 1;\n```{CONTINUED}"),
        "```rust\n\nlet b = 2;\n```\nend\n\n---\n✅ Done in 1s".to_owned(),
    ];
    assert_eq!(
        body_of(&posts),
        "intro\n```rust\nlet a = 1;\nlet b = 2;\n```\nend"
    );
    assert!(is_final(&posts[1]));
    assert!(is_final("✅ Done in 1s · _(no text reply)_"));
    assert!(!is_final("💻 Processing… 1s"));
    assert_eq!(body_of(&["✅ Done".to_owned()]), "");
}
