//! A protocol-faithful Mattermost server simulator (REST API v4 and the
//! WebSocket event stream) for testing clients such as opencode-mattermost.
//!
//! Start one in process with [`Simulator::start`], seed accounts and
//! channels through the handle, point a client at [`Simulator::base_url`],
//! then inspect what the server stored and received, or inject faults.
//! The same control API is served as JSON under `/__sim/...`.
//!
//! Modules: [`model`] wire types, [`state`] the store, [`app`] the rules
//! (with [`mentions`], who a post mentions, and `membership`, reading a
//! channel and its notify props), `rest` the routes, [`ws`] the socket hub,
//! [`faults`] injected failures and rate limiting, [`control`] the test
//! control API.

pub mod app;
pub mod config;
pub mod control;
pub mod error;
pub mod faults;
pub mod ids;
mod membership;
pub mod mentions;
pub mod model;
mod rest;
pub mod state;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use app::{RequestRecord, Sim};
pub use config::SimConfig;
pub use control::Account;
pub use error::{ApiError, SimError};
pub use faults::{FaultAction, FaultRule, RateLimit};
pub use model::{Channel, ChannelType, Post, Reaction, Team};
pub use ws::{ConnectionInfo, KillMode};

use model::{CreatePostBody, ReactionBody};

/// A running simulator. Dropping it stops the server and closes its sockets.
#[derive(Debug)]
pub struct Simulator {
    sim: Arc<Sim>,
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Starts a simulator with the real server's defaults on 127.0.0.1 and a
    /// free port.
    pub async fn start() -> Result<Self, SimError> {
        Self::start_with(SimConfig::default()).await
    }

    /// Starts a simulator with custom settings on 127.0.0.1 and a free port.
    pub async fn start_with(config: SimConfig) -> Result<Self, SimError> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Starts a simulator on a given address.
    pub async fn bind(addr: SocketAddr, config: SimConfig) -> Result<Self, SimError> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let sim = Arc::new(Sim::new(config));
        sim.set_site_url(format!("http://{addr}"));
        let app = rest::router(sim.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let mut stop = sim.shutdown_signal();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await;
        });
        Ok(Simulator {
            sim,
            addr,
            task: Some(task),
        })
    }

    /// The shared state, for checks the handle does not wrap.
    pub fn sim(&self) -> &Arc<Sim> {
        &self.sim
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (also the `SiteURL`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/api/v4`.
    pub fn api_url(&self) -> String {
        format!("http://{}/api/v4", self.addr)
    }

    /// `ws://127.0.0.1:PORT/api/v4/websocket`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/api/v4/websocket", self.addr)
    }

    /// Adds a user account; the returned token works as a bearer token.
    pub fn create_user(&self, username: &str) -> Result<Account, SimError> {
        Ok(self.sim.create_account(username, false)?)
    }

    /// Adds a bot account (`is_bot`, posts get `from_bot`); returns its token.
    pub fn create_bot(&self, username: &str) -> Result<Account, SimError> {
        Ok(self.sim.create_account(username, true)?)
    }

    /// Adds a team.
    pub fn create_team(&self, name: &str, display_name: &str) -> Team {
        self.sim.create_team(name, display_name)
    }

    /// Makes a user a member of a team.
    pub fn add_to_team(&self, team_id: &str, user_id: &str) -> Result<(), SimError> {
        Ok(self.sim.add_to_team(team_id, user_id)?)
    }

    /// Adds a public (`Open`) or private channel to a team.
    pub fn create_channel(
        &self,
        team_id: &str,
        name: &str,
        display_name: &str,
        kind: ChannelType,
    ) -> Result<Channel, SimError> {
        Ok(self.sim.create_channel(team_id, name, display_name, kind)?)
    }

    /// Adds a user to a channel (and to the channel's team).
    pub fn add_member(&self, channel_id: &str, user_id: &str) -> Result<(), SimError> {
        Ok(self.sim.add_member(channel_id, user_id)?)
    }

    /// Finds or creates the DM between two users.
    pub fn direct_channel(&self, a: &str, b: &str) -> Result<Channel, SimError> {
        Ok(self.sim.direct_channel(a, a, b)?)
    }

    /// Finds or creates a group message channel (3–8 users).
    pub fn group_channel(&self, user_ids: &[String]) -> Result<Channel, SimError> {
        let first = user_ids.first().cloned().unwrap_or_default();
        Ok(self.sim.group_channel(&first, user_ids)?)
    }

    /// Posts as a user, through the same rules and events as `POST /posts`.
    pub fn post_as(
        &self,
        user_id: &str,
        channel_id: &str,
        message: &str,
        root_id: Option<&str>,
    ) -> Result<Post, SimError> {
        let body = CreatePostBody {
            channel_id: channel_id.to_owned(),
            message: message.to_owned(),
            root_id: root_id.unwrap_or("").to_owned(),
            ..CreatePostBody::default()
        };
        Ok(self.sim.create_post(user_id, body, true)?)
    }

    /// Posts as an integration does: a webhook's, a slash command's or a
    /// plugin's post carries the id of the user who set it up, and its
    /// `props` (`from_webhook`, `override_username`, …) say where it came
    /// from.
    pub fn post_with_props_as(
        &self,
        user_id: &str,
        channel_id: &str,
        message: &str,
        root_id: Option<&str>,
        props: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Post, SimError> {
        let body = CreatePostBody {
            channel_id: channel_id.to_owned(),
            message: message.to_owned(),
            root_id: root_id.unwrap_or("").to_owned(),
            props: Some(props),
            ..CreatePostBody::default()
        };
        Ok(self.sim.create_post(user_id, body, true)?)
    }

    /// Reacts as a user, like `POST /reactions`.
    pub fn react_as(
        &self,
        user_id: &str,
        post_id: &str,
        emoji: &str,
    ) -> Result<Reaction, SimError> {
        let body = ReactionBody {
            user_id: user_id.to_owned(),
            post_id: post_id.to_owned(),
            emoji_name: emoji.to_owned(),
        };
        Ok(self.sim.add_reaction(user_id, body)?)
    }

    /// Every stored post row, edit-history rows included, in creation order.
    pub fn posts(&self) -> Vec<Post> {
        self.sim.all_posts()
    }

    /// One post as clients see it (deleted posts too).
    pub fn post(&self, id: &str) -> Option<Post> {
        self.sim.one_post(id)
    }

    /// The edit-history rows stored for a post, oldest first.
    pub fn edits_of(&self, post_id: &str) -> Vec<Post> {
        self.sim.edits_of(post_id)
    }

    /// Every REST request received so far (method, path, query, status, time).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.sim.requests.lock().clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.sim.requests.lock().clear();
    }

    /// WebSocket connections known to the hub.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.sim.hub.lock().connections()
    }

    /// Ends every socket of a user; returns how many were attached.
    /// Header-authenticated connections stay resumable.
    pub fn kill_sockets(&self, user_id: &str, mode: KillMode) -> usize {
        self.sim.hub.lock().kill_user(user_id, mode)
    }

    /// Revokes every access token of a user, as an admin disabling a bot's
    /// token does: REST answers 401, and open sockets stay open but silent,
    /// answering actions with 401. Returns how many sockets were open.
    pub fn revoke_tokens(&self, user_id: &str) -> usize {
        self.sim.store.lock().tokens.retain(|_, id| id != user_id);
        self.sim.hub.lock().deauthenticate_user(user_id)
    }

    /// A new access token for a user.
    pub fn issue_token(&self, user_id: &str) -> String {
        let token = ids::new_id();
        self.sim
            .store
            .lock()
            .tokens
            .insert(token.clone(), user_id.to_owned());
        token
    }

    /// Stops writing to a user's sockets for a while (events queue up).
    pub fn stall_sockets(&self, user_id: &str, duration: Duration) -> usize {
        self.sim.hub.lock().stall_user(user_id, duration)
    }

    /// Answers the next `n` requests matching `method` (or `*`) and `path`
    /// (glob, `/api/v4` prefix optional) with `status`. A 429 is the rate
    /// limiter's reply with `Retry-After: 1`.
    pub fn fail_next(&self, method: &str, path: &str, status: u16, n: u32) {
        self.sim.faults.lock().add(FaultRule {
            method: method.to_owned(),
            path: path.to_owned(),
            action: FaultAction::Status {
                status,
                retry_after_secs: 1,
            },
            remaining: n,
            skip: 0,
        });
    }

    /// Delays the next `n` matching requests by `delay`.
    pub fn delay_next(&self, method: &str, path: &str, delay: Duration, n: u32) {
        self.sim.faults.lock().add(FaultRule {
            method: method.to_owned(),
            path: path.to_owned(),
            action: FaultAction::Delay {
                millis: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            },
            remaining: n,
            skip: 0,
        });
    }

    /// Lets `skip` matching requests through, then runs the next one but
    /// holds its answer for `hold`: the server made the change, the client
    /// never hears of it.
    pub fn lose_answer_after(&self, method: &str, path: &str, skip: u32, hold: Duration) {
        self.sim.faults.lock().add(FaultRule {
            method: method.to_owned(),
            path: path.to_owned(),
            action: FaultAction::DelayAnswer {
                millis: u64::try_from(hold.as_millis()).unwrap_or(u64::MAX),
            },
            remaining: 1,
            skip,
        });
    }

    /// Turns rate limiting on (`Some`) or off (`None`, the default).
    pub fn rate_limit(&self, limit: Option<RateLimit>) {
        self.sim.set_rate_limit(limit);
    }

    /// Changes settings (e.g. `max_file_size`) for requests from now on.
    pub fn configure(&self, f: impl FnOnce(&mut SimConfig)) {
        self.sim.update_config(f);
    }

    /// Waits until the server stops (it runs until the handle is shut down).
    pub async fn wait(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Stops the server and closes every socket.
    pub async fn shutdown(mut self) {
        self.sim.trigger_shutdown();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.sim.trigger_shutdown();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
