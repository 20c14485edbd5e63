//! The `opencode-mattermost` binary.
//!
//! Without arguments it serves the shim over stdio: stdout carries protocol
//! frames only. The subcommands ([`cli`]) are for people and scripts.

use std::io::Write;

use anyhow::{Context, bail};
use clap::Parser;
use opencode_mattermost::cli::{self, Command, ToolsCommand};
use opencode_mattermost::{config::Config, logging, tools::export};

fn main() -> anyhow::Result<()> {
    // stdout is locked only for a subcommand: in serve mode the protocol
    // writer owns it, from another thread.
    match cli::Cli::parse().command {
        None => serve(),
        Some(Command::Tools(tools)) => tools_command(tools, &mut std::io::stdout().lock()),
        Some(command) => cli::execute(command, &mut std::io::stdout().lock()),
    }
}

/// `tools export|check`: the tool contract (the `tools` module sits beside
/// `cli` in the layers, so the binary joins them).
fn tools_command(command: ToolsCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        ToolsCommand::Export { dir } => {
            let written =
                export::write(&dir).with_context(|| format!("writing {}", dir.display()))?;
            writeln!(
                out,
                "wrote {} tool files to {}",
                written.len(),
                dir.display()
            )?;
        }
        ToolsCommand::Check { dir } => {
            let problems =
                export::check(&dir).with_context(|| format!("reading {}", dir.display()))?;
            if !problems.is_empty() {
                bail!(
                    "{} is out of date: {}; run `opencode-mattermost tools export {}`",
                    dir.display(),
                    problems.join(", "),
                    dir.display()
                );
            }
            writeln!(out, "{} is up to date", dir.display())?;
        }
    }
    Ok(())
}

fn serve() -> anyhow::Result<()> {
    let config = Config::load();
    let (_guard, log_target) = logging::init(&config);
    if let Err(e) = &log_target {
        tracing::warn!("no log file: {e}");
    }
    for p in &config.problems {
        tracing::warn!(key = %p.key, "configuration problem: {}", p.message);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let reason = runtime.block_on(async {
        let stdin = tokio::io::BufReader::new(tokio::io::stdin());
        opencode_mattermost::run(config, log_target, stdin, tokio::io::stdout()).await
    })?;
    tracing::info!(?reason, "agent stopped");
    // Don't wait for blocked stdin reads still parked in the runtime.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    Ok(())
}
