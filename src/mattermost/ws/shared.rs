//! State the worker task shares with its [`LinkHandle`](super::LinkHandle):
//! the counters and the served channels with the newest post seen in each
//! (where a REST catch-up starts). Separate because both sides lock it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::LinkStats;
use crate::mattermost::types::Post;

#[derive(Debug, Clone, Copy)]
pub(super) struct ChannelMark {
    /// Newest `create_at` of a post delivered from this channel.
    pub(super) newest_create_at: Option<i64>,
    /// Wall-clock ms when the channel became served.
    pub(super) served_since_ms: i64,
}

#[derive(Debug, Default)]
pub(super) struct Shared {
    pub(super) stats: Mutex<LinkStats>,
    pub(super) channels: Mutex<HashMap<String, ChannelMark>>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(super) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Shared {
    pub(super) fn stats(&self, f: impl FnOnce(&mut LinkStats)) {
        f(&mut lock(&self.stats));
    }

    pub(super) fn serve(&self, channel_id: &str) {
        lock(&self.channels)
            .entry(channel_id.to_owned())
            .or_insert_with(|| ChannelMark {
                newest_create_at: None,
                served_since_ms: wall_ms(),
            });
    }

    pub(super) fn note_post(&self, post: &Post) {
        if post.channel_id.is_empty() {
            return;
        }
        let mut channels = lock(&self.channels);
        let mark = channels
            .entry(post.channel_id.clone())
            .or_insert_with(|| ChannelMark {
                newest_create_at: None,
                served_since_ms: wall_ms(),
            });
        mark.newest_create_at = Some(
            mark.newest_create_at
                .map_or(post.create_at, |n| n.max(post.create_at)),
        );
    }
}
