//! Mattermost REST v4 and WebSocket wire types, deserialised leniently: every
//! field defaults, unknown fields are ignored, and `null` where a list or map
//! is expected reads as empty.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// `null` or absent reads as the type's default.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A field of the wrong type reads as its default instead of failing the
/// whole frame: one odd field must not cost the events around it.
fn lenient<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + serde::de::DeserializeOwned,
{
    let value = Value::deserialize(d)?;
    Ok(serde_json::from_value(value).unwrap_or_default())
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct User {
    pub id: String,
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub nickname: String,
    pub is_bot: bool,
    pub delete_at: i64,
    pub roles: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Team {
    pub id: String,
    pub name: String,
    pub display_name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Channel {
    pub id: String,
    pub team_id: String,
    /// `O`, `P`, `D` or `G`.
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub display_name: String,
    pub delete_at: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Post {
    pub id: String,
    pub create_at: i64,
    pub update_at: i64,
    pub edit_at: i64,
    pub delete_at: i64,
    pub user_id: String,
    pub channel_id: String,
    pub root_id: String,
    /// Set on edit-history rows (the id of the post they are a past version of).
    pub original_id: String,
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(deserialize_with = "null_default")]
    pub props: BTreeMap<String, Value>,
    #[serde(deserialize_with = "null_default")]
    pub file_ids: Vec<String>,
    pub pending_post_id: String,
    #[serde(deserialize_with = "null_default")]
    pub metadata: Value,
}

impl Post {
    /// The root of the thread this post belongs to (itself for a root post).
    pub fn thread_root(&self) -> &str {
        if self.root_id.is_empty() {
            &self.id
        } else {
            &self.root_id
        }
    }

    /// Made by an integration, not typed by a person: an incoming or
    /// outgoing webhook, a slash command's response, a plugin, an OAuth app
    /// or a bot. Such posts carry the id of the user who set the
    /// integration up, so that id says nothing about who wrote them.
    pub fn is_integration(&self) -> bool {
        const MARKS: [&str; 4] = ["from_webhook", "from_plugin", "from_oauth_app", "from_bot"];
        MARKS.iter().any(|mark| match self.props.get(*mark) {
            Some(Value::String(v)) => !v.is_empty() && !v.eq_ignore_ascii_case("false"),
            Some(Value::Bool(b)) => *b,
            Some(Value::Null) | None => false,
            Some(_) => true,
        }) || self.props.contains_key("override_username")
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PostList {
    #[serde(deserialize_with = "null_default")]
    pub order: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    pub posts: BTreeMap<String, Post>,
    pub next_post_id: String,
    pub prev_post_id: String,
    pub has_next: bool,
}

impl PostList {
    /// Posts in `order`, skipping ids the map lacks.
    pub fn in_order(&self) -> Vec<&Post> {
        self.order
            .iter()
            .filter_map(|id| self.posts.get(id))
            .collect()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct FileInfo {
    pub id: String,
    pub user_id: String,
    pub post_id: String,
    pub channel_id: String,
    pub name: String,
    pub extension: String,
    pub size: i64,
    pub mime_type: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct FileUploadResponse {
    #[serde(deserialize_with = "null_default")]
    pub file_infos: Vec<FileInfo>,
    #[serde(deserialize_with = "null_default")]
    pub client_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Reaction {
    pub user_id: String,
    pub post_id: String,
    pub emoji_name: String,
    pub create_at: i64,
    pub channel_id: String,
}

/// Mattermost's error body (`AppError`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct AppError {
    pub id: String,
    pub message: String,
    pub detailed_error: String,
    pub request_id: String,
    pub status_code: i64,
}

/// `GET /config/client?format=old`: a flat map of strings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientConfig(pub BTreeMap<String, String>);

impl ClientConfig {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    pub fn site_url(&self) -> Option<&str> {
        self.get("SiteURL").filter(|s| !s.is_empty())
    }
    /// The post limit in runes (16383 on current servers, 4000 on old ones).
    pub fn max_post_size(&self) -> Option<usize> {
        self.get("MaxPostSize").and_then(|v| v.parse().ok())
    }
    pub fn max_file_size(&self) -> Option<u64> {
        self.get("MaxFileSize").and_then(|v| v.parse().ok())
    }
    pub fn version(&self) -> Option<&str> {
        self.get("Version").filter(|s| !s.is_empty())
    }
}

/// A WebSocket event frame. `data` values such as `post` are JSON strings that
/// need a second decode (see [`Event::post`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Event {
    #[serde(deserialize_with = "lenient")]
    pub event: String,
    #[serde(deserialize_with = "lenient")]
    pub data: BTreeMap<String, Value>,
    #[serde(deserialize_with = "lenient")]
    pub broadcast: Broadcast,
    /// A `seq` that is not a number reads as absent (0).
    #[serde(deserialize_with = "lenient")]
    pub seq: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Broadcast {
    pub user_id: String,
    pub channel_id: String,
    pub team_id: String,
    pub connection_id: String,
}

impl Event {
    fn embedded<T: for<'de> Deserialize<'de>>(&self, key: &str) -> Option<T> {
        match self.data.get(key)? {
            Value::String(s) => serde_json::from_str(s).ok(),
            other => serde_json::from_value(other.clone()).ok(),
        }
    }

    /// The post of a `posted`, `post_edited` or `post_deleted` event.
    pub fn post(&self) -> Option<Post> {
        self.embedded("post")
    }

    /// The reaction of a `reaction_added` or `reaction_removed` event.
    pub fn reaction(&self) -> Option<Reaction> {
        self.embedded("reaction")
    }

    /// `mentions`: the recipient's id when it was mentioned (or in a DM).
    pub fn mentions(&self) -> Vec<String> {
        self.embedded("mentions").unwrap_or_default()
    }

    pub fn str_field(&self, key: &str) -> Option<&str> {
        self.data.get(key).and_then(Value::as_str)
    }
}

/// A reply to a client action (`seq_reply`, no `seq`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ActionReply {
    pub status: String,
    pub seq_reply: i64,
    pub data: Value,
    pub error: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posted_event_decodes_the_embedded_post() {
        let frame = r#"{"event":"posted","data":{"channel_type":"D","mentions":"[\"bot00000000000000000000000\"]","post":"{\"id\":\"p1\",\"user_id\":\"u1\",\"channel_id\":\"c1\",\"root_id\":\"\",\"message\":\"hi\",\"props\":null,\"file_ids\":null,\"new_field\":1}","sender_name":"@alice"},"broadcast":{"omit_users":null,"user_id":"","channel_id":"c1","team_id":"","connection_id":"","omit_connection_id":""},"seq":5}"#;
        let e: Event = serde_json::from_str(frame).unwrap();
        assert_eq!(e.seq, 5);
        let p = e.post().unwrap();
        assert_eq!(
            (p.id.as_str(), p.message.as_str(), p.thread_root()),
            ("p1", "hi", "p1")
        );
        assert!(p.props.is_empty() && p.file_ids.is_empty());
        assert_eq!(e.mentions(), vec!["bot00000000000000000000000".to_owned()]);
        assert_eq!(e.str_field("channel_type"), Some("D"));
    }

    #[test]
    fn hostile_event_frames_never_fail_the_outer_decode() {
        for frame in [
            r#"{"event":"posted","data":{"post":"not json"},"seq":1}"#,
            r#"{"event":"posted","data":{"post":42},"seq":"x"}"#,
            r#"{"event":"posted","data":null,"broadcast":null}"#,
            r#"{"seq_reply":1,"status":"OK"}"#,
        ] {
            let decoded: Result<Event, _> = serde_json::from_str(frame);
            match decoded {
                Ok(e) => assert!(e.post().is_none(), "{frame}"),
                Err(err) => panic!("the outer decode failed for {frame}: {err}"),
            }
        }
    }

    #[test]
    fn integration_posts_are_told_from_people() {
        let with = |props: serde_json::Value| Post {
            props: serde_json::from_value(props).unwrap_or_default(),
            ..Post::default()
        };
        assert!(!with(serde_json::json!({})).is_integration());
        assert!(!with(serde_json::json!({"from_webhook": "false"})).is_integration());
        assert!(!with(serde_json::json!({"from_webhook": null})).is_integration());
        for props in [
            serde_json::json!({"from_webhook": "true"}),
            serde_json::json!({"from_webhook": true}),
            serde_json::json!({"from_plugin": "true"}),
            serde_json::json!({"from_oauth_app": "TRUE"}),
            serde_json::json!({"from_bot": "true"}),
            serde_json::json!({"override_username": "ci"}),
            serde_json::json!({"from_webhook": 1}),
        ] {
            assert!(with(props.clone()).is_integration(), "{props}");
        }
    }
}
