//! Image locking that QEMU understands: QEMU's file-posix protocol (block/file-posix.c,
//! `raw_apply_lock_bytes` / `raw_check_lock_bytes`), with open file description locks.
//!
//! Each permission a user of an image holds is a shared lock on byte 100 + its bit, each
//! permission it does not let others hold a shared lock on byte 200 + its bit (the bits of
//! QEMU's `BLK_PERM_*`: 0 consistent read, 1 write, 2 write unchanged, 3 resize). After taking
//! its locks a user tests the opposite bytes: a lock on 200 + bit of a permission it holds
//! means someone refuses to share it; a lock on 100 + bit of one it does not share means
//! someone holds it. Locks come first, tests second, so two users starting at once cannot
//! both miss each other. satavm takes the permissions QEMU takes for a drive:
//!
//! | drive | holds | does not share |
//! |---|---|---|
//! | read-write | consistent read, write, write unchanged | write, resize |
//! | `readonly=on` | consistent read | write, resize |
//!
//! So a read-write satavm and any other user (another satavm or a QEMU, read-write or
//! read-only) refuse each other; read-only users share, and a read-only one refuses a
//! writer, as QEMU's `-drive readonly=on` and `qemu-img info` do. The locks live as long as
//! the open file description (the drive's file).
//!
//! A refused lock names its holders ([`lock_holders`]): OFD locks carry no pid
//! (`F_OFD_GETLK` and /proc/locks report -1), so the `lock:` lines of `/proc/PID/fdinfo/FD`,
//! which list the locks taken through that very descriptor, give them.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};

use super::HostFileError;

/// QEMU's RAW_LOCK_PERM_BASE and RAW_LOCK_SHARED_BASE.
const PERM_BASE: i64 = 100;
const SHARED_BASE: i64 = 200;

/// A QEMU block permission (the bit index of `BLK_PERM_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ConsistentRead = 0,
    Write = 1,
    WriteUnchanged = 2,
    Resize = 3,
}

impl Permission {
    fn name(self) -> &'static str {
        match self {
            Permission::ConsistentRead => "read",
            Permission::Write => "write",
            Permission::WriteUnchanged => "write unchanged data to",
            Permission::Resize => "resize",
        }
    }
}

/// Why a lock was refused: what the other user does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// It holds a permission this drive does not share (e.g. it writes the image).
    Holds(Permission),
    /// It does not share a permission this drive needs (e.g. it lets nobody else write).
    Unshares(Permission),
    /// It holds a write lock on a byte satavm locks (a program with its own locking).
    WriteLock,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conflict::Holds(Permission::Write) => f.write_str("has it open for writing"),
            Conflict::Holds(p) => write!(f, "may {} it", p.name()),
            Conflict::Unshares(Permission::Write) => {
                f.write_str("has it open and lets no one else write it")
            }
            Conflict::Unshares(p) => write!(f, "has it open and lets no one else {} it", p.name()),
            Conflict::WriteLock => f.write_str("holds a write lock on it"),
        }
    }
}

/// A process that holds a lock on a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// Its command name (/proc/PID/comm), if readable.
    pub command: Option<String>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.pid == std::process::id() {
            return f.write_str("this satavm itself (the same file given twice?)");
        }
        match &self.command {
            Some(c) => write!(f, "pid {} ({c})", self.pid),
            None => write!(f, "pid {}", self.pid),
        }
    }
}

/// The holders and what they do, as a phrase for messages.
pub(super) fn conflict_text(conflict: &Conflict, holders: &[Holder]) -> String {
    if holders.is_empty() {
        return format!(
            "another process {conflict} (which one could not be found in /proc; as root, or with \
             `fuser -v FILE`, you can see it)"
        );
    }
    let list = holders
        .iter()
        .map(Holder::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    format!("{list} {conflict}")
}

fn byte_lock(kind: libc::c_int, start: i64) -> libc::flock {
    // SAFETY: flock is a plain C struct; all zeros is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = 1;
    fl
}

/// The permissions a drive holds and those it does not share (see the module table).
fn permissions(read_write: bool) -> (&'static [Permission], &'static [Permission]) {
    use Permission::*;
    let unshared: &[Permission] = &[Write, Resize];
    if read_write {
        (&[ConsistentRead, Write, WriteUnchanged], unshared)
    } else {
        (&[ConsistentRead], unshared)
    }
}

/// Lock `file` (at `path`) for a read-write drive or a read-only one, or say who is in the
/// way.
pub fn lock_file(file: &File, path: &Path, read_write: bool) -> Result<(), HostFileError> {
    let fd = file.as_raw_fd();
    let lock_error = |e: Errno| HostFileError::Lock {
        path: path.into(),
        source: e.into(),
    };
    let refused = |conflict: Conflict, byte: i64| {
        let holders = file
            .metadata()
            .map(|m| {
                // Not the locks this descriptor just took.
                let me = (std::process::id(), fd);
                lock_holders(Path::new("/proc"), m.dev(), m.ino(), byte as u64, Some(me))
            })
            .unwrap_or_default();
        HostFileError::Locked {
            path: path.into(),
            conflict,
            holders,
        }
    };
    let (held, unshared) = permissions(read_write);
    let bytes = held
        .iter()
        .map(|p| PERM_BASE + *p as i64)
        .chain(unshared.iter().map(|p| SHARED_BASE + *p as i64));
    for byte in bytes {
        match fcntl(fd, FcntlArg::F_OFD_SETLK(&byte_lock(libc::F_RDLCK, byte))) {
            Ok(_) => {}
            Err(Errno::EAGAIN | Errno::EACCES) => return Err(refused(Conflict::WriteLock, byte)),
            Err(e) => return Err(lock_error(e)),
        }
    }
    // Any lock of another open file description on a byte conflicts with a write lock.
    let locked = |byte: i64| -> Result<bool, HostFileError> {
        let mut probe = byte_lock(libc::F_WRLCK, byte);
        fcntl(fd, FcntlArg::F_OFD_GETLK(&mut probe)).map_err(lock_error)?;
        Ok(i32::from(probe.l_type) != libc::F_UNLCK)
    };
    for p in held {
        if locked(SHARED_BASE + *p as i64)? {
            return Err(refused(Conflict::Unshares(*p), SHARED_BASE + *p as i64));
        }
    }
    for p in unshared {
        if locked(PERM_BASE + *p as i64)? {
            return Err(refused(Conflict::Holds(*p), PERM_BASE + *p as i64));
        }
    }
    Ok(())
}

/// The processes (under the procfs at `proc`) holding a lock on byte `byte` of the inode
/// `ino` of the file system `dev`, from the `lock:` lines of `/proc/PID/fdinfo/FD` (but not
/// those of descriptor `skip`, a (pid, fd)); each once, by pid.
pub fn lock_holders(
    proc: &Path,
    dev: u64,
    ino: u64,
    byte: u64,
    skip: Option<(u32, i32)>,
) -> Vec<Holder> {
    // fs/locks.c prints the file as MAJOR:MINOR:INODE (major and minor in hex, %02x) and the
    // range as START END (END may be EOF).
    let file = format!(
        "{:02x}:{:02x}:{ino}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    let covers = |line: &str| {
        let mut fields = line.split_whitespace().skip_while(|f| *f != file).skip(1);
        let start = fields.next().and_then(|s| s.parse::<u64>().ok());
        let end = fields.next();
        match (start, end) {
            (Some(s), Some("EOF")) => byte >= s,
            (Some(s), Some(e)) => e.parse::<u64>().is_ok_and(|e| (s..=e).contains(&byte)),
            _ => false,
        }
    };
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
        let holds = fds.flatten().any(|fd| {
            let n = fd.file_name().to_str().and_then(|n| n.parse::<i32>().ok());
            if skip.is_some_and(|(p, f)| p == pid && Some(f) == n) {
                return false;
            }
            std::fs::read_to_string(fd.path()).is_ok_and(|info| {
                info.lines()
                    .filter(|l| l.starts_with("lock:"))
                    .any(|l| l.contains(&file) && covers(l))
            })
        });
        if holds && !found.iter().any(|h| h.pid == pid) {
            found.push(Holder {
                pid,
                command: std::fs::read_to_string(p.path().join("comm"))
                    .ok()
                    .map(|s| s.trim().to_string()),
            });
        }
    }
    found.sort_by_key(|h| h.pid);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_are_found_in_fdinfo_lock_lines() {
        let root = std::env::temp_dir().join(format!("satavm-lock-proc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let fdinfo = root.join("4242/fdinfo");
        std::fs::create_dir_all(&fdinfo).unwrap();
        std::fs::write(root.join("4242/comm"), "qemu-system-x86\n").unwrap();
        // A read-write QEMU's locks on an image of inode 5359853 on fe:00.
        std::fs::write(
            fdinfo.join("12"),
            "pos:\t0\nflags:\t02100002\n\
             lock:\t1: OFDLCK ADVISORY  READ -1 fe:00:5359853 100 101\n\
             lock:\t2: OFDLCK ADVISORY  READ -1 fe:00:5359853 201 201\n",
        )
        .unwrap();
        std::fs::write(fdinfo.join("13"), "pos:\t0\n").unwrap();
        // Another process with a whole-file lock on another inode.
        std::fs::create_dir_all(root.join("77/fdinfo")).unwrap();
        std::fs::write(
            root.join("77/fdinfo/3"),
            "lock:\t1: OFDLCK ADVISORY  WRITE -1 fe:00:42 0 EOF\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.join("self")).unwrap();
        let dev = nix::sys::stat::makedev(0xfe, 0);
        let qemu = vec![Holder {
            pid: 4242,
            command: Some("qemu-system-x86".into()),
        }];
        assert_eq!(lock_holders(&root, dev, 5359853, 101, None), qemu);
        assert_eq!(lock_holders(&root, dev, 5359853, 201, None), qemu);
        assert!(lock_holders(&root, dev, 5359853, 203, None).is_empty());
        assert!(lock_holders(&root, dev, 535985, 101, None).is_empty());
        let other = lock_holders(&root, dev, 42, 1 << 40, None);
        assert!(lock_holders(&root, dev, 42, 1, Some((77, 3))).is_empty());
        assert_eq!(other.len(), 1);
        assert_eq!((other[0].pid, other[0].command.as_deref()), (77, None));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn conflicts_read_as_what_the_other_user_does() {
        assert_eq!(
            Conflict::Holds(Permission::Write).to_string(),
            "has it open for writing"
        );
        assert_eq!(
            Conflict::Unshares(Permission::Write).to_string(),
            "has it open and lets no one else write it"
        );
        let h = [Holder {
            pid: 1,
            command: Some("qemu".into()),
        }];
        assert_eq!(
            conflict_text(&Conflict::Holds(Permission::Write), &h),
            "pid 1 (qemu) has it open for writing"
        );
    }
}
