//! Cron-scheduled prompts whose results are DM'd.
//!
//! A schedule (a 5-field cron expression read in an IANA zone, a prompt, a
//! target user) lives in the store, so every agent sharing the database sees
//! it. Each scheduled time is claimed once, by `(schedule id, scheduled UTC
//! time)` in the store, and only the winner runs it: a fresh OpenCode session
//! titled after the schedule gets the prompt, and its final answer (or the
//! failure, or the timeout) goes to the target user as a DM whose thread is
//! bound to that session, so replying there continues it.
//!
//! Policies:
//! - **no overlap**: while a run of a schedule is still going, its next
//!   scheduled time is recorded as skipped instead of run;
//! - **missed runs**: scheduled times that passed while no agent was up (or
//!   the machine slept) run once, the newest only, if it is within the grace
//!   window (`OPENCODE_MM_SCHEDULE_GRACE`); the rest are recorded as missed;
//! - **the wall clock rules**: the loop sleeps in slices of at most
//!   [`MAX_SLEEP`] and recomputes from the [`Clock`], because tokio's timers
//!   stop while a laptop sleeps and would fire late after resume.
//!
//! A schedule runs in the project it was created in: only agents serving the
//! same directory take its runs (another project's OpenCode would run the
//! prompt against the wrong code).
//!
//! [`ops`] holds the operations (add, list, remove, enable, disable, run) that
//! both the `mattermost_schedule_*` tools and the `!schedule` chat command
//! call; [`command`] parses the chat syntax; [`exec`] runs one prompt and
//! delivers its result; [`cron`] is the calendar.

pub mod cron;
pub(crate) mod exec;
pub(crate) mod ops;
pub mod syntax;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::app::App;
use crate::store::{
    Millis, RunClaim, RunState, RunTrigger, Schedule, ScheduleRun, Store, StoreError,
};
use cron::When;

/// The longest the loop sleeps before looking at the wall clock again.
pub const MAX_SLEEP: Duration = Duration::from_secs(30);
/// Room after a run's timeout for aborting it and delivering the result;
/// past this its `Running` row no longer blocks the next run.
const DELIVERY_MARGIN: Duration = Duration::from_secs(120);
/// At most this many missed times are counted one by one.
const MAX_COUNTED: usize = 10_000;

pub use crate::app::{Clock, SystemClock};

/// Why a schedule operation was refused or failed; each message says how to
/// fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("`{expr}` is not a valid cron expression ({reason}): {help}", help = cron::CRON_HELP)]
    BadExpression { expr: String, reason: String },
    #[error(
        "`{0}` never matches a real date (e.g. February 30th): pick a day that exists, such \
         as `0 9 28 2 *`"
    )]
    NeverRuns(String),
    #[error(
        "unknown time zone `{name}`{}: use an IANA name such as `America/New_York`, \
         `Europe/Berlin` or `UTC`",
        suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default()
    )]
    UnknownZone {
        name: String,
        suggestion: Option<String>,
    },
    #[error(
        "invalid schedule name `{0}`: use 1 to 64 letters, digits, `-`, `_` or `.`, \
         e.g. `daily-prs`"
    )]
    BadName(String),
    #[error(
        "a schedule named `{0}` already exists: pick another name, or remove the old one \
         first (`mattermost_schedule_remove` / `!schedule remove {0}`)"
    )]
    DuplicateName(String),
    #[error("no schedule named `{name}`; {}", known_names(known))]
    UnknownSchedule { name: String, known: Vec<String> },
    #[error("the prompt is empty: say what the scheduled run should ask OpenCode")]
    EmptyPrompt,
    #[error(
        "no Mattermost user `{0}`: check the spelling (usernames are lower case), or give the user id"
    )]
    UnknownUser(String),
    #[error("`{0}` is a bot or a deactivated account and cannot receive the result: pick a person")]
    BadUser(String),
    #[error(
        "no one to send the result to: name a user (`targetUser` / `user=@name`) or set \
         MATTERMOST_OWNER_USER_ID"
    )]
    NoTarget,
    #[error("only the owner may send a schedule's result to someone else; leave out `user=`")]
    OthersTarget,
    #[error(
        "@{0} may not receive scheduled results: only the owner (MATTERMOST_OWNER_USER_ID) \
         and OPENCODE_MM_ALLOWED_USERS may"
    )]
    NotPermitted(String),
    #[error(
        "`{expr}` runs as often as every {every}; schedules may run at most every {min} \
         (OPENCODE_MM_SCHEDULE_MIN_INTERVAL)"
    )]
    TooFrequent {
        expr: String,
        every: String,
        min: String,
    },
    #[error(
        "the prompt is {chars} characters; a scheduled prompt may have at most {max}: \
         shorten it, or put the details in a file the prompt names"
    )]
    PromptTooLong { chars: usize, max: usize },
    #[error("invalid model `{0}`: use provider/model, e.g. `anthropic/claude-sonnet-4-5`")]
    BadModel(String),
    #[error("invalid agent name `{0}`: use the name of an OpenCode agent, e.g. `build` or `plan`")]
    BadAgent(String),
    #[error("not connected to Mattermost ({0}): run `mattermost_connect` first")]
    NotConnected(&'static str),
    #[error("Mattermost refused the lookup of `{user}`: {reason}")]
    Mattermost { user: String, reason: String },
    #[error(
        "`{name}` is already running (since {since}); wait for its DM, or for the run \
         timeout (OPENCODE_MM_SCHEDULE_TIMEOUT)"
    )]
    AlreadyRunning { name: String, since: String },
    #[error(
        "`{name}` runs in the project at `{directory}`: run it from the OpenCode serving \
         that directory"
    )]
    OtherProject { name: String, directory: String },
    #[error(
        "schedules are unavailable: the state database is not running ({0}); see \
         `mattermost_status`"
    )]
    Unavailable(String),
    #[error("{0}")]
    Store(String),
}

fn known_names(known: &[String]) -> String {
    if known.is_empty() {
        "there are no schedules yet; add one with `mattermost_schedule_add` or `!schedule add`"
            .to_owned()
    } else {
        format!(
            "existing schedules: {} (see `mattermost_schedule_list` / `!schedule list`)",
            known
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

impl From<StoreError> for ScheduleError {
    fn from(e: StoreError) -> Self {
        ScheduleError::Store(e.to_string())
    }
}

/// How runs are timed.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// How late a scheduled time may still run.
    pub grace: Duration,
    /// How long a run may take.
    pub timeout: Duration,
}

/// A scheduled time this agent won and must run.
#[derive(Debug, Clone)]
pub struct Due {
    pub schedule: Schedule,
    pub run: ScheduleRun,
}

/// What one pass over the schedules decided.
#[derive(Debug, Default)]
pub struct Pass {
    /// Runs won by this agent, to start now.
    pub due: Vec<Due>,
    /// The next scheduled time of any schedule this agent serves.
    pub next: Option<DateTime<Utc>>,
}

/// The decisions of one agent: which scheduled times are owed, claimed,
/// skipped or missed. Holds no schedule state of its own; the store does, so
/// several schedulers on one database agree.
pub struct Scheduler {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    instance_id: String,
    directory: String,
    policy: Policy,
    /// Rung when schedules change here, so the loop need not wait out its
    /// sleep to see them.
    wake: Notify,
}

impl Scheduler {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        instance_id: impl Into<String>,
        directory: impl Into<String>,
        policy: Policy,
    ) -> Scheduler {
        Scheduler {
            store,
            clock,
            instance_id: instance_id.into(),
            directory: directory.into(),
            policy,
            wake: Notify::new(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    pub fn directory(&self) -> &str {
        &self.directory
    }

    /// Make the loop look at the schedules again now.
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    /// Runs this agent left `Running` when it stopped cannot finish any
    /// more: record them as failed, so they neither block the next run nor
    /// show as running forever.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        self.store
            .fail_running_runs(
                &self.instance_id,
                millis(self.now()),
                "interrupted: the agent stopped during the run",
            )
            .await
    }

    /// Look at every enabled schedule of this project: claim what is due,
    /// record skips and missed times, and say when to look again.
    pub async fn pass(&self) -> Result<Pass, StoreError> {
        let now = self.now();
        let mut pass = Pass::default();
        for schedule in self.store.schedules().await? {
            if !schedule.enabled || schedule.directory != self.directory {
                continue;
            }
            let when = match When::parse(&schedule.cron, &schedule.timezone, now) {
                Ok(w) => w,
                Err(e) => {
                    // Stored by an older build or edited by hand; never fatal.
                    debug!(schedule = %schedule.name, error = %e, "schedule cannot run");
                    continue;
                }
            };
            let last = self.store.last_cron_run_at(&schedule.id).await?;
            let cursor = from_millis(last.unwrap_or(i64::MIN).max(schedule.active_since));
            if let Some(due) = self.settle(&schedule, &when, cursor, now).await? {
                pass.due.push(due);
            }
            if let Some(next) = when.next_after(now) {
                pass.next = Some(pass.next.map_or(next, |n| n.min(next)));
            }
        }
        Ok(pass)
    }

    /// The owed times of one schedule, `(cursor, now]`: the newest runs if
    /// within the grace window; the others are recorded as missed.
    async fn settle(
        &self,
        schedule: &Schedule,
        when: &When,
        cursor: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Due>, StoreError> {
        let grace = chrono::Duration::from_std(self.policy.grace).unwrap_or(chrono::Duration::MAX);
        let recent_from = now.checked_sub_signed(grace).unwrap_or(cursor).max(cursor);
        // Within the grace window: a day of minutes at most.
        let (recent, _) = when.between(recent_from, now, MAX_COUNTED);
        let (older, more) = when.between(cursor, recent_from, MAX_COUNTED);
        let run_at = recent.last().copied();
        let mut missed: Vec<DateTime<Utc>> = older;
        missed.extend(recent.iter().rev().skip(1).rev());
        if !missed.is_empty() {
            let last_missed = match recent.len() {
                0 | 1 if more => when
                    .at_or_before(recent_from)
                    .filter(|t| *t > cursor && *t <= recent_from)
                    .or(missed.last().copied()),
                _ => missed.last().copied(),
            };
            if let Some(last_missed) = last_missed {
                self.record_missed(schedule, &missed, more, last_missed, now)
                    .await?;
            }
        }
        let Some(at) = run_at else {
            return Ok(None);
        };
        let run = self.new_run(schedule, millis(at), RunTrigger::Cron, now);
        match self.store.claim_schedule_run(&run).await? {
            RunClaim::Won => {
                info!(schedule = %schedule.name, at = %cron::utc(at), "scheduled run claimed");
                Ok(Some(Due {
                    schedule: schedule.clone(),
                    run,
                }))
            }
            RunClaim::Overlap(busy) => {
                info!(
                    schedule = %schedule.name,
                    at = %cron::utc(at),
                    running = %cron::utc(from_millis(busy.scheduled_at)),
                    "scheduled run skipped: the previous run is still going"
                );
                Ok(None)
            }
            RunClaim::Taken | RunClaim::Inactive => Ok(None),
        }
    }

    async fn record_missed(
        &self,
        schedule: &Schedule,
        missed: &[DateTime<Utc>],
        more: bool,
        last: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let tz = cron::parse_zone(&schedule.timezone).unwrap_or_else(|_| crate::tz::Zone::utc());
        let count = if more {
            format!("more than {}", missed.len())
        } else {
            missed.len().to_string()
        };
        let first = missed.first().copied().unwrap_or(last);
        let detail = if missed.len() == 1 && !more {
            format!(
                "missed {}: no agent ran it within the grace window",
                cron::local(first, &tz)
            )
        } else {
            format!(
                "missed {count} scheduled times from {} to {}: no agent ran them within the \
                 grace window",
                cron::local(first, &tz),
                cron::local(last, &tz)
            )
        };
        let mut run = self.new_run(schedule, millis(last), RunTrigger::Cron, now);
        run.state = RunState::Missed;
        run.finished_at = Some(millis(now));
        run.deadline_at = millis(now);
        run.detail = Some(detail.clone());
        if self.store.claim_schedule_run(&run).await? == RunClaim::Won {
            warn!(schedule = %schedule.name, "{detail}");
        }
        Ok(())
    }

    /// A `Running` claim row for `scheduled_at`, claimed now.
    pub fn new_run(
        &self,
        schedule: &Schedule,
        scheduled_at: Millis,
        trigger: RunTrigger,
        now: DateTime<Utc>,
    ) -> ScheduleRun {
        let budget = self.policy.timeout + DELIVERY_MARGIN;
        let deadline = now
            .checked_add_signed(chrono::Duration::from_std(budget).unwrap_or_default())
            .unwrap_or(now);
        ScheduleRun {
            schedule_id: schedule.id.clone(),
            scheduled_at,
            trigger,
            instance_id: self.instance_id.clone(),
            claimed_at: millis(now),
            deadline_at: millis(deadline),
            state: RunState::Running,
            session_id: None,
            finished_at: None,
            detail: None,
            post_id: None,
        }
    }

    /// Claim a run on demand. Its time is the request's, moved off a whole
    /// minute so it can never take a scheduled time's key.
    pub async fn claim_now(
        &self,
        schedule: &Schedule,
    ) -> Result<(RunClaim, ScheduleRun), StoreError> {
        let now = self.now();
        let mut run = self.new_run(
            schedule,
            off_the_minute(millis(now)),
            RunTrigger::Manual,
            now,
        );
        // Two requests in the same millisecond: the next one along.
        for _ in 0..8 {
            match self.store.claim_schedule_run(&run).await? {
                RunClaim::Taken => run.scheduled_at = off_the_minute(run.scheduled_at + 1),
                claim => return Ok((claim, run)),
            }
        }
        Ok((RunClaim::Taken, run))
    }
}

/// `at`, or the next millisecond when `at` is a whole minute (the times
/// cron runs take).
fn off_the_minute(at: Millis) -> Millis {
    if at.rem_euclid(60_000) == 0 {
        at + 1
    } else {
        at
    }
}

pub(crate) fn millis(at: DateTime<Utc>) -> Millis {
    at.timestamp_millis()
}

pub(crate) fn from_millis(ms: Millis) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(if ms < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// The scheduler feature of a running bridge: the schedule loop's state and
/// the services its runs use. Built once by the router.
pub struct Schedules {
    pub(crate) app: Arc<App>,
    pub(crate) scheduler: Arc<Scheduler>,
}

impl Schedules {
    pub fn new(app: Arc<App>) -> Arc<Schedules> {
        let config = &app.config;
        let scheduler = Arc::new(Scheduler::new(
            app.store.clone(),
            app.clock.clone(),
            app.instance.id.clone(),
            app.instance.directory.clone(),
            Policy {
                grace: config.schedule_grace,
                timeout: config.schedule_timeout,
            },
        ));
        Arc::new(Schedules { app, scheduler })
    }

    /// The scheduler loop; runs until the process ends.
    pub async fn run(self: Arc<Self>) {
        let scheduler = self.scheduler.clone();
        async move {
            match scheduler.recover().await {
                Ok(0) => {}
                Ok(n) => info!(
                    runs = n,
                    "scheduled runs interrupted by a restart marked failed"
                ),
                Err(e) => warn!(error = %e, "cannot clean up interrupted scheduled runs"),
            }
            loop {
                let next = match scheduler.pass().await {
                    Ok(pass) => {
                        for due in pass.due {
                            tokio::spawn(exec::execute(self.app.clone(), scheduler.clone(), due));
                        }
                        pass.next
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot read the schedules");
                        None
                    }
                };
                let wait = sleep_for(next, scheduler.now());
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = scheduler.wake.notified() => {}
                }
            }
        }
        .instrument(info_span!("scheduler"))
        .await
    }

    /// The `!schedule` chat command: `args` is the text after `!schedule `
    /// (syntax in [`syntax`] and [`syntax::USAGE`]). Answers with the
    /// markdown to post; refusals say how to fix the input. Checks that
    /// `user_id` may prompt this agent.
    pub async fn command(&self, user_id: &str, args: &str) -> String {
        syntax::command(self, user_id, args).await
    }
}

/// How long to sleep before the next pass: until the next scheduled time,
/// never more than [`MAX_SLEEP`] (the wall clock is checked again then), and
/// a little past the time so the pass sees it as due.
pub fn sleep_for(next: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Duration {
    let until = next
        .and_then(|n| (n - now).to_std().ok())
        .map_or(MAX_SLEEP, |d| d + Duration::from_millis(5));
    until.min(MAX_SLEEP)
}
