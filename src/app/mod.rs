//! The services every part of the bridge shares, built once when the bridge
//! starts and passed down: configuration, the state store, the Mattermost
//! link, the OpenCode client, the access policy, this instance's row and a
//! clock tests can drive. No feature logic lives here; the helpers below are
//! the small questions several layers ask of these handles.

mod clock;
pub mod identity;

use std::sync::Arc;

use tracing::{debug, warn};

pub use clock::{Clock, SystemClock};

use crate::access::Access;
use crate::config::Config;
use crate::mattermost::connection::{Connection, Connector};
use crate::opencode::OpenCode;
use crate::render::{Limits, Pace, Throttle};
use crate::store::{
    ClaimState, Instance, Store, StoreError, ThreadBinding, ThreadStatus, now_millis,
};

/// The handles of a running bridge.
pub struct App {
    pub config: Config,
    pub opencode: Arc<dyn OpenCode>,
    /// The Mattermost link: REST, WebSocket and the shared rate budget.
    pub link: Arc<Connector>,
    pub access: Access,
    pub clock: Arc<dyn Clock>,
    pub store: Arc<dyn Store>,
    /// This agent's row among the instances sharing the store.
    pub instance: Instance,
    /// Channel id → whether many people read it (not a DM), as looked up.
    pub shared_channels: std::sync::Mutex<std::collections::HashMap<String, bool>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("the state database cannot be used: {0}")]
    Store(#[from] StoreError),
    #[error(
        "no state database path: set OPENCODE_MM_STATE_DB, OPENCODE_MM_DATABASE_URL or \
         XDG_DATA_HOME/HOME"
    )]
    NoStorePath,
}

impl App {
    pub fn opencode(&self) -> &Arc<dyn OpenCode> {
        &self.opencode
    }

    /// The live Mattermost connection, if any.
    pub async fn connection(&self) -> Option<Arc<Connection>> {
        self.link.current().await
    }

    /// Post size limits: the configured rollover point, never above what the
    /// server accepts.
    pub fn limits(&self, conn: &Connection) -> Limits {
        let post_chars = (self.config.max_post_length as usize)
            .min(conn.info.max_post_runes)
            .max(200);
        Limits {
            post_chars,
            meta_chars: (post_chars / 4).min(2000),
        }
    }

    /// The edit pace of one streaming post, from the configuration.
    pub fn throttle(&self) -> Throttle {
        let config = &self.config;
        Throttle::new(Pace::from_rate(
            config.edit_rate_limit,
            config.max_delay,
            config.buffer_size as usize,
        ))
    }

    /// Record how far the handling of a claimed post got.
    pub async fn set_claim_state(&self, post_id: &str, state: ClaimState) {
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
    pub async fn instance_alive(&self, instance_id: &str) -> bool {
        if instance_id == self.instance.id {
            return true;
        }
        match self.store.instances().await {
            Ok(list) => list.iter().any(|i| i.id == instance_id && self.online(i)),
            Err(_) => true,
        }
    }

    /// Whether an instance's lease is current: it heartbeats three times
    /// a lease, so one missed beat is not yet "offline".
    pub fn online(&self, instance: &Instance) -> bool {
        let lease = i64::try_from(self.config.instance_lease.as_millis()).unwrap_or(i64::MAX);
        now_millis() - instance.heartbeat_at <= lease
    }

    /// The other instances whose lease is current.
    pub async fn peers(&self) -> Vec<Instance> {
        let mut peers: Vec<Instance> = self
            .store
            .instances()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|i| i.id != self.instance.id && self.online(i))
            .collect();
        peers.sort_by(|a, b| a.id.cmp(&b.id));
        peers
    }

    /// Whether this instance answers what belongs to no session (top-level
    /// DM commands): the live instance with the lowest id does, so such a
    /// command is answered once and always by the same one, not by
    /// whichever agent claims it first. Unknown (store error) means yes.
    pub async fn leads(&self) -> bool {
        self.peers()
            .await
            .first()
            .is_none_or(|lowest| self.instance.id < lowest.id)
    }

    /// Another instance as the store knows it, for notices.
    pub async fn instance_row(&self, instance_id: &str) -> Option<Instance> {
        self.store
            .instances()
            .await
            .ok()
            .and_then(|list| list.into_iter().find(|i| i.id == instance_id))
    }

    /// Per-instance cursor key: instances answer different threads, so one
    /// must not skip what another ignored.
    pub fn cursor_key(&self, channel_id: &str) -> String {
        format!("{}|{channel_id}", self.instance.id)
    }

    /// A session's active threads owned by this instance, oldest first.
    pub async fn live_threads(&self, session_id: &str) -> Result<Vec<ThreadBinding>, StoreError> {
        Ok(self
            .store
            .threads_of_session(session_id)
            .await?
            .into_iter()
            .filter(|t| t.instance_id == self.instance.id && t.status == ThreadStatus::Active)
            .collect())
    }

    /// Whether a channel is read by more than the bot and one person (a
    /// group message, a public or private channel). Looked up once per
    /// channel; when the lookup fails, it counts as shared (fail closed).
    pub async fn is_shared_channel(&self, channel_id: &str) -> bool {
        let known = self
            .shared_channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(channel_id)
            .copied();
        if let Some(shared) = known {
            return shared;
        }
        let Some(conn) = self.connection().await else {
            return true;
        };
        match conn.rest.channel(channel_id).await {
            Ok(channel) => {
                let shared = channel.kind != "D";
                self.shared_channels
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .insert(channel_id.to_owned(), shared);
                shared
            }
            Err(e) => {
                debug!(error = %e, "cannot tell the channel's type; treating it as shared");
                true
            }
        }
    }

    /// Agent text (model, TUI, tool) as it may be posted in `channel_id`:
    /// in a shared channel it notifies nobody and loads no remote image
    /// (unless `OPENCODE_MM_CHANNEL_IMAGES`); in a DM it is left exact.
    pub async fn for_channel(&self, channel_id: &str, text: String) -> String {
        if self.is_shared_channel(channel_id).await {
            crate::render::quiet(&text, self.config.channel_images)
        } else {
            text
        }
    }

    /// Show the typing indicator in a thread. It goes over the socket: a
    /// REST call per session every few seconds would spend the rate budget
    /// that answers need when many sessions run at once. Cosmetic, so a
    /// link that is down or busy just skips it.
    pub async fn typing(&self, channel_id: &str, root_id: &str) {
        if let Some(conn) = self.connection().await
            && let Err(e) = conn.link.typing(channel_id, root_id)
        {
            debug!(error = %e, "typing indicator skipped");
        }
    }
}

/// This machine's name, for instance rows and notices.
pub fn host_name() -> String {
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

/// Open the store the configuration names: PostgreSQL when
/// `OPENCODE_MM_DATABASE_URL` is a `postgres://` URL, else the SQLite file.
/// Async because PostgreSQL connects and migrates over the network; SQLite's
/// file work runs on the blocking pool.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, AppError> {
    if let Some(url) = &config.database_url {
        let options = crate::store::PgOptions {
            max_connections: config.database_pool_size,
            connect_timeout: config.database_connect_timeout,
            wait_timeout: config.database_connect_timeout,
            ..crate::store::PgOptions::default()
        };
        let store = crate::store::PgStore::connect_with(url.expose(), options).await?;
        return Ok(Arc::new(store));
    }
    let path = config
        .state_db
        .clone()
        .or_else(crate::store::SqliteStore::default_path)
        .ok_or(AppError::NoStorePath)?;
    let opened = tokio::task::spawn_blocking(move || crate::store::SqliteStore::open(&path))
        .await
        .map_err(|e| StoreError::Join(e.to_string()))??;
    Ok(Arc::new(opened))
}

#[cfg(test)]
mod tests;
