//! Which paths git ignores, for the `!!` walk: the rules of gitignore(5)
//! read from the same files git reads, without a regex engine.
//!
//! Sources, weakest first: the user's global excludes
//! (`$XDG_CONFIG_HOME/git/ignore`, else `~/.config/git/ignore`; a
//! `core.excludesFile` set elsewhere is not read), the repository's
//! `.git/info/exclude`, then per directory from the repository's top down
//! to the walked one: `.gitignore`, then `.ignore` (the ripgrep convention,
//! stronger than `.gitignore` in the same directory). A deeper directory's
//! file beats a shallower one; within one file the last matching line wins.
//! Outside a repository only the walked tree's own files count.
//!
//! The walker asks about a directory before entering it, so, as in git, a
//! file under an ignored directory cannot be re-included.
//!
//! A `[[:alpha:]]`-style class is read as a plain set of characters
//! (gitignore files in the wild do not use them; git itself would).

use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest ignore file read: beyond this the rest is not read (a real one
/// is a few KiB; this keeps a hostile one from costing memory per message).
const MAX_RULES_BYTES: u64 = 1024 * 1024;

/// One line of an ignore file.
#[derive(Debug, Clone)]
struct Rule {
    glob: Vec<Token>,
    /// `!pattern`: re-includes what an earlier rule ignored.
    negated: bool,
    /// `pattern/`: matches directories only.
    dir_only: bool,
    /// Has a `/` before its end: matched against the path from the file's
    /// directory, not against the name alone.
    anchored: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `?`: one character but `/`.
    One,
    /// `*`: any run of characters without `/`.
    Star,
    /// A trailing `/**`'s `**`: everything.
    All,
    /// `**/` at the start or after `/`: zero or more whole directories.
    Dirs,
    /// `[...]`.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// The rules of one ignore file and the directory they are relative to.
#[derive(Debug, Clone)]
pub struct RuleSet {
    /// Absolute directory the file's anchored patterns start from.
    root: PathBuf,
    rules: Vec<Rule>,
}

impl RuleSet {
    /// Parses the text of an ignore file living in `root`.
    pub fn parse(root: &Path, text: &str) -> Self {
        RuleSet {
            root: root.to_path_buf(),
            rules: text.lines().filter_map(parse_line).collect(),
        }
    }

    /// Reads `file` (missing or unreadable: no rules; an ignore file git
    /// cannot read does not ignore anything either).
    pub fn read(root: &Path, file: &Path) -> Option<Self> {
        let mut text = Vec::new();
        std::fs::File::open(file)
            .ok()?
            .take(MAX_RULES_BYTES)
            .read_to_end(&mut text)
            .ok()?;
        let set = Self::parse(root, &String::from_utf8_lossy(&text));
        (!set.rules.is_empty()).then_some(set)
    }

    /// `Some(true)` ignored, `Some(false)` re-included, `None` no rule here
    /// matches `path` (absolute).
    fn decide(&self, path: &Path, is_dir: bool) -> Option<bool> {
        let relative = path.strip_prefix(&self.root).ok()?.to_str()?;
        let name = relative.rsplit('/').next().unwrap_or(relative);
        let chars: Vec<char> = relative.chars().collect();
        let name_chars: Vec<char> = name.chars().collect();
        self.rules.iter().rev().find_map(|rule| {
            if rule.dir_only && !is_dir {
                return None;
            }
            let subject = if rule.anchored { &chars } else { &name_chars };
            glob_matches(&rule.glob, subject).then_some(!rule.negated)
        })
    }
}

/// The rule sets in force at one directory of the walk, weakest first.
#[derive(Debug, Clone, Default)]
pub struct Ignores {
    sets: Vec<RuleSet>,
}

impl Ignores {
    /// The rules in force at `base` before its own files: the `global`
    /// excludes file ([`global_excludes`]), and inside a repository its
    /// `info/exclude` and the ignore files of the directories from its top
    /// down to `base`'s parent.
    pub fn for_base(base: &Path, global: Option<&Path>) -> Self {
        let mut ignores = Ignores::default();
        // `.git` is a directory in a clone, a file in a worktree or submodule.
        let top = base.ancestors().find(|dir| dir.join(".git").exists());
        if let Some(global) = global {
            // Global patterns are relative to the repository's top.
            ignores
                .sets
                .extend(RuleSet::read(top.unwrap_or(base), global));
        }
        let Some(top) = top else {
            return ignores;
        };
        ignores
            .sets
            .extend(RuleSet::read(top, &top.join(".git/info/exclude")));
        let mut above: Vec<&Path> = base
            .ancestors()
            .skip(1)
            .take_while(|dir| dir.starts_with(top))
            .collect();
        above.reverse();
        for dir in above {
            ignores.enter(dir);
        }
        ignores
    }

    /// Adds `dir`'s own ignore files; returns how many sets were added, to
    /// give to [`Ignores::leave`].
    pub fn enter(&mut self, dir: &Path) -> usize {
        let before = self.sets.len();
        for name in [".gitignore", ".ignore"] {
            self.sets.extend(RuleSet::read(dir, &dir.join(name)));
        }
        self.sets.len() - before
    }

    /// Drops the `added` sets the matching [`Ignores::enter`] pushed.
    pub fn leave(&mut self, added: usize) {
        self.sets.truncate(self.sets.len().saturating_sub(added));
    }

    /// Whether `path` (absolute, under the walked tree) is ignored.
    pub fn ignored(&self, path: &Path, is_dir: bool) -> bool {
        self.sets
            .iter()
            .rev()
            .find_map(|set| set.decide(path, is_dir))
            .unwrap_or(false)
    }
}

/// Where git looks for the user's global excludes when `core.excludesFile`
/// is not set.
pub fn global_excludes() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("git/ignore"))
}

/// One line of an ignore file as a rule, or `None` for blanks and comments.
fn parse_line(line: &str) -> Option<Rule> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.starts_with('#') {
        return None;
    }
    let line = trim_unescaped_trailing_spaces(line);
    let (negated, line) = match line.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let (dir_only, line) = match line.strip_suffix('/') {
        Some(rest) if !rest.ends_with('\\') || rest.ends_with("\\\\") => (true, rest),
        _ => (false, line),
    };
    if line.is_empty() {
        return None;
    }
    let anchored = line.contains('/');
    let line = line.strip_prefix('/').unwrap_or(line);
    Some(Rule {
        glob: compile(line),
        negated,
        dir_only,
        anchored,
    })
}

/// Trailing spaces end a pattern unless escaped with a backslash.
fn trim_unescaped_trailing_spaces(line: &str) -> &str {
    let mut end = line.len();
    while line[..end].ends_with(' ') {
        let before = &line[..end - 1];
        let backslashes = before.len() - before.trim_end_matches('\\').len();
        if backslashes % 2 == 1 {
            break;
        }
        end -= 1;
    }
    &line[..end]
}

/// A pattern (leading `/`, trailing `/` and `!` already taken off) as tokens.
fn compile(pattern: &str) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                // A trailing lone backslash matches nothing in git; as a
                // literal it matches no real name either.
                tokens.push(Token::Char(chars.get(i + 1).copied().unwrap_or('\\')));
                i += 2;
            }
            '?' => {
                tokens.push(Token::One);
                i += 1;
            }
            '*' => {
                let run = chars[i..].iter().take_while(|&&c| c == '*').count();
                let at_start = i == 0 || chars[i - 1] == '/';
                let next = chars.get(i + run).copied();
                if run == 2 && at_start && next == Some('/') {
                    tokens.push(Token::Dirs);
                    i += run + 1;
                } else if run == 2 && at_start && next.is_none() && i > 0 {
                    tokens.push(Token::All);
                    i += run;
                } else {
                    // `**` elsewhere, or `***`: an ordinary star. A lone
                    // `**` pattern is handled here too: it matches any name.
                    tokens.push(Token::Star);
                    i += run;
                }
            }
            '[' => match class(&chars[i + 1..]) {
                Some((token, used)) => {
                    tokens.push(token);
                    i += 1 + used;
                }
                None => {
                    tokens.push(Token::Char('['));
                    i += 1;
                }
            },
            c => {
                tokens.push(Token::Char(c));
                i += 1;
            }
        }
    }
    tokens
}

/// A bracket expression after its `[`: the token and the characters used
/// (through the `]`), or `None` when it is never closed.
fn class(chars: &[char]) -> Option<(Token, usize)> {
    let mut i = 0;
    let negated = matches!(chars.first(), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let mut c = *chars.get(i)?;
        if c == ']' && !first {
            return Some((Token::Class { negated, ranges }, i + 1));
        }
        first = false;
        if c == '\\' {
            i += 1;
            c = *chars.get(i)?;
        }
        i += 1;
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&n| n != ']') {
            let mut hi = chars[i + 1];
            i += 2;
            if hi == '\\' {
                hi = *chars.get(i)?;
                i += 1;
            }
            ranges.push((c, hi));
        } else {
            ranges.push((c, c));
        }
    }
}

/// Whether `glob` matches all of `text`. Table-driven (pattern position ×
/// text position), so no pattern costs more than their product.
fn glob_matches(glob: &[Token], text: &[char]) -> bool {
    // Most lines are plain names (`target`, `node_modules`).
    if glob.iter().all(|t| matches!(t, Token::Char(_))) {
        return glob.len() == text.len()
            && glob.iter().zip(text).all(|(g, c)| *g == Token::Char(*c));
    }
    let width = text.len() + 1;
    // at[p * width + t]: glob[p..] matches text[t..].
    let mut at = vec![false; (glob.len() + 1) * width];
    at[glob.len() * width + text.len()] = true;
    for p in (0..glob.len()).rev() {
        for t in (0..=text.len()).rev() {
            let rest = |q: usize, u: usize| at[q * width + u];
            let here = text.get(t).copied();
            at[p * width + t] = match &glob[p] {
                Token::Char(c) => here == Some(*c) && rest(p + 1, t + 1),
                Token::One => here.is_some_and(|c| c != '/') && rest(p + 1, t + 1),
                Token::Star => rest(p + 1, t) || (here.is_some_and(|c| c != '/') && rest(p, t + 1)),
                Token::All => rest(p + 1, t) || (here.is_some() && rest(p, t + 1)),
                // Nothing, or any text through a `/`, then the rest.
                Token::Dirs => {
                    rest(p + 1, t) || (t..text.len()).any(|k| text[k] == '/' && rest(p + 1, k + 1))
                }
                Token::Class { negated, ranges } => {
                    here.is_some_and(|c| {
                        c != '/' && ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
                    }) && rest(p + 1, t + 1)
                }
            };
        }
    }
    at[0]
}

#[cfg(test)]
mod tests;
