use serde_json::json;

use super::*;
use crate::opencode::PermissionReply;
use crate::opencode::events::{PermissionAsked, QuestionInfo, QuestionOption};

fn question(labels: &[&str], multiple: bool, custom: Option<bool>) -> QuestionInfo {
    QuestionInfo {
        question: "Pick one".into(),
        header: "Pick".into(),
        options: labels
            .iter()
            .map(|l| QuestionOption {
                label: (*l).into(),
                description: format!("about {l}"),
            })
            .collect(),
        multiple,
        custom,
    }
}

#[test]
fn permission_words() {
    for (text, want) in [
        ("allow", Some(PermissionReply::Once)),
        ("  Y ", Some(PermissionReply::Once)),
        ("yes!", Some(PermissionReply::Once)),
        ("Always", Some(PermissionReply::Always)),
        ("allow always.", Some(PermissionReply::Always)),
        ("deny", Some(PermissionReply::Reject)),
        ("N", Some(PermissionReply::Reject)),
        ("no", Some(PermissionReply::Reject)),
        ("allow it but be careful", None),
        ("yesterday", None),
        ("", None),
        ("1", None),
    ] {
        assert_eq!(parse_permission(text), want, "{text:?}");
    }
}

#[test]
fn reactions_use_mattermost_names() {
    assert_eq!(reaction("white_check_mark"), Some(Reaction::Allow));
    assert_eq!(reaction("x"), Some(Reaction::Deny));
    assert_eq!(reaction("octagonal_sign"), Some(Reaction::Stop));
    assert_eq!(reaction("repeat"), Some(Reaction::Retry));
    assert_eq!(reaction("wastebasket"), Some(Reaction::Clear));
    assert_eq!(reaction("arrow_forward"), Some(Reaction::Run));
    for other in ["", "eyes", ":x:", "X", "white_check_mark ", "🛑"] {
        assert_eq!(reaction(other), None, "{other:?}");
    }
}

#[test]
fn numbers_pick_labels() {
    let single = question(&["Red", "Blue"], false, None);
    assert_eq!(parse_question("2", &single).unwrap(), ["Blue"]);
    assert_eq!(parse_question(" 1 ", &single).unwrap(), ["Red"]);
    assert_eq!(
        parse_question("1, 2", &single),
        Err(AnswerError::OneOnly { max: 2 })
    );
    // A repeated number is one pick.
    assert_eq!(parse_question("2,2", &single).unwrap(), ["Blue"]);
    let multi = question(&["S", "M", "L"], true, None);
    assert_eq!(parse_question("1, 3", &multi).unwrap(), ["S", "L"]);
    assert_eq!(parse_question("3 1", &multi).unwrap(), ["L", "S"]);
    for bad in ["0", "4", "1, 9", "99999999999999999999999"] {
        assert!(
            matches!(
                parse_question(bad, &multi),
                Err(AnswerError::NoSuchOption { max: 3, .. })
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        parse_question(" , ", &multi),
        Err(AnswerError::Empty { .. })
    ));
}

#[test]
fn labels_and_free_text() {
    let q = question(&["Red", "Blue"], false, None);
    assert_eq!(parse_question("blue", &q).unwrap(), ["Blue"]);
    assert_eq!(
        parse_question("green please", &q).unwrap(),
        ["green please"]
    );
    let closed = question(&["Red", "Blue"], false, Some(false));
    assert_eq!(
        parse_question("green", &closed),
        Err(AnswerError::OptionsOnly { max: 2 })
    );
    assert_eq!(parse_question("RED", &closed).unwrap(), ["Red"]);
    let multi = question(&["S", "M", "L"], true, Some(false));
    assert_eq!(parse_question("s, l", &multi).unwrap(), ["S", "L"]);
    assert!(parse_question("s, xl", &multi).is_err());
    assert!(matches!(
        parse_question("   ", &q),
        Err(AnswerError::Empty { custom: true, .. })
    ));
    let long = "x".repeat(5000);
    assert!(matches!(
        parse_question(&long, &q),
        Err(AnswerError::TooLong { .. })
    ));
    // No options at all: whatever is typed is the answer.
    let open = question(&[], false, Some(false));
    assert_eq!(parse_question("42", &open).unwrap(), ["42"]);
    // Error texts tell the person what to do.
    assert!(
        AnswerError::NoSuchOption {
            got: "9".into(),
            max: 3
        }
        .to_string()
        .contains("1 to 3")
    );
}

#[test]
fn permission_post_shows_what_and_how() {
    let req = PermissionAsked {
        id: "per_1".into(),
        session_id: "ses_1".into(),
        permission: "bash".into(),
        patterns: vec!["rm -rf build ```".into()],
        always: vec!["rm *".into()],
        metadata: json!({"description": "clean @channel"}),
    };
    let pending = permission_post(&req, &PermissionOutcome::Pending);
    assert!(pending.contains("Permission needed: `bash`"), "{pending}");
    assert!(
        pending.contains("````\nrm -rf build ```\n````"),
        "{pending}"
    );
    assert!(pending.contains("`rm *`"), "{pending}");
    assert!(pending.contains(":white_check_mark:") && pending.contains("`always`"));
    let done = permission_post(
        &req,
        &PermissionOutcome::Answered {
            reply: PermissionReply::Reject,
            by: "alice".into(),
        },
    );
    assert!(done.contains("Denied** by @alice"), "{done}");
    assert!(!done.contains("React"), "{done}");
    let tui = permission_post(&req, &PermissionOutcome::Elsewhere(PermissionReply::Always));
    assert!(tui.contains("Always allowed** in OpenCode"), "{tui}");
}

#[test]
fn a_long_command_is_never_cut_silently() {
    let long = format!("echo start; {}; echo end", "x".repeat(4000));
    let req = PermissionAsked {
        id: "per_2".into(),
        session_id: "ses_1".into(),
        permission: "bash".into(),
        patterns: vec![long.clone()],
        always: vec![],
        metadata: json!({}),
    };
    let post = permission_post(&req, &PermissionOutcome::Pending);
    assert!(
        post.contains("Shown up to 3000 of its 4022 characters"),
        "{post}"
    );
    assert!(post.contains("attached to this post"), "{post}");
    assert_eq!(long_command(&req), Some(long));
    let short = PermissionAsked {
        patterns: vec!["ls".into()],
        ..req
    };
    assert_eq!(long_command(&short), None);
    assert!(!permission_post(&short, &PermissionOutcome::Pending).contains("Shown up to"));
}

#[test]
fn invisible_controls_show_and_descriptions_stay_plain_text() {
    let req = PermissionAsked {
        id: "per_3".into(),
        session_id: "ses_1".into(),
        permission: "bash".into(),
        // Reads as `rm -rf ./safe` with the override, runs something else.
        patterns: vec!["echo ok \u{202E}fe.sa/ fr- mr\u{202C}\u{200B}".into()],
        always: vec![],
        metadata: json!({"description": "**Safe**: [click](http://x) @here"}),
    };
    let post = permission_post(&req, &PermissionOutcome::Pending);
    assert!(
        post.contains("⟨U+202E⟩") && post.contains("⟨U+202C⟩⟨U+200B⟩"),
        "{post}"
    );
    assert!(
        !post.contains('\u{202E}') && !post.contains('\u{202C}'),
        "{post}"
    );
    let quote = post.lines().find(|l| l.starts_with("> ")).unwrap();
    assert!(
        !quote.contains("**Safe**") && !quote.contains("[click](http://x)"),
        "{quote}"
    );
    assert!(quote.contains("@\u{200B}here"), "{quote}");
}

#[test]
fn question_post_numbers_options_and_records_answers() {
    let q = question(&["Red", "Blue"], true, None);
    let asked = Asked { index: 1, total: 2 };
    let pending = question_post(&q, asked, &QuestionOutcome::Pending, "!");
    assert!(
        pending.starts_with("#### :question: Question 2/2: Pick"),
        "{pending}"
    );
    assert!(pending.contains("**1.** Red — _about Red_"), "{pending}");
    assert!(
        pending.contains("`1, 3`") && pending.contains("`!reject`"),
        "{pending}"
    );
    let answered = question_post(
        &q,
        asked,
        &QuestionOutcome::Answered {
            answer: vec!["Red".into(), "Blue".into()],
            by: "bob".into(),
        },
        "!",
    );
    assert!(
        answered.contains("**Answer:** Red, Blue — by @bob"),
        "{answered}"
    );
    let expired = question_post(
        &q,
        Asked { index: 0, total: 1 },
        &QuestionOutcome::Expired { after_minutes: 30 },
        "!",
    );
    assert!(expired.starts_with("#### :question: Pick\n"), "{expired}");
    assert!(expired.contains("Expired** after 30 min"), "{expired}");
}

#[test]
fn agent_text_cannot_ping_everyone() {
    assert_eq!(
        defuse("hi @all and @Channel!"),
        "hi @\u{200B}all and @\u{200B}Channel!"
    );
    assert_eq!(defuse("@here"), "@\u{200B}here");
    assert_eq!(defuse("@alice @allison a@b"), "@alice @allison a@b");
    assert_eq!(defuse("İ@allİ"), "İ@allİ");
    assert_eq!(defuse("@"), "@");
}
