//! A member's own view of a channel: reading it (`POST
//! /channels/members/{user_id}/view`) and its notification settings (`PUT
//! /channels/{channel_id}/members/{user_id}/notify_props`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::app::Sim;
use crate::error::ApiError;
use crate::ids::now_ms;
use crate::model::ChannelMember;
use crate::ws::{Broadcast, Event, EventData};

/// The channel member notify props `UpdateChannelMemberNotifyProps` takes;
/// other keys in the body are ignored.
const MEMBER_NOTIFY_PROPS: [&str; 7] = [
    "mark_unread",
    "desktop",
    "desktop_threads",
    "email",
    "push",
    "push_threads",
    "ignore_channel_mentions",
];

impl Sim {
    /// `MarkChannelsAsViewed` for the channels of a view the user is a
    /// member of: those with unread posts or mentions become read up to
    /// their last post (message and mention counts caught up), and one
    /// `multiple_channels_viewed` event tells the user's sockets. Returns
    /// each channel's last viewed time: its last post's for the channels
    /// just read, the member's own for the others.
    pub fn view_channels(&self, user_id: &str, channel_ids: &[String]) -> BTreeMap<String, i64> {
        let mut store = self.store.lock();
        let mut times = BTreeMap::new();
        let mut viewed = false;
        let now = now_ms();
        for id in channel_ids {
            let Some(channel) = store.channels.get(id).cloned() else {
                continue;
            };
            let Some(member) = store
                .channel_members
                .get_mut(id)
                .and_then(|m| m.get_mut(user_id))
            else {
                continue;
            };
            let unread = channel.total_msg_count > member.msg_count || member.mention_count > 0;
            if !unread {
                times.insert(id.clone(), member.last_viewed_at);
                continue;
            }
            member.last_viewed_at = member.last_viewed_at.max(channel.last_post_at);
            member.msg_count = member.msg_count.max(channel.total_msg_count);
            member.msg_count_root = member.msg_count_root.max(channel.total_msg_count_root);
            member.mention_count = 0;
            member.mention_count_root = 0;
            member.urgent_mention_count = 0;
            member.last_update_at = member.last_update_at.max(now);
            times.insert(id.clone(), channel.last_post_at);
            viewed = true;
        }
        if viewed {
            let mut data = EventData::new();
            data.insert("channel_times".into(), json!(times));
            self.hub.lock().publish(&to_user(
                "multiple_channels_viewed",
                user_id,
                Arc::new(data),
            ));
        }
        times
    }

    /// `UpdateChannelMemberNotifyProps`: the known props in `props` replace
    /// the member's, the rest stay; `channel_member_updated` tells the
    /// user's sockets.
    pub fn update_member_notify_props(
        &self,
        channel_id: &str,
        user_id: &str,
        props: &Map<String, Value>,
    ) -> Result<ChannelMember, ApiError> {
        let mut store = self.store.lock();
        let member = store
            .channel_members
            .get_mut(channel_id)
            .and_then(|m| m.get_mut(user_id))
            .ok_or_else(|| {
                ApiError::not_found(
                    "app.channel.get_member.missing.app_error",
                    "No channel member found for that user ID and channel ID.",
                )
            })?;
        if !member.notify_props.is_object() {
            member.notify_props = json!({});
        }
        if let Some(current) = member.notify_props.as_object_mut() {
            for key in MEMBER_NOTIFY_PROPS {
                if let Some(v) = props.get(key) {
                    current.insert(key.to_owned(), v.clone());
                }
            }
        }
        member.last_update_at = now_ms();
        let member = member.clone();
        let mut data = EventData::new();
        data.insert(
            "channelMember".into(),
            Value::String(serde_json::to_string(&member).unwrap_or_default()),
        );
        self.hub
            .lock()
            .publish(&to_user("channel_member_updated", user_id, Arc::new(data)));
        Ok(member)
    }
}

/// An event for one user's sockets only.
fn to_user(name: &'static str, user_id: &str, data: Arc<EventData>) -> Event {
    Event {
        name,
        broadcast: Broadcast {
            user_id: user_id.to_owned(),
            ..Broadcast::default()
        },
        deliveries: vec![(user_id.to_owned(), data)],
    }
}
