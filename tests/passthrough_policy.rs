//! The pass-through drive's default policy: no command that
//! `satavm::ata::passthrough::policy::refused_by_default()` lists ever reaches the host drive,
//! and the guest gets ABRT for it. Checked through the public API with a transport that records
//! every CDB instead of sending it.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use satavm::ata::command::{opcode, smart};
use satavm::ata::passthrough::policy::{refused_by_default, RefusedCommand, Selector};
use satavm::ata::passthrough::sysfs::QueueLimits;
use satavm::ata::registers::{error, status};
use satavm::ata::{PassthroughConfig, PassthroughDrive};
use satavm::block::sg::{driver_status, scsi_status, SgRequest, SgResult, SgTransport};
use satavm::block::testing::MemEngine;
use satavm::mem::VecMemory;
use satavm::sata::{Completion, DataPath, Fis, PrdEntry, RegisterH2d, SataDevice, Submission};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Records the ATA command byte of every ATA PASS-THROUGH CDB and answers success (CK_COND
/// sense with an ATA Status Return descriptor, status 50h).
#[derive(Default)]
struct Recorder {
    commands: Mutex<Vec<u8>>,
}

impl SgTransport for Recorder {
    fn execute(&self, req: SgRequest<'_>) -> io::Result<SgResult> {
        // ATA PASS-THROUGH(16): command in byte 14; (12): byte 9 (SAT-3 12.2.2).
        let command = match req.cdb.first() {
            Some(0x85) => req.cdb.get(14).copied(),
            Some(0xa1) => req.cdb.get(9).copied(),
            _ => None,
        };
        self.commands.lock().unwrap().push(command.unwrap_or(0xff));
        let mut sense = vec![0x72, 0x01, 0x00, 0x1d, 0, 0, 0, 14];
        sense.extend([0x09, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x50]);
        Ok(SgResult {
            status: scsi_status::CHECK_CONDITION,
            host_status: 0,
            driver_status: driver_status::DRIVER_SENSE,
            sense,
            resid: 0,
            ..Default::default()
        })
    }
}

struct Rig {
    drive: PassthroughDrive,
    transport: Arc<Recorder>,
    mem: Arc<VecMemory>,
    notifier: Arc<EventFd>,
}

fn rig(allow_all: bool, read_only: bool) -> Rig {
    let transport = Arc::new(Recorder::default());
    let notifier = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
    let config = PassthroughConfig {
        allow_all,
        read_only,
        ..PassthroughConfig::new("/dev/null-fake")
    };
    let (engine, _) = MemEngine::scsi(transport.clone(), notifier.clone());
    let drive = PassthroughDrive::with_engine(
        Box::new(engine),
        QueueLimits {
            max_hw_sectors_kb: None,
            max_segments: None,
            queue_depth: Some(4),
        },
        &config,
    );
    Rig {
        drive,
        transport,
        mem: Arc::new(VecMemory::new(1 << 20)),
        notifier,
    }
}

impl Rig {
    fn sent(&self) -> Vec<u8> {
        self.transport.commands.lock().unwrap().clone()
    }

    /// Submit `fis` in slot 0 with a 64 KiB buffer and return how it ended.
    fn submit(&mut self, fis: &RegisterH2d) -> Completion {
        let data = DataPath::new(
            self.mem.clone(),
            vec![PrdEntry {
                addr: 0x1_0000,
                len: 64 << 10,
            }],
        );
        match self.drive.submit(0, fis, data) {
            Submission::Complete(c) => c,
            Submission::Pending { .. } => {
                let deadline = Instant::now() + Duration::from_secs(5);
                loop {
                    if let Some(c) = self.drive.poll_completions().pop() {
                        return c;
                    }
                    assert!(Instant::now() < deadline, "{fis:?} never completed");
                    if self.notifier.read().is_err() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }
    }
}

/// The command FIS that `r` refuses: its opcode with the subcommand selector set.
fn fis_for(r: &RefusedCommand) -> RegisterH2d {
    let mut fis = RegisterH2d {
        c: true,
        command: r.opcode,
        device: 0x40,
        count: 1,
        ..Default::default()
    };
    match r.selector {
        None => {}
        Some(Selector::Features(f)) => fis.features = u16::from(f),
        Some(Selector::NcqSubcommand(s)) => fis.features = u16::from(s),
        Some(Selector::SendFpdmaSubcommand(s)) => fis.count = u16::from(s) << 8,
        Some(Selector::LogAddress(a)) => {
            fis.lba = u64::from(a);
            if r.opcode == opcode::SMART {
                // SMART WRITE LOG, with the SMART signature in LBA mid/high.
                fis.features = u16::from(smart::WRITE_LOG);
                fis.lba |= 0xc2_4f00;
            }
        }
    }
    fis
}

fn assert_aborted(c: &Completion, what: &str) {
    let d2h = c.fises.iter().rev().find_map(|f| match f {
        Fis::RegisterD2h(d) => Some(*d),
        _ => None,
    });
    let d2h = d2h.unwrap_or_else(|| panic!("{what}: no Register D2H FIS in {c:?}"));
    assert_ne!(
        d2h.status & status::ERR,
        0,
        "{what}: status {:#x}",
        d2h.status
    );
    assert_ne!(d2h.error & error::ABRT, 0, "{what}: error {:#x}", d2h.error);
}

#[test]
fn refused_by_default_commands_never_reach_the_drive() {
    assert!(!refused_by_default().is_empty());
    for read_only in [false, true] {
        let mut r = rig(false, read_only);
        for cmd in refused_by_default() {
            let what = format!("{} ({:#04x}), read_only {read_only}", cmd.name, cmd.opcode);
            let c = r.submit(&fis_for(cmd));
            assert_aborted(&c, &what);
            assert_eq!(r.sent(), Vec::<u8>::new(), "{what} reached the drive");
        }
    }
}

#[test]
fn the_recorder_sees_forwarded_commands() {
    // The control for the test above: the same path does reach the transport for a command
    // the policy lets through, and for a refused one when `allow_all` is set.
    let mut r = rig(false, false);
    let c = r.submit(&RegisterH2d {
        c: true,
        command: opcode::CHECK_POWER_MODE,
        device: 0x40,
        ..Default::default()
    });
    assert_eq!(r.sent(), vec![opcode::CHECK_POWER_MODE], "{c:?}");
    let mut r = rig(true, false);
    let freeze = refused_by_default()
        .iter()
        .find(|c| c.opcode == opcode::SECURITY_FREEZE_LOCK)
        .expect("SECURITY FREEZE LOCK is refused by default");
    r.submit(&fis_for(freeze));
    assert_eq!(r.sent(), vec![opcode::SECURITY_FREEZE_LOCK]);
}
