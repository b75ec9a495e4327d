//! The emulated drive's media commands in flight: each READ/WRITE (DMA, PIO or queued), FLUSH,
//! SET FEATURES 82h or TRIM becomes requests to the drive's block [`Engine`], and when the
//! last of them is back, the FISes that end the command.
//!
//! - A transfer is cut into requests of at most [`MAX_REQUEST_BYTES`] (and as many guest
//!   ranges as one iovec array holds), all submitted at once, each between guest RAM and the
//!   image directly.
//! - A request that fails (EIO from the host) does not tell which sector failed: when the
//!   command's other requests are back, the lowest failed request is retried one sector at a
//!   time to find the first bad LBA, which UNC reports (a range that reads fine on retry was
//!   a transient error). A buffer outside guest RAM is ABRT and a host bus error for the port.
//! - PIO commands move their data the same way; the PIO Setup FISes that the guest sees (one
//!   per DRQ block, SATA 3.x 11.7/11.8) are built when the data is in place.
//! - TRIM: the range list is read from guest memory when the command arrives (at most
//!   [`crate::ata::identify::DSM_MAX_BLOCKS`] sectors), each range is a discard (a hole
//!   punched in the image), or written with zeros where the host cannot punch holes.
//!
//! Aborts forget commands at once; their requests in the engine become orphans, dropped when
//! they come back, and until then [`InFlight::draining`] is true and new requests wait in
//! `deferred` (see the module documentation of [`super`]).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::os::fd::RawFd;

use crate::ata::registers::{error, SECTOR_SIZE};
use crate::ata::taskfile::range_ok;
use crate::block::{Completed, Engine, EngineStats, GuestBuf, Request};
use crate::mem::{MemError, MAX_IOVECS};
use crate::sata::{Completion, CompletionNotifier, DataPath, DataPathError};

mod fises;

use fises::finish;
pub use fises::ncq_accepted;

/// Bytes of one engine request at most: a long transfer is several requests in flight at
/// once.
pub const MAX_REQUEST_BYTES: u64 = 1 << 20;
/// Guest ranges of one request at most (each may become two host iovecs where it crosses a
/// memory region).
const MAX_REQUEST_RANGES: usize = MAX_IOVECS / 2;
const SECTOR: u64 = SECTOR_SIZE as u64;

/// What a media command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaOp {
    Read {
        lba: u64,
        sectors: u32,
    },
    /// `fua`: durable before it completes (WRITE DMA FUA, FPDMA with FUA, or the write cache
    /// disabled).
    Write {
        lba: u64,
        sectors: u32,
        fua: bool,
    },
    Flush,
    /// DATA SET MANAGEMENT TRIM with `blocks` 512-byte blocks of LBA range entries.
    Trim {
        blocks: u32,
    },
}

/// How the command's end is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// A Register D2H FIS; `lba48` selects how an LBA is reported.
    Dma { lba48: bool },
    /// PIO Setup FISes per DRQ block of `block_sectors`, then for writes a Register D2H FIS.
    Pio {
        block_sectors: u8,
        lba48: bool,
        write: bool,
    },
    /// A READ/WRITE FPDMA QUEUED command: DMA Setup and Set Device Bits FISes.
    Queued { tag: u8, count: u16, device: u8 },
    /// SET FEATURES 82h: a Register D2H FIS once the cache is written back.
    DisableWriteCache,
    /// A step of a SMART self-test the drive runs itself: no FISes, nobody on the link waits
    /// (see `super::smart`).
    SelfTest,
}

/// How a command failed: the Error register and the LBA to report, if any (the first bad
/// sector for UNC, the offending range for a TRIM's IDNF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub error: u8,
    pub lba: Option<u64>,
}

/// A finished command.
#[derive(Debug)]
pub struct Done {
    pub op: MediaOp,
    pub report: Report,
    pub failure: Option<Failure>,
    /// The command's first LBA (what the NCQ error log names when the failure names none).
    pub start_lba: u64,
    pub completion: Completion,
}

/// What an engine request is for.
#[derive(Debug, Clone, Copy)]
enum Purpose {
    /// Bytes `[offset, offset + len)` of the command's transfer.
    Data {
        offset: u64,
        len: u64,
    },
    /// One sector of a failed data request, retried to find the bad LBA.
    Probe {
        sector: u64,
    },
    /// A TRIM range: `lba`, `sectors`; `zeroing` once the discard was refused.
    Trim {
        lba: u64,
        sectors: u64,
        zeroing: bool,
    },
    Flush,
}

#[derive(Debug)]
struct Command {
    slot: u8,
    op: MediaOp,
    report: Report,
    data: DataPath,
    outstanding: usize,
    /// Data requests that failed with a host error, by offset: (offset, len).
    failed: BTreeSet<(u64, u64)>,
    /// Sectors (of the transfer) that failed when retried alone.
    bad_sectors: BTreeSet<u64>,
    /// The command ends with this error, whatever else comes back.
    fatal: Option<Failure>,
}

/// The commands in the engine; see the module documentation.
pub struct InFlight {
    engine: Box<dyn Engine>,
    notifier: CompletionNotifier,
    /// Commands that ended without the engine, reported by the next `poll`.
    ready: Vec<Done>,
    commands: HashMap<u64, Command>,
    requests: HashMap<u64, (u64, Purpose)>,
    orphans: HashSet<u64>,
    deferred: VecDeque<(u64, Request)>,
    next_command: u64,
    next_request: u64,
    reaped: Vec<Completed>,
}

/// The TRIM range entries (ACS-3 7.5.6: bits 47:0 the LBA, 63:48 the length; 0: unused).
fn trim_ranges(payload: &[u8]) -> Vec<(u64, u64)> {
    payload
        .chunks_exact(8)
        .filter_map(|e| {
            let v = u64::from_le_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
            let len = v >> 48;
            (len != 0).then_some((v & 0xffff_ffff_ffff, len))
        })
        .collect()
}

impl InFlight {
    /// Commands on `engine`; `notifier` wakes the event loop for commands that end without it.
    pub fn new(engine: Box<dyn Engine>, notifier: CompletionNotifier) -> Self {
        InFlight {
            engine,
            notifier,
            ready: Vec::new(),
            commands: HashMap::new(),
            requests: HashMap::new(),
            orphans: HashSet::new(),
            deferred: VecDeque::new(),
            next_command: 0,
            next_request: 0,
            reaped: Vec::new(),
        }
    }

    /// The engine's name and counters.
    pub fn engine_stats(&self) -> (&'static str, EngineStats) {
        (self.engine.name(), self.engine.stats())
    }

    /// The engine's own descriptor for the event loop, if it has one.
    pub fn ready_fd(&self) -> Option<RawFd> {
        self.engine.ready_fd()
    }

    /// Aborted commands still have requests in the engine.
    pub fn draining(&self) -> bool {
        !self.orphans.is_empty()
    }

    /// Queue a request of command `id` for `purpose`.
    fn send(&mut self, id: u64, purpose: Purpose, request: Request) {
        let tag = self.next_request;
        self.next_request += 1;
        self.requests.insert(tag, (id, purpose));
        if let Some(c) = self.commands.get_mut(&id) {
            c.outstanding += 1;
        }
        if self.orphans.is_empty() {
            self.submit(tag, request);
        } else {
            self.deferred.push_back((tag, request));
        }
    }

    fn submit(&mut self, tag: u64, request: Request) {
        if let Err(e) = self.engine.submit(tag, request) {
            // Not a host failure: a request this engine cannot do at all (a bug).
            log::error!("emulated drive: {e}");
            self.reaped.push(Completed {
                tag,
                result: Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
            });
        }
    }

    /// Start a command: its requests go to the engine. `Err`: it ended at once (a range or
    /// data path error), with this completion.
    pub fn start(
        &mut self,
        slot: u8,
        op: MediaOp,
        report: Report,
        data: DataPath,
        capacity: u64,
    ) -> Result<(), Completion> {
        let lba48 = match report {
            Report::Dma { lba48 } | Report::Pio { lba48, .. } => lba48,
            Report::Queued { .. } | Report::DisableWriteCache | Report::SelfTest => true,
        };
        let id = self.next_command;
        self.next_command += 1;
        let cmd = Command {
            slot,
            op,
            report,
            data,
            outstanding: 0,
            failed: BTreeSet::new(),
            bad_sectors: BTreeSet::new(),
            fatal: None,
        };
        // A queued command was accepted already (the link released): it ends the queued way,
        // through `poll`, like every queued command; any other command ends at once.
        let queued = matches!(report, Report::Queued { .. });
        let fail = |me: &mut Self, cmd: Command, error: u8, lba: Option<u64>| {
            let done = finish(cmd, Some(Failure { error, lba }));
            if queued {
                me.later(done);
                Ok(())
            } else {
                Err(done.completion)
            }
        };
        match op {
            MediaOp::Read { lba, sectors } | MediaOp::Write { lba, sectors, .. } => {
                if !range_ok(lba, u64::from(sectors), capacity, lba48) {
                    return fail(self, cmd, error::IDNF, None);
                }
                let bytes = u64::from(sectors) * SECTOR;
                let buf = match cmd.data.guest_buf(0, bytes) {
                    Ok(b) => b,
                    Err(e) => {
                        log::debug!("emulated drive: data path error: {e}");
                        return fail(self, cmd, error::ABRT, None);
                    }
                };
                self.commands.insert(id, cmd);
                for (offset, piece) in buf.chunks(MAX_REQUEST_BYTES, MAX_REQUEST_RANGES) {
                    let len = piece.len();
                    let request = rw_request(op, lba * SECTOR + offset, piece);
                    self.send(id, Purpose::Data { offset, len }, request);
                }
            }
            MediaOp::Flush => {
                self.commands.insert(id, cmd);
                self.send(id, Purpose::Flush, Request::Flush);
            }
            MediaOp::Trim { blocks } => {
                let mut payload = vec![0u8; blocks as usize * SECTOR_SIZE];
                if cmd.data.read_at(0, &mut payload).is_err() {
                    return fail(self, cmd, error::ABRT, None);
                }
                let ranges = trim_ranges(&payload);
                if let Some(&(lba, _)) = ranges
                    .iter()
                    .find(|(lba, len)| !range_ok(*lba, *len, capacity, true))
                {
                    return fail(self, cmd, error::IDNF, Some(lba));
                }
                if ranges.is_empty() {
                    return Err(finish(cmd, None).completion);
                }
                self.commands.insert(id, cmd);
                for (lba, sectors) in ranges {
                    let purpose = Purpose::Trim {
                        lba,
                        sectors,
                        zeroing: false,
                    };
                    let request = Request::Discard {
                        offset: lba * SECTOR,
                        len: sectors * SECTOR,
                    };
                    self.send(id, purpose, request);
                }
            }
        }
        Ok(())
    }

    /// Report `done` from the next `poll` (and wake the event loop for it).
    fn later(&mut self, done: Done) {
        self.ready.push(done);
        if let Err(e) = self.notifier.write(1) {
            log::error!("emulated drive: cannot signal a completion: {e}");
        }
    }

    /// End a queued command with `failure` without touching the medium (a write to a
    /// read-only drive): through `poll`, as the queued protocol requires.
    pub fn fail_queued(
        &mut self,
        slot: u8,
        op: MediaOp,
        report: Report,
        data: DataPath,
        failure: Failure,
    ) {
        let cmd = Command {
            slot,
            op,
            report,
            data,
            outstanding: 0,
            failed: BTreeSet::new(),
            bad_sectors: BTreeSet::new(),
            fatal: None,
        };
        let done = finish(cmd, Some(failure));
        self.later(done);
    }

    /// Forget every command (none is reported); their requests drain in the background.
    pub fn abort_all(&mut self) {
        self.ready.clear();
        self.commands.clear();
        self.orphan_requests(|_| true);
    }

    /// Forget the queued commands (a queued command failed, SATA 3.x 13.6.5).
    pub fn abort_queued(&mut self) {
        self.ready
            .retain(|d| !matches!(d.report, Report::Queued { .. }));
        self.commands
            .retain(|_, c| !matches!(c.report, Report::Queued { .. }));
        let live: HashSet<u64> = self.commands.keys().copied().collect();
        self.orphan_requests(|id| !live.contains(&id));
    }

    /// Requests of commands for which `gone(id)` holds become orphans (or are dropped if they
    /// never reached the engine).
    fn orphan_requests(&mut self, gone: impl Fn(u64) -> bool) {
        let tags: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, (id, _))| gone(*id))
            .map(|(t, _)| *t)
            .collect();
        let mut waiting: HashSet<u64> = HashSet::new();
        self.deferred.retain(|(tag, _)| {
            let drop = tags.contains(tag);
            if drop {
                waiting.insert(*tag);
            }
            !drop
        });
        for t in tags {
            self.requests.remove(&t);
            if !waiting.contains(&t) {
                self.orphans.insert(t);
            }
        }
        // Synchronous failures not yet reaped belong to their commands too.
        let orphans = &mut self.orphans;
        self.reaped.retain(|c| !orphans.remove(&c.tag));
    }

    /// Collect what the engine finished; return the commands that ended. Requests sent while
    /// handling them (retries, zeroing, deferred ones) that the engine has already finished
    /// are collected too.
    pub fn poll(&mut self) -> Vec<Done> {
        let mut done = std::mem::take(&mut self.ready);
        loop {
            let mut reaped = std::mem::take(&mut self.reaped);
            self.engine.reap(&mut reaped);
            if reaped.is_empty() {
                break;
            }
            for c in reaped {
                if self.orphans.remove(&c.tag) {
                    continue;
                }
                let Some((id, purpose)) = self.requests.remove(&c.tag) else {
                    continue;
                };
                self.request_done(id, purpose, c.result.err(), &mut done);
            }
            if self.orphans.is_empty() {
                while let Some((tag, request)) = self.deferred.pop_front() {
                    self.submit(tag, request);
                }
            }
        }
        done
    }

    fn request_done(
        &mut self,
        id: u64,
        purpose: Purpose,
        err: Option<std::io::Error>,
        done: &mut Vec<Done>,
    ) {
        let Some(cmd) = self.commands.get_mut(&id) else {
            return;
        };
        cmd.outstanding -= 1;
        if let Some(e) = &err {
            let errno = e.raw_os_error();
            match purpose {
                _ if errno == Some(libc::EFAULT) => {
                    // A guest buffer outside guest RAM (only possible for memory without host
                    // mappings, whose addresses are checked when copied).
                    cmd.data.report(DataPathError::Memory(MemError::OutOfRange {
                        addr: 0,
                        len: 0,
                    }));
                    cmd.fatal.get_or_insert(Failure {
                        error: error::ABRT,
                        lba: None,
                    });
                }
                Purpose::Data { offset, len } => {
                    log::warn!(
                        "emulated drive: {e} at byte {offset} of a command; finding the bad LBA"
                    );
                    cmd.failed.insert((offset, len));
                }
                Purpose::Probe { sector } => {
                    cmd.bad_sectors.insert(sector);
                }
                Purpose::Trim {
                    lba,
                    sectors,
                    zeroing: false,
                } if matches!(errno, Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOTTY)) => {
                    // The host cannot punch holes here (a block device without discard, a
                    // filesystem without it): write zeros instead.
                    let purpose = Purpose::Trim {
                        lba,
                        sectors,
                        zeroing: true,
                    };
                    let request = Request::WriteZeroes {
                        offset: lba * SECTOR,
                        len: sectors * SECTOR,
                    };
                    self.send(id, purpose, request);
                    return;
                }
                Purpose::Trim { lba, .. } => {
                    log::warn!("emulated drive: trim failed at LBA {lba}: {e}");
                    cmd.fatal.get_or_insert(Failure {
                        error: error::UNC,
                        lba: Some(lba),
                    });
                }
                Purpose::Flush => {
                    log::warn!("emulated drive: fdatasync failed: {e}");
                    cmd.fatal.get_or_insert(Failure {
                        error: error::ABRT,
                        lba: None,
                    });
                }
            }
        }
        if cmd.outstanding > 0 {
            return;
        }
        if cmd.fatal.is_none() && cmd.bad_sectors.is_empty() {
            if let Some(&(offset, len)) = cmd.failed.iter().next() {
                // Retry the lowest failed request sector by sector.
                cmd.failed.remove(&(offset, len));
                self.probe(id, offset, len);
                if self.commands.get(&id).is_some_and(|c| c.outstanding > 0) {
                    return;
                }
            }
        }
        if let Some(cmd) = self.commands.remove(&id) {
            let failure = cmd.fatal.or_else(|| {
                let sector = cmd.bad_sectors.iter().next()?;
                let (MediaOp::Read { lba, .. } | MediaOp::Write { lba, .. }) = cmd.op else {
                    return None;
                };
                let lba = lba + sector;
                log::warn!("emulated drive: medium error at LBA {lba}");
                Some(Failure {
                    error: error::UNC,
                    lba: Some(lba),
                })
            });
            done.push(finish(cmd, failure));
        }
    }

    /// Send one request per sector of bytes `[offset, offset + len)` of command `id`.
    fn probe(&mut self, id: u64, offset: u64, len: u64) {
        let Some(cmd) = self.commands.get(&id) else {
            return;
        };
        let op = cmd.op;
        let (MediaOp::Read { lba, .. } | MediaOp::Write { lba, .. }) = op else {
            return;
        };
        let mut pieces = Vec::new();
        for sector in offset / SECTOR..(offset + len).div_ceil(SECTOR) {
            match cmd.data.guest_buf(sector * SECTOR, SECTOR) {
                Ok(b) => pieces.push((sector, b)),
                Err(_) => break,
            }
        }
        for (sector, piece) in pieces {
            let request = rw_request(op, (lba + sector) * SECTOR, piece);
            self.send(id, Purpose::Probe { sector }, request);
        }
    }
}

/// The engine request that moves `buf` at byte `offset` for a read or write `op`.
fn rw_request(op: MediaOp, offset: u64, buf: GuestBuf) -> Request {
    match op {
        MediaOp::Write { fua, .. } => Request::Write { offset, buf, fua },
        _ => Request::Read { offset, buf },
    }
}
