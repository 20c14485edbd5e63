//! The `!schedule` chat syntax: every form it parses and the errors it
//! gives.

use pretty_assertions::assert_eq;

use super::*;
use crate::scheduler::syntax::{self, Command};

// ---- chat syntax --------------------------------------------------------------------

#[test]
fn chat_syntax_parses_every_form() {
    let parsed = syntax::parse(
        "add weekday-prs \"0 9 * * 1-5\" tz=America/New_York user=@bob model=a/b agent=plan \
         Summarise the open PRs\nand list the stale ones",
    )
    .unwrap();
    assert_eq!(
        parsed,
        Command::Add(AddRequest {
            name: "weekday-prs".into(),
            cron: "0 9 * * 1-5".into(),
            prompt: "Summarise the open PRs\nand list the stale ones".into(),
            timezone: Some("America/New_York".into()),
            user: Some("@bob".into()),
            agent: Some("plan".into()),
            model: Some("a/b".into()),
            enabled: None,
        })
    );
    for (text, cron, prompt) in [
        ("add x '*/5 * * * *' go", "*/5 * * * *", "go"),
        ("add x `0 9 * * *` go", "0 9 * * *", "go"),
        ("add x “0 9 * * *” go on", "0 9 * * *", "go on"),
        ("add x 0 9 * * 1-5 go now", "0 9 * * 1-5", "go now"),
        ("add x @daily check things", "@daily", "check things"),
        (
            "add x \"0 9 * * *\" a=b is not an option",
            "0 9 * * *",
            "a=b is not an option",
        ),
    ] {
        match syntax::parse(text).unwrap() {
            Command::Add(r) => {
                assert_eq!(
                    (r.cron.as_str(), r.prompt.as_str()),
                    (cron, prompt),
                    "{text}"
                );
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    match syntax::parse("add x \"0 9 * * *\" enabled=false tz=UTC p").unwrap() {
        Command::Add(r) => {
            assert_eq!(r.enabled, Some(false));
            assert_eq!(r.timezone.as_deref(), Some("UTC"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(syntax::parse("").unwrap(), Command::Help);
    assert_eq!(syntax::parse("help").unwrap(), Command::Help);
    assert_eq!(syntax::parse("LIST").unwrap(), Command::List);
    assert_eq!(
        syntax::parse("remove a").unwrap(),
        Command::Remove("a".into())
    );
    assert_eq!(
        syntax::parse("enable a").unwrap(),
        Command::Enable("a".into())
    );
    assert_eq!(
        syntax::parse("disable a").unwrap(),
        Command::Disable("a".into())
    );
    assert_eq!(syntax::parse("run a").unwrap(), Command::Run("a".into()));

    for (text, says) in [
        ("frobnicate", "use add, list, remove"),
        ("remove", "which schedule?"),
        ("run a b", "takes one schedule name"),
        ("list all", "takes no arguments"),
        ("add", "needs a name, a cron expression and a prompt"),
        ("add x \"0 9 * * *", "closing quote is missing"),
        ("add x", "cron expression is missing"),
        (
            "add x \"0 9 * * *\" enabled=maybe p",
            "enabled=true or enabled=false",
        ),
    ] {
        let err = syntax::parse(text).unwrap_err();
        assert!(err.contains(says), "{text}: {err}");
    }
    assert!(syntax::USAGE.contains("!schedule add <name> \"<cron>\""));
}
