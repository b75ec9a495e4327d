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
        wwn: None,
        read_only,
        engine: Default::default(),
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

/// A drive over the in-memory test engine, which holds its requests until the test releases
/// them: what the drive does while its I/O is in the kernel, without timing.
struct HeldRig {
    drive: EmulatedDrive,
    mem: Arc<VecMemory>,
    engine: crate::block::testing::MemEngineHandle,
}

fn held_rig(sectors: u64) -> HeldRig {
    let notifier = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
    let (engine, handle) =
        crate::block::testing::MemEngine::new(sectors as usize * 512, notifier.clone());
    handle.set_hold(true);
    let drive = EmulatedDrive::with_engine(
        Box::new(engine),
        notifier,
        sectors,
        false,
        None,
        "HELD".into(),
    );
    HeldRig {
        drive,
        mem: Arc::new(VecMemory::new(MEM)),
        engine: handle,
    }
}

impl HeldRig {
    fn data(&self, addr: u64, len: u32) -> DataPath {
        DataPath::new(self.mem.clone(), vec![PrdEntry { addr, len }])
    }
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

mod commands;
mod engine;
mod io;
mod ncq;
mod smart_power;
