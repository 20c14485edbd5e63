//! `mattermost-sim`: runs the simulator as a standalone server for demos and
//! for the Node conformance tests, seeding a bot, a user, a team, a channel
//! and their DM, and printing their ids and tokens as one JSON line.

// The JSON line on stdout is this binary's interface to scripts.
#![allow(clippy::print_stdout)]
// Usage errors go to stderr before exiting.
#![allow(clippy::print_stderr)]

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use mattermost_sim::{ChannelType, SimConfig, Simulator};
use serde_json::json;

const USAGE: &str = "usage: mattermost-sim [--host 127.0.0.1] [--port 8065 (0 = any free port)]
  [--bot bot] [--user alice] [--team team] [--channel town-square] [--no-seed]
  [--ws-ping-secs 60] [--resume-buffer 128] [--max-file-size BYTES]
  [--auth-timeout-secs 5]";

struct Args {
    host: IpAddr,
    port: u16,
    bot: String,
    user: String,
    team: String,
    channel: String,
    seed: bool,
    config: SimConfig,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        host: IpAddr::from([127, 0, 0, 1]),
        port: 8065,
        bot: "bot".into(),
        user: "alice".into(),
        team: "team".into(),
        channel: "town-square".into(),
        seed: true,
        config: SimConfig::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--no-seed" {
            args.seed = false;
            continue;
        }
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |_| format!("bad value for {flag}: {value}");
        match flag.as_str() {
            "--host" => args.host = value.parse().map_err(|_| format!("bad host {value}"))?,
            "--port" => args.port = value.parse().map_err(bad)?,
            "--bot" => args.bot = value,
            "--user" => args.user = value,
            "--team" => args.team = value,
            "--channel" => args.channel = value,
            "--ws-ping-secs" => {
                args.config.ws_ping_interval = Duration::from_secs(value.parse().map_err(bad)?)
            }
            "--auth-timeout-secs" => {
                args.config.ws_auth_timeout = Duration::from_secs(value.parse().map_err(bad)?)
            }
            "--resume-buffer" => args.config.ws_resume_buffer = value.parse().map_err(bad)?,
            "--max-file-size" => args.config.max_file_size = value.parse().map_err(bad)?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("{msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let sim =
        match Simulator::bind(SocketAddr::new(args.host, args.port), args.config.clone()).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("mattermost-sim: {e}");
                return ExitCode::FAILURE;
            }
        };
    let mut line = json!({
        "url": sim.base_url(),
        "api_url": sim.api_url(),
        "ws_url": sim.ws_url(),
    });
    if args.seed {
        match seed(&sim, &args) {
            Ok(v) => {
                if let (Some(obj), Some(extra)) = (line.as_object_mut(), v.as_object()) {
                    obj.extend(extra.clone());
                }
            }
            Err(e) => {
                eprintln!("mattermost-sim: seeding failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{line}");
    wait_for_signal().await;
    sim.shutdown().await;
    ExitCode::SUCCESS
}

fn seed(sim: &Simulator, args: &Args) -> Result<serde_json::Value, mattermost_sim::SimError> {
    let bot = sim.create_bot(&args.bot)?;
    let user = sim.create_user(&args.user)?;
    let team = sim.create_team(&args.team, &args.team);
    sim.add_to_team(&team.id, &bot.id)?;
    sim.add_to_team(&team.id, &user.id)?;
    let channel = sim.create_channel(&team.id, &args.channel, "Town Square", ChannelType::Open)?;
    sim.add_member(&channel.id, &bot.id)?;
    sim.add_member(&channel.id, &user.id)?;
    let dm = sim.direct_channel(&user.id, &bot.id)?;
    Ok(json!({
        "bot": bot,
        "user": user,
        "team": {"id": team.id, "name": team.name},
        "channel": {"id": channel.id, "name": channel.name},
        "dm": {"id": dm.id, "name": dm.name},
    }))
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
