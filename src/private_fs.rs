//! Files and directories only this user may read: the state database, logs
//! and files received from chat. They are made without following symlinks
//! (a link planted in a shared `/tmp` cannot redirect them), must be owned
//! by us, and get modes 0700 (directories) and 0600 (files).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Why a path cannot be used privately.
fn refuse(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{} {why}", path.display()),
    )
}

/// The effective user id, read from a file we just made, so no unsafe call
/// is needed: `/proc/self` belongs to us.
fn our_uid() -> io::Result<u32> {
    std::fs::metadata("/proc/self").map(|m| m.uid())
}

/// Open a directory without following a symlink at its last component.
fn open_dir(dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(dir)
}

/// What to do with a directory that already existed and is open to others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Refuse it: a shared root someone could read or plant files in.
    Refuse,
    /// Make it 0700: it is ours alone (a session's folder).
    Tighten,
    /// Leave its mode: a directory the user chose for other things too.
    Leave,
}

/// Create `dir` (and its parents) or take it as it is, then insist that it
/// is a real directory owned by us. One we created is made 0700; an
/// existing one is handled as `existing` says.
pub fn private_dir(dir: &Path, existing: Existing) -> io::Result<()> {
    let existed = std::fs::symlink_metadata(dir).is_ok();
    std::fs::create_dir_all(dir)?;
    let handle = open_dir(dir).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => refuse(dir, "is a symlink or not a directory"),
        _ => e,
    })?;
    let meta = handle.metadata()?;
    if meta.uid() != our_uid()? {
        return Err(refuse(dir, "belongs to another user; refusing to use it"));
    }
    let mode = meta.permissions().mode() & 0o777;
    if existed && mode & 0o077 != 0 {
        match existing {
            Existing::Refuse => {
                return Err(refuse(
                    dir,
                    &format!(
                        "is open to others (mode {mode:o}); run `chmod 700` on it or choose \
                         another"
                    ),
                ));
            }
            Existing::Leave => return Ok(()),
            Existing::Tighten => {}
        }
    }
    if mode != 0o700 {
        // fchmod on the open handle: no path lookup, so no symlink race.
        handle.set_permissions(std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Create `path` if needed (never through a symlink) and make it 0600.
pub fn private_file(path: &Path) -> io::Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => refuse(path, "is a symlink"),
            _ => e,
        })?;
    let meta = file.metadata()?;
    if meta.uid() != our_uid()? {
        return Err(refuse(path, "belongs to another user; refusing to use it"));
    }
    if meta.permissions().mode() & 0o777 != 0o600 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or_default()
    }

    #[test]
    fn directories_and_files_are_made_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        private_dir(&dir, Existing::Refuse).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("state.db");
        private_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        // An existing file of ours, too open, is closed up.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        private_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn symlinks_and_open_directories_are_refused_and_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("elsewhere");
        std::fs::create_dir(&target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = tmp.path().join("root");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = private_dir(&link, Existing::Tighten).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        // The link's target was not chmod-ed through the link.
        assert_eq!(mode(&target), 0o755);

        let err = private_dir(&target, Existing::Refuse).unwrap_err();
        assert!(err.to_string().contains("chmod 700"), "{err}");
        private_dir(&target, Existing::Leave).unwrap();
        assert_eq!(mode(&target), 0o755);
        private_dir(&target, Existing::Tighten).unwrap();
        assert_eq!(mode(&target), 0o700);

        let file = tmp.path().join("real.log");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let file_link = tmp.path().join("agent.log");
        std::os::unix::fs::symlink(&file, &file_link).unwrap();
        assert!(private_file(&file_link).is_err());
        assert_eq!(mode(&file), 0o644);
    }

    #[test]
    fn a_directory_of_another_user_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let theirs = tmp.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        // Only root can give a directory away; elsewhere this proves nothing.
        if std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).is_err() {
            return;
        }
        let err = private_dir(&theirs, Existing::Tighten).unwrap_err();
        assert!(err.to_string().contains("another user"), "{err}");
    }
}
