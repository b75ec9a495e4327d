//! Telling a halted guest from an idle one. KVM's in-kernel irqchip keeps HLT inside the
//! kernel, so satavm never sees a vCPU halt; but an idle vCPU halts with interrupts on
//! (`sti; hlt`) and wakes at the next one, while a stopped one halts with them off and
//! stays (Linux's `halt`: every CPU in `stop_this_cpu()`; `poweroff` without ACPI falls back to
//! halt). Once a second, if the guest made no port or MMIO access since the last look (a
//! halted guest makes none; a busy one is left alone), the main loop kicks every vCPU out of
//! KVM_RUN; each thread then reads its vCPU's MP state and RFLAGS.IF and reports here. When
//! every vCPU was halted with interrupts off in two looks in a row, the guest has halted for
//! good (nothing but an NMI could wake it, and nothing in satavm sends one).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Looks in a row that must find every vCPU halted with interrupts off.
const LOOKS: u32 = 2;

/// What the main loop does after a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// The guest has halted for good.
    Halted,
    /// Kick every vCPU, to look again next time.
    Kick,
    /// The guest made port or MMIO accesses since the last look: it runs.
    Busy,
}

/// What the vCPU threads found since the main loop last looked.
#[derive(Debug)]
pub struct HaltWatch {
    /// Bit N: vCPU N was found halted with interrupts off after the last kick.
    halted: AtomicU64,
    all: u64,
    streak: AtomicU32,
    /// The guest's port and MMIO exits at the last look.
    io_exits: AtomicU64,
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
            io_exits: AtomicU64::new(u64::MAX),
        }
    }

    /// vCPU `id` is halted (KVM_MP_STATE_HALTED) with RFLAGS.IF clear.
    pub fn report_halted(&self, id: u8) {
        if id < 64 {
            self.halted.fetch_or(1 << id, Ordering::SeqCst);
        }
    }

    /// The main loop's look, with the guest's port and MMIO exits so far: the guest halted for
    /// good (every vCPU halted with interrupts off, [`LOOKS`] looks in a row, no access in
    /// between), or kick the vCPUs to look again, or leave a busy guest alone.
    pub fn look(&self, io_exits: u64) -> Look {
        let seen = self.halted.swap(0, Ordering::SeqCst);
        if self.io_exits.swap(io_exits, Ordering::SeqCst) != io_exits {
            self.streak.store(0, Ordering::SeqCst);
            return Look::Busy;
        }
        if seen != self.all {
            self.streak.store(0, Ordering::SeqCst);
            return Look::Kick;
        }
        if self.streak.fetch_add(1, Ordering::SeqCst) + 1 >= LOOKS {
            Look::Halted
        } else {
            Look::Kick
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
        assert_eq!(
            w.look(5),
            Look::Busy,
            "the first look has nothing to compare"
        );
        w.report_halted(0);
        assert_eq!(w.look(5), Look::Kick, "vCPU 1 still runs");
        w.report_halted(0);
        w.report_halted(1);
        assert_eq!(w.look(5), Look::Kick, "one look is not enough");
        assert_eq!(
            w.look(5),
            Look::Kick,
            "nothing reported since: the streak restarts"
        );
        w.report_halted(0);
        w.report_halted(1);
        assert_eq!(w.look(5), Look::Kick);
        w.report_halted(1);
        w.report_halted(0);
        assert_eq!(w.look(5), Look::Halted, "two looks in a row");
    }

    #[test]
    fn a_guest_that_made_accesses_is_busy_and_restarts_the_streak() {
        let w = HaltWatch::new(1);
        assert_eq!(w.look(0), Look::Busy);
        w.report_halted(0);
        assert_eq!(w.look(0), Look::Kick);
        w.report_halted(0);
        assert_eq!(w.look(1), Look::Busy, "an access since the last look");
        w.report_halted(0);
        assert_eq!(w.look(1), Look::Kick, "the streak starts again");
        w.report_halted(0);
        assert_eq!(w.look(1), Look::Halted);
    }

    #[test]
    fn thirty_two_vcpus_fit() {
        let w = HaltWatch::new(32);
        assert_eq!(w.look(0), Look::Busy);
        for round in 0..2 {
            for id in 0..32 {
                w.report_halted(id);
            }
            let expected = if round == 0 { Look::Kick } else { Look::Halted };
            assert_eq!(w.look(0), expected);
        }
    }
}
