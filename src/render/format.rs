//! Small text formats shared by status lines and footers: durations, money,
//! token counts, and the escaping that keeps tool-provided text from turning
//! into Markdown.

/// A duration for people: `0.4s` under 10 s (a tenth still matters there),
/// then `12s`, `1m 3s`, `2h 5m`. Negative or non-finite input reads as 0.
pub fn duration(ms: f64) -> String {
    let ms = if ms.is_finite() { ms.max(0.0) } else { 0.0 };
    let tenths = (ms / 100.0).round();
    if tenths < 100.0 {
        return format!("{:.1}s", tenths / 10.0);
    }
    // Whole seconds from here on; rounding first keeps `59.6s` from
    // printing as `60s`.
    let secs = (ms / 1000.0).round() as u64;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        _ => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
    }
}

/// Money with two significant digits below $0.10 and cents above:
/// `$0.45`, `$0.012`, `$0.0012`, `$0`. Amounts under $0.0001 still show
/// that something was spent.
pub fn cost(dollars: f64) -> String {
    if !dollars.is_finite() || dollars <= 0.0 {
        return "$0".to_owned();
    }
    if dollars < 0.000_05 {
        return "<$0.0001".to_owned();
    }
    let decimals = if dollars >= 0.095 {
        2
    } else if dollars >= 0.0095 {
        3
    } else {
        4
    };
    format!("${dollars:.decimals$}")
}

/// Token counts: `950`, `12.3K`, `1.2M` (a trailing `.0` is dropped).
pub fn tokens(count: f64) -> String {
    let n = if count.is_finite() {
        count.max(0.0)
    } else {
        0.0
    };
    if n.round() < 1000.0 {
        return format!("{}", n.round() as u64);
    }
    let scaled = |div: f64, unit: &str| {
        let text = format!("{:.1}", n / div);
        let text = text.strip_suffix(".0").unwrap_or(&text);
        format!("{text}{unit}")
    };
    // Decide the unit after rounding so 999,960 reads `1M`, not `1000K`.
    if (n / 100.0).round() < 10_000.0 {
        scaled(1e3, "K")
    } else {
        scaled(1e6, "M")
    }
}

/// One line of at most `max` characters (at least one): line breaks and
/// tabs become spaces, runs of whitespace collapse, and a cut is marked
/// with `…`.
pub fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut out: String = flat.chars().take(max.saturating_sub(1)).collect();
    out.truncate(out.trim_end().len());
    out.push('…');
    out
}

/// Escape the characters that would make tool titles, commands, todo items
/// or error texts render as Markdown (emphasis, code spans, links, tables),
/// so they read exactly as OpenCode reported them.
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if matches!(
            ch,
            '\\' | '`' | '*' | '_' | '~' | '[' | ']' | '|' | '<' | '>'
        ) {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// At most 40 characters of what someone typed, without backticks or
/// control characters: safe to quote back inside a code span.
pub fn echo(text: &str) -> String {
    let clean: String = text
        .chars()
        .filter(|c| *c != '`' && !c.is_control())
        .take(41)
        .collect();
    if clean.chars().count() > 40 {
        format!("{}…", clean.chars().take(40).collect::<String>())
    } else {
        clean
    }
}

/// Keep `@all`, `@channel` and `@here` in agent text from notifying
/// everyone: a zero-width space after the `@` leaves them readable.
pub fn defuse(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        out.push(c);
        if c != '@' {
            continue;
        }
        let rest = &text[i + 1..];
        let broadcast = ["all", "channel", "here"].iter().any(|w| {
            rest.get(..w.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(w))
                && !rest[w.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '.')
        });
        if broadcast {
            out.push('\u{200B}');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [
            (0.0, "0.0s"),
            (400.0, "0.4s"),
            (9_940.0, "9.9s"),
            (9_960.0, "10s"),
            (12_300.0, "12s"),
            (59_600.0, "1m 0s"),
            (63_000.0, "1m 3s"),
            (3_599_000.0, "59m 59s"),
            (3_600_000.0, "1h 0m"),
            (7_500_000.0, "2h 5m"),
            (-5.0, "0.0s"),
            (f64::NAN, "0.0s"),
        ];
        for (ms, want) in cases {
            assert_eq!(duration(ms), want, "{ms}");
        }
    }

    #[test]
    fn costs() {
        let cases = [
            (0.0, "$0"),
            (-1.0, "$0"),
            (f64::INFINITY, "$0"),
            (0.45, "$0.45"),
            (12.345, "$12.35"),
            (0.012, "$0.012"),
            (0.0012, "$0.0012"),
            (0.0999, "$0.10"),
            (0.00001, "<$0.0001"),
        ];
        for (c, want) in cases {
            assert_eq!(cost(c), want, "{c}");
        }
    }

    #[test]
    fn token_counts() {
        let cases = [
            (0.0, "0"),
            (950.0, "950"),
            (999.4, "999"),
            (999.6, "1K"),
            (12_345.0, "12.3K"),
            (999_960.0, "1M"),
            (1_234_567.0, "1.2M"),
            (f64::NAN, "0"),
        ];
        for (n, want) in cases {
            assert_eq!(tokens(n), want, "{n}");
        }
    }

    #[test]
    fn one_line_flattens_and_caps() {
        assert_eq!(one_line("echo hi\n  ls -la\t", 120), "echo hi ls -la");
        assert_eq!(one_line("abcdef", 4), "abc…");
        assert_eq!(one_line("ab cdef", 4), "ab…");
        assert_eq!(one_line("ééééé", 5), "ééééé");
        assert_eq!(one_line("", 5), "");
        assert_eq!(one_line("abc", 0), "…");
    }

    #[test]
    fn plain_escapes_markdown() {
        assert_eq!(plain("rm *.txt `x` a_b"), r"rm \*.txt \`x\` a\_b");
        assert_eq!(plain("naïve"), "naïve");
    }
}
