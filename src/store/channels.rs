//! The rows behind channel collaboration: an owner's teammates, who a
//! thread's owner let in, and guest requests waiting for an answer. They
//! live in the store, not in memory, so approvals and pending requests
//! (with their deadlines) survive a restart and are the same for every
//! instance sharing the database.

use super::Millis;

/// Someone an instance owner added to their team (`!team add`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Teammate {
    /// Together with `user_id`, the key: several owners share one bot and
    /// one database, each with a team of their own.
    pub owner_user_id: String,
    pub user_id: String,
    /// As it was when added, for listing without a lookup per member.
    pub username: String,
    /// Who added them (the owner's user id, or `import:<file>`).
    pub added_by: String,
    pub added_at: Millis,
}

/// Who a thread grant lets prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grantee {
    /// One person (approval `2`).
    User(String),
    /// Everyone in the thread (approval `3`).
    Everyone,
}

impl Grantee {
    /// The stored spelling: a user id, or `*` (never a Mattermost id).
    pub fn as_key(&self) -> &str {
        match self {
            Grantee::User(id) => id,
            Grantee::Everyone => "*",
        }
    }

    pub fn from_key(key: &str) -> Grantee {
        if key == "*" {
            Grantee::Everyone
        } else {
            Grantee::User(key.to_owned())
        }
    }
}

/// A standing approval in one thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadGrant {
    pub root_post_id: String,
    pub grantee: Grantee,
    /// The user id of whoever approved it.
    pub granted_by: String,
    pub granted_at: Millis,
}

/// Where a guest request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestState {
    Pending,
    /// `1`: this message only.
    Once,
    /// `2`: this person, for the thread.
    User,
    /// `3`: everyone in the thread.
    Everyone,
    Denied,
    Expired,
}

impl GuestState {
    /// The stored spelling; stable across releases and storage engines.
    pub fn as_str(self) -> &'static str {
        match self {
            GuestState::Pending => "pending",
            GuestState::Once => "once",
            GuestState::User => "user",
            GuestState::Everyone => "everyone",
            GuestState::Denied => "denied",
            GuestState::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => GuestState::Pending,
            "once" => GuestState::Once,
            "user" => GuestState::User,
            "everyone" => GuestState::Everyone,
            "denied" => GuestState::Denied,
            "expired" => GuestState::Expired,
            _ => return None,
        })
    }

    /// Whether the held post runs.
    pub fn approves(self) -> bool {
        matches!(
            self,
            GuestState::Once | GuestState::User | GuestState::Everyone
        )
    }
}

/// A guest's post held until the thread's owner or a teammate answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestRequest {
    /// The guest's post, held: the key.
    pub post_id: String,
    /// The bot's post asking for approval (edited when decided).
    pub request_post_id: String,
    pub root_post_id: String,
    pub channel_id: String,
    /// The instance that owns the thread and answers the request.
    pub instance_id: String,
    pub guest_user_id: String,
    pub guest_username: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub state: GuestState,
    /// The user id of whoever decided it.
    pub decided_by: Option<String>,
    pub decided_at: Option<Millis>,
}
