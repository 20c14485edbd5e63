//! The schedule operations, one implementation each, shared by the
//! `mattermost_schedule_*` tools and the `!schedule` chat command. Each
//! answers with markdown for a person (the model relays tool output), and
//! each refusal is a [`ScheduleError`] whose message says how to fix it.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::tz::Zone as Tz;
use async_trait::async_trait;

use super::cron::{self, When};
use super::{Due, ScheduleError, Scheduler, from_millis, millis};
use crate::config::is_mattermost_id;
use crate::mattermost::MattermostError;
use crate::mattermost::connection::Connection;
use crate::mattermost::types::User;
use crate::opencode::ModelRef;
use crate::store::{RunClaim, RunState, RunTrigger, Schedule, ScheduleRun, Store, StoreError};

/// Longest schedule name.
const MAX_NAME: usize = 64;
/// Longest prompt kept (OpenCode takes far more, but a schedule's prompt is
/// shown in listings).
pub(crate) const MAX_PROMPT: usize = 20_000;

/// The fields of a new schedule as the caller gave them; `None` means the
/// default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddRequest {
    pub name: String,
    pub cron: String,
    pub prompt: String,
    pub timezone: Option<String>,
    /// `@username`, `username` or a user id.
    pub user: Option<String>,
    pub agent: Option<String>,
    pub model: Option<String>,
    pub enabled: Option<bool>,
}

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller<'a> {
    /// A tool call from OpenCode, i.e. the person at the machine.
    OpenCode { session: Option<&'a str> },
    /// A permitted Mattermost user, in chat.
    Chat { user_id: &'a str },
}

/// Why a user lookup did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    NotConnected,
    NotFound,
    Failed(String),
}

/// Mattermost users and links, as the operations need them.
#[async_trait]
pub trait People: Send + Sync {
    async fn by_id(&self, id: &str) -> Result<User, LookupError>;
    async fn by_username(&self, username: &str) -> Result<User, LookupError>;
    /// A link to a post, when connected.
    fn permalink(&self, post_id: &str) -> Option<String>;
}

/// [`People`] over the live connection, if any.
pub struct Connected(pub Option<Arc<Connection>>);

fn lookup_error(e: MattermostError) -> LookupError {
    match e {
        MattermostError::NotFound { .. } | MattermostError::InvalidInput { .. } => {
            LookupError::NotFound
        }
        other => LookupError::Failed(other.to_string()),
    }
}

#[async_trait]
impl People for Connected {
    async fn by_id(&self, id: &str) -> Result<User, LookupError> {
        let conn = self.0.as_ref().ok_or(LookupError::NotConnected)?;
        conn.rest.user(id).await.map_err(lookup_error)
    }

    async fn by_username(&self, username: &str) -> Result<User, LookupError> {
        let conn = self.0.as_ref().ok_or(LookupError::NotConnected)?;
        conn.rest
            .user_by_username(username)
            .await
            .map_err(lookup_error)
    }

    fn permalink(&self, post_id: &str) -> Option<String> {
        self.0.as_ref().map(|c| c.permalink(post_id, None))
    }
}

/// Everything the operations use; the bridge builds one per request.
pub struct Ops<'a> {
    pub store: &'a dyn Store,
    pub scheduler: &'a Scheduler,
    pub people: &'a dyn People,
    /// `MATTERMOST_OWNER_USER_ID`.
    pub owner: Option<&'a str>,
    /// `OPENCODE_MM_TIMEZONE`.
    pub default_zone: Tz,
    /// Who may receive results: the owner and `OPENCODE_MM_ALLOWED_USERS`.
    pub permitted: &'a [&'a str],
    /// `OPENCODE_MM_SCHEDULE_MIN_INTERVAL`: the shortest gap between runs.
    pub min_interval: std::time::Duration,
}

impl Ops<'_> {
    /// Validate and store a new schedule.
    pub async fn add(&self, req: AddRequest, caller: Caller<'_>) -> Result<String, ScheduleError> {
        let name = check_name(&req.name)?;
        let prompt = req.prompt.trim();
        if prompt.is_empty() {
            return Err(ScheduleError::EmptyPrompt);
        }
        let chars = prompt.chars().count();
        if chars > MAX_PROMPT {
            return Err(ScheduleError::PromptTooLong {
                chars,
                max: MAX_PROMPT,
            });
        }
        let prompt = prompt.to_owned();
        let zone = non_empty(req.timezone.as_deref())
            .map_or_else(|| self.default_zone.name().to_owned(), str::to_owned);
        let now = self.scheduler.now();
        let when = When::parse(&req.cron, &zone, now)?;
        self.check_interval(&req.cron, &when, now)?;
        let zone = when.zone().name().to_owned();
        let model = match non_empty(req.model.as_deref()) {
            Some(m) => Some(
                ModelRef::parse(m)
                    .ok_or_else(|| ScheduleError::BadModel(m.to_owned()))?
                    .to_string(),
            ),
            None => None,
        };
        let agent = match non_empty(req.agent.as_deref()) {
            Some(a) if is_token(a) => Some(a.to_owned()),
            Some(a) => return Err(ScheduleError::BadAgent(a.to_owned())),
            None => None,
        };
        let target = self.target(req.user.as_deref(), caller).await?;
        if self.store.schedule_by_name(&name).await?.is_some() {
            return Err(ScheduleError::DuplicateName(name));
        }
        let enabled = req.enabled.unwrap_or(true);
        let schedule = Schedule {
            id: new_id(millis(now)),
            name: name.clone(),
            cron: req.cron.trim().to_owned(),
            timezone: zone,
            prompt,
            target_user_id: target.id.clone(),
            agent,
            model,
            directory: self.scheduler.directory().to_owned(),
            enabled,
            created_by: match caller {
                Caller::OpenCode { session } => {
                    format!("opencode:{}", session.unwrap_or("unknown"))
                }
                Caller::Chat { user_id } => user_id.to_owned(),
            },
            created_at: millis(now),
            active_since: millis(now),
        };
        match self.store.add_schedule(&schedule).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => return Err(ScheduleError::DuplicateName(name)),
            Err(e) => return Err(e.into()),
        }
        self.scheduler.poke();
        let mut out = format!(
            "Added schedule `{name}`: `{}` ({}) in {}.\n",
            schedule.cron,
            when.describe(),
            schedule.timezone
        );
        if enabled {
            match when.next_after(now) {
                Some(next) => writeln!(
                    out,
                    "Next run: {} ({}).",
                    cron::local(next, &when.zone()),
                    cron::utc(next)
                ),
                None => writeln!(out, "It has no future run."),
            }
            .ok();
        } else {
            out.push_str(&format!(
                "It is disabled: enable it with `mattermost_schedule_enable` / \
                 `!schedule enable {name}`.\n"
            ));
        }
        out.push_str(&format!(
            "Each run starts a new OpenCode session and DMs the result to @{}.",
            target.username
        ));
        Ok(out)
    }

    /// Every schedule with its next run (in its zone and in UTC) and its
    /// last run and outcome.
    pub async fn list(&self) -> Result<String, ScheduleError> {
        let schedules = self.store.schedules().await?;
        if schedules.is_empty() {
            return Ok(
                "No schedules yet. Add one with `mattermost_schedule_add`, or in chat: \
                       `!schedule add <name> \"<cron>\" <prompt>`."
                    .to_owned(),
            );
        }
        let now = self.scheduler.now();
        let mut out = format!("**Schedules** ({})\n", schedules.len());
        for s in &schedules {
            let target = match self.people.by_id(&s.target_user_id).await {
                Ok(u) => format!("@{}", u.username),
                Err(_) => format!("user `{}`", s.target_user_id),
            };
            let state = if s.enabled {
                "🟢 enabled"
            } else {
                "🔴 disabled"
            };
            write!(
                out,
                "\n**{}** · {state} · `{}` · {} · DM to {target}",
                s.name, s.cron, s.timezone
            )
            .ok();
            if s.directory != self.scheduler.directory() {
                write!(out, " · runs in `{}`", s.directory).ok();
            }
            out.push('\n');
            match When::parse(&s.cron, &s.timezone, now) {
                Ok(when) => {
                    writeln!(out, "- When: {}", when.describe()).ok();
                    match (s.enabled, when.next_after(now)) {
                        (true, Some(next)) => writeln!(
                            out,
                            "- Next: {} ({})",
                            cron::local(next, &when.zone()),
                            cron::utc(next)
                        ),
                        (true, None) => writeln!(out, "- Next: none"),
                        (false, _) => writeln!(out, "- Next: none while disabled"),
                    }
                    .ok();
                }
                Err(e) => {
                    writeln!(out, "- Cannot run: {e}").ok();
                }
            }
            let last = self.store.schedule_runs(&s.id, 1).await?;
            let tz = cron::parse_zone(&s.timezone).unwrap_or_else(|_| Tz::utc());
            match last.first() {
                Some(run) => writeln!(out, "- Last: {}", self.describe_run(run, tz)),
                None => writeln!(out, "- Last: never ran"),
            }
            .ok();
            if let Some(agent) = &s.agent {
                writeln!(out, "- Agent: `{agent}`").ok();
            }
            if let Some(model) = &s.model {
                writeln!(out, "- Model: `{model}`").ok();
            }
            writeln!(
                out,
                "- Prompt: {}",
                crate::sessions::text::preview(&s.prompt, 200)
            )
            .ok();
        }
        Ok(out)
    }

    /// One line on a run: when, how it ended, and a link to its result.
    fn describe_run(&self, run: &ScheduleRun, tz: Tz) -> String {
        let at = match run.trigger {
            RunTrigger::Cron => cron::local(from_millis(run.scheduled_at), &tz),
            RunTrigger::Manual => {
                format!(
                    "{} (on demand)",
                    cron::local(from_millis(run.claimed_at), &tz)
                )
            }
        };
        let took = run
            .finished_at
            .map(|f| {
                format!(
                    " in {}",
                    crate::render::format::duration((f - run.claimed_at) as f64)
                )
            })
            .unwrap_or_default();
        let mut line = match run.state {
            RunState::Running => format!("🔄 {at}: running"),
            RunState::Done => format!("✅ {at}: done{took}"),
            RunState::Failed => format!("❌ {at}: failed{took}"),
            RunState::TimedOut => format!("⏱️ {at}: timed out"),
            RunState::Skipped => format!("⏭️ {at}: skipped"),
            RunState::Missed => format!("⚠️ {at}: missed"),
        };
        if let Some(detail) = &run.detail
            && run.state != RunState::Done
        {
            write!(line, " ({detail})").ok();
        }
        if let Some(link) = run
            .post_id
            .as_deref()
            .and_then(|p| self.people.permalink(p))
        {
            write!(line, " · [result]({link})").ok();
        }
        line
    }

    pub async fn remove(&self, name: &str) -> Result<String, ScheduleError> {
        let schedule = self.find(name).await?;
        match self.store.remove_schedule(&schedule.id).await {
            Ok(()) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.scheduler.poke();
        Ok(format!(
            "Removed schedule `{}`; a run still going finishes and is delivered.",
            schedule.name
        ))
    }

    pub async fn set_enabled(&self, name: &str, enabled: bool) -> Result<String, ScheduleError> {
        let schedule = self.find(name).await?;
        if schedule.enabled == enabled {
            return Ok(format!(
                "Schedule `{}` is already {}.",
                schedule.name,
                if enabled { "enabled" } else { "disabled" }
            ));
        }
        let now = self.scheduler.now();
        self.store
            .set_schedule_enabled(&schedule.id, enabled, millis(now))
            .await?;
        self.scheduler.poke();
        if !enabled {
            return Ok(format!(
                "Disabled schedule `{}`; it will not run until enabled again.",
                schedule.name
            ));
        }
        let next = When::parse(&schedule.cron, &schedule.timezone, now)
            .ok()
            .and_then(|w| w.next_after(now).map(|n| (n, w.zone())));
        Ok(match next {
            Some((next, tz)) => format!(
                "Enabled schedule `{}`; next run {} ({}). Times that passed while it was \
                 disabled are not made up.",
                schedule.name,
                cron::local(next, &tz),
                cron::utc(next)
            ),
            None => format!(
                "Enabled schedule `{}`; it has no future run.",
                schedule.name
            ),
        })
    }

    /// Claim a run now. The caller starts the returned run (see
    /// [`run_now`]); the text says what will happen.
    pub async fn claim_now(&self, name: &str) -> Result<(Due, String), ScheduleError> {
        let schedule = self.find(name).await?;
        if schedule.directory != self.scheduler.directory() {
            return Err(ScheduleError::OtherProject {
                name: schedule.name,
                directory: schedule.directory,
            });
        }
        let (claim, run) = self.scheduler.claim_now(&schedule).await?;
        match claim {
            RunClaim::Won => {}
            RunClaim::Overlap(busy) => {
                let tz = cron::parse_zone(&schedule.timezone).unwrap_or_else(|_| Tz::utc());
                return Err(ScheduleError::AlreadyRunning {
                    name: schedule.name,
                    since: cron::local(from_millis(busy.claimed_at), &tz),
                });
            }
            RunClaim::Inactive => return Err(self.unknown(name).await),
            RunClaim::Taken => {
                return Err(ScheduleError::Store(
                    "the state database is busy; try again".into(),
                ));
            }
        }
        let target = match self.people.by_id(&schedule.target_user_id).await {
            Ok(u) => format!("@{}", u.username),
            Err(_) => format!("user `{}`", schedule.target_user_id),
        };
        let text = format!(
            "Running `{}` now in a new OpenCode session; the result goes to {target} as a DM.",
            schedule.name
        );
        Ok((Due { schedule, run }, text))
    }

    async fn find(&self, name: &str) -> Result<Schedule, ScheduleError> {
        let name = name.trim();
        match self.store.schedule_by_name(name).await? {
            Some(s) => Ok(s),
            None => Err(self.unknown(name).await),
        }
    }

    async fn unknown(&self, name: &str) -> ScheduleError {
        let known = self
            .store
            .schedules()
            .await
            .map(|all| all.into_iter().map(|s| s.name).collect())
            .unwrap_or_default();
        ScheduleError::UnknownSchedule {
            name: name.trim().chars().take(MAX_NAME * 2).collect(),
            known,
        }
    }

    /// The user who gets the results: as named, else the caller in chat or
    /// the owner from OpenCode. In chat only the owner may name someone
    /// else, so a permitted user cannot send a project's output to anyone.
    /// Refuse expressions that would run more often than the minimum gap.
    fn check_interval(
        &self,
        expr: &str,
        when: &When,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), ScheduleError> {
        let Some(gap) = when.shortest_gap(now) else {
            return Ok(());
        };
        let min = chrono::Duration::from_std(self.min_interval).unwrap_or(chrono::Duration::MAX);
        if gap >= min {
            return Ok(());
        }
        let words =
            |d: chrono::Duration| crate::render::format::duration(d.num_milliseconds() as f64);
        Err(ScheduleError::TooFrequent {
            expr: expr.trim().to_owned(),
            every: words(gap),
            min: words(min),
        })
    }

    async fn target(&self, user: Option<&str>, caller: Caller<'_>) -> Result<User, ScheduleError> {
        let (user, wanted) = match non_empty(user) {
            Some(u) => {
                let u = u.trim_start_matches('@');
                let found = if is_mattermost_id(u) {
                    self.people.by_id(u).await
                } else {
                    self.people.by_username(u).await
                };
                let found = found.map_err(|e| match e {
                    LookupError::NotConnected => {
                        ScheduleError::NotConnected("needed to look up the user")
                    }
                    LookupError::NotFound => ScheduleError::UnknownUser(format!("@{u}")),
                    LookupError::Failed(reason) => ScheduleError::Mattermost {
                        user: u.to_owned(),
                        reason,
                    },
                })?;
                (found, true)
            }
            None => {
                let id = match caller {
                    Caller::Chat { user_id } => user_id,
                    Caller::OpenCode { .. } => self.owner.ok_or(ScheduleError::NoTarget)?,
                };
                let found = self.people.by_id(id).await.unwrap_or_else(|_| User {
                    id: id.to_owned(),
                    username: id.to_owned(),
                    ..User::default()
                });
                (found, false)
            }
        };
        if wanted {
            if user.is_bot || user.delete_at != 0 {
                return Err(ScheduleError::BadUser(format!("@{}", user.username)));
            }
            if let Caller::Chat { user_id } = caller
                && user.id != user_id
                && self.owner != Some(user_id)
            {
                return Err(ScheduleError::OthersTarget);
            }
            if !self.permitted.contains(&user.id.as_str()) {
                return Err(ScheduleError::NotPermitted(user.username.clone()));
            }
        }
        Ok(user)
    }
}

/// A schedule name: one token, so chat commands can name it unquoted.
pub fn check_name(name: &str) -> Result<String, ScheduleError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || !is_token(name) {
        return Err(ScheduleError::BadName(
            name.chars().take(MAX_NAME * 2).collect(),
        ));
    }
    Ok(name.to_owned())
}

/// Letters, digits, `-`, `_` and `.`; at most 64 characters.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_NAME
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn non_empty(text: Option<&str>) -> Option<&str> {
    text.map(str::trim).filter(|t| !t.is_empty())
}

/// `sch_` + the creation time in base 36 + six random characters (the old
/// plugin's shape, so imported ids look alike).
fn new_id(now: i64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut n = now.max(0) as u64;
    let mut stamp = Vec::new();
    loop {
        stamp.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    stamp.reverse();
    let mut id = format!("sch_{}_", String::from_utf8_lossy(&stamp));
    for _ in 0..6 {
        id.push(char::from(DIGITS[fastrand::usize(..DIGITS.len())]));
    }
    id
}

impl super::Schedules {
    /// The operations, for a running bridge.
    pub(crate) async fn with_ops<T>(&self, f: impl AsyncFnOnce(&Ops<'_>) -> T) -> T {
        let people = Connected(self.app.connection().await);
        let permitted = self.app.access.permitted_users();
        let permitted: Vec<&str> = permitted.iter().map(String::as_str).collect();
        let ops = Ops {
            store: self.app.store.as_ref(),
            scheduler: &self.scheduler,
            people: &people,
            owner: self.app.config.owner_user_id.as_deref(),
            default_zone: self.app.config.timezone.clone(),
            permitted: &permitted,
            min_interval: self.app.config.schedule_min_interval,
        };
        f(&ops).await
    }

    /// Run a schedule now: claim, start, say so.
    pub(crate) async fn run_now(&self, name: &str) -> Result<String, ScheduleError> {
        let claimed = self.with_ops(async |ops| ops.claim_now(name).await).await;
        let (due, text) = claimed?;
        tokio::spawn(super::exec::execute(
            self.app.clone(),
            self.scheduler.clone(),
            due,
        ));
        Ok(text)
    }
}
