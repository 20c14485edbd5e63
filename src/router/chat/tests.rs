#![allow(clippy::unwrap_used)]

use super::*;

fn ok(text: &str) -> Command {
    parse(text, "!").unwrap().unwrap()
}

fn err(text: &str) -> String {
    parse(text, "!").unwrap().unwrap_err().to_string()
}

#[test]
fn every_command_parses() {
    assert_eq!(ok("!help"), Command::Help);
    assert_eq!(ok("  !sessions  "), Command::Sessions);
    assert_eq!(ok("!use neon-nebula"), Command::Use("neon-nebula".into()));
    assert_eq!(ok("!use ses_3f2a"), Command::Use("ses_3f2a".into()));
    assert_eq!(ok("!current"), Command::Current);
    assert_eq!(ok("!new"), Command::New(None));
    assert_eq!(
        ok("!new Fix the login bug"),
        Command::New(Some("Fix the login bug".into()))
    );
    assert_eq!(ok("!stop"), Command::Stop);
    assert_eq!(ok("!reject"), Command::Reject);
    assert_eq!(ok("!cancel"), Command::Reject);
    assert_eq!(ok("!models"), Command::Models);
    assert_eq!(ok("!model"), Command::Model(None));
    assert_eq!(
        ok("!model scripted/scripted-2"),
        Command::Model(Some("scripted/scripted-2".into()))
    );
    assert_eq!(
        ok("!model openrouter/anthropic/claude"),
        Command::Model(Some("openrouter/anthropic/claude".into()))
    );
    assert_eq!(ok("!model Default"), Command::Model(Some("default".into())));
    assert_eq!(ok("!costs"), Command::Costs);
    assert_eq!(ok("!status"), Command::Status);
    assert_eq!(ok("!schedule list"), Command::Schedule("list".into()));
    assert_eq!(ok("!team"), Command::Team(String::new()));
    assert_eq!(ok("!Team add @bonnie"), Command::Team("add @bonnie".into()));
    // The channels feature parses the rest, junk included.
    assert_eq!(
        ok("!team fire everyone"),
        Command::Team("fire everyone".into())
    );
    assert_eq!(ok("!HELP"), Command::Help);
}

#[test]
fn ordinary_text_is_not_a_command() {
    for text in [
        "",
        "hello",
        "fix it!",
        "!",
        "!!",
        "!!help",
        "! help",
        "!?",
        "!1",
        "!ünicode",
        "```\n!help\n```",
        "`!help`",
        "> !help",
        "!help.",
        "!stop!",
    ] {
        assert_eq!(parse(text, "!"), None, "{text:?}");
    }
}

#[test]
fn the_prefix_is_configurable() {
    assert_eq!(parse("/help", "/").unwrap().unwrap(), Command::Help);
    assert_eq!(parse("!help", "/"), None);
    assert_eq!(parse("mm:help", "mm:").unwrap().unwrap(), Command::Help);
    assert_eq!(parse("!help", ""), None);
}

#[test]
fn unknown_commands_suggest_the_closest() {
    assert_eq!(
        err("!sesions"),
        "unknown command `!sesions`. Did you mean `!sessions`? `!help` lists them all."
    );
    assert_eq!(
        err("!frobnicate now"),
        "unknown command `!frobnicate`. `!help` lists the commands."
    );
}

#[test]
fn bad_arguments_say_the_usage() {
    assert_eq!(
        err("!stop now"),
        "`!stop` takes no arguments. Usage: `!stop`"
    );
    assert_eq!(
        err("!use"),
        "which session? Give its short id. Usage: `!use <id>`"
    );
    assert_eq!(err("!use a b"), "give one session id. Usage: `!use <id>`");
    assert!(err("!use ../../etc").contains("is not a session id"));
    assert!(err("!use `rm -rf`x").contains("give one session id"));
    assert!(err("!model gpt").contains("write it as `provider/model`"));
    assert!(err("!model a/b c/d").contains("give one model"));
    assert!(err("!new two\nlines").contains("one line"));
    assert!(err(&format!("!new {}", "x".repeat(MAX_TITLE + 1))).contains("longer than"));
}

#[test]
fn hostile_input_is_echoed_short_and_without_markup() {
    let long = format!("!use {}", "a".repeat(10_000));
    assert!(err(&long).contains("is not a session id"));
    assert!(err(&long).len() < 200);
    let e = err("!model `evil`/x");
    assert!(!e.contains("`evil`"), "{e}");
    let e = err(&format!("!{}", "z".repeat(5000)));
    assert!(e.len() < 200, "{e}");
    // Control characters never come back.
    assert!(!err("!use a\u{7}b c").contains('\u{7}'));
}

#[test]
fn help_lists_every_command_with_the_prefix() {
    let text = help("!");
    for (name, _, _) in COMMANDS {
        assert!(text.contains(&format!("`!{name}")), "{name}");
    }
}

#[test]
fn every_command_has_its_table_name() {
    for (name, _, _) in COMMANDS {
        let typed = match *name {
            "use" => "!use abc".to_owned(),
            "merge" => {
                "!merge https://chat.example.com/eng/pl/abcdefghij0123456789klmnop".to_owned()
            }
            other => format!("!{other}"),
        };
        let command = ok(&typed);
        assert_eq!(command.name(), *name, "{typed}");
    }
}

#[test]
fn end_and_merge_parse_and_refuse_bad_arguments() {
    assert_eq!(ok("!end"), Command::End);
    assert!(err("!end now").contains("takes no arguments"));
    let link = "https://chat.example.com/eng/pl/abcdefghij0123456789klmnop";
    assert_eq!(ok(&format!("!merge {link}")), Command::Merge(link.into()));
    assert_eq!(
        ok(&format!("!merge   <{link}>  ")),
        Command::Merge(format!("<{link}>"))
    );
    assert!(err("!merge").contains("Give its permalink"));
    assert!(err(&format!("!merge {link} {link}")).contains("give one permalink"));
    assert!(err(&format!("!merge {}", "a".repeat(3000))).contains("too long"));
    assert!(help("!").contains("`!merge <permalink>`"));
    assert!(help("!").contains("`!end`"));
}
