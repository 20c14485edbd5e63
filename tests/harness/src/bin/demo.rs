//! `scripts/demo.sh`: the whole loop on one machine. A Mattermost simulator,
//! real OpenCode with the plugin, and a model (scripted, or the user's own
//! with `--own-model`). Lines typed here are posted as the user `alice` in
//! her DM with the bot; the bot's reply streams back to the terminal.

// A terminal program: printing is its output.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use harness::model::{ScriptedModel, Step};
use harness::opencode::{OpenCode, Options};
use mattermost_sim::Simulator;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

const HELP: &str = "Type a message and press Enter: it is posted as @alice in her DM with the bot.
The first message starts a session (a new thread); later ones continue it.
  /new     start a new session with the next message
  /quit    stop (Ctrl-D works too)";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let own_model = std::env::args().any(|a| a == "--own-model");
    let agent_bin = std::env::var("OPENCODE_MATTERMOST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| harness::repo_root().join("target/debug/opencode-mattermost"));
    anyhow::ensure!(
        agent_bin.exists(),
        "{} is missing: run `cargo build` first",
        agent_bin.display()
    );

    let sim = Simulator::start().await?;
    let bot = sim.create_bot("opencode-bot")?;
    let alice = sim.create_user("alice")?;
    let team = sim.create_team("demo", "Demo");
    sim.add_to_team(&team.id, &bot.id)?;
    sim.add_to_team(&team.id, &alice.id)?;
    let dm = sim.direct_channel(&bot.id, &alice.id)?.id;
    println!("Mattermost simulator at {}", sim.base_url());

    let model = ScriptedModel::start().await?;
    model.on(
        "",
        vec![
            Step::text_then_tool(
                "Let me look at the project first.",
                "bash",
                json!({"command": "ls -la && echo && uname -a", "description": "Look around"}),
            ),
            Step::slow(
                "I listed the project directory and checked the machine.\n\n\
                 This reply comes from the **scripted model**, streamed a few words at a \
                 time, so you can watch the post grow in Mattermost (here: the terminal).\n\n\
                 ```text\nEverything you see went: your line -> simulator -> agent -> OpenCode\n\
                 -> model -> OpenCode events -> agent -> post edits -> here.\n```\n\n\
                 Reply again to continue this session, or type /new for a new one.",
                6,
                Duration::from_millis(40),
            ),
        ],
    );
    let env = vec![
        ("MATTERMOST_URL".to_owned(), sim.base_url()),
        ("MATTERMOST_TOKEN".to_owned(), bot.token.clone()),
        ("MATTERMOST_OWNER_USER_ID".to_owned(), alice.id.clone()),
        ("MATTERMOST_AUTO_CONNECT".to_owned(), "true".to_owned()),
    ];
    let oc = if own_model {
        println!("Using your own OpenCode configuration and model.");
        OpenCode::serve_own_config(&agent_bin, env).await?
    } else {
        OpenCode::serve(Options {
            model: &model,
            agent_bin: agent_bin.clone(),
            env,
        })
        .await?
    };
    oc.get("/session")
        .await
        .context("waking OpenCode's project")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !sim
        .connections()
        .iter()
        .any(|c| c.user_id == bot.id && c.active)
    {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the agent did not connect within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "OpenCode is up in {} and the bot is connected.\n\n{HELP}\n",
        oc.project.display()
    );

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut thread: Option<String> = None;
    loop {
        print_prompt();
        let Some(line) = lines.next_line().await? else {
            break;
        };
        let line = line.trim().to_owned();
        match line.as_str() {
            "" => continue,
            "/quit" => break,
            "/new" => {
                thread = None;
                println!("(next message starts a new session)");
                continue;
            }
            _ => {}
        }
        let post = sim.post_as(&alice.id, &dm, &line, thread.as_deref())?;
        let root = match &thread {
            Some(root) => root.clone(),
            None => {
                let card = wait_for(Duration::from_secs(60), || {
                    sim.posts().into_iter().find(|p| {
                        p.user_id == bot.id
                            && p.root_id.is_empty()
                            && p.original_id.is_empty()
                            && p.create_at >= post.create_at
                    })
                })
                .await
                .context("no session card")?;
                println!("\n{}\n", card.message);
                thread = Some(card.id.clone());
                card.id
            }
        };
        stream_reply(&sim, &bot.id, &root, post.create_at).await;
    }
    oc.stop().await;
    Ok(())
}

fn print_prompt() {
    use std::io::Write;
    print!("alice> ");
    let _ = std::io::stdout().flush();
}

async fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Print the reply as it grows: new body text as it arrives, then the footer.
async fn stream_reply(sim: &Simulator, bot_id: &str, root: &str, since: i64) {
    let mut printed = String::new();
    let mut last_status = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while tokio::time::Instant::now() < deadline {
        let posts: Vec<_> = sim
            .posts()
            .into_iter()
            .filter(|p| {
                p.user_id == bot_id
                    && p.root_id == root
                    && p.original_id.is_empty()
                    && p.create_at >= since
                    && !p.message.starts_with(":rocket:")
            })
            .collect();
        let mut body = String::new();
        let mut meta = String::new();
        for (i, p) in posts.iter().enumerate() {
            let text = p.message.trim_end_matches("\n\n_(continued below)_");
            if i + 1 == posts.len() {
                match text.rsplit_once("\n\n---\n") {
                    Some((b, m)) => {
                        body.push_str(b);
                        meta = m.to_owned();
                    }
                    None => meta = text.to_owned(),
                }
            } else {
                body.push_str(text);
            }
        }
        if body.starts_with(printed.as_str()) && body.len() > printed.len() {
            print!("{}", &body[printed.len()..]);
            use std::io::Write;
            let _ = std::io::stdout().flush();
            printed = body;
        }
        let status = meta.lines().next().unwrap_or_default().to_owned();
        let done = ["✅ Done", "❌ Failed", "🛑 Stopped"]
            .iter()
            .any(|m| status.starts_with(m));
        if done {
            println!("\n\n{meta}\n");
            return;
        }
        if status != last_status && !status.is_empty() && printed.is_empty() {
            println!("[{status}]");
            last_status = status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
