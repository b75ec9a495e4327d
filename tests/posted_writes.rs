//! Posted PxSACT/PxCI writes (what the VMM's KVM ioeventfd doorbells deliver): the HBA applies
//! them before any other guest access to ABAR, in the guest's order, with the same effect as
//! the same writes made through MMIO. Driven like the conformance suite, through configuration
//! space, BAR5 and guest memory, with real emulated drives.

mod common;

use std::sync::Arc;

use common::*;
use satavm::ahci::posted_writes::{PostedRegister, QueuedPostedWrites};
use satavm::ahci::regs::{port as px, pxcmd, pxis};
use satavm::pci::config::{command, offset};

/// A started port 0 whose issue writes can be posted.
fn hba_with_posted() -> (TestHba, Arc<QueuedPostedWrites>) {
    let mut t = TestHba::new(1);
    let posted = Arc::new(QueuedPostedWrites::default());
    t.f.set_posted_writes(posted.clone());
    t.start_port(0);
    (t, posted)
}

/// Queue 8 NCQ commands in slots 0..8 (`op`, 8 sectors each at LBA 64 * slot) on buffers
/// holding `pattern(4096, slot)` for writes.
fn prepare_ncq(t: &mut TestHba, op: u8, write: bool) {
    for slot in 0..8u8 {
        let buf = DATA + u64::from(slot) * 0x1000;
        if write {
            t.mem_write(buf, &pattern(4096, u32::from(slot)));
        } else {
            t.mem_write(buf, &[0u8; 4096]);
        }
        let flags = if write { HDR_WRITE } else { 0 };
        t.prepare(
            0,
            slot,
            &fpdma(op, slot, 64 * u64::from(slot), 8),
            &[(buf, 4096)],
            flags,
        );
    }
}

/// A started port 0 reporting to `observers`, its issue writes posted, 8 NCQ writes prepared.
fn observed_with_posted(observers: satavm::ahci::Observers) -> (TestHba, Arc<QueuedPostedWrites>) {
    let mut t = TestHba::new_observed(1, observers, &[]);
    t.cfg_write(
        offset::COMMAND,
        u32::from(command::MEMORY_SPACE | command::BUS_MASTER),
        2,
    );
    let posted = Arc::new(QueuedPostedWrites::default());
    t.f.set_posted_writes(posted.clone());
    t.start_port(0);
    prepare_ncq(&mut t, 0x61, true);
    (t, posted)
}

#[test]
fn posted_issue_writes_run_the_commands_and_the_next_access_sees_them() {
    let (mut t, posted) = hba_with_posted();
    prepare_ncq(&mut t, 0x61, true);
    // libahci's order per tag: PxSACT, then PxCI, one bit each.
    for slot in 0..8u8 {
        posted.post(0, PostedRegister::PxSact, 1 << slot);
        posted.post(0, PostedRegister::PxCi, 1 << slot);
    }
    // Nothing reached the drive: the HBA has not seen the writes yet.
    assert_eq!(t.f.port_stats()[0].commands, 0);
    // The guest's next access (any register) comes after its writes: it sees all 8 issued.
    let sact = t.px_read(0, px::SACT);
    assert_eq!(sact, 0xff, "PxSACT after the posted writes");
    assert_eq!(t.f.posted_writes(), 16);
    assert_eq!(t.f.port_stats()[0].commands, 8);
    t.wait_idle(0);
    assert_eq!(t.px_read(0, px::IS) & pxis::FATAL, 0);
    // Read back through ordinary MMIO issues: the posted writes wrote the data.
    prepare_ncq(&mut t, 0x60, false);
    for slot in 0..8u8 {
        t.px_write(0, px::SACT, 1 << slot);
        t.px_write(0, px::CI, 1 << slot);
    }
    t.wait_idle(0);
    for slot in 0..8u8 {
        let buf = DATA + u64::from(slot) * 0x1000;
        assert_eq!(
            t.mem_read(buf, 4096),
            pattern(4096, u32::from(slot)),
            "slot {slot}"
        );
    }
    assert_eq!(t.f.spec_checks().broken(), []);
}

#[test]
fn a_posted_issue_is_applied_before_a_later_engine_stop() {
    // The guest issues through the doorbell, then clears PxCMD.ST through MMIO: the command
    // was issued while the engine ran, so it reached the drive before the stop.
    let (mut t, posted) = hba_with_posted();
    prepare_ncq(&mut t, 0x61, true);
    posted.post(0, PostedRegister::PxSact, 1);
    posted.post(0, PostedRegister::PxCi, 1);
    t.stop_port(0);
    assert_eq!(t.f.port_stats()[0].commands, 1);
    assert_eq!(t.px_read(0, px::CI), 0, "the stop cleared PxCI");
    // And a posted issue after the stop is ignored, like a PxCI write while ST is 0.
    posted.post(0, PostedRegister::PxSact, 1 << 1);
    posted.post(0, PostedRegister::PxCi, 1 << 1);
    assert_eq!(t.px_read(0, px::CI), 0);
    assert_eq!(t.px_read(0, px::SACT), 0);
    assert_eq!(t.f.port_stats()[0].commands, 1);
    assert_eq!(t.px_read(0, px::CMD) & pxcmd::CR, 0);
}

#[test]
fn posted_writes_appear_in_the_trace_as_such() {
    use satavm::ahci::Observers;
    use satavm::trace::{Format, SharedBuffer, Sink, Tracer};
    let json = SharedBuffer::default();
    let tracer = Tracer::new(vec![Sink::new(Format::Json, Box::new(json.clone()))]);
    let observers = Observers {
        tracer: tracer.clone(),
        ..Default::default()
    };
    let (mut t, posted) = observed_with_posted(observers);
    posted.post(0, PostedRegister::PxSact, 1 << 2);
    posted.post(0, PostedRegister::PxCi, 1 << 2);
    t.wait_idle(0);
    tracer.flush();
    let events = common::trace::parse(&json.lines());
    let posted = common::trace::find(
        &events,
        &serde_json::json!({"layer": "ahci", "kind": "reg_write_posted"}),
    );
    assert_eq!(posted.len(), 2, "{posted:?}");
    assert_eq!(
        (&posted[0]["reg"], &posted[0]["value"]),
        (&"P0SACT".into(), &4.into())
    );
    assert_eq!(
        (&posted[1]["reg"], &posted[1]["value"]),
        (&"P0CI".into(), &4.into())
    );
}

/// As [`hba_with_posted`], with the spec checks in hand and 8 NCQ writes prepared.
fn hba_with_posted_and_checks() -> (
    TestHba,
    Arc<QueuedPostedWrites>,
    Arc<satavm::ahci::checks::SpecChecks>,
) {
    use satavm::ahci::checks::SpecChecks;
    use satavm::ahci::Observers;
    use satavm::trace::Tracer;
    let checks = Arc::new(SpecChecks::new(Tracer::default(), None));
    let observers = Observers {
        checks: checks.clone(),
        ..Default::default()
    };
    let (t, posted) = observed_with_posted(observers);
    (t, posted, checks)
}

/// libahci's issue pattern (PxSACT then PxCI, one bit each) posted through the doorbells with
/// the batches cut at every point between two writes, as the event loop takes them under load:
/// no batch boundary makes a correct guest break 3.3.13 (the --strict flake of issue 16), and
/// every command runs.
#[test]
fn libahci_issue_writes_cut_into_batches_anywhere_break_no_rule() {
    for cut in 1..16usize {
        let (mut t, posted, checks) = hba_with_posted_and_checks();
        let writes: Vec<(PostedRegister, u32)> = (0..8u8)
            .flat_map(|slot| {
                [
                    (PostedRegister::PxSact, 1 << slot),
                    (PostedRegister::PxCi, 1 << slot),
                ]
            })
            .collect();
        // Batches of `cut` writes, each applied by the event loop before the next is posted.
        for chunk in writes.chunks(cut) {
            for &(register, bits) in chunk {
                posted.post(0, register, bits);
            }
            t.f.apply_posted_writes();
        }
        assert_eq!(checks.broken(), [], "batches of {cut} writes");
        t.wait_until(|t| t.px_read(0, px::SACT) == 0);
        assert_eq!(t.f.port_stats()[0].commands, 8, "batches of {cut}");
        assert_eq!(t.px_read(0, px::IS) & pxis::FATAL, 0);
    }
}

/// A guest that really sets a PxSACT bit and never issues it is still caught, one batch later.
#[test]
fn a_posted_sact_bit_that_is_never_issued_is_still_reported() {
    use satavm::ahci::checks::Rule;
    let (mut t, posted, checks) = hba_with_posted_and_checks();
    posted.post(0, PostedRegister::PxSact, 1 << 1);
    t.f.apply_posted_writes();
    assert_eq!(checks.broken(), [], "its PxCI write may still come");
    posted.post(0, PostedRegister::PxSact, 1 << 2);
    posted.post(0, PostedRegister::PxCi, 1 << 2);
    t.f.apply_posted_writes();
    assert_eq!(checks.broken(), [Rule::SactWithoutCi]);
}
