//! [`InterruptSink`] over KVM: MSI with KVM_SIGNAL_MSI, INTx as a level on an IOAPIC pin.

use std::io;
use std::sync::Arc;

use kvm_bindings::kvm_msi;
use kvm_ioctls::VmFd;

use crate::irq::{InterruptSink, MsiMessage};

/// Delivers a PCI function's interrupts into the VM.
pub struct KvmInterrupts {
    vm: Arc<VmFd>,
    intx_gsi: u32,
}

impl KvmInterrupts {
    /// Interrupts of a function whose INTx pin is wired to `intx_gsi`.
    pub fn new(vm: Arc<VmFd>, intx_gsi: u32) -> Self {
        KvmInterrupts { vm, intx_gsi }
    }
}

impl InterruptSink for KvmInterrupts {
    fn signal_msi(&self, msg: MsiMessage) -> io::Result<()> {
        let msi = kvm_msi {
            address_lo: msg.address as u32,
            address_hi: (msg.address >> 32) as u32,
            data: msg.data,
            ..Default::default()
        };
        self.vm
            .signal_msi(msi)
            .map(|_| ())
            .map_err(|e| io::Error::from_raw_os_error(e.errno()))
    }

    fn set_intx(&self, asserted: bool) -> io::Result<()> {
        self.vm
            .set_irq_line(self.intx_gsi, asserted)
            .map_err(|e| io::Error::from_raw_os_error(e.errno()))
    }
}
