//! SMART, the logs, the power states, identity and the read-only answer, through the
//! `SataDevice` trait.

use super::*;
use crate::clock::ManualClock;

fn smart(sub: u8, lba_low: u8, count: u16) -> RegisterH2d {
    RegisterH2d {
        features: u16::from(sub),
        ..cmd(SMART, 0xc2_4f00 | u64::from(lba_low), count)
    }
}

fn sum(p: &[u8]) -> u8 {
    p.iter().fold(0u8, |s, b| s.wrapping_add(*b))
}

/// Raw value of SMART attribute `id` in a READ DATA page.
fn raw(p: &[u8], id: u8) -> u64 {
    let e = p[2..362]
        .chunks_exact(12)
        .find(|e| e[0] == id)
        .unwrap_or_else(|| panic!("no attribute {id}"));
    let mut r = [0u8; 8];
    r[..6].copy_from_slice(&e[5..11]);
    u64::from_le_bytes(r)
}

impl Rig {
    fn smart_page(&mut self, sub: u8, lba_low: u8, count: u16) -> Vec<u8> {
        let len = u32::from(count.max(1)) * 512;
        let c = self.run(0, smart(sub, lba_low, count), self.data(BUF, len));
        assert_eq!(c.bytes_transferred, len, "SMART {sub:#x} log {lba_low:#x}");
        self.read_mem(BUF, len as usize)
    }

    fn power_mode(&mut self) -> u16 {
        d2h(&self.run(0, cmd(CHECK_POWER_MODE, 0, 0), self.none())).count
    }

    /// Poll until no self-test runs (its steps end on `poll_completions`).
    fn wait_self_test(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.drive.smart.testing() {
            assert!(Instant::now() < deadline, "self-test never ended");
            assert!(self.drive.poll_completions().is_empty());
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[test]
fn smart_read_data_reflects_uptime_and_host_io_with_checksums() {
    let mut r = rig(4096);
    let clock = Arc::new(ManualClock::default());
    r.drive.set_clock(clock.clone());
    clock.advance(Duration::from_secs(3 * 3600 + 10));
    r.run(0, cmd(READ_DMA_EXT, 0, 16), r.data(BUF, 16 * 512));
    let queued = r.drive.submit(0, &fpdma_run_helper(), r.data(BUF, 4 * 512));
    assert!(matches!(queued, Submission::Pending { accepted: Some(_) }));
    let _ = r.wait(1);
    r.run(0, cmd(WRITE_DMA_EXT, 100, 8), r.data(BUF, 8 * 512));
    let p = r.smart_page(0xd0, 0, 1);
    assert_eq!((p[0], sum(&p)), (0x10, 0));
    assert_eq!(raw(&p, 9), 3, "power-on hours");
    assert_eq!(raw(&p, 12), 1, "power cycles");
    assert_eq!(raw(&p, 5), 0, "reallocated");
    assert_eq!(raw(&p, 242), 20, "LBAs read");
    assert_eq!(raw(&p, 241), 8, "LBAs written");
    assert_eq!(raw(&p, 194), 35, "temperature");
    let t = r.smart_page(0xd1, 0, 1);
    assert_eq!((t[0], t[2], t[3], sum(&t)), (0x10, 5, 10, 0));
    // RETURN STATUS keeps working: threshold not exceeded.
    let c = r.run(0, smart(0xda, 0, 0), r.none());
    assert_eq!(d2h(&c).lba >> 8, 0xc24f);
    // AUTO SAVE: F1h enables, 00h disables, anything else aborts.
    assert_eq!(d2h(&r.run(0, smart(0xd2, 0, 0xf1), r.none())).status, 0x50);
    assert_eq!(d2h(&r.run(0, smart(0xd2, 0, 0x00), r.none())).status, 0x50);
    assert_eq!(d2h(&r.run(0, smart(0xd2, 0, 0x07), r.none())).status, 0x41);
    // SMART disabled: READ DATA aborts until ENABLE OPERATIONS.
    r.run(0, smart(0xd9, 0, 0), r.none());
    assert_eq!(r.identify()[85] & 1, 0);
    assert_eq!(
        d2h(&r.run(0, smart(0xd0, 0, 1), r.data(BUF, 512))).status,
        0x41
    );
    r.run(0, smart(0xd8, 0, 0), r.none());
    assert_eq!(r.identify()[85] & 1, 1);
}

/// A READ FPDMA QUEUED of 4 sectors at LBA 200, tag 3.
fn fpdma_run_helper() -> RegisterH2d {
    fpdma(READ_FPDMA_QUEUED, 3, 200, 4)
}

#[test]
fn self_tests_read_the_image_through_the_engine_and_are_logged() {
    let mut r = rig(5000);
    let c = r.run(0, smart(0xd4, 0x02, 0), r.none());
    assert_eq!(
        d2h(&c).status,
        0x50,
        "off-line mode: the command ends at once"
    );
    let p = r.smart_page(0xd0, 0, 1);
    assert_eq!(p[363] >> 4, 0xf, "in progress");
    r.wait_self_test();
    assert!(
        r.drive.io.engine_stats().1.submitted >= 3,
        "5000 sectors: 3 reads"
    );
    let p = r.smart_page(0xd0, 0, 1);
    assert_eq!(p[363], 0x00, "completed without error");
    // The self-test reads are no host reads.
    assert_eq!(raw(&p, 242), 0);
    let log = r.smart_page(0xd5, 0x06, 1);
    assert_eq!((log[0], log[508], sum(&log)), (1, 1, 0));
    assert_eq!((log[2], log[3]), (0x02, 0x00), "extended, completed");
    // Extended self-test log (GPL 07h).
    let c = r.run(0, cmd(READ_LOG_EXT, 0x07, 1), r.data(BUF, 512));
    assert_eq!(c.bytes_transferred, 512);
    let x = r.read_mem(BUF, 512);
    assert_eq!((x[0], x[2], x[4], x[5], sum(&x)), (1, 1, 0x02, 0x00, 0));
    // A short test interrupted by COMRESET is logged as such (status 2h).
    r.run(0, smart(0xd4, 0x01, 0), r.none());
    r.drive.comreset();
    r.wait_self_test();
    let log = r.smart_page(0xd5, 0x06, 1);
    assert_eq!((log[508], log[26], log[27] >> 4), (2, 0x01, 0x2));
    // Captive mode is not offered.
    assert_eq!(d2h(&r.run(0, smart(0xd4, 0x81, 0), r.none())).status, 0x41);
}

#[test]
fn smart_and_gpl_logs_have_directories_and_checksums() {
    let mut r = rig(4096);
    let dir = r.smart_page(0xd5, 0x00, 1);
    let n = |d: &[u8], l: usize| u16::from_le_bytes([d[2 * l], d[2 * l + 1]]);
    assert_eq!(
        (n(&dir, 0), n(&dir, 1), n(&dir, 6), n(&dir, 0x80)),
        (1, 1, 1, 16)
    );
    let e = r.smart_page(0xd5, 0x01, 1);
    assert_eq!(
        (e[0], e[1], sum(&e)),
        (1, 0, 0),
        "summary error log: no errors"
    );
    // SMART WRITE LOG to a host-specific log, read back through both interfaces.
    let page: Vec<u8> = (0..512).map(|i| i as u8 ^ 0x3c).collect();
    r.mem.write(BUF + 0x4000, &page).unwrap();
    let c = r.run(0, smart(0xd6, 0x85, 1), r.data(BUF + 0x4000, 512));
    assert_eq!((d2h(&c).status, c.bytes_transferred), (0x50, 512));
    assert_eq!(r.smart_page(0xd5, 0x85, 1), page);
    let c = r.run(0, cmd(READ_LOG_EXT, 0x85, 1), r.data(BUF, 512));
    assert_eq!(c.bytes_transferred, 512);
    assert_eq!(r.read_mem(BUF, 512), page);
    // WRITE LOG DMA EXT to page 2 of log 9Fh; READ LOG EXT reads pages 1-2 of it.
    let c = r.run(
        0,
        cmd(WRITE_LOG_DMA_EXT, 0x9f | 2 << 8, 1),
        r.data(BUF + 0x4000, 512),
    );
    assert_eq!((d2h(&c).status, c.bytes_transferred), (0x50, 512));
    let c = r.run(0, cmd(READ_LOG_EXT, 0x9f | 1 << 8, 2), r.data(BUF, 1024));
    assert_eq!(c.bytes_transferred, 1024);
    assert_eq!(r.read_mem(BUF, 512), vec![0; 512]);
    assert_eq!(r.read_mem(BUF + 512, 512), page);
    // Past the log's 16 pages, or a log that is not host-specific: ABRT.
    let c = r.run(0, cmd(WRITE_LOG_EXT, 0x9f | 15 << 8, 2), r.data(BUF, 1024));
    assert_eq!(d2h(&c).status, 0x41);
    let c = r.run(0, cmd(WRITE_LOG_EXT, 0x07, 1), r.data(BUF, 512));
    assert_eq!(d2h(&c).status, 0x41);
    // SMART WRITE LOG elsewhere aborts (the self-test log is the drive's).
    assert_eq!(
        d2h(&r.run(0, smart(0xd6, 0x06, 1), r.data(BUF + 0x4000, 512))).status,
        0x41
    );
    // GPL: ext comprehensive error, device statistics, phy events, every checksum right.
    for (log, pages) in [(0x03u64, 1u16), (0x04, 8), (0x10, 1), (0x11, 1), (0x30, 9)] {
        let c = r.run(
            0,
            cmd(READ_LOG_DMA_EXT, log, pages),
            r.data(BUF, u32::from(pages) * 512),
        );
        assert_eq!(c.bytes_transferred, u32::from(pages) * 512, "log {log:#x}");
        let b = r.read_mem(BUF, pages as usize * 512);
        if matches!(log, 0x03 | 0x10 | 0x11) {
            assert_eq!(sum(&b), 0, "log {log:#x} checksum");
        }
    }
    let c = r.run(0, cmd(READ_LOG_EXT, 0x04 | 1 << 8, 1), r.data(BUF, 512));
    assert_eq!(c.bytes_transferred, 512);
    let g = r.read_mem(BUF, 512);
    assert_eq!(u64::from_le_bytes(g[0..8].try_into().unwrap()), 1 << 16 | 1);
    // IDENTIFY DEVICE data log page 08h: SATA capabilities = words 76/77.
    let w = r.identify();
    let c = r.run(0, cmd(READ_LOG_EXT, 0x30 | 8 << 8, 1), r.data(BUF, 512));
    assert_eq!(c.bytes_transferred, 512);
    let s = r.read_mem(BUF, 512);
    assert_eq!(
        u64::from_le_bytes(s[8..16].try_into().unwrap()),
        1 << 63 | u64::from(w[77]) << 16 | u64::from(w[76])
    );
}

#[test]
fn power_states_standby_idle_and_sleep_until_reset() {
    let mut r = rig(1000);
    assert_eq!(r.power_mode(), 0xff);
    r.run(0, cmd(STANDBY_IMMEDIATE, 0, 0), r.none());
    assert_eq!(r.power_mode(), 0x00, "standby");
    r.run(0, cmd(READ_DMA_EXT, 0, 1), r.data(BUF, 512));
    assert_eq!(r.power_mode(), 0xff, "a read spins it up");
    r.run(0, cmd(IDLE_IMMEDIATE, 0, 0), r.none());
    assert_eq!(r.drive.power_state(), power::PowerState::Idle);
    assert_eq!(r.power_mode(), 0xff);
    r.run(0, cmd(STANDBY, 0, 0), r.none());
    assert_eq!(r.power_mode(), 0x00);
    // SLEEP completes; then nothing is answered until a reset.
    let c = r.run(0, cmd(SLEEP, 0, 0), r.none());
    assert_eq!(d2h(&c).status, 0x50);
    assert!(matches!(
        r.drive.submit(0, &cmd(CHECK_POWER_MODE, 0, 0), r.none()),
        Submission::Pending { accepted: None }
    ));
    assert!(r.drive.poll_completions().is_empty());
    // COMRESET wakes it into standby (ACS-3 PM3:PM2).
    let sig = r.drive.comreset();
    assert_eq!((sig.lba, sig.count), (1, 1));
    assert_eq!(r.power_mode(), 0x00);
    // So does a software reset.
    r.run(0, cmd(SLEEP, 0, 0), r.none());
    let srst = |control| RegisterH2d {
        c: false,
        control,
        ..Default::default()
    };
    assert_eq!(r.drive.device_control(&srst(0x04)), None);
    assert!(r.drive.device_control(&srst(0x00)).is_some());
    assert_eq!(r.power_mode(), 0x00);
    // IDENTIFY says power management is supported and enabled.
    let w = r.identify();
    assert_eq!((w[82] & 0x08, w[85] & 0x08), (0x08, 0x08));
}

#[test]
fn identity_wwn_firmware_and_link_speed_words() {
    let mut r = rig(1000);
    let w = r.identify();
    assert_eq!(get_string(&w[23..27]), "SV01");
    let wwn = (0..4).fold(0u64, |a, i| a << 16 | u64::from(w[108 + i]));
    assert_eq!(wwn, crate::ata::identify::wwn_from_serial("TESTSERIAL"));
    assert_eq!(wwn >> 60, 5);
    assert_eq!((w[84] & 0x0100, w[87] & 0x0100), (0x0100, 0x0100));
    assert_eq!(w[76] & 0x000e, 0x000e, "Gen1-3 supported");
    assert_eq!(w[77] & 0x000e, 0, "no link negotiated yet");
    r.drive.link_negotiated(1);
    assert_eq!((r.identify()[77] >> 1) & 7, 1, "word 77 follows the link");
    // A configured WWN.
    let path = image(8);
    let cfg = DriveConfig {
        path: path.clone(),
        model: None,
        serial: None,
        wwn: Some(0x5000_c500_1234_5678),
        read_only: false,
        engine: Default::default(),
    };
    let d = EmulatedDrive::open(&cfg, Arc::new(EventFd::new(EFD_NONBLOCK).unwrap())).unwrap();
    assert_eq!(d.wwn(), 0x5000_c500_1234_5678);
    drop(d);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn read_only_writes_are_refused_with_write_protected_sense() {
    let mut r = rig_with(64, true);
    // Sense data reporting, as libata enables it (SET FEATURES C3h, Count 1).
    let c = r.run(
        0,
        RegisterH2d {
            features: 0xc3,
            ..cmd(SET_FEATURES, 0, 1)
        },
        r.none(),
    );
    assert_eq!(d2h(&c).status, 0x50);
    assert_eq!(r.identify()[120] & 0x40, 0x40);
    // Non-queued: ABRT|IDNF (not counted against the link by libata), status
    // DRDY|SENSE|ERR, REQUEST SENSE DATA EXT: 07h/27h/00h.
    let c = r.run(0, cmd(WRITE_DMA_EXT, 0, 1), r.data(BUF, 512));
    assert_eq!(
        (d2h(&c).status, d2h(&c).error),
        (0x43, error::ABRT | error::IDNF)
    );
    let c = r.run(0, cmd(REQUEST_SENSE_DATA_EXT, 0, 0), r.none());
    assert_eq!(d2h(&c).lba & 0xf_ffff, 0x7_2700);
    let c = r.run(0, cmd(REQUEST_SENSE_DATA_EXT, 0, 0), r.none());
    assert_eq!(d2h(&c).lba, 0, "consumed: NO SENSE");
    // Queued: SDB with ERR, then the NCQ error log with NCQ autosense (IDENTIFY word 78 bit 7).
    assert_eq!(r.identify()[78] & 0x80, 0x80);
    match r
        .drive
        .submit(0, &fpdma(WRITE_FPDMA_QUEUED, 4, 0, 1), r.data(BUF, 512))
    {
        Submission::Pending { accepted: Some(_) } => {}
        other => panic!("{other:?}"),
    }
    let done = r.wait(1);
    assert_eq!(sdb(&done[0]).status & 0x01, 0x01);
    let c = r.run(0, cmd(READ_LOG_EXT, 0x10, 1), r.data(BUF, 512));
    assert_eq!(c.bytes_transferred, 512);
    let page = r.read_mem(BUF, 512);
    assert_eq!(
        (page[0], page[2], page[3]),
        (4, 0x43, error::ABRT | error::IDNF)
    );
    assert_eq!(sdb(&done[0]).error, error::ABRT | error::IDNF);
    assert_eq!(&page[14..17], &[0x07, 0x27, 0x00]);
    assert_eq!(sum(&page), 0);
    // Reads still work.
    let c = r.run(0, cmd(READ_DMA_EXT, 0, 1), r.data(BUF, 512));
    assert_eq!(d2h(&c).status, 0x50);
}
