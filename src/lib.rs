//! opencode-mattermost: the Rust agent behind the OpenCode plugin shim.
//!
//! The shim (`opencode-plugin/`) spawns this process and speaks JSON-RPC 2.0
//! over its stdin/stdout ([`rpc`]). The agent serves the tool catalog
//! ([`tools`]), reaches OpenCode's API through the shim ([`opencode`]) and is
//! configured from the environment and an optional file ([`config`]).

pub mod agent;
pub mod config;
pub mod logging;
pub mod mattermost;
pub mod opencode;
pub mod rpc;
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
    let module = agent.rpc_module();
    let sink: Arc<dyn rpc::NotificationSink> = agent;
    rpc::serve(input, output, module, peer, out_rx, sink).await
}
