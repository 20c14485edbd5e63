//! The argument parser: the shim's launch (no arguments) still serves, each
//! subcommand has its help, and malformed command lines are refused.

use clap::{CommandFactory, Parser, error::ErrorKind};

use super::*;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("opencode-mattermost").chain(args.iter().copied()))
}

#[test]
fn the_parser_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn no_arguments_means_serve() {
    assert!(parse(&[]).unwrap().command.is_none());
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        &["--help"][..],
        &["tools", "--help"],
        &["tools", "export", "--help"],
        &["tools", "check", "--help"],
        &["import", "--help"],
        &["sessions", "--help"],
        &["schedules", "--help"],
        &["doctor", "--help"],
        &["send", "--help"],
    ] {
        let err = parse(args).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DisplayHelp, "{args:?}");
        let text = err.to_string();
        assert!(
            text.contains("Usage: opencode-mattermost"),
            "{args:?}: {text}"
        );
    }
    let import = parse(&["import", "--help"]).unwrap_err().to_string();
    assert!(import.contains("--from <DIR>"), "{import}");
    assert!(import.contains("--directory <DIR>"), "{import}");
    let send = parse(&["send", "--help"]).unwrap_err().to_string();
    for part in [
        "--to <TARGET>",
        "--file <PATH>",
        "--team <NAME>",
        "[TEXT]",
        "stdin",
    ] {
        assert!(send.contains(part), "{part}: {send}");
    }
    let doctor = parse(&["doctor", "--help"]).unwrap_err().to_string();
    assert!(doctor.contains("--opencode <PATH>"), "{doctor}");
    assert!(doctor.contains("exit code"), "{doctor}");
    assert!(
        parse(&["sessions", "--help"])
            .unwrap_err()
            .to_string()
            .contains("--json")
    );
}

#[test]
fn subcommands_parse_with_their_defaults() {
    match parse(&["tools", "export"]).unwrap().command {
        Some(Command::Tools(ToolsCommand::Export { dir })) => {
            assert_eq!(dir, PathBuf::from("tools"))
        }
        other => panic!("{other:?}"),
    }
    match parse(&["tools", "check", "elsewhere"]).unwrap().command {
        Some(Command::Tools(ToolsCommand::Check { dir })) => {
            assert_eq!(dir, PathBuf::from("elsewhere"))
        }
        other => panic!("{other:?}"),
    }
    match parse(&["import", "--from", "/old"]).unwrap().command {
        Some(Command::Import { from, directory }) => {
            assert_eq!(from, PathBuf::from("/old"));
            assert_eq!(directory, None);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        parse(&["schedules", "--json"]).unwrap().command,
        Some(Command::Schedules { json: true })
    ));
    match parse(&["send", "--to", "~ci", "--file", "r.pdf", "-"])
        .unwrap()
        .command
    {
        Some(Command::Send {
            to,
            file,
            team,
            text,
        }) => {
            assert_eq!(to, "~ci");
            assert_eq!(file, Some(PathBuf::from("r.pdf")));
            assert_eq!(team, None);
            assert_eq!(text.as_deref(), Some("-"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        parse(&["doctor"]).unwrap().command,
        Some(Command::Doctor {
            opencode: None,
            project: None
        })
    ));
    assert!(matches!(
        parse(&["sessions"]).unwrap().command,
        Some(Command::Sessions { json: false })
    ));
}

#[test]
fn malformed_command_lines_are_refused() {
    for (args, kind) in [
        (&["import"][..], ErrorKind::MissingRequiredArgument),
        (&["import", "--from"], ErrorKind::InvalidValue),
        (&["serve-please"], ErrorKind::InvalidSubcommand),
        (&["sessions", "--json=yes"], ErrorKind::TooManyValues),
        (&["sessions", "extra"], ErrorKind::UnknownArgument),
        (&["tools", "export", "a", "b"], ErrorKind::UnknownArgument),
        (
            &["tools"],
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand,
        ),
        (&["--verbose"], ErrorKind::UnknownArgument),
        (&["send", "hi"], ErrorKind::MissingRequiredArgument),
        (&["send", "--to"], ErrorKind::InvalidValue),
        (
            &["send", "--to", "@a", "one", "two"],
            ErrorKind::UnknownArgument,
        ),
        (&["doctor", "--opencode"], ErrorKind::InvalidValue),
        (&["doctor", "extra"], ErrorKind::UnknownArgument),
    ] {
        let err = parse(args).unwrap_err();
        assert_eq!(err.kind(), kind, "{args:?}: {err}");
    }
}

#[test]
fn the_version_is_the_crate_version() {
    let err = parse(&["--version"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DisplayVersion);
    assert!(err.to_string().contains(env!("CARGO_PKG_VERSION")));
}
