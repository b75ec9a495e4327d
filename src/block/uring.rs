//! [`UringEngine`]: an image file or block device through io_uring (Linux 5.6+).
//!
//! Reads and writes are IORING_OP_READV / WRITEV straight between guest RAM and the file (FUA
//! writes carry RWF_DSYNC), FLUSH is IORING_OP_FSYNC with DATASYNC, a discard is
//! IORING_OP_FALLOCATE (PUNCH_HOLE | KEEP_SIZE), zeroing is IORING_OP_WRITE from a zero page.
//! The ring signals the completion notifier it was given (IORING_REGISTER_EVENTFD), which the
//! event loop watches; `reap` drains the completion queue. Each `submit` is one
//! `io_uring_enter`. A short read or write is continued from where it stopped.
//!
//! Every request in the ring owns its slot: the iovec array and the [`crate::mem::GuestBuf`]
//! (which keeps guest memory mapped) live there until its completion is reaped.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use io_uring::{opcode, squeue, types, IoUring};

use super::file_ops::{errno_completion, FileOp, Transfer, ZERO_CHUNK};
use super::{Completed, Engine, EngineStats, Reply, Request, SubmitError};
use crate::mem::HostRange;
use crate::sata::CompletionNotifier;

/// Ring size: the most requests in the kernel at once; more wait in satavm.
const RING_ENTRIES: u32 = 128;

struct Slot {
    tag: u64,
    op: FileOp,
}

/// See the module documentation.
pub struct UringEngine {
    ring: IoUring,
    file: Arc<File>,
    notifier: CompletionNotifier,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    /// Requests waiting for a free slot.
    backlog: VecDeque<(u64, FileOp)>,
    /// Finished without the kernel (failed at once), reported by the next `reap`.
    done: Vec<Completed>,
    in_flight: usize,
    zeros: Box<[u8]>,
    stats: EngineStats,
}

impl std::fmt::Debug for UringEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringEngine")
            .field("in_flight", &self.in_flight)
            .field("backlog", &self.backlog.len())
            .finish()
    }
}

impl UringEngine {
    /// An engine over `file` whose completions write `notifier`. Fails where the host has no
    /// usable io_uring (ENOSYS on old kernels, EPERM under seccomp or io_uring_disabled).
    pub fn new(file: Arc<File>, notifier: CompletionNotifier) -> io::Result<Self> {
        let ring = IoUring::new(RING_ENTRIES)?;
        ring.submitter().register_eventfd(notifier.as_raw_fd())?;
        let entries = RING_ENTRIES as usize;
        Ok(UringEngine {
            ring,
            file,
            notifier,
            slots: (0..entries).map(|_| None).collect(),
            free: (0..entries).rev().collect(),
            backlog: VecDeque::new(),
            done: Vec::new(),
            in_flight: 0,
            zeros: vec![0u8; ZERO_CHUNK].into_boxed_slice(),
            stats: EngineStats::default(),
        })
    }

    /// The SQE for the next step of `op`, tagged with slot `index`.
    fn entry(&self, index: usize, op: &FileOp) -> squeue::Entry {
        let fd = types::Fd(self.file.as_raw_fd());
        let e = match op {
            FileOp::Transfer(t) => {
                let iov = HostRange::as_iovecs(&t.iov);
                let n = t.iov.len() as u32;
                if t.write {
                    let flags = if t.fua { libc::RWF_DSYNC } else { 0 };
                    opcode::Writev::new(fd, iov, n)
                        .offset(t.offset)
                        .rw_flags(flags)
                        .build()
                } else {
                    opcode::Readv::new(fd, iov, n).offset(t.offset).build()
                }
            }
            FileOp::Flush => opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build(),
            FileOp::Discard { offset, len } => opcode::Fallocate::new(fd, *len)
                .offset(*offset)
                .mode(libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE)
                .build(),
            FileOp::Zeroes { offset, remaining } => {
                let n = (*remaining).min(self.zeros.len() as u64) as u32;
                opcode::Write::new(fd, self.zeros.as_ptr(), n)
                    .offset(*offset)
                    .build()
            }
        };
        e.user_data(index as u64)
    }

    /// Put `op` in slot `index` and hand it to the kernel (false: the queue was full and
    /// nothing was queued).
    fn push(&mut self, index: usize, tag: u64, op: FileOp) -> Result<(), FileOp> {
        let entry = self.entry(index, &op);
        // SAFETY: the entry points at memory that stays valid until its completion is reaped:
        // the iovec array and bounce buffer owned by the slot's FileOp (moved into the slot
        // below, their heap buffers do not move), guest RAM kept mapped by the GuestBuf in
        // that FileOp, the engine's zero page, and the file, all owned by `self`, which drains
        // the ring before it is dropped.
        let pushed = unsafe { self.ring.submission().push(&entry) };
        if pushed.is_err() {
            return Err(op);
        }
        self.slots[index] = Some(Slot { tag, op });
        Ok(())
    }

    /// Submit queued requests while slots are free, then enter the kernel once.
    fn kick(&mut self) {
        let mut pushed = false;
        while let Some(index) = self.free.last().copied() {
            let Some((tag, op)) = self.backlog.pop_front() else {
                break;
            };
            match self.push(index, tag, op) {
                Ok(()) => {
                    self.free.pop();
                    pushed = true;
                }
                Err(op) => {
                    self.backlog.push_front((tag, op));
                    break;
                }
            }
        }
        if pushed {
            self.stats.syscalls += 1;
            if let Err(e) = self.ring.submit() {
                // EBUSY/EAGAIN: the completion queue is full; the entries stay in the
                // submission queue and go with the next submit (after a reap).
                if !matches!(
                    e.raw_os_error(),
                    Some(libc::EBUSY | libc::EAGAIN | libc::EINTR)
                ) {
                    log::error!("io_uring_enter: {e}");
                }
            }
        }
    }

    /// A step of slot `index` finished with `res` (bytes, or -errno).
    fn step_done(&mut self, index: usize, res: i32) -> Option<Completed> {
        let slot = self.slots.get_mut(index)?.take()?;
        let Slot { tag, op } = slot;
        let finished = |r: io::Result<Reply>| Completed { tag, result: r };
        if res < 0 {
            return Some(errno_completion(tag, -res));
        }
        let n = res as usize;
        let next = match op {
            FileOp::Transfer(mut t) => match t.advance(n) {
                Err(e) => return Some(finished(Err(e))),
                Ok(true) => return Some(finished(Transfer::finish(*t))),
                Ok(false) => FileOp::Transfer(t),
            },
            FileOp::Zeroes { offset, remaining } => {
                let left = remaining.saturating_sub(n as u64);
                if left == 0 {
                    return Some(finished(Ok(Reply::Done)));
                }
                if n == 0 {
                    return Some(errno_completion(tag, libc::EIO));
                }
                FileOp::Zeroes {
                    offset: offset + n as u64,
                    remaining: left,
                }
            }
            FileOp::Flush | FileOp::Discard { .. } => return Some(finished(Ok(Reply::Done))),
        };
        // More to do: the same slot again, at the front of the queue.
        self.free.push(index);
        self.backlog.push_front((tag, next));
        None
    }
}

impl Engine for UringEngine {
    fn name(&self) -> &'static str {
        "io_uring"
    }

    fn submit(&mut self, tag: u64, request: Request) -> Result<(), SubmitError> {
        let op = FileOp::prepare("io_uring", request)?;
        self.stats.submitted += 1;
        self.in_flight += 1;
        self.stats.peak_in_flight = self.stats.peak_in_flight.max(self.in_flight as u32);
        match op {
            Ok(op) => {
                self.stats.bounced_bytes += op.bounced();
                self.backlog.push_back((tag, op));
                self.kick();
            }
            Err(e) => {
                self.done.push(Completed {
                    tag,
                    result: Err(e),
                });
                // Wake the event loop, which reaps it.
                let _ = self.notifier.write(1);
            }
        }
        Ok(())
    }

    fn reap(&mut self, out: &mut Vec<Completed>) {
        let before = out.len();
        out.append(&mut self.done);
        let cqes: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (index, res) in cqes {
            let Ok(index) = usize::try_from(index) else {
                continue;
            };
            if let Some(c) = self.step_done(index, res) {
                self.free.push(index);
                out.push(c);
            }
        }
        self.in_flight -= out.len() - before;
        self.kick();
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn stats(&self) -> EngineStats {
        self.stats
    }
}

impl Drop for UringEngine {
    fn drop(&mut self) {
        // The kernel may still write into buffers this engine owns: wait for it.
        while self.slots.iter().any(Option::is_some) {
            if let Err(e) = self.ring.submit_and_wait(1) {
                if e.raw_os_error() != Some(libc::EINTR) {
                    log::error!("io_uring: cannot drain the ring at exit: {e}");
                    // Leak the ring's buffers rather than free memory the kernel may write.
                    std::mem::forget(std::mem::take(&mut self.slots));
                    return;
                }
            }
            let cqes: Vec<u64> = self.ring.completion().map(|c| c.user_data()).collect();
            for index in cqes {
                if let Some(s) = self.slots.get_mut(index as usize) {
                    *s = None;
                }
            }
        }
    }
}
