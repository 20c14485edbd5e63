//! The `opencode-mattermost` binary.
//!
//! Without arguments it serves the shim over stdio: stdout carries protocol
//! frames only. The `tools` subcommands write or check the tool contract.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use opencode_mattermost::{config::Config, logging, tools::export};

const USAGE: &str =
    "usage: opencode-mattermost [--version | tools export [DIR] | tools check [DIR]]
  (no arguments)     serve the OpenCode plugin shim over stdin/stdout (JSON-RPC 2.0)
  tools export DIR   write the tool contract, one JSON file per tool (default: tools)
  tools check DIR    fail when DIR does not match the catalog
  --version          print the version";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] => serve(),
        ["--version" | "-V"] => say(&format!(
            "opencode-mattermost {}",
            env!("CARGO_PKG_VERSION")
        )),
        ["--help" | "-h"] => say(USAGE),
        ["tools", "export", rest @ ..] => {
            let dir = dir_arg(rest)?;
            let written =
                export::write(&dir).with_context(|| format!("writing {}", dir.display()))?;
            say(&format!(
                "wrote {} tool files to {}",
                written.len(),
                dir.display()
            ))
        }
        ["tools", "check", rest @ ..] => {
            let dir = dir_arg(rest)?;
            let problems =
                export::check(&dir).with_context(|| format!("reading {}", dir.display()))?;
            if problems.is_empty() {
                say(&format!("{} is up to date", dir.display()))
            } else {
                bail!(
                    "{} is out of date: {}; run `opencode-mattermost tools export {}`",
                    dir.display(),
                    problems.join(", "),
                    dir.display()
                )
            }
        }
        _ => bail!("unknown arguments `{}`\n{USAGE}", args.join(" ")),
    }
}

fn dir_arg(rest: &[&str]) -> anyhow::Result<PathBuf> {
    match rest {
        [] => Ok(PathBuf::from("tools")),
        [dir] => Ok(PathBuf::from(dir)),
        _ => bail!("expected at most one directory\n{USAGE}"),
    }
}

/// CLI output for the subcommands; never used in serve mode, where stdout
/// belongs to the protocol writer.
fn say(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
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
