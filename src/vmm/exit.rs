//! Why and how the VM stops: [`VmExit`] and the [`ExitSignal`] every part of the VMM raises
//! (vCPU threads, devices on the buses, the event loop's signal and console handlers). Its own
//! module so that the buses and the vCPU threads both use it without using each other.

use std::sync::Mutex;

use vmm_sys_util::eventfd::EventFd;

/// Why the VM stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExit {
    /// The guest reset the machine (ACPI reset register, i8042 reset, triple fault).
    Reset,
    /// The guest powered off (ACPI S5 through the sleep control register).
    PowerOff,
    /// The guest kernel panicked (it said so through the pvpanic port).
    GuestPanic,
    /// Every vCPU halted with interrupts off: the guest stopped for good (`halt`).
    Halted,
    /// The guest wrote an exit code to the exit-code port (0 = success).
    GuestCode(u32),
    /// KVM or the guest failed.
    Failure(String),
    /// A vCPU thread panicked (a bug in satavm).
    Panic(String),
    /// The host asked satavm to stop: SIGTERM, SIGINT or SIGHUP, sent by `pid` (0 when the
    /// kernel sent it, e.g. SIGHUP when the terminal went away).
    Signal { signal: i32, pid: u32 },
    /// The user quit from the console (Ctrl-A x).
    Quit,
    /// A client of the control socket sent `quit`.
    ApiQuit,
}

/// How any part of the VMM tells the main loop the VM is over.
pub struct ExitSignal {
    pub evt: EventFd,
    reason: Mutex<Option<VmExit>>,
}

impl ExitSignal {
    /// A fresh signal.
    pub fn new() -> std::io::Result<Self> {
        Ok(ExitSignal {
            evt: EventFd::new(libc::EFD_NONBLOCK)?,
            reason: Mutex::new(None),
        })
    }

    /// Record `exit` (the first one wins) and wake the main loop.
    pub fn raise(&self, exit: VmExit) {
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            *r = Some(exit);
        }
        let _ = self.evt.write(1);
    }

    /// The recorded exit, if any.
    pub fn reason(&self) -> Option<VmExit> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_exit_wins_and_wakes_the_loop() {
        let s = ExitSignal::new().unwrap();
        assert_eq!(s.reason(), None);
        assert!(s.evt.read().is_err(), "nothing raised yet");
        s.raise(VmExit::Quit);
        s.raise(VmExit::PowerOff);
        assert_eq!(s.reason(), Some(VmExit::Quit));
        assert_eq!(s.evt.read().unwrap(), 2);
    }
}
