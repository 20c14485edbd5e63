use std::sync::Mutex;

use super::*;

/// A scripted [`Fetch`]: records requests, answers with the queued responses.
struct Scripted {
    answers: Mutex<Vec<Result<HttpResponse, OpenCodeError>>>,
    seen: Mutex<Vec<HttpRequest>>,
}

impl Scripted {
    fn new(answers: Vec<Result<HttpResponse, OpenCodeError>>) -> Self {
        Self {
            answers: Mutex::new(answers),
            seen: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl Fetch for &Scripted {
    async fn fetch(&self, request: HttpRequest) -> Result<HttpResponse, OpenCodeError> {
        self.seen.lock().unwrap().push(request);
        self.answers.lock().unwrap().remove(0)
    }
}

fn ok(status: u16, body: &str) -> Result<HttpResponse, OpenCodeError> {
    Ok(HttpResponse {
        status,
        headers: BTreeMap::new(),
        body: body.as_bytes().to_vec(),
    })
}

#[tokio::test]
async fn list_sessions_sorts_newest_first_and_ignores_unknown_fields() {
    let s = Scripted::new(vec![ok(
        200,
        r#"[{"id":"ses_a","time":{"created":1,"updated":5},"new":1},
            {"id":"ses_b","slug":"neon-nebula","time":{"created":2,"updated":9}}]"#,
    )]);
    let client = Client::new(&s);
    let sessions = client.list_sessions().await.unwrap();
    let ids: Vec<&str> = sessions.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["ses_b", "ses_a"]);
    assert_eq!(sessions[0].short_id(), "neon-nebula");
    assert_eq!(sessions[1].short_id(), "ses_a");
    assert_eq!(s.seen.lock().unwrap()[0], HttpRequest::get("/session"));
}

#[tokio::test]
async fn get_session_maps_errors_clearly() {
    let s = Scripted::new(vec![
        ok(
            404,
            r#"{"name":"NotFoundError","data":{"message":"Session not found"}}"#,
        ),
        ok(500, r#"{"message":"boom"}"#),
        ok(200, "not json"),
        Err(OpenCodeError::Unreachable("shim gone".into())),
    ]);
    let client = Client::new(&s);
    let e = client.get_session("ses_x").await.unwrap_err();
    assert_eq!(e.to_string(), "OpenCode has no session `ses_x`");
    let e = client.get_session("ses_x").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "OpenCode answered GET /session/ses_x with HTTP 500: boom"
    );
    let e = client.get_session("ses_x").await.unwrap_err();
    assert!(matches!(e, OpenCodeError::Decode { .. }), "{e}");
    let e = client.get_session("ses_x").await.unwrap_err();
    assert!(e.to_string().contains("shim gone"));
}

#[tokio::test]
async fn hostile_ids_never_reach_the_api() {
    let s = Scripted::new(vec![]);
    let client = Client::new(&s);
    for id in [
        "",
        "../config",
        "ses_1/../../x",
        "ses 1",
        "a?b=c",
        &"x".repeat(500),
    ] {
        let e = client.get_session(id).await.unwrap_err();
        assert!(matches!(e, OpenCodeError::InvalidInput { .. }), "{id}: {e}");
    }
    assert!(s.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn prompt_async_sends_file_parts_after_the_text() {
    let s = Scripted::new(vec![ok(204, ""), ok(204, "")]);
    let client = Client::new(&s);
    let prompt = Prompt {
        message_id: "msg_1".into(),
        text: "look at this".into(),
        files: vec![FilePart {
            mime: "image/png".into(),
            url: "file:///tmp/x/ses_1/f1/shot.png".into(),
            filename: "shot.png".into(),
        }],
        ..Prompt::default()
    };
    client.prompt_async("ses_1", &prompt).await.unwrap();
    let plain = Prompt {
        message_id: "msg_2".into(),
        text: "no files".into(),
        ..Prompt::default()
    };
    client.prompt_async("ses_1", &plain).await.unwrap();
    let seen = s.seen.lock().unwrap();
    let body: serde_json::Value = serde_json::from_str(seen[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(seen[0].path, "/session/ses_1/prompt_async");
    assert_eq!(
        body["parts"],
        serde_json::json!([
            {"type": "text", "text": "look at this"},
            {"type": "file", "mime": "image/png", "url": "file:///tmp/x/ses_1/f1/shot.png",
             "filename": "shot.png"},
        ])
    );
    let body: serde_json::Value = serde_json::from_str(seen[1].body.as_deref().unwrap()).unwrap();
    assert_eq!(
        body["parts"],
        serde_json::json!([{"type": "text", "text": "no files"}])
    );
    assert!(body.get("model").is_none());
}

#[tokio::test]
async fn permission_and_question_answers_use_the_documented_bodies() {
    let s = Scripted::new(vec![
        ok(200, "true"),
        ok(200, "true"),
        ok(200, "true"),
        ok(
            404,
            r#"{"name":"PermissionNotFoundError","data":{"message":"gone"}}"#,
        ),
        ok(
            200,
            r#"[{"id":"per_1","sessionID":"ses_1","permission":"bash","patterns":["ls"],"always":["ls *"],"metadata":{}}]"#,
        ),
        ok(
            200,
            r#"[{"id":"que_1","sessionID":"ses_1","questions":[{"question":"Q","header":"H","options":[]}]}]"#,
        ),
    ]);
    let client = Client::new(&s);
    client
        .reply_permission("per_1", PermissionReply::Always)
        .await
        .unwrap();
    client
        .reply_question("que_1", &[vec!["A".into()], vec!["x".into(), "y".into()]])
        .await
        .unwrap();
    client.reject_question("que_2").await.unwrap();
    let gone = client
        .reply_permission("per_9", PermissionReply::Once)
        .await
        .unwrap_err();
    assert!(matches!(gone, OpenCodeError::NotFound { .. }), "{gone}");
    assert_eq!(
        client.pending_permissions().await.unwrap()[0].always,
        ["ls *"]
    );
    assert_eq!(
        client.pending_questions().await.unwrap()[0].questions[0].header,
        "H"
    );
    let seen = s.seen.lock().unwrap();
    assert_eq!(seen[0].path, "/permission/per_1/reply");
    assert_eq!(seen[0].body.as_deref(), Some(r#"{"reply":"always"}"#));
    assert_eq!(seen[1].path, "/question/que_1/reply");
    assert_eq!(
        seen[1].body.as_deref(),
        Some(r#"{"answers":[["A"],["x","y"]]}"#)
    );
    assert_eq!(seen[2].path, "/question/que_2/reject");
}

#[tokio::test]
async fn request_ids_cannot_steer_the_path() {
    let s = Scripted::new(Vec::new());
    let client = Client::new(&s);
    for bad in ["", "../session", "per_1/../../x", "per 1", "per_1?x=1"] {
        assert!(matches!(
            client.reply_permission(bad, PermissionReply::Once).await,
            Err(OpenCodeError::InvalidInput { .. })
        ));
        assert!(client.reject_question(bad).await.is_err());
        assert!(client.reply_question(bad, &[]).await.is_err());
    }
    assert!(s.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn prompt_wait_returns_the_reply_text_or_the_models_error() {
    let s = Scripted::new(vec![
        ok(
            200,
            r#"{"info":{"id":"msg_b","role":"assistant"},
                "parts":[{"type":"step-start"},{"type":"text","text":"Sum"},
                         {"type":"text","text":"mary","synthetic":false},
                         {"type":"text","text":" (hidden)","synthetic":true}]}"#,
        ),
        ok(
            200,
            r#"{"info":{"id":"msg_c","role":"assistant",
                        "error":{"name":"APIError","data":{"message":"rate limited"}}},
                "parts":[]}"#,
        ),
        ok(
            200,
            r#"{"info":{"id":"msg_d","role":"assistant"},"parts":[]}"#,
        ),
    ]);
    let client = Client::new(&s);
    let prompt = Prompt {
        message_id: "msg_a".into(),
        text: "summarise".into(),
        system: Some("be brief".into()),
        tools_off: true,
        model: ModelRef::parse("p/small"),
        ..Prompt::default()
    };
    assert_eq!(
        client.prompt_wait("ses_1", &prompt).await.unwrap(),
        "Summary"
    );
    let failed = client.prompt_wait("ses_1", &prompt).await.unwrap_err();
    assert!(failed.to_string().contains("rate limited"), "{failed}");
    let empty = client.prompt_wait("ses_1", &prompt).await.unwrap_err();
    assert!(matches!(empty, OpenCodeError::ModelFailed(_)), "{empty}");
    let seen = s.seen.lock().unwrap();
    assert_eq!(seen[0].path, "/session/ses_1/message");
    let body: serde_json::Value = serde_json::from_str(seen[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(body["system"], "be brief");
    assert_eq!(body["tools"], serde_json::json!({"*": false}));
    assert_eq!(body["model"]["modelID"], "small");
    assert!(body.get("noReply").is_none());
}

#[tokio::test]
async fn no_reply_prompts_say_so_and_deleting_checks_the_id() {
    let s = Scripted::new(vec![ok(204, ""), ok(200, "true")]);
    let client = Client::new(&s);
    let prompt = Prompt {
        message_id: "msg_a".into(),
        text: "context".into(),
        no_reply: true,
        ..Prompt::default()
    };
    client.prompt_async("ses_1", &prompt).await.unwrap();
    client.delete_session("ses_1").await.unwrap();
    let bad = client.delete_session("../config").await.unwrap_err();
    assert!(matches!(bad, OpenCodeError::InvalidInput { .. }));
    let seen = s.seen.lock().unwrap();
    let body: serde_json::Value = serde_json::from_str(seen[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(body["noReply"], true);
    assert_eq!(seen[1].method, "DELETE");
    assert_eq!(seen[1].path, "/session/ses_1");
    assert_eq!(seen.len(), 2, "a hostile id never reaches OpenCode");
}

#[tokio::test]
async fn small_model_reads_opencodes_config() {
    let s = Scripted::new(vec![
        ok(200, r#"{"model":"p/big","small_model":"p/tiny-1"}"#),
        ok(200, r#"{"model":"p/big"}"#),
        ok(200, r#"{"small_model":"no-slash"}"#),
    ]);
    let client = Client::new(&s);
    assert_eq!(
        client.small_model().await.unwrap(),
        ModelRef::parse("p/tiny-1")
    );
    assert_eq!(client.small_model().await.unwrap(), None);
    assert_eq!(client.small_model().await.unwrap(), None, "malformed: none");
    assert_eq!(s.seen.lock().unwrap()[0], HttpRequest::get("/config"));
}
