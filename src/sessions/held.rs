//! Events of a new session held for the moment before it has a thread.
//!
//! A session created at a TUI or through the API gets its thread in the
//! default channel a little after it is created (see the TUI feature), and
//! until then no task follows it. A prompt sent in that moment would be
//! answered in OpenCode and never shown. So the engine holds what a reply
//! is streamed from (messages, parts, status) for such a session, and its
//! task, once started, gets them first, in order. Requests (permissions,
//! questions) are never held: they go where requests of unfollowed sessions
//! go, at once.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::opencode::events::Event;

/// Most events held for one session: a prompt and well over a second of a
/// fast reply's deltas. Past it the rest is dropped, and the task settles
/// the reply from OpenCode's stored messages as after any dropped event.
pub const MAX_HELD_EVENTS: usize = 4096;

/// What was held for one session.
#[derive(Debug, Default)]
pub struct HeldEvents {
    pub events: Vec<Event>,
    /// Events dropped at [`MAX_HELD_EVENTS`].
    pub dropped: u64,
}

/// Sessions whose events are held, and their events.
#[derive(Debug, Default)]
pub struct Held {
    sessions: Mutex<HashMap<String, HeldEvents>>,
}

/// What [`Held::offer`] did with an event of a held session.
#[derive(Debug, PartialEq, Eq)]
pub enum Offered {
    Held,
    /// The session's buffer was full.
    Dropped,
}

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HeldEvents>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Start holding `session_id`'s events.
    pub fn hold(&self, session_id: &str) {
        self.lock().entry(session_id.to_owned()).or_default();
    }

    /// Stop holding and forget what was held (the session got no thread).
    pub fn release(&self, session_id: &str) {
        self.lock().remove(session_id);
    }

    pub fn is_held(&self, session_id: &str) -> bool {
        self.lock().contains_key(session_id)
    }

    /// Keep `event` if its session is held and it is what a reply streams
    /// from; otherwise it comes back.
    pub fn offer(&self, session_id: &str, event: Box<Event>) -> Result<Offered, Box<Event>> {
        if !streams_a_reply(&event) {
            return Err(event);
        }
        let mut sessions = self.lock();
        let Some(held) = sessions.get_mut(session_id) else {
            return Err(event);
        };
        if held.events.len() >= MAX_HELD_EVENTS {
            held.dropped += 1;
            return Ok(Offered::Dropped);
        }
        held.events.push(*event);
        Ok(Offered::Held)
    }

    /// Stop holding and hand over what was held.
    pub fn take(&self, session_id: &str) -> Option<HeldEvents> {
        self.lock().remove(session_id)
    }
}

fn streams_a_reply(event: &Event) -> bool {
    matches!(
        event,
        Event::SessionCreated(_)
            | Event::SessionUpdated(_)
            | Event::SessionIdle(_)
            | Event::SessionStatus(_)
            | Event::SessionError(_)
            | Event::MessageUpdated(_)
            | Event::MessagePartUpdated(_)
            | Event::MessagePartDelta(_)
            | Event::TodoUpdated(_)
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn event(kind: &str) -> Box<Event> {
        Box::new(Event::from_value(
            &json!({"type": kind, "properties": {"sessionID": "s"}}),
        ))
    }

    #[test]
    fn only_held_sessions_and_reply_events_are_kept_in_order() {
        let held = Held::default();
        assert!(held.offer("s", event("session.idle")).is_err());
        held.hold("s");
        assert_eq!(held.offer("s", event("session.idle")), Ok(Offered::Held));
        assert!(held.offer("s", event("permission.asked")).is_err());
        assert!(held.offer("other", event("session.idle")).is_err());
        assert_eq!(held.offer("s", event("session.status")), Ok(Offered::Held));
        let taken = held.take("s").unwrap();
        assert!(matches!(taken.events[0], Event::SessionIdle(_)));
        assert!(matches!(taken.events[1], Event::SessionStatus(_)));
        assert!(!held.is_held("s"));
        assert!(held.offer("s", event("session.idle")).is_err());
    }

    #[test]
    fn a_full_buffer_drops_and_counts_the_rest() {
        let held = Held::default();
        held.hold("s");
        for _ in 0..MAX_HELD_EVENTS {
            assert_eq!(held.offer("s", event("session.idle")), Ok(Offered::Held));
        }
        assert_eq!(held.offer("s", event("session.idle")), Ok(Offered::Dropped));
        let taken = held.take("s").unwrap();
        assert_eq!((taken.events.len(), taken.dropped), (MAX_HELD_EVENTS, 1));
    }

    #[test]
    fn released_sessions_keep_nothing() {
        let held = Held::default();
        held.hold("s");
        assert_eq!(held.offer("s", event("session.idle")), Ok(Offered::Held));
        held.release("s");
        assert!(held.take("s").is_none());
    }
}
