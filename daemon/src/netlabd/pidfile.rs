//! The pidfile: created, locked (flock) for as long as the daemon runs, and
//! removed when it stops, or emptied where it can no longer be removed. The lock is what makes a second instance with the
//! same pidfile refuse to start, even after a crash left a stale file.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

pub struct Pidfile {
    path: PathBuf,
    /// Open (read-write, from before privileges were dropped) and locked
    /// until dropped.
    file: File,
}

#[derive(Debug)]
pub enum PidfileError {
    /// Another live process holds it.
    Locked {
        path: PathBuf,
        pid: Option<u32>,
    },
    Io {
        path: PathBuf,
        source: io::Error,
    },
}

impl std::fmt::Display for PidfileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PidfileError::Locked {
                path,
                pid: Some(pid),
            } => write!(
                f,
                "another netlabd (pid {pid}) is running with pidfile {}; stop it first, or use another --pidfile",
                path.display()
            ),
            PidfileError::Locked { path, pid: None } => write!(
                f,
                "another netlabd is running with pidfile {}; stop it first, or use another --pidfile",
                path.display()
            ),
            PidfileError::Io { path, source } => {
                write!(f, "pidfile {}: {source}", path.display())?;
                match path.parent() {
                    Some(dir) if source.kind() == io::ErrorKind::NotFound => {
                        write!(f, "; its directory {} must exist", dir.display())
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}

/// Opens and locks `path`; with `create` false, a missing file is `None`
/// (nobody holds it) rather than made.
fn lock(path: &Path, create: bool) -> Result<Option<File>, PidfileError> {
    let io_err = |source| PidfileError::Io {
        path: path.to_owned(),
        source,
    };
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path);
    let mut file = match opened {
        Ok(file) => file,
        Err(e) if !create && e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(PidfileError::Locked {
                path: path.to_owned(),
                pid: text.trim().parse().ok(),
            });
        }
        return Err(io_err(err));
    }
    Ok(Some(file))
}

impl Pidfile {
    /// Fails if another process holds `path`; the lock is let go at once.
    /// Checked before binding, so the refusal names the real reason rather
    /// than "address in use". Creates nothing: a start that fails later
    /// leaves no empty pidfile behind.
    pub fn check_free(path: &Path) -> Result<(), PidfileError> {
        lock(path, false).map(drop)
    }

    /// Locks `path` and writes this process's pid into it. With `owner`, the
    /// file is given to the user the daemon is about to become. Owning the
    /// file is not enough to remove it: that takes write permission on the
    /// directory, so the user can remove it from a directory of its own
    /// (systemd's `RuntimeDirectory=`) or a sticky one like /tmp, but not
    /// from /run itself; there it empties the file when it stops (`Drop`).
    pub fn create(path: &Path, owner: Option<(u32, u32)>) -> Result<Pidfile, PidfileError> {
        let mut file = lock(path, true)?.ok_or_else(|| PidfileError::Io {
            path: path.to_owned(),
            source: io::ErrorKind::NotFound.into(),
        })?;
        let write = |file: &mut File| -> io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::fchown(&*file, Some(uid), Some(gid))?;
            }
            file.sync_all()
        };
        write(&mut file).map_err(|source| PidfileError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(Pidfile {
            path: path.to_owned(),
            file,
        })
    }
}

impl Drop for Pidfile {
    /// Removes the file; failing that (the daemon no longer may write the
    /// directory), empties it through the descriptor it still holds, so no
    /// stale pid stays for a script to signal. Either happens while the
    /// lock is held; the descriptor only ever reaches our own file, even if
    /// the path was replaced meanwhile.
    fn drop(&mut self) {
        let path = self.path.display();
        if let Err(e) = std::fs::remove_file(&self.path) {
            match self.file.set_len(0) {
                Ok(()) => log::warn!(
                    "cannot remove pidfile {path} ({e}); emptied it instead. To have it removed, put it in a directory the daemon's user may write (with systemd: RuntimeDirectory=)"
                ),
                Err(t) => log::warn!(
                    "cannot remove pidfile {path} ({e}) nor empty it ({t}); it still holds pid {}, which is stopping",
                    std::process::id()
                ),
            }
        }
    }
}
