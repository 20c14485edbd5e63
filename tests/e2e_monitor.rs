//! Attention alerts end to end, over REST only: real OpenCode with the
//! plugin, the scripted model calling `mattermost_monitor` and
//! `mattermost_unmonitor`, and the simulator, with an agent that never opens
//! a WebSocket. OpenCode asks before running `bash`
//! (`OPENCODE_PERMISSION={"bash":"ask"}`); the test answers through
//! OpenCode's API, as the TUI would.
//!
//! One OpenCode serves every step. No step waits a fixed time: "no alert"
//! is proven by a later alert, because alerts go out one at a time in the
//! order their states happened; "exactly n alerts" is counted once a
//! sentinel's alert, whose state happened after everything else, is posted
//! (see [`settled_alerts`]).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod bridge_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bridge_support::{Rig, last_user_text, wait_until};
use harness::model::{ScriptedModel, Step};
use harness::opencode::OpenCode;
use mattermost_sim::model::Post;
use opencode_mattermost::store::{MonitorRow, SqliteStore, Store, now_millis};
use serde_json::{Value, json};

/// The title of every sentinel session, followed by its number; its alerts
/// are not the test's.
const SENTINEL: &str = "alert sentinel";

/// Tool results of the current turn of a model request: those after its
/// last user message (earlier turns of the session are in the request too).
fn turn_results(request: &Value) -> Vec<String> {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let start = messages
        .iter()
        .rposition(|m| m["role"] == "user")
        .map_or(0, |i| i + 1);
    messages[start..]
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(harness::model::content_text)
        .collect()
}

/// The tool result containing `needle` of the turn whose prompt contains
/// `phrase`.
async fn tool_output_for(model: &ScriptedModel, phrase: &str, needle: &str) -> String {
    let needle = needle.to_owned();
    let request = model
        .wait_for_request(Duration::from_secs(60), |r| {
            last_user_text(r).contains(phrase)
                && turn_results(r).iter().any(|t| t.contains(&needle))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: {:#?}", model.requests().last()));
    let out = turn_results(&request)
        .into_iter()
        .find(|t| t.contains(&needle))
        .unwrap_or_default();
    println!("{phrase} → {out}\n");
    out
}

/// Start a turn without waiting for it (it may stop for a permission).
async fn prompt_async(oc: &OpenCode, session: &str, text: &str) {
    oc.post(
        &format!("/session/{session}/prompt_async"),
        json!({"parts": [{"type": "text", "text": text}]}),
    )
    .await
    .unwrap();
}

/// The pending permission request of `session`, once OpenCode has one.
async fn pending_permission(oc: &OpenCode, session: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let pending = oc.get("/permission").await.unwrap();
        if let Some(p) = pending
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["sessionID"] == session)
        {
            return p.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no permission request for {session}: {pending:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn allow_once(oc: &OpenCode, request: &Value) {
    let id = request["id"].as_str().unwrap();
    let ok = oc
        .post(&format!("/permission/{id}/reply"), json!({"reply": "once"}))
        .await
        .unwrap();
    assert_eq!(ok, json!(true));
}

/// Wait until OpenCode reports `session` idle, after the model answered
/// the request whose last user text contains `phrase` with its last step.
async fn turn_ended(
    oc: &OpenCode,
    model: &ScriptedModel,
    session: &str,
    phrase: &str,
    steps: usize,
) {
    model
        .wait_for_request(Duration::from_secs(60), |r| {
            last_user_text(r).contains(phrase) && turn_results(r).len() + 1 >= steps
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = oc.get("/session/status").await.unwrap();
        let kind = status[session]["type"].as_str().unwrap_or("idle");
        if kind == "idle" {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{session} still {kind}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The bot's alerts in the DM about the test's sessions (sentinels' left
/// out), oldest first.
fn alerts_now(rig: &Rig, dm: &str) -> Vec<Post> {
    let sentinel = format!("**Session:** {SENTINEL} ");
    rig.bot_roots(dm)
        .into_iter()
        .filter(|p| !p.message.contains(&sentinel))
        .collect()
}

/// The bot's alerts in the DM, oldest first, once there are at least `n`
/// (more may still be on their way: see [`settled_alerts`]).
async fn alerts(rig: &Rig, dm: &str, n: usize) -> Vec<Post> {
    let mut found = Vec::new();
    wait_until(Duration::from_secs(60), &format!("{n} alert DMs"), || {
        found = alerts_now(rig, dm);
        found.len() >= n
    })
    .await;
    found
}

/// The bot's alerts in the DM, oldest first, once every alert due for what
/// OpenCode did before this call has been posted: a synchronisation point,
/// not a wait. The caller makes sure what it counts has happened (the
/// permission is pending, the turn has ended).
///
/// A fresh sentinel session, monitored for alice straight in the store (as
/// another agent on the same database would; the monitor reads monitors
/// from the store), runs one turn. Its end is a new attention state that
/// happened after every state before this call: OpenCode's events reach
/// the agent in order, one delivery task sends the alerts one at a time in
/// the order their states happened. So once the sentinel's alert is
/// posted, no alert for anything earlier is still on its way.
async fn settled_alerts(
    rig: &Rig,
    oc: &OpenCode,
    store: &SqliteStore,
    dm: &str,
    n: usize,
) -> Vec<Post> {
    static SENTINELS: AtomicUsize = AtomicUsize::new(0);
    alerts(rig, dm, n).await;
    let title = format!(
        "{SENTINEL} {}",
        SENTINELS.fetch_add(1, Ordering::Relaxed) + 1
    );
    let session = oc.create_session(&title).await.unwrap();
    store
        .add_monitor(&MonitorRow {
            session_id: session.clone(),
            target_user_id: rig.alice.id.clone(),
            persistent: true,
            created_at: now_millis(),
            last_alert: None,
        })
        .await
        .unwrap();
    oc.prompt(&session, &title).await.unwrap();
    let mark = format!("**Session:** {title} (");
    wait_until(
        Duration::from_secs(60),
        &format!("the alert of {title}"),
        || rig.bot_roots(dm).iter().any(|p| p.message.contains(&mark)),
    )
    .await;
    alerts_now(rig, dm)
}

/// What an alert must say about a session, whatever happened.
fn assert_names_session(alert: &str, oc: &OpenCode, session: &Value) {
    let short = session["slug"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| session["id"].as_str().unwrap()[..8].to_owned());
    let dir = oc.project.display().to_string();
    assert!(alert.starts_with(":bell: **OpenCode session "), "{alert}");
    assert!(alert.contains("**Project:** project\n"), "{alert}");
    assert!(
        alert.contains(&format!(
            "**Session:** {} (`{short}`)",
            session["title"].as_str().unwrap()
        )),
        "{alert}"
    );
    assert!(
        alert.contains(&format!("**Directory:** `{dir}`")),
        "{alert}"
    );
    assert!(
        alert.contains(&format!("_To continue, send `!use {short}` here._")),
        "{alert}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_arrive_once_per_state_over_rest_and_stop_when_unmonitored() {
    let rig = Rig::new().await;
    let bob = rig.sim.create_user("bob").unwrap();
    let model = ScriptedModel::start().await.unwrap();
    model.on(
        "please monitor me",
        vec![
            Step::tool("mattermost_monitor", json!({})),
            Step::text("Monitoring."),
        ],
    );
    model.on(
        "first bash turn",
        vec![
            Step::tool(
                "bash",
                json!({"command": "echo hi", "description": "say hi"}),
            ),
            Step::text("Said hi."),
        ],
    );
    model.on(
        "please stop monitoring",
        vec![
            Step::tool("mattermost_unmonitor", json!({})),
            Step::text("Stopped."),
        ],
    );
    model.on(
        "second bash turn",
        vec![
            Step::tool(
                "bash",
                json!({"command": "echo again", "description": "say it again"}),
            ),
            Step::text("Said it again."),
        ],
    );
    model.on(
        "watch me once",
        vec![
            Step::tool("mattermost_monitor", json!({"persistent": false})),
            Step::tool(
                "bash",
                json!({"command": "echo once", "description": "say once"}),
            ),
            Step::text("Said once."),
        ],
    );
    model.on("the other one's last turn", vec![Step::text("All done.")]);
    model.on(SENTINEL, vec![Step::text("Sentinel.")]);

    let env = rig.env(&[
        ("MATTERMOST_AUTO_CONNECT", "false"),
        ("MATTERMOST_OWNER_USER_ID", &rig.alice.id),
        ("OPENCODE_PERMISSION", r#"{"bash":"ask"}"#),
    ]);
    let oc = rig.opencode_unconnected(&model, env).await;
    assert_eq!(rig.bot_sockets(), 0);
    let dm = rig.dm(&rig.alice.id);

    // A session monitored from its own turn: the tool answers, and the end
    // of that very turn is not alerted (alert 1 below is the first).
    let s1 = oc.create_session("monitor e2e").await.unwrap();
    oc.prompt(&s1, "please monitor me").await.unwrap();
    let out = tool_output_for(&model, "please monitor me", "Monitoring session").await;
    assert!(
        out.contains(&format!("for the owner ({})", rig.alice.id)),
        "{out}"
    );
    assert!(out.contains("until `mattermost_unmonitor`"), "{out}");
    assert!(
        !out.contains("Warning"),
        "REST works without a socket: {out}"
    );

    // The monitoring turn wrote the store; the sentinels' monitors go there.
    let store = SqliteStore::open(
        &oc.home
            .path()
            .join(".local/share/opencode-mattermost/state.db"),
    )
    .unwrap();

    // Bash needs permission: exactly one alert, with what and where.
    prompt_async(&oc, &s1, "first bash turn").await;
    let request = pending_permission(&oc, &s1).await;
    println!("permission request: {request:#}");
    assert_eq!(request["permission"], "bash");
    let first = alerts(&rig, &dm, 1).await;
    let session1 = oc.get(&format!("/session/{s1}")).await.unwrap();
    println!("alert 1:\n{}\n", first[0].message);
    // Had the monitoring turn's end been alerted, that alert would be first.
    assert_names_session(&first[0].message, &oc, &session1);
    assert!(
        first[0]
            .message
            .contains(":lock: **Permission requested:** `bash` for `echo hi`"),
        "{}",
        first[0].message
    );
    // Asking again about the same pending request changes nothing.
    for _ in 0..5 {
        assert_eq!(pending_permission(&oc, &s1).await["id"], request["id"]);
    }
    let settled = settled_alerts(&rig, &oc, &store, &dm, 1).await;
    assert_eq!(
        settled.len(),
        1,
        "the monitoring turn's end or the same request alerted: {:#?}",
        settled.iter().map(|p| &p.message).collect::<Vec<_>>()
    );

    // Allowed from the API: the turn ends, and that is one more alert.
    allow_once(&oc, &request).await;
    turn_ended(&oc, &model, &s1, "first bash turn", 2).await;
    let two = alerts(&rig, &dm, 2).await;
    println!("alert 2:\n{}\n", two[1].message);
    assert_names_session(&two[1].message, &oc, &session1);
    assert!(
        two[1].message.contains("finished and is waiting for input"),
        "{}",
        two[1].message
    );

    // Unmonitored: another permission and another end bring nothing.
    oc.prompt(&s1, "please stop monitoring").await.unwrap();
    let out = tool_output_for(&model, "please stop monitoring", "Stopped the alerts").await;
    assert!(out.contains("(1 monitor)"), "{out}");
    prompt_async(&oc, &s1, "second bash turn").await;
    let again = pending_permission(&oc, &s1).await;
    allow_once(&oc, &again).await;
    turn_ended(&oc, &model, &s1, "second bash turn", 2).await;

    // A one-shot monitor set up mid-turn: its first alert is the
    // permission; it is then gone, so the turn's end brings nothing.
    let s2 = oc.create_session("one-shot e2e").await.unwrap();
    prompt_async(&oc, &s2, "watch me once").await;
    let once = pending_permission(&oc, &s2).await;
    let three = settled_alerts(&rig, &oc, &store, &dm, 3).await;
    println!("alert 3:\n{}\n", three[2].message);
    assert_eq!(
        three.len(),
        3,
        "nothing after unmonitoring: {:#?}",
        three.iter().map(|p| &p.message).collect::<Vec<_>>()
    );
    let session2 = oc.get(&format!("/session/{s2}")).await.unwrap();
    assert_names_session(&three[2].message, &oc, &session2);
    assert!(
        three[2].message.contains("`bash` for `echo once`"),
        "{}",
        three[2].message
    );
    let out = tool_output_for(&model, "watch me once", "Monitoring session").await;
    assert!(out.contains("One-shot"), "{out}");
    allow_once(&oc, &once).await;
    turn_ended(&oc, &model, &s2, "watch me once", 3).await;

    // From the first session, monitor the second for @alice (a name looked
    // up over REST); bob may not receive alerts. The second session's next
    // turn is then alert 4, and nothing came between.
    model.on(
        "alert bob instead",
        vec![
            Step::tool(
                "mattermost_monitor",
                json!({"session": &s2, "user": "@bob"}),
            ),
            Step::text("Bob cannot."),
        ],
    );
    model.on(
        "monitor the other one",
        vec![
            Step::tool(
                "mattermost_monitor",
                json!({"session": &s2, "user": "@alice"}),
            ),
            Step::text("Watching the other one."),
        ],
    );
    oc.prompt(&s1, "alert bob instead").await.unwrap();
    let out = tool_output_for(&model, "alert bob instead", "may not receive alerts").await;
    assert!(out.contains("@bob may not receive alerts"), "{out}");
    oc.prompt(&s1, "monitor the other one").await.unwrap();
    let out = tool_output_for(&model, "monitor the other one", "Monitoring session").await;
    assert!(out.contains("for @alice"), "{out}");
    assert!(!out.contains("end of this very turn"), "{out}");
    oc.prompt(&s2, "the other one's last turn").await.unwrap();
    turn_ended(&oc, &model, &s2, "the other one's last turn", 1).await;
    let four = settled_alerts(&rig, &oc, &store, &dm, 4).await;
    println!("alert 4:\n{}\n", four[3].message);
    assert_eq!(
        four.len(),
        4,
        "{:#?}",
        four.iter().map(|p| &p.message).collect::<Vec<_>>()
    );
    assert_names_session(&four[3].message, &oc, &session2);
    assert!(
        four[3]
            .message
            .contains("finished and is waiting for input")
    );

    // Every alert was a top-level DM to alice only, and still no socket.
    assert!(
        rig.live_posts()
            .iter()
            .filter(|p| p.user_id == rig.bot.id)
            .all(|p| p.channel_id == dm && p.root_id.is_empty())
    );
    let bob_dm = rig.dm(&bob.id);
    assert!(rig.bot_roots(&bob_dm).is_empty());
    assert_eq!(rig.bot_sockets(), 0, "the agent opened a WebSocket");
    // The agent's log files (rotated daily: `agent.log.<date>`).
    let log_dir = oc.home.path().join(".local/state/opencode-mattermost");
    let log: String = std::fs::read_dir(&log_dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("agent.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    for line in log.lines().filter(|l| l.contains("monitor")) {
        println!("agent log: {line}");
    }
    assert!(
        log.contains("alerts go over REST without a WebSocket connection"),
        "the monitor's own REST client was not used"
    );
    assert!(!log.contains(&rig.bot.token), "token leaked into the log");
    oc.stop().await;
}
