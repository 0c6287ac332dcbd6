//! Reading and writing the tools' config files safely: atomic replacement (a temporary file in
//! the same folder, then a rename, so a crash leaves the old file or the new one, never half of
//! one), the file's permissions kept, symlinked dotfiles written through to their target, and
//! backups of the previous file readable by the user alone (they may hold the user's own keys).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::ToolSetupError;

/// The folder under the data directory where previous versions of the tools' files are kept.
pub const BACKUP_DIR: &str = "tool-backups";

/// The file's bytes, or `None` when it does not exist.
pub fn read(path: &Path) -> Result<Option<Vec<u8>>, ToolSetupError> {
    match std::fs::read(path) {
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
/// repository stays a link), else `path` itself.
fn destination(path: &Path) -> PathBuf {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
        }
        _ => path.to_owned(),
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

/// Replaces `path` with `bytes` atomically, keeping the old file's permissions; a new file is
/// readable by the user alone (it holds an access key).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ToolSetupError> {
    let path = destination(path);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io("create the folder of", &path))?;
    let permissions = std::fs::metadata(&path).ok().map(|m| m.permissions());
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
    Ok(())
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

pub fn remove(path: &Path) -> Result<(), ToolSetupError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
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
