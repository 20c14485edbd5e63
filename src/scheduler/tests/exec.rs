//! A run against a fake OpenCode: the prompt goes to a new session, the
//! final text comes back, timeouts and failures become the result, and
//! long results split across posts.

use pretty_assertions::assert_eq;

use super::*;
use crate::scheduler::exec::{self, Ending, Produced};

#[tokio::test(start_paused = true)]
async fn a_run_sends_the_prompt_to_a_new_session_and_takes_the_final_text() {
    let store = mem();
    let (sch, mut run) = claimed(&store).await;
    let oc = FakeOpenCode {
        reply: Mutex::new(vec![
            text_part("prt_1", "First part."),
            text_part("prt_2", "Second part."),
        ]),
        busy_polls: Mutex::new(3),
        ..FakeOpenCode::default()
    };
    let produced = exec::produce(
        &oc,
        store.as_ref(),
        &sch,
        &mut run,
        "run for 09:00",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(produced.ending, Ending::Done);
    assert_eq!(produced.text, "First part.\n\nSecond part.");
    let session = produced.session.clone().unwrap();
    assert_eq!(session.title, "Scheduled: weekday-prs");
    let prompts = oc.prompts.lock().unwrap().clone();
    assert_eq!(prompts.len(), 1);
    assert!(
        prompts[0].text.starts_with(
            "[Scheduled prompt \"weekday-prs\" (0 9 * * 1-5 in America/New_York), run for 09:00;"
        ),
        "{}",
        prompts[0].text
    );
    assert!(prompts[0].text.ends_with("\nsummarise"));
    assert_eq!(prompts[0].agent.as_deref(), Some("plan"));
    assert_eq!(
        prompts[0].model.as_ref().map(|m| m.to_string()).as_deref(),
        Some("scripted/scripted-2")
    );
    // The session was recorded on the run as soon as it existed.
    let stored = store.schedule_runs("s1", 1).await.unwrap();
    assert_eq!(stored[0].session_id.as_deref(), Some("ses_sched1234"));

    let body = exec::result_body("weekday-prs", &produced);
    assert_eq!(
        body,
        ":bell: **Scheduled: weekday-prs**\n\nFirst part.\n\nSecond part."
    );
    let footer = exec::result_footer(&sch, &produced);
    assert!(footer.starts_with("✅ Done in "), "{footer}");
    assert!(
        footer.contains("`0 9 * * 1-5` (America/New_York)"),
        "{footer}"
    );
    assert!(footer.contains("session `ses_sche`"), "{footer}");
    assert!(
        footer.contains("Reply in this thread to continue this session."),
        "{footer}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_run_that_outlives_its_timeout_is_stopped_and_reported() {
    let store = mem();
    let (sch, mut run) = claimed(&store).await;
    let oc = FakeOpenCode {
        reply: Mutex::new(vec![text_part("prt_1", "Half an answer")]),
        forever_busy: true,
        ..FakeOpenCode::default()
    };
    let produced = exec::produce(
        &oc,
        store.as_ref(),
        &sch,
        &mut run,
        "now",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(produced.ending, Ending::TimedOut(Duration::from_secs(30)));
    assert_eq!(oc.aborted.lock().unwrap().clone(), ["ses_sched1234"]);
    let body = exec::result_body(&sch.name, &produced);
    assert!(
        body.starts_with(
            ":bell: **Scheduled: weekday-prs**\n\n:hourglass: The run timed out after 30s"
        ),
        "{body}"
    );
    assert!(
        body.ends_with("What it said so far:\n\nHalf an answer"),
        "{body}"
    );
    assert!(exec::result_footer(&sch, &produced).starts_with("⏱️ Timed out after 30"));
}

#[tokio::test(start_paused = true)]
async fn failures_become_the_result() {
    let store = mem();
    let (sch, mut run) = claimed(&store).await;
    let oc = FakeOpenCode {
        fail_session: true,
        ..FakeOpenCode::default()
    };
    let produced = exec::produce(
        &oc,
        store.as_ref(),
        &sch,
        &mut run,
        "now",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        matches!(&produced.ending, Ending::Failed(e) if e.contains("could not start an OpenCode session"))
    );
    assert!(produced.session.is_none());
    let body = exec::result_body(&sch.name, &produced);
    assert!(
        body.contains(":warning: The run failed: could not start an OpenCode session"),
        "{body}"
    );
    let footer = exec::result_footer(&sch, &produced);
    assert!(footer.starts_with("❌ Failed after"), "{footer}");
    assert!(
        !footer.contains("Reply in this thread"),
        "no session to continue: {footer}"
    );

    // Idle without ever answering: given up after a while, not forever.
    let oc = FakeOpenCode::default();
    let produced = exec::produce(
        &oc,
        store.as_ref(),
        &sch,
        &mut run,
        "now",
        Duration::from_secs(600),
    )
    .await;
    assert_eq!(
        produced.ending,
        Ending::Failed("OpenCode went idle without answering the prompt".into())
    );
    assert!(produced.elapsed < Duration::from_secs(60));
}

#[test]
fn long_results_split_across_posts_and_rebuild_exactly() {
    let text: String = (0..4000).map(|i| format!("line {i}\n")).collect();
    let produced = Produced {
        session: Some(Session {
            id: "ses_x".into(),
            ..Session::default()
        }),
        text: text.clone(),
        ending: Ending::Done,
        elapsed: Duration::from_secs(3),
    };
    let sch = schedule("s1", "0 9 * * *", "UTC", utc(2026, 1, 1, 0, 0));
    let limits = crate::render::Limits::new(4000);
    let posts = crate::render::layout::posts(
        &exec::result_body("big", &produced),
        &exec::result_footer(&sch, &produced),
        crate::render::MetaKind::Final,
        &limits,
    );
    assert!(posts.len() > 5);
    assert!(posts.iter().all(|p| p.chars().count() <= 4000));
    assert!(posts[0].starts_with(":bell: **Scheduled: big**\n\nline 0\n"));
    let mut rebuilt = String::new();
    for (i, p) in posts.iter().enumerate() {
        if i + 1 == posts.len() {
            rebuilt.push_str(&p[..p.rfind(crate::render::layout::SEPARATOR).unwrap()]);
        } else {
            rebuilt.push_str(p.strip_suffix(crate::render::layout::CONTINUED).unwrap());
        }
    }
    assert_eq!(rebuilt, format!(":bell: **Scheduled: big**\n\n{text}"));
}
