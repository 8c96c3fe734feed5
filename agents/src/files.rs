//! Durable file writes shared by checkpoints and logs, and the run directory's building
//! blocks: a writability probe, an advisory lock naming its holder, an atomic swap of two
//! directories.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync,
/// rename over `path`, fsync of the directory. Readers see the old content or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        sync_dir(path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Hidden temporary next to `path`: `.name.tmp`.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Makes the rename durable. Opening a directory for fsync works on Unix; elsewhere the
    // rename is still atomic, only its durability across power loss is weaker.
    match File::open(dir) {
        Ok(d) => d.sync_all().or(Ok(())),
        Err(_) => Ok(()),
    }
}

/// Checks that files can be created in `dir` by creating and removing a probe file, so that
/// a directory the run will need later (its checkpoints) fails at startup rather than hours
/// into training. Permission bits alone do not tell: root ignores them, and read-only mounts
/// and immutable directories refuse writes whatever the bits say.
pub fn check_writable(dir: &Path) -> io::Result<()> {
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    File::create(&probe)?;
    fs::remove_file(&probe)
}

/// Name of the lock file [`DirLock`] keeps in a directory.
pub const LOCK_FILE: &str = ".lock";

/// Why [`DirLock::try_acquire`] did not lock a directory.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds the lock.
    Busy {
        /// The directory.
        dir: PathBuf,
        /// The holder's process id, as it wrote it in the lock file (`None` when the file
        /// was empty or unreadable: the holder had not written it yet).
        pid: Option<u32>,
    },
    /// The lock file could not be created or locked.
    Io {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Busy { dir, pid } => {
                let pid = pid.map_or("PID unknown".to_string(), |p| format!("PID {p}"));
                write!(f, "{} is in use by another process ({pid})", dir.display())
            }
            LockError::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for LockError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LockError::Busy { .. } => None,
            LockError::Io { source, .. } => Some(source),
        }
    }
}

/// An exclusive OS advisory lock (`flock`) on a directory, held through its [`LOCK_FILE`]
/// for as long as the value lives. The file holds the holder's process id, so that a
/// process that is refused can name it. The lock is the OS's: it goes away with the
/// process however that ends (a `kill -9` included), so a stale file never blocks anyone.
///
/// Dropping the lock deletes the file, then releases the lock. Another process may have
/// opened the file before the deletion and lock the deleted inode afterwards;
/// [`DirLock::try_acquire`] therefore checks that the file it locked is still the one in the
/// directory, and starts over when it is not.
#[derive(Debug)]
pub struct DirLock {
    file: File,
    path: PathBuf,
}

impl DirLock {
    /// Locks `dir` (which must exist) without waiting: [`LockError::Busy`] names the holder
    /// when another process has it.
    ///
    /// Filesystems without `flock` support (some network filesystems) cannot be locked; the
    /// lock is then skipped with a warning on stderr rather than refusing to train there.
    pub fn try_acquire(dir: &Path) -> Result<DirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        for _ in 0..100 {
            let mut file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io_err)?;
            match fs4::FileExt::try_lock(&file) {
                Ok(()) => {}
                Err(fs4::TryLockError::WouldBlock) => {
                    return Err(LockError::Busy {
                        dir: dir.to_path_buf(),
                        pid: read_pid(&mut file),
                    })
                }
                Err(fs4::TryLockError::Error(e)) if lock_unsupported(&e) => {
                    eprintln!(
                        "warning: {} cannot be locked ({e}); nothing stops a second process \
                         from writing this run",
                        path.display()
                    );
                }
                Err(fs4::TryLockError::Error(e)) => return Err(io_err(e)),
            }
            if !same_file(&file, &path) {
                // Locked a file its previous holder deleted while we were opening it.
                continue;
            }
            file.set_len(0).map_err(io_err)?;
            writeln!(file, "{}", std::process::id()).map_err(io_err)?;
            file.flush().map_err(io_err)?;
            return Ok(DirLock { file, path });
        }
        Err(io_err(io::Error::other(
            "the lock file keeps being replaced by other processes",
        )))
    }

    /// Records that the locked directory was renamed to `dir` (the lock follows the file,
    /// whatever its name; this only tells [`Drop`] where to delete it).
    pub fn moved_to(&mut self, dir: &Path) {
        self.path = dir.join(LOCK_FILE);
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Delete before unlocking (closing), and only our own file: see the type's doc.
        if same_file(&self.file, &self.path) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    use std::io::{Read, Seek};
    let mut text = String::new();
    file.seek(io::SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

fn lock_unsupported(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported || {
        #[cfg(unix)]
        {
            matches!(
                e.raw_os_error(),
                Some(libc::ENOLCK | libc::EOPNOTSUPP | libc::ENOSYS)
            )
        }
        #[cfg(not(unix))]
        {
            false
        }
    }
}

/// Whether the open `file` is the file now at `path`.
fn same_file(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), fs::metadata(path)) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        path.exists()
    }
}

/// Swaps the directory entries `a` and `b` (both must exist). Atomic on Linux (`renameat2`
/// with `RENAME_EXCHANGE`): every reader sees either the old pair or the new one. Elsewhere,
/// or where the filesystem refuses the exchange, it falls back to three renames through a
/// temporary name next to `b`, which a crash can leave half done.
pub fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| {
            CString::new(p.as_os_str().as_bytes())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
        };
        let (ca, cb) = (c(a)?, c(b)?);
        // SAFETY: two valid NUL-terminated paths; the syscall reads them and nothing else.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                ca.as_ptr(),
                libc::AT_FDCWD,
                cb.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if rc == 0 {
            return sync_dir(b);
        }
        let err = io::Error::last_os_error();
        if !matches!(err.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) {
            return Err(err);
        }
    }
    let tmp = temp_path(b);
    fs::rename(b, &tmp)?;
    if let Err(e) = fs::rename(a, b) {
        let _ = fs::rename(&tmp, b);
        return Err(e);
    }
    fs::rename(&tmp, a)?;
    sync_dir(b)
}
