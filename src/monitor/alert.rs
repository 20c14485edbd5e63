//! The words of an attention alert. Pure, so every variant is tested here.
//!
//! Everything that comes from OpenCode (titles, patterns, questions, error
//! texts) is flattened to one line, cut short and escaped, so a hostile or
//! odd value cannot break the post's layout or turn into links and mentions
//! the reader did not expect.

use super::state::Attention;
use crate::render::format::{one_line, plain};
use crate::sessions::text::project_name;

/// Longest title, question or error shown, in characters.
const FIELD_MAX: usize = 200;
/// Patterns listed before "and n more".
const PATTERNS_SHOWN: usize = 5;

/// What the alert says about the session.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SessionFacts {
    pub id: String,
    /// Empty when OpenCode could not be asked.
    pub title: String,
    pub directory: String,
    /// The id shown to users (the slug, else the id's start).
    pub short_id: String,
}

impl SessionFacts {
    /// What is known without OpenCode: the id alone.
    pub(crate) fn from_id(id: &str) -> Self {
        let short: String = id.chars().take(8).collect();
        Self {
            id: id.to_owned(),
            short_id: short,
            ..Self::default()
        }
    }

    pub(crate) fn from_session(session: &crate::opencode::Session) -> Self {
        Self {
            id: session.id.clone(),
            title: session.title.clone(),
            directory: session.directory.clone(),
            short_id: session.short_id().to_owned(),
        }
    }
}

/// The alert post: headline, where, what happened, how to continue.
pub(crate) fn alert_text(
    facts: &SessionFacts,
    attention: &Attention,
    command_prefix: &str,
) -> String {
    let headline = match attention {
        Attention::Permission { .. } => "needs your permission",
        Attention::Question { .. } => "has a question for you",
        Attention::Idle => "is waiting for you",
        Attention::Failed { .. } => "failed",
    };
    let mut out = format!(":bell: **OpenCode session {headline}**\n\n");
    if !facts.directory.is_empty() {
        out.push_str(&format!(
            "**Project:** {}\n",
            field(project_name(&facts.directory))
        ));
    }
    let title = if facts.title.trim().is_empty() {
        "_(title unknown)_".to_owned()
    } else {
        field(&facts.title)
    };
    out.push_str(&format!(
        "**Session:** {title} ({})\n",
        code(&facts.short_id)
    ));
    if !facts.directory.is_empty() {
        out.push_str(&format!("**Directory:** {}\n", code(&facts.directory)));
    }
    out.push('\n');
    out.push_str(&happened(attention));
    out.push_str(&format!(
        "\n\n_To continue, send {} here._",
        code(&format!("{command_prefix}use {}", facts.short_id))
    ));
    out
}

fn happened(attention: &Attention) -> String {
    match attention {
        Attention::Permission {
            permission,
            patterns,
            ..
        } => {
            let mut line = format!(
                ":lock: **Permission requested:** {}",
                code(&one_line(permission, 60))
            );
            let shown: Vec<String> = patterns
                .iter()
                .take(PATTERNS_SHOWN)
                .map(|p| code(&one_line(p, FIELD_MAX)))
                .collect();
            if !shown.is_empty() {
                line.push_str(&format!(" for {}", shown.join(", ")));
            }
            if patterns.len() > PATTERNS_SHOWN {
                line.push_str(&format!(" and {} more", patterns.len() - PATTERNS_SHOWN));
            }
            line.push_str("\nIt waits until someone allows or rejects it.");
            line
        }
        Attention::Question {
            header,
            question,
            count,
            ..
        } => {
            let mut line = ":question: **Question:**".to_owned();
            if !header.trim().is_empty() {
                line.push_str(&format!(" **{}**", field(header)));
            }
            if !question.trim().is_empty() {
                line.push_str(&format!("\n> {}", field(question)));
            }
            if *count > 1 {
                line.push_str(&format!("\n_({} more after this one)_", count - 1));
            }
            line
        }
        Attention::Idle => ":hourglass: The session finished and is waiting for input.".to_owned(),
        Attention::Failed { message } => {
            format!(":x: **The turn failed:** {}", field(message))
        }
    }
}

/// One line of OpenCode's text, cut and escaped.
fn field(text: &str) -> String {
    plain(&one_line(text, FIELD_MAX))
}

/// Inline code that survives backticks in the text: the fence is longer
/// than any run of backticks inside, and padded when the text touches it.
fn code(text: &str) -> String {
    let text = one_line(text, 400);
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    if text.starts_with('`') || text.ends_with('`') {
        format!("{fence} {text} {fence}")
    } else {
        format!("{fence}{text}{fence}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn facts() -> SessionFacts {
        SessionFacts {
            id: "ses_abc123456789".into(),
            title: "Fix the flaky test".into(),
            directory: "/home/me/src/shop".into(),
            short_id: "neon-owl".into(),
        }
    }

    #[test]
    fn permission_alert_names_the_project_session_and_the_way_back() {
        let text = alert_text(
            &facts(),
            &Attention::Permission {
                request_id: "per_1".into(),
                permission: "bash".into(),
                patterns: vec!["echo hi".into()],
            },
            "!",
        );
        assert_eq!(
            text,
            ":bell: **OpenCode session needs your permission**\n\n\
             **Project:** shop\n\
             **Session:** Fix the flaky test (`neon-owl`)\n\
             **Directory:** `/home/me/src/shop`\n\n\
             :lock: **Permission requested:** `bash` for `echo hi`\n\
             It waits until someone allows or rejects it.\n\n\
             _To continue, send `!use neon-owl` here._"
        );
    }

    #[test]
    fn each_state_says_what_happened() {
        let q = alert_text(
            &facts(),
            &Attention::Question {
                request_id: "que_1".into(),
                header: "Database".into(),
                question: "Which database should I use?".into(),
                count: 2,
            },
            "!",
        );
        assert!(
            q.contains(":question: **Question:** **Database**\n> Which database should I use?"),
            "{q}"
        );
        assert!(q.contains("(1 more after this one)"), "{q}");
        let idle = alert_text(&facts(), &Attention::Idle, "/");
        assert!(idle.contains("finished and is waiting for input"), "{idle}");
        assert!(idle.contains("`/use neon-owl`"), "{idle}");
        let failed = alert_text(
            &facts(),
            &Attention::Failed {
                message: "Rate limit exceeded".into(),
            },
            "!",
        );
        assert!(
            failed.contains(":x: **The turn failed:** Rate limit exceeded"),
            "{failed}"
        );
        assert!(failed.starts_with(":bell: **OpenCode session failed**"));
    }

    #[test]
    fn without_opencode_the_alert_still_says_what_is_known() {
        let text = alert_text(
            &SessionFacts::from_id("ses_abc123456789"),
            &Attention::Idle,
            "!",
        );
        assert!(!text.contains("**Project:**"), "{text}");
        assert!(!text.contains("**Directory:**"), "{text}");
        assert!(
            text.contains("**Session:** _(title unknown)_ (`ses_abc1`)"),
            "{text}"
        );
        assert!(text.contains("`!use ses_abc1`"), "{text}");
    }

    #[test]
    fn hostile_values_stay_on_their_line_and_render_as_text() {
        let mut f = facts();
        f.title = "**bold** [link](http://x) @channel\n\n# heading".into();
        f.directory = "/tmp/a`b``c/".into();
        let text = alert_text(
            &f,
            &Attention::Permission {
                request_id: "per_1".into(),
                permission: "bash\nrm".into(),
                patterns: (0..8).map(|i| format!("cmd `{i}`")).collect(),
            },
            "!",
        );
        assert!(
            text.contains(r"**Session:** \*\*bold\*\* \[link\](http://x) @channel # heading"),
            "{text}"
        );
        assert!(text.contains("**Directory:** ```/tmp/a`b``c/```"), "{text}");
        assert!(text.contains("**Project:** a\\`b\\`\\`c\n"), "{text}");
        assert!(text.contains("`` cmd `0` ``"), "{text}");
        assert!(text.contains(" and 3 more"), "{text}");
        assert!(text.contains("`bash rm`"), "{text}");
        let long = "x".repeat(5000);
        let text = alert_text(
            &facts(),
            &Attention::Failed {
                message: long.clone(),
            },
            "!",
        );
        assert!(text.chars().count() < 1000, "cut short");
    }

    #[test]
    fn code_spans_outgrow_the_backticks_inside() {
        assert_eq!(code("plain"), "`plain`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x`"), "`` `x` ``");
        assert_eq!(code(""), "``");
    }
}
