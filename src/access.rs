//! Who may drive this agent from Mattermost.
//!
//! Secure by default: with neither an owner nor allowed users configured,
//! nobody may prompt, and the agent says how to fix that.

use crate::config::{ChannelType, Config};

/// The answer for one sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// No owner and no allowed users are configured.
    Unconfigured,
    /// Configured, and this sender is not on the list.
    Stranger,
}

/// The access rules, taken from the configuration once.
#[derive(Debug, Clone, Default)]
pub struct Access {
    owner: Option<String>,
    allowed: Vec<String>,
    channel_types: Vec<ChannelType>,
}

/// How to configure access, for the one-time notice.
pub const HOW_TO_CONFIGURE: &str = "set `MATTERMOST_OWNER_USER_ID` to your Mattermost user id \
     (Profile > ⋮ > Copy user ID), or list user ids in `OPENCODE_MM_ALLOWED_USERS`, then restart \
     OpenCode";

impl Access {
    pub fn new(config: &Config) -> Self {
        Self {
            owner: config.owner_user_id.clone(),
            allowed: config.allowed_users.clone(),
            channel_types: config.allowed_channel_types.clone(),
        }
    }

    /// Whether `user_id` may send prompts.
    pub fn may_prompt(&self, user_id: &str) -> Verdict {
        if self.owner.is_none() && self.allowed.is_empty() {
            return Verdict::Unconfigured;
        }
        let listed =
            self.owner.as_deref() == Some(user_id) || self.allowed.iter().any(|u| u == user_id);
        if listed && !user_id.is_empty() {
            Verdict::Allowed
        } else {
            Verdict::Stranger
        }
    }

    /// Whether `user_id` may merge threads (`!merge`): the owner and the
    /// people allowed to prompt. Teammates join here once the team exists.
    pub fn may_merge(&self, user_id: &str) -> bool {
        self.may_prompt(user_id) == Verdict::Allowed
    }

    /// Whether the agent listens in channels of this type (`D`, `G`, `O`, `P`).
    pub fn channel_allowed(&self, kind: &str) -> bool {
        self.channel_types
            .iter()
            .any(|t| kind.len() == 1 && kind.starts_with(t.code()))
    }

    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    /// Everyone who may prompt: the owner first, then the allowed users.
    pub fn permitted_users(&self) -> Vec<String> {
        let mut users: Vec<String> = self.owner.iter().cloned().collect();
        for u in &self.allowed {
            if !users.contains(u) {
                users.push(u.clone());
            }
        }
        users
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(owner: Option<&str>, allowed: &[&str], types: &[ChannelType]) -> Access {
        Access {
            owner: owner.map(str::to_owned),
            allowed: allowed.iter().map(|s| s.to_string()).collect(),
            channel_types: types.to_vec(),
        }
    }

    #[test]
    fn nobody_may_prompt_until_configured() {
        let a = access(None, &[], &[ChannelType::Direct]);
        assert_eq!(a.may_prompt("u1"), Verdict::Unconfigured);
        assert_eq!(a.may_prompt(""), Verdict::Unconfigured);
    }

    #[test]
    fn owner_and_allowed_users_only() {
        let a = access(Some("owner"), &["friend"], &[ChannelType::Direct]);
        assert_eq!(a.may_prompt("owner"), Verdict::Allowed);
        assert_eq!(a.may_prompt("friend"), Verdict::Allowed);
        assert_eq!(a.may_prompt("stranger"), Verdict::Stranger);
        assert_eq!(a.may_prompt(""), Verdict::Stranger);
        assert_eq!(a.may_prompt("OWNER"), Verdict::Stranger);
        assert_eq!(a.permitted_users(), ["owner", "friend"]);
        let only_allowed = access(None, &["friend"], &[]);
        assert_eq!(only_allowed.may_prompt("friend"), Verdict::Allowed);
    }

    #[test]
    fn channel_types_are_exact_codes() {
        let a = access(Some("o"), &[], &[ChannelType::Direct, ChannelType::Group]);
        assert!(a.channel_allowed("D"));
        assert!(a.channel_allowed("G"));
        assert!(!a.channel_allowed("O"));
        assert!(!a.channel_allowed(""));
        assert!(!a.channel_allowed("DG"));
    }
}
