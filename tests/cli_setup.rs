//! `opencode-mattermost setup` as people and scripts run it: the real
//! binary in a clean environment against the in-process simulator. With
//! flags (scripts), each bad input (a clear error, nothing written), and
//! the interactive wizard driven through a pseudo-terminal.

// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

// Only its echo of a run is used here.
#[allow(dead_code)]
mod cli_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use mattermost_sim::{Account, ChannelType, Simulator};
use opencode_mattermost::config::Config;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// A server with a bot and its owner alice in team `eng`, where the bot is
/// in channels `lobby` and `town` and not in `secret`.
struct World {
    sim: Simulator,
    bot: Account,
    alice: Account,
    lobby: String,
    town: String,
    home: tempfile::TempDir,
}

impl World {
    async fn new() -> World {
        let sim = Simulator::start().await.unwrap();
        let bot = sim.create_bot("opencode-bot").unwrap();
        let alice = sim.create_user("alice").unwrap();
        let eng = sim.create_team("eng", "Engineering");
        for u in [&bot.id, &alice.id] {
            sim.add_to_team(&eng.id, u).unwrap();
        }
        let channel = |name: &str, kind, with_bot: bool| {
            let c = sim.create_channel(&eng.id, name, name, kind).unwrap();
            sim.add_member(&c.id, &alice.id).unwrap();
            if with_bot {
                sim.add_member(&c.id, &bot.id).unwrap();
            }
            c.id
        };
        let lobby = channel("lobby", ChannelType::Open, true);
        let town = channel("town", ChannelType::Private, true);
        channel("secret", ChannelType::Open, false);
        let home = tempfile::Builder::new()
            .prefix("ocmm-setup-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(home.path().join("project")).unwrap();
        World {
            sim,
            bot,
            alice,
            lobby,
            town,
            home,
        }
    }

    fn project(&self) -> PathBuf {
        self.home.path().join("project")
    }

    fn config_path(&self) -> PathBuf {
        self.home
            .path()
            .join("config/opencode-mattermost/config.toml")
    }

    fn global_opencode(&self) -> PathBuf {
        self.home.path().join("config/opencode/opencode.json")
    }

    /// The variables of a clean login: a private HOME and XDG config dir.
    fn env(&self) -> Vec<(String, String)> {
        let home = self.home.path();
        vec![
            ("HOME".into(), home.display().to_string()),
            (
                "XDG_CONFIG_HOME".into(),
                home.join("config").display().to_string(),
            ),
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        ]
    }

    /// Run `setup` with `args`, `extra` variables and `stdin`.
    async fn setup(&self, args: &[&str], extra: &[(&str, &str)], stdin: &str) -> Output {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_opencode-mattermost"));
        cmd.env_clear()
            .envs(self.env())
            .envs(extra.iter().copied())
            .current_dir(self.project())
            .arg("setup")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).await.unwrap();
        drop(input);
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("setup finishes")
            .unwrap();
        cli_support::echo(&format!("setup {}", args.join(" ")), &out);
        out
    }

    /// The config file as the agent reads it (with an empty environment).
    fn config(&self) -> Config {
        let path = self.config_path();
        let text = std::fs::read_to_string(&path).unwrap();
        Config::from_sources(&|_| None, Some(Ok((path, text))))
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn plugins(path: &Path) -> Vec<String> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    serde_json::from_value(v["plugin"].clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_write_a_private_config_and_register_the_plugin_once() {
    let w = World::new().await;
    let url = w.sim.base_url();
    let args = [
        "--url",
        &url,
        "--owner",
        "@alice",
        "--team",
        "eng",
        "--channel",
        "~lobby",
        "--scope",
        "global",
        "--yes",
    ];
    // The token from the environment, as a script would pass it.
    let out = w
        .setup(&args, &[("MATTERMOST_TOKEN", &w.bot.token)], "")
        .await;
    let text = stdout(&out);
    assert!(
        text.contains("signed in as @opencode-bot"),
        "the live check names the bot: {text}"
    );
    assert!(text.contains(&format!("Owner: @alice ({})", w.alice.id)));
    assert!(text.contains("Team: Engineering (eng)"));
    assert!(text.contains("Default channel: ~lobby"));
    let all = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains(&w.bot.token), "the token is never shown");

    // The config file: private from the start, read back by the agent's
    // own loader without a single problem.
    assert_eq!(mode(&w.config_path()), 0o600);
    assert_eq!(mode(w.config_path().parent().unwrap()), 0o700);
    let config = w.config();
    assert!(config.problems.is_empty(), "{:?}", config.problems);
    assert_eq!(
        config.site_url.as_ref().unwrap().as_str(),
        format!("{url}/")
    );
    assert_eq!(config.token.as_ref().unwrap().expose(), w.bot.token);
    assert_eq!(config.owner_user_id.as_deref(), Some(w.alice.id.as_str()));
    assert_eq!(config.bot_username.as_deref(), Some("opencode-bot"));
    assert_eq!(config.default_channel_id.as_deref(), Some(w.lobby.as_str()));
    assert!(config.auto_connect);
    assert_eq!(plugins(&w.global_opencode()), ["opencode-mattermost"]);

    // Again, after the person added a setting of their own and loosened the
    // file: their setting stays, the file is private again, and the plugin
    // is not named twice.
    let mut own = std::fs::read_to_string(w.config_path()).unwrap();
    own.push_str("opencode_mm_command_prefix = \"?\"\n");
    std::fs::write(w.config_path(), own).unwrap();
    std::fs::set_permissions(w.config_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let global_before = std::fs::read(w.global_opencode()).unwrap();
    let args = [
        "--url",
        &url,
        "--owner",
        "alice",
        "--channel",
        "town",
        "--scope",
        "global",
        "--yes",
        "--token",
        "-",
    ];
    let out = w.setup(&args, &[], &format!("{}\n", w.bot.token)).await;
    let text = stdout(&out);
    assert!(text.contains("Plugin already registered in"), "{text}");
    assert_eq!(std::fs::read(w.global_opencode()).unwrap(), global_before);
    assert_eq!(mode(&w.config_path()), 0o600);
    let config = w.config();
    assert!(config.problems.is_empty(), "{:?}", config.problems);
    assert_eq!(config.command_prefix, "?");
    assert_eq!(config.default_channel_id.as_deref(), Some(w.town.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_registration_keeps_the_jsonc_file_as_the_person_wrote_it() {
    let w = World::new().await;
    let url = w.sim.base_url();
    let jsonc = w.project().join("opencode.jsonc");
    let original = "{\n  // the team's model\n  \"model\": \"a/b\",\n  \"plugin\": [\n    \"other-plugin\", // keep\n  ],\n}\n";
    std::fs::write(&jsonc, original).unwrap();
    std::fs::set_permissions(&jsonc, std::fs::Permissions::from_mode(0o640)).unwrap();
    let args = [
        "--url", &url, "--owner", "alice", "--scope", "project", "--yes", "--token", "-",
    ];
    let out = w.setup(&args, &[], &format!("{}\n", w.bot.token)).await;
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "Registered \"opencode-mattermost\" in {}",
            jsonc.display()
        )),
        "{text}"
    );
    let edited = std::fs::read_to_string(&jsonc).unwrap();
    assert_eq!(
        edited,
        original.replace(
            "\"other-plugin\", // keep",
            "\"other-plugin\", \"opencode-mattermost\" // keep"
        )
    );
    assert_eq!(mode(&jsonc), 0o640, "the file keeps its mode");
    assert!(!w.global_opencode().exists(), "nothing global");
    assert!(!w.project().join("opencode.json").exists());
    // No team or channel flag with --yes: no default channel.
    assert_eq!(w.config().default_channel_id, None);

    let out = w.setup(&args, &[], &format!("{}\n", w.bot.token)).await;
    assert!(stdout(&out).contains("Plugin already registered in"));
    assert_eq!(std::fs::read_to_string(&jsonc).unwrap(), edited);
}

/// One failing run: the error says `expect`, and nothing was written.
async fn refused(w: &World, args: &[&str], env: &[(&str, &str)], stdin: &str, expect: &str) {
    let out = w.setup(args, env, stdin).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(err.contains(expect), "{args:?}: want {expect:?} in {err}");
    assert!(!err.contains(&w.bot.token), "the token is never shown");
    assert!(!w.config_path().exists(), "{args:?} wrote the config");
    assert!(!w.global_opencode().exists(), "{args:?} registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_input_is_a_clear_error_and_writes_nothing() {
    let w = World::new().await;
    let url = w.sim.base_url();
    let token = [("MATTERMOST_TOKEN", w.bot.token.as_str())];
    let ok = |extra: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> = ["--url", &url, "--owner", "alice", "--yes"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = async |args: Vec<String>, env: &[(&str, &str)], stdin: &str, expect: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&w, &args, env, stdin, expect).await;
    };

    // The URL: malformed, another scheme, nobody listening, not Mattermost.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for (bad, expect) in [
        ("not a url", "not a valid URL"),
        ("ftp://chat.example.com", "has scheme `ftp`"),
        (
            &format!("http://127.0.0.1:{closed}"),
            "cannot reach Mattermost",
        ),
        (&format!("{url}/elsewhere"), "a Mattermost server?"),
    ] {
        let args = vec!["--url".into(), bad.to_owned(), "--yes".into()];
        run(args, &token, "", expect).await;
    }
    // The token: wrong, malformed, none at all.
    run(
        ok(&[]),
        &[("MATTERMOST_TOKEN", "wrongtoken")],
        "",
        "rejected the token",
    )
    .await;
    run(ok(&["--token", "two words"]), &[], "", "printable ASCII").await;
    run(ok(&["--token", "-"]), &[], "", "stdin held no token").await;
    run(ok(&[]), &[], "", "--token is needed with --yes").await;
    // The owner: unknown, hostile, the bot itself.
    let owner = |name: &str| {
        vec![
            "--url".to_owned(),
            url.clone(),
            "--owner".into(),
            name.into(),
            "--yes".into(),
        ]
    };
    run(owner("nobody"), &token, "", "there is no user @nobody").await;
    run(owner("../users/me"), &token, "", "is not a valid username").await;
    run(owner("opencode-bot"), &token, "", "is the bot itself").await;
    // The team: not the bot's, the owner not in it, missing among several.
    let ops = w.sim.create_team("ops", "Operations");
    run(
        ok(&["--team", "ops"]),
        &token,
        "",
        "not a member of a team `ops`",
    )
    .await;
    w.sim.add_to_team(&ops.id, &w.bot.id).unwrap();
    run(
        ok(&["--team", "Operations"]),
        &token,
        "",
        "the owner @alice is not a member of team Operations (ops)",
    )
    .await;
    run(
        ok(&["--channel", "lobby"]),
        &token,
        "",
        "--team is needed with --channel",
    )
    .await;
    // The channel: one the bot is not in, one that does not exist.
    for name in ["secret", "nowhere"] {
        let expect = format!("not a member of a channel `{name}` in team Engineering");
        run(
            ok(&["--team", "eng", "--channel", name]),
            &token,
            "",
            &expect,
        )
        .await;
    }
    // Missing answers without a terminal to ask on.
    run(vec![], &token, "", "--url is needed: there is no terminal").await;
    run(
        vec!["--yes".into()],
        &token,
        "",
        "--url is needed with --yes",
    )
    .await;

    // Files that cannot be used are left as they are.
    let global = w.global_opencode();
    std::fs::create_dir_all(global.parent().unwrap()).unwrap();
    for (bad, expect) in [
        ("{\"plugin\": [", "is not valid JSON or JSONC"),
        (
            "{\"plugin\": \"opencode-mattermost\"}",
            "not a list of strings",
        ),
    ] {
        std::fs::write(&global, bad).unwrap();
        let out = w
            .setup(
                &ok(&[]).iter().map(String::as_str).collect::<Vec<_>>(),
                &token,
                "",
            )
            .await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(expect), "{err}");
        assert_eq!(std::fs::read_to_string(&global).unwrap(), bad);
        assert!(!w.config_path().exists());
    }
    std::fs::remove_file(&global).unwrap();
    std::fs::create_dir_all(w.config_path().parent().unwrap()).unwrap();
    std::fs::write(w.config_path(), "mattermost_url = [").unwrap();
    let out = w
        .setup(
            &ok(&[]).iter().map(String::as_str).collect::<Vec<_>>(),
            &token,
            "",
        )
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("is not valid TOML"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(w.config_path()).unwrap(),
        "mattermost_url = ["
    );
}

/// The wizard through a pseudo-terminal: every question answered as a
/// person would, one answer wrong and asked again, a team the owner is
/// not in refused, an existing file confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wizard_asks_checks_and_writes_what_was_chosen() {
    let w = World::new().await;
    let ops = w.sim.create_team("ops", "Operations");
    w.sim.add_to_team(&ops.id, &w.bot.id).unwrap();
    std::fs::create_dir_all(w.config_path().parent().unwrap()).unwrap();
    std::fs::write(
        w.config_path(),
        "opencode_mm_timezone = \"Europe/Berlin\"\n",
    )
    .unwrap();
    let url = w.sim.base_url();
    let token = w.bot.token.clone();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_opencode-mattermost"));
    cmd.env_clear()
        .envs(w.env())
        .env("TERM", "xterm")
        .current_dir(w.project())
        .arg("setup");
    let transcript =
        tokio::task::spawn_blocking(move || -> Result<String, rexpect::error::Error> {
            let mut p = rexpect::session::spawn_command(cmd, Some(30_000))?;
            let mut seen = String::new();
            let mut step = |p: &mut rexpect::session::PtySession, prompt: &str, keys: &str| {
                seen.push_str(&p.exp_string(prompt)?);
                seen.push_str(prompt);
                p.send(keys)?;
                p.flush()?;
                Ok::<(), rexpect::error::Error>(())
            };
            step(&mut p, "Mattermost server URL", &format!("{url}\r"))?;
            step(&mut p, "Bot access token", &format!("{token}\r"))?;
            step(&mut p, "Your Mattermost username", "nobody\r")?;
            step(&mut p, "there is no user @nobody", "")?;
            step(&mut p, "Your Mattermost username", "alice\r")?;
            // Teams in the server's order, eng then ops: ops first (refused).
            step(&mut p, "Team of the default channel", "j\r")?;
            step(&mut p, "is not a member of team Operations", "")?;
            step(&mut p, "Team of the default channel", "\r")?;
            // none, ~lobby, ~town: the third.
            step(&mut p, "Default channel for sessions", "jj\r")?;
            // every project, this project, nowhere: this project.
            step(&mut p, "Load the plugin in", "j\r")?;
            step(&mut p, "Replace its Mattermost settings", "y")?;
            seen.push_str(&p.exp_eof()?);
            Ok(seen)
        })
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the wizard: {e}"));
    println!("{transcript}");
    assert!(
        !transcript.contains(&w.bot.token),
        "the token is not echoed"
    );
    assert!(
        transcript.contains("Default channel: ~town"),
        "{transcript}"
    );
    assert!(transcript.contains("Next:"), "{transcript}");
    assert_eq!(mode(&w.config_path()), 0o600);
    let config = w.config();
    assert!(config.problems.is_empty(), "{:?}", config.problems);
    assert_eq!(config.owner_user_id.as_deref(), Some(w.alice.id.as_str()));
    assert_eq!(config.default_channel_id.as_deref(), Some(w.town.as_str()));
    assert_eq!(config.token.as_ref().unwrap().expose(), w.bot.token);
    assert_eq!(config.timezone.name(), "Europe/Berlin", "kept");
    assert_eq!(
        plugins(&w.project().join("opencode.json")),
        ["opencode-mattermost"]
    );
    assert!(!w.global_opencode().exists());
}
