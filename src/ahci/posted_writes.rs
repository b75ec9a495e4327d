//! Posted writes to the command issue registers: PxSACT (AHCI 1.3.1 section 3.3.13) and PxCI
//! (3.3.14) writes that reached the VMM without stopping the vCPU, applied by the HBA later.
//!
//! Issuing a command takes one or two register writes that need no reply: software sets the
//! slot's bit in PxSACT (queued commands) and then in PxCI, one bit per write (Linux's libahci
//! writes `1 << tag`). A VMM can take such writes without a userspace exit (KVM_IOEVENTFD with
//! a data match per bit value) and hand them over through a [`PostedWriteSource`]. The HBA
//! applies them before it serves any other guest access to ABAR, so the guest never reads a
//! register state that misses one of its earlier writes, and the VMM applies them when they
//! arrive ([`crate::ahci::AhciFunction::apply_posted_writes`]).
//!
//! A batch holds every write posted since the last one was applied, but not their order: the
//! register state after it is the same in any order (setting bits commutes), while the spec
//! checks judge the order (3.3.13: a PxSACT bit must be followed by the PxCI write that
//! issues it). A batch is applied in the order a guest that issues each queued command with
//! PxSACT then PxCI must have written it: the PxSACT bits whose PxCI bit is in the batch, then
//! the PxCI bits, then the PxSACT bits whose PxCI write has not been posted yet (the batch was
//! taken between a command's two writes; its PxCI write comes in a later batch). Applying those
//! last before the PxCI bits would make a correct guest look as if it had set PxSACT without
//! issuing the command.

/// A register a [`PostedWriteSource`] can post writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PostedRegister {
    /// PxSACT, port offset 34h (3.3.13).
    PxSact,
    /// PxCI, port offset 38h (3.3.14).
    PxCi,
}

impl PostedRegister {
    /// Both, in the order a batch applies them.
    pub const ALL: [PostedRegister; 2] = [PostedRegister::PxSact, PostedRegister::PxCi];

    /// Offset within the port's register block.
    pub fn port_offset(self) -> u64 {
        match self {
            PostedRegister::PxSact => super::regs::port::SACT,
            PostedRegister::PxCi => super::regs::port::CI,
        }
    }

    /// Offset within ABAR of this register of `port` (port registers from 100h, 80h each:
    /// AHCI 1.3.1 section 3).
    pub fn abar_offset(self, port: u8) -> u64 {
        use super::regs::hba::{PORTS_BASE, PORT_SIZE};
        PORTS_BASE + u64::from(port) * PORT_SIZE + self.port_offset()
    }
}

/// Bits posted per port and register since the last batch was applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostedBatch {
    /// Per port: bits written to PxSACT, then to PxCI.
    sact: [u32; 32],
    ci: [u32; 32],
    /// Writes in the batch (a bit written twice counts twice).
    writes: u64,
}

impl PostedBatch {
    /// Record `count` writes of `bits` to `register` of `port` (ports 32 and up are ignored:
    /// CAP.NP allows 32).
    pub fn add(&mut self, port: u8, register: PostedRegister, bits: u32, count: u64) {
        let slot = match register {
            PostedRegister::PxSact => self.sact.get_mut(usize::from(port)),
            PostedRegister::PxCi => self.ci.get_mut(usize::from(port)),
        };
        if let Some(s) = slot {
            *s |= bits;
            self.writes += count;
        }
    }

    /// True if nothing was posted.
    pub fn is_empty(&self) -> bool {
        self.writes == 0
    }

    /// How many writes the batch stands for.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// The writes to apply, in order (see the module documentation): (port, register, bits),
    /// the PxSACT bits the batch also issues, the PxCI bits, then the PxSACT bits still waiting
    /// for their PxCI write.
    pub fn in_order(&self) -> impl Iterator<Item = (u8, PostedRegister, u32)> + '_ {
        let ports = || (0..32u8).map(|p| (p, self.sact[usize::from(p)], self.ci[usize::from(p)]));
        let issued = ports().map(|(p, sact, ci)| (p, PostedRegister::PxSact, sact & ci));
        let ci = ports().map(|(p, _, ci)| (p, PostedRegister::PxCi, ci));
        let waiting = ports().map(|(p, sact, ci)| (p, PostedRegister::PxSact, sact & !ci));
        issued.chain(ci).chain(waiting).filter(|&(_, _, b)| b != 0)
    }
}

/// Where posted writes wait (the VMM's side; tests use [`QueuedPostedWrites`]).
pub trait PostedWriteSource: Send + Sync {
    /// Move every write posted so far into `batch`.
    fn take(&self, batch: &mut PostedBatch);
}

/// A [`PostedWriteSource`] fed by hand: what tests post, in a queue.
#[derive(Debug, Default)]
pub struct QueuedPostedWrites {
    queue: std::sync::Mutex<Vec<(u8, PostedRegister, u32)>>,
}

impl QueuedPostedWrites {
    /// Post a write of `bits` to `register` of `port`.
    pub fn post(&self, port: u8, register: PostedRegister, bits: u32) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((port, register, bits));
    }
}

impl PostedWriteSource for QueuedPostedWrites {
    fn take(&self, batch: &mut PostedBatch) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        for (port, register, bits) in q.drain(..) {
            batch.add(port, register, bits, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_applies_issued_sact_bits_then_ci_then_sact_bits_still_waiting() {
        let mut b = PostedBatch::default();
        b.add(1, PostedRegister::PxCi, 1 << 3, 1);
        b.add(0, PostedRegister::PxSact, 1 << 4, 1);
        b.add(1, PostedRegister::PxSact, 1 << 3, 1);
        b.add(0, PostedRegister::PxCi, 1 << 4, 1);
        b.add(1, PostedRegister::PxCi, 1 << 5, 2);
        // Taken between tag 6's PxSACT and PxCI writes on port 0.
        b.add(0, PostedRegister::PxSact, 1 << 6, 1);
        assert_eq!(b.writes(), 7);
        let order: Vec<_> = b.in_order().collect();
        assert_eq!(
            order,
            [
                (0, PostedRegister::PxSact, 1 << 4),
                (1, PostedRegister::PxSact, 1 << 3),
                (0, PostedRegister::PxCi, 1 << 4),
                (1, PostedRegister::PxCi, 1 << 3 | 1 << 5),
                (0, PostedRegister::PxSact, 1 << 6),
            ]
        );
    }

    #[test]
    fn register_offsets_within_abar() {
        // Port 0's PxSACT at 134h, port 1's PxCI at 100h + 80h + 38h (AHCI 1.3.1 section 3).
        assert_eq!(PostedRegister::PxSact.abar_offset(0), 0x134);
        assert_eq!(PostedRegister::PxCi.abar_offset(1), 0x1b8);
    }

    #[test]
    fn ports_beyond_32_are_ignored_not_a_panic() {
        let mut b = PostedBatch::default();
        b.add(32, PostedRegister::PxCi, 1, 1);
        b.add(255, PostedRegister::PxSact, 1, 1);
        assert!(b.is_empty());
        assert_eq!(b.in_order().count(), 0);
    }
}
