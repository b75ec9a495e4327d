//! An HBA with an emulated ATAPI CD/DVD drive on port 0, driven through MMIO as libahci and
//! libata drive one: PACKET commands with the command header's A bit and the ACMD bytes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use satavm::ahci::checks::{SpecChecks, Violation, ViolationHook};
use satavm::ahci::regs::{port as px, pxcmd, pxis};
use satavm::ahci::{AhciFunction, Observers};
use satavm::ata::atapi::{AtapiDrive, CdromConfig, MediaControl};
use satavm::irq::RecordingSink;
use satavm::mem::VecMemory;
use satavm::pci::config::{command, offset};
use satavm::pci::PciFunction;
use satavm::sata::{RegisterH2d, SataDevice};
use satavm::trace::{Format, SharedBuffer, Sink, Tracer};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{TestHba, ABAR_ADDR, IRQ_LINE, MEM_SIZE};

/// Command header DW0: A, an ATAPI command (AHCI 4.2.2).
pub const HDR_ATAPI: u32 = 1 << 5;
/// The ACMD area of a command table (4.2.3).
pub const ACMD: u64 = 0x40;
pub const CD_MODEL: &str = "SATAVM TEST DVD";
pub const BLOCK: usize = 2048;

/// The byte at `offset` of the test ISO made with `seed`.
pub fn iso_byte(seed: u8, offset: usize) -> u8 {
    ((offset as u32).wrapping_mul(2_654_435_761) >> 11) as u8 ^ seed
}

/// A temporary ISO-like image of `blocks` 2048-byte blocks, removed on drop.
pub struct Iso(pub PathBuf);

impl Iso {
    pub fn new(blocks: usize, seed: u8) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "satavm-atapi-{}-{}.iso",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let data: Vec<u8> = (0..blocks * BLOCK).map(|i| iso_byte(seed, i)).collect();
        std::fs::write(&path, data).unwrap();
        Iso(path)
    }

    /// Bytes `[offset, offset + len)` of the image.
    pub fn bytes(&self, offset: usize, len: usize) -> Vec<u8> {
        std::fs::read(&self.0).unwrap()[offset..offset + len].to_vec()
    }
}

impl Drop for Iso {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The HBA, its drive's tray, the JSON trace and the spec violations (strict mode, collected).
pub struct AtapiHba {
    pub t: TestHba,
    pub control: MediaControl,
    pub json: SharedBuffer,
    pub violations: Arc<Mutex<Vec<Violation>>>,
}

/// A PACKET command's Register H2D FIS: DMA or PIO with byte count limit `limit`.
pub fn packet_fis(dma: bool, limit: u16) -> RegisterH2d {
    RegisterH2d {
        c: true,
        command: 0xa0,
        // DMA, and DMADIR (device to host) as libata's atapi_dmadir sets it.
        features: if dma { 0x05 } else { 0 },
        lba: u64::from(limit) << 8,
        ..Default::default()
    }
}

impl AtapiHba {
    /// Port 0: a CD/DVD drive with `iso` in it (an empty tray for None), traced and checked.
    pub fn new(iso: Option<&Iso>) -> Self {
        let _ = env_logger::builder().is_test(true).try_init();
        let json = SharedBuffer::default();
        let tracer = Tracer::new(vec![Sink::new(Format::Json, Box::new(json.clone()))]);
        let violations = Arc::new(Mutex::new(Vec::new()));
        let v = violations.clone();
        let hook: ViolationHook = Arc::new(move |x: &Violation| v.lock().unwrap().push(x.clone()));
        let observers = Observers {
            tracer: tracer.clone(),
            checks: Arc::new(SpecChecks::new(tracer, Some(hook))),
        };
        let notifier = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
        let config = CdromConfig {
            path: iso.map(|i| i.0.clone()),
            model: Some(CD_MODEL.into()),
            serial: Some("CDSERIAL1".into()),
            engine: Default::default(),
            lock: true,
        };
        let (drive, control) = AtapiDrive::open(&config, notifier.clone()).unwrap();
        let devices: Vec<Box<dyn SataDevice>> = vec![Box::new(drive)];
        let mem = Arc::new(VecMemory::new(MEM_SIZE));
        let sink = Arc::new(RecordingSink::default());
        let f = AhciFunction::with_observers(
            devices,
            mem.clone(),
            sink.clone(),
            ABAR_ADDR,
            IRQ_LINE,
            observers,
        );
        let mut t = TestHba {
            f,
            mem,
            sink,
            notifier,
            images: Vec::new(),
            page: None,
        };
        let cmd = command::MEMORY_SPACE | command::BUS_MASTER;
        t.f.config_write(offset::COMMAND, &cmd.to_le_bytes());
        t.start_port(0);
        AtapiHba {
            t,
            control,
            json,
            violations,
        }
    }

    /// Issue the PACKET command `cdb` in `slot` and wait for its end; returns PxIS.
    pub fn packet(&mut self, slot: u8, fis: &RegisterH2d, cdb: &[u8], prdt: &[(u64, u32)]) -> u32 {
        let _ = self.t.notifier.read();
        self.t.prepare(0, slot, fis, prdt, HDR_ATAPI);
        let mut acmd = [0u8; 16];
        acmd[..cdb.len()].copy_from_slice(cdb);
        self.t.mem_write(TestHba::ctba(0, slot) + ACMD, &acmd);
        self.t.px_write(0, px::IS, u32::MAX);
        self.t.px_write(0, px::CI, 1 << slot);
        self.t.wait_idle(0);
        self.t.px_read(0, px::IS)
    }

    /// A data-in PACKET command by DMA into one buffer of `len` bytes at the slot's buffer.
    pub fn dma_in(&mut self, cdb: &[u8], len: u32) -> u32 {
        let buf = TestHba::buf(0, 0);
        let prdt: Vec<(u64, u32)> = if len == 0 { vec![] } else { vec![(buf, len)] };
        self.packet(0, &packet_fis(true, 0), cdb, &prdt)
    }

    /// After a task file error, what libahci's error handler does: stop the engine, clear
    /// PxSERR and PxIS, start it again.
    pub fn recover(&mut self) {
        self.t.stop_port(0);
        self.t.px_write(0, px::SERR, u32::MAX);
        self.t.px_write(0, px::IS, u32::MAX);
        self.t.px_set(0, px::CMD, pxcmd::ST);
    }

    /// A command expected to end with CHECK CONDITION: returns the sense key from the Error
    /// register (PxTFD bits 15:12), after recovering the port.
    pub fn check_condition(&mut self, cdb: &[u8], len: u32) -> u8 {
        let is = self.dma_in(cdb, len);
        assert_ne!(
            is & pxis::TFES,
            0,
            "CDB {cdb:02x?}: no task file error, PxIS {is:#x}"
        );
        let tfd = self.t.px_read(0, px::TFD);
        assert_eq!(tfd & 0x01, 0x01, "ERR in PxTFD {tfd:#x}");
        self.recover();
        (tfd >> 12) as u8 & 0x0f
    }

    /// A command expected to succeed; returns PRDBC.
    pub fn good(&mut self, cdb: &[u8], len: u32) -> u32 {
        let is = self.dma_in(cdb, len);
        assert_eq!(
            is & pxis::FATAL,
            0,
            "CDB {cdb:02x?}: PxIS {is:#x} PxTFD {:#x}",
            self.t.px_read(0, px::TFD)
        );
        assert_eq!(self.t.px_read(0, px::CI), 0);
        self.t.prdbc(0, 0)
    }

    /// REQUEST SENSE: (key, ASC, ASCQ).
    pub fn request_sense(&mut self) -> (u8, u8, u8) {
        assert_eq!(self.good(&[0x03, 0, 0, 0, 18, 0], 18), 18);
        let s = self.t.mem_read(TestHba::buf(0, 0), 18);
        assert_eq!(s[0] & 0x7f, 0x70, "fixed format, current");
        (s[2] & 0x0f, s[12], s[13])
    }

    /// The data of the slot-0 buffer.
    pub fn data(&self, len: usize) -> Vec<u8> {
        self.t.mem_read(TestHba::buf(0, 0), len)
    }

    pub fn rules_broken(&self) -> usize {
        self.violations.lock().unwrap().len()
    }
}
