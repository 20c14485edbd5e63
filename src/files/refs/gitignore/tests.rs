use std::path::Path;

use super::*;

/// Whether `rules` (one ignore file at `/r`) ignore `path` (relative).
fn ignores(rules: &str, path: &str, is_dir: bool) -> bool {
    let root = Path::new("/r");
    let set = RuleSet::parse(root, rules);
    set.decide(&root.join(path), is_dir).unwrap_or(false)
}

fn file(rules: &str, path: &str) -> bool {
    ignores(rules, path, false)
}

#[test]
fn a_name_without_a_slash_matches_at_any_depth() {
    assert!(file("target", "target"));
    assert!(file("target", "a/b/target"));
    assert!(ignores("target", "a/target", true));
    assert!(!file("target", "targets"));
    assert!(!file("target", "a/target.rs"));
}

#[test]
fn a_trailing_slash_matches_directories_only() {
    assert!(ignores("build/", "build", true));
    assert!(ignores("build/", "x/build", true));
    assert!(!file("build/", "build"));
}

#[test]
fn a_slash_at_the_start_or_middle_anchors_the_pattern() {
    assert!(file("/todo.txt", "todo.txt"));
    assert!(!file("/todo.txt", "sub/todo.txt"));
    assert!(file("doc/frotz", "doc/frotz"));
    assert!(!file("doc/frotz", "a/doc/frotz"));
    assert!(ignores("doc/frotz/", "doc/frotz", true));
}

#[test]
fn a_star_stays_within_one_component_and_a_question_mark_is_one_char() {
    assert!(file("*.log", "out.log"));
    assert!(file("*.log", "deep/er/out.log"));
    assert!(file("/*.log", "out.log"));
    assert!(!file("/*.log", "deep/out.log"));
    assert!(!file("foo/*", "foo/bar/baz"));
    assert!(file("foo/*", "foo/bar"));
    assert!(file("?.txt", "a.txt"));
    assert!(!file("?.txt", "ab.txt"));
    assert!(!file("a?b", "a/b"));
}

#[test]
fn double_stars_cross_directories_where_gitignore_says() {
    assert!(file("**/foo", "foo"));
    assert!(file("**/foo", "a/b/foo"));
    assert!(file("**/foo/bar", "x/foo/bar"));
    assert!(file("abc/**", "abc/x"));
    assert!(file("abc/**", "abc/x/y"));
    assert!(!ignores("abc/**", "abc", true));
    assert!(file("a/**/b", "a/b"));
    assert!(file("a/**/b", "a/x/b"));
    assert!(file("a/**/b", "a/x/y/b"));
    assert!(!file("a/**/b", "a/xb"));
    // Elsewhere `**` is an ordinary star.
    assert!(file("a**b", "axxb"));
    assert!(!file("a**b", "a/b"));
}

#[test]
fn bracket_expressions_ranges_and_negation() {
    assert!(file("*.[oa]", "x.o"));
    assert!(file("*.[oa]", "x.a"));
    assert!(!file("*.[oa]", "x.c"));
    assert!(file("file[0-9]", "file7"));
    assert!(!file("file[0-9]", "filex"));
    assert!(file("x[!0-9]", "xa"));
    assert!(file("x[^0-9]", "xa"));
    assert!(!file("x[!0-9]", "x1"));
    assert!(file("[]]", "]"));
    // Never closed: a literal `[`.
    assert!(file("a[b", "a[b"));
    assert!(!file("a[b", "ab"));
}

#[test]
fn escapes_comments_blanks_and_trailing_spaces() {
    assert!(!file("# comment", "# comment"));
    assert!(file("\\#hash", "#hash"));
    assert!(file("\\!bang", "!bang"));
    assert!(file("name   ", "name"));
    assert!(file("name\\ ", "name "));
    assert!(file("a\\*b", "a*b"));
    assert!(!file("a\\*b", "axb"));
    assert!(!file("\n\n   \n", "anything"));
    assert!(file("crlf\r\n", "crlf"));
}

#[test]
fn the_last_matching_line_wins_and_negation_re_includes() {
    assert!(!file("*.log\n!keep.log", "keep.log"));
    assert!(file("*.log\n!keep.log", "other.log"));
    assert!(file("!keep.log\n*.log", "keep.log"));
}

#[test]
fn hostile_patterns_stay_cheap() {
    // Backtracking matchers blow up on this; the table does not.
    let pattern = "*a*a*a*a*a*a*a*a*a*a*a*a*b";
    let name = "a".repeat(200);
    assert!(!file(pattern, &name));
    let deep = "**/".repeat(50) + "z";
    assert!(file(&deep, &("d/".repeat(100) + "z")));
}

/// A tree: a repository with ignore files at several levels.
fn repo() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path().canonicalize().unwrap().join("repo");
    for dir in [".git/info", "sub/deeper", "build"] {
        std::fs::create_dir_all(top.join(dir)).unwrap();
    }
    let write = |p: &str, text: &str| std::fs::write(top.join(p), text).unwrap();
    write(".git/info/exclude", "excluded.txt\n");
    write(".gitignore", "*.log\nbuild/\n!important.log\n");
    write("sub/.gitignore", "!sub.log\nlocal-only\n");
    write("sub/.ignore", "local-only-too\n!local-only\n");
    (tmp, top)
}

fn at(ignores: &Ignores, path: &Path) -> bool {
    ignores.ignored(path, path.is_dir())
}

#[test]
fn info_exclude_and_the_top_gitignore_apply_from_a_subdirectory() {
    let (_tmp, top) = repo();
    let base = top.join("sub");
    let mut ignores = Ignores::for_base(&base, None);
    ignores.enter(&base);
    assert!(at(&ignores, &base.join("excluded.txt")));
    assert!(at(&ignores, &base.join("x.log")));
    assert!(!at(&ignores, &base.join("important.log")));
    assert!(!at(&ignores, &base.join("sub.log")), "deeper file wins");
    assert!(at(&ignores, &base.join("local-only-too")));
    assert!(
        !at(&ignores, &base.join("local-only")),
        ".ignore beats .gitignore in the same directory"
    );
}

#[test]
fn leaving_a_directory_drops_its_rules() {
    let (_tmp, top) = repo();
    let mut ignores = Ignores::for_base(&top, None);
    let outer = ignores.enter(&top);
    let inner = ignores.enter(&top.join("sub"));
    assert_eq!(inner, 2);
    assert!(!at(&ignores, &top.join("sub/sub.log")));
    ignores.leave(inner);
    assert!(at(&ignores, &top.join("sub/sub.log")));
    ignores.leave(outer);
    assert!(!at(&ignores, &top.join("sub/sub.log")));
}

#[test]
fn outside_a_repository_parent_directories_do_not_count() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("proj")).unwrap();
    std::fs::write(root.join(".gitignore"), "*\n").unwrap();
    let ignores = Ignores::for_base(&root.join("proj"), None);
    assert!(!at(&ignores, &root.join("proj/file")));
}

#[test]
fn global_excludes_apply_from_the_repository_top() {
    let (tmp, top) = repo();
    let global = tmp.path().join("global-ignore");
    std::fs::write(&global, "/sub/secret\n*.swp\n").unwrap();
    let base = top.join("sub");
    let ignores = Ignores::for_base(&base, Some(&global));
    assert!(at(&ignores, &base.join("secret")));
    assert!(at(&ignores, &base.join("deeper/x.swp")));
    assert!(!at(&ignores, &base.join("deeper/secret")));
}

#[test]
fn unreadable_oversized_and_binary_ignore_files_cost_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert!(RuleSet::read(dir, &dir.join("missing")).is_none());
    // A directory where a file should be.
    std::fs::create_dir(dir.join(".gitignore")).unwrap();
    assert!(RuleSet::read(dir, &dir.join(".gitignore")).is_none());
    // Past the cap: the rest is not read.
    let big = dir.join("big");
    let mut text = "x\n".repeat((MAX_RULES_BYTES / 2) as usize);
    text.push_str("beyond-the-cap\n");
    std::fs::write(&big, text).unwrap();
    let set = RuleSet::read(dir, &big).unwrap();
    assert!(set.decide(&dir.join("x"), false).unwrap_or(false));
    assert!(set.decide(&dir.join("beyond-the-cap"), false).is_none());
    // Not UTF-8: read lossily, the valid lines still count.
    let binary = dir.join("binary");
    std::fs::write(&binary, b"\xff\xfe\x00\nplain\n").unwrap();
    let set = RuleSet::read(dir, &binary).unwrap();
    assert!(set.decide(&dir.join("plain"), false).unwrap_or(false));
}
