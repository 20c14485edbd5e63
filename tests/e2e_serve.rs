//! Shared-server mode: one `opencode serve` that several clients use at
//! once (what `opencode attach` TUIs do), with the plugin loaded once per
//! project. Clients create and prompt sessions over OpenCode's HTTP API;
//! with `OPENCODE_MM_DEFAULT_CHANNEL_ID` set, each session gets its own
//! thread in that channel, with its prompt echoed once and its reply, and
//! no post appears twice. A second project on the same server loads the
//! plugin for itself (a second agent on the same bot and store), and its
//! session gets a thread of its own too.

// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod bridge_support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bridge_support::{Rig, TUI_ECHO, body_of, wait_until};
use harness::model::{ScriptedModel, Step};
use mattermost_sim::ChannelType;
use serde_json::{Value, json};

/// One API client of the shared server, in one project directory, with a
/// connection pool of its own (as each attached TUI has).
struct Client {
    http: reqwest::Client,
    base: String,
    directory: PathBuf,
}

/// A session as the server answers it: its id and the short id cards show.
struct Session {
    id: String,
    slug: String,
}

impl Client {
    fn new(base: &str, directory: &Path) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            directory: directory.to_owned(),
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("x-opencode-directory", self.directory.display().to_string())
            .json(&body)
            .timeout(Duration::from_secs(180))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "POST {path}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn create_session(&self, title: &str) -> Session {
        let s = self.post("/session", json!({"title": title})).await;
        let id = s["id"].as_str().unwrap().to_owned();
        let slug = s["slug"].as_str().unwrap_or_default().to_owned();
        let slug = if slug.is_empty() {
            id.chars().take(8).collect()
        } else {
            slug
        };
        Session { id, slug }
    }

    /// Prompt and wait for the answer (OpenCode's blocking endpoint).
    async fn prompt(&self, session: &Session, text: &str) {
        self.post(
            &format!("/session/{}/message", session.id),
            json!({"parts": [{"type": "text", "text": text}]}),
        )
        .await;
    }
}

/// The card of a session in `channel`: its thread's root.
async fn card_of(rig: &Rig, channel: &str, session: &Session) -> String {
    let tag = format!("`{}`", session.slug);
    let mut found = None;
    wait_until(Duration::from_secs(60), "the session's card", || {
        found = rig
            .bot_roots(channel)
            .into_iter()
            .find(|p| p.message.contains(&tag));
        found.is_some()
    })
    .await;
    found.unwrap().id
}

/// The thread of one session, once its one turn is finished: the echo of
/// its prompt, then its reply, and nothing else.
async fn one_turn(rig: &Rig, root: &str, prompt: &str, reply: &str) {
    let turns = rig.finished_turns(root, 1).await;
    assert_eq!(turns.len(), 1, "one turn in the thread");
    assert_eq!(body_of(&turns[0]), reply);
    let replies: Vec<String> = rig
        .bot_replies(root)
        .into_iter()
        .map(|p| p.message)
        .collect();
    assert_eq!(
        replies[0],
        format!("{TUI_ECHO}{prompt}"),
        "the prompt is echoed first: {replies:#?}"
    );
    assert_eq!(
        replies.len(),
        1 + turns[0].len(),
        "one echo and the reply's posts, nothing twice: {replies:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_one_server_get_a_thread_per_session_and_nothing_twice() {
    let rig = Rig::new().await;
    let lobby = rig
        .sim
        .create_channel(&rig.team.id, "lobby", "Lobby", ChannelType::Open)
        .unwrap();
    for u in [&rig.alice.id, &rig.bot.id] {
        rig.sim.add_member(&lobby.id, u).unwrap();
    }
    let model = ScriptedModel::start().await.unwrap();
    let work = [
        ("alpha task from the first client", "alpha done"),
        ("beta task from the second client", "beta done"),
        ("gamma task from another project", "gamma done"),
        (
            "delta task sent the moment its session exists",
            "delta done",
        ),
    ];
    for (prompt, reply) in work {
        model.on(prompt, vec![Step::text(reply)]);
    }
    let env = rig.env(&[
        ("MATTERMOST_OWNER_USER_ID", &rig.alice.id),
        ("OPENCODE_MM_DEFAULT_CHANNEL_ID", &lobby.id),
    ]);
    let oc = rig.opencode(&model, env).await;
    assert_eq!(rig.bot_sockets(), 1, "the plugin is loaded once");

    // Two clients of the same project at once, each typing once its
    // session has its thread.
    let a = Client::new(&oc.url, &oc.project);
    let b = Client::new(&oc.url, &oc.project);
    let (sa, sb) = tokio::join!(
        a.create_session("first client"),
        b.create_session("second client")
    );
    let first = async {
        let root = card_of(&rig, &lobby.id, &sa).await;
        a.prompt(&sa, work[0].0).await;
        root
    };
    let second = async {
        let root = card_of(&rig, &lobby.id, &sb).await;
        b.prompt(&sb, work[1].0).await;
        root
    };
    let (root_a, root_b) = tokio::join!(first, second);
    assert_ne!(root_a, root_b);
    one_turn(&rig, &root_a, work[0].0, work[0].1).await;
    one_turn(&rig, &root_b, work[1].0, work[1].1).await;

    // A client that prompts the moment its session exists, long before the
    // thread opens (OpenCode answers before the card is posted): the
    // thread still shows the prompt once and its reply.
    let d = Client::new(&oc.url, &oc.project);
    let sd = d.create_session("typed at once").await;
    d.prompt(&sd, work[3].0).await;
    let root_d = card_of(&rig, &lobby.id, &sd).await;
    one_turn(&rig, &root_d, work[3].0, work[3].1).await;
    assert_eq!(rig.bot_sockets(), 1, "still one agent for the project");

    // Another project on the same server loads the plugin for itself.
    let other = oc.home.path().join("other-project");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::copy(
        oc.project.join("opencode.json"),
        other.join("opencode.json"),
    )
    .unwrap();
    let c = Client::new(&oc.url, &other);
    let sc = c.create_session("other project").await;
    wait_until(
        Duration::from_secs(60),
        "the second project's agent",
        || rig.bot_sockets() == 2,
    )
    .await;
    let root_c = card_of(&rig, &lobby.id, &sc).await;
    c.prompt(&sc, work[2].0).await;
    one_turn(&rig, &root_c, work[2].0, work[2].1).await;
    let card_c = rig
        .live_posts()
        .into_iter()
        .find(|p| p.id == root_c)
        .unwrap();
    assert!(
        card_c.message.contains(&other.display().to_string()),
        "the card names the other project: {}",
        card_c.message
    );

    // Four sessions, four threads, and not one post twice anywhere.
    let roots = rig.bot_roots(&lobby.id);
    assert_eq!(roots.len(), 4, "{roots:#?}");
    let posts = rig.live_posts();
    let mut seen = HashSet::new();
    for p in posts.iter().filter(|p| p.user_id == rig.bot.id) {
        assert!(
            seen.insert((p.root_id.clone(), p.message.clone())),
            "posted twice: {}",
            p.message
        );
    }
    for (root, prompt) in [(&root_a, work[0].0), (&root_b, work[1].0)] {
        let other_prompt = if prompt == work[0].0 {
            work[1].0
        } else {
            work[0].0
        };
        assert!(
            rig.bot_replies(root)
                .iter()
                .all(|p| !p.message.contains(other_prompt)),
            "threads never mix"
        );
    }
}
