//! opencode-mattermost: the Rust agent behind the OpenCode plugin shim.
//!
//! The shim (`opencode-plugin/`) spawns this process and speaks JSON-RPC 2.0
//! over its stdin/stdout ([`rpc`]). The agent serves the tool catalog
//! ([`tools`]), reaches OpenCode's API through the shim ([`opencode`]) and is
//! configured from the environment and an optional file ([`config`]). What must
//! survive restarts and be shared with other agents lives in [`store`].

pub mod access;
pub mod agent;
pub mod asks;
pub mod bridge;
pub(crate) mod commands;
pub mod config;
pub mod files;
pub mod logging;
pub mod mattermost;
pub(crate) mod monitor;
pub mod opencode;
pub mod render;
pub mod rpc;
pub mod scheduler;
pub mod store;
pub mod tools;

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
    if agent.config.auto_connect {
        let agent = agent.clone();
        tokio::spawn(async move {
            match agent.connector.connect(&agent.config).await {
                Ok((conn, _)) => tracing::info!(bot = %conn.info.bot.username, "auto-connected"),
                Err(e) => tracing::warn!("MATTERMOST_AUTO_CONNECT failed: {e}"),
            }
        });
    }
    let module = agent.rpc_module();
    let sink: Arc<dyn rpc::NotificationSink> = agent.clone();
    let reason = rpc::serve(input, output, module, peer, out_rx, sink).await;
    agent.connector.disconnect().await;
    reason
}

/// Open the state store and run the bridge. Without a store the agent still
/// serves its tools, but prompts from Mattermost are not taken (they are
/// drained so the link never stalls) and the log and status say why.
async fn start_bridge(agent: Arc<Agent>) {
    let config = agent.config.clone();
    let opened = tokio::task::spawn_blocking(move || bridge::open_store(&config)).await;
    let store = match opened {
        Ok(Ok(store)) => store,
        Ok(Err(e)) => {
            tracing::error!("prompts from Mattermost are off: {e}");
            agent.set_bridge(Err(e.to_string()));
            return drain_inbound(agent).await;
        }
        Err(e) => {
            tracing::error!("prompts from Mattermost are off: opening the store failed: {e}");
            agent.set_bridge(Err(format!("opening the store failed: {e}")));
            return drain_inbound(agent).await;
        }
    };
    if let Err(e) = bridge::run(agent.clone(), store).await {
        tracing::error!("the bridge stopped: {e}");
        agent.set_bridge(Err(e.to_string()));
    }
}

async fn drain_inbound(agent: Arc<Agent>) {
    if let Some(mut inbound) = agent.take_inbound() {
        while inbound.recv().await.is_some() {}
    }
}
