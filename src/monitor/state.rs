//! Which attention state each session is in, derived from OpenCode events
//! alone. Pure: no IO, no clock, so every transition is unit-tested.
//!
//! A session needs someone when it asks for a permission, asks a question,
//! stops after working (busy → idle), or fails. Each such state gets a key
//! that is new for every occurrence: the request id for permissions and
//! questions, a counter for idle and failed. Alerts are deduplicated by
//! comparing keys, so the key must not repeat for a new occurrence, not even
//! after the agent restarts and its counters start again: counters carry the
//! run they were counted in.

use std::collections::HashMap;

use serde_json::Value;

use crate::opencode::events::Event;

/// The tools whose own calls are not "work" when deciding whether the turn
/// that set up a monitor went on working afterwards.
const MONITOR_TOOLS: [&str; 2] = ["mattermost_monitor", "mattermost_unmonitor"];

/// What a session needs from someone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attention {
    /// A tool wants permission (`permission.asked`).
    Permission {
        request_id: String,
        permission: String,
        patterns: Vec<String>,
    },
    /// The model asked a question (`question.asked`); its first question.
    Question {
        request_id: String,
        header: String,
        question: String,
        /// How many questions the request holds.
        count: usize,
    },
    /// The session worked and stopped: it waits for input.
    Idle,
    /// The turn failed; the error's message or name.
    Failed { message: String },
}

/// A session entered a new attention state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub session_id: String,
    /// Unique per occurrence; compared with each target's `last_alert`.
    pub key: String,
    pub attention: Attention,
    /// Targets not to alert for this change: they set up their monitor
    /// from within the very turn that just ended, and nothing ran after it.
    pub skip: Vec<String>,
}

#[derive(Debug, Default)]
struct Track {
    /// Seen working since the last idle or failure.
    busy: bool,
    idles: u64,
    failures: u64,
    /// The key of the current attention state, if any.
    key: Option<String>,
    /// Targets that set up a monitor from this session's running turn and
    /// have seen no work since (see [`Tracker::monitor_added`]).
    quiet: Vec<String>,
}

/// The attention state of every session seen, keyed by session id.
#[derive(Debug)]
pub(crate) struct Tracker {
    /// Tells this run's counters from an earlier run's (see the module doc).
    run: String,
    sessions: HashMap<String, Track>,
}

impl Tracker {
    /// A tracker whose idle and failure keys are marked with `run`.
    pub(crate) fn new(run: impl Into<String>) -> Self {
        Self {
            run: run.into(),
            sessions: HashMap::new(),
        }
    }

    /// Apply one event; the new attention state if it entered one.
    pub(crate) fn observe(&mut self, event: &Event) -> Option<Change> {
        match event {
            Event::SessionStatus(s) => match s.status.get("type").and_then(Value::as_str) {
                // A retry is still the same piece of work.
                Some("busy" | "retry") => {
                    self.track(&s.session_id)?.busy = true;
                    None
                }
                Some("idle") => self.idle(&s.session_id),
                _ => None,
            },
            Event::SessionIdle(s) => self.idle(&s.session_id),
            Event::PermissionAsked(p) => self.asked(
                &p.session_id,
                format!("permission:{}", p.id),
                Attention::Permission {
                    request_id: p.id.clone(),
                    permission: p.permission.clone(),
                    patterns: p.patterns.clone(),
                },
                &p.id,
            ),
            Event::QuestionAsked(q) => {
                let first = q.questions.first();
                self.asked(
                    &q.session_id,
                    format!("question:{}", q.id),
                    Attention::Question {
                        request_id: q.id.clone(),
                        header: first.map(|f| f.header.clone()).unwrap_or_default(),
                        question: first.map(|f| f.question.clone()).unwrap_or_default(),
                        count: q.questions.len(),
                    },
                    &q.id,
                )
            }
            Event::SessionError(e) => self.failed(e.session_id.as_deref()?, &e.error),
            Event::MessagePartUpdated(p) => {
                if let crate::opencode::message::Part::Tool(tool) = &p.part
                    && !MONITOR_TOOLS.contains(&tool.tool.as_str())
                    && matches!(
                        tool.state.status.as_str(),
                        "running" | "completed" | "error"
                    )
                    && let Some(track) = self.sessions.get_mut(&tool.base.session_id)
                {
                    track.quiet.clear();
                }
                None
            }
            Event::SessionDeleted(s) => {
                self.sessions.remove(&s.info.id);
                None
            }
            _ => None,
        }
    }

    /// `target` just set up a monitor of `session_id`. When that happened
    /// from the session's own running turn (the model called
    /// `mattermost_monitor` for the person at the keyboard), the end of that
    /// turn is not news to them; it is alerted only if the turn went on
    /// working (ran another tool, asked something) after setting it up.
    pub(crate) fn monitor_added(&mut self, session_id: &str, target: &str, from_own_turn: bool) {
        if !from_own_turn {
            return;
        }
        let Some(track) = self.track(session_id) else {
            return;
        };
        if track.busy && !track.quiet.iter().any(|t| t == target) {
            track.quiet.push(target.to_owned());
        }
    }

    /// The key of the session's current attention state, if any.
    #[cfg(test)]
    pub(crate) fn key_of(&self, session_id: &str) -> Option<&str> {
        self.sessions.get(session_id)?.key.as_deref()
    }

    fn track(&mut self, session_id: &str) -> Option<&mut Track> {
        if session_id.is_empty() {
            return None;
        }
        Some(self.sessions.entry(session_id.to_owned()).or_default())
    }

    /// A permission or a question: the session is mid-turn and waits.
    fn asked(
        &mut self,
        session_id: &str,
        key: String,
        attention: Attention,
        request_id: &str,
    ) -> Option<Change> {
        if request_id.is_empty() {
            return None;
        }
        let track = self.track(session_id)?;
        // Asking means working, even when the busy status was missed.
        track.busy = true;
        // The turn goes on after the answer: its end is news again.
        track.quiet.clear();
        if track.key.as_deref() == Some(key.as_str()) {
            return None;
        }
        track.key = Some(key.clone());
        Some(Change {
            session_id: session_id.to_owned(),
            key,
            attention,
            skip: Vec::new(),
        })
    }

    /// `session.idle` and `session.status` idle both end a turn; only the
    /// first after work counts.
    fn idle(&mut self, session_id: &str) -> Option<Change> {
        let run = self.run.clone();
        let track = self.track(session_id)?;
        if !track.busy {
            return None;
        }
        track.busy = false;
        track.idles += 1;
        let key = format!("idle:{}@{run}", track.idles);
        track.key = Some(key.clone());
        Some(Change {
            session_id: session_id.to_owned(),
            key,
            attention: Attention::Idle,
            skip: std::mem::take(&mut track.quiet),
        })
    }

    fn failed(&mut self, session_id: &str, error: &Value) -> Option<Change> {
        let name = error.get("name").and_then(Value::as_str).unwrap_or("");
        // A turn stopped on purpose (`!stop`, Esc in the TUI) is not a
        // failure; the idle that follows reports that the session waits.
        if name == "MessageAbortedError" {
            return None;
        }
        let message = error
            .get("data")
            .and_then(|d| d.get("message"))
            .and_then(Value::as_str)
            .filter(|m| !m.trim().is_empty())
            .unwrap_or(if name.is_empty() {
                "unknown error"
            } else {
                name
            })
            .to_owned();
        let run = self.run.clone();
        let track = self.track(session_id)?;
        // The idle that follows a failure is the same stop: not alerted twice.
        track.busy = false;
        track.quiet.clear();
        track.failures += 1;
        let key = format!("failed:{}@{run}", track.failures);
        track.key = Some(key.clone());
        Some(Change {
            session_id: session_id.to_owned(),
            key,
            attention: Attention::Failed { message },
            skip: Vec::new(),
        })
    }
}
