//! The HBA behind ABAR: the generic host control registers (AHCI 1.3.1 section 3.1), HBA reset
//! (10.4.3), and dispatch of port register accesses to the ports.

use super::port::Port;
use super::regs::{cap, ghc, hba as reg, AHCI_VERSION_1_3_1, COMMAND_SLOTS};

/// Interrupt work after a register access or a completion pass.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InterruptState {
    /// Level of the HBA's interrupt: IS != 0 and GHC.IE (drives INTx).
    pub level: bool,
    /// Ports with an interrupt event to signal (edge; one MSI each), GHC.IE permitting.
    pub edges: u32,
}

/// The HBA: global registers and the ports.
#[derive(Debug)]
pub struct Hba {
    cap: u32,
    /// GHC bits the HBA keeps (IE); AE is hard-wired to 1 (CAP.SAM), HR self-clears, MRSM is
    /// reported by the PCI function from the MSI state.
    ghc: u32,
    /// IS: one bit per port with an enabled interrupt pending (3.1.3), write-one-to-clear.
    is: u32,
    pi: u32,
    pub(super) ports: Vec<Port>,
    /// GHC.IE went 0 -> 1: pending port interrupts become events.
    ie_rising: bool,
    /// An HBA reset waits for aborted host I/O to drain: GHC.HR reads 1 until then.
    reset_pending: bool,
}

impl Hba {
    /// An HBA with one port per entry of `ports` (1 to 32 of them).
    pub fn new(ports: Vec<Port>) -> Self {
        let np = ports.len().clamp(1, 32) as u32;
        // No CAP.SSNTF: PxSNTF only matters behind a port multiplier, which satavm has none
        // of, and with SSNTF set Linux reads and writes PxSNTF on every SDB FIS interrupt
        // (sata_async_notification): two exits per interrupt. Without it Linux looks at the
        // received SDB FIS in memory instead. QEMU's ich9-ahci does not set it either.
        let cap = cap::S64A
            | cap::SNCQ
            | cap::SCLO
            | cap::ISS_GEN3 << cap::ISS_SHIFT
            | cap::SAM
            | ((COMMAND_SLOTS as u32 - 1) << cap::NCS_SHIFT)
            | ((np - 1) & cap::NP_MASK);
        let pi = if np == 32 { u32::MAX } else { (1 << np) - 1 };
        Hba {
            cap,
            ghc: 0,
            is: 0,
            pi,
            ports,
            ie_rising: false,
            reset_pending: false,
        }
    }

    /// Number of ports.
    pub fn port_count(&self) -> usize {
        self.ports.len()
    }

    fn interrupts_enabled(&self) -> bool {
        self.ghc & ghc::IE != 0
    }

    /// Read the dword register at `offset` (dword aligned). `mrsm` is GHC.MRSM as the PCI
    /// function's MSI state sets it.
    pub fn read(&self, offset: u64, mrsm: bool) -> u32 {
        if offset >= reg::PORTS_BASE {
            return match self.port_at(offset) {
                Some((p, off)) => self.ports.get(p).map_or(0, |port| port.read(off)),
                None => 0,
            };
        }
        match offset {
            reg::CAP => self.cap,
            reg::GHC => {
                let hr = if self.reset_pending { ghc::HR } else { 0 };
                ghc::AE | self.ghc | hr | if mrsm { ghc::MRSM } else { 0 }
            }
            reg::IS => self.is,
            reg::PI => self.pi,
            reg::VS => AHCI_VERSION_1_3_1,
            // CCC, enclosure management, CAP2 and BIOS/OS handoff are not implemented.
            _ => 0,
        }
    }

    /// Write the bits of `value` selected by `mask` to the dword register at `offset`.
    pub fn write(&mut self, offset: u64, value: u32, mask: u32) {
        if offset >= reg::PORTS_BASE {
            if let Some((p, off)) = self.port_at(offset) {
                if let Some(port) = self.ports.get_mut(p) {
                    port.write(off, value, mask);
                }
            }
            return;
        }
        let ones = value & mask;
        match offset {
            reg::GHC => {
                if ones & ghc::HR != 0 {
                    self.reset();
                    return;
                }
                let ie = ((self.ghc & !mask) | ones) & ghc::IE;
                self.ie_rising |= ie != 0 && !self.interrupts_enabled();
                self.ghc = ie;
            }
            reg::IS => self.is &= !ones,
            _ => {}
        }
    }

    /// GHC.HR (10.4.3): GHC.IE and IS clear, every port resets (registers and COMRESET);
    /// CAP and PI keep their values. The reset completes at once and HR reads back 0 — unless
    /// a device still has aborted host I/O in flight that may write guest memory: then HR
    /// reads 1 until it has drained (software polls HR, up to 1 s in Linux).
    pub fn reset(&mut self) {
        self.ghc = 0;
        self.is = 0;
        self.ie_rising = false;
        // Every port carries the same event hook: one report for the HBA.
        if let Some(p) = self.ports.first() {
            p.report(super::events::AhciEvent::HbaReset);
        }
        for p in &mut self.ports {
            p.hba_reset();
        }
        self.reset_pending = self.ports.iter().any(Port::draining);
    }

    /// (port index, offset within the port) of an ABAR offset in the port area.
    fn port_at(&self, offset: u64) -> Option<(usize, u64)> {
        let rel = offset.checked_sub(reg::PORTS_BASE)?;
        let p = (rel / reg::PORT_SIZE) as usize;
        (p < 32 && self.pi & (1 << p) != 0).then_some((p, rel % reg::PORT_SIZE))
    }

    /// A guest access to an HBA register at `now` (ports learn the guest's pace from it).
    pub fn note_access(&mut self, now: std::time::Instant) {
        for p in &mut self.ports {
            p.note_access(now);
        }
    }

    /// The earliest time a port needs its completions processed without a device signal.
    pub fn next_deadline(&self) -> Option<std::time::Instant> {
        self.ports.iter().filter_map(|p| p.next_deadline()).min()
    }

    /// Collect device completions on every port; finish an HBA reset whose drain is over.
    pub fn process_completions(&mut self) {
        for p in &mut self.ports {
            p.process_completions();
        }
        if self.reset_pending && !self.ports.iter().any(Port::draining) {
            self.reset_pending = false;
        }
    }

    /// The ports' devices' own readiness descriptors (for the event loop).
    pub fn device_ready_fds(&self) -> Vec<std::os::fd::RawFd> {
        self.ports
            .iter()
            .flat_map(|p| p.device_ready_fd().into_iter().chain(p.retired_ready_fds()))
            .collect()
    }

    /// Update IS from the ports and report what to signal (3.1.3: a port's IS bit is set
    /// while any of its enabled PxIS bits is set).
    pub fn interrupt_state(&mut self) -> InterruptState {
        let mut edges = 0;
        let rising = std::mem::take(&mut self.ie_rising);
        for (i, p) in self.ports.iter_mut().enumerate() {
            let fresh = p.take_new_events();
            if p.interrupt_pending() {
                self.is |= 1 << i;
                if fresh != 0 || rising {
                    edges |= 1 << i;
                }
            }
        }
        let enabled = self.interrupts_enabled();
        InterruptState {
            level: enabled && self.is != 0,
            edges: if enabled { edges } else { 0 },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ahci::mock::{layout, mock};
    use crate::ahci::regs::{port as preg, pxcmd, pxis};
    use crate::mem::VecMemory;

    fn hba(n: usize) -> Hba {
        let mem = Arc::new(VecMemory::new(layout::MEM_SIZE));
        Hba::new(
            (0..n)
                .map(|i| Port::new(i as u8, mock().0, mem.clone()))
                .collect(),
        )
    }

    const P0: u64 = reg::PORTS_BASE;

    #[test]
    fn no_snotification_register_advertised() {
        assert_eq!(hba(1).read(reg::CAP, false) & cap::SSNTF, 0);
    }

    #[test]
    fn global_registers_after_reset() {
        let h = hba(2);
        let cap = h.read(reg::CAP, false);
        assert_eq!(cap & cap::NP_MASK, 1);
        assert_eq!((cap >> cap::NCS_SHIFT) & 0x1f, 31);
        assert_ne!(cap & cap::SNCQ, 0);
        assert_ne!(cap & cap::SAM, 0);
        assert_eq!(h.read(reg::GHC, false), ghc::AE);
        assert_eq!(h.read(reg::GHC, true), ghc::AE | ghc::MRSM);
        assert_eq!(h.read(reg::PI, false), 0b11);
        assert_eq!(h.read(reg::VS, false), 0x0001_0301);
        assert_eq!(h.read(reg::IS, false), 0);
        for r in [
            reg::CCC_CTL,
            reg::CCC_PORTS,
            reg::EM_LOC,
            reg::EM_CTL,
            reg::CAP2,
            reg::BOHC,
        ] {
            assert_eq!(h.read(r, false), 0);
        }
        // An unimplemented port reads 0.
        assert_eq!(h.read(P0 + 2 * 0x80 + preg::TFD, false), 0);
        assert_eq!(h.read(P0 + preg::TFD, false), 0x7f);
        assert_eq!(hba(32).read(reg::PI, false), u32::MAX);
    }

    #[test]
    fn ghc_is_and_reset() {
        let mut h = hba(1);
        h.write(reg::GHC, 0, u32::MAX);
        assert_eq!(
            h.read(reg::GHC, false) & ghc::AE,
            ghc::AE,
            "AE is read-only 1 (CAP.SAM)"
        );
        h.write(reg::GHC, ghc::IE, u32::MAX);
        h.write(P0 + preg::CLB, 0x1000, u32::MAX);
        h.write(P0 + preg::IE, pxis::DHRS, u32::MAX);
        h.write(P0 + preg::CMD, pxcmd::FRE, u32::MAX);
        h.ports[0].raise(pxis::DHRS);
        let s = h.interrupt_state();
        assert_eq!(
            s,
            InterruptState {
                level: true,
                edges: 1
            }
        );
        assert_eq!(h.read(reg::IS, false), 1);
        // IS is recomputed from the port while its PxIS bit stays set.
        h.write(reg::IS, 1, u32::MAX);
        assert!(h.interrupt_state().level);
        h.write(P0 + preg::IS, pxis::DHRS, u32::MAX);
        h.write(reg::IS, 1, u32::MAX);
        assert_eq!(h.interrupt_state(), InterruptState::default());
        // HBA reset: GHC.IE, port registers clear; CLB stays; HR reads back 0.
        h.write(reg::GHC, ghc::HR, u32::MAX);
        assert_eq!(h.read(reg::GHC, false), ghc::AE);
        assert_eq!(h.read(P0 + preg::CMD, false) & pxcmd::FRE, 0);
        assert_eq!(h.read(P0 + preg::IE, false), 0);
        assert_eq!(h.read(P0 + preg::TFD, false), 0x7f);
        assert_eq!(h.read(P0 + preg::CLB, false), 0x1000);
        assert_eq!(h.ports[0].stats().resets, 1);
    }

    #[test]
    fn enabling_interrupts_signals_what_is_pending() {
        let mut h = hba(1);
        h.write(P0 + preg::IE, pxis::DHRS, u32::MAX);
        h.ports[0].raise(pxis::DHRS);
        assert_eq!(h.interrupt_state().edges, 0, "GHC.IE is clear");
        h.write(reg::GHC, ghc::IE, u32::MAX);
        assert_eq!(h.interrupt_state().edges, 1);
        assert_eq!(h.interrupt_state().edges, 0, "one edge per event");
    }
}
