//! Guest approval: someone who is neither owner nor teammate @mentions the
//! bot in a bound thread. Their post is held (nothing of it reaches
//! OpenCode: text, files, `!!` references), and a request asks the owner
//! to answer `1` (this message), `2` (this person, for the thread), `3`
//! (everyone in the thread) or `deny`. Only the owner or a teammate may
//! answer. Requests live in the store with their deadline, so an approval
//! after a restart still runs the held post, and an expiry is not lost.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::app::App;
use crate::mattermost::budget::Priority;
use crate::mattermost::connection::Connection;
use crate::mattermost::types::Post;
use crate::sessions::turn::start_turn;
use crate::sessions::{Engine, Started, reply_in, say, text};
use crate::store::{
    ClaimState, Grantee, GuestRequest, GuestState, Millis, ThreadBinding, ThreadGrant,
};

/// How often pending requests are checked for expiry.
const EXPIRY_CHECK: Duration = Duration::from_secs(1);

/// An answer to a guest request, as typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Once,
    User,
    Everyone,
    Deny,
}

impl Answer {
    /// `1`, `2`, `3`, `deny` (also `approve N`, `0` and `no`, as the old
    /// plugin took them). Anything else is not an answer, so an ordinary
    /// sentence from the owner stays a prompt.
    /// `1`, `2`, `3`, `deny` (or `approve 1` …). With `bare_numbers` false a
    /// number counts only after `approve`, and `0` not at all: the same
    /// person owes the thread another numbered answer (a `!!` list, a
    /// question), and a guess there could let a guest in.
    pub fn parse(text: &str, bare_numbers: bool) -> Option<Answer> {
        let t = text.trim().to_ascii_lowercase();
        let (t, explicit) = match t.strip_prefix("approve ") {
            Some(rest) => (rest.trim(), true),
            None => (t.as_str(), false),
        };
        if !explicit && !bare_numbers && !matches!(t, "deny" | "no") {
            return None;
        }
        Some(match t {
            "1" => Answer::Once,
            "2" => Answer::User,
            "3" => Answer::Everyone,
            "0" | "deny" | "no" => Answer::Deny,
            _ => return None,
        })
    }

    fn state(self) -> GuestState {
        match self {
            Answer::Once => GuestState::Once,
            Answer::User => GuestState::User,
            Answer::Everyone => GuestState::Everyone,
            Answer::Deny => GuestState::Denied,
        }
    }
}

fn now(app: &App) -> Millis {
    app.clock.now().timestamp_millis()
}

/// Whether a guest request of this instance waits in the thread.
pub async fn waiting_in(app: &App, root: &str) -> bool {
    match app.store.pending_guest_requests(&app.instance.id).await {
        Ok(list) => list.iter().any(|r| r.root_post_id == root),
        Err(e) => {
            warn!(error = %e, "cannot read guest requests");
            false
        }
    }
}

/// How long, in words, for the request post.
pub fn describe(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// The request post.
/// Whether a bot post is a waiting request, which quotes the held message.
pub fn is_pending_request(message: &str) -> bool {
    message.starts_with(REQUEST_HEAD)
}

const REQUEST_HEAD: &str = ":bell: **Guest access request**";

pub fn request_text(owner: &str, guest: &str, message: &str, timeout: Duration) -> String {
    let mention = if owner.is_empty() {
        String::new()
    } else {
        format!(" @{owner}")
    };
    format!(
        "{REQUEST_HEAD}{mention}\n@{guest} wants to send a prompt to this \
         session:\n> {}\n\nThe owner or a teammate replies in this thread:\n\
         - `1`: this message only\n- `2`: @{guest}, for this thread\n\
         - `3`: everyone in this thread\n- `deny`\n\
         (`approve 1` and so on while a file list or a question here waits for your numbers.)\n\n\
         _Expires in {}._",
        text::preview(message, 200),
        describe(timeout)
    )
}

/// The request post once decided.
pub fn decided_text(guest: &str, state: GuestState, by: &str, timeout: Duration) -> String {
    match state {
        GuestState::Once => format!(
            ":white_check_mark: **Guest access request approved** by @{by}: @{guest}'s message \
             (this message only)."
        ),
        GuestState::User => format!(
            ":white_check_mark: **Guest access request approved** by @{by}: @{guest}, for this \
             thread."
        ),
        GuestState::Everyone => format!(
            ":white_check_mark: **Guest access request approved** by @{by}: everyone in this \
             thread."
        ),
        GuestState::Denied => {
            format!(
                ":no_entry: **Guest access request denied** by @{by}: @{guest}'s message was not sent."
            )
        }
        GuestState::Expired | GuestState::Pending => format!(
            ":hourglass: **Guest access request expired**: nobody answered within {}; \
             @{guest}'s message was not sent.",
            describe(timeout)
        ),
    }
}

/// Hold a guest's post and ask for approval (once per post: a post seen
/// again after a restart keeps its request).
pub async fn hold(
    ctx: &Arc<Engine>,
    conn: &Connection,
    post: &Post,
    sender_name: &str,
    binding: &ThreadBinding,
) {
    let app = &ctx.app;
    match app.store.guest_request(&post.id).await {
        Ok(None) => {}
        Ok(Some(_)) => return,
        Err(e) => {
            warn!(error = %e, "cannot read guest requests; the post is not run");
            return;
        }
    }
    let guest = if sender_name.is_empty() {
        conn.rest
            .user(&post.user_id)
            .await
            .map(|u| u.username)
            .unwrap_or_else(|_| post.user_id.clone())
    } else {
        sender_name.trim_start_matches('@').to_owned()
    };
    let owner = super::owner_name(app, conn).await.unwrap_or_default();
    let timeout = app.config.guest_approval_timeout;
    let message = text::strip_mention(&post.message, &conn.info.bot.username);
    let body = request_text(&owner, &guest, &message, timeout);
    let created = reply_in(
        conn,
        &post.channel_id,
        &binding.root_post_id,
        body,
        Priority::Urgent,
    )
    .await;
    let request_post = match created {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "cannot post the guest request; the post is not run");
            return;
        }
    };
    let at = now(app);
    let request = GuestRequest {
        post_id: post.id.clone(),
        request_post_id: request_post.id,
        root_post_id: binding.root_post_id.clone(),
        channel_id: post.channel_id.clone(),
        instance_id: app.instance.id.clone(),
        guest_user_id: post.user_id.clone(),
        guest_username: guest,
        created_at: at,
        expires_at: at.saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX)),
        state: GuestState::Pending,
        decided_by: None,
        decided_at: None,
    };
    match app.store.add_guest_request(&request).await {
        Ok(()) => info!(guest = %request.guest_user_id, "guest post held for approval"),
        Err(e) => warn!(error = %e, "cannot record the guest request"),
    }
}

/// Decide the thread's oldest waiting request with `answer`, from `post`'s
/// author (already known to be the owner or a teammate).
pub async fn answer(
    ctx: &Arc<Engine>,
    conn: &Connection,
    post: &Post,
    binding: &ThreadBinding,
    answer: Answer,
) {
    let app = &ctx.app;
    expire_overdue(app, conn).await;
    let pending = match app.store.pending_guest_requests(&app.instance.id).await {
        Ok(list) => list,
        Err(e) => {
            warn!(error = %e, "cannot read guest requests");
            return;
        }
    };
    let Some(request) = pending
        .into_iter()
        .find(|r| r.root_post_id == binding.root_post_id)
    else {
        say(
            conn,
            post,
            ":hourglass: No guest request waits here any more (it expired or was answered).",
        )
        .await;
        return;
    };
    let state = answer.state();
    let at = now(app);
    match app
        .store
        .decide_guest_request(&request.post_id, state, Some(&post.user_id), at)
        .await
    {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            warn!(error = %e, "cannot record the answer to a guest request");
            return;
        }
    }
    let by = conn
        .rest
        .user(&post.user_id)
        .await
        .map(|u| u.username)
        .unwrap_or_else(|_| post.user_id.clone());
    info!(guest = %request.guest_user_id, by = %post.user_id, state = state.as_str(), "guest request decided");
    let grantee = match state {
        GuestState::User => Some(Grantee::User(request.guest_user_id.clone())),
        GuestState::Everyone => Some(Grantee::Everyone),
        _ => None,
    };
    if let Some(grantee) = grantee {
        let grant = ThreadGrant {
            root_post_id: request.root_post_id.clone(),
            grantee,
            granted_by: post.user_id.clone(),
            granted_at: at,
        };
        if let Err(e) = app.store.grant_thread(&grant).await {
            warn!(error = %e, "cannot record the thread approval");
        }
    }
    let edited = decided_text(
        &request.guest_username,
        state,
        &by,
        app.config.guest_approval_timeout,
    );
    if let Err(e) = conn
        .rest
        .patch_post(&request.request_post_id, &edited, None, Priority::Urgent)
        .await
    {
        warn!(error = %e, "cannot mark the guest request decided");
    }
    if state.approves() {
        run_held(ctx, conn, binding, &request).await;
    }
}

/// Run an approved guest's held post as a prompt.
async fn run_held(
    ctx: &Arc<Engine>,
    conn: &Connection,
    binding: &ThreadBinding,
    request: &GuestRequest,
) {
    let held = match conn.rest.post(&request.post_id).await {
        Ok(p) if p.delete_at == 0 => p,
        Ok(_) => {
            info!("the approved guest post was deleted meanwhile; not run");
            return;
        }
        Err(e) => {
            warn!(error = %e, "cannot read the approved guest post");
            ctx.app
                .set_claim_state(&request.post_id, ClaimState::Failed)
                .await;
            return;
        }
    };
    let prompt = text::strip_mention(&held.message, &conn.info.bot.username);
    start_turn(
        ctx,
        binding,
        &held,
        &request.guest_username,
        &prompt,
        None,
        Started::follow_up(std::time::Instant::now()),
    )
    .await;
}

/// Expire this instance's requests past their deadline and say so on
/// their posts.
pub async fn expire_overdue(app: &App, conn: &Connection) {
    let pending = match app.store.pending_guest_requests(&app.instance.id).await {
        Ok(list) => list,
        Err(e) => {
            warn!(error = %e, "cannot read guest requests for expiry");
            return;
        }
    };
    let at = now(app);
    for request in pending.into_iter().filter(|r| r.expires_at <= at) {
        match app
            .store
            .decide_guest_request(&request.post_id, GuestState::Expired, None, at)
            .await
        {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                warn!(error = %e, "cannot expire a guest request");
                continue;
            }
        }
        info!(guest = %request.guest_user_id, "guest request expired");
        let edited = decided_text(
            &request.guest_username,
            GuestState::Expired,
            "",
            app.config.guest_approval_timeout,
        );
        if let Err(e) = conn
            .rest
            .patch_post(&request.request_post_id, &edited, None, Priority::Normal)
            .await
        {
            warn!(error = %e, "cannot mark the guest request expired");
        }
    }
}

/// Expire requests as their deadlines pass (by the app clock), for as long
/// as the bridge runs; the first pass catches those that ran out while the
/// agent was down.
pub async fn run_expiry(app: Arc<App>) {
    let mut tick = tokio::time::interval(EXPIRY_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(conn) = app.connection().await {
            expire_overdue(&app, &conn).await;
        }
    }
}
