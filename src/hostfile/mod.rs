//! Opening the host files behind drives, with the checks that keep a user's data safe:
//! - [`open_disk`] accepts regular files and block devices only. It opens with `O_NONBLOCK`, so
//!   a FIFO (or a device whose open waits for a carrier) never blocks, then checks the file
//!   type with `fstat` before anything else is done with it. The size comes from `fstat` for a
//!   regular file and `BLKGETSIZE64` for a block device; a partial last sector is reported, and
//!   a size over what 48-bit ATA addressing reaches is clamped (see [`LBA48_MAX_SECTORS`]).
//! - Every drive's file is locked with open file description locks (`fcntl(F_OFD_SETLK)`) in
//!   QEMU's own protocol ([`lock`]): a read-write drive and any other user of the image
//!   (another satavm, the same image on a second port, a QEMU) refuse each other; read-only
//!   users share, and refuse a writer. A refusal names the process in the way.
//!   [`lock_node`] locks a device node the same way (pass-through).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use thiserror::Error;

use crate::ata::identify::LBA48_MAX_SECTORS;
use crate::ata::registers::SECTOR_SIZE;

pub mod lock;

pub use lock::{lock_file, Conflict, Holder};

const SECTOR: u64 = SECTOR_SIZE as u64;

/// What kind of file a disk is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskKind {
    /// A regular file (a raw image).
    Regular,
    /// A host block device.
    Block,
}

/// The identity of a file, to find the same file given twice under different names: the
/// device number for a block device (two nodes of one disk are one disk), else the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileId {
    Device(u64),
    Inode { dev: u64, ino: u64 },
}

impl FileId {
    /// The identity of the file `meta` describes.
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        if meta.file_type().is_block_device() || meta.file_type().is_char_device() {
            FileId::Device(meta.rdev())
        } else {
            FileId::Inode {
                dev: meta.dev(),
                ino: meta.ino(),
            }
        }
    }

    /// The identity of the file at `path` (following symbolic links), if it exists.
    pub fn of_path(path: &Path) -> Option<FileId> {
        std::fs::metadata(path).ok().map(|m| FileId::of(&m))
    }
}

/// Why a disk file cannot be used.
#[derive(Debug, Error)]
pub enum HostFileError {
    #[error("cannot open {}: {}", .path.display(), open_reason(.source, *.read_only))]
    Open {
        path: PathBuf,
        read_only: bool,
        source: io::Error,
    },
    #[error("{} is {what}, not a disk image: a drive needs a regular file or a block device{hint}", .path.display())]
    NotADisk {
        path: PathBuf,
        what: &'static str,
        hint: &'static str,
    },
    #[error("{} is {bytes} bytes, smaller than one 512-byte sector (create an image with e.g. `truncate -s 1G {}`)", .path.display(), .path.display())]
    TooSmall { path: PathBuf, bytes: u64 },
    #[error("cannot read the size of {}: {source}", .path.display())]
    Size { path: PathBuf, source: io::Error },
    #[error("{} is in use: {}. satavm does not open a disk another program may be writing, nor write one another program reads (QEMU's rule); readonly=on lets read-only users share it, lock=off skips the lock (only if you know nothing else writes it)", .path.display(), lock::conflict_text(.conflict, .holders))]
    Locked {
        path: PathBuf,
        conflict: Conflict,
        holders: Vec<Holder>,
    },
    #[error("cannot lock {}: {source} (lock=off skips locking, e.g. on a file system without locks)", .path.display())]
    Lock { path: PathBuf, source: io::Error },
}

fn open_reason(e: &io::Error, read_only: bool) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) => "no such file".into(),
        Some(libc::EISDIR) => {
            "it is a directory (a drive needs a regular file or a block device)".into()
        }
        Some(libc::EACCES | libc::EPERM) if !read_only => {
            format!("{e} (readonly=on opens it for reading only)")
        }
        Some(libc::EROFS) => format!("{e} (readonly=on opens it for reading only)"),
        Some(libc::ENXIO) => format!("{e} (a socket, or a device with nothing behind it)"),
        _ => e.to_string(),
    }
}

/// An opened, checked (and normally locked) disk file.
#[derive(Debug)]
pub struct DiskFile {
    file: File,
    path: PathBuf,
    kind: DiskKind,
    id: FileId,
    bytes: u64,
    sectors: u64,
    read_only: bool,
    locked: bool,
}

impl DiskFile {
    /// The open file (blocking mode; O_NONBLOCK is cleared after the checks).
    pub fn file(&self) -> &File {
        &self.file
    }
    /// The file, giving up the rest (the lock lives as long as the file).
    pub fn into_file(self) -> File {
        self.file
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn kind(&self) -> DiskKind {
        self.kind
    }
    pub fn id(&self) -> FileId {
        self.id
    }
    /// Size in bytes as the host reports it.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
    /// Whole 512-byte sectors the drive exposes (at most [`LBA48_MAX_SECTORS`]).
    pub fn sectors(&self) -> u64 {
        self.sectors
    }
    pub fn read_only(&self) -> bool {
        self.read_only
    }
    /// A lock was taken (false with lock=off).
    pub fn locked(&self) -> bool {
        self.locked
    }
    /// Bytes after the last whole sector, which the drive cannot reach.
    pub fn partial_bytes(&self) -> u64 {
        self.bytes % SECTOR
    }
    /// Warnings for the user about this disk (a partial last sector, a clamped size).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let p = self.path.display();
        if self.partial_bytes() != 0 {
            w.push(format!(
                "{p} is {} bytes, not a multiple of 512: its last {} bytes are past the last \
                 whole sector and the guest cannot read or write them (the drive has {} sectors)",
                self.bytes,
                self.partial_bytes(),
                self.sectors
            ));
        }
        if self.bytes / SECTOR > LBA48_MAX_SECTORS {
            w.push(format!(
                "{p} has {} sectors, more than 48-bit ATA addressing reaches: the drive \
                 exposes the first {LBA48_MAX_SECTORS}",
                self.bytes / SECTOR
            ));
        }
        w
    }
}

nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);

/// The whole sectors of `bytes` a drive can expose: at most what 48-bit commands address.
fn usable_sectors(bytes: u64) -> u64 {
    (bytes / SECTOR).min(LBA48_MAX_SECTORS)
}

/// What `meta`'s file is, for messages, when it is not a disk.
fn not_a_disk(meta: &std::fs::Metadata) -> Option<(&'static str, &'static str)> {
    let ft = meta.file_type();
    if ft.is_file() || ft.is_block_device() {
        None
    } else if ft.is_dir() {
        Some(("a directory", ""))
    } else if ft.is_fifo() {
        Some(("a FIFO (named pipe)", ""))
    } else if ft.is_char_device() {
        Some((
            "a character device",
            " (a host SATA drive's /dev/sgN is used with passthrough=)",
        ))
    } else if ft.is_socket() {
        Some(("a socket", ""))
    } else {
        Some(("not a regular file", ""))
    }
}

/// Open `path` as a drive's medium: a regular file or a block device, read-only or
/// read-write, locked unless `lock` is false; see the module documentation.
pub fn open_disk(path: &Path, read_only: bool, lock: bool) -> Result<DiskFile, HostFileError> {
    let file = OpenOptions::new()
        .read(true)
        .write(!read_only)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|source| HostFileError::Open {
            path: path.into(),
            read_only,
            source,
        })?;
    let meta = file.metadata().map_err(|source| HostFileError::Size {
        path: path.into(),
        source,
    })?;
    if let Some((what, hint)) = not_a_disk(&meta) {
        return Err(HostFileError::NotADisk {
            path: path.into(),
            what,
            hint,
        });
    }
    // Checked: back to blocking I/O (O_NONBLOCK means nothing for regular files and block
    // devices to read/write, but io_uring and others treat it as "do not wait").
    fcntl(file.as_raw_fd(), FcntlArg::F_SETFL(OFlag::empty())).map_err(|e| {
        HostFileError::Size {
            path: path.into(),
            source: e.into(),
        }
    })?;
    let kind = if meta.file_type().is_block_device() {
        DiskKind::Block
    } else {
        DiskKind::Regular
    };
    let bytes = match kind {
        DiskKind::Regular => meta.len(),
        DiskKind::Block => {
            let mut size = 0u64;
            // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points to a live
            // local; the descriptor is open.
            unsafe { blkgetsize64(file.as_raw_fd(), &mut size) }.map_err(|e| {
                HostFileError::Size {
                    path: path.into(),
                    source: e.into(),
                }
            })?;
            size
        }
    };
    if bytes < SECTOR {
        return Err(HostFileError::TooSmall {
            path: path.into(),
            bytes,
        });
    }
    if lock {
        lock_file(&file, path, !read_only)?;
    }
    Ok(DiskFile {
        file,
        path: path.into(),
        kind,
        id: FileId::of(&meta),
        bytes,
        sectors: usable_sectors(bytes),
        read_only,
        locked: lock,
    })
}

/// Open the device node `path` (no type check: pass-through nodes are character or block
/// devices) without blocking, and lock it as [`lock_file`] does. The lock lasts as long as
/// the returned file.
pub fn lock_node(path: &Path, exclusive: bool) -> Result<File, HostFileError> {
    // The locks are all read locks (see [`lock`]): a read-only descriptor takes them.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|source| HostFileError::Open {
            path: path.into(),
            read_only: !exclusive,
            source,
        })?;
    lock_file(&file, path, exclusive)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("satavm-hostfile-{}-{name}", std::process::id()))
    }

    fn image(name: &str, bytes: u64) -> PathBuf {
        let p = tmp(name);
        let f = File::create(&p).unwrap();
        f.set_len(bytes).unwrap();
        p
    }

    #[test]
    fn a_regular_file_opens_with_its_size_and_is_locked() {
        let p = image("regular", 1 << 20);
        let d = open_disk(&p, false, true).unwrap();
        assert_eq!(
            (d.kind(), d.bytes(), d.sectors()),
            (DiskKind::Regular, 1 << 20, 2048)
        );
        assert!(d.warnings().is_empty());
        // Blocking mode again after the checks.
        let flags = fcntl(d.file().as_raw_fd(), FcntlArg::F_GETFL).unwrap();
        assert_eq!(flags & libc::O_NONBLOCK, 0);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn a_partial_last_sector_is_reported() {
        let p = image("partial", 1000);
        let d = open_disk(&p, true, true).unwrap();
        assert_eq!((d.sectors(), d.partial_bytes()), (1, 488));
        let w = d.warnings();
        assert!(w.len() == 1 && w[0].contains("last 488 bytes"), "{w:?}");
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn sizes_past_48_bit_addressing_are_clamped_with_a_warning() {
        // No file system here holds a 128 PiB file: the size as a block device would report.
        let bytes = (LBA48_MAX_SECTORS + 5) * 512;
        assert_eq!(usable_sectors(bytes), LBA48_MAX_SECTORS);
        assert_eq!(usable_sectors(i64::MAX as u64), LBA48_MAX_SECTORS);
        assert_eq!(usable_sectors(1023), 1);
        let p = image("huge", 4096);
        let mut d = open_disk(&p, true, false).unwrap();
        d.bytes = bytes;
        d.sectors = usable_sectors(bytes);
        let w = d.warnings();
        assert!(
            w.len() == 1 && w[0].contains("more than 48-bit ATA addressing reaches"),
            "{w:?}"
        );
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn directories_fifos_and_character_devices_are_refused_without_blocking() {
        let dir = tmp("dir");
        std::fs::create_dir_all(&dir).unwrap();
        let e = open_disk(&dir, true, true).unwrap_err();
        assert!(
            matches!(
                e,
                HostFileError::NotADisk {
                    what: "a directory",
                    ..
                }
            ),
            "{e}"
        );
        let e = open_disk(&dir, false, true).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        std::fs::remove_dir(&dir).unwrap();
        // A FIFO nobody writes: a blocking open would wait forever.
        let fifo = tmp("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        for ro in [true, false] {
            let e = open_disk(&fifo, ro, true).unwrap_err();
            assert!(matches!(e, HostFileError::NotADisk { .. }), "{e}");
            assert!(e.to_string().contains("FIFO"), "{e}");
        }
        std::fs::remove_file(&fifo).unwrap();
        let e = open_disk(Path::new("/dev/null"), true, true).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
    }

    #[test]
    fn empty_and_missing_files_are_refused() {
        let p = image("empty", 511);
        assert!(matches!(
            open_disk(&p, false, true),
            Err(HostFileError::TooSmall { bytes: 511, .. })
        ));
        std::fs::remove_file(&p).unwrap();
        let e = open_disk(&tmp("missing"), false, true).unwrap_err();
        assert!(e.to_string().ends_with("no such file"), "{e}");
    }

    #[test]
    fn locks_exclude_writers_and_share_readers() {
        let p = image("lock", 4096);
        let w = open_disk(&p, false, true).unwrap();
        // A second writer and a reader are refused, naming this process.
        for (ro, conflict) in [
            (false, Conflict::Unshares(lock::Permission::Write)),
            (true, Conflict::Holds(lock::Permission::Write)),
        ] {
            let e = open_disk(&p, ro, true).unwrap_err();
            let HostFileError::Locked {
                holders,
                conflict: c,
                ..
            } = &e
            else {
                panic!("{e}")
            };
            assert_eq!(*c, conflict, "{e}");
            assert_eq!(holders.len(), 1, "{e}");
            assert_eq!(holders[0].pid, std::process::id());
            assert!(e.to_string().contains("this satavm itself"), "{e}");
        }
        // lock=off opens it anyway.
        assert!(!open_disk(&p, false, false).unwrap().locked());
        drop(w);
        // Readers share; a writer is refused while one reads.
        let r1 = open_disk(&p, true, true).unwrap();
        let r2 = open_disk(&p, true, true).unwrap();
        let e = open_disk(&p, false, true).unwrap_err();
        assert!(matches!(e, HostFileError::Locked { .. }), "{e}");
        drop((r1, r2));
        open_disk(&p, false, true).unwrap();
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn a_lock_held_by_another_process_names_it() {
        let p = image("other", 4096);
        // flock(1) takes flock() locks, which do not conflict with OFD locks: the child that
        // takes an OFD lock is python3 (scripts/bench_report.py needs it too).
        let script = "import fcntl,struct,sys,time\n\
                      f=open(sys.argv[1],'r+b')\n\
                      fcntl.fcntl(f,fcntl.F_OFD_SETLK,struct.pack('hhqqi',fcntl.F_WRLCK,0,0,0,0))\n\
                      print('locked',flush=True)\n\
                      sys.stdin.read()\n";
        let mut child = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&p)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert_eq!(line.trim(), "locked");
        let e = open_disk(&p, true, true).unwrap_err();
        let HostFileError::Locked {
            holders, conflict, ..
        } = &e
        else {
            panic!("{e}")
        };
        assert_eq!(*conflict, Conflict::WriteLock);
        assert_eq!(holders.len(), 1, "{e}");
        assert_eq!(holders[0].pid, child.id());
        let holds = format!("pid {} (python3) holds a write lock on it", child.id());
        assert!(e.to_string().contains(&holds), "{e}");
        drop(child.stdin.take());
        child.wait().unwrap();
        std::fs::remove_file(&p).unwrap();
    }
}
