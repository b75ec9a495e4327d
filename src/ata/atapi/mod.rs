//! An emulated ATAPI CD/DVD drive over an ISO image: a SATA device of the PACKET feature set
//! (ACS-3 7.18, SATA 3.x 11.10) whose commands are MMC-6/SPC-4 CDBs.
//!
//! The AHCI layer knows only the command header's A bit and the ACMD bytes
//! ([`crate::sata::SataDevice::submit_packet`]); everything ATAPI is here:
//! - [`packet`]: the PACKET protocol (DMA or PIO with the byte count limit, the interrupt
//!   reason, CHECK CONDITION in the registers);
//! - [`cdb`]: operation codes, their names, CDB fields; [`sense`]: sense data;
//! - `dispatch`: the unit attention and medium gates, then each command;
//! - [`spc`] (INQUIRY, MODE SENSE) and [`mmc`] (the disc and drive descriptions);
//! - [`reader`]: READ(10)/READ(12) through the block engine into guest RAM;
//! - [`medium`]: the disc, the tray and host-side media changes ([`MediaControl`]);
//! - [`identify`]: IDENTIFY PACKET DEVICE.
//!
//! ATA commands: IDENTIFY PACKET DEVICE; IDENTIFY DEVICE aborted with the PACKET signature
//! in the registers (ACS-3 7.12); DEVICE RESET and EXECUTE DEVICE DIAGNOSTIC answer with the
//! signature; SET FEATURES, CHECK POWER MODE and the power commands succeed; anything else is
//! aborted. Signature: status 00h, count 1, LBA EB1401h (PxSIG EB140101h).
//!
//! Unit attention (SPC-4 5.14): a disc inserted (by the host, or the tray closed over one) makes
//! the next command other than INQUIRY, REQUEST SENSE, GET CONFIGURATION and GET EVENT STATUS
//! NOTIFICATION end with UNIT ATTENTION 28h/00h; the media event (new media, media removal,
//! eject request) waits for GET EVENT STATUS NOTIFICATION. The sense of the last CHECK
//! CONDITION stays for REQUEST SENSE until the next command.

mod ata;
pub mod cdb;
mod dispatch;
pub mod host;
pub mod identify;
pub mod medium;
pub mod mmc;
pub mod packet;
mod reader;
pub mod sense;
pub mod spc;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::ata::command::opcode;
use crate::ata::identify::TransferMode;
use crate::ata::taskfile::d2h_abort;
use crate::block::{EngineChoice, EngineStats};
use crate::sata::{
    Completion, CompletionNotifier, DataPath, RegisterD2h, RegisterH2d, SataDevice, Submission,
};

pub use medium::{Change, MediaControl, MediaError, Medium, Shared};
use mmc::media_event;
use packet::PacketCommand;
use reader::Reads;
use sense::Sense;

/// Default model (IDENTIFY PACKET DEVICE words 27-46; INQUIRY takes the first 16 characters).
pub const DEFAULT_MODEL: &str = "SATAVM DVD-ROM";
/// Firmware revision (IDENTIFY PACKET DEVICE words 23-26).
pub const FIRMWARE_REVISION: &str = "0.1.0";
/// LBA low/mid/high of the PACKET device signature (ACS-3 table 206).
pub const ATAPI_SIGNATURE_LBA: u64 = 0xeb_14_01;

/// A stable serial number for the drive of `path`: "SVMCD" and a 48-bit FNV-1a hash of the
/// path in hex (an empty tray's drive hashes the empty path).
fn serial_from_path(path: &std::path::Path) -> String {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let hash = canonical
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("SVMCD{:012X}", hash & 0xffff_ffff_ffff)
}

/// What the SPC/MMC answers describe.
#[derive(Debug, Clone)]
pub struct View<'a> {
    /// Blocks of the disc, when one is in and the tray closed.
    pub blocks: Option<u64>,
    pub dvd: bool,
    pub tray_open: bool,
    pub prevent: bool,
    pub model: &'a str,
    pub serial: &'a str,
}

/// How to create a drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdromConfig {
    /// The ISO image; `None`: an empty tray.
    pub path: Option<PathBuf>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub engine: EngineChoice,
    /// Lock the images (shared, read-only) as [`crate::hostfile`] does.
    pub lock: bool,
}

/// How a PACKET command ran.
enum Run {
    /// Done, having moved this many bytes to the host.
    Done(u32),
    Check(Sense),
    /// A read in the engine.
    Pending,
}

/// The drive; see the module documentation.
pub struct AtapiDrive {
    /// The disc in the drive (with the tray open it is in the tray, not readable).
    medium: Option<Medium>,
    tray_open: bool,
    prevent: bool,
    unit_attention: bool,
    /// Sense of the last CHECK CONDITION, for REQUEST SENSE.
    sense: Option<Sense>,
    media_event: u8,
    model: String,
    serial: String,
    transfer_mode: TransferMode,
    srst: bool,
    reads: Reads,
    shared: Arc<Mutex<Shared>>,
}

impl std::fmt::Debug for AtapiDrive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtapiDrive")
            .field("model", &self.model)
            .field("medium", &self.medium)
            .field("tray_open", &self.tray_open)
            .finish_non_exhaustive()
    }
}

impl AtapiDrive {
    /// Open the image of `config` (if any) and make the drive and its host-side control.
    pub fn open(
        config: &CdromConfig,
        notifier: CompletionNotifier,
    ) -> Result<(AtapiDrive, MediaControl), MediaError> {
        let medium = match &config.path {
            Some(p) => Some(Medium::open(
                p,
                config.engine,
                config.lock,
                notifier.clone(),
            )?),
            None => None,
        };
        Ok(Self::with_medium(config, medium, notifier))
    }

    /// A drive with `medium` (opened already, or a test's) in it.
    pub fn with_medium(
        config: &CdromConfig,
        medium: Option<Medium>,
        notifier: CompletionNotifier,
    ) -> (AtapiDrive, MediaControl) {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let serial = config.serial.clone().unwrap_or_else(|| {
            let path = config.path.clone().unwrap_or_default();
            serial_from_path(&path)
        });
        let drive = AtapiDrive {
            medium,
            tray_open: false,
            prevent: false,
            unit_attention: false,
            sense: None,
            media_event: media_event::NO_CHANGE,
            model: config
                .model
                .clone()
                .unwrap_or_else(|| DEFAULT_MODEL.to_string()),
            serial,
            transfer_mode: TransferMode::UltraDma(5),
            srst: false,
            reads: Reads::default(),
            shared: shared.clone(),
        };
        let control = MediaControl::new(
            shared,
            notifier,
            config.engine,
            config.lock,
            config.path.clone(),
        );
        (drive, control)
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The disc, if one is in and the tray is closed.
    fn ready_medium(&self) -> Option<&Medium> {
        self.medium.as_ref().filter(|_| !self.tray_open)
    }

    fn view(&self) -> View<'_> {
        let m = self.ready_medium();
        View {
            blocks: m.map(|m| m.blocks),
            dvd: m.is_some_and(Medium::is_dvd),
            tray_open: self.tray_open,
            prevent: self.prevent,
            model: &self.model,
            serial: &self.serial,
        }
    }

    /// Take over a change the host asked for, once no read of the old disc is in its engine.
    fn take_host_change(&mut self) {
        let busy = self.reads.busy()
            || self
                .medium
                .as_ref()
                .is_some_and(|m| m.engine.in_flight() > 0);
        if busy {
            return;
        }
        let Some(change) = self.shared().pending.take() else {
            return;
        };
        match change {
            Change::Insert(m) => {
                log::info!("cdrom: {} inserted", m.path.display());
                self.medium = Some(m);
                self.tray_open = false;
                self.unit_attention = true;
                self.media_event = media_event::NEW_MEDIA;
            }
            Change::Eject => {
                if self.medium.take().is_some() {
                    self.media_event = media_event::MEDIA_REMOVAL;
                }
                self.tray_open = true;
            }
        }
    }

    /// COMRESET, SRST, DEVICE RESET: commands forgotten, settings back to their defaults; the
    /// disc, the tray and the medium lock stay.
    fn reset(&mut self) {
        self.reads.abort();
        self.transfer_mode = TransferMode::UltraDma(5);
        self.sense = None;
    }

    fn check(&mut self, s: Sense) -> Option<Sense> {
        self.sense = Some(s);
        Some(s)
    }

    /// A PACKET command.
    fn packet(
        &mut self,
        slot: u8,
        fis: &RegisterH2d,
        acmd: &[u8; 16],
        data: DataPath,
    ) -> Submission {
        self.take_host_change();
        let packet = PacketCommand::decode(fis);
        if self.reads.busy() {
            // Not queued: the port sends one command at a time; a second one is refused.
            return ata::done(slot, d2h_abort(fis.device));
        }
        let cdb = &acmd[..usize::from(packet::PACKET_BYTES)];
        match self.execute(slot, packet, cdb, &data) {
            Run::Done(n) => Submission::Complete(packet::finish(slot, &packet, n, None)),
            Run::Check(s) => {
                log::debug!(
                    "cdrom: {} CHECK CONDITION {:x}/{:02x}/{:02x}",
                    cdb::name(cdb[0]),
                    s.key,
                    s.asc,
                    s.ascq
                );
                let s = self.check(s);
                Submission::Complete(packet::finish(slot, &packet, 0, s))
            }
            Run::Pending => Submission::Pending { accepted: None },
        }
    }
}

impl SataDevice for AtapiDrive {
    fn comreset(&mut self) -> RegisterD2h {
        self.reset();
        self.srst = false;
        ata::signature(false)
    }

    fn device_control(&mut self, fis: &RegisterH2d) -> Option<RegisterD2h> {
        match ata::soft_reset(&mut self.srst, fis) {
            ata::SoftReset::Asserted => {
                self.reset();
                None
            }
            ata::SoftReset::Released => Some(ata::signature(false)),
            ata::SoftReset::Unchanged => None,
        }
    }

    fn submit(&mut self, slot: u8, fis: &RegisterH2d, data: DataPath) -> Submission {
        if self.reads.busy() {
            return ata::done(slot, d2h_abort(fis.device));
        }
        let id = identify::PacketIdentity {
            serial: &self.serial,
            firmware: FIRMWARE_REVISION,
            model: &self.model,
            transfer_mode: self.transfer_mode,
        };
        let (s, effect) = ata::command(slot, fis, &data, &id);
        match effect {
            ata::Effect::None => {}
            ata::Effect::Reset => self.reset(),
            ata::Effect::TransferMode(m) => self.transfer_mode = m,
        }
        s
    }

    fn submit_packet(
        &mut self,
        slot: u8,
        fis: &RegisterH2d,
        acmd: &[u8; 16],
        data: DataPath,
    ) -> Submission {
        if fis.command != opcode::PACKET {
            return self.submit(slot, fis, data);
        }
        self.packet(slot, fis, acmd, data)
    }

    fn poll_completions(&mut self) -> Vec<Completion> {
        let mut out = Vec::new();
        let done = match self.medium.as_mut() {
            Some(m) => self.reads.poll(m.engine.as_mut()),
            None => None,
        };
        if let Some(d) = done {
            let check = match d.result {
                Ok(()) => None,
                Err(s) => self.check(s),
            };
            out.push(packet::finish(d.slot, &d.packet, d.bytes, check));
        }
        self.take_host_change();
        out
    }

    fn abort_all(&mut self) {
        self.reads.abort();
    }

    fn draining(&self) -> bool {
        !self.reads.busy()
            && self
                .medium
                .as_ref()
                .is_some_and(|m| m.engine.in_flight() > 0)
    }

    fn engine_stats(&self) -> Option<(&'static str, EngineStats)> {
        self.medium
            .as_ref()
            .map(|m| (m.engine.name(), m.engine.stats()))
    }
}
