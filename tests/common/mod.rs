//! A test driver for the AHCI conformance suite: an [`AhciFunction`] over real emulated
//! drives, driven only through PCI configuration space and BAR5 MMIO, as a guest driver would.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use satavm::ahci::register_page::{HeapRegisterPage, RegisterPage};
use satavm::ahci::regs::{ghc, hba, port as px, pxcmd, pxis, pxtfd};
use satavm::ahci::{AhciFunction, Observers};
use satavm::ata::inject::{InjectingDevice, Rule};
use satavm::ata::{DriveConfig, EmulatedDrive};
use satavm::irq::RecordingSink;
use satavm::mem::{GuestMemory, VecMemory};
use satavm::pci::config::{command, offset};
use satavm::pci::PciFunction;
use satavm::sata::{Fis, RegisterH2d, SataDevice};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub mod atapi;
pub mod trace;

/// Guest RAM size.
pub const MEM_SIZE: usize = 16 << 20;
/// Sectors per test image (64 MiB, sparse).
pub const IMAGE_SECTORS: u64 = 128 * 1024;
/// Where data buffers go.
pub const DATA: u64 = 0x40_0000;
/// Initial ABAR address.
pub const ABAR_ADDR: u32 = 0xfebf_0000;
/// INTx line.
pub const IRQ_LINE: u8 = 11;

pub const MODEL: &str = "satavm conformance disk";

/// Command header DW0 flags (AHCI 4.2.2).
pub const HDR_WRITE: u32 = 1 << 6;
pub const HDR_RESET: u32 = 1 << 8;
pub const HDR_CLEAR_BUSY: u32 = 1 << 10;

/// A temporary image file, removed on drop.
pub struct Image(pub PathBuf);

impl Image {
    pub fn new(sectors: u64) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "satavm-ahci-{}-{}.img",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(sectors * 512).unwrap();
        Image(path)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The HBA under test with its guest memory, interrupt recorder and drives.
pub struct TestHba {
    pub f: AhciFunction,
    pub mem: Arc<VecMemory>,
    pub sink: Arc<RecordingSink>,
    pub notifier: Arc<EventFd>,
    pub images: Vec<Image>,
    /// Mapped registers: the page reads come from (see [`registers_mode`]).
    pub page: Option<Arc<HeapRegisterPage>>,
}

/// The register mode the suite runs in: `SATAVM_TEST_REGISTERS=mapped` reads every register
/// from the mapped page (as a guest does under `--registers mapped`) and checks that it
/// always equals the register file; anything else (the default) traps every read.
pub fn registers_mode() -> &'static str {
    match std::env::var("SATAVM_TEST_REGISTERS").as_deref() {
        Ok("mapped") => "mapped",
        _ => "trap",
    }
}

/// In mapped mode, set the function up as the VMM does: the page, and issue deferred under
/// load to the completion pass (which the suite's waits run).
fn map_registers(f: &mut AhciFunction, notifier: &Arc<EventFd>) -> Option<Arc<HeapRegisterPage>> {
    (registers_mode() == "mapped").then(|| {
        let page = Arc::new(HeapRegisterPage::default());
        f.set_register_page(page.clone());
        f.set_deferred_issue(notifier.clone());
        page
    })
}

pub fn serial(port: usize) -> String {
    format!("SATAVM-TEST-{port}")
}

impl TestHba {
    /// An HBA with `ports` emulated drives; PCI memory decoding and bus mastering enabled.
    pub fn new(ports: usize) -> Self {
        let mut t = Self::new_raw(ports);
        let cmd = command::MEMORY_SPACE | command::BUS_MASTER;
        t.f.config_write(offset::COMMAND, &cmd.to_le_bytes());
        t
    }

    /// An HBA straight after power-on, PCI command register untouched.
    pub fn new_raw(ports: usize) -> Self {
        Self::new_observed(ports, Observers::default(), &[])
    }

    /// As [`TestHba::new_raw`], reporting to `observers`, each drive wrapped in an
    /// [`InjectingDevice`] with `rules` if any apply to it.
    pub fn new_observed(ports: usize, observers: Observers, rules: &[Rule]) -> Self {
        let _ = env_logger::builder().is_test(true).try_init();
        let mem = Arc::new(VecMemory::new(MEM_SIZE));
        let sink = Arc::new(RecordingSink::default());
        let notifier = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
        let mut images = Vec::new();
        let mut devices: Vec<Box<dyn SataDevice>> = Vec::new();
        for p in 0..ports {
            let img = Image::new(IMAGE_SECTORS);
            let cfg = DriveConfig {
                path: img.0.clone(),
                model: Some(MODEL.to_string()),
                serial: Some(serial(p)),
                wwn: None,
                read_only: false,
                engine: Default::default(),
            };
            let drive = Box::new(EmulatedDrive::open(&cfg, notifier.clone()).unwrap());
            let wrapped = InjectingDevice::new(
                drive,
                p as u8,
                rules,
                notifier.clone(),
                observers.tracer.clone(),
            );
            devices.push(if wrapped.has_rules() {
                Box::new(wrapped)
            } else {
                wrapped.into_inner()
            });
            images.push(img);
        }
        let mut f = AhciFunction::with_observers(
            devices,
            mem.clone(),
            sink.clone(),
            ABAR_ADDR,
            IRQ_LINE,
            observers,
        );
        let page = map_registers(&mut f, &notifier);
        TestHba {
            f,
            mem,
            sink,
            notifier,
            images,
            page,
        }
    }

    /// An HBA with `devices` (one port each), PCI memory decoding and bus mastering enabled;
    /// `notifier` is the one the devices signal.
    pub fn with_devices(devices: Vec<Box<dyn SataDevice>>, notifier: Arc<EventFd>) -> Self {
        let mem = Arc::new(VecMemory::new(MEM_SIZE));
        let sink = Arc::new(RecordingSink::default());
        let mut f = AhciFunction::new(devices, mem.clone(), sink.clone(), ABAR_ADDR, IRQ_LINE);
        let page = map_registers(&mut f, &notifier);
        let mut t = TestHba {
            f,
            mem,
            sink,
            notifier,
            images: Vec::new(),
            page,
        };
        let cmd = command::MEMORY_SPACE | command::BUS_MASTER;
        t.f.config_write(offset::COMMAND, &cmd.to_le_bytes());
        t
    }

    // ---- PCI configuration space ----

    pub fn cfg_read(&self, at: usize, len: usize) -> u32 {
        let mut b = [0u8; 4];
        self.f.config().read(at, &mut b[..len]);
        u32::from_le_bytes(b)
    }

    pub fn cfg_write(&mut self, at: usize, v: u32, len: usize) {
        self.f.config_write(at, &v.to_le_bytes()[..len]);
    }

    // ---- ABAR registers ----

    pub fn read(&mut self, at: u64) -> u32 {
        if let Some(page) = &self.page {
            // What a guest load sees, which must be what the HBA holds, at every read.
            let seen = page.load(at);
            assert_eq!(
                seen,
                self.f.register(at),
                "mapped page out of date at ABAR {at:#x}"
            );
            return seen;
        }
        let mut b = [0u8; 4];
        self.f.bar_read(5, at, &mut b);
        u32::from_le_bytes(b)
    }

    pub fn write(&mut self, at: u64, v: u32) {
        self.f.bar_write(5, at, &v.to_le_bytes());
    }

    pub fn px_read(&mut self, port: usize, reg: u64) -> u32 {
        self.read(hba::PORTS_BASE + port as u64 * hba::PORT_SIZE + reg)
    }

    pub fn px_write(&mut self, port: usize, reg: u64, v: u32) {
        self.write(hba::PORTS_BASE + port as u64 * hba::PORT_SIZE + reg, v)
    }

    pub fn px_set(&mut self, port: usize, reg: u64, bits: u32) {
        let v = self.px_read(port, reg);
        self.px_write(port, reg, v | bits);
    }

    pub fn px_clear(&mut self, port: usize, reg: u64, bits: u32) {
        let v = self.px_read(port, reg);
        self.px_write(port, reg, v & !bits);
    }

    // ---- guest memory layout ----

    pub fn clb(port: usize) -> u64 {
        0x1_0000 + port as u64 * 0x1000
    }

    pub fn fb(port: usize) -> u64 {
        Self::clb(port) + 0x400
    }

    /// Command tables: 8 KiB each, so up to 504 PRD entries.
    pub fn ctba(port: usize, slot: u8) -> u64 {
        0x10_0000 + port as u64 * 0x4_0000 + u64::from(slot) * 0x2000
    }

    /// A default data buffer per port and slot (256 KiB each, 4 slots per port).
    pub fn buf(port: usize, slot: u8) -> u64 {
        DATA + (port as u64 * 4 + u64::from(slot % 4)) * 0x4_0000
    }

    pub fn mem_write(&self, at: u64, data: &[u8]) {
        self.mem.write(at, data).unwrap();
    }

    pub fn mem_read(&self, at: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read(at, &mut v).unwrap();
        v
    }

    pub fn rfis(&self, port: usize, off: u64, len: usize) -> Fis {
        Fis::decode(&self.mem_read(Self::fb(port) + off, len)).unwrap()
    }

    /// PRDBC of `slot`.
    pub fn prdbc(&self, port: usize, slot: u8) -> u32 {
        self.mem
            .read_u32(Self::clb(port) + u64::from(slot) * 32 + 4)
            .unwrap()
    }

    // ---- bring-up, as QEMU's ahci-test and AHCI 10.1.2 do it ----

    /// GHC.AE, then per port: stop the engines, program CLB/FB, clear SERR/PxIS/IS, FRE (FR
    /// follows), ST (CR follows), PxIE all; finally GHC.IE.
    pub fn start_port(&mut self, port: usize) {
        self.write(hba::GHC, ghc::AE);
        self.stop_port(port);
        self.px_clear(port, px::CMD, pxcmd::FRE);
        assert_eq!(self.px_read(port, px::CMD) & pxcmd::FR, 0);
        self.px_write(port, px::CLB, Self::clb(port) as u32);
        self.px_write(port, px::CLBU, 0);
        self.px_write(port, px::FB, Self::fb(port) as u32);
        self.px_write(port, px::FBU, 0);
        self.px_write(port, px::SERR, u32::MAX);
        self.px_write(port, px::IS, u32::MAX);
        self.write(hba::IS, 1 << port);
        self.px_set(port, px::CMD, pxcmd::FRE);
        assert_ne!(self.px_read(port, px::CMD) & pxcmd::FR, 0, "FR follows FRE");
        // The device must be ready before the engine starts (10.3.1).
        let tfd = self.px_read(port, px::TFD);
        assert_eq!(
            tfd & (pxtfd::BSY | pxtfd::DRQ | pxtfd::ERR),
            0,
            "TFD {tfd:#x}"
        );
        self.px_set(port, px::CMD, pxcmd::ST);
        assert_ne!(self.px_read(port, px::CMD) & pxcmd::CR, 0, "CR follows ST");
        self.px_write(port, px::IE, pxis::ALL);
        let g = self.read(hba::GHC);
        self.write(hba::GHC, g | ghc::IE);
    }

    /// Clear ST and wait for CR to drop (the drive may still be draining host I/O of the
    /// commands the stop aborted: completions are processed meanwhile, as the VMM does).
    pub fn stop_port(&mut self, port: usize) {
        self.px_clear(port, px::CMD, pxcmd::ST);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            self.f.process_completions();
            if self.px_read(port, px::CMD) & pxcmd::CR == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "CR did not clear");
            if self.notifier.read().is_err() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    // ---- commands ----

    /// Build `slot`'s command table (CFIS `fis`, PRDT `prdt` as (address, bytes)) and header.
    pub fn prepare(
        &mut self,
        port: usize,
        slot: u8,
        fis: &RegisterH2d,
        prdt: &[(u64, u32)],
        flags: u32,
    ) {
        let ct = Self::ctba(port, slot);
        self.mem_write(ct, &Fis::RegisterH2d(*fis).encode());
        for (i, &(addr, len)) in prdt.iter().enumerate() {
            let at = ct + 0x80 + i as u64 * 16;
            self.mem.write_u32(at, addr as u32).unwrap();
            self.mem.write_u32(at + 4, (addr >> 32) as u32).unwrap();
            self.mem.write_u32(at + 8, 0).unwrap();
            self.mem.write_u32(at + 12, len - 1).unwrap();
        }
        let h = Self::clb(port) + u64::from(slot) * 32;
        self.mem
            .write_u32(h, 5 | flags | (prdt.len() as u32) << 16)
            .unwrap();
        self.mem.write_u32(h + 4, 0).unwrap();
        self.mem.write_u32(h + 8, ct as u32).unwrap();
        self.mem.write_u32(h + 12, 0).unwrap();
    }

    /// Issue a command in `slot`: NCQ commands (FPDMA opcodes) set PxSACT first, like libahci.
    pub fn issue(
        &mut self,
        port: usize,
        slot: u8,
        fis: &RegisterH2d,
        prdt: &[(u64, u32)],
        write: bool,
    ) {
        let flags = if write { HDR_WRITE } else { 0 };
        self.prepare(port, slot, fis, prdt, flags);
        if matches!(fis.command, 0x60 | 0x61) {
            self.px_write(port, px::SACT, 1 << slot);
        }
        self.px_write(port, px::CI, 1 << slot);
    }

    /// Process device completions until `done()` holds (or panic after 10 s).
    pub fn wait_until(&mut self, mut done: impl FnMut(&mut Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.f.process_completions();
            if done(self) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out");
            if self.notifier.read().is_err() {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }

    /// Wait until PxCI and PxSACT are clear or the port reported a fatal error.
    pub fn wait_idle(&mut self, port: usize) {
        self.wait_until(|t| {
            let busy = t.px_read(port, px::CI) | t.px_read(port, px::SACT);
            busy == 0 || t.px_read(port, px::IS) & pxis::FATAL != 0
        });
    }

    /// Issue, wait, and assert success.
    pub fn run(
        &mut self,
        port: usize,
        slot: u8,
        fis: &RegisterH2d,
        prdt: &[(u64, u32)],
        write: bool,
    ) {
        self.issue(port, slot, fis, prdt, write);
        self.wait_idle(port);
        let is = self.px_read(port, px::IS);
        assert_eq!(
            is & pxis::FATAL,
            0,
            "PxIS {is:#x} TFD {:#x}",
            self.px_read(port, px::TFD)
        );
        assert_eq!(self.px_read(port, px::CI), 0);
    }
}

/// A command FIS with LBA mode set.
pub fn h2d(command: u8, lba: u64, count: u16) -> RegisterH2d {
    RegisterH2d {
        c: true,
        command,
        lba,
        count,
        device: 0x40,
        ..Default::default()
    }
}

/// A READ/WRITE FPDMA QUEUED FIS: sectors in Features, tag in Count 7:3.
pub fn fpdma(command: u8, tag: u8, lba: u64, sectors: u16) -> RegisterH2d {
    RegisterH2d {
        c: true,
        command,
        lba,
        features: sectors,
        count: u16::from(tag) << 3,
        device: 0x40,
        ..Default::default()
    }
}

/// A recognisable pattern: `seed` mixed with the byte index.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len)
        .map(|i| {
            ((i as u32)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(seed.wrapping_mul(40503))
                >> 13) as u8
        })
        .collect()
}

/// An IDENTIFY string (words hold two characters, first one in the high byte).
pub fn identify_string(data: &[u8], word: usize, words: usize) -> String {
    let mut s = Vec::new();
    for w in word..word + words {
        s.push(data[2 * w + 1]);
        s.push(data[2 * w]);
    }
    String::from_utf8_lossy(&s).trim_end().to_string()
}
