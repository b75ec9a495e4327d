//! SATA FIS layer: the frames a port and a device exchange (SATA 3.x section 10.5), the data
//! path the device moves payload through, and the port/device boundary trait.
//!
//! The AHCI port (layer 1) and the ATA device (layer 3) talk only through [`SataDevice`]:
//! the port delivers Register H2D FISes and a [`DataPath`] over the command's PRDT; the device
//! answers with FISes (Register D2H, PIO Setup, DMA Setup, Set Device Bits) and a byte count.

pub mod data_path;
pub mod fis;

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

use vmm_sys_util::eventfd::EventFd;

pub use data_path::{DataPath, DataPathError, PrdEntry};
pub use fis::{
    Bist, DataFis, DmaSetup, Fis, FisError, PioSetup, RegisterD2h, RegisterH2d, SetDeviceBits,
};

/// Signalled (written) by a device whenever [`SataDevice::poll_completions`] has something new.
/// The VMM's event loop waits on it; tests read it to wait.
pub type CompletionNotifier = Arc<EventFd>;

/// What the device did with a command FIS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submission {
    /// The command already finished.
    Complete(Completion),
    /// The command runs in the background and will be returned by
    /// [`SataDevice::poll_completions`]. `accepted` is the FIS the device sends right away, if
    /// any: for a queued (NCQ) command the Register D2H FIS with BSY clear that releases the
    /// link (SATA 3.x 13.6.4.2), after which the port clears the slot's PxCI bit.
    Pending { accepted: Option<RegisterD2h> },
}

/// A finished command as the device reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The command slot the port submitted it in (for NCQ also the tag).
    pub slot: u8,
    /// FISes the device sent, in order (PIO Setup, DMA Setup, Register D2H, Set Device Bits).
    pub fises: Vec<Fis>,
    /// Bytes moved through the data path (the port reports it in PRDBC).
    pub bytes_transferred: u32,
}

/// A change in the physical link that the device side reports (SATA 3.x 8.4: PhyRdy): a
/// device that drops off the link and comes back, as fault injection simulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// PhyRdy dropped: the device no longer communicates; commands in flight are lost.
    Lost,
    /// The device is back (it sent COMINIT): the port re-establishes the link and the device,
    /// reset, sends its signature (the port asks for it with [`SataDevice::comreset`]).
    Restored,
}

/// The device end of a SATA link, seen from the port.
pub trait SataDevice: Send {
    /// COMRESET or power-on: the device aborts everything and answers with its signature
    /// Register D2H FIS (ATA device: status 50h, count 1, LBA 1, device 0; SATA 3.x 11.4).
    fn comreset(&mut self) -> RegisterD2h;

    /// A Register H2D FIS with C=0 (a Device Control update, e.g. SRST set then cleared,
    /// ATA8-ACS software reset). Returns the FIS the device answers with, if any.
    fn device_control(&mut self, fis: &RegisterH2d) -> Option<RegisterD2h>;

    /// A Register H2D FIS with C=1 (a command) issued in `slot`; its payload, if any, moves
    /// through `data`.
    fn submit(&mut self, slot: u8, fis: &RegisterH2d, data: DataPath) -> Submission;

    /// A command whose command header has the A bit set (AHCI 1.3.1 4.2.2): `fis` is the
    /// PACKET command's Register H2D FIS and `acmd` the 16 bytes of the command table's ACMD
    /// area (4.2.3, offset 40h), the ATAPI command (a SCSI CDB) that the HBA sends when the
    /// device asks for it. Devices without the PACKET feature set keep the default: the FIS
    /// alone, as any other command (ATA drives abort PACKET).
    fn submit_packet(
        &mut self,
        slot: u8,
        fis: &RegisterH2d,
        acmd: &[u8; 16],
        data: DataPath,
    ) -> Submission {
        let _ = acmd;
        self.submit(slot, fis, data)
    }

    /// Commands that finished since the last call, in completion order.
    fn poll_completions(&mut self) -> Vec<Completion>;

    /// Abort every command in flight (the port's engine stopped, or a reset): none of them
    /// is returned as completed afterwards. Requests already in the host kernel cannot be
    /// recalled and may still move data into guest memory until [`SataDevice::draining`]
    /// turns false (the port keeps PxCMD.CR set until then). Never waits.
    fn abort_all(&mut self);

    /// True while aborted commands still have host I/O in flight that may touch guest memory
    /// or the medium. The device signals its notifier (or `ready_fd`) when that ends.
    fn draining(&self) -> bool {
        false
    }

    /// When the device next wants [`SataDevice::poll_completions`] called although nothing
    /// signalled (a completion held back on purpose, a link coming back); the VMM arms a timer.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    /// A descriptor the event loop watches besides the completion notifier, readable while
    /// the device has completions to collect (an I/O engine's own readiness, e.g. sg's).
    fn ready_fd(&self) -> Option<RawFd> {
        None
    }

    /// The I/O engine the device's data moves through, and its counters (for the statistics).
    fn engine_stats(&self) -> Option<(&'static str, crate::block::EngineStats)> {
        None
    }

    /// The highest SATA generation (1: 1.5, 2: 3.0, 3: 6.0 Gb/s) the device end of the link
    /// can signal at; the port negotiates the link speed with it at every COMRESET.
    fn max_link_gen(&self) -> u8 {
        3
    }

    /// The link came up (after COMRESET or power-on) at generation `gen` (what the port
    /// negotiated, SATA 3.x 8.4 OOB and speed negotiation); IDENTIFY word 77 reports it.
    fn link_negotiated(&mut self, _gen: u8) {}

    /// A link change since the last call, if any. A device that has one signals its
    /// completion notifier; the port polls this whenever it collects completions. Devices
    /// whose link never changes keep the default.
    fn poll_link(&mut self) -> Option<LinkEvent> {
        None
    }
}
