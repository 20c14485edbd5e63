//! Who a post mentions, decided as the real server's notification code does
//! (`app/notification.go`, `mention_keywords.go`, `mention_parser_standard.go`)
//! for the `mentions` of each recipient's `posted` event and for the
//! members' mention counts:
//!
//! * a DM mentions the other party;
//! * a group message (GM) mentions every member, keyword or not;
//! * otherwise a member is mentioned by a keyword of theirs in the text:
//!   `@username` (any case), their `mention_keys`, their first name (case
//!   sensitive, when their `first_name` notify prop is `"true"`), and
//!   `@channel` / `@all` / `@here` when channel mentions are allowed (not in
//!   header or purpose change posts, nor in channels of 1000 members or
//!   more), the user's `channel` notify prop is `"true"` and the channel
//!   member's props do not ignore them (`ignore_channel_mentions` `"on"`, or
//!   `"default"` in a channel muted with `mark_unread` `"mention"`); `@here`
//!   only for users who are online;
//! * the author is never mentioned by their own post, unless it came from a
//!   webhook.
//!
//! Keywords are looked for in the text the Markdown parser yields: not in
//! code spans, fenced or indented code blocks, autolinked URLs, link
//! destinations or emoji, and text split where the parser splits it (line
//! breaks, escapes). The Markdown reading is this module's own, close to the
//! server's for the blocks it knows (paragraphs, block quotes, lists, code)
//! but not exact in nested containers. Not simulated: group (`@group`)
//! mentions, which need a licence, and thread-reply mentions for users
//! whose `comments` notify prop is not `"never"` (no route here changes it).

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::Value;

use crate::model::{Channel, ChannelType, Post, User};
use crate::state::Store;

/// `TeamSettings.MaxNotificationsPerChannel`: from this many members on,
/// `@channel`, `@all` and `@here` notify nobody.
pub const MAX_NOTIFICATIONS_PER_CHANNEL: usize = 1000;

/// The members a post mentions, its author excluded (unless the post came
/// from a webhook). `online` tells who counts for `@here`.
pub fn mentioned_users(
    store: &Store,
    channel: &Channel,
    post: &Post,
    online: &HashSet<String>,
) -> BTreeSet<String> {
    let members = store.member_ids(&channel.id);
    let from_webhook = post.props.get("from_webhook").and_then(Value::as_str) == Some("true");
    let mut out = BTreeSet::new();
    if channel.kind == ChannelType::Direct {
        out.extend(
            members
                .into_iter()
                .filter(|m| *m != post.user_id || from_webhook),
        );
        return out;
    }
    let allow_channel_mentions = !matches!(
        post.kind.as_str(),
        "system_header_change" | "system_purpose_change"
    ) && members.len() < MAX_NOTIFICATIONS_PER_CHANNEL;
    let mut keywords = Keywords::default();
    for id in &members {
        if let Some(user) = store.users.get(id) {
            let member_props = store
                .channel_members
                .get(&channel.id)
                .and_then(|m| m.get(id))
                .map(|m| &m.notify_props);
            keywords.add_user(
                user,
                member_props,
                online.contains(id),
                allow_channel_mentions,
            );
        }
    }
    for field in mentionable_fields(post) {
        out.extend(explicit_mentions(&field, &keywords).users);
    }
    if channel.kind == ChannelType::Group {
        out.extend(members.iter().cloned());
    }
    if post.kind == "system_add_to_channel"
        && let Some(added) = post.props.get("addedUserId").and_then(Value::as_str)
        && members.iter().any(|m| m == added)
    {
        out.insert(added.to_owned());
    }
    if !from_webhook {
        out.remove(&post.user_id);
    }
    out
}

/// The message, then each attachment's pretext, text and string field
/// values: where the server looks for mentions.
fn mentionable_fields(post: &Post) -> Vec<String> {
    let mut out = vec![post.message.clone()];
    let attachments = post.props.get("attachments").and_then(Value::as_array);
    for att in attachments.into_iter().flatten() {
        for key in ["pretext", "text"] {
            if let Some(s) = att
                .get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                out.push(s.to_owned());
            }
        }
        let fields = att.get("fields").and_then(Value::as_array);
        for f in fields.into_iter().flatten() {
            if let Some(s) = f
                .get("value")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                out.push(s.to_owned());
            }
        }
    }
    out
}

/// Mention keywords of a channel's members: keyword → user ids.
#[derive(Debug, Default)]
pub struct Keywords(HashMap<String, Vec<String>>);

impl Keywords {
    fn push(&mut self, keyword: String, id: &str) {
        self.0.entry(keyword).or_default().push(id.to_owned());
    }

    /// A member's keywords, as `MentionKeywords.AddUser` builds them.
    pub fn add_user(
        &mut self,
        user: &User,
        member_props: Option<&Value>,
        online: bool,
        allow_channel_mentions: bool,
    ) {
        let prop = |props: Option<&Value>, key: &str| -> String {
            props
                .and_then(|p| p.get(key))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let user_props = Some(&user.notify_props);
        self.push(format!("@{}", user.username.to_lowercase()), &user.id);
        for key in prop(user_props, "mention_keys").split(',') {
            let key = key.trim();
            if !key.is_empty() {
                self.push(key.to_lowercase(), &user.id);
            }
        }
        if prop(user_props, "first_name") == "true" && !user.first_name.is_empty() {
            self.push(user.first_name.clone(), &user.id);
        }
        if allow_channel_mentions {
            let ignore = prop(member_props, "ignore_channel_mentions");
            let ignored = ignore == "on"
                || (prop(member_props, "mark_unread") == "mention" && ignore == "default");
            if prop(user_props, "channel") == "true" && !ignored {
                self.push("@channel".into(), &user.id);
                self.push("@all".into(), &user.id);
                if online {
                    self.push("@here".into(), &user.id);
                }
            }
        }
    }
}

/// What the keyword parser found in one text.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    pub users: BTreeSet<String>,
    pub here: bool,
    pub channel: bool,
    pub all: bool,
}

/// The users whose keywords appear in the Markdown `text`.
pub fn explicit_mentions(text: &str, keywords: &Keywords) -> Found {
    let mut found = Found::default();
    for run in text_runs(text) {
        process_text(&run, keywords, &mut found);
    }
    found
}

/// One run of text, split into words as `StandardMentionParser.ProcessText`
/// does.
fn process_text(text: &str, keywords: &Keywords, found: &mut Found) {
    let is_word_char = |c: char| matches!(c, ':' | '.' | '-' | '_' | '@') || c.is_alphanumeric();
    for word in text
        .split(|c: char| !is_word_char(c))
        .filter(|w| !w.is_empty())
    {
        // `:name:` is an emoji.
        if word.starts_with(':') && word.ends_with(':') {
            continue;
        }
        let word = word.trim_start_matches([':', '.', '-', '_']);
        if check_word(word, keywords, found) {
            continue;
        }
        // Sentence punctuation after a name: `@alice.`, `@alice:`.
        let mut stem = word;
        let mut matched = false;
        while stem.ends_with(['.', '-', ':', '_']) {
            stem = &stem[..stem.len() - 1];
            if check_word(stem, keywords, found) {
                matched = true;
                break;
            }
        }
        if matched {
            continue;
        }
        let system = matches!(word, "@here" | "@channel" | "@all");
        if (system || !word.starts_with('@')) && word.contains(['.', '-', ':']) {
            for part in word.split(['.', '-', ':']).filter(|p| !p.is_empty()) {
                check_word(part, keywords, found);
            }
        }
        // A keyword with multibyte characters may sit inside a longer word.
        if word.len() != word.chars().count() {
            for (key, ids) in &keywords.0 {
                if key.len() != key.chars().count() && word.contains(key.as_str()) {
                    found.users.extend(ids.iter().cloned());
                }
            }
        }
    }
}

/// `checkForMention`: the word, lowercased, is a keyword (or, as written, a
/// case-sensitive first name).
fn check_word(word: &str, keywords: &Keywords, found: &mut Found) -> bool {
    let lower = word.to_lowercase();
    match lower.as_str() {
        "@here" => found.here = true,
        "@channel" => found.channel = true,
        "@all" => found.all = true,
        _ => {}
    }
    let ids = keywords.0.get(&lower).or_else(|| keywords.0.get(word));
    match ids {
        Some(ids) => {
            found.users.extend(ids.iter().cloned());
            true
        }
        None => false,
    }
}

/// The runs of plain text the Markdown parser yields for `message`, in
/// order: paragraph text outside code, links' destinations, autolinks and
/// emoji, cut at line breaks and escapes.
pub fn text_runs(message: &str) -> Vec<String> {
    let mut runs = Vec::new();
    for paragraph in paragraphs(message) {
        inline_runs(&paragraph.join("\n"), &mut runs);
    }
    runs
}

/// The paragraphs of a message, each as its lines without container
/// markers or indentation: fenced and indented code blocks left out.
fn paragraphs(message: &str) -> Vec<Vec<&str>> {
    let mut out = Vec::new();
    let mut paragraph: Vec<&str> = Vec::new();
    let mut fence: Option<(char, usize)> = None;
    // Content indentation of the innermost open list item.
    let mut list: Option<usize> = None;
    let mut after_blank = true;
    for line in message.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let (mut indent, mut rest) = indentation(unquote(line));
        let line_indent = indent;
        if let Some(w) = list
            && indent >= w
        {
            indent -= w;
        }
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
            if !paragraph.is_empty() {
                out.push(std::mem::take(&mut paragraph));
            }
            after_blank = true;
            continue;
        }
        if indent < 4
            && let Some((width, item)) = list_item(rest)
        {
            if !paragraph.is_empty() {
                out.push(std::mem::take(&mut paragraph));
            }
            list = Some(line_indent + width);
            (indent, rest) = indentation(item);
            if rest.trim().is_empty() {
                after_blank = false;
                continue;
            }
        } else if let Some(w) = list
            && line_indent < w
            && (after_blank || paragraph.is_empty())
        {
            list = None;
        }
        after_blank = false;
        let opens = fence_of(rest).filter(|(m, _, info)| *m == '~' || !info.contains('`'));
        if indent < 4
            && let Some((mark, len, _)) = opens
        {
            if !paragraph.is_empty() {
                out.push(std::mem::take(&mut paragraph));
            }
            fence = Some((mark, len));
            continue;
        }
        if indent >= 4 && paragraph.is_empty() {
            continue;
        }
        paragraph.push(rest);
    }
    if !paragraph.is_empty() {
        out.push(paragraph);
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

/// Columns of leading whitespace (tabs stop every four) and the rest.
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

/// A fence line: its character, its length (3 or more), its info string.
fn fence_of(rest: &str) -> Option<(char, usize, &str)> {
    let mark = rest.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let info = rest.trim_start_matches(mark);
    let len = rest.len() - info.len();
    (len >= 3).then_some((mark, len, info))
}

/// A list item's marker (`-`, `*`, `+`, `1.`, `1)`): the width up to its
/// content, and the content.
fn list_item(rest: &str) -> Option<(usize, &str)> {
    let marker = if rest.starts_with(['-', '*', '+']) {
        1
    } else {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 || digits > 9 || !rest[digits..].starts_with(['.', ')']) {
            return None;
        }
        digits + 1
    };
    let after = &rest[marker..];
    if after.is_empty() {
        return Some((marker + 1, after));
    }
    let spaces = after.len() - after.trim_start_matches(' ').len();
    if spaces == 0 {
        return None;
    }
    // Five spaces or more start indented code inside the item: its content
    // begins one space after the marker.
    let gap = if spaces > 4 { 1 } else { spaces };
    Some((marker + gap, &after[gap..]))
}

/// The text runs of one paragraph's inline content.
fn inline_runs(raw: &str, runs: &mut Vec<String>) {
    let bytes = raw.as_bytes();
    let mut run = String::new();
    let flush = |run: &mut String, runs: &mut Vec<String>| {
        if !run.is_empty() {
            runs.push(std::mem::take(run));
        }
    };
    // Open `[` that may still become links; autolinks wait for them.
    let mut brackets = 0usize;
    let mut i = 0;
    while i < raw.len() {
        let Some(c) = raw[i..].chars().next() else {
            break;
        };
        match c {
            '\n' => {
                flush(&mut run, runs);
                i += 1;
            }
            '\\' if bytes.get(i + 1).is_some_and(u8::is_ascii_punctuation) => {
                flush(&mut run, runs);
                runs.push(char::from(bytes[i + 1]).to_string());
                i += 2;
            }
            '`' => {
                let n = backtick_run(bytes, i);
                match closing_backticks(bytes, i + n, n) {
                    Some(j) => {
                        flush(&mut run, runs);
                        i = j + n;
                    }
                    None => {
                        run.push_str(&raw[i..i + n]);
                        i += n;
                    }
                }
            }
            '[' => {
                brackets += 1;
                run.push(c);
                i += 1;
            }
            ']' => {
                let link_end = (brackets > 0)
                    .then(|| link_destination_end(raw, i + 1))
                    .flatten();
                brackets = brackets.saturating_sub(1);
                match link_end {
                    Some(end) => {
                        flush(&mut run, runs);
                        i = end;
                    }
                    None => {
                        run.push(c);
                        i += 1;
                    }
                }
            }
            ':' => {
                if brackets == 0
                    && let Some((scheme, end)) = url_autolink(raw, i)
                    && run.ends_with(scheme)
                {
                    run.truncate(run.len() - scheme.len());
                    flush(&mut run, runs);
                    i = end;
                } else if let Some(end) = emoji(raw, i) {
                    flush(&mut run, runs);
                    i = end;
                } else {
                    run.push(c);
                    i += 1;
                }
            }
            'w' | 'W' => match www_autolink(raw, i).filter(|_| brackets == 0) {
                Some(end) => {
                    flush(&mut run, runs);
                    i = end;
                }
                None => {
                    run.push(c);
                    i += 1;
                }
            },
            _ => {
                run.push(c);
                i += c.len_utf8();
            }
        }
    }
    flush(&mut run, runs);
}

fn backtick_run(bytes: &[u8], from: usize) -> usize {
    bytes[from..].iter().take_while(|b| **b == b'`').count()
}

/// Where the run of exactly `n` backticks that closes a code span starts.
fn closing_backticks(bytes: &[u8], mut j: usize, n: usize) -> Option<usize> {
    while j < bytes.len() {
        if bytes[j] == b'`' {
            let m = backtick_run(bytes, j);
            if m == n {
                return Some(j);
            }
            j += m;
        } else {
            j += 1;
        }
    }
    None
}

/// After `]`: an inline link's `(destination "title")`; where it ends.
fn link_destination_end(raw: &str, at: usize) -> Option<usize> {
    let bytes = raw.as_bytes();
    if bytes.get(at) != Some(&b'(') {
        return None;
    }
    let skip_ws = |mut k: usize| {
        while bytes.get(k).is_some_and(u8::is_ascii_whitespace) {
            k += 1;
        }
        k
    };
    let mut k = skip_ws(at + 1);
    if bytes.get(k) == Some(&b'<') {
        k += 1;
        while *bytes.get(k)? != b'>' {
            if bytes[k] == b'\n' {
                return None;
            }
            k += 1;
        }
        k += 1;
    } else {
        let mut depth = 0usize;
        while let Some(&b) = bytes.get(k) {
            match b {
                b'\\' => k += 1,
                b'(' => depth += 1,
                b')' if depth == 0 => break,
                b')' => depth -= 1,
                b if b.is_ascii_whitespace() || b.is_ascii_control() => break,
                _ => {}
            }
            k += 1;
        }
    }
    let before_title = k;
    k = skip_ws(k);
    if k > before_title
        && let Some(&open) = bytes.get(k)
        && matches!(open, b'"' | b'\'' | b'(')
    {
        let close = if open == b'(' { b')' } else { open };
        k += 1;
        while *bytes.get(k)? != close {
            k += if bytes[k] == b'\\' { 2 } else { 1 };
        }
        k = skip_ws(k + 1);
    }
    (bytes.get(k) == Some(&b')')).then_some(k + 1)
}

const URL_SCHEMES: [&str; 6] = ["http", "https", "ftp", "mailto", "tel", "gemini"];

/// At a `:`: a `scheme://host…` autolink; its scheme and where it ends.
fn url_autolink(raw: &str, colon: usize) -> Option<(&str, usize)> {
    let bytes = raw.as_bytes();
    if raw.len() - colon < 4 || !raw[colon + 1..].starts_with("//") || colon == 0 {
        return None;
    }
    let mut start = colon - 1;
    while start > 0 && bytes[start - 1].is_ascii_alphanumeric() {
        start -= 1;
    }
    let scheme = &raw[start..colon];
    if !URL_SCHEMES.iter().any(|s| s.eq_ignore_ascii_case(scheme))
        || !valid_host_char(&raw[colon + 3..])
    {
        return None;
    }
    check_domain(&raw[colon + 3..], true)?;
    let end = link_end(raw, start, colon + 3);
    (end > start).then_some((scheme, end))
}

/// At a `w`: a `www.host…` autolink; where it ends.
fn www_autolink(raw: &str, at: usize) -> Option<usize> {
    let bytes = raw.as_bytes();
    if at > 1 {
        let prev = bytes[at - 1];
        if !(prev.is_ascii_whitespace() || b"*_~)<(>".contains(&prev)) {
            return None;
        }
    }
    let rest = &raw[at..];
    let digits = rest
        .strip_prefix("www")?
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    if rest.len() < 4 || digits > 3 || rest.as_bytes().get(3 + digits) != Some(&b'.') {
        return None;
    }
    check_domain(rest, false)?;
    let end = link_end(raw, at, at);
    (end > at).then_some(end)
}

fn valid_host_char(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| !c.is_whitespace() && !c.is_ascii_punctuation())
}

/// `checkDomain`: no underscore in the host, and (unless `allow_short`) a dot.
fn check_domain(data: &str, allow_short: bool) -> Option<()> {
    let mut period = false;
    for (i, c) in data.char_indices().skip(1) {
        if i + c.len_utf8() >= data.len() {
            break;
        }
        match c {
            '_' => return None,
            '.' => period = true,
            '-' => {}
            c if c.is_whitespace() || c.is_ascii_punctuation() => break,
            _ => {}
        }
    }
    (allow_short || period).then_some(())
}

/// The end of an autolink starting at `start`: the next whitespace after
/// `from`, less trailing punctuation, unmatched `)` and entities.
fn link_end(raw: &str, start: usize, from: usize) -> usize {
    let mut end = raw[from..]
        .find(char::is_whitespace)
        .map_or(raw.len(), |k| from + k);
    if let Some(k) = raw[start..end].find(['<', '>']) {
        end = start + k;
    }
    loop {
        let link = &raw[start..end];
        let Some(last) = link.chars().next_back() else {
            return end;
        };
        match last {
            '?' | '!' | '.' | ',' | ':' | '*' | '_' | '~' | '\'' | '"' => end -= 1,
            ';' => {
                let body = &link[..link.len() - 1];
                let letters = body.len()
                    - body
                        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
                        .len();
                end -= if letters > 0 && body[..body.len() - letters].ends_with('&') {
                    letters + 2
                } else {
                    1
                };
            }
            ')' if link.matches(')').count() > link.matches('(').count() => end -= 1,
            _ => return end,
        }
    }
}

/// At a `:` after a non-word character: an emoji `:name:`; where it ends.
fn emoji(raw: &str, at: usize) -> Option<usize> {
    let bytes = raw.as_bytes();
    if at > 1 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
        return None;
    }
    let name = bytes[at + 1..]
        .iter()
        .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-+".contains(b))
        .count();
    let close = at + 1 + name;
    if name == 0 || bytes.get(close) != Some(&b':') {
        return None;
    }
    let next_is_word = bytes
        .get(close + 1)
        .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
    (!next_is_word).then_some(close + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keywords() -> Keywords {
        let mut k = Keywords::default();
        for (word, id) in [
            ("@bot", "B"),
            ("@alice", "A"),
            ("@al.ice", "D"),
            ("deploy", "A"),
            ("@channel", "A"),
            ("@all", "A"),
            ("@here", "A"),
            ("@jörg", "J"),
        ] {
            k.push(word.into(), id);
        }
        k
    }

    fn users(text: &str) -> Vec<String> {
        explicit_mentions(text, &keywords())
            .users
            .into_iter()
            .collect()
    }

    #[test]
    fn names_are_words_with_sentence_punctuation() {
        assert_eq!(users("hi @Bot, and @alice."), ["A", "B"]);
        assert_eq!(users("@bot: @bot- @bot_ (@bot) @bot's"), ["B"]);
        assert_eq!(users("@al.ice here"), ["D"]);
        assert_eq!(
            users("@bottle @bot_2 @bot.name @bot-x"),
            Vec::<String>::new()
        );
        assert_eq!(users("mail bob@bot.com, me@bot"), Vec::<String>::new());
        assert_eq!(users("x.@bot and a-@bot"), ["B"]);
        assert_eq!(users("we deploy Deploy"), ["A"]);
        assert_eq!(users("hallo @Jörg und xx@jörgy"), ["J"]);
        assert_eq!(users(":@bot: is an emoji word"), Vec::<String>::new());
        assert_eq!(users(":smile:@bot"), ["B"]);
        assert_eq!(users("@bot:smile:"), Vec::<String>::new());
    }

    #[test]
    fn channel_wide_words_set_flags() {
        let f = explicit_mentions("@Here, and @channel. @all", &keywords());
        assert!(f.here && f.channel && f.all);
        assert_eq!(f.users.into_iter().collect::<Vec<_>>(), ["A"]);
        let f = explicit_mentions("nothing here", &keywords());
        assert_eq!(f, Found::default());
    }

    #[test]
    fn code_links_and_urls_are_not_text() {
        assert_eq!(users("see `@bot` and ``a ` @bot``"), Vec::<String>::new());
        assert_eq!(users("`x`@bot"), ["B"]);
        assert_eq!(users("unclosed ` @bot"), ["B"]);
        assert_eq!(
            users("```\n@bot\n```\n~~~\n@alice\n~~~"),
            Vec::<String>::new()
        );
        assert_eq!(users("```\n@bot never closed"), Vec::<String>::new());
        assert_eq!(users("> ```\n> @bot\n> ```"), Vec::<String>::new());
        assert_eq!(users("    @bot indented"), Vec::<String>::new());
        assert_eq!(users("text\n    @bot lazy"), ["B"]);
        assert_eq!(users("- item\n\n    @bot in the item"), ["B"]);
        assert_eq!(
            users("- item\n\n        @bot code in the item"),
            Vec::<String>::new()
        );
        assert_eq!(users("- a\n  - b\n\n      @bot in b"), ["B"]);
        assert_eq!(
            users("- a\n  - b\n\n          @bot code in b"),
            Vec::<String>::new()
        );
        assert_eq!(users("> quoted @bot"), ["B"]);
        assert_eq!(users("[@bot](http://x/@alice)"), ["B"]);
        assert_eq!(users("https://example.com/@bot, ok"), Vec::<String>::new());
        assert_eq!(users("see www.example.com/@bot."), Vec::<String>::new());
        assert_eq!(users("http://my_host/@bot"), ["B"]);
        assert_eq!(users("\\@bot is escaped"), Vec::<String>::new());
        assert_eq!(users("line one\n@bot line two"), ["B"]);
    }

    #[test]
    fn runs_break_where_the_parser_breaks() {
        assert_eq!(text_runs("a `b` c\nd"), ["a ", " c", "d"]);
        assert_eq!(text_runs("go to https://x.org/a. Now"), ["go to ", ". Now"]);
        assert_eq!(text_runs("[text](<dest>) after"), ["[text", " after"]);
        assert_eq!(text_runs("p1\n\n```\ncode\n```\np2"), ["p1", "p2"]);
    }
}
