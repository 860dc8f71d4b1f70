//! Secret files (the session key, the users file with its password hashes) readable by their
//! owner only: written `0600` through a temporary file renamed into place, so no reader ever
//! sees a half-written file and no other local user ever sees the secret.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `bytes` to `path` with mode `0600`, replacing any earlier file (and its mode).
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    put(path, bytes, |temporary, path| std::fs::rename(temporary, path)).map(|_| ())
}

/// Writes `bytes` to `path` with mode `0600` unless a file is there already: `false` then, and
/// the file is left as it is. Services started together (`switchboard run` per service) each
/// create the desk session secret when it is missing; only the first one's may stand, or
/// tokens issued by one service are refused by another.
pub fn create_new(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    // A hard link fails on an existing name: an atomic create-if-absent of a complete file.
    put(path, bytes, |temporary, path| std::fs::hard_link(temporary, path).and_then(|()| std::fs::remove_file(temporary))).or_else(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists { Ok(false) } else { Err(e) }
    })
}

/// Writes a complete private temporary file beside `path`, then moves it with `place`.
fn put(path: &Path, bytes: &[u8], place: impl FnOnce(&Path, &Path) -> std::io::Result<()>) -> std::io::Result<bool> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.{}.tmp", std::process::id(), uuid::Uuid::new_v4().simple()));
    let temporary = std::path::PathBuf::from(temporary);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    match written.and_then(|()| place(&temporary, path)) {
        Ok(()) => Ok(true),
        Err(e) => {
            let _ = std::fs::remove_file(&temporary);
            Err(e)
        }
    }
}

/// Takes group and other permissions off a secret file written before files were made
/// private (an older version wrote them world-readable). Says so when it had to.
pub fn restrict(path: &Path) -> std::io::Result<bool> {
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 == 0 {
        return Ok(false);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn secrets_are_written_for_the_owner_only_and_old_files_are_restricted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secret");
        write(&path, b"one").unwrap();
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&path, b"two").unwrap();
        assert_eq!((mode(&path), std::fs::read(&path).unwrap()), (0o600, b"two".to_vec()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(restrict(&path).unwrap());
        assert_eq!(mode(&path), 0o600);
        assert!(!restrict(&path).unwrap());
        assert_eq!(std::fs::read_dir(dir.path().join("sub")).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn only_the_first_of_racing_creators_stands() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let winners: Vec<bool> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..8u8).map(|i| { let path = &path; scope.spawn(move || create_new(path, &[i; 32]).unwrap()) }).collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert_eq!(winners.iter().filter(|w| **w).count(), 1, "{winners:?}");
        let kept = std::fs::read(&path).unwrap();
        let winner = winners.iter().position(|w| *w).unwrap() as u8;
        assert_eq!(kept, vec![winner; 32]);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }
}
