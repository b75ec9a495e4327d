//! Hot plug (AHCI 1.3.1 section 10.10, 6.2.2.3): a device taken off a port as a cable pull
//! does it, and a device put on an empty port.
//!
//! Removal: the device leaves the port at once. Commands it held never complete (no FIS comes
//! back over a cable that is gone; software's timeout and error handling decide): their PxCI /
//! PxSACT bits stay set until software stops the engine. PhyRdy drops: PxSSTS.DET reads 0,
//! PxSERR gets DIAG.N (PhyRdy change, PxIS.PRCS) and DIAG.X (device presence changed,
//! PxIS.PCS), and ERR.C when commands were outstanding (a transfer was cut short). The
//! device's host I/O already in the host kernel cannot be recalled: the port keeps the device
//! (retired, never asked for completions that it would report) until
//! [`SataDevice::draining`] turns false, keeps PxCMD.CR set meanwhile if software stops the
//! engine (10.3.2), and only then drops it, closing its files.
//!
//! Insertion: the new device sends COMINIT: PxSERR.DIAG.X and DIAG.N (PxIS.PCS, PRCS),
//! PxSSTS.DET 1 then 3 as the link comes up (the port passes DET 1 at once: there is no Phy
//! to wait for), and the device's signature (PxSIG, PxTFD) — or, when software holds
//! COMRESET through PxSCTL.DET, once it lets go.
//!
//! Ports declared hot-pluggable read PxCMD.HPCP = 1 (3.3.7). There is no cold presence
//! detection (PxCMD.CPD 0) and no mechanical presence switch (CAP.SMPS 0, PxCMD.MPSP 0); CAP.SSS
//! stays 0 with PxCMD.SUD hard-wired to 1: a port's Phy always listens, which is what lets an
//! inserted device's COMINIT through (libahci needs no more: PCS/PRCS start its hot-plug EH).

use std::os::fd::RawFd;

use super::{Link, Port};
use crate::ahci::events::AhciEvent;
use crate::ahci::regs::{pxis, pxserr, pxtfd, SIG_RESET};
use crate::sata::{Completion, DataPath, RegisterD2h, RegisterH2d, SataDevice, Submission};
use crate::trace::{Event, Layer};

/// Called once a removed device has drained and was dropped (e.g. to sync its image).
pub type OnDrained = Box<dyn FnOnce() + Send>;

/// Why a hot-plug request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HotPlugError {
    #[error("port {0} has no device")]
    Empty(u8),
    #[error("port {0} already has a device")]
    Occupied(u8),
}

/// What an empty port's Phy talks to: nothing. Never asked for anything while the port is
/// empty (the port issues no command without a link); answers as a device that is not there.
#[derive(Debug, Default)]
pub struct NoDevice;

impl SataDevice for NoDevice {
    fn comreset(&mut self) -> RegisterD2h {
        // Never accepted: an empty port keeps PxSIG FFFFFFFFh and PxTFD 7Fh.
        RegisterD2h {
            status: pxtfd::RESET as u8,
            ..RegisterD2h::default()
        }
    }
    fn device_control(&mut self, _fis: &RegisterH2d) -> Option<RegisterD2h> {
        None
    }
    fn submit(&mut self, _slot: u8, _fis: &RegisterH2d, _data: DataPath) -> Submission {
        Submission::Pending { accepted: None }
    }
    fn poll_completions(&mut self) -> Vec<Completion> {
        Vec::new()
    }
    fn abort_all(&mut self) {}
}

/// A removed device whose host I/O has not drained yet.
pub(super) struct Retired {
    device: Box<dyn SataDevice>,
    on_drained: Option<OnDrained>,
}

impl Retired {
    fn finish(self) {
        let Retired { device, on_drained } = self;
        drop(device);
        if let Some(f) = on_drained {
            f();
        }
    }
}

impl Port {
    /// Declare the port hot-pluggable (PxCMD.HPCP reads 1).
    pub fn set_hot_plug(&mut self) {
        self.hot_plug = true;
    }

    /// True while a device is attached.
    pub fn present(&self) -> bool {
        self.present
    }

    /// Make the port empty from power-on (no device ever attached: PxSSTS.DET 0, PxSIG
    /// FFFFFFFFh, PxTFD 7Fh, no PxSERR bits).
    pub fn make_empty(&mut self) {
        self.device = Box::new(NoDevice);
        self.present = false;
        self.phy_lost = true;
        self.link = Link::Down;
        self.signature_pending = None;
        self.sig = SIG_RESET;
        self.tfd = pxtfd::RESET;
    }

    /// Surprise removal of the device (a cable pull). `on_drained` runs once the device's
    /// host I/O has drained and it was dropped (at once when nothing was in flight).
    pub fn detach(&mut self, on_drained: Option<OnDrained>) -> Result<(), HotPlugError> {
        if !self.present {
            return Err(HotPlugError::Empty(self.index));
        }
        let outstanding = self.ci | self.sact != 0 || self.in_flight.iter().any(Option::is_some);
        let mut device = std::mem::replace(&mut self.device, Box::new(NoDevice));
        // Nothing it still reports reaches the port any more.
        device.abort_all();
        let retired = Retired { device, on_drained };
        if retired.device.draining() {
            self.retired.push(retired);
        } else {
            retired.finish();
        }
        self.present = false;
        self.plug_changes += 1;
        // Commands in flight are lost with the device; their PxCI/PxSACT bits stay set.
        self.drop_in_flight();
        self.issued = 0;
        self.signature_pending = None;
        self.phy_lost = true;
        self.link = Link::Down;
        self.tfd = pxtfd::RESET;
        self.stats.link_drops += 1;
        let mut serr = pxserr::DIAG_N | pxserr::DIAG_X;
        if outstanding {
            serr |= pxserr::ERR_C;
        }
        // Raised before PxSERR mirrors them, so that they count as new interrupt events.
        self.raise(pxis::PRCS | pxis::PCS);
        self.set_serr(serr);
        self.trace_hotplug("removed");
        self.report(AhciEvent::DeviceRemoved { port: self.index });
        Ok(())
    }

    /// Insertion of `device` on an empty port: COMINIT, the link up, the signature.
    pub fn attach(&mut self, device: Box<dyn SataDevice>) -> Result<(), HotPlugError> {
        if self.present {
            return Err(HotPlugError::Occupied(self.index));
        }
        self.device = self.wrap_traced(device);
        self.present = true;
        self.plug_changes += 1;
        self.trace_hotplug("inserted");
        self.report(AhciEvent::DeviceAdded { port: self.index });
        // COMINIT: the same as a device that comes back on its own (see `link`).
        self.phy_up();
        Ok(())
    }

    /// Poll removed devices: their completions are dropped; each is released once drained.
    pub(super) fn poll_retired(&mut self) {
        if self.retired.is_empty() {
            return;
        }
        for r in &mut self.retired {
            let _ = r.device.poll_completions();
        }
        let (done, busy): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retired)
            .into_iter()
            .partition(|r| !r.device.draining());
        self.retired = busy;
        if !done.is_empty() {
            self.plug_changes += 1;
        }
        for r in done {
            r.finish();
        }
    }

    /// Changes to the port's devices so far (attach, removal, a removed device released).
    pub fn plug_changes(&self) -> u64 {
        self.plug_changes
    }

    /// True while a removed device still has host I/O in flight.
    pub(super) fn retired_draining(&self) -> bool {
        !self.retired.is_empty()
    }

    /// The removed devices' readiness descriptors (they are polled until drained).
    pub fn retired_ready_fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.retired.iter().filter_map(|r| r.device.ready_fd())
    }

    fn trace_hotplug(&self, state: &'static str) {
        self.tracer.emit(|| {
            Event::new(Layer::Ahci, "hotplug")
                .port(self.index)
                .str("state", state)
        });
    }
}
