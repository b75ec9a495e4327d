//! Native Command Queuing: concurrency, out-of-order completion, the NCQ error state, abort.

use super::*;

#[test]
fn duplicate_tag_is_refused_and_enters_the_ncq_error_state() {
    // SATA 2.6 13.5.2 / SATA-IO NCQ-04: a queued command whose tag is in use gets ERR + ABRT
    // in a Register D2H FIS with I = 1; the outstanding queued commands are aborted and queued
    // commands are refused until log page 10h (NQ clear, the tag) is read.
    let mut r = rig(65536 + 64);
    let big = r.data(BUF, 65536 * 512);
    let s = r.drive.submit(0, &fpdma(READ_FPDMA_QUEUED, 3, 64, 0), big);
    assert!(matches!(s, Submission::Pending { accepted: Some(_) }));
    let dup = r
        .drive
        .submit(1, &fpdma(READ_FPDMA_QUEUED, 3, 0, 1), r.data(BUF, 512));
    let Submission::Complete(c) = dup else {
        panic!("{dup:?}")
    };
    let f = d2h(&c);
    assert_eq!((f.status & 1, f.error, f.interrupt), (1, error::ABRT, true));
    let next = r
        .drive
        .submit(2, &fpdma(READ_FPDMA_QUEUED, 4, 0, 1), r.data(BUF, 512));
    assert!(matches!(next, Submission::Complete(ref c) if d2h(c).error == error::ABRT));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        r.drive.poll_completions(),
        vec![],
        "the 32 MiB read was aborted"
    );
    let c = r.run(5, cmd(READ_LOG_EXT, 0x10, 1), r.data(BUF, 512));
    assert_eq!(d2h_or_pio_status(&c) & 1, 0);
    let log = r.read_mem(BUF, 512);
    assert_eq!((log[0], log[3]), (3, error::ABRT), "NQ clear, tag 3, ABRT");
    let s = r
        .drive
        .submit(2, &fpdma(READ_FPDMA_QUEUED, 4, 0, 1), r.data(BUF, 512));
    assert!(matches!(s, Submission::Pending { accepted: Some(_) }));
    assert_eq!(r.wait(1)[0].slot, 2);
}

#[test]
fn ncq_round_trips_at_both_ends() {
    let mut r = rig(2048);
    for (tag, lba, n) in [(0u8, 0u64, 8u16), (7, 2048 - 8, 8), (31, 2047, 1)] {
        let data = pattern(tag, usize::from(n) * 512);
        r.mem.write(BUF, &data).unwrap();
        let fis = RegisterH2d {
            device: 0xc0, // FUA
            ..fpdma(WRITE_FPDMA_QUEUED, tag, lba, n)
        };
        let s = r.drive.submit(tag, &fis, r.data(BUF, u32::from(n) * 512));
        let Submission::Pending { accepted: Some(a) } = s else {
            panic!("{s:?}")
        };
        assert_eq!(
            (a.status & 0x80, a.status & 0x40, a.interrupt),
            (0, 0x40, false)
        );
        let c = r.wait(1).remove(0);
        assert_eq!(c.slot, tag);
        assert_eq!(sdb(&c).sactive, 1 << tag);
        assert_eq!(sdb(&c).status & 1, 0);
        assert!(sdb(&c).interrupt);
        assert_eq!(r.file_sectors(lba, n.into()), data);
        let out = BUF + 0x100000;
        let s = r.drive.submit(
            tag,
            &fpdma(READ_FPDMA_QUEUED, tag, lba, n),
            r.data(out, u32::from(n) * 512),
        );
        assert!(matches!(s, Submission::Pending { accepted: Some(_) }));
        let c = r.wait(1).remove(0);
        assert_eq!(sdb(&c).sactive, 1 << tag);
        assert_eq!(r.read_mem(out, usize::from(n) * 512), data);
    }
}

#[test]
fn ncq_runs_32_commands_concurrently_and_completes_out_of_order() {
    // 65536 sectors (32 MiB) for tag 0, then 31 one-sector reads: every command's requests are
    // in the engine at once (the 32 MiB one as 32 requests of 1 MiB), and the small ones that
    // the host finishes first complete first.
    let mut r = held_rig(65536 + 64);
    r.engine.set_disk(64 * 512, &pattern(7, 512));
    let big = r.data(BUF, 65536 * 512);
    assert!(matches!(
        r.drive.submit(0, &fpdma(READ_FPDMA_QUEUED, 0, 64, 0), big),
        Submission::Pending { accepted: Some(_) }
    ));
    let small = 0x0210_0000u64;
    for tag in 1..32u8 {
        r.engine
            .set_disk(usize::from(tag) * 512, &pattern(tag, 512));
        let s = r.drive.submit(
            tag,
            &fpdma(READ_FPDMA_QUEUED, tag, u64::from(tag), 1),
            r.data(small + u64::from(tag) * 512, 512),
        );
        assert!(
            matches!(s, Submission::Pending { accepted: Some(_) }),
            "{tag}"
        );
    }
    assert_eq!(r.engine.held(), 32 + 31, "all requests in flight at once");
    assert!(r.drive.poll_completions().is_empty());
    r.engine.release_newest(31);
    let done = r.drive.poll_completions();
    let order: Vec<u8> = done.iter().map(|c| c.slot).collect();
    assert_eq!(order.len(), 31);
    assert!(!order.contains(&0), "{order:?}");
    r.engine.release_all();
    let done: Vec<Completion> = done.into_iter().chain(r.drive.poll_completions()).collect();
    assert_eq!(done.last().map(|c| c.slot), Some(0));
    let mut seen = 0u32;
    for c in &done {
        let s = sdb(c);
        assert_eq!(s.sactive, 1 << c.slot);
        assert_eq!(seen & s.sactive, 0);
        seen |= s.sactive;
    }
    assert_eq!(seen, u32::MAX);
    for tag in 1..32u8 {
        let mut got = vec![0u8; 512];
        r.mem.read(small + u64::from(tag) * 512, &mut got).unwrap();
        assert_eq!(got, pattern(tag, 512), "{tag}");
    }
    let mut got = vec![0u8; 512];
    r.mem.read(BUF, &mut got).unwrap();
    assert_eq!(got, pattern(7, 512));
}

#[test]
fn ncq_error_aborts_outstanding_until_log_page_10h_is_read() {
    let mut r = rig(65536 + 64);
    // Tag 0: a long read still running when tag 9 fails.
    assert!(matches!(
        r.drive.submit(
            0,
            &fpdma(READ_FPDMA_QUEUED, 0, 0, 0),
            r.data(BUF, 65536 * 512)
        ),
        Submission::Pending { accepted: Some(_) }
    ));
    let bad_lba = 65536 + 60;
    assert!(matches!(
        r.drive.submit(
            9,
            &fpdma(WRITE_FPDMA_QUEUED, 9, bad_lba, 8),
            r.data(BUF, 8 * 512)
        ),
        Submission::Pending { accepted: Some(_) }
    ));
    let c = r.wait(1).remove(0);
    assert_eq!(c.slot, 9);
    let s = sdb(&c);
    assert_eq!((s.status & 1, s.error, s.sactive), (1, error::IDNF, 0));
    // New queued commands are refused in the error state.
    let s = r
        .drive
        .submit(4, &fpdma(READ_FPDMA_QUEUED, 4, 0, 1), r.data(BUF, 512));
    assert!(matches!(s, Submission::Complete(ref c) if d2h(c).error == error::ABRT));
    // The port stops its engine before reading the log: the error state survives that.
    r.drive.abort_all();
    let c = r.run(1, cmd(READ_LOG_EXT, 0x10, 1), r.data(BUF, 512));
    assert_eq!(d2h_or_pio_status(&c), 0x50);
    let log = r.read_mem(BUF, 512);
    assert_eq!(log[0], 9, "NQ clear, tag 9");
    assert_eq!((log[2], log[3]), (0x51, error::IDNF));
    let lba = (0..6).fold(0u64, |a, i| {
        a | u64::from(log[[4, 5, 6, 8, 9, 10][i]]) << (8 * i)
    });
    assert_eq!(lba, bad_lba);
    assert_eq!(log.iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
    // Reading it again: no error pending (NQ set).
    r.run(1, cmd(READ_LOG_EXT, 0x10, 1), r.data(BUF, 512));
    assert_eq!(r.read_mem(BUF, 1)[0] & 0x80, 0x80);
    // Tag 0 was aborted: drained, never completed; queued commands work again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while r.drive.draining() {
        assert!(Instant::now() < deadline, "never drained");
        assert!(r.drive.poll_completions().is_empty());
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(r.drive.poll_completions().is_empty());
    assert!(matches!(
        r.drive
            .submit(0, &fpdma(READ_FPDMA_QUEUED, 0, 0, 1), r.data(BUF, 512)),
        Submission::Pending { accepted: Some(_) }
    ));
    assert_eq!(sdb(&r.wait(1)[0]).sactive, 1);
}

fn d2h_or_pio_status(c: &Completion) -> u8 {
    match c.fises.last() {
        Some(Fis::PioSetup(p)) => p.e_status,
        Some(Fis::RegisterD2h(f)) => f.status,
        other => panic!("{other:?}"),
    }
}

#[test]
fn non_queued_command_while_ncq_outstanding_is_aborted() {
    let mut r = rig(65536);
    assert!(matches!(
        r.drive.submit(
            0,
            &fpdma(READ_FPDMA_QUEUED, 0, 0, 0),
            r.data(BUF, 65536 * 512)
        ),
        Submission::Pending { accepted: Some(_) }
    ));
    let s = r
        .drive
        .submit(1, &cmd(IDENTIFY_DEVICE, 0, 0), r.data(BUF, 512));
    assert!(matches!(s, Submission::Complete(ref c) if d2h(c).error == error::ABRT));
    assert_eq!(sdb(&r.wait(1)[0]).sactive, 1);
}

#[test]
fn abort_all_forgets_every_command_and_holds_new_ones_until_the_old_drained() {
    let mut r = held_rig(65536);
    for tag in 0..4u8 {
        let s = r.drive.submit(
            tag,
            &fpdma(READ_FPDMA_QUEUED, tag, 0, 0),
            r.data(BUF + u64::from(tag) * 0x10, 65536 * 512),
        );
        assert!(matches!(s, Submission::Pending { .. }));
    }
    assert!(!r.drive.draining());
    r.drive.abort_all();
    // Their requests are still in the kernel (held here): the drive is draining.
    assert!(r.drive.draining());
    assert!(r.drive.poll_completions().is_empty());
    // The tags are free again, but the new command waits for the drain.
    assert!(matches!(
        r.drive
            .submit(2, &fpdma(READ_FPDMA_QUEUED, 2, 0, 1), r.data(BUF, 512)),
        Submission::Pending { accepted: Some(_) }
    ));
    let held = r.engine.held();
    assert_eq!(
        held,
        4 * 32,
        "the new request is not sent before the old ones are back"
    );
    r.engine.release_all();
    assert!(
        r.drive.poll_completions().is_empty(),
        "aborted commands are never reported"
    );
    assert!(!r.drive.draining());
    assert_eq!(r.engine.held(), 1, "now it is");
    r.engine.release_all();
    assert_eq!(
        r.drive
            .poll_completions()
            .iter()
            .map(|c| c.slot)
            .collect::<Vec<_>>(),
        [2]
    );
}
