//! The rules files obey in both directions.
//!
//! Outbound is the dangerous direction: a prompt-injected model could ask
//! `mattermost_send_file` for `~/.ssh/id_ed25519`, `/proc/self/environ` or
//! a FIFO that blocks forever (the old plugin uploaded any readable file,
//! defect 16). So a path may leave only when, after every symlink and `..`
//! is resolved, it lies inside one of the session's roots (its worktree or
//! directory, or its temporary directory), is a regular file within the
//! size limit (judged from metadata, before a byte is read), has a name
//! without control characters and does not look like a secret. Every
//! refusal says why, in words the model can pass on.
//!
//! Inbound names come from other people and are only ever used as the last
//! component of a path we choose, after [`sanitize_name`].

use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// MIME types the model is shown as file parts; other files go by path.
const SHOWN: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
];

/// Longest sanitised name, in characters.
const MAX_NAME_CHARS: usize = 120;
/// Longest piece of a hostile path quoted back in a message.
const MAX_QUOTED_CHARS: usize = 200;

/// Why a file is not sent or received. Messages name the file, the rule and
/// what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no file path was given")]
    Empty,
    #[error(
        "`{path}` has control characters in its name; rename the file (or give the path \
         without them) and try again"
    )]
    ControlChars { path: String },
    #[error("`{path}` does not exist or cannot be read ({reason})")]
    Missing { path: String, reason: String },
    #[error(
        "`{path}` resolves to `{resolved}`, outside this session's project; only files inside \
         {roots} can be sent"
    )]
    Outside {
        path: String,
        resolved: String,
        roots: String,
    },
    #[error("`{path}` is a directory; send one file (archive the directory first if needed)")]
    Directory { path: String },
    #[error("`{path}` is a {kind}, not a regular file; only regular files can be sent")]
    Special { path: String, kind: &'static str },
    #[error(
        "`{path}` is {} ({size} bytes), above the {} limit (OPENCODE_MM_MAX_FILE_SIZE)",
        size_text(*size),
        size_text(*limit)
    )]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("`{path}` looks like {what}; secrets are never sent to chat")]
    Secret { path: String, what: &'static str },
    #[error(
        "`{name}` is not an accepted kind of file: OPENCODE_MM_ALLOWED_EXTENSIONS allows only \
         {allowed}"
    )]
    Extension { name: String, allowed: String },
    #[error(
        "there is no project directory to send files from (OpenCode has not said where it runs)"
    )]
    NoRoots,
}

/// A byte count as people read it: `512 bytes`, `1.5 KiB`, `10 MiB`.
pub fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {}", UNITS[unit])
}

/// `text` safe to quote in a message: control characters escaped, long
/// paths cut.
pub fn quote(text: &str) -> String {
    let escaped = text.escape_debug().to_string();
    if escaped.chars().count() <= MAX_QUOTED_CHARS {
        escaped
    } else {
        let cut: String = escaped.chars().take(MAX_QUOTED_CHARS - 1).collect();
        format!("{cut}…")
    }
}

/// A name from someone else made safe as one path component: the last
/// segment of any path, control and unusual characters replaced by `_`, no
/// leading dots (no hidden files, no `..`), at most [`MAX_NAME_CHARS`]
/// characters with the extension kept; `file` when nothing is left.
pub fn sanitize_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mapped: String = base
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ' ' | '+' | '(' | ')' | ',') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = mapped
        .trim_matches(|c: char| c == ' ' || c == '.')
        .to_owned();
    if trimmed.is_empty() || trimmed.chars().all(|c| c == '_') {
        return "file".to_owned();
    }
    if trimmed.chars().count() <= MAX_NAME_CHARS {
        return trimmed;
    }
    let ext = extension(&trimmed)
        .filter(|e| e.chars().count() <= 16)
        .map(|e| format!(".{e}"))
        .unwrap_or_default();
    let stem: String = trimmed
        .chars()
        .take(MAX_NAME_CHARS - ext.chars().count())
        .collect();
    format!("{}{ext}", stem.trim_end_matches(['.', ' ']))
}

/// The extension of a file name, lower case, without the dot.
pub fn extension(name: &str) -> Option<String> {
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty() && !ext.contains(['/', '\\']))
        .then(|| ext.to_ascii_lowercase())
}

/// Whether `OPENCODE_MM_ALLOWED_EXTENSIONS` (`*`, or a list of extensions)
/// accepts a file name.
pub fn check_extension(name: &str, allowed: &[String]) -> Result<(), Refusal> {
    if allowed.iter().any(|a| a == "*") {
        return Ok(());
    }
    match extension(name) {
        Some(ext) if allowed.contains(&ext) => Ok(()),
        _ => Err(Refusal::Extension {
            name: quote(name),
            allowed: allowed
                .iter()
                .map(|a| format!(".{a}"))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The MIME type of a file name, from its extension.
pub fn mime_for(name: &str) -> &'static str {
    match extension(name).as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("svg") => "image/svg+xml",
        Some("pdf") => "application/pdf",
        Some("md" | "markdown") => "text/markdown",
        Some("txt" | "log") => "text/plain",
        Some("csv") => "text/csv",
        Some("html" | "htm") => "text/html",
        Some("json") => "application/json",
        Some("xml") => "application/xml",
        Some("yaml" | "yml") => "application/yaml",
        Some("zip") => "application/zip",
        Some("gz") => "application/gzip",
        _ => "application/octet-stream",
    }
}

/// Whether the model is given a file of this type as a file part (it sees
/// the image or document) rather than by path.
pub fn model_can_see(mime: &str) -> bool {
    SHOWN.contains(&mime)
}

/// The directories files may be sent from, canonical (symlinks resolved).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roots {
    roots: Vec<PathBuf>,
    /// Inside a root, yet never sent: the agent's and OpenCode's own
    /// configuration, credentials and state (a project can be the home
    /// directory).
    private: Vec<PathBuf>,
}

impl Roots {
    /// Canonical forms of the candidates that exist. The filesystem root is
    /// dropped: OpenCode reports `/` as the worktree of a project outside
    /// git, and "anything on the machine" is not a project.
    pub fn new(candidates: impl IntoIterator<Item = PathBuf>) -> Roots {
        let mut roots: Vec<PathBuf> = Vec::new();
        for candidate in candidates {
            if candidate.as_os_str().is_empty() {
                continue;
            }
            let Ok(canonical) = candidate.canonicalize() else {
                continue;
            };
            if canonical.parent().is_none() || roots.contains(&canonical) {
                continue;
            }
            roots.push(canonical);
        }
        Roots {
            roots,
            private: Vec::new(),
        }
    }

    /// Paths under which nothing is sent even inside a root; those that do
    /// not exist are skipped.
    pub fn with_private(mut self, paths: impl IntoIterator<Item = PathBuf>) -> Roots {
        self.private = paths
            .into_iter()
            .filter_map(|p| p.canonicalize().ok())
            .collect();
        self
    }

    fn is_private(&self, path: &Path) -> bool {
        self.private.iter().any(|p| path.starts_with(p))
    }

    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// Whether `path` (canonical, or normalised) lies inside a root.
    pub fn contains(&self, path: &Path) -> bool {
        self.roots.iter().any(|root| path.starts_with(root))
    }

    /// `path` relative to the (first) root holding it.
    fn relative<'p>(&self, path: &'p Path) -> &'p Path {
        self.roots
            .iter()
            .find_map(|root| path.strip_prefix(root).ok())
            .unwrap_or(path)
    }

    fn describe(&self) -> String {
        self.roots
            .iter()
            .map(|r| format!("`{}`", quote(&r.display().to_string())))
            .collect::<Vec<_>>()
            .join(" or ")
    }
}

/// A file that passed every check, ready to read with [`read_checked`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Canonical path.
    pub path: PathBuf,
    /// Its file name, as it will be shown in chat.
    pub name: String,
    pub size: u64,
}

/// `path` with `.` and `..` applied lexically (no filesystem access).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Decide whether `requested` (absolute, or relative to `base`) may be sent:
/// see the module docs for the rules. Reads metadata only, never content,
/// so a FIFO cannot block and a huge sparse file costs nothing.
pub fn check_outbound(
    requested: &str,
    base: &Path,
    roots: &Roots,
    limit: u64,
) -> Result<Checked, Refusal> {
    let shown = quote(requested);
    if requested.trim().is_empty() {
        return Err(Refusal::Empty);
    }
    if requested.chars().any(char::is_control) {
        return Err(Refusal::ControlChars { path: shown });
    }
    if roots.is_empty() {
        return Err(Refusal::NoRoots);
    }
    let joined = base.join(requested);
    let canonical = match joined.canonicalize() {
        Ok(c) => c,
        Err(e) => {
            // Say nothing about whether a path outside the roots exists.
            let lexical = normalize(&joined);
            if !roots.contains(&lexical) {
                return Err(Refusal::Outside {
                    path: shown,
                    resolved: quote(&lexical.display().to_string()),
                    roots: roots.describe(),
                });
            }
            return Err(Refusal::Missing {
                path: shown,
                reason: e.kind().to_string(),
            });
        }
    };
    if !roots.contains(&canonical) {
        return Err(Refusal::Outside {
            path: shown,
            resolved: quote(&canonical.display().to_string()),
            roots: roots.describe(),
        });
    }
    let meta = std::fs::metadata(&canonical).map_err(|e| Refusal::Missing {
        path: shown.clone(),
        reason: e.kind().to_string(),
    })?;
    if let Some(kind) = special_kind(&meta) {
        return Err(if kind == "directory" {
            Refusal::Directory { path: shown }
        } else {
            Refusal::Special { path: shown, kind }
        });
    }
    if meta.len() > limit {
        return Err(Refusal::TooLarge {
            path: shown,
            size: meta.len(),
            limit,
        });
    }
    // The name shown in chat is the real one, after symlinks.
    let name = match canonical.file_name().map(|n| n.to_str()) {
        Some(Some(n)) if !n.chars().any(char::is_control) => n.to_owned(),
        _ => return Err(Refusal::ControlChars { path: shown }),
    };
    if roots.is_private(&canonical) {
        return Err(Refusal::Secret {
            path: shown,
            what: "the agent's or OpenCode's own configuration, credentials or state",
        });
    }
    if let Some(what) = secret_kind(roots.relative(&canonical)) {
        return Err(Refusal::Secret { path: shown, what });
    }
    Ok(Checked {
        path: canonical,
        name,
        size: meta.len(),
    })
}

/// What a non-regular file is, or `None` for a regular file.
fn special_kind(meta: &std::fs::Metadata) -> Option<&'static str> {
    let kind = meta.file_type();
    if kind.is_file() {
        return None;
    }
    if kind.is_dir() {
        return Some("directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return Some("named pipe (FIFO)");
        }
        if kind.is_socket() {
            return Some("socket");
        }
        if kind.is_char_device() || kind.is_block_device() {
            return Some("device");
        }
    }
    Some("special file")
}

/// Whether a path (relative to its root, so a project that itself lives
/// under such a directory still works) looks like credentials: the usual
/// key, token and environment files, and anything under the usual
/// credential directories.
fn secret_kind(path: &Path) -> Option<&'static str> {
    for part in path.components() {
        if let Component::Normal(name) = part
            && matches!(
                name.to_str(),
                Some(".ssh" | ".gnupg" | ".aws" | ".kube" | ".docker")
            )
        {
            return Some("a file from a credentials directory");
        }
    }
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    if name == ".env"
        || (name.starts_with(".env.")
            && ![".example", ".sample", ".template", ".dist"]
                .iter()
                .any(|s| name.ends_with(s)))
    {
        return Some("an environment file");
    }
    if matches!(
        name.as_str(),
        ".netrc" | ".git-credentials" | ".npmrc" | ".pypirc" | ".pgpass"
    ) {
        return Some("a credentials file");
    }
    if ["id_rsa", "id_dsa", "id_ecdsa", "id_ed25519"]
        .iter()
        .any(|k| name == *k || (name.starts_with(k) && !name.ends_with(".pub")))
    {
        return Some("a private SSH key");
    }
    if matches!(
        extension(&name).as_deref(),
        Some("pem" | "key" | "p12" | "pfx" | "jks" | "keystore")
    ) {
        return Some("a private key or certificate store");
    }
    None
}

/// Read a checked file. The file is opened without following a symlink and
/// without blocking, then checked again from the open handle (still a
/// regular file, still small enough, still inside the roots), so swapping
/// the path between the check and the read gains nothing. At most
/// `limit + 1` bytes are read.
pub fn read_checked(checked: &Checked, roots: &Roots, limit: u64) -> Result<Vec<u8>, Refusal> {
    let shown = quote(&checked.path.display().to_string());
    let missing = |e: std::io::Error| Refusal::Missing {
        path: shown.clone(),
        reason: e.kind().to_string(),
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = options.open(&checked.path).map_err(missing)?;
    let meta = file.metadata().map_err(missing)?;
    if let Some(kind) = special_kind(&meta) {
        return Err(Refusal::Special {
            path: shown.clone(),
            kind,
        });
    }
    if meta.len() > limit {
        return Err(Refusal::TooLarge {
            path: shown.clone(),
            size: meta.len(),
            limit,
        });
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let link = format!("/proc/self/fd/{}", file.as_raw_fd());
        if let Ok(real) = std::fs::read_link(link)
            && !roots.contains(&real)
        {
            return Err(Refusal::Outside {
                path: shown.clone(),
                resolved: quote(&real.display().to_string()),
                roots: roots.describe(),
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = roots;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(missing)?;
    let read = bytes.len() as u64;
    if read > limit {
        return Err(Refusal::TooLarge {
            path: shown.clone(),
            size: read,
            limit,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
