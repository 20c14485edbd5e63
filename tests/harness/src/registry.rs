//! A private npm registry for install tests: the pinned `verdaccio` from
//! `tests/registry/`, on a loopback port, with its storage, users and config in
//! a temp directory and no uplink, so nothing it serves comes from, or goes to,
//! the public registry. Stopped (killed) on drop; its directory goes with it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::opencode::ensure_npm;
use crate::repo_root;

/// The pinned version; must match `tests/registry/package.json`.
pub const VERDACCIO_VERSION: &str = "6.8.0";

pub struct Registry {
    child: Child,
    /// `http://127.0.0.1:PORT/`
    pub url: String,
    /// An `.npmrc` holding this registry and a publish token for it.
    npmrc: PathBuf,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Start verdaccio on a free loopback port and create a publishing user.
    pub async fn start() -> anyhow::Result<Registry> {
        let packages = repo_root().join("tests/registry");
        ensure_npm(&packages)?;
        let main = packages.join("node_modules/verdaccio/bin/verdaccio");
        if !main.exists() {
            bail!("{} is missing after npm install", main.display());
        }
        let dir = tempfile::Builder::new()
            .prefix("ocmm-registry-")
            .tempdir()?;
        let d = dir.path();
        // Every package is local: no `proxy` line anywhere, and no uplink to name.
        let config = format!(
            "storage: {storage}\n\
             auth:\n  htpasswd:\n    file: {htpasswd}\n    max_users: 1\n\
             uplinks: {{}}\n\
             packages:\n  '**':\n    access: $all\n    publish: $authenticated\n\
             max_body_size: 500mb\n\
             web:\n  enable: false\n\
             log: {{ type: stdout, format: pretty, level: warn }}\n",
            storage = d.join("storage").display(),
            htpasswd = d.join("htpasswd").display(),
        );
        let config_path = d.join("config.yaml");
        std::fs::write(&config_path, config)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(d.join("verdaccio.log"))?;
        let child = Command::new("node")
            .arg(&main)
            .arg("--config")
            .arg(&config_path)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("spawning verdaccio (is node on PATH?)")?;
        let url = format!("http://127.0.0.1:{port}/");
        let mut registry = Registry {
            child,
            url,
            npmrc: d.join("npmrc"),
            dir,
        };
        registry.wait_ready().await?;
        let token = registry.add_user().await?;
        let host = registry.url.trim_start_matches("http:");
        std::fs::write(
            &registry.npmrc,
            format!("registry={}\n{host}:_authToken={token}\n", registry.url),
        )?;
        Ok(registry)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let ping = format!("{}-/ping", self.url);
        for _ in 0..120 {
            if let Some(status) = self.child.try_wait()? {
                bail!("verdaccio exited ({status}): {}", self.log());
            }
            if let Ok(r) = http.get(&ping).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!("verdaccio did not answer {ping} within 30s: {}", self.log())
    }

    /// The registry's user API (what `npm adduser` calls); answers a bearer token.
    async fn add_user(&self) -> anyhow::Result<String> {
        let r = reqwest::Client::new()
            .put(format!("{}-/user/org.couchdb.user:ocmm-test", self.url))
            .json(&json!({"name": "ocmm-test", "password": "loopback-only-registry"}))
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        body.get("token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("verdaccio refused the user: HTTP {status}: {body}"))
    }

    /// `npm publish` one packed tarball, with this registry's own `.npmrc` and
    /// a private npm cache (the user's `~/.npmrc` and its tokens stay out).
    pub fn publish(&self, tarball: &Path) -> anyhow::Result<()> {
        let out = std::process::Command::new("npm")
            .arg("publish")
            .arg(tarball)
            .args([
                "--registry",
                &self.url,
                "--provenance=false",
                "--loglevel=error",
            ])
            .env("npm_config_userconfig", &self.npmrc)
            .env("npm_config_cache", self.dir.path().join("npm-cache"))
            .env("npm_config_update_notifier", "false")
            .current_dir(self.dir.path())
            .output()
            .context("running npm publish")?;
        if !out.status.success() {
            bail!(
                "npm publish {} failed ({}): {}{}",
                tarball.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// The registry's metadata for `name` (its packument), or None if unknown.
    pub async fn packument(&self, name: &str) -> anyhow::Result<Option<Value>> {
        let r = reqwest::get(format!("{}{name}", self.url)).await?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some(r.error_for_status()?.json().await?))
    }

    /// What verdaccio logged (warnings and errors), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("verdaccio.log")).unwrap_or_default()
    }
}
