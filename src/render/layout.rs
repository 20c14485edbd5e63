//! Post texts for one turn: the response body split across posts, code
//! fences kept intact across the cuts, and the meta block (status or footer)
//! at the end of the last post.
//!
//! The split is a pure function of the body and limits, and it is *stable*:
//! a chunk followed by another never changes when text is appended, because
//! every cut is chosen by looking only at the text before it. So posts that
//! have rolled over are written once and never edited again.
//!
//! Everything added around a chunk is a fixed marker, so the body can be
//! rebuilt exactly from the posts (see the tests' `rebuild`): strip
//! [`CONTINUED`] from every post but the last; where a fence was open at a
//! cut, strip the `"\n"` + closing fence appended to the earlier post and the
//! opener line + `"\n"` put in front of the later one; strip [`SEPARATOR`] +
//! meta from the last post.
//!
//! One exception, for live posts only ([`MetaKind::Live`]): when the body
//! ends inside a code fence (the common case while code streams), the fence
//! is closed before the status block so the status does not render as code.
//! That marker cannot be told apart from a body that ends with the same
//! closing line, so final posts never carry it: their text is exact.

/// Appended to every post but the last.
pub const CONTINUED: &str = "\n\n_(continued below)_";
/// Between the body and the meta block of the last post.
pub const SEPARATOR: &str = "\n\n---\n";

/// Fences with longer runs are not tracked (they do not occur in practice),
/// which bounds the closing marker at `"\n"` + 16 chars.
const MAX_FENCE_RUN: usize = 16;
/// Room kept in every post for a closing fence.
const CLOSE_RESERVE: usize = 1 + MAX_FENCE_RUN;
/// A re-opened fence repeats its opener line when it is at most this long,
/// and otherwise just the fence characters, so markers stay small.
const MAX_OPENER: usize = 60;

/// Size limits for the posts of one turn, in characters (Unicode scalar
/// values, which is how Mattermost counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest post: already `min(configured, server limit)`.
    pub post_chars: usize,
    /// Room reserved for the status/footer block in the last post.
    pub meta_chars: usize,
}

impl Limits {
    pub const DEFAULT_META_CHARS: usize = 2000;

    /// Limits for posts of `post_chars`, with the default meta reserve.
    pub fn new(post_chars: usize) -> Limits {
        Limits {
            post_chars,
            meta_chars: Self::DEFAULT_META_CHARS,
        }
    }

    /// The limits actually used: the meta reserve takes at most half a post
    /// so a small server limit still leaves room for the body. Below about
    /// 200 chars the markers alone do not fit; posts then exceed the limit
    /// rather than stall.
    fn effective(&self) -> (usize, usize) {
        let post = self.post_chars.max(1);
        (post, self.meta_chars.min(post / 2))
    }
}

impl Default for Limits {
    /// The configuration default (`OPENCODE_MM_MAX_POST_LENGTH` 15000).
    fn default() -> Limits {
        Limits::new(15_000)
    }
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Byte offset `n` characters into `s` (or its end).
fn advance(s: &str, n: usize) -> usize {
    s.char_indices().nth(n).map_or(s.len(), |(i, _)| i)
}

/// `text` cut to at most `max` characters, `…` marking a cut.
pub(crate) fn cap(text: &str, max: usize) -> String {
    if chars(text) <= max {
        return text.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut out = text[..advance(text, max - 1)].to_owned();
    out.push('…');
    out
}

/// An open code fence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fence {
    ch: char,
    run: usize,
    /// What a later post starts with to re-open it.
    opener: String,
}

impl Fence {
    pub(crate) fn close(&self) -> String {
        std::iter::repeat_n(self.ch, self.run).collect()
    }
}

/// Split a line into (fence char, run length, rest) when it starts, after at
/// most three spaces, with three or more backticks or tildes.
fn fence_marker(line: &str) -> Option<(char, usize, &str)> {
    let line = line.trim_end_matches(['\n', '\r']);
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &line[indent..];
    let ch = rest.chars().next().filter(|c| matches!(c, '`' | '~'))?;
    let after = rest.trim_start_matches(ch);
    let run = rest.len() - after.len();
    (run >= 3).then_some((ch, run, after))
}

/// The fence state after one complete line (CommonMark rules: a backtick
/// opener's info string has no backticks; a closer uses the same char, at
/// least as many, and nothing but spaces after).
fn step(open: Option<Fence>, line: &str) -> Option<Fence> {
    let marker = fence_marker(line);
    match open {
        None => {
            let (ch, run, info) = marker?;
            if run > MAX_FENCE_RUN || (ch == '`' && info.contains('`')) {
                return None;
            }
            let text = line.trim_end_matches(['\n', '\r']);
            let opener = if chars(text) <= MAX_OPENER {
                text.to_owned()
            } else {
                std::iter::repeat_n(ch, run).collect()
            };
            Some(Fence { ch, run, opener })
        }
        Some(fence) => match marker {
            Some((ch, run, rest))
                if ch == fence.ch
                    && run >= fence.run
                    && rest.trim_matches([' ', '\t']).is_empty() =>
            {
                None
            }
            _ => Some(fence),
        },
    }
}

/// The fence state after `text`, starting from `open`. A line cut by an
/// earlier post boundary (`mid_line`: `text` does not start at a line start)
/// is not classified, since its start lies in another chunk; a trailing line
/// without `"\n"` is classified only when `partial_end`.
pub(crate) fn scan(
    mut open: Option<Fence>,
    text: &str,
    mid_line: bool,
    partial_end: bool,
) -> Option<Fence> {
    let mut lines = text.split_inclusive('\n');
    if mid_line {
        lines.next();
    }
    for line in lines {
        if line.ends_with('\n') || partial_end {
            open = step(open, line);
        }
    }
    open
}

/// Whether a line starting with `fragment` may turn out to be a fence line.
/// Conservative (a lone `` ` `` counts) because only the fragment is known.
fn may_be_fence(fragment: &str) -> bool {
    let rest = fragment.trim_start_matches(' ');
    if fragment.len() - rest.len() > 3 {
        return false;
    }
    match rest.chars().next() {
        None => true,
        Some(ch @ ('`' | '~')) => rest.chars().take(3).all(|c| c == ch),
        Some(_) => false,
    }
}

/// Where to end a chunk inside `window` (exactly `width` chars): the last
/// `"\n\n"` in its second half, else the last `"\n"` there, else the last
/// space past 70 %, else the end. Returns a byte offset > 0.
fn choose_cut(window: &str, width: usize) -> usize {
    let at_or_after = |byte: usize, min_chars: usize| chars(&window[..byte]) >= min_chars;
    let half = width / 2;
    let cut = if let Some(i) = window.rfind("\n\n").filter(|&i| at_or_after(i, half)) {
        i + 2
    } else if let Some(i) = window.rfind('\n').filter(|&i| at_or_after(i, half)) {
        i + 1
    } else if let Some(i) = window
        .rfind(' ')
        .filter(|&i| at_or_after(i, (width * 7).div_ceil(10)))
    {
        i + 1
    } else {
        window.len()
    };
    if window[..cut].ends_with('\n') {
        return cut;
    }
    // Never cut through a line that may be a fence: the half before the cut
    // would open a fence nobody closes. Cut before that line instead.
    match window[..cut].rfind('\n') {
        Some(nl) if may_be_fence(&window[nl + 1..cut]) => nl + 1,
        _ => cut,
    }
}

/// What the meta block of the last post is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKind {
    /// Status while the turn runs: an open fence is closed before it.
    Live,
    /// The footer of a finished turn: the body stays exact.
    Final,
}

/// The posts for `body` followed by the `meta` block; see the module docs.
pub fn posts(body: &str, meta: &str, kind: MetaKind, limits: &Limits) -> Vec<String> {
    let (post_chars, meta_chars) = limits.effective();
    let room = post_chars - meta_chars;
    let continued = chars(CONTINUED);
    let separator = chars(SEPARATOR);
    let mut posts = Vec::new();
    let mut rest = body;
    let mut open: Option<Fence> = None;
    let mut mid_line = false;
    loop {
        let reopen = open
            .as_ref()
            .map(|f| format!("{}\n", f.opener))
            .unwrap_or_default();
        let reopen_len = chars(&reopen);
        let width = room
            .saturating_sub(continued + CLOSE_RESERVE + reopen_len)
            .max(1);
        let last_room = room
            .saturating_sub(separator + CLOSE_RESERVE + reopen_len)
            .max(width);
        if rest.chars().nth(last_room).is_none() {
            let mut post = reopen;
            post.push_str(rest);
            if !meta.is_empty() {
                if kind == MetaKind::Live
                    && let Some(fence) = scan(open, rest, mid_line, true)
                {
                    post.push('\n');
                    post.push_str(&fence.close());
                }
                if !post.is_empty() {
                    post.push_str(SEPARATOR);
                }
                post.push_str(meta);
            }
            posts.push(post);
            return posts;
        }
        let cut = choose_cut(&rest[..advance(rest, width)], width);
        let chunk = &rest[..cut];
        open = scan(open, chunk, mid_line, false);
        let mut post = reopen;
        post.push_str(chunk);
        if let Some(fence) = &open {
            post.push('\n');
            post.push_str(&fence.close());
        }
        post.push_str(CONTINUED);
        posts.push(post);
        mid_line = !chunk.ends_with('\n');
        rest = &rest[cut..];
    }
}

/// Characters of a reply shown inline when the whole reply is attached as a
/// file: enough to tell what it is about, short enough to scroll past.
pub const ATTACHED_HEAD_CHARS: usize = 1_500;

/// The body shown for a reply attached as `file_name`: its start, cut at a
/// paragraph or line break where there is one (a code fence left open is
/// closed), then a note pointing at the file. The file carries the exact
/// text, so this body need not rebuild it.
pub fn attached_body(body: &str, file_name: &str) -> String {
    let total = chars(body);
    let (head, shown) = if total <= ATTACHED_HEAD_CHARS {
        (body.to_owned(), total)
    } else {
        let window = &body[..advance(body, ATTACHED_HEAD_CHARS)];
        let chunk = &window[..choose_cut(window, ATTACHED_HEAD_CHARS)];
        let mut head = chunk.trim_end().to_owned();
        if let Some(fence) = scan(None, chunk, false, true) {
            head.push('\n');
            head.push_str(&fence.close());
        }
        (head, chars(chunk.trim_end()))
    };
    let name = file_name.replace('`', "'");
    format!(
        "{head}\n\n📎 _Showing the first {} of {} characters: the full reply is attached \
         below as `{name}`._",
        group_digits(shown),
        group_digits(total)
    )
}

/// `12345` as `12,345`.
pub fn group_digits(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The live meta block, kept as parts so it can shrink gracefully.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LiveMeta {
    pub status: String,
    /// Every tool line of the turn, oldest first.
    pub tools: Vec<String>,
    /// Tail of a running shell command's output, fence-safe lines.
    pub shell: Vec<String>,
    /// `📋 Tasks d/n`, when there is a todo list.
    pub todo_header: Option<String>,
    pub todos: Vec<String>,
}

impl LiveMeta {
    pub const MAX_TOOLS: usize = 8;
    pub const MAX_SHELL: usize = 15;

    fn text(&self, tools: usize, shell: usize, todos: usize) -> String {
        let mut out = self.status.clone();
        let hidden = self.tools.len() - tools;
        if hidden > 0 {
            let noun = if hidden == 1 { "tool" } else { "tools" };
            out.push_str(&format!("\n_…{hidden} earlier {noun}_"));
        }
        for line in &self.tools[hidden..] {
            out.push('\n');
            out.push_str(line);
        }
        if shell > 0 {
            out.push_str("\n\n```\n");
            out.push_str(&self.shell[self.shell.len() - shell..].join("\n"));
            out.push_str("\n```");
        }
        if let Some(header) = &self.todo_header {
            out.push_str("\n\n");
            out.push_str(header);
            for item in &self.todos[..todos] {
                out.push('\n');
                out.push_str(item);
            }
            if todos < self.todos.len() {
                out.push_str(&format!("\n_…{} more_", self.todos.len() - todos));
            }
        }
        out
    }

    /// The block in at most `max` chars: shell lines go first, then older
    /// tool lines, then todo items; a hard cut is the last resort.
    pub fn render(&self, max: usize) -> String {
        let mut tools = self.tools.len().min(Self::MAX_TOOLS);
        let mut shell = self.shell.len().min(Self::MAX_SHELL);
        let mut todos = self.todos.len();
        loop {
            let text = self.text(tools, shell, todos);
            if chars(&text) <= max {
                return text;
            }
            if shell > 0 {
                shell -= 1;
            } else if tools > 0 {
                tools -= 1;
            } else if todos > 0 {
                todos -= 1;
            } else {
                return cap(&text, max);
            }
        }
    }
}

/// The meta size limit for `limits`, as [`posts`] assumes it.
pub(crate) fn meta_room(limits: &Limits) -> usize {
    limits.effective().1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rebuild the body from posts, by the rules in the module docs.
    pub(crate) fn rebuild(posts: &[String], meta: &str) -> String {
        let mut body = String::new();
        let mut open: Option<Fence> = None;
        let mut mid_line = false;
        for (i, post) in posts.iter().enumerate() {
            let mut text = post.as_str();
            if let Some(fence) = &open {
                let reopen = format!("{}\n", fence.opener);
                text = text
                    .strip_prefix(&reopen)
                    .unwrap_or_else(|| panic!("post {i} re-opens the fence: {text:?}"));
            }
            let last = i + 1 == posts.len();
            let chunk = if !last {
                let text = text
                    .strip_suffix(CONTINUED)
                    .unwrap_or_else(|| panic!("post {i} ends with the marker"));
                // A close was appended iff the chunk leaves a fence open.
                let closed = strip_close(text, |chunk| scan(open.clone(), chunk, mid_line, false));
                let chunk = closed.unwrap_or(text);
                assert_eq!(
                    scan(open.clone(), chunk, mid_line, false).is_some(),
                    closed.is_some(),
                    "post {i}: fence close matches the fence state"
                );
                chunk
            } else if text == meta {
                ""
            } else if meta.is_empty() {
                text
            } else {
                text.strip_suffix(meta)
                    .and_then(|t| t.strip_suffix(SEPARATOR))
                    .unwrap_or_else(|| panic!("last post ends with the meta block"))
            };
            open = scan(open, chunk, mid_line, false);
            mid_line = !chunk.ends_with('\n');
            body.push_str(chunk);
        }
        body
    }

    /// `text` without a trailing `"\n"` + fence close, when what remains
    /// leaves exactly that fence open.
    fn strip_close(text: &str, state: impl Fn(&str) -> Option<Fence>) -> Option<&str> {
        let run_start = text.trim_end_matches(['`', '~']).len();
        let chunk = text[..run_start].strip_suffix('\n')?;
        let fence = state(chunk)?;
        (fence.close() == text[run_start..]).then_some(chunk)
    }

    fn live(body: &str, meta: &str, limits: &Limits) -> Vec<String> {
        posts(body, meta, MetaKind::Live, limits)
    }

    fn limits(post_chars: usize, meta_chars: usize) -> Limits {
        Limits {
            post_chars,
            meta_chars,
        }
    }

    /// Check the layout's promises for one body; returns the live posts.
    fn check(body: &str, meta: &str, limits: &Limits) -> Vec<String> {
        let final_posts = posts(body, meta, MetaKind::Final, limits);
        let live = posts(body, meta, MetaKind::Live, limits);
        assert!(!final_posts.is_empty());
        assert_eq!(rebuild(&final_posts, meta), body, "exact reconstruction");
        let (post_chars, meta_chars) = limits.effective();
        for posts in [&final_posts, &live] {
            for (i, post) in posts.iter().enumerate() {
                let n = chars(post);
                assert!(n <= post_chars, "post {i} has {n} > {post_chars} chars");
                if i + 1 < posts.len() {
                    assert!(
                        n <= post_chars - meta_chars,
                        "post {i} leaves room for meta"
                    );
                }
            }
        }
        // Live posts differ only by a fence close before the meta block.
        let last = final_posts.len() - 1;
        assert_eq!(live[..last], final_posts[..last]);
        if live[last] != final_posts[last] {
            let tail = format!("{SEPARATOR}{meta}");
            let head = final_posts[last].strip_suffix(&tail).unwrap_or_default();
            let closed = live[last]
                .strip_prefix(head)
                .and_then(|t| t.strip_suffix(&tail));
            assert!(
                closed.is_some_and(|c| c.starts_with('\n') && may_be_fence(&c[1..])),
                "live post adds only a fence close: {:?}",
                live[last]
            );
        }
        live
    }

    /// Every post but the prefix's last must be unchanged in the full render.
    fn check_stable(body: &str, prefix_chars: usize, meta: &str, limits: &Limits) {
        let prefix = &body[..advance(body, prefix_chars)];
        let before = live(prefix, meta, limits);
        let after = live(body, meta, limits);
        let frozen = before.len() - 1;
        assert!(after.len() >= before.len(), "posts never disappear");
        assert_eq!(
            before[..frozen],
            after[..frozen],
            "rolled-over posts are stable"
        );
    }

    #[test]
    fn short_body_is_one_post_with_meta() {
        let posts = check("Hello", "💻 Processing… 1s", &Limits::default());
        assert_eq!(posts, ["Hello\n\n---\n💻 Processing… 1s"]);
        let posts = check("", "💻 Processing… 1s", &Limits::default());
        assert_eq!(posts, ["💻 Processing… 1s"]);
        assert_eq!(check("Hello", "", &Limits::default()), ["Hello"]);
    }

    #[test]
    fn an_open_fence_is_closed_before_the_meta_block() {
        let posts = check("Look:\n```rust\nfn main() {", "footer", &Limits::default());
        assert_eq!(posts, ["Look:\n```rust\nfn main() {\n```\n\n---\nfooter"]);
        // Even while the opener line itself is still streaming.
        let posts = check("Look:\n``", "footer", &Limits::default());
        assert_eq!(posts, ["Look:\n``\n\n---\nfooter"]);
        let posts = check("Look:\n```py", "footer", &Limits::default());
        assert_eq!(posts, ["Look:\n```py\n```\n\n---\nfooter"]);
    }

    #[test]
    fn paragraphs_split_at_blank_lines_with_markers() {
        let para = "word ".repeat(19) + "end.";
        let body = [para.as_str(); 6].join("\n\n");
        let posts = check(&body, "meta", &limits(300, 50));
        assert!(posts.len() > 1);
        for post in &posts[..posts.len() - 1] {
            assert!(post.ends_with(&format!("end.\n\n{CONTINUED}")), "{post:?}");
        }
        assert!(posts[1].starts_with("word"));
    }

    #[test]
    fn a_fence_spanning_a_cut_is_closed_and_reopened() {
        let code: String = (0..400).map(|i| format!("let x{i} = {i};\n")).collect();
        let body = format!("Here:\n\n```rust\n{code}```\n\nDone.");
        let posts = check(&body, "meta", &limits(1000, 100));
        assert!(posts.len() > 2);
        for post in &posts[..posts.len() - 1] {
            assert!(post.ends_with(&format!("\n```{CONTINUED}")), "{post:?}");
        }
        for post in &posts[1..] {
            assert!(post.starts_with("```rust\n"), "{post:?}");
        }
    }

    #[test]
    fn forty_thousand_chars_with_a_fence_across_the_first_rollover() {
        let mut body = String::new();
        while chars(&body) < 5_000 {
            body.push_str("Prose with some words, ünïcödé and emoji 🦀 to fill the post.\n\n");
        }
        body.push_str("```rust\n");
        while chars(&body) < 20_000 {
            body.push_str("    let v = vec![1, 2, 3]; // 🦀 crab code\n");
        }
        body.push_str("```\n\n");
        while chars(&body) < 40_000 {
            body.push_str("More prose after the code block, line by line.\n");
        }
        let limits = limits(15_000, 2_000);
        let posts = check(&body, "✅ Done in 1m 3s", &limits);
        assert_eq!(posts.len(), 4);
        assert!(posts[0].ends_with(&format!("\n```{CONTINUED}")));
        assert!(posts[1].starts_with("```rust\n    let v"));
        for n in [12_500, 13_000, 20_000, 26_000, 39_000] {
            check_stable(&body, n, "💻 Processing… 5s", &limits);
        }
    }

    #[test]
    fn long_lines_without_spaces_are_cut_hard_on_char_boundaries() {
        let body = "é🦀x".repeat(5_000);
        let posts = check(&body, "meta", &limits(200, 50));
        assert!(posts.len() > 100);
    }

    #[test]
    fn fence_lines_are_never_cut_through() {
        // A long line ends right before a fence opener; a hard cut there
        // must go before the opener, not inside it.
        let body = format!("{}\n```rust\ncode\n```\n", "x".repeat(120));
        for width in 150..260 {
            let posts = check(&body, "m", &limits(width, 0));
            for post in &posts {
                assert!(
                    !post.contains("\n``\n") && !post.contains("\n`\n"),
                    "{post:?}"
                );
            }
        }
    }

    #[test]
    fn an_attached_reply_shows_its_head_and_points_at_the_file() {
        let short = attached_body("Short answer.", "reply-x.md");
        assert_eq!(
            short,
            "Short answer.\n\n📎 _Showing the first 13 of 13 characters: the full reply is \
             attached below as `reply-x.md`._"
        );
        let para = "word ".repeat(60) + "end.";
        let body = [para.as_str(); 40].join("\n\n");
        let text = attached_body(&body, "reply-x.md");
        let head = text.split("\n\n📎").next().unwrap();
        assert!(head.ends_with("end."), "cut at a paragraph: {head:?}");
        assert!(body.starts_with(head));
        assert!(chars(head) <= ATTACHED_HEAD_CHARS);
        assert!(text.contains(&format!("of {} characters", group_digits(chars(&body)))));
        // A fence open at the cut is closed so the note is not code.
        let code: String = (0..200).map(|i| format!("let x{i} = {i};\n")).collect();
        let body = format!("Intro.\n\n```rust\n{code}```\n");
        let text = attached_body(&body, "r.md");
        let head = text.split("\n\n📎").next().unwrap();
        assert!(head.ends_with("\n```"), "{head:?}");
        assert!(scan(None, &format!("{head}\n"), false, true).is_none());
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(62113), "62,113");
        assert_eq!(group_digits(1234567), "1,234,567");
    }

    #[test]
    fn meta_truncation_drops_shell_then_tools_then_todos() {
        let meta = LiveMeta {
            status: "💻 Processing… 1s".into(),
            tools: (0..12)
                .map(|i| format!("✅ `bash` step {i} · 0.1s"))
                .collect(),
            shell: (0..15).map(|i| format!("output line {i}")).collect(),
            todo_header: Some("📋 Tasks 1/3".into()),
            todos: vec!["✅ ~~a~~".into(), "🔄 b".into(), "⏳ c".into()],
        };
        let full = meta.render(10_000);
        assert!(full.contains("_…4 earlier tools_\n✅ `bash` step 4"));
        assert!(full.contains("```\noutput line 0\n"));
        let count = |text: &str, what: &str| text.matches(what).count();
        for max in (0..=chars(&full)).rev() {
            let text = meta.render(max);
            assert!(chars(&text) <= max, "{max}: {text}");
            let (tools, shell, todos) = (
                count(&text, "`bash` step"),
                count(&text, "output line"),
                count(&text, "\n✅ ~~a~~") + count(&text, "🔄 b") + count(&text, "⏳ c"),
            );
            if tools < 8 {
                assert_eq!(shell, 0, "{max}: shell lines go before tool lines");
            }
            if todos < 3 && text.contains("_more_") {
                assert_eq!(tools, 0, "{max}: tool lines go before todo items");
            }
            if max >= 100 {
                assert!(text.starts_with("💻 Processing… 1s\n"), "{max}");
            }
        }
        assert!(meta.render(chars(&full) - 20).contains("output line 14"));
        assert_eq!(chars(&meta.render(5)), 5);
    }

    /// Generated bodies: fences of both kinds, long unbroken lines,
    /// multibyte chars, blank lines everywhere or nowhere.
    fn generate(rng: &mut fastrand::Rng, target: usize) -> String {
        let words = [
            "alpha",
            "β",
            "🦀",
            "naïve",
            "x",
            "longerword",
            "漢字",
            "-",
            "`tick`",
        ];
        let blank_lines = rng.u8(..3); // none, some, everywhere
        let mut out = String::new();
        while chars(&out) < target {
            match rng.u8(..10) {
                0 => {
                    let ch = if rng.bool() { '`' } else { '~' };
                    let run = rng.usize(3..6);
                    let fence: String = std::iter::repeat_n(ch, run).collect();
                    let indent = " ".repeat(rng.usize(..4));
                    out.push_str(&format!(
                        "{indent}{fence}{}\n",
                        ["", "rust", "sh title"][rng.usize(..3)]
                    ));
                    for _ in 0..rng.usize(..40) {
                        out.push_str(&"code(🦀); ".repeat(rng.usize(..8)));
                        out.push('\n');
                    }
                    if rng.u8(..5) > 0 {
                        out.push_str(&format!("{indent}{fence}\n"));
                    }
                }
                1 => out.push_str(&"z".repeat(rng.usize(..3_000))),
                2 => out.push_str(&"ü".repeat(rng.usize(..500))),
                _ => {
                    for _ in 0..rng.usize(1..30) {
                        out.push_str(words[rng.usize(..words.len())]);
                        out.push(' ');
                    }
                }
            }
            match blank_lines {
                0 => {}
                1 => out.push_str(["\n", "\n\n", ""][rng.usize(..3)]),
                _ => out.push_str("\n\n"),
            }
        }
        out
    }

    #[test]
    fn generated_bodies_rebuild_exactly_fit_and_stay_stable() {
        let mut rng = fastrand::Rng::with_seed(0x5EED);
        let sizes = [0, 1, 10, 150, 400, 1_000, 5_000, 20_000, 60_000];
        let limit_sets = [
            limits(200, 50),
            limits(500, 120),
            limits(4_000, 2_000),
            limits(15_000, 2_000),
        ];
        // How often the interesting cases came up, so the test proves
        // something: fences re-opened, cuts inside a line.
        let (mut reopened, mut mid_line_cuts) = (0, 0);
        for round in 0..40 {
            let size = sizes[round % sizes.len()];
            let body = generate(&mut rng, size);
            let limits = limit_sets[round % limit_sets.len()];
            let meta = ["💻 Processing… 3s", "", "✅ Done in 1m 3s · 4 tools"][round % 3];
            let posts = check(&body, meta, &limits);
            if chars(&body) > limits.post_chars {
                assert!(posts.len() > 1);
            }
            reopened += posts[1..]
                .iter()
                .filter(|p| fence_marker(p.lines().next().unwrap_or_default()).is_some())
                .count();
            mid_line_cuts += posts[..posts.len() - 1]
                .iter()
                .filter(|p| {
                    let text = p.strip_suffix(CONTINUED).unwrap_or_default();
                    !text.ends_with(['\n', '`', '~'])
                })
                .count();
            let total = chars(&body);
            for _ in 0..3 {
                check_stable(&body, rng.usize(..=total), meta, &limits);
            }
        }
        assert!(
            reopened > 20 && mid_line_cuts > 20,
            "{reopened} {mid_line_cuts}"
        );
    }

    #[test]
    fn every_prefix_of_a_small_body_is_stable() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..6 {
            let body = generate(&mut rng, 1_500);
            let total = chars(&body);
            let limits = limits(200, 50);
            let full = check(&body, "meta", &limits);
            for n in 0..=total {
                let prefix = &body[..advance(&body, n)];
                let posts = check(prefix, "meta", &limits);
                let frozen = posts.len() - 1;
                assert_eq!(posts[..frozen], full[..frozen], "prefix of {n} chars");
            }
        }
    }
}
