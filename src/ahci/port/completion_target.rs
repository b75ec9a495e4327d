//! The port's side of [`super::completion`]: what a finished command's FISes and outcome do
//! to the port's registers (PxTFD, PxSACT, PxCI, PxSNTF, PxIS, PRDBC) and statistics.

use super::Port;
use crate::ahci::command;
use crate::ahci::completion::{CompletionTarget, InFlight};
use crate::ahci::events::AhciEvent;
use crate::ahci::regs::{pxis, pxtfd};
use crate::sata::fis::SDB_STATUS_MASK;
use crate::sata::{Fis, PioSetup, RegisterD2h, SetDeviceBits};
use crate::trace::{Event, Layer};

impl CompletionTarget for Port {
    fn take_in_flight(&mut self, slot: u8) -> Option<InFlight> {
        self.in_flight
            .get_mut(usize::from(slot))
            .and_then(Option::take)
    }

    fn receive_d2h(&mut self, d2h: &RegisterD2h) {
        Port::receive_d2h(self, d2h);
    }

    fn receive_pio_setup(&mut self, p: &PioSetup) {
        // The status after the data FIS that follows is E_Status (10.5.11).
        self.tfd = u32::from(p.e_status) | u32::from(p.error) << pxtfd::ERR_SHIFT;
        self.post_fis(&Fis::PioSetup(*p));
        if p.interrupt {
            self.raise(pxis::PSS);
        }
    }

    fn receive_sdb(&mut self, s: &SetDeviceBits) {
        let keep = !u32::from(SDB_STATUS_MASK) & 0xff;
        self.tfd = (self.tfd & keep) | u32::from(s.status & SDB_STATUS_MASK);
        self.tfd = (self.tfd & 0xff) | u32::from(s.error) << pxtfd::ERR_SHIFT;
        self.sact &= !s.sactive;
        if s.notification {
            self.sntf |= 1 << (s.pm_port & 0xf);
        }
        self.post_fis(&Fis::SetDeviceBits(*s));
        if s.interrupt {
            self.raise(pxis::SDBS);
        }
    }

    fn post_fis(&mut self, fis: &Fis) {
        Port::post_fis(self, fis);
    }

    fn raise(&mut self, bits: u32) {
        Port::raise(self, bits);
    }

    fn write_prdbc(&mut self, slot: u8, bytes: u32) {
        if command::write_prdbc(&*self.mem, self.clb(), slot, bytes).is_err() {
            self.raise(pxis::HBFS);
            self.halted = true;
        }
    }

    fn command_failed(&mut self, slot: u8, device_error: bool, bus_error: u32) {
        let bits = bus_error | if device_error { pxis::TFES } else { 0 };
        self.raise(bits);
        if bus_error != 0 {
            self.tfd |= pxtfd::ERR;
        }
        self.report(AhciEvent::CommandError {
            port: self.index(),
            slot,
            pxtfd: self.tfd,
            pxis: bits,
        });
        self.set_ccs(slot);
        self.halted = true;
        self.stats.errors += 1;
    }

    fn command_done(&mut self, slot: u8, write: bool, bytes: u64) {
        if write {
            self.stats.bytes_written += bytes;
        } else {
            self.stats.bytes_read += bytes;
        }
        self.ci &= !(1u32 << slot);
    }

    fn trace_complete(&self, slot: u8, ok: bool) {
        self.tracer.emit(|| {
            Event::new(Layer::Ahci, "complete")
                .port(self.index())
                .slot(slot)
                .flag("ok", ok)
                .hex32("pxci", self.ci)
                .hex32("pxtfd", self.tfd)
        });
    }
}
