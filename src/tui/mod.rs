//! The TUI sync feature: prompts typed at OpenCode's TUI (or sent through
//! its API) show in the session's thread, and with
//! `OPENCODE_MM_DEFAULT_CHANNEL_ID` a session started there gets a thread at
//! once.
//!
//! Telling prompts typed at the TUI from the ones that came from chat: a
//! session's task sees every user message of its session. Its own turns
//! are known before OpenCode stores their prompt (the task holds the run
//! first), and every chat prompt starts with the envelope marker, so what is
//! left was typed somewhere else: it is echoed into the thread once, with
//! its reply streamed after it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{Instrument, info_span, warn};

use crate::opencode::Session;
use crate::opencode::events::Event;
use crate::opencode::message::Part;
use crate::sessions::Engine;
use crate::sessions::text::{ENVELOPE_PREFIX, SCHEDULED_TITLE_PREFIX, SUMMARY_TITLE_PREFIX};

/// User messages older than the task by more than this are history, not
/// new prompts (their `message.updated` is re-sent when OpenCode adds the
/// turn's summary).
const HISTORY_SLACK_MS: f64 = 5_000.0;

/// Per session: which user messages were already decided.
#[derive(Debug)]
pub struct TuiWatch {
    started_ms: f64,
    /// Decided: ours, history, or already echoed.
    seen: HashSet<String>,
    /// Not ours, waiting for their text.
    candidates: HashSet<String>,
}

impl TuiWatch {
    pub fn new(started_ms: f64) -> TuiWatch {
        TuiWatch {
            started_ms,
            seen: HashSet::new(),
            candidates: HashSet::new(),
        }
    }

    /// A user message this task sent (or resumed): never echoed.
    pub fn ours(&mut self, message_id: &str) {
        self.candidates.remove(message_id);
        self.seen.insert(message_id.to_owned());
    }

    /// Feed one event. Returns the id and text of a prompt typed elsewhere
    /// once its text is known, exactly once per message.
    pub fn observe(&mut self, event: &Event) -> Option<(String, String)> {
        match event {
            Event::MessageUpdated(m) if m.info.role == "user" => {
                let id = &m.info.id;
                if id.is_empty() || self.seen.contains(id) || self.candidates.contains(id) {
                    return None;
                }
                if m.info.time.created < self.started_ms - HISTORY_SLACK_MS {
                    self.seen.insert(id.clone());
                } else {
                    self.candidates.insert(id.clone());
                }
                None
            }
            Event::MessagePartUpdated(p) => {
                let Part::Text(text) = &p.part else {
                    return None;
                };
                let id = &text.base.message_id;
                if text.synthetic || text.ignored || text.text.trim().is_empty() {
                    return None;
                }
                if !self.candidates.remove(id) {
                    return None;
                }
                self.seen.insert(id.clone());
                if text.text.starts_with(ENVELOPE_PREFIX) {
                    // A chat prompt (another agent's, or sent before this
                    // task knew it): chat already shows it.
                    return None;
                }
                Some((id.clone(), text.text.clone()))
            }
            _ => None,
        }
    }
}

/// How a TUI prompt appears in the thread.
pub fn echo(text: &str) -> String {
    format!(":keyboard: **[TUI]** {}", text.trim())
}

/// How long a new session is left to the code that created it before it
/// gets a thread in the default channel.
const DEFAULT_THREAD_GRACE: Duration = Duration::from_millis(1500);

/// The TUI sync of a running bridge: one [`TuiWatch`] per followed session.
#[derive(Default)]
pub struct Tui {
    watches: Mutex<HashMap<String, TuiWatch>>,
}

impl Tui {
    fn with_watch<T>(&self, session_id: &str, f: impl FnOnce(&mut TuiWatch) -> T) -> T {
        let mut watches = self
            .watches
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let watch = watches
            .entry(session_id.to_owned())
            .or_insert_with(|| TuiWatch::new(crate::store::now_millis() as f64));
        f(watch)
    }

    /// A user message the engine sent or resumed: never echoed.
    pub fn ours(&self, session_id: &str, message_id: &str) {
        self.with_watch(session_id, |w| w.ours(message_id));
    }

    /// The id and text of a prompt typed elsewhere, once per message.
    pub fn observe(&self, session_id: &str, event: &Event) -> Option<(String, String)> {
        self.with_watch(session_id, |w| w.observe(event))
    }

    /// With `OPENCODE_MM_DEFAULT_CHANNEL_ID` set, a session started at the
    /// TUI gets its thread there at once. Sessions the bridge starts bind
    /// their own thread within moments, so this waits a little and looks;
    /// the session's events are held meanwhile ([`Engine::hold`]).
    pub fn session_created(engine: &Arc<Engine>, session: &Session) {
        let Some(channel) = engine.app.config.default_channel_id.clone() else {
            return;
        };
        if session.parent_id.is_some()
            || session.id.is_empty()
            || session.title.starts_with(SCHEDULED_TITLE_PREFIX)
            || session.title.starts_with(SUMMARY_TITLE_PREFIX)
        {
            return;
        }
        // What the session streams meanwhile waits for its thread's task:
        // a prompt sent in the first moment is shown too.
        engine.hold(&session.id);
        let engine = engine.clone();
        let session = session.clone();
        let span = info_span!("default_thread", session = %session.id);
        tokio::spawn(
            async move {
                tokio::time::sleep(DEFAULT_THREAD_GRACE).await;
                open_default_thread(&engine, &channel, &session).await;
                // Bound now (the held events went to its task), or no
                // thread here: nothing more to hold.
                engine.release(&session.id);
            }
            .instrument(span),
        );
    }
}

/// The session's thread in the default channel, unless it has one already.
async fn open_default_thread(engine: &Arc<Engine>, channel: &str, session: &Session) {
    match engine.app.store.threads_of_session(&session.id).await {
        Ok(threads) if threads.is_empty() => {}
        _ => return,
    }
    let Some(conn) = engine.app.connection().await else {
        return;
    };
    let attached =
        crate::sessions::threads::attach(engine, &conn, channel, session, "the TUI", "", false)
            .await;
    if let Err(e) = attached {
        warn!(error = %e, "cannot open a thread for a new session");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::opencode::events::Event;
    use serde_json::json;

    fn user_message(id: &str, created: f64) -> Event {
        Event::from_value(&json!({
            "type": "message.updated",
            "properties": {"info": {"id": id, "sessionID": "s", "role": "user",
                                    "time": {"created": created}}}
        }))
    }

    fn text_part(message: &str, text: &str, synthetic: bool) -> Event {
        Event::from_value(&json!({
            "type": "message.part.updated",
            "properties": {"part": {"id": format!("prt_{message}"), "sessionID": "s",
                                    "messageID": message, "type": "text", "text": text,
                                    "synthetic": synthetic}}
        }))
    }

    #[test]
    fn a_prompt_typed_elsewhere_is_echoed_once() {
        let mut w = TuiWatch::new(1_000_000.0);
        assert_eq!(w.observe(&user_message("m1", 1_000_100.0)), None);
        assert_eq!(
            w.observe(&text_part("m1", "run the tests", false)),
            Some(("m1".into(), "run the tests".into()))
        );
        assert_eq!(w.observe(&text_part("m1", "run the tests", false)), None);
        assert_eq!(w.observe(&user_message("m1", 1_000_100.0)), None);
        assert_eq!(w.observe(&text_part("m1", "run the tests", false)), None);
    }

    #[test]
    fn our_prompts_history_and_chat_envelopes_are_not_echoed() {
        let mut w = TuiWatch::new(1_000_000.0);
        w.ours("mine");
        w.observe(&user_message("mine", 1_000_100.0));
        assert_eq!(w.observe(&text_part("mine", "hello", false)), None);
        // Older than the task: a summary update of an old message.
        w.observe(&user_message("old", 900_000.0));
        assert_eq!(w.observe(&text_part("old", "hello", false)), None);
        // Another agent's chat prompt.
        w.observe(&user_message("chat", 1_000_100.0));
        let envelope = format!("{ENVELOPE_PREFIX}bob]\nhi");
        assert_eq!(w.observe(&text_part("chat", &envelope, false)), None);
    }

    #[test]
    fn synthetic_and_empty_parts_wait_for_the_real_text() {
        let mut w = TuiWatch::new(0.0);
        w.observe(&user_message("m", 10.0));
        assert_eq!(w.observe(&text_part("m", "file contents", true)), None);
        assert_eq!(w.observe(&text_part("m", "  ", false)), None);
        assert_eq!(
            w.observe(&text_part("m", "real", false)),
            Some(("m".into(), "real".into()))
        );
    }

    #[test]
    fn parts_of_unknown_messages_are_ignored() {
        let mut w = TuiWatch::new(0.0);
        assert_eq!(w.observe(&text_part("assistant-msg", "text", false)), None);
    }

    #[test]
    fn echo_marks_the_tui() {
        assert_eq!(echo(" fix it \n"), ":keyboard: **[TUI]** fix it");
    }
}
