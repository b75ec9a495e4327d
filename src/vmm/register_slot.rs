//! The memslot behind mapped registers (`--registers mapped`, see
//! [`crate::ahci::register_page`]): a page pair of host memory that the AHCI function keeps
//! equal to its register file, mapped into the guest at ABAR with KVM_MEM_READONLY, so
//! guest loads from ABAR never exit and guest stores exit as KVM_EXIT_MMIO
//! (Documentation/virt/kvm/api.rst, KVM_SET_USER_MEMORY_REGION). The VMM moves the slot
//! with ABAR ([`BarFollower`]) and removes it while memory decoding is off.

use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_READONLY};
use kvm_ioctls::VmFd;
use vm_memory::mmap::MmapRegion;

use super::bus::BarFollower;
use crate::ahci::register_page::{RegisterPage, DWORDS};
use crate::ahci::ABAR_SIZE;

/// The memslot number (guest RAM uses the first few).
pub const AHCI_REGISTER_SLOT: u32 = 16;

/// The register page pair and where it is mapped.
pub struct RegisterSlot {
    vm: Arc<VmFd>,
    region: MmapRegion,
    /// The guest-physical address it is mapped at now.
    mapped: Mutex<Option<u64>>,
}

impl RegisterSlot {
    /// A zeroed page pair (anonymous memory, page aligned), not mapped yet. Fails if KVM
    /// has no read-only memslots (KVM_CAP_READONLY_MEM).
    pub fn new(vm: Arc<VmFd>) -> std::io::Result<Self> {
        if !vm.check_extension(kvm_ioctls::Cap::ReadonlyMem) {
            return Err(std::io::Error::other(
                "this KVM has no read-only memslots (KVM_CAP_READONLY_MEM)",
            ));
        }
        let region = MmapRegion::<()>::new(ABAR_SIZE as usize)
            .map_err(|e| std::io::Error::other(format!("register page: {e}")))?;
        Ok(RegisterSlot {
            vm,
            region,
            mapped: Mutex::new(None),
        })
    }

    fn set_slot(&self, guest_phys_addr: u64, memory_size: u64) -> Result<(), kvm_ioctls::Error> {
        let r = kvm_userspace_memory_region {
            slot: AHCI_REGISTER_SLOT,
            flags: KVM_MEM_READONLY,
            guest_phys_addr,
            memory_size,
            userspace_addr: self.region.as_ptr() as u64,
        };
        // SAFETY: the region is a live mapping of ABAR_SIZE bytes owned by `self`; the slot
        // is deleted in Drop before the mapping goes away.
        unsafe { self.vm.set_user_memory_region(r) }
    }
}

impl RegisterPage for RegisterSlot {
    fn dwords(&self) -> &[AtomicU32] {
        let ptr = self.region.as_ptr() as *const AtomicU32;
        // SAFETY: the region is ABAR_SIZE bytes (DWORDS dwords) of page-aligned anonymous
        // memory that lives as long as `self`; AtomicU32 has u32's layout; the guest only
        // reads it (the slot is read-only) and satavm only touches it through atomics.
        unsafe { std::slice::from_raw_parts(ptr, DWORDS) }
    }
}

impl BarFollower for RegisterSlot {
    fn bar_moved(&self, base: Option<u64>) {
        let mut mapped = self.mapped.lock().unwrap_or_else(|e| e.into_inner());
        if *mapped == base {
            return;
        }
        if let Some(old) = mapped.take() {
            if let Err(e) = self.set_slot(old, 0) {
                log::error!("AHCI mapped registers: cannot remove the memslot at {old:#x}: {e}");
            }
        }
        if let Some(new) = base {
            match self.set_slot(new, ABAR_SIZE) {
                Ok(()) => *mapped = Some(new),
                // Then ABAR reads exit and are answered from the register file, as in trap
                // mode: slower, still correct.
                Err(e) => log::error!(
                    "AHCI mapped registers: KVM_SET_USER_MEMORY_REGION at ABAR {new:#x}: {e}; \
                     register reads exit to satavm instead"
                ),
            }
        }
    }
}

impl Drop for RegisterSlot {
    fn drop(&mut self) {
        let mapped = self.mapped.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = mapped.take() {
            let _ = self.set_slot(at, 0);
        }
    }
}
