//! Channels and teams end to end: real OpenCode with the plugin, the
//! scripted model and the simulator. Alice owns the agent; bonnie becomes
//! her teammate with `!team add`; gus and eve are guests. One OpenCode
//! serves every step (each step asserts on its own); the agent is killed
//! once and restarted by the shim to show that a thread approval persists.
//!
//! Absence ("never reached OpenCode", "silent") is checked after a
//! sentinel: alice's `!help` in her DM, answered. Posts are handled in
//! order, so by then everything posted before it was judged. The expiry of
//! a guest request runs on its own agent with a 1 s timeout; with a
//! hand-set clock it is tested in process (`src/router/tests/channels.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod bridge_support;

use std::time::Duration;

use bridge_support::steps::Steps;
use bridge_support::{Rig, requests_for, wait_until};
use harness::model::{ScriptedModel, Step};
use mattermost_sim::Account;
use opencode_mattermost::store::{SqliteStore, Store};

const WAIT: Duration = Duration::from_secs(60);

struct World {
    rig: Rig,
    model: ScriptedModel,
    bonnie: Account,
    gus: Account,
    eve: Account,
    /// A teammate from the old plugin's team file.
    fran: Account,
    /// A public channel with everyone in it.
    eng: String,
}

impl World {
    fn post(&self, who: &Account, text: &str, root: Option<&str>) -> String {
        self.rig
            .sim
            .post_as(&who.id, &self.eng, text, root)
            .unwrap()
            .id
    }

    fn alice(&self) -> &Account {
        &self.rig.alice
    }

    /// The message of a current post.
    fn message(&self, id: &str) -> String {
        self.rig
            .live_posts()
            .into_iter()
            .find(|p| p.id == id)
            .map(|p| p.message)
            .unwrap_or_default()
    }

    /// The bot's first reply in a thread containing `needle`, once there.
    async fn reply_with(&self, root: &str, needle: &str) -> String {
        let mut found = None;
        wait_until(WAIT, &format!("a reply with {needle:?}"), || {
            found = self
                .rig
                .bot_replies(root)
                .into_iter()
                .find(|p| p.message.contains(needle));
            found.is_some()
        })
        .await;
        found.unwrap().id
    }

    async fn prompted(&self, phrase: &str, times: usize) {
        wait_until(WAIT, &format!("{times} prompt(s) with {phrase:?}"), || {
            requests_for(&self.model, phrase) == times
        })
        .await;
    }

    async fn says(&self, post: &str, needle: &str) {
        wait_until(WAIT, &format!("post says {needle:?}"), || {
            self.message(post).contains(needle)
        })
        .await;
    }

    async fn sentinel(&self) {
        self.rig.sentinel(&self.rig.alice.id).await;
    }

    /// Alice starts a session in eng; its thread root.
    async fn alice_thread(&self, phrase: &str) -> String {
        let root = self.post(self.alice(), &format!("@opencode-bot {phrase}"), None);
        self.reply_with(&root, "OpenCode session").await;
        self.prompted(phrase, 1).await;
        root
    }

    /// Pending requests in a thread.
    fn pending(&self, root: &str) -> Vec<String> {
        self.rig
            .bot_replies(root)
            .into_iter()
            .filter(|p| p.message.contains("**Guest access request**"))
            .map(|p| p.id)
            .collect()
    }

    /// Alice's `!team …` in her DM, and the answer.
    async fn team(&self, args: &str) -> String {
        let dm = self.rig.dm(&self.rig.alice.id);
        let post = self
            .rig
            .sim
            .post_as(&self.rig.alice.id, &dm, &format!("!team {args}"), None)
            .unwrap();
        let mut answer = String::new();
        wait_until(WAIT, "the team answer", || {
            answer = self
                .rig
                .bot_replies(&post.id)
                .first()
                .map(|p| p.message.clone())
                .unwrap_or_default();
            !answer.is_empty()
        })
        .await;
        answer
    }
}

fn person(rig: &Rig, name: &str) -> Account {
    let a = rig.sim.create_user(name).unwrap();
    rig.sim.add_to_team(&rig.team.id, &a.id).unwrap();
    a
}

/// The simulator with alice's team (bonnie, gus, eve, fran), the eng
/// channel, the old plugin's team file naming fran, and one OpenCode whose
/// agent has `extra` settings on top.
async fn world(extra: &[(&str, &str)]) -> (World, harness::opencode::OpenCode) {
    let rig = Rig::new().await;
    let bonnie = person(&rig, "bonnie");
    let gus = person(&rig, "gus");
    let eve = person(&rig, "eve");
    let eng = rig.channel_with_bot("eng").id;
    for p in [&bonnie, &gus, &eve] {
        rig.sim.add_member(&eng, &p.id).unwrap();
    }
    // The old plugin's team file, imported once at the first start.
    let fran = person(&rig, "fran");
    rig.sim.add_member(&eng, &fran.id).unwrap();
    let old = tempfile::tempdir().unwrap();
    let team_file = old.path().join("mattermost-team.json");
    std::fs::write(
        &team_file,
        serde_json::json!({"version": 1, "team": {
            "id": "4a1f0c1e-0000-4000-8000-000000000000", "name": "t",
            "ownerId": rig.alice.id,
            "members": [
                {"userId": fran.id, "username": "fran", "role": "member"},
                {"userId": "not-an-id", "username": "junk", "role": "member"},
            ],
            "settings": {}}})
        .to_string(),
    )
    .unwrap();
    let team_file = team_file.display().to_string();
    let model = ScriptedModel::start().await.unwrap();
    model.on("ping", vec![Step::text("pong")]);
    let mut settings = vec![
        ("MATTERMOST_OWNER_USER_ID", rig.alice.id.as_str()),
        ("OPENCODE_MM_TEAM_FILE", team_file.as_str()),
    ];
    settings.extend_from_slice(extra);
    let env = rig.env(&settings);
    let oc = rig.opencode(&model, env).await;
    let w = World {
        rig,
        model,
        bonnie,
        gus,
        eve,
        fran,
        eng,
    };
    (w, oc)
}

/// Every step but expiry, on one OpenCode; each step asserts on its own
/// and a failing one does not keep the others from running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_and_teams() {
    let (w, oc) = world(&[]).await;
    let mut steps = Steps::new();
    steps
        .run(
            "owner follow-ups without a mention",
            owner_follow_ups_need_no_mention(&w),
        )
        .await;
    steps
        .run(
            "a stranger's mention never reaches OpenCode",
            a_strangers_mention_never_reaches_opencode(&w),
        )
        .await;
    steps
        .run("!team add, list, remove", team_add_list_remove(&w))
        .await;
    steps
        .run(
            "guest approval 1, a non-teammate's answer ignored",
            guest_approval_once(&w),
        )
        .await;
    steps
        .run(
            "guest approval 3 and deny",
            guest_approval_everyone_and_deny(&w),
        )
        .await;
    steps
        .run(
            "guest approval 2 across an agent restart",
            guest_approval_user_survives_a_restart(&w, &oc),
        )
        .await;
    steps
        .run("the six delegation rows", delegation_rows(&w))
        .await;
    oc.stop().await;
    steps.finish();
}

/// A request nobody answers expires on its own: the post says so, and the
/// guest's message never reaches OpenCode. Its own
/// agent, with the shortest timeout the settings allow (1 s), stands in
/// for a hand-set clock, which a spawned agent cannot have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_guest_request_expires() {
    let (w, oc) = world(&[("OPENCODE_MM_GUEST_APPROVAL_TIMEOUT", "1000")]).await;
    let root = w.alice_thread("ping thread for expiry").await;
    w.post(&w.gus, "@opencode-bot ping gus too late", Some(&root));
    let request = w.reply_with(&root, "**Guest access request").await;
    w.says(&request, "**Guest access request expired**").await;
    w.sentinel().await;
    assert_eq!(requests_for(&w.model, "ping gus too late"), 0);
    oc.stop().await;
}

async fn owner_follow_ups_need_no_mention(w: &World) {
    let root = w.alice_thread("ping first from alice").await;
    w.post(w.alice(), "ping follow-up without mention", Some(&root));
    w.prompted("ping follow-up without mention", 1).await;
    // A teammate-to-be's and a guest's replies without a mention are not.
    w.post(&w.gus, "ping gus chatter", Some(&root));
    w.sentinel().await;
    assert_eq!(requests_for(&w.model, "ping gus chatter"), 0);
}

async fn a_strangers_mention_never_reaches_opencode(w: &World) {
    let top = w.post(&w.gus, "@opencode-bot ping stranger top", None);
    let root = w.alice_thread("ping thread for strangers").await;
    w.post(&w.gus, "@opencode-bot ping stranger in thread", Some(&root));
    w.reply_with(&root, "**Guest access request**").await;
    w.sentinel().await;
    assert_eq!(requests_for(&w.model, "ping stranger"), 0);
    assert!(w.rig.bot_replies(&top).is_empty(), "silent at the top");
}

async fn team_add_list_remove(w: &World) {
    assert_eq!(
        w.team("list").await,
        ":busts_in_silhouette: **Team members (1)**\n1. @fran",
        "imported from the old team file, the junk member left out"
    );
    assert_eq!(
        w.team("add @bonnie").await,
        ":white_check_mark: @bonnie added to your team."
    );
    assert_eq!(
        w.team("list").await,
        ":busts_in_silhouette: **Team members (2)**\n1. @bonnie\n2. @fran"
    );
    assert!(
        w.team("add @no-such-user")
            .await
            .contains("There is no user @no-such-user")
    );
    assert!(w.team("add @a @b").await.contains("one person at a time"));
    assert!(w.team("add @eve").await.contains("@eve added"));
    assert_eq!(
        w.team("remove @eve").await,
        ":wave: @eve removed from your team."
    );
    let all = w.team("").await;
    assert!(all.contains("**Teammates** (2): @bonnie, @fran"), "{all}");
    // Bonnie is a teammate now: she prompts in alice's thread unasked.
    let root = w.alice_thread("ping thread for bonnie").await;
    w.post(&w.bonnie, "@opencode-bot ping from bonnie", Some(&root));
    w.prompted("ping from bonnie", 1).await;
    w.post(&w.fran, "@opencode-bot ping from fran", Some(&root));
    w.prompted("ping from fran", 1).await;
    assert!(w.pending(&root).is_empty());
}

async fn guest_approval_once(w: &World) {
    let root = w.alice_thread("ping thread for once").await;
    w.post(&w.gus, "@opencode-bot ping gus once", Some(&root));
    let request = w.reply_with(&root, "**Guest access request**").await;
    assert!(w.message(&request).contains("@alice"));
    // Eve is no teammate: her answers do nothing.
    w.post(&w.eve, "1", Some(&root));
    w.post(&w.eve, "@opencode-bot 1", Some(&root));
    w.sentinel().await;
    assert_eq!(requests_for(&w.model, "ping gus once"), 0);
    assert_eq!(w.pending(&root), vec![request.clone()]);
    // Bonnie, a teammate, answers without a mention.
    w.post(&w.bonnie, "1", Some(&root));
    w.says(
        &request,
        "approved** by @bonnie: @gus's message (this message only)",
    )
    .await;
    w.prompted("ping gus once", 1).await;
    w.post(&w.gus, "@opencode-bot ping gus twice", Some(&root));
    wait_until(WAIT, "a new request", || w.pending(&root).len() == 1).await;
    w.sentinel().await;
    assert_eq!(requests_for(&w.model, "ping gus twice"), 0);
}

async fn guest_approval_everyone_and_deny(w: &World) {
    let root = w.alice_thread("ping thread for three").await;
    w.post(&w.gus, "@opencode-bot ping to be denied", Some(&root));
    let denied = w.reply_with(&root, "**Guest access request**").await;
    w.post(w.alice(), "deny", Some(&root));
    w.says(&denied, "denied** by @alice").await;
    w.post(&w.gus, "@opencode-bot ping open to all", Some(&root));
    wait_until(WAIT, "a second request", || w.pending(&root).len() == 1).await;
    w.post(w.alice(), "3", Some(&root));
    w.prompted("ping open to all", 1).await;
    w.post(&w.eve, "@opencode-bot ping eve anyone", Some(&root));
    w.prompted("ping eve anyone", 1).await;
    w.sentinel().await;
    assert_eq!(requests_for(&w.model, "ping to be denied"), 0);
}

async fn guest_approval_user_survives_a_restart(w: &World, oc: &harness::opencode::OpenCode) {
    let root = w.alice_thread("ping thread for two").await;
    w.post(&w.gus, "@opencode-bot ping gus for the thread", Some(&root));
    let request = w.reply_with(&root, "**Guest access request**").await;
    w.post(w.alice(), "2", Some(&root));
    w.says(&request, "approved** by @alice: @gus, for this thread")
        .await;
    w.prompted("ping gus for the thread", 1).await;

    let db = oc
        .home
        .path()
        .join(".local/share/opencode-mattermost/state.db");
    let store = SqliteStore::open(&db).unwrap();
    // Removed before the restart: the team file is not imported again.
    assert_eq!(
        w.team("remove @fran").await,
        ":wave: @fran removed from your team."
    );
    let pid = store.instances().await.unwrap()[0].pid;
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_until(WAIT, "the socket to drop", || w.rig.bot_sockets() == 0).await;
    wait_until(WAIT, "the restarted agent", || w.rig.bot_sockets() == 1).await;
    w.sentinel().await;
    let pid_now = store.instances().await.unwrap()[0].pid;
    assert_ne!(pid_now, pid, "a new agent process");
    w.post(&w.gus, "@opencode-bot ping gus after restart", Some(&root));
    w.prompted("ping gus after restart", 1).await;
    assert!(w.pending(&root).is_empty());
    assert_eq!(
        w.team("list").await,
        ":busts_in_silhouette: **Team members (1)**\n1. @bonnie"
    );
}

async fn delegation_rows(w: &World) {
    // Row 1: teammate, @bot @owner, all three members: delegated.
    let asked = w.post(&w.bonnie, "@opencode-bot @alice ping delegated work", None);
    let card = w.reply_with(&asked, "OpenCode session").await;
    let card_text = w.message(&card);
    assert!(
        card_text.contains("**Owner**: @alice · **Started by**: @bonnie (delegated)"),
        "{card_text}"
    );
    w.prompted("ping delegated work", 1).await;
    // The owner's mention is not part of the prompt.
    assert!(
        w.model
            .requests()
            .iter()
            .all(|r| !bridge_support::last_user_text(r).contains("@alice ping delegated")),
    );
    // Row 4: the owner, @bot alone: a normal session.
    let own = w.post(w.alice(), "@opencode-bot ping row four", None);
    let own_card = w.reply_with(&own, "OpenCode session").await;
    assert!(!w.message(&own_card).contains("delegated"));
    w.prompted("ping row four", 1).await;

    // Row 6: the owner is not in the channel.
    let side = w
        .rig
        .sim
        .create_channel(
            &w.rig.team.id,
            "side",
            "Side",
            mattermost_sim::ChannelType::Open,
        )
        .unwrap()
        .id;
    for id in [&w.rig.bot.id, &w.bonnie.id] {
        w.rig.sim.add_member(&side, id).unwrap();
    }
    let silent = [
        // Row 2: a teammate, @bot alone.
        w.post(&w.bonnie, "@opencode-bot ping row two", None),
        // Row 3: not a teammate, @bot @owner.
        w.post(&w.gus, "@opencode-bot @alice ping row three", None),
        // Row 5: the owner, @bot @someone_else.
        w.post(w.alice(), "@opencode-bot @bonnie ping row five", None),
        w.rig
            .sim
            .post_as(
                &w.bonnie.id,
                &side,
                "@opencode-bot @alice ping row six",
                None,
            )
            .unwrap()
            .id,
    ];
    w.sentinel().await;
    for phrase in ["row two", "row three", "row five", "row six"] {
        assert_eq!(requests_for(&w.model, phrase), 0, "{phrase}");
    }
    for post in silent {
        assert!(w.rig.bot_replies(&post).is_empty(), "silent on {post}");
    }
}
