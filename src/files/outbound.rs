//! Files leaving for a session's Mattermost thread: what
//! `mattermost_send_file` sends (only after [`safety`](super::safety) has
//! approved the path), and long replies attached as a Markdown file instead
//! of a run of continuation posts.

use std::path::PathBuf;

use tracing::{info, warn};

use super::safety::{self, Refusal, Roots};
use crate::app::App;
use crate::mattermost::MattermostError;
use crate::mattermost::budget::Priority;
use crate::mattermost::connection::Connection;
use crate::render::Turn;
use crate::store::{Reply, ThreadBinding, ThreadStatus};

/// Why a file was not sent. Every message says what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("not sent: {0}")]
    Refused(#[from] Refusal),
    #[error(
        "no calling session: mattermost_send_file sends into the thread of the session that \
         calls it"
    )]
    NoSession,
    #[error("the Mattermost bridge is not running ({0}); see mattermost_status")]
    NoBridge(String),
    #[error("not connected to Mattermost: run mattermost_connect first")]
    NotConnected,
    #[error(
        "this session has no Mattermost thread here; files can be sent only into the thread \
         of a session started from Mattermost"
    )]
    NoThread,
    #[error(
        "`{0}` is not a thread of this session; leave `thread` out to use this session's thread"
    )]
    OtherThread(String),
    #[error("this session's Mattermost thread has ended; nothing was sent")]
    Ended,
    #[error("the message is {chars} characters; Mattermost takes at most {max}")]
    MessageTooLong { chars: usize, max: usize },
    #[error("the state database cannot be read: {0}")]
    Store(String),
    #[error("Mattermost did not take the file: {0}")]
    Mattermost(#[from] MattermostError),
    #[error("Mattermost accepted the post but dropped the file from it; nothing is attached")]
    NotAttached,
    #[error("reading the file failed: {0}")]
    Io(String),
}

/// What `mattermost_send_file` asked for.
#[derive(Debug, Clone, Default)]
pub struct SendRequest {
    pub path: String,
    pub message: Option<String>,
    pub thread: Option<String>,
}

/// A file that landed in a thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub name: String,
    pub size: u64,
    pub path: PathBuf,
    pub file_id: String,
    pub post_id: String,
    pub root_post_id: String,
}

/// The OpenCode project the agent serves, as the shim's handshake named it.
#[derive(Debug, Clone, Copy)]
pub struct Project<'a> {
    pub directory: &'a str,
    pub worktree: &'a str,
}

/// Send one file into the calling session's thread. Nothing is uploaded
/// unless every check passed.
pub async fn send_file(
    app: &App,
    project: &Project<'_>,
    session_id: &str,
    request: &SendRequest,
) -> Result<Sent, SendError> {
    let conn = app.connection().await.ok_or(SendError::NotConnected)?;
    let binding = target_thread(app, &conn, session_id, request.thread.as_deref()).await?;
    let message = request
        .message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty());
    if let Some(m) = message {
        let chars = m.chars().count();
        if chars > conn.info.max_post_runes {
            return Err(SendError::MessageTooLong {
                chars,
                max: conn.info.max_post_runes,
            });
        }
    }

    let (base, roots) = roots_of(app, project, session_id).await;
    let limit = app.config.max_file_size;
    let path = request.path.clone();
    let read = tokio::task::spawn_blocking(move || {
        let checked = safety::check_outbound(&path, &base, &roots, limit)?;
        let bytes = safety::read_checked(&checked, &roots, limit)?;
        Ok::<_, Refusal>((checked, bytes))
    })
    .await
    .map_err(|e| SendError::Io(e.to_string()))?;
    let (checked, bytes) = match read {
        Ok(found) => found,
        Err(refusal) => {
            info!(session = session_id, %refusal, "file refused");
            return Err(refusal.into());
        }
    };
    let size = bytes.len() as u64;
    let caption = message
        .map(str::to_owned)
        .unwrap_or_else(|| format!("📎 `{}`", checked.name.replace('`', "'")));
    let caption = app.for_channel(&binding.channel_id, caption).await;
    let (file_id, post_id) = upload_and_post(
        &conn,
        &binding.channel_id,
        &binding.root_post_id,
        &checked.name,
        bytes,
        caption,
    )
    .await?;
    info!(session = session_id, file = %checked.name, size, post = %post_id, "file sent");
    Ok(Sent {
        name: checked.name,
        size,
        path: checked.path,
        file_id,
        post_id,
        root_post_id: binding.root_post_id,
    })
}

/// Upload bytes and post them in a thread; checks that the server really
/// attached the file (it drops ids it does not accept, silently).
async fn upload_and_post(
    conn: &Connection,
    channel_id: &str,
    root_id: &str,
    name: &str,
    bytes: Vec<u8>,
    message: String,
) -> Result<(String, String), SendError> {
    let info = conn.rest.upload_file(channel_id, name, bytes).await?;
    let post = crate::sessions::reply_with_files(
        conn,
        channel_id,
        root_id,
        message,
        vec![info.id.clone()],
        Priority::Normal,
    )
    .await?;
    if !post.file_ids.contains(&info.id) {
        return Err(SendError::NotAttached);
    }
    Ok((info.id, post.id))
}

/// Where relative paths start and which directories files may come from:
/// the session's directory, the project's worktree and the session's
/// temporary directory (where its inbound files are).
async fn roots_of(app: &App, project: &Project<'_>, session_id: &str) -> (PathBuf, Roots) {
    let session_dir = match app.opencode.get_session(session_id).await {
        Ok(s) if !s.directory.is_empty() => s.directory,
        Ok(_) => project.directory.to_owned(),
        Err(e) => {
            warn!(error = %e, "cannot read the session's directory; using the project's");
            project.directory.to_owned()
        }
    };
    let temp = super::session_dir(&super::temp_root(&app.config), session_id);
    let roots = Roots::new([
        PathBuf::from(&session_dir),
        PathBuf::from(project.worktree),
        temp,
    ])
    .with_private(super::private_paths(&app.config));
    (PathBuf::from(session_dir), roots)
}

/// The thread a file goes to: the one named (it must belong to this
/// session), else the thread the session's running turn replies in (its
/// oldest unfinished reply: later ones are queued behind it), else
/// its oldest live thread, preferring a thread rooted at one of our own
/// posts (in a DM the person's first post is bound too, as an alias, but
/// the thread hangs under the session card).
async fn target_thread(
    ctx: &App,
    conn: &Connection,
    session_id: &str,
    named: Option<&str>,
) -> Result<ThreadBinding, SendError> {
    let bindings: Vec<ThreadBinding> = ctx
        .store
        .threads_of_session(session_id)
        .await
        .map_err(|e| SendError::Store(e.to_string()))?
        .into_iter()
        .filter(|b| b.instance_id == ctx.instance.id)
        .collect();
    if let Some(root) = named.map(str::trim).filter(|r| !r.is_empty()) {
        let found = bindings
            .into_iter()
            .find(|b| b.root_post_id == root)
            .ok_or_else(|| SendError::OtherThread(safety::quote(root)))?;
        return match found.status {
            ThreadStatus::Active => Ok(found),
            ThreadStatus::Ended => Err(SendError::Ended),
        };
    }
    let live: Vec<&ThreadBinding> = bindings
        .iter()
        .filter(|b| b.status == ThreadStatus::Active)
        .collect();
    if live.is_empty() {
        return Err(if bindings.is_empty() {
            SendError::NoThread
        } else {
            SendError::Ended
        });
    }
    if let Ok(replies) = ctx.store.streaming_replies(&ctx.instance.id).await
        && let Some(reply) = replies.iter().find(|r| r.session_id == session_id)
        && let Some(b) = live.iter().find(|b| b.root_post_id == reply.root_post_id)
    {
        return Ok((*b).clone());
    }
    let mut fallback: Option<&ThreadBinding> = None;
    for b in &live {
        if let Ok(root) = conn.rest.post(&b.root_post_id).await
            && root.root_id.is_empty()
        {
            if root.user_id == conn.info.bot.id {
                return Ok((*b).clone());
            }
            fallback = fallback.or(Some(b));
        }
    }
    Ok(fallback.unwrap_or(live[0]).clone())
}

/// A finished reply longer than `OPENCODE_MM_ATTACH_OVER` characters goes
/// into the thread as `reply-<id>.md`, and the turn then renders only its
/// head with a pointer to the file. The file post is made before the final
/// edit, so the shortened posts never point at a file that is not there; if
/// anything fails the reply is split across posts as usual.
pub(crate) async fn attach_long_reply(ctx: &App, turn: &mut Turn, reply: &Reply) {
    let threshold = ctx.config.attach_over;
    if threshold == 0 || turn.outcome().is_none() {
        return;
    }
    let body = turn.response_text();
    let chars = body.chars().count();
    if (chars as u64) <= threshold {
        return;
    }
    let Some(conn) = ctx.link.current().await else {
        return;
    };
    let name = reply_file_name(&reply.user_message_id);
    let message = format!(
        "📎 Full reply ({} characters): `{name}`",
        crate::render::layout::group_digits(chars)
    );
    match upload_and_post(
        &conn,
        &reply.channel_id,
        &reply.root_post_id,
        &name,
        body.into_bytes(),
        message,
    )
    .await
    {
        Ok((_, post_id)) => {
            info!(post = %post_id, chars, "long reply attached as a file");
            turn.attach_reply(name);
        }
        Err(e) => warn!(error = %e, "cannot attach the long reply; posting it in parts"),
    }
}

/// `reply-<last 8 characters of the message id>.md`: short, and the same
/// for the same turn.
fn reply_file_name(user_message_id: &str) -> String {
    let alnum: Vec<char> = user_message_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let tail: String = alnum[alnum.len().saturating_sub(8)..].iter().collect();
    if tail.is_empty() {
        "reply.md".to_owned()
    } else {
        format!("reply-{tail}.md")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_files_are_named_after_their_turn() {
        assert_eq!(
            reply_file_name("msg_0194a1b2c3d4AbCdEfGhIjKlMn"),
            "reply-GhIjKlMn.md"
        );
        assert_eq!(reply_file_name("x/../y"), "reply-xy.md");
        assert_eq!(reply_file_name(""), "reply.md");
    }

    #[test]
    fn refusals_read_as_sentences_for_the_model() {
        let e = SendError::from(Refusal::Directory { path: "src".into() });
        assert_eq!(
            e.to_string(),
            "not sent: `src` is a directory; send one file (archive the directory first if \
             needed)"
        );
    }
}
