use std::path::Path;

use super::*;

/// A project on disk: sources, ignored build output and local files,
/// secrets, a symlink out of the project and one within it, `.git`.
fn project() -> (tempfile::TempDir, Project) {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("proj");
    let outside = tmp.path().join("outside");
    for dir in [
        "src",
        "target/debug",
        "keys",
        ".git",
        "docs",
        "many",
        &outside.display().to_string(),
    ] {
        std::fs::create_dir_all(base.join(dir)).unwrap();
    }
    let write = |p: &str, text: &str| std::fs::write(base.join(p), text).unwrap();
    write(".gitignore", "target/\n*.local\n");
    for f in [
        "src/config.rs",
        "src/config_loader.rs",
        "src/command_handler.rs",
        "src/file_handler.rs",
        "src/question_handler.rs",
        "src/response.ts",
        "README.md",
        "target/debug/out.log",
        "secret.local",
        ".env",
        "keys/deploy.pem",
        ".git/config",
        "docs/日本語.md",
    ] {
        write(f, "x");
    }
    for n in 0..12 {
        write(&format!("many/item{n:02}.txt"), "x");
    }
    std::fs::write(outside.join("leak.txt"), "outside").unwrap();
    std::os::unix::fs::symlink(outside.join("leak.txt"), base.join("escape")).unwrap();
    std::os::unix::fs::symlink(base.join("src/config.rs"), base.join("inside-link")).unwrap();
    let base = base.canonicalize().unwrap();
    let project = Project {
        roots: Roots::new([base.clone()]),
        base,
        limit: 1024 * 1024,
    };
    (tmp, project)
}

fn found(token: &str, project: &Project) -> Found {
    resolve(token, &walk(&project.base), project)
}

#[test]
fn the_walk_respects_gitignore_and_never_enters_git() {
    let (_tmp, p) = project();
    let files = walk(&p.base);
    assert!(!files.truncated);
    let has = |f: &str| files.paths.iter().any(|x| x == f);
    assert!(has("src/config.rs") && has(".gitignore") && has("docs/日本語.md"));
    assert!(
        has("escape") && has(".env"),
        "walked, refused when resolved"
    );
    assert!(!has("target/debug/out.log"), "{:?}", files.paths);
    assert!(!has("secret.local"));
    assert!(!files.paths.iter().any(|f| f.starts_with(".git/")));
    assert_eq!(files.paths.len(), 25, "{:?}", files.paths);
}

#[test]
fn a_clear_best_match_is_the_only_file_in_the_best_tier() {
    let (_tmp, p) = project();
    let one = |t: &str, f: &str| assert_eq!(found(t, &p), Found::One(f.into()), "{t:?}");
    one("src/config.rs", "src/config.rs");
    // Names the file: beats `src/config_loader.rs`, which only contains it.
    one("config", "src/config.rs");
    one("SRC/Config.RS", "src/config.rs");
    one("./src/config.rs", "src/config.rs");
    // Contains it: only one file does.
    one("resp", "src/response.ts");
    one("loader", "src/config_loader.rs");
    // Letters in order only.
    one("srcrsp", "src/response.ts");
    one("日本語", "docs/日本語.md");
    // Absolute, inside the project.
    one(
        &p.base.join("src/config.rs").display().to_string(),
        "src/config.rs",
    );
    // A symlink that stays inside the project.
    one("inside-link", "inside-link");
}

#[test]
fn several_close_matches_are_listed_best_first_and_capped() {
    let (_tmp, p) = project();
    match found("handler", &p) {
        Found::Several { listed, more } => {
            assert_eq!(listed.len(), 3, "{listed:?}");
            assert_eq!(more, 0);
            for f in [
                "src/command_handler.rs",
                "src/file_handler.rs",
                "src/question_handler.rs",
            ] {
                assert!(listed.iter().any(|l| l == f), "{f} in {listed:?}");
            }
        }
        other => panic!("{other:?}"),
    }
    match found("item", &p) {
        Found::Several { listed, more } => {
            assert_eq!(listed.len(), MAX_LISTED);
            assert_eq!(more, 12 - MAX_LISTED, "the rest is counted");
        }
        other => panic!("{other:?}"),
    }
    // The same answer every time.
    assert_eq!(found("handler", &p), found("handler", &p));
}

#[test]
fn ignored_missing_and_unsendable_files_are_never_offered() {
    let (_tmp, p) = project();
    assert_eq!(found("zzzqqq", &p), Found::NoMatch);
    assert_eq!(found("out.log", &p), Found::NoMatch, "ignored");
    assert_eq!(
        found("target/debug/out.log", &p),
        Found::NoMatch,
        "ignored, even exact"
    );
    assert_eq!(found("secret.local", &p), Found::NoMatch);
    assert_eq!(found(".git/config", &p), Found::NoMatch);
    let refused = |t: &str, words: &str| match found(t, &p) {
        Found::Refused(why) => assert!(why.contains(words), "{t:?}: {why}"),
        other => panic!("{t:?}: {other:?}"),
    };
    refused(".env", "environment file");
    refused("deploy.pem", "private key");
    refused("escape", "outside this session's project");
    refused("../outside/leak.txt", "outside this session's project");
    refused("/etc/passwd", "outside this session's project");
    refused(
        "../../../../../../etc/passwd",
        "outside this session's project",
    );
    refused(&"a".repeat(MAX_TOKEN_CHARS + 1), "longer than");
    refused("a\u{7}b", "control characters");
    assert_eq!(found(&"a".repeat(MAX_TOKEN_CHARS), &p), Found::NoMatch);
    // A secret among sendable matches is simply left out of the list.
    match found("e", &p) {
        Found::Several { listed, .. } => {
            assert!(
                listed.iter().all(|l| l != ".env" && l != "escape"),
                "{listed:?}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_walk_stops_at_its_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let base: &Path = tmp.path();
    // Cheap to create: empty files in a few directories.
    for d in 0..(MAX_WALKED / 1000 + 1) {
        let dir = base.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..1000 {
            std::fs::File::create(dir.join(format!("f{f}"))).unwrap();
        }
    }
    let files = walk(base);
    assert!(files.truncated);
    assert_eq!(files.paths.len(), MAX_WALKED);
}

#[test]
fn tier_two_names_the_file_with_or_without_its_extension() {
    assert!(names_the_file("src/config.rs", "config"));
    assert!(names_the_file("src/config.rs", "src/config"));
    assert!(names_the_file("src/config.rs", "config.rs"));
    assert!(names_the_file("readme", "readme"));
    assert!(!names_the_file("src/myconfig.rs", "config"));
    assert!(!names_the_file("src/config_loader.rs", "config"));
    assert!(!names_the_file(".env", ""));
}

/// Git itself is the reference: on a tree with awkward ignore rules at two
/// levels, the walk lists exactly the files `git ls-files --others
/// --exclude-standard` lists (nothing is tracked, so that is every file git
/// does not ignore).
#[test]
fn the_walk_lists_what_git_lists() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(&base)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
    };
    assert!(git(&["init", "-q"]).unwrap().status.success());
    let write = |p: &str, text: &str| {
        let path = base.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        ".gitignore",
        "*.log\n!keep.log\n/rooted\nbuild/\ndoc/**/gen\nabc/**\n*.[oa]\n\\#lit\n\
         name\\ \ntrail   \n**/deep/x\nvendor/*\n!vendor/ours\nfile?.tmp\n[!a-m]*.bak\n",
    );
    write(".git/info/exclude", "excluded*\n");
    write("sub/.gitignore", "!*.log\nlocal\n/anchored\n");
    for f in [
        "a.log",
        "keep.log",
        "rooted",
        "sub/rooted",
        "build/out",
        "x/build/out",
        "doc/gen",
        "doc/a/gen",
        "doc/a/b/gen",
        "abc/x/y",
        "abc.txt",
        "m.o",
        "m.a",
        "m.c",
        "#lit",
        "name ",
        "name",
        "trail",
        "a/deep/x",
        "deep/x",
        "vendor/theirs",
        "vendor/ours/file",
        "file1.tmp",
        "file12.tmp",
        "b.bak",
        "z.bak",
        "excluded.md",
        "sub/a.log",
        "sub/local",
        "sub/x/local",
        "sub/anchored",
        "sub/x/anchored",
        "src/main.rs",
    ] {
        write(f, "x");
    }
    let global = crate::files::refs::gitignore::global_excludes()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let out = git(&[
        "-c",
        &format!("core.excludesFile={global}"),
        "ls-files",
        "-z",
        "--others",
        "--exclude-standard",
    ])
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut expected: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .split('\0')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    expected.sort();
    let has = |f: &str| expected.iter().any(|e| e == f);
    assert!(
        has("keep.log") && has("sub/a.log") && !has("a.log"),
        "{expected:?}"
    );
    pretty_assertions::assert_eq!(walk(&base).paths, expected);
}
