//! The posts that ask, and the same posts once answered. Text from the
//! agent (commands, question wording) is shown in code blocks or defused, so
//! it can neither break the layout nor ping a whole channel.

use crate::opencode::PermissionReply;
use crate::opencode::events::{PermissionAsked, QuestionInfo};
pub(crate) use crate::render::format::defuse;

/// Where a permission request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermissionOutcome {
    Pending,
    /// Answered from chat by this person (a username).
    Answered {
        reply: PermissionReply,
        by: String,
    },
    /// Answered in the TUI or another OpenCode client.
    Elsewhere(PermissionReply),
    /// OpenCode no longer waits for it (the turn ended or was aborted).
    Gone,
}

/// Where one question of a question request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuestionOutcome {
    Pending,
    Answered {
        answer: Vec<String>,
        by: String,
    },
    Rejected {
        by: String,
    },
    /// Nobody answered in time; the request was declined.
    Expired {
        after_minutes: u64,
    },
    /// Answered in the TUI or another client; the answer when known.
    Elsewhere {
        answer: Option<Vec<String>>,
    },
    Gone,
}

/// Which question of how many, for the heading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asked {
    pub index: usize,
    pub total: usize,
}

/// The permission request post.
pub fn permission_post(req: &PermissionAsked, outcome: &PermissionOutcome) -> String {
    let mut out = format!(
        "#### :lock: Permission needed: `{}`\n",
        inline(&req.permission)
    );
    let what = if req.permission == "bash" {
        "The agent wants to run:"
    } else {
        "The agent asks for it on:"
    };
    if !req.patterns.is_empty() {
        out.push_str(what);
        out.push('\n');
        let full = req.patterns.join("\n");
        out.push_str(&code_block(&full));
        let total = full.chars().count();
        if total > SHOWN_CHARS {
            out.push_str(&format!(
                ":warning: Shown up to {SHOWN_CHARS} of its {total} characters: the whole text \
                 is attached to this post. Read it before you allow it.\n"
            ));
        }
    }
    if let Some(description) = req
        .metadata
        .get("description")
        .and_then(|d| d.as_str())
        .filter(|d| !d.trim().is_empty())
    {
        let shown = crate::render::format::plain(&visible(&one_line(description, 300)));
        out.push_str(&format!("> {}\n", defuse(&shown)));
    }
    let extra: Vec<&String> = req
        .always
        .iter()
        .filter(|a| !req.patterns.contains(a))
        .collect();
    if !extra.is_empty() {
        let list: Vec<String> = extra
            .iter()
            .take(10)
            .map(|a| format!("`{}`", inline(a)))
            .collect();
        out.push_str(&format!(
            "\n`always` would also allow, without asking again: {}\n",
            list.join(", ")
        ));
    }
    out.push('\n');
    match outcome {
        PermissionOutcome::Pending => out.push_str(
            "React :white_check_mark: to allow once or :x: to deny, or reply `allow`, `always` \
             or `deny`.",
        ),
        PermissionOutcome::Answered { reply, by } => {
            out.push_str(&format!("{} by @{by}", verdict(*reply)));
        }
        PermissionOutcome::Elsewhere(reply) => {
            out.push_str(&format!("{} in OpenCode", verdict(*reply)));
        }
        PermissionOutcome::Gone => {
            out.push_str(":hourglass: No longer asked: OpenCode stopped waiting for an answer.")
        }
    }
    out
}

fn verdict(reply: PermissionReply) -> &'static str {
    match reply {
        PermissionReply::Once => ":white_check_mark: **Allowed once**",
        PermissionReply::Always => ":white_check_mark: **Always allowed**",
        PermissionReply::Reject => ":no_entry_sign: **Denied**",
    }
}

/// One question's post.
pub fn question_post(
    question: &QuestionInfo,
    asked: Asked,
    outcome: &QuestionOutcome,
    prefix: &str,
) -> String {
    let header = defuse(&one_line(&question.header, 80));
    let mut out = if asked.total > 1 {
        format!(
            "#### :question: Question {}/{}: {header}\n",
            asked.index + 1,
            asked.total
        )
    } else {
        format!("#### :question: {header}\n")
    };
    out.push_str(&defuse(&question.question));
    out.push_str("\n\n");
    for (i, option) in question.options.iter().enumerate() {
        out.push_str(&format!(
            "**{}.** {}",
            i + 1,
            defuse(&one_line(&option.label, 200))
        ));
        if !option.description.trim().is_empty() {
            out.push_str(&format!(
                " — _{}_",
                defuse(&one_line(&option.description, 300))
            ));
        }
        out.push('\n');
    }
    out.push('\n');
    let answered = |answer: &[String]| {
        answer
            .iter()
            .map(|a| defuse(&one_line(a, 500)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match outcome {
        QuestionOutcome::Pending => {
            let how = match (question.options.is_empty(), question.multiple) {
                (true, _) => "Reply with your answer.".to_owned(),
                (false, true) => "Reply with one or more numbers (e.g. `1, 3`)".to_owned(),
                (false, false) => "Reply with a number".to_owned(),
            };
            let typed = if question.options.is_empty() {
                ""
            } else if question.allows_custom() {
                " or type your own answer."
            } else {
                "."
            };
            out.push_str(&format!(
                "_{how}{typed} `{prefix}reject` declines the question._"
            ));
        }
        QuestionOutcome::Answered { answer, by } => {
            out.push_str(&format!(
                ":white_check_mark: **Answer:** {} — by @{by}",
                answered(answer)
            ));
        }
        QuestionOutcome::Rejected { by } => {
            out.push_str(&format!(
                ":x: **Declined** by @{by}; the agent goes on without it."
            ));
        }
        QuestionOutcome::Expired { after_minutes } => out.push_str(&format!(
            ":hourglass: **Expired** after {after_minutes} min without an answer; it was \
             declined so the agent can go on."
        )),
        QuestionOutcome::Elsewhere { answer: Some(a) } => {
            out.push_str(&format!(
                ":white_check_mark: **Answered in OpenCode:** {}",
                answered(a)
            ));
        }
        QuestionOutcome::Elsewhere { answer: None } => {
            out.push_str(":white_check_mark: **Answered in OpenCode.**")
        }
        QuestionOutcome::Gone => out
            .push_str(":hourglass: No longer asked: it was answered elsewhere or the turn ended."),
    }
    out
}

/// The most characters of a command a request post shows inline.
pub const SHOWN_CHARS: usize = 3000;

/// The whole text of a request's command when the post cannot show all of
/// it: it goes with the post as a file, so nothing is approved unseen.
pub fn long_command(req: &PermissionAsked) -> Option<String> {
    let full = req.patterns.join("\n");
    (full.chars().count() > SHOWN_CHARS).then_some(full)
}

/// A fenced block that the text cannot close early, its invisible controls
/// made visible.
fn code_block(text: &str) -> String {
    let body: String = visible(&text.chars().take(SHOWN_CHARS).collect::<String>());
    let longest = body.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}\n{body}\n{fence}\n")
}

/// Text with bidirectional and zero-width controls shown as `⟨U+202E⟩`:
/// invisible, they can make a command read differently from what runs.
pub fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(
            c,
            '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{061C}'
                | '\u{FEFF}'
        ) {
            out.push_str(&format!("⟨U+{:04X}⟩", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Text inside a code span: backticks would end it early.
fn inline(text: &str) -> String {
    visible(&one_line(text, 200)).replace('`', "'")
}

/// One line, at most `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    } else {
        flat
    }
}
