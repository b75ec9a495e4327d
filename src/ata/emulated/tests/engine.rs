//! What the drive asks of its engine, seen through the in-memory test engine: nothing is done
//! on the caller's thread (PIO and FLUSH included), every transfer goes through the engine,
//! and host errors are narrowed down to the bad sector.

use super::*;

fn pending(s: Submission) {
    assert!(matches!(s, Submission::Pending { accepted: None }), "{s:?}");
}

#[test]
fn pio_transfers_and_flushes_are_engine_requests_not_work_in_submit() {
    let mut r = held_rig(256);
    r.engine.set_disk(10 * 512, &pattern(3, 3 * 512));
    // READ SECTORS: submit returns before the data moves (a vCPU never waits for it).
    pending(
        r.drive
            .submit(0, &cmd(READ_SECTORS, 10, 3), r.data(BUF, 3 * 512)),
    );
    assert_eq!(r.engine.held(), 1);
    assert!(r.drive.poll_completions().is_empty());
    r.engine.release_all();
    let c = r.drive.poll_completions().remove(0);
    let setups = c
        .fises
        .iter()
        .filter(|f| matches!(f, Fis::PioSetup(_)))
        .count();
    assert_eq!((setups, c.bytes_transferred), (3, 3 * 512));
    let mut got = vec![0u8; 3 * 512];
    r.mem.read(BUF, &mut got).unwrap();
    assert_eq!(got, pattern(3, 3 * 512));
    // FLUSH CACHE EXT too.
    pending(
        r.drive
            .submit(1, &cmd(FLUSH_CACHE_EXT, 0, 0), r.data(BUF, 0)),
    );
    assert_eq!(r.engine.flushes(), 0);
    r.engine.release_all();
    assert_eq!(d2h(&r.drive.poll_completions()[0]).status, 0x50);
    assert_eq!(r.engine.flushes(), 1);
    assert_eq!(r.engine.log(), ["read 5120+1536", "flush"]);
}

#[test]
fn disabling_the_write_cache_flushes_first_then_every_write_is_fua() {
    let mut r = held_rig(64);
    r.engine.set_hold(false);
    let off = RegisterH2d {
        features: 0x82,
        ..cmd(SET_FEATURES, 0, 0)
    };
    pending(r.drive.submit(0, &off, r.data(BUF, 0)));
    assert_eq!(d2h(&r.drive.poll_completions()[0]).status, 0x50);
    pending(r.drive.submit(0, &cmd(WRITE_DMA, 0, 1), r.data(BUF, 512)));
    r.drive.poll_completions();
    assert_eq!(r.engine.log(), ["flush", "write 0+512 fua"]);
    // Identify says so (word 85 bit 5).
    let c = r
        .drive
        .submit(0, &cmd(IDENTIFY_DEVICE, 0, 0), r.data(BUF, 512));
    assert!(matches!(c, Submission::Complete(_)));
    let mut id = [0u8; 512];
    r.mem.read(BUF, &mut id).unwrap();
    assert_eq!(u16::from_le_bytes([id[170], id[171]]) & (1 << 5), 0);
}

#[test]
fn a_host_error_is_narrowed_to_the_first_bad_sector() {
    let mut r = held_rig(4096);
    r.engine.set_hold(false);
    // Sector 3000 of a 4096-sector read (1 MiB requests: the second one fails).
    r.engine.fail_at(3000 * 512 + 100);
    pending(
        r.drive
            .submit(0, &cmd(READ_DMA_EXT, 0, 4096), r.data(BUF, 4096 * 512)),
    );
    let c = r.drive.poll_completions().remove(0);
    let f = d2h(&c);
    assert_eq!((f.status, f.error, f.lba), (0x51, error::UNC, 3000));
    assert_eq!(c.bytes_transferred, 3000 * 512);
    let log = r.engine.log();
    assert_eq!(&log[..2], ["read 0+1048576", "read 1048576+1048576"]);
    // Then the failed request again, one sector at a time.
    assert_eq!(log.len(), 2 + 2048);
    assert_eq!(log[2], "read 1048576+512");
    // An NCQ write: the error log names the bad LBA.
    let s = r.drive.submit(
        3,
        &fpdma(WRITE_FPDMA_QUEUED, 3, 2996, 8),
        r.data(BUF, 8 * 512),
    );
    assert!(matches!(s, Submission::Pending { accepted: Some(_) }));
    let c = r.drive.poll_completions().remove(0);
    assert_eq!((sdb(&c).status & 1, sdb(&c).error), (1, error::UNC));
    let c = r
        .drive
        .submit(0, &cmd(READ_LOG_EXT, 0x10, 1), r.data(BUF, 512));
    assert!(matches!(c, Submission::Complete(_)));
    let mut page = [0u8; 512];
    r.mem.read(BUF, &mut page).unwrap();
    assert_eq!(
        (page[0], page[3], page[4], page[5]),
        (3, error::UNC, (3000 & 0xff) as u8, (3000 >> 8) as u8)
    );
}

#[test]
fn trim_punches_holes_or_writes_zeros_where_the_host_cannot() {
    for refuse in [false, true] {
        let mut r = held_rig(4096);
        r.engine.set_hold(false);
        r.engine.set_disk(100 * 512, &[0xaa; 16 * 512]);
        if refuse {
            r.engine.refuse_discards();
        }
        // One range: 16 sectors at LBA 100.
        r.mem
            .write(BUF, &(16u64 << 48 | 100).to_le_bytes())
            .unwrap();
        let trim = RegisterH2d {
            features: 1,
            ..cmd(DATA_SET_MANAGEMENT, 0, 1)
        };
        pending(r.drive.submit(0, &trim, r.data(BUF, 512)));
        assert_eq!(d2h(&r.drive.poll_completions()[0]).status, 0x50);
        assert!(r.engine.disk(100 * 512, 16 * 512).iter().all(|b| *b == 0));
        let expect: &[&str] = if refuse {
            &["discard 51200+8192", "zeroes 51200+8192"]
        } else {
            &["discard 51200+8192"]
        };
        assert_eq!(r.engine.log(), expect);
    }
}

#[test]
fn image_data_lands_in_guest_ram_without_a_bounce() {
    let mut r = rig(256);
    let c = r.run(0, cmd(READ_DMA_EXT, 8, 16), r.data(BUF, 16 * 512));
    assert_eq!(c.bytes_transferred, 16 * 512);
    assert_eq!(r.read_mem(BUF, 16 * 512), r.file_sectors(8, 16));
    let (name, stats) = r.drive.engine_stats();
    assert_eq!(name, "io_uring");
    assert_eq!((stats.submitted, stats.bounced_bytes), (1, 0));
}
