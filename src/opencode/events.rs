//! OpenCode bus events, decoded tolerantly.
//!
//! Events arrive as `{type, properties}`. Known types decode into typed
//! variants; unknown types, and known types whose properties do not match
//! what we expect, are kept as [`Event::Other`] with the reason, never an
//! error: a newer OpenCode must not break the agent.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Session;
use super::message::{MessageInfo, Part, Todo};

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    SessionCreated(SessionInfo),
    SessionUpdated(SessionInfo),
    SessionDeleted(SessionInfo),
    SessionIdle(SessionRef),
    SessionStatus(SessionStatus),
    SessionError(SessionError),
    MessagePartDelta(PartDelta),
    MessageUpdated(MessageUpdated),
    MessagePartUpdated(PartUpdated),
    TodoUpdated(TodoUpdated),
    PermissionAsked(PermissionAsked),
    PermissionReplied(PermissionReplied),
    QuestionAsked(QuestionAsked),
    QuestionReplied(QuestionReplied),
    QuestionRejected(QuestionRejected),
    /// Any other type, or a known type that did not decode (see `problem`).
    Other {
        kind: String,
        problem: Option<String>,
    },
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SessionInfo {
    pub info: Session,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SessionRef {
    #[serde(rename = "sessionID")]
    pub session_id: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SessionStatus {
    #[serde(rename = "sessionID")]
    pub session_id: String,
    /// `{type: "idle" | "busy" | "retry", ...}`; kept open.
    pub status: Value,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SessionError {
    #[serde(rename = "sessionID")]
    pub session_id: Option<String>,
    pub error: Value,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct PartDelta {
    #[serde(rename = "sessionID")]
    pub session_id: String,
    #[serde(rename = "messageID")]
    pub message_id: String,
    #[serde(rename = "partID")]
    pub part_id: String,
    pub field: String,
    pub delta: String,
}

/// `message.updated`: a message's info (not its parts) changed.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct MessageUpdated {
    pub info: MessageInfo,
}

/// `message.part.updated`: the authoritative state of one part.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct PartUpdated {
    pub part: Part,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct TodoUpdated {
    #[serde(rename = "sessionID")]
    pub session_id: String,
    pub todos: Vec<Todo>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct PermissionAsked {
    pub id: String,
    #[serde(rename = "sessionID")]
    pub session_id: String,
    pub permission: String,
    pub patterns: Vec<String>,
    pub always: Vec<String>,
    pub metadata: Value,
}

/// `permission.replied`: someone (us, the TUI, another client) answered.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct PermissionReplied {
    #[serde(rename = "sessionID")]
    pub session_id: String,
    #[serde(rename = "requestID")]
    pub request_id: String,
    /// `once`, `always` or `reject`.
    pub reply: String,
}

/// `question.asked`: the agent's `question` tool waits for answers, one per
/// question, in order.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct QuestionAsked {
    pub id: String,
    #[serde(rename = "sessionID")]
    pub session_id: String,
    pub questions: Vec<QuestionInfo>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct QuestionInfo {
    pub question: String,
    /// A very short label.
    pub header: String,
    pub options: Vec<QuestionOption>,
    /// Several options may be picked.
    pub multiple: bool,
    /// A typed answer is allowed. OpenCode treats a missing flag as yes.
    pub custom: Option<bool>,
}

impl QuestionInfo {
    pub fn allows_custom(&self) -> bool {
        self.custom.unwrap_or(true)
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct QuestionOption {
    pub label: String,
    pub description: String,
}

/// `question.replied`: the answers, each a list of labels or typed text.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct QuestionReplied {
    #[serde(rename = "sessionID")]
    pub session_id: String,
    #[serde(rename = "requestID")]
    pub request_id: String,
    pub answers: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct QuestionRejected {
    #[serde(rename = "sessionID")]
    pub session_id: String,
    #[serde(rename = "requestID")]
    pub request_id: String,
}

impl Event {
    /// Decode one event. Never fails.
    pub fn from_value(value: &Value) -> Event {
        let Some(kind) = value.get("type").and_then(Value::as_str) else {
            return Event::Other {
                kind: String::new(),
                problem: Some("event has no string `type`".into()),
            };
        };
        let props = value.get("properties").cloned().unwrap_or(Value::Null);
        fn typed<T: DeserializeOwned>(kind: &str, props: Value, wrap: fn(T) -> Event) -> Event {
            match serde_json::from_value::<T>(props) {
                Ok(p) => wrap(p),
                Err(e) => Event::Other {
                    kind: kind.to_owned(),
                    problem: Some(e.to_string()),
                },
            }
        }
        match kind {
            "session.created" => typed(kind, props, Event::SessionCreated),
            "session.updated" => typed(kind, props, Event::SessionUpdated),
            "session.deleted" => typed(kind, props, Event::SessionDeleted),
            "session.idle" => typed(kind, props, Event::SessionIdle),
            "session.status" => typed(kind, props, Event::SessionStatus),
            "session.error" => typed(kind, props, Event::SessionError),
            "message.part.delta" => typed(kind, props, Event::MessagePartDelta),
            "message.updated" => typed(kind, props, Event::MessageUpdated),
            "message.part.updated" => typed(kind, props, Event::MessagePartUpdated),
            "todo.updated" => typed(kind, props, Event::TodoUpdated),
            "permission.asked" => typed(kind, props, Event::PermissionAsked),
            "permission.replied" => typed(kind, props, Event::PermissionReplied),
            "question.asked" => typed(kind, props, Event::QuestionAsked),
            "question.replied" => typed(kind, props, Event::QuestionReplied),
            "question.rejected" => typed(kind, props, Event::QuestionRejected),
            other => Event::Other {
                kind: other.to_owned(),
                problem: None,
            },
        }
    }

    /// The event's type name as OpenCode sent it.
    pub fn kind(&self) -> &str {
        match self {
            Event::SessionCreated(_) => "session.created",
            Event::SessionUpdated(_) => "session.updated",
            Event::SessionDeleted(_) => "session.deleted",
            Event::SessionIdle(_) => "session.idle",
            Event::SessionStatus(_) => "session.status",
            Event::SessionError(_) => "session.error",
            Event::MessagePartDelta(_) => "message.part.delta",
            Event::MessageUpdated(_) => "message.updated",
            Event::MessagePartUpdated(_) => "message.part.updated",
            Event::TodoUpdated(_) => "todo.updated",
            Event::PermissionAsked(_) => "permission.asked",
            Event::PermissionReplied(_) => "permission.replied",
            Event::QuestionAsked(_) => "question.asked",
            Event::QuestionReplied(_) => "question.replied",
            Event::QuestionRejected(_) => "question.rejected",
            Event::Other { kind, .. } => kind,
        }
    }

    /// The session the event concerns, when it names one.
    pub fn session_id(&self) -> Option<&str> {
        let id = match self {
            Event::SessionCreated(s) | Event::SessionUpdated(s) | Event::SessionDeleted(s) => {
                &s.info.id
            }
            Event::SessionIdle(s) => &s.session_id,
            Event::SessionStatus(s) => &s.session_id,
            Event::SessionError(s) => s.session_id.as_ref()?,
            Event::MessagePartDelta(d) => &d.session_id,
            Event::MessageUpdated(m) => &m.info.session_id,
            Event::MessagePartUpdated(p) => &p.part.base().session_id,
            Event::TodoUpdated(t) => &t.session_id,
            Event::PermissionAsked(p) => &p.session_id,
            Event::PermissionReplied(p) => &p.session_id,
            Event::QuestionAsked(q) => &q.session_id,
            Event::QuestionReplied(q) => &q.session_id,
            Event::QuestionRejected(q) => &q.session_id,
            Event::Other { .. } => return None,
        };
        (!id.is_empty()).then_some(id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn known_events_decode_with_extra_fields() {
        let e = Event::from_value(&json!({
            "id": "evt_1", "type": "message.part.delta",
            "properties": {"sessionID": "ses_1", "messageID": "msg_1", "partID": "prt_1",
                           "field": "text", "delta": "Hel", "brandNew": [1, 2]}
        }));
        assert_eq!(e.kind(), "message.part.delta");
        assert_eq!(e.session_id(), Some("ses_1"));
        match e {
            Event::MessagePartDelta(d) => assert_eq!(d.delta, "Hel"),
            other => panic!("unexpected {other:?}"),
        }
        let e = Event::from_value(&json!({"type": "session.created",
            "properties": {"sessionID": "ses_9", "info": {"id": "ses_9", "slug": "neon", "future": true}}}));
        assert_eq!(e.session_id(), Some("ses_9"));
    }

    #[test]
    fn unknown_and_malformed_events_are_other_not_errors() {
        let cases = [
            json!({"type": "session.next.brand_new", "properties": {"x": 1}}),
            json!({"type": "session.idle", "properties": {"sessionID": 42}}),
            json!({"type": "session.idle", "properties": "nope"}),
            json!({"type": 7}),
            json!({}),
            json!(null),
            json!([1, 2, 3]),
            json!("session.idle"),
        ];
        for c in cases {
            let e = Event::from_value(&c);
            assert!(matches!(e, Event::Other { .. }), "{c} gave {e:?}");
            assert_eq!(e.session_id(), None);
        }
        let e =
            Event::from_value(&json!({"type": "session.idle", "properties": {"sessionID": 42}}));
        assert!(matches!(
            e,
            Event::Other {
                problem: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn permission_and_question_events_decode() {
        let e = Event::from_value(&json!({"type": "permission.asked", "properties": {
            "id": "per_1", "sessionID": "ses_1", "permission": "bash",
            "patterns": ["echo hi"], "always": ["echo *"], "metadata": {"command": "echo hi"},
            "tool": {"messageID": "msg_1", "callID": "c1"}}}));
        match &e {
            Event::PermissionAsked(p) => {
                assert_eq!((p.id.as_str(), p.permission.as_str()), ("per_1", "bash"));
                assert_eq!(p.always, ["echo *"]);
            }
            other => panic!("unexpected {other:?}"),
        }
        let e = Event::from_value(&json!({"type": "permission.replied", "properties": {
            "sessionID": "ses_1", "requestID": "per_1", "reply": "always"}}));
        assert_eq!(e.session_id(), Some("ses_1"));
        let e = Event::from_value(&json!({"type": "question.asked", "properties": {
            "id": "que_1", "sessionID": "ses_2", "questions": [
                {"question": "Pick", "header": "P", "options": [{"label": "A", "description": "a"}],
                 "multiple": true},
                {"question": "Free", "header": "F", "options": [], "custom": false}]}}));
        match &e {
            Event::QuestionAsked(q) => {
                assert!(q.questions[0].multiple && q.questions[0].allows_custom());
                assert!(!q.questions[1].allows_custom());
                assert_eq!(q.questions[0].options[0].label, "A");
            }
            other => panic!("unexpected {other:?}"),
        }
        let e = Event::from_value(&json!({"type": "question.replied", "properties": {
            "sessionID": "ses_2", "requestID": "que_1", "answers": [["A"], ["x", "y"]]}}));
        assert!(matches!(&e, Event::QuestionReplied(r) if r.answers[1] == ["x", "y"]));
        let e = Event::from_value(&json!({"type": "question.rejected", "properties": {
            "sessionID": "ses_2", "requestID": "que_1"}}));
        assert_eq!(e.kind(), "question.rejected");
        // A question whose options are not objects is kept as Other, not an error.
        let e = Event::from_value(&json!({"type": "question.asked", "properties": {
            "id": "que_1", "sessionID": "ses_2", "questions": [{"options": "nope"}]}}));
        assert!(matches!(
            e,
            Event::Other {
                problem: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn missing_properties_use_defaults() {
        let e = Event::from_value(&json!({"type": "session.idle", "properties": {}}));
        assert_eq!(e, Event::SessionIdle(SessionRef::default()));
        assert_eq!(e.session_id(), None);
    }
}
