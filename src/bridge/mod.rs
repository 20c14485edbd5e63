//! The remote-control loop: Mattermost posts become OpenCode prompts, and
//! OpenCode events become streamed reply posts.
//!
//! One task reads inbound posts in order ([`inbound`]), one task per session
//! streams its turns ([`reply`]), and the loop here hands OpenCode events to
//! the session tasks and recovers after (re)connects: it catches up on posts
//! missed while the agent was down, re-sends prompts whose delivery was
//! interrupted, and finishes replies that were streaming when it died.

mod actions;
mod asks;
mod inbound;
mod reply;
pub mod text;
mod tui;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::access::Access;
use crate::agent::Agent;
use crate::mattermost::connection::Connection;
use crate::mattermost::ws::Inbound;
use crate::opencode::OpenCode;
use crate::opencode::events::Event;
use crate::render::{Limits, Pace, Throttle};
use crate::store::{ClaimState, Instance, Store, StoreError, ThreadStatus, now_millis};

pub(crate) use asks::reject as reject_request;
pub use inbound::InboundPost;
pub(crate) use inbound::{NewThread, ThreadSpot, new_session, open_thread, reply_in, say};
use reply::SessionMsg;
pub(crate) use reply::outcome_of;

/// How often this instance tells the store it is alive.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
/// How long a new session is left to the code that created it before it
/// gets a thread in the default channel.
const DEFAULT_THREAD_GRACE: Duration = Duration::from_millis(1500);
/// An instance silent for this long is considered down.
const ALIVE_WITHIN_MS: i64 = 35_000;

/// The most recent durations of one kind, for percentiles.
#[derive(Debug, Default)]
pub struct Samples(Mutex<std::collections::VecDeque<Duration>>);

impl Samples {
    const KEEP: usize = 10_000;

    fn record(&self, d: Duration) {
        let mut recent = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if recent.len() >= Self::KEEP {
            recent.pop_front();
        }
        recent.push_back(d);
    }

    /// Median and 99th percentile, if anything was recorded.
    pub fn median_p99(&self) -> Option<(Duration, Duration)> {
        let mut all: Vec<Duration> = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .copied()
            .collect();
        if all.is_empty() {
            return None;
        }
        all.sort();
        let at = |q: f64| all[((all.len() - 1) as f64 * q).round() as usize];
        Some((at(0.5), at(0.99)))
    }

    fn describe(&self, what: &str) -> String {
        match self.median_p99() {
            Some((median, p99)) => format!(
                ", {what} median {:.2} ms, p99 {:.2} ms",
                median.as_secs_f64() * 1000.0,
                p99.as_secs_f64() * 1000.0
            ),
            None => String::new(),
        }
    }
}

/// Counters for status and benchmarks.
#[derive(Debug, Default)]
pub struct BridgeStats {
    pub posts_seen: AtomicU64,
    pub prompts: AtomicU64,
    pub reply_posts: AtomicU64,
    pub edits: AtomicU64,
    pub sessions_created: AtomicU64,
    /// Chat prompts waiting for their session's running turn.
    pub queued: AtomicU64,
    /// Prompts that waited for a running turn, in all.
    pub queued_total: AtomicU64,
    /// Post received → `prompt_async` sent, for posts in an existing
    /// session: the bridge's own overhead.
    pub follow_up_latency: Samples,
    /// The same for posts that start a session: it includes OpenCode
    /// creating the session and the card post.
    pub new_session_latency: Samples,
}

impl BridgeStats {
    fn edit(&self) {
        self.edits.fetch_add(1, Ordering::Relaxed);
    }
    fn post(&self) {
        self.reply_posts.fetch_add(1, Ordering::Relaxed);
    }

    /// A prompt went to OpenCode. Prompts that were queued behind a running
    /// turn are counted but not timed.
    fn prompt_sent(&self, latency: Duration, new_session: bool, queued: bool) {
        self.prompts.fetch_add(1, Ordering::Relaxed);
        if queued {
            self.queued_total.fetch_add(1, Ordering::Relaxed);
        } else if new_session {
            self.new_session_latency.record(latency);
        } else {
            self.follow_up_latency.record(latency);
        }
    }

    /// The counters in one line, for status answers.
    pub fn summary(&self) -> String {
        format!(
            "{} posts seen, {} sessions started, {} prompts{}{}, {} queued now ({} in all), {} \
             reply posts, {} edits",
            self.posts_seen.load(Ordering::Relaxed),
            self.sessions_created.load(Ordering::Relaxed),
            self.prompts.load(Ordering::Relaxed),
            self.follow_up_latency
                .describe("post → prompt in a session"),
            self.new_session_latency
                .describe("post → prompt with a new session"),
            self.queued.load(Ordering::Relaxed),
            self.queued_total.load(Ordering::Relaxed),
            self.reply_posts.load(Ordering::Relaxed),
            self.edits.load(Ordering::Relaxed),
        )
    }
}

/// What every part of the bridge shares.
pub(crate) struct Ctx {
    pub(crate) agent: Arc<Agent>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) instance: Instance,
    pub(crate) access: Access,
    pub(crate) stats: Arc<BridgeStats>,
    /// Session id → its task.
    sessions: Mutex<HashMap<String, mpsc::UnboundedSender<SessionMsg>>>,
    /// Channels told that nobody is configured, and strangers told once.
    notified: Mutex<HashSet<String>>,
    /// Sessions with a live thread of this instance: their events start a
    /// session task (prompts typed at the TUI stream into the thread).
    bound: Mutex<HashSet<String>>,
    /// `!models` lists waiting for a number, by channel, thread and user.
    pub(crate) choices: Mutex<HashMap<String, crate::commands::exec::Choice>>,
    /// Permission requests and questions waiting for an answer in chat.
    asks: Mutex<asks::Book>,
    /// Each thread's last prompt, for the 🔁 reaction.
    last_prompts: Mutex<HashMap<String, actions::LastPrompt>>,
    /// Attention alerts (`mattermost_monitor`); sees every OpenCode event.
    pub(crate) monitor: crate::monitor::Monitor,
}

impl Ctx {
    pub(crate) fn opencode(&self) -> &Arc<dyn OpenCode> {
        &self.agent.opencode
    }

    pub(crate) async fn connection(&self) -> Option<Arc<Connection>> {
        self.agent.connector.current().await
    }

    /// Post size limits: the configured rollover point, never above what the
    /// server accepts.
    pub(crate) fn limits(&self, conn: &Connection) -> Limits {
        let post_chars = (self.agent.config.max_post_length as usize)
            .min(conn.info.max_post_runes)
            .max(200);
        Limits {
            post_chars,
            meta_chars: (post_chars / 4).min(2000),
        }
    }

    fn throttle(&self) -> Throttle {
        let config = &self.agent.config;
        Throttle::new(Pace::from_rate(
            config.edit_rate_limit,
            config.max_delay,
            config.buffer_size as usize,
        ))
    }

    /// The task of a session, started on first use.
    fn session(self: &Arc<Self>, session_id: &str) -> mpsc::UnboundedSender<SessionMsg> {
        let mut sessions = self
            .sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(tx) = sessions.get(session_id)
            && !tx.is_closed()
        {
            return tx.clone();
        }
        let tx = reply::spawn(self.clone(), session_id.to_owned());
        sessions.insert(session_id.to_owned(), tx.clone());
        tx
    }

    /// A session's active threads owned by this instance, oldest first.
    pub(crate) async fn live_threads(
        &self,
        session_id: &str,
    ) -> Result<Vec<crate::store::ThreadBinding>, StoreError> {
        Ok(self
            .store
            .threads_of_session(session_id)
            .await?
            .into_iter()
            .filter(|t| t.instance_id == self.instance.id && t.status == ThreadStatus::Active)
            .collect())
    }

    /// Remember that a session has a thread here, so its events are
    /// followed even when no chat turn started its task.
    pub(crate) fn bound(&self, session_id: &str) {
        self.bound
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(session_id.to_owned());
    }

    fn dispatch(self: &Arc<Self>, event: Event) {
        self.monitor.observe(self, &event);
        if let Event::SessionCreated(created) = &event {
            self.maybe_default_thread(&created.info);
        }
        let Some(id) = event.session_id() else { return };
        let existing = self
            .sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(id)
            .cloned();
        let tx = match existing {
            Some(tx) => tx,
            None => {
                let bound = self
                    .bound
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .contains(id);
                if !bound {
                    if asks::is_ask(&event) {
                        tokio::spawn(asks::unbound(self.clone(), event).in_current_span());
                    }
                    return;
                }
                self.session(id)
            }
        };
        let _ = tx.send(SessionMsg::Event(Box::new(event)));
    }

    /// With `OPENCODE_MM_DEFAULT_CHANNEL_ID` set, a session started at the
    /// TUI gets its thread there at once. Sessions the bridge starts bind
    /// their own thread within moments, so this waits a little and looks.
    fn maybe_default_thread(self: &Arc<Self>, session: &crate::opencode::Session) {
        let Some(channel) = self.agent.config.default_channel_id.clone() else {
            return;
        };
        if session.parent_id.is_some()
            || session.id.is_empty()
            || session
                .title
                .starts_with(crate::scheduler::exec::SESSION_TITLE_PREFIX)
        {
            return;
        }
        let ctx = self.clone();
        let session = session.clone();
        let span = info_span!("default_thread", session = %session.id);
        tokio::spawn(
            async move {
                tokio::time::sleep(DEFAULT_THREAD_GRACE).await;
                match ctx.store.threads_of_session(&session.id).await {
                    Ok(threads) if threads.is_empty() => {}
                    _ => return,
                }
                let Some(conn) = ctx.connection().await else {
                    return;
                };
                if let Err(e) =
                    crate::commands::exec::thread_in_channel(&ctx, &conn, &channel, &session).await
                {
                    warn!(error = %e, "cannot open a thread for a new session");
                }
            }
            .instrument(span),
        );
    }

    async fn typing(&self, channel_id: &str, root_id: &str) {
        if let Some(conn) = self.connection().await
            && let Err(e) = conn
                .rest
                .typing(&conn.info.bot.id, channel_id, root_id)
                .await
        {
            debug!(error = %e, "typing indicator failed");
        }
    }

    async fn set_claim_state(&self, post_id: &str, state: ClaimState) {
        let result = match self.store.claim(post_id).await {
            Ok(Some(mut claim)) => {
                claim.state = state;
                self.store.update_claim(&claim).await
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            warn!(error = %e, post = post_id, "could not record the claim's state");
        }
    }

    /// Whether the instance that owns a thread is running.
    async fn instance_alive(&self, instance_id: &str) -> bool {
        if instance_id == self.instance.id {
            return true;
        }
        match self.store.instances().await {
            Ok(list) => list
                .iter()
                .any(|i| i.id == instance_id && now_millis() - i.heartbeat_at <= ALIVE_WITHIN_MS),
            Err(_) => true,
        }
    }

    /// Per-instance cursor key: instances answer different threads, so one
    /// must not skip what another ignored.
    fn cursor_key(&self, channel_id: &str) -> String {
        format!("{}|{channel_id}", self.instance.id)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("the state database cannot be used: {0}")]
    Store(#[from] StoreError),
    #[error("no state database path: set OPENCODE_MM_STATE_DB or XDG_DATA_HOME/HOME")]
    NoStorePath,
    #[error("the bridge is already running")]
    AlreadyRunning,
}

/// This machine's name, for instance rows and notices.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Open the store the configuration names.
pub fn open_store(config: &crate::config::Config) -> Result<Arc<dyn Store>, BridgeError> {
    let path = config
        .state_db
        .clone()
        .or_else(crate::store::SqliteStore::default_path)
        .ok_or(BridgeError::NoStorePath)?;
    Ok(Arc::new(crate::store::SqliteStore::open(&path)?))
}

/// Start the bridge once the shim has initialized the agent. Runs until the
/// agent's event streams close.
pub async fn run(agent: Arc<Agent>, store: Arc<dyn Store>) -> Result<(), BridgeError> {
    let (Some(mut inbound_rx), Some(mut events_rx)) = (agent.take_inbound(), agent.take_events())
    else {
        return Err(BridgeError::AlreadyRunning);
    };
    let init = agent.wait_initialized().await;
    let host = host_name();
    let instance = Instance {
        id: format!("{host}:{}", init.directory),
        host,
        directory: init.directory.clone(),
        owner_user_id: agent.config.owner_user_id.clone(),
        pid: std::process::id(),
        started_at: now_millis(),
        heartbeat_at: now_millis(),
    };
    store.register_instance(&instance).await?;
    info!(instance = %instance.id, "bridge started");
    let stats = Arc::new(BridgeStats::default());
    let ctx = Arc::new(Ctx {
        access: Access::new(&agent.config),
        agent: agent.clone(),
        store,
        instance,
        stats: stats.clone(),
        sessions: Mutex::new(HashMap::new()),
        notified: Mutex::new(HashSet::new()),
        bound: Mutex::new(HashSet::new()),
        choices: Mutex::new(HashMap::new()),
        asks: Mutex::new(asks::Book::default()),
        last_prompts: Mutex::new(HashMap::new()),
        monitor: crate::monitor::Monitor::new(),
    });
    match ctx.store.threads_of_instance(&ctx.instance.id).await {
        Ok(threads) => {
            for t in threads.iter().filter(|t| t.status == ThreadStatus::Active) {
                ctx.bound(&t.session_id);
            }
        }
        Err(e) => warn!(error = %e, "cannot read this instance's threads"),
    }
    agent.set_bridge(Ok(ctx.clone()));
    tokio::spawn(crate::scheduler::run(ctx.clone()));

    // Posts are handled in order by one worker, so a slow OpenCode call
    // delays later posts but never reorders them.
    let (work_tx, mut work_rx) = mpsc::unbounded_channel::<Work>();
    {
        let ctx = ctx.clone();
        tokio::spawn(
            async move {
                while let Some(work) = work_rx.recv().await {
                    match work {
                        Work::Post(post) => inbound::handle(&ctx, *post).await,
                        Work::Reaction(reaction) => asks::reacted(&ctx, reaction).await,
                        Work::Recover => recover(&ctx).await,
                    }
                }
            }
            .instrument(info_span!("inbound")),
        );
    }
    {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
            loop {
                tick.tick().await;
                if let Err(e) = ctx.store.heartbeat(&ctx.instance.id, now_millis()).await {
                    warn!(error = %e, "heartbeat failed");
                }
            }
        });
    }
    let mut connections = agent.connector.connections();
    // A connection made before we subscribed still needs its recovery.
    if *connections.borrow_and_update() > 0 {
        let _ = work_tx.send(Work::Recover);
    }
    loop {
        tokio::select! {
            event = inbound_rx.recv() => {
                let Some(event) = event else { break };
                match event {
                    Inbound::Posted { post, channel_type, sender_name, mentions, caught_up } => {
                        ctx.stats.posts_seen.fetch_add(1, Ordering::Relaxed);
                        let _ = work_tx.send(Work::Post(Box::new(InboundPost { post, channel_type, sender_name, mentions, caught_up, received: std::time::Instant::now() })));
                    }
                    Inbound::ReactionAdded(reaction) => {
                        let _ = work_tx.send(Work::Reaction(reaction));
                    }
                    _ => {}
                }
            }
            event = events_rx.recv() => {
                let Some(event) = event else { break };
                ctx.dispatch(event);
            }
            changed = connections.changed() => {
                if changed.is_err() { break }
                let _ = work_tx.send(Work::Recover);
            }
        }
    }
    Ok(())
}

enum Work {
    Post(Box<InboundPost>),
    Reaction(crate::mattermost::types::Reaction),
    Recover,
}

/// After a fresh connection: serve the channels we answer in, finish replies
/// that were streaming, re-send prompts whose delivery was cut short, and
/// run posts that arrived while nobody listened.
async fn recover(ctx: &Arc<Ctx>) {
    let Some(conn) = ctx.connection().await else {
        return;
    };
    let mut channels: Vec<String> = Vec::new();
    for user in ctx.access.permitted_users() {
        match conn.rest.direct_channel(&conn.info.bot.id, &user).await {
            Ok(ch) => channels.push(ch.id),
            Err(e) => warn!(error = %e, user, "cannot open the DM with a permitted user"),
        }
    }
    let prefix = format!("{}|", ctx.instance.id);
    let cursors: Vec<(String, i64)> = match ctx.store.cursors().await {
        Ok(list) => list
            .into_iter()
            .filter_map(|(key, at)| key.strip_prefix(&prefix).map(|ch| (ch.to_owned(), at)))
            .collect(),
        Err(e) => {
            warn!(error = %e, "cannot read cursors");
            Vec::new()
        }
    };
    for (ch, _) in &cursors {
        if !channels.contains(ch) {
            channels.push(ch.clone());
        }
    }
    for ch in &channels {
        conn.link.serve_channel(ch);
    }
    inbound::resume_replies(ctx).await;
    inbound::resume_claims(ctx).await;
    asks::resync(ctx).await;
    for (channel, at) in cursors {
        match conn.rest.posts_since(&channel, at).await {
            Ok(posts) => {
                let fresh: Vec<_> = posts
                    .into_iter()
                    // Edits of older posts come back too; only new posts are
                    // prompts. The post at the cursor itself is already
                    // claimed, so it drops out there.
                    .filter(|p| p.create_at >= at && p.delete_at == 0)
                    .collect();
                if !fresh.is_empty() {
                    info!(
                        channel,
                        count = fresh.len(),
                        "catching up on posts made while away"
                    );
                }
                for post in fresh {
                    inbound::handle(
                        ctx,
                        InboundPost {
                            post,
                            channel_type: String::new(),
                            sender_name: String::new(),
                            mentions: Vec::new(),
                            caught_up: true,
                            received: std::time::Instant::now(),
                        },
                    )
                    .await;
                }
            }
            Err(e) => warn!(error = %e, channel, "catch-up failed"),
        }
    }
}
