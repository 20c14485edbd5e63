//! Wire types: the JSON objects exactly as a 9.8-era server writes them.
//!
//! Field order follows the Go structs, because some clients (and people
//! reading captures) compare against real frames. Request bodies are parsed
//! leniently (`#[serde(default)]`, unknown fields ignored) like Go does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Version reported in `hello`, `X-Version-ID` and the client config.
pub const SERVER_VERSION: &str = "9.8.1";
/// `<version>.<build number>.<config hash>.<licensed>`, as in `hello.server_version`.
pub const VERSION_ID: &str = "9.8.1.9.8.1.0f3c5e7a9b1d2e4f6a8c0b2d4e6f8a0c.false";

/// A user or bot account (`GET /users/...`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct User {
    pub id: String,
    pub create_at: i64,
    pub update_at: i64,
    pub delete_at: i64,
    pub username: String,
    pub auth_service: String,
    pub email: String,
    pub nickname: String,
    pub first_name: String,
    pub last_name: String,
    pub position: String,
    pub roles: String,
    pub locale: String,
    pub timezone: Value,
    pub props: Value,
    pub notify_props: Value,
    pub last_picture_update: i64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_bot: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bot_description: String,
}

/// A team (`GET /teams/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Team {
    pub id: String,
    pub create_at: i64,
    pub update_at: i64,
    pub delete_at: i64,
    pub display_name: String,
    pub name: String,
    pub description: String,
    pub email: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub company_name: String,
    pub allowed_domains: String,
    pub invite_id: String,
    pub allow_open_invite: bool,
    pub last_team_icon_update: i64,
    pub scheme_id: String,
    pub group_constrained: Option<bool>,
    pub policy_id: Option<String>,
    pub cloud_limits_archived: bool,
}

/// Channel types as the wire spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelType {
    /// Public ("open") channel.
    #[serde(rename = "O")]
    Open,
    /// Private channel.
    #[serde(rename = "P")]
    Private,
    /// Direct message between two users.
    #[serde(rename = "D")]
    Direct,
    /// Group message between 3–8 users.
    #[serde(rename = "G")]
    Group,
}

impl ChannelType {
    /// The one-letter code used in `posted.channel_type`.
    pub fn code(self) -> &'static str {
        match self {
            ChannelType::Open => "O",
            ChannelType::Private => "P",
            ChannelType::Direct => "D",
            ChannelType::Group => "G",
        }
    }
}

/// A channel (`GET /channels/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Channel {
    pub id: String,
    pub create_at: i64,
    pub update_at: i64,
    pub delete_at: i64,
    pub team_id: String,
    #[serde(rename = "type")]
    pub kind: ChannelType,
    pub display_name: String,
    pub name: String,
    pub header: String,
    pub purpose: String,
    pub last_post_at: i64,
    pub total_msg_count: i64,
    pub extra_update_at: i64,
    pub creator_id: String,
    pub scheme_id: Option<String>,
    pub props: Option<Value>,
    pub group_constrained: Option<bool>,
    pub shared: Option<bool>,
    pub total_msg_count_root: i64,
    pub policy_id: Option<String>,
    pub last_root_post_at: i64,
}

/// Membership row (`GET /channels/{id}/members/me`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChannelMember {
    pub channel_id: String,
    pub user_id: String,
    pub roles: String,
    pub last_viewed_at: i64,
    pub msg_count: i64,
    pub mention_count: i64,
    pub mention_count_root: i64,
    pub urgent_mention_count: i64,
    pub msg_count_root: i64,
    pub notify_props: Value,
    pub last_update_at: i64,
    pub scheme_guest: bool,
    pub scheme_user: bool,
    pub scheme_admin: bool,
    pub explicit_roles: String,
}

/// A post. Stored rows and wire objects share this type; the derived fields
/// (`reply_count`, `last_reply_at`, `metadata`, `has_reactions`) are filled
/// in when the post is rendered for a client.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Post {
    pub id: String,
    pub create_at: i64,
    pub update_at: i64,
    pub edit_at: i64,
    pub delete_at: i64,
    pub is_pinned: bool,
    pub user_id: String,
    pub channel_id: String,
    pub root_id: String,
    pub original_id: String,
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub props: Map<String, Value>,
    pub hashtags: String,
    /// Omitted when empty, as 9.8 does (v11 always writes it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_ids: Vec<String>,
    pub pending_post_id: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub has_reactions: bool,
    pub reply_count: i64,
    pub last_reply_at: i64,
    pub participants: Option<Vec<Value>>,
    #[serde(default)]
    pub metadata: PostMetadata,
}

/// `post.metadata`: only the parts a bot reads are produced.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PostMetadata {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<Reaction>,
}

/// `PostList` as returned by thread and channel-history routes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PostList {
    pub order: Vec<String>,
    pub posts: BTreeMap<String, Post>,
    pub next_post_id: String,
    pub prev_post_id: String,
    pub has_next: bool,
    pub first_inaccessible_post_time: i64,
}

impl PostList {
    /// An empty list (`order: []`, `posts: {}`).
    pub fn empty() -> Self {
        PostList {
            order: Vec::new(),
            posts: BTreeMap::new(),
            next_post_id: String::new(),
            prev_post_id: String::new(),
            has_next: false,
            first_inaccessible_post_time: 0,
        }
    }
}

/// Metadata of an uploaded file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileInfo {
    pub id: String,
    pub user_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub post_id: String,
    pub channel_id: String,
    pub create_at: i64,
    pub update_at: i64,
    pub delete_at: i64,
    pub name: String,
    pub extension: String,
    pub size: i64,
    pub mime_type: String,
    pub width: i64,
    pub height: i64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub has_preview_image: bool,
    pub mini_preview: Option<String>,
    pub remote_id: String,
    pub archived: bool,
}

/// `POST /files` response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileUploadResponse {
    pub file_infos: Vec<FileInfo>,
    pub client_ids: Vec<String>,
}

/// An emoji reaction.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reaction {
    pub user_id: String,
    pub post_id: String,
    pub emoji_name: String,
    pub create_at: i64,
    pub update_at: i64,
    pub delete_at: i64,
    pub remote_id: String,
    pub channel_id: String,
}

/// The real AppError body. `detailed_error` is always present.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AppErrorBody {
    pub id: String,
    pub message: String,
    pub detailed_error: String,
    pub request_id: String,
    pub status_code: u16,
}

/// Request body of `POST /posts` (lenient, like Go's decoder).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CreatePostBody {
    pub channel_id: String,
    pub message: String,
    pub root_id: String,
    pub file_ids: Option<Vec<String>>,
    pub props: Option<Map<String, Value>>,
    pub pending_post_id: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// Request body of `PUT /posts/{id}/patch`: absent fields are left alone.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PostPatchBody {
    pub message: Option<String>,
    pub is_pinned: Option<bool>,
    pub props: Option<Map<String, Value>>,
    pub file_ids: Option<Vec<String>>,
    pub has_reactions: Option<bool>,
}

/// Request body of `PUT /posts/{id}` (a full post; only editable parts are used).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UpdatePostBody {
    pub id: String,
    pub message: String,
    pub is_pinned: bool,
    pub props: Option<Map<String, Value>>,
    pub file_ids: Option<Vec<String>>,
    pub has_reactions: bool,
}

/// Request body of `POST /reactions`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ReactionBody {
    pub user_id: String,
    pub post_id: String,
    pub emoji_name: String,
}

/// Request body of `POST /users/{id}/typing`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TypingBody {
    pub channel_id: String,
    pub parent_id: String,
}

/// `{"status":"OK"}`.
pub fn status_ok() -> Value {
    serde_json::json!({"status": "OK"})
}
