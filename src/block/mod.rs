//! The block-backend layer under the ATA layer: one trait, [`Engine`], that every byte a drive
//! moves goes through, and the engines behind it.
//!
//! The ATA layer decides *what* to move (which LBAs, which guest buffers, which SCSI command
//! for pass-through); an engine moves it, asynchronously: [`Engine::submit`] hands over a
//! [`Request`] with a tag and returns at once, [`Engine::reap`] returns what finished. Guest
//! data moves between guest RAM and the host kernel through iovecs over guest memory
//! ([`crate::mem::GuestBuf`]): no copy in satavm, no thread of satavm's waiting for I/O. In the manner of
//! cloud-hypervisor's `AsyncIo` and OpenVMM's `DiskIo`.
//!
//! Engines:
//! - [`uring::UringEngine`]: an image file or block device through io_uring (readv, writev
//!   with RWF_DSYNC for FUA, fdatasync, fallocate), completions signalled on an eventfd;
//! - [`threads::ThreadEngine`]: the same operations on a small thread pool, where io_uring is
//!   unavailable (an old kernel, seccomp, `io_uring_disabled`);
//! - [`sg::SgEngine`]: SCSI commands (ATA PASS-THROUGH) through the sg driver's asynchronous
//!   v3 interface (`write()` a header, `read()` the answer), no threads;
//! - [`testing::MemEngine`]: a RAM disk and a scripted SCSI target for tests, synchronous or
//!   held until the test releases a request.
//!
//! Who calls: a drive submits on whichever thread runs its `SataDevice::submit` (a vCPU on an
//! MMIO exit) and reaps on the event loop when the engine's [`Engine::ready_fd`] (or the
//! completion notifier it was given) fires; both under the AHCI function's lock.
//!
//! Cancellation: a request handed to the kernel cannot be recalled (its data may be moving
//! into guest RAM right now). So there is no cancel: a drive that aborts a command forgets it
//! and waits for the engine to give its requests back ([`Engine::in_flight`]), and the HBA keeps
//! PxCMD.CR (or GHC.HR) set until then (see `crate::ahci::port`).

mod file_ops;
pub mod sg;
pub mod testing;
pub mod threads;
pub mod uring;

use std::fs::File;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use crate::sata::CompletionNotifier;

pub use crate::mem::GuestBuf;
pub use sg::{DataDirection, SgResult};

/// A SCSI command for a pass-through engine (an ATA PASS-THROUGH CDB, SAT-3 12.2).
#[derive(Debug, Clone)]
pub struct ScsiCommand {
    /// The CDB: 12 or 16 bytes.
    pub cdb: Vec<u8>,
    pub direction: DataDirection,
    /// The data buffer in guest memory (none for non-data commands).
    pub buf: Option<GuestBuf>,
    /// The host kernel aborts the command after this (and may reset the link).
    pub timeout: Duration,
}

/// One operation for an engine.
#[derive(Debug, Clone)]
pub enum Request {
    /// Read `buf.len()` bytes at byte `offset` of the medium into guest memory.
    Read { offset: u64, buf: GuestBuf },
    /// Write guest memory to byte `offset`; with `fua`, durable before it completes.
    Write {
        offset: u64,
        buf: GuestBuf,
        fua: bool,
    },
    /// Make everything written so far durable (fdatasync).
    Flush,
    /// Deallocate `len` bytes at `offset` so that they read back as zeros (punch a hole).
    /// Fails with `EOPNOTSUPP` where the host cannot; [`Request::WriteZeroes`] then does it.
    Discard { offset: u64, len: u64 },
    /// Write `len` zero bytes at `offset` (from the engine's own zero page, not guest memory).
    WriteZeroes { offset: u64, len: u64 },
    /// A SCSI command (pass-through engines only).
    Scsi(ScsiCommand),
}

impl Request {
    /// A short name for logs and traces.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Read { .. } => "read",
            Request::Write { .. } => "write",
            Request::Flush => "flush",
            Request::Discard { .. } => "discard",
            Request::WriteZeroes { .. } => "write-zeroes",
            Request::Scsi(_) => "scsi",
        }
    }
}

/// How a request ended.
#[derive(Debug)]
pub enum Reply {
    /// A read, write, flush, discard or zeroing: all of it done.
    Done,
    /// A SCSI command ran (its status may still be an error).
    Scsi(SgResult),
}

/// A finished request: its tag and how it ended (`Err` is the host's errno: `EIO` for a
/// medium error, `EOPNOTSUPP` for a discard the host cannot do, `ENODEV` for a vanished
/// device...).
#[derive(Debug)]
pub struct Completed {
    pub tag: u64,
    pub result: io::Result<Reply>,
}

/// A request an engine cannot take at all (a caller bug, not a host failure).
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    #[error("the {engine} engine does not do {request} requests")]
    Unsupported {
        engine: &'static str,
        request: &'static str,
    },
}

/// Counters every engine keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Requests submitted.
    pub submitted: u64,
    /// Host system calls made to submit and reap them (io_uring_enter, write/read on sg,
    /// preadv...), where the engine can count them.
    pub syscalls: u64,
    /// Most requests in flight at once.
    pub peak_in_flight: u32,
    /// Bytes satavm copied between guest memory and a buffer of its own, where the memory
    /// gave no host mapping (0 in a VM: guest RAM is always mapped).
    pub bounced_bytes: u64,
    /// SCSI data moved by direct I/O, and through the kernel's own pages (sg indirect I/O:
    /// one kernel copy to or from guest RAM).
    pub direct_io: u64,
    pub indirect_io: u64,
}

/// An I/O engine; see the module documentation.
pub trait Engine: Send {
    /// What it is, for the statistics: "io_uring", "threads", "sg-v3"...
    fn name(&self) -> &'static str;

    /// Start `request`; its end comes back from [`Engine::reap`] with `tag`. Never waits for
    /// I/O. Host failures (even immediate ones) come back through `reap`, never here.
    fn submit(&mut self, tag: u64, request: Request) -> Result<(), SubmitError>;

    /// Append the requests that finished since the last call to `out`.
    fn reap(&mut self, out: &mut Vec<Completed>);

    /// Requests submitted and not yet returned by `reap` (the ones still able to touch guest
    /// memory or the medium).
    fn in_flight(&self) -> usize;

    /// A descriptor that is readable while `reap` has something to return, for an engine
    /// that does not write the completion notifier it was given (the sg engine's epoll set).
    fn ready_fd(&self) -> Option<RawFd> {
        None
    }

    /// Counters so far.
    fn stats(&self) -> EngineStats;
}

/// Which engine a drive uses (`--disk ...,engine=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EngineChoice {
    /// An image: io_uring where the host allows it, else threads. Pass-through: the sg
    /// driver's asynchronous interface where there is an sg node, else threads.
    #[default]
    Auto,
    /// Images only.
    IoUring,
    /// Pass-through only: the sg driver's asynchronous interface.
    Sg,
    /// Blocking system calls on a few worker threads (pass-through: SG_IO on the node given).
    Threads,
}

impl std::str::FromStr for EngineChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(EngineChoice::Auto),
            "io_uring" | "io-uring" => Ok(EngineChoice::IoUring),
            "sg" => Ok(EngineChoice::Sg),
            "threads" => Ok(EngineChoice::Threads),
            _ => Err(format!(
                "engine={s}: expected auto, io_uring, sg or threads"
            )),
        }
    }
}

/// The engine for an image file or block device: io_uring unless `choice` says threads, or
/// unless the host has no usable io_uring and `choice` is [`EngineChoice::Auto`] (then the
/// thread pool, and the log says why).
pub fn file_engine(
    file: Arc<File>,
    choice: EngineChoice,
    notifier: CompletionNotifier,
) -> io::Result<Box<dyn Engine>> {
    let threads = |file, notifier| -> io::Result<Box<dyn Engine>> {
        Ok(Box::new(threads::ThreadEngine::new(
            file,
            notifier,
            threads::WORKERS,
        )?))
    };
    match choice {
        EngineChoice::Threads => threads(file, notifier),
        EngineChoice::IoUring => Ok(Box::new(uring::UringEngine::new(file, notifier)?)),
        EngineChoice::Sg => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "engine=sg is for pass-through drives",
        )),
        EngineChoice::Auto => match uring::UringEngine::new(file.clone(), notifier.clone()) {
            Ok(e) => Ok(Box::new(e)),
            Err(e) => {
                log::info!("io_uring unavailable ({e}): image I/O on a thread pool instead");
                threads(file, notifier)
            }
        },
    }
}

#[cfg(test)]
mod tests;
