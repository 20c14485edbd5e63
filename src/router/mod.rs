//! The router: the only module that knows every feature. It builds the
//! bridge (services, engine, features) once the shim has initialized the
//! agent and the store is open, then turns inbound Mattermost events
//! (posts, reactions, reconnects) and OpenCode events into calls on the
//! engine and the features. It also implements the engine's [`Hooks`] by
//! calling the features.
//!
//! - [`inbound`]: one post: who sent it, where, and what it asks for;
//! - [`chat`]: the `!command` parser and its table of operations;
//! - [`reactions`]: reactions that answer requests or act on a session;
//! - [`recover`]: what a fresh connection catches up on;
//! - [`missed`]: posts caught up too late to run, offered instead, and
//!   reactions lost in an outage.
//!
//! A new feature is a module beside the others plus its lines here: a field
//! in [`Router`], and its calls in [`Router::dispatch`], the hooks or the
//! command table.

pub(crate) mod chat;
mod inbound;
mod missed;
mod orphans;
mod reactions;
mod recover;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use tokio::sync::mpsc;
use tracing::{Instrument, info, info_span, warn};

use crate::access::Access;
use crate::app::{App, Clock};
use crate::asks::Asks;
use crate::commands::Choices;
use crate::config::Config;
use crate::mattermost::connection::Connector;
use crate::mattermost::types::Post;
use crate::mattermost::ws::Inbound;
use crate::monitor::Monitor;
use crate::opencode::OpenCode;
use crate::opencode::events::Event;
use crate::render::Turn;
use crate::scheduler::Schedules;
use crate::sessions::{Attachments, Engine, Hooks, Spot};
use crate::store::{Instance, KEEP_FINISHED_MS, Reply, Store, ThreadBinding, now_millis};
use crate::tui::Tui;

pub use inbound::InboundPost;

/// Inbound posts and reactions waiting for the ordered worker.
const WORK_QUEUE: usize = 256;
/// Temporary folders untouched this long are removed at start.
const ORPHAN_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// Instances offline this long are forgotten (their threads stay, and say
/// the instance is unknown).
const FORGET_OFFLINE_MS: i64 = 24 * 60 * 60 * 1000;
/// Finished claims and replies are pruned about hourly.
const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);

/// The running bridge: the engine and every feature.
pub struct Router {
    pub engine: Arc<Engine>,
    pub asks: Arc<Asks>,
    pub monitor: Arc<Monitor>,
    pub schedules: Arc<Schedules>,
    pub tui: Tui,
    /// Thread context for prompts in group and channel threads; `!merge`.
    pub context: Arc<crate::context::Context>,
    /// `!models` lists waiting for a number.
    pub choices: Choices,
    /// `!!` file lists waiting for numbers, and files chosen for prompts.
    pub refs: Arc<crate::files::refs::Refs>,
    /// Channels told that nobody is configured, and strangers told once.
    notified: Mutex<HashSet<String>>,
    /// Keeps this process's instance id its own while it runs.
    _identity: crate::app::identity::Identity,
    /// An asks resync after lost events is scheduled (one at a time).
    resync_due: Arc<std::sync::atomic::AtomicBool>,
}

/// How long lost events wait before the resync, so a burst costs one.
const RESYNC_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// What the bridge is started from: the handles that exist before it.
pub struct Parts {
    pub config: Config,
    pub opencode: Arc<dyn OpenCode>,
    pub link: Arc<Connector>,
    pub store: Arc<dyn Store>,
    /// The project directory the shim's handshake named.
    pub directory: String,
    /// This instance's id, held for the bridge's life.
    pub identity: crate::app::identity::Identity,
    /// "Now" for the bridge's decisions (the system clock outside tests).
    pub clock: Arc<dyn Clock>,
}

impl Router {
    /// Register this instance and build the services, the engine and the
    /// features.
    pub async fn build(parts: Parts) -> Result<Arc<Router>, crate::store::StoreError> {
        let host = crate::app::host_name();
        let identity = parts.identity;
        let instance = Instance {
            id: identity.id.clone(),
            host,
            directory: parts.directory,
            owner_user_id: parts.config.owner_user_id.clone(),
            pid: std::process::id(),
            started_at: now_millis(),
            heartbeat_at: now_millis(),
        };
        parts.store.register_instance(&instance).await?;
        info!(instance = %instance.id, "bridge started");
        let app = Arc::new(App {
            access: Access::new(&parts.config),
            config: parts.config,
            opencode: parts.opencode,
            link: parts.link,
            clock: parts.clock,
            store: parts.store,
            instance,
            shared_channels: Default::default(),
        });
        let engine = Engine::new(app.clone());
        let router = Arc::new(Router {
            asks: Asks::new(engine.clone()),
            monitor: Arc::new(Monitor::new()),
            schedules: Schedules::new(app),
            tui: Tui::default(),
            context: Arc::default(),
            choices: Choices::default(),
            refs: Arc::default(),
            notified: Mutex::new(HashSet::new()),
            resync_due: Arc::default(),
            _identity: identity,
            engine: engine.clone(),
        });
        let hooks: Weak<dyn Hooks> = Arc::downgrade(&router) as Weak<dyn Hooks>;
        engine.set_hooks(hooks);
        {
            let config = engine.app.config.clone();
            let live = live_sessions(&engine.app).await;
            let removed = tokio::task::spawn_blocking(move || {
                crate::files::remove_orphans(&config, ORPHAN_AGE, &live)
            })
            .await
            .unwrap_or(0);
            if removed > 0 {
                info!(
                    removed,
                    "removed temporary folders of sessions gone over a day"
                );
            }
        }
        crate::channels::team::import_once(
            &engine.app,
            std::env::var_os("HOME").map(std::path::PathBuf::from),
        )
        .await;
        if let Err(e) = engine.load_bound().await {
            warn!(error = %e, "cannot read this instance's threads");
        }
        Ok(router)
    }

    /// One line on the remote-control loop, for status answers.
    pub fn summary(&self) -> String {
        format!(
            "instance {}; {}",
            self.engine.app.instance.id,
            self.engine.stats.summary()
        )
    }

    /// Run the bridge until the agent's event streams close: posts and
    /// reactions in order on one worker, OpenCode events as they come,
    /// and recovery after every (re)connect.
    pub async fn run(
        self: Arc<Self>,
        mut inbound_rx: mpsc::Receiver<Inbound>,
        mut events_rx: mpsc::Receiver<Event>,
    ) {
        tokio::spawn(self.schedules.clone().run());
        tokio::spawn(crate::channels::guests::run_expiry(self.engine.app.clone()));

        // Posts are handled in order by one worker, so a slow OpenCode call
        // delays later posts but never reorders them.
        // The queue is bounded: when the worker falls behind, the forwarder
        // below waits, the link's own bounded queue fills, and the link stops
        // reading the socket. Backpressure, never loss.
        let (work_tx, mut work_rx) = mpsc::channel::<Work>(WORK_QUEUE);
        {
            let router = self.clone();
            tokio::spawn(
                async move {
                    while let Some(work) = work_rx.recv().await {
                        // Supervised: a bug hit by one post is counted and
                        // logged, and the posts after it are still served.
                        let done = std::panic::AssertUnwindSafe(router.work(work))
                            .catch_unwind()
                            .await;
                        if done.is_err() {
                            router
                                .engine
                                .stats
                                .worker_panics
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::error!(
                                "handling one inbound event panicked; the worker goes on"
                            );
                        }
                    }
                }
                .instrument(info_span!("inbound")),
            );
        }
        {
            let app = self.engine.app.clone();
            tokio::spawn(async move {
                // Three beats a lease: one lost beat does not make us offline.
                let every = (app.config.instance_lease / 3).max(Duration::from_millis(500));
                let prune_every =
                    (PRUNE_EVERY.as_millis() / every.as_millis().max(1)).max(1) as u64;
                let mut tick = tokio::time::interval(every);
                let mut beats: u64 = 0;
                loop {
                    tick.tick().await;
                    if let Err(e) = app.store.heartbeat(&app.instance.id, now_millis()).await {
                        warn!(error = %e, "heartbeat failed");
                    }
                    // What an instance gone for good left unfinished.
                    orphans::sweep(&app).await;
                    // Housekeeping at start and then hourly.
                    if beats.is_multiple_of(prune_every) {
                        match app.store.prune(now_millis() - KEEP_FINISHED_MS).await {
                            Ok(p) if p.claims + p.replies > 0 => {
                                info!(
                                    claims = p.claims,
                                    replies = p.replies,
                                    "pruned finished claims and replies"
                                );
                            }
                            Ok(_) => {}
                            Err(e) => warn!(error = %e, "pruning failed"),
                        }
                        match app
                            .store
                            .prune_instances(now_millis() - FORGET_OFFLINE_MS)
                            .await
                        {
                            Ok(0) => {}
                            Ok(n) => {
                                info!(instances = n, "forgot instances offline for over a day")
                            }
                            Err(e) => warn!(error = %e, "pruning instances failed"),
                        }
                    }
                    beats += 1;
                }
            });
        }
        let mut connections = self.engine.app.link.connections();
        // A connection made before we subscribed still needs its recovery.
        if *connections.borrow_and_update() > 0 {
            let _ = work_tx.send(Work::Recover).await;
        }
        let mut forward = {
            let (router, work_tx) = (self.clone(), work_tx.clone());
            tokio::spawn(async move {
                while let Some(event) = inbound_rx.recv().await {
                    let work = match event {
                        Inbound::Posted {
                            post,
                            channel_type,
                            sender_name,
                            // Who the server counts as mentioned decides
                            // nothing: see `inbound::route`.
                            mentions: _,
                            caught_up,
                        } => {
                            router
                                .engine
                                .stats
                                .posts_seen
                                .fetch_add(1, Ordering::Relaxed);
                            Work::Post(Box::new(InboundPost {
                                post,
                                channel_type,
                                sender_name,
                                caught_up,
                                recovered: false,
                                received: std::time::Instant::now(),
                            }))
                        }
                        Inbound::ReactionAdded(reaction) => Work::Reaction(reaction),
                        Inbound::CaughtUp => Work::LostReactions,
                        _ => continue,
                    };
                    if work_tx.send(work).await.is_err() {
                        return;
                    }
                }
            })
        };
        loop {
            tokio::select! {
                _ = &mut forward => break,
                event = events_rx.recv() => {
                    let Some(event) = event else { break };
                    self.dispatch(event);
                }
                changed = connections.changed() => {
                    if changed.is_err() { break }
                    // Queued without holding up OpenCode's events.
                    let work_tx = work_tx.clone();
                    tokio::spawn(async move { work_tx.send(Work::Recover).await });
                }
            }
        }
    }

    /// One inbound event, on the ordered worker.
    async fn work(self: &Arc<Self>, work: Work) {
        match work {
            Work::Post(post) => inbound::handle(self, *post).await,
            Work::Reaction(reaction) => reactions::reacted(self, reaction).await,
            Work::Recover => recover::recover(self).await,
            Work::LostReactions => missed::catch_up_reactions(self).await,
        }
    }

    /// One OpenCode event: the monitor sees every one, TUI sync sees new
    /// sessions, the engine streams its sessions', and requests of sessions
    /// with no thread here (subagents) go to the asks feature.
    fn dispatch(self: &Arc<Self>, event: Event) {
        self.monitor.observe(&self.engine.app, &event);
        match &event {
            Event::SessionCreated(created) => Tui::session_created(&self.engine, &created.info),
            // Its files from chat go with it.
            Event::SessionDeleted(deleted) if !deleted.info.id.is_empty() => {
                let (config, id) = (self.engine.app.config.clone(), deleted.info.id.clone());
                let engine = self.engine.clone();
                tokio::spawn(async move {
                    let said = crate::files::clear_session(&config, &id).await;
                    tracing::debug!(session = %id, said, "temporary files of a deleted session");
                    let why = crate::sessions::text::Ending::Deleted;
                    crate::sessions::ended::end_session(&engine, &id, &why).await;
                });
            }
            _ => {}
        }
        if let Err(event) = self.engine.deliver(event)
            && crate::asks::chat::is_ask(&event)
        {
            tokio::spawn(crate::asks::chat::unbound(self.asks.clone(), *event).in_current_span());
        }
    }

    /// Whether this is the first time `key` was noted (for one-time notices).
    fn first_time(&self, key: &str) -> bool {
        self.notified
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key.to_owned())
    }
}

/// Sessions some thread still talks to, on any instance of the store.
async fn live_sessions(app: &App) -> Vec<String> {
    let mut live = Vec::new();
    for instance in app.store.instances().await.unwrap_or_default() {
        for t in app
            .store
            .threads_of_instance(&instance.id)
            .await
            .unwrap_or_default()
        {
            if t.status == crate::store::ThreadStatus::Active {
                live.push(t.session_id);
            }
        }
    }
    live
}

enum Work {
    Post(Box<InboundPost>),
    Reaction(crate::mattermost::types::Reaction),
    Recover,
    /// The link lost events and caught up on posts; reactions are read back.
    LostReactions,
}

/// The engine's hooks, carried out by the features.
#[async_trait]
impl Hooks for Router {
    async fn ask_event(&self, event: &Event, spot: Option<Spot>) {
        crate::asks::chat::on_event(&self.asks, event, spot).await;
    }

    fn still_waiting(&self, session_id: &str) -> bool {
        crate::asks::chat::waiting(&self.asks, session_id)
    }

    fn our_prompt(&self, session_id: &str, message_id: &str) {
        self.tui.ours(session_id, message_id);
    }

    fn foreign_prompt(&self, session_id: &str, event: &Event) -> Option<(String, String)> {
        self.tui.observe(session_id, event)
    }

    fn echo(&self, text: &str) -> String {
        crate::tui::echo(text)
    }

    async fn attachments(&self, binding: &ThreadBinding, post: &Post) -> Attachments {
        let mut attached = crate::files::inbound::prepare(&self.engine.app, binding, post)
            .await
            .into_attachments();
        crate::files::refs::attach(&self.refs, &post.id, &mut attached).await;
        attached
    }

    async fn context(
        &self,
        binding: &ThreadBinding,
        post: &Post,
        new_session: bool,
    ) -> Option<String> {
        self.context
            .for_prompt(
                &self.engine.app,
                binding,
                post,
                new_session,
                &ContextAuthors(&self.engine.app),
            )
            .await
    }

    async fn before_final(&self, turn: &mut Turn, reply: &Reply) {
        crate::files::outbound::attach_long_reply(&self.engine.app, turn, reply).await;
    }

    async fn aborted(&self, session_id: &str) {
        crate::asks::chat::drop_session(&self.asks, session_id).await;
    }

    fn events_lost(&self) {
        use std::sync::atomic::Ordering;
        if self.resync_due.swap(true, Ordering::AcqRel) {
            return;
        }
        warn!("a session fell behind and OpenCode events were dropped; resyncing requests");
        let (asks, due) = (self.asks.clone(), self.resync_due.clone());
        tokio::spawn(async move {
            tokio::time::sleep(RESYNC_AFTER).await;
            due.store(false, Ordering::Release);
            crate::asks::chat::resync(&asks).await;
        });
    }
}

#[cfg(test)]
mod tests;

/// Thread context and merges leave out requests the channels feature did
/// not admit.
pub(crate) struct ContextAuthors<'a>(pub(crate) &'a crate::app::App);

#[async_trait]
impl crate::context::Admits for ContextAuthors<'_> {
    async fn admits(&self, post: &Post) -> bool {
        crate::channels::may_be_context(self.0, post).await
    }
}
