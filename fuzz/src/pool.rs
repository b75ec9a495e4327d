//! What `ahci_mmio` runs keep from one run to the next (see [`crate::harness`]): guest RAM
//! cleared page by page ([`Ram`]), and the emulated drives over memfd images
//! ([`PooledDrive`]), with the count of commands each holds ([`Pending`]).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use satavm::ata::{DriveConfig, EmulatedDrive};
use satavm::mem::{GuestMemory, MemError, VecMemory};
use satavm::sata::{Completion, Fis, SataDevice};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::harness::{IMAGE_BYTES, MEM_SIZE};

/// Guest RAM that remembers which pages were written, so that the next run gets it back
/// zeroed by clearing those pages only (a fresh 2 MiB allocation is a 2 MiB memset).
pub(crate) struct Ram {
    pub(crate) bytes: VecMemory,
    /// One bit per 4 KiB page.
    pub(crate) dirty: Mutex<Vec<u64>>,
}

pub(crate) const PAGE: u64 = 4096;

impl Ram {
    pub(crate) fn new() -> Ram {
        Ram {
            bytes: VecMemory::new(MEM_SIZE),
            dirty: Mutex::new(vec![0; MEM_SIZE / PAGE as usize / 64]),
        }
    }

    pub(crate) fn write(&self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        self.bytes.write(addr, data)?;
        if !data.is_empty() {
            let mut dirty = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
            for page in addr / PAGE..=(addr + data.len() as u64 - 1) / PAGE {
                dirty[(page / 64) as usize] |= 1 << (page % 64);
            }
        }
        Ok(())
    }

    /// Zero every page written since the last call.
    pub(crate) fn clear(&self) {
        let zeros = [0u8; PAGE as usize];
        let mut dirty = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
        for (i, word) in dirty.iter_mut().enumerate() {
            while *word != 0 {
                let bit = u64::from(word.trailing_zeros());
                let _ = self.bytes.write((i as u64 * 64 + bit) * PAGE, &zeros);
                *word &= !(1 << bit);
            }
        }
    }
}

/// Guest RAM of finished machines, zeroed, for the next.
pub(crate) static RAMS: Mutex<Vec<Arc<Ram>>> = Mutex::new(Vec::new());

/// A real emulated drive over its own image, kept for the next run (see [`DRIVES`]).
pub(crate) struct PooledDrive {
    pub(crate) drive: EmulatedDrive,
    /// The image (a memfd); the drive has its own descriptor of it.
    pub(crate) image: File,
    pub(crate) notifier: Arc<EventFd>,
}

impl PooledDrive {
    /// A drive over a fresh IMAGE_BYTES memfd. `serial` is its IDENTIFY serial.
    pub(crate) fn new(serial: String) -> PooledDrive {
        let fd = nix::sys::memfd::memfd_create(
            c"satavm-fuzz-image",
            nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
        )
        .expect("memfd_create");
        let image = File::from(fd);
        image.set_len(IMAGE_BYTES).expect("size image");
        let path = PathBuf::from(format!("/proc/self/fd/{}", image.as_raw_fd()));
        let notifier = Arc::new(EventFd::new(EFD_NONBLOCK).expect("eventfd"));
        let disk = satavm::hostfile::open_disk(&path, false, false).expect("open image");
        let cfg = DriveConfig {
            path,
            model: None,
            serial: Some(serial),
            wwn: None,
            read_only: false,
            engine: Default::default(),
        };
        let drive = EmulatedDrive::with_disk(&cfg, disk, notifier.clone()).expect("open drive");
        PooledDrive {
            drive,
            image,
            notifier,
        }
    }

    /// Wait until the drive's aborted host I/O is back (it can no longer touch the image or
    /// guest memory); panics after [`crate::harness::OP_DEADLINE`].
    pub(crate) fn drain(&mut self) {
        let until = std::time::Instant::now() + crate::harness::OP_DEADLINE;
        while self.drive.draining() {
            assert!(
                std::time::Instant::now() < until,
                "the drive's aborted I/O never came back"
            );
            let _ = self.drive.poll_completions();
            crate::harness::wait_readable(
                &[
                    self.notifier.as_raw_fd(),
                    self.drive.ready_fd().unwrap_or(-1),
                ],
                std::time::Duration::from_millis(1),
            );
        }
    }

    /// Back to the state of a fresh drive over a zeroed image: nothing in flight (abort_all
    /// waits for the workers), power-on settings (COMRESET), no completion left, zeros.
    pub(crate) fn reset(&mut self) {
        self.drive.abort_all();
        self.drive.comreset();
        self.drain();
        let _ = self.drive.poll_completions();
        let _ = self.notifier.read();
        self.image.set_len(0).expect("empty image");
        self.image.set_len(IMAGE_BYTES).expect("size image");
    }
}

/// Drives not in use by a [`Machine`], by port; a machine takes them and gives them back.
pub(crate) static DRIVES: Mutex<[Vec<PooledDrive>; 2]> = Mutex::new([Vec::new(), Vec::new()]);

pub(crate) fn take_drive(port: usize) -> PooledDrive {
    let pooled = DRIVES.lock().unwrap_or_else(|e| e.into_inner())[port].pop();
    let mut d = pooled.unwrap_or_else(|| PooledDrive::new(format!("FUZZ{port}")));
    d.reset();
    d
}

/// A machine's drive: the pooled drive while the machine has it, and the completions
/// [`Machine::collect_completions`] took from it before the port asked.
#[derive(Default)]
pub(crate) struct DriveSlot {
    pub(crate) pooled: Option<PooledDrive>,
    pub(crate) ready: Vec<Completion>,
}

pub(crate) type SharedDrive = Arc<Mutex<DriveSlot>>;

pub(crate) fn lock_slot(d: &SharedDrive) -> std::sync::MutexGuard<'_, DriveSlot> {
    d.lock().unwrap_or_else(|e| e.into_inner())
}

/// Commands a drive holds: accepted to finish later, not finished yet. Queued (NCQ) ones
/// apart, since a failed queued command aborts every other one silently (SATA 3.x 13.6.5).
#[derive(Debug, Default)]
pub(crate) struct Pending {
    pub(crate) queued: AtomicUsize,
    pub(crate) other: AtomicUsize,
    /// Slots whose last command was a queued one.
    pub(crate) queued_slots: std::sync::atomic::AtomicU32,
}

impl Pending {
    pub(crate) fn total(&self) -> usize {
        self.queued.load(Ordering::SeqCst) + self.other.load(Ordering::SeqCst)
    }
    pub(crate) fn clear(&self) {
        self.queued.store(0, Ordering::SeqCst);
        self.other.store(0, Ordering::SeqCst);
    }
    pub(crate) fn submitted(&self, slot: u8, queued: bool) {
        let bit = 1u32 << (slot & 31);
        if queued {
            self.queued_slots.fetch_or(bit, Ordering::SeqCst);
            self.queued.fetch_add(1, Ordering::SeqCst);
        } else {
            self.queued_slots.fetch_and(!bit, Ordering::SeqCst);
            self.other.fetch_add(1, Ordering::SeqCst);
        }
    }
    /// Count `done` off.
    pub(crate) fn finished(&self, done: &[Completion]) {
        let dec = |c: &AtomicUsize| {
            let _ = c.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| p.checked_sub(1));
        };
        for c in done {
            let queued = self.queued_slots.load(Ordering::SeqCst) & (1 << (c.slot & 31)) != 0;
            if queued {
                dec(&self.queued);
                if failed(c) {
                    self.queued.store(0, Ordering::SeqCst);
                }
            } else {
                dec(&self.other);
            }
        }
    }
    /// A queued command failed at once: the drive aborted the others.
    pub(crate) fn queued_failed(&self) {
        self.queued.store(0, Ordering::SeqCst);
    }
}

/// The command ended with ERR in its last status.
pub(crate) fn failed(c: &Completion) -> bool {
    use satavm::ata::registers::status::ERR;
    c.fises.iter().any(|f| match f {
        Fis::RegisterD2h(d) => d.status & ERR != 0,
        Fis::SetDeviceBits(s) => s.status & ERR != 0,
        _ => false,
    })
}
