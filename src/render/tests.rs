//! Turn behaviour end to end: events in, post texts out.

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use super::*;
use crate::opencode::events::Event;
use crate::opencode::message::MessageWithParts;

const SES: &str = "ses_1";
const USER: &str = "msg_user";
/// Unix ms the turn starts at; event timestamps are relative to it.
const T0: f64 = 1_700_000_000_000.0;

fn event(kind: &str, properties: Value) -> Event {
    Event::from_value(&json!({"type": kind, "properties": properties}))
}

fn assistant(id: &str, extra: Value) -> Event {
    let mut info = json!({"id": id, "sessionID": SES, "role": "assistant", "parentID": USER,
        "modelID": "big-model", "providerID": "acme", "time": {"created": T0}});
    if let (Value::Object(info), Value::Object(extra)) = (&mut info, extra) {
        info.extend(extra);
    }
    event("message.updated", json!({"info": info}))
}

fn text(msg: &str, id: &str, text: &str) -> Event {
    event(
        "message.part.updated",
        json!({"part": {"id": id, "sessionID": SES, "messageID": msg, "type": "text", "text": text}}),
    )
}

fn delta(msg: &str, id: &str, field: &str, delta: &str) -> Event {
    event(
        "message.part.delta",
        json!({"sessionID": SES, "messageID": msg, "partID": id, "field": field, "delta": delta}),
    )
}

fn tool(msg: &str, id: &str, name: &str, state: Value) -> Event {
    event(
        "message.part.updated",
        json!({"part": {"id": id, "sessionID": SES, "messageID": msg, "type": "tool",
                        "tool": name, "callID": "call", "state": state}}),
    )
}

fn turn() -> Turn {
    Turn::new(SES, USER, T0)
}

fn feed(turn: &mut Turn, events: &[Event]) {
    for (i, e) in events.iter().enumerate() {
        turn.apply(e, T0 + i as f64);
    }
}

#[test]
fn text_accumulates_across_steps_and_tool_calls() {
    let mut t = turn();
    assert!(!t.has_started());
    assert!(t.apply(&assistant("msg_a1", json!({})), T0));
    assert!(t.has_started());
    assert!(t.apply(&text("msg_a1", "prt_1", ""), T0));
    assert!(t.apply(&delta("msg_a1", "prt_1", "text", "Let me "), T0));
    assert!(t.apply(&delta("msg_a1", "prt_1", "text", "look."), T0));
    assert_eq!(t.response_text(), "Let me look.");
    feed(
        &mut t,
        &[
            tool(
                "msg_a1",
                "prt_2",
                "bash",
                json!({"status": "completed", "input": {"command": "ls"}, "title": "ls",
                       "output": "a", "time": {"start": T0, "end": T0 + 400.0}}),
            ),
            assistant("msg_a2", json!({})),
            delta("msg_a2", "prt_3", "text", "Found "),
            delta("msg_a2", "prt_3", "text", "it."),
        ],
    );
    assert_eq!(t.response_text(), "Let me look.\n\nFound it.");
    // The final update is authoritative, replacing what deltas built.
    t.apply(&text("msg_a2", "prt_3", "Found it: a."), T0);
    assert_eq!(t.response_text(), "Let me look.\n\nFound it: a.");
    assert_eq!(t.summary().tools, 1);
}

#[test]
fn parts_before_their_message_are_kept_until_it_is_adopted() {
    let mut t = turn();
    assert!(!t.apply(&delta("msg_a1", "prt_1", "text", "Early "), T0));
    assert!(!t.apply(&delta("msg_a1", "prt_1", "text", "bird."), T0));
    assert_eq!(t.response_text(), "");
    assert!(t.apply(&assistant("msg_a1", json!({})), T0));
    assert_eq!(t.response_text(), "Early bird.");
}

#[test]
fn messages_sort_by_id_and_parts_by_id() {
    let mut t = turn();
    feed(
        &mut t,
        &[
            assistant("msg_b", json!({})),
            assistant("msg_a", json!({})),
            text("msg_b", "prt_2", "four"),
            text("msg_b", "prt_1", "three"),
            text("msg_a", "prt_9", "two"),
            text("msg_a", "prt_8", "one"),
        ],
    );
    assert_eq!(t.response_text(), "one\n\ntwo\n\nthree\n\nfour");
}

#[test]
fn other_sessions_turns_and_users_are_ignored() {
    let mut t = turn();
    let other_session = Event::from_value(&json!({"type": "message.part.delta",
        "properties": {"sessionID": "ses_2", "messageID": "msg_a1", "partID": "p",
                       "field": "text", "delta": "nope"}}));
    let other_turn = event(
        "message.updated",
        json!({"info": {"id": "msg_x", "sessionID": SES, "role": "assistant", "parentID": "msg_other"}}),
    );
    let user_message = event(
        "message.updated",
        json!({"info": {"id": USER, "sessionID": SES, "role": "user"}}),
    );
    for e in [
        other_session,
        other_turn,
        user_message,
        text(USER, "prt_u", "the prompt"),
        text("msg_x", "prt_x", "another turn"),
    ] {
        assert!(!t.apply(&e, T0), "{e:?}");
    }
    t.apply(&assistant("msg_a1", json!({})), T0);
    t.apply(&text("msg_a1", "prt_1", "mine"), T0);
    assert_eq!(t.response_text(), "mine");
    assert!(!t.apply(&text("msg_x", "prt_x2", "late"), T0));
}

#[test]
fn odd_input_never_panics_or_leaks_into_the_reply() {
    let mut t = turn();
    let odd = [
        delta("msg_a1", "prt_r", "reasoning", "thinking"),
        delta("", "prt_1", "text", "no message"),
        delta("msg_a1", "", "text", "no part id"),
        event(
            "message.part.updated",
            json!({"part": {"id": "prt_h", "sessionID": SES, "messageID": "msg_a1", "type": "hologram"}}),
        ),
        event(
            "message.part.updated",
            json!({"part": {"id": "prt_s", "sessionID": SES, "messageID": "msg_a1", "type": "text",
                            "text": "injected", "synthetic": true}}),
        ),
        event(
            "message.part.updated",
            json!({"part": {"id": "prt_i", "sessionID": SES, "messageID": "msg_a1", "type": "text",
                            "text": "ignored", "ignored": true}}),
        ),
        event(
            "message.part.updated",
            json!({"part": {"id": "prt_t", "sessionID": SES, "messageID": "msg_a1", "type": "tool",
                            "tool": "bash", "state": "garbage"}}),
        ),
        delta("msg_a1", "prt_t", "text", "into a tool"),
        delta("msg_a1", "prt_s", "text", " more"),
        event(
            "message.updated",
            json!({"info": {"id": "", "sessionID": SES, "role": "assistant", "parentID": USER}}),
        ),
        event(
            "session.status",
            json!({"sessionID": SES, "status": {"type": "weird"}}),
        ),
        event("session.status", json!({"sessionID": SES, "status": 5})),
        event(
            "todo.updated",
            json!({"sessionID": SES, "todos": [{"weird": 1}]}),
        ),
        event("session.error", json!({"sessionID": SES})),
        event("session.idle", json!({"sessionID": SES})),
        Event::from_value(&json!(null)),
    ];
    feed(&mut t, &odd);
    t.apply(&assistant("msg_a1", json!({})), T0);
    assert_eq!(t.response_text(), "no part id");
    let posts = t.render(&Limits::new(500), T0 + 1_000.0);
    assert_eq!(posts.len(), 1);
}

#[test]
fn many_messages_of_other_turns_do_not_pile_up() {
    let mut t = turn();
    for i in 0..1_000 {
        t.apply(&text(&format!("msg_{i:04}"), "prt_1", "x"), T0);
    }
    t.apply(&assistant("msg_0999", json!({})), T0);
    assert_eq!(t.response_text(), "x");
    t.apply(&assistant("msg_0000", json!({})), T0);
    assert_eq!(t.response_text(), "x", "long-evicted parts are gone");
}

fn live_turn() -> Turn {
    let mut t = turn();
    feed(
        &mut t,
        &[
            assistant("msg_a1", json!({})),
            text("msg_a1", "prt_1", "I'll check the *build* first."),
            tool(
                "msg_a1",
                "prt_2",
                "read",
                json!({"status": "completed", "input": {"filePath": "/src/main.rs"},
                       "title": "src/main.rs", "output": "…",
                       "time": {"start": T0 + 1_000.0, "end": T0 + 1_100.0}}),
            ),
            tool(
                "msg_a1",
                "prt_3",
                "grep",
                json!({"status": "error", "input": {"pattern": "fn  main"},
                       "error": "\nNo such file: src/lib.rs\nmore detail",
                       "time": {"start": T0 + 1_200.0, "end": T0 + 1_300.0}}),
            ),
            tool(
                "msg_a1",
                "prt_4",
                "bash",
                json!({"status": "running", "input": {"command": "cargo build\n  --release"},
                       "metadata": {"output": "   Compiling a\n\u{1b}[32m   Compiling b\u{1b}[0m\n```\n10%\r55%\n"},
                       "time": {"start": T0 + 2_000.0}}),
            ),
            event(
                "todo.updated",
                json!({"sessionID": SES, "todos": [
                    {"content": "Read the code", "status": "completed", "priority": "high"},
                    {"content": "Build it", "status": "in_progress", "priority": "high"},
                    {"content": "Fix_the_tests", "status": "pending", "priority": "low"},
                    {"content": "Dance", "status": "cancelled", "priority": "low"}]}),
            ),
        ],
    );
    t
}

#[test]
fn live_post_shows_status_tools_shell_and_todos() {
    let t = live_turn();
    let posts = t.render(&Limits::default(), T0 + 12_000.0);
    let want = "I'll check the *build* first.\n\n---\n\
        🔧 Running `bash`… 10s\n\
        ✅ `read` src/main.rs · 0.1s\n\
        ❌ `grep` No such file: src/lib.rs · 0.1s\n\
        ⏳ `bash` cargo build --release · 10s…\n\
        \n\
        ```\n   Compiling a\n   Compiling b\n\u{200B}```\n55%\n```\n\
        \n\
        📋 Tasks 1/3\n\
        ✅ ~~Read the code~~\n\
        🔄 Build it\n\
        ⏳ Fix\\_the\\_tests\n\
        ❌ ~~Dance~~";
    assert_eq!(posts, [want]);
}

#[test]
fn final_post_has_a_one_line_footer() {
    let mut t = live_turn();
    feed(
        &mut t,
        &[
            tool(
                "msg_a1",
                "prt_4",
                "bash",
                json!({"status": "completed", "input": {"command": "cargo build"},
                       "title": "cargo build", "output": "ok",
                       "time": {"start": T0 + 2_000.0, "end": T0 + 30_000.0}}),
            ),
            assistant(
                "msg_a1",
                json!({"cost": 0.0123, "finish": "tool-calls",
                       "tokens": {"input": 10_000, "output": 2_000, "reasoning": 300,
                                  "cache": {"read": 5, "write": 0}},
                       "time": {"created": T0, "completed": T0 + 31_000.0}}),
            ),
            assistant(
                "msg_a2",
                json!({"cost": 0.0, "modelID": "", "providerID": ""}),
            ),
            text("msg_a2", "prt_5", "Built fine."),
        ],
    );
    assert!(!t.looks_complete());
    t.finish(Outcome::Completed, T0 + 63_000.0);
    let posts = t.render(&Limits::default(), T0 + 64_000.0);
    let want = "I'll check the *build* first.\n\nBuilt fine.\n\n---\n\
        ✅ Done in 1m 3s · 3 tools (`read`, `grep`, `bash`) · $0.012 · 12.3K tokens · acme/big-model\n\
        📋 Tasks 1/3";
    assert_eq!(posts, [want]);
    assert_eq!(t.outcome(), Some(&Outcome::Completed));
    let s = t.summary();
    assert_eq!(s.model.as_deref(), Some("acme/big-model"));
    assert_eq!(s.tokens.cache.read, 5.0);
    assert_eq!(s.elapsed_ms, 63_000.0);
}

#[test]
fn footers_for_stop_failure_and_no_text() {
    let mut t = turn();
    t.apply(&assistant("msg_a1", json!({})), T0);
    t.finish(Outcome::Aborted, T0 + 4_000.0);
    assert_eq!(
        t.render(&Limits::default(), T0),
        ["🛑 Stopped after 4.0s · acme/big-model · _(no text reply)_"]
    );

    let mut t = turn();
    t.apply(&text("msg_a1", "prt_1", "Partial"), T0);
    t.apply(&assistant("msg_a1", json!({})), T0);
    let error = json!({"sessionID": SES,
        "error": {"name": "APIError", "data": {"message": "Rate limited\n*try* later"}}});
    assert!(t.apply(&event("session.error", error), T0));
    assert_eq!(t.error().as_deref(), Some("Rate limited\n*try* later"));
    t.finish(Outcome::Failed(String::new()), T0 + 12_000.0);
    assert_eq!(
        t.render(&Limits::default(), T0),
        ["Partial\n\n---\n❌ Failed after 12s · acme/big-model: Rate limited \\*try\\* later"]
    );

    let mut t = turn();
    t.finish(Outcome::Failed("x".repeat(2_000)), T0);
    let footer = &t.render(&Limits::default(), T0)[0];
    assert!(
        footer.ends_with("x…") && footer.chars().count() < 560,
        "{footer}"
    );
}

#[test]
fn status_line_follows_retry_waiting_and_processing() {
    let mut t = turn();
    let status = |t: &Turn, now: f64| t.render(&Limits::default(), now)[0].clone();
    assert_eq!(status(&t, T0 + 12_400.0), "💻 Processing… 12s");
    let retry = json!({"sessionID": SES, "status": {"type": "retry", "attempt": 2,
        "message": "Overloaded", "next": T0 + 20_000.0}});
    assert!(t.apply(&event("session.status", retry.clone()), T0));
    assert!(!t.apply(&event("session.status", retry), T0));
    assert_eq!(
        status(&t, T0 + 15_000.0),
        "🔄 Retrying (attempt 2): Overloaded · next in 5.0s"
    );
    t.set_waiting(Some("permission".into()));
    assert_eq!(status(&t, T0), "⏸️ Waiting for permission");
    t.set_waiting(None);
    t.apply(
        &event(
            "session.status",
            json!({"sessionID": SES, "status": {"type": "busy"}}),
        ),
        T0,
    );
    assert_eq!(status(&t, T0 + 61_000.0), "💻 Processing… 1m 1s");
}

#[test]
fn many_tools_show_the_last_eight() {
    let mut t = turn();
    t.apply(&assistant("msg_a1", json!({})), T0);
    for i in 0..11 {
        t.apply(
            &tool(
                "msg_a1",
                &format!("prt_{i:02}"),
                "bash",
                json!({"status": "completed", "input": {"command": format!("step {i}")},
                       "time": {"start": T0, "end": T0 + 100.0}}),
            ),
            T0,
        );
    }
    let post = &t.render(&Limits::default(), T0 + 1_000.0)[0];
    let lines: Vec<&str> = post.lines().collect();
    assert_eq!(lines[1], "_…3 earlier tools_");
    assert_eq!(lines[2], "✅ `bash` step 3 · 0.1s");
    assert_eq!(lines.len(), 10);
}

#[test]
fn a_long_reply_rolls_over_and_the_final_text_is_exact() {
    let mut t = turn();
    t.apply(&assistant("msg_a1", json!({})), T0);
    let paragraph = "All work and no play makes a dull bot. ".repeat(20);
    let mut sent = String::new();
    for i in 0..60 {
        let chunk = format!("{paragraph}{i}\n\n");
        sent.push_str(&chunk);
        t.apply(&delta("msg_a1", "prt_1", "text", &chunk), T0);
    }
    let limits = Limits {
        post_chars: 4_000,
        meta_chars: 500,
    };
    let live = t.render(&limits, T0 + 5_000.0);
    assert!(live.len() > 10);
    t.finish(Outcome::Completed, T0 + 6_000.0);
    let done = t.render(&limits, T0 + 6_000.0);
    assert_eq!(live.len(), done.len());
    assert_eq!(live[..live.len() - 1], done[..done.len() - 1]);
    let mut rebuilt: String = done
        .iter()
        .map(|p| p.strip_suffix("\n\n_(continued below)_").unwrap_or(p))
        .collect();
    let footer = "\n\n---\n✅ Done in 6.0s · acme/big-model";
    assert!(rebuilt.ends_with(footer), "{rebuilt}");
    rebuilt.truncate(rebuilt.len() - footer.len());
    assert_eq!(rebuilt, sent);
    assert!(done.iter().all(|p| p.chars().count() <= 4_000));
}

#[test]
fn load_keeps_this_turns_messages_and_tells_completion() {
    let list: Vec<MessageWithParts> = serde_json::from_value(json!([
        {"info": {"id": USER, "sessionID": SES, "role": "user"},
         "parts": [{"id": "prt_0", "type": "text", "text": "question"}]},
        {"info": {"id": "msg_a1", "sessionID": SES, "role": "assistant", "parentID": USER,
                  "modelID": "m", "providerID": "p", "finish": "tool-calls",
                  "time": {"created": T0, "completed": T0 + 1.0}},
         "parts": [{"id": "prt_1", "type": "text", "text": "One"},
                   {"id": "prt_2", "type": "step-finish", "cost": 0.5,
                    "tokens": {"input": 100, "output": 20}}]},
        {"info": {"id": "msg_a2", "sessionID": SES, "role": "assistant", "parentID": USER,
                  "modelID": "m", "providerID": "p", "finish": "stop", "cost": 0.25,
                  "tokens": {"input": 200, "output": 30},
                  "time": {"created": T0 + 2.0, "completed": T0 + 3.0}},
         "parts": [{"id": "prt_3", "type": "text", "text": "Two"}]},
        {"info": {"id": "msg_z", "sessionID": SES, "role": "assistant", "parentID": "msg_other",
                  "time": {"created": T0 + 4.0}},
         "parts": [{"id": "prt_4", "type": "text", "text": "other turn"}]}
    ]))
    .unwrap();
    let mut t = turn();
    t.apply(&delta("msg_stale", "prt_9", "text", "stale"), T0);
    t.load(&list[..2], T0 + 10.0);
    assert!(t.has_started());
    assert!(!t.looks_complete(), "stopped for tool calls");
    t.load(&list, T0 + 10.0);
    assert!(t.looks_complete());
    assert_eq!(t.response_text(), "One\n\nTwo");
    let s = t.summary();
    assert_eq!(s.cost, 0.75);
    assert_eq!(s.tokens.total(), 350.0);
    assert_eq!(s.model.as_deref(), Some("p/m"));
    assert_eq!(s.elapsed_ms, 10.0);
}

#[test]
fn outcome_starts_empty() {
    let t = turn();
    assert_eq!(t.outcome(), None);
    assert_eq!(t.session_id(), SES);
    assert_eq!(t.user_message_id(), USER);
    assert!(!t.looks_complete());
    assert_eq!(t.error(), None);
}
