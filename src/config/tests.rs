use super::*;
use std::collections::HashMap;

const OWNER: &str = "cmr7sncacib4xfhd6yo3n4tf5e";

fn load(env: &[(&str, &str)], file: Option<&str>) -> Config {
    let map: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let lookup = move |k: &str| map.get(k).cloned();
    let file = file.map(|text| Ok((PathBuf::from("/cfg/config.toml"), text.to_owned())));
    Config::from_sources(&lookup, file)
}

fn problem<'c>(c: &'c Config, key: &str) -> Option<&'c str> {
    c.problems
        .iter()
        .find(|p| p.key == key)
        .map(|p| p.message.as_str())
}

#[test]
fn empty_environment_lists_what_to_set() {
    let c = load(&[], None);
    assert!(problem(&c, "MATTERMOST_TOKEN").is_some_and(|m| m.contains("bot account")));
    assert!(problem(&c, "MATTERMOST_URL").is_some_and(|m| m.contains("MATTERMOST_URL")));
    assert!(problem(&c, "MATTERMOST_OWNER_USER_ID").is_some());
    assert!(!c.auto_connect);
    assert_eq!(c.max_post_length, 15000);
    assert_eq!(c.command_prefix, "!");
}

#[test]
fn full_valid_environment_has_no_problems() {
    let c = load(
        &[
            ("MATTERMOST_URL", "https://chat.example.com/api/v4/"),
            ("MATTERMOST_TOKEN", "tok-secret-123456"),
            ("MATTERMOST_OWNER_USER_ID", OWNER),
            ("OPENCODE_MM_ALLOWED_CHANNEL_TYPES", "d, g"),
        ],
        None,
    );
    assert_eq!(c.problems, vec![]);
    assert_eq!(
        c.api_url().as_deref(),
        Some("https://chat.example.com/api/v4")
    );
    assert_eq!(
        c.ws_url.as_ref().map(Url::as_str),
        Some("wss://chat.example.com/api/v4/websocket")
    );
    assert_eq!(
        c.allowed_channel_types,
        vec![ChannelType::Direct, ChannelType::Group]
    );
}

#[test]
fn secrets_never_reach_debug_or_describe() {
    let c = load(&[("MATTERMOST_TOKEN", "tok-secret-123456")], None);
    assert!(!format!("{c:?}").contains("tok-secret-123456"));
    assert!(!c.describe().contains("tok-secret-123456"));
    assert!(c.describe().contains("MATTERMOST_TOKEN"));
    assert!(c.describe().contains("[redacted]"));
}

#[test]
fn malformed_values_are_problems_with_fixes_and_defaults_stay() {
    let c = load(
        &[
            ("MATTERMOST_URL", "chat.example.com"),
            ("MATTERMOST_WS_URL", "ftp://x"),
            ("MATTERMOST_AUTO_CONNECT", "maybe"),
            ("OPENCODE_MM_MAX_POST_LENGTH", "20000"),
            ("OPENCODE_MM_EDIT_RATE_LIMIT", "ten"),
            ("MATTERMOST_OWNER_USER_ID", "alice"),
            (
                "OPENCODE_MM_ALLOWED_USERS",
                "bob, cmr7sncacib4xfhd6yo3n4tf5e",
            ),
            ("OPENCODE_MM_ALLOWED_CHANNEL_TYPES", "D,X"),
        ],
        None,
    );
    assert!(problem(&c, "MATTERMOST_URL").is_some_and(|m| m.contains("not a valid URL")));
    assert!(problem(&c, "MATTERMOST_WS_URL").is_some_and(|m| m.contains("scheme `ftp`")));
    assert!(problem(&c, "MATTERMOST_AUTO_CONNECT").is_some_and(|m| m.contains("true or false")));
    assert!(problem(&c, "OPENCODE_MM_MAX_POST_LENGTH").is_some_and(|m| m.contains("16383")));
    assert!(problem(&c, "OPENCODE_MM_EDIT_RATE_LIMIT").is_some_and(|m| m.contains("whole number")));
    assert!(problem(&c, "MATTERMOST_OWNER_USER_ID").is_some_and(|m| m.contains("26")));
    assert!(problem(&c, "OPENCODE_MM_ALLOWED_USERS").is_some_and(|m| m.contains("`bob`")));
    assert!(problem(&c, "OPENCODE_MM_ALLOWED_CHANNEL_TYPES").is_some());
    assert_eq!(c.max_post_length, 15000);
    assert_eq!(c.edit_rate_limit, 2);
    assert!(!c.auto_connect);
    assert_eq!(c.allowed_users, vec![OWNER.to_owned()]);
    // Fail closed: the typo keeps only the valid type, never all four.
    assert_eq!(c.allowed_channel_types, vec![ChannelType::Direct]);
}

#[test]
fn a_channel_type_list_with_nothing_valid_serves_no_channel() {
    let c = load(&[("OPENCODE_MM_ALLOWED_CHANNEL_TYPES", "X, public")], None);
    assert!(c.allowed_channel_types.is_empty());
    let message = problem(&c, "OPENCODE_MM_ALLOWED_CHANNEL_TYPES").unwrap_or_default();
    assert!(message.contains("serving only none"), "{message}");
}

#[test]
fn settings_nothing_reads_are_reported_not_ignored() {
    let c = load(
        &[
            ("OPENCODE_MM_AUTO_SELECT", "false"),
            ("OPENCODE_MM_MAX_SESSIONS", "3"),
        ],
        Some("mattermost_team = \"eng\"\nopencode_mm_session_timeout = 60000\n"),
    );
    for key in [
        "OPENCODE_MM_AUTO_SELECT",
        "OPENCODE_MM_MAX_SESSIONS",
        "MATTERMOST_TEAM",
        "OPENCODE_MM_SESSION_TIMEOUT",
    ] {
        let message = problem(&c, key).unwrap_or_default();
        assert!(message.contains("has no effect"), "{key}: {message}");
    }
    // Known names, so not reported as unknown keys too.
    assert!(!c.problems.iter().any(|p| p.message.contains("unknown key")));
    // Unset, they say nothing.
    assert!(
        load(&[], None)
            .problems
            .iter()
            .all(|p| !p.message.contains("has no effect"))
    );
}

#[test]
fn file_values_apply_and_env_wins() {
    let c = load(
        &[("OPENCODE_MM_MAX_POST_LENGTH", "9000")],
        Some(
            r#"
mattermost_url = "http://localhost:8065"
opencode_mm_max_post_length = 12000
mattermost_auto_connect = true
opencode_mm_allowed_users = ["cmr7sncacib4xfhd6yo3n4tf5e"]
"#,
        ),
    );
    assert_eq!(c.max_post_length, 9000);
    assert!(c.auto_connect);
    assert_eq!(c.allowed_users, vec![OWNER.to_owned()]);
    assert_eq!(
        c.ws_url.as_ref().map(Url::as_str),
        Some("ws://localhost:8065/api/v4/websocket")
    );
    let entry = c
        .entries
        .iter()
        .find(|e| e.key == "MATTERMOST_AUTO_CONNECT");
    assert_eq!(entry.map(|e| e.origin), Some(Origin::File));
}

#[test]
fn unknown_and_mistyped_file_keys_are_reported() {
    let c = load(&[], Some("mattermost_tokn = \"x\"\n[nested]\nkey = 1\n"));
    assert!(
        problem(&c, "MATTERMOST_TOKN")
            .is_some_and(|m| m.contains("did you mean `mattermost_token`"))
    );
    assert!(problem(&c, "NESTED").is_some_and(|m| m.contains("must be a string")));
}

#[test]
fn broken_toml_and_unreadable_file_are_problems() {
    let c = load(&[], Some("this is = = not toml"));
    assert!(problem(&c, CONFIG_FILE_ENV).is_some_and(|m| m.contains("not valid TOML")));
    let lookup = |_: &str| None;
    let c = Config::from_sources(
        &lookup,
        Some(Err((
            PathBuf::from("/nope.toml"),
            "permission denied".into(),
        ))),
    );
    assert!(problem(&c, CONFIG_FILE_ENV).is_some_and(|m| m.contains("/nope.toml")));
}

#[test]
fn hostile_values_do_not_panic() {
    let long = "x".repeat(100_000);
    for v in [
        "\u{0}",
        "💥",
        "-1",
        "18446744073709551616",
        long.as_str(),
        "http://",
        "ws://[::1",
    ] {
        let c = load(
            &[
                ("MATTERMOST_URL", v),
                ("MATTERMOST_WS_URL", v),
                ("OPENCODE_MM_MAX_FILE_SIZE", v),
                ("OPENCODE_MM_ALLOWED_USERS", v),
                ("OPENCODE_MM_ALLOWED_CHANNEL_TYPES", v),
            ],
            None,
        );
        assert!(!c.problems.is_empty());
    }
}

#[test]
fn long_reply_threshold_defaults_above_four_posts_and_can_be_turned_off() {
    let c = load(&[], None);
    assert_eq!(c.attach_over, DEFAULT_ATTACH_OVER);
    // A 40,000-character reply must still be split across posts by default.
    assert!(c.attach_over > 40_000);
    let c = load(&[("OPENCODE_MM_ATTACH_OVER", "0")], None);
    assert_eq!(c.attach_over, 0);
    assert!(problem(&c, "OPENCODE_MM_ATTACH_OVER").is_none());
    let c = load(&[], Some("opencode_mm_attach_over = 5000\n"));
    assert_eq!(c.attach_over, 5000);
    for bad in ["-5", "lots", "100000001"] {
        let c = load(&[("OPENCODE_MM_ATTACH_OVER", bad)], None);
        assert!(problem(&c, "OPENCODE_MM_ATTACH_OVER").is_some(), "{bad}");
        assert_eq!(c.attach_over, DEFAULT_ATTACH_OVER, "{bad}");
    }
}

#[test]
fn file_settings_parse() {
    let c = load(
        &[
            ("OPENCODE_MM_MAX_FILE_SIZE", "2048"),
            ("OPENCODE_MM_ALLOWED_EXTENSIONS", ".PNG, txt,,md"),
            ("OPENCODE_MM_TEMP_DIR", "/var/tmp/ocmm"),
        ],
        None,
    );
    assert_eq!(c.max_file_size, 2048);
    assert_eq!(c.allowed_extensions, ["png", "txt", "md"]);
    assert_eq!(c.temp_dir, Some(PathBuf::from("/var/tmp/ocmm")));
    let c = load(&[], None);
    assert_eq!(c.allowed_extensions, ["*"]);
    assert_eq!(c.max_file_size, 10_485_760);
}

#[test]
fn schedule_settings_default_and_validate() {
    let c = load(&[], None);
    assert_eq!(c.timezone, crate::tz::Zone::utc());
    assert_eq!(c.schedule_timeout, Duration::from_secs(30 * 60));
    assert_eq!(c.schedule_grace, Duration::from_secs(10 * 60));
    assert!(c.describe().contains("OPENCODE_MM_TIMEZONE"));

    let c = load(
        &[
            ("OPENCODE_MM_TIMEZONE", "Europe/Berlin"),
            ("OPENCODE_MM_SCHEDULE_TIMEOUT", "60000"),
            ("OPENCODE_MM_SCHEDULE_GRACE", "120000"),
        ],
        None,
    );
    assert_eq!(c.timezone.name(), "Europe/Berlin");
    assert_eq!(c.schedule_timeout, Duration::from_secs(60));
    assert_eq!(c.schedule_grace, Duration::from_secs(120));
    assert_eq!(problem(&c, "OPENCODE_MM_TIMEZONE"), None);

    let c = load(
        &[
            ("OPENCODE_MM_TIMEZONE", "Mars/Olympus_Mons"),
            ("OPENCODE_MM_SCHEDULE_TIMEOUT", "5"),
            ("OPENCODE_MM_SCHEDULE_GRACE", "soon"),
        ],
        None,
    );
    assert_eq!(c.timezone, crate::tz::Zone::utc());
    assert!(
        problem(&c, "OPENCODE_MM_TIMEZONE")
            .is_some_and(|m| m.contains("Mars/Olympus_Mons") && m.contains("Europe/Berlin"))
    );
    assert!(problem(&c, "OPENCODE_MM_SCHEDULE_TIMEOUT").is_some_and(|m| m.contains("10000")));
    assert!(problem(&c, "OPENCODE_MM_SCHEDULE_GRACE").is_some_and(|m| m.contains("whole number")));
    assert_eq!(c.schedule_timeout, Duration::from_secs(30 * 60));
}

#[test]
fn question_timeout_defaults_to_half_an_hour() {
    assert_eq!(
        load(&[], None).question_timeout,
        Duration::from_secs(30 * 60)
    );
    let c = load(&[("OPENCODE_MM_QUESTION_TIMEOUT", "2000")], None);
    assert_eq!(c.question_timeout, Duration::from_secs(2));
    for bad in ["0", "-5", "ten", "999999999999"] {
        let c = load(&[("OPENCODE_MM_QUESTION_TIMEOUT", bad)], None);
        assert!(
            problem(&c, "OPENCODE_MM_QUESTION_TIMEOUT").is_some(),
            "{bad}"
        );
        assert_eq!(c.question_timeout, Duration::from_secs(30 * 60));
    }
}

#[test]
fn catch_up_max_age_defaults_to_an_hour_and_zero_turns_it_off() {
    assert_eq!(
        load(&[], None).catch_up_max_age,
        Some(Duration::from_secs(3600))
    );
    let c = load(&[("OPENCODE_MM_CATCH_UP_MAX_AGE", "90000")], None);
    assert_eq!(c.catch_up_max_age, Some(Duration::from_secs(90)));
    let c = load(&[("OPENCODE_MM_CATCH_UP_MAX_AGE", "0")], None);
    assert_eq!(c.catch_up_max_age, None);
    assert!(problem(&c, "OPENCODE_MM_CATCH_UP_MAX_AGE").is_none());
    for bad in ["-1", "1h", "604800001"] {
        let c = load(&[("OPENCODE_MM_CATCH_UP_MAX_AGE", bad)], None);
        assert!(
            problem(&c, "OPENCODE_MM_CATCH_UP_MAX_AGE").is_some(),
            "{bad}"
        );
        assert_eq!(c.catch_up_max_age, Some(Duration::from_secs(3600)), "{bad}");
    }
}

#[test]
fn the_instance_lease_defaults_to_fifteen_seconds_within_bounds() {
    assert_eq!(load(&[], None).instance_lease, Duration::from_secs(15));
    let c = load(&[("OPENCODE_MM_INSTANCE_LEASE", "3000")], None);
    assert_eq!(c.instance_lease, Duration::from_secs(3));
    for bad in ["0", "2999", "600001", "15s"] {
        let c = load(&[("OPENCODE_MM_INSTANCE_LEASE", bad)], None);
        assert!(problem(&c, "OPENCODE_MM_INSTANCE_LEASE").is_some(), "{bad}");
        assert_eq!(c.instance_lease, Duration::from_secs(15), "{bad}");
    }
}

#[test]
fn the_database_pool_settings_default_and_refuse_what_is_out_of_bounds() {
    let c = load(&[], None);
    assert_eq!(c.database_pool_size, 8);
    assert_eq!(c.database_connect_timeout, Duration::from_secs(10));
    let c = load(
        &[
            ("OPENCODE_MM_DATABASE_POOL_SIZE", "3"),
            ("OPENCODE_MM_DATABASE_CONNECT_TIMEOUT", "2500"),
        ],
        None,
    );
    assert_eq!(c.database_pool_size, 3);
    assert_eq!(c.database_connect_timeout, Duration::from_millis(2500));
    let c = load(
        &[],
        Some("opencode_mm_database_pool_size = 4\nopencode_mm_database_connect_timeout = 800\n"),
    );
    assert_eq!(c.database_pool_size, 4, "{:?}", c.problems);
    assert_eq!(c.database_connect_timeout, Duration::from_millis(800));
    for bad in ["0", "101", "-1", "eight", "1e3", "99999999999999999999999"] {
        let c = load(&[("OPENCODE_MM_DATABASE_POOL_SIZE", bad)], None);
        assert!(
            problem(&c, "OPENCODE_MM_DATABASE_POOL_SIZE").is_some(),
            "{bad:?}"
        );
        assert_eq!(c.database_pool_size, 8, "{bad:?}");
    }
    for bad in ["0", "499", "120001", "10s", "-5"] {
        let c = load(&[("OPENCODE_MM_DATABASE_CONNECT_TIMEOUT", bad)], None);
        assert!(
            problem(&c, "OPENCODE_MM_DATABASE_CONNECT_TIMEOUT").is_some(),
            "{bad}"
        );
        assert_eq!(c.database_connect_timeout, Duration::from_secs(10), "{bad}");
    }
}

#[test]
fn a_config_file_with_the_token_must_be_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "mattermost_token = \"s3cret-token-value\"\n").unwrap();
    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let read = super::sources::read_file(path.clone(), true);
        let Some(Err((_, why))) = read else {
            panic!("mode {mode:o} was accepted")
        };
        assert!(
            why.contains(&format!("chmod 600 {}", path.display())),
            "{why}"
        );
        assert!(!why.contains("s3cret"), "{why}");
        let c = Config::from_sources(&|_| None, Some(Err((path.clone(), why))));
        assert!(c.token.is_none());
        assert!(problem(&c, CONFIG_FILE_ENV).is_some_and(|m| m.contains("chmod 600")));
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(
        super::sources::read_file(path.clone(), true),
        Some(Ok(_))
    ));
    // Without the token, a readable file is fine.
    std::fs::write(&path, "mattermost_url = \"https://chat.example.com\"\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(super::sources::read_file(path, true), Some(Ok(_))));
}

#[test]
fn plain_http_to_another_machine_is_warned_about() {
    for (url, warned) in [
        ("http://chat.example.com", true),
        ("http://10.0.0.5:8065", true),
        ("https://chat.example.com", false),
        ("http://localhost:8065", false),
        ("http://127.0.0.1:8065", false),
        ("http://[::1]:8065", false),
    ] {
        let c = load(&[("MATTERMOST_URL", url)], None);
        let found = problem(&c, "MATTERMOST_URL").is_some_and(|m| m.contains("clear text"));
        assert_eq!(found, warned, "{url}");
        // Still used: a warning, not a rejection.
        assert!(c.site_url.is_some(), "{url}");
    }
}

#[test]
fn database_url_selects_postgres_and_never_shows_the_password() {
    let url = "postgres://agent:pw-0f-agent@db.example.com/omm?sslmode=require";
    let c = load(&[("OPENCODE_MM_DATABASE_URL", url)], None);
    assert!(problem(&c, "OPENCODE_MM_DATABASE_URL").is_none());
    assert_eq!(c.database_url.as_ref().map(Secret::expose), Some(url));
    assert_eq!(c.state_db, None);
    let shown = c.describe();
    assert!(
        shown.contains("postgres://agent:[redacted]@db.example.com/omm?sslmode=require"),
        "{shown}"
    );
    assert!(!shown.contains("pw-0f-agent"), "{shown}");
    assert!(!format!("{c:?}").contains("pw-0f-agent"));

    // From the file too, like every setting.
    let c = load(
        &[],
        Some(&format!("opencode_mm_database_url = \"{url}\"\n")),
    );
    assert_eq!(c.database_url.as_ref().map(Secret::expose), Some(url));
    assert!(!c.describe().contains("pw-0f-agent"));
}

#[test]
fn database_url_sqlite_paths_unset_and_mistakes() {
    for (value, path) in [
        ("sqlite:/var/lib/omm/state.db", "/var/lib/omm/state.db"),
        ("sqlite:///var/lib/omm/state.db", "/var/lib/omm/state.db"),
        ("SQLITE:/x.db", "/x.db"),
    ] {
        let c = load(&[("OPENCODE_MM_DATABASE_URL", value)], None);
        assert_eq!(c.state_db, Some(PathBuf::from(path)), "{value}");
        assert!(c.database_url.is_none());
        assert!(problem(&c, "OPENCODE_MM_DATABASE_URL").is_none(), "{value}");
    }
    let c = load(&[("OPENCODE_MM_STATE_DB", "/a.db")], None);
    assert_eq!(
        (c.state_db, c.database_url),
        (Some(PathBuf::from("/a.db")), None)
    );

    // Both set: the URL wins, and the conflict is reported.
    let c = load(
        &[
            ("OPENCODE_MM_STATE_DB", "/a.db"),
            ("OPENCODE_MM_DATABASE_URL", "sqlite:/b.db"),
        ],
        None,
    );
    assert_eq!(c.state_db, Some(PathBuf::from("/b.db")));
    assert!(problem(&c, "OPENCODE_MM_DATABASE_URL").is_some_and(|m| m.contains("/a.db")));
    let c = load(
        &[
            ("OPENCODE_MM_STATE_DB", "/a.db"),
            ("OPENCODE_MM_DATABASE_URL", "postgres://db/omm"),
        ],
        None,
    );
    assert_eq!(c.state_db, None);
    assert!(c.database_url.is_some());
    assert!(problem(&c, "OPENCODE_MM_STATE_DB").is_some_and(|m| m.contains("PostgreSQL")));

    // Neither scheme: SQLite as usual, the problem shows no password.
    for bad in ["mysql://u:pw-0f-agent@db/omm", "sqlite:", "pw-0f-agent"] {
        let c = load(&[("OPENCODE_MM_DATABASE_URL", bad)], None);
        assert!(c.database_url.is_none(), "{bad}");
        let p = problem(&c, "OPENCODE_MM_DATABASE_URL").unwrap_or_default();
        assert!(p.contains("postgres://"), "{bad}: {p}");
        assert!(!p.contains("pw-0f-agent"), "{p}");
        assert!(!c.describe().contains("pw-0f-agent"));
    }
}

#[test]
fn a_config_file_with_a_database_password_must_be_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    for (text, secret) in [
        (
            "opencode_mm_database_url = \"postgres://a:pw@db/omm\"\n",
            true,
        ),
        (
            "opencode_mm_database_url = \"postgres://a@db/omm?password=pw\"\n",
            true,
        ),
        (
            "opencode_mm_database_url = \"postgres://a@db/omm\"\n",
            false,
        ),
    ] {
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = matches!(super::sources::read_file(path.clone(), true), Some(Err(_)));
        assert_eq!(refused, secret, "{text}");
    }
}

#[test]
fn guest_approval_timeout_defaults_to_half_an_hour_and_rejects_junk() {
    assert_eq!(
        load(&[], None).guest_approval_timeout,
        Duration::from_secs(30 * 60)
    );
    let c = load(&[("OPENCODE_MM_GUEST_APPROVAL_TIMEOUT", "90000")], None);
    assert_eq!(c.guest_approval_timeout, Duration::from_secs(90));
    assert!(problem(&c, "OPENCODE_MM_GUEST_APPROVAL_TIMEOUT").is_none());
    for bad in ["0", "-1", "soon", "1e9", "30m", "999999999999", ""] {
        let c = load(&[("OPENCODE_MM_GUEST_APPROVAL_TIMEOUT", bad)], None);
        assert!(
            problem(&c, "OPENCODE_MM_GUEST_APPROVAL_TIMEOUT").is_some() || bad.is_empty(),
            "{bad:?}"
        );
        assert_eq!(
            c.guest_approval_timeout,
            Duration::from_secs(30 * 60),
            "{bad:?}"
        );
    }
}

#[test]
fn the_team_file_must_be_an_absolute_path() {
    assert_eq!(load(&[], None).team_file, None);
    let c = load(
        &[(
            "OPENCODE_MM_TEAM_FILE",
            "/home/me/.config/opencode/mattermost-team.json",
        )],
        None,
    );
    assert_eq!(
        c.team_file,
        Some(PathBuf::from(
            "/home/me/.config/opencode/mattermost-team.json"
        ))
    );
    assert!(
        problem(&c, "OPENCODE_MM_TEAM_FILE").is_none(),
        "no longer retired"
    );
    for bad in ["team.json", "../team.json", "~/team.json"] {
        let c = load(&[("OPENCODE_MM_TEAM_FILE", bad)], None);
        assert_eq!(c.team_file, None, "{bad}");
        assert!(
            problem(&c, "OPENCODE_MM_TEAM_FILE").is_some_and(|m| m.contains("absolute")),
            "{bad}"
        );
    }
}

#[test]
fn thread_context_settings_default_and_refuse_malformed_values() {
    let c = load(&[], None);
    assert_eq!(
        (
            c.context_messages,
            c.context_max_chars,
            c.context_summary_timeout
        ),
        (5, 8000, Duration::from_secs(20))
    );
    let c = load(
        &[
            ("OPENCODE_MM_CONTEXT_MESSAGES", "0"),
            ("OPENCODE_MM_CONTEXT_MAX_CHARS", "20000"),
            ("OPENCODE_MM_CONTEXT_SUMMARY_TIMEOUT", "3000"),
        ],
        None,
    );
    assert_eq!(
        (
            c.context_messages,
            c.context_max_chars,
            c.context_summary_timeout
        ),
        (0, 20000, Duration::from_secs(3))
    );
    for (key, bad) in [
        ("OPENCODE_MM_CONTEXT_MESSAGES", "-1"),
        ("OPENCODE_MM_CONTEXT_MESSAGES", "51"),
        ("OPENCODE_MM_CONTEXT_MESSAGES", "five"),
        ("OPENCODE_MM_CONTEXT_MAX_CHARS", "10"),
        ("OPENCODE_MM_CONTEXT_MAX_CHARS", "8k"),
        ("OPENCODE_MM_CONTEXT_MAX_CHARS", "99999999999999999999999"),
        ("OPENCODE_MM_CONTEXT_SUMMARY_TIMEOUT", "0"),
        ("OPENCODE_MM_CONTEXT_SUMMARY_TIMEOUT", "1e9"),
    ] {
        let c = load(&[(key, bad)], None);
        assert!(problem(&c, key).is_some(), "{key}={bad}");
        assert_eq!(
            (
                c.context_messages,
                c.context_max_chars,
                c.context_summary_timeout
            ),
            (5, 8000, Duration::from_secs(20)),
            "{key}={bad} keeps the defaults"
        );
    }
}
