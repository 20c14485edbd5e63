//! Agent text bound for a channel many people read (a group message, a
//! public or private channel): nothing in it may notify anyone, and remote
//! images do not load for every reader. Mentions get a zero-width space
//! after the `@` (still readable, no longer a mention: `@channel`, `@all`,
//! `@here`, user groups and people alike), and image markdown becomes a
//! plain link. Code blocks and code spans are left exactly as they are:
//! Mattermost never reads mentions there, and code must stay copyable.

/// `text` with its mentions defused and (unless `images`) its images shown
/// as links, outside code.
pub fn quiet(text: &str, images: bool) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut fence: Option<&str> = None;
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (Some(open), Some(m)) if m == open => {
                fence = None;
                out.push_str(line);
            }
            (Some(_), _) => out.push_str(line),
            (None, Some(m)) => {
                fence = Some(m);
                out.push_str(line);
            }
            (None, None) => quiet_line(line, images, &mut out),
        }
    }
    out
}

/// One line outside a code block: code spans (between backticks) are kept.
fn quiet_line(line: &str, images: bool, out: &mut String) {
    let mut in_code = false;
    let mut prev: Option<char> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '`' {
            in_code = !in_code;
            out.push(c);
            prev = Some(c);
            continue;
        }
        if in_code {
            out.push(c);
            prev = Some(c);
            continue;
        }
        match c {
            '@' if !prev.is_some_and(|p| p.is_alphanumeric())
                && chars
                    .peek()
                    .is_some_and(|n| n.is_alphanumeric() || *n == '_') =>
            {
                out.push('@');
                out.push('\u{200B}');
            }
            '!' if !images && chars.peek() == Some(&'[') => {}
            _ => out.push(c),
        }
        prev = Some(c);
    }
}

#[cfg(test)]
mod tests {
    use super::quiet;

    #[test]
    fn mentions_notify_nobody_and_images_become_links() {
        assert_eq!(
            quiet(
                "Hey @channel, @Here and @all: ask @alice or @dev-team.",
                false
            ),
            "Hey @\u{200B}channel, @\u{200B}Here and @\u{200B}all: ask @\u{200B}alice or \
             @\u{200B}dev-team."
        );
        assert_eq!(quiet("mail me: a@b.example", false), "mail me: a@b.example");
        assert_eq!(quiet("a lone @ sign", false), "a lone @ sign");
        assert_eq!(
            quiet("see ![chart](https://evil.example/t.png?u=1)", false),
            "see [chart](https://evil.example/t.png?u=1)"
        );
        assert_eq!(
            quiet("see ![chart](https://x.example/c.png)", true),
            "see ![chart](https://x.example/c.png)"
        );
        assert_eq!(quiet("wow! [link](u)", false), "wow! [link](u)");
    }

    #[test]
    fn code_stays_exactly_as_written() {
        let text =
            "run `echo @here ![x](y)` then:\n```sh\nnotify @channel\n![img](z)\n```\n@all after";
        assert_eq!(
            quiet(text, false),
            "run `echo @here ![x](y)` then:\n```sh\nnotify @channel\n![img](z)\n```\n@\u{200B}all after"
        );
        let tilde = "~~~\n@here\n~~~\n@here";
        assert_eq!(quiet(tilde, false), "~~~\n@here\n~~~\n@\u{200B}here");
    }
}
