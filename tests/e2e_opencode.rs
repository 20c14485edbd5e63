//! End to end through the real OpenCode: the scripted model calls our tools,
//! OpenCode runs them through the shim, the shim through the agent, and the
//! agent reaches OpenCode's API back through the shim's `opencode/fetch`.
//!
//! One OpenCode instance serves every scenario of this file (it needs seconds
//! and hundreds of MB to start), so the scenarios run in order in one test.

// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Duration;

use harness::model::{ScriptedModel, Step, tool_results};
use harness::opencode::{OpenCode, Options, Sandbox};
use serde_json::{Value, json};

fn agent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_opencode-mattermost"))
}

/// The status text the model received for the call made in `session`.
async fn status_seen_by_model(model: &ScriptedModel, session: &str) -> String {
    let needle = session.to_owned();
    let request = model
        .wait_for_request(Duration::from_secs(60), |r| {
            tool_results(r)
                .iter()
                .any(|t| t.contains("opencode-mattermost status") && t.contains(&needle))
        })
        .await
        .expect("the model never received the status tool's output");
    tool_results(&request)
        .into_iter()
        .rev()
        .find(|t| t.contains("opencode-mattermost status"))
        .unwrap_or_default()
}

fn pid_in(status: &str) -> u32 {
    let after = status.split("pid ").nth(1).expect("status names its pid");
    after
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|d| d.parse().ok())
        .expect("pid is a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_opencode_runs_our_tools_through_the_shim() {
    let model = ScriptedModel::start().await.unwrap();
    model.on(
        "check mattermost status",
        vec![
            Step::tool("mattermost_status", json!({})),
            Step::text("Status checked."),
        ],
    );
    let oc = OpenCode::serve(Options {
        model: &model,
        agent_bin: agent_bin(),
        env: vec![
            ("MATTERMOST_URL".into(), "not a url".into()),
            ("MATTERMOST_TOKEN".into(), "e2e-secret-token-value".into()),
        ],
    })
    .await
    .unwrap();

    // (a) + (b): the model calls mattermost_status; its next request carries
    // the real status, which lists the running session fetched through the shim.
    let session = oc.create_session("e2e status").await.unwrap();
    let reply = oc
        .prompt(&session, "please check mattermost status")
        .await
        .unwrap();
    let status = status_seen_by_model(&model, &session).await;
    println!("--- status as the model saw it ---\n{status}");
    assert!(status.contains("Mattermost: not connected"), "{status}");
    assert!(
        status.contains(&format!("OpenCode directory: {}", oc.project.display())),
        "{status}"
    );
    assert!(status.contains("Plugin shim: 0.1.0"), "{status}");
    assert!(status.contains("OpenCode: 1.18.33"), "{status}");
    assert!(
        status.contains(&format!("{session} \"e2e status\" (this session)")),
        "{status}"
    );
    assert!(
        status.contains("MATTERMOST_URL: `not a url` is not a valid URL"),
        "{status}"
    );
    assert!(status.contains("MATTERMOST_TOKEN"), "{status}");
    assert!(
        !status.contains("e2e-secret-token-value"),
        "token leaked: {status}"
    );
    let reply_text = reply.to_string();
    assert!(reply_text.contains("Status checked."), "{reply_text}");

    // What OpenCode itself lists must be what the agent listed.
    let sessions = oc.get("/session").await.unwrap();
    for s in sessions.as_array().unwrap() {
        let id = s["id"].as_str().unwrap();
        assert!(status.contains(id), "agent's list lacks {id}: {status}");
    }

    // (c): kill the agent; the next tool call restarts it and succeeds.
    let first_pid = pid_in(&status);
    let killed = std::process::Command::new("kill")
        .args(["-9", &first_pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let session2 = oc.create_session("after the crash").await.unwrap();
    oc.prompt(&session2, "again, check mattermost status")
        .await
        .unwrap();
    let status2 = status_seen_by_model(&model, &session2).await;
    let second_pid = pid_in(&status2);
    assert_ne!(first_pid, second_pid, "the agent was not restarted");
    assert!(
        status2.contains(&format!("{session2} \"after the crash\" (this session)")),
        "{status2}"
    );

    oc.stop().await;
}

/// `opencode run` serves the API in-process: nothing listens on serverUrl, so
/// the agent can only reach OpenCode through the shim's fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opencode_run_mode_reaches_the_api_through_the_shim() {
    let model = ScriptedModel::start().await.unwrap();
    model.on(
        "status from run mode",
        vec![
            Step::tool("mattermost_status", json!({"json": true})),
            Step::text("Done from run mode."),
        ],
    );
    let sandbox = Sandbox::new(&Options {
        model: &model,
        agent_bin: agent_bin(),
        env: vec![],
    })
    .unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        sandbox
            .command()
            .unwrap()
            .args(["run", "status from run mode"])
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("opencode run timed out")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "opencode run failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Done from run mode."), "{stdout}");

    let request = model
        .wait_for_request(Duration::from_secs(5), |r| !tool_results(r).is_empty())
        .await
        .unwrap();
    let report: Value = serde_json::from_str(&tool_results(&request)[0]).expect("status JSON");
    let calling = report["opencode"]["callingSession"]
        .as_str()
        .expect("calling session");
    let listed: Vec<&str> = report["opencode"]["sessions"]
        .as_array()
        .expect("sessions listed through the shim")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert!(listed.contains(&calling), "{report}");
    assert_eq!(report["opencode"]["version"], "1.18.33");
    assert_eq!(report["mattermost"]["state"], "not connected");
}
