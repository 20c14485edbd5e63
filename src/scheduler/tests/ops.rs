//! The operations behind the tools and the chat command: add, list,
//! enable, disable, remove and run, and every bad input refused with the fix.

use crate::tz::Zone as Tz;
use pretty_assertions::assert_eq;

use super::*;
use crate::scheduler::ops::Ops;

#[tokio::test]
async fn add_list_enable_disable_remove() {
    let store = mem();
    // Friday 2026-03-06, 15:00 in New York.
    let clock = ManualClock::at(utc(2026, 3, 6, 20, 0));
    let s = scheduler(store.clone(), clock.clone(), "a");
    let people = FakePeople::new();
    let ops = Ops {
        store: store.as_ref(),
        scheduler: &s,
        people: &people,
        owner: Some(OWNER),
        default_zone: Tz::get("Europe/Berlin").unwrap(),
        permitted: PERMITTED,
        min_interval: MIN_INTERVAL,
    };

    assert!(ops.list().await.unwrap().contains("No schedules yet"));

    let mut req = add("weekday-prs", " 0 9 * * 1-5 ", "  Summarise the open PRs ");
    req.timezone = Some("America/New_York".into());
    req.user = Some("@alice".into());
    req.model = Some("scripted/scripted-2".into());
    req.agent = Some("plan".into());
    let text = ops.add(req, TOOL).await.unwrap();
    assert!(
        text.contains("Added schedule `weekday-prs`: `0 9 * * 1-5`"),
        "{text}"
    );
    // Next is Monday 09:00, after DST began on Sunday.
    assert!(
        text.contains("Next run: 2026-03-09 09:00 EDT (2026-03-09 13:00 UTC)"),
        "{text}"
    );
    assert!(text.contains("@alice"), "{text}");

    let stored = store
        .schedule_by_name("weekday-prs")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.cron, "0 9 * * 1-5");
    assert_eq!(stored.prompt, "Summarise the open PRs");
    assert_eq!(stored.target_user_id, ALICE);
    assert_eq!(stored.model.as_deref(), Some("scripted/scripted-2"));
    assert_eq!(stored.agent.as_deref(), Some("plan"));
    assert_eq!(stored.directory, DIR);
    assert_eq!(stored.created_by, "opencode:ses_1");
    assert!(stored.id.starts_with("sch_"), "{}", stored.id);

    // Defaults: the configured zone and the owner.
    let text = ops
        .add(add("nightly", "@daily", "Check the build"), TOOL)
        .await
        .unwrap();
    assert!(text.contains("in Europe/Berlin"), "{text}");
    assert!(text.contains("@owner"), "{text}");

    let list = ops.list().await.unwrap();
    assert!(list.contains("**Schedules** (2)"), "{list}");
    assert!(
        list.contains(
            "**weekday-prs** · 🟢 enabled · `0 9 * * 1-5` · America/New_York · DM to @alice"
        ),
        "{list}"
    );
    assert!(
        list.contains("- Next: 2026-03-09 09:00 EDT (2026-03-09 13:00 UTC)"),
        "{list}"
    );
    assert!(
        list.contains("- Next: 2026-03-07 00:00 CET (2026-03-06 23:00 UTC)"),
        "{list}"
    );
    assert!(list.contains("- Last: never ran"), "{list}");
    assert!(list.contains("- When: At 09:00"), "{list}");
    assert!(list.contains("- Prompt: Summarise the open PRs"), "{list}");

    // A run and its outcome show up, with a link to the result.
    let due = {
        let (claim, mut run) = s.claim_now(&stored).await.unwrap();
        assert_eq!(claim, RunClaim::Won);
        run.state = RunState::Done;
        run.finished_at = Some(run.claimed_at + 42_000);
        run.post_id = Some("post1".into());
        store.update_schedule_run(&run).await.unwrap();
        run
    };
    let list = ops.list().await.unwrap();
    assert!(
        list.contains("- Last: ✅ 2026-03-06 15:00 EST (on demand): done in 42s · [result](http://chat/_redirect/pl/post1)"),
        "{list}"
    );
    let _ = due;

    let text = ops.set_enabled("weekday-prs", false).await.unwrap();
    assert!(text.contains("Disabled"), "{text}");
    assert!(
        ops.set_enabled("weekday-prs", false)
            .await
            .unwrap()
            .contains("already disabled")
    );
    let list = ops.list().await.unwrap();
    assert!(list.contains("🔴 disabled"), "{list}");
    assert!(list.contains("- Next: none while disabled"), "{list}");
    let text = ops.set_enabled("weekday-prs", true).await.unwrap();
    assert!(
        text.contains("next run 2026-03-09 09:00 EDT (2026-03-09 13:00 UTC)"),
        "{text}"
    );

    let text = ops.remove("nightly").await.unwrap();
    assert!(text.contains("Removed schedule `nightly`"), "{text}");
    assert!(store.schedule_by_name("nightly").await.unwrap().is_none());
}

#[tokio::test]
async fn every_bad_input_is_refused_with_the_fix() {
    let store = mem();
    let clock = ManualClock::at(utc(2026, 3, 6, 12, 0));
    let s = scheduler(store.clone(), clock.clone(), "a");
    let mut people = FakePeople::new();
    let ops = Ops {
        store: store.as_ref(),
        scheduler: &s,
        people: &people,
        owner: Some(OWNER),
        default_zone: Tz::utc(),
        permitted: PERMITTED,
        min_interval: MIN_INTERVAL,
    };
    ops.add(add("taken", "0 9 * * *", "p"), TOOL).await.unwrap();

    let with = |f: &dyn Fn(&mut AddRequest)| {
        let mut r = add("fresh", "0 9 * * *", "do it");
        f(&mut r);
        r
    };
    let cases: Vec<(AddRequest, &str)> = vec![
        (with(&|r| r.cron = "0 9 * *".into()), "e.g. `0 9 * * 1-5`"),
        (
            with(&|r| r.cron = "0 0 31 2 *".into()),
            "never matches a real date",
        ),
        (
            with(&|r| r.timezone = Some("Mars/Base".into())),
            "use an IANA name such as `America/New_York`",
        ),
        (
            with(&|r| r.timezone = Some("berlin".into())),
            "did you mean `Europe/Berlin`?",
        ),
        (
            with(&|r| r.user = Some("@nobody".into())),
            "no Mattermost user `@nobody`: check the spelling",
        ),
        (
            with(&|r| r.user = Some("@opencode-bot".into())),
            "is a bot or a deactivated account",
        ),
        (
            with(&|r| r.user = Some("gone".into())),
            "is a bot or a deactivated account",
        ),
        (
            with(&|r| r.name = "taken".into()),
            "already exists: pick another name, or remove the old one first",
        ),
        (with(&|r| r.name = "two words".into()), "e.g. `daily-prs`"),
        (with(&|r| r.name = String::new()), "e.g. `daily-prs`"),
        (with(&|r| r.name = "x".repeat(65)), "1 to 64"),
        (with(&|r| r.prompt = "  \n ".into()), "the prompt is empty"),
        (
            with(&|r| r.model = Some("gpt-4".into())),
            "use provider/model",
        ),
        (
            with(&|r| r.agent = Some("rm -rf".into())),
            "invalid agent name",
        ),
    ];
    for (req, says) in cases {
        let err = ops.add(req.clone(), TOOL).await.unwrap_err().to_string();
        assert!(err.contains(says), "{req:?}: {err}");
    }
    assert_eq!(
        store.schedules().await.unwrap().len(),
        1,
        "nothing was stored"
    );

    for (op, err) in [
        ("remove", ops.remove("nope").await.unwrap_err()),
        ("enable", ops.set_enabled("nope", true).await.unwrap_err()),
        ("disable", ops.set_enabled("nope", false).await.unwrap_err()),
        ("run", ops.claim_now("nope").await.map(|_| ()).unwrap_err()),
    ] {
        let m = err.to_string();
        assert!(
            m.contains("no schedule named `nope`; existing schedules: `taken`"),
            "{op}: {m}"
        );
    }

    // Without an owner, a tool must name the user.
    let no_owner = Ops {
        owner: None,
        default_zone: ops.default_zone.clone(),
        ..ops
    };
    let err = no_owner
        .add(add("fresh", "0 9 * * *", "p"), TOOL)
        .await
        .unwrap_err();
    assert_eq!(err, ScheduleError::NoTarget);
    assert!(err.to_string().contains("MATTERMOST_OWNER_USER_ID"));

    // Chat: the caller by default; only the owner may name someone else.
    let bob = Caller::Chat { user_id: BOB };
    let mut req = add("for-bob", "0 9 * * *", "p");
    ops.add(req.clone(), bob).await.unwrap();
    assert_eq!(
        store
            .schedule_by_name("for-bob")
            .await
            .unwrap()
            .unwrap()
            .target_user_id,
        BOB
    );
    req.name = "for-alice".into();
    req.user = Some("@alice".into());
    assert_eq!(
        ops.add(req.clone(), bob).await.unwrap_err(),
        ScheduleError::OthersTarget
    );
    ops.add(req, Caller::Chat { user_id: OWNER }).await.unwrap();

    // A schedule's result goes only to permitted people, whoever asks.
    let mut req = add("to-mallory", "0 9 * * *", "p");
    req.user = Some("@mallory".into());
    let err = ops.add(req, TOOL).await.unwrap_err();
    assert_eq!(err, ScheduleError::NotPermitted("mallory".into()));
    assert!(
        err.to_string().contains("OPENCODE_MM_ALLOWED_USERS"),
        "{err}"
    );
    assert!(
        store
            .schedule_by_name("to-mallory")
            .await
            .unwrap()
            .is_none()
    );

    // Too often: the limit is named, nothing is stored.
    for (expr, every) in [("* * * * *", "1m 0s"), ("0,2 9 * * *", "2m 0s")] {
        let err = ops
            .add(add("busy", expr, "p"), TOOL)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("every {every}")), "{expr}: {err}");
        assert!(err.contains("at most every 5m 0s"), "{expr}: {err}");
    }
    ops.add(add("calm", "*/5 * * * *", "p"), TOOL)
        .await
        .unwrap();
    assert!(store.schedule_by_name("busy").await.unwrap().is_none());

    // A prompt over the limit is refused with the limit, never cut.
    let long = "x".repeat(20_001);
    let err = ops
        .add(add("long", "0 9 * * *", &long), TOOL)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ScheduleError::PromptTooLong {
            chars: 20_001,
            max: 20_000
        }
    );
    assert!(store.schedule_by_name("long").await.unwrap().is_none());

    // Naming a user needs the connection.
    people.connected = false;
    let offline = Ops {
        store: store.as_ref(),
        scheduler: &s,
        people: &people,
        owner: Some(OWNER),
        default_zone: Tz::utc(),
        permitted: PERMITTED,
        min_interval: MIN_INTERVAL,
    };
    let mut req = add("offline", "0 9 * * *", "p");
    req.user = Some("@alice".into());
    let err = offline.add(req, TOOL).await.unwrap_err().to_string();
    assert!(err.contains("run `mattermost_connect` first"), "{err}");

    // A schedule of another project runs only there.
    let mut elsewhere = schedule("s9", "0 9 * * *", "UTC", utc(2026, 3, 1, 0, 0));
    elsewhere.name = "elsewhere".into();
    elsewhere.directory = "/src/other".into();
    store.add_schedule(&elsewhere).await.unwrap();
    let err = offline
        .claim_now("elsewhere")
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("run it from the OpenCode serving that directory"),
        "{err}"
    );
    assert!(
        offline
            .list()
            .await
            .unwrap()
            .contains("runs in `/src/other`")
    );
}
