//! [`ThreadEngine`]: the file engine's fallback where io_uring is unavailable (an old kernel,
//! seccomp, `kernel.io_uring_disabled`): a few threads run `preadv` / `pwritev2` (RWF_DSYNC
//! for FUA) / `fdatasync` / `fallocate` between guest RAM and the file, and write the
//! completion notifier when one finishes. The same [`FileOp`]s as the io_uring engine, carried
//! out synchronously on a worker instead of in the kernel's ring.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::file_ops::{FileOp, Transfer, ZERO_CHUNK};
use super::{Completed, Engine, EngineStats, Reply, Request, SubmitError};
use crate::mem::HostRange;
use crate::sata::CompletionNotifier;

/// Worker threads per engine: enough to keep a host SSD's queue busy on a small VM.
pub const WORKERS: usize = 4;

#[derive(Default)]
struct State {
    queue: VecDeque<(u64, io::Result<FileOp>)>,
    done: Vec<Completed>,
    syscalls: u64,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    file: Arc<File>,
    notifier: CompletionNotifier,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// See the module documentation.
pub struct ThreadEngine {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    in_flight: usize,
    stats: EngineStats,
}

impl ThreadEngine {
    /// `workers` threads (at least one) over `file`; each finished request writes `notifier`.
    pub fn new(file: Arc<File>, notifier: CompletionNotifier, workers: usize) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            file,
            notifier,
        });
        let mut handles = Vec::new();
        for i in 0..workers.max(1) {
            let s = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("blk-io-{i}"))
                .spawn(move || worker(&s));
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    shutdown(&shared, handles);
                    return Err(e);
                }
            }
        }
        Ok(ThreadEngine {
            shared,
            workers: handles,
            in_flight: 0,
            stats: EngineStats::default(),
        })
    }
}

fn shutdown(shared: &Shared, workers: Vec<JoinHandle<()>>) {
    shared.lock().shutdown = true;
    shared.work.notify_all();
    for w in workers {
        let _ = w.join();
    }
}

impl Drop for ThreadEngine {
    fn drop(&mut self) {
        // Workers finish the operation they are in (it may be writing guest memory) first.
        shutdown(&self.shared, std::mem::take(&mut self.workers));
    }
}

impl Engine for ThreadEngine {
    fn name(&self) -> &'static str {
        "threads"
    }

    fn submit(&mut self, tag: u64, request: Request) -> Result<(), SubmitError> {
        let op = FileOp::prepare("threads", request)?;
        if let Ok(op) = &op {
            self.stats.bounced_bytes += op.bounced();
        }
        self.stats.submitted += 1;
        self.in_flight += 1;
        self.stats.peak_in_flight = self.stats.peak_in_flight.max(self.in_flight as u32);
        self.shared.lock().queue.push_back((tag, op));
        self.shared.work.notify_one();
        Ok(())
    }

    fn reap(&mut self, out: &mut Vec<Completed>) {
        let mut st = self.shared.lock();
        self.in_flight -= st.done.len();
        out.append(&mut st.done);
        self.stats.syscalls = st.syscalls;
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn stats(&self) -> EngineStats {
        self.stats
    }
}

fn worker(s: &Shared) {
    loop {
        let (tag, op) = {
            let mut st = s.lock();
            loop {
                if let Some(job) = st.queue.pop_front() {
                    break job;
                }
                if st.shutdown {
                    return;
                }
                st = s.work.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        let mut syscalls = 0;
        let result = op.and_then(|op| run(&s.file, op, &mut syscalls));
        let mut st = s.lock();
        st.syscalls += syscalls;
        st.done.push(Completed { tag, result });
        drop(st);
        if let Err(e) = s.notifier.write(1) {
            log::error!("block engine: cannot signal a completion: {e}");
        }
    }
}

/// A count or -1 from a libc call, as a result.
fn check(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Carry out `op` on `file`, counting the system calls.
fn run(file: &File, op: FileOp, syscalls: &mut u64) -> io::Result<Reply> {
    let fd = file.as_raw_fd();
    match op {
        FileOp::Transfer(mut t) => loop {
            *syscalls += 1;
            let iov = HostRange::as_iovecs(&t.iov);
            let n = t.iov.len() as libc::c_int;
            let off = t.offset as libc::off_t;
            let r = if t.write {
                let flags = if t.fua { libc::RWF_DSYNC } else { 0 };
                // SAFETY: `iov` is an iovec array of `n` entries (HostRange has iovec's layout)
                // over guest RAM kept mapped by the transfer's GuestBuf, or over its bounce
                // buffer; both live in `t` for the whole call.
                check(unsafe { libc::pwritev2(fd, iov, n, off, flags) })
            } else {
                // SAFETY: as above; the kernel writes only within the iovecs.
                check(unsafe { libc::preadv(fd, iov, n, off) })
            };
            match r {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
                Ok(n) => {
                    if t.advance(n)? {
                        return Transfer::finish(*t);
                    }
                }
            }
        },
        FileOp::Flush => {
            *syscalls += 1;
            file.sync_data().map(|()| Reply::Done)
        }
        FileOp::Discard { offset, len } => {
            *syscalls += 1;
            let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
            let (Ok(off), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len))
            else {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            };
            // SAFETY: fallocate takes no pointers; the descriptor is open.
            check(unsafe { libc::fallocate(fd, mode, off, len) } as isize).map(|_| Reply::Done)
        }
        FileOp::Zeroes { offset, remaining } => {
            use std::os::unix::fs::FileExt;
            let zeros = vec![0u8; ZERO_CHUNK];
            let (mut at, mut left) = (offset, remaining);
            while left > 0 {
                *syscalls += 1;
                let n = left.min(ZERO_CHUNK as u64) as usize;
                file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
                left -= n as u64;
            }
            Ok(Reply::Done)
        }
    }
}
