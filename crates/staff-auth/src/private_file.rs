//! Secret files (the session key, the users file with its password hashes) readable by their
//! owner only: written `0600` through a temporary file renamed into place, so no reader ever
//! sees a half-written file and no other local user ever sees the secret.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `bytes` to `path` with mode `0600`, replacing any earlier file (and its mode).
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = std::path::PathBuf::from(temporary);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temporary)?;
        // An earlier temporary file of the same name keeps its mode through `open`.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    match written.and_then(|()| std::fs::rename(&temporary, path)) {
        Ok(()) => Ok(()),
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
}
