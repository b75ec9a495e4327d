//! Tests of the emulated drive through the `SataDevice` trait, over a temporary image file and
//! `VecMemory` guest memory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::*;
use crate::ata::command::opcode::*;
use crate::ata::identify::get_string;
use crate::ata::registers::error;
use crate::mem::{GuestMemory, VecMemory};
use crate::sata::{PioSetup, PrdEntry, SetDeviceBits};

const MEM: usize = 48 << 20;
/// Where test data lives in guest memory.
const BUF: u64 = 0x10000;

struct Rig {
    drive: EmulatedDrive,
    mem: Arc<VecMemory>,
    path: PathBuf,
    sectors: u64,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The byte an image sector holds at offset `i` before any test writes it.
fn initial(lba: u64, i: usize) -> u8 {
    (lba as u8) ^ (i as u8).wrapping_mul(7) ^ 0x5a
}

fn image(sectors: u64) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "satavm-ata-test-{}-{}.img",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let mut data = vec![0u8; sectors as usize * 512];
    for (lba, s) in data.chunks_mut(512).enumerate() {
        for (i, b) in s.iter_mut().enumerate() {
            *b = initial(lba as u64, i);
        }
    }
    std::fs::write(&path, data).unwrap();
    path
}

fn rig_with(sectors: u64, read_only: bool) -> Rig {
    let path = image(sectors);
    let notifier = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
    let config = DriveConfig {
        path: path.clone(),
        model: Some("Test Model".into()),
        serial: Some("TESTSERIAL".into()),
        read_only,
    };
    let drive = EmulatedDrive::open(&config, notifier).unwrap();
    Rig {
        drive,
        mem: Arc::new(VecMemory::new(MEM)),
        path,
        sectors,
    }
}

fn rig(sectors: u64) -> Rig {
    rig_with(sectors, false)
}

fn cmd(command: u8, lba: u64, count: u16) -> RegisterH2d {
    RegisterH2d {
        c: true,
        command,
        lba,
        count,
        device: 0x40,
        ..Default::default()
    }
}

fn fpdma(command: u8, tag: u8, lba: u64, sectors: u16) -> RegisterH2d {
    RegisterH2d {
        features: sectors,
        count: u16::from(tag) << 3,
        ..cmd(command, lba, 0)
    }
}

fn d2h(c: &Completion) -> RegisterD2h {
    match c.fises.last() {
        Some(Fis::RegisterD2h(f)) => *f,
        other => panic!("expected a Register D2H FIS, got {other:?}"),
    }
}

fn sdb(c: &Completion) -> SetDeviceBits {
    match c.fises.last() {
        Some(Fis::SetDeviceBits(f)) => *f,
        other => panic!("expected a Set Device Bits FIS, got {other:?}"),
    }
}

impl Rig {
    fn data(&self, addr: u64, len: u32) -> DataPath {
        DataPath::new(self.mem.clone(), vec![PrdEntry { addr, len }])
    }

    fn none(&self) -> DataPath {
        DataPath::empty(self.mem.clone())
    }

    /// Wait until `n` completions arrived.
    fn wait(&mut self, n: usize) -> Vec<Completion> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut got = Vec::new();
        while got.len() < n {
            assert!(Instant::now() < deadline, "timed out, got {got:?}");
            got.extend(self.drive.poll_completions());
            std::thread::sleep(Duration::from_millis(1));
        }
        got
    }

    /// Submit and wait for the command to end.
    fn run(&mut self, slot: u8, fis: RegisterH2d, data: DataPath) -> Completion {
        match self.drive.submit(slot, &fis, data) {
            Submission::Complete(c) => c,
            Submission::Pending { accepted } => {
                assert_eq!(accepted, None, "queued commands go through submit directly");
                let c = self.wait(1).remove(0);
                assert_eq!(c.slot, slot);
                c
            }
        }
    }

    fn read_mem(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        self.mem.read(addr, &mut b).unwrap();
        b
    }

    fn file_sectors(&self, lba: u64, n: usize) -> Vec<u8> {
        let f = std::fs::read(&self.path).unwrap();
        f[lba as usize * 512..(lba as usize + n) * 512].to_vec()
    }

    fn identify(&mut self) -> [u16; 256] {
        let c = self.run(0, cmd(IDENTIFY_DEVICE, 0, 0), self.data(BUF, 512));
        assert_eq!(c.bytes_transferred, 512);
        let b = self.read_mem(BUF, 512);
        std::array::from_fn(|i| u16::from_le_bytes([b[2 * i], b[2 * i + 1]]))
    }
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

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
            read_only: true,
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
    // 65536 sectors (32 MiB) for tag 0, then 31 one-sector reads: the small ones finish
    // while the big one is still copying.
    let mut r = rig(65536 + 64);
    let big = r.data(BUF, 65536 * 512);
    assert!(matches!(
        r.drive.submit(0, &fpdma(READ_FPDMA_QUEUED, 0, 64, 0), big),
        Submission::Pending { accepted: Some(_) }
    ));
    let small = 0x0210_0000u64;
    for tag in 1..32u8 {
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
    // A tag already in flight is refused.
    let dup = r
        .drive
        .submit(3, &fpdma(READ_FPDMA_QUEUED, 3, 0, 1), r.data(small, 512));
    assert!(matches!(dup, Submission::Complete(ref c) if d2h(c).error == error::ABRT));
    let done = r.wait(32);
    let order: Vec<u8> = done.iter().map(|c| c.slot).collect();
    assert_ne!(
        order[0], 0,
        "the 32 MiB command cannot finish first: {order:?}"
    );
    let mut seen = 0u32;
    for c in &done {
        let s = sdb(c);
        assert_eq!(s.sactive, 1 << c.slot);
        assert_eq!(seen & s.sactive, 0);
        seen |= s.sactive;
    }
    assert_eq!(seen, u32::MAX);
    for tag in 1..32u64 {
        let got = r.read_mem(small + tag * 512, 512);
        assert!(
            got.iter().enumerate().all(|(i, b)| *b == initial(tag, i)),
            "{tag}"
        );
    }
    let got = r.read_mem(BUF + 65535 * 512, 512);
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, b)| *b == initial(64 + 65535, i)));
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
    // Tag 0 was aborted, never completed; queued commands work again.
    std::thread::sleep(Duration::from_millis(50));
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
fn abort_all_stops_every_command_before_returning() {
    let mut r = rig(65536);
    for tag in 0..4u8 {
        let s = r.drive.submit(
            tag,
            &fpdma(READ_FPDMA_QUEUED, tag, 0, 0),
            r.data(BUF + u64::from(tag) * 0x10, 65536 * 512 - 0x40),
        );
        assert!(matches!(s, Submission::Pending { .. }));
    }
    std::thread::sleep(Duration::from_millis(2));
    r.drive.abort_all();
    let snapshot = r.read_mem(BUF, 65536 * 512);
    std::thread::sleep(Duration::from_millis(100));
    assert!(r.drive.poll_completions().is_empty());
    assert!(
        snapshot == r.read_mem(BUF, 65536 * 512),
        "guest memory changed after abort_all"
    );
    // The tags are free again.
    assert!(matches!(
        r.drive
            .submit(2, &fpdma(READ_FPDMA_QUEUED, 2, 0, 1), r.data(BUF, 512)),
        Submission::Pending { accepted: Some(_) }
    ));
    assert_eq!(r.wait(1)[0].slot, 2);
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
    let r = rig(8);
    drop(r);
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
        read_only: false,
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
fn read_only_drive_refuses_writes() {
    let mut r = rig_with(64, true);
    let before = std::fs::read(&r.path).unwrap();
    r.mem.write(BUF, &pattern(1, 512)).unwrap();
    for command in [WRITE_SECTORS, WRITE_DMA, WRITE_DMA_EXT, WRITE_DMA_FUA_EXT] {
        let c = r.run(0, cmd(command, 0, 1), r.data(BUF, 512));
        assert_eq!(d2h(&c).error, error::ABRT, "{command:#x}");
    }
    let trim = RegisterH2d {
        features: 1,
        ..cmd(DATA_SET_MANAGEMENT, 0, 1)
    };
    assert_eq!(d2h(&r.run(0, trim, r.data(BUF, 512))).error, error::ABRT);
    let s = r
        .drive
        .submit(0, &fpdma(WRITE_FPDMA_QUEUED, 0, 0, 1), r.data(BUF, 512));
    assert!(matches!(s, Submission::Pending { accepted: Some(_) }));
    assert_eq!(sdb(&r.wait(1)[0]).error, error::ABRT);
    r.run(0, cmd(READ_LOG_EXT, 0x10, 1), r.data(BUF, 512));
    let c = r.run(0, cmd(READ_DMA, 0, 1), r.data(BUF, 512));
    assert_eq!(d2h(&c).status, 0x50);
    assert_eq!(std::fs::read(&r.path).unwrap(), before);
    assert_eq!(r.identify()[169] & 1, 0, "no TRIM on a read-only drive");
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
        let c = r.run(0, cmd(command, 0, 0), r.none());
        assert_eq!(
            (d2h(&c).status, d2h(&c).error),
            (0x51, error::ABRT),
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

#[test]
fn log_directory_and_identify_log() {
    let mut r = rig(16);
    let c = r.run(0, cmd(READ_LOG_DMA_EXT, 0x00, 1), r.data(BUF, 512));
    assert_eq!(d2h(&c).status, 0x50);
    let dir = r.read_mem(BUF, 512);
    assert_eq!((dir[0x20], dir[0x60]), (1, 3));
    // IDENTIFY DEVICE data log, pages 0-1 in one command (page number in LBA 15:8).
    let c = r.run(0, cmd(READ_LOG_EXT, 0x30, 2), r.data(BUF, 1024));
    assert_eq!(c.bytes_transferred, 1024);
    let p = r.read_mem(BUF, 1024);
    assert_eq!(&p[8..12], &[3, 0, 1, 2]);
    let w = r.identify();
    assert_eq!(p[512..514], w[0].to_le_bytes());
    let c = r.run(0, cmd(READ_LOG_EXT, 0x30 | 2 << 8, 2), r.data(BUF, 1024));
    assert_eq!(d2h(&c).error, error::ABRT, "page 3 does not exist");
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
