//! Attention alerts (`mattermost_monitor`): a DM to a person when a
//! monitored session asks for a permission, asks a question, finishes its
//! work, or fails.
//!
//! The router hands every OpenCode event to [`Monitor::observe`] in arrival
//! order. The attention state is derived in memory ([`state`]); when a
//! session enters a new state, the change goes to one delivery task, which
//! reads the session's monitors from the store (the store, not memory, says
//! who is monitoring, so monitors added by another agent on the same
//! database count too), skips targets already told about this state, and
//! DMs the rest.
//!
//! Alerts need only Mattermost's REST API: when the agent has no connection
//! (never connected, or told not to), the monitor makes its own REST client
//! from the configuration. One delivery task sends the alerts in the order
//! the states happened, so a one-shot monitor is used exactly once.

mod alert;
mod state;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, PoisonError, Weak};

use async_trait::async_trait;
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::app::App;
use crate::mattermost::rest::{NewPost, RestClient, RetryPolicy};
use crate::mattermost::{MattermostError, Priority, RateBudget};
use crate::opencode::events::Event;
use crate::store::{MonitorRow, Store, StoreError, now_millis};

use alert::{SessionFacts, alert_text};
use state::{Change, Tracker};

/// Why an alert could not be sent or a monitor not changed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MonitorError {
    #[error(
        "Mattermost is not configured, so alerts cannot be sent: set MATTERMOST_URL and \
         MATTERMOST_TOKEN"
    )]
    NotConfigured,
    #[error(transparent)]
    Mattermost(#[from] MattermostError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The way to Mattermost's REST API, with the bot's own user id (a DM
/// channel is named by its two members).
#[derive(Clone)]
pub(crate) struct RestLink {
    pub rest: Arc<RestClient>,
    pub bot_id: String,
}

/// Where alerts go; Mattermost in production, a recorder in tests.
#[async_trait]
pub(crate) trait AlertSink: Send + Sync {
    /// DM `text` to `user_id`.
    async fn send(&self, user_id: &str, text: &str) -> Result<(), MonitorError>;
}

#[async_trait]
impl AlertSink for RestLink {
    async fn send(&self, user_id: &str, text: &str) -> Result<(), MonitorError> {
        let channel = self.rest.direct_channel(&self.bot_id, user_id).await?;
        let post = NewPost {
            channel_id: channel.id,
            message: text.to_owned(),
            ..NewPost::default()
        };
        // Someone is waiting on the session: ahead of progress edits.
        self.rest
            .create_post(&self.bot_id, &post, Priority::Urgent)
            .await?;
        Ok(())
    }
}

/// The monitor of one agent: the sessions' attention states and the task
/// that delivers alerts.
pub struct Monitor {
    tracker: Mutex<Tracker>,
    /// The delivery task's queue; the task starts with the first alert.
    jobs: Mutex<Option<mpsc::UnboundedSender<Change>>>,
    /// Our own REST client, for when the agent has no connection.
    own_link: tokio::sync::Mutex<Option<RestLink>>,
}

impl Default for Monitor {
    fn default() -> Self {
        Self::new()
    }
}

impl Monitor {
    pub(crate) fn new() -> Self {
        Self {
            // This process's start time marks its idle and failure counts.
            tracker: Mutex::new(Tracker::new(now_millis().to_string())),
            jobs: Mutex::new(None),
            own_link: tokio::sync::Mutex::new(None),
        }
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Take one OpenCode event, in arrival order. Updates the state at once
    /// and queues an alert when the session entered a new attention state;
    /// never waits.
    pub(crate) fn observe(self: &Arc<Self>, ctx: &Arc<App>, event: &Event) {
        let Some(change) = self.tracker().observe(event) else {
            return;
        };
        debug!(session = %change.session_id, key = %change.key, "attention state changed");
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = jobs.as_ref()
            && !tx.is_closed()
        {
            let _ = tx.send(change);
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(change);
        *jobs = Some(tx);
        tokio::spawn(
            deliveries(Arc::downgrade(ctx), Arc::downgrade(self), rx)
                .instrument(info_span!("monitor")),
        );
    }

    /// Monitor `session_id` for `target`; replaces an existing monitor of
    /// the pair and forgets what it was told. `from_own_turn`: the session
    /// itself asked (its model called the tool).
    pub(crate) async fn add(
        &self,
        store: &dyn Store,
        session_id: &str,
        target: &str,
        persistent: bool,
        from_own_turn: bool,
    ) -> Result<(), MonitorError> {
        store
            .add_monitor(&MonitorRow {
                session_id: session_id.to_owned(),
                target_user_id: target.to_owned(),
                persistent,
                created_at: now_millis(),
                last_alert: None,
            })
            .await?;
        self.tracker()
            .monitor_added(session_id, target, from_own_turn);
        info!(session = session_id, target, persistent, "monitor added");
        Ok(())
    }

    /// Stop monitoring `session_id` for `target`, or for everyone.
    pub(crate) async fn remove(
        &self,
        store: &dyn Store,
        session_id: &str,
        target: Option<&str>,
    ) -> Result<usize, MonitorError> {
        let removed = store.remove_monitors(session_id, target).await?;
        info!(session = session_id, target, removed, "monitors removed");
        Ok(removed)
    }

    /// Mattermost's REST API: the live connection's client, else our own,
    /// made from the configuration on first use and kept.
    pub(crate) async fn rest(&self, ctx: &App) -> Result<RestLink, MonitorError> {
        if let Some(conn) = ctx.connection().await {
            return Ok(RestLink {
                rest: conn.rest.clone(),
                bot_id: conn.info.bot.id.clone(),
            });
        }
        let mut own = self.own_link.lock().await;
        if let Some(link) = own.as_ref() {
            return Ok(link.clone());
        }
        let config = &ctx.config;
        let (Some(api_url), Some(token)) = (config.api_url(), config.token.clone()) else {
            return Err(MonitorError::NotConfigured);
        };
        let budget = Arc::new(RateBudget::new(
            config.rate_per_second as f64,
            config.rate_burst as f64,
        ));
        let rest = Arc::new(RestClient::new(
            &api_url,
            token,
            budget,
            RetryPolicy::default(),
        )?);
        let bot = rest.me().await?;
        info!(bot = %bot.username, "alerts go over REST without a WebSocket connection");
        let link = RestLink {
            rest,
            bot_id: bot.id,
        };
        *own = Some(link.clone());
        Ok(link)
    }

    /// Send the alerts one change calls for.
    async fn deliver(&self, ctx: &App, change: Change) {
        let rows = match ctx.store.monitors_of(&change.session_id).await {
            Ok(rows) => rows,
            Err(e) => {
                warn!(error = %e, "cannot read the session's monitors; no alert sent");
                return;
            }
        };
        let due = due(rows, &change);
        if due.is_empty() {
            return;
        }
        let facts = match ctx.opencode().get_session(&change.session_id).await {
            Ok(session) => SessionFacts::from_session(&session),
            Err(e) => {
                warn!(error = %e, "cannot read the session from OpenCode; alerting with its id");
                SessionFacts::from_id(&change.session_id)
            }
        };
        let text = alert_text(&facts, &change.attention, &ctx.config.command_prefix);
        let link = match self.rest(ctx).await {
            Ok(link) => link,
            Err(e) => {
                warn!(error = %e, "cannot reach Mattermost; the next state change tries again");
                return;
            }
        };
        send_alerts(ctx.store.as_ref(), &link, &due, &change.key, &text).await;
    }
}

/// The delivery task: alerts in the order the states happened, one at a
/// time, so one-shot monitors and `last_alert` are settled before the next.
async fn deliveries(
    ctx: Weak<App>,
    monitor: Weak<Monitor>,
    mut rx: mpsc::UnboundedReceiver<Change>,
) {
    while let Some(change) = rx.recv().await {
        let (Some(ctx), Some(monitor)) = (ctx.upgrade(), monitor.upgrade()) else {
            return;
        };
        let span = info_span!("alert", session = %change.session_id, key = %change.key);
        monitor.deliver(&ctx, change).instrument(span).await;
    }
}

/// The monitors a change should alert: not already told about this state,
/// and not the ones the change says to skip.
pub(crate) fn due(rows: Vec<MonitorRow>, change: &Change) -> Vec<MonitorRow> {
    rows.into_iter()
        .filter(|m| m.last_alert.as_deref() != Some(change.key.as_str()))
        .filter(|m| !change.skip.contains(&m.target_user_id))
        .collect()
}

/// DM `text` to each monitor's target and record it: persistent monitors
/// remember the key, one-shot monitors are removed. A failed DM is logged
/// and leaves the monitor as it was, so the next state change tries again.
/// Returns how many were sent.
pub(crate) async fn send_alerts(
    store: &dyn Store,
    sink: &dyn AlertSink,
    due: &[MonitorRow],
    key: &str,
    text: &str,
) -> usize {
    let mut sent = 0;
    for m in due {
        let target = m.target_user_id.as_str();
        if let Err(e) = sink.send(target, text).await {
            warn!(target, error = %e, "alert not delivered; the next state change tries again");
            continue;
        }
        sent += 1;
        info!(target, persistent = m.persistent, "alert sent");
        let recorded = if m.persistent {
            store.set_monitor_alert(&m.session_id, target, key).await
        } else {
            store
                .remove_monitors(&m.session_id, Some(target))
                .await
                .map(|_| ())
        };
        match recorded {
            Ok(()) => {}
            // Removed while the alert was on its way: nothing to record.
            Err(StoreError::NotFound(_)) => {}
            Err(e) => warn!(target, error = %e, "alert sent but not recorded"),
        }
    }
    sent
}
