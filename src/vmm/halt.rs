//! Telling a halted guest from an idle one. KVM's in-kernel irqchip keeps HLT inside the
//! kernel, so satavm never sees a vCPU halt; but an idle vCPU halts with interrupts on
//! (`sti; hlt`) and wakes at the next one, while a stopped one halts with them off and
//! stays (Linux's `halt`: every CPU in `stop_this_cpu()`; `poweroff` without ACPI falls back to
//! halt). Once a second the main loop kicks every vCPU out of KVM_RUN; each thread then reads
//! its vCPU's MP state and RFLAGS.IF and reports here. When every vCPU was halted with
//! interrupts off in two looks in a row, the guest has halted for good (nothing but an NMI
//! could wake it, and nothing in satavm sends one).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Looks in a row that must find every vCPU halted with interrupts off.
const LOOKS: u32 = 2;

/// What the vCPU threads found since the main loop last looked.
#[derive(Debug)]
pub struct HaltWatch {
    /// Bit N: vCPU N was found halted with interrupts off after the last kick.
    halted: AtomicU64,
    all: u64,
    streak: AtomicU32,
}

impl HaltWatch {
    /// A watch over `cpus` vCPUs (at most 64).
    pub fn new(cpus: u8) -> Self {
        let all = if cpus >= 64 {
            u64::MAX
        } else {
            (1u64 << cpus) - 1
        };
        HaltWatch {
            halted: AtomicU64::new(0),
            all,
            streak: AtomicU32::new(0),
        }
    }

    /// vCPU `id` is halted (KVM_MP_STATE_HALTED) with RFLAGS.IF clear.
    pub fn report_halted(&self, id: u8) {
        if id < 64 {
            self.halted.fetch_or(1 << id, Ordering::SeqCst);
        }
    }

    /// The main loop's look, just before it kicks the vCPUs again: whether the guest has
    /// halted for good (every vCPU halted with interrupts off, [`LOOKS`] looks in a row).
    pub fn look(&self) -> bool {
        let seen = self.halted.swap(0, Ordering::SeqCst);
        if seen == self.all {
            self.streak.fetch_add(1, Ordering::SeqCst) + 1 >= LOOKS
        } else {
            self.streak.store(0, Ordering::SeqCst);
            false
        }
    }
}

/// RFLAGS.IF.
pub const RFLAGS_IF: u64 = 1 << 9;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_every_vcpu_halted_twice_in_a_row_is_a_halt() {
        let w = HaltWatch::new(2);
        w.report_halted(0);
        assert!(!w.look(), "vCPU 1 still runs");
        w.report_halted(0);
        w.report_halted(1);
        assert!(!w.look(), "one look is not enough");
        assert!(!w.look(), "nothing reported since: the streak restarts");
        w.report_halted(0);
        w.report_halted(1);
        assert!(!w.look());
        w.report_halted(1);
        w.report_halted(0);
        assert!(w.look(), "two looks in a row");
    }

    #[test]
    fn thirty_two_vcpus_fit() {
        let w = HaltWatch::new(32);
        for _ in 0..2 {
            for id in 0..32 {
                w.report_halted(id);
            }
        }
        assert!(!w.look());
        for id in 0..32 {
            w.report_halted(id);
        }
        assert!(w.look());
    }
}
