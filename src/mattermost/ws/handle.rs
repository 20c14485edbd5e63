//! The caller's side of the link: [`spawn`] starts the worker task and
//! returns a [`LinkHandle`] to watch its state, read its counters, name
//! served channels and stop it. Kept apart from the worker so the public
//! surface reads on its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::dedupe::Seen;
use super::shared::{Shared, lock};
use super::socket::Worker;
use super::{
    ACTION_QUEUE, Action, CatchUp, DEDUPE_CAPACITY, EDIT_DEDUPE_CAPACITY, Inbound, LinkConfig,
    LinkError, LinkState, LinkStats,
};

/// The caller's side of a running link. Dropping it stops the link.
#[derive(Debug)]
pub struct LinkHandle {
    state: watch::Receiver<LinkState>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    actions: mpsc::Sender<Action>,
}

/// Why an action was not queued; the caller may fall back or give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ActionRefused {
    #[error("the link is not connected")]
    NotConnected,
    #[error("too many actions are waiting for the socket")]
    Busy,
}

/// Starts the link task. Events go to `events`; when it is full the link
/// waits, when its receiver is gone the link stops.
pub fn spawn(
    config: LinkConfig,
    catch_up: Arc<dyn CatchUp>,
    events: mpsc::Sender<Inbound>,
) -> LinkHandle {
    let (state_tx, state_rx) = watch::channel(LinkState::Connecting { attempt: 1 });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (actions_tx, actions_rx) = mpsc::channel(ACTION_QUEUE);
    let shared = Arc::new(Shared::default());
    let worker = Worker {
        cfg: config,
        catch_up,
        events,
        shared: shared.clone(),
        state: state_tx,
        stop: stop_rx,
        session: None,
        last_connection_id: None,
        resume_failures: 0,
        seen: Seen::new(DEDUPE_CAPACITY),
        seen_edits: Seen::new(EDIT_DEDUPE_CAPACITY),
        pending: BTreeMap::new(),
        events_lost: false,
        action_seq: 0,
        actions: actions_rx,
    };
    tokio::spawn(worker.run());
    LinkHandle {
        state: state_rx,
        shared,
        stop: stop_tx,
        actions: actions_tx,
    }
}

impl LinkHandle {
    /// The current state.
    pub fn state(&self) -> LinkState {
        self.state.borrow().clone()
    }

    /// A receiver of every state change.
    pub fn subscribe(&self) -> watch::Receiver<LinkState> {
        self.state.clone()
    }

    /// Waits until the state satisfies `pred`. Fails on timeout, or when the
    /// link stops without satisfying it.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&LinkState) -> bool,
    ) -> Result<LinkState, LinkError> {
        let mut rx = self.state.clone();
        let wait = async {
            loop {
                {
                    let s = rx.borrow_and_update();
                    if pred(&s) {
                        return Ok(s.clone());
                    }
                    if s.is_ended() {
                        return Err(LinkError::Stopped);
                    }
                }
                if rx.changed().await.is_err() {
                    let s = rx.borrow().clone();
                    return if pred(&s) {
                        Ok(s)
                    } else {
                        Err(LinkError::Stopped)
                    };
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(LinkError::Timeout {
                waited: timeout,
                state: format!("{:?}", self.state()),
            }),
        }
    }

    /// Waits until the link is connected; returns the connection id.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<String, LinkError> {
        match self
            .wait_for(timeout, |s| matches!(s, LinkState::Connected { .. }))
            .await?
        {
            LinkState::Connected { connection_id, .. } => Ok(connection_id),
            _ => Err(LinkError::Stopped),
        }
    }

    /// Waits until the link is connected by a connection made after `after`.
    pub async fn wait_connected_after(
        &self,
        after: Instant,
        timeout: Duration,
    ) -> Result<String, LinkError> {
        match self
            .wait_for(
                timeout,
                |s| matches!(s, LinkState::Connected { since, .. } if *since > after),
            )
            .await?
        {
            LinkState::Connected { connection_id, .. } => Ok(connection_id),
            _ => Err(LinkError::Stopped),
        }
    }

    /// Queues "… is typing" in `channel_id` (thread `parent_id`, or empty)
    /// for the socket. Refused while the link is down: a late indicator
    /// would show typing after the reply.
    pub fn typing(&self, channel_id: &str, parent_id: &str) -> Result<(), ActionRefused> {
        if !matches!(*self.state.borrow(), LinkState::Connected { .. }) {
            return Err(ActionRefused::NotConnected);
        }
        self.actions
            .try_send(Action::Typing {
                channel_id: channel_id.to_owned(),
                parent_id: parent_id.to_owned(),
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => ActionRefused::Busy,
                mpsc::error::TrySendError::Closed(_) => ActionRefused::NotConnected,
            })
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> LinkStats {
        lock(&self.shared.stats).clone()
    }

    /// Adds a channel to those caught up after a refused resume. Channels the
    /// link delivered a post from are served already.
    pub fn serve_channel(&self, channel_id: &str) {
        self.shared.serve(channel_id);
    }

    /// The served channels, sorted.
    pub fn served_channels(&self) -> Vec<String> {
        let mut ids: Vec<String> = lock(&self.shared.channels).keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Stops the link: closes the socket cleanly and ends the task. The state
    /// is `Stopped` afterwards.
    pub async fn disconnect(&self) {
        let _ = self.stop.send(true);
        // The task closes the socket (waiting up to 1 s for the close) and
        // then reports Stopped; shared handles cannot join it, so wait for that.
        let _ = self
            .wait_for(Duration::from_secs(5), LinkState::is_ended)
            .await;
    }
}

impl Drop for LinkHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
