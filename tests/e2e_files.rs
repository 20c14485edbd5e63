//! Files both ways, end to end: real OpenCode with the plugin, the scripted
//! model, the Mattermost simulator. Attachments in chat reach the model (the
//! image as an image, the text file by path); `mattermost_send_file` puts
//! project files into the thread byte for byte and refuses the hostile
//! table without uploading anything; refused attachments get a reply while
//! the prompt still runs; a long reply arrives as a file.
//!
//! One OpenCode instance serves the whole file: starting it dominates the
//! run time.

// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod bridge_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bridge_support::{Rig, is_final, last_user_text, requests_for, wait_until};
use harness::model::{ScriptedModel, Step, tool_results};
use mattermost_sim::model::Post;
use opencode_mattermost::config::Secret;
use opencode_mattermost::mattermost::{NewPost, Priority, RateBudget, RestClient, RetryPolicy};
use serde_json::{Value, json};

/// A valid 2×2 RGB PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAE0lEQVR4nGP4z8DAAMJA4v///wAi7AX7ZgoRfgAAAABJRU5ErkJggg==";
const MIB: u64 = 1024 * 1024;

fn png() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(PNG)
        .unwrap()
}

/// A client acting as a person (alice), as the web app would.
fn client_for(rig: &Rig, token: &str) -> RestClient {
    RestClient::new(
        &rig.sim.api_url(),
        Secret::new(token),
        Arc::new(RateBudget::new(1000.0, 1000.0)),
        RetryPolicy::default(),
    )
    .unwrap()
}

/// Upload files as the person and post them with a message.
async fn post_with_files(
    person: &RestClient,
    user_id: &str,
    channel: &str,
    root: &str,
    message: &str,
    files: &[(&str, Vec<u8>)],
) -> opencode_mattermost::mattermost::types::Post {
    let mut ids = Vec::new();
    for (name, bytes) in files {
        ids.push(
            person
                .upload_file(channel, name, bytes.clone())
                .await
                .unwrap()
                .id,
        );
    }
    let post = person
        .create_post(
            user_id,
            &NewPost {
                channel_id: channel.to_owned(),
                message: message.to_owned(),
                root_id: root.to_owned(),
                file_ids: ids.clone(),
                ..NewPost::default()
            },
            Priority::Normal,
        )
        .await
        .unwrap();
    assert_eq!(post.file_ids, ids, "the simulator attached every file");
    post
}

/// Finished turns in a thread: each ends with exactly one final post.
fn finals(rig: &Rig, root: &str) -> usize {
    rig.bot_replies(root)
        .iter()
        .filter(|p| is_final(&p.message))
        .count()
}

async fn wait_finals(rig: &Rig, root: &str, n: usize) {
    wait_until(
        Duration::from_secs(120),
        &format!("{n} finished turns"),
        || finals(rig, root) >= n,
    )
    .await;
}

/// The bot's posts in a thread that carry files.
fn file_posts(rig: &Rig, root: &str) -> Vec<Post> {
    rig.bot_replies(root)
        .into_iter()
        .filter(|p| !p.file_ids.is_empty())
        .collect()
}

fn uploads(rig: &Rig) -> usize {
    rig.sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/files"))
        .count()
}

/// The model request that answered `phrase` last (its final step).
fn request_for(model: &ScriptedModel, phrase: &str) -> Value {
    model
        .requests()
        .into_iter()
        .rev()
        .find(|r| last_user_text(r).contains(phrase))
        .unwrap_or_else(|| panic!("no model request for {phrase:?}"))
}

/// Project files for the tool: one to send, and the hostile table.
fn seed_project(project: &Path) -> Vec<u8> {
    let chart: Vec<u8> = png()
        .into_iter()
        .chain((0..=255u8).cycle().take(3000))
        .collect();
    std::fs::write(project.join("chart.png"), &chart).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", project.join("passwd-link")).unwrap();
    let huge = std::fs::File::create(project.join("huge.bin")).unwrap();
    huge.set_len(2 * 1024 * MIB).unwrap();
    std::fs::write(project.join("bad\u{7}name.txt"), "x").unwrap();
    std::fs::create_dir_all(project.join("subdir")).unwrap();
    std::fs::write(project.join(".env"), "API_TOKEN=do-not-leak").unwrap();
    let _ = std::process::Command::new("mkfifo")
        .arg(project.join("pipe"))
        .status();
    chart
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_travel_both_ways_and_hostile_paths_are_refused() {
    let rig = Rig::new().await;
    let temp = tempfile::tempdir().unwrap();
    // The temp root must be private (a shared one others can open is refused).
    let temp_root = temp.path().join("files");
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(&temp_root)
        .unwrap();
    let temp_root = temp_root.canonicalize().unwrap();
    let model = ScriptedModel::start().await.unwrap();
    model.on(
        "look at these files",
        vec![Step::text("I see a chart and notes.")],
    );
    model.on(
        "send the chart",
        vec![
            Step::tool(
                "mattermost_send_file",
                json!({"path": "chart.png", "message": "Here is the chart."}),
            ),
            Step::text("Sent."),
        ],
    );
    let hostile: Vec<(String, &str)> = vec![
        ("../../etc/passwd".into(), "outside this session's project"),
        ("/etc/passwd".into(), "outside this session's project"),
        ("passwd-link".into(), "resolves to `/etc/passwd`"),
        ("/dev/zero".into(), "resolves to `/dev/zero`, outside"),
        (
            "huge.bin".into(),
            "2 GiB (2147483648 bytes), above the 1 MiB limit",
        ),
        ("bad\u{7}name.txt".into(), "control characters"),
        ("subdir".into(), "is a directory"),
        (".env".into(), "environment file"),
        ("pipe".into(), "named pipe (FIFO)"),
    ];
    let mut steps: Vec<Step> = hostile
        .iter()
        .map(|(path, _)| Step::tool("mattermost_send_file", json!({"path": path})))
        .collect();
    // A good file, but aimed at a thread that is not this session's.
    const STRANGER_THREAD: &str = "abcdefghijklmnopqrstuvwxyz";
    steps.push(Step::tool(
        "mattermost_send_file",
        json!({"path": "chart.png", "thread": STRANGER_THREAD}),
    ));
    steps.push(Step::text("All refused."));
    model.on("try the hostile paths", steps);
    model.on("partial attachments", vec![Step::text("Got the good one.")]);
    let long: String = (1..=200)
        .map(|n| format!("Line {n:03} of a long answer, padded to forty chars.\n"))
        .collect();
    assert!(long.chars().count() > 8_000);
    model.on("long one please", vec![Step::text(long.clone())]);

    let env = rig.env(&[
        ("MATTERMOST_OWNER_USER_ID", &rig.alice.id),
        ("OPENCODE_MM_TEMP_DIR", &temp_root.display().to_string()),
        ("OPENCODE_MM_MAX_FILE_SIZE", &MIB.to_string()),
        ("OPENCODE_MM_ALLOWED_EXTENSIONS", "png,txt,md,pdf"),
        ("OPENCODE_MM_ATTACH_OVER", "5000"),
    ]);
    let oc = rig.opencode(&model, env).await;
    let chart = seed_project(&oc.project);
    let dm = rig.dm(&rig.alice.id);
    let alice = client_for(&rig, &rig.alice.token);

    // (1) An image and a text file attached in chat reach the model.
    let notes = b"meeting notes: ship on friday\n".to_vec();
    post_with_files(
        &alice,
        &rig.alice.id,
        &dm,
        "",
        "look at these files",
        &[("shot.png", png()), ("notes.txt", notes.clone())],
    )
    .await;
    let card = rig.card_for(&dm, 0).await;
    let root = card.id.clone();
    wait_finals(&rig, &root, 1).await;
    let request = request_for(&model, "look at these files");
    let prompt = last_user_text(&request);
    println!("prompt as the model saw it:\n{prompt}");
    let user = request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .unwrap()
        .to_string();
    assert!(
        user.contains(&format!("data:image/png;base64,{PNG}")),
        "the image part reached the model: {user}"
    );
    let session_dir = std::fs::read_dir(&temp_root)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let saved_notes = find_file(&session_dir, "notes.txt");
    assert_eq!(std::fs::read(&saved_notes).unwrap(), notes);
    assert!(
        prompt.contains(&format!(
            "- notes.txt (text/plain, 30 bytes): {}",
            saved_notes.display()
        )),
        "the text file is named by path: {prompt}"
    );
    assert!(
        prompt.contains("shot.png (image/png") && prompt.contains("given to you as a file part"),
        "{prompt}"
    );

    // (2) The model sends a project file: it lands in the thread, exact.
    rig.sim
        .post_as(&rig.alice.id, &dm, "send the chart", Some(&root))
        .unwrap();
    wait_finals(&rig, &root, 2).await;
    let sent = file_posts(&rig, &root);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0].message, "Here is the chart.");
    assert_eq!(sent[0].root_id, root, "posted in the session's thread");
    let bytes = alice
        .download_file(&sent[0].file_ids[0], 10 * MIB)
        .await
        .unwrap();
    assert_eq!(bytes, chart, "byte-identical");
    let results = tool_results(&request_for(&model, "send the chart"));
    assert!(
        results.iter().any(|r| r.contains("Sent `chart.png`")),
        "{results:?}"
    );

    // The session's own temporary directory counts as its own: the notes
    // received in (1) can go back.
    model.on(
        "send the notes back",
        vec![
            Step::tool(
                "mattermost_send_file",
                json!({"path": saved_notes.display().to_string()}),
            ),
            Step::text("Sent back."),
        ],
    );
    rig.sim
        .post_as(&rig.alice.id, &dm, "send the notes back", Some(&root))
        .unwrap();
    wait_finals(&rig, &root, 3).await;
    let sent = file_posts(&rig, &root);
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert_eq!(sent[1].message, "📎 `notes.txt`");
    assert_eq!(
        alice
            .download_file(&sent[1].file_ids[0], MIB)
            .await
            .unwrap(),
        notes
    );

    // (3) The hostile table: every path refused, clearly, nothing uploaded.
    let uploads_before = uploads(&rig);
    rig.sim
        .post_as(&rig.alice.id, &dm, "try the hostile paths", Some(&root))
        .unwrap();
    wait_finals(&rig, &root, 4).await;
    let results = tool_results(&request_for(&model, "try the hostile paths"));
    println!("tool results:\n{}", results.join("\n"));
    let fifo_made = oc.project.join("pipe").exists();
    // The conversation carries earlier turns' results too; this turn's
    // are the last ones, one per hostile path.
    assert!(results.len() > hostile.len(), "{results:#?}");
    let results = &results[results.len() - hostile.len() - 1..];
    assert!(
        results[hostile.len()].contains(&format!(
            "`{STRANGER_THREAD}` is not a thread of this session"
        )),
        "{results:#?}"
    );
    for (path, words) in &hostile {
        if path == "pipe" && !fifo_made {
            continue;
        }
        let quoted = format!("`{}`", path.escape_debug());
        assert!(
            results
                .iter()
                .any(|r| r.contains(&quoted) && r.contains(words)),
            "{path:?} refused with {words:?}: {results:#?}"
        );
    }
    assert!(
        results.iter().all(|r| !r.contains("Sent `")),
        "{results:#?}"
    );
    assert!(results.iter().all(|r| !r.contains("do-not-leak")));
    assert_eq!(uploads(&rig), uploads_before, "nothing was uploaded");
    assert_eq!(file_posts(&rig, &root).len(), 2, "no file was posted");

    // (4) Refused attachments get a clear reply; the prompt still runs.
    let good = b"the good one\n".to_vec();
    post_with_files(
        &alice,
        &rig.alice.id,
        &dm,
        &root,
        "partial attachments",
        &[
            ("big.png", vec![7u8; (MIB + MIB / 2) as usize]),
            ("tool.exe", b"MZ".to_vec()),
            ("good.txt", good.clone()),
        ],
    )
    .await;
    wait_finals(&rig, &root, 5).await;
    let notice = rig
        .bot_replies(&root)
        .into_iter()
        .find(|p| p.message.starts_with(":warning:"))
        .expect("a reply about the refused files");
    println!("notice:\n{}", notice.message);
    assert!(
        notice
            .message
            .contains("`big.png` is 1.5 MiB (1572864 bytes), above the 1 MiB limit"),
        "{}",
        notice.message
    );
    assert!(
        notice
            .message
            .contains("`tool.exe` is not an accepted kind of file")
            && notice.message.contains(".png, .txt, .md, .pdf"),
        "{}",
        notice.message
    );
    assert!(!notice.message.contains("good.txt"), "{}", notice.message);
    let prompt = last_user_text(&request_for(&model, "partial attachments"));
    let saved_good = find_file(&session_dir, "good.txt");
    assert_eq!(std::fs::read(&saved_good).unwrap(), good);
    assert!(
        prompt.contains(&saved_good.display().to_string()),
        "{prompt}"
    );
    assert!(
        prompt.contains("not received: `big.png`") && prompt.contains("not received: `tool.exe`"),
        "{prompt}"
    );
    assert!(find_files(&session_dir, "big.png").is_empty());
    assert!(find_files(&session_dir, "tool.exe").is_empty());

    // A reply longer than OPENCODE_MM_ATTACH_OVER arrives as a file, its
    // head inline.
    rig.sim
        .post_as(&rig.alice.id, &dm, "long one please", Some(&root))
        .unwrap();
    wait_finals(&rig, &root, 6).await;
    let sent = file_posts(&rig, &root);
    assert_eq!(sent.len(), 3, "{sent:#?}");
    let reply_file = &sent[2];
    println!("long reply file post: {}", reply_file.message);
    assert!(
        reply_file.message.starts_with("📎 Full reply (") && reply_file.message.contains("`reply-"),
        "{}",
        reply_file.message
    );
    let text = alice
        .download_file(&reply_file.file_ids[0], MIB)
        .await
        .unwrap();
    let text = String::from_utf8(text).unwrap();
    // OpenCode may drop the final newline of a text part; nothing else.
    assert!(
        text == long || text == long.trim_end(),
        "the file holds the reply exactly: {} vs {} chars",
        text.len(),
        long.len()
    );
    let head = rig
        .bot_replies(&root)
        .into_iter()
        .rev()
        .find(|p| is_final(&p.message))
        .unwrap();
    println!("long reply post:\n{}", head.message);
    assert!(head.message.starts_with("Line 001 of a long answer"));
    assert!(
        head.message.contains("📎 _Showing the first ")
            && head
                .message
                .contains("the full reply is attached below as `reply-"),
        "{}",
        head.message
    );
    assert!(head.message.chars().count() < 3_000, "{}", head.message);
    oc.stop().await;
}

/// Every file called `name` under `dir`.
fn find_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(find_files(&path, name));
        } else if path.file_name().is_some_and(|n| n == name) {
            out.push(path);
        }
    }
    out
}

fn find_file(dir: &Path, name: &str) -> PathBuf {
    let found = find_files(dir, name);
    assert_eq!(found.len(), 1, "{name} under {}: {found:?}", dir.display());
    found[0].clone()
}

/// The bot's reply in `root` that starts with `prefix`, the `n`th such.
async fn bot_reply_starting(rig: &Rig, root: &str, prefix: &str, n: usize) -> Post {
    let mut found = None;
    wait_until(
        Duration::from_secs(60),
        &format!("a reply {prefix:?}"),
        || {
            found = rig
                .bot_replies(root)
                .into_iter()
                .filter(|p| p.message.starts_with(prefix))
                .nth(n);
            found.is_some()
        },
    )
    .await;
    found.unwrap()
}

/// The number a `!!` list gives `path`.
fn number_of(list: &str, path: &str) -> String {
    list.lines()
        .find_map(|l| {
            let (n, rest) = l.split_once(". ")?;
            (rest == format!("`{path}`")).then(|| n.to_owned())
        })
        .unwrap_or_else(|| panic!("{path} is not listed:\n{list}"))
}

/// `!!path` references, end to end: a unique match reaches the model with
/// the prompt; close matches are listed and the author's `1,3`-style answer
/// sends exactly those; `0` sends none; no match, and a path outside the
/// project, run nothing and say why; `!!` inside a code block is text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bang_bang_references_send_project_files_with_the_prompt() {
    let rig = Rig::new().await;
    let model = ScriptedModel::start().await.unwrap();
    for phrase in ["summarise", "compare", "code ignored", "no handler please"] {
        model.on(phrase, vec![Step::text(format!("Done: {phrase}."))]);
    }
    // Bob may prompt too, but a list belongs to the prompt's author.
    let bob = rig.sim.create_user("bob").unwrap();
    rig.sim.add_to_team(&rig.team.id, &bob.id).unwrap();
    let env = rig.env(&[
        ("MATTERMOST_OWNER_USER_ID", &rig.alice.id),
        ("OPENCODE_MM_ALLOWED_USERS", &bob.id),
    ]);
    let oc = rig.opencode(&model, env).await;
    let project = oc.project.canonicalize().unwrap();
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::create_dir_all(project.join("build")).unwrap();
    let write = |p: &str, text: &str| std::fs::write(project.join(p), text).unwrap();
    write(".gitignore", "build/\n");
    write(
        "src/alpha_widget.rs",
        "// ALPHA-MARKER-7f3\npub fn alpha() {}\n",
    );
    for n in ["one", "two", "three"] {
        write(
            &format!("src/handler_{n}.rs"),
            &format!("// HANDLER-{}-MARKER\n", n.to_uppercase()),
        );
    }
    write("build/handler_ignored.rs", "// IGNORED-MARKER\n");
    let dm = rig.dm(&rig.alice.id);
    let alice =
        |text: &str, root: Option<&str>| rig.sim.post_as(&rig.alice.id, &dm, text, root).unwrap();

    // A unique match: a new session, and the file goes with the prompt.
    alice("summarise !!alpha_widget please", None);
    let root = rig.card_for(&dm, 0).await.id;
    wait_finals(&rig, &root, 1).await;
    let prompt = last_user_text(&request_for(&model, "summarise"));
    println!("prompt with a reference:\n{prompt}");
    let path = project.join("src/alpha_widget.rs").display().to_string();
    assert!(
        prompt.contains("ALPHA-MARKER-7f3"),
        "the file's text: {prompt}"
    );
    assert!(
        prompt.contains(&format!(
            "Called the Read tool with the following input: {{\"filePath\":\"{path}\"}}"
        )),
        "as a file part OpenCode read: {prompt}"
    );
    assert!(
        prompt.contains(&format!("- !!alpha_widget → {path} (")),
        "{prompt}"
    );

    // Close matches: a list; nothing runs until alice answers.
    alice("compare !!handler files", Some(&root));
    let list = bot_reply_starting(&rig, &root, ":mag: **Several files match.**", 0)
        .await
        .message;
    println!("list:\n{list}");
    assert!(list.contains("`!!handler`:"), "{list}");
    assert!(
        !list.contains("handler_ignored"),
        "ignored files are never offered: {list}"
    );
    let one = number_of(&list, "src/handler_one.rs");
    let three = number_of(&list, "src/handler_three.rs");
    number_of(&list, "src/handler_two.rs");
    assert!(list.contains("Only @alice can answer"), "{list}");
    assert!(
        list.contains("** Reply with the numbers"),
        "a DM needs no mention: {list}"
    );
    rig.sentinel(&rig.alice.id).await;
    assert_eq!(
        requests_for(&model, "compare"),
        0,
        "the prompt waits for the answer"
    );
    alice(&format!("{one},{three}"), Some(&root));
    wait_finals(&rig, &root, 2).await;
    let prompt = last_user_text(&request_for(&model, "compare"));
    println!("prompt after the answer:\n{prompt}");
    assert!(
        prompt.contains("HANDLER-ONE-MARKER") && prompt.contains("HANDLER-THREE-MARKER"),
        "{prompt}"
    );
    assert!(
        !prompt.contains("HANDLER-TWO-MARKER"),
        "only the chosen files: {prompt}"
    );
    assert_eq!(requests_for(&model, "compare"), 1, "the prompt ran once");

    // No match: said, nothing runs.
    alice("explain !!zzz_no_such_file now", Some(&root));
    let told = bot_reply_starting(&rig, &root, ":mag: **Nothing was sent", 0)
        .await
        .message;
    assert!(
        told.contains("`!!zzz_no_such_file`: no file in this project matches"),
        "{told}"
    );
    // A path outside the project: refused, nothing runs.
    alice("read !!../../../../etc/passwd now", Some(&root));
    let told = bot_reply_starting(&rig, &root, ":mag: **Nothing was sent", 1)
        .await
        .message;
    println!("refusal:\n{told}");
    assert!(
        told.contains("`!!../../../../etc/passwd`: `../../../../etc/passwd` resolves to `/etc/passwd`, outside this session's project"),
        "{told}"
    );
    // More references than a message may carry: refused whole.
    let many: String = (0..11).map(|n| format!("!!f{n} ")).collect();
    alice(&format!("too many {many}"), Some(&root));
    let told = bot_reply_starting(&rig, &root, ":no_entry: This message has 11", 0)
        .await
        .message;
    assert!(told.contains("at most 10"), "{told}");
    rig.sentinel(&rig.alice.id).await;
    assert_eq!(requests_for(&model, "too many"), 0);
    assert_eq!(requests_for(&model, "explain !!"), 0);
    assert_eq!(requests_for(&model, "read !!"), 0);
    assert!(
        model
            .requests()
            .iter()
            .all(|r| !r.to_string().contains("root:x:0:0"))
    );

    // In a code block `!!` is text: the prompt runs without a file.
    alice("see\n```\n!!alpha_widget\n```\ncode ignored", Some(&root));
    wait_finals(&rig, &root, 3).await;
    let prompt = last_user_text(&request_for(&model, "code ignored"));
    assert!(prompt.contains("!!alpha_widget"), "{prompt}");
    assert!(
        !prompt.contains("ALPHA-MARKER") && !prompt.contains("[Referenced files]"),
        "{prompt}"
    );

    // Close matches in a new top-level message: the session starts, the
    // list goes in its thread, and `0` runs the prompt without the files.
    alice("no handler please: !!handler", None);
    let root2 = rig.card_for(&dm, 1).await.id;
    let list = bot_reply_starting(&rig, &root2, ":mag: **Several files match.**", 0)
        .await
        .message;
    assert!(list.contains("src/handler_two.rs"), "{list}");
    alice("0", Some(&root2));
    wait_finals(&rig, &root2, 1).await;
    let prompt = last_user_text(&request_for(&model, "no handler please"));
    assert!(
        prompt.contains("- !!handler: the person chose to send no file"),
        "{prompt}"
    );
    assert!(!prompt.contains("HANDLER-"), "{prompt}");

    // In a channel: bob's number in alice's list thread is an ordinary
    // prompt; alice's answer picks the files.
    let channel = rig.channel_with_bot("dev");
    rig.sim.add_member(&channel.id, &bob.id).unwrap();
    let asked = rig
        .sim
        .post_as(
            &rig.alice.id,
            &channel.id,
            "@opencode-bot channel compare !!handler",
            None,
        )
        .unwrap();
    let list = bot_reply_starting(&rig, &asked.id, ":mag: **Several files match.**", 0)
        .await
        .message;
    assert!(
        list.contains("Reply mentioning @opencode-bot with the numbers"),
        "{list}"
    );
    let two = number_of(&list, "src/handler_two.rs");
    let three = number_of(&list, "src/handler_three.rs");
    let one = number_of(&list, "src/handler_one.rs");
    rig.sim
        .post_as(
            &bob.id,
            &channel.id,
            &format!("@opencode-bot {one}"),
            Some(&asked.id),
        )
        .unwrap();
    wait_finals(&rig, &asked.id, 1).await;
    assert_eq!(
        requests_for(&model, "channel compare"),
        0,
        "bob cannot answer"
    );
    let bobs = last_user_text(model.requests().last().unwrap());
    assert!(
        bobs.contains("from @bob") && bobs.trim_end().ends_with(&one),
        "{bobs}"
    );
    rig.sim
        .post_as(
            &rig.alice.id,
            &channel.id,
            &format!("@opencode-bot {two} {three}"),
            Some(&asked.id),
        )
        .unwrap();
    wait_finals(&rig, &asked.id, 2).await;
    let prompt = last_user_text(&request_for(&model, "channel compare"));
    assert!(
        prompt.contains("HANDLER-TWO-MARKER") && prompt.contains("HANDLER-THREE-MARKER"),
        "{prompt}"
    );
    assert!(!prompt.contains("HANDLER-ONE-MARKER"), "{prompt}");
    oc.stop().await;
}
