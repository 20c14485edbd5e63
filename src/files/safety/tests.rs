//! The hostile table for `mattermost_send_file`'s path rules and the
//! inbound name and extension checks.

use super::*;

const MIB: u64 = 1024 * 1024;

struct Project {
    _dir: tempfile::TempDir,
    root: PathBuf,
    roots: Roots,
}

/// A project with a normal file, a directory, a symlink pointing out, a
/// 2 GiB sparse file, a name with control characters and a secret.
fn project() -> Project {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("project");
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(root.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(root.join("notes.md"), "# notes\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("passwd-link")).unwrap();
    std::os::unix::fs::symlink(root.join("notes.md"), root.join("inner-link")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", root.join("zero-link")).unwrap();
    let sparse = std::fs::File::create(root.join("huge.bin")).unwrap();
    sparse.set_len(2 * 1024 * MIB).unwrap();
    std::fs::write(root.join("bad\u{7}name.txt"), "x").unwrap();
    std::fs::write(root.join("new\nline.txt"), "x").unwrap();
    std::fs::write(root.join(".env"), "TOKEN=secret").unwrap();
    std::fs::write(root.join(".env.example"), "TOKEN=").unwrap();
    std::fs::create_dir_all(root.join(".ssh")).unwrap();
    std::fs::write(root.join(".ssh/config"), "Host x").unwrap();
    std::fs::write(root.join("id_ed25519"), "key").unwrap();
    std::fs::write(root.join("id_ed25519.pub"), "ssh-ed25519 AAAA").unwrap();
    std::fs::write(root.join("server.pem"), "-----BEGIN").unwrap();
    let roots = Roots::new([root.clone()]);
    let root = root.canonicalize().unwrap();
    Project {
        _dir: dir,
        root,
        roots,
    }
}

/// Whether a check came out as a row of the hostile table expects.
type Expect = fn(&Result<Checked, Refusal>) -> bool;

fn check(p: &Project, path: &str) -> Result<Checked, Refusal> {
    check_outbound(path, &p.root, &p.roots, 10 * MIB)
}

#[test]
fn files_inside_the_project_pass_and_read_back() {
    let p = project();
    for (path, name) in [
        ("notes.md", "notes.md"),
        ("./src/../notes.md", "notes.md"),
        ("src/main.rs", "main.rs"),
        ("inner-link", "notes.md"),
        (".env.example", ".env.example"),
        ("id_ed25519.pub", "id_ed25519.pub"),
    ] {
        let c = check(&p, path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(c.name, name, "{path}");
        assert!(c.path.starts_with(&p.root));
        let bytes = read_checked(&c, &p.roots, 10 * MIB).unwrap();
        assert_eq!(bytes.len() as u64, c.size);
    }
    let abs = p.root.join("notes.md").display().to_string();
    assert_eq!(check(&p, &abs).unwrap().name, "notes.md");
}

#[test]
fn the_hostile_table_is_refused_with_reasons() {
    let p = project();
    let outside = |r: &Result<Checked, Refusal>| matches!(r, Err(Refusal::Outside { .. }));
    // (path, what the refusal must be, words the message must carry)
    let table: Vec<(&str, Expect, &str)> = vec![
        (
            "../../etc/passwd",
            outside,
            "outside this session's project",
        ),
        ("/etc/passwd", outside, "/etc/passwd"),
        ("/etc/hostname", outside, "outside"),
        ("passwd-link", outside, "resolves to `/etc/passwd`"),
        ("/dev/zero", outside, "outside"),
        ("zero-link", outside, "/dev/zero"),
        ("/proc/self/environ", outside, "outside"),
        ("../../../../../../nonexistent/x", outside, "outside"),
        (
            "huge.bin",
            |r| matches!(r, Err(Refusal::TooLarge { size, .. }) if *size == 2 * 1024 * MIB),
            "is 2 GiB (2147483648 bytes), above the 10 MiB limit",
        ),
        (
            "bad\u{7}name.txt",
            |r| matches!(r, Err(Refusal::ControlChars { .. })),
            "control characters",
        ),
        (
            "src",
            |r| matches!(r, Err(Refusal::Directory { .. })),
            "is a directory",
        ),
        (
            ".",
            |r| matches!(r, Err(Refusal::Directory { .. })),
            "directory",
        ),
        (
            "missing.txt",
            |r| matches!(r, Err(Refusal::Missing { .. })),
            "does not exist",
        ),
        ("", |r| matches!(r, Err(Refusal::Empty)), "no file path"),
        (
            ".env",
            |r| matches!(r, Err(Refusal::Secret { .. })),
            "environment file",
        ),
        (
            ".ssh/config",
            |r| matches!(r, Err(Refusal::Secret { .. })),
            "credentials directory",
        ),
        (
            "id_ed25519",
            |r| matches!(r, Err(Refusal::Secret { .. })),
            "private SSH key",
        ),
        (
            "server.pem",
            |r| matches!(r, Err(Refusal::Secret { .. })),
            "private key",
        ),
    ];
    for (path, is_expected, words) in table {
        let result = check(&p, path);
        assert!(is_expected(&result), "{path:?}: {result:?}");
        let message = result.unwrap_err().to_string();
        assert!(message.contains(words), "{path:?}: {message}");
        assert!(!message.chars().any(char::is_control), "{message:?}");
    }
}

#[test]
fn a_control_character_in_a_real_file_name_is_refused() {
    let p = project();
    // Reached through a symlink with a clean name: the real name counts.
    std::os::unix::fs::symlink(p.root.join("new\nline.txt"), p.root.join("clean.txt")).unwrap();
    let result = check(&p, "clean.txt");
    assert!(
        matches!(result, Err(Refusal::ControlChars { .. })),
        "{result:?}"
    );
}

#[test]
fn devices_and_fifos_are_refused_by_kind_even_inside_a_root() {
    let roots = Roots::new([PathBuf::from("/dev")]);
    let result = check_outbound("/dev/zero", Path::new("/"), &roots, MIB);
    assert!(
        matches!(result, Err(Refusal::Special { kind: "device", .. })),
        "{result:?}"
    );
    let p = project();
    let fifo = p.root.join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    if made {
        let result = check(&p, "pipe");
        assert!(
            matches!(result, Err(Refusal::Special { kind, .. }) if kind.contains("FIFO")),
            "{result:?}"
        );
        // Even handed straight to the reader, a FIFO neither blocks nor passes.
        let forged = Checked {
            path: fifo,
            name: "pipe".into(),
            size: 0,
        };
        assert!(matches!(
            read_checked(&forged, &p.roots, MIB),
            Err(Refusal::Special { .. })
        ));
    }
}

#[test]
fn the_reader_rechecks_what_it_opened() {
    let p = project();
    let checked = check(&p, "notes.md").unwrap();
    // Swapped for a symlink pointing out after the check.
    std::fs::remove_file(&checked.path).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &checked.path).unwrap();
    assert!(read_checked(&checked, &p.roots, MIB).is_err());
    // Grown past the limit after the check.
    let checked = check(&p, "src/main.rs").unwrap();
    std::fs::write(&checked.path, vec![b'x'; 2048]).unwrap();
    assert!(matches!(
        read_checked(&checked, &p.roots, 1024),
        Err(Refusal::TooLarge { .. })
    ));
}

#[test]
fn the_filesystem_root_is_never_a_root() {
    let roots = Roots::new([PathBuf::from("/"), PathBuf::from("/no/such/dir")]);
    assert!(roots.is_empty());
    assert_eq!(
        check_outbound("/etc/passwd", Path::new("/"), &roots, MIB),
        Err(Refusal::NoRoots)
    );
}

#[test]
fn names_are_sanitised_to_one_safe_component() {
    for (raw, clean) in [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system.ini", "system.ini"),
        ("/abs/path/photo.PNG", "photo.PNG"),
        ("..", "file"),
        (".", "file"),
        ("", "file"),
        (".bashrc", "bashrc"),
        ("bad\u{7}na\nme.txt", "bad_na_me.txt"),
        ("evil\u{202e}gpj.exe", "evil_gpj.exe"),
        ("a b (1).txt", "a b (1).txt"),
        ("ünïcödé.md", "ünïcödé.md"),
        ("semi;colon|pipe$.sh", "semi_colon_pipe_.sh"),
        ("trailing. . ", "trailing"),
        ("\u{0}\u{1}", "file"),
    ] {
        assert_eq!(sanitize_name(raw), clean, "{raw:?}");
    }
    let long = format!("{}.tar.gz", "x".repeat(500));
    let cut = sanitize_name(&long);
    assert_eq!(cut.chars().count(), MAX_NAME_CHARS);
    assert!(cut.ends_with(".gz"), "{cut}");
}

#[test]
fn extensions_and_types() {
    let any = vec!["*".to_owned()];
    let some = vec!["png".to_owned(), "txt".to_owned()];
    assert!(check_extension("x.exe", &any).is_ok());
    assert!(check_extension("noext", &any).is_ok());
    assert!(check_extension("Photo.PNG", &some).is_ok());
    assert!(check_extension("notes.txt", &some).is_ok());
    let e = check_extension("tool.exe", &some).unwrap_err().to_string();
    assert!(e.contains("`tool.exe`") && e.contains(".png, .txt"), "{e}");
    assert!(check_extension("README", &some).is_err());
    assert!(check_extension(".png", &some).is_err());
    assert_eq!(extension("a.tar.GZ").as_deref(), Some("gz"));
    assert_eq!(extension(".hidden"), None);
    assert_eq!(mime_for("a.PNG"), "image/png");
    assert_eq!(mime_for("a.jpeg"), "image/jpeg");
    assert_eq!(mime_for("doc.pdf"), "application/pdf");
    assert_eq!(mime_for("notes.txt"), "text/plain");
    assert_eq!(mime_for("blob"), "application/octet-stream");
    assert!(model_can_see("image/png") && model_can_see("application/pdf"));
    assert!(!model_can_see("image/svg+xml") && !model_can_see("text/plain"));
}

#[test]
fn sizes_read_naturally() {
    assert_eq!(size_text(0), "0 bytes");
    assert_eq!(size_text(1023), "1023 bytes");
    assert_eq!(size_text(1536), "1.5 KiB");
    assert_eq!(size_text(10_485_760), "10 MiB");
    assert_eq!(size_text(2 * 1024 * MIB), "2 GiB");
}

#[test]
fn quotes_escape_control_characters_and_stay_short() {
    assert_eq!(quote("a\nb"), "a\\nb");
    assert_eq!(quote(&"y".repeat(1000)).chars().count(), MAX_QUOTED_CHARS);
}

#[test]
fn the_agents_and_opencodes_own_files_never_leave_even_from_a_project() {
    // A project that is the home directory holds both configurations.
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().canonicalize().unwrap();
    for file in [
        ".config/opencode-mattermost/config.toml",
        ".local/share/opencode/auth.json",
        ".config/opencode/opencode.json",
        "state/agent.db",
    ] {
        let path = home.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "secret").unwrap();
    }
    std::fs::write(home.join("notes.md"), "# notes").unwrap();
    let roots = Roots::new([home.clone()]).with_private([
        home.join(".config/opencode-mattermost"),
        home.join(".config/opencode"),
        home.join(".local/share/opencode"),
        home.join("state/agent.db"),
        home.join("does/not/exist"),
    ]);
    for file in [
        ".config/opencode-mattermost/config.toml",
        ".local/share/opencode/auth.json",
        ".config/opencode/opencode.json",
        "state/agent.db",
    ] {
        let result = check_outbound(file, &home, &roots, 1024);
        assert!(
            matches!(&result, Err(Refusal::Secret { what, .. }) if what.contains("own configuration")),
            "{file}: {result:?}"
        );
    }
    assert!(check_outbound("notes.md", &home, &roots, 1024).is_ok());
}
