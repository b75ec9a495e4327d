//! IDENTIFY, logs, non-data commands, refused commands and resets.

use super::*;

#[test]
fn identify_reports_capacity_strings_ncq_and_checksum() {
    let mut r = rig(3000);
    let c = r.run(0, cmd(IDENTIFY_DEVICE, 0, 0), r.data(BUF, 512));
    match c.fises.as_slice() {
        [Fis::PioSetup(p)] => {
            assert!(p.device_to_host && p.interrupt);
            assert_eq!((p.transfer_count, p.e_status), (512, 0x50));
            assert_eq!(p.status & 0x08, 0x08, "DRQ");
        }
        other => panic!("{other:?}"),
    }
    let w = r.identify();
    assert_eq!(u32::from(w[60]) | u32::from(w[61]) << 16, 3000);
    assert_eq!(
        (0..4).fold(0u64, |a, i| a | u64::from(w[100 + i]) << (16 * i)),
        3000
    );
    assert_eq!(get_string(&w[27..47]), "Test Model");
    assert_eq!(get_string(&w[10..20]), "TESTSERIAL");
    assert_eq!(w[75] & 0x1f, 31);
    assert_ne!(w[76] & 0x0100, 0, "NCQ");
    assert_ne!(w[83] & 0x0400, 0, "LBA48");
    assert_eq!(w[169] & 1, 1, "TRIM");
    assert_eq!(w[217], 1);
    let sum = w.iter().fold(0u8, |s, x| {
        s.wrapping_add(*x as u8).wrapping_add((x >> 8) as u8)
    });
    assert_eq!((w[255] & 0xff, sum), (0xa5, 0));
}

#[test]
fn default_serial_is_stable_per_path() {
    let path = image(8);
    let open = |p: &PathBuf| {
        let n = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
        let cfg = DriveConfig {
            path: p.clone(),
            model: None,
            serial: None,
            wwn: None,
            read_only: true,
            engine: Default::default(),
        };
        EmulatedDrive::open(&cfg, n).unwrap().serial.clone()
    };
    let a = open(&path);
    assert_eq!(a, open(&path));
    assert!(a.len() <= 20 && a.starts_with("SVM"));
    let other = image(8);
    assert_ne!(a, open(&other));
    std::fs::remove_file(path).unwrap();
    std::fs::remove_file(other).unwrap();
}

#[test]
fn flush_native_max_power_smart_and_diagnostics() {
    let mut r = rig(1000);
    for command in [FLUSH_CACHE, FLUSH_CACHE_EXT] {
        let c = r.run(0, cmd(command, 0, 0), r.none());
        assert_eq!((d2h(&c).status, d2h(&c).interrupt), (0x50, true));
    }
    let c = r.run(0, cmd(READ_NATIVE_MAX_ADDRESS_EXT, 0, 0), r.none());
    assert_eq!(d2h(&c).lba, 999);
    let c = r.run(0, cmd(READ_NATIVE_MAX_ADDRESS, 0, 0), r.none());
    assert_eq!((d2h(&c).lba, d2h(&c).device & 0x0f), (999, 0));
    let c = r.run(0, cmd(CHECK_POWER_MODE, 0, 0), r.none());
    assert_eq!(d2h(&c).count, 0xff);
    let smart_status = RegisterH2d {
        features: 0xda,
        ..cmd(SMART, 0xc2_4f00, 0)
    };
    let c = r.run(0, smart_status, r.none());
    assert_eq!((d2h(&c).status, d2h(&c).lba >> 8), (0x50, 0xc24f));
    let c = r.run(
        0,
        RegisterH2d {
            lba: 0,
            ..smart_status
        },
        r.none(),
    );
    assert_eq!(d2h(&c).error, error::ABRT, "no SMART signature");
    let c = r.run(0, cmd(EXECUTE_DEVICE_DIAGNOSTIC, 0, 0), r.none());
    let f = d2h(&c);
    assert_eq!((f.status, f.error, f.count, f.lba), (0x50, 1, 1, 1));
}

#[test]
fn native_max_of_a_28_bit_command_uses_the_device_nibble() {
    // Capacity beyond 28 bits needs a sparse image.
    let path = image(1);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len((0x1234_5678u64 + 1) * 512)
        .unwrap();
    let n = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
    let cfg = DriveConfig {
        path: path.clone(),
        model: None,
        serial: None,
        wwn: None,
        read_only: false,
        engine: Default::default(),
    };
    let mut d = EmulatedDrive::open(&cfg, n).unwrap();
    let mem = Arc::new(VecMemory::new(4096));
    let Submission::Complete(c) =
        d.submit(0, &cmd(READ_NATIVE_MAX_ADDRESS, 0, 0), DataPath::empty(mem))
    else {
        panic!()
    };
    let f = d2h(&c);
    assert_eq!((f.lba, f.device & 0x0f), (0xff_ffff, 0x0f));
    drop(d);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn unknown_and_refused_commands_abort() {
    let mut r = rig(16);
    for command in [
        0xffu8,
        NOP,
        DEVICE_RESET,
        SET_MAX_ADDRESS,
        0x01,
        NCQ_NON_DATA,
    ] {
        // ABRT reads as a drive's: DRDY|ERR (41h), the Device register as sent.
        let fis = RegisterH2d {
            device: 0xe3,
            ..cmd(command, 0, 0)
        };
        let c = r.run(0, fis, r.none());
        assert_eq!(
            (d2h(&c).status, d2h(&c).error, d2h(&c).device),
            (0x41, error::ABRT, 0xe3),
            "{command:#x}"
        );
    }
    let set_features = |f: u16, count: u16| RegisterH2d {
        features: f,
        ..cmd(SET_FEATURES, 0, count)
    };
    assert_eq!(
        d2h(&r.run(0, set_features(0x99, 0), r.none())).error,
        error::ABRT
    );
    assert_eq!(
        d2h(&r.run(0, set_features(0x03, 0x47), r.none())).error,
        error::ABRT
    );
    assert_eq!(
        d2h(&r.run(0, set_features(0x03, 0x45), r.none())).status,
        0x50
    );
    assert_eq!(r.identify()[88], 0x207f, "UDMA5 selected");
    assert_eq!(d2h(&r.run(0, set_features(0x82, 0), r.none())).status, 0x50);
    assert_eq!(r.identify()[85] & 0x20, 0, "write cache off");
}

#[test]
fn log_directory_and_identify_log() {
    let mut r = rig(16);
    let c = r.run(0, cmd(READ_LOG_DMA_EXT, 0x00, 1), r.data(BUF, 512));
    assert_eq!(d2h(&c).status, 0x50);
    let dir = r.read_mem(BUF, 512);
    assert_eq!((dir[0x20], dir[0x60]), (1, 9));
    // IDENTIFY DEVICE data log, pages 0-1 in one command (page number in LBA 15:8).
    let c = r.run(0, cmd(READ_LOG_EXT, 0x30, 2), r.data(BUF, 1024));
    assert_eq!(c.bytes_transferred, 1024);
    let p = r.read_mem(BUF, 1024);
    assert_eq!(&p[8..12], &[7, 0, 1, 2]);
    let w = r.identify();
    assert_eq!(p[512..514], w[0].to_le_bytes());
    let c = r.run(0, cmd(READ_LOG_EXT, 0x30 | 8 << 8, 2), r.data(BUF, 1024));
    assert_eq!(d2h(&c).error, error::ABRT, "page 9 does not exist");
    let c = r.run(0, cmd(READ_LOG_EXT, 0x13, 1), r.data(BUF, 512));
    assert_eq!(d2h(&c).error, error::ABRT);
}

#[test]
fn resets_answer_with_the_signature_and_restore_defaults() {
    let mut r = rig(16);
    r.run(0, cmd(SET_MULTIPLE_MODE, 0, 8), r.none());
    let sig = r.drive.comreset();
    assert_eq!(
        (sig.status, sig.error, sig.count, sig.lba, sig.device),
        (0x50, 1, 1, 1, 0)
    );
    assert_eq!(r.identify()[59], 0);
    r.run(0, cmd(SET_MULTIPLE_MODE, 0, 8), r.none());
    let srst = RegisterH2d {
        control: 0x04,
        ..Default::default()
    };
    assert_eq!(r.drive.device_control(&srst), None);
    let sig = r.drive.device_control(&RegisterH2d::default()).unwrap();
    assert_eq!((sig.status, sig.error, sig.count, sig.lba), (0x50, 1, 1, 1));
    assert_eq!(r.identify()[59], 0);
    assert_eq!(r.drive.device_control(&RegisterH2d::default()), None);
}

#[test]
fn dco_identify_answers_a_checksummed_page_and_dco_changes_abort() {
    let mut r = rig(5000);
    let fis = |sub: u16| RegisterH2d {
        features: sub,
        ..cmd(0xb1, 0, 0)
    };
    let c = r.run(0, fis(0xc2), r.data(BUF, 512));
    assert_eq!(c.bytes_transferred, 512);
    let p = r.read_mem(BUF, 512);
    assert_eq!(u16::from_le_bytes([p[0], p[1]]), 2, "revision");
    assert_eq!(u16::from_le_bytes([p[6], p[7]]), 4999, "highest LBA");
    assert_eq!(p[510], 0xa5);
    assert_eq!(p.iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
    for sub in [0xc0u16, 0xc1, 0xc3] {
        let c = r.run(0, fis(sub), r.data(BUF, 512));
        assert_eq!(
            (d2h(&c).status, d2h(&c).error),
            (0x41, error::ABRT),
            "{sub:#x}"
        );
    }
    assert_eq!(r.identify()[100], 5000, "capacity unchanged");
}
