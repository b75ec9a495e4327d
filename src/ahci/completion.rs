//! What a finished command does to its port (AHCI 1.3.1 sections 5.3 and 6): FISes update
//! PxTFD and land in the received-FIS area, PxIS bits are raised, PxCI or PxSACT bits clear,
//! PRDBC is written back; a failed command halts the port (6.2.2.1).

use super::command;
use super::port::{InFlight, Port};
use super::regs::{pxis, pxtfd};
use crate::ata::registers::status;
use crate::sata::fis::SDB_STATUS_MASK;
use crate::sata::{Completion, DataPathError, Fis, SetDeviceBits};
use crate::trace::{Event, Layer};

/// Apply `done`, the completions of one pass, to `port`. Set Device Bits FISes of several
/// queued commands are coalesced: the port posts one SDB FIS carrying the OR of their SActive
/// bits and raises PxIS.SDBS once.
pub(super) fn apply(port: &mut Port, done: Vec<Completion>) {
    let mut sdb: Option<SetDeviceBits> = None;
    for c in done {
        let slot = usize::from(c.slot);
        let Some(record) = port.in_flight.get_mut(slot).and_then(Option::take) else {
            log::warn!(
                "AHCI: completion for slot {} that the port did not issue",
                c.slot
            );
            continue;
        };
        let bit = 1u32 << slot;
        let mut device_error = false;
        for fis in &c.fises {
            match fis {
                Fis::RegisterD2h(d) => {
                    port.receive_d2h(d);
                    device_error |= d.status & status::ERR != 0;
                }
                Fis::PioSetup(p) => {
                    // The status after the data FIS that follows is E_Status (10.5.11).
                    port.tfd = u32::from(p.e_status) | u32::from(p.error) << pxtfd::ERR_SHIFT;
                    port.post_fis(fis);
                    if p.interrupt {
                        port.raise(pxis::PSS);
                    }
                    device_error |= (p.status | p.e_status) & status::ERR != 0;
                }
                Fis::DmaSetup(d) => {
                    port.post_fis(fis);
                    if d.interrupt {
                        port.raise(pxis::DSS);
                    }
                }
                Fis::SetDeviceBits(s) => {
                    device_error |= s.status & status::ERR != 0;
                    sdb = Some(merge(sdb, s));
                }
                Fis::Data(_) | Fis::Bist(_) | Fis::RegisterH2d(_) => {
                    log::warn!("AHCI: ignoring {:#04x} FIS in a completion", fis.fis_type());
                }
            }
        }
        let bus_error = match record.data.first_error() {
            Some(DataPathError::Overflow { .. }) => pxis::OFS,
            Some(DataPathError::Memory(_)) => pxis::HBFS,
            None => 0,
        };
        if !record.ncq {
            // PRDBC (4.2.2): bytes moved, for commands that are not queued.
            let clb = port.clb();
            if command::write_prdbc(&*port.mem, clb, c.slot, c.bytes_transferred).is_err() {
                port.raise(pxis::HBFS);
                port.halted = true;
            }
        }
        if device_error || bus_error != 0 {
            // 6.2.2.1: TFES, the slot's PxCI (or PxSACT) bit stays, CCS names it, the port
            // issues nothing more until software clears PxCMD.ST.
            port.raise(bus_error | if device_error { pxis::TFES } else { 0 });
            if bus_error != 0 {
                port.tfd |= pxtfd::ERR;
            }
            port.set_ccs(c.slot);
            port.halted = true;
            port.stats.errors += 1;
        } else {
            let bytes = u64::from(c.bytes_transferred);
            if record.write {
                port.stats.bytes_written += bytes;
            } else {
                port.stats.bytes_read += bytes;
            }
            if record.prd_interrupt && c.bytes_transferred > 0 {
                port.raise(pxis::DPS);
            }
            port.ci &= !bit;
        }
        port.tracer.emit(|| {
            Event::new(Layer::Ahci, "complete")
                .port(port.index())
                .slot(c.slot)
                .flag("ok", !(device_error || bus_error != 0))
                .hex32("pxci", port.ci)
                .hex32("pxtfd", port.tfd)
        });
    }
    if let Some(s) = sdb {
        receive_sdb(port, &s);
    }
}

/// A completion [`super::sdb_aggregation`] may hold back: a queued command that ended well,
/// with nothing to report but its SDB FIS (no error, no interrupting FIS, no PRD interrupt,
/// no data-path error).
pub(super) fn holdable(in_flight: &[Option<InFlight>], c: &Completion) -> bool {
    let Some(Some(record)) = in_flight.get(usize::from(c.slot)) else {
        return false;
    };
    record.ncq
        && !record.prd_interrupt
        && record.data.first_error().is_none()
        && c.fises.iter().all(|f| match f {
            Fis::SetDeviceBits(s) => s.status & status::ERR == 0,
            Fis::DmaSetup(d) => !d.interrupt,
            _ => false,
        })
}

/// Fold `next` into the SDB FIS collected so far: SActive bits OR together, and the status
/// and error of a failing FIS win over those of successful ones.
fn merge(acc: Option<SetDeviceBits>, next: &SetDeviceBits) -> SetDeviceBits {
    let Some(mut a) = acc else {
        return *next;
    };
    a.sactive |= next.sactive;
    a.interrupt |= next.interrupt;
    a.notification |= next.notification;
    if a.status & status::ERR == 0 {
        a.status = next.status;
        a.error = next.error;
    }
    a
}

/// A Set Device Bits FIS (10.5.7): status bits 6:4 and 2:0 and the error register go to
/// PxTFD (BSY and DRQ stay), SActive bits clear in PxSACT, N sets PxSNTF.
fn receive_sdb(port: &mut Port, s: &SetDeviceBits) {
    let keep = !u32::from(SDB_STATUS_MASK) & 0xff;
    port.tfd = (port.tfd & keep) | u32::from(s.status & SDB_STATUS_MASK);
    port.tfd = (port.tfd & 0xff) | u32::from(s.error) << pxtfd::ERR_SHIFT;
    port.sact &= !s.sactive;
    if s.notification {
        port.sntf |= 1 << (s.pm_port & 0xf);
    }
    port.post_fis(&Fis::SetDeviceBits(*s));
    if s.interrupt {
        port.raise(pxis::SDBS);
    }
}
