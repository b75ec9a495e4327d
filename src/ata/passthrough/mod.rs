//! The SG_IO ATA pass-through drive: every command FIS the guest sends goes to a real host
//! SATA drive as an ATA PASS-THROUGH CDB (SAT-3 12.2), and the drive's own answer comes back as
//! FISes.
//!
//! ```text
//!  submit(FIS) ─ policy ─ transfer::plan ─ host_io: every segment at once ─► block engine
//!                 │ refuse/answer            (retries: exec::Executor)        (sg v3 async:
//!                 ▼                                                           write()/read())
//!        Submission::Complete       poll_completions ◄── Outcome ◄── engine reaped (event loop)
//!                                     (fises::*; data already in guest RAM)
//! ```
//!
//! Modules: [`cdb`] builds the CDBs, [`sense`] reads the registers back, [`policy`] says what
//! is refused, [`transfer`] splits transfers to the host's limit, [`host_io`] keeps a guest
//! command's host commands in flight on the engine ([`crate::block::sg`]), [`exec`] classifies
//! what comes back and decides retries, [`ncq`] holds the NCQ error log, [`fises`] builds the
//! answer, [`sysfs`] the limits, [`traced`] the SG_IO trace.
//!
//! Data moves between the drive and guest RAM through iovecs over the command's PRDT: the sg
//! driver copies between its pages and guest memory itself (one kernel copy), or with direct
//! I/O (the sg module's `allow_dio`, a single aligned buffer) not at all; satavm copies
//! nothing. No thread of satavm's waits for the drive: the sg engine's descriptors are in the
//! event loop's epoll set.
//!
//! NCQ: the host kernel assigns its own tag to every queued command it passes through; each
//! in-flight guest command is one host request, and the guest's tag is what comes back in the
//! Set Device Bits FIS.

pub mod cdb;
pub mod exec;
pub mod fises;
pub mod host_io;
pub mod ncq;
pub mod policy;
pub mod sense;
pub mod sysfs;
pub mod traced;
pub mod transfer;

mod drive;
mod open;

#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

pub use drive::PassthroughDrive;
pub use open::{check_host_node, lock_host_nodes, HostLocks};

/// How to open the host drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassthroughConfig {
    /// /dev/sgN or /dev/sdX (the whole disk).
    pub path: PathBuf,
    /// Per host command; the kernel aborts (and may reset the link) after it.
    pub timeout: Duration,
    /// Pass through the commands [`policy::refused_by_default`] lists.
    pub allow_all: bool,
    /// Refuse every command that writes or erases data ([`policy::refused_when_read_only`]).
    pub read_only: bool,
    /// Lock the device nodes (see [`HostLocks`]); `lock=off` in `--disk` turns it off.
    pub lock: bool,
    /// The engine: the sg driver's asynchronous interface (`Auto`/`Sg`), or blocking SG_IO on
    /// threads on the node given (`Threads`).
    pub engine: crate::block::EngineChoice,
}

/// Default per-command timeout (what hdparm and smartctl use for ordinary commands).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl PassthroughConfig {
    /// `path` with the defaults: 30 s timeout, the default policy, writable.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        PassthroughConfig {
            path: path.into(),
            timeout: DEFAULT_TIMEOUT,
            allow_all: false,
            read_only: false,
            lock: true,
            engine: crate::block::EngineChoice::Auto,
        }
    }
}

/// Why the drive cannot be opened.
#[derive(Debug, Error)]
pub enum PassthroughError {
    #[error("{0}: no such device")]
    NotFound(PathBuf),
    #[error("{0}: permission denied (the device node must be readable and writable by this user)")]
    Permission(PathBuf),
    #[error("{path}: not a SCSI generic (/dev/sgN) or SCSI disk (/dev/sdX) device: {detail}")]
    NotScsi { path: PathBuf, detail: String },
    #[error("{0}: is a partition; pass the whole disk")]
    Partition(PathBuf),
    #[error("{path}: not an ATA drive reachable through ATA PASS-THROUGH: {reason}")]
    NotAta { path: PathBuf, reason: String },
    #[error("{0}: ATA PASS-THROUGH needs the CAP_SYS_RAWIO capability (run as root)")]
    NoRawIo(PathBuf),
    #[error(transparent)]
    Host(#[from] crate::hostfile::HostFileError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Counters of the host side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassthroughStats {
    /// SG_IO calls made.
    pub commands_sent: u64,
    /// Most host commands in flight at once.
    pub peak_in_flight: u32,
    /// Host commands that failed (drive errors and host errors).
    pub errors: u64,
    /// Host commands that timed out.
    pub timeouts: u64,
    /// Host commands whose data the kernel moved between the drive and guest pages directly
    /// (sg direct I/O), and through its own pages (one kernel copy, none in satavm).
    pub direct_io: u64,
    pub indirect_io: u64,
}
