//! The drive's background I/O: a small pool of worker threads that run DMA and first-party DMA
//! (NCQ) commands against the image, out of order, and the state they share with the command
//! front end (outstanding tags, the NCQ error state, finished commands).
//!
//! Cancellation. Every job carries the `epoch` (bumped by [`Shared::abort_all`]) and, for NCQ
//! jobs, the `ncq_epoch` (bumped when a queued command fails, which aborts all others, SATA 3.x
//! 13.6.5) current when it was submitted. A worker does each chunk of I/O (image access plus
//! guest memory copy) inside [`Shared::gate`], which refuses stale jobs and counts the chunk as
//! busy; `abort_all` bumps the epoch and then waits until no chunk is busy. So once it returns,
//! no aborted job touches guest memory or the image again, and none is reported.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use log::warn;

use crate::ata::log::NcqError;
use crate::ata::registers::{error, status, SECTOR_SIZE};
use crate::ata::taskfile::{d2h_error, d2h_good, range_ok, with_lba, STATUS_ERROR};
use crate::sata::{
    Completion, CompletionNotifier, DataPath, DmaSetup, Fis, RegisterD2h, SetDeviceBits,
};

use super::backend::Image;

/// Worker threads per drive: enough to keep a host SSD's queue busy on a small VM.
pub const WORKERS: usize = 4;
/// Sectors per chunk: the unit of I/O, of guest copying and of cancellation.
const CHUNK_SECTORS: usize = 256;
/// Status of a good Set Device Bits FIS (DRDY).
const SDB_GOOD: u8 = status::DRDY;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read {
        lba: u64,
        sectors: u32,
    },
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

/// How the job's end is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A DMA command: a Register D2H FIS ends it. `lba48` selects how an LBA is reported.
    NonQueued { lba48: bool },
    /// A READ/WRITE FPDMA QUEUED command: a Set Device Bits FIS ends it.
    Queued { tag: u8, count: u16, device: u8 },
}

/// One command for the workers.
#[derive(Debug)]
pub struct Job {
    pub slot: u8,
    pub kind: Kind,
    pub op: Op,
    pub data: DataPath,
    epoch: u64,
    ncq_epoch: u64,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Failure {
    error: u8,
    /// The LBA to report (first failing sector), if any.
    lba: Option<u64>,
}

/// The state shared by the front end and the workers.
#[derive(Debug, Default)]
pub struct State {
    epoch: u64,
    ncq_epoch: u64,
    queue: VecDeque<Job>,
    busy: usize,
    shutdown: bool,
    completions: Vec<Completion>,
    /// Tags of accepted, unfinished queued commands (what the device thinks SActive is).
    pub ncq_active: u32,
    /// Slot of the non-queued command running on a worker.
    pub nonqueued_active: Option<u8>,
    /// Set when a queued command failed; cleared by reading log page 10h or a reset.
    pub ncq_error: Option<NcqError>,
}

impl State {
    /// A queued command failed (SATA 3.x 13.6.5): every other outstanding queued command is
    /// aborted (none of them is reported; a chunk of I/O in progress finishes) and queued
    /// commands are refused until log page 10h, which reports `error`, is read.
    pub fn enter_ncq_error(&mut self, error: NcqError) {
        self.ncq_error = Some(error);
        self.ncq_epoch += 1;
        self.ncq_active = 0;
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct Shared {
    pub image: Image,
    /// Volatile write cache enabled (SET FEATURES 02h/82h); when disabled every write is
    /// made durable before it completes.
    pub write_cache: AtomicBool,
    notifier: CompletionNotifier,
    state: Mutex<State>,
    work: Condvar,
    idle: Condvar,
}

impl Shared {
    pub fn new(image: Image, notifier: CompletionNotifier) -> Self {
        Shared {
            image,
            write_cache: AtomicBool::new(true),
            notifier,
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            idle: Condvar::new(),
        }
    }

    /// The state, lock held. A panic elsewhere cannot leave it half-updated in a way that
    /// matters more than stopping the drive would, so a poisoned lock is used as is.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `op` for the workers (the caller has already recorded the command as active in
    /// `state`).
    pub fn enqueue(&self, state: &mut State, slot: u8, kind: Kind, op: Op, data: DataPath) {
        state.queue.push_back(Job {
            slot,
            kind,
            op,
            data,
            epoch: state.epoch,
            ncq_epoch: state.ncq_epoch,
        });
        self.work.notify_one();
    }

    /// Finished commands, oldest first.
    pub fn take_completions(&self) -> Vec<Completion> {
        std::mem::take(&mut self.lock().completions)
    }

    /// Record a completion produced by the front end and signal the notifier.
    pub fn push_completion(&self, completion: Completion) {
        self.lock().completions.push(completion);
        self.notify();
    }

    fn notify(&self) {
        if let Err(e) = self.notifier.write(1) {
            warn!("emulated drive: cannot signal completion eventfd: {e}");
        }
    }

    /// Abort every queued and running job; on return none of them touches guest memory or the
    /// image any more, and none will be reported. The NCQ error state survives: the host's
    /// error handling stops the port (which aborts) before it reads log page 10h.
    pub fn abort_all(&self) {
        let mut st = self.lock();
        st.epoch += 1;
        st.queue.clear();
        st.completions.clear();
        st.ncq_active = 0;
        st.nonqueued_active = None;
        while st.busy > 0 {
            st = self.idle.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Stop the workers (they finish their current chunk first).
    pub fn shutdown(&self) {
        let mut st = self.lock();
        st.shutdown = true;
        st.epoch += 1;
        st.queue.clear();
        self.work.notify_all();
    }

    fn current(st: &State, job: &Job) -> bool {
        st.epoch == job.epoch
            && (matches!(job.kind, Kind::NonQueued { .. }) || st.ncq_epoch == job.ncq_epoch)
    }

    /// Run `f` for `job` unless the job was aborted; None if it was.
    fn gate<T>(&self, job: &Job, f: impl FnOnce() -> T) -> Option<T> {
        {
            let mut st = self.lock();
            if !Self::current(&st, job) {
                return None;
            }
            st.busy += 1;
        }
        let r = f();
        let mut st = self.lock();
        st.busy -= 1;
        if st.busy == 0 {
            self.idle.notify_all();
        }
        Some(r)
    }

    /// The body of one worker thread.
    pub fn worker_loop(&self) {
        let mut buf = vec![0u8; CHUNK_SECTORS * SECTOR_SIZE];
        loop {
            let job = {
                let mut st = self.lock();
                loop {
                    if st.shutdown {
                        return;
                    }
                    if let Some(job) = st.queue.pop_front() {
                        break job;
                    }
                    st = self.work.wait(st).unwrap_or_else(|e| e.into_inner());
                }
            };
            if let Some((bytes, result)) = self.run(&job, &mut buf) {
                self.finish(&job, bytes, result);
            }
        }
    }

    /// Carry out a job: `None` if it was aborted, else the bytes moved and the outcome.
    fn run(&self, job: &Job, buf: &mut [u8]) -> Option<(u32, Result<(), Failure>)> {
        let capacity = self.image.sectors();
        let lba48 = match job.kind {
            Kind::NonQueued { lba48 } => lba48,
            Kind::Queued { .. } => true,
        };
        let fail = |error: u8, lba: Option<u64>| Err(Failure { error, lba });
        let mut bytes: u32 = 0;
        match job.op {
            Op::Read { lba, sectors } | Op::Write { lba, sectors, .. } => {
                let is_write = matches!(job.op, Op::Write { .. });
                if !range_ok(lba, u64::from(sectors), capacity, lba48) {
                    return Some((0, fail(error::IDNF, None)));
                }
                if is_write && self.image.read_only() {
                    return Some((0, fail(error::ABRT, None)));
                }
                let mut done: u32 = 0;
                while done < sectors {
                    let n = (sectors - done).min(CHUNK_SECTORS as u32);
                    let at = lba + u64::from(done);
                    let chunk = &mut buf[..n as usize * SECTOR_SIZE];
                    let offset = u64::from(done) * SECTOR_SIZE as u64;
                    let r = self.gate(job, || {
                        if is_write {
                            job.data.read_at(offset, chunk).map_err(data_path_failure)?;
                            self.image.write(at, chunk).map_err(|e| media(e, "write"))
                        } else {
                            self.image.read(at, chunk).map_err(|e| media(e, "read"))?;
                            job.data.write_at(offset, chunk).map_err(data_path_failure)
                        }
                    })?;
                    if let Err(f) = r {
                        return Some((bytes, Err(f)));
                    }
                    done += n;
                    bytes = bytes.saturating_add(n * SECTOR_SIZE as u32);
                }
                if let Op::Write { fua, .. } = job.op {
                    if fua || !self.write_cache.load(Ordering::Relaxed) {
                        if let Err(e) = self.image.flush() {
                            warn!("emulated drive: fdatasync failed: {e}");
                            return Some((bytes, fail(error::ABRT, None)));
                        }
                    }
                }
                Some((bytes, Ok(())))
            }
            Op::Flush => {
                if let Err(e) = self.image.flush() {
                    warn!("emulated drive: fdatasync failed: {e}");
                    return Some((0, fail(error::ABRT, None)));
                }
                Some((0, Ok(())))
            }
            Op::Trim { blocks } => {
                if self.image.read_only() {
                    return Some((0, fail(error::ABRT, None)));
                }
                let len = blocks as usize * SECTOR_SIZE;
                let Some(payload) = buf.get_mut(..len) else {
                    return Some((0, fail(error::ABRT, None)));
                };
                let r = self.gate(job, || self.trim(job, payload, capacity))?;
                Some((if r.is_ok() { len as u32 } else { 0 }, r))
            }
        }
    }

    /// DATA SET MANAGEMENT TRIM (ACS-3 7.5): the payload is a list of 8-byte LBA range
    /// entries, bits 47:0 the LBA and 63:48 the length (0: entry unused).
    fn trim(&self, job: &Job, payload: &mut [u8], capacity: u64) -> Result<(), Failure> {
        job.data.read_at(0, payload).map_err(data_path_failure)?;
        let ranges: Vec<(u64, u64)> = payload
            .chunks_exact(8)
            .filter_map(|e| {
                let v = u64::from_le_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
                let len = v >> 48;
                (len != 0).then_some((v & 0xffff_ffff_ffff, len))
            })
            .collect();
        if let Some(&(lba, _)) = ranges
            .iter()
            .find(|(lba, len)| !range_ok(*lba, *len, capacity, true))
        {
            return Err(Failure {
                error: error::IDNF,
                lba: Some(lba),
            });
        }
        for (lba, len) in ranges {
            self.image.discard(lba, len).map_err(|e| media(e, "trim"))?;
        }
        Ok(())
    }

    /// Report a job's end, unless it was aborted meanwhile.
    fn finish(&self, job: &Job, bytes: u32, result: Result<(), Failure>) {
        let mut st = self.lock();
        if !Self::current(&st, job) {
            return;
        }
        let fises = match job.kind {
            Kind::NonQueued { lba48 } => {
                st.nonqueued_active = None;
                let d2h = match result {
                    Ok(()) => d2h_good(),
                    Err(Failure { error, lba: None }) => d2h_error(error),
                    Err(Failure {
                        error,
                        lba: Some(lba),
                    }) => with_lba(d2h_error(error), lba, lba48),
                };
                vec![Fis::RegisterD2h(d2h)]
            }
            Kind::Queued { tag, count, device } => {
                let bit = 1u32 << (tag & 0x1f);
                st.ncq_active &= !bit;
                match result {
                    Ok(()) => {
                        let device_to_host = matches!(job.op, Op::Read { .. });
                        vec![
                            // SATA 3.x 13.6.4.3: the device selects the command's buffer with a
                            // DMA Setup FIS (buffer identifier = tag) before its data.
                            Fis::DmaSetup(DmaSetup {
                                device_to_host,
                                auto_activate: !device_to_host,
                                buffer_id: u64::from(tag),
                                transfer_count: bytes,
                                ..Default::default()
                            }),
                            Fis::SetDeviceBits(SetDeviceBits {
                                interrupt: true,
                                status: SDB_GOOD,
                                error: 0,
                                sactive: bit,
                                ..Default::default()
                            }),
                        ]
                    }
                    Err(f) => {
                        // SATA 3.x 13.6.5: the device reports the error with SActive clear
                        // for the tag, aborts every other outstanding command and refuses
                        // queued commands until log page 10h is read.
                        let lba = match (f.lba, job.op) {
                            (Some(lba), _) => lba,
                            (None, Op::Read { lba, .. } | Op::Write { lba, .. }) => lba,
                            (None, _) => 0,
                        };
                        st.enter_ncq_error(NcqError {
                            tag,
                            status: STATUS_ERROR,
                            error: f.error,
                            lba,
                            device,
                            count,
                        });
                        vec![Fis::SetDeviceBits(SetDeviceBits {
                            interrupt: true,
                            status: SDB_GOOD | status::ERR,
                            error: f.error,
                            sactive: 0,
                            ..Default::default()
                        })]
                    }
                }
            }
        };
        st.completions.push(Completion {
            slot: job.slot,
            fises,
            bytes_transferred: bytes,
        });
        drop(st);
        self.notify();
    }
}

/// A PRDT overflow or a PRD entry outside guest RAM: the command is aborted (ABRT).
fn data_path_failure(e: crate::sata::DataPathError) -> Failure {
    log::debug!("emulated drive: data path error: {e}");
    Failure {
        error: error::ABRT,
        lba: None,
    }
}

/// A medium error as the ATA error it becomes: UNC at the failing LBA.
fn media(e: super::backend::MediaError, what: &str) -> Failure {
    warn!(
        "emulated drive: {what} failed at LBA {}: {}",
        e.lba, e.source
    );
    Failure {
        error: error::UNC,
        lba: Some(e.lba),
    }
}

/// The Register D2H FIS that accepts a queued command and releases the link (SATA 3.x
/// 13.6.4.2): DRDY, BSY clear, no interrupt.
pub fn ncq_accepted() -> RegisterD2h {
    RegisterD2h {
        interrupt: false,
        status: status::DRDY,
        ..Default::default()
    }
}

/// Spawn the worker threads of `shared`.
pub fn spawn_workers(shared: &Arc<Shared>) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    (0..WORKERS)
        .map(|i| {
            let s = Arc::clone(shared);
            std::thread::Builder::new()
                .name(format!("ata-io-{i}"))
                .spawn(move || s.worker_loop())
        })
        .collect()
}
