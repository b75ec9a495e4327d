//! Opening the host files behind drives, with the checks that keep a user's data safe:
//! - [`open_disk`] accepts regular files and block devices only. It opens with `O_NONBLOCK`, so
//!   a FIFO (or a device whose open waits for a carrier) never blocks, then checks the file
//!   type with `fstat` before anything else is done with it. The size comes from `fstat` for a
//!   regular file and `BLKGETSIZE64` for a block device; a partial last sector is reported, and
//!   a size over what 48-bit ATA addressing reaches is clamped (see [`LBA48_MAX_SECTORS`]).
//! - Every drive's file gets an open file description lock (`fcntl(F_OFD_SETLK)` over the
//!   whole file; shared `F_RDLCK` for a read-only drive, exclusive `F_WRLCK` otherwise), as
//!   QEMU's file-posix locking does. Two satavm processes, the same image on two ports of one
//!   satavm, or satavm and QEMU on one image then refuse each other instead of both writing.
//!   QEMU takes shared locks on bytes 100-1xx and 200-2xx of its images: a whole-file write
//!   lock conflicts with any of them, and QEMU's own tests for conflicting locks see ours.
//!   [`lock_node`] locks a device node the same way (pass-through).
//! - When a lock is refused, [`lock_holders`] names the processes holding one: OFD locks carry
//!   no pid (`F_OFD_GETLK` and /proc/locks report -1), so it reads the `lock:` lines of
//!   `/proc/PID/fdinfo/FD`, which list the locks taken through that very descriptor.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use thiserror::Error;

use crate::ata::identify::LBA48_MAX_SECTORS;
use crate::ata::registers::SECTOR_SIZE;

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

/// A process that holds a lock on a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// Its command name (/proc/PID/comm), if readable.
    pub command: Option<String>,
    /// It holds a write (exclusive) lock, not a read (shared) one.
    pub write: bool,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.pid == std::process::id() {
            return write!(f, "this satavm itself (the same file given twice?)");
        }
        match &self.command {
            Some(c) => write!(f, "pid {} ({c})", self.pid),
            None => write!(f, "pid {}", self.pid),
        }?;
        write!(
            f,
            ", a {} lock",
            if self.write {
                "write (exclusive)"
            } else {
                "read (shared)"
            }
        )
    }
}

/// The holders as a phrase for messages.
fn holders_text(holders: &[Holder]) -> String {
    if holders.is_empty() {
        return "another process holds a lock on it (which one could not be found in \
                /proc; as root, or with `fuser -v FILE`, you can see it)"
            .into();
    }
    let list = holders
        .iter()
        .map(Holder::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    format!("it is locked by {list}")
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
    #[error("{} is in use: {}. satavm does not open a disk another program may be writing, nor write one another program reads (like QEMU); readonly=on lets several read-only users share it, lock=off skips the lock (only if you know nothing else writes it)", .path.display(), holders_text(.holders))]
    Locked { path: PathBuf, holders: Vec<Holder> },
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
    // F_WRLCK needs a descriptor open for writing, F_RDLCK one open for reading.
    let file = OpenOptions::new()
        .read(true)
        .write(exclusive)
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

fn whole_file_lock(kind: libc::c_int) -> libc::flock {
    // SAFETY: flock is a plain C struct; all zeros is a valid value (whole file from 0).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0;
    fl
}

/// Take an OFD lock on all of `file` (exclusive: F_WRLCK, else F_RDLCK) without waiting.
pub fn lock_file(file: &File, path: &Path, exclusive: bool) -> Result<(), HostFileError> {
    let kind = if exclusive {
        libc::F_WRLCK
    } else {
        libc::F_RDLCK
    };
    let fl = whole_file_lock(kind);
    match fcntl(file.as_raw_fd(), FcntlArg::F_OFD_SETLK(&fl)) {
        Ok(_) => Ok(()),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => {
            let mut holders = Vec::new();
            // A traditional POSIX lock (fcntl F_SETLK, lockf) reports its owner's pid.
            let mut probe = whole_file_lock(kind);
            if fcntl(file.as_raw_fd(), FcntlArg::F_OFD_GETLK(&mut probe)).is_ok() && probe.l_pid > 0
            {
                holders.push(Holder {
                    pid: probe.l_pid as u32,
                    command: command_of(probe.l_pid as u32),
                    write: i32::from(probe.l_type) == libc::F_WRLCK,
                });
            }
            if holders.is_empty() {
                if let Ok(meta) = file.metadata() {
                    holders = lock_holders(Path::new("/proc"), meta.dev(), meta.ino(), exclusive);
                }
            }
            Err(HostFileError::Locked {
                path: path.into(),
                holders,
            })
        }
        Err(e) => Err(HostFileError::Lock {
            path: path.into(),
            source: e.into(),
        }),
    }
}

fn command_of(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// The processes (under the procfs at `proc`) holding a lock on the inode `ino` of the file
/// system `dev` that conflicts with the lock wanted (`want_exclusive`: any lock; else write
/// locks), from the `lock:` lines of `/proc/PID/fdinfo/FD`. Each process is named once.
pub fn lock_holders(proc: &Path, dev: u64, ino: u64, want_exclusive: bool) -> Vec<Holder> {
    // fs/locks.c prints the file as MAJOR:MINOR:INODE, major and minor in hex (%02x).
    let needle = format!(
        " {:02x}:{:02x}:{ino} ",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    let mut found: Vec<Holder> = Vec::new();
    let Ok(procs) = std::fs::read_dir(proc) else {
        return found;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(info) = std::fs::read_to_string(fd.path()) else {
                continue;
            };
            for line in info.lines().filter(|l| l.starts_with("lock:")) {
                if !line.contains(&needle) {
                    continue;
                }
                let write = line.contains(" WRITE ");
                if !want_exclusive && !write {
                    continue;
                }
                match found.iter_mut().find(|h| h.pid == pid) {
                    Some(h) => h.write |= write,
                    None => found.push(Holder {
                        pid,
                        command: std::fs::read_to_string(p.path().join("comm"))
                            .ok()
                            .map(|s| s.trim().to_string()),
                        write,
                    }),
                }
            }
        }
    }
    found.sort_by_key(|h| h.pid);
    found
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
        for ro in [false, true] {
            let e = open_disk(&p, ro, true).unwrap_err();
            let HostFileError::Locked { holders, .. } = &e else {
                panic!("{e}")
            };
            assert_eq!(holders.len(), 1, "{e}");
            assert_eq!(holders[0].pid, std::process::id());
            assert!(holders[0].write);
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
        let HostFileError::Locked { holders, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!(holders.len(), 1, "{e}");
        assert_eq!(holders[0].pid, child.id());
        assert!(
            e.to_string()
                .contains(&format!("pid {} (python3)", child.id())),
            "{e}"
        );
        drop(child.stdin.take());
        child.wait().unwrap();
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn holders_are_found_in_fdinfo_lock_lines() {
        let root = tmp("proc");
        let _ = std::fs::remove_dir_all(&root);
        let fdinfo = root.join("4242/fdinfo");
        std::fs::create_dir_all(&fdinfo).unwrap();
        std::fs::write(root.join("4242/comm"), "qemu-system-x86\n").unwrap();
        // QEMU's shared byte locks on an image of inode 5359853 on fe:00.
        std::fs::write(
            fdinfo.join("12"),
            "pos:\t0\nflags:\t02100002\nlock:\t1: OFDLCK ADVISORY  READ -1 fe:00:5359853 100 101\n\
             lock:\t2: OFDLCK ADVISORY  READ -1 fe:00:5359853 201 201\n",
        )
        .unwrap();
        std::fs::write(fdinfo.join("13"), "pos:\t0\n").unwrap();
        std::fs::create_dir_all(root.join("self")).unwrap();
        let dev = nix::sys::stat::makedev(0xfe, 0);
        let h = lock_holders(&root, dev, 5359853, true);
        assert_eq!(
            h,
            vec![Holder {
                pid: 4242,
                command: Some("qemu-system-x86".into()),
                write: false
            }]
        );
        // Read locks do not stand in the way of a reader.
        assert!(lock_holders(&root, dev, 5359853, false).is_empty());
        // Another inode.
        assert!(lock_holders(&root, dev, 535985, true).is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
