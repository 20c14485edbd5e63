//! The agent's persistent state: which instances run, which Mattermost
//! threads belong to which OpenCode session, which inbound posts were already
//! taken, which replies are still being streamed, and how far each channel has
//! been read.
//!
//! Several agents can share one bot token and all of them see every event
//! (design: "Several agents, one bot"). The store is where they agree: a post
//! is claimed by exactly one of them through a unique key, not through any
//! in-process lock. [`SqliteStore`] gives that on one machine, [`PgStore`]
//! across hosts sharing one PostgreSQL database; both pass the same contract
//! tests (`tests/`), written once against the [`Store`] trait.
//!
//! Timestamps are passed in by the caller ([`Millis`]); the store never reads
//! the clock, so tests control time.

mod channels;
mod migrations;
mod postgres;
mod sqlite;

#[cfg(test)]
pub(crate) mod tests;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

pub use channels::{Grantee, GuestRequest, GuestState, Teammate, ThreadGrant};
pub use postgres::{
    PgOptions, PgStore, database_url_has_password, is_postgres_url, redact_database_url,
};
pub use sqlite::SqliteStore;

/// Milliseconds since the Unix epoch, as Mattermost stamps its posts.
pub type Millis = i64;

/// The current time as [`Millis`], for callers (the store itself never asks).
/// Saturates instead of failing on clocks outside the `i64` range.
pub fn now_millis() -> Millis {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis())
            .map(|ms| -ms)
            .unwrap_or(i64::MIN),
    }
}

/// One running agent: what it serves and when it last said it is alive, so
/// the others can tell who holds a session and whether it is still there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub host: String,
    pub directory: String,
    pub owner_user_id: Option<String>,
    pub pid: u32,
    pub started_at: Millis,
    pub heartbeat_at: Millis,
}

impl Instance {
    /// How people see an instance: its project folder and host.
    pub fn display_name(&self) -> String {
        let project = std::path::Path::new(&self.directory)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(&self.directory);
        format!("{project}@{}", self.host)
    }
}

/// Whether a thread still forwards posts to its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadStatus {
    Active,
    Ended,
}

/// A Mattermost thread bound to one OpenCode session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadBinding {
    pub root_post_id: String,
    pub channel_id: String,
    pub session_id: String,
    pub instance_id: String,
    pub created_by: String,
    pub created_at: Millis,
    pub status: ThreadStatus,
    /// `provider/model` chosen for this thread, if not the session default.
    pub model: Option<String>,
}

/// How far the handling of a claimed post got, so a restarted instance knows
/// what to resume and what not to send twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimState {
    /// Taken, nothing sent to OpenCode yet.
    Claimed,
    /// Sent to OpenCode as `message_id`; the reply may still be running.
    Prompted,
    Done,
    Failed,
    /// Caught up after the agent was away longer than the catch-up age
    /// limit: not run, but offered by a notice post (kept in `message_id`)
    /// until someone asks for it with a reaction.
    Missed,
}

/// One inbound post claimed by one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub post_id: String,
    pub instance_id: String,
    pub claimed_at: Millis,
    pub state: ClaimState,
    pub session_id: Option<String>,
    /// The OpenCode user message id chosen for `prompt_async`; choosing it
    /// before sending lets a restart check whether the prompt arrived. For a
    /// [`ClaimState::Missed`] claim, no prompt exists yet: the bot's notice
    /// post that offers to run it.
    pub message_id: Option<String>,
    pub root_post_id: Option<String>,
    pub channel_id: Option<String>,
}

/// Whether a reply is still receiving text from OpenCode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyState {
    Streaming,
    Done,
}

/// The reply posts of one assistant turn (one user message in OpenCode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Together with `user_message_id`, the key.
    pub session_id: String,
    pub user_message_id: String,
    pub instance_id: String,
    pub channel_id: String,
    pub root_post_id: String,
    /// The Mattermost posts holding the reply, in order (long replies span
    /// several posts).
    pub post_ids: Vec<String>,
    pub started_at: Millis,
    pub state: ReplyState,
    /// Set from just before a reply post is created until its id is in
    /// `post_ids`: the `pending_post_id` the create call carries (also in
    /// the post's props), so a restart adopts that post instead of making
    /// a second one.
    pub pending_post_id: Option<String>,
}

/// A prompt run on a cron schedule, its result DM'd to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// `sch_` + creation time + random characters; never shown as the key to
    /// users, who use the name.
    pub id: String,
    /// Unique across the database.
    pub name: String,
    /// The 5-field cron expression exactly as typed.
    pub cron: String,
    /// IANA time zone name the expression is read in.
    pub timezone: String,
    pub prompt: String,
    /// Who receives the result DM.
    pub target_user_id: String,
    /// OpenCode agent to run the prompt with, if not the default.
    pub agent: Option<String>,
    /// `provider/model`, if not the default.
    pub model: Option<String>,
    /// The project directory whose OpenCode runs it.
    pub directory: String,
    pub enabled: bool,
    /// Who created it (a Mattermost user id, or `opencode:<session id>`).
    pub created_by: String,
    pub created_at: Millis,
    /// Scheduled times at or before this are not owed: set at creation and
    /// whenever the schedule is enabled again, so a disabled stretch is not
    /// reported as missed runs.
    pub active_since: Millis,
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunTrigger {
    /// A scheduled time of the cron expression.
    Cron,
    /// `mattermost_schedule_run` or `!schedule run`.
    Manual,
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    Done,
    Failed,
    TimedOut,
    /// Not run: the previous run of the schedule was still going.
    Skipped,
    /// Not run: no agent was up at the time, and the grace window passed.
    Missed,
}

/// One scheduled time (or manual run) of a schedule and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRun {
    pub schedule_id: String,
    /// UTC milliseconds of the cron occurrence (whole minutes), or of the
    /// request for a manual run (never a whole minute).
    pub scheduled_at: Millis,
    pub trigger: RunTrigger,
    pub instance_id: String,
    pub claimed_at: Millis,
    /// After this a `Running` row no longer blocks the next run: the agent
    /// that claimed it gave up or died.
    pub deadline_at: Millis,
    pub state: RunState,
    pub session_id: Option<String>,
    pub finished_at: Option<Millis>,
    /// The error, the reason for a skip, or the missed times.
    pub detail: Option<String>,
    /// The root post of the result DM.
    pub post_id: Option<String>,
}

/// The answer to [`Store::claim_schedule_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunClaim {
    /// This caller owns the run.
    Won,
    /// Another caller already recorded this scheduled time.
    Taken,
    /// Recorded as [`RunState::Skipped`]: this run of the schedule is still
    /// going.
    Overlap(ScheduleRun),
    /// The schedule was removed, or (for cron runs) disabled.
    Inactive,
}

/// Someone to DM when a session needs attention (`mattermost_monitor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorRow {
    /// Together with `target_user_id`, the key.
    pub session_id: String,
    /// The Mattermost user who gets the alerts.
    pub target_user_id: String,
    /// False: removed after its first alert.
    pub persistent: bool,
    pub created_at: Millis,
    /// The key of the last state this target was alerted about; an alert
    /// for the same key is not sent again.
    pub last_alert: Option<String>,
}

/// A thread merged into another with `!merge`: locked for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeLock {
    /// The merged (source) thread, the key.
    pub root_post_id: String,
    pub channel_id: String,
    /// Where its talk goes on.
    pub into_root_post_id: String,
    pub into_channel_id: String,
    /// Who merged it (user id).
    pub merged_by: String,
    pub merged_at: Millis,
}

/// Why a store operation failed, worded so the user knows what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("state database error: {0}")]
    Sqlite(String),
    /// A PostgreSQL failure: unreachable, refused, timed out, or a statement
    /// the server rejected. Never holds the password.
    #[error("state database error (PostgreSQL): {0}")]
    Postgres(String),
    #[error("state database conflict: {0}")]
    Conflict(String),
    #[error("not in the state database: {0}")]
    NotFound(String),
    #[error(
        "the state database holds a value this build cannot read ({0}); it was changed \
         outside opencode-mattermost: restore a backup, or move the file aside \
         (or point OPENCODE_MM_STATE_DB or OPENCODE_MM_DATABASE_URL elsewhere) to start afresh"
    )]
    Corrupt(String),
    #[error(
        "the state database was written by a newer opencode-mattermost (schema {found}, \
         this build knows {known}); upgrade, or point OPENCODE_MM_STATE_DB or \
         OPENCODE_MM_DATABASE_URL elsewhere"
    )]
    NewerSchema { found: i64, known: i64 },
    #[error(
        "cannot create the state directory {}: {reason}; fix its permissions or point \
         OPENCODE_MM_STATE_DB elsewhere",
        path.display()
    )]
    Io { path: PathBuf, reason: String },
    #[error("a state database task did not finish ({0}); this is a bug, please report it")]
    Join(String),
}

impl ThreadStatus {
    /// The stored spelling; stable across releases and storage engines.
    pub fn as_str(self) -> &'static str {
        match self {
            ThreadStatus::Active => "active",
            ThreadStatus::Ended => "ended",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(ThreadStatus::Active),
            "ended" => Some(ThreadStatus::Ended),
            _ => None,
        }
    }
}

impl ClaimState {
    /// The stored spelling; stable across releases and storage engines.
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimState::Claimed => "claimed",
            ClaimState::Prompted => "prompted",
            ClaimState::Done => "done",
            ClaimState::Failed => "failed",
            ClaimState::Missed => "missed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "claimed" => Some(ClaimState::Claimed),
            "prompted" => Some(ClaimState::Prompted),
            "done" => Some(ClaimState::Done),
            "failed" => Some(ClaimState::Failed),
            "missed" => Some(ClaimState::Missed),
            _ => None,
        }
    }

    /// Done and Failed need nothing more after a restart.
    pub fn is_finished(self) -> bool {
        matches!(self, ClaimState::Done | ClaimState::Failed)
    }
}

impl RunTrigger {
    /// The stored spelling; stable across releases and storage engines.
    pub fn as_str(self) -> &'static str {
        match self {
            RunTrigger::Cron => "cron",
            RunTrigger::Manual => "manual",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "cron" => Some(RunTrigger::Cron),
            "manual" => Some(RunTrigger::Manual),
            _ => None,
        }
    }
}

impl RunState {
    /// The stored spelling; stable across releases and storage engines.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Done => "done",
            RunState::Failed => "failed",
            RunState::TimedOut => "timed_out",
            RunState::Skipped => "skipped",
            RunState::Missed => "missed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "running" => Some(RunState::Running),
            "done" => Some(RunState::Done),
            "failed" => Some(RunState::Failed),
            "timed_out" => Some(RunState::TimedOut),
            "skipped" => Some(RunState::Skipped),
            "missed" => Some(RunState::Missed),
            _ => None,
        }
    }
}

impl ReplyState {
    /// The stored spelling; stable across releases and storage engines.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyState::Streaming => "streaming",
            ReplyState::Done => "done",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "streaming" => Some(ReplyState::Streaming),
            "done" => Some(ReplyState::Done),
            _ => None,
        }
    }
}

/// What [`Store::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub claims: usize,
    pub replies: usize,
}

/// Finished claims and replies are kept this long (for late duplicates and
/// questions), then pruned.
pub const KEEP_FINISHED_MS: Millis = 7 * 24 * 60 * 60 * 1000;

/// Persistent state shared by every instance using the same database.
///
/// Implementations must make [`Store::claim_post`] exactly-once across
/// processes; everything else is plain reads and writes.
#[async_trait]
pub trait Store: Send + Sync {
    /// Insert or replace the instance row with this id.
    async fn register_instance(&self, instance: &Instance) -> Result<(), StoreError>;
    /// NotFound if the instance is not registered (it may have been pruned;
    /// register it again).
    async fn heartbeat(&self, instance_id: &str, at: Millis) -> Result<(), StoreError>;
    async fn instances(&self) -> Result<Vec<Instance>, StoreError>;
    /// Forget instances whose last heartbeat is before `offline_before`;
    /// returns how many.
    async fn prune_instances(&self, offline_before: Millis) -> Result<u64, StoreError>;

    /// Record a new binding. Binding a thread again to the same session is a
    /// no-op (the first row stays); to a different session it is a Conflict,
    /// because a thread answers to one session only.
    async fn bind_thread(&self, binding: &ThreadBinding) -> Result<(), StoreError>;
    async fn thread(&self, root_post_id: &str) -> Result<Option<ThreadBinding>, StoreError>;
    /// Oldest first.
    async fn threads_of_session(&self, session_id: &str) -> Result<Vec<ThreadBinding>, StoreError>;
    /// Every binding, oldest first: for listings outside the bridge
    /// (`opencode-mattermost sessions`), which must also show threads of
    /// instances no longer registered.
    async fn threads(&self) -> Result<Vec<ThreadBinding>, StoreError>;
    /// Oldest first.
    async fn threads_of_instance(
        &self,
        instance_id: &str,
    ) -> Result<Vec<ThreadBinding>, StoreError>;
    /// NotFound if the thread is not bound.
    async fn set_thread_status(
        &self,
        root_post_id: &str,
        status: ThreadStatus,
    ) -> Result<(), StoreError>;
    /// NotFound if the thread is not bound; `None` returns to the default.
    async fn set_thread_model(
        &self,
        root_post_id: &str,
        model: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Point a thread at another session (`!use` inside a thread); the
    /// thread becomes Active. NotFound if the thread is not bound.
    async fn set_thread_session(
        &self,
        root_post_id: &str,
        session_id: &str,
    ) -> Result<(), StoreError>;

    /// Attach a channel (a DM) to the thread whose session its top-level
    /// posts go to; `None` detaches it.
    async fn select_thread(
        &self,
        channel_id: &str,
        root_post_id: Option<&str>,
        at: Millis,
    ) -> Result<(), StoreError>;
    /// The thread a channel is attached to, if any.
    async fn selection(&self, channel_id: &str) -> Result<Option<String>, StoreError>;

    /// Exactly-once: true only for the first caller for this post id, across
    /// processes sharing the database. The claim starts as
    /// [`ClaimState::Claimed`].
    async fn claim_post(
        &self,
        post_id: &str,
        instance_id: &str,
        at: Millis,
    ) -> Result<bool, StoreError>;
    async fn claim(&self, post_id: &str) -> Result<Option<Claim>, StoreError>;
    /// Update state, session, message, root and channel of an existing claim
    /// (owner and time stay); NotFound if the post was never claimed.
    async fn update_claim(&self, claim: &Claim) -> Result<(), StoreError>;
    /// Claims of this instance not yet Done/Failed, oldest first (to resume
    /// after a crash).
    async fn unfinished_claims(&self, instance_id: &str) -> Result<Vec<Claim>, StoreError>;
    /// Exactly-once: turn this instance's [`ClaimState::Missed`] claim back
    /// into a plain [`ClaimState::Claimed`] one (its notice forgotten), so
    /// the post runs. True only for the first caller; false when the claim
    /// is not Missed, not this instance's, or gone.
    async fn take_missed(&self, post_id: &str, instance_id: &str) -> Result<bool, StoreError>;
    /// Exactly-once: mark a Claimed or Prompted claim of `instance_id`
    /// Failed, but only while that instance's last heartbeat is older than
    /// `offline_before` (checked in the same statement, so an instance that
    /// came back keeps its work). True only for the first caller: the one
    /// that tells the thread.
    async fn abandon_claim(
        &self,
        post_id: &str,
        instance_id: &str,
        offline_before: Millis,
    ) -> Result<bool, StoreError>;

    /// Delete what is finished and older than `before`: claims that are
    /// Done or Failed, offers of Missed posts nobody took, and replies that
    /// are Done. Unfinished ones stay (a restart still needs them). How many
    /// of each went.
    async fn prune(&self, before: Millis) -> Result<Pruned, StoreError>;

    /// Insert or replace by `(session_id, user_message_id)`.
    async fn save_reply(&self, reply: &Reply) -> Result<(), StoreError>;
    async fn reply(
        &self,
        session_id: &str,
        user_message_id: &str,
    ) -> Result<Option<Reply>, StoreError>;
    /// Replies still Streaming for this instance, oldest first (to finish
    /// after a restart).
    async fn streaming_replies(&self, instance_id: &str) -> Result<Vec<Reply>, StoreError>;

    /// Remember the newest post seen in a channel; never moves backwards
    /// (ordered by `create_at`, then by post id compared bytewise).
    async fn advance_cursor(
        &self,
        channel_id: &str,
        create_at: Millis,
        post_id: &str,
    ) -> Result<(), StoreError>;
    /// `(channel_id, create_at)` of every channel, by channel id.
    async fn cursors(&self) -> Result<Vec<(String, Millis)>, StoreError>;

    /// Conflict when the name is taken.
    async fn add_schedule(&self, schedule: &Schedule) -> Result<(), StoreError>;
    /// Every schedule, by name.
    async fn schedules(&self) -> Result<Vec<Schedule>, StoreError>;
    async fn schedule_by_name(&self, name: &str) -> Result<Option<Schedule>, StoreError>;
    /// Removes its runs too; NotFound if there is no such schedule.
    async fn remove_schedule(&self, id: &str) -> Result<(), StoreError>;
    /// NotFound if there is no such schedule. Enabling a disabled schedule
    /// moves `active_since` to `at`; anything else leaves it.
    async fn set_schedule_enabled(
        &self,
        id: &str,
        enabled: bool,
        at: Millis,
    ) -> Result<(), StoreError>;

    /// Exactly-once per `(schedule_id, scheduled_at)` across processes
    /// sharing the database. A `Running` claim is turned into `Skipped`
    /// (and [`RunClaim::Overlap`] returned) while another run of the same
    /// schedule is `Running` and before its deadline, judged at
    /// `run.claimed_at`. Other states are recorded as given.
    async fn claim_schedule_run(&self, run: &ScheduleRun) -> Result<RunClaim, StoreError>;
    /// Update state, session, finish time, detail and post of a claimed run;
    /// NotFound if it was never claimed.
    async fn update_schedule_run(&self, run: &ScheduleRun) -> Result<(), StoreError>;
    /// The newest runs of a schedule (by scheduled time), at most `limit`.
    async fn schedule_runs(
        &self,
        schedule_id: &str,
        limit: usize,
    ) -> Result<Vec<ScheduleRun>, StoreError>;
    /// The newest scheduled time of the cron expression already recorded
    /// (run, skipped or missed): later ones are still owed.
    async fn last_cron_run_at(&self, schedule_id: &str) -> Result<Option<Millis>, StoreError>;
    /// Mark this instance's `Running` runs `Failed` with `detail` (after a
    /// restart nothing of them is still going); returns how many.
    async fn fail_running_runs(
        &self,
        instance_id: &str,
        at: Millis,
        detail: &str,
    ) -> Result<usize, StoreError>;

    /// Insert or replace by `(session_id, target_user_id)`. Adding a monitor
    /// again replaces `persistent` and `created_at` and clears `last_alert`,
    /// so the next state is alerted even if it was alerted before.
    async fn add_monitor(&self, monitor: &MonitorRow) -> Result<(), StoreError>;
    /// Remove the session's monitor for `target`, or all of its monitors
    /// with `None`; returns how many went.
    async fn remove_monitors(
        &self,
        session_id: &str,
        target: Option<&str>,
    ) -> Result<usize, StoreError>;
    /// The session's monitors, by target.
    async fn monitors_of(&self, session_id: &str) -> Result<Vec<MonitorRow>, StoreError>;
    /// Every monitor, by session then target.
    async fn monitors(&self) -> Result<Vec<MonitorRow>, StoreError>;
    /// Lock a merged thread; false (and nothing changed) when it already is
    /// locked, so of two merges of one thread only the first wins.
    async fn lock_thread(&self, lock: &MergeLock) -> Result<bool, StoreError>;
    /// The lock of a merged thread, if it is one.
    async fn thread_lock(&self, root_post_id: &str) -> Result<Option<MergeLock>, StoreError>;

    /// Record the key of the state `target` was just alerted about; NotFound
    /// when there is no such monitor (removed meanwhile).
    async fn set_monitor_alert(
        &self,
        session_id: &str,
        target: &str,
        key: &str,
    ) -> Result<(), StoreError>;

    /// Add a teammate to `owner_user_id`'s team; false when they already
    /// are one (the first row stays).
    async fn add_teammate(&self, teammate: &Teammate) -> Result<bool, StoreError>;
    /// False when they were not one.
    async fn remove_teammate(&self, owner_user_id: &str, user_id: &str)
    -> Result<bool, StoreError>;
    /// The owner's teammates, by username.
    async fn teammates(&self, owner_user_id: &str) -> Result<Vec<Teammate>, StoreError>;
    /// Exactly-once per owner: true only for the first caller, so the old
    /// plugin's team file is imported once, never again after a removal.
    async fn mark_team_imported(
        &self,
        owner_user_id: &str,
        source: &str,
        at: Millis,
    ) -> Result<bool, StoreError>;

    /// Record a standing approval; granting the same again is a no-op.
    async fn grant_thread(&self, grant: &ThreadGrant) -> Result<(), StoreError>;
    /// A thread's approvals, oldest first.
    async fn thread_grants(&self, root_post_id: &str) -> Result<Vec<ThreadGrant>, StoreError>;

    /// Conflict when the post already has a request.
    async fn add_guest_request(&self, request: &GuestRequest) -> Result<(), StoreError>;
    async fn guest_request(&self, post_id: &str) -> Result<Option<GuestRequest>, StoreError>;
    /// This instance's pending requests, oldest first.
    async fn pending_guest_requests(
        &self,
        instance_id: &str,
    ) -> Result<Vec<GuestRequest>, StoreError>;
    /// Exactly-once: move a Pending request to `state`; true only for the
    /// first caller (an answer and the expiry never both win).
    async fn decide_guest_request(
        &self,
        post_id: &str,
        state: GuestState,
        by: Option<&str>,
        at: Millis,
    ) -> Result<bool, StoreError>;
}
