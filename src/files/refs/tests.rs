use std::path::PathBuf;

use super::*;

fn ready(base: &std::path::Path, chosen: Vec<(&str, Vec<&str>)>) -> Ready {
    let base = base.canonicalize().unwrap();
    Ready {
        project: Project {
            roots: Roots::new([base.clone()]),
            base,
            limit: 1024,
        },
        chosen: chosen
            .into_iter()
            .map(|(r, f)| (r.to_owned(), f.into_iter().map(str::to_owned).collect()))
            .collect(),
        at: std::time::Instant::now(),
    }
}

fn decoded(part: &FilePart) -> Vec<u8> {
    let (_, data) = part.url.split_once(";base64,").unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap()
}

#[test]
fn text_goes_as_text_images_as_images_binaries_by_path() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    std::fs::write(base.join("main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(base.join("shot.png"), [0x89, b'P', b'N', b'G', 0, 1]).unwrap();
    std::fs::write(base.join("blob.bin"), [1, 0, 2]).unwrap();
    let r = ready(
        base,
        vec![
            ("main", vec!["main.rs"]),
            ("shot", vec!["shot.png"]),
            ("blob", vec!["blob.bin"]),
            ("handler", vec![]),
        ],
    );
    let (parts, note) = build(&r);
    let canon = |n: &str| base.canonicalize().unwrap().join(n).display().to_string();
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(parts[0].mime, "text/plain");
    assert_eq!(parts[0].filename, canon("main.rs"));
    assert_eq!(decoded(&parts[0]), b"fn main() {}\n");
    assert_eq!(parts[1].mime, "image/png");
    assert_eq!(decoded(&parts[1]), [0x89, b'P', b'N', b'G', 0, 1]);
    assert_eq!(
        note,
        format!(
            "\n\n[Referenced files]\
             \n- !!main → {} (13 bytes, its text follows this message)\
             \n- !!shot → {} (6 bytes, given to you as a file part)\
             \n- !!blob → {} (3 bytes, binary: read it from the path if needed)\
             \n- !!handler: the person chose to send no file",
            canon("main.rs"),
            canon("shot.png"),
            canon("blob.bin")
        )
    );
}

/// Checked when resolved, swapped for a symlink out of the project before
/// the prompt is sent: not read.
#[test]
fn a_file_swapped_after_the_check_is_not_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("p");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(tmp.path().join("secret.txt"), "outside").unwrap();
    std::os::unix::fs::symlink(tmp.path().join("secret.txt"), base.join("notes.txt")).unwrap();
    let big = "x".repeat(2048);
    std::fs::write(base.join("big.txt"), &big).unwrap();
    let r = ready(
        &base,
        vec![("notes", vec!["notes.txt"]), ("big", vec!["big.txt"])],
    );
    let (parts, note) = build(&r);
    assert!(parts.is_empty(), "{parts:?}");
    assert!(
        note.contains("- !!notes: not sent: `notes.txt` resolves to"),
        "{note}"
    );
    assert!(note.contains("outside this session's project"), "{note}");
    assert!(
        note.contains("- !!big: not sent: `big.txt` is 2 KiB"),
        "{note}"
    );
    assert!(!note.contains("outside\n") && !note.contains(&big));
}

#[test]
fn lists_expire_and_are_per_thread() {
    let refs = Refs::default();
    let pending = |at: std::time::Instant| Pending {
        post: Post::default(),
        sender: "alice".into(),
        text: "look at !!x".into(),
        ready: ready(&PathBuf::from("/"), vec![]),
        listed: Vec::new(),
        at,
    };
    let now = std::time::Instant::now();
    refs.pending().insert("root-a".into(), pending(now));
    if let Some(old) = now.checked_sub(LIST_TTL + std::time::Duration::from_secs(1)) {
        refs.pending().insert("root-b".into(), pending(old));
    }
    let map = refs.pending();
    assert!(map.contains_key("root-a"));
    assert!(!map.contains_key("root-b"), "an expired list is dropped");
}
