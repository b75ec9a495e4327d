//! Interrupt delivery as device logic sees it.
//!
//! A PCI function decides *what* to signal (an MSI message from its MSI capability, or the level
//! of its INTx pin); the VMM's implementation of [`InterruptSink`] decides *how* (KVM_SIGNAL_MSI,
//! KVM_IRQ_LINE). Tests implement it with a recorder.

use std::io;

/// An MSI message: the address/data pair a function writes to signal one vector (PCI 3.0 6.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiMessage {
    pub address: u64,
    pub data: u32,
}

/// Where a PCI function's interrupts go.
pub trait InterruptSink: Send + Sync {
    /// Deliver one MSI message.
    fn signal_msi(&self, msg: MsiMessage) -> io::Result<()>;
    /// Drive the function's INTx pin (level-triggered, active while `asserted`).
    fn set_intx(&self, asserted: bool) -> io::Result<()>;
}

/// An [`InterruptSink`] that records what it was asked to do, for tests.
#[derive(Debug, Default)]
pub struct RecordingSink {
    pub msis: std::sync::Mutex<Vec<MsiMessage>>,
    pub intx: std::sync::atomic::AtomicBool,
}

impl InterruptSink for RecordingSink {
    fn signal_msi(&self, msg: MsiMessage) -> io::Result<()> {
        self.msis
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(msg);
        Ok(())
    }
    fn set_intx(&self, asserted: bool) -> io::Result<()> {
        self.intx
            .store(asserted, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}
