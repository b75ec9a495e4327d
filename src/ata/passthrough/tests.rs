//! The drive logic against a fake SG transport: a RAM disk behind a SATL that decodes the CDBs
//! and answers the way Linux 6.1's libata over QEMU's AHCI does (the rig's host), with scripted
//! errors, timeouts and gates that hold a command until the test releases it (to complete NCQ
//! commands out of order).

use std::collections::HashSet;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::sysfs::QueueLimits;
use super::{PassthroughConfig, PassthroughDrive};
use crate::block::sg::threads::SgThreadEngine;
use crate::block::sg::{host_status, SgRequest, SgResult, SgTransport};
use crate::mem::VecMemory;
use crate::sata::{
    Completion, DataPath, Fis, PrdEntry, RegisterD2h, RegisterH2d, SataDevice, Submission,
};

const DISK_SECTORS: u64 = 4096;

#[derive(Default)]
struct FakeState {
    disk: Vec<u8>,
    /// CDBs in the order they were received.
    cdbs: Vec<Vec<u8>>,
    /// Events "start <lba>" / "end <lba>".
    events: Vec<String>,
    /// LBAs whose commands wait until released.
    gated: HashSet<u64>,
    fail_lba: Option<u64>,
    timeout_lba: Option<u64>,
    reject_cdb16: bool,
    vanished: bool,
}

struct FakeSatl {
    st: Mutex<FakeState>,
    cv: Condvar,
}

/// The registers libata would put in the taskfile from the CDB.
struct Decoded {
    command: u8,
    lba: u64,
}

fn decode(c: &[u8]) -> Decoded {
    if c[0] == 0x85 {
        let ext = c[1] & 1 != 0;
        Decoded {
            command: c[14],
            lba: u64::from(c[8])
                | u64::from(c[10]) << 8
                | u64::from(c[12]) << 16
                | if ext {
                    u64::from(c[7]) << 24 | u64::from(c[9]) << 32 | u64::from(c[11]) << 40
                } else {
                    u64::from(c[13] & 0xf) << 24
                },
        }
    } else {
        Decoded {
            command: c[9],
            lba: u64::from(c[5])
                | u64::from(c[6]) << 8
                | u64::from(c[7]) << 16
                | u64::from(c[8] & 0xf) << 24,
        }
    }
}

/// Descriptor sense with an ATA Status Return descriptor, as libata 6.1 builds it for a
/// successful command with CK_COND.
fn ata_sense(status: u8, error: u8, lba: u64) -> SgResult {
    let b = lba.to_be_bytes();
    let mut sense = vec![0x72, 0x01, 0, 0x1d, 0, 0, 0, 14];
    sense.extend_from_slice(&[
        0x09, 0x0c, 1, error, 0, 0, b[4], b[7], b[3], b[6], b[2], b[5], 0x40, status,
    ]);
    SgResult {
        status: 2,
        sense,
        driver_status: 0x08,
        ..Default::default()
    }
}

/// Fixed sense in libata's legacy layout (registers from byte 8 on), as a failed 48-bit command
/// gets it through /dev/sgN: only the 18 bytes `8 + byte 7` reach user space.
fn legacy_error_sense(status: u8, error: u8, lba: u64) -> SgResult {
    // ata_to_sense_error: UNC is MEDIUM ERROR 11/04, ABRT is ABORTED COMMAND 00/00.
    let (key, asc, ascq) = if error & 0x40 != 0 {
        (0x03, 0x11, 0x04)
    } else {
        (0x0b, 0x00, 0x00)
    };
    let sense = vec![
        0x70, 0, key, 0, 0, 0, 0, 0x0a, error, status, 0x40, 0, asc, ascq, 0, 0, 0x80, lba as u8,
    ];
    SgResult {
        status: 2,
        sense,
        driver_status: 0x08,
        ..Default::default()
    }
}

/// A successful command: GOOD without sense unless CK_COND was set. With CK_COND, a non-data
/// command gets its fresh D2H registers; a data command gets what QEMU left in the PIO Setup
/// (PIO data-in) or D2H (NCQ) area: an older aborted command's status 41h, error 04h.
fn success(cdb: &[u8], status: u8, lba: u64) -> SgResult {
    let ck_cond = cdb[2] & 0x20 != 0;
    let protocol = (cdb[1] >> 1) & 0xf;
    match (ck_cond, protocol) {
        (false, _) => SgResult::default(),
        (true, 3) => ata_sense(status, 0, lba),
        (true, _) => legacy_error_sense(0x41, 0x04, 0),
    }
}

impl FakeSatl {
    fn new() -> Arc<FakeSatl> {
        let disk = (0..DISK_SECTORS * 512)
            .map(|i| (i / 512) as u8 ^ (i as u8))
            .collect();
        Arc::new(FakeSatl {
            st: Mutex::new(FakeState {
                disk,
                ..Default::default()
            }),
            cv: Condvar::new(),
        })
    }

    fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        let r = f(&mut self.st.lock().unwrap());
        self.cv.notify_all();
        r
    }

    fn release(&self, lba: u64) {
        self.with(|s| s.gated.remove(&lba));
    }
}

impl SgTransport for FakeSatl {
    fn execute(&self, req: SgRequest<'_>) -> io::Result<SgResult> {
        let d = decode(req.cdb);
        let mut st = self.st.lock().unwrap();
        st.cdbs.push(req.cdb.to_vec());
        if st.vanished {
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        }
        if st.reject_cdb16 && req.cdb[0] == 0x85 {
            return Ok(SgResult {
                host_status: host_status::DID_ABORT,
                ..Default::default()
            });
        }
        st.events.push(format!("start {}", d.lba));
        while st.gated.contains(&d.lba) {
            st = self.cv.wait(st).unwrap();
        }
        st.events.push(format!("end {}", d.lba));
        let blocks = req.data.len() as u64 / 512;
        let range = d.lba..d.lba + blocks.max(1);
        if st.timeout_lba.is_some_and(|l| range.contains(&l)) {
            return Ok(SgResult {
                host_status: host_status::DID_TIME_OUT,
                ..Default::default()
            });
        }
        if let Some(l) = st.fail_lba.filter(|l| range.contains(l)) {
            return Ok(legacy_error_sense(0x51, 0x40, l));
        }
        let off = d.lba as usize * 512;
        let eio = || io::Error::from_raw_os_error(libc::EIO);
        match d.command {
            // Reads.
            0x20 | 0x24 | 0x25 | 0xc8 | 0x60 => {
                let src = st.disk.get(off..off + req.data.len()).ok_or_else(eio)?;
                req.data.copy_from_slice(src);
            }
            // Writes.
            0x30 | 0x34 | 0x35 | 0xca | 0x61 | 0x3d => {
                let dst = st.disk.get_mut(off..off + req.data.len()).ok_or_else(eio)?;
                dst.copy_from_slice(req.data);
            }
            0xec => {
                req.data.fill(0);
                req.data[0] = 0x40;
                req.data[20] = b'F';
            }
            // READ LOG EXT 10h after the host's own EH read it: NQ set, no error.
            0x2f if d.lba == 0x10 => {
                req.data.fill(0);
                req.data[0] = 0x80;
                req.data[511] = 0x80;
            }
            0xea | 0xe7 | 0xef | 0xc6 => {}
            0xf8 => return Ok(success(req.cdb, 0x50, DISK_SECTORS - 1)),
            _ => return Ok(legacy_error_sense(0x51, 0x04, 0)),
        }
        Ok(success(req.cdb, 0x50, 0))
    }
}

struct Rig {
    drive: PassthroughDrive,
    fake: Arc<FakeSatl>,
    mem: Arc<VecMemory>,
    notifier: Arc<EventFd>,
}

fn rig_with(limits: QueueLimits) -> Rig {
    rig_with_path(limits, "/dev/fake")
}

fn rig_with_path(limits: QueueLimits, path: &str) -> Rig {
    let fake = FakeSatl::new();
    let notifier = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
    let engine =
        SgThreadEngine::with_transport(fake.clone(), notifier.clone(), limits.workers()).unwrap();
    let drive =
        PassthroughDrive::with_engine(Box::new(engine), limits, &PassthroughConfig::new(path));
    Rig {
        drive,
        fake,
        mem: Arc::new(VecMemory::new(4 << 20)),
        notifier,
    }
}

fn rig() -> Rig {
    rig_at("/dev/fake")
}

/// [`rig`] with the drive at `path` (what its log lines start with).
fn rig_at(path: &str) -> Rig {
    rig_with_path(
        QueueLimits {
            max_hw_sectors_kb: Some(512),
            max_segments: None,
            queue_depth: Some(32),
        },
        path,
    )
}

impl Rig {
    /// A data path of `len` bytes at `addr`, in two PRD entries.
    fn data(&self, addr: u64, len: u32) -> DataPath {
        let half = len / 2;
        DataPath::new(
            self.mem.clone(),
            vec![
                PrdEntry { addr, len: half },
                PrdEntry {
                    addr: addr + u64::from(half) + 0x1000,
                    len: len - half,
                },
            ],
        )
    }

    fn guest_bytes(&self, dp: &DataPath) -> Vec<u8> {
        let mut v = vec![0u8; dp.len() as usize];
        dp.read_at(0, &mut v).unwrap();
        v
    }

    fn disk(&self, lba: u64, sectors: u64) -> Vec<u8> {
        self.fake
            .with(|s| s.disk[lba as usize * 512..(lba + sectors) as usize * 512].to_vec())
    }

    /// Wait for `n` completions (at most 5 s).
    fn wait(&mut self, n: usize) -> Vec<Completion> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut out = Vec::new();
        while out.len() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} completions",
                out.len()
            );
            let _ = self.notifier.read();
            out.extend(self.drive.poll_completions());
            std::thread::sleep(Duration::from_millis(2));
        }
        out
    }

    /// Poll until the drive has drained its aborted commands (at most 5 s), asserting that
    /// none of them is reported.
    fn drain_quietly(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.drive.draining() {
            assert!(Instant::now() < deadline, "the drive never drained");
            let _ = self.notifier.read();
            assert_eq!(
                self.drive.poll_completions(),
                vec![],
                "an aborted command was reported"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(self.drive.poll_completions(), vec![]);
    }

    fn wait_events(&self, pred: impl Fn(&FakeState) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.fake.with(|s| pred(s)) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for the fake drive"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn started(&self, lba: u64) -> bool {
        let e = format!("start {lba}");
        self.fake.with(|s| s.events.contains(&e))
    }
}

fn cmd(command: u8, features: u16, count: u16, lba: u64) -> RegisterH2d {
    RegisterH2d {
        c: true,
        command,
        features,
        count,
        lba,
        device: 0x40,
        ..Default::default()
    }
}

fn only_d2h(c: &Completion) -> RegisterD2h {
    match c.fises.as_slice() {
        [Fis::RegisterD2h(d)] => *d,
        other => panic!("expected one Register D2H FIS, got {other:?}"),
    }
}

fn immediate(s: Submission) -> Completion {
    match s {
        Submission::Complete(c) => c,
        other => panic!("expected an immediate completion, got {other:?}"),
    }
}

#[test]
fn ncq_reads_complete_out_of_order_with_their_guest_tags() {
    let mut r = rig();
    let lbas = [100u64, 200, 300];
    r.fake.with(|s| s.gated.extend(lbas));
    let mut paths = Vec::new();
    for (tag, lba) in lbas.iter().enumerate() {
        let dp = r.data(0x10_0000 * (tag as u64 + 1), 8 * 512);
        let f = cmd(0x60, 8, (tag as u16) << 3, *lba);
        let s = r.drive.submit(tag as u8, &f, dp.clone());
        assert_eq!(
            s,
            Submission::Pending {
                accepted: Some(RegisterD2h {
                    status: 0x40,
                    ..Default::default()
                })
            }
        );
        paths.push(dp);
    }
    // All three are on the host at once.
    r.wait_events(|s| s.events.iter().filter(|e| e.starts_with("start")).count() == 3);
    for (i, lba) in [(2usize, 300u64), (0, 100), (1, 200)] {
        r.fake.release(lba);
        let c = r.wait(1);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].slot, i as u8);
        assert_eq!(c[0].bytes_transferred, 4096);
        assert!(matches!(c[0].fises.first(), Some(Fis::DmaSetup(d)) if d.buffer_id == i as u64));
        assert!(matches!(
            c[0].fises.last(),
            Some(Fis::SetDeviceBits(s))
                if s.sactive == 1 << i && s.interrupt && s.error == 0 && s.status == 0x40
        ));
        assert_eq!(r.guest_bytes(&paths[i]), r.disk(lba, 8));
    }
    // Protocol 12 with T_LENGTH in features, no CK_COND, and the guest's tag in the count field
    // (the host kernel replaces it with its own).
    // (The fake's worker threads take the three commands in any order.)
    let mut tags: Vec<u8> = r
        .fake
        .with(|s| s.cdbs.clone())
        .iter()
        .map(|cdb| {
            assert_eq!((cdb[0], cdb[1], cdb[2], cdb[4]), (0x85, 0x19, 0x0d, 8));
            cdb[6] >> 3
        })
        .collect();
    tags.sort_unstable();
    assert_eq!(tags, [0, 1, 2]);
    assert_eq!(r.drive.stats().peak_in_flight, 3);
}

#[test]
fn a_large_write_is_split_at_the_host_limit_and_lands_on_disk() {
    // 4 KiB per host command: 8 sectors.
    let mut r = rig_with(QueueLimits {
        max_hw_sectors_kb: Some(4),
        ..Default::default()
    });
    assert_eq!(r.drive.max_transfer_sectors(), 8);
    let dp = r.data(0x1000, 20 * 512);
    let payload: Vec<u8> = (0..20 * 512).map(|i| (i * 7 + 3) as u8).collect();
    dp.write_at(0, &payload).unwrap();
    let s = r.drive.submit(3, &cmd(0x35, 0, 20, 1000), dp);
    assert_eq!(s, Submission::Pending { accepted: None });
    let c = r.wait(1);
    assert_eq!(c[0].slot, 3);
    assert_eq!(c[0].bytes_transferred, 20 * 512);
    assert_eq!(only_d2h(&c[0]).status, 0x50);
    assert_eq!(r.disk(1000, 20), payload);
    // The segments are all in flight at once and the fake's workers take them
    // in any order: check the (LBA, count) set, not the arrival order. ATA
    // PASS-THROUGH (16) (SAT-4 12.2.2.3): LBA 7:0 in byte 8, 15:8 in byte 10,
    // 23:16 in byte 12; count 7:0 in byte 6.
    let mut segments: Vec<(u32, u8)> = r.fake.with(|s| {
        s.cdbs
            .iter()
            .map(|c| (u32::from_le_bytes([c[8], c[10], c[12], 0]), c[6]))
            .collect()
    });
    segments.sort_unstable();
    assert_eq!(segments, [(1000, 8), (1008, 8), (1016, 4)]);
    assert_eq!(r.drive.stats().commands_sent, 3);
}

#[test]
fn a_failing_read_reports_the_first_bad_lba_and_the_good_data_before_it() {
    let mut r = rig_with(QueueLimits {
        max_hw_sectors_kb: Some(4),
        ..Default::default()
    });
    r.fake.with(|s| s.fail_lba = Some(517));
    let dp = r.data(0x1000, 24 * 512);
    r.drive.submit(0, &cmd(0x25, 0, 24, 500), dp.clone());
    let c = r.wait(1);
    let d = only_d2h(&c[0]);
    assert_eq!((d.status & 0x01, d.error, d.lba), (0x01, 0x40, 517));
    // Host commands 500..508 and 508..516 succeeded; 516..524 failed; nothing else was sent.
    assert_eq!(c[0].bytes_transferred, 16 * 512);
    assert_eq!(r.guest_bytes(&dp)[..16 * 512], r.disk(500, 16)[..]);
    assert_eq!(r.fake.with(|s| s.cdbs.len()), 3);
    assert_eq!(r.drive.stats().errors, 1);
}

/// Captures the warnings the drives log, for tests of what the user is told.
struct WarningLog(Mutex<Vec<String>>);

impl log::Log for WarningLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            self.0.lock().unwrap().push(record.args().to_string());
        }
    }

    fn flush(&self) {}
}

static WARNINGS: WarningLog = WarningLog(Mutex::new(Vec::new()));

/// Start capturing warnings (once per test binary; tests share the log, so each test looks
/// for lines with its own drive path).
fn capture_warnings() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        if log::set_logger(&WARNINGS).is_ok() {
            log::set_max_level(log::LevelFilter::Warn);
        }
    });
}

fn warnings_about(path: &str) -> Vec<String> {
    let prefix = format!("{path}: ");
    WARNINGS
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with(&prefix))
        .cloned()
        .collect()
}

#[test]
fn a_timeout_becomes_abrt() {
    capture_warnings();
    let mut r = rig_at("/dev/fake-timeout");
    r.fake.with(|s| s.timeout_lba = Some(40));
    let dp = r.data(0x1000, 4096);
    r.drive.submit(1, &cmd(0x25, 0, 8, 40), dp);
    let d = only_d2h(&r.wait(1)[0]);
    assert_eq!((d.status, d.error), (0x41, 0x04));
    assert_eq!(r.drive.stats().timeouts, 1);
    // The user is told which command timed out.
    assert_eq!(
        warnings_about("/dev/fake-timeout"),
        ["/dev/fake-timeout: command 0x25 at LBA 40 timed out on the host after 30s; the guest gets ABRT"]
    );
}

#[test]
fn ncq_error_then_log_page_10h_with_the_guest_tag() {
    let mut r = rig();
    r.fake.with(|s| s.fail_lba = Some(0x123));
    let dp = r.data(0x1000, 4096);
    r.drive.submit(4, &cmd(0x60, 8, 4 << 3, 0x120), dp);
    let c = r.wait(1);
    assert!(matches!(
        c[0].fises.as_slice(),
        [Fis::SetDeviceBits(s)]
            if s.status == 0x41 && s.error == 0x40 && s.sactive == 0 && s.interrupt
    ));
    // Queued commands are refused until the log is read.
    let dp = r.data(0x1000, 4096);
    let c = immediate(r.drive.submit(5, &cmd(0x60, 8, 5 << 3, 0), dp));
    assert_eq!(only_d2h(&c).error, 0x04);
    // READ LOG EXT 10h: forwarded; the drive's page says "no error", so it is built here.
    let dp = r.data(0x8000, 512);
    let sent_before = r.drive.stats().commands_sent;
    r.drive.submit(0, &cmd(0x2f, 0, 1, 0x10), dp.clone());
    let c = r.wait(1);
    assert_eq!(r.drive.stats().commands_sent, sent_before + 1);
    assert!(matches!(c[0].fises.last(), Some(Fis::PioSetup(p)) if p.e_status == 0x50));
    let page = r.guest_bytes(&dp);
    assert_eq!(page[0], 4); // NQ clear, tag 4
    assert_eq!((page[2], page[3]), (0x51, 0x40));
    assert_eq!((page[4], page[5], page[6]), (0x23, 0x01, 0x00));
    assert_eq!(page.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
    // And NCQ works again.
    r.fake.with(|s| s.fail_lba = None);
    let dp = r.data(0x1000, 4096);
    assert!(matches!(
        r.drive.submit(5, &cmd(0x60, 8, 5 << 3, 0), dp),
        Submission::Pending { accepted: Some(_) }
    ));
    assert!(matches!(
        r.wait(1)[0].fises.last(),
        Some(Fis::SetDeviceBits(s)) if s.sactive == 1 << 5
    ));
}

#[test]
fn abort_all_drains_the_aborted_command_before_new_ones_reach_the_drive() {
    let mut r = rig();
    r.fake.with(|s| s.gated.insert(64));
    let dp = r.data(0x1000, 4096);
    r.drive.submit(0, &cmd(0x60, 8, 0, 64), dp.clone());
    r.wait_events(|s| s.events.contains(&"start 64".to_string()));
    assert!(!r.drive.draining());
    r.drive.abort_all();
    // The host command cannot be recalled: the drive says it is still draining (the port
    // keeps PxCMD.CR set meanwhile).
    assert!(r.drive.draining());
    // A write issued after the abort is held by the drive, never handed to the host, until
    // the aborted command ends.
    let wdp = r.data(0x20_0000, 4096);
    assert!(matches!(
        r.drive.submit(1, &cmd(0x35, 0, 8, 128), wdp),
        Submission::Pending { .. }
    ));
    assert!(r.drive.poll_completions().is_empty());
    assert!(!r.started(128));
    r.fake.release(64);
    let c = r.wait(1);
    assert_eq!(c[0].slot, 1, "the aborted command is never reported");
    assert!(!r.drive.draining());
    assert!(r.drive.poll_completions().is_empty());
    let events = r.fake.with(|s| s.events.clone());
    let end64 = events.iter().position(|e| e == "end 64").unwrap();
    let start128 = events.iter().position(|e| e == "start 128").unwrap();
    assert!(end64 < start128, "{events:?}");
}

#[test]
fn rejected_cdb16_falls_back_to_cdb12_for_28_bit_commands_only() {
    let mut r = rig();
    r.fake.with(|s| s.reject_cdb16 = true);
    let dp = r.data(0x1000, 2 * 512);
    r.drive.submit(0, &cmd(0xc8, 0, 2, 77), dp.clone()); // READ DMA
    let c = r.wait(1);
    assert_eq!(only_d2h(&c[0]).status, 0x50);
    assert_eq!(r.guest_bytes(&dp), r.disk(77, 2));
    let cdbs = r.fake.with(|s| s.cdbs.clone());
    assert_eq!((cdbs[0][0], cdbs[1][0]), (0x85, 0xa1));
    // The 12-byte form is now used first; a 48-bit command cannot use it and fails.
    let dp = r.data(0x1000, 512);
    r.drive.submit(0, &cmd(0xc8, 0, 1, 5), dp);
    r.wait(1);
    assert_eq!(r.fake.with(|s| s.cdbs[2][0]), 0xa1);
    let dp = r.data(0x1000, 512);
    r.drive.submit(0, &cmd(0x25, 0, 1, 5), dp);
    assert_eq!(only_d2h(&r.wait(1)[0]).error, 0x04);
}

#[test]
fn a_vanished_device_fails_everything_with_abrt() {
    let mut r = rig();
    r.fake.with(|s| s.vanished = true);
    let dp = r.data(0x1000, 512);
    r.drive.submit(0, &cmd(0x25, 0, 1, 0), dp);
    assert_eq!(only_d2h(&r.wait(1)[0]).error, 0x04);
    let sent = r.fake.with(|s| s.cdbs.len());
    let dp = r.data(0x1000, 0);
    let c = immediate(r.drive.submit(0, &cmd(0xea, 0, 0, 0), dp));
    assert_eq!(only_d2h(&c).error, 0x04);
    assert_eq!(r.fake.with(|s| s.cdbs.len()), sent);
}

#[test]
fn refused_and_locally_answered_commands_never_reach_the_drive() {
    let mut r = rig();
    let dp = r.data(0x1000, 512);
    let mut microcode = cmd(0x92, 0x07, 1, 0);
    microcode.device = 0xa5;
    let c = immediate(r.drive.submit(0, &microcode, dp));
    // Refused as a drive aborts: DRDY|ERR (41h), ABRT, the Device register preserved.
    let d = only_d2h(&c);
    assert_eq!((d.status, d.error, d.device), (0x41, 0x04, 0xa5));
    let dp = r.data(0x1000, 0);
    let c = immediate(r.drive.submit(0, &cmd(0xef, 0x03, 0x46, 0), dp.clone()));
    assert_eq!(only_d2h(&c).status, 0x50);
    let c = immediate(r.drive.submit(0, &cmd(0x77, 0, 0, 0), dp));
    assert_eq!(only_d2h(&c).error, 0x04);
    assert_eq!(r.fake.with(|s| s.cdbs.len()), 0);
}

#[test]
fn identify_is_pio_in_and_non_data_returns_the_drive_registers() {
    let mut r = rig();
    let dp = r.data(0x1000, 512);
    r.drive.submit(0, &cmd(0xec, 0, 0, 0), dp.clone());
    let c = r.wait(1);
    assert!(matches!(
        c[0].fises.as_slice(),
        [Fis::PioSetup(p)] if p.device_to_host && p.e_status == 0x50 && p.transfer_count == 512
    ));
    assert_eq!(r.guest_bytes(&dp)[20], b'F');
    assert_eq!(c[0].bytes_transferred, 512);
    // READ NATIVE MAX ADDRESS: the LBA comes back in the D2H FIS.
    let dp = r.data(0x1000, 0);
    r.drive.submit(0, &cmd(0xf8, 0, 0, 0), dp);
    assert_eq!(only_d2h(&r.wait(1)[0]).lba, DISK_SECTORS - 1);
}

#[test]
fn a_prdt_shorter_than_the_transfer_is_refused_before_the_host_sees_it() {
    let mut r = rig();
    let dp = r.data(0x1000, 1024);
    let c = immediate(r.drive.submit(0, &cmd(0x25, 0, 8, 0), dp));
    assert_eq!(only_d2h(&c).error, 0x04);
    assert_eq!(r.fake.with(|s| s.cdbs.len()), 0);
}

#[test]
fn comreset_clears_the_ncq_error_state_and_returns_the_signature() {
    let mut r = rig();
    r.fake.with(|s| s.fail_lba = Some(0));
    let dp = r.data(0x1000, 512);
    r.drive.submit(2, &cmd(0x60, 1, 2 << 3, 0), dp);
    r.wait(1);
    let sig = r.drive.comreset();
    assert_eq!((sig.status, sig.count, sig.lba), (0x50, 1, 1));
    r.fake.with(|s| s.fail_lba = None);
    let dp = r.data(0x1000, 512);
    assert!(matches!(
        r.drive.submit(2, &cmd(0x60, 1, 2 << 3, 0), dp),
        Submission::Pending { .. }
    ));
    r.wait(1);
}

#[test]
fn an_ncq_error_aborts_the_other_outstanding_queued_commands() {
    let mut r = rig();
    r.fake.with(|s| {
        s.gated.insert(500);
        s.fail_lba = Some(0x10);
    });
    let other = r.data(0x20_0000, 4096);
    r.drive.submit(1, &cmd(0x60, 8, 1 << 3, 500), other.clone());
    r.wait_events(|s| s.events.contains(&"start 500".to_string()));
    let dp = r.data(0x1000, 4096);
    r.drive.submit(4, &cmd(0x60, 8, 4 << 3, 0x10), dp);
    let c = r.wait(1);
    assert_eq!(c[0].slot, 4);
    assert!(matches!(c[0].fises.as_slice(), [Fis::SetDeviceBits(s)] if s.status & 1 == 1));
    // The other command finishes on the host later: the drive drains it and never reports it.
    assert!(r.drive.draining());
    r.fake.release(500);
    r.drain_quietly();
    let _ = other;
}

#[test]
fn good_status_without_sense_gives_each_protocol_its_fis_sequence() {
    let mut r = rig();
    let last_cdb = |r: &Rig| r.fake.with(|s| s.cdbs.last().unwrap().clone());
    // PIO data-in (READ SECTORS EXT, 2 sectors): one PIO Setup per DRQ block, E_Status 50h.
    let dp = r.data(0x1000, 1024);
    r.drive.submit(0, &cmd(0x24, 0, 2, 10), dp.clone());
    let c = r.wait(1);
    let setups: Vec<_> = c[0]
        .fises
        .iter()
        .map(|f| match f {
            Fis::PioSetup(p) => (p.device_to_host, p.e_status, p.transfer_count),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(setups, [(true, 0xc0, 512), (true, 0x50, 512)]);
    assert_eq!(r.guest_bytes(&dp), r.disk(10, 2));
    assert_eq!(last_cdb(&r)[2] & 0x20, 0);
    // PIO data-out (WRITE SECTORS, 2 sectors): PIO Setups, then Register D2H with 50h.
    let dp = r.data(0x4000, 1024);
    dp.write_at(0, &[0x5a; 1024]).unwrap();
    r.drive.submit(1, &cmd(0x30, 0, 2, 20), dp);
    let c = r.wait(1);
    assert!(matches!(
        c[0].fises.as_slice(),
        [Fis::PioSetup(a), Fis::PioSetup(b), Fis::RegisterD2h(d)]
            if !a.device_to_host && !b.device_to_host && d.status == 0x50 && d.error == 0
    ));
    assert_eq!(r.disk(20, 2), vec![0x5a; 1024]);
    assert_eq!(last_cdb(&r)[2] & 0x20, 0);
    // DMA (READ DMA EXT): one Register D2H with 50h.
    let dp = r.data(0x1000, 4096);
    r.drive.submit(2, &cmd(0x25, 0, 8, 30), dp.clone());
    let d = only_d2h(&r.wait(1)[0]);
    assert_eq!((d.status, d.error, d.interrupt), (0x50, 0, true));
    assert_eq!(r.guest_bytes(&dp), r.disk(30, 8));
    assert_eq!(last_cdb(&r)[2] & 0x20, 0);
    // FPDMA (WRITE FPDMA QUEUED tag 6): DMA Setup, Set Device Bits with 40h and the tag's bit.
    let dp = r.data(0x1000, 4096);
    r.drive.submit(3, &cmd(0x61, 8, 6 << 3, 40), dp);
    let c = r.wait(1);
    assert!(matches!(
        c[0].fises.as_slice(),
        [Fis::DmaSetup(d), Fis::SetDeviceBits(s)]
            if d.buffer_id == 6 && !d.device_to_host && s.status == 0x40 && s.sactive == 1 << 6
    ));
    assert_eq!(last_cdb(&r)[2] & 0x20, 0);
    // Non-data (FLUSH CACHE EXT) goes with CK_COND; the D2H carries the drive's status.
    r.drive.submit(4, &cmd(0xea, 0, 0, 0), r.data(0x1000, 0));
    assert_eq!(only_d2h(&r.wait(1)[0]).status, 0x50);
    assert_eq!(last_cdb(&r)[2] & 0x20, 0x20);
}

#[test]
fn the_bad_lba_is_completed_from_the_failing_host_command_when_sg_cut_the_sense() {
    // /dev/sgN delivers only LBA 7:0 of libata's legacy fixed sense. READ DMA EXT of 1024
    // sectors from 0, split in 256-sector host commands; sector 600 (258h) fails. Over the whole
    // command 58h would first match sector 88; within the failing host command (512..768) it is
    // 600.
    let mut r = rig_with(QueueLimits {
        max_hw_sectors_kb: Some(128),
        ..Default::default()
    });
    r.fake.with(|s| s.fail_lba = Some(600));
    let dp = r.data(0x1000, 1024 * 512);
    r.drive.submit(0, &cmd(0x25, 0, 1024, 0), dp.clone());
    let c = r.wait(1);
    let d = only_d2h(&c[0]);
    assert_eq!((d.status, d.error, d.lba), (0x51, 0x40, 600));
    assert_eq!(c[0].bytes_transferred, 512 * 512);
    assert_eq!(r.guest_bytes(&dp)[..512 * 512], r.disk(0, 512)[..]);
}

#[test]
fn a_reused_ncq_tag_is_an_ncq_error_naming_that_tag() {
    let mut r = rig();
    r.fake.with(|s| {
        s.gated.insert(500);
    });
    let first = r.data(0x20_0000, 4096);
    r.drive.submit(3, &cmd(0x60, 8, 3 << 3, 500), first.clone());
    r.wait_events(|s| s.events.contains(&"start 500".to_string()));
    // Tag 3 again, from another slot, while the first is on the host.
    let dp = r.data(0x1000, 4096);
    let c = immediate(r.drive.submit(7, &cmd(0x60, 8, 3 << 3, 0x40), dp));
    assert_eq!(only_d2h(&c).error, 0x04, "ABRT");
    assert_eq!(only_d2h(&c).status & 1, 1, "ERR");
    // The outstanding command is aborted: drained, never reported.
    assert!(r.drive.draining());
    r.fake.release(500);
    r.drain_quietly();
    let _ = first;
    // Log page 10h names tag 3 with ABRT.
    let dp = r.data(0x8000, 512);
    r.drive.submit(0, &cmd(0x2f, 0, 1, 0x10), dp.clone());
    r.wait(1);
    let page = r.guest_bytes(&dp);
    assert_eq!(page[0], 3, "NQ clear, tag 3");
    assert_eq!(page[3], 0x04);
    assert_eq!(page.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
}

#[test]
fn the_link_offers_the_host_links_speed() {
    let mut r = rig();
    assert_eq!(r.drive.max_link_gen(), 3, "unknown: the HBA's best");
    r.drive.set_host_link_gen(Some(2));
    assert_eq!(r.drive.max_link_gen(), 2);
    r.drive.set_host_link_gen(Some(1));
    assert_eq!(r.drive.max_link_gen(), 1);
    r.drive.set_host_link_gen(Some(9));
    assert_eq!(r.drive.max_link_gen(), 3, "nonsense from sysfs is ignored");
}

#[test]
fn read_only_writes_are_refused_as_the_emulated_drive_refuses_them() {
    let fake = FakeSatl::new();
    let notifier = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
    let limits = QueueLimits::default();
    let engine =
        SgThreadEngine::with_transport(fake.clone(), notifier.clone(), limits.workers()).unwrap();
    let config = PassthroughConfig {
        read_only: true,
        ..PassthroughConfig::new("/dev/fake-ro")
    };
    let mut r = Rig {
        drive: PassthroughDrive::with_engine(Box::new(engine), limits, &config),
        fake,
        mem: Arc::new(VecMemory::new(4 << 20)),
        notifier,
    };
    // Non-queued: ABRT|IDNF (not counted against the link by libata), never sent.
    let dp = r.data(0x1000, 512);
    let d = only_d2h(&immediate(r.drive.submit(0, &cmd(0x35, 0, 1, 0), dp)));
    assert_eq!((d.status, d.error), (0x41, 0x14));
    // Queued: the same, and the NCQ error state names the tag for log page 10h.
    let dp = r.data(0x1000, 4096);
    let d = only_d2h(&immediate(r.drive.submit(
        6,
        &cmd(0x61, 8, 6 << 3, 0x40),
        dp,
    )));
    assert_eq!((d.status, d.error), (0x41, 0x14));
    let dp = r.data(0x8000, 512);
    r.drive.submit(0, &cmd(0x2f, 0, 1, 0x10), dp.clone());
    r.wait(1);
    let page = r.guest_bytes(&dp);
    assert_eq!((page[0], page[2], page[3], page[4]), (6, 0x41, 0x14, 0x40));
    assert_eq!(page.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
    assert!(r
        .fake
        .with(|s| s.cdbs.iter().all(|c| c[14] != 0x35 && c[14] != 0x61)));
}
