//! The server's state directory (`--state-dir`) and the secrets kept in it.
//!
//! Today one file: `resume.key`, the 256-bit key of resume tokens, created on first run
//! with mode 0600 so only the server's user can read it. Keeping it lets pages resume
//! their ids after a restart; the trade-off (`docs/security.md`): whoever can read the
//! file can mint tokens for any id of any room they know, so it belongs in a directory
//! only the server's user can read, and deleting it invalidates every token.

use anyhow::{bail, Context};
use callsight_signal::resume::{ResumeKey, RESUME_KEY_BYTES};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const RESUME_KEY_FILE: &str = "resume.key";

/// `$XDG_DATA_HOME/callsight`, else `~/.local/share/callsight`.
pub fn default_dir() -> Option<PathBuf> {
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(data_home.join("callsight"))
}

/// Reads the resume key from `dir`, creating the directory (0700) and the key (0600) on
/// first use. Concurrent first starts agree on one key: the file appears atomically.
pub fn resume_key(dir: &Path) -> anyhow::Result<ResumeKey> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the state directory {}", dir.display()))?;
    let path = dir.join(RESUME_KEY_FILE);
    if !path.exists() {
        create_key(&path).with_context(|| format!("creating {}", path.display()))?;
    }
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    match ResumeKey::from_bytes(&bytes) {
        Some(key) => Ok(key),
        None => bail!(
            "{} holds {} bytes, not a {RESUME_KEY_BYTES}-byte key; delete it to make a new one",
            path.display(),
            bytes.len()
        ),
    }
}

/// Writes a fresh key to a private temporary file, then links it into place; if another
/// process got there first, its key stays.
fn create_key(path: &Path) -> std::io::Result<()> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}.{n}", std::process::id()));
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(ResumeKey::random().as_bytes())?;
    f.sync_all()?;
    let linked = std::fs::hard_link(&tmp, path);
    std::fs::remove_file(&tmp)?;
    match linked {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_is_created_private_once_and_then_kept() {
        let dir = std::env::temp_dir().join(format!(
            "callsight-state-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let k1 = resume_key(&dir.join("nested")).unwrap();
        let path = dir.join("nested").join(RESUME_KEY_FILE);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let k2 = resume_key(&dir.join("nested")).unwrap();
        assert_eq!(k1.as_bytes(), k2.as_bytes(), "kept across restarts");
        std::fs::write(&path, b"short").unwrap();
        let err = resume_key(&dir.join("nested")).unwrap_err().to_string();
        assert!(err.contains("5 bytes"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
