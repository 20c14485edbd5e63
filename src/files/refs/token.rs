//! Finding the `!!` references in a message.
//!
//! A reference is `!!` at the start of a word followed by at least one
//! character that is not whitespace, a backtick or another `!`: `!!src/config`,
//! `(!!main.rs)`. It ends at whitespace or a backtick; punctuation that
//! closes a sentence (`.,;:!?)]}'"`) is not part of it. Text inside fenced
//! code blocks (```` ``` ```` or `~~~`) and inline code spans is never read,
//! so `!!` can always be written literally inside backticks. `wow!!` and
//! `!!!` are emphasis, not references.

/// Trailing characters that end a sentence rather than a path.
const TRAILING: &[char] = &['.', ',', ';', ':', '!', '?', ')', ']', '}', '\'', '"'];

/// The references of a message, in order, each once, without the `!!`.
/// Unbounded here: the caller refuses too many or too long ones with a
/// reason, rather than silently dropping them.
pub fn extract(message: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for paragraph in prose(message) {
        for token in tokens_outside_code_spans(&paragraph) {
            if !out.contains(&token) {
                out.push(token);
            }
        }
    }
    out
}

/// The message's text outside fenced code blocks, as paragraphs (a code
/// span never crosses a blank line or a fence).
fn prose(message: &str) -> Vec<String> {
    let mut paragraphs = Vec::new();
    let mut current = String::new();
    // The fence that opened the block we are in: its character and length.
    let mut fence: Option<(char, usize)> = None;
    for line in message.lines() {
        let trimmed = line.trim_start();
        let marker = fence_marker(trimmed);
        match (fence, marker) {
            (None, Some(open)) => {
                fence = Some(open);
                flush(&mut paragraphs, &mut current);
            }
            (Some((c, n)), Some((mc, mn)))
                if c == mc && mn >= n && trimmed[mn * c.len_utf8()..].trim().is_empty() =>
            {
                fence = None;
            }
            (Some(_), _) => {}
            (None, None) if trimmed.is_empty() => flush(&mut paragraphs, &mut current),
            (None, None) => {
                current.push_str(line);
                current.push('\n');
            }
        }
    }
    // An unclosed fence runs to the end of the message, as Markdown renders it.
    flush(&mut paragraphs, &mut current);
    paragraphs
}

fn flush(paragraphs: &mut Vec<String>, current: &mut String) {
    if !current.is_empty() {
        paragraphs.push(std::mem::take(current));
    }
}

/// A fence line: three or more backticks or tildes.
fn fence_marker(trimmed: &str) -> Option<(char, usize)> {
    let c = trimmed.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let n = trimmed.chars().take_while(|x| *x == c).count();
    (n >= 3).then_some((c, n))
}

/// The references of one paragraph, skipping code spans: a run of N
/// backticks opens a span that the next run of exactly N closes; a run
/// without its closer is literal text.
fn tokens_outside_code_spans(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '`' {
            let run = run_len(&chars, i, '`');
            if let Some(close) = closing_run(&chars, i + run, run) {
                i = close + run;
                continue;
            }
            i += run;
            continue;
        }
        let starts_word =
            i == 0 || matches!(chars[i - 1], c if c.is_whitespace() || c == '(' || c == '[');
        if starts_word && chars[i] == '!' && chars.get(i + 1) == Some(&'!') {
            let start = i + 2;
            let first = chars.get(start);
            if first.is_none_or(|c| c.is_whitespace() || *c == '`' || *c == '!') {
                // `!!` alone, `!!!`: emphasis.
                i = start + run_len(&chars, start, '!');
                continue;
            }
            let mut end = start;
            while end < chars.len() && !chars[end].is_whitespace() && chars[end] != '`' {
                end += 1;
            }
            let token: String = chars[start..end].iter().collect();
            let token = token.trim_end_matches(TRAILING);
            if !token.is_empty() {
                out.push(token.to_owned());
            }
            i = end;
            continue;
        }
        i += 1;
    }
    out
}

fn run_len(chars: &[char], from: usize, c: char) -> usize {
    chars[from.min(chars.len())..]
        .iter()
        .take_while(|x| **x == c)
        .count()
}

/// Where the next backtick run of exactly `len` starts, from `from`.
fn closing_run(chars: &[char], from: usize, len: usize) -> Option<usize> {
    let mut j = from;
    while j < chars.len() {
        if chars[j] == '`' {
            let run = run_len(chars, j, '`');
            if run == len {
                return Some(j);
            }
            j += run;
        } else {
            j += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::extract;

    #[test]
    fn references_are_found_where_people_write_them() {
        assert_eq!(extract("Look at !!src/config and tell me"), ["src/config"]);
        assert_eq!(
            extract("!!a.rs, !!b.rs; (!!c.rs) and !!d.rs."),
            ["a.rs", "b.rs", "c.rs", "d.rs"]
        );
        assert_eq!(extract("first line\n!!x/y.txt\nlast"), ["x/y.txt"]);
        assert_eq!(extract("twice !!a.rs and !!a.rs"), ["a.rs"], "each once");
    }

    #[test]
    fn code_blocks_and_code_spans_are_never_read() {
        assert!(extract("run `!!not-a-ref` please").is_empty());
        assert!(extract("a ``code with ` and !!inner`` b").is_empty());
        assert!(extract("```\n!!inside.rs\n```").is_empty());
        assert!(extract("~~~~sh\n!!inside.rs\n~~~\n!!still-inside\n~~~~").is_empty());
        assert!(
            extract("```\n!!unclosed.rs").is_empty(),
            "an unclosed fence runs to the end"
        );
        assert_eq!(extract("```\n!!in.rs\n```\nthen !!out.rs"), ["out.rs"]);
        // A span across lines of one paragraph is still code.
        assert!(extract("`multi\n!!line` span").is_empty());
        // A lone backtick is literal: what follows is prose.
        assert_eq!(extract("it`s !!here.rs"), ["here.rs"]);
        // A span does not cross a blank line.
        assert_eq!(extract("`open\n\n!!after.rs `"), ["after.rs"]);
    }

    #[test]
    fn emphasis_and_bare_bangs_are_not_references() {
        for text in [
            "!!",
            "!! ",
            "wow!!",
            "great!!foo",
            "!!!",
            "!!!important",
            "!! spaced",
            "!!`code`",
        ] {
            assert!(extract(text).is_empty(), "{text:?}: {:?}", extract(text));
        }
        assert!(extract("!!...").is_empty(), "only punctuation");
    }

    #[test]
    fn hostile_tokens_are_extracted_as_typed_for_the_matcher_to_refuse() {
        assert_eq!(extract("!!../../etc/passwd"), ["../../etc/passwd"]);
        assert_eq!(extract("!!/etc/shadow"), ["/etc/shadow"]);
        let long = "a".repeat(10_000);
        assert_eq!(extract(&format!("!!{long}")), [long]);
        assert_eq!(extract("voir !!résumé/été.md"), ["résumé/été.md"]);
        assert_eq!(extract("!!日本語.txt?"), ["日本語.txt"]);
        assert_eq!(
            extract("!!a\u{7}b"),
            ["a\u{7}b"],
            "control characters kept, refused later"
        );
    }
}
