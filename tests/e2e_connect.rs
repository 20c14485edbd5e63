//! `mattermost_connect`, `mattermost_status` and `mattermost_disconnect`
//! end to end: the scripted model calls them through real OpenCode, the shim
//! and the agent, against the Mattermost simulator.

// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Duration;

use harness::model::{ScriptedModel, Step, tool_results};
use harness::opencode::{OpenCode, Options};
use mattermost_sim::Simulator;
use serde_json::json;

/// The last tool result the model saw in a request whose prompt contains `phrase`.
async fn tool_output_for(model: &ScriptedModel, phrase: &str, needle: &str) -> String {
    let needle = needle.to_owned();
    let request = model
        .wait_for_request(Duration::from_secs(60), |r| {
            r.to_string().contains(phrase) && tool_results(r).iter().any(|t| t.contains(&needle))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: {:#?}", model.requests().last()));
    tool_results(&request)
        .into_iter()
        .rev()
        .find(|t| t.contains(&needle))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_status_disconnect_through_real_opencode() {
    let sim = Simulator::start().await.unwrap();
    let bot = sim.create_bot("opencode-bot").unwrap();
    let alice = sim.create_user("alice").unwrap();
    let team = sim.create_team("eng", "Engineering");
    sim.add_to_team(&team.id, &bot.id).unwrap();

    let model = ScriptedModel::start().await.unwrap();
    for (phrase, tool) in [
        ("first connect", "mattermost_connect"),
        ("connect again", "mattermost_connect"),
        ("show status", "mattermost_status"),
        ("now disconnect", "mattermost_disconnect"),
    ] {
        model.on(
            phrase,
            vec![Step::tool(tool, json!({})), Step::text("done")],
        );
    }
    let oc = OpenCode::serve(Options {
        model: &model,
        agent_bin: PathBuf::from(env!("CARGO_BIN_EXE_opencode-mattermost")),
        env: vec![
            ("MATTERMOST_URL".into(), sim.base_url()),
            ("MATTERMOST_TOKEN".into(), bot.token.clone()),
            ("MATTERMOST_OWNER_USER_ID".into(), alice.id.clone()),
        ],
    })
    .await
    .unwrap();
    // A session per step: a request then carries only that step's tool result.
    let step = |name: &'static str| {
        let oc = &oc;
        async move { oc.create_session(name).await.unwrap() }
    };

    oc.prompt(&step("a").await, "first connect").await.unwrap();
    let out = tool_output_for(&model, "first connect", "Mattermost as").await;
    println!("{out}");
    assert!(
        out.contains("Connected to Mattermost as @opencode-bot"),
        "{out}"
    );
    assert!(
        out.contains(&format!("Server: {}", sim.base_url())),
        "{out}"
    );
    assert!(out.contains("Engineering (eng)"), "{out}");
    assert!(out.contains(&format!("the owner ({})", alice.id)), "{out}");
    assert!(out.contains("WebSocket: connected"), "{out}");
    assert!(!out.contains(&bot.token), "token leaked");

    oc.prompt(&step("b").await, "connect again").await.unwrap();
    let out = tool_output_for(&model, "connect again", "Mattermost as").await;
    assert!(out.contains("Already connected to Mattermost"), "{out}");
    assert_eq!(
        sim.connections()
            .iter()
            .filter(|c| c.user_id == bot.id && c.active)
            .count(),
        1,
        "connect is idempotent"
    );

    oc.prompt(&step("c").await, "show status").await.unwrap();
    let out = tool_output_for(&model, "show status", "opencode-mattermost status").await;
    assert!(
        out.contains("Mattermost: connected as @opencode-bot"),
        "{out}"
    );
    assert!(out.contains("WebSocket: connected"), "{out}");
    assert!(out.contains("Rate limit:"), "{out}");

    oc.prompt(&step("d").await, "now disconnect").await.unwrap();
    let out = tool_output_for(&model, "now disconnect", "Disconnected").await;
    assert!(out.contains("Disconnected from Mattermost."), "{out}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sim
        .connections()
        .iter()
        .any(|c| c.user_id == bot.id && c.active)
    {
        assert!(tokio::time::Instant::now() < deadline, "socket still open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    oc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_is_one_clear_tool_error() {
    let sim = Simulator::start().await.unwrap();
    let model = ScriptedModel::start().await.unwrap();
    model.on(
        "connect please",
        vec![
            Step::tool("mattermost_connect", json!({})),
            Step::text("done"),
        ],
    );
    let oc = OpenCode::serve(Options {
        model: &model,
        agent_bin: PathBuf::from(env!("CARGO_BIN_EXE_opencode-mattermost")),
        env: vec![
            ("MATTERMOST_URL".into(), sim.base_url()),
            ("MATTERMOST_TOKEN".into(), "wrong-token-value-123".into()),
        ],
    })
    .await
    .unwrap();
    let session = oc.create_session("bad token").await.unwrap();
    oc.prompt(&session, "connect please").await.unwrap();
    let out = tool_output_for(&model, "connect please", "MATTERMOST_TOKEN").await;
    assert!(out.contains("mattermost_connect failed"), "{out}");
    assert!(out.contains("rejected the token"), "{out}");
    assert!(!out.contains("wrong-token-value-123"), "{out}");
    // One check of the token, no retry storm, no WebSocket.
    let me_calls = sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/users/me"))
        .count();
    assert_eq!(me_calls, 1);
    assert!(sim.connections().is_empty());
    oc.stop().await;
}
