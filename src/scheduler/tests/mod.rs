//! Shared fixtures for the scheduler tests: a hand-set clock, a scheduler
//! and schedules against an in-memory store, a fake people lookup for the
//! operations, and a fake OpenCode for runs. The tests themselves live in
//! the submodules, one per part of the scheduler.

mod cron;
mod exec;
mod ops;
mod properties;
mod runs;
mod syntax;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use pretty_assertions::assert_eq;
use serde_json::json;

use super::ops::{AddRequest, Caller, LookupError, People};
use super::*;
use crate::mattermost::types::User;
use crate::opencode::message::MessageWithParts;
use crate::opencode::{Activity, Health, OpenCode, OpenCodeError, Prompt, Session};
use crate::store::SqliteStore;

// ---- fixtures ----------------------------------------------------------------

/// A clock the test sets by hand.
struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    fn at(t: DateTime<Utc>) -> Arc<ManualClock> {
        Arc::new(ManualClock(Mutex::new(t)))
    }
    fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap() = t;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

fn secs(t: DateTime<Utc>, s: i64) -> DateTime<Utc> {
    t + chrono::Duration::seconds(s)
}

const DIR: &str = "/src/project";
const ALICE: &str = "aliceaaaaaaaaaaaaaaaaaaaaa";
const BOB: &str = "bobbbbbbbbbbbbbbbbbbbbbbbb";
const OWNER: &str = "ownerrrrrrrrrrrrrrrrrrrrrr";
const MALLORY: &str = "malloryyyyyyyyyyyyyyyyyyyy";
/// The owner and the allowed users of the operations' tests.
const PERMITTED: &[&str] = &[OWNER, ALICE, BOB];
/// `OPENCODE_MM_SCHEDULE_MIN_INTERVAL`'s default.
const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

fn policy() -> Policy {
    Policy {
        grace: Duration::from_secs(600),
        timeout: Duration::from_secs(1800),
    }
}

fn scheduler(store: Arc<dyn Store>, clock: Arc<ManualClock>, instance: &str) -> Scheduler {
    Scheduler::new(store, clock, instance, DIR, policy())
}

fn schedule(id: &str, cron: &str, tz: &str, since: DateTime<Utc>) -> Schedule {
    Schedule {
        id: id.into(),
        name: format!("name-{id}"),
        cron: cron.into(),
        timezone: tz.into(),
        prompt: "summarise".into(),
        target_user_id: ALICE.into(),
        agent: None,
        model: None,
        directory: DIR.into(),
        enabled: true,
        created_by: OWNER.into(),
        created_at: millis(since),
        active_since: millis(since),
    }
}

fn mem() -> Arc<dyn Store> {
    Arc::new(SqliteStore::open_in_memory().unwrap())
}

/// The scheduled times, in UTC, from a list of runs.
fn times(due: &[Due]) -> Vec<DateTime<Utc>> {
    due.iter()
        .map(|d| from_millis(d.run.scheduled_at))
        .collect()
}

async fn finish(store: &dyn Store, due: &Due, state: RunState) {
    let mut run = due.run.clone();
    run.state = state;
    run.finished_at = Some(run.claimed_at + 1000);
    store.update_schedule_run(&run).await.unwrap();
}

// ---- people, for the operations (tools and chat share these) ----------------------

struct FakePeople {
    users: Vec<User>,
    connected: bool,
}

fn user(id: &str, name: &str) -> User {
    User {
        id: id.into(),
        username: name.into(),
        ..User::default()
    }
}

impl FakePeople {
    fn new() -> FakePeople {
        let mut bot = user("botttttttttttttttttttttttt", "opencode-bot");
        bot.is_bot = true;
        let mut gone = user("gonegonegonegonegonegonego", "gone");
        gone.delete_at = 5;
        FakePeople {
            users: vec![
                user(ALICE, "alice"),
                user(BOB, "bob"),
                user(OWNER, "owner"),
                user(MALLORY, "mallory"),
                bot,
                gone,
            ],
            connected: true,
        }
    }
}

#[async_trait]
impl People for FakePeople {
    async fn by_id(&self, id: &str) -> Result<User, LookupError> {
        if !self.connected {
            return Err(LookupError::NotConnected);
        }
        self.users
            .iter()
            .find(|u| u.id == id)
            .cloned()
            .ok_or(LookupError::NotFound)
    }
    async fn by_username(&self, username: &str) -> Result<User, LookupError> {
        if !self.connected {
            return Err(LookupError::NotConnected);
        }
        self.users
            .iter()
            .find(|u| u.username == username)
            .cloned()
            .ok_or(LookupError::NotFound)
    }
    fn permalink(&self, post_id: &str) -> Option<String> {
        Some(format!("http://chat/_redirect/pl/{post_id}"))
    }
}

fn add(name: &str, cron: &str, prompt: &str) -> AddRequest {
    AddRequest {
        name: name.into(),
        cron: cron.into(),
        prompt: prompt.into(),
        ..AddRequest::default()
    }
}

const TOOL: Caller<'static> = Caller::OpenCode {
    session: Some("ses_1"),
};

// ---- a fake OpenCode, for runs -----------------------------------------------------

/// Answers like OpenCode would: a session, then (after `busy_polls` busy
/// answers) the stored messages.
#[derive(Default)]
struct FakeOpenCode {
    reply: Mutex<Vec<serde_json::Value>>,
    busy_polls: Mutex<u32>,
    forever_busy: bool,
    prompts: Mutex<Vec<Prompt>>,
    aborted: Mutex<Vec<String>>,
    fail_session: bool,
}

#[async_trait]
impl OpenCode for FakeOpenCode {
    async fn list_sessions(&self) -> Result<Vec<Session>, OpenCodeError> {
        Ok(Vec::new())
    }
    async fn get_session(&self, id: &str) -> Result<Session, OpenCodeError> {
        Err(OpenCodeError::NotFound {
            what: "session",
            id: id.into(),
        })
    }
    async fn health(&self) -> Result<Health, OpenCodeError> {
        Ok(Health::default())
    }
    async fn create_session(&self, title: Option<&str>) -> Result<Session, OpenCodeError> {
        if self.fail_session {
            return Err(OpenCodeError::Unreachable("connection refused".into()));
        }
        Ok(Session {
            id: "ses_sched1234".into(),
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
        let user = self
            .prompts
            .lock()
            .unwrap()
            .last()
            .map(|p| p.message_id.clone())
            .unwrap_or_default();
        let reply = self.reply.lock().unwrap().clone();
        let mut out = vec![
            json!({"info": {"id": user, "sessionID": "ses_sched1234", "role": "user"}, "parts": []}),
        ];
        if !reply.is_empty() {
            out.push(json!({
                "info": {"id": "msg_zz1", "sessionID": "ses_sched1234", "role": "assistant",
                         "parentID": user, "time": {"created": 1, "completed": 2}, "finish": "stop"},
                "parts": reply,
            }));
        }
        Ok(out
            .into_iter()
            .map(|v| serde_json::from_value(v).unwrap())
            .collect())
    }
    async fn activity(&self) -> Result<Vec<(String, Activity)>, OpenCodeError> {
        let mut busy = self.busy_polls.lock().unwrap();
        if self.forever_busy || *busy > 0 {
            *busy = busy.saturating_sub(1);
            return Ok(vec![("ses_sched1234".into(), Activity::Busy)]);
        }
        Ok(Vec::new())
    }
    async fn abort(&self, session_id: &str) -> Result<bool, OpenCodeError> {
        self.aborted.lock().unwrap().push(session_id.into());
        Ok(true)
    }

    async fn providers(&self) -> Result<crate::opencode::Providers, OpenCodeError> {
        Ok(crate::opencode::Providers::default())
    }
    async fn reply_permission(
        &self,
        _request_id: &str,
        _reply: crate::opencode::PermissionReply,
    ) -> Result<(), OpenCodeError> {
        Ok(())
    }
    async fn reply_question(
        &self,
        _request_id: &str,
        _answers: &[Vec<String>],
    ) -> Result<(), OpenCodeError> {
        Ok(())
    }
    async fn reject_question(&self, _request_id: &str) -> Result<(), OpenCodeError> {
        Ok(())
    }
    async fn pending_permissions(
        &self,
    ) -> Result<Vec<crate::opencode::events::PermissionAsked>, OpenCodeError> {
        Ok(Vec::new())
    }
    async fn pending_questions(
        &self,
    ) -> Result<Vec<crate::opencode::events::QuestionAsked>, OpenCodeError> {
        Ok(Vec::new())
    }
}

fn text_part(id: &str, text: &str) -> serde_json::Value {
    json!({"id": id, "sessionID": "ses_sched1234", "messageID": "msg_zz1", "type": "text", "text": text})
}

async fn claimed(store: &Arc<dyn Store>) -> (Schedule, ScheduleRun) {
    let t0 = utc(2026, 3, 2, 8, 0);
    let s = scheduler(store.clone(), ManualClock::at(t0), "a");
    let mut sch = schedule("s1", "0 9 * * 1-5", "America/New_York", t0);
    sch.name = "weekday-prs".into();
    sch.model = Some("scripted/scripted-2".into());
    sch.agent = Some("plan".into());
    store.add_schedule(&sch).await.unwrap();
    let (claim, run) = s.claim_now(&sch).await.unwrap();
    assert_eq!(claim, RunClaim::Won);
    (sch, run)
}
