//! What `cli_doctor` and `cli_send` share: a simulator seeded with a bot,
//! its owner and a team, a private HOME holding the agent's config file,
//! and the real binary run in a clean environment against them.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use mattermost_sim::{Account, Simulator, Team};

pub struct World {
    pub sim: Simulator,
    pub bot: Account,
    pub alice: Account,
    pub team: Team,
    pub home: tempfile::TempDir,
}

impl World {
    /// A bot in a team with its owner, alice, and a config file naming them.
    pub async fn new() -> World {
        let sim = Simulator::start().await.unwrap();
        let bot = sim.create_bot("opencode").unwrap();
        let alice = sim.create_user("alice").unwrap();
        let team = sim.create_team("eng", "Engineering");
        sim.add_to_team(&team.id, &bot.id).unwrap();
        sim.add_to_team(&team.id, &alice.id).unwrap();
        let home = tempfile::tempdir().unwrap();
        let world = World {
            sim,
            bot,
            alice,
            team,
            home,
        };
        world.write_config(&world.config_text(&world.bot.token, &world.alice.id), 0o600);
        world
    }

    pub fn config_text(&self, token: &str, owner: &str) -> String {
        format!(
            "mattermost_url = \"{}\"\nmattermost_token = \"{token}\"\nmattermost_owner_user_id = \"{owner}\"\n",
            self.sim.base_url()
        )
    }

    /// Where the agent looks for its config file under this HOME.
    pub fn config_path(&self) -> PathBuf {
        self.home
            .path()
            .join("config/opencode-mattermost/config.toml")
    }

    /// Writes the config file, created with `mode` (never widened later).
    pub fn write_config(&self, text: &str, mode: u32) {
        let path = self.config_path();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(&path);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    /// Runs the binary with only this HOME and `env`; `stdin` is piped
    /// when given, else the null device.
    pub async fn run(&self, env: &[(&str, &str)], args: &[&str], stdin: Option<&[u8]>) -> Output {
        run_in(self.home.path(), env, args, stdin).await
    }
}

pub async fn run_in(
    home: &Path,
    env: &[(&str, &str)],
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Output {
    let mut cmd = clean(env!("CARGO_BIN_EXE_opencode-mattermost"), home);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut pipe, bytes)
            .await
            .unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    echo(&args.join(" "), &out);
    out
}

/// Prints a run as a person would see it in a terminal (kept with
/// `--nocapture`, read when a test fails).
#[allow(clippy::print_stdout)]
pub fn echo(arguments: &str, out: &Output) {
    println!(
        "$ opencode-mattermost {arguments}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Another program (on `PATH`) in the same clean environment.
pub async fn run_with(program: &str, home: &Path, args: &[&str]) -> Output {
    let mut cmd = clean(program, home);
    cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TERM", "xterm")
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd.output().await.unwrap()
}

/// `program` with only a private HOME and its XDG folders.
fn clean(program: &str, home: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.env_clear()
        .env("HOME", home)
        .env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .current_dir(home);
    cmd
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}
