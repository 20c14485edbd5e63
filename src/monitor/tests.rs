use std::sync::Mutex;

use async_trait::async_trait;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use super::state::Attention;
use super::*;
use crate::store::SqliteStore;

fn ev(kind: &str, properties: Value) -> Event {
    Event::from_value(&json!({"type": kind, "properties": properties}))
}

fn busy(session: &str) -> Event {
    ev(
        "session.status",
        json!({"sessionID": session, "status": {"type": "busy"}}),
    )
}

fn status_idle(session: &str) -> Event {
    ev(
        "session.status",
        json!({"sessionID": session, "status": {"type": "idle"}}),
    )
}

fn idle(session: &str) -> Event {
    ev("session.idle", json!({"sessionID": session}))
}

fn permission(session: &str, id: &str) -> Event {
    ev(
        "permission.asked",
        json!({"id": id, "sessionID": session, "permission": "bash",
               "patterns": ["echo hi"], "always": ["echo *"], "metadata": {},
               "tool": {"messageID": "msg_1", "callID": "call_1"}}),
    )
}

fn question(session: &str, id: &str) -> Event {
    ev(
        "question.asked",
        json!({"id": id, "sessionID": session, "questions": [
            {"header": "Database", "question": "Which one?", "options": []},
            {"header": "Port", "question": "Which port?", "options": []}]}),
    )
}

fn error(session: Option<&str>, error: Value) -> Event {
    ev(
        "session.error",
        json!({"sessionID": session, "error": error}),
    )
}

fn tool_part(session: &str, tool: &str, status: &str) -> Event {
    ev(
        "message.part.updated",
        json!({"part": {"id": "prt_1", "sessionID": session, "messageID": "msg_1",
                        "type": "tool", "callID": "call_1", "tool": tool,
                        "state": {"status": status, "input": {}}}}),
    )
}

/// The keys of the changes a sequence of events produces.
fn keys(tracker: &mut Tracker, events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| tracker.observe(e))
        .map(|c| c.key)
        .collect()
}

// ---- the state machine ------------------------------------------------------

#[test]
fn a_turn_ends_with_one_idle_change_even_with_both_idle_events() {
    let mut t = Tracker::new("r1");
    let got = keys(
        &mut t,
        &[
            busy("ses_a"),
            busy("ses_a"),
            status_idle("ses_a"),
            idle("ses_a"),
            idle("ses_a"),
        ],
    );
    assert_eq!(got, vec!["idle:1@r1"]);
    assert_eq!(t.key_of("ses_a"), Some("idle:1@r1"));
}

#[test]
fn idle_without_prior_work_is_not_a_change() {
    let mut t = Tracker::new("r1");
    assert_eq!(
        keys(&mut t, &[idle("ses_a"), status_idle("ses_a")]),
        Vec::<String>::new()
    );
    assert_eq!(t.key_of("ses_a"), None);
}

#[test]
fn each_busy_idle_transition_is_its_own_change() {
    let mut t = Tracker::new("r1");
    let got = keys(
        &mut t,
        &[busy("ses_a"), idle("ses_a"), busy("ses_a"), idle("ses_a")],
    );
    assert_eq!(got, vec!["idle:1@r1", "idle:2@r1"]);
}

#[test]
fn a_retry_counts_as_work() {
    let mut t = Tracker::new("r1");
    let retry = ev(
        "session.status",
        json!({"sessionID": "ses_a", "status": {"type": "retry", "attempt": 1,
               "message": "overloaded", "next": 5}}),
    );
    assert_eq!(keys(&mut t, &[retry, idle("ses_a")]), vec!["idle:1@r1"]);
}

#[test]
fn repeated_permission_and_question_events_change_once() {
    let mut t = Tracker::new("r1");
    let changes: Vec<Change> = [
        busy("ses_a"),
        permission("ses_a", "per_1"),
        permission("ses_a", "per_1"),
        question("ses_a", "que_1"),
        question("ses_a", "que_1"),
        permission("ses_a", "per_2"),
    ]
    .iter()
    .filter_map(|e| t.observe(e))
    .collect();
    let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(
        keys,
        vec!["permission:per_1", "question:que_1", "permission:per_2"]
    );
    assert_eq!(
        changes[0].attention,
        Attention::Permission {
            request_id: "per_1".into(),
            permission: "bash".into(),
            patterns: vec!["echo hi".into()],
        }
    );
    assert_eq!(
        changes[1].attention,
        Attention::Question {
            request_id: "que_1".into(),
            header: "Database".into(),
            question: "Which one?".into(),
            count: 2,
        }
    );
}

#[test]
fn a_permission_then_the_end_of_the_turn_are_two_changes() {
    let mut t = Tracker::new("r1");
    // No busy seen (the agent started mid-turn): asking is work enough.
    let got = keys(
        &mut t,
        &[
            permission("ses_a", "per_1"),
            busy("ses_a"),
            status_idle("ses_a"),
            idle("ses_a"),
        ],
    );
    assert_eq!(got, vec!["permission:per_1", "idle:1@r1"]);
}

#[test]
fn a_failure_is_one_change_and_swallows_the_idle_after_it() {
    let mut t = Tracker::new("r1");
    let changes: Vec<Change> = [
        busy("ses_a"),
        error(
            Some("ses_a"),
            json!({"name": "APIError", "data": {"message": "Rate limit exceeded"}}),
        ),
        status_idle("ses_a"),
        idle("ses_a"),
        busy("ses_a"),
        error(Some("ses_a"), json!({"name": "UnknownError", "data": {}})),
        error(Some("ses_a"), json!("not an object")),
    ]
    .iter()
    .filter_map(|e| t.observe(e))
    .collect();
    let got: Vec<(&str, &Attention)> = changes
        .iter()
        .map(|c| (c.key.as_str(), &c.attention))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "failed:1@r1",
                &Attention::Failed {
                    message: "Rate limit exceeded".into()
                }
            ),
            (
                "failed:2@r1",
                &Attention::Failed {
                    message: "UnknownError".into()
                }
            ),
            (
                "failed:3@r1",
                &Attention::Failed {
                    message: "unknown error".into()
                }
            ),
        ]
    );
}

#[test]
fn an_abort_is_not_a_failure_but_the_session_then_waits() {
    let mut t = Tracker::new("r1");
    let got = keys(
        &mut t,
        &[
            busy("ses_a"),
            error(
                Some("ses_a"),
                json!({"name": "MessageAbortedError", "data": {"message": "Aborted"}}),
            ),
            idle("ses_a"),
        ],
    );
    assert_eq!(got, vec!["idle:1@r1"]);
}

#[test]
fn unknown_sessions_and_empty_ids_change_nothing() {
    let mut t = Tracker::new("r1");
    let got = keys(
        &mut t,
        &[
            idle("ses_never_seen"),
            error(None, json!({"name": "APIError"})),
            busy(""),
            idle(""),
            permission("", "per_1"),
            permission("ses_a", ""),
            ev("session.idle", json!({"sessionID": 42})),
            ev("brand.new.event", json!({"sessionID": "ses_a"})),
            ev(
                "session.status",
                json!({"sessionID": "ses_a", "status": {"type": "sleeping"}}),
            ),
            ev(
                "session.status",
                json!({"sessionID": "ses_a", "status": "busy"}),
            ),
            idle("ses_a"),
        ],
    );
    assert_eq!(got, Vec::<String>::new());
}

#[test]
fn sessions_are_tracked_apart_and_forgotten_when_deleted() {
    let mut t = Tracker::new("r1");
    let got = keys(
        &mut t,
        &[
            busy("ses_a"),
            busy("ses_b"),
            idle("ses_b"),
            idle("ses_a"),
            ev("session.deleted", json!({"info": {"id": "ses_a"}})),
            busy("ses_a"),
            idle("ses_a"),
        ],
    );
    // A deleted session is forgotten (OpenCode never reuses its id).
    assert_eq!(got, vec!["idle:1@r1", "idle:1@r1", "idle:1@r1"]);
    assert_eq!(t.key_of("ses_b"), Some("idle:1@r1"));
}

#[test]
fn keys_of_another_run_differ() {
    let mut first = Tracker::new("1000");
    let mut second = Tracker::new("2000");
    let a = keys(&mut first, &[busy("ses_a"), idle("ses_a")]);
    let b = keys(&mut second, &[busy("ses_a"), idle("ses_a")]);
    assert_ne!(a, b, "a restart must not look like the same state");
}

#[test]
fn the_turn_that_set_up_a_monitor_does_not_alert_its_end_unless_it_went_on() {
    // The model called mattermost_monitor and then just answered.
    let mut t = Tracker::new("r1");
    t.observe(&busy("ses_a"));
    t.observe(&tool_part("ses_a", "mattermost_monitor", "running"));
    t.monitor_added("ses_a", "alice", true);
    t.observe(&tool_part("ses_a", "mattermost_monitor", "completed"));
    let end = t.observe(&idle("ses_a")).unwrap();
    assert_eq!(end.skip, vec!["alice".to_owned()]);
    // The next turn is news.
    t.observe(&busy("ses_a"));
    assert_eq!(
        t.observe(&idle("ses_a")).unwrap().skip,
        Vec::<String>::new()
    );

    // The model called it, then went on with the real work.
    t.observe(&busy("ses_a"));
    t.monitor_added("ses_a", "alice", true);
    t.observe(&tool_part("ses_a", "bash", "running"));
    assert_eq!(
        t.observe(&idle("ses_a")).unwrap().skip,
        Vec::<String>::new()
    );

    // A question in the same turn is news, and so is the end after it.
    t.observe(&busy("ses_a"));
    t.monitor_added("ses_a", "alice", true);
    assert!(t.observe(&question("ses_a", "que_9")).is_some());
    assert_eq!(
        t.observe(&idle("ses_a")).unwrap().skip,
        Vec::<String>::new()
    );

    // Set up for another session, or from outside any turn: no grace.
    t.observe(&busy("ses_b"));
    t.monitor_added("ses_b", "alice", false);
    assert_eq!(
        t.observe(&idle("ses_b")).unwrap().skip,
        Vec::<String>::new()
    );
    t.monitor_added("ses_c", "alice", true);
    t.observe(&busy("ses_c"));
    assert_eq!(
        t.observe(&idle("ses_c")).unwrap().skip,
        Vec::<String>::new()
    );
}

// ---- delivery -----------------------------------------------------------------

fn row(target: &str, persistent: bool, last_alert: Option<&str>) -> MonitorRow {
    MonitorRow {
        session_id: "ses_a".into(),
        target_user_id: target.into(),
        persistent,
        created_at: 1,
        last_alert: last_alert.map(str::to_owned),
    }
}

fn change(key: &str, skip: &[&str]) -> Change {
    Change {
        session_id: "ses_a".into(),
        key: key.into(),
        attention: Attention::Idle,
        skip: skip.iter().map(|s| (*s).to_owned()).collect(),
    }
}

#[test]
fn due_leaves_out_targets_already_told_and_skipped_ones() {
    let rows = vec![
        row("alice", true, Some("idle:1@r1")),
        row("bob", true, Some("permission:per_1")),
        row("carol", false, None),
    ];
    let targets = |c: &Change| -> Vec<String> {
        due(rows.clone(), c)
            .into_iter()
            .map(|m| m.target_user_id)
            .collect()
    };
    assert_eq!(targets(&change("idle:1@r1", &[])), vec!["bob", "carol"]);
    assert_eq!(
        targets(&change("idle:2@r1", &["carol"])),
        vec!["alice", "bob"]
    );
}

/// Records what it sends; fails for the users listed in `refuse`.
#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<(String, String)>>,
    refuse: Vec<String>,
}

#[async_trait]
impl AlertSink for Recorder {
    async fn send(&self, user_id: &str, text: &str) -> Result<(), MonitorError> {
        if self.refuse.iter().any(|u| u == user_id) {
            return Err(MonitorError::Mattermost(MattermostError::Unreachable {
                url: "http://mm".into(),
                reason: "connection refused".into(),
            }));
        }
        self.sent
            .lock()
            .unwrap()
            .push((user_id.to_owned(), text.to_owned()));
        Ok(())
    }
}

#[tokio::test]
async fn sending_records_the_key_removes_one_shots_and_retries_failures_later() {
    let store = SqliteStore::open_in_memory().unwrap();
    for (target, persistent) in [("alice", true), ("bob", false), ("carol", true)] {
        store
            .add_monitor(&row(target, persistent, None))
            .await
            .unwrap();
    }
    let sink = Recorder {
        refuse: vec!["carol".into()],
        ..Recorder::default()
    };

    let c = change("permission:per_1", &[]);
    let due1 = due(store.monitors_of("ses_a").await.unwrap(), &c);
    assert_eq!(
        send_alerts(&store, &sink, &due1, &c.key, "alert 1").await,
        2
    );

    let now = store.monitors_of("ses_a").await.unwrap();
    let state: Vec<(&str, Option<&str>)> = now
        .iter()
        .map(|m| (m.target_user_id.as_str(), m.last_alert.as_deref()))
        .collect();
    // bob's one-shot is gone; carol's failed DM left her monitor untouched.
    assert_eq!(
        state,
        vec![("alice", Some("permission:per_1")), ("carol", None)]
    );

    // The same state again: nobody told twice, carol tried again.
    let due2 = due(now, &c);
    assert_eq!(
        due2.iter()
            .map(|m| m.target_user_id.as_str())
            .collect::<Vec<_>>(),
        vec!["carol"]
    );
    // The next state, with carol reachable now.
    let sink2 = Recorder::default();
    let c2 = change("idle:1@r1", &[]);
    let due3 = due(store.monitors_of("ses_a").await.unwrap(), &c2);
    assert_eq!(
        send_alerts(&store, &sink2, &due3, &c2.key, "alert 2").await,
        2
    );
    let sent: Vec<(String, String)> = sink.sent.lock().unwrap().clone();
    assert_eq!(
        sent,
        vec![
            ("alice".to_owned(), "alert 1".to_owned()),
            ("bob".to_owned(), "alert 1".to_owned())
        ]
    );
    assert!(
        store
            .monitors_of("ses_a")
            .await
            .unwrap()
            .iter()
            .all(|m| m.last_alert.as_deref() == Some("idle:1@r1"))
    );
}

#[tokio::test]
async fn a_monitor_removed_while_its_alert_was_sent_is_not_an_error() {
    let store = SqliteStore::open_in_memory().unwrap();
    let gone = vec![row("alice", true, None)];
    let sink = Recorder::default();
    assert_eq!(send_alerts(&store, &sink, &gone, "idle:1@r1", "x").await, 1);
    assert!(store.monitors().await.unwrap().is_empty());
}

#[tokio::test]
async fn adding_a_monitor_resets_what_it_was_told_and_removing_counts() {
    let store = SqliteStore::open_in_memory().unwrap();
    let monitor = Monitor::new();
    monitor
        .add(&store, "ses_a", "alice", true, false)
        .await
        .unwrap();
    store
        .set_monitor_alert("ses_a", "alice", "idle:1@r1")
        .await
        .unwrap();
    monitor
        .add(&store, "ses_a", "alice", false, false)
        .await
        .unwrap();
    let rows = store.monitors_of("ses_a").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].persistent);
    assert_eq!(rows[0].last_alert, None);
    monitor
        .add(&store, "ses_a", "bob", true, false)
        .await
        .unwrap();
    assert_eq!(
        monitor.remove(&store, "ses_a", Some("bob")).await.unwrap(),
        1
    );
    assert_eq!(monitor.remove(&store, "ses_a", None).await.unwrap(), 1);
    assert_eq!(monitor.remove(&store, "ses_a", None).await.unwrap(), 0);
}
