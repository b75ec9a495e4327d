//! What a port does when its device drops off the link and comes back
//! ([`LinkEvent`], reported by the device side, e.g. by fault injection).
//!
//! Lost (PhyRdy 1 -> 0): PxSSTS.DET reads 0, PxSERR gets DIAG.N (PhyRdy change, mirrored in
//! PxIS.PRCS, an interrupt if PxIE.PRCE) and ERR.C (a communication error that was not
//! recovered). Commands the device held are lost: their PxCI/PxSACT bits stay set until
//! software stops the engine, as on real hardware (software sees a PhyRdy change interrupt
//! or a timeout). Nothing is issued while the link is down, and a COMRESET through PxSCTL
//! cannot bring it up.
//!
//! Restored (COMINIT from the device): once PxSCTL.DET is 0 the link is up again
//! (PxSSTS.DET = 3), PxSERR gets DIAG.X and DIAG.N (PxIS.PCS and PRCS), and the device,
//! which reset itself, sends its signature (PxSIG, PxTFD, the RFIS area if FRE is set).

use super::{Link, Port};
use crate::ahci::events::AhciEvent;
use crate::ahci::regs::{pxis, pxserr, scr};
use crate::sata::LinkEvent;
use crate::trace::{Event, Layer};

impl Port {
    /// Apply the link changes the device reports.
    pub(super) fn poll_link(&mut self) {
        while let Some(ev) = self.device.poll_link() {
            match ev {
                LinkEvent::Lost => self.phy_down(),
                LinkEvent::Restored => self.phy_up(),
            }
        }
    }

    fn trace_link(&self, state: &'static str) {
        self.tracer.emit(|| {
            Event::new(Layer::Ahci, "link")
                .port(self.index())
                .str("state", state)
                .hex32("pxserr", self.read(crate::ahci::regs::port::SERR))
        });
    }

    fn phy_down(&mut self) {
        if self.phy_lost {
            return;
        }
        self.phy_lost = true;
        // Completions held for an SDB FIS are lost with the link, like the commands in flight.
        self.aggregation.clear();
        self.stats.link_drops += 1;
        self.raise(pxis::PRCS);
        self.set_serr(pxserr::DIAG_N | pxserr::ERR_C);
        self.trace_link("lost");
        self.report(AhciEvent::LinkLost { port: self.index() });
    }

    pub(super) fn phy_up(&mut self) {
        if !self.phy_lost {
            return;
        }
        self.phy_lost = false;
        // The device reset itself; its signature is what it sends first.
        let sig = self.device.comreset();
        if self.sctl_det() != 0 {
            // Software holds COMRESET or the Phy offline: the link comes up when it lets go.
            self.signature_pending = Some(sig);
            self.link = Link::Down;
            self.trace_link("restored-held");
            self.report(AhciEvent::LinkRestored { port: self.index() });
            return;
        }
        self.signature_pending = None;
        self.link = Link::Up;
        self.negotiate_link();
        self.raise(pxis::PCS | pxis::PRCS);
        self.set_serr(pxserr::DIAG_X | pxserr::DIAG_N);
        self.trace_link("restored");
        self.report(AhciEvent::LinkRestored { port: self.index() });
        self.accept_signature(sig);
    }

    fn sctl_det(&self) -> u32 {
        self.read(crate::ahci::regs::port::SCTL) & scr::DET_MASK
    }
}
