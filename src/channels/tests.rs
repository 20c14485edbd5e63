//! Pure parts of the channels feature: `!team` parsing, guest answers, the
//! delegation table and the old team file.

use pretty_assertions::assert_eq;

use super::Tier;
use super::delegation::{Decision, addressees, decide};
use super::guests::{Answer, decided_text, describe, request_text};
use super::team::{TeamCommand, default_team_files, list, parse, read_team_file};
use crate::store::{GuestState, Teammate};

#[test]
fn team_commands_parse() {
    assert_eq!(parse(""), Ok(TeamCommand::Show));
    assert_eq!(parse("  LIST "), Ok(TeamCommand::List));
    assert_eq!(parse("add @Bonnie"), Ok(TeamCommand::Add("bonnie".into())));
    assert_eq!(
        parse("add yi.ran_2-x"),
        Ok(TeamCommand::Add("yi.ran_2-x".into()))
    );
    assert_eq!(
        parse("remove @bonnie"),
        Ok(TeamCommand::Remove("bonnie".into()))
    );
}

#[test]
fn hostile_team_commands_are_refused_with_a_reason() {
    for (args, why) in [
        ("add", "who?"),
        ("remove", "who?"),
        ("add @", "not a username"),
        ("add @@bonnie", "not a username"),
        ("add @bon nie", "one person at a time"),
        ("add @a @b @c", "one person at a time"),
        ("add @bonnie; DROP TABLE teammates", "one person at a time"),
        ("add @bön", "not a username"),
        ("add @`rm`", "not a username"),
        ("add @`rm -rf`", "one person at a time"),
        ("add <@x>", "not a username"),
        ("clear", "not a team command"),
        ("list everything", "not a team command"),
        ("promote @bonnie", "not a team command"),
    ] {
        let e = parse(args).unwrap_err();
        assert!(e.contains(why), "{args:?}: {e}");
        // What is echoed is quoted once: no typed backtick breaks out.
        assert!(e.matches('`').count() <= 2, "backticks echoed: {e}");
    }
    let long = format!("add @{}", "a".repeat(65));
    assert!(parse(&long).unwrap_err().contains("not a username"));
    let echoed = parse(&"x".repeat(500)).unwrap_err();
    assert!(echoed.chars().count() < 80, "{echoed}");
}

#[test]
fn the_team_list_is_numbered() {
    let mate = |name: &str| Teammate {
        owner_user_id: "o".into(),
        user_id: format!("id-{name}"),
        username: name.into(),
        added_by: "o".into(),
        added_at: 1,
    };
    assert_eq!(
        list(&[mate("bonnie"), mate("yiran")]),
        ":busts_in_silhouette: **Team members (2)**\n1. @bonnie\n2. @yiran"
    );
    assert!(list(&[]).starts_with("No teammates yet"));
}

#[test]
fn guest_answers_are_strict() {
    assert_eq!(Answer::parse("1", true), Some(Answer::Once));
    assert_eq!(Answer::parse(" 2 ", true), Some(Answer::User));
    assert_eq!(Answer::parse("3", true), Some(Answer::Everyone));
    assert_eq!(Answer::parse("approve 2", true), Some(Answer::User));
    assert_eq!(Answer::parse("DENY", true), Some(Answer::Deny));
    assert_eq!(Answer::parse("no", true), Some(Answer::Deny));
    assert_eq!(Answer::parse("0", true), Some(Answer::Deny));
    for junk in [
        "",
        "4",
        "12",
        "1.",
        "one",
        "2 please",
        "approve",
        "approve 9",
        "１",
        "-1",
        "1,3",
        "yes",
        "deny!",
        "`1`",
        "1\n2",
    ] {
        assert_eq!(Answer::parse(junk, true), None, "{junk:?}");
    }
}

#[test]
fn request_and_decision_posts_say_who_what_and_when() {
    let half_hour = std::time::Duration::from_secs(1800);
    assert_eq!(describe(half_hour), "30 min");
    assert_eq!(describe(std::time::Duration::from_secs(7200)), "2 h");
    assert_eq!(describe(std::time::Duration::from_secs(90)), "90 s");
    let req = request_text(
        "christine",
        "gus",
        "@bot check this\nsecond line",
        half_hour,
    );
    assert!(req.contains("@christine"));
    assert!(req.contains("@gus wants to send a prompt"));
    assert!(req.contains("> @bot check this\n"));
    assert!(!req.contains("second line"));
    assert!(req.contains("Expires in 30 min"));
    for (state, says) in [
        (
            GuestState::Once,
            "approved** by @bonnie: @gus's message (this message only)",
        ),
        (
            GuestState::User,
            "approved** by @bonnie: @gus, for this thread",
        ),
        (
            GuestState::Everyone,
            "approved** by @bonnie: everyone in this thread",
        ),
        (GuestState::Denied, "denied** by @bonnie"),
        (
            GuestState::Expired,
            "expired**: nobody answered within 30 min",
        ),
    ] {
        let text = decided_text("gus", state, "bonnie", half_hour);
        assert!(text.contains(says), "{state:?}: {text}");
    }
}

#[test]
fn addressees_are_the_mentions_beside_the_bot() {
    let a = |m: &str| addressees(m, "kaji");
    assert_eq!(
        a("@kaji @Christine please fix the login bug"),
        ["christine"]
    );
    assert_eq!(a("@christine @kaji fix it"), ["christine"]);
    assert_eq!(a("@kaji, @christine: fix it"), ["christine"]);
    assert_eq!(a("@kaji fix it with @christine"), Vec::<String>::new());
    assert_eq!(a("@kaji fix it"), Vec::<String>::new());
    assert_eq!(a("@kaji @a @b @a go"), ["a", "b"]);
    assert_eq!(a("no mention of the bot @christine"), Vec::<String>::new());
    assert_eq!(a("@kaji @@christine"), Vec::<String>::new());
}

#[test]
fn the_delegation_table_has_six_rows() {
    let owner = Some("christine");
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // A teammate with @bot @owner: delegated (membership checked after).
    assert_eq!(
        decide(Tier::Teammate, &names(&["christine"]), owner),
        Decision::Delegate
    );
    // A teammate with @bot alone: silent.
    assert_eq!(decide(Tier::Teammate, &[], owner), Decision::Silent);
    // Someone not on the team with @bot @owner: silent.
    assert_eq!(
        decide(Tier::Guest, &names(&["christine"]), owner),
        Decision::Silent
    );
    // The owner with @bot: a session.
    assert_eq!(decide(Tier::Owner, &[], owner), Decision::Session);
    // The owner with @bot @someone_else: silent.
    assert_eq!(
        decide(Tier::Owner, &names(&["yiran"]), owner),
        Decision::Silent
    );
    // (The owner outside the channel is a membership check: see the e2e.)
    // And around the rows:
    assert_eq!(
        decide(Tier::Owner, &names(&["christine"]), owner),
        Decision::Session
    );
    assert_eq!(
        decide(Tier::Teammate, &names(&["christine", "yiran"]), owner),
        Decision::Silent
    );
    assert_eq!(
        decide(Tier::Teammate, &names(&["christine"]), None),
        Decision::Silent
    );
    assert_eq!(decide(Tier::Allowed, &[], owner), Decision::Session);
    assert_eq!(
        decide(Tier::Allowed, &names(&["christine"]), owner),
        Decision::Silent
    );
}

#[test]
fn the_old_team_file_is_read_for_its_owner_only() {
    let owner = "cmr7sncacib4xfhd6yo3n4tf5e";
    let text = format!(
        r#"{{"version":1,"team":{{"id":"x","name":"t","ownerId":"{owner}","members":[
            {{"userId":"bbbbbbbbbbbbbbbbbbbbbbbbbb","username":"Bonnie","addedAt":1,"addedBy":"{owner}","role":"member"}},
            {{"userId":"short","username":"bad","role":"member"}},
            {{"userId":"cccccccccccccccccccccccccc","username":"no spaces","role":"member"}},
            {{"userId":"{owner}","username":"me","role":"admin"}}
        ],"settings":{{}}}}}}"#
    );
    let (members, skipped) = read_team_file(&text, owner).unwrap();
    assert_eq!(
        members,
        vec![("bbbbbbbbbbbbbbbbbbbbbbbbbb".to_owned(), "bonnie".to_owned())]
    );
    assert_eq!(skipped, 3);
    assert!(read_team_file(&text, "someoneelse0000000000000000").is_err());
    for junk in ["", "{}", "[]", "{\"team\":{}}", "not json"] {
        assert!(read_team_file(junk, owner).is_err(), "{junk}");
    }
    assert_eq!(
        default_team_files(Some(std::path::Path::new("/home/me"))),
        [
            std::path::PathBuf::from("/home/me/.config/opencode/mattermost-team.json"),
            std::path::PathBuf::from("/home/me/.opencode/mattermost-team.json"),
        ]
    );
    assert!(default_team_files(None).is_empty());
}

#[test]
fn with_another_numbered_answer_owed_only_explicit_guest_answers_count() {
    for bare in ["1", "2", "3", "0", " 2 "] {
        assert_eq!(Answer::parse(bare, false), None, "{bare:?}");
    }
    assert_eq!(Answer::parse("approve 1", false), Some(Answer::Once));
    assert_eq!(Answer::parse("Approve 3", false), Some(Answer::Everyone));
    assert_eq!(Answer::parse("deny", false), Some(Answer::Deny));
    assert_eq!(Answer::parse("no", false), Some(Answer::Deny));
}
