//! Recovery over REST when events may have been lost (a refused resume or a
//! gap in `seq`): where each served channel must be caught up from, fetching
//! through [`CatchUp`](super::CatchUp) with retries, delivering the posts not
//! yet seen, then [`Inbound::CaughtUp`] so the consumer can re-read the rest.

use super::Inbound;
use super::shared::{lock, millis};
use super::socket::{End, Worker, stop_requested};
use crate::mattermost::types::Post;

/// Failed REST catch-ups of one channel before the link gives up on it.
const CATCH_UP_TRIES: u32 = 5;

#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    pub(super) since_ms: i64,
    failures: u32,
}

impl Worker {
    /// Records, for every served channel, where a catch-up must start.
    pub(super) fn schedule_catch_up(&mut self) {
        self.events_lost = true;
        let margin = millis(self.cfg.catch_up_margin);
        let channels = lock(&self.shared.channels).clone();
        for (id, mark) in channels {
            let since = mark
                .newest_create_at
                .unwrap_or(mark.served_since_ms)
                .saturating_sub(margin);
            self.pending
                .entry(id)
                .and_modify(|p| p.since_ms = p.since_ms.min(since))
                .or_insert(Pending {
                    since_ms: since,
                    failures: 0,
                });
        }
    }

    /// Fetches missed posts of every pending channel and delivers the new
    /// ones. Channels that fail stay pending and are retried. Once no
    /// channel is pending, the consumer is told that other events (reactions)
    /// may have been lost, since REST has no feed of them to replay.
    pub(super) async fn run_catch_up(&mut self) -> Result<(), End> {
        if !self.pending.is_empty() {
            self.catch_up_posts().await?;
        }
        if self.pending.is_empty() && std::mem::take(&mut self.events_lost) {
            self.deliver(Inbound::CaughtUp).await?;
        }
        Ok(())
    }

    async fn catch_up_posts(&mut self) -> Result<(), End> {
        self.shared.stats(|s| s.catch_ups += 1);
        let channels: Vec<(String, Pending)> =
            self.pending.iter().map(|(k, v)| (k.clone(), *v)).collect();
        for (channel_id, pending) in channels {
            let mut stop = self.stop.clone();
            let call = tokio::time::timeout(
                self.cfg.catch_up_timeout,
                self.catch_up.posts_since(&channel_id, pending.since_ms),
            );
            let result = tokio::select! {
                _ = stop_requested(&mut stop) => return Err(End::Stop),
                r = call => r,
            };
            let error = match result {
                Ok(Ok(posts)) => {
                    let n = self
                        .deliver_caught_up(&channel_id, pending.since_ms, posts)
                        .await?;
                    tracing::info!(channel_id = %channel_id, recovered = n, "caught up");
                    self.pending.remove(&channel_id);
                    continue;
                }
                Ok(Err(e)) => self.scrub(&e),
                Err(_) => format!("timed out after {:?}", self.cfg.catch_up_timeout),
            };
            let failures = pending.failures + 1;
            if failures >= CATCH_UP_TRIES {
                tracing::error!(channel_id = %channel_id, error = %error, "catch-up failed; giving up, posts may be lost");
                self.pending.remove(&channel_id);
            } else {
                tracing::warn!(channel_id = %channel_id, error = %error, "catch-up failed; will retry");
                if let Some(p) = self.pending.get_mut(&channel_id) {
                    p.failures = failures;
                }
            }
        }
        Ok(())
    }

    pub(super) async fn deliver_caught_up(
        &mut self,
        channel_id: &str,
        since_ms: i64,
        mut posts: Vec<Post>,
    ) -> Result<u64, End> {
        posts.retain(|p| {
            !p.id.is_empty()
                && p.delete_at == 0
                && p.original_id.is_empty()
                && p.create_at >= since_ms
                && p.user_id != self.cfg.bot_user_id
        });
        posts.sort_by(|a, b| (a.create_at, &a.id).cmp(&(b.create_at, &b.id)));
        let mut n = 0;
        for mut post in posts {
            if self.seen.contains(&post.id) {
                continue;
            }
            if post.channel_id.is_empty() {
                channel_id.clone_into(&mut post.channel_id);
            }
            self.seen.insert(post.id.clone());
            self.shared.note_post(&post);
            self.deliver(Inbound::Posted {
                post,
                channel_type: String::new(),
                sender_name: String::new(),
                mentions: Vec::new(),
                caught_up: true,
            })
            .await?;
            self.shared.stats(|s| s.posts_recovered += 1);
            n += 1;
        }
        Ok(n)
    }
}
