//! Files that readers never see half-written.
//!
//! A [`PendingFile`] is written under a hidden temp name (`.<name>.tmp`) in its
//! final directory, then fsynced and renamed to its final name in one step.
//! [`leftovers`] finds temp files a crash left behind so that their owner can
//! recover or remove them at start-up.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// Suffix of files that are still being written.
pub const TEMP_SUFFIX: &str = ".tmp";

/// The temp name used while `final_path` is being written.
pub fn temp_path(final_path: &Path) -> PathBuf {
    let name = final_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    final_path.with_file_name(format!(".{name}{TEMP_SUFFIX}"))
}

/// The final name a temp file was meant to get, if `tmp` is one of ours.
pub fn final_path_of(tmp: &Path) -> Option<PathBuf> {
    let name = tmp.file_name()?.to_str()?;
    let inner = name.strip_prefix('.')?.strip_suffix(TEMP_SUFFIX)?;
    (!inner.is_empty()).then(|| tmp.with_file_name(inner))
}

/// A file name no other writer of this process, or of another process, gives:
/// `<prefix>-<UTC stamp>-<pid>-<seq><suffix>` (the sequence is per process, 5 digits).
pub fn unique_name(prefix: &str, suffix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}-{:05}{suffix}",
        crate::time::file_stamp(std::time::SystemTime::now()),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A file being written under its temp name.
#[derive(Debug)]
pub struct PendingFile {
    pub final_path: PathBuf,
    pub temp_path: PathBuf,
}

impl PendingFile {
    /// Creates the directory if needed and opens the temp file for writing.
    pub fn create(final_path: PathBuf) -> io::Result<(PendingFile, File)> {
        if let Some(dir) = final_path.parent() {
            fs::create_dir_all(dir)?;
        }
        let temp_path = temp_path(&final_path);
        let file = fs::OpenOptions::new().write(true).create_new(true).open(&temp_path)?;
        Ok((PendingFile { final_path, temp_path }, file))
    }

    /// Makes the file visible under its final name; `file` must be fully written.
    pub fn commit(self, file: File) -> io::Result<PathBuf> {
        file.sync_all()?;
        drop(file);
        fs::rename(&self.temp_path, &self.final_path)?;
        if let Some(dir) = self.final_path.parent() {
            // Persist the rename itself; not every file system supports this, so best effort.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(self.final_path)
    }
}

/// Takes an exclusive lock on `dir` (its `LOCK` file, `flock`) for as long as the returned
/// file is open, so that two processes never share a directory of state; `hint` says what
/// to do when another holds it.
pub fn lock_dir(dir: &Path, hint: &str) -> io::Result<File> {
    lock_file(&dir.join("LOCK"), &dir.display().to_string(), hint)
}

/// Takes an exclusive `flock` on the file at `path` (created if needed) for as long as the
/// returned file is open, and writes the holder (pid, command line, start time) into it, so
/// that a second process is told which process holds `what`; `hint` says what to do then.
pub fn lock_file(path: &Path, what: &str, hint: &str) -> io::Result<File> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    let mut f = fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path)?;
    // SAFETY: flock(2) on a file descriptor we own; no memory is passed.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let mut holder = String::new();
        let _ = f.read_to_string(&mut holder);
        let holder = holder.trim();
        let by = if holder.is_empty() { "another process".to_string() } else { format!("another process ({holder})") };
        return Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("{what} is in use by {by}: two instances cannot share it ({} is held); {hint}", path.display()),
        ));
    }
    let cmd: Vec<String> = std::env::args().collect();
    let holder = format!(
        "pid {} `{}` since {}\n",
        std::process::id(),
        cmd.join(" "),
        crate::time::rfc3339(std::time::SystemTime::now())
    );
    f.set_len(0)?;
    f.seek(io::SeekFrom::Start(0))?;
    f.write_all(holder.as_bytes())?;
    Ok(f)
}

/// Temp files (ours, by name) directly inside `dir`, sorted.
pub fn leftovers(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    match fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries {
                let p = e?.path();
                if p.is_file() && final_path_of(&p).is_some() {
                    out.push(p);
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    out.sort();
    Ok(out)
}

/// Whether an I/O error is one an operator can fix (disk full, permissions, read-only
/// file system): callers refuse new data and retry instead of dropping.
pub fn is_operator_fixable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull
            | io::ErrorKind::PermissionDenied
            | io::ErrorKind::ReadOnlyFilesystem
            | io::ErrorKind::QuotaExceeded
    )
}

/// The error, with what to do about it when an operator can fix it (the writer retries by
/// itself, so freeing space is all it takes).
pub fn describe(e: &io::Error) -> String {
    if is_operator_fixable(e) {
        format!("{e} (free disk space or fix permissions; writing resumes by itself)")
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn commit_renames_and_leftovers_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let (p, mut f) = PendingFile::create(dir.path().join("sub/a.jsonl")).unwrap();
        f.write_all(b"x\n").unwrap();
        assert_eq!(leftovers(&dir.path().join("sub")).unwrap(), vec![dir.path().join("sub/.a.jsonl.tmp")]);
        let done = p.commit(f).unwrap();
        assert_eq!(fs::read(&done).unwrap(), b"x\n");
        assert!(leftovers(&dir.path().join("sub")).unwrap().is_empty());
        assert_eq!(final_path_of(Path::new("/d/.b.parquet.tmp")).unwrap(), PathBuf::from("/d/b.parquet"));
        assert!(final_path_of(Path::new("/d/b.parquet")).is_none());
    }
}
