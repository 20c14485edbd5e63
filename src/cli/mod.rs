//! The command line for people and scripts. With no subcommand the binary
//! serves the OpenCode plugin shim over stdio (the shim launches it that
//! way, so that must stay the default); every subcommand here is a thin
//! caller of one operation and writes its answer to the writer it is given,
//! never to stdout directly, so tests read exactly what a person sees.

pub mod doctor;
mod import;
mod list;
pub mod send;
mod setup;

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::config::Config;

pub use import::{ImportOptions, ImportReport, Outcome};
pub use setup::{Scope, SetupArgs};

/// Drive OpenCode sessions from Mattermost.
///
/// Without a subcommand: serve the OpenCode plugin shim over stdin/stdout
/// (JSON-RPC 2.0). The shim starts it so; people use the subcommands.
#[derive(Debug, Parser)]
#[command(name = "opencode-mattermost", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write or check the tool contract (one JSON file per tool).
    #[command(subcommand)]
    Tools(ToolsCommand),
    /// Copy the old plugin's state (thread mappings, schedules) into the
    /// configured store. Safe to run again: entries already there are kept
    /// as they are.
    Import {
        /// The old plugin's state directory, e.g. ~/.config/opencode.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The project directory for schedules whose session has no thread
        /// mapping to take it from.
        #[arg(long, value_name = "DIR")]
        directory: Option<PathBuf>,
    },
    /// List the thread bindings the store holds: which Mattermost thread
    /// answers to which OpenCode session, on which instance.
    Sessions {
        /// One JSON array, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// List the schedules the store holds, with their next run.
    Schedules {
        /// One JSON array, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Check the setup: config file, server, TLS, token, bot, team, owner,
    /// DM, WebSocket, OpenCode, plugin registration, state database and
    /// clock. One line per check, with the fix for each failure; the exit
    /// code is 0 only when none failed. Needs no OpenCode.
    Doctor {
        /// The OpenCode executable to check (default: `opencode` on PATH).
        #[arg(long, value_name = "PATH")]
        opencode: Option<PathBuf>,
        /// The project whose opencode.json may register the plugin
        /// (default: the working directory).
        #[arg(long, value_name = "DIR")]
        project: Option<PathBuf>,
    },
    /// Post as the bot, from a script or CI: to a person's DM (`@user`), a
    /// channel of the bot's team (`~channel`), or a thread (a post's
    /// permalink). Prints the new post's permalink.
    ///
    /// Examples: `send --to @alice "deploy done"`,
    /// `make test 2>&1 | tail -50 | send --to ~ci`,
    /// `send --to https://chat.example.com/eng/pl/<post id> --file report.pdf`.
    Send {
        /// @user, ~channel, or a post's permalink (https://host/team/pl/<post id>).
        #[arg(long, value_name = "TARGET")]
        to: String,
        /// A file to attach (uploaded first; a progress bar shows on a
        /// terminal for large ones).
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// The team of a ~channel, when the bot is in several (default: the
        /// default channel's team, else the bot's only team).
        #[arg(long, value_name = "NAME")]
        team: Option<String>,
        /// The message; `-`, or none with stdin not a terminal, reads it
        /// from stdin.
        #[arg(value_name = "TEXT")]
        text: Option<String>,
    },
    Setup(SetupArgs),
}

#[derive(Debug, Subcommand)]
pub enum ToolsCommand {
    /// Write the tool contract into DIR.
    Export {
        #[arg(default_value = "tools", value_name = "DIR")]
        dir: PathBuf,
    },
    /// Fail when DIR does not match the tool catalog.
    Check {
        #[arg(default_value = "tools", value_name = "DIR")]
        dir: PathBuf,
    },
}

/// Run one subcommand (other than `tools`), writing its answer to `out`.
pub fn execute(command: Command, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        // The tool contract belongs to `tools`, beside this module in the
        // layers; the binary runs it (`main.rs`).
        Command::Tools(_) => bail!("`tools` runs from the binary's main"),
        Command::Import { from, directory } => {
            let directory = directory
                .map(|d| std::path::absolute(&d).with_context(|| format!("{}", d.display())))
                .transpose()?;
            let config = loaded()?;
            let options = ImportOptions {
                from,
                directory,
                state_dir: crate::logging::default_log_dir(),
                now: chrono::Utc::now(),
                min_interval: config.schedule_min_interval,
            };
            let report = block_on(async {
                let store = open(&config).await?;
                anyhow::Ok(import::run(&*store, &options).await?)
            })?;
            write!(out, "{}", report.render())?;
        }
        Command::Sessions { json } => {
            let config = loaded()?;
            let text = block_on(async {
                let store = open(&config).await?;
                anyhow::Ok(list::sessions(&*store, &config, chrono::Utc::now(), json).await?)
            })?;
            write!(out, "{text}")?;
        }
        Command::Schedules { json } => {
            let config = loaded()?;
            let text = block_on(async {
                let store = open(&config).await?;
                anyhow::Ok(list::schedules(&*store, chrono::Utc::now(), json).await?)
            })?;
            write!(out, "{text}")?;
        }
        Command::Doctor { opencode, project } => {
            let config = Config::load();
            let options = doctor::Options { opencode, project };
            let checks = block_on(async { Ok(doctor::run(&config, &options).await) })?;
            write!(out, "{}", doctor::render(&checks))?;
            let failed = doctor::failures(&checks);
            if failed > 0 {
                out.flush()?;
                bail!("{failed} of {} checks failed", checks.len());
            }
        }
        Command::Send {
            to,
            file,
            team,
            text,
        } => {
            let config = Config::load();
            let options = send::SendOptions {
                to,
                file,
                team,
                text,
            };
            let message = send::message(options.text.clone())?;
            let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let link = block_on(send::run(&config, &options, &message, progress))?;
            writeln!(out, "{link}")?;
        }
        Command::Setup(args) => setup::run(args, out)?,
    }
    Ok(())
}

/// The configuration, refusing to touch a store the settings only half
/// name (a bad database URL would otherwise fall back to the default file).
fn loaded() -> anyhow::Result<Config> {
    let config = Config::load();
    if let Some(p) = config.problems.iter().find(|p| {
        p.key == "OPENCODE_MM_DATABASE_URL"
            || p.key == "OPENCODE_MM_STATE_DB"
            || p.key.starts_with("OPENCODE_MM_DATABASE_")
    }) {
        bail!("{}: {}", p.key, p.message);
    }
    Ok(config)
}

/// The configured store. Its error alone: the chain would repeat it.
async fn open(config: &Config) -> anyhow::Result<std::sync::Arc<dyn crate::store::Store>> {
    crate::app::open_store(config)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Control characters (a store, a server or a file may hold anything)
/// shown escaped, so that what a command prints stays one line per item.
fn one_line(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// A small runtime for one command; the store's calls are async.
fn block_on<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(work)
}

#[cfg(test)]
mod tests;
