//! Messages and their parts, as OpenCode's API and events carry them.
//!
//! Decoding is tolerant in the same way as [`super::types`]: every field has a
//! default, unknown fields are ignored, and an unknown part type becomes
//! [`Part::Other`] so a newer OpenCode never breaks rendering.

use serde::Deserialize;
use serde_json::Value;

/// `Message` (user or assistant); only what rendering and routing need.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct MessageInfo {
    pub id: String,
    #[serde(rename = "sessionID")]
    pub session_id: String,
    /// `user` or `assistant`.
    pub role: String,
    /// For assistant messages: the user message this turn answers.
    #[serde(rename = "parentID")]
    pub parent_id: Option<String>,
    #[serde(rename = "modelID")]
    pub model_id: String,
    #[serde(rename = "providerID")]
    pub provider_id: String,
    pub agent: String,
    pub cost: f64,
    pub tokens: Tokens,
    pub time: MessageTime,
    /// Set when the turn failed: `{name, data: {message, ...}}`.
    pub error: Option<Value>,
    /// Assistant: why generation stopped (`stop`, `tool-calls`, ...).
    pub finish: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct MessageTime {
    /// Unix milliseconds.
    pub created: f64,
    pub completed: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Tokens {
    pub input: f64,
    pub output: f64,
    pub reasoning: f64,
    pub cache: CacheTokens,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct CacheTokens {
    pub read: f64,
    pub write: f64,
}

impl Tokens {
    /// Tokens that count towards what a turn produced and read.
    pub fn total(&self) -> f64 {
        self.input + self.output + self.reasoning
    }
}

/// One entry of `GET /session/{id}/message`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct MessageWithParts {
    pub info: MessageInfo,
    pub parts: Vec<Part>,
}

/// The fields every part carries.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct PartBase {
    pub id: String,
    #[serde(rename = "sessionID")]
    pub session_id: String,
    #[serde(rename = "messageID")]
    pub message_id: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct TextPart {
    #[serde(flatten)]
    pub base: PartBase,
    pub text: String,
    /// Injected by OpenCode, not written by the model or user.
    pub synthetic: bool,
    pub ignored: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ToolPart {
    #[serde(flatten)]
    pub base: PartBase,
    #[serde(rename = "callID")]
    pub call_id: String,
    pub tool: String,
    pub state: ToolState,
}

/// `ToolState`: `pending | running | completed | error`, flattened into one
/// struct because every variant shares most fields.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ToolState {
    pub status: String,
    pub input: Value,
    pub title: Option<String>,
    pub output: Option<String>,
    pub error: Option<String>,
    /// Running `bash` carries its live output under `metadata.output`.
    pub metadata: Value,
    pub time: ToolTime,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ToolTime {
    pub start: Option<f64>,
    pub end: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct StepFinishPart {
    #[serde(flatten)]
    pub base: PartBase,
    pub reason: String,
    pub cost: f64,
    pub tokens: Tokens,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct FilePart {
    #[serde(flatten)]
    pub base: PartBase,
    pub mime: String,
    pub filename: Option<String>,
    pub url: String,
}

/// A message part. Types the agent does not render keep their base so they
/// can still be ordered and counted.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(TextPart),
    Reasoning(TextPart),
    Tool(ToolPart),
    StepStart(PartBase),
    StepFinish(StepFinishPart),
    File(FilePart),
    Other { kind: String, base: PartBase },
}

impl Default for Part {
    fn default() -> Self {
        Part::Other {
            kind: String::new(),
            base: PartBase::default(),
        }
    }
}

impl Part {
    /// Decode one part; a part that does not match its type's shape is kept
    /// as [`Part::Other`] rather than failing the message it belongs to.
    pub fn from_value(value: Value) -> Part {
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        fn typed<T: serde::de::DeserializeOwned>(
            value: &Value,
            wrap: fn(T) -> Part,
        ) -> Option<Part> {
            serde_json::from_value::<T>(value.clone()).ok().map(wrap)
        }
        let decoded = match kind.as_str() {
            "text" => typed(&value, Part::Text),
            "reasoning" => typed(&value, Part::Reasoning),
            "tool" => typed(&value, Part::Tool),
            "step-start" => typed(&value, Part::StepStart),
            "step-finish" => typed(&value, Part::StepFinish),
            "file" => typed(&value, Part::File),
            _ => None,
        };
        decoded.unwrap_or_else(|| Part::Other {
            base: serde_json::from_value(value).unwrap_or_default(),
            kind,
        })
    }

    pub fn base(&self) -> &PartBase {
        match self {
            Part::Text(p) | Part::Reasoning(p) => &p.base,
            Part::Tool(p) => &p.base,
            Part::StepStart(b) => b,
            Part::StepFinish(p) => &p.base,
            Part::File(p) => &p.base,
            Part::Other { base, .. } => base,
        }
    }

    pub fn id(&self) -> &str {
        &self.base().id
    }
}

impl<'de> Deserialize<'de> for Part {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(Part::from_value)
    }
}

/// `Todo` from `todo.updated`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Todo {
    pub content: String,
    /// `pending`, `in_progress`, `completed`, `cancelled`.
    pub status: String,
    pub priority: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parts_decode_by_type_and_tolerate_drift() {
        let text = Part::from_value(
            json!({"id": "prt_1", "sessionID": "ses_1", "messageID": "msg_1",
            "type": "text", "text": "hi", "time": {"start": 1}, "extra": true}),
        );
        assert!(matches!(&text, Part::Text(t) if t.text == "hi" && t.base.message_id == "msg_1"));
        let tool = Part::from_value(
            json!({"id": "prt_2", "type": "tool", "tool": "bash", "callID": "c",
            "state": {"status": "running", "input": {"command": "ls"}, "time": {"start": 5},
                      "metadata": {"output": "a\n"}}}),
        );
        match &tool {
            Part::Tool(t) => {
                assert_eq!(t.state.status, "running");
                assert_eq!(t.state.time.start, Some(5.0));
                assert_eq!(t.state.metadata["output"], "a\n");
            }
            other => panic!("{other:?}"),
        }
        let future = Part::from_value(json!({"id": "prt_3", "type": "hologram", "beam": 1}));
        assert!(
            matches!(&future, Part::Other { kind, base } if kind == "hologram" && base.id == "prt_3")
        );
        let broken = Part::from_value(json!({"id": "prt_4", "type": "text", "text": 42}));
        assert!(matches!(&broken, Part::Other { kind, .. } if kind == "text"));
        assert_eq!(broken.id(), "prt_4");
        assert!(matches!(
            Part::from_value(json!("nope")),
            Part::Other { .. }
        ));
    }

    #[test]
    fn messages_with_parts_decode_from_the_list_endpoint() {
        let list: Vec<MessageWithParts> = serde_json::from_value(json!([
            {"info": {"id": "msg_1", "sessionID": "ses_1", "role": "user", "time": {"created": 1}},
             "parts": [{"id": "prt_1", "type": "text", "text": "hello"}]},
            {"info": {"id": "msg_2", "sessionID": "ses_1", "role": "assistant", "parentID": "msg_1",
                      "modelID": "m", "providerID": "p", "cost": 0.5,
                      "tokens": {"input": 10, "output": 5, "reasoning": 0, "cache": {"read": 1, "write": 0}},
                      "time": {"created": 2, "completed": 3}},
             "parts": [{"id": "prt_2", "type": "step-finish", "reason": "stop", "cost": 0.5,
                        "tokens": {"input": 10, "output": 5, "reasoning": 0, "cache": {"read": 1, "write": 0}}},
                       {"type": "unknown-future"}]}
        ]))
        .unwrap();
        assert_eq!(list[1].info.parent_id.as_deref(), Some("msg_1"));
        assert_eq!(list[1].info.tokens.total(), 15.0);
        assert_eq!(list[1].info.time.completed, Some(3.0));
        assert!(matches!(list[1].parts[0], Part::StepFinish(_)));
        assert!(matches!(list[1].parts[1], Part::Other { .. }));
    }
}
