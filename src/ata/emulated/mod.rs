//! An emulated SATA drive over a raw image file or host block device.
//!
//! The drive decides what each command means; its block [`Engine`] moves the data (io_uring
//! by default, see [`crate::block`]), straight between the image and guest RAM. Nothing here
//! waits for I/O: `submit` runs on a vCPU thread and only decodes the command and hands its
//! requests to the engine; their ends come back through `poll_completions` on the event loop.
//!
//! How commands run:
//! - READ/WRITE FPDMA QUEUED (NCQ): accepted at once with a Register D2H FIS (BSY clear, I=0);
//!   their requests run concurrently and end out of order, each command with a Set Device
//!   Bits FIS (preceded by the DMA Setup FIS that selected its buffer). The completion's
//!   `slot` is the port's command slot; SActive bits use the NCQ tag from the Count register
//!   (AHCI requires tag == slot; if a guest breaks that, the tag still names the command to
//!   the device, as on a real link).
//! - READ/WRITE DMA (EXT), WRITE DMA FUA EXT, READ/WRITE SECTORS and MULTIPLE (PIO), FLUSH
//!   CACHE (EXT), SET FEATURES 82h (disable the write cache: flushes first), DATA SET
//!   MANAGEMENT (TRIM): through the engine too (`Submission::Pending { accepted: None }`),
//!   ending with a Register D2H FIS, or for PIO with its PIO Setup FISes — see [`media`].
//! - IDENTIFY, logs, SMART, SET FEATURES and the other non-data commands answer at once from
//!   the drive's own state ([`commands`]): a copy of at most a few sectors into guest memory.
//!   SMART self-tests read the image through the engine in steps ([`smart`]); the power
//!   states (IDLE, STANDBY, SLEEP: only a reset wakes it) are in [`power`].
//!
//! Errors: LBA range past the end: IDNF; host I/O error: UNC with the first failing LBA; PRDT
//! overflow or a PRD entry outside guest RAM: ABRT (the AHCI layer reports the overflow in
//! its own registers as well); writes or TRIM on a read-only drive: ABRT|IDNF, WRITE PROTECTED
//! sense data ([`read_only`]); unknown or
//! unsupported commands: ABRT. A non-queued command while queued commands are outstanding is
//! aborted (the outstanding ones continue); in the NCQ error state (after a queued command
//! failed, or a queued command came with a tag already in use) new queued commands are aborted
//! until log page 10h is read.
//!
//! Aborts (COMRESET, SRST, the port's engine stopping) forget every command at once; requests
//! already in the engine cannot be recalled, so until they are back the drive is
//! [`SataDevice::draining`] and holds new requests back (a write after a reset never races
//! an aborted one to the same sectors).

mod commands;
pub mod media;
pub mod power;
mod read_only;
pub mod smart;

#[cfg(test)]
mod tests;

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use crate::block::{self, Engine, EngineChoice, EngineStats};
use crate::sata::{
    Completion, CompletionNotifier, DataPath, Fis, RegisterD2h, RegisterH2d, SataDevice, Submission,
};

use super::command::{opcode, protocol, Protocol};
use super::identify::TransferMode;
use super::log::NcqError;
use super::registers::control;
use super::registers::error as ata_error;
use super::taskfile::{d2h_abort, signature, FpdmaCommand, Taskfile, STATUS_ABORT, STATUS_ERROR};
use media::{InFlight, MediaOp, Report};
use read_only::Refusal;
pub use read_only::WRITE_PROTECTED;

/// Default model string (IDENTIFY words 27-46).
pub const DEFAULT_MODEL: &str = "satavm emulated SATA drive";
/// Firmware revision (IDENTIFY words 23-26). Four characters, because libata's SCSI
/// translation takes the INQUIRY product revision from the last four characters of the
/// eight, or the first four when those are blank (`ata_scsiop_inq_std`, as SAT-3 says): "SV01"
/// reads the same in `hdparm -I`, `smartctl -i` and `lsblk -o REV`.
pub const FIRMWARE_REVISION: &str = "SV01";

/// How to create an [`EmulatedDrive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveConfig {
    /// Raw image file or block device.
    pub path: PathBuf,
    /// IDENTIFY model string (at most 40 characters are used); default [`DEFAULT_MODEL`].
    pub model: Option<String>,
    /// IDENTIFY serial number (at most 20 characters); default derived from the path.
    pub serial: Option<String>,
    /// Refuse writes (they fail with ABRT|IDNF and WRITE PROTECTED sense data).
    pub read_only: bool,
    /// World wide name (IDENTIFY words 108-111); default derived from the serial number.
    pub wwn: Option<u64>,
    /// Which I/O engine moves the data.
    pub engine: EngineChoice,
}

/// Why a drive cannot be created.
#[derive(Debug, Error)]
pub enum DriveError {
    #[error(transparent)]
    Disk(#[from] crate::hostfile::HostFileError),
    #[error("disk image {path}: cannot start its I/O engine: {source}")]
    Engine {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Settings the host changes with SET FEATURES / SET MULTIPLE MODE; reset to the power-on
/// defaults by COMRESET and software reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Settings {
    /// Sectors per DRQ block of READ/WRITE MULTIPLE; 0 = not set (those commands abort).
    multiple: u8,
    look_ahead: bool,
    transfer_mode: TransferMode,
    /// Volatile write cache enabled (SET FEATURES 02h/82h); when disabled every write is
    /// made durable before it completes.
    write_cache: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            multiple: 0,
            look_ahead: true,
            transfer_mode: TransferMode::UltraDma(6),
            write_cache: true,
        }
    }
}

/// An ATA device backed by an image file; see the module documentation.
pub struct EmulatedDrive {
    io: InFlight,
    capacity: u64,
    read_only: bool,
    model: String,
    serial: String,
    settings: Settings,
    /// SRST is asserted in the Device Control register.
    srst: bool,
    /// Tags of accepted, unfinished queued commands (what the device thinks SActive is).
    ncq_active: u32,
    /// Slot of the non-queued command the engine is carrying out.
    nonqueued_active: Option<u8>,
    /// Set when a queued command failed; cleared by reading log page 10h or a reset.
    ncq_error: Option<NcqError>,
    wwn: u64,
    /// The SATA generation the link negotiated (IDENTIFY word 77).
    link_gen: u8,
    power: power::PowerState,
    smart: smart::SmartState,
    /// Sense data reporting enabled (SET FEATURES C3h; IDENTIFY word 120 bit 6).
    sense_reporting: bool,
    /// Sense data for REQUEST SENSE DATA EXT: that of the last command that failed with it.
    sense: Option<(u8, u8, u8)>,
}

impl std::fmt::Debug for EmulatedDrive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatedDrive")
            .field("model", &self.model)
            .field("serial", &self.serial)
            .field("capacity_sectors", &self.capacity)
            .field("settings", &self.settings)
            .finish()
    }
}

/// A stable serial number for `path`: "SVM" and a 64-bit FNV-1a hash of the path in hex.
fn serial_from_path(path: &Path) -> String {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let hash = canonical
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("SVM{hash:016X}")
}

impl EmulatedDrive {
    /// Open the image (checked and locked, [`crate::hostfile::open_disk`]) and its engine;
    /// `notifier` is written whenever [`SataDevice::poll_completions`] has something new.
    pub fn open(
        config: &DriveConfig,
        notifier: CompletionNotifier,
    ) -> Result<EmulatedDrive, DriveError> {
        let disk = crate::hostfile::open_disk(&config.path, config.read_only, true)?;
        Self::with_disk(config, disk, notifier)
    }

    /// As [`EmulatedDrive::open`], over a disk opened (and locked) already: `config.path` and
    /// `config.read_only` are taken as describing it, its size is the capacity.
    pub fn with_disk(
        config: &DriveConfig,
        disk: crate::hostfile::DiskFile,
        notifier: CompletionNotifier,
    ) -> Result<EmulatedDrive, DriveError> {
        let sectors = disk.sectors();
        let engine =
            block::file_engine(Arc::new(disk.into_file()), config.engine, notifier.clone())
                .map_err(|source| DriveError::Engine {
                    path: config.path.clone(),
                    source,
                })?;
        let serial = config
            .serial
            .clone()
            .unwrap_or_else(|| serial_from_path(&config.path));
        let mut drive = Self::with_engine(
            engine,
            notifier,
            sectors,
            config.read_only,
            config.model.clone(),
            serial,
        );
        if let Some(wwn) = config.wwn {
            drive.wwn = wwn;
        }
        Ok(drive)
    }

    /// A drive of `capacity` sectors whose medium is behind `engine` (a test engine, or one
    /// made with [`block::file_engine`]); `notifier` as for [`EmulatedDrive::open`].
    pub fn with_engine(
        engine: Box<dyn Engine>,
        notifier: CompletionNotifier,
        capacity: u64,
        read_only: bool,
        model: Option<String>,
        serial: String,
    ) -> EmulatedDrive {
        EmulatedDrive {
            io: InFlight::new(engine, notifier),
            capacity,
            read_only,
            model: model.unwrap_or_else(|| DEFAULT_MODEL.to_string()),
            wwn: super::identify::wwn_from_serial(&serial),
            serial,
            settings: Settings::default(),
            srst: false,
            ncq_active: 0,
            nonqueued_active: None,
            ncq_error: None,
            link_gen: 0,
            power: power::PowerState::default(),
            smart: smart::SmartState::default(),
            sense_reporting: false,
            sense: None,
        }
    }

    /// Take time (power-on hours, the self-test log's timestamps) from `clock`, which the
    /// drive's power-on is set to now (tests).
    pub fn set_clock(&mut self, clock: Arc<dyn crate::clock::Clock>) {
        let old = std::mem::replace(&mut self.smart, smart::SmartState::with_clock(clock));
        self.smart.sectors_read = old.sectors_read;
        self.smart.sectors_written = old.sectors_written;
    }

    /// The power state (ACS-3 4.15).
    pub fn power_state(&self) -> power::PowerState {
        self.power
    }

    /// The world wide name IDENTIFY reports.
    pub fn wwn(&self) -> u64 {
        self.wwn
    }

    /// Capacity in 512-byte sectors.
    pub fn capacity_sectors(&self) -> u64 {
        self.capacity
    }

    /// The engine's name and counters.
    pub fn engine_stats(&self) -> (&'static str, EngineStats) {
        self.io.engine_stats()
    }

    /// Power-on defaults: settings, write cache on, NCQ error state cleared, every command
    /// forgotten.
    fn reset_state(&mut self) {
        self.smart.reset();
        self.abort_all();
        self.ncq_error = None;
        self.sense = None;
        self.settings = Settings::default();
        self.power = self.power.after_reset();
    }

    /// A command that ends at once.
    fn complete(slot: u8, fises: Vec<Fis>, bytes_transferred: u32) -> Submission {
        Submission::Complete(Completion {
            slot,
            fises,
            bytes_transferred,
        })
    }

    /// A command that ends at once with ABRT (status 41h, the command's Device register).
    fn abort(slot: u8, device: u8) -> Submission {
        Self::complete(slot, vec![Fis::RegisterD2h(d2h_abort(device))], 0)
    }

    /// Hand a media command to the engine; it ends in `poll_completions`. A command the
    /// drive can answer at once (a range or data path error) ends here.
    fn start(&mut self, slot: u8, op: MediaOp, report: Report, data: DataPath) -> Submission {
        let queued = matches!(report, Report::Queued { .. });
        match self.io.start(slot, op, report, data, self.capacity) {
            Ok(()) => {
                if !queued {
                    self.nonqueued_active = Some(slot);
                }
                Submission::Pending {
                    accepted: queued.then(media::ncq_accepted),
                }
            }
            Err(c) => Submission::Complete(c),
        }
    }

    /// READ/WRITE FPDMA QUEUED.
    fn submit_queued(&mut self, slot: u8, tf: &Taskfile, data: DataPath) -> Submission {
        let f = FpdmaCommand::decode(tf);
        let op = match tf.command {
            opcode::READ_FPDMA_QUEUED => MediaOp::Read {
                lba: f.lba,
                sectors: f.sectors,
            },
            opcode::WRITE_FPDMA_QUEUED => MediaOp::Write {
                lba: f.lba,
                sectors: f.sectors,
                fua: f.fua || !self.settings.write_cache,
            },
            // NCQ NON-DATA, SEND/RECEIVE FPDMA QUEUED are not offered (IDENTIFY word 77).
            _ => return Self::abort(slot, tf.device),
        };
        let bit = 1u32 << f.tag;
        if self.ncq_error.is_some() || self.nonqueued_active.is_some() {
            return Self::abort(slot, tf.device);
        }
        if self.ncq_active & bit != 0 {
            // A tag already in use is a malformed queued command (SATA 2.6 13.5.2, SATA-IO
            // interoperability test NCQ-04): Register D2H with ERR and ABRT, I = 1, and the
            // NCQ error state naming the tag, which aborts the outstanding queued commands.
            self.enter_ncq_error(NcqError {
                tag: f.tag,
                status: STATUS_ERROR,
                error: ata_error::ABRT,
                lba: f.lba,
                device: tf.device,
                count: tf.count,
                sense: None,
            });
            return Self::abort(slot, tf.device);
        }
        let report = Report::Queued {
            tag: f.tag,
            count: tf.count,
            device: tf.device,
        };
        if self.read_only && matches!(op, MediaOp::Write { .. }) {
            // Accepted, then failed without touching the medium (`read_only`).
            self.ncq_active |= bit;
            let failure = media::Failure {
                error: read_only::WRITE_PROTECTED_ERROR,
                lba: None,
            };
            self.io.fail_queued(slot, op, report, data, failure);
            return Submission::Pending {
                accepted: Some(media::ncq_accepted()),
            };
        }
        let s = self.start(slot, op, report, data);
        if matches!(s, Submission::Pending { .. }) {
            self.ncq_active |= bit;
        }
        s
    }

    /// A queued command failed (SATA 3.x 13.6.5): every other outstanding queued command is
    /// aborted (none of them is reported) and queued commands are refused until log page 10h,
    /// which reports `error`, is read.
    fn enter_ncq_error(&mut self, error: NcqError) {
        self.ncq_error = Some(error);
        self.ncq_active = 0;
        self.io.abort_queued();
    }

    /// The media command for a non-queued opcode, if it is one.
    fn media_command(
        &self,
        tf: &Taskfile,
        proto: Protocol,
    ) -> Option<Result<(MediaOp, Report), Refusal>> {
        use opcode::*;
        let rw = |write: bool, fua: bool| {
            let sectors = tf.sector_count();
            if write {
                MediaOp::Write {
                    lba: tf.lba,
                    sectors,
                    fua: fua || !self.settings.write_cache,
                }
            } else {
                MediaOp::Read {
                    lba: tf.lba,
                    sectors,
                }
            }
        };
        let dma = Report::Dma { lba48: tf.lba48 };
        let pio = |block: u8, write: bool| Report::Pio {
            block_sectors: block,
            lba48: tf.lba48,
            write,
        };
        let multiple = self.settings.multiple;
        let writes = matches!(
            tf.command,
            WRITE_DMA
                | WRITE_DMA_EXT
                | WRITE_DMA_FUA_EXT
                | WRITE_SECTORS
                | WRITE_SECTORS_EXT
                | WRITE_MULTIPLE
                | WRITE_MULTIPLE_EXT
                | WRITE_MULTIPLE_FUA_EXT
        );
        if writes && self.read_only {
            return Some(Err(Refusal::WriteProtected));
        }
        Some(Ok(match tf.command {
            READ_DMA | READ_DMA_EXT => (rw(false, false), dma),
            WRITE_DMA | WRITE_DMA_EXT => (rw(true, false), dma),
            WRITE_DMA_FUA_EXT => (rw(true, true), dma),
            READ_SECTORS | READ_SECTORS_EXT => (rw(false, false), pio(1, false)),
            WRITE_SECTORS | WRITE_SECTORS_EXT => (rw(true, false), pio(1, true)),
            READ_MULTIPLE | READ_MULTIPLE_EXT if multiple != 0 => {
                (rw(false, false), pio(multiple, false))
            }
            WRITE_MULTIPLE | WRITE_MULTIPLE_EXT if multiple != 0 => {
                (rw(true, false), pio(multiple, true))
            }
            WRITE_MULTIPLE_FUA_EXT if multiple != 0 => (rw(true, true), pio(multiple, true)),
            FLUSH_CACHE | FLUSH_CACHE_EXT => (MediaOp::Flush, dma),
            // SET FEATURES 82h, disable the volatile write cache: what it holds is written
            // back first (ACS-3 7.45.8).
            SET_FEATURES if tf.feature() == 0x82 => (MediaOp::Flush, Report::DisableWriteCache),
            DATA_SET_MANAGEMENT if matches!(proto, Protocol::Dma(_)) => {
                // Features bit 0: TRIM; Count: 512-byte blocks of range entries.
                let blocks = tf.sector_count();
                if self.read_only {
                    return Some(Err(Refusal::WriteProtected));
                }
                if tf.features & 1 == 0 || blocks > u32::from(super::identify::DSM_MAX_BLOCKS) {
                    return Some(Err(Refusal::Invalid));
                }
                (MediaOp::Trim { blocks }, dma)
            }
            _ => return None,
        }))
    }
}

impl SataDevice for EmulatedDrive {
    fn comreset(&mut self) -> RegisterD2h {
        self.reset_state();
        self.srst = false;
        signature(false)
    }

    fn device_control(&mut self, fis: &RegisterH2d) -> Option<RegisterD2h> {
        let srst = fis.control & control::SRST != 0;
        match (self.srst, srst) {
            (false, true) => {
                // SRST asserted: the device stops and resets; it answers when SRST clears.
                self.reset_state();
                self.srst = true;
                None
            }
            (true, false) => {
                self.srst = false;
                self.reset_state();
                Some(signature(false))
            }
            _ => None,
        }
    }

    fn submit(&mut self, slot: u8, fis: &RegisterH2d, data: DataPath) -> Submission {
        let tf = Taskfile::decode(fis);
        if self.power == power::PowerState::Sleep {
            // Only a reset wakes a sleeping drive; the command gets no answer (`power`).
            log::debug!(
                "emulated drive: command {:#04x} while asleep: no answer until a reset",
                tf.command
            );
            return Submission::Pending { accepted: None };
        }
        let Some(proto) = protocol(tf.command, tf.features) else {
            log::debug!("emulated drive: unsupported command {:#04x}", tf.command);
            return Self::abort(slot, tf.device);
        };
        if proto.is_queued() {
            self.power = self.power.after_media_access();
            return self.submit_queued(slot, &tf, data);
        }
        if self.ncq_active != 0 || self.nonqueued_active.is_some() {
            return Self::abort(slot, tf.device);
        }
        // Sense data describes the last command; REQUEST SENSE DATA EXT reads it.
        if tf.command != opcode::REQUEST_SENSE_DATA_EXT {
            self.sense = None;
        }
        match self.media_command(&tf, proto) {
            Some(Ok((op, report))) => {
                self.power = self.power.after_media_access();
                self.start(slot, op, report, data)
            }
            Some(Err(Refusal::WriteProtected)) => self.refuse_write(slot, tf.device),
            Some(Err(Refusal::Invalid)) => Self::abort(slot, tf.device),
            None => self.run_sync(slot, &tf, proto, &data),
        }
    }

    fn poll_completions(&mut self) -> Vec<Completion> {
        let mut out = Vec::new();
        for done in self.io.poll() {
            match done.report {
                // Finished after another queued command failed in the same pass: aborted by
                // that failure, not reported (SATA 3.x 13.6.5).
                Report::Queued { .. } if self.ncq_error.is_some() => continue,
                Report::Queued { tag, count, device } => {
                    self.ncq_active &= !(1u32 << (tag & 0x1f));
                    if let Some(failure) = done.failure {
                        // A write refused by a read-only drive: WRITE PROTECTED sense data in
                        // the log (NCQ autosense; see `refuse_write`).
                        let protected = self.read_only
                            && failure.error == read_only::WRITE_PROTECTED_ERROR
                            && matches!(done.op, MediaOp::Write { .. });
                        // SATA 3.x 13.6.5: the device reports the error with SActive clear for
                        // the tag, aborts every other outstanding command and refuses queued
                        // commands until log page 10h is read.
                        self.enter_ncq_error(NcqError {
                            tag,
                            status: if protected {
                                STATUS_ABORT | super::registers::status::SENSE
                            } else {
                                STATUS_ERROR
                            },
                            error: failure.error,
                            lba: failure.lba.unwrap_or(done.start_lba),
                            device,
                            count,
                            sense: protected.then_some(WRITE_PROTECTED),
                        });
                    } else {
                        self.count_media(&done);
                    }
                }
                Report::SelfTest => {
                    self.smart
                        .step_done(done.failure.map(|f| f.lba.unwrap_or(done.start_lba)));
                    continue;
                }
                Report::DisableWriteCache => {
                    self.nonqueued_active = None;
                    if done.failure.is_none() {
                        self.settings.write_cache = false;
                    }
                }
                _ => {
                    self.nonqueued_active = None;
                    if done.failure.is_none() {
                        self.count_media(&done);
                    }
                }
            }
            out.push(done.completion);
        }
        self.advance_self_test();
        out
    }

    fn abort_all(&mut self) {
        self.io.abort_all();
        self.ncq_active = 0;
        self.nonqueued_active = None;
        // The port stopped its engine: a self-test goes on (a reset has ended it already in
        // `reset_state`); its step in the engine was forgotten and is read again.
        self.smart.step_lost();
        self.advance_self_test();
    }

    fn link_negotiated(&mut self, gen: u8) {
        self.link_gen = gen;
    }

    fn draining(&self) -> bool {
        self.io.draining()
    }

    fn ready_fd(&self) -> Option<RawFd> {
        self.io.ready_fd()
    }

    fn engine_stats(&self) -> Option<(&'static str, EngineStats)> {
        Some(self.io.engine_stats())
    }
}
