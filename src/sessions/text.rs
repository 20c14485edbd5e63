//! The words the engine posts and the envelope it wraps prompts in. Pure, so
//! every string a person sees is tested in one place.

use crate::access::HOW_TO_CONFIGURE;

/// How the sessions of scheduled runs are titled: their thread is the
/// result DM, never a channel thread.
pub const SCHEDULED_TITLE_PREFIX: &str = "Scheduled: ";

/// How the short-lived sessions that summarise thread context are titled:
/// they never get a thread, and are deleted once the summary is made.
pub const SUMMARY_TITLE_PREFIX: &str = "Mattermost summary: ";

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
    /// Set for a delegated session: the owner it runs for, while
    /// `requested_by` is the teammate who started it.
    pub owner: Option<&'a str>,
    pub prompt: &'a str,
}

/// How every card starts.
const CARD_HEAD: &str = ":rocket: **OpenCode session `";

/// Whether a bot post is a session card.
pub fn is_card(message: &str) -> bool {
    message.starts_with(CARD_HEAD)
}

pub fn session_card(card: &Card<'_>) -> String {
    let preview = preview(card.prompt, 200);
    let mut out = format!(
        "{CARD_HEAD}{}`**\n**Project**: {} · **Directory**: `{}`\n\
         **Started**: {} by @{}\n",
        card.short_id, card.project, card.directory, card.started, card.requested_by
    );
    if let Some(owner) = card.owner {
        out.push_str(&format!(
            "**Owner**: @{owner} · **Started by**: @{} (delegated)\n",
            card.requested_by
        ));
    }
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

/// Whether `text` addresses `username` with an explicit `@username`: in any
/// case, outside Markdown code (spans, fenced and indented blocks), not part
/// of a longer name or an address (`@bottle`, `@bot_2`, `me@bot`). Trailing
/// `.`, `-`, `_` and `:` end a sentence (`ask @bot.`) unless a name goes on
/// after them (`@bot.name`), as on the server. Nothing else counts: the
/// server's own `mentions` also lists every member of a group message and
/// everyone at `@here`, `@channel` or `@all`.
pub fn mentions(text: &str, username: &str) -> bool {
    !mention_spans(text, username).is_empty()
}

/// The text with every @mention of `username` removed and the rest trimmed.
/// Code is left alone: a name quoted in it is not a mention.
pub fn strip_mention(text: &str, username: &str) -> String {
    let spans = mention_spans(text, username);
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

/// Byte ranges of the `@username` mentions in the prose of `text`.
fn mention_spans(text: &str, username: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    if username.is_empty() {
        return found;
    }
    let needle = format!("@{username}");
    let needle = needle.as_bytes();
    let bytes = text.as_bytes();
    for (from, to) in prose(text) {
        let mut i = from;
        while i + needle.len() <= to {
            if !bytes[i..i + needle.len()].eq_ignore_ascii_case(needle) {
                i += 1;
                continue;
            }
            let end = i + needle.len();
            // A name or an address goes on before the `@`…
            let starts_word = text[..i]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '@'));
            // …or after it, past any sentence punctuation.
            let rest = text[end..to].trim_start_matches(['.', '-', '_', ':']);
            let ends_word = rest
                .chars()
                .next()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '@'));
            if starts_word && ends_word {
                found.push((i, end));
            }
            i = end;
        }
    }
    found
}

/// Byte ranges of `text` outside Markdown code: fenced blocks (``` or ~~~,
/// unclosed ones running to the end), indented blocks (four columns, not
/// continuing a paragraph or a list) and inline code spans.
fn prose(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut paragraph: Option<(usize, usize)> = None;
    let mut fence: Option<(char, usize)> = None;
    let mut in_list = false;
    let mut after_blank = true;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let start = at;
        at += line.len();
        let body = line.trim_end_matches(['\n', '\r']);
        let (indent, rest) = indentation(unquote(body));
        if let Some((mark, len)) = fence {
            if indent < 4
                && fence_of(rest)
                    .is_some_and(|(m, n, info)| m == mark && n >= len && info.trim().is_empty())
            {
                fence = None;
            }
            continue;
        }
        if rest.trim().is_empty() {
            if let Some(p) = paragraph.take() {
                code_spans(text, p, &mut out);
            }
            after_blank = true;
            continue;
        }
        let opens = fence_of(rest).filter(|(m, _, info)| *m == '~' || !info.contains('`'));
        if indent < 4
            && let Some((mark, len, _)) = opens
        {
            if let Some(p) = paragraph.take() {
                code_spans(text, p, &mut out);
            }
            fence = Some((mark, len));
            after_blank = false;
            continue;
        }
        if indent >= 4 && paragraph.is_none() && !in_list {
            after_blank = false;
            continue;
        }
        if list_item(rest) {
            in_list = true;
        } else if indent == 0 && after_blank {
            in_list = false;
        }
        after_blank = false;
        let end = start + body.len();
        paragraph = Some(paragraph.map_or((start, end), |(s, _)| (s, end)));
    }
    if let Some(p) = paragraph {
        code_spans(text, p, &mut out);
    }
    out
}

/// The line without its leading `>` quote markers.
fn unquote(line: &str) -> &str {
    let mut rest = line;
    loop {
        let trimmed = rest.trim_start_matches(' ');
        if rest.len() - trimmed.len() > 3 {
            return rest;
        }
        match trimmed.strip_prefix('>') {
            Some(r) => rest = r.strip_prefix(' ').unwrap_or(r),
            None => return rest,
        }
    }
}

/// Columns of leading whitespace (tabs to the next multiple of four), and
/// the rest of the line.
fn indentation(line: &str) -> (usize, &str) {
    let mut cols = 0;
    for (i, c) in line.char_indices() {
        match c {
            ' ' => cols += 1,
            '\t' => cols += 4 - cols % 4,
            _ => return (cols, &line[i..]),
        }
    }
    (cols, "")
}

/// A fence line: its character, its length (3 or more) and its info string.
fn fence_of(rest: &str) -> Option<(char, usize, &str)> {
    let mark = rest.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let info = rest.trim_start_matches(mark);
    let len = rest.len() - info.len();
    (len >= 3).then_some((mark, len, info))
}

/// Whether a line starts a list item: `-`, `*`, `+`, `1.` or `1)`, then a
/// space or the end of the line.
fn list_item(rest: &str) -> bool {
    let after = match rest.strip_prefix(['-', '*', '+']) {
        Some(r) => r,
        None => {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if digits == 0 || digits > 9 {
                return false;
            }
            match rest[digits..].strip_prefix(['.', ')']) {
                Some(r) => r,
                None => return false,
            }
        }
    };
    after.is_empty() || after.starts_with([' ', '\t'])
}

/// Pushes the parts of the paragraph `from..to` outside code spans: a run of
/// backticks opens one that the next run of the same length closes; an
/// unmatched run is plain text, and so is an escaped backtick.
fn code_spans(text: &str, (from, to): (usize, usize), out: &mut Vec<(usize, usize)>) {
    let bytes = text.as_bytes();
    let run = |i: usize| bytes[i..to].iter().take_while(|b| **b == b'`').count();
    let mut segment = from;
    let mut i = from;
    while i < to {
        match bytes[i] {
            b'\\' if i + 1 < to && bytes[i + 1].is_ascii_punctuation() => i += 2,
            b'`' => {
                let n = run(i);
                let mut j = i + n;
                let mut close = None;
                while j < to {
                    if bytes[j] == b'`' {
                        let m = run(j);
                        if m == n {
                            close = Some(j);
                            break;
                        }
                        j += m;
                    } else {
                        j += 1;
                    }
                }
                match close {
                    Some(j) => {
                        out.push((segment, i));
                        i = j + n;
                        segment = i;
                    }
                    None => i += n,
                }
            }
            _ => i += 1,
        }
    }
    out.push((segment, to));
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

/// The answer to a prompt in a thread whose session has ended.
pub fn session_ended(prefix: &str) -> String {
    format!(
        ":no_entry: This thread's session has ended. Start a new one with a new message (not in \
         a thread; in a channel, a new post that @mentions me), or attach this thread to another \
         session with `{prefix}use <id>` (`{prefix}sessions` lists them)."
    )
}

/// Why a session's thread ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The session was deleted in OpenCode.
    Deleted,
    /// Someone typed `!end` in its thread.
    EndedBy(String),
}

/// The notice posted in a thread when its session ends.
pub fn ended_notice(why: &Ending, prefix: &str) -> String {
    let how = match why {
        Ending::Deleted => "it was deleted in OpenCode".to_owned(),
        Ending::EndedBy(who) => format!("@{who} ended it with `{prefix}end`"),
    };
    format!(
        ":no_entry: **Session ended**: {how}. Messages here no longer reach it. Start a new \
         session with a new message (not in a thread; in a channel, a new post that @mentions \
         me), or attach this thread to another with `{prefix}use <id>`."
    )
}

/// Added to a session's card when the session ends.
pub const CARD_ENDED: &str = "\n:no_entry: **Ended**";

/// The card of a session that ended, `at` (UTC text) and why.
pub fn card_ended(card: &str, at: &str, why: &Ending) -> String {
    let how = match why {
        Ending::Deleted => "deleted in OpenCode".to_owned(),
        Ending::EndedBy(who) => format!("by @{who}"),
    };
    format!("{card}{CARD_ENDED} {at}, {how}.")
}

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
    fn ended_sessions_say_why_and_what_to_do_next() {
        let deleted = ended_notice(&Ending::Deleted, "!");
        assert!(deleted.starts_with(":no_entry: **Session ended**: it was deleted in OpenCode."));
        assert!(deleted.contains("`!use <id>`"));
        let ended = ended_notice(&Ending::EndedBy("alice".into()), "mm:");
        assert!(ended.contains("@alice ended it with `mm:end`") && ended.contains("`mm:use <id>`"));
        assert!(
            session_ended("!").contains("`!use <id>`")
                && session_ended("!").contains("`!sessions`")
        );
        let card = session_card(&Card {
            project: "p",
            directory: "/p",
            short_id: "neon",
            started: "2026-01-01 00:00 UTC",
            requested_by: "bob",
            prompt: "hi",
            owner: None,
        });
        assert!(is_card(&card) && !is_card("> :rocket: **OpenCode session `x`**"));
        let marked = card_ended(&card, "2026-01-02 03:04 UTC", &Ending::Deleted);
        assert!(marked.starts_with(&card));
        assert!(
            marked.ends_with(":no_entry: **Ended** 2026-01-02 03:04 UTC, deleted in OpenCode.")
        );
        assert!(card_ended(&card, "t", &Ending::EndedBy("amy".into())).ends_with("t, by @amy."));
    }

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
            owner: None,
            prompt: "\n  fix the failing test\nmore",
        });
        assert!(!card.contains("**Owner**"));
        assert!(card.contains("`brave-otter`"));
        assert!(card.contains("**Project**: shop"));
        assert!(card.contains("`/src/shop`"));
        assert!(card.contains("2026-11-21 09:00 UTC by @alice"));
        assert!(card.contains("> fix the failing test\n"));
        assert!(!card.contains("more"));
    }

    #[test]
    fn a_delegated_card_names_owner_and_teammate() {
        let card = session_card(&Card {
            project: "shop",
            directory: "/src/shop",
            short_id: "brave-otter",
            started: "2026-11-21 09:00 UTC",
            requested_by: "bonnie",
            owner: Some("christine"),
            prompt: "fix the login bug",
        });
        assert!(card.contains("**Owner**: @christine · **Started by**: @bonnie (delegated)"));
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
        assert!(mentions("@BOT", "bot"));
        assert!(mentions("@bot, please", "bot"));
        assert!(mentions("ask @bot.", "bot"));
        assert!(mentions("ask @bot...", "bot"));
        assert!(mentions("@bot: run it", "bot"));
        assert!(mentions("(@bot) and @bot's", "bot"));
        assert!(mentions("> @bot quoted", "bot"));
        assert!(mentions("¿@bot?", "bot"));
        assert!(!mentions("é@bot", "bot"));
        assert!(!mentions("@bottle please", "bot"));
        assert!(!mentions("@bot.name hi", "bot"));
        assert!(!mentions("@bot_2 hi", "bot"));
        assert!(!mentions("@bot-x hi", "bot"));
        assert!(!mentions("mail email@bot now", "bot"));
        assert!(!mentions("@@bot", "bot"));
        assert!(!mentions("bot", "bot"));
        assert!(!mentions("anything", ""));
        assert!(mentions("@opencode-bot hi", "opencode-bot"));
        assert!(!mentions("@opencode-bottle hi", "opencode-bot"));
    }

    #[test]
    fn mentions_in_code_do_not_count() {
        assert!(!mentions("see `@bot` for that", "bot"));
        assert!(!mentions("``a ` and @bot``", "bot"));
        assert!(!mentions("`one\n@bot` spans lines", "bot"));
        assert!(mentions("`code` then @bot", "bot"));
        assert!(mentions("`code`@bot", "bot"));
        assert!(mentions("an unclosed ` leaves @bot in prose", "bot"));
        assert!(mentions("escaped \\`@bot\\` is prose", "bot"));
        assert!(!mentions("```\n@bot\n```", "bot"));
        assert!(!mentions("~~~sh\n@bot\n~~~\n", "bot"));
        assert!(!mentions("```rust\n@bot never closed", "bot"));
        assert!(!mentions("````\n```\n@bot\n````", "bot"));
        assert!(!mentions("> ```\n> @bot\n> ```", "bot"));
        assert!(mentions("```\ncode\n```\n@bot after", "bot"));
        assert!(!mentions("    @bot indented", "bot"));
        assert!(!mentions("text\n\n\t@bot indented", "bot"));
        assert!(mentions("text\n    @bot continues it", "bot"));
        assert!(mentions("- item\n\n    @bot in the item", "bot"));
        assert!(mentions("a paragraph\n\n@bot another", "bot"));
    }

    #[test]
    fn stripping_leaves_code_alone() {
        assert_eq!(strip_mention("@bot  run the tests", "bot"), "run the tests");
        assert_eq!(strip_mention("please @BOT run @bot", "bot"), "please  run");
        assert_eq!(strip_mention("  plain  ", "bot"), "plain");
        assert_eq!(strip_mention("é @bot ü", "bot"), "é  ü");
        assert_eq!(
            strip_mention("@bot explain `@bot`\n```\n@bot\n```", "bot"),
            "explain `@bot`\n```\n@bot\n```"
        );
        assert_eq!(strip_mention("@bottle @bot_2", "bot"), "@bottle @bot_2");
    }
}
