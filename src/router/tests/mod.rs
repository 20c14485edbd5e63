//! The router in process: real link and REST client against the Mattermost
//! simulator, an in-memory store, a hand-set clock and a fake OpenCode that
//! records what it is asked. An agent can be stopped and started again on
//! the same store, as a restart would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod channels;
mod mentions;
mod missed;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mattermost_sim::{Account, SimConfig, Simulator};
use tokio::sync::mpsc;

use super::{Parts, Router};
use crate::app::Clock;
use crate::config::Config;
use crate::mattermost::connection::{Connector, INBOUND_QUEUE};
use crate::opencode::events::{Event, PermissionAsked, QuestionAsked};
use crate::opencode::message::MessageWithParts;
use crate::opencode::{
    Activity, Health, OpenCode, OpenCodeError, PermissionReply, Prompt, Providers, Session,
};
use crate::store::SqliteStore;

/// The project directory of every agent here (part of its instance id).
const DIR: &str = "/src/project";
/// Every agent of a test is "the same" agent restarted: one id.
const INSTANCE: &str = "inst_routertests0000";
const WAIT: Duration = Duration::from_secs(20);

/// A clock the test sets by hand.
pub(super) struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub(super) fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap();
        *now += chrono::Duration::from_std(by).unwrap();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// Answers like an idle OpenCode and records prompts and answers.
#[derive(Default)]
pub(super) struct FakeOpenCode {
    sessions: AtomicU32,
    pub prompts: Mutex<Vec<Prompt>>,
    /// Permission requests waiting, as `GET /permission` lists them.
    pub pending: Mutex<Vec<PermissionAsked>>,
    /// Questions waiting, as `GET /question` lists them.
    pub questions: Mutex<Vec<QuestionAsked>>,
    /// Question replies sent: request id and answers.
    pub question_answers: Mutex<Vec<(String, Vec<Vec<String>>)>>,
    pub answers: Mutex<Vec<(String, PermissionReply)>>,
}

impl FakeOpenCode {
    /// How many prompts carried `text`.
    pub(super) fn prompted(&self, text: &str) -> usize {
        let prompts = self.prompts.lock().unwrap();
        prompts.iter().filter(|p| p.text.contains(text)).count()
    }

    /// Prompts whose request itself (after any thread context) holds `text`.
    pub(super) fn requested(&self, text: &str) -> usize {
        let prompts = self.prompts.lock().unwrap();
        prompts
            .iter()
            .filter(|p| {
                p.text
                    .rsplit(crate::context::format::END)
                    .next()
                    .is_some_and(|request| request.contains(text))
            })
            .count()
    }
}

#[async_trait]
impl OpenCode for FakeOpenCode {
    async fn list_sessions(&self) -> Result<Vec<Session>, OpenCodeError> {
        Ok(Vec::new())
    }
    async fn get_session(&self, id: &str) -> Result<Session, OpenCodeError> {
        Ok(Session {
            id: id.into(),
            ..Session::default()
        })
    }
    async fn health(&self) -> Result<Health, OpenCodeError> {
        Ok(Health::default())
    }
    async fn create_session(&self, title: Option<&str>) -> Result<Session, OpenCodeError> {
        let n = self.sessions.fetch_add(1, Ordering::Relaxed);
        Ok(Session {
            id: format!("ses_fake{n}"),
            title: title.unwrap_or_default().into(),
            ..Session::default()
        })
    }
    async fn prompt_async(&self, _session: &str, prompt: &Prompt) -> Result<(), OpenCodeError> {
        self.prompts.lock().unwrap().push(prompt.clone());
        Ok(())
    }
    async fn prompt_wait(&self, _session: &str, prompt: &Prompt) -> Result<String, OpenCodeError> {
        self.prompts.lock().unwrap().push(prompt.clone());
        Ok("summary".into())
    }
    async fn delete_session(&self, _id: &str) -> Result<(), OpenCodeError> {
        Ok(())
    }
    async fn small_model(&self) -> Result<Option<crate::opencode::ModelRef>, OpenCodeError> {
        Ok(None)
    }
    async fn messages(&self, _session: &str) -> Result<Vec<MessageWithParts>, OpenCodeError> {
        Ok(Vec::new())
    }
    async fn activity(&self) -> Result<Vec<(String, Activity)>, OpenCodeError> {
        Ok(Vec::new())
    }
    async fn abort(&self, _session: &str) -> Result<bool, OpenCodeError> {
        Ok(true)
    }
    async fn providers(&self) -> Result<Providers, OpenCodeError> {
        Ok(Providers::default())
    }
    async fn reply_permission(
        &self,
        request_id: &str,
        reply: PermissionReply,
    ) -> Result<(), OpenCodeError> {
        self.pending.lock().unwrap().retain(|p| p.id != request_id);
        self.answers
            .lock()
            .unwrap()
            .push((request_id.to_owned(), reply));
        Ok(())
    }
    async fn reply_question(&self, id: &str, answers: &[Vec<String>]) -> Result<(), OpenCodeError> {
        self.question_answers
            .lock()
            .unwrap()
            .push((id.to_owned(), answers.to_vec()));
        Ok(())
    }
    async fn reject_question(&self, _id: &str) -> Result<(), OpenCodeError> {
        Ok(())
    }
    async fn pending_permissions(&self) -> Result<Vec<PermissionAsked>, OpenCodeError> {
        Ok(self.pending.lock().unwrap().clone())
    }
    async fn pending_questions(&self) -> Result<Vec<QuestionAsked>, OpenCodeError> {
        Ok(self.questions.lock().unwrap().clone())
    }
}

/// Everything that outlives one agent: the server, its people, the store.
pub(super) struct World {
    pub sim: Simulator,
    pub bot: Account,
    /// `MATTERMOST_OWNER_USER_ID`.
    pub owner: Account,
    /// Allowed to prompt, like bob.
    pub alice: Account,
    pub bob: Account,
    /// Alice's DM with the bot.
    pub dm: String,
    /// A public channel with everyone in it.
    pub town: String,
    /// The team everyone is in.
    pub team: String,
    pub store: Arc<SqliteStore>,
    pub clock: Arc<ManualClock>,
    pub opencode: Arc<FakeOpenCode>,
    pub temp: tempfile::TempDir,
}

/// One running agent on the [`World`].
pub(super) struct Agent {
    connector: Arc<Connector>,
    /// OpenCode's event stream stays open while the agent runs.
    _events: mpsc::Sender<Event>,
    run: tokio::task::JoinHandle<()>,
}

impl World {
    /// The simulator keeps no resume buffer, so any event missed while the
    /// bot's socket is down makes the resume fail and the link catch up.
    pub(super) async fn new() -> World {
        let sim = Simulator::start_with(SimConfig {
            ws_resume_buffer: 0,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let bot = sim.create_bot("opencode-bot").unwrap();
        let team = sim.create_team("eng", "Engineering");
        let [owner, alice, bob] = ["owner", "alice", "bob"].map(|n| sim.create_user(n).unwrap());
        for id in [&bot.id, &owner.id, &alice.id, &bob.id] {
            sim.add_to_team(&team.id, id).unwrap();
        }
        let dm = sim.direct_channel(&bot.id, &alice.id).unwrap().id;
        let town = sim
            .create_channel(&team.id, "town", "Town", mattermost_sim::ChannelType::Open)
            .unwrap()
            .id;
        for id in [&bot.id, &owner.id, &alice.id, &bob.id] {
            sim.add_member(&town, id).unwrap();
        }
        World {
            sim,
            bot,
            owner,
            alice,
            bob,
            dm,
            town,
            team: team.id,
            store: Arc::new(SqliteStore::open_in_memory().unwrap()),
            clock: Arc::new(ManualClock(Mutex::new(Utc::now()))),
            opencode: Arc::new(FakeOpenCode::default()),
            temp: tempfile::tempdir().unwrap(),
        }
    }

    /// The id every agent started here registers under.
    pub(super) fn instance_id(&self) -> String {
        INSTANCE.to_owned()
    }

    fn config(&self) -> Config {
        let env: HashMap<&str, String> = HashMap::from([
            ("MATTERMOST_URL", self.sim.base_url()),
            ("MATTERMOST_TOKEN", self.bot.token.clone()),
            ("MATTERMOST_OWNER_USER_ID", self.owner.id.clone()),
            (
                "OPENCODE_MM_ALLOWED_USERS",
                format!("{},{}", self.alice.id, self.bob.id),
            ),
            ("MATTERMOST_RECONNECT_INTERVAL", "100".into()),
            (
                "OPENCODE_MM_TEMP_DIR",
                self.temp.path().display().to_string(),
            ),
            ("OPENCODE_MM_NOTIFY_COMPLETION", "false".into()),
            ("OPENCODE_MM_NOTIFY_ERROR", "false".into()),
        ]);
        Config::from_sources(&|k| env.get(k).cloned(), None)
    }

    /// Connect an agent and run its bridge; it recovers at once.
    pub(super) async fn start(&self) -> Agent {
        let (link_tx, link_rx) = mpsc::channel(INBOUND_QUEUE);
        let connector = Arc::new(Connector::new(link_tx));
        let config = self.config();
        connector.connect(&config).await.unwrap();
        let (events_tx, events_rx) = mpsc::channel(16);
        let router = Router::build(Parts {
            config,
            opencode: self.opencode.clone(),
            link: connector.clone(),
            store: self.store.clone(),
            directory: DIR.into(),
            identity: crate::app::identity::Identity::given(INSTANCE),
            clock: self.clock.clone(),
        })
        .await
        .unwrap();
        let run = tokio::spawn(router.run(link_rx, events_rx));
        Agent {
            connector,
            _events: events_tx,
            run,
        }
    }

    /// The bot's current posts in a thread, oldest first.
    pub(super) fn bot_replies(&self, root: &str) -> Vec<mattermost_sim::model::Post> {
        self.sim
            .posts()
            .into_iter()
            .filter(|p| {
                p.root_id == root
                    && p.user_id == self.bot.id
                    && p.original_id.is_empty()
                    && p.delete_at == 0
            })
            .collect()
    }

    /// Waits for the bot's first reply in a thread that contains `text`.
    pub(super) async fn reply_with(&self, root: &str, text: &str) -> mattermost_sim::model::Post {
        let mut found = None;
        eventually(&format!("a reply with {text:?}"), || {
            found = self
                .bot_replies(root)
                .into_iter()
                .find(|p| p.message.contains(text));
            found.is_some()
        })
        .await;
        found.unwrap()
    }

    /// `!help` from alice, answered: posts and reactions are handled in
    /// order, so everything before it was handled too.
    pub(super) async fn sentinel(&self) {
        let post = self
            .sim
            .post_as(&self.alice.id, &self.dm, "!help", None)
            .unwrap();
        eventually("the sentinel's answer", || {
            !self.bot_replies(&post.id).is_empty()
        })
        .await;
    }
}

impl Agent {
    /// Disconnect and stop the bridge, as a killed agent would.
    pub(super) async fn stop(self) {
        self.connector.disconnect().await;
        self.run.abort();
    }
}

/// Polls `cond` until it holds.
pub(super) async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
