//! Mapped registers (`--registers mapped`): the HBA's register file (ABAR, AHCI 1.3.1 section
//! 3) kept in a page pair that the guest reads as memory, so a register read costs no exit.
//!
//! AHCI register reads have no side effects (3.1, 3.3: every register is read-only,
//! read-write or write-one-to-clear; none changes on a read), so a read can be answered from
//! a copy. The VMM maps the page pair at ABAR as a read-only KVM memslot
//! (KVM_MEM_READONLY): guest loads are plain memory loads, guest stores fault and reach
//! satavm as MMIO exits, handled as in trap mode (spec checks and trace see every write).
//! Reads are not traced in this mode: satavm never sees them, and NCQ completion
//! aggregation learns the guest's pace from its register writes alone.
//!
//! Why the guest never reads a stale register that matters:
//! - Every change to the register file happens under the function's lock, in a register
//!   write, a completion pass or a configuration write, and each of those ends in
//!   [`Publisher::publish`] *before* it signals an interrupt: PxCI/PxSACT bits cleared,
//!   PxIS/IS bits set and the D2H/SDB FIS written to guest memory all precede the MSI (or
//!   INTx) that tells the guest to look. The guest cannot act on an event before it is told.
//! - Each register is one aligned 32-bit store (release ordering) into the page, so a guest
//!   load sees the old or the new value, never a mix; dwords change one by one, which is no
//!   weaker than the hardware (a guest reads one register at a time).
//! - A store made while handling a guest's MMIO write is done before that vCPU resumes, so
//!   the guest's next read of any register sees it (program order on that thread, cache
//!   coherence towards the others).
//! - Memory type: the guest maps ABAR uncached while satavm writes the page through a
//!   cached (write-back) mapping. On Intel EPT, KVM gives guest RAM and memslots write-back
//!   with guest PAT ignored unless a non-coherent DMA device is assigned
//!   (vmx_get_mt_mask); on AMD NPT, guest PAT combines with the host's write-back type and an
//!   uncached guest load goes to memory, which x86 cache coherence keeps in step with the
//!   host core's cached stores (the same aliasing QEMU relies on for flash in ROMD mode, a
//!   read-only memslot the guest maps uncached). The rig's Linux guests run on AMD NPT with
//!   this mode, which would time out commands if a completion's PxCI/PxIS were not seen.
//!
//! What this mode cannot do: posted PxSACT/PxCI writes (the ioeventfd doorbells). libahci's
//! interrupt handler reads PxSACT/PxCI and completes every tag it does not see set
//! (ata_qc_complete_multiple), so a posted issue not yet applied would be read from the page
//! as already complete. Mapped registers therefore always take PxSACT/PxCI writes as exits.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::pci_function::ABAR_SIZE;
use super::regs::hba;

/// Dwords in ABAR.
pub const DWORDS: usize = (ABAR_SIZE / 4) as usize;

/// Where the register file is published: `DWORDS` dwords, ABAR offset `4 * i` at index `i`.
/// The VMM's implementation is the memslot page pair; [`HeapRegisterPage`] is the in-process
/// one tests read.
pub trait RegisterPage: Send + Sync {
    fn dwords(&self) -> &[AtomicU32];

    /// The dword at ABAR offset `at` as a guest load sees it now.
    fn load(&self, at: u64) -> u32 {
        self.dwords()
            .get((at / 4) as usize)
            .map_or(0, |d| d.load(Ordering::Acquire))
    }
}

/// A register page on the heap.
#[derive(Debug)]
pub struct HeapRegisterPage(Box<[AtomicU32]>);

impl Default for HeapRegisterPage {
    fn default() -> Self {
        HeapRegisterPage((0..DWORDS).map(|_| AtomicU32::new(0)).collect())
    }
}

impl RegisterPage for HeapRegisterPage {
    fn dwords(&self) -> &[AtomicU32] {
        &self.0
    }
}

/// Keeps a [`RegisterPage`] equal to the register file: what it last stored, so a publish
/// stores only the dwords that changed.
pub(super) struct Publisher {
    page: Arc<dyn RegisterPage>,
    shadow: Vec<u32>,
    /// Dword stores so far.
    stores: u64,
}

impl Publisher {
    pub(super) fn new(page: Arc<dyn RegisterPage>) -> Self {
        let shadow = page
            .dwords()
            .iter()
            .map(|d| d.load(Ordering::Relaxed))
            .collect();
        Publisher {
            page,
            shadow,
            stores: 0,
        }
    }

    /// Store every register of the global area and of `ports` ports, as `read` (the HBA's
    /// register read) gives them, where it differs from the page.
    pub(super) fn publish(&mut self, ports: usize, read: impl Fn(u64) -> u32) {
        let global = (0..hba::PORTS_BASE).step_by(4);
        let port_area = (0..ports.min(32) as u64).flat_map(|p| {
            let base = hba::PORTS_BASE + p * hba::PORT_SIZE;
            (base..base + hba::PORT_SIZE).step_by(4)
        });
        let dwords = self.page.dwords();
        for at in global.chain(port_area) {
            let i = (at / 4) as usize;
            let (Some(shadow), Some(dword)) = (self.shadow.get_mut(i), dwords.get(i)) else {
                continue;
            };
            let value = read(at);
            if *shadow != value {
                *shadow = value;
                dword.store(value, Ordering::Release);
                self.stores += 1;
            }
        }
    }

    /// Dword stores made so far.
    pub(super) fn stores(&self) -> u64 {
        self.stores
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_dwords_are_stored_and_ports_past_the_count_are_left_alone() {
        let page = Arc::new(HeapRegisterPage::default());
        let mut p = Publisher::new(page.clone());
        p.publish(1, |at| at as u32);
        assert_eq!(page.load(0x0c), 0x0c);
        assert_eq!(page.load(0x100 + 0x38), 0x138);
        assert_eq!(page.load(0x180), 0, "port 1 is not published");
        let first = p.stores();
        assert_eq!(
            first,
            (0x100 / 4 + 0x80 / 4) - 1,
            "offset 0 reads 0: no store"
        );
        p.publish(1, |at| if at == 0x138 { 7 } else { at as u32 });
        assert_eq!(p.stores(), first + 1);
        assert_eq!(page.load(0x138), 7);
        assert_eq!(page.load(ABAR_SIZE), 0, "outside the page");
    }
}
