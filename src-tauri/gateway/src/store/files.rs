//! Files and folders private to this user: the data directory (0700) and the database with
//! its companions (0600), made so whatever the umask, and tightened when an older version left
//! them open. Used when the SQLite database is opened and when an upgrade's backup is written.

use std::path::Path;

/// Creates `dir` (and missing parents) readable by this user alone (0700), or tightens it to
/// that when it exists with group or world bits. The database holds the adapters' key hashes,
/// every request's metadata and OAuth account names; other local users have no business there.
/// The mode is set explicitly, so it does not depend on the umask.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        tighten(dir, 0o700);
        Ok(())
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// Creates `path` as an empty file readable by this user alone (0600) unless it exists, in
/// which case it is tightened to that. SQLite would create it 0644 minus the umask.
pub fn private_file(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        // The umask may have taken bits the mode asked for; never more than 0600 either way.
        tighten(path, 0o600);
        Ok(())
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// Takes group and world bits off `path` (to `mode` at most) when it has any; a file that is
/// not there is fine, and a file this user cannot change is left with a warning (the gateway
/// still starts: the folder around it is what keeps others out).
pub(super) fn tighten(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let current = meta.permissions().mode() & 0o7777;
        if current & !mode == 0 {
            return;
        }
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(current & mode)) {
            Ok(()) => tracing::info!(
                path = %path.display(),
                from = format!("{current:o}"),
                to = format!("{:o}", current & mode),
                "made private to this user"
            ),
            Err(e) => tracing::warn!(
                path = %path.display(),
                mode = format!("{current:o}"),
                error = %e,
                "cannot make this private to this user; other users of this machine may read it"
            ),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
    }
}
