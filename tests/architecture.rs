//! Architecture rules, checked by reading the crate's own `src/`. The agent is layered
//! (ground, services, engine, features, router, agent state, tools, server: see [`LAYERS`]) so each part can
//! be read and changed without the rest in mind; these tests keep it so without relying
//! on review: no cycle between top-level modules (edges are `crate::` paths outside
//! `#[cfg(test)]`); a module uses only lower layers (ground modules may use each other,
//! features never do, a new module must be given a layer); no file over 800 lines; no
//! global runtime state (`static` mutexes, cells, lazies, atomics, `static mut`,
//! `thread_local!`), since state passed in is what keeps modules testable alone. The
//! parser is a small lexer (comments, strings, char literals dropped; `#[cfg(test)]` items
//! skipped), unit-tested at the bottom; the real tree must yield a non-trivial graph.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::{fs, path::Path};

/// Layer of each top-level module, lowest first. A module may use modules of
/// a strictly lower layer; ground modules may also use each other.
#[rustfmt::skip]
const LAYERS: &[(&str, u8)] = &[
    ("rpc", 0), ("config", 0), ("store", 0), ("mattermost", 0), ("opencode", 0),
    ("access", 0), ("render", 0), ("logging", 0), ("private_fs", 0), ("tz", 0),
    ("app", 1),
    ("sessions", 2),
    ("commands", 3), ("asks", 3), ("files", 3), ("monitor", 3), ("scheduler", 3),
    ("tui", 3), ("channels", 3), ("context", 3),
    ("router", 4),
    ("agent", 5),
    ("tools", 6), ("cli", 6),
    ("server", 7),
];
#[rustfmt::skip]
const LAYER_NAMES: [&str; 8] =
    ["ground", "services", "engine", "features", "router", "agent state", "tools", "server"];
const GROUND: u8 = 0;
const FEATURES: u8 = 3;
const MAX_LINES: usize = 800;
#[rustfmt::skip]
const STATE_TYPES: &[&str] =
    &["Mutex", "RwLock", "OnceLock", "OnceCell", "LazyLock", "Lazy", "RefCell", "Cell"];
const CFG_TEST: [&str; 7] = ["#", "[", "cfg", "(", "test", ")", "]"];

#[derive(Debug, Clone)]
struct Tok {
    text: String,
    line: usize,
}

/// Index just past the `quote` closing the literal whose body starts at `i`.
fn lit_end(b: &[u8], mut i: usize, quote: u8) -> usize {
    while i < b.len() && b[i] != quote {
        i += if b[i] == b'\\' { 2 } else { 1 };
    }
    i + 1
}

/// Index just past the (nested) block comment starting at `i`.
fn comment_end(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0;
    while i + 1 < b.len() {
        let d = i32::from(b[i..i + 2] == *b"/*") - i32::from(b[i..i + 2] == *b"*/");
        (depth, i) = (depth + d, i + 1 + usize::from(d != 0));
        if depth == 0 {
            return i;
        }
    }
    b.len()
}

/// Tokens of `src` without comments; strings become `""`, char literals `' '`.
fn lex(src: &str) -> Vec<Tok> {
    let b = src.as_bytes();
    let at = |k: usize| b.get(k).copied().unwrap_or(0);
    let ident = |x: &u8| x.is_ascii_alphanumeric() || *x == b'_' || *x >= 0x80;
    let count =
        |k: usize, f: &dyn Fn(&u8) -> bool| b[k.min(b.len())..].iter().take_while(|x| f(x)).count();
    let width = |k: usize| src[k..].chars().next().map_or(1, char::len_utf8);
    let newlines: Vec<usize> = src.match_indices('\n').map(|(k, _)| k).collect();
    let (mut i, mut out) = (0, Vec::new());
    while i < b.len() {
        let word = i + 1 + count(i + 1, &ident);
        let (end, text) = match (b[i], at(i + 1)) {
            (x, _) if x.is_ascii_whitespace() => (i + 1, ""),
            (b'/', b'/') => (src[i..].find('\n').map_or(b.len(), |k| i + k), ""),
            (b'/', b'*') => (comment_end(b, i), ""),
            (b'"', _) => (lit_end(b, i + 1, b'"'), "\"\""),
            (b'\'', b'\\') => (lit_end(b, i + 1, b'\''), "' '"),
            (b'\'', _) if at(i + 1 + width(i + 1)) == b'\'' => (i + 2 + width(i + 1), "' '"),
            (x, _) if x == b'\'' || ident(&x) => (word, &src[i..word]),
            _ => (i + 1, &src[i..=i]),
        };
        let hashes = count(end, &|h| *h == b'#');
        let (end, text) = if matches!(text, "r" | "br" | "cr") && at(end + hashes) == b'"' {
            let (close, body) = (format!("\"{}", "#".repeat(hashes)), end + hashes + 1);
            let found = src[body..].find(&close);
            (found.map_or(b.len(), |k| body + k + close.len()), "\"\"")
        } else {
            (end, text)
        };
        let (text, line) = (text.to_owned(), newlines.partition_point(|&k| k < i) + 1);
        if !text.is_empty() {
            out.push(Tok { text, line });
        }
        i = end;
    }
    out
}

fn is(t: &[Tok], i: usize, s: &str) -> bool {
    t.get(i).is_some_and(|t| t.text == s)
}
fn seq(t: &[Tok], i: usize, pat: &[&str]) -> bool {
    pat.iter().enumerate().all(|(k, p)| is(t, i + k, p))
}
fn is_ident(t: &[Tok], i: usize) -> bool {
    let first = t.get(i).and_then(|t| t.text.chars().next());
    first.is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Index just past the bracket group opened at `i`.
fn close(t: &[Tok], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < t.len() {
        match t[i].text.as_str() {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" if depth <= 1 => return i + 1,
            ")" | "]" | "}" => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    i
}

/// Index just past the item starting at `i`: its `;`, or its `{…}` body unless
/// `semicolon_only` (`use crate::{a, b};`, `static X: T = T { … };`).
fn skip_item(t: &[Tok], mut i: usize, semicolon_only: bool) -> usize {
    while i < t.len() {
        match t[i].text.as_str() {
            "{" if !semicolon_only => return close(t, i),
            "(" | "[" | "{" => i = close(t, i),
            ")" | "]" | "}" => return i,
            ";" => return i + 1,
            _ => i += 1,
        }
    }
    i
}

#[derive(Debug, Default)]
struct Scan {
    refs: Vec<(String, usize, String)>, // (segment after `crate::`, line, path text)
    statics: Vec<usize>,                // lines of `static` runtime state, `thread_local!`
    test_mods: Vec<String>,             // `#[cfg(test)] mod name;`
}

/// The tokens `t` without `#[cfg(test)]` items.
fn strip_test(t: &[Tok], scan: &mut Scan) -> Vec<Tok> {
    let (mut out, mut i) = (Vec::<Tok>::new(), 0);
    while i < t.len() {
        if !seq(t, i, &CFG_TEST) {
            out.push(t[i].clone());
            i += 1;
            continue;
        }
        i += CFG_TEST.len();
        while seq(t, i, &["#", "["]) {
            i = close(t, i + 1);
        }
        i += usize::from(is(t, i, "pub"));
        if is(t, i - 1, "pub") && is(t, i, "(") {
            i = close(t, i);
        }
        let kind = t.get(i).map_or("", |t| t.text.as_str());
        if kind == "mod" && is_ident(t, i + 1) && is(t, i + 2, ";") {
            scan.test_mods.push(t[i + 1].text.clone());
        }
        let is_fn = ["fn", "unsafe", "async"].iter().any(|k| is(t, i + 1, k));
        let semicolon_only =
            matches!(kind, "use" | "let" | "type" | "static") || (kind == "const" && !is_fn);
        i = skip_item(t, i, semicolon_only);
    }
    out
}

/// The path starting at `start` as written, e.g. `crate::a::{B, C as D}`.
fn path_text(t: &[Tok], start: usize) -> String {
    let mut end = (start..)
        .find(|&k| !is_ident(t, k) && !is(t, k, ":"))
        .unwrap_or(start);
    if is(t, end - 1, ":") && is(t, end, "{") {
        end = close(t, end);
    }
    let mut s = String::new();
    for k in start..end {
        let gap = k > start && (is_ident(t, k - 1) && is_ident(t, k) || is(t, k - 1, ","));
        if !(is(t, k, ",") && is(t, k + 1, "}")) {
            s = s + if gap && !is(t, k, "}") { " " } else { "" } + &t[k].text;
        }
    }
    if s.chars().count() > 72 {
        s = s.chars().take(70).collect::<String>() + "…}";
    }
    s
}

/// Scan one file: `crate::` paths, global state, test-only modules.
fn scan(src: &str) -> Scan {
    let mut scan = Scan::default();
    let t = strip_test(&lex(src), &mut scan);
    for i in 0..t.len() {
        match t[i].text.as_str() {
            "crate" if seq(&t, i + 1, &[":", ":"]) && is_ident(&t, i + 3) => {
                let (k, text) = (i + 3, path_text(&t, i));
                scan.refs.push((t[k].text.clone(), t[k].line, text));
            }
            "crate" if seq(&t, i + 1, &[":", ":", "{"]) => {
                let (end, mut k, mut member) = (close(&t, i + 3) - 1, i + 4, true);
                while k < end {
                    if member && is_ident(&t, k) && !is(&t, k, "self") {
                        let text = format!("crate::{{{}, …}}", path_text(&t, k));
                        scan.refs.push((t[k].text.clone(), t[k].line, text));
                    }
                    member = is(&t, k, ",");
                    k = if is(&t, k, "{") { close(&t, k) } else { k + 1 };
                }
            }
            "static" => {
                let item = &t[i + 1..skip_item(&t, i, true)];
                let state =
                    |t: &Tok| STATE_TYPES.contains(&&*t.text) || t.text.starts_with("Atomic");
                if is(&t, i + 1, "mut") || item.iter().any(state) {
                    scan.statics.push(t[i].line);
                }
            }
            "thread_local" | "lazy_static" if is(&t, i + 1, "!") => scan.statics.push(t[i].line),
            _ => {}
        }
    }
    scan
}

/// Paths made test-only by `#[cfg(test)] mod name;` in the file at `rel`.
fn test_only_paths(rel: &str, name: &str) -> [String; 2] {
    let stem = rel.trim_end_matches(".rs");
    let dir = match stem.rsplit_once('/') {
        Some((d, "mod" | "lib" | "main")) => format!("{d}/"),
        None if matches!(stem, "mod" | "lib" | "main") => String::new(),
        _ => format!("{stem}/"),
    };
    [format!("{dir}{name}.rs"), format!("{dir}{name}/")]
}

/// Every `.rs` file under `src/` as (path relative to `src/`, text), sorted.
fn src_files() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (mut dirs, mut out) = (vec![root.clone()], Vec::new());
    while let Some(dir) = dirs.pop() {
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for path in entries.flatten().map(|e| e.path()) {
            let rel = path.strip_prefix(&root).unwrap_or(&path).to_string_lossy();
            let rel = rel.replace('\\', "/");
            if path.is_dir() {
                dirs.push(path);
            } else if rel.ends_with(".rs") {
                let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
                out.push((rel, text));
            }
        }
    }
    out.sort();
    out
}

struct Source {
    rel: String,
    text: String,
    scan: Scan,
}

/// Non-test sources of top-level modules (not `lib.rs`/`main.rs`).
fn module_sources() -> Vec<Source> {
    let (mut test_only, mut sources) = (Vec::<String>::new(), Vec::new());
    for (rel, text) in src_files() {
        let scan = scan(&text);
        for name in &scan.test_mods {
            test_only.extend(test_only_paths(&rel, name));
        }
        let tests = rel.split('/').any(|c| c == "tests" || c == "tests.rs");
        if !tests && rel != "lib.rs" && rel != "main.rs" {
            sources.push(Source { rel, text, scan });
        }
    }
    sources.retain(|s| !test_only.iter().any(|p| s.rel.starts_with(p.as_str())));
    sources
}

fn top_module(rel: &str) -> &str {
    rel.split('/').next().unwrap_or(rel).trim_end_matches(".rs")
}

/// module → module it uses → evidence (`src/file.rs:line `crate::path``).
type Graph = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn graph(sources: &[Source]) -> Graph {
    let modules: BTreeSet<&str> = sources.iter().map(|s| top_module(&s.rel)).collect();
    let mut g = Graph::new();
    for s in sources {
        let from = top_module(&s.rel);
        let node = g.entry(from.to_owned()).or_default();
        for (to, line, text) in &s.scan.refs {
            if to != from && modules.contains(to.as_str()) {
                let ev = format!("src/{}:{line} `{text}`", s.rel);
                node.entry(to.clone()).or_default().push(ev);
            }
        }
    }
    g
}

/// The edge `from -> to` and the paths that make it.
fn evidence(g: &Graph, from: &str, to: &str) -> String {
    let ev: String = g[from][to]
        .iter()
        .map(|e| format!("\n        {e}"))
        .collect();
    format!("    {from} -> {to}:{ev}")
}

/// The shortest cycle through `start`, as `[start, …, start]`.
fn shortest_cycle<'g>(g: &'g Graph, start: &'g str) -> Option<Vec<&'g str>> {
    let (mut from, mut queue) = (BTreeMap::<&str, &str>::new(), VecDeque::from([start]));
    while let Some(n) = queue.pop_front() {
        for next in g.get(n).into_iter().flat_map(|d| d.keys()) {
            if !from.contains_key(next.as_str()) {
                from.insert(next, n);
                queue.push_back(next);
            }
        }
    }
    let (mut path, mut cur) = (vec![start], *from.get(start)?);
    while cur != start {
        path.push(cur);
        cur = from[cur];
    }
    path.push(start);
    path.reverse();
    Some(path)
}

/// The graph of the real `src/`, checked to be big enough that the rules
/// about it cannot pass by the parser seeing nothing.
fn real_graph() -> Graph {
    let g = graph(&module_sources());
    let edges: usize = g.values().map(BTreeMap::len).sum();
    assert!(g.len() >= 10, "only {} modules found in src/", g.len());
    assert!(edges >= 10, "only {edges} edges found in src/");
    g
}

fn fail_if_any(problems: &[String], sep: &str, title: &str) {
    assert!(problems.is_empty(), "{title}\n\n{}\n", problems.join(sep));
}

#[test]
fn module_graph_has_no_cycle() {
    let g = real_graph();
    let (mut covered, mut problems) = (BTreeSet::new(), Vec::new());
    for m in g.keys().map(String::as_str) {
        let Some(cycle) = shortest_cycle(&g, m).filter(|_| !covered.contains(m)) else {
            continue;
        };
        let mut msg = format!("cycle: {}", cycle.join(" -> "));
        for pair in cycle.windows(2) {
            msg = msg + "\n" + &evidence(&g, pair[0], pair[1]);
        }
        covered.extend(cycle);
        problems.push(msg);
    }
    let title = "module cycles (edges are `crate::` paths; a shortest cycle per module):";
    fail_if_any(&problems, "\n\n", title);
}

#[test]
fn layers_point_one_way() {
    let g = real_graph();
    let layer = |m: &str| LAYERS.iter().find(|(n, _)| *n == m).map(|&(_, l)| l);
    let name = |l: u8| LAYER_NAMES[usize::from(l)];
    let mut problems = Vec::new();
    for m in g.keys().filter(|m| layer(m).is_none()) {
        problems.push(format!(
            "module `{m}` (src/{m}) is not in LAYERS: add it to the table in \
             tests/architecture.rs so its layer is chosen deliberately"
        ));
    }
    for (from, deps) in &g {
        for to in deps.keys() {
            let (Some(a), Some(b)) = (layer(from), layer(to)) else {
                continue;
            };
            let why = if a == FEATURES && b == FEATURES {
                format!("features must not use each other: {from} -> {to}")
            } else if b < a || (a == GROUND && b == GROUND) {
                continue;
            } else {
                let (na, nb) = (name(a), name(b));
                format!("{from} ({na}, layer {a}) must not use {to} ({nb}, layer {b})")
            };
            problems.push(format!("{why}\n{}", evidence(&g, from, to)));
        }
    }
    let title = "layering violations (see LAYERS in tests/architecture.rs):";
    fail_if_any(&problems, "\n\n", title);
}

#[test]
fn files_stay_under_800_lines() {
    let mut problems = Vec::new();
    for (rel, text) in src_files() {
        let n = text.lines().count();
        if n > MAX_LINES {
            problems.push(format!("    src/{rel}: {n}"));
        }
    }
    let title = format!("files over {MAX_LINES} lines (split them), with line counts:");
    fail_if_any(&problems, "\n", &title);
}

#[test]
fn no_global_runtime_state() {
    let mut problems = Vec::new();
    for s in module_sources() {
        for &line in &s.scan.statics {
            let code = s.text.lines().nth(line - 1).unwrap_or("").trim();
            problems.push(format!("    src/{}:{line}: {code}", s.rel));
        }
    }
    let title = "global runtime state (keep state in values passed in instead):";
    fail_if_any(&problems, "\n", title);
}

#[test]
fn real_tree_is_parsed() {
    real_graph();
}

fn names(src: &str) -> Vec<String> {
    scan(src).refs.into_iter().map(|r| r.0).collect()
}

#[test]
fn parser_reads_grouped_multi_line_use() {
    let src = "use crate::{\n    config::Config,\n    store::{Store, crate_like::X},\n    \
               render, self,\n};\nfn f() { let _ = crate::rpc::serve(); }\n\
               use crate::opencode::{\n    Client,\n    Session as S,\n};";
    let expected = ["config", "store", "render", "rpc", "opencode"];
    assert_eq!(names(src), expected);
    let refs = scan(src).refs;
    let store = (refs[1].1, refs[1].2.as_str());
    assert_eq!(store, (3, "crate::{store::{Store, crate_like::X}, …}"));
    assert_eq!(refs[4].2, "crate::opencode::{Client, Session as S}");
}

#[test]
fn parser_skips_cfg_test_items() {
    let src = "#[cfg(test)]\n#[allow(dead_code)]\npub(crate) mod tests {\n    \
               use crate::hidden::X;\n    mod inner { fn f() { crate::deeper::y(); } }\n}\n\
               fn g() { crate::visible::z(); }\n\
               #[cfg(test)] fn h() -> [u8; 2] { crate::helper::h() }\n\
               #[cfg(test)] use crate::{a, b};\n\
               #[cfg(not(test))] use crate::kept::K;\nimpl S { #[cfg(test)] const fn k() {} }";
    assert_eq!(names(src), ["visible", "kept"]);
    let src = "#[cfg(test)]\nmod tests;\n#[cfg(test)] pub(crate) mod fixtures;\nmod real;";
    assert_eq!(scan(src).test_mods, ["tests", "fixtures"]);
    let paths = test_only_paths("rpc/transport.rs", "t");
    assert_eq!(paths, ["rpc/transport/t.rs", "rpc/transport/t/"]);
    let paths = test_only_paths("store/mod.rs", "t");
    assert_eq!(paths, ["store/t.rs", "store/t/"]);
}

#[test]
fn parser_ignores_comments_and_strings() {
    let src = r##"// crate::a
/// crate::b
//! crate::c
/* crate::d /* nested */ crate::e */
const S: &str = "crate::f \" crate::g";
const R: &str = r#"crate::h " crate::i"#;
const T: &str = r"crate::j\"; const B: &[u8] = b"crate::k";
const Q: char = '"'; const E: char = '\''; fn f() { crate::real::x() }
fn l<'a>(x: &'a str) -> &'static str { let _ = ('{', 'é'); crate::life::x }"##;
    assert_eq!(names(src), ["real", "life"]);
    assert_eq!(scan(src).refs[0].1, 8);
}

#[test]
fn parser_flags_global_state() {
    let src = "static A: Mutex<u8> = Mutex::new(0);\nstatic B: &str = \"Mutex\";\n\
               fn f() {\n    static C: std::sync::atomic::AtomicU64 = AtomicU64::new(0);\n}\n\
               static mut D: u8 = 0;\nthread_local! { static E: u8 = 0; }\n\
               const F: Mutex<u8> = Mutex::new(0);\nfn g(x: &'static str) -> &'static str { x }\n\
               #[cfg(test)] static T: Cell<u8> = Cell::new(0);\nstatic L: LazyLock<X> = x();";
    assert_eq!(scan(src).statics, [1, 4, 6, 7, 11]);
}
