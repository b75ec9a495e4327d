//! Trace files, made safe to name: a trace path is refused when it is one of the run's own
//! files (a disk, the kernel, ...), a block device, or any existing file that is not a
//! regular file ([`check_path`]); and the file is created or truncated only once the VM is
//! set up ([`LateFile::open`]), so a run that fails to start leaves no file behind and
//! touches no existing one. Events traced before that wait in memory.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use thiserror::Error;

use crate::hostfile::FileId;

/// Why a trace path cannot be used.
#[derive(Debug, Error)]
pub enum TracePathError {
    #[error("trace file {}: it is {what} of this run; writing the trace there would destroy it", .path.display())]
    OwnFile { path: PathBuf, what: String },
    #[error("trace file {}: it is {what}, not a regular file (a trace goes to a new or regular file, or `-` for stderr)", .path.display())]
    NotRegular { path: PathBuf, what: &'static str },
    #[error("trace file {}: the directory {} does not exist", .path.display(), .dir.display())]
    NoDirectory { path: PathBuf, dir: PathBuf },
    #[error("cannot create trace file {}: {source}", .path.display())]
    Create { path: PathBuf, source: io::Error },
}

fn kind(meta: &std::fs::Metadata) -> Option<&'static str> {
    let ft = meta.file_type();
    if ft.is_file() {
        None
    } else if ft.is_block_device() {
        Some("a block device")
    } else if ft.is_dir() {
        Some("a directory")
    } else if ft.is_char_device() {
        Some("a character device")
    } else if ft.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if ft.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    }
}

fn own_file(path: &Path, id: FileId, own: &[(FileId, String)]) -> Result<(), TracePathError> {
    match own.iter().find(|(o, _)| *o == id) {
        Some((_, what)) => Err(TracePathError::OwnFile {
            path: path.into(),
            what: what.clone(),
        }),
        None => Ok(()),
    }
}

/// Check `path` without creating or changing anything: if it exists it must be a regular
/// file that is none of `own` (the run's disks and input files, with what they are, e.g.
/// "the disk of port 0"); if not, its directory must exist.
pub fn check_path(path: &Path, own: &[(FileId, String)]) -> Result<(), TracePathError> {
    match std::fs::metadata(path) {
        Ok(meta) => {
            if let Some(what) = kind(&meta) {
                return Err(TracePathError::NotRegular {
                    path: path.into(),
                    what,
                });
            }
            own_file(path, FileId::of(&meta), own)
        }
        Err(_) => {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            if dir.is_dir() {
                Ok(())
            } else {
                Err(TracePathError::NoDirectory {
                    path: path.into(),
                    dir: dir.into(),
                })
            }
        }
    }
}

/// Create (or truncate) the trace file at `path`, checking on the open file what
/// [`check_path`] checks on the name: it opens without truncating and without blocking (a
/// FIFO that appeared meanwhile is refused, not waited on), looks at what it opened, and
/// only then truncates it.
pub fn create(path: &Path, own: &[(FileId, String)]) -> Result<File, TracePathError> {
    let created = |source| TracePathError::Create {
        path: path.into(),
        source,
    };
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(created)?;
    let meta = file.metadata().map_err(created)?;
    if let Some(what) = kind(&meta) {
        return Err(TracePathError::NotRegular {
            path: path.into(),
            what,
        });
    }
    own_file(path, FileId::of(&meta), own)?;
    nix::fcntl::fcntl(
        file.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    )
    .map_err(|e| created(e.into()))?;
    file.set_len(0).map_err(created)?;
    Ok(file)
}

/// Most bytes a [`LateFile`] keeps before it is opened (set-up traces a few events).
const PENDING_MAX: usize = 16 << 20;

enum State {
    Pending(Vec<u8>),
    Open(BufWriter<File>),
}

/// A trace file created only when [`LateFile::open`] is called; what is written before waits
/// in memory. Clones share the file.
#[derive(Clone)]
pub struct LateFile {
    path: PathBuf,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for LateFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LateFile")
            .field("path", &self.path)
            .finish()
    }
}

impl LateFile {
    pub fn new(path: &Path) -> Self {
        LateFile {
            path: path.into(),
            state: Arc::new(Mutex::new(State::Pending(Vec::new()))),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Create the file ([`create`], checked against `own`) and write what waited.
    pub fn open(&self, own: &[(FileId, String)]) -> Result<(), TracePathError> {
        let mut state = self.lock();
        if let State::Pending(buf) = &*state {
            let file = create(&self.path, own)?;
            let mut w = BufWriter::with_capacity(1 << 16, file);
            w.write_all(buf).map_err(|source| TracePathError::Create {
                path: self.path.clone(),
                source,
            })?;
            *state = State::Open(w);
        }
        Ok(())
    }
}

impl Write for LateFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match &mut *self.lock() {
            State::Pending(buf) => {
                if buf.len() + data.len() > PENDING_MAX {
                    return Err(io::Error::other(
                        "trace file not open yet and its buffer is full",
                    ));
                }
                buf.extend_from_slice(data);
                Ok(data.len())
            }
            State::Open(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut *self.lock() {
            State::Pending(_) => Ok(()),
            State::Open(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("satavm-tracefile-{}-{name}", std::process::id()))
    }

    #[test]
    fn nothing_is_created_before_open_and_what_waited_is_written() {
        let p = tmp("late");
        let _ = std::fs::remove_file(&p);
        let mut f = LateFile::new(&p);
        f.write_all(b"early\n").unwrap();
        f.flush().unwrap();
        assert!(!p.exists(), "created before open");
        f.open(&[]).unwrap();
        f.write_all(b"late\n").unwrap();
        f.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "early\nlate\n");
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn own_files_and_non_regular_files_are_refused_untouched() {
        let disk = tmp("disk");
        std::fs::write(&disk, b"precious").unwrap();
        let own = vec![(
            FileId::of_path(&disk).unwrap(),
            "the disk of port 0".to_string(),
        )];
        let e = check_path(&disk, &own).unwrap_err();
        assert!(e.to_string().contains("the disk of port 0"), "{e}");
        // Through another name (a symbolic link) as well, and on open.
        let link = tmp("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&disk, &link).unwrap();
        assert!(matches!(
            check_path(&link, &own),
            Err(TracePathError::OwnFile { .. })
        ));
        let late = LateFile::new(&link);
        assert!(matches!(
            late.open(&own),
            Err(TracePathError::OwnFile { .. })
        ));
        assert_eq!(std::fs::read(&disk).unwrap(), b"precious");
        std::fs::remove_file(&link).unwrap();
        std::fs::remove_file(&disk).unwrap();

        let e = check_path(Path::new("/dev/null"), &[]).unwrap_err();
        assert!(
            matches!(
                e,
                TracePathError::NotRegular {
                    what: "a character device",
                    ..
                }
            ),
            "{e}"
        );
        let e = check_path(&std::env::temp_dir(), &[]).unwrap_err();
        assert!(
            matches!(
                e,
                TracePathError::NotRegular {
                    what: "a directory",
                    ..
                }
            ),
            "{e}"
        );
        let fifo = tmp("fifo");
        let _ = std::fs::remove_file(&fifo);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(matches!(
            check_path(&fifo, &[]),
            Err(TracePathError::NotRegular { .. })
        ));
        // Opening it does not block (no reader) and refuses it.
        let e = create(&fifo, &[]).unwrap_err();
        assert!(
            matches!(e, TracePathError::NotRegular { .. })
                || matches!(e, TracePathError::Create { .. }),
            "{e}"
        );
        std::fs::remove_file(&fifo).unwrap();
        let e = check_path(&tmp("no-such-dir/trace.json"), &[]).unwrap_err();
        assert!(matches!(e, TracePathError::NoDirectory { .. }), "{e}");
        // A new file in an existing directory, or a regular file, is fine.
        check_path(&tmp("new"), &[]).unwrap();
    }
}
