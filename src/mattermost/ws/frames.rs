//! What one text frame means: decoding, action replies, sequence tracking
//! (replays skipped, gaps caught up), and dispatch of events to the consumer
//! as [`Inbound`], dropping the bot's own posts and duplicates.

use std::time::Instant;

use serde_json::Value;

use super::Inbound;
use super::socket::{Conn, End, Worker, stop_requested};
use crate::mattermost::types::Event;

impl Worker {
    pub(super) async fn on_text(&mut self, text: &str, conn: &mut Conn) -> Result<(), End> {
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable websocket frame ignored");
                return Ok(());
            }
        };
        if value.get("seq_reply").is_some() && value.get("event").is_none() {
            // The socket lost (or never had) its session: nothing more will
            // come on it, and it is no sign of a resume. Say so now rather
            // than at the next timeout.
            let failed = value.get("status").and_then(Value::as_str) == Some("FAIL");
            if failed && value.pointer("/error/status_code").and_then(Value::as_i64) == Some(401) {
                return Err(self.lost("the socket is not authenticated (401)", false));
            }
            // A reply to one of our actions; hello always precedes it, so on
            // a resume it means nothing was missed.
            if !conn.established && conn.resuming {
                self.resumed(conn);
            }
            if failed {
                tracing::debug!(reply = %value, "action failed");
            }
            return Ok(());
        }
        // Every current server numbers events; one that does not is taken
        // as it comes rather than mistaken for a replay of seq 0.
        let numbered = value.get("seq").and_then(Value::as_i64).is_some();
        let event: Event = match serde_json::from_value(value) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "malformed websocket event ignored");
                return Ok(());
            }
        };
        if event.event == "hello" {
            return self.on_hello(&event, conn).await;
        }
        if !conn.established && conn.resuming {
            self.resumed(conn);
        }
        if let Some(session) = self.session.as_mut().filter(|_| numbered) {
            if event.seq < session.next_seq {
                tracing::debug!(seq = event.seq, "replayed event skipped");
                return Ok(());
            }
            if event.seq > session.next_seq {
                tracing::warn!(
                    expected = session.next_seq,
                    got = event.seq,
                    "gap in event sequence; catching up"
                );
                session.next_seq = event.seq + 1;
                self.shared.stats(|s| s.seq_gaps += 1);
                self.schedule_catch_up();
                self.run_catch_up().await?;
            } else {
                session.next_seq = event.seq + 1;
            }
        }
        self.dispatch(&event).await
    }

    async fn dispatch(&mut self, event: &Event) -> Result<(), End> {
        match event.event.as_str() {
            "posted" => {
                let Some(post) = event.post() else {
                    tracing::warn!("posted event without a readable post ignored");
                    return Ok(());
                };
                if post.user_id == self.cfg.bot_user_id {
                    self.shared.stats(|s| s.own_dropped += 1);
                    return Ok(());
                }
                if !post.id.is_empty() && !self.seen.insert(post.id.clone()) {
                    self.shared.stats(|s| s.duplicates_dropped += 1);
                    return Ok(());
                }
                self.shared.note_post(&post);
                self.deliver(Inbound::Posted {
                    post,
                    channel_type: event.str_field("channel_type").unwrap_or("").to_owned(),
                    sender_name: event.str_field("sender_name").unwrap_or("").to_owned(),
                    mentions: event.mentions(),
                    caught_up: false,
                })
                .await
            }
            "post_edited" => {
                let Some(post) = event.post() else {
                    tracing::warn!("post_edited event without a readable post ignored");
                    return Ok(());
                };
                if post.user_id == self.cfg.bot_user_id {
                    self.shared.stats(|s| s.own_dropped += 1);
                    return Ok(());
                }
                if !self
                    .seen_edits
                    .insert(format!("{}@{}", post.id, post.update_at))
                {
                    self.shared.stats(|s| s.duplicates_dropped += 1);
                    return Ok(());
                }
                self.deliver(Inbound::PostEdited(post)).await
            }
            "post_deleted" => match event.post() {
                Some(post) => self.deliver(Inbound::PostDeleted(post)).await,
                None => Ok(()),
            },
            "reaction_added" => match event.reaction() {
                Some(r) => self.deliver(Inbound::ReactionAdded(r)).await,
                None => Ok(()),
            },
            "reaction_removed" => match event.reaction() {
                Some(r) => self.deliver(Inbound::ReactionRemoved(r)).await,
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// Hands one event to the consumer, waiting for room.
    pub(super) async fn deliver(&mut self, inbound: Inbound) -> Result<(), End> {
        let mut stop = self.stop.clone();
        tokio::select! {
            biased;
            _ = stop_requested(&mut stop) => Err(End::Stop),
            sent = self.events.send(inbound) => match sent {
                Ok(()) => {
                    self.shared.stats(|s| {
                        s.events_delivered += 1;
                        s.last_event = Some(Instant::now());
                    });
                    Ok(())
                }
                Err(_) => {
                    tracing::info!("event consumer gone; stopping the link");
                    Err(End::Stop)
                }
            },
        }
    }
}
