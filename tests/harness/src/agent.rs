//! Drives the agent binary over its stdio, as the shim would.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

pub struct AgentProcess {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    next_id: u64,
    pub home: tempfile::TempDir,
}

impl AgentProcess {
    /// Spawn `bin` with an isolated HOME and the given extra environment.
    pub fn spawn(bin: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let home = tempfile::Builder::new().prefix("ocmm-agent-").tempdir()?;
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("HOME", home.path())
            .env("XDG_STATE_HOME", home.path().join("state"))
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env("OPENCODE_MM_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        Ok(Self {
            child,
            stdin: Some(stdin),
            stdout,
            next_id: 1,
            home,
        })
    }

    /// Lend the agent's stdin to a writer task (give it back with `put_stdin`),
    /// so a test can read answers while it is still writing.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    pub fn put_stdin(&mut self, stdin: ChildStdin) {
        self.stdin = Some(stdin);
    }

    /// Write raw bytes followed by a newline.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("stdin closed")?;
        stdin.write_all(bytes).await?;
        stdin.write_all(b"\n").await?;
        stdin.flush().await?;
        Ok(())
    }

    pub async fn send(&mut self, frame: &Value) -> anyhow::Result<()> {
        self.send_raw(frame.to_string().as_bytes()).await
    }

    /// The next frame the agent writes, at most `timeout` away.
    pub async fn recv(&mut self, timeout: Duration) -> anyhow::Result<Value> {
        let line = tokio::time::timeout(timeout, self.stdout.next_line())
            .await
            .context("agent wrote nothing in time")??
            .context("agent closed stdout")?;
        serde_json::from_str(&line).with_context(|| format!("agent wrote a non-JSON line: {line}"))
    }

    /// Send a request and return the response frame with its id.
    pub async fn request(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await?;
        loop {
            let frame = self.recv(Duration::from_secs(30)).await?;
            if frame.get("id") == Some(&json!(id)) && frame.get("method").is_none() {
                return Ok(frame);
            }
        }
    }

    pub async fn initialize(&mut self, directory: &str) -> anyhow::Result<Value> {
        let r = self
            .request(
                "initialize",
                json!({"directory": directory, "worktree": directory, "projectID": "test",
                       "serverUrl": "http://127.0.0.1:1", "shimVersion": "test", "protocolVersion": 1}),
            )
            .await?;
        if r.get("result").is_none() {
            bail!("initialize failed: {r}");
        }
        Ok(r)
    }

    /// Close stdin, read every line the agent still writes until it closes
    /// stdout, and wait for the exit status. A synchronisation point for
    /// "nothing more was written": the lines are all it wrote after the
    /// frames already read, and there is nothing left to come.
    pub async fn close_draining(
        mut self,
    ) -> anyhow::Result<(std::process::ExitStatus, Vec<String>)> {
        drop(self.stdin.take());
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = self.stdout.next_line().await? {
                rest.push(line);
            }
            anyhow::Ok(())
        })
        .await
        .context("agent did not close stdout after stdin closed")??;
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .context("agent did not exit after stdin closed")??;
        Ok((status, rest))
    }

    /// Close stdin and wait for the exit status.
    pub async fn close(mut self) -> anyhow::Result<std::process::ExitStatus> {
        drop(self.stdin.take());
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .context("agent did not exit after stdin closed")??;
        Ok(status)
    }
}
