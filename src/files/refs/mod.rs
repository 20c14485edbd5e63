//! `!!path` references: a prompt names project files by fuzzy match and
//! they go to OpenCode with it.
//!
//! - [`token`]: finding the references in a message (code is never read);
//! - [`find`]: which file each names, under `mattermost_send_file`'s rules;
//! - [`gitignore`]: which files the walk leaves out, as git would;
//! - [`choice`]: the numbered list and the author's answer.
//!
//! Every reference must resolve before anything runs: a clear best match
//! is sent as is; when several files match, the bot lists them in the
//! session's thread and the prompt waits for its author's numbers (`1,3`,
//! or `0` for none); a reference that matches nothing, or only files that
//! may not be sent, stops the prompt with the reason, since an answer about
//! a file the model never saw is worse than none.
//!
//! Files are read when the prompt is sent, with the same open-then-recheck
//! as `mattermost_send_file`, and given to OpenCode inline (`data:` URLs):
//! text as text the model reads, images and PDFs as what they are, other
//! binaries by path only. Nothing is re-read from the path by OpenCode, so
//! a file swapped for a symlink after the check gains nothing.

pub mod choice;
pub mod find;
pub mod gitignore;
pub mod token;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tracing::{debug, info, warn};

use self::choice::{Answer, Listed};
use self::find::{Found, Project};
use super::safety::{self, Roots};
use crate::app::App;
use crate::mattermost::budget::Priority;
use crate::mattermost::connection::Connection;
use crate::mattermost::types::Post;
use crate::opencode::FilePart;
use crate::sessions::turn::start_turn;
use crate::sessions::{Attachments, Engine, Started, reply_in, say};
use crate::store::ThreadBinding;

/// Most references in one message: a prompt names a handful of files; more
/// is pasted text, and refused whole rather than cut.
pub const MAX_REFS: usize = 10;
/// How long a list waits for its numbers: time to read it and come back;
/// later, a number typed in the thread more likely answers something else.
pub const LIST_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 60);
/// How long chosen files stay known for their post, should its prompt be
/// sent again.
const READY_TTL: std::time::Duration = std::time::Duration::from_secs(60 * 60);
/// Bytes looked at to tell text from binary.
const SNIFF: usize = 8 * 1024;

/// The files a prompt's references resolved to, read when it is sent.
#[derive(Debug, Clone)]
pub struct Ready {
    project: Project,
    /// Each reference and its files (none: the author chose `0`).
    chosen: Vec<(String, Vec<String>)>,
    at: std::time::Instant,
}

/// A prompt waiting for its author to choose among listed files.
#[derive(Debug, Clone)]
pub struct Pending {
    post: Post,
    sender: String,
    text: String,
    ready: Ready,
    listed: Vec<Listed>,
    at: std::time::Instant,
}

/// The `!!` state of a running agent. Kept in memory: after a restart a
/// list is forgotten and a number typed in its thread is an ordinary
/// message (the prompt is sent again to ask again).
#[derive(Debug, Default)]
pub struct Refs {
    /// By session thread (its root post): one list at a time per thread.
    pending: Mutex<HashMap<String, Pending>>,
    /// By prompt post id.
    ready: Mutex<HashMap<String, Ready>>,
}

impl Refs {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        let mut map = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.retain(|_, p| p.at.elapsed() < LIST_TTL);
        map
    }

    /// Whether `user_id` owes this thread an answer to a numbered list:
    /// their bare numbers there are picks, not anything else.
    pub fn list_waits_for(&self, root_post_id: &str, user_id: &str) -> bool {
        self.pending()
            .get(root_post_id)
            .is_some_and(|p| p.post.user_id == user_id)
    }

    fn ready(&self) -> std::sync::MutexGuard<'_, HashMap<String, Ready>> {
        let mut map = self
            .ready
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.retain(|_, r| r.at.elapsed() < READY_TTL);
        map
    }
}

/// What a prompt's references allow.
#[derive(Debug)]
pub enum Gate {
    /// No reference, or every one clear (kept for [`attach`]): run it.
    Run,
    /// The author was told why nothing runs.
    Stopped,
    /// Files must be chosen first: [`ask`] in the session's thread.
    Ask(Box<Pending>),
}

/// Resolve a prompt's references. `binding` is its session's thread, when
/// it has one yet (a new session searches the agent's project directory).
pub async fn gate(
    refs: &Refs,
    app: &App,
    conn: &Connection,
    post: &Post,
    sender: &str,
    text: &str,
    binding: Option<&ThreadBinding>,
) -> Gate {
    let tokens = token::extract(text);
    if tokens.is_empty() {
        return Gate::Run;
    }
    if tokens.len() > MAX_REFS {
        say(
            conn,
            post,
            &format!(
                ":no_entry: This message has {} `!!` file references; at most {MAX_REFS} are \
                 accepted. Nothing was sent to OpenCode. (Inside backticks, `!!` is plain text.)",
                tokens.len()
            ),
        )
        .await;
        return Gate::Stopped;
    }
    let Some(project) = project_of(app, binding).await else {
        say(
            conn,
            post,
            &format!(":no_entry: {}", safety::Refusal::NoRoots),
        )
        .await;
        return Gate::Stopped;
    };
    let resolved = {
        let (project, tokens) = (project.clone(), tokens.clone());
        tokio::task::spawn_blocking(move || {
            let files = find::walk(&project.base);
            let found: Vec<Found> = tokens
                .iter()
                .map(|t| find::resolve(t, &files, &project))
                .collect();
            (found, files.truncated)
        })
        .await
    };
    let Ok((found, truncated)) = resolved else {
        say(
            conn,
            post,
            ":x: The project could not be searched for `!!` references.",
        )
        .await;
        return Gate::Stopped;
    };
    if truncated {
        info!(
            max = find::MAX_WALKED,
            "project larger than the `!!` walk; later files not searched"
        );
    }
    let problems = choice::problems(&tokens, &found, truncated);
    if !problems.is_empty() {
        info!(
            references = tokens.len(),
            "`!!` references unresolved; prompt not run"
        );
        say(conn, post, &problems).await;
        return Gate::Stopped;
    }
    let mut ready = Ready {
        project,
        chosen: Vec::new(),
        at: std::time::Instant::now(),
    };
    let listed = choice::listing(&tokens, &found, &mut ready.chosen);
    if listed.is_empty() {
        debug!(references = tokens.len(), "`!!` references resolved");
        refs.ready().insert(post.id.clone(), ready);
        return Gate::Run;
    }
    Gate::Ask(Box::new(Pending {
        post: post.clone(),
        sender: sender.to_owned(),
        text: text.to_owned(),
        ready,
        listed,
        at: std::time::Instant::now(),
    }))
}

/// Post the list in the session's thread and wait for the author.
pub async fn ask(
    refs: &Refs,
    app: &App,
    conn: &Connection,
    binding: &ThreadBinding,
    pending: Pending,
) {
    // Outside a DM only a post that mentions the bot reaches it.
    let mention = app
        .is_shared_channel(&binding.channel_id)
        .await
        .then(|| conn.info.bot.username.clone());
    let author = conn
        .rest
        .user(&pending.post.user_id)
        .await
        .map(|u| u.username)
        .unwrap_or_else(|_| pending.sender.clone());
    // One lock: a list made meanwhile by a new session's task is either
    // replaced and said so, or replaces this one.
    let message = {
        let mut lists = refs.pending();
        let replaced = lists.contains_key(&binding.root_post_id);
        let message = choice::list_text(&pending.listed, &author, replaced, mention.as_deref());
        lists.insert(binding.root_post_id.clone(), pending);
        message
    };
    if let Err(e) = reply_in(
        conn,
        &binding.channel_id,
        &binding.root_post_id,
        message,
        Priority::Urgent,
    )
    .await
    {
        warn!(error = %e, "cannot post the `!!` list");
        refs.pending().remove(&binding.root_post_id);
    }
}

/// A reply in `binding`'s thread that may answer its list: true when it
/// did (the prompt now runs) or was a wrong answer (told so). Only the
/// prompt's author answers; anyone else's message is ordinary.
pub async fn answer(
    refs: &Refs,
    engine: &Arc<Engine>,
    conn: &Connection,
    binding: &ThreadBinding,
    post: &Post,
    text: &str,
) -> bool {
    let count = match refs.pending().get(&binding.root_post_id) {
        Some(p) if p.post.user_id == post.user_id => p.listed.len(),
        _ => return false,
    };
    let picks = match choice::parse_answer(text, count) {
        Answer::NotAnAnswer => return false,
        Answer::Invalid(why) => {
            say(conn, post, &why).await;
            return true;
        }
        Answer::Picks(picks) => picks,
    };
    let Some(mut pending) = refs.pending().remove(&binding.root_post_id) else {
        return false;
    };
    choice::apply(&pending.listed, &picks, &mut pending.ready.chosen);
    pending.ready.at = std::time::Instant::now();
    info!(picked = picks.len(), "`!!` list answered; the prompt runs");
    refs.ready().insert(pending.post.id.clone(), pending.ready);
    start_turn(
        engine,
        binding,
        &pending.post,
        &pending.sender,
        &pending.text,
        None,
        Started::follow_up(std::time::Instant::now()),
    )
    .await;
    true
}

/// Add a prompt's referenced files to its attachments: read now, checked
/// again from the open file; anything refused by then is named in the note.
pub async fn attach(refs: &Refs, post_id: &str, into: &mut Attachments) {
    let Some(ready) = refs.ready().get(post_id).cloned() else {
        return;
    };
    let built = tokio::task::spawn_blocking(move || build(&ready)).await;
    match built {
        Ok((parts, note)) => {
            into.parts.extend(parts);
            into.note.push_str(&note);
        }
        Err(e) => warn!(error = %e, "cannot read the `!!` files"),
    }
}

/// The parts and the prompt note for chosen files (blocking).
fn build(ready: &Ready) -> (Vec<FilePart>, String) {
    let project = &ready.project;
    let mut parts = Vec::new();
    let mut note = String::from("\n\n[Referenced files]");
    for (reference, files) in &ready.chosen {
        let shown = safety::quote(reference);
        if files.is_empty() {
            note.push_str(&format!("\n- !!{shown}: the person chose to send no file"));
        }
        for file in files {
            let read = safety::check_outbound(file, &project.base, &project.roots, project.limit)
                .and_then(|c| {
                    safety::read_checked(&c, &project.roots, project.limit).map(|b| (c, b))
                });
            let (checked, bytes) = match read {
                Ok(found) => found,
                Err(refusal) => {
                    note.push_str(&format!("\n- !!{shown}: not sent: {refusal}"));
                    continue;
                }
            };
            let path = checked.path.display().to_string();
            let mime = safety::mime_for(&checked.name);
            let (mime, how) = if safety::model_can_see(mime) {
                (mime, "given to you as a file part")
            } else if !bytes[..bytes.len().min(SNIFF)].contains(&0) {
                ("text/plain", "its text follows this message")
            } else {
                note.push_str(&format!(
                    "\n- !!{shown} → {path} ({}, binary: read it from the path if needed)",
                    safety::size_text(checked.size)
                ));
                continue;
            };
            note.push_str(&format!(
                "\n- !!{shown} → {path} ({}, {how})",
                safety::size_text(checked.size)
            ));
            parts.push(FilePart {
                mime: mime.to_owned(),
                url: format!(
                    "data:{mime};base64,{}",
                    base64::engine::general_purpose::STANDARD.encode(&bytes)
                ),
                filename: path,
            });
        }
    }
    (parts, note)
}

/// Where a prompt's references are looked for: its session's directory,
/// else the project directory this agent serves.
async fn project_of(app: &App, binding: Option<&ThreadBinding>) -> Option<Project> {
    let mut directory = app.instance.directory.clone();
    if let Some(b) = binding {
        match app.opencode().get_session(&b.session_id).await {
            Ok(s) if !s.directory.is_empty() => directory = s.directory,
            Ok(_) => {}
            Err(e) => debug!(error = %e, "no session directory; using the project's"),
        }
    }
    let roots =
        Roots::new([PathBuf::from(&directory)]).with_private(super::private_paths(&app.config));
    if roots.is_empty() {
        return None;
    }
    let base = PathBuf::from(&directory).canonicalize().ok()?;
    Some(Project {
        base,
        roots,
        limit: app.config.max_file_size,
    })
}

#[cfg(test)]
mod tests;
