//! The promises that need more than one process: a reply survives `kill -9`
//! of the agent, a prompt posted while no agent listens runs once, and two
//! agents sharing one bot and one SQLite file answer each post once.

// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod bridge_support;

use std::collections::HashMap;
use std::time::Duration;

use bridge_support::shared_store::SharedStore;
use bridge_support::{Rig, body_of, requests_for, wait_until};
use harness::model::{ScriptedModel, Step};
use opencode_mattermost::store::SqliteStore;
use opencode_mattermost::store::{ClaimState, Store};

/// Wait until every post is claimed and finished and no reply streams:
/// from then on no agent posts anything more about them, so counting is
/// final (no sleep and hope).
async fn settled(store: &dyn Store, posts: &[String]) {
    for _ in 0..600 {
        let mut done = true;
        for id in posts {
            let finished = matches!(
                store.claim(id).await,
                Ok(Some(c)) if c.state == ClaimState::Done
            );
            done &= finished;
        }
        let mut streaming = 0;
        for instance in store.instances().await.unwrap_or_default() {
            streaming += store
                .streaming_replies(&instance.id)
                .await
                .map(|r| r.len())
                .unwrap_or(1);
        }
        if done && streaming == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the agents never settled");
}

fn story() -> String {
    (1..=60)
        .map(|i| format!("Sentence {i} of a slow story.\n"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_reply_finishes_the_reply_once_and_runs_missed_prompts() {
    let rig = Rig::new().await;
    let model = ScriptedModel::start().await.unwrap();
    // About 8 s of streaming, so the kill lands mid-reply.
    model.on(
        "slow story",
        vec![Step::slow(story(), 12, Duration::from_millis(50))],
    );
    model.on("while you were down", vec![Step::text("ran once")]);
    let env = rig.env(&[("MATTERMOST_OWNER_USER_ID", &rig.alice.id)]);
    let oc = rig.opencode(&model, env).await;
    let db = oc
        .home
        .path()
        .join(".local/share/opencode-mattermost/state.db");
    let dm = rig.dm(&rig.alice.id);

    let asked = rig
        .sim
        .post_as(&rig.alice.id, &dm, "tell me a slow story", None)
        .unwrap();
    let card = rig.card_for(&dm, 0).await;
    wait_until(Duration::from_secs(60), "some streamed text", || {
        rig.bot_replies(&card.id)
            .iter()
            .any(|p| p.message.contains("Sentence 3"))
    })
    .await;

    let store = SqliteStore::open(&db).unwrap();
    let pid = store.instances().await.unwrap()[0].pid;
    println!("killing agent pid {pid}");
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_until(Duration::from_secs(10), "the socket to drop", || {
        rig.bot_sockets() == 0
    })
    .await;
    let missed = rig
        .sim
        .post_as(&rig.alice.id, &dm, "while you were down", None)
        .unwrap();
    println!("posted while {} agent sockets were open", rig.bot_sockets());

    // The shim restarts the agent; it reconnects and picks everything up.
    let turns = rig.finished_turns(&card.id, 1).await;
    assert_eq!(turns.len(), 1, "one reply, not a second copy: {turns:#?}");
    assert_eq!(body_of(&turns[0]), story());
    let card2 = rig.card_for(&dm, 1).await;
    assert!(card2.message.contains("while you were down"));
    let turns2 = rig.finished_turns(&card2.id, 1).await;
    assert_eq!(body_of(&turns2[0]), "ran once");
    settled(&store, &[asked.id.clone(), missed.id.clone()]).await;
    assert_eq!(requests_for(&model, "while you were down"), 1);
    assert_eq!(requests_for(&model, "slow story"), 1);
    assert_eq!(rig.bot_roots(&dm).len(), 2, "two cards, no duplicates");
    assert_eq!(rig.turns(&card.id).len(), 1);
    assert_eq!(rig.turns(&card2.id).len(), 1);
    // Posted while no agent listened: the restarted agent caught up on it.
    let claim = store.claim(&missed.id).await.unwrap().unwrap();
    println!("missed post claim: {claim:?}");
    assert_eq!(claim.state, ClaimState::Done);
    let instances = store.instances().await.unwrap();
    assert_eq!(instances.len(), 1);
    assert_eq!(claim.instance_id, instances[0].id);
    assert_ne!(instances[0].pid, pid, "claimed by the restarted agent");
    oc.stop().await;
}

/// A flood of follow-ups behind a running turn: 32 wait their turn and run
/// once each; the rest are refused in their own reply, never silently
/// queued without bound or lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_follow_ups_waits_up_to_the_cap_and_refuses_the_rest_visibly() {
    const WAITING: usize = 32;
    const FLOOD: usize = WAITING + 3;
    let rig = Rig::new().await;
    let model = ScriptedModel::start().await.unwrap();
    model.on(
        "slow story",
        vec![Step::slow(story(), 12, Duration::from_millis(50))],
    );
    model.on("queued", vec![Step::text("ok")]);
    let env = rig.env(&[("MATTERMOST_OWNER_USER_ID", &rig.alice.id)]);
    let oc = rig.opencode(&model, env).await;
    let db = oc
        .home
        .path()
        .join(".local/share/opencode-mattermost/state.db");
    let dm = rig.dm(&rig.alice.id);
    let first = rig
        .sim
        .post_as(&rig.alice.id, &dm, "tell me a slow story", None)
        .unwrap();
    let card = rig.card_for(&dm, 0).await;
    wait_until(Duration::from_secs(60), "the story streaming", || {
        rig.bot_replies(&card.id)
            .iter()
            .any(|p| p.message.contains("Sentence 2"))
    })
    .await;
    let mut posts = vec![first.id.clone()];
    for i in 1..=FLOOD {
        let p = rig
            .sim
            .post_as(
                &rig.alice.id,
                &dm,
                &format!("queued {i:02}"),
                Some(&card.id),
            )
            .unwrap();
        posts.push(p.id);
    }
    let store = SqliteStore::open(&db).unwrap();
    settled(&store, &posts).await;

    let turns = rig.turns(&card.id);
    let refused: Vec<&Vec<String>> = turns
        .iter()
        .filter(|t| t.concat().contains("prompts already wait for this session"))
        .collect();
    assert_eq!(refused.len(), FLOOD - WAITING, "{turns:#?}");
    assert_eq!(turns.len(), 1 + FLOOD, "one reply per post");
    for i in 1..=FLOOD {
        let ran = requests_for(&model, &format!("queued {i:02}"));
        assert!(ran <= 1, "queued {i:02} ran {ran} times");
    }
    let ran: usize = (1..=FLOOD)
        .map(|i| requests_for(&model, &format!("queued {i:02}")).min(1))
        .sum();
    assert_eq!(ran, WAITING, "every prompt under the cap ran once");
    oc.stop().await;
}

/// The agent dies after Mattermost made its first reply post but before it
/// heard the post's id: the restarted agent finds that post (by the pending
/// id it recorded first) and finishes the reply in it, not in a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_creating_a_reply_post_and_recording_it_posts_once() {
    let rig = Rig::new().await;
    let model = ScriptedModel::start().await.unwrap();
    model.on(
        "lost answer",
        vec![Step::slow(story(), 12, Duration::from_millis(50))],
    );
    let env = rig.env(&[("MATTERMOST_OWNER_USER_ID", &rig.alice.id)]);
    let oc = rig.opencode(&model, env).await;
    let db = oc
        .home
        .path()
        .join(".local/share/opencode-mattermost/state.db");
    let dm = rig.dm(&rig.alice.id);
    // The card goes through; the first reply post is made, and its answer
    // never comes.
    rig.sim
        .lose_answer_after("POST", "/posts", 1, Duration::from_secs(600));
    rig.sim
        .post_as(&rig.alice.id, &dm, "a lost answer please", None)
        .unwrap();
    let card = rig.card_for(&dm, 0).await;
    let mut made = Vec::new();
    wait_until(Duration::from_secs(60), "the first reply post", || {
        made = rig.bot_replies(&card.id);
        !made.is_empty()
    })
    .await;
    let store = SqliteStore::open(&db).unwrap();
    let instance = store.instances().await.unwrap()[0].clone();
    let rows = store.streaming_replies(&instance.id).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0].post_ids.is_empty(),
        "the id never arrived: {rows:?}"
    );
    assert!(rows[0].pending_post_id.is_some(), "{rows:?}");

    // The server forgets pending ids after 30 s; a restart may come later.
    rig.sim.configure(|c| c.pending_post_ttl = Duration::ZERO);
    let status = std::process::Command::new("kill")
        .args(["-9", &instance.pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_until(Duration::from_secs(10), "the socket to drop", || {
        rig.bot_sockets() == 0
    })
    .await;

    let turns = rig.finished_turns(&card.id, 1).await;
    assert_eq!(turns.len(), 1, "{turns:#?}");
    assert_eq!(body_of(&turns[0]), story());
    let replies: Vec<String> = rig
        .bot_replies(&card.id)
        .into_iter()
        .filter(|p| !bridge_support::is_side_post(&p.message))
        .map(|p| p.id)
        .collect();
    assert_eq!(
        replies,
        vec![made[0].id.clone()],
        "finished in the post made before the kill"
    );
    let row = store
        .reply(&rows[0].session_id, &rows[0].user_message_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.post_ids, vec![made[0].id.clone()]);
    assert_eq!(row.pending_post_id, None);
    oc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_on_one_sqlite_store_answer_each_post_once() {
    two_agents_answer_each_post_once(SharedStore::sqlite()).await;
}

/// The same with PostgreSQL, as agents on different hosts would share it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_on_one_postgres_store_answer_each_post_once() {
    let Some(url) = SharedStore::postgres_url() else {
        eprintln!("note: no PostgreSQL for this run (OPENCODE_MM_TEST_DATABASE_URL); skipped");
        return;
    };
    two_agents_answer_each_post_once(SharedStore::postgres(url).await).await;
}

async fn two_agents_answer_each_post_once(shared: SharedStore) {
    let rig = Rig::new().await;
    let model = ScriptedModel::start().await.unwrap();
    model.on("job", vec![Step::text("done")]);
    let env = rig.env(&[
        ("MATTERMOST_OWNER_USER_ID", &rig.alice.id),
        shared.setting(),
    ]);
    let first = rig.opencode(&model, env.clone()).await;
    let second = rig.opencode(&model, env).await;
    assert_eq!(rig.bot_sockets(), 2);
    let dm = rig.dm(&rig.alice.id);

    const POSTS: usize = 200;
    let mut asked = Vec::new();
    for i in 0..POSTS {
        asked.push(
            rig.sim
                .post_as(&rig.alice.id, &dm, &format!("job {i:03}"), None)
                .unwrap(),
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_until(Duration::from_secs(300), "every job answered", || {
        let cards = rig.bot_roots(&dm);
        cards.len() >= POSTS
            && cards.iter().all(|c| {
                rig.turns(&c.id)
                    .last()
                    .is_some_and(|t| t.last().is_some_and(|p| bridge_support::is_final(p)))
            })
    })
    .await;
    let store = &*shared.store;
    let ids: Vec<String> = asked.iter().map(|p| p.id.clone()).collect();
    settled(store, &ids).await;

    let cards = rig.bot_roots(&dm);
    assert_eq!(cards.len(), POSTS, "one card per post");
    let mut per_job: HashMap<String, usize> = HashMap::new();
    for c in &cards {
        let job = c
            .message
            .lines()
            .find_map(|l| l.strip_prefix("> "))
            .unwrap_or_default()
            .to_owned();
        *per_job.entry(job).or_default() += 1;
        let turns = rig.turns(&c.id);
        assert_eq!(turns.len(), 1, "one reply per card");
        assert_eq!(body_of(&turns[0]), "done");
    }
    for i in 0..POSTS {
        let job = format!("job {i:03}");
        assert_eq!(per_job.get(&job), Some(&1), "{job}");
        assert_eq!(requests_for(&model, &job), 1, "{job} ran once");
    }
    let mut by_instance: HashMap<String, usize> = HashMap::new();
    for post in &asked {
        let claim = store.claim(&post.id).await.unwrap().expect("claimed");
        *by_instance.entry(claim.instance_id).or_default() += 1;
    }
    println!("posts per agent: {by_instance:?}");
    assert_eq!(by_instance.values().sum::<usize>(), POSTS);
    // Both agents took part: each won some of the races, none all.
    assert_eq!(by_instance.len(), 2, "{by_instance:?}");
    assert!(by_instance.values().all(|n| *n > 0), "{by_instance:?}");
    first.stop().await;
    second.stop().await;
}

/// Two agents share one store; the one whose OpenCode holds a thread's
/// session goes away. Once its lease lapses, a reply in that thread gets
/// one notice naming the instance and when it went offline, and nothing
/// else (the other agent cannot reach that session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_of_an_offline_instance_says_so_within_the_lease() {
    let rig = Rig::new().await;
    let model = ScriptedModel::start().await.unwrap();
    model.on("whose thread", vec![Step::text("mine")]);
    // PostgreSQL when the run has one: agents on several hosts share it.
    let shared = SharedStore::new().await;
    let env = rig.env(&[
        ("MATTERMOST_OWNER_USER_ID", &rig.alice.id),
        shared.setting(),
        ("OPENCODE_MM_INSTANCE_LEASE", "3000"),
    ]);
    let first = rig.opencode(&model, env.clone()).await;
    let second = rig.opencode(&model, env).await;
    let dm = rig.dm(&rig.alice.id);
    let asked = rig
        .sim
        .post_as(&rig.alice.id, &dm, "whose thread is this", None)
        .unwrap();
    let card = rig.card_for(&dm, 0).await;
    rig.finished_turns(&card.id, 1).await;
    let store = &*shared.store;
    settled(store, std::slice::from_ref(&asked.id)).await;
    let owner_id = store.claim(&asked.id).await.unwrap().unwrap().instance_id;
    let instances = store.instances().await.unwrap();
    assert_eq!(instances.len(), 2, "two agents, two ids: {instances:?}");
    assert_ne!(instances[0].id, instances[1].id);
    let owner = instances.iter().find(|i| i.id == owner_id).unwrap().clone();

    let stays = instances.iter().find(|i| i.id != owner_id).unwrap().clone();
    // Stop the OpenCode (and so the agent) that owns the thread.
    let (gone_oc, stay_oc) = if same_dir(&first.project, &owner.directory) {
        (first, second)
    } else {
        (second, first)
    };
    assert!(same_dir(&stay_oc.project, &stays.directory));
    gone_oc.stop().await;
    // The lease lapses; the store shows when.
    let lapsed = async {
        for _ in 0..300 {
            let row = store
                .instances()
                .await
                .unwrap()
                .into_iter()
                .find(|i| i.id == owner.id)
                .unwrap();
            let now = opencode_mattermost::store::now_millis();
            if now - row.heartbeat_at > 3_000 {
                return row;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the owner kept its lease");
    }
    .await;

    let follow = rig
        .sim
        .post_as(&rig.alice.id, &dm, "still there?", Some(&card.id))
        .unwrap();
    let mut notice = None;
    wait_until(Duration::from_secs(30), "the offline notice", || {
        notice = rig
            .bot_replies(&card.id)
            .into_iter()
            .find(|p| p.message.contains("is offline"));
        notice.is_some()
    })
    .await;
    let notice = notice.unwrap().message;
    assert!(notice.contains(&lapsed.display_name()), "{notice}");
    assert!(notice.contains("offline since"), "{notice}");
    settled(store, std::slice::from_ref(&follow.id)).await;
    let claim = store.claim(&follow.id).await.unwrap().unwrap();
    assert_eq!(claim.instance_id, stays.id, "answered by the live agent");
    assert_eq!(requests_for(&model, "still there"), 0, "nothing ran");
    let offline_notices = rig
        .bot_replies(&card.id)
        .iter()
        .filter(|p| p.message.contains("is offline"))
        .count();
    assert_eq!(offline_notices, 1);
    stay_oc.stop().await;
}

fn same_dir(project: &std::path::Path, directory: &str) -> bool {
    let canon = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canon(project) == canon(std::path::Path::new(directory))
}

/// The parent of a process, from `/proc` (the agent's parent is the
/// OpenCode that runs its shim).
fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // `pid (comm) state ppid …`; comm may hold spaces, so cut after `)`.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn kill_9(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -9 {pid}");
}

/// Two agents share the store (PostgreSQL when the run has one); the one
/// answering a thread dies with its OpenCode by `kill -9` in the middle of
/// a reply, with no chance to say goodbye. Once its lease lapses, the live
/// agent marks the interrupted claim failed and says so in the thread, once;
/// a reply in that thread gets one "offline" notice and runs nothing; the
/// interrupted prompt never runs twice. (An agent that comes back within its
/// lease finishes its own reply: tested above.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_of_two_agents_mid_reply_says_offline_and_runs_nothing_twice() {
    let rig = Rig::new().await;
    let model = ScriptedModel::start().await.unwrap();
    model.on(
        "slow story",
        vec![Step::slow(story(), 12, Duration::from_millis(50))],
    );
    let shared = SharedStore::new().await;
    println!("store: {}", shared.kind);
    let env = rig.env(&[
        ("MATTERMOST_OWNER_USER_ID", &rig.alice.id),
        shared.setting(),
        ("OPENCODE_MM_INSTANCE_LEASE", "3000"),
    ]);
    let first = rig.opencode(&model, env.clone()).await;
    let second = rig.opencode(&model, env).await;
    let dm = rig.dm(&rig.alice.id);
    let asked = rig
        .sim
        .post_as(&rig.alice.id, &dm, "tell me a slow story", None)
        .unwrap();
    let card = rig.card_for(&dm, 0).await;
    wait_until(Duration::from_secs(60), "some streamed text", || {
        rig.bot_replies(&card.id)
            .iter()
            .any(|p| p.message.contains("Sentence 3"))
    })
    .await;
    let store = &*shared.store;
    let claim = store.claim(&asked.id).await.unwrap().unwrap();
    assert_eq!(claim.state, ClaimState::Prompted, "mid-reply: {claim:?}");
    let instances = store.instances().await.unwrap();
    assert_eq!(instances.len(), 2, "{instances:?}");
    let owner = instances
        .iter()
        .find(|i| i.id == claim.instance_id)
        .unwrap()
        .clone();
    let stays = instances
        .iter()
        .find(|i| i.id != claim.instance_id)
        .unwrap()
        .clone();
    let opencode_pid = parent_of(owner.pid);
    println!(
        "killing agent {} (pid {}) and its OpenCode (pid {opencode_pid})",
        owner.id, owner.pid
    );
    // OpenCode first, so its shim cannot start the agent again.
    kill_9(opencode_pid);
    kill_9(owner.pid);
    let (gone_oc, stay_oc) = if same_dir(&first.project, &owner.directory) {
        (first, second)
    } else {
        (second, first)
    };
    wait_until(
        Duration::from_secs(10),
        "the dead agent's socket to drop",
        || rig.bot_sockets() == 1,
    )
    .await;
    // The lease lapses: the last heartbeat stays where the kill left it.
    let lapsed = async {
        for _ in 0..300 {
            let row = store
                .instances()
                .await
                .unwrap()
                .into_iter()
                .find(|i| i.id == owner.id)
                .unwrap();
            if opencode_mattermost::store::now_millis() - row.heartbeat_at > 3_000 {
                return row;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the dead agent kept its lease");
    }
    .await;

    let follow = rig
        .sim
        .post_as(&rig.alice.id, &dm, "are you still there?", Some(&card.id))
        .unwrap();
    let notice_with = |needle: &str| {
        rig.bot_replies(&card.id)
            .into_iter()
            .filter(|p| p.message.contains(needle))
            .map(|p| p.message)
            .collect::<Vec<_>>()
    };
    let mut notice = None;
    wait_until(Duration::from_secs(30), "the offline notice", || {
        notice = notice_with("This thread belongs to its OpenCode").pop();
        notice.is_some()
    })
    .await;
    let notice = notice.unwrap();
    assert!(notice.contains(&lapsed.display_name()), "{notice}");
    assert!(notice.contains("offline since"), "{notice}");
    // The live agent's sweep fails the interrupted claim and says so.
    let mut abandoned = None;
    wait_until(
        Duration::from_secs(30),
        "the interrupted-work notice",
        || {
            abandoned = notice_with("while it was working on this message").pop();
            abandoned.is_some()
        },
    )
    .await;
    assert!(
        abandoned.unwrap().contains(&lapsed.display_name()),
        "names the instance"
    );
    // The follow-up is settled by the live agent: from then on it posts
    // nothing more about it, so the counts below are final.
    wait_until(Duration::from_secs(30), "the follow-up settled", || {
        let store = shared.store.clone();
        let id = follow.id.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(store.claim(&id))
        })
        .join()
        .unwrap()
        .unwrap()
        .is_some_and(|c| c.state == ClaimState::Done)
    })
    .await;
    let follow_claim = store.claim(&follow.id).await.unwrap().unwrap();
    assert_eq!(
        follow_claim.instance_id, stays.id,
        "answered by the live agent"
    );
    assert_eq!(requests_for(&model, "still there"), 0, "nothing ran");
    assert_eq!(requests_for(&model, "slow story"), 1, "never run twice");
    assert_eq!(notice_with("This thread belongs to its OpenCode").len(), 1);
    // Failed once, by the live agent's sweep: nobody runs it again, and
    // the dead instance would not resume it either.
    let interrupted = store.claim(&asked.id).await.unwrap().unwrap();
    assert_eq!(interrupted.instance_id, owner.id);
    assert_eq!(interrupted.state, ClaimState::Failed);
    assert_eq!(store.unfinished_claims(&owner.id).await.unwrap(), vec![]);
    assert_eq!(store.unfinished_claims(&stays.id).await.unwrap(), vec![]);
    assert_eq!(
        notice_with("while it was working on this message").len(),
        1,
        "told once"
    );
    drop(gone_oc);
    stay_oc.stop().await;
}
