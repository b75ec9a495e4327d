//! [`SgThreadEngine`]: blocking SG_IO on worker threads, one command each, for a /dev/sdX whose
//! sg node does not exist (the sg module not loaded): the block layer's SG_IO has no
//! asynchronous form, but it maps the caller's pages for the transfer, so the data still moves
//! between the drive and guest RAM without a copy in satavm. Over any other [`SgTransport`]
//! (a scripted fake in tests, which may hold a command as long as it likes) the data is
//! copied through a buffer of the worker's.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::{SgDevice, SgRequest, SgTransport};
use crate::block::{Completed, Engine, EngineStats, Reply, Request, ScsiCommand, SubmitError};
use crate::mem::{HostRange, MemError, MAX_IOVECS};
use crate::sata::CompletionNotifier;

#[derive(Default)]
struct State {
    queue: VecDeque<(u64, ScsiCommand)>,
    done: Vec<Completed>,
    direct: u64,
    bounced: u64,
    shutdown: bool,
}

/// What the workers run commands on.
enum Target {
    Device(SgDevice),
    Transport(Arc<dyn SgTransport>),
}

struct Shared {
    dev: Target,
    state: Mutex<State>,
    work: Condvar,
    notifier: CompletionNotifier,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// See the module documentation.
pub struct SgThreadEngine {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    in_flight: usize,
    stats: EngineStats,
}

impl SgThreadEngine {
    /// `workers` threads (the host queue depth) running commands on `dev`.
    pub fn new(dev: SgDevice, notifier: CompletionNotifier, workers: usize) -> io::Result<Self> {
        Self::start(Target::Device(dev), notifier, workers)
    }

    /// `workers` threads running commands on `transport` (its data copied per command).
    pub fn with_transport(
        transport: Arc<dyn SgTransport>,
        notifier: CompletionNotifier,
        workers: usize,
    ) -> io::Result<Self> {
        Self::start(Target::Transport(transport), notifier, workers)
    }

    fn start(dev: Target, notifier: CompletionNotifier, workers: usize) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            dev,
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            notifier,
        });
        let mut handles = Vec::new();
        for i in 0..workers.max(1) {
            let s = shared.clone();
            match std::thread::Builder::new()
                .name(format!("sg-io-{i}"))
                .spawn(move || worker(&s))
            {
                Ok(h) => handles.push(h),
                // Fewer workers only means fewer commands in flight.
                Err(e) if !handles.is_empty() => {
                    log::warn!("pass-through: cannot start worker {i}: {e}");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(SgThreadEngine {
            shared,
            workers: handles,
            in_flight: 0,
            stats: EngineStats::default(),
        })
    }
}

impl Drop for SgThreadEngine {
    fn drop(&mut self) {
        // Not joined: a worker may be blocked in SG_IO until the command times out. The
        // commands it holds keep their guest memory mapped (GuestBuf) until they return.
        self.shared.lock().shutdown = true;
        self.shared.work.notify_all();
        self.workers.clear();
    }
}

impl Engine for SgThreadEngine {
    fn name(&self) -> &'static str {
        "sg-threads"
    }

    fn submit(&mut self, tag: u64, request: Request) -> Result<(), SubmitError> {
        let Request::Scsi(cmd) = request else {
            return Err(SubmitError::Unsupported {
                engine: "sg-threads",
                request: request.name(),
            });
        };
        self.stats.submitted += 1;
        self.in_flight += 1;
        self.stats.peak_in_flight = self.stats.peak_in_flight.max(self.in_flight as u32);
        self.shared.lock().queue.push_back((tag, cmd));
        self.shared.work.notify_one();
        Ok(())
    }

    fn reap(&mut self, out: &mut Vec<Completed>) {
        let mut st = self.shared.lock();
        self.in_flight -= st.done.len();
        self.stats.syscalls += st.done.len() as u64;
        self.stats.direct_io = st.direct;
        self.stats.bounced_bytes = st.bounced;
        out.append(&mut st.done);
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn stats(&self) -> EngineStats {
        self.stats
    }
}

fn errno(e: MemError) -> io::Error {
    io::Error::from_raw_os_error(match e {
        MemError::OutOfRange { .. } => libc::EFAULT,
        MemError::NoHostMapping => libc::EINVAL,
    })
}

/// Run `cmd` on `dev`: through host iovecs over guest RAM, or a copy for memory without host
/// mappings. Returns the result and the bytes bounced.
fn run(target: &Target, cmd: &ScsiCommand) -> (io::Result<Reply>, u64) {
    let dev = match target {
        Target::Device(d) => d,
        Target::Transport(t) => return run_copied(t.as_ref(), cmd),
    };
    let Some(buf) = &cmd.buf else {
        let r = dev.execute_iov(&cmd.cdb, cmd.direction, &[], cmd.timeout);
        return (r.map(Reply::Scsi), 0);
    };
    match buf.host_ranges() {
        Ok(iov) if iov.len() <= MAX_IOVECS => {
            // `buf` keeps the memory behind `iov` mapped for the call.
            let r = dev.execute_iov(&cmd.cdb, cmd.direction, &iov, cmd.timeout);
            (r.map(Reply::Scsi), 0)
        }
        Ok(_) => (Err(io::Error::from_raw_os_error(libc::EINVAL)), 0),
        Err(MemError::NoHostMapping) => {
            let Ok(len) = usize::try_from(buf.len()) else {
                return (Err(io::Error::from_raw_os_error(libc::EINVAL)), 0);
            };
            let mut data = vec![0u8; len];
            let to_device = cmd.direction == super::DataDirection::ToDevice;
            if to_device {
                if let Err(e) = buf.read_into(&mut data) {
                    return (Err(errno(e)), 0);
                }
            }
            let iov = [HostRange {
                addr: data.as_mut_ptr() as usize,
                len,
            }];
            let r = dev.execute_iov(&cmd.cdb, cmd.direction, &iov, cmd.timeout);
            if r.is_ok() && cmd.direction == super::DataDirection::FromDevice {
                if let Err(e) = buf.write_from(&data) {
                    return (Err(errno(e)), len as u64);
                }
            }
            (r.map(Reply::Scsi), len as u64)
        }
        Err(e) => (Err(errno(e)), 0),
    }
}

/// Run `cmd` on a synchronous transport through a buffer of its own.
fn run_copied(t: &dyn SgTransport, cmd: &ScsiCommand) -> (io::Result<Reply>, u64) {
    let len = cmd.buf.as_ref().map_or(0, |b| b.len() as usize);
    let mut data = vec![0u8; len];
    if let (Some(b), super::DataDirection::ToDevice) = (&cmd.buf, cmd.direction) {
        if let Err(e) = b.read_into(&mut data) {
            return (Err(errno(e)), 0);
        }
    }
    let r = t.execute(SgRequest {
        cdb: &cmd.cdb,
        direction: cmd.direction,
        data: &mut data,
        timeout: cmd.timeout,
    });
    if let (Ok(_), Some(b), super::DataDirection::FromDevice) = (&r, &cmd.buf, cmd.direction) {
        if let Err(e) = b.write_from(&data) {
            return (Err(errno(e)), len as u64);
        }
    }
    (r.map(Reply::Scsi), len as u64)
}

fn worker(s: &Shared) {
    loop {
        let (tag, cmd) = {
            let mut st = s.lock();
            loop {
                if st.shutdown {
                    return;
                }
                if let Some(job) = st.queue.pop_front() {
                    break job;
                }
                st = s.work.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        let (result, bounced) = run(&s.dev, &cmd);
        let mut st = s.lock();
        if let Ok(Reply::Scsi(r)) = &result {
            st.direct += u64::from(r.direct_io);
        }
        st.bounced += bounced;
        st.done.push(Completed { tag, result });
        drop(st);
        if let Err(e) = s.notifier.write(1) {
            log::error!("pass-through: cannot signal a completion: {e}");
        }
    }
}
