//! Shared fixtures of the WebSocket link tests and benchmark: a simulator
//! with a bot and a user, a REST [`CatchUp`] against it, and quick settings.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mattermost_sim::{Account, Channel, ChannelType, SimConfig, Simulator};
use opencode_mattermost::config::Secret;
use opencode_mattermost::mattermost::types::Post;
use opencode_mattermost::mattermost::ws::{self, CatchUp, Inbound, LinkConfig, LinkHandle};
use opencode_mattermost::mattermost::{RateBudget, RestClient, RetryPolicy};
use tokio::sync::mpsc;
use url::Url;

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(20);

/// The agent's own REST client as the link's [`CatchUp`], counting calls.
pub struct SimCatchUp {
    rest: RestClient,
    pub calls: AtomicUsize,
    /// Times the link asked whether the token is refused.
    pub token_checks: AtomicUsize,
}

impl SimCatchUp {
    pub fn new(sim: &Simulator, token: &str) -> Self {
        let rest = RestClient::new(
            &sim.api_url(),
            Secret::new(token),
            Arc::new(RateBudget::new(1000.0, 1000.0)),
            RetryPolicy::default(),
        )
        .unwrap();
        SimCatchUp {
            rest,
            calls: AtomicUsize::new(0),
            token_checks: AtomicUsize::new(0),
        }
    }
}

#[async_trait::async_trait]
impl CatchUp for SimCatchUp {
    async fn posts_since(&self, channel_id: &str, since_ms: i64) -> Result<Vec<Post>, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        CatchUp::posts_since(&self.rest, channel_id, since_ms).await
    }

    async fn token_rejected(&self) -> bool {
        self.token_checks.fetch_add(1, Ordering::SeqCst);
        CatchUp::token_rejected(&self.rest).await
    }
}

/// A simulator with a bot, a user (alice) and their DM.
pub struct World {
    pub sim: Arc<Simulator>,
    pub bot: Account,
    pub alice: Account,
    pub dm: Channel,
}

impl World {
    pub async fn start(config: SimConfig) -> World {
        let sim = Simulator::start_with(config).await.unwrap();
        let bot = sim.create_bot("linkbot").unwrap();
        let alice = sim.create_user("alice").unwrap();
        let dm = sim.direct_channel(&alice.id, &bot.id).unwrap();
        World {
            sim: Arc::new(sim),
            bot,
            alice,
            dm,
        }
    }

    /// Settings for tests: fast backoff, short timeouts.
    pub fn link_config(&self) -> LinkConfig {
        let mut cfg = LinkConfig::new(
            Url::parse(&self.sim.ws_url()).unwrap(),
            Secret::new(self.bot.token.clone()),
            self.bot.id.clone(),
        );
        cfg.backoff_initial = Duration::from_millis(10);
        cfg.backoff_max = Duration::from_millis(50);
        cfg.connect_timeout = Duration::from_secs(3);
        cfg.hello_timeout = Duration::from_secs(3);
        cfg.catch_up_timeout = Duration::from_secs(5);
        cfg
    }

    pub fn catch_up(&self) -> Arc<SimCatchUp> {
        Arc::new(SimCatchUp::new(&self.sim, &self.bot.token))
    }

    /// Spawns a link with `cfg` and a channel of `capacity`.
    pub fn spawn(&self, cfg: LinkConfig, capacity: usize) -> (LinkHandle, mpsc::Receiver<Inbound>) {
        let (tx, rx) = mpsc::channel(capacity);
        let handle = ws::spawn(cfg, self.catch_up(), tx);
        (handle, rx)
    }

    /// A public channel `town` in a new team, with the bot and alice in it.
    pub fn town(&self) -> Channel {
        let team = self.sim.create_team("eng", "Engineering");
        let town = self
            .sim
            .create_channel(&team.id, "town", "Town", ChannelType::Open)
            .unwrap();
        self.sim.add_member(&town.id, &self.bot.id).unwrap();
        self.sim.add_member(&town.id, &self.alice.id).unwrap();
        town
    }

    /// Whether the bot has a socket attached at the simulator.
    pub fn bot_online(&self) -> bool {
        self.sim
            .connections()
            .iter()
            .any(|c| c.user_id == self.bot.id && c.active)
    }
}

/// The next event, or a panic after [`WAIT`].
pub async fn next(rx: &mut mpsc::Receiver<Inbound>) -> Inbound {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("timed out waiting for an event")
        .expect("event channel closed")
}

/// The next `Posted`, skipping other events.
pub async fn next_post(rx: &mut mpsc::Receiver<Inbound>) -> (Post, bool) {
    loop {
        if let Inbound::Posted {
            post, caught_up, ..
        } = next(rx).await
        {
            return (post, caught_up);
        }
    }
}

/// Polls `cond` (for simulator-side facts that have no signal) until it holds.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

pub fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[idx.min(v.len() - 1)]
}

/// Logs to the test output, filtered by `RUST_LOG` (nothing by default).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}
