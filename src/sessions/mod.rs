//! The turn engine: binds Mattermost threads to OpenCode sessions, starts
//! and stops turns, streams each turn's reply into its thread, and posts in
//! threads. It knows no feature: where a feature must take part in a turn
//! (a request posted in the thread, a long reply attached as a file, a
//! prompt typed at the TUI), the engine calls its [`Hooks`], which the
//! router implements on top of the features.
//!
//! - [`threads`]: new sessions, their cards and thread bindings, posting;
//! - [`turn`]: starting a turn, sending its prompt, stopping, resuming;
//! - [`task`]: one task per session streaming its turns' posts;
//! - [`text`]: the wording of the engine's own posts and prompt envelope;
//! - [`ended`]: ending a session's threads (deleted, or `!end`);
//! - [`held`]: a new session's events held until it has a thread;
//! - [`stats`]: counters and latencies.

pub mod ended;
mod held;
pub mod stats;
mod task;
pub mod text;
pub mod threads;
pub mod turn;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::app::App;
use crate::mattermost::types::Post;
use crate::opencode::MessageIds;
use crate::opencode::events::Event;
use crate::render::Turn;
use crate::store::{Reply, StoreError, ThreadBinding, ThreadStatus};

pub use stats::{BridgeStats, Samples};
pub use task::FlushError;
pub(crate) use task::thread_for;
pub use threads::{NewThread, ThreadSpot, reply_in, reply_with_files, say, say_in};
pub use turn::{Attachments, LastPrompt, Started};

use held::{Held, Offered};
use task::SessionMsg;

/// A thread to post in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spot {
    pub channel_id: String,
    pub root_id: String,
}

/// Where features take part in a session's turns. Called from the session's
/// task, in event order.
#[async_trait]
pub trait Hooks: Send + Sync {
    /// A permission or question event of a session followed here. `spot` is
    /// the thread its requests go to (none when the event settles one).
    async fn ask_event(&self, event: &Event, spot: Option<Spot>);
    /// Whether the session still waits for a person in chat.
    fn still_waiting(&self, session_id: &str) -> bool;
    /// A user message this engine sent or resumed: never a TUI prompt.
    fn our_prompt(&self, session_id: &str, message_id: &str);
    /// A prompt typed elsewhere (the TUI), once its text is known: its
    /// message id and text.
    fn foreign_prompt(&self, session_id: &str, event: &Event) -> Option<(String, String)>;
    /// How a foreign prompt is echoed into the thread.
    fn echo(&self, text: &str) -> String;
    /// Just before a turn's final edit: e.g. a very long reply goes up as a
    /// file.
    async fn before_final(&self, turn: &mut Turn, reply: &Reply);
    /// The files that came with a prompt's post, fetched for the model.
    async fn attachments(&self, binding: &ThreadBinding, post: &Post) -> Attachments;
    /// Earlier messages of the prompt's thread (group and channel threads),
    /// as a block that goes before the prompt text. `new_session`: the
    /// prompt starts its session.
    async fn context(
        &self,
        binding: &ThreadBinding,
        post: &Post,
        new_session: bool,
    ) -> Option<String>;
    /// A turn of the session was aborted.
    async fn aborted(&self, session_id: &str);
    /// A session's queue was full and OpenCode events were dropped: pending
    /// requests must be read again from OpenCode.
    fn events_lost(&self);
}

/// The engine of a running bridge.
pub struct Engine {
    pub app: Arc<App>,
    pub stats: Arc<BridgeStats>,
    /// Session id → its task.
    sessions: Mutex<HashMap<String, mpsc::Sender<SessionMsg>>>,
    /// Sessions with a live thread of this instance: their events start a
    /// session task (prompts typed at the TUI stream into the thread).
    bound: Mutex<HashSet<String>>,
    /// New sessions about to get a thread: their events wait for its task.
    held: Held,
    /// Each thread's last prompt, for sending it again.
    last_prompts: Mutex<HashMap<String, LastPrompt>>,
    /// Ids of the prompts this engine sends.
    message_ids: MessageIds,
    /// Set once by the router; weak, since the hooks' features hold the
    /// engine.
    hooks: OnceLock<Weak<dyn Hooks>>,
}

impl Engine {
    pub fn new(app: Arc<App>) -> Arc<Engine> {
        Arc::new(Engine {
            app,
            stats: Arc::new(BridgeStats::default()),
            sessions: Mutex::new(HashMap::new()),
            bound: Mutex::new(HashSet::new()),
            held: Held::default(),
            last_prompts: Mutex::new(HashMap::new()),
            message_ids: MessageIds::default(),
            hooks: OnceLock::new(),
        })
    }

    /// Install the features' hooks (once).
    pub fn set_hooks(&self, hooks: Weak<dyn Hooks>) {
        let _ = self.hooks.set(hooks);
    }

    pub(crate) fn hooks(&self) -> Option<Arc<dyn Hooks>> {
        self.hooks.get().and_then(Weak::upgrade)
    }

    /// Follow the sessions that have a live thread of this instance.
    pub async fn load_bound(self: &Arc<Self>) -> Result<(), StoreError> {
        let threads = self
            .app
            .store
            .threads_of_instance(&self.app.instance.id)
            .await?;
        for t in threads.iter().filter(|t| t.status == ThreadStatus::Active) {
            self.bound(&t.session_id);
        }
        Ok(())
    }

    /// Remember that a session has a thread here, so its events are
    /// followed even when no chat turn started its task.
    /// Events held for it (see [`Engine::hold`]) go to its task now.
    pub fn bound(self: &Arc<Self>, session_id: &str) {
        self.bound
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(session_id.to_owned());
        if self.held.is_held(session_id) {
            self.session(session_id);
        }
    }

    /// A new session is about to get a thread here: hold what its reply
    /// would stream from until its task starts, so a prompt sent in the
    /// meantime is shown too. Undone by [`Engine::release`].
    pub fn hold(&self, session_id: &str) {
        let followed = self
            .sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains_key(session_id)
            || self
                .bound
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .contains(session_id);
        if !followed {
            self.held.hold(session_id);
        }
    }

    /// The held session got no thread here: what was held is dropped, as
    /// the events of any session not followed here are.
    pub fn release(&self, session_id: &str) {
        self.held.release(session_id);
    }

    /// The session has no live thread here any more: its events are no
    /// longer followed once its task is gone.
    pub fn unbound(&self, session_id: &str) {
        self.bound
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(session_id);
    }

    /// The task of a session, started on first use.
    fn session(self: &Arc<Self>, session_id: &str) -> mpsc::Sender<SessionMsg> {
        let mut sessions = self
            .sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(tx) = sessions.get(session_id)
            && !tx.is_closed()
        {
            return tx.clone();
        }
        let tx = task::spawn(self.clone(), session_id.to_owned());
        // Before anyone else can send to it: the events held for the
        // session, in order (a new queue has room for the one message).
        if let Some(held) = self.held.take(session_id) {
            if held.dropped > 0 {
                self.events_dropped(held.dropped);
            }
            if !held.events.is_empty() {
                let _ = tx.try_send(SessionMsg::Replay(held.events));
            }
        }
        sessions.insert(session_id.to_owned(), tx.clone());
        tx
    }

    /// Count events that never reached their task, and have pending
    /// requests read again from OpenCode.
    fn events_dropped(&self, count: u64) {
        self.stats
            .events_dropped
            .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
        if let Some(hooks) = self.hooks() {
            hooks.events_lost();
        }
    }

    /// Hand an OpenCode event to its session's task. A held session's event
    /// waits for its task; a session with neither a task nor a thread here
    /// is not followed: the event comes back.
    pub fn deliver(self: &Arc<Self>, event: Event) -> Result<(), Box<Event>> {
        let Some(id) = event.session_id() else {
            return Ok(());
        };
        let existing = self
            .sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(id)
            .cloned();
        let tx = match existing {
            Some(tx) => tx,
            None => {
                let id = id.to_owned();
                let event = match self.held.offer(&id, Box::new(event)) {
                    // A dropped one is counted when the rest is handed over.
                    Ok(Offered::Held | Offered::Dropped) => return Ok(()),
                    Err(event) => event,
                };
                let bound = self
                    .bound
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .contains(&id);
                if !bound {
                    return Err(event);
                }
                self.send_event(&self.session(&id), *event);
                return Ok(());
            }
        };
        self.send_event(&tx, event);
        Ok(())
    }

    fn send_event(&self, tx: &mpsc::Sender<SessionMsg>, event: Event) {
        // The OpenCode event stream must not wait on one slow session; a
        // dropped event is made good by the task's settle from OpenCode's
        // stored messages, and requests by an asks resync.
        if let Err(mpsc::error::TrySendError::Full(_)) =
            tx.try_send(SessionMsg::Event(Box::new(event)))
        {
            self.events_dropped(1);
        }
    }
}
