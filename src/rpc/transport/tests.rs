use std::sync::Mutex;

use jsonrpsee::RpcModule;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines};
use tokio::task::JoinHandle;

use super::*;
use crate::rpc::PeerError;

#[derive(Default)]
struct Recorder(Mutex<Vec<(String, Value)>>);

impl NotificationSink for Recorder {
    fn notification(&self, method: &str, params: Value) {
        self.0.lock().unwrap().push((method.to_owned(), params));
    }
}

struct Harness {
    to_agent: DuplexStream,
    from_agent: Lines<BufReader<DuplexStream>>,
    peer: Peer,
    sink: Arc<Recorder>,
    served: JoinHandle<std::io::Result<Shutdown>>,
}

impl Harness {
    fn start() -> Self {
        let (to_agent, agent_in) = tokio::io::duplex(1 << 20);
        let (agent_out, from_agent) = tokio::io::duplex(1 << 20);
        let (peer, out_rx) = channel();
        let mut module = RpcModule::new(());
        module
            .register_method("echo", |params, _, _| params.parse::<Value>())
            .unwrap();
        module
            .register_async_method("slow", |_, _, _| async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                "done"
            })
            .unwrap();
        let sink = Arc::new(Recorder::default());
        let served = tokio::spawn(serve(
            BufReader::new(agent_in),
            agent_out,
            module,
            peer.clone(),
            out_rx,
            sink.clone(),
        ));
        Harness {
            to_agent,
            from_agent: BufReader::new(from_agent).lines(),
            peer,
            sink,
            served,
        }
    }

    async fn send(&mut self, line: &str) {
        self.to_agent.write_all(line.as_bytes()).await.unwrap();
        self.to_agent.write_all(b"\n").await.unwrap();
    }

    async fn recv(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(5), self.from_agent.next_line())
            .await
            .expect("no frame in time")
            .unwrap()
            .expect("output closed");
        serde_json::from_str(&line).unwrap()
    }
}

#[tokio::test]
async fn requests_are_dispatched_through_the_rpc_module() {
    let mut h = Harness::start();
    h.send(r#"{"jsonrpc":"2.0","id":7,"method":"echo","params":{"a":1}}"#)
        .await;
    assert_eq!(
        h.recv().await,
        json!({"jsonrpc":"2.0","id":7,"result":{"a":1}})
    );
    h.send(r#"{"jsonrpc":"2.0","id":"x","method":"missing"}"#)
        .await;
    let r = h.recv().await;
    assert_eq!(r["id"], "x");
    assert_eq!(r["error"]["code"], code::METHOD_NOT_FOUND);
}

#[tokio::test]
async fn a_slow_request_does_not_block_the_next() {
    let mut h = Harness::start();
    h.send(r#"{"jsonrpc":"2.0","id":1,"method":"slow"}"#).await;
    h.send(r#"{"jsonrpc":"2.0","id":2,"method":"echo","params":[1]}"#)
        .await;
    assert_eq!(h.recv().await["id"], 2);
    assert_eq!(h.recv().await["id"], 1);
}

#[tokio::test]
async fn malformed_frames_get_standard_errors_and_the_loop_survives() {
    let mut h = Harness::start();
    let cases: &[(&str, i32, Value)] = &[
        ("{not json", code::PARSE_ERROR, Value::Null),
        ("[]", code::INVALID_REQUEST, Value::Null),
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"echo"}]"#,
            code::INVALID_REQUEST,
            Value::Null,
        ),
        ("42", code::INVALID_REQUEST, Value::Null),
        (r#""str""#, code::INVALID_REQUEST, Value::Null),
        (
            r#"{"id":1,"method":"echo"}"#,
            code::INVALID_REQUEST,
            json!(1),
        ),
        (
            r#"{"jsonrpc":"1.0","id":2,"method":"echo"}"#,
            code::INVALID_REQUEST,
            json!(2),
        ),
        (
            r#"{"jsonrpc":"2.0","id":{"a":1},"method":"echo"}"#,
            code::INVALID_REQUEST,
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":3,"method":7}"#,
            code::INVALID_REQUEST,
            json!(3),
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"echo","params":5}"#,
            code::INVALID_REQUEST,
            json!(4),
        ),
        (r#"{"jsonrpc":"2.0"}"#, code::INVALID_REQUEST, Value::Null),
        (
            r#"{"jsonrpc":"2.0","id":5,"method":"nope"}"#,
            code::METHOD_NOT_FOUND,
            json!(5),
        ),
    ];
    for (line, code, id) in cases {
        h.send(line).await;
        let r = h.recv().await;
        assert_eq!(r["error"]["code"], *code, "{line} -> {r}");
        assert_eq!(r["id"], *id, "{line} -> {r}");
        assert_eq!(r["jsonrpc"], "2.0");
    }
    // Invalid UTF-8.
    h.to_agent.write_all(b"\xff\xfe{}\n").await.unwrap();
    assert_eq!(h.recv().await["error"]["code"], code::PARSE_ERROR);
    // Blank lines are skipped; the loop still answers.
    h.send("   ").await;
    h.send(r#"{"jsonrpc":"2.0","id":9,"method":"echo","params":[]}"#)
        .await;
    assert_eq!(h.recv().await["id"], 9);
}

#[tokio::test]
async fn an_oversized_line_is_refused_without_buffering_it() {
    let mut h = Harness::start();
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"echo","params":["{}"]}}"#,
        "x".repeat(MAX_LINE_BYTES + 10)
    );
    let (mut to_agent, placeholder) = tokio::io::duplex(1);
    std::mem::swap(&mut to_agent, &mut h.to_agent);
    let writer = tokio::spawn(async move {
        to_agent.write_all(huge.as_bytes()).await.unwrap();
        to_agent.write_all(b"\n").await.unwrap();
        to_agent
            .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"echo\",\"params\":[2]}\n")
            .await
            .unwrap();
        to_agent
    });
    let r = h.recv().await;
    assert_eq!(r["error"]["code"], code::INVALID_REQUEST);
    assert!(r["error"]["message"].as_str().unwrap().contains("exceeds"));
    assert_eq!(h.recv().await["result"], json!([2]));
    drop(writer.await.unwrap());
    drop(placeholder);
}

#[tokio::test]
async fn notifications_reach_the_sink_and_get_no_answer() {
    let mut h = Harness::start();
    h.send(r#"{"jsonrpc":"2.0","method":"opencode/event","params":{"event":{"type":"x"}}}"#)
        .await;
    h.send(r#"{"jsonrpc":"2.0","id":1,"method":"echo","params":[]}"#)
        .await;
    // The first frame out is the echo: the notification produced nothing.
    assert_eq!(h.recv().await["id"], 1);
    let seen = h.sink.0.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![("opencode/event".to_owned(), json!({"event":{"type":"x"}}))]
    );
}

#[tokio::test]
async fn agent_requests_round_trip_and_unknown_responses_are_dropped() {
    let mut h = Harness::start();
    let peer = h.peer.clone();
    let call = tokio::spawn(async move {
        peer.request::<_, Value>(
            "opencode/fetch",
            &json!({"path": "/session"}),
            Duration::from_secs(5),
        )
        .await
    });
    let req = h.recv().await;
    assert_eq!(req["method"], "opencode/fetch");
    let id = req["id"].clone();
    // A response to an id we never sent is ignored, not answered.
    h.send(r#"{"jsonrpc":"2.0","id":"agent-999","result":1}"#)
        .await;
    h.send(&json!({"jsonrpc":"2.0","id":id,"result":{"status":200}}).to_string())
        .await;
    assert_eq!(call.await.unwrap().unwrap(), json!({"status": 200}));

    let peer = h.peer.clone();
    let call = tokio::spawn(async move {
        peer.request::<_, Value>("opencode/fetch", &json!({}), Duration::from_secs(5))
            .await
    });
    let req = h.recv().await;
    h.send(
        &json!({"jsonrpc":"2.0","id":req["id"],"error":{"code":-32000,"message":"fetch failed"}})
            .to_string(),
    )
    .await;
    let err = call.await.unwrap().unwrap_err();
    assert!(
        matches!(err, PeerError::Remote { code: -32000, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_shim_that_never_answers_times_out_and_late_answers_are_harmless() {
    let mut h = Harness::start();
    let err = h
        .peer
        .request::<_, Value>("opencode/fetch", &json!({}), Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(err, PeerError::Timeout { .. }), "{err}");
    assert_eq!(h.peer.pending_count(), 0);
    let req = h.recv().await;
    h.send(&json!({"jsonrpc":"2.0","id":req["id"],"result":1}).to_string())
        .await;
    h.send(r#"{"jsonrpc":"2.0","id":3,"method":"echo","params":[]}"#)
        .await;
    assert_eq!(h.recv().await["id"], 3);
}

#[tokio::test]
async fn eof_shuts_down_cleanly_and_fails_pending_requests() {
    let h = Harness::start();
    let peer = h.peer.clone();
    let call = tokio::spawn(async move {
        peer.request::<_, Value>("opencode/fetch", &json!({}), Duration::from_secs(30))
            .await
    });
    tokio::task::yield_now().await;
    drop(h.to_agent);
    let reason = tokio::time::timeout(Duration::from_secs(5), h.served)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reason, Shutdown::Eof);
    let err = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, PeerError::Closed), "{err}");
    let err = h
        .peer
        .request::<_, Value>("x", &json!({}), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, PeerError::Closed));
}

#[tokio::test]
async fn exit_notification_stops_the_loop() {
    let mut h = Harness::start();
    h.send(r#"{"jsonrpc":"2.0","method":"exit"}"#).await;
    let reason = tokio::time::timeout(Duration::from_secs(5), h.served)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reason, Shutdown::Exit);
}
