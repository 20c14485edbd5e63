//! Launches the real, pinned `opencode-ai` package with isolated HOME and XDG
//! directories, our shim as a plugin and the scripted model as its provider.
//!
//! The npm packages are installed on first use (`npm install` in
//! `tests/opencode/` and `opencode-plugin/`), under a lock file so parallel
//! test binaries install once.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::model::ScriptedModel;
use crate::repo_root;

/// The pinned version; must match `tests/opencode/package.json`.
pub const OPENCODE_VERSION: &str = "1.18.33";

/// Run `npm install` (lockfile-guided, exact pins) in `dir` unless its `node_modules` is already there.
pub fn ensure_npm(dir: &Path) -> anyhow::Result<()> {
    let marker = dir.join("node_modules/.package-lock.json");
    if marker.exists() {
        return Ok(());
    }
    // A crude cross-process lock: the first creator installs, others wait.
    let lock = dir.join(".npm-install.lock");
    for _ in 0..600 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
        {
            Ok(_) => {
                let status = std::process::Command::new("npm")
                    .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(dir)
                    .status()
                    .with_context(|| format!("running npm install in {}", dir.display()));
                let _ = std::fs::remove_file(&lock);
                let status = status?;
                if !status.success() {
                    bail!("npm install failed in {} ({status})", dir.display());
                }
                return Ok(());
            }
            Err(_) if marker.exists() => return Ok(()),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
    bail!(
        "timed out waiting for another npm install in {}",
        dir.display()
    )
}

/// The OpenCode executable, installing the pinned package if needed.
pub fn opencode_bin() -> anyhow::Result<PathBuf> {
    if let Ok(bin) = std::env::var("OPENCODE_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let root = repo_root();
    ensure_npm(&root.join("tests/opencode"))?;
    ensure_npm(&root.join("opencode-plugin"))?;
    let bin = root.join("tests/opencode/node_modules/.bin/opencode");
    if !bin.exists() {
        bail!("{} is missing after npm install", bin.display());
    }
    Ok(bin)
}

/// A running `opencode serve` with its isolated home.
pub struct OpenCode {
    child: Child,
    pub url: String,
    pub home: tempfile::TempDir,
    pub project: PathBuf,
    http: reqwest::Client,
}

pub struct Options<'a> {
    pub model: &'a ScriptedModel,
    /// The agent binary the shim spawns.
    pub agent_bin: PathBuf,
    /// Extra environment for OpenCode and, through it, the agent.
    pub env: Vec<(String, String)>,
}

/// The isolated directories and config shared by `serve` and `run` modes.
pub struct Sandbox {
    pub home: tempfile::TempDir,
    pub project: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Sandbox {
    pub fn new(opts: &Options<'_>) -> anyhow::Result<Sandbox> {
        let home = tempfile::Builder::new().prefix("ocmm-e2e-").tempdir()?;
        let h = home.path();
        let project = h.join("project");
        std::fs::create_dir_all(&project)?;
        let shim = repo_root().join("opencode-plugin/index.ts");
        let config = json!({
            "$schema": "https://opencode.ai/config.json",
            "provider": {"scripted": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Scripted",
                "options": {"baseURL": opts.model.base_url(), "apiKey": "test"},
                // Image and PDF input, so file parts reach the model as
                // attachments rather than as "cannot read" notes.
                "models": {"scripted-1": {"name": "Scripted 1", "tool_call": true,
                                          "attachment": true,
                                          "modalities": {"input": ["text", "image", "pdf"],
                                                         "output": ["text"]}},
                           "scripted-2": {"name": "Scripted 2", "tool_call": true}},
            }},
            "model": "scripted/scripted-1",
            // Its own model, so a test can tell small-model requests
            // (titles, the thread-context summariser) from the main ones.
            "small_model": "scripted/scripted-2",
            "plugin": [format!("file://{}", shim.display())],
            "autoupdate": false,
            "share": "disabled",
            "permission": {"edit": "allow", "bash": "allow"},
        });
        std::fs::write(
            project.join("opencode.json"),
            serde_json::to_string_pretty(&config)?,
        )?;
        let mut env: Vec<(String, String)> = vec![
            ("HOME".into(), h.display().to_string()),
            (
                "XDG_CONFIG_HOME".into(),
                h.join(".config").display().to_string(),
            ),
            (
                "XDG_DATA_HOME".into(),
                h.join(".local/share").display().to_string(),
            ),
            (
                "XDG_CACHE_HOME".into(),
                h.join(".cache").display().to_string(),
            ),
            (
                "XDG_STATE_HOME".into(),
                h.join(".local/state").display().to_string(),
            ),
            ("OPENCODE_DISABLE_MODELS_FETCH".into(), "1".into()),
            ("OPENCODE_DISABLE_AUTOUPDATE".into(), "1".into()),
            ("OPENCODE_DISABLE_DEFAULT_PLUGINS".into(), "1".into()),
            ("OPENCODE_DISABLE_LSP_DOWNLOAD".into(), "1".into()),
            ("OPENCODE_DISABLE_SHARE".into(), "1".into()),
            (
                "OPENCODE_MATTERMOST_BIN".into(),
                opts.agent_bin.display().to_string(),
            ),
            ("OPENCODE_MM_LOG".into(), "debug".into()),
        ];
        env.extend(opts.env.iter().cloned());
        Ok(Sandbox { home, project, env })
    }

    /// A command for the OpenCode binary inside the sandbox, with a clean
    /// environment so the developer's config never leaks in.
    pub fn command(&self) -> anyhow::Result<Command> {
        let mut cmd = Command::new(opencode_bin()?);
        cmd.current_dir(&self.project)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .kill_on_drop(true);
        Ok(cmd)
    }
}

impl OpenCode {
    /// Start `opencode serve` on a free loopback port and wait until healthy.
    pub async fn serve(opts: Options<'_>) -> anyhow::Result<OpenCode> {
        Self::serve_in(Sandbox::new(&opts)?).await
    }

    /// Start `opencode serve` in a sandbox the caller adjusted (its config
    /// file, its environment) after [`Sandbox::new`].
    pub async fn serve_in(sandbox: Sandbox) -> anyhow::Result<OpenCode> {
        let cmd = sandbox.command()?;
        Self::spawn_serve(cmd, sandbox.project, sandbox.home).await
    }

    /// `opencode serve` with the user's own configuration and model (for the
    /// demo): a fresh project directory whose `.opencode/plugin/` loads the
    /// shim, and the user's environment plus `env`.
    pub async fn serve_own_config(
        agent_bin: &Path,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<OpenCode> {
        let home = tempfile::Builder::new().prefix("ocmm-demo-").tempdir()?;
        let project = home.path().join("project");
        let plugin_dir = project.join(".opencode/plugin");
        std::fs::create_dir_all(&plugin_dir)?;
        let shim = repo_root().join("opencode-plugin/index.ts");
        std::fs::write(
            plugin_dir.join("opencode-mattermost.ts"),
            format!(
                "export {{ OpencodeMattermost }} from {:?};\n",
                shim.display().to_string()
            ),
        )?;
        let mut cmd = Command::new(opencode_bin()?);
        cmd.current_dir(&project)
            .env("OPENCODE_MATTERMOST_BIN", agent_bin)
            .envs(env)
            .kill_on_drop(true);
        Self::spawn_serve(cmd, project, home).await
    }

    async fn spawn_serve(
        mut cmd: Command,
        project: PathBuf,
        home: tempfile::TempDir,
    ) -> anyhow::Result<OpenCode> {
        cmd.args(["serve", "--hostname", "127.0.0.1", "--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().context("spawning opencode serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(i) = line.find("http://") {
                    return Ok::<_, anyhow::Error>(line[i..].trim().to_owned());
                }
            }
            bail!("opencode serve exited before printing its URL")
        })
        .await
        .context("opencode serve did not start within 60s")??;
        // Keep draining stdout so OpenCode never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(OpenCode {
            child,
            url,
            project,
            home,
            http: reqwest::Client::new(),
        })
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.url.trim_end_matches('/'), path)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .get(self.endpoint(path))
            .header("x-opencode-directory", self.project.display().to_string())
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("GET {path}: HTTP {status}: {body}");
        }
        Ok(body)
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(self.endpoint(path))
            .header("x-opencode-directory", self.project.display().to_string())
            .json(&body)
            .timeout(Duration::from_secs(180))
            .send()
            .await?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("POST {path}: HTTP {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        let r = self
            .http
            .delete(self.endpoint(path))
            .header("x-opencode-directory", self.project.display().to_string())
            .send()
            .await?;
        let status = r.status();
        if !status.is_success() {
            bail!("DELETE {path}: HTTP {status}");
        }
        Ok(())
    }

    /// Create a session and return its id.
    pub async fn create_session(&self, title: &str) -> anyhow::Result<String> {
        let s = self.post("/session", json!({"title": title})).await?;
        s.get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .context("session without id")
    }

    /// Send a prompt and wait for the assistant's answer (OpenCode's blocking
    /// message endpoint).
    pub async fn prompt(&self, session: &str, text: &str) -> anyhow::Result<Value> {
        self.post(
            &format!("/session/{session}/message"),
            json!({"parts": [{"type": "text", "text": text}]}),
        )
        .await
    }

    /// Stop OpenCode (and with it the shim and the agent).
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}
