//! Data transfers: PIO and DMA round trips, block sizes, range and data path errors, TRIM.

use super::*;

/// Write `n` sectors at `lba` with `write` and read them back with `read`.
fn round_trip(r: &mut Rig, write: u8, read: u8, lba: u64, n: u16, seed: u8) {
    let sectors = if n == 0 { 256 } else { usize::from(n) };
    let len = sectors as u32 * 512;
    let data = pattern(seed, len as usize);
    r.mem.write(BUF, &data).unwrap();
    let c = r.run(1, cmd(write, lba, n), r.data(BUF, len));
    assert_eq!(d2h(&c).status, 0x50, "write {write:#x} at {lba}: {c:?}");
    assert_eq!(c.bytes_transferred, len);
    assert_eq!(r.file_sectors(lba, sectors), data);
    let out = BUF + 0x100_0000;
    let c = r.run(2, cmd(read, lba, n), r.data(out, len));
    assert_eq!(c.bytes_transferred, len);
    assert_eq!(
        r.read_mem(out, len as usize),
        data,
        "read {read:#x} at {lba}"
    );
}

#[test]
fn pio_and_dma_round_trips_at_both_ends_lba28_and_lba48() {
    let mut r = rig(4096);
    let last = r.sectors;
    round_trip(&mut r, WRITE_SECTORS, READ_DMA, 0, 3, 1);
    round_trip(&mut r, WRITE_DMA, READ_SECTORS, last - 3, 3, 2);
    round_trip(&mut r, WRITE_SECTORS_EXT, READ_DMA_EXT, last - 1, 1, 3);
    round_trip(&mut r, WRITE_DMA_EXT, READ_SECTORS_EXT, 0, 600, 4);
    round_trip(&mut r, WRITE_DMA_FUA_EXT, READ_DMA, 100, 17, 5);
    // Count 0 means 256 sectors for a 28-bit command.
    round_trip(&mut r, WRITE_DMA, READ_DMA, 1000, 0, 6);
    let c = r.run(3, cmd(READ_DMA_EXT, 1000, 256), r.data(BUF, 256 * 512));
    assert_eq!(c.bytes_transferred, 256 * 512);
    assert_eq!(r.read_mem(BUF, 256 * 512), pattern(6, 256 * 512));
}

#[test]
fn pio_read_sends_one_pio_setup_per_sector() {
    let mut r = rig(64);
    let c = r.run(0, cmd(READ_SECTORS, 5, 3), r.data(BUF, 3 * 512));
    let setups: Vec<_> = c
        .fises
        .iter()
        .map(|f| match f {
            Fis::PioSetup(p) => (p.transfer_count, p.e_status, p.device_to_host),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        setups,
        [(512, 0xc0, true), (512, 0xc0, true), (512, 0x50, true)]
    );
    let got = r.read_mem(BUF + 512, 512);
    assert!(got.iter().enumerate().all(|(i, b)| *b == initial(6, i)));
    let c = r.run(0, cmd(WRITE_SECTORS, 5, 2), r.data(BUF, 2 * 512));
    assert!(matches!(
        c.fises[0],
        Fis::PioSetup(PioSetup {
            device_to_host: false,
            interrupt: false,
            ..
        })
    ));
    assert!(matches!(
        c.fises[1],
        Fis::PioSetup(PioSetup {
            device_to_host: false,
            interrupt: true,
            ..
        })
    ));
    assert_eq!(d2h(&c).status, 0x50);
    assert!(d2h(&c).interrupt);
}

#[test]
fn set_multiple_mode_sets_the_pio_block_size() {
    let mut r = rig(64);
    let c = r.run(0, cmd(READ_MULTIPLE, 0, 10), r.data(BUF, 10 * 512));
    assert_eq!(d2h(&c).error, error::ABRT, "multiple mode not set yet");
    let c = r.run(0, cmd(SET_MULTIPLE_MODE, 0, 3), r.none());
    assert_eq!(d2h(&c).error, error::ABRT, "3 is not a power of two");
    let c = r.run(0, cmd(SET_MULTIPLE_MODE, 0, 4), r.none());
    assert_eq!(d2h(&c).status, 0x50);
    assert_eq!(r.identify()[59], 0x0104);
    let c = r.run(0, cmd(READ_MULTIPLE, 0, 10), r.data(BUF, 10 * 512));
    let counts: Vec<u16> = c
        .fises
        .iter()
        .map(|f| match f {
            Fis::PioSetup(p) => p.transfer_count,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(counts, [2048, 2048, 1024]);
    assert_eq!(c.bytes_transferred, 10 * 512);
    let data = pattern(9, 6 * 512);
    r.mem.write(BUF, &data).unwrap();
    let c = r.run(0, cmd(WRITE_MULTIPLE_EXT, 20, 6), r.data(BUF, 6 * 512));
    assert_eq!(c.fises.len(), 3, "2 PIO Setup + D2H: {c:?}");
    assert_eq!(r.file_sectors(20, 6), data);
}

#[test]
fn lba_past_the_end_is_idnf() {
    let mut r = rig(100);
    for (command, lba, n) in [
        (READ_DMA, 99, 2),
        (READ_DMA_EXT, 100, 1),
        (READ_SECTORS, 0, 101),
        (WRITE_SECTORS_EXT, 1 << 40, 1),
        (READ_VERIFY_SECTORS, 99, 2),
    ] {
        let c = r.run(0, cmd(command, lba, n), r.data(BUF, 0x20000));
        assert_eq!(
            (d2h(&c).status, d2h(&c).error),
            (0x51, error::IDNF),
            "{command:#x}"
        );
        assert_eq!(c.bytes_transferred, 0);
    }
    let c = r.run(0, cmd(READ_VERIFY_SECTORS, 98, 2), r.none());
    assert_eq!(d2h(&c).status, 0x50);
}

#[test]
fn trim_reads_back_zeros() {
    let mut r = rig(256);
    // Two ranges: 16 sectors at 8 and 1 sector at 255; an unused (length 0) entry.
    let mut payload = vec![0u8; 512];
    payload[..8].copy_from_slice(&(16u64 << 48 | 8).to_le_bytes());
    payload[8..16].copy_from_slice(&(1u64 << 48 | 255).to_le_bytes());
    payload[16..24].copy_from_slice(&40u64.to_le_bytes());
    r.mem.write(BUF, &payload).unwrap();
    let fis = RegisterH2d {
        features: 1,
        ..cmd(DATA_SET_MANAGEMENT, 0, 1)
    };
    let c = r.run(0, fis, r.data(BUF, 512));
    assert_eq!(d2h(&c).status, 0x50, "{c:?}");
    assert_eq!(r.file_sectors(8, 16), vec![0; 16 * 512]);
    assert_eq!(r.file_sectors(255, 1), vec![0; 512]);
    let keep = r.file_sectors(7, 1);
    assert!(keep.iter().enumerate().all(|(i, b)| *b == initial(7, i)));
    let keep = r.file_sectors(24, 1);
    assert!(keep.iter().enumerate().all(|(i, b)| *b == initial(24, i)));
    assert_eq!(std::fs::metadata(&r.path).unwrap().len(), 256 * 512);
    // A range past the end: IDNF.
    r.mem.write(BUF, &(2u64 << 48 | 255).to_le_bytes()).unwrap();
    let c = r.run(0, fis, r.data(BUF, 512));
    assert_eq!(d2h(&c).error, error::IDNF);
}

#[test]
fn read_only_drive_refuses_writes() {
    let mut r = rig_with(64, true);
    let before = std::fs::read(&r.path).unwrap();
    r.mem.write(BUF, &pattern(1, 512)).unwrap();
    for command in [WRITE_SECTORS, WRITE_DMA, WRITE_DMA_EXT, WRITE_DMA_FUA_EXT] {
        let c = r.run(0, cmd(command, 0, 1), r.data(BUF, 512));
        // ABRT|IDNF: see `read_only`.
        assert_eq!(d2h(&c).error, error::ABRT | error::IDNF, "{command:#x}");
    }
    let trim = RegisterH2d {
        features: 1,
        ..cmd(DATA_SET_MANAGEMENT, 0, 1)
    };
    assert_eq!(
        d2h(&r.run(0, trim, r.data(BUF, 512))).error,
        error::ABRT | error::IDNF
    );
    let s = r
        .drive
        .submit(0, &fpdma(WRITE_FPDMA_QUEUED, 0, 0, 1), r.data(BUF, 512));
    assert!(matches!(s, Submission::Pending { accepted: Some(_) }));
    assert_eq!(sdb(&r.wait(1)[0]).error, error::ABRT | error::IDNF);
    r.run(0, cmd(READ_LOG_EXT, 0x10, 1), r.data(BUF, 512));
    let c = r.run(0, cmd(READ_DMA, 0, 1), r.data(BUF, 512));
    assert_eq!(d2h(&c).status, 0x50);
    assert_eq!(std::fs::read(&r.path).unwrap(), before);
    assert_eq!(r.identify()[169] & 1, 0, "no TRIM on a read-only drive");
}

#[test]
fn prdt_too_small_or_outside_ram_aborts() {
    let mut r = rig(16);
    let c = r.run(0, cmd(READ_DMA, 0, 2), r.data(BUF, 512));
    assert_eq!(d2h(&c).error, error::ABRT);
    let c = r.run(0, cmd(READ_SECTORS, 0, 1), r.data(MEM as u64 - 100, 512));
    assert_eq!(d2h(&c).error, error::ABRT);
    assert_eq!(c.bytes_transferred, 0);
}

#[test]
fn host_read_error_is_unc_at_the_failing_lba() {
    let mut r = rig(64);
    // Shrink the image under the drive: sectors 40.. no longer exist.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&r.path)
        .unwrap()
        .set_len(40 * 512)
        .unwrap();
    let c = r.run(0, cmd(READ_DMA_EXT, 32, 16), r.data(BUF, 16 * 512));
    let f = d2h(&c);
    assert_eq!((f.status, f.error, f.lba), (0x51, error::UNC, 40));
    let c = r.run(0, cmd(READ_SECTORS, 38, 4), r.data(BUF, 4 * 512));
    assert_eq!(c.bytes_transferred, 2 * 512);
    assert_eq!((d2h(&c).error, d2h(&c).lba), (error::UNC, 40));
}
