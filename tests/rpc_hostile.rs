//! The real agent binary fed 1,000 malformed or hostile frames: each gets the
//! right answer (or, for notifications and stray responses, none) and the
//! agent stays alive and useful, then exits cleanly on EOF.

// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use harness::agent::AgentProcess;
use serde_json::{Value, json};

fn agent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_opencode-mattermost"))
}

/// A frame and the error code it must earn: `Some((id, code))` for frames
/// that are answered, `None` for frames that must get no answer.
struct Case {
    bytes: Vec<u8>,
    expect: Option<(Value, i64)>,
}

/// Deterministic pseudo-random numbers (no dependency, reproducible runs).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn case(n: usize, rng: &mut Lcg) -> Case {
    let id = json!(format!("h{n}"));
    let frame = |v: Value| v.to_string().into_bytes();
    match rng.next() % 14 {
        0 => Case {
            bytes: b"{\"jsonrpc\":\"2.0\",\"id\":1,".to_vec(),
            expect: Some((Value::Null, -32700)),
        },
        1 => Case {
            bytes: vec![0xff, 0x00, 0xfe, b'{'],
            expect: Some((Value::Null, -32700)),
        },
        2 => Case {
            // Deeper than serde_json's recursion limit: a parse error, no stack overflow.
            bytes: format!("{}1{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
            expect: Some((Value::Null, -32700)),
        },
        3 => Case {
            bytes: format!("{}1{}", "{\"a\":".repeat(3000), "}".repeat(3000)).into_bytes(),
            expect: Some((Value::Null, -32700)),
        },
        4 => Case {
            bytes: frame(
                json!({"jsonrpc": "2.0", "id": id, "method": format!("no/such/method/{n}")}),
            ),
            expect: Some((id, -32601)),
        },
        5 => Case {
            bytes: frame(json!({"jsonrpc": "2.0", "id": id, "method": 12})),
            expect: Some((id, -32600)),
        },
        6 => Case {
            bytes: frame(json!({"jsonrpc": "2.0", "id": {"nested": true}, "method": "tools/list"})),
            expect: Some((Value::Null, -32600)),
        },
        7 => Case {
            bytes: frame(
                json!({"jsonrpc": "2.0", "id": format!("agent-{n}"), "result": {"status": 200}}),
            ),
            expect: None,
        },
        8 => Case {
            bytes: frame(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                                "params": {"name": 42, "arguments": "x"}})),
            expect: Some((id, -32602)),
        },
        9 => Case {
            bytes: frame(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                                "params": {"name": "rm_rf_slash", "arguments": {}}})),
            expect: Some((id, -32003)),
        },
        10 => Case {
            bytes: frame(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                                "params": {"name": "mattermost_status", "arguments": {"json": "yes", "evil": 1}}})),
            expect: Some((id, -32602)),
        },
        11 => Case {
            bytes: frame(
                json!({"jsonrpc": "2.0", "method": "opencode/event", "params": {"event": rng.next()}}),
            ),
            expect: None,
        },
        12 => Case {
            bytes: frame(json!({"jsonrpc": "1.0", "id": id, "method": "tools/list"})),
            expect: Some((id, -32600)),
        },
        _ => Case {
            bytes: frame(
                json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": "scalar"}),
            ),
            expect: Some((id, -32600)),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_hostile_frames_are_each_answered_correctly() {
    // Nobody answers the agent's opencode/fetch here: keep its wait short.
    let mut agent =
        AgentProcess::spawn(&agent_bin(), &[("OPENCODE_MM_FETCH_TIMEOUT", "200")]).unwrap();
    agent.initialize("/tmp").await.unwrap();

    let mut rng = Lcg(0x5eed);
    let mut by_id: HashMap<String, i64> = HashMap::new();
    let mut null_codes: HashMap<i64, usize> = HashMap::new();
    let mut expected_answers = 0usize;
    let mut cases: Vec<Case> = (0..997).map(|n| case(n, &mut rng)).collect();
    // Three lines above the 16 MiB cap, answered with -32600 and skipped.
    for _ in 0..3 {
        let mut huge =
            b"{\"jsonrpc\":\"2.0\",\"id\":\"huge\",\"method\":\"x\",\"params\":[\"".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 17 * 1024 * 1024));
        huge.extend_from_slice(b"\"]}");
        cases.push(Case {
            bytes: huge,
            expect: Some((Value::Null, -32600)),
        });
    }
    assert_eq!(cases.len(), 1000);
    for c in &cases {
        match &c.expect {
            Some((Value::Null, code)) => *null_codes.entry(*code).or_default() += 1,
            Some((id, code)) => {
                by_id.insert(id.as_str().unwrap().to_owned(), *code);
            }
            None => {}
        }
        if c.expect.is_some() {
            expected_answers += 1;
        }
    }

    // Write and read concurrently: the agent answers while we still send.
    let frames: Vec<Vec<u8>> = cases.into_iter().map(|c| c.bytes).collect();
    let mut stdin = agent.take_stdin().unwrap();
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        for bytes in frames {
            stdin.write_all(&bytes).await.unwrap();
            stdin.write_all(b"\n").await.unwrap();
        }
        stdin.flush().await.unwrap();
        stdin
    });
    let mut answers = Vec::new();
    while answers.len() < expected_answers {
        answers.push(agent.recv(Duration::from_secs(30)).await.unwrap());
    }
    agent.put_stdin(writer.await.unwrap());

    let mut seen_null: HashMap<i64, usize> = HashMap::new();
    for a in &answers {
        assert_eq!(a["jsonrpc"], "2.0", "{a}");
        let code = a["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("not an error: {a}"));
        assert!(
            !a["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{a}"
        );
        match &a["id"] {
            Value::Null => *seen_null.entry(code).or_default() += 1,
            Value::String(id) => {
                let want = by_id
                    .remove(id)
                    .unwrap_or_else(|| panic!("unexpected or repeated answer {a}"));
                assert_eq!(code, want, "{a}");
            }
            other => panic!("odd id {other}"),
        }
    }
    assert!(by_id.is_empty(), "unanswered: {by_id:?}");
    assert_eq!(seen_null, null_codes);

    // Still alive and useful. Before its answer, the agent may only ask the
    // shim (`opencode/fetch`, unanswered here): no stray frame.
    agent
        .send(
            &json!({"jsonrpc": "2.0", "id": "status", "method": "tools/call",
                      "params": {"name": "mattermost_status", "arguments": {"json": true}}}),
        )
        .await
        .unwrap();
    let r = loop {
        let f = agent.recv(Duration::from_secs(30)).await.unwrap();
        if f["method"] == "opencode/fetch" {
            continue;
        }
        assert_eq!(f["id"], "status", "a stray frame: {f}");
        break f;
    };
    let report: Value = serde_json::from_str(r["result"]["output"].as_str().unwrap()).unwrap();
    assert_eq!(report["mattermost"]["state"], "not connected");

    // Nothing more after it: everything the agent wrote until it exited.
    let (status, rest) = agent.close_draining().await.unwrap();
    assert!(rest.is_empty(), "stray frames: {rest:#?}");
    assert!(status.success(), "agent exited with {status}");
}

#[tokio::test]
async fn calls_before_initialize_are_refused_and_eof_exits_cleanly() {
    let mut agent = AgentProcess::spawn(&agent_bin(), &[]).unwrap();
    let r = agent.request("tools/list", json!({})).await.unwrap();
    assert_eq!(r["error"]["code"], -32002, "{r}");
    let r = agent
        .request("initialize", json!({"protocolVersion": 99}))
        .await
        .unwrap();
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("protocol 99")
    );
    agent.initialize("/tmp").await.unwrap();
    let r = agent.request("tools/list", json!({})).await.unwrap();
    let names: Vec<&str> = r["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"mattermost_status"), "{names:?}");
    let status = agent.close().await.unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn status_tool_fails_soft_when_the_shim_never_answers_fetch() {
    // This "shim" never answers opencode/fetch: status must still come back
    // (after the fetch timeout would be too slow, so the agent gets a short one).
    let mut agent =
        AgentProcess::spawn(&agent_bin(), &[("OPENCODE_MM_FETCH_TIMEOUT", "300")]).unwrap();
    agent.initialize("/tmp").await.unwrap();
    agent
        .send(&json!({"jsonrpc": "2.0", "id": "s", "method": "tools/call",
                      "params": {"name": "mattermost_status", "arguments": {}}}))
        .await
        .unwrap();
    let mut fetches = 0;
    let answer = loop {
        let f = agent.recv(Duration::from_secs(10)).await.unwrap();
        if f["method"] == "opencode/fetch" {
            fetches += 1;
            continue;
        }
        break f;
    };
    assert!(fetches >= 1);
    let text = answer["result"]["output"].as_str().unwrap();
    assert!(text.contains("OpenCode sessions: unavailable"), "{text}");
    assert!(text.contains("did not answer `opencode/fetch`"), "{text}");
}
