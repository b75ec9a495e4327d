//! The checks on what the HBA and the drives do to guest memory: the areas the guest gave
//! the HBA ([`Areas`]), guest memory that asserts every write lands in one
//! ([`CheckedMemory`]), and the drive wrapper that records each command's buffers and counts
//! what the drive holds ([`Recorded`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use satavm::ata::EmulatedDrive;
use satavm::mem::{GuestMemory, MemError};
use satavm::sata::{Completion, DataPath, RegisterD2h, RegisterH2d, SataDevice, Submission};

use crate::pool::{failed, lock_slot, Pending, Ram, SharedDrive};

pub(crate) type Range = (u64, u64);

/// The areas the HBA may write to, and who checks them.
#[derive(Debug, Default)]
pub(crate) struct Areas {
    /// Command lists and received-FIS areas as the registers say now.
    pub(crate) bases: Vec<Range>,
    /// Per (port, slot): commands the drive holds, and the PRDT buffers of all of them.
    pub(crate) commands: HashMap<(u8, u8), (usize, Vec<Range>)>,
    /// Per port: the buffers of aborted commands whose host I/O may still land while the
    /// drive is draining (AHCI keeps PxCMD.CR set meanwhile); dropped when it is done.
    pub(crate) draining: HashMap<u8, Vec<Range>>,
}

impl Areas {
    pub(crate) fn allows(&self, addr: u64, len: u64) -> bool {
        let inside = |&(a, n): &Range| addr >= a && addr.saturating_add(len) <= a.saturating_add(n);
        self.bases.iter().any(inside)
            || self
                .commands
                .values()
                .any(|(_, ranges)| ranges.iter().any(inside))
            || self.draining.values().flatten().any(inside)
    }
    pub(crate) fn submitted(&mut self, port: u8, slot: u8, data: &DataPath) {
        let e = self.commands.entry((port, slot)).or_default();
        e.0 += 1;
        e.1.extend(data.entries().iter().map(|p| (p.addr, u64::from(p.len))));
    }
    /// One command of `slot` ended. Its buffers stay allowed while the slot has others
    /// (a guest may reuse a slot with another NCQ tag; which ended is not known here).
    pub(crate) fn ended(&mut self, port: u8, slot: u8) {
        if let Some(e) = self.commands.get_mut(&(port, slot)) {
            e.0 = e.0.saturating_sub(1);
            if e.0 == 0 {
                self.commands.remove(&(port, slot));
            }
        }
    }
    /// Everything in flight on `port` was aborted: its buffers stay allowed until the drive
    /// has drained ([`Areas::drained`]).
    pub(crate) fn all_aborted(&mut self, port: u8) {
        let mut kept = Vec::new();
        self.commands.retain(|(p, _), (_, ranges)| {
            if *p == port {
                kept.append(ranges);
            }
            *p != port
        });
        self.draining.entry(port).or_default().append(&mut kept);
    }
    /// The drive of `port` has no aborted I/O in flight any more.
    pub(crate) fn drained(&mut self, port: u8) {
        self.draining.remove(&port);
    }
}

/// Guest memory that checks every write against [`Areas`].
pub(crate) struct CheckedMemory {
    pub(crate) inner: Arc<Ram>,
    pub(crate) areas: Arc<Mutex<Areas>>,
}

impl GuestMemory for CheckedMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.inner.bytes.read(addr, buf)
    }
    fn write(&self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        let areas = self.areas.lock().unwrap_or_else(|e| e.into_inner());
        assert!(
            areas.allows(addr, data.len() as u64),
            "guest memory write {addr:#x}+{:#x} outside the areas the guest gave the HBA: {areas:?}",
            data.len()
        );
        self.inner.write(addr, data)
    }
}

/// The real drive, with its commands' PRDT buffers recorded in [`Areas`] and the commands
/// it holds counted.
pub(crate) struct Recorded {
    pub(crate) port: u8,
    pub(crate) inner: SharedDrive,
    pub(crate) areas: Arc<Mutex<Areas>>,
    pub(crate) srst: bool,
    /// Commands the drive accepted to finish later and has not finished.
    pub(crate) pending: Arc<Pending>,
}

impl Recorded {
    pub(crate) fn areas(&self) -> std::sync::MutexGuard<'_, Areas> {
        self.areas.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut EmulatedDrive) -> T) -> T {
        let mut slot = lock_slot(&self.inner);
        f(&mut slot.pooled.as_mut().expect("drive given back").drive)
    }
    /// The drive was reset: nothing in flight, no completion to come.
    pub(crate) fn none_pending(&self) {
        self.pending.clear();
        lock_slot(&self.inner).ready.clear();
    }
}

impl SataDevice for Recorded {
    fn comreset(&mut self) -> RegisterD2h {
        let d2h = self.with(|d| d.comreset());
        self.srst = false;
        self.areas().all_aborted(self.port);
        self.none_pending();
        d2h
    }
    fn device_control(&mut self, fis: &RegisterH2d) -> Option<RegisterD2h> {
        let r = self.with(|d| d.device_control(fis));
        let srst = fis.control & satavm::ata::registers::control::SRST != 0;
        if srst != self.srst {
            // Setting and clearing SRST both reset the drive (everything in flight aborted).
            self.srst = srst;
            self.areas().all_aborted(self.port);
            self.none_pending();
        }
        r
    }
    fn submit(&mut self, slot: u8, fis: &RegisterH2d, data: DataPath) -> Submission {
        self.areas().submitted(self.port, slot, &data);
        let queued = matches!(
            satavm::ata::command::protocol(fis.command, fis.features),
            Some(satavm::ata::command::Protocol::Fpdma(_))
        );
        let s = self.with(|d| d.submit(slot, fis, data));
        match &s {
            Submission::Complete(c) => {
                self.areas().ended(self.port, slot);
                if queued && failed(c) {
                    self.pending.queued_failed();
                }
            }
            Submission::Pending { accepted } => {
                self.pending.submitted(slot, queued);
                let refused =
                    accepted.is_some_and(|d| d.status & satavm::ata::registers::status::ERR != 0);
                if queued && refused {
                    self.pending.queued_failed();
                }
            }
        }
        s
    }
    fn poll_completions(&mut self) -> Vec<Completion> {
        let mut done = {
            let mut slot = lock_slot(&self.inner);
            let fresh = slot
                .pooled
                .as_mut()
                .expect("drive given back")
                .drive
                .poll_completions();
            self.pending.finished(&fresh);
            let mut done = std::mem::take(&mut slot.ready);
            done.extend(fresh);
            done
        };
        let mut areas = self.areas();
        for c in &done {
            areas.ended(self.port, c.slot);
        }
        done.shrink_to_fit();
        done
    }
    fn abort_all(&mut self) {
        self.with(|d| d.abort_all());
        self.areas().all_aborted(self.port);
        self.none_pending();
    }
    fn draining(&self) -> bool {
        let draining = self.with(|d| d.draining());
        if !draining {
            self.areas().drained(self.port);
        }
        draining
    }
    fn next_deadline(&self) -> Option<std::time::Instant> {
        self.with(|d| d.next_deadline())
    }
    fn ready_fd(&self) -> Option<std::os::fd::RawFd> {
        self.with(|d| d.ready_fd())
    }
    fn engine_stats(&self) -> Option<(&'static str, satavm::block::EngineStats)> {
        self.with(|d| Some(d.engine_stats()))
    }
}
