//! [`SgEngine`]: SCSI commands through the sg driver's asynchronous v3 interface on /dev/sgN,
//! without a thread of satavm's waiting for them.
//!
//! `write()` of a `sg_io_hdr` queues a command and returns at once; when it is done the
//! descriptor becomes readable and `read()` returns the header with the status (and the
//! kernel writes the sense into the buffer named at `write()` time). Data goes through
//! `dxferp`: an iovec array over guest RAM (`iovec_count`), so the kernel copies between the
//! drive's pages and guest memory itself — one copy, none in satavm — or, when the sg module
//! allows direct I/O (`/sys/module/sg/parameters/allow_dio`) and the data is one aligned
//! buffer, straight into guest pages (SG_FLAG_DIRECT_IO; SG_INFO_DIRECT_IO says it happened).
//!
//! Descriptors: one command in flight per descriptor, with SG_SET_RESERVED_SIZE at the host's
//! largest transfer, so every command uses its descriptor's reserved buffer instead of fresh
//! pages the driver would allocate and zero for each. As many descriptors as commands may be
//! in flight (the host queue depth); further commands wait in satavm. All descriptors sit in
//! one epoll set, which is the engine's [`Engine::ready_fd`]; an eventfd in the same set wakes
//! the event loop for commands that failed before reaching the kernel.
//!
//! Per slot, the header, the CDB and the sense buffer are allocated once; the sense buffer's
//! address is what the kernel writes to when the command ends, so it never moves.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{open_rw, set_reserved_size, DataDirection, SgIoHdr, SENSE_LEN, SG_FLAG_DIRECT_IO};
use crate::block::file_ops::Bounce;
use crate::block::{Completed, Engine, EngineStats, Reply, Request, ScsiCommand, SubmitError};
use crate::mem::{GuestBuf, HostRange, MemError, MAX_IOVECS};

/// Data of the wake eventfd in the epoll set.
const WAKE: u64 = u64::MAX;
/// Alignment the engine asks of a buffer before it tries direct I/O (the block layer checks
/// the queue's own, usually smaller, DMA alignment).
const DIRECT_IO_ALIGN: usize = 512;

/// How the engine is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgEngineConfig {
    /// The sg node.
    pub path: PathBuf,
    /// Commands in flight on the host at most (its queue depth).
    pub max_in_flight: usize,
    /// The largest data transfer of one command, in bytes (each descriptor's reserved buffer).
    pub max_transfer: usize,
    /// Try SG_FLAG_DIRECT_IO where the data is one aligned buffer.
    pub direct_io: bool,
}

/// Whether the sg module allows direct I/O (`allow_dio`, 0 by default).
pub fn sg_allows_direct_io() -> bool {
    std::fs::read_to_string("/sys/module/sg/parameters/allow_dio").is_ok_and(|s| s.trim() == "1")
}

/// One command on its way: everything the header points at, so that the header itself can
/// be built on the stack for `write()` (the driver copies it) and read back on the stack.
struct Slot {
    tag: u64,
    cdb: Box<[u8; 16]>,
    cdb_len: usize,
    sense: Box<[u8; SENSE_LEN]>,
    direction: DataDirection,
    timeout: Duration,
    iov: Vec<HostRange>,
    direct_io: bool,
    bounce: Option<Bounce>,
    /// Keeps guest memory mapped until the command is read back.
    guest: Option<GuestBuf>,
}

impl Slot {
    /// The header that sends this slot's command.
    fn header(&mut self) -> SgIoHdr {
        let mut hdr = SgIoHdr::new(&self.cdb[..self.cdb_len], &mut self.sense, self.timeout);
        hdr.set_iovecs(self.direction, &self.iov);
        if self.direct_io {
            hdr.flags |= SG_FLAG_DIRECT_IO;
        }
        hdr.pack_id = (self.tag & 0x7fff_ffff) as libc::c_int;
        hdr
    }

    /// The command again, to queue it anew (its buffers are rebuilt then).
    fn into_command(self) -> ScsiCommand {
        ScsiCommand {
            cdb: self.cdb[..self.cdb_len].to_vec(),
            direction: self.direction,
            buf: self.guest,
            timeout: self.timeout,
        }
    }
}

/// A descriptor with at most one command in flight.
struct Descriptor {
    file: File,
    busy: Option<Slot>,
}

/// See the module documentation.
pub struct SgEngine {
    config: SgEngineConfig,
    fds: Vec<Descriptor>,
    epoll: Epoll,
    wake: EventFd,
    backlog: VecDeque<(u64, ScsiCommand)>,
    done: Vec<Completed>,
    in_flight: usize,
    stats: EngineStats,
}

impl std::fmt::Debug for SgEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SgEngine")
            .field("path", &self.config.path)
            .field("descriptors", &self.fds.len())
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

fn mem_errno(e: MemError) -> io::Error {
    io::Error::from_raw_os_error(match e {
        MemError::OutOfRange { .. } => libc::EFAULT,
        MemError::NoHostMapping => libc::EINVAL,
    })
}

impl SgEngine {
    /// Open the first descriptor of `config.path` (more are opened as commands need them).
    pub fn new(config: SgEngineConfig) -> io::Result<Self> {
        let epoll = Epoll::new()?;
        let wake = EventFd::new(EFD_NONBLOCK)?;
        epoll.ctl(
            ControlOperation::Add,
            wake.as_raw_fd(),
            EpollEvent::new(EventSet::IN, WAKE),
        )?;
        let mut e = SgEngine {
            config: SgEngineConfig {
                max_in_flight: config.max_in_flight.max(1),
                ..config
            },
            fds: Vec::new(),
            epoll,
            wake,
            backlog: VecDeque::new(),
            done: Vec::new(),
            in_flight: 0,
            stats: EngineStats::default(),
        };
        e.open_descriptor()?;
        Ok(e)
    }

    /// The node.
    pub fn path(&self) -> &Path {
        &self.config.path
    }

    fn open_descriptor(&mut self) -> io::Result<usize> {
        let file = open_rw(&self.config.path)?;
        if let Err(e) = set_reserved_size(file.as_raw_fd(), self.config.max_transfer) {
            log::debug!(
                "{}: SG_SET_RESERVED_SIZE {}: {e}",
                self.config.path.display(),
                self.config.max_transfer
            );
        }
        let index = self.fds.len();
        self.epoll.ctl(
            ControlOperation::Add,
            file.as_raw_fd(),
            EpollEvent::new(EventSet::IN, index as u64),
        )?;
        self.fds.push(Descriptor { file, busy: None });
        Ok(index)
    }

    /// A descriptor with nothing in flight, opening one while under the limit.
    fn idle_descriptor(&mut self) -> Option<io::Result<usize>> {
        if let Some(i) = self.fds.iter().position(|d| d.busy.is_none()) {
            return Some(Ok(i));
        }
        (self.fds.len() < self.config.max_in_flight).then(|| self.open_descriptor())
    }

    /// Fail `tag` without the kernel; the next `reap` returns it.
    fn fail(&mut self, tag: u64, e: io::Error) {
        self.done.push(Completed {
            tag,
            result: Err(e),
        });
        if let Err(e) = self.wake.write(1) {
            log::error!("sg engine: cannot wake the event loop: {e}");
        }
    }

    /// Build the slot for `cmd`: the data as iovecs over guest RAM (or one aligned buffer for
    /// direct I/O, or a bounce buffer for memory without host mappings).
    fn slot(&self, tag: u64, cmd: ScsiCommand) -> io::Result<Slot> {
        let mut cdb = Box::new([0u8; 16]);
        let cdb_len = cmd.cdb.len().min(16);
        cdb[..cdb_len].copy_from_slice(&cmd.cdb[..cdb_len]);
        let (iov, bounce) = match &cmd.buf {
            None => (Vec::new(), None),
            Some(buf) => match buf.host_ranges() {
                Ok(iov) if iov.len() <= MAX_IOVECS => (iov, None),
                Ok(_) => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
                Err(MemError::NoHostMapping) => {
                    let len = usize::try_from(buf.len())
                        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
                    let mut data = vec![0u8; len];
                    if cmd.direction == DataDirection::ToDevice {
                        buf.read_into(&mut data).map_err(mem_errno)?;
                    }
                    let iov = vec![HostRange {
                        addr: data.as_mut_ptr() as usize,
                        len,
                    }];
                    (
                        iov,
                        Some(Bounce {
                            data,
                            guest: buf.clone(),
                        }),
                    )
                }
                Err(e) => return Err(mem_errno(e)),
            },
        };
        let direct_io = self.config.direct_io
            && matches!(iov.as_slice(), [one] if one.addr % DIRECT_IO_ALIGN == 0
                && one.len % DIRECT_IO_ALIGN == 0);
        Ok(Slot {
            tag,
            cdb,
            cdb_len,
            sense: Box::new([0u8; SENSE_LEN]),
            direction: cmd.direction,
            timeout: cmd.timeout,
            iov,
            direct_io,
            bounce,
            guest: cmd.buf,
        })
    }

    /// Send queued commands while descriptors are free.
    fn kick(&mut self) {
        while !self.backlog.is_empty() {
            let index = match self.idle_descriptor() {
                None => return,
                Some(Ok(i)) => i,
                Some(Err(e)) => {
                    // Cannot open another descriptor: the ones we have must do.
                    log::warn!(
                        "{}: cannot open another descriptor: {e}",
                        self.config.path.display()
                    );
                    self.config.max_in_flight = self.fds.len().max(1);
                    if self.fds.iter().all(|d| d.busy.is_some()) {
                        return;
                    }
                    continue;
                }
            };
            let Some((tag, cmd)) = self.backlog.pop_front() else {
                return;
            };
            let mut slot = match self.slot(tag, cmd) {
                Ok(s) => s,
                Err(e) => {
                    self.fail(tag, e);
                    continue;
                }
            };
            let fd = self.fds[index].file.as_raw_fd();
            self.stats.syscalls += 1;
            let hdr = slot.header();
            // SAFETY: `hdr` is a valid sg_io_hdr; the buffers it names (CDB, sense, iovec
            // array, guest RAM kept mapped by the slot's GuestBuf, or the bounce buffer) are
            // owned by `slot`, which is kept in the descriptor below until the command is read
            // back (the boxes and vectors do not move their heap memory). The kernel copies
            // the header and the iovec array during the call.
            let n = unsafe {
                libc::write(
                    fd,
                    std::ptr::from_ref(&hdr).cast(),
                    std::mem::size_of::<SgIoHdr>(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    // The driver's queue for the descriptor is full or the call was
                    // interrupted: try again later.
                    Some(libc::EDOM | libc::EAGAIN | libc::EINTR) => {
                        self.backlog.push_front((tag, slot.into_command()));
                        return;
                    }
                    _ => {
                        self.fail(tag, e);
                        continue;
                    }
                }
            }
            self.fds[index].busy = Some(slot);
        }
    }

    /// Read back the command of descriptor `index`, if it is done.
    fn read_back(&mut self, index: usize) -> Option<Completed> {
        let d = self.fds.get_mut(index)?;
        d.busy.as_ref()?;
        let fd = d.file.as_raw_fd();
        self.stats.syscalls += 1;
        let mut scratch = [0u8; SENSE_LEN];
        let mut hdr = SgIoHdr::new(&[], &mut scratch, Duration::ZERO);
        // SAFETY: the driver writes one sg_io_hdr into `hdr` (a valid local of that size) and
        // the sense bytes into the buffer the command was sent with, which the slot in `d`
        // still owns.
        let n = unsafe {
            libc::read(
                fd,
                std::ptr::from_mut(&mut hdr).cast(),
                std::mem::size_of::<SgIoHdr>(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) {
                return None;
            }
            // The device is gone (ENODEV) or the descriptor broke: the command ends with it.
            let slot = d.busy.take()?;
            return Some(Completed {
                tag: slot.tag,
                result: Err(e),
            });
        }
        let slot = d.busy.take()?;
        let result = hdr.result(&slot.sense);
        if result.direct_io {
            self.stats.direct_io += 1;
        } else if hdr.dxfer_len > 0 {
            self.stats.indirect_io += 1;
        }
        if let Some(b) = slot.bounce {
            self.stats.bounced_bytes += b.data.len() as u64;
            if slot.direction == DataDirection::FromDevice {
                if let Err(e) = b.guest.write_from(&b.data) {
                    return Some(Completed {
                        tag: slot.tag,
                        result: Err(mem_errno(e)),
                    });
                }
            }
        }
        Some(Completed {
            tag: slot.tag,
            result: Ok(Reply::Scsi(result)),
        })
    }
}

impl Engine for SgEngine {
    fn name(&self) -> &'static str {
        "sg-v3"
    }

    fn submit(&mut self, tag: u64, request: Request) -> Result<(), SubmitError> {
        let Request::Scsi(cmd) = request else {
            return Err(SubmitError::Unsupported {
                engine: "sg-v3",
                request: request.name(),
            });
        };
        self.stats.submitted += 1;
        self.in_flight += 1;
        self.stats.peak_in_flight = self.stats.peak_in_flight.max(self.in_flight as u32);
        self.backlog.push_back((tag, cmd));
        self.kick();
        Ok(())
    }

    fn reap(&mut self, out: &mut Vec<Completed>) {
        let before = out.len();
        out.append(&mut self.done);
        let mut events = [EpollEvent::default(); 64];
        loop {
            let n = match self.epoll.wait(0, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::error!("sg engine: epoll_wait: {e}");
                    break;
                }
            };
            for ev in &events[..n] {
                if ev.data() == WAKE {
                    let _ = self.wake.read();
                    out.append(&mut self.done);
                } else if let Some(c) = self.read_back(ev.data() as usize) {
                    out.push(c);
                }
            }
            if n < events.len() {
                break;
            }
        }
        self.in_flight -= out.len() - before;
        self.kick();
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn ready_fd(&self) -> Option<RawFd> {
        Some(self.epoll.as_raw_fd())
    }

    fn stats(&self) -> EngineStats {
        self.stats
    }
}

impl Drop for SgEngine {
    fn drop(&mut self) {
        // A command the driver still holds writes its sense (and read data) into memory this
        // engine owns when it ends: wait for every one (each has the kernel's timeout).
        for i in 0..self.fds.len() {
            while self.fds[i].busy.is_some() {
                let fd = self.fds[i].file.as_raw_fd();
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                let r = unsafe { libc::poll(&mut pfd, 1, -1) };
                if r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                    // Leak the slot rather than free memory the kernel may still write.
                    std::mem::forget(self.fds[i].busy.take());
                    break;
                }
                let _ = self.read_back(i);
            }
        }
    }
}
