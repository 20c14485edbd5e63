//! Channels in process: owner follow-ups without a mention, guests held
//! for approval (answered, ignored, expired by the hand-set clock, kept
//! across a restart), teammates, delegation and `!team`.

use std::time::Duration;

use mattermost_sim::Account;
use pretty_assertions::assert_eq;

use super::{World, eventually};
use crate::store::{Store, Teammate};

/// A user in the team and in town, who is neither owner nor allowed.
fn person(w: &World, name: &str) -> Account {
    let a = w.sim.create_user(name).unwrap();
    w.sim.add_to_team(&w.team, &a.id).unwrap();
    w.sim.add_member(&w.town, &a.id).unwrap();
    a
}

async fn make_teammate(w: &World, who: &Account) {
    w.store
        .add_teammate(&Teammate {
            owner_user_id: w.owner.id.clone(),
            user_id: who.id.clone(),
            username: who.username.clone(),
            added_by: w.owner.id.clone(),
            added_at: 1,
        })
        .await
        .unwrap();
}

/// The owner starts a session in town; its thread root.
async fn owner_thread(w: &World, text: &str) -> String {
    let asked = w
        .sim
        .post_as(&w.owner.id, &w.town, &format!("@opencode-bot {text}"), None)
        .unwrap();
    w.reply_with(&asked.id, "OpenCode session").await;
    eventually("the first prompt", || w.opencode.prompted(text) == 1).await;
    asked.id
}

fn say_in(w: &World, who: &Account, root: &str, text: &str) -> String {
    w.sim
        .post_as(&who.id, &w.town, text, Some(root))
        .unwrap()
        .id
}

/// The bot's guest request in a thread, once posted.
async fn request_in(w: &World, root: &str) -> String {
    w.reply_with(root, "Guest access request").await.id
}

fn message_of(w: &World, post_id: &str) -> String {
    w.sim
        .posts()
        .into_iter()
        .find(|p| p.id == post_id && p.original_id.is_empty())
        .map(|p| p.message)
        .unwrap_or_default()
}

async fn wait_message(w: &World, post_id: &str, needle: &str) {
    eventually(&format!("post {post_id} says {needle:?}"), || {
        message_of(w, post_id).contains(needle)
    })
    .await;
}

#[tokio::test]
async fn the_owners_replies_need_no_mention_but_others_do() {
    let w = World::new().await;
    let _agent = w.start().await;
    let root = owner_thread(&w, "first owner prompt").await;
    w.sim
        .post_as(&w.owner.id, &w.town, "owner follow-up", Some(&root))
        .unwrap();
    w.sim
        .post_as(&w.alice.id, &w.town, "alice chatter", Some(&root))
        .unwrap();
    eventually("the follow-up", || {
        w.opencode.prompted("owner follow-up") == 1
    })
    .await;
    w.sentinel().await;
    assert_eq!(w.opencode.prompted("alice chatter"), 0);
    // Outside a bound thread the owner still needs the mention.
    let loose = w
        .sim
        .post_as(&w.owner.id, &w.town, "owner chatter at the top", None)
        .unwrap();
    w.sentinel().await;
    assert_eq!(w.opencode.prompted("owner chatter"), 0);
    assert!(w.bot_replies(&loose.id).is_empty());
}

#[tokio::test]
async fn a_guest_is_held_and_approved_once_by_the_owner_not_by_another_guest() {
    let w = World::new().await;
    let _agent = w.start().await;
    let gus = person(&w, "gus");
    let eve = person(&w, "eve");
    let root = owner_thread(&w, "owner work").await;
    say_in(&w, &gus, &root, "@opencode-bot guest question one");
    let request = request_in(&w, &root).await;
    let text = message_of(&w, &request);
    assert!(
        text.contains("@owner") && text.contains("@gus wants to send"),
        "{text}"
    );
    // Another guest's answers, with and without the mention, and the
    // guest's own, are ignored; junk from the owner is not an answer.
    say_in(&w, &eve, &root, "1");
    say_in(&w, &eve, &root, "@opencode-bot 1");
    say_in(&w, &gus, &root, "@opencode-bot 3");
    w.sim
        .react_as(&gus.id, &request, "white_check_mark")
        .unwrap();
    w.sentinel().await;
    assert_eq!(w.opencode.prompted("guest question one"), 0);
    assert!(message_of(&w, &request).contains("Guest access request**"));
    assert!(!message_of(&w, &request).contains("approved"));
    assert_eq!(
        w.bot_replies(&root)
            .iter()
            .filter(|p| p.message.contains("Guest access"))
            .count(),
        1,
        "eve's `@bot 1` is ignored, not a new request"
    );

    say_in(&w, &w.owner, &root, "1");
    wait_message(
        &w,
        &request,
        "approved** by @owner: @gus's message (this message only)",
    )
    .await;
    eventually("the guest's prompt", || {
        w.opencode.prompted("guest question one") == 1
    })
    .await;
    // Once only: the next one asks again.
    say_in(&w, &gus, &root, "@opencode-bot guest question two");
    eventually("a second request", || {
        w.bot_replies(&root)
            .iter()
            .filter(|p| p.message.contains("**Guest access request**"))
            .count()
            == 1
    })
    .await;
    w.sentinel().await;
    assert_eq!(w.opencode.prompted("guest question two"), 0);
}

#[tokio::test]
async fn approving_a_guest_for_the_thread_survives_a_restart() {
    let w = World::new().await;
    let agent = w.start().await;
    let gus = person(&w, "gus");
    let root = owner_thread(&w, "owner work").await;
    say_in(&w, &gus, &root, "@opencode-bot held across a restart");
    let request = request_in(&w, &root).await;
    // The request outlives the agent; the answer comes to the next one.
    agent.stop().await;
    let agent = w.start().await;
    w.sentinel().await;
    say_in(&w, &w.owner, &root, "2");
    wait_message(&w, &request, "approved** by @owner: @gus, for this thread").await;
    eventually("the held post runs", || {
        w.opencode.prompted("held across a restart") == 1
    })
    .await;
    agent.stop().await;
    let _agent = w.start().await;
    say_in(&w, &gus, &root, "@opencode-bot approved after restart");
    eventually("approved guest prompts directly", || {
        w.opencode.prompted("approved after restart") == 1
    })
    .await;
    assert_eq!(
        w.bot_replies(&root)
            .iter()
            .filter(|p| p.message.contains("**Guest access request**"))
            .count(),
        0
    );
}

#[tokio::test]
async fn approving_everyone_lets_every_guest_prompt_and_deny_runs_nothing() {
    let w = World::new().await;
    let _agent = w.start().await;
    let gus = person(&w, "gus");
    let eve = person(&w, "eve");
    let root = owner_thread(&w, "owner work").await;
    say_in(&w, &gus, &root, "@opencode-bot please deny me");
    let denied = request_in(&w, &root).await;
    say_in(&w, &w.owner, &root, "deny");
    wait_message(&w, &denied, "denied** by @owner").await;

    say_in(&w, &gus, &root, "@opencode-bot open the thread");
    eventually("a second request", || {
        w.bot_replies(&root)
            .iter()
            .any(|p| p.message.contains("**Guest access request**"))
    })
    .await;
    say_in(&w, &w.owner, &root, "approve 3");
    eventually("the approved post", || {
        w.opencode.prompted("open the thread") == 1
    })
    .await;
    say_in(&w, &eve, &root, "@opencode-bot eve joins in");
    eventually("anyone prompts", || {
        w.opencode.prompted("eve joins in") == 1
    })
    .await;
    w.sentinel().await;
    // Not even as thread context of the prompts approved later.
    assert_eq!(w.opencode.prompted("please deny me"), 0);
}

#[tokio::test]
async fn a_request_expires_by_the_clock_even_across_a_restart() {
    let w = World::new().await;
    let agent = w.start().await;
    let gus = person(&w, "gus");
    let root = owner_thread(&w, "owner work").await;
    say_in(&w, &gus, &root, "@opencode-bot too late");
    let first = request_in(&w, &root).await;
    assert!(message_of(&w, &first).contains("Expires in 30 min"));
    w.clock.advance(Duration::from_secs(29 * 60));
    w.sentinel().await;
    assert!(!message_of(&w, &first).contains("expired"));
    w.clock.advance(Duration::from_secs(61));
    wait_message(&w, &first, "expired**: nobody answered within 30 min").await;

    // Pending while the agent is down, overdue when it comes back.
    say_in(&w, &gus, &root, "@opencode-bot also too late");
    eventually("a second request", || {
        w.bot_replies(&root)
            .iter()
            .any(|p| p.message.contains("**Guest access request**"))
    })
    .await;
    let second = w
        .bot_replies(&root)
        .into_iter()
        .find(|p| p.message.contains("**Guest access request**"))
        .unwrap()
        .id;
    agent.stop().await;
    w.clock.advance(Duration::from_secs(31 * 60));
    let _agent = w.start().await;
    wait_message(&w, &second, "expired**").await;
    w.sentinel().await;
    assert_eq!(w.opencode.prompted("too late"), 0);
}

#[tokio::test]
async fn a_teammate_prompts_without_approval_and_answers_guests() {
    let w = World::new().await;
    let _agent = w.start().await;
    let tina = person(&w, "tina");
    let gus = person(&w, "gus");
    make_teammate(&w, &tina).await;
    let root = owner_thread(&w, "owner work").await;
    say_in(&w, &tina, &root, "@opencode-bot teammate prompt");
    eventually("the teammate's prompt", || {
        w.opencode.prompted("teammate prompt") == 1
    })
    .await;
    // A teammate's reply without a mention is no prompt...
    say_in(&w, &tina, &root, "teammate chatter");
    say_in(&w, &gus, &root, "@opencode-bot guest via teammate");
    let request = request_in(&w, &root).await;
    // ...but their bare answer to a waiting request counts.
    say_in(&w, &tina, &root, "1");
    wait_message(&w, &request, "approved** by @tina").await;
    eventually("the guest's prompt", || {
        w.opencode.prompted("guest via teammate") == 1
    })
    .await;
    w.sentinel().await;
    // It went along as the guest's thread context, not as a request.
    assert_eq!(w.opencode.requested("teammate chatter"), 0);
    assert_eq!(w.opencode.prompted("teammate chatter"), 1);
}

/// The six rows of the delegation table.
#[tokio::test]
async fn delegation_follows_the_table() {
    let w = World::new().await;
    let _agent = w.start().await;
    let tina = person(&w, "tina");
    let gus = person(&w, "gus");
    make_teammate(&w, &tina).await;
    // A teammate writes @bot @owner where all three are members.
    let asked = w
        .sim
        .post_as(
            &tina.id,
            &w.town,
            "@opencode-bot @owner fix the login bug",
            None,
        )
        .unwrap();
    let card = w.reply_with(&asked.id, "OpenCode session").await;
    assert!(
        card.message
            .contains("**Owner**: @owner · **Started by**: @tina (delegated)"),
        "{}",
        card.message
    );
    eventually("the delegated prompt", || {
        w.opencode.prompted("fix the login bug") == 1
    })
    .await;
    assert!(
        !w.opencode
            .prompts
            .lock()
            .unwrap()
            .iter()
            .any(|p| p.text.contains("@owner fix"))
    );
    let grants = w.store.thread_grants(&asked.id).await.unwrap();
    assert_eq!(grants.len(), 1, "the teammate is approved for the thread");

    let quiet = [
        // A teammate writes @bot alone.
        (
            &tina,
            w.town.clone(),
            "@opencode-bot row two teammate alone",
        ),
        // Someone not on the team writes @bot @owner.
        (
            &gus,
            w.town.clone(),
            "@opencode-bot @owner row three stranger",
        ),
        // The owner writes @bot @someone_else.
        (
            &w.owner,
            w.town.clone(),
            "@opencode-bot @gus row five for gus",
        ),
    ];
    let mut posts = Vec::new();
    for (who, channel, text) in quiet {
        posts.push(w.sim.post_as(&who.id, &channel, text, None).unwrap().id);
    }
    // Anyone writes @bot @owner where the owner is not a member.
    let side = w
        .sim
        .create_channel(&w.team, "side", "Side", mattermost_sim::ChannelType::Open)
        .unwrap()
        .id;
    for id in [&w.bot.id, &tina.id] {
        w.sim.add_member(&side, id).unwrap();
    }
    posts.push(
        w.sim
            .post_as(
                &tina.id,
                &side,
                "@opencode-bot @owner row six owner away",
                None,
            )
            .unwrap()
            .id,
    );
    // The owner writes @bot: a normal session.
    let own = w
        .sim
        .post_as(&w.owner.id, &w.town, "@opencode-bot row four owner", None)
        .unwrap();
    let card = w.reply_with(&own.id, "OpenCode session").await;
    assert!(!card.message.contains("delegated"));
    w.sentinel().await;
    for phrase in ["row two", "row three", "row five", "row six"] {
        assert_eq!(w.opencode.prompted(phrase), 0, "{phrase}");
    }
    for post in posts {
        assert!(w.bot_replies(&post).is_empty(), "silent on {post}");
    }
    assert_eq!(w.opencode.prompted("row four owner"), 1);
}

#[tokio::test]
async fn the_owner_manages_the_team_in_a_dm_and_nobody_else() {
    let w = World::new().await;
    let _agent = w.start().await;
    let _bonnie = person(&w, "bonnie");
    let owner_dm = w.sim.direct_channel(&w.bot.id, &w.owner.id).unwrap().id;
    let ask = |who: &Account, channel: &str, text: &str| {
        w.sim.post_as(&who.id, channel, text, None).unwrap().id
    };
    let w = &w;
    let answer = |post: String| async move { first_answer(w, &post).await };
    let a = answer(ask(&w.owner, &owner_dm, "!team add @Bonnie")).await;
    assert_eq!(a, ":white_check_mark: @bonnie added to your team.");
    let a = answer(ask(&w.owner, &owner_dm, "!team add bonnie")).await;
    assert_eq!(a, "@bonnie is already on your team.");
    let a = answer(ask(&w.owner, &owner_dm, "!team list")).await;
    assert_eq!(a, ":busts_in_silhouette: **Team members (1)**\n1. @bonnie");
    let a = answer(ask(&w.owner, &owner_dm, "!team")).await;
    assert!(a.contains("**Teammates** (1): @bonnie"), "{a}");
    assert!(a.contains("expire after 30 min"), "{a}");
    for (text, says) in [
        ("!team add @nobody-here", "There is no user @nobody-here"),
        ("!team add @owner", "you need no team"),
        // The bot's own name is a mention, taken out before the command.
        ("!team add @opencode-bot", "who?"),
        ("!team add @a @b", "one person at a time"),
        ("!team add @x;rm", "not a username"),
        ("!team fire @bonnie", "not a team command"),
    ] {
        let a = answer(ask(&w.owner, &owner_dm, text)).await;
        assert!(a.contains(says), "{text}: {a}");
    }
    // An allowed user is not the owner; in a channel, not even the owner.
    let a = answer(ask(&w.alice, &w.dm, "!team add @alice")).await;
    assert_eq!(a, ":lock: Only the owner manages the team.");
    let a = answer(ask(&w.owner, &w.town, "@opencode-bot !team list")).await;
    assert_eq!(a, ":lock: Manage the team in a DM with the bot.");
    let a = answer(ask(&w.owner, &owner_dm, "!team remove @bonnie")).await;
    assert_eq!(a, ":wave: @bonnie removed from your team.");
    let a = answer(ask(&w.owner, &owner_dm, "!team remove @bonnie")).await;
    assert_eq!(a, "@bonnie is not on your team.");
    let a = answer(ask(&w.owner, &owner_dm, "!team list")).await;
    assert!(a.starts_with("No teammates yet"), "{a}");
    assert!(w.store.teammates(&w.owner.id).await.unwrap().is_empty());
}

/// The bot's first answer to a post, once there.
async fn first_answer(w: &World, post: &str) -> String {
    let mut found = String::new();
    eventually("the answer", || {
        found = w
            .bot_replies(post)
            .first()
            .map(|p| p.message.clone())
            .unwrap_or_default();
        !found.is_empty()
    })
    .await;
    found
}

/// Every file name under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

#[tokio::test]
async fn a_held_guests_attachment_is_not_fetched_until_approved() {
    use crate::config::Secret;
    use crate::mattermost::{NewPost, Priority, RateBudget, RestClient, RetryPolicy};

    let w = World::new().await;
    let _agent = w.start().await;
    let gus = person(&w, "gus");
    let root = owner_thread(&w, "owner work").await;
    let as_gus = RestClient::new(
        &w.sim.api_url(),
        Secret::new(gus.token.clone()),
        std::sync::Arc::new(RateBudget::new(1000.0, 1000.0)),
        RetryPolicy::default(),
    )
    .unwrap();
    let file = as_gus
        .upload_file(&w.town, "guest-notes.txt", b"secret plans".to_vec())
        .await
        .unwrap();
    as_gus
        .create_post(
            &gus.id,
            &NewPost {
                channel_id: w.town.clone(),
                message: "@opencode-bot read my notes".into(),
                root_id: root.clone(),
                file_ids: vec![file.id],
                ..NewPost::default()
            },
            Priority::Normal,
        )
        .await
        .unwrap();
    let request = request_in(&w, &root).await;
    w.sentinel().await;
    assert_eq!(w.opencode.prompted("read my notes"), 0);
    assert!(
        !files_under(w.temp.path())
            .iter()
            .any(|f| f.contains("guest-notes")),
        "nothing of a held post is downloaded"
    );
    assert!(
        !w.bot_replies(&root)
            .iter()
            .any(|p| p.message.contains("guest-notes")),
        "nor looked at"
    );
    say_in(&w, &w.owner, &root, "1");
    wait_message(&w, &request, "approved** by @owner").await;
    eventually("the approved prompt", || {
        w.opencode.prompted("read my notes") == 1
    })
    .await;
    // Fetched now, with the post: the prompt accounts for it.
    let prompt = w
        .opencode
        .prompts
        .lock()
        .unwrap()
        .last()
        .unwrap()
        .text
        .clone();
    assert!(prompt.contains("guest-notes.txt"), "{prompt}");
}

#[tokio::test]
async fn numbers_owed_to_a_question_never_approve_a_guest() {
    use crate::opencode::events::{QuestionAsked, QuestionInfo, QuestionOption};
    let w = World::new().await;
    let first = w.start().await;
    let gus = person(&w, "gus");
    let root = owner_thread(&w, "owner asks the way").await;
    // The session asks a question; the restarted agent posts it (the
    // fake OpenCode lists it as waiting).
    let option = |label: &str| QuestionOption {
        label: label.into(),
        description: String::new(),
    };
    w.opencode.questions.lock().unwrap().push(QuestionAsked {
        id: "que_way".into(),
        session_id: "ses_fake0".into(),
        questions: vec![QuestionInfo {
            question: "Which way?".into(),
            header: "Way".into(),
            options: vec![option("left"), option("right")],
            multiple: false,
            custom: Some(false),
        }],
    });
    first.stop().await;
    let _agent = w.start().await;
    w.reply_with(&root, "Which way?").await;
    say_in(&w, &gus, &root, "@opencode-bot guest wants in");
    let request = request_in(&w, &root).await;

    // The owner's bare number answers the question, not the guest.
    say_in(&w, &w.owner, &root, "1");
    eventually("the question answered", || {
        w.opencode.question_answers.lock().unwrap().len() == 1
    })
    .await;
    w.sentinel().await;
    assert_eq!(
        w.opencode.question_answers.lock().unwrap()[0],
        ("que_way".to_owned(), vec![vec!["left".to_owned()]])
    );
    assert!(!message_of(&w, &request).contains("approved"));
    assert_eq!(w.opencode.prompted("guest wants in"), 0);

    // `approve 1` is not mistaken for anything.
    say_in(&w, &w.owner, &root, "approve 1");
    wait_message(&w, &request, "approved** by @owner").await;
    eventually("the guest's prompt", || {
        w.opencode.prompted("guest wants in") == 1
    })
    .await;
}

#[tokio::test]
async fn a_merge_carries_no_held_guest_request() {
    let w = World::new().await;
    let _agent = w.start().await;
    let gus = person(&w, "gus");
    let source = owner_thread(&w, "owner source talk").await;
    say_in(&w, &gus, &source, "@opencode-bot held guest words");
    request_in(&w, &source).await;
    say_in(&w, &w.alice, &source, "ordinary chatter stays");
    let dest = owner_thread(&w, "owner destination").await;
    let link = format!("{}/eng/pl/{source}", w.sim.base_url());
    say_in(&w, &w.owner, &dest, &format!("!merge {link}"));
    w.reply_with(&dest, "Merged thread context").await;
    // The summariser's request and the merged prompt both carry the talk…
    assert!(w.opencode.prompted("ordinary chatter stays") >= 1);
    // …and neither the held message nor the request post quoting it.
    assert_eq!(w.opencode.prompted("held guest words"), 0);
}
