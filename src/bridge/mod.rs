//! The remote-control loop: Mattermost posts become OpenCode prompts, and
//! OpenCode events become streamed reply posts.
//!
//! One task reads inbound posts in order ([`inbound`]), one task per session
//! streams its turns ([`reply`]), and the loop here hands OpenCode events to
//! the session tasks and recovers after (re)connects: it catches up on posts
//! missed while the agent was down, re-sends prompts whose delivery was
//! interrupted, and finishes replies that were streaming when it died.

mod inbound;
mod reply;
pub mod text;

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
use crate::store::{ClaimState, Instance, Store, StoreError, now_millis};

pub use inbound::InboundPost;
use reply::SessionMsg;
pub(crate) use reply::outcome_of;

/// How often this instance tells the store it is alive.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
/// An instance silent for this long is considered down.
const ALIVE_WITHIN_MS: i64 = 35_000;

/// Counters for status and benchmarks.
#[derive(Debug, Default)]
pub struct BridgeStats {
    pub posts_seen: AtomicU64,
    pub prompts: AtomicU64,
    pub reply_posts: AtomicU64,
    pub edits: AtomicU64,
    pub sessions_created: AtomicU64,
    /// Post received → `prompt_async` sent, for the most recent prompts.
    prompt_latency: Mutex<std::collections::VecDeque<Duration>>,
}

impl BridgeStats {
    fn edit(&self) {
        self.edits.fetch_add(1, Ordering::Relaxed);
    }
    fn post(&self) {
        self.reply_posts.fetch_add(1, Ordering::Relaxed);
    }

    fn prompt_sent(&self, latency: Duration) {
        self.prompts.fetch_add(1, Ordering::Relaxed);
        let mut recent = self
            .prompt_latency
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if recent.len() >= 10_000 {
            recent.pop_front();
        }
        recent.push_back(latency);
    }

    /// Median and 99th percentile of post → `prompt_async`, if any prompt ran.
    pub fn prompt_latency(&self) -> Option<(Duration, Duration)> {
        let mut all: Vec<Duration> = self
            .prompt_latency
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
}

impl Ctx {
    fn opencode(&self) -> &Arc<dyn OpenCode> {
        &self.agent.opencode
    }

    async fn connection(&self) -> Option<Arc<Connection>> {
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

    fn dispatch(&self, event: Event) {
        let Some(id) = event.session_id() else { return };
        let sessions = self
            .sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(tx) = sessions.get(id) {
            let _ = tx.send(SessionMsg::Event(Box::new(event)));
        }
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
    });
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
                if let Inbound::Posted { post, channel_type, sender_name, mentions, caught_up } = event {
                    ctx.stats.posts_seen.fetch_add(1, Ordering::Relaxed);
                    let _ = work_tx.send(Work::Post(Box::new(InboundPost { post, channel_type, sender_name, mentions, caught_up, received: std::time::Instant::now() })));
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
