//! The state of one assistant turn, fed by OpenCode events, rendered into
//! post texts.
//!
//! A turn is everything OpenCode produces in answer to one user message:
//! every assistant message whose `parentID` is that message (one per model
//! step, so a turn with tool calls has several). Text is accumulated per
//! part, in order, so text before and after a tool call both survive
//! (defect 1 of the old plugin), and deltas are applied as they come
//! (defect 2) while `message.part.updated` stays authoritative.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::format;
use super::layout::{self, Limits, LiveMeta, MetaKind};
use crate::opencode::events::{Event, PartDelta};
use crate::opencode::message::{
    MessageInfo, MessageWithParts, Part, PartBase, TextPart, Todo, Tokens, ToolPart,
};

/// How a turn ended, as the caller observed it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Completed,
    Failed(String),
    Aborted,
}

/// Figures for footers and benchmarks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// `provider/model` of the last step that named one.
    pub model: Option<String>,
    pub cost: f64,
    pub tokens: Tokens,
    /// Tool calls made during the turn.
    pub tools: usize,
    pub elapsed_ms: f64,
}

/// `session.status` as the status line needs it.
#[derive(Debug, Clone, Default, PartialEq)]
enum Activity {
    #[default]
    Busy,
    Idle,
    Retry {
        attempt: u64,
        message: String,
        next_ms: Option<f64>,
    },
}

/// Buffered parts of at most this many messages not (yet) known to belong
/// to the turn; they belong to other turns more often than not.
const MAX_PENDING_MESSAGES: usize = 32;
/// Messages known to belong elsewhere, remembered so their parts are not
/// buffered.
const MAX_FOREIGN: usize = 64;
/// Longest detail on a tool line.
const TOOL_DETAIL_CHARS: usize = 120;
/// Longest line of shell output shown.
const SHELL_LINE_CHARS: usize = 200;
/// Longest error text in a footer.
const ERROR_CHARS: usize = 500;

/// One assistant turn; see the module docs.
#[derive(Debug, Clone)]
pub struct Turn {
    session_id: String,
    user_message_id: String,
    started_at_ms: f64,
    /// The latest time the caller told us about.
    now_ms: f64,
    /// Assistant messages of this turn, by id (ids sort by creation).
    messages: BTreeMap<String, MessageInfo>,
    /// Parts by message id, then part id; for this turn's messages and for
    /// messages not adopted yet (parts may arrive before their message).
    parts: BTreeMap<String, BTreeMap<String, Part>>,
    foreign: BTreeSet<String>,
    activity: Activity,
    waiting: Option<String>,
    todos: Vec<Todo>,
    error: Option<String>,
    outcome: Option<Outcome>,
    finished_at_ms: Option<f64>,
    /// The file the finished reply was attached as, if it was too long to
    /// post inline; the posts then show only its head.
    attached: Option<String>,
}

impl Turn {
    pub fn new(
        session_id: impl Into<String>,
        user_message_id: impl Into<String>,
        started_at_ms: f64,
    ) -> Turn {
        Turn {
            session_id: session_id.into(),
            user_message_id: user_message_id.into(),
            started_at_ms,
            now_ms: started_at_ms,
            messages: BTreeMap::new(),
            parts: BTreeMap::new(),
            foreign: BTreeSet::new(),
            activity: Activity::default(),
            waiting: None,
            todos: Vec::new(),
            error: None,
            outcome: None,
            finished_at_ms: None,
            attached: None,
        }
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    pub fn user_message_id(&self) -> &str {
        &self.user_message_id
    }

    fn seen(&mut self, now_ms: f64) {
        if now_ms.is_finite() && now_ms > self.now_ms {
            self.now_ms = now_ms;
        }
    }

    /// Apply one event (events of other sessions and other turns are
    /// ignored). Returns true when the rendered output may have changed.
    pub fn apply(&mut self, event: &Event, now_ms: f64) -> bool {
        if event.session_id() != Some(self.session_id.as_str()) {
            return false;
        }
        self.seen(now_ms);
        match event {
            Event::MessageUpdated(m) => self.message(&m.info),
            Event::MessagePartUpdated(p) => self.part(p.part.clone()),
            Event::MessagePartDelta(d) => self.delta(d),
            Event::SessionStatus(s) => self.status(&s.status),
            Event::SessionError(e) => {
                let text = error_text(&e.error);
                let changed = self.error.as_ref() != Some(&text);
                self.error = Some(text);
                changed
            }
            Event::TodoUpdated(t) => {
                let changed = self.todos != t.todos;
                self.todos.clone_from(&t.todos);
                changed
            }
            _ => false,
        }
    }

    fn ours(&self, info: &MessageInfo) -> bool {
        info.role == "assistant"
            && !info.id.is_empty()
            && info.parent_id.as_deref() == Some(self.user_message_id.as_str())
    }

    fn message(&mut self, info: &MessageInfo) -> bool {
        if !self.ours(info) {
            if !info.id.is_empty() && !self.messages.contains_key(&info.id) {
                self.parts.remove(&info.id);
                self.foreign.insert(info.id.clone());
                if self.foreign.len() > MAX_FOREIGN {
                    self.foreign.pop_first();
                }
            }
            return false;
        }
        self.foreign.remove(&info.id);
        self.parts.entry(info.id.clone()).or_default();
        let changed = self.messages.get(&info.id) != Some(info);
        self.messages.insert(info.id.clone(), info.clone());
        changed
    }

    /// The parts of `message_id`, unless that message belongs elsewhere.
    fn parts_of(&mut self, message_id: &str) -> Option<&mut BTreeMap<String, Part>> {
        if message_id.is_empty()
            || message_id == self.user_message_id
            || self.foreign.contains(message_id)
        {
            return None;
        }
        if !self.parts.contains_key(message_id) {
            let pending = self
                .parts
                .keys()
                .filter(|id| !self.messages.contains_key(*id))
                .count();
            if pending >= MAX_PENDING_MESSAGES
                && let Some(oldest) = self
                    .parts
                    .keys()
                    .find(|id| !self.messages.contains_key(*id))
                    .cloned()
            {
                self.parts.remove(&oldest);
            }
        }
        Some(self.parts.entry(message_id.to_owned()).or_default())
    }

    fn part(&mut self, part: Part) -> bool {
        let message_id = part.base().message_id.clone();
        let Some(parts) = self.parts_of(&message_id) else {
            return false;
        };
        let changed = parts.get(part.id()) != Some(&part);
        parts.insert(part.id().to_owned(), part);
        changed && self.messages.contains_key(&message_id)
    }

    fn delta(&mut self, d: &PartDelta) -> bool {
        if d.field != "text" || d.delta.is_empty() {
            return false;
        }
        let Some(parts) = self.parts_of(&d.message_id) else {
            return false;
        };
        let visible = match parts.get_mut(&d.part_id) {
            Some(Part::Text(t)) => {
                t.text.push_str(&d.delta);
                !t.synthetic && !t.ignored
            }
            Some(Part::Reasoning(t)) => {
                t.text.push_str(&d.delta);
                false
            }
            Some(_) => false,
            None => {
                // Deltas can precede the part's first update.
                let base = PartBase {
                    id: d.part_id.clone(),
                    session_id: d.session_id.clone(),
                    message_id: d.message_id.clone(),
                };
                let text = TextPart {
                    base,
                    text: d.delta.clone(),
                    ..TextPart::default()
                };
                parts.insert(d.part_id.clone(), Part::Text(text));
                true
            }
        };
        visible && self.messages.contains_key(&d.message_id)
    }

    fn status(&mut self, status: &Value) -> bool {
        let activity = match status.get("type").and_then(Value::as_str) {
            Some("busy") => Activity::Busy,
            Some("idle") => Activity::Idle,
            Some("retry") => Activity::Retry {
                attempt: status.get("attempt").and_then(Value::as_u64).unwrap_or(0),
                message: status
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                next_ms: status.get("next").and_then(Value::as_f64),
            },
            _ => return false,
        };
        let changed = self.activity != activity;
        self.activity = activity;
        changed
    }

    /// Replace the messages with the authoritative list of the session
    /// (`GET /session/{id}/message`), e.g. after a restart. Keeps only this
    /// turn's messages; status, todos and outcome are left alone.
    pub fn load(&mut self, messages: &[MessageWithParts], now_ms: f64) {
        self.seen(now_ms);
        self.messages.clear();
        self.parts.clear();
        for m in messages {
            if !self.ours(&m.info) {
                continue;
            }
            let parts = m
                .parts
                .iter()
                .map(|p| (p.id().to_owned(), p.clone()))
                .collect();
            self.parts.insert(m.info.id.clone(), parts);
            self.messages.insert(m.info.id.clone(), m.info.clone());
        }
    }

    /// Show (or clear) a waiting state, e.g. `Some("permission")` while a
    /// permission or question is pending.
    pub fn set_waiting(&mut self, what: Option<String>) {
        self.waiting = what;
    }

    /// True once any assistant message of this turn is known.
    pub fn has_started(&self) -> bool {
        !self.messages.is_empty()
    }

    /// Whether the turn's last assistant message is completed and did not
    /// stop for tool calls (another step would follow those).
    pub fn looks_complete(&self) -> bool {
        self.messages.values().next_back().is_some_and(|m| {
            m.time.completed.is_some() && m.finish.as_deref() != Some("tool-calls")
        })
    }

    pub fn finish(&mut self, outcome: Outcome, now_ms: f64) {
        self.seen(now_ms);
        self.outcome = Some(outcome);
        self.finished_at_ms = Some(self.now_ms);
    }

    /// The finished reply was attached to the thread as `file_name`: render
    /// its head and a pointer instead of the whole text.
    pub fn attach_reply(&mut self, file_name: String) {
        self.attached = Some(file_name);
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// The error OpenCode reported for this turn (`session.error`, else the
    /// last message's error), as plain text.
    pub fn error(&self) -> Option<String> {
        self.error.clone().or_else(|| {
            self.messages
                .values()
                .rev()
                .find_map(|m| m.error.as_ref())
                .map(error_text)
        })
    }

    /// Parts of this turn's messages, in order.
    fn turn_parts(&self) -> impl Iterator<Item = &Part> {
        self.messages
            .keys()
            .filter_map(|id| self.parts.get(id))
            .flat_map(|parts| parts.values())
    }

    fn tools(&self) -> impl Iterator<Item = &ToolPart> {
        self.turn_parts().filter_map(|p| match p {
            Part::Tool(t) => Some(t),
            _ => None,
        })
    }

    /// The reply's text: the turn's non-synthetic, non-ignored, non-empty
    /// text parts in order, joined with `"\n\n"`.
    pub fn response_text(&self) -> String {
        let texts: Vec<&str> = self
            .turn_parts()
            .filter_map(|p| match p {
                Part::Text(t) if !t.synthetic && !t.ignored && !t.text.is_empty() => {
                    Some(t.text.as_str())
                }
                _ => None,
            })
            .collect();
        texts.join("\n\n")
    }

    pub fn summary(&self) -> Summary {
        let mut summary = Summary {
            tools: self.tools().count(),
            elapsed_ms: self.finished_at_ms.unwrap_or(self.now_ms) - self.started_at_ms,
            ..Summary::default()
        };
        for (id, info) in &self.messages {
            if !info.model_id.is_empty() {
                summary.model = Some(if info.provider_id.is_empty() {
                    info.model_id.clone()
                } else {
                    format!("{}/{}", info.provider_id, info.model_id)
                });
            }
            let (cost, tokens) = if info.cost > 0.0 || info.tokens.total() > 0.0 {
                (info.cost, info.tokens)
            } else {
                // Older messages may carry figures only on their steps.
                self.parts
                    .get(id)
                    .into_iter()
                    .flat_map(|p| p.values())
                    .fold(
                        (0.0, Tokens::default()),
                        |(cost, tokens), part| match part {
                            Part::StepFinish(s) => (cost + s.cost, add(tokens, s.tokens)),
                            _ => (cost, tokens),
                        },
                    )
            };
            summary.cost += cost;
            summary.tokens = add(summary.tokens, tokens);
        }
        summary
    }

    /// Post texts, first to last, for the current state.
    pub fn render(&self, limits: &Limits, now_ms: f64) -> Vec<String> {
        let mut body = self.response_text();
        if let (Some(_), Some(file)) = (&self.outcome, &self.attached) {
            body = layout::attached_body(&body, file);
        }
        let room = layout::meta_room(limits);
        let (meta, kind) = match &self.outcome {
            Some(outcome) => (
                layout::cap(&self.footer(outcome, body.is_empty()), room),
                MetaKind::Final,
            ),
            None => (self.live_meta(now_ms).render(room), MetaKind::Live),
        };
        layout::posts(&body, &meta, kind, limits)
    }

    fn live_meta(&self, now_ms: f64) -> LiveMeta {
        let running = self.tools().filter(|t| t.state.status == "running").last();
        let status = if let Some(what) = &self.waiting {
            format!(
                "⏸️ Waiting for {}",
                format::plain(&format::one_line(what, 120))
            )
        } else if let Activity::Retry {
            attempt,
            message,
            next_ms,
        } = &self.activity
        {
            let mut line = format!(
                "🔄 Retrying (attempt {attempt}): {}",
                format::plain(&format::one_line(message, 200))
            );
            if let Some(next) = next_ms.filter(|&n| n > now_ms) {
                line.push_str(&format!(" · next in {}", format::duration(next - now_ms)));
            }
            line
        } else if let Some(tool) = running {
            let since = tool
                .state
                .time
                .start
                .map(|s| format!(" {}", format::duration(now_ms - s)))
                .unwrap_or_default();
            format!("🔧 Running {}…{since}", code(&tool.tool))
        } else {
            format!(
                "💻 Processing… {}",
                format::duration(now_ms - self.started_at_ms)
            )
        };
        let shell = running
            .filter(|t| t.tool == "bash")
            .and_then(|t| t.state.metadata.get("output"))
            .and_then(Value::as_str)
            .map(shell_tail)
            .unwrap_or_default();
        let (todo_header, todos) = if self.todos.is_empty() {
            (None, Vec::new())
        } else {
            (
                Some(self.todo_tally()),
                self.todos.iter().map(todo_line).collect(),
            )
        };
        LiveMeta {
            status,
            tools: self.tools().map(|t| tool_line(t, now_ms)).collect(),
            shell,
            todo_header,
            todos,
        }
    }

    fn todo_tally(&self) -> String {
        let open = self.todos.iter().filter(|t| t.status != "cancelled");
        let done = open.clone().filter(|t| t.status == "completed").count();
        format!("📋 Tasks {done}/{}", open.count())
    }

    fn footer(&self, outcome: &Outcome, no_text: bool) -> String {
        let s = self.summary();
        let head = match outcome {
            Outcome::Completed => "✅ Done in",
            Outcome::Aborted => "🛑 Stopped after",
            Outcome::Failed(_) => "❌ Failed after",
        };
        let mut items = vec![format!("{head} {}", format::duration(s.elapsed_ms))];
        if s.tools > 0 {
            // Which tools ran, by name, in first-use order: what a reader
            // scans for once the live tool lines are gone.
            let mut names: Vec<(&str, usize)> = Vec::new();
            for t in self.tools() {
                match names.iter_mut().find(|(n, _)| *n == t.tool) {
                    Some((_, count)) => *count += 1,
                    None => names.push((&t.tool, 1)),
                }
            }
            let list: Vec<String> = names
                .iter()
                .map(|(n, c)| match c {
                    1 => code(n),
                    c => format!("{} ×{c}", code(n)),
                })
                .collect();
            let noun = if s.tools == 1 { "tool" } else { "tools" };
            items.push(format!("{} {noun} ({})", s.tools, list.join(", ")));
        }
        if s.cost > 0.0 {
            items.push(format::cost(s.cost));
        }
        if s.tokens.total() > 0.0 {
            items.push(format!("{} tokens", format::tokens(s.tokens.total())));
        }
        if let Some(model) = &s.model {
            items.push(format::plain(model));
        }
        if no_text {
            items.push("_(no text reply)_".to_owned());
        }
        let mut line = items.join(" · ");
        if let Outcome::Failed(error) = outcome {
            let error = if error.trim().is_empty() {
                self.error().unwrap_or_else(|| "unknown error".to_owned())
            } else {
                error.clone()
            };
            line.push_str(": ");
            line.push_str(&format::plain(&format::one_line(&error, ERROR_CHARS)));
        }
        if !self.todos.is_empty() {
            line.push('\n');
            line.push_str(&self.todo_tally());
        }
        line
    }
}

fn add(a: Tokens, b: Tokens) -> Tokens {
    Tokens {
        input: a.input + b.input,
        output: a.output + b.output,
        reasoning: a.reasoning + b.reasoning,
        cache: crate::opencode::message::CacheTokens {
            read: a.cache.read + b.cache.read,
            write: a.cache.write + b.cache.write,
        },
    }
}

/// A tool name as inline code (names never hold backticks in practice; one
/// that does must not break the line).
fn code(name: &str) -> String {
    format!("`{}`", name.replace('`', "'"))
}

/// An OpenCode error value (`{name, data: {message}}`, or a string) as text.
fn error_text(error: &Value) -> String {
    let message = [&error["data"]["message"], &error["message"], &error["name"]]
        .into_iter()
        .find_map(|v| v.as_str().filter(|s| !s.trim().is_empty()));
    match (message, error) {
        (Some(m), _) => m.to_owned(),
        (None, Value::String(s)) => s.clone(),
        (None, Value::Null) => "unknown error".to_owned(),
        (None, other) => other.to_string(),
    }
}

/// What a tool call is about, in one line: its title, else the most telling
/// field of its input.
fn tool_detail(tool: &ToolPart) -> String {
    if tool.state.status == "error"
        && let Some(error) = tool.state.error.as_deref()
        && let Some(first) = error.lines().find(|l| !l.trim().is_empty())
    {
        return first.to_owned();
    }
    if let Some(title) = tool.state.title.as_deref().filter(|t| !t.trim().is_empty()) {
        return title.to_owned();
    }
    let input = &tool.state.input;
    const KEYS: [&str; 8] = [
        "command",
        "filePath",
        "path",
        "pattern",
        "url",
        "query",
        "description",
        "prompt",
    ];
    if let Some(text) = KEYS.iter().find_map(|k| input[*k].as_str()) {
        return text.to_owned();
    }
    match input {
        Value::Object(map) if map.is_empty() => String::new(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn tool_line(tool: &ToolPart, now_ms: f64) -> String {
    let time = tool.state.time;
    let (icon, timing) = match tool.state.status.as_str() {
        "completed" | "error" => {
            let icon = if tool.state.status == "error" {
                "❌"
            } else {
                "✅"
            };
            let timing = match (time.start, time.end) {
                (Some(s), Some(e)) => format!(" · {}", format::duration(e - s)),
                _ => String::new(),
            };
            (icon, timing)
        }
        "running" => (
            "⏳",
            time.start
                .map(|s| format!(" · {}…", format::duration(now_ms - s)))
                .unwrap_or_default(),
        ),
        _ => ("⏳", String::new()),
    };
    let detail = format::plain(&format::one_line(&tool_detail(tool), TOOL_DETAIL_CHARS));
    let name = code(&tool.tool);
    if detail.is_empty() {
        format!("{icon} {name}{timing}")
    } else {
        format!("{icon} {name} {detail}{timing}")
    }
}

/// The last lines of live shell output, safe inside a ``` fence: escape
/// sequences and carriage-return redraws reduced to what a terminal would
/// show, long lines capped, and a backtick fence line broken with a
/// zero-width space so it cannot close the block.
fn shell_tail(output: &str) -> Vec<String> {
    let lines: Vec<&str> = output.trim_end_matches(['\n', '\r']).lines().collect();
    let start = lines.len().saturating_sub(LiveMeta::MAX_SHELL);
    lines[start..]
        .iter()
        .map(|line| {
            let shown = line
                .rsplit('\r')
                .find(|s| !s.is_empty())
                .unwrap_or_default();
            let text = layout::cap(&strip_ansi(shown), SHELL_LINE_CHARS);
            if text.trim_start().starts_with("```") {
                format!("\u{200B}{text}")
            } else {
                text
            }
        })
        .collect()
}

/// Drop ANSI escape sequences (colours, cursor moves) from terminal output.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            if !c.is_control() || c == '\t' {
                out.push(c);
            }
            continue;
        }
        match chars.next() {
            // CSI: parameters and intermediates, then one final byte.
            Some('[') => {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            // OSC: up to BEL or ESC \.
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\u{7}' || (c == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn todo_line(todo: &Todo) -> String {
    let text = format::plain(&format::one_line(&todo.content, 200));
    match todo.status.as_str() {
        "completed" => format!("✅ ~~{text}~~"),
        "cancelled" => format!("❌ ~~{text}~~"),
        "in_progress" => format!("🔄 {text}"),
        "pending" => format!("⏳ {text}"),
        _ => format!("❔ {text}"),
    }
}

/// How a turn ended, from the last assistant message answering it.
pub fn outcome_of(messages: &[MessageWithParts], user_message_id: &str) -> Outcome {
    let last = messages.iter().rev().find(|m| {
        m.info.role == "assistant" && m.info.parent_id.as_deref() == Some(user_message_id)
    });
    let Some(error) = last.and_then(|m| m.info.error.as_ref()) else {
        return Outcome::Completed;
    };
    let name = error
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or_default();
    if name == "MessageAbortedError" {
        return Outcome::Aborted;
    }
    let message = error
        .pointer("/data/message")
        .and_then(|m| m.as_str())
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            if name.is_empty() {
                "unknown error".to_owned()
            } else {
                name.to_owned()
            }
        });
    Outcome::Failed(message)
}
