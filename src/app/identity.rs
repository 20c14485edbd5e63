//! This agent's instance id. Threads, claims and cursors are keyed by it, so
//! it must survive a restart, yet two agents started in the same project
//! directory (two OpenCode windows) must not share it. Each project
//! directory has numbered slots under the state directory; an agent takes
//! the first slot no running agent holds (an exclusive file lock, released
//! by the OS when the process dies) and keeps that slot's id, made once.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::private_fs::{Existing, private_dir, private_file};

/// More agents than this in one directory at once share the last id.
const SLOTS: usize = 32;

/// An instance id and the lock that keeps it this process's own.
#[derive(Debug)]
pub struct Identity {
    pub id: String,
    /// Held for the life of the process; dropping it frees the slot.
    _lock: Option<File>,
}

impl Identity {
    /// An id kept nowhere (no state directory): unique, but a restart gets
    /// a new one.
    pub fn ephemeral() -> Identity {
        Identity::given(&new_id())
    }

    /// An id chosen by the caller (in-process tests restart "the same" agent).
    pub fn given(id: &str) -> Identity {
        Identity {
            id: id.to_owned(),
            _lock: None,
        }
    }
}

/// The kept id of an agent in `directory`, or (no state directory, or it
/// cannot be used) one for this run only, said in the log.
pub fn for_directory(state_dir: Option<&Path>, directory: &str) -> Identity {
    let Some(state_dir) = state_dir else {
        tracing::warn!("no state directory; this run's instance id is not kept");
        return Identity::ephemeral();
    };
    claim(state_dir, directory).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot keep an instance id; this run gets its own");
        Identity::ephemeral()
    })
}

/// The id of the first free slot of `directory` under `state_dir`.
pub fn claim(state_dir: &Path, directory: &str) -> io::Result<Identity> {
    let dir = state_dir.join("instances");
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
        private_dir(parent, Existing::Tighten)?;
    }
    private_dir(&dir, Existing::Tighten)?;
    let key = format!("{:016x}", fnv1a(directory.as_bytes()));
    for slot in 0..SLOTS {
        let path = dir.join(format!("{key}-{slot}.id"));
        let mut file = open_slot(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => continue,
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        let id = read_or_make(&mut file)?;
        return Ok(Identity {
            id,
            _lock: Some(file),
        });
    }
    Err(io::Error::other(format!(
        "{SLOTS} agents already run in {directory}"
    )))
}

/// The id the first agent started in `directory` will have (its slot 0),
/// made now if no agent ever ran there: what the importer binds old threads
/// to, so the agent of that project answers them. The slot is not kept.
pub fn first_slot_id(state_dir: &Path, directory: &str) -> io::Result<String> {
    let dir = state_dir.join("instances");
    std::fs::create_dir_all(&dir)?;
    if let Some(parent) = dir.parent() {
        private_dir(parent, Existing::Tighten)?;
    }
    private_dir(&dir, Existing::Tighten)?;
    let key = format!("{:016x}", fnv1a(directory.as_bytes()));
    let path = dir.join(format!("{key}-0.id"));
    let mut file = open_slot(&path)?;
    match file.try_lock() {
        // Nobody runs there: make the id if it is missing, then let go.
        Ok(()) => read_or_make(&mut file),
        // A running agent holds it, so it has written its id already.
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            file.read_to_string(&mut text)?;
            let text = text.trim();
            if is_id(text) {
                Ok(text.to_owned())
            } else {
                Err(io::Error::other(format!(
                    "{} holds no instance id",
                    path.display()
                )))
            }
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

fn open_slot(path: &PathBuf) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    private_file(path)?;
    Ok(file)
}

/// The slot's id, or a new one written into it.
fn read_or_make(file: &mut File) -> io::Result<String> {
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let text = text.trim();
    if is_id(text) {
        return Ok(text.to_owned());
    }
    let id = new_id();
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(id.as_bytes())?;
    file.sync_all()?;
    Ok(id)
}

fn is_id(text: &str) -> bool {
    text.strip_prefix("inst_").is_some_and(|rest| {
        rest.len() == 16
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

fn new_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let tail: String = (0..16)
        .map(|_| char::from(ALPHABET[fastrand::usize(..ALPHABET.len())]))
        .collect();
    format!("inst_{tail}")
}

/// A stable hash of the directory for the slot file names (not `DefaultHasher`,
/// whose output may change between Rust releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_kept_across_restarts_and_not_shared_at_once() {
        let state = tempfile::tempdir().unwrap();
        let first = claim(state.path(), "/work/project").unwrap();
        assert!(is_id(&first.id), "{}", first.id);
        // A second agent in the same directory while the first runs.
        let second = claim(state.path(), "/work/project").unwrap();
        assert_ne!(first.id, second.id);
        // Another directory has slots of its own.
        let other = claim(state.path(), "/work/other").unwrap();
        assert_ne!(other.id, first.id);
        assert_ne!(other.id, second.id);
        let (first_id, second_id) = (first.id.clone(), second.id.clone());
        drop(first);
        // The first agent restarts: its slot, its id.
        let again = claim(state.path(), "/work/project").unwrap();
        assert_eq!(again.id, first_id);
        drop(second);
        let again2 = claim(state.path(), "/work/project").unwrap();
        assert_eq!(again2.id, second_id);
    }

    #[test]
    fn the_first_slot_id_is_the_id_the_first_agent_of_a_directory_gets() {
        let state = tempfile::tempdir().unwrap();
        // Before any agent ran: made now, kept for the agent.
        let before = first_slot_id(state.path(), "/work/project").unwrap();
        assert!(is_id(&before), "{before}");
        let agent = claim(state.path(), "/work/project").unwrap();
        assert_eq!(agent.id, before);
        // While that agent runs and holds the slot: the same id.
        assert_eq!(
            first_slot_id(state.path(), "/work/project").unwrap(),
            before
        );
        // Another directory: another id.
        assert_ne!(first_slot_id(state.path(), "/work/other").unwrap(), before);
    }

    #[test]
    fn a_damaged_slot_gets_a_new_id_and_the_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let state = tempfile::tempdir().unwrap();
        let id = claim(state.path(), "/p").unwrap().id;
        let dir = state.path().join("instances");
        let slot = std::fs::read_dir(&dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        assert_eq!(std::fs::read_to_string(&slot).unwrap(), id);
        assert_eq!(
            std::fs::metadata(&slot).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::write(&slot, "../../etc/passwd\n").unwrap();
        let fresh = claim(state.path(), "/p").unwrap();
        assert!(is_id(&fresh.id));
        assert_ne!(fresh.id, id);
    }
}
