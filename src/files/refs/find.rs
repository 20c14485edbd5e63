//! Which project file a `!!` reference names.
//!
//! The project is walked once per message as git sees it (`.gitignore`,
//! `.git/info/exclude`, `.ignore`, global excludes: see
//! [`super::gitignore`]; hidden files included, `.git` itself never),
//! without following symlinks. Ignored files are never offered, even when
//! named exactly: they are where local secrets and build output live.
//! Every file offered or sent has passed [`safety::check_outbound`], the
//! rules of `mattermost_send_file`: inside the project after symlinks, a
//! regular file within the size limit, not secret-looking, not the agent's
//! or OpenCode's own state.
//!
//! # The clear best match
//! A reference's matches fall into tiers, best first:
//! 1. the path is the reference, exactly;
//! 2. the reference names the file: the path, with or without its
//!    extension, is the reference or ends with `/` and the reference,
//!    ignoring case (`!!config` → `src/config.rs`, `!!src/Config.RS`);
//! 3. the path contains the reference, ignoring case (`!!resp` →
//!    `src/response.ts`);
//! 4. the reference's characters appear in the path in order
//!    (`!!srcrsp` → `src/response.ts`), scored by `nucleo-matcher`.
//!
//! Only the best tier holding a file that may be sent counts. A single such
//! file is the clear best match; several are offered as a list, best score
//! first. Files that may not be sent are never listed; when they were all
//! there was, the reason is given.

use std::path::{Component, Path, PathBuf};

use nucleo_matcher::pattern::{Atom, AtomKind, CaseMatching, Normalization};
use nucleo_matcher::{Config, Matcher, Utf32Str};

use super::gitignore::{Ignores, global_excludes};
use crate::files::safety::{self, Refusal, Roots};

/// Most files walked per message. A large monorepo tracks tens of
/// thousands of files; beyond this the walk stops rather than hold up the
/// posts queued behind this one (inbound posts are handled in order).
pub const MAX_WALKED: usize = 50_000;
/// Most files listed for one reference: a longer list is not a choice
/// anyone makes; typing more of the path is quicker.
pub const MAX_LISTED: usize = 9;
/// Longest reference, in characters. Real project paths are far shorter;
/// a longer token is pasted text, not a file someone names.
pub const MAX_TOKEN_CHARS: usize = 256;

/// Where references are looked for.
#[derive(Debug, Clone)]
pub struct Project {
    /// The session's directory, canonical: relative paths start here.
    pub base: PathBuf,
    /// What may be sent: the same rules as `mattermost_send_file`.
    pub roots: Roots,
    /// `OPENCODE_MM_MAX_FILE_SIZE`.
    pub limit: u64,
}

/// The project's files, relative to its base, `/`-separated.
#[derive(Debug, Clone, Default)]
pub struct Files {
    pub paths: Vec<String>,
    /// The walk stopped at [`MAX_WALKED`].
    pub truncated: bool,
}

/// What one reference names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The clear best match (relative path).
    One(String),
    /// Several files match as well as each other: the best first, at most
    /// [`MAX_LISTED`], and how many more there were.
    Several {
        listed: Vec<String>,
        more: usize,
    },
    NoMatch,
    /// Named a file that may not be sent, or was malformed: why.
    Refused(String),
}

/// Walk the project (blocking). See the module docs for what is skipped.
pub fn walk(base: &Path) -> Files {
    let mut files = Files::default();
    let mut ignores = Ignores::for_base(base, global_excludes().as_deref());
    walk_dir(base, base, &mut ignores, &mut files);
    files.paths.sort();
    files
}

/// One directory of [`walk`], its own ignore files in force below it.
/// Returns `false` once the cap is reached.
fn walk_dir(base: &Path, dir: &Path, ignores: &mut Ignores, files: &mut Files) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        // Unreadable directories are skipped, as git skips them.
        return true;
    };
    let added = ignores.enter(dir);
    let mut go_on = true;
    for entry in entries.flatten() {
        if entry.file_name() == ".git" {
            continue;
        }
        // Not followed: a symlink is listed as itself, whatever it points
        // at, and the send rules judge its target.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if ignores.ignored(&path, kind.is_dir()) {
            continue;
        }
        if kind.is_dir() {
            go_on = walk_dir(base, &path, ignores, files);
        } else if files.paths.len() >= MAX_WALKED {
            files.truncated = true;
            go_on = false;
        } else if let Some(text) = path.strip_prefix(base).ok().and_then(Path::to_str) {
            // Names that are not UTF-8 cannot be typed in chat.
            files
                .paths
                .push(text.replace(std::path::MAIN_SEPARATOR, "/"));
        }
        if !go_on {
            break;
        }
    }
    ignores.leave(added);
    go_on
}

/// What `token` names among `files`.
pub fn resolve(token: &str, files: &Files, project: &Project) -> Found {
    if token.chars().count() > MAX_TOKEN_CHARS {
        return Found::Refused(format!(
            "the reference is longer than {MAX_TOKEN_CHARS} characters; name the file by a \
             shorter part of its path"
        ));
    }
    if token.chars().any(char::is_control) {
        return Found::Refused(
            Refusal::ControlChars {
                path: safety::quote(token),
            }
            .to_string(),
        );
    }
    let mut token = token.trim_start_matches("./").to_owned();
    // An absolute path or one climbing with `..` is a path, not a pattern:
    // the send rules decide, and inside the project it becomes relative.
    if Path::new(&token).is_absolute()
        || Path::new(&token)
            .components()
            .any(|c| c == Component::ParentDir)
    {
        match safety::check_outbound(&token, &project.base, &project.roots, project.limit) {
            Ok(checked) => match checked.path.strip_prefix(&project.base) {
                Ok(rel) if rel.to_str().is_some() => {
                    token = rel.to_str().unwrap_or_default().to_owned();
                }
                _ => return Found::NoMatch,
            },
            Err(Refusal::Missing { .. }) => return Found::NoMatch,
            Err(refusal) => return Found::Refused(refusal.to_string()),
        }
    }
    if token.is_empty() {
        return Found::NoMatch;
    }
    let lower = token.to_lowercase();
    let mut matcher = Matcher::new(Config::DEFAULT.match_paths());
    let atom = Atom::new(
        &token,
        CaseMatching::Ignore,
        Normalization::Never,
        AtomKind::Fuzzy,
        false,
    );
    let mut tiers: [Vec<(u16, &str)>; 4] = Default::default();
    let mut buf = Vec::new();
    for path in &files.paths {
        let Some(score) = atom.score(Utf32Str::new(path, &mut buf), &mut matcher) else {
            continue;
        };
        let tier = if *path == token {
            0
        } else if names_the_file(&path.to_lowercase(), &lower) {
            1
        } else if path.to_lowercase().contains(&lower) {
            2
        } else {
            3
        };
        tiers[tier].push((score, path));
    }
    let mut first_refusal: Option<String> = None;
    for mut tier in tiers {
        if tier.is_empty() {
            continue;
        }
        // Best score first; shorter, then alphabetical, paths break ties so
        // the list is the same every time.
        tier.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then(a.1.len().cmp(&b.1.len()))
                .then(a.1.cmp(b.1))
        });
        let mut sendable: Vec<String> = Vec::new();
        let mut more = 0;
        for (_, path) in &tier {
            match safety::check_outbound(path, &project.base, &project.roots, project.limit) {
                Ok(_) if sendable.len() < MAX_LISTED => sendable.push((*path).to_owned()),
                Ok(_) => more += 1,
                Err(refusal) => {
                    first_refusal.get_or_insert_with(|| refusal.to_string());
                }
            }
        }
        match sendable.len() {
            0 => continue,
            1 => return Found::One(sendable.remove(0)),
            _ => {
                return Found::Several {
                    listed: sendable,
                    more,
                };
            }
        }
    }
    match first_refusal {
        Some(why) => Found::Refused(why),
        None => Found::NoMatch,
    }
}

/// Tier 2: `path` (lower case) is `token` (lower case) or ends with
/// `/token`, with or without the file's extension.
fn names_the_file(path: &str, token: &str) -> bool {
    let ends = |p: &str| p == token || p.strip_suffix(token).is_some_and(|s| s.ends_with('/'));
    if ends(path) {
        return true;
    }
    let name_start = path.rfind('/').map_or(0, |i| i + 1);
    match path[name_start..].rfind('.') {
        Some(dot) if dot > 0 => ends(&path[..name_start + dot]),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
