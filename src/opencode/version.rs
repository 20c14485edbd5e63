//! Which OpenCode releases the plugin works with. The end-to-end tests run
//! the pinned `opencode-ai` of `tests/opencode/package.json`, and the shim is
//! built against the same `@opencode-ai/plugin`; `tests/versions.rs` checks
//! that both pins are [`TESTED`].
//!
//! Supported: the tested minor line (its plugin hooks and event shapes are
//! the ones the shim and the agent read). A later minor release of the same
//! major may work but is untested; an older one or another major is not
//! supported.

/// The OpenCode release the tests run.
pub const TESTED: &str = "1.18.33";

/// How an installed OpenCode relates to [`TESTED`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// Same major and minor as the tested release.
    Supported,
    /// A later minor release of the same major: untested.
    Newer,
    /// Older than the tested minor line, or another major.
    Unsupported,
}

/// `major.minor.patch` from a version string such as `1.18.33`,
/// `v1.18.33` or `opencode 1.18.33-beta.1` (the last word that starts with
/// three dot-separated numbers).
pub fn parse(text: &str) -> Option<(u64, u64, u64)> {
    text.split_whitespace().rev().find_map(|word| {
        let word = word.strip_prefix('v').unwrap_or(word);
        let mut parts = word.splitn(3, '.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let rest = parts.next()?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        Some((major, minor, digits.parse().ok()?))
    })
}

/// The verdict for an installed version, or `None` when the text holds no
/// version.
pub fn support(installed: &str) -> Option<Support> {
    let (major, minor, _) = parse(installed)?;
    let (t_major, t_minor, _) = parse(TESTED)?;
    Some(if major != t_major || minor < t_minor {
        Support::Unsupported
    } else if minor == t_minor {
        Support::Supported
    } else {
        Support::Newer
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_what_opencode_prints() {
        assert_eq!(parse("1.18.33"), Some((1, 18, 33)));
        assert_eq!(parse("v1.18.33\n"), Some((1, 18, 33)));
        assert_eq!(parse("opencode 1.19.0-beta.2"), Some((1, 19, 0)));
        assert_eq!(parse("1.18"), None);
        assert_eq!(parse("latest"), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("x.1.2"), None);
    }

    #[test]
    fn the_tested_minor_line_is_supported() {
        assert_eq!(support(TESTED), Some(Support::Supported));
        assert_eq!(support("1.18.0"), Some(Support::Supported));
        assert_eq!(support("1.19.2"), Some(Support::Newer));
        assert_eq!(support("1.17.9"), Some(Support::Unsupported));
        assert_eq!(support("0.15.0"), Some(Support::Unsupported));
        assert_eq!(support("2.0.0"), Some(Support::Unsupported));
        assert_eq!(support("nonsense"), None);
    }
}
