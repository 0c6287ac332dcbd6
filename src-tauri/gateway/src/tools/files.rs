//! Reading and writing the tools' config files safely: atomic replacement (a temporary file in
//! the same folder, then a rename, then the folder itself flushed, so a crash leaves the old file
//! or the new one, never half of one or none), the file's permissions kept (or narrowed to the
//! user alone when it receives an access key), symlinked dotfiles written through to their
//! target (a dotfile manager's link stays a link), a link to nothing refused rather than
//! replaced, and backups of the previous file readable by the user alone (they may hold the
//! user's own keys).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::ToolSetupError;

/// The folder under the data directory where previous versions of the tools' files are kept.
pub const BACKUP_DIR: &str = "tool-backups";

/// How [`write_atomic`] sets the written file's permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The old file's permissions; a new file is readable by the user alone.
    Keep,
    /// Readable and writable by the user alone (`0600`, keeping the user's own other bits):
    /// the file holds an access key.
    Private,
    /// Exactly these permission bits (Unix): what undo puts back.
    Exactly(u32),
}

/// The file's bytes, or `None` when it does not exist. A symlink whose target is missing is an
/// error, not a missing file: writing there would replace the user's link with a plain file.
pub fn read(path: &Path) -> Result<Option<Vec<u8>>, ToolSetupError> {
    let real = destination(path)?;
    match std::fs::read(&real) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ToolSetupError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Where a write to `path` lands: the target of a symlink (so a dotfile kept in a dotfiles
/// repository stays a link), else `path` itself. A link that leads nowhere (its target is
/// missing, or it loops) is refused.
fn destination(path: &Path) -> Result<PathBuf, ToolSetupError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            std::fs::canonicalize(path).map_err(|_| ToolSetupError::DanglingLink {
                path: path.to_owned(),
                target: std::fs::read_link(path).unwrap_or_default(),
            })
        }
        _ => Ok(path.to_owned()),
    }
}

/// The file's permission bits (Unix), following a symlink; `None` when it does not exist.
pub fn mode_of(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Narrows an existing file's permissions to the user alone (as [`Mode::Private`] does on a
/// write), when others could read it.
pub fn make_private(path: &Path) -> Result<(), ToolSetupError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let path = destination(path)?;
        if let Some(bits) = mode_of(&path)
            && bits & 0o077 != 0
        {
            std::fs::set_permissions(
                &path,
                std::fs::Permissions::from_mode((bits & 0o700) | 0o600),
            )
            .map_err(io("restrict the permissions of", &path))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Flushes a folder's entries (a rename or a removal in it) to disk, so the change survives a
/// crash: a rename is durable only once its folder is.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Turns an I/O failure into the error that says what was being done, and to which file.
fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ToolSetupError {
    let path = path.to_owned();
    move |source| ToolSetupError::Io {
        action,
        path,
        source,
    }
}

/// Replaces `path` with `bytes` atomically, with permissions as `mode` says.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: Mode) -> Result<(), ToolSetupError> {
    let path = destination(path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io("create the folder of", &path))?;
    let permissions = permissions_for(&path, mode);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (temp, mut file) =
        temp_file(dir, &name).map_err(io("create a temporary file for", &path))?;
    let written = (|| {
        file.write_all(bytes)?;
        match permissions {
            Some(permissions) => file.set_permissions(permissions)?,
            None => set_private(&file)?,
        }
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, &path)
    })();
    if let Err(source) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(ToolSetupError::Io {
            action: "write",
            path,
            source,
        });
    }
    sync_dir(dir).map_err(io("flush the folder of", &path))
}

/// The permissions a write to `path` gives the file; `None`: readable by the user alone.
fn permissions_for(path: &Path, mode: Mode) -> Option<std::fs::Permissions> {
    let current = std::fs::metadata(path).ok().map(|m| m.permissions());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match mode {
            Mode::Keep => current,
            Mode::Private => {
                current.map(|p| std::fs::Permissions::from_mode((p.mode() & 0o700) | 0o600))
            }
            Mode::Exactly(bits) => Some(std::fs::Permissions::from_mode(bits & 0o7777)),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = mode;
        current
    }
}

/// A new file next to the target, named so it cannot clash with a user's file.
fn temp_file(dir: &Path, name: &str) -> std::io::Result<(PathBuf, std::fs::File)> {
    let mut attempt = 0u32;
    loop {
        let temp = dir.join(format!(
            ".{name}.flexiproxy-{}-{attempt}.tmp",
            std::process::id()
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
        {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(unix)]
fn set_private(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_private(_file: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

/// Keeps `bytes` (the file at `original` before a write) as
/// `<data_dir>/tool-backups/<tool>-<time>.<ext>`, readable by the user alone.
pub fn backup(
    data_dir: &Path,
    tool: &str,
    original: &Path,
    bytes: &[u8],
    now_ms: i64,
) -> Result<PathBuf, ToolSetupError> {
    let dir = data_dir.join(BACKUP_DIR);
    std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    }
    let ext = extension(original);
    let mut attempt = 0u32;
    loop {
        let name = if attempt == 0 {
            format!("{tool}-{now_ms}.{ext}")
        } else {
            format!("{tool}-{now_ms}-{attempt}.{ext}")
        };
        let path = dir.join(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(&path) {
            Ok(mut file) => {
                file.write_all(bytes)
                    .and_then(|()| file.sync_all())
                    .and_then(|()| sync_dir(&dir))
                    .map_err(io("write", &path))?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 1000 => {
                attempt += 1;
            }
            Err(source) => {
                return Err(ToolSetupError::Io {
                    action: "create",
                    path,
                    source,
                });
            }
        }
    }
}

/// `json`, `toml`, `env`, `yml`: what the backup's name ends with.
fn extension(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.rsplit_once('.') {
        Some((_, ext)) if !ext.is_empty() => ext.to_owned(),
        _ => "bak".into(),
    }
}

/// Removes a file FlexiProxy created. Should the user have put a link there since, only the
/// link goes: the file it leads to is not FlexiProxy's to delete.
pub fn remove(path: &Path) -> Result<(), ToolSetupError> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            let dir = path.parent().unwrap_or(Path::new("."));
            sync_dir(dir).map_err(io("flush the folder of", path))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ToolSetupError::Io {
            action: "remove",
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn extensions_name_the_format() {
        assert_eq!(extension(Path::new("/h/.claude/settings.json")), "json");
        assert_eq!(extension(Path::new("/h/.gemini/.env")), "env");
        assert_eq!(extension(Path::new("/h/.aider.conf.yml")), "yml");
        assert_eq!(extension(Path::new("/h/config")), "bak");
    }
}
