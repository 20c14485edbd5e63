//! Files attached to a prompt in chat: checked (extension, size), downloaded
//! into the session's own temporary directory under sanitised names, and
//! given to OpenCode. Images and PDFs become file parts the model sees;
//! every file is also named by path in the prompt, so the model can open,
//! edit or send it back. Refused files get a clear reply in the thread and
//! the rest of the prompt still runs.

use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use super::safety::{self, Refusal};
use crate::app::App;
use crate::config::Config;
use crate::mattermost::budget::Priority;
use crate::mattermost::connection::Connection;
use crate::mattermost::rest::NewPost;
use crate::mattermost::types::Post;
use crate::opencode::FilePart;
use crate::private_fs::{Existing, private_dir};
use crate::store::ThreadBinding;

/// Mattermost attaches at most about ten files to a post; more ids than
/// this are not from a real client and are ignored.
const MAX_FILES: usize = 10;

/// One attachment, saved or refused.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Saved {
        name: String,
        path: PathBuf,
        mime: &'static str,
        size: u64,
    },
    Refused {
        why: String,
    },
}

/// What a post's attachments became.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attached {
    /// Shown to the model with the prompt (images and PDFs).
    pub parts: Vec<FilePart>,
    files: Vec<Outcome>,
}

impl Attached {
    /// What the engine sends with the prompt.
    pub fn into_attachments(self) -> crate::sessions::Attachments {
        crate::sessions::Attachments {
            note: self.prompt_text(String::new()),
            parts: self.parts,
        }
    }

    /// The prompt text with a block naming every attachment: where it was
    /// saved, or why it was not received (so the model can tell the user).
    pub fn prompt_text(&self, text: String) -> String {
        if self.files.is_empty() {
            return text;
        }
        let mut out = text;
        out.push_str("\n\n[Attached files]");
        for file in &self.files {
            match file {
                Outcome::Saved {
                    name,
                    path,
                    mime,
                    size,
                } => {
                    let shown = if safety::model_can_see(mime) {
                        ", also given to you as a file part"
                    } else {
                        ""
                    };
                    out.push_str(&format!(
                        "\n- {} ({mime}, {}{shown}): {}",
                        safety::quote(name),
                        safety::size_text(*size),
                        path.display()
                    ));
                }
                Outcome::Refused { why } => {
                    out.push_str(&format!("\n- not received: {why}"));
                }
            }
        }
        out
    }

    /// Why files were refused, one sentence each.
    fn refusals(&self) -> Vec<&str> {
        self.files
            .iter()
            .filter_map(|f| match f {
                Outcome::Refused { why } => Some(why.as_str()),
                Outcome::Saved { .. } => None,
            })
            .collect()
    }
}

/// The reply posted in the thread when attachments were refused.
fn refusal_notice(reasons: &[&str]) -> String {
    let mut out = String::from(":warning: **Not every attachment was received**");
    for why in reasons {
        out.push_str("\n- ");
        out.push_str(why);
    }
    out.push_str("\n_The rest of your message was sent to OpenCode._");
    out
}

/// Download a post's attachments for `binding`'s session; see the module
/// docs. Never fails: what cannot be fetched is reported in the thread and
/// in the prompt.
pub async fn prepare(ctx: &App, binding: &ThreadBinding, post: &Post) -> Attached {
    if post.file_ids.is_empty() {
        return Attached::default();
    }
    let config = &ctx.config;
    let Some(conn) = ctx.link.current().await else {
        return Attached {
            parts: Vec::new(),
            files: vec![Outcome::Refused {
                why: "the attachments could not be fetched: not connected to Mattermost".into(),
            }],
        };
    };
    let dir = super::session_dir(&super::temp_root(config), &binding.session_id);
    let mut attached = Attached::default();
    if post.file_ids.len() > MAX_FILES {
        debug!(
            count = post.file_ids.len(),
            "more file ids than a post can carry"
        );
    }
    for id in post.file_ids.iter().take(MAX_FILES) {
        let outcome = fetch(&conn, config, &dir, id).await;
        if let Outcome::Saved {
            name, path, mime, ..
        } = &outcome
            && safety::model_can_see(mime)
        {
            match url::Url::from_file_path(path) {
                Ok(url) => attached.parts.push(FilePart {
                    mime: (*mime).to_owned(),
                    url: url.to_string(),
                    filename: name.clone(),
                }),
                Err(()) => warn!(path = %path.display(), "no file URL for a saved attachment"),
            }
        }
        attached.files.push(outcome);
    }
    let refusals = attached.refusals();
    if !refusals.is_empty() {
        let notice = NewPost {
            channel_id: binding.channel_id.clone(),
            message: refusal_notice(&refusals),
            root_id: binding.root_post_id.clone(),
            ..NewPost::default()
        };
        if let Err(e) = conn
            .rest
            .create_post(&conn.info.bot.id, &notice, Priority::Urgent)
            .await
        {
            warn!(error = %e, "cannot tell the user which attachments were refused");
        }
    }
    attached
}

/// Check, download and save one attachment.
async fn fetch(conn: &Connection, config: &Config, dir: &Path, file_id: &str) -> Outcome {
    let refused = |why: String| Outcome::Refused { why };
    let info = match conn.rest.file_info(file_id).await {
        Ok(info) => info,
        Err(e) => {
            return refused(format!(
                "attachment `{}`: Mattermost would not describe it ({e})",
                safety::quote(file_id)
            ));
        }
    };
    let name = info.name.clone();
    if let Err(e) = safety::check_extension(&name, &config.allowed_extensions) {
        return refused(e.to_string());
    }
    let size = u64::try_from(info.size).unwrap_or(0);
    if size > config.max_file_size {
        return refused(
            Refusal::TooLarge {
                path: safety::quote(&name),
                size,
                limit: config.max_file_size,
            }
            .to_string(),
        );
    }
    let bytes = match conn.rest.download_file(file_id, config.max_file_size).await {
        Ok(b) => b,
        Err(e) => {
            return refused(format!(
                "`{}` could not be downloaded: {e}",
                safety::quote(&name)
            ));
        }
    };
    if bytes.len() as u64 > config.max_file_size {
        return refused(
            Refusal::TooLarge {
                path: safety::quote(&name),
                size: bytes.len() as u64,
                limit: config.max_file_size,
            }
            .to_string(),
        );
    }
    let clean = safety::sanitize_name(&name);
    // One directory per file id: names may repeat, ids never do, and a
    // re-sent prompt finds the same path.
    let file_dir = dir.join(safety::sanitize_name(file_id));
    let path = file_dir.join(&clean);
    let size = bytes.len() as u64;
    let (session_dir, target) = (dir.to_owned(), path.clone());
    let saved =
        tokio::task::spawn_blocking(move || save(&session_dir, &file_dir, &target, &bytes)).await;
    match saved {
        Ok(Ok(())) => Outcome::Saved {
            mime: safety::mime_for(&clean),
            name,
            path,
            size,
        },
        Ok(Err(e)) => {
            warn!(error = %e, path = %path.display(), "cannot save an attachment");
            refused(format!(
                "`{}` could not be saved on the OpenCode machine ({}); check \
                 OPENCODE_MM_TEMP_DIR",
                safety::quote(&name),
                e.kind()
            ))
        }
        Err(e) => refused(format!(
            "`{}` could not be saved: {e}",
            safety::quote(&name)
        )),
    }
}

/// Write `bytes` to `path` through a temporary name, in directories only
/// this user can read: the temp root must already be private if it exists
/// (it may be shared, like `/tmp`), the session's folders are ours. A
/// partial file never survives a failed write.
fn save(session_dir: &Path, file_dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(root) = session_dir.parent() {
        private_dir(root, Existing::Refuse)?;
    }
    private_dir(session_dir, Existing::Tighten)?;
    private_dir(file_dir, Existing::Tighten)?;
    let partial = path.with_extension("partial-download");
    let written = std::fs::write(&partial, bytes).and_then(|()| std::fs::rename(&partial, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The final rename fails (a folder holds the name): the temporary
    /// `.partial-download` is removed, not left beside it.
    #[test]
    fn a_failed_save_leaves_no_partial_download() {
        let root = tempfile::tempdir().unwrap();
        let temp_root = root.path().join("root");
        let session_dir = temp_root.join("ses_1");
        let file_dir = session_dir.join("in");
        let target = file_dir.join("report.txt");
        std::fs::create_dir_all(target.join("occupied")).unwrap();
        private_dir(&temp_root, Existing::Tighten).unwrap();
        let saved = save(&session_dir, &file_dir, &target, b"payload");
        assert!(saved.is_err());
        assert!(!target.with_extension("partial-download").exists());
        assert!(target.is_dir(), "the folder in the way is untouched");
    }

    #[test]
    fn the_prompt_names_every_file_and_every_refusal() {
        let attached = Attached {
            parts: Vec::new(),
            files: vec![
                Outcome::Saved {
                    name: "notes.txt".into(),
                    path: PathBuf::from("/tmp/ocmm/ses_1/f1/notes.txt"),
                    mime: "text/plain",
                    size: 12,
                },
                Outcome::Saved {
                    name: "shot.png".into(),
                    path: PathBuf::from("/tmp/ocmm/ses_1/f2/shot.png"),
                    mime: "image/png",
                    size: 2048,
                },
                Outcome::Refused {
                    why: "`big.bin` is 20 MiB (20971520 bytes), above the 10 MiB limit \
                          (OPENCODE_MM_MAX_FILE_SIZE)"
                        .into(),
                },
            ],
        };
        assert_eq!(
            attached.prompt_text("hello".into()),
            "hello\n\n[Attached files]\n\
             - notes.txt (text/plain, 12 bytes): /tmp/ocmm/ses_1/f1/notes.txt\n\
             - shot.png (image/png, 2 KiB, also given to you as a file part): \
             /tmp/ocmm/ses_1/f2/shot.png\n\
             - not received: `big.bin` is 20 MiB (20971520 bytes), above the 10 MiB limit \
             (OPENCODE_MM_MAX_FILE_SIZE)"
        );
        assert_eq!(Attached::default().prompt_text("hi".into()), "hi");
        let notice = refusal_notice(&attached.refusals());
        assert!(notice.starts_with(":warning:"), "{notice}");
        assert!(notice.contains("`big.bin` is 20 MiB"), "{notice}");
        assert!(notice.contains("rest of your message was sent"), "{notice}");
    }

    #[test]
    fn saving_is_private_atomic_and_repeatable() {
        let tmp = tempfile::tempdir().unwrap();
        let session = tmp.path().join("root/ses_1");
        let file_dir = session.join("f1");
        let path = file_dir.join("a.txt");
        save(&session, &file_dir, &path, b"one").unwrap();
        save(&session, &file_dir, &path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(&file_dir).unwrap().count(), 1);
        use std::os::unix::fs::PermissionsExt;
        for dir in [&session, &file_dir] {
            let mode = std::fs::metadata(dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
        }
        // A symlink planted where the session directory goes is not followed.
        let planted = tmp.path().join("root/ses_2");
        std::os::unix::fs::symlink(tmp.path(), &planted).unwrap();
        assert!(save(&planted, &planted.join("f"), &planted.join("f/x"), b"x").is_err());
    }
}
