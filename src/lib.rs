//! opencode-mattermost: the Rust agent behind the OpenCode plugin shim.
//!
//! The shim (`opencode-plugin/`) spawns this process and speaks JSON-RPC 2.0
//! over its stdin/stdout ([`rpc`]). The agent serves the tool catalog
//! ([`tools`]), reaches OpenCode's API through the shim ([`opencode`]) and is
//! configured from the environment and an optional file ([`config`]). What must
//! survive restarts and be shared with other agents lives in [`store`].

pub mod agent;
pub mod config;
pub mod logging;
pub mod mattermost;
pub mod opencode;
pub mod render;
pub mod rpc;
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
    if let Some(inbound) = agent.take_inbound() {
        tokio::spawn(log_inbound(inbound));
    }
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

/// Consume inbound Mattermost events so the link never stalls. Routing them
/// to OpenCode sessions is the bridge's job; until it exists they are logged.
async fn log_inbound(mut inbound: tokio::sync::mpsc::Receiver<mattermost::ws::Inbound>) {
    use mattermost::ws::Inbound;
    while let Some(event) = inbound.recv().await {
        // Ids only: message text stays out of the log.
        let (kind, id) = match &event {
            Inbound::Posted { post, .. } => ("posted", post.id.as_str()),
            Inbound::PostEdited(p) => ("post_edited", p.id.as_str()),
            Inbound::PostDeleted(p) => ("post_deleted", p.id.as_str()),
            Inbound::ReactionAdded(r) => ("reaction_added", r.post_id.as_str()),
            Inbound::ReactionRemoved(r) => ("reaction_removed", r.post_id.as_str()),
        };
        tracing::debug!(kind, id, "inbound Mattermost event (no bridge yet)");
    }
}
