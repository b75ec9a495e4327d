//! What a finished command does to its port (AHCI 1.3.1 sections 5.3 and 6): FISes update
//! PxTFD and land in the received-FIS area, PxIS bits are raised, PxCI or PxSACT bits clear,
//! PRDBC is written back; a failed command halts the port (6.2.2.1).
//!
//! The rules live here; the port's registers stay the port's: it is reached only through
//! [`CompletionTarget`], which [`super::port::Port`] implements.

use std::time::Instant;

use super::regs::pxis;
use crate::sata::fis::status;
use crate::sata::{Completion, DataPath, DataPathError, Fis, PioSetup, RegisterD2h, SetDeviceBits};

/// A command the device holds, as the port issued it.
#[derive(Debug, Clone)]
pub struct InFlight {
    /// Issued with its PxSACT bit set (native command queuing).
    pub ncq: bool,
    /// The command's PRDT, to learn about overflows and host bus errors afterwards.
    pub data: DataPath,
    /// Some PRD had its I bit set.
    pub prd_interrupt: bool,
    /// The command header's W bit: data moves host to device (for the byte counters).
    pub write: bool,
    /// When the port sent the command to the device.
    pub issued_at: Instant,
}

/// What finishing commands may do to a port.
pub trait CompletionTarget {
    /// The record of the command in `slot`, which is finished now.
    fn take_in_flight(&mut self, slot: u8) -> Option<InFlight>;
    /// A Register D2H FIS: PxTFD, the RFIS area, PxIS.DHRS if I is set.
    fn receive_d2h(&mut self, d2h: &RegisterD2h);
    /// A PIO Setup FIS: PxTFD takes E_Status (10.5.11), the PSFIS area, PxIS.PSS if I is set.
    fn receive_pio_setup(&mut self, p: &PioSetup);
    /// A Set Device Bits FIS (10.5.7): PxTFD status and error, PxSACT bits clear, PxSNTF,
    /// the SDBFIS area, PxIS.SDBS if I is set.
    fn receive_sdb(&mut self, s: &SetDeviceBits);
    /// Copy `fis` into the received-FIS area.
    fn post_fis(&mut self, fis: &Fis);
    /// Set PxIS bits.
    fn raise(&mut self, bits: u32);
    /// Write PRDBC of `slot` (4.2.2); on failure the port takes a host bus fatal error.
    fn write_prdbc(&mut self, slot: u8, bytes: u32);
    /// The command in `slot` failed (6.2.2.1): PxIS gets TFES and `bus_error` (OFS or HBFS,
    /// which also set PxTFD.ERR), CCS names the slot, its PxCI/PxSACT bit stays, and the port
    /// issues nothing more until software clears PxCMD.ST.
    fn command_failed(&mut self, slot: u8, device_error: bool, bus_error: u32);
    /// The command in `slot` ended well having moved `bytes` in the direction `write` says:
    /// the byte counters, and its PxCI bit clears.
    fn command_done(&mut self, slot: u8, write: bool, bytes: u64);
    /// Trace the end of the command in `slot`.
    fn trace_complete(&self, slot: u8, ok: bool);
}

/// Apply `done`, the completions of one pass, to `port`. Set Device Bits FISes of several
/// queued commands are coalesced: the port posts one SDB FIS carrying the OR of their SActive
/// bits and raises PxIS.SDBS once.
pub fn apply(port: &mut impl CompletionTarget, done: Vec<Completion>) {
    let mut sdb: Option<SetDeviceBits> = None;
    for c in done {
        let Some(record) = port.take_in_flight(c.slot) else {
            log::warn!(
                "AHCI: completion for slot {} that the port did not issue",
                c.slot
            );
            continue;
        };
        let mut device_error = false;
        for fis in &c.fises {
            match fis {
                Fis::RegisterD2h(d) => {
                    port.receive_d2h(d);
                    device_error |= d.status & status::ERR != 0;
                }
                Fis::PioSetup(p) => {
                    port.receive_pio_setup(p);
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
            port.write_prdbc(c.slot, c.bytes_transferred);
        }
        let ok = !device_error && bus_error == 0;
        if ok {
            if record.prd_interrupt && c.bytes_transferred > 0 {
                port.raise(pxis::DPS);
            }
            port.command_done(c.slot, record.write, u64::from(c.bytes_transferred));
        } else {
            port.command_failed(c.slot, device_error, bus_error);
        }
        port.trace_complete(c.slot, ok);
    }
    if let Some(s) = sdb {
        port.receive_sdb(&s);
    }
}

/// A completion [`super::sdb_aggregation`] may hold back: a queued command that ended well,
/// with nothing to report but its SDB FIS (no error, no interrupting FIS, no PRD interrupt,
/// no data-path error).
pub fn holdable(record: Option<&InFlight>, c: &Completion) -> bool {
    let Some(record) = record else {
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
