//! The words the engine posts and the envelope it wraps prompts in. Pure, so
//! every string a person sees is tested in one place.

use crate::access::HOW_TO_CONFIGURE;

/// How the sessions of scheduled runs are titled: their thread is the
/// result DM, never a channel thread.
pub const SCHEDULED_TITLE_PREFIX: &str = "Scheduled: ";

/// First line of every prompt that came from Mattermost. The same marker lets
/// the TUI sync tell chat prompts from prompts typed at the terminal.
pub const ENVELOPE_PREFIX: &str = "[Mattermost DM from @";

/// The prompt OpenCode receives: who sent it and where to reply (the old
/// plugin's format, which agents and users already rely on), then the text.
pub fn prompt_envelope(
    sender: &str,
    root_id: &str,
    post_id: &str,
    channel_id: &str,
    text: &str,
) -> String {
    let sender = if sender.is_empty() { "unknown" } else { sender };
    format!(
        "{ENVELOPE_PREFIX}{sender}]\n[Reply-To: thread={root_id} post={post_id} \
         channel={channel_id}]\n{text}"
    )
}

/// The root post of a session's thread.
pub struct Card<'a> {
    pub project: &'a str,
    pub directory: &'a str,
    pub short_id: &'a str,
    pub started: &'a str,
    pub requested_by: &'a str,
    pub prompt: &'a str,
}

pub fn session_card(card: &Card<'_>) -> String {
    let preview = preview(card.prompt, 200);
    let mut out = format!(
        ":rocket: **OpenCode session `{}`**\n**Project**: {} · **Directory**: `{}`\n\
         **Started**: {} by @{}\n",
        card.short_id, card.project, card.directory, card.started, card.requested_by
    );
    if !preview.is_empty() {
        out.push_str(&format!("> {preview}\n"));
    }
    out.push_str("_Reply in this thread to continue this session._");
    out
}

/// The first line of a text, cut to `max` characters, safe inside a quote.
pub fn preview(text: &str, max: usize) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let line = line.trim();
    if line.chars().count() <= max {
        line.to_owned()
    } else {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// The last segment of a directory, for "Project".
pub fn project_name(directory: &str) -> &str {
    let trimmed = directory.trim_end_matches(['/', '\\']);
    trimmed
        .rsplit(['/', '\\'])
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or(directory)
}

/// Whether `text` @mentions `username` as a whole word (case-insensitive).
pub fn mentions(text: &str, username: &str) -> bool {
    mention_spans(text, username).next().is_some()
}

/// The text with every @mention of `username` removed and the rest trimmed.
pub fn strip_mention(text: &str, username: &str) -> String {
    let spans: Vec<(usize, usize)> = mention_spans(text, username).collect();
    if spans.is_empty() {
        return text.trim().to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in spans {
        out.push_str(&text[at..start]);
        at = end;
    }
    out.push_str(&text[at..]);
    out.trim().to_owned()
}

/// Byte ranges of `@username` occurrences not followed by a name character.
fn mention_spans<'a>(
    text: &'a str,
    username: &'a str,
) -> impl Iterator<Item = (usize, usize)> + 'a {
    let needle = format!("@{}", username.to_ascii_lowercase());
    let lower = text.to_ascii_lowercase();
    let mut found = Vec::new();
    if !username.is_empty() {
        let mut from = 0;
        while let Some(i) = lower[from..].find(&needle) {
            let start = from + i;
            let end = start + needle.len();
            let mut rest = lower[end..].chars();
            let boundary = match rest.next() {
                None => true,
                // A dot ends a sentence unless a name continues after it.
                Some('.') => !rest.next().is_some_and(|c| c.is_ascii_alphanumeric()),
                Some(c) => !(c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            };
            if boundary {
                found.push((start, end));
            }
            from = end;
        }
    }
    found.into_iter()
}

pub fn not_configured_notice() -> String {
    format!(
        ":lock: **This OpenCode agent does not accept prompts yet.** Nobody is allowed to \
         drive it from Mattermost: {HOW_TO_CONFIGURE}."
    )
}

pub const STRANGER_NOTICE: &str = ":lock: This OpenCode agent only takes prompts from its \
     owner and the users they allow. Ask its owner to add your user id to \
     `OPENCODE_MM_ALLOWED_USERS`.";

pub const UNLINKED_THREAD: &str = ":grey_question: This thread is not linked to an OpenCode \
     session. Send a new message (not in a thread) to start one.";

pub const SESSION_ENDED: &str = ":no_entry: This session has ended. Send a new message (not in \
     a thread) to start a new session.";

pub fn session_gone(short_id: &str) -> String {
    format!(
        ":no_entry: Session `{short_id}` no longer exists in OpenCode. Send a new message (not \
         in a thread) to start a new session."
    )
}

/// A thread whose instance's lease lapsed; `since` is its last heartbeat
/// (Unix ms), unknown when the store has no row for it.
pub fn other_instance_down(name: &str, directory: &str, since: Option<i64>) -> String {
    let since = since
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| format!(" since {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
        .unwrap_or_default();
    format!(
        ":electric_plug: Instance **{name}** is offline{since}. This thread belongs to its \
         OpenCode in `{directory}`: start OpenCode there to continue, or send a new message \
         (not in a thread) to start a session here."
    )
}

pub fn opencode_failed(what: &str, error: &str) -> String {
    format!(":x: Could not {what}: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_matches_the_old_plugin() {
        assert_eq!(
            prompt_envelope("alice", "r1", "p1", "c1", "fix the bug"),
            "[Mattermost DM from @alice]\n[Reply-To: thread=r1 post=p1 channel=c1]\nfix the bug"
        );
        assert!(
            prompt_envelope("", "r", "p", "c", "x").starts_with("[Mattermost DM from @unknown]")
        );
    }

    #[test]
    fn card_names_project_directory_short_id_and_time() {
        let card = session_card(&Card {
            project: "shop",
            directory: "/src/shop",
            short_id: "brave-otter",
            started: "2026-11-21 09:00 UTC",
            requested_by: "alice",
            prompt: "\n  fix the failing test\nmore",
        });
        assert!(card.contains("`brave-otter`"));
        assert!(card.contains("**Project**: shop"));
        assert!(card.contains("`/src/shop`"));
        assert!(card.contains("2026-11-21 09:00 UTC by @alice"));
        assert!(card.contains("> fix the failing test\n"));
        assert!(!card.contains("more"));
    }

    #[test]
    fn previews_are_cut_on_characters() {
        assert_eq!(preview(&"é".repeat(300), 10).chars().count(), 10);
        assert_eq!(preview("", 10), "");
        assert_eq!(project_name("/a/b/shop/"), "shop");
        assert_eq!(project_name("/"), "/");
        assert_eq!(project_name("C:\\code\\app"), "app");
    }

    #[test]
    fn mentions_are_whole_words() {
        assert!(mentions("hey @Bot do it", "bot"));
        assert!(mentions("@bot", "bot"));
        assert!(mentions("@bot, please", "bot"));
        assert!(mentions("ask @bot.", "bot"));
        assert!(!mentions("@bottle please", "bot"));
        assert!(!mentions("@bot.name hi", "bot"));
        assert!(!mentions("bot", "bot"));
        assert!(!mentions("anything", ""));
        assert_eq!(strip_mention("@bot  run the tests", "bot"), "run the tests");
        assert_eq!(strip_mention("please @BOT run @bot", "bot"), "please  run");
        assert_eq!(strip_mention("  plain  ", "bot"), "plain");
        assert_eq!(strip_mention("é @bot ü", "bot"), "é  ü");
    }
}
