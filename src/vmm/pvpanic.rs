//! pvpanic: the paravirtual panic device QEMU defined (docs/specs/pvpanic.rst in QEMU), an
//! I/O port through which the guest kernel says it panicked. The DSDT describes it as
//! `QEMU0001` with this one port; Linux's `pvpanic-mmio` driver (a module in distribution
//! kernels, loaded by udev from the ACPI ID) reads the port for the events it supports and
//! writes PANICKED from its panic notifier, before the kernel reboots or halts. The device
//! only decodes the write; the bus raises the exit.

/// The port (QEMU's default for its ISA pvpanic device).
pub const PORT: u16 = 0x505;

/// Event bits (pvpanic.rst): the guest panicked; a crash kernel (kdump) was loaded and is
/// about to run.
pub const PANICKED: u8 = 1 << 0;
pub const CRASH_LOADED: u8 = 1 << 1;

/// The events satavm supports: what a read of the port returns.
pub const SUPPORTED: u8 = PANICKED | CRASH_LOADED;

/// What a write reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanicEvent {
    /// PANICKED: the guest kernel panicked.
    Panicked,
    /// CRASH_LOADED alone: a crash kernel takes over; the guest keeps running.
    CrashLoaded,
}

/// The event a write of `value` reports, if any.
pub fn write(value: u8) -> Option<PanicEvent> {
    if value & PANICKED != 0 {
        Some(PanicEvent::Panicked)
    } else if value & CRASH_LOADED != 0 {
        Some(PanicEvent::CrashLoaded)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panicked_is_reported_and_crash_loaded_alone_is_not_a_panic() {
        assert_eq!(write(PANICKED), Some(PanicEvent::Panicked));
        assert_eq!(write(PANICKED | CRASH_LOADED), Some(PanicEvent::Panicked));
        assert_eq!(write(CRASH_LOADED), Some(PanicEvent::CrashLoaded));
        assert_eq!(write(0), None);
        assert_eq!(SUPPORTED, 0b11);
    }
}
