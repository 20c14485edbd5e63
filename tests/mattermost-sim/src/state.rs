//! The in-memory store: accounts, teams, channels, posts, files, reactions.
//!
//! It holds plain data and the queries over it. The rules that change it and
//! the events those changes publish live in [`crate::app`], so that REST
//! routes and the control API go through the same code.

use std::collections::{BTreeMap, HashMap, HashSet};

use axum::body::Bytes;
use serde_json::{Value, json};

use crate::ids::{new_id, now_ms};
use crate::model::{
    Channel, ChannelMember, ChannelType, FileInfo, Post, PostMetadata, Reaction, Team, User,
};

/// An uploaded file: its metadata and its bytes.
#[derive(Debug, Clone)]
pub struct StoredFile {
    pub info: FileInfo,
    pub data: Bytes,
}

/// Everything the server knows. Guarded by one mutex in [`crate::app::Sim`].
#[derive(Debug, Default)]
pub struct Store {
    pub users: HashMap<String, User>,
    /// Access token → user id.
    pub tokens: HashMap<String, String>,
    pub teams: HashMap<String, Team>,
    /// (team id, user id).
    pub team_members: HashSet<(String, String)>,
    pub channels: HashMap<String, Channel>,
    /// Channel id → user id → membership.
    pub channel_members: HashMap<String, BTreeMap<String, ChannelMember>>,
    pub posts: HashMap<String, Post>,
    /// Post ids in creation order, edit-history rows included.
    pub post_order: Vec<String>,
    pub files: HashMap<String, StoredFile>,
    pub reactions: Vec<Reaction>,
    /// `pending_post_id` → (post id, time first seen).
    pub pending: HashMap<String, (String, i64)>,
}

impl Store {
    /// Adds a user (or bot) account and one access token for it.
    pub fn add_user(&mut self, username: &str, is_bot: bool) -> (User, String) {
        let now = now_ms();
        let user = User {
            id: new_id(),
            create_at: now,
            update_at: now,
            delete_at: 0,
            username: username.to_owned(),
            auth_service: String::new(),
            email: format!("{username}@sim.test"),
            nickname: String::new(),
            first_name: String::new(),
            last_name: String::new(),
            position: String::new(),
            roles: "system_user".to_owned(),
            locale: "en".to_owned(),
            timezone: json!({"automaticTimezone": "", "manualTimezone": "", "useAutomaticTimezone": "true"}),
            props: json!({}),
            notify_props: json!({
                "channel": "true", "comments": "never", "desktop": "mention",
                "desktop_sound": "true", "email": "true", "first_name": "false",
                "mention_keys": "", "push": "mention", "push_status": "away"
            }),
            last_picture_update: 0,
            is_bot,
            bot_description: String::new(),
        };
        let token = new_id();
        self.tokens.insert(token.clone(), user.id.clone());
        self.users.insert(user.id.clone(), user.clone());
        (user, token)
    }

    /// The user a token belongs to.
    pub fn user_for_token(&self, token: &str) -> Option<&User> {
        self.tokens.get(token).and_then(|id| self.users.get(id))
    }

    /// A user by username (exact, case-insensitive like the real lookup).
    pub fn user_by_name(&self, name: &str) -> Option<&User> {
        let name = name.to_lowercase();
        self.users.values().find(|u| u.username == name)
    }

    /// Adds a team.
    pub fn add_team(&mut self, name: &str, display_name: &str) -> Team {
        let now = now_ms();
        let team = Team {
            id: new_id(),
            create_at: now,
            update_at: now,
            delete_at: 0,
            display_name: display_name.to_owned(),
            name: name.to_owned(),
            description: String::new(),
            email: String::new(),
            kind: "O".to_owned(),
            company_name: String::new(),
            allowed_domains: String::new(),
            invite_id: new_id(),
            allow_open_invite: false,
            last_team_icon_update: 0,
            scheme_id: String::new(),
            group_constrained: None,
            policy_id: None,
            cloud_limits_archived: false,
        };
        self.teams.insert(team.id.clone(), team.clone());
        team
    }

    /// Whether the user belongs to the team.
    pub fn is_team_member(&self, team_id: &str, user_id: &str) -> bool {
        self.team_members
            .contains(&(team_id.to_owned(), user_id.to_owned()))
    }

    /// Adds a channel row (no members).
    pub fn add_channel(
        &mut self,
        team_id: &str,
        kind: ChannelType,
        name: &str,
        display_name: &str,
        creator_id: &str,
    ) -> Channel {
        let now = now_ms();
        let channel = Channel {
            id: new_id(),
            create_at: now,
            update_at: now,
            delete_at: 0,
            team_id: team_id.to_owned(),
            kind,
            display_name: display_name.to_owned(),
            name: name.to_owned(),
            header: String::new(),
            purpose: String::new(),
            last_post_at: now,
            total_msg_count: 0,
            extra_update_at: 0,
            creator_id: creator_id.to_owned(),
            scheme_id: None,
            props: None,
            group_constrained: None,
            shared: Some(false),
            total_msg_count_root: 0,
            policy_id: None,
            last_root_post_at: now,
        };
        self.channels.insert(channel.id.clone(), channel.clone());
        self.channel_members.entry(channel.id.clone()).or_default();
        channel
    }

    /// Adds a member to a channel; returns the (possibly existing) row.
    pub fn add_channel_member(&mut self, channel_id: &str, user_id: &str) -> ChannelMember {
        let now = now_ms();
        self.channel_members
            .entry(channel_id.to_owned())
            .or_default()
            .entry(user_id.to_owned())
            .or_insert_with(|| ChannelMember {
                channel_id: channel_id.to_owned(),
                user_id: user_id.to_owned(),
                roles: "channel_user".to_owned(),
                last_viewed_at: 0,
                msg_count: 0,
                mention_count: 0,
                mention_count_root: 0,
                urgent_mention_count: 0,
                msg_count_root: 0,
                notify_props: json!({
                    "desktop": "default", "email": "default", "ignore_channel_mentions": "default",
                    "mark_unread": "all", "push": "default"
                }),
                last_update_at: now,
                scheme_guest: false,
                scheme_user: true,
                scheme_admin: false,
                explicit_roles: String::new(),
            })
            .clone()
    }

    /// `IncrementMentionCount`: one more mention for each of `users` in the
    /// channel (and in its root posts, for a root post).
    pub fn increment_mention_count(
        &mut self,
        channel_id: &str,
        users: &std::collections::BTreeSet<String>,
        root: bool,
    ) {
        let now = now_ms();
        let Some(members) = self.channel_members.get_mut(channel_id) else {
            return;
        };
        for id in users {
            if let Some(m) = members.get_mut(id) {
                m.mention_count += 1;
                m.mention_count_root += i64::from(root);
                m.last_update_at = now;
            }
        }
    }

    /// Whether the user is a member of the channel.
    pub fn is_member(&self, channel_id: &str, user_id: &str) -> bool {
        self.channel_members
            .get(channel_id)
            .is_some_and(|m| m.contains_key(user_id))
    }

    /// User ids of a channel's members, sorted.
    pub fn member_ids(&self, channel_id: &str) -> Vec<String> {
        self.channel_members
            .get(channel_id)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether the user may read the channel: members always, and team
    /// members for public channels (the `read_public_channel` permission).
    pub fn can_read(&self, channel: &Channel, user_id: &str) -> bool {
        self.is_member(&channel.id, user_id)
            || (channel.kind == ChannelType::Open && self.is_team_member(&channel.team_id, user_id))
    }

    /// The DM channel between two users, if it exists.
    pub fn find_direct(&self, a: &str, b: &str) -> Option<&Channel> {
        let name = direct_name(a, b);
        self.channels
            .values()
            .find(|c| c.kind == ChannelType::Direct && c.name == name)
    }

    /// The group channel with exactly these members, if it exists.
    pub fn find_group(&self, ids: &[String]) -> Option<&Channel> {
        let name = group_name(ids);
        self.channels
            .values()
            .find(|c| c.kind == ChannelType::Group && c.name == name)
    }

    /// Id of the root of the thread a post belongs to.
    pub fn thread_root<'a>(&self, post: &'a Post) -> &'a str {
        if post.root_id.is_empty() {
            &post.id
        } else {
            &post.root_id
        }
    }

    /// Renders a stored post for a client: reply count, last reply time,
    /// and `metadata` (files, reactions) as the real server computes them.
    pub fn render(&self, post: &Post) -> Post {
        let mut out = post.clone();
        let root = self.thread_root(post).to_owned();
        let mut count = 0;
        let mut last = 0;
        for p in self.posts.values() {
            if p.root_id == root && p.delete_at == 0 {
                count += 1;
                last = last.max(p.create_at);
            }
        }
        out.reply_count = count;
        out.last_reply_at = last;
        let files = post
            .file_ids
            .iter()
            .filter_map(|id| self.files.get(id))
            .map(|f| f.info.clone())
            .collect();
        let reactions: Vec<Reaction> = self
            .reactions
            .iter()
            .filter(|r| r.post_id == post.id && r.delete_at == 0)
            .cloned()
            .collect();
        out.metadata = PostMetadata { files, reactions };
        strip_integrations(&mut out.props);
        out
    }

    /// Posts of a channel that are neither deleted nor history rows, in
    /// creation order.
    pub fn live_channel_posts(&self, channel_id: &str) -> Vec<&Post> {
        self.post_order
            .iter()
            .filter_map(|id| self.posts.get(id))
            .filter(|p| p.channel_id == channel_id && p.delete_at == 0)
            .collect()
    }
}

/// DM channel name: the two user ids, sorted, joined by `__`.
pub fn direct_name(a: &str, b: &str) -> String {
    if a <= b {
        format!("{a}__{b}")
    } else {
        format!("{b}__{a}")
    }
}

/// Group channel name: a 40-hex-digit digest of the sorted member ids.
///
/// The real server uses SHA-1; clients treat the name as opaque, so a
/// deterministic FNV-based digest of the same length is used instead.
pub fn group_name(ids: &[String]) -> String {
    let mut sorted: Vec<&str> = ids.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let joined = sorted.join(",");
    let mut out = String::with_capacity(40);
    let mut seed: u64 = 0xcbf2_9ce4_8422_2325;
    while out.len() < 40 {
        for b in joined.bytes() {
            seed ^= u64::from(b);
            seed = seed.wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{seed:016x}"));
    }
    out.truncate(40);
    out
}

/// Standard MIME type for an extension, as Go's `mime.TypeByExtension`
/// answers for the common cases.
pub fn mime_for(extension: &str) -> &'static str {
    match extension.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "bmp" => "image/bmp",
        "svg" => "image/svg+xml",
        "txt" | "log" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        _ => "",
    }
}

/// Width and height of a PNG or GIF from its header; `(0, 0)` otherwise.
pub fn image_size(data: &[u8]) -> (i64, i64) {
    if data.len() >= 24 && data.starts_with(b"\x89PNG\r\n\x1a\n") {
        let w = u32::from_be_bytes([data[16], data[17], data[18], data[19]]);
        let h = u32::from_be_bytes([data[20], data[21], data[22], data[23]]);
        return (i64::from(w), i64::from(h));
    }
    if data.len() >= 10 && (data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a")) {
        let w = u16::from_le_bytes([data[6], data[7]]);
        let h = u16::from_le_bytes([data[8], data[9]]);
        return (i64::from(w), i64::from(h));
    }
    (0, 0)
}

/// The `integration` blocks of interactive buttons, removed from posts sent
/// to clients so that callback URLs and secrets never leave the server.
pub fn strip_integrations(props: &mut serde_json::Map<String, Value>) {
    if let Some(Value::Array(atts)) = props.get_mut("attachments") {
        for att in atts {
            if let Some(Value::Array(actions)) = att.get_mut("actions") {
                for action in actions {
                    if let Some(obj) = action.as_object_mut() {
                        obj.remove("integration");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_names_are_sorted() {
        assert_eq!(direct_name("b", "a"), "a__b");
        assert_eq!(direct_name("a", "b"), "a__b");
    }

    #[test]
    fn group_names_are_stable_and_40_hex() {
        let a = group_name(&["x".into(), "y".into(), "z".into()]);
        let b = group_name(&["z".into(), "x".into(), "y".into()]);
        assert_eq!(a, b);
        assert_eq!(a.len(), 40);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn png_and_gif_sizes() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&3u32.to_be_bytes());
        png.extend_from_slice(&2u32.to_be_bytes());
        assert_eq!(image_size(&png), (3, 2));
        assert_eq!(image_size(b"GIF89a\x05\x00\x07\x00"), (5, 7));
        assert_eq!(image_size(b"plain"), (0, 0));
    }

    #[test]
    fn integrations_are_stripped() {
        let mut props = serde_json::from_value(json!({
            "attachments": [{"actions": [{"id": "a1", "integration": {"url": "http://x"}}]}]
        }))
        .unwrap();
        strip_integrations(&mut props);
        assert_eq!(
            Value::Object(props),
            json!({"attachments": [{"actions": [{"id": "a1"}]}]})
        );
    }
}
