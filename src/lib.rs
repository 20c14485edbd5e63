//! opencode-mattermost: the Rust agent behind the OpenCode plugin shim.
//!
//! The shim (`opencode-plugin/`) spawns this process and speaks JSON-RPC 2.0
//! over its stdin/stdout ([`rpc`], [`server`]). The modules form layers, each
//! using only the layers below it (`tests/architecture.rs` checks this):
//!
//! | layer | modules |
//! |---|---|
//! | ground | [`rpc`], [`config`], [`store`], [`mattermost`], [`opencode`], [`access`], [`render`], [`logging`], [`private_fs`] |
//! | services | [`app`] |
//! | engine | [`sessions`] |
//! | features, side by side | [`commands`], [`asks`], [`files`], [`monitor`], [`scheduler`], [`tui`], [`channels`], [`context`] |
//! | router | [`router`] |
//! | agent state | [`agent`] |
//! | front ends | [`tools`] and [`cli`], then [`server`] |

pub mod access;
pub mod agent;
pub mod app;
pub mod asks;
pub mod channels;
pub mod cli;
pub mod commands;
pub mod config;
pub mod context;
pub mod files;
pub mod logging;
pub mod mattermost;
pub mod monitor;
pub mod opencode;
pub mod private_fs;
pub mod render;
pub mod router;
pub mod rpc;
pub mod scheduler;
pub mod server;
pub mod sessions;
pub mod store;
pub mod tools;
pub mod tui;
pub mod tz;

use std::sync::Arc;

use tokio::io::{AsyncBufRead, AsyncWrite};

pub use agent::Agent;

/// Run the agent over the given streams until the shim goes away.
pub async fn run<R, W>(
    config: config::Config,
    log_target: Result<std::path::PathBuf, String>,
    input: R,
    output: W,
) -> std::io::Result<rpc::Shutdown>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (peer, out_rx) = rpc::transport::channel();
    let agent = Agent::new(config, peer.clone(), log_target);
    tokio::spawn(start_bridge(agent.clone()));
    tokio::spawn(toast_token_rejections(agent.clone()));
    if agent.config.auto_connect {
        let agent = agent.clone();
        tokio::spawn(async move {
            match agent.connector.connect(&agent.config).await {
                Ok((conn, _)) => tracing::info!(bot = %conn.info.bot.username, "auto-connected"),
                Err(e) => tracing::warn!("MATTERMOST_AUTO_CONNECT failed: {e}"),
            }
        });
    }
    let server = server::Server::new(agent.clone());
    let module = server.rpc_module();
    let sink: Arc<dyn rpc::NotificationSink> = server;
    let reason = rpc::serve(input, output, module, peer, out_rx, sink).await;
    agent.connector.disconnect().await;
    reason
}

/// Whoever sits at the TUI learns at once when Mattermost refuses the token
/// (the link has stopped): status says it too, but nobody may ask.
async fn toast_token_rejections(agent: Arc<Agent>) {
    let mut connections = agent.connector.connections();
    'connections: loop {
        if let Some(conn) = agent.connector.current().await {
            let mut states = conn.link.subscribe();
            let rejected_at = loop {
                let state = states.borrow_and_update().clone();
                if let mattermost::ws::LinkState::TokenRejected { at_ms } = state {
                    break Some(at_ms);
                }
                tokio::select! {
                    changed = states.changed() => if changed.is_err() { break None },
                    // A new connection replaced this one: watch that instead.
                    _ = connections.changed() => continue 'connections,
                }
            };
            if let Some(at_ms) = rejected_at {
                let toast = rpc::protocol::ToastParams {
                    title: "Mattermost".into(),
                    message: mattermost::connection::token_rejected_line(at_ms),
                    variant: "error".into(),
                };
                if let Err(e) = agent
                    .peer
                    .notify(rpc::protocol::method::TUI_TOAST, &toast)
                    .await
                {
                    tracing::debug!(error = %e, "cannot show the token toast");
                }
            }
        }
        if connections.changed().await.is_err() {
            return;
        }
    }
}

/// Open the state store and run the bridge once the shim has initialized
/// the agent. Without a store the agent still serves its tools, but prompts
/// from Mattermost are not taken (they are drained so the link never
/// stalls) and the log and status say why.
async fn start_bridge(agent: Arc<Agent>) {
    let store = match app::open_store(&agent.config).await {
        Ok(store) => store,
        Err(e) => return bridge_off(agent, e.to_string()).await,
    };
    let (Some(inbound_rx), Some(events_rx)) = (agent.take_inbound(), agent.take_events()) else {
        agent.set_bridge(Err("the bridge is already running".into()));
        return;
    };
    let init = agent.wait_initialized().await;
    let parts = router::Parts {
        config: agent.config.clone(),
        opencode: agent.opencode.clone(),
        link: agent.connector.clone(),
        store,
        identity: app::identity::for_directory(
            logging::default_log_dir().as_deref(),
            &init.directory,
        ),
        directory: init.directory,
        clock: Arc::new(app::SystemClock),
    };
    match router::Router::build(parts).await {
        Ok(router) => {
            agent.set_bridge(Ok(router.clone()));
            router.run(inbound_rx, events_rx).await;
        }
        Err(e) => {
            let why = format!("the state database cannot be used: {e}");
            tracing::error!("the bridge stopped: {why}");
            agent.set_bridge(Err(why));
            drain(Some(inbound_rx), Some(events_rx)).await;
        }
    }
}

async fn bridge_off(agent: Arc<Agent>, why: String) {
    tracing::error!("prompts from Mattermost are off: {why}");
    agent.set_bridge(Err(why));
    drain(agent.take_inbound(), agent.take_events()).await;
}

/// With no bridge, inbound posts and OpenCode events are read and dropped:
/// the link never stalls and nothing piles up in memory.
async fn drain(
    inbound: Option<tokio::sync::mpsc::Receiver<mattermost::ws::Inbound>>,
    events: Option<tokio::sync::mpsc::Receiver<opencode::events::Event>>,
) {
    let posts = async {
        if let Some(mut inbound) = inbound {
            while inbound.recv().await.is_some() {}
        }
    };
    let events = async {
        if let Some(mut events) = events {
            while events.recv().await.is_some() {}
        }
    };
    tokio::join!(posts, events);
}
