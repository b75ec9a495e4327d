//! An emulated SATA drive over a raw image file or host block device.
//!
//! How commands run:
//! - READ/WRITE FPDMA QUEUED (NCQ): accepted at once with a Register D2H FIS (BSY clear, I=0),
//!   run on the [`worker`] pool concurrently and out of order; each ends with a Set Device Bits
//!   FIS (preceded by the DMA Setup FIS that selected its buffer). The completion's `slot` is
//!   the port's command slot; SActive bits use the NCQ tag from the Count register (AHCI
//!   requires tag == slot; if a guest breaks that, the tag still names the command to the
//!   device, as on a real link).
//! - READ/WRITE DMA (EXT), WRITE DMA FUA EXT, FLUSH CACHE (EXT), DATA SET MANAGEMENT: run on the
//!   worker pool too (`Submission::Pending { accepted: None }`) and end with a Register D2H
//!   FIS, so a long transfer or fdatasync never blocks the caller.
//! - Everything else (PIO, non-data, READ LOG DMA EXT): done synchronously in `submit`, see
//!   [`commands`].
//!
//! Errors: LBA range past the end: IDNF; host I/O error: UNC with the first failing LBA; PRDT
//! overflow or a PRD entry outside guest RAM: ABRT (the AHCI layer reports the overflow in
//! its own registers as well); writes or TRIM on a read-only drive: ABRT; unknown or
//! unsupported commands: ABRT. A non-queued command while queued commands are outstanding is
//! aborted (the outstanding ones continue); in the NCQ error state (after a queued command
//! failed, or a queued command came with a tag already in use) new queued commands are aborted
//! until log page 10h is read.

pub mod backend;
mod commands;
pub mod worker;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use thiserror::Error;

use crate::sata::{
    Completion, CompletionNotifier, DataPath, Fis, RegisterD2h, RegisterH2d, SataDevice, Submission,
};

use super::command::{opcode, protocol, Protocol};
use super::identify::TransferMode;
use super::log::NcqError;
use super::registers::control;
use super::registers::error as ata_error;
use super::taskfile::{d2h_abort, signature, FpdmaCommand, Taskfile, STATUS_ERROR};
use backend::Image;
use worker::{ncq_accepted, Kind, Op, Shared};

/// Default model string (IDENTIFY words 27-46).
pub const DEFAULT_MODEL: &str = "satavm emulated SATA drive";
/// Firmware revision (IDENTIFY words 23-26).
pub const FIRMWARE_REVISION: &str = "0.1.0";

/// How to create an [`EmulatedDrive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveConfig {
    /// Raw image file or block device.
    pub path: PathBuf,
    /// IDENTIFY model string (at most 40 characters are used); default [`DEFAULT_MODEL`].
    pub model: Option<String>,
    /// IDENTIFY serial number (at most 20 characters); default derived from the path.
    pub serial: Option<String>,
    /// Refuse writes (they fail with ABRT).
    pub read_only: bool,
}

/// Why a drive cannot be created.
#[derive(Debug, Error)]
pub enum DriveError {
    #[error(transparent)]
    Disk(#[from] crate::hostfile::HostFileError),
    #[error("cannot start the drive's I/O threads: {0}")]
    Workers(std::io::Error),
}

/// Settings the host changes with SET FEATURES / SET MULTIPLE MODE; reset to the power-on
/// defaults by COMRESET and software reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Settings {
    /// Sectors per DRQ block of READ/WRITE MULTIPLE; 0 = not set (those commands abort).
    multiple: u8,
    look_ahead: bool,
    transfer_mode: TransferMode,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            multiple: 0,
            look_ahead: true,
            transfer_mode: TransferMode::UltraDma(6),
        }
    }
}

/// An ATA device backed by an image file; see the module documentation.
pub struct EmulatedDrive {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    model: String,
    serial: String,
    settings: Settings,
    /// SRST is asserted in the Device Control register.
    srst: bool,
}

impl std::fmt::Debug for EmulatedDrive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatedDrive")
            .field("model", &self.model)
            .field("serial", &self.serial)
            .field("capacity_sectors", &self.capacity_sectors())
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
    /// Open the image (checked and locked, [`crate::hostfile::open_disk`]) and start the I/O
    /// threads; `notifier` is written whenever [`SataDevice::poll_completions`] has something
    /// new.
    pub fn open(
        config: &DriveConfig,
        notifier: CompletionNotifier,
    ) -> Result<EmulatedDrive, DriveError> {
        let image = Image::open(&config.path, config.read_only)?;
        Self::with_image(config, image, notifier)
    }

    /// As [`EmulatedDrive::open`], over a disk opened already (`config.path` and
    /// `config.read_only` are taken as describing it).
    pub fn with_disk(
        config: &DriveConfig,
        disk: crate::hostfile::DiskFile,
        notifier: CompletionNotifier,
    ) -> Result<EmulatedDrive, DriveError> {
        Self::with_image(config, Image::from_disk(disk), notifier)
    }

    fn with_image(
        config: &DriveConfig,
        image: Image,
        notifier: CompletionNotifier,
    ) -> Result<EmulatedDrive, DriveError> {
        let shared = Arc::new(Shared::new(image, notifier));
        let workers = match worker::spawn_workers(&shared) {
            Ok(w) => w,
            Err(e) => {
                shared.shutdown();
                return Err(DriveError::Workers(e));
            }
        };
        Ok(EmulatedDrive {
            shared,
            workers,
            model: config
                .model
                .clone()
                .unwrap_or_else(|| DEFAULT_MODEL.to_string()),
            serial: config
                .serial
                .clone()
                .unwrap_or_else(|| serial_from_path(&config.path)),
            settings: Settings::default(),
            srst: false,
        })
    }

    /// Capacity in 512-byte sectors.
    pub fn capacity_sectors(&self) -> u64 {
        self.shared.image.sectors()
    }

    /// Power-on defaults: settings, write cache on, NCQ error state cleared.
    fn reset_state(&mut self) {
        self.shared.abort_all();
        self.shared.lock().ncq_error = None;
        self.shared.write_cache.store(true, Ordering::Relaxed);
        self.settings = Settings::default();
    }

    /// A command that ends at once.
    fn complete(slot: u8, fises: Vec<Fis>, bytes_transferred: u32) -> Submission {
        Submission::Complete(Completion {
            slot,
            fises,
            bytes_transferred,
        })
    }

    /// A command that ends at once with ABRT.
    fn abort(slot: u8) -> Submission {
        Self::complete(slot, vec![Fis::RegisterD2h(d2h_abort())], 0)
    }

    /// READ/WRITE FPDMA QUEUED.
    fn submit_queued(&mut self, slot: u8, tf: &Taskfile, data: DataPath) -> Submission {
        let op = match tf.command {
            opcode::READ_FPDMA_QUEUED | opcode::WRITE_FPDMA_QUEUED => {
                let f = FpdmaCommand::decode(tf);
                if tf.command == opcode::READ_FPDMA_QUEUED {
                    Op::Read {
                        lba: f.lba,
                        sectors: f.sectors,
                    }
                } else {
                    Op::Write {
                        lba: f.lba,
                        sectors: f.sectors,
                        fua: f.fua,
                    }
                }
            }
            // NCQ NON-DATA, SEND/RECEIVE FPDMA QUEUED are not offered (IDENTIFY word 77).
            _ => return Self::abort(slot),
        };
        let f = FpdmaCommand::decode(tf);
        let bit = 1u32 << f.tag;
        let mut st = self.shared.lock();
        if st.ncq_error.is_some() || st.nonqueued_active.is_some() {
            return Self::abort(slot);
        }
        if st.ncq_active & bit != 0 {
            // A tag already in use is a malformed queued command (SATA 2.6 13.5.2, SATA-IO
            // interoperability test NCQ-04): Register D2H with ERR and ABRT, I = 1, and the
            // NCQ error state naming the tag, which aborts the outstanding queued commands.
            st.enter_ncq_error(NcqError {
                tag: f.tag,
                status: STATUS_ERROR,
                error: ata_error::ABRT,
                lba: f.lba,
                device: tf.device,
                count: tf.count,
            });
            return Self::abort(slot);
        }
        st.ncq_active |= bit;
        let kind = Kind::Queued {
            tag: f.tag,
            count: tf.count,
            device: tf.device,
        };
        self.shared.enqueue(&mut st, slot, kind, op, data);
        Submission::Pending {
            accepted: Some(ncq_accepted()),
        }
    }

    /// Queue a non-queued DMA-class command for the workers.
    fn submit_background(&mut self, slot: u8, tf: &Taskfile, op: Op, data: DataPath) -> Submission {
        let mut st = self.shared.lock();
        st.nonqueued_active = Some(slot);
        let kind = Kind::NonQueued { lba48: tf.lba48 };
        self.shared.enqueue(&mut st, slot, kind, op, data);
        Submission::Pending { accepted: None }
    }
}

impl Drop for EmulatedDrive {
    fn drop(&mut self) {
        self.shared.shutdown();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
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
        let Some(proto) = protocol(tf.command, tf.features) else {
            log::debug!("emulated drive: unsupported command {:#04x}", tf.command);
            return Self::abort(slot);
        };
        if proto.is_queued() {
            return self.submit_queued(slot, &tf, data);
        }
        {
            let st = self.shared.lock();
            if st.ncq_active != 0 || st.nonqueued_active.is_some() {
                return Self::abort(slot);
            }
        }
        use opcode::*;
        let dma_op = match (tf.command, proto) {
            (READ_DMA | READ_DMA_EXT, _) => Some(Op::Read {
                lba: tf.lba,
                sectors: tf.sector_count(),
            }),
            (WRITE_DMA | WRITE_DMA_EXT | WRITE_DMA_FUA_EXT, _) => Some(Op::Write {
                lba: tf.lba,
                sectors: tf.sector_count(),
                fua: tf.command == WRITE_DMA_FUA_EXT,
            }),
            (FLUSH_CACHE | FLUSH_CACHE_EXT, _) => Some(Op::Flush),
            (DATA_SET_MANAGEMENT, Protocol::Dma(_)) => {
                // Features bit 0: TRIM; Count: 512-byte blocks of range entries.
                let blocks = tf.sector_count();
                if tf.features & 1 == 0
                    || blocks > u32::from(super::identify::DSM_MAX_BLOCKS)
                    || self.shared.image.read_only()
                {
                    return Self::abort(slot);
                }
                Some(Op::Trim { blocks })
            }
            _ => None,
        };
        match dma_op {
            Some(op) => self.submit_background(slot, &tf, op, data),
            None => self.run_sync(slot, &tf, proto, &data),
        }
    }

    fn poll_completions(&mut self) -> Vec<Completion> {
        self.shared.take_completions()
    }

    fn abort_all(&mut self) {
        self.shared.abort_all();
    }
}
