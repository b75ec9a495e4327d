//! Runs an `ahci_mmio` [`Program`] against an [`AhciFunction`] with real [`EmulatedDrive`]s
//! over small images, and checks after every operation that:
//! - nothing panicked (libFuzzer's panic hook turns a panic in any thread into a crash);
//! - the operation returned within [`OP_DEADLINE`] (no hang, no deadlock);
//! - every write the HBA or a drive made to guest memory landed inside an area the guest gave
//!   the HBA: a port's command list (PxCLB + 1 KiB), its received-FIS area (PxFB + 256 B), or a
//!   PRDT buffer of a command the drive holds (recorded when the port submits it, dropped when
//!   it completes or is aborted, so a write after an engine stop or a reset is caught);
//! - the registers keep to their defined bits (see [`check_registers`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use satavm::ahci::regs::{ghc, hba, port as px, pxcmd, pxis};
use satavm::ahci::AhciFunction;
use satavm::ata::{DriveConfig, EmulatedDrive};
use satavm::irq::RecordingSink;
use satavm::mem::{GuestMemory, MemError, VecMemory};
use satavm::pci::config::{command, offset};
use satavm::pci::PciFunction;
use satavm::sata::{Completion, DataPath, Fis, RegisterD2h, RegisterH2d, SataDevice, Submission};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::program::{flags, Op, Program};

/// Guest RAM.
pub const MEM_SIZE: usize = 2 << 20;
/// Image size per drive (2048 sectors).
pub const IMAGE_BYTES: u64 = 1 << 20;
/// Longest any single operation may take.
pub const OP_DEADLINE: Duration = Duration::from_secs(5);
/// ABAR is BAR5.
const ABAR: usize = 5;

/// Default PxCLB of `port` (BringUp).
pub fn clb(port: usize) -> u32 {
    0x1_0000 + port as u32 * 0x1000
}
/// Default PxFB of `port`.
pub fn fb(port: usize) -> u32 {
    clb(port) + 0x400
}
/// Command table of `slot` (2 KiB each: room for 120 PRDs).
pub fn ctba(port: usize, slot: u8) -> u32 {
    0x2_0000 + port as u32 * 0x1_0000 + u32::from(slot) * 0x800
}
/// Start of the area seeds use for data buffers.
pub const DATA: u32 = 0x10_0000;

type Range = (u64, u64);

/// The areas the HBA may write to, and who checks them.
#[derive(Debug, Default)]
struct Areas {
    /// Command lists and received-FIS areas as the registers say now.
    bases: Vec<Range>,
    /// Per (port, slot): commands the drive holds, and the PRDT buffers of all of them.
    commands: HashMap<(u8, u8), (usize, Vec<Range>)>,
}

impl Areas {
    fn allows(&self, addr: u64, len: u64) -> bool {
        let inside = |&(a, n): &Range| addr >= a && addr.saturating_add(len) <= a.saturating_add(n);
        self.bases.iter().any(inside)
            || self
                .commands
                .values()
                .any(|(_, ranges)| ranges.iter().any(inside))
    }
    fn submitted(&mut self, port: u8, slot: u8, data: &DataPath) {
        let e = self.commands.entry((port, slot)).or_default();
        e.0 += 1;
        e.1.extend(data.entries().iter().map(|p| (p.addr, u64::from(p.len))));
    }
    /// One command of `slot` ended. Its buffers stay allowed while the slot has others
    /// (a guest may reuse a slot with another NCQ tag; which ended is not known here).
    fn ended(&mut self, port: u8, slot: u8) {
        if let Some(e) = self.commands.get_mut(&(port, slot)) {
            e.0 = e.0.saturating_sub(1);
            if e.0 == 0 {
                self.commands.remove(&(port, slot));
            }
        }
    }
    fn all_aborted(&mut self, port: u8) {
        self.commands.retain(|(p, _), _| *p != port);
    }
}

/// Guest memory that checks every write against [`Areas`].
struct CheckedMemory {
    inner: VecMemory,
    areas: Arc<Mutex<Areas>>,
}

impl GuestMemory for CheckedMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.inner.read(addr, buf)
    }
    fn write(&self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        let areas = self.areas.lock().unwrap_or_else(|e| e.into_inner());
        assert!(
            areas.allows(addr, data.len() as u64),
            "guest memory write {addr:#x}+{:#x} outside the areas the guest gave the HBA: {areas:?}",
            data.len()
        );
        self.inner.write(addr, data)
    }
}

/// The real drive, with its commands' PRDT buffers recorded in [`Areas`].
struct Recorded {
    port: u8,
    inner: EmulatedDrive,
    areas: Arc<Mutex<Areas>>,
    srst: bool,
}

impl Recorded {
    fn areas(&self) -> std::sync::MutexGuard<'_, Areas> {
        self.areas.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SataDevice for Recorded {
    fn comreset(&mut self) -> RegisterD2h {
        let d2h = self.inner.comreset();
        self.srst = false;
        self.areas().all_aborted(self.port);
        d2h
    }
    fn device_control(&mut self, fis: &RegisterH2d) -> Option<RegisterD2h> {
        let r = self.inner.device_control(fis);
        let srst = fis.control & satavm::ata::registers::control::SRST != 0;
        if srst != self.srst {
            // Setting and clearing SRST both reset the drive (everything in flight aborted).
            self.srst = srst;
            self.areas().all_aborted(self.port);
        }
        r
    }
    fn submit(&mut self, slot: u8, fis: &RegisterH2d, data: DataPath) -> Submission {
        self.areas().submitted(self.port, slot, &data);
        let s = self.inner.submit(slot, fis, data);
        if let Submission::Complete(_) = s {
            self.areas().ended(self.port, slot);
        }
        s
    }
    fn poll_completions(&mut self) -> Vec<Completion> {
        let done = self.inner.poll_completions();
        let mut areas = self.areas();
        for c in &done {
            areas.ended(self.port, c.slot);
        }
        done
    }
    fn abort_all(&mut self) {
        self.inner.abort_all();
        self.areas().all_aborted(self.port);
    }
}

/// The machine a program runs on.
pub struct Machine {
    pub f: AhciFunction,
    mem: Arc<CheckedMemory>,
    areas: Arc<Mutex<Areas>>,
    notifier: Arc<EventFd>,
    ports: usize,
    /// OR of every value written to each port's PxCI and PxSACT: those registers never hold
    /// other bits.
    ci_written: [u32; 2],
    sact_written: [u32; 2],
}

/// The image files, one per port, made once per process and emptied for every run.
fn image_paths() -> &'static [PathBuf; 2] {
    static PATHS: OnceLock<[PathBuf; 2]> = OnceLock::new();
    PATHS.get_or_init(|| {
        let dir = std::env::temp_dir();
        let pid = std::process::id();
        [0, 1].map(|i| dir.join(format!("satavm-fuzz-{pid}-{i}.img")))
    })
}

impl Machine {
    /// A machine with one or two ports, PCI memory decoding and bus mastering on.
    pub fn new(two_ports: bool) -> Machine {
        let ports = if two_ports { 2 } else { 1 };
        let areas = Arc::new(Mutex::new(Areas::default()));
        let mem = Arc::new(CheckedMemory {
            inner: VecMemory::new(MEM_SIZE),
            areas: areas.clone(),
        });
        let notifier = Arc::new(EventFd::new(EFD_NONBLOCK).expect("eventfd"));
        let devices: Vec<Box<dyn SataDevice>> = image_paths()[..ports]
            .iter()
            .enumerate()
            .map(|(i, path)| {
                // A fresh, zeroed (sparse) image for every run keeps runs reproducible.
                let f = std::fs::File::create(path).expect("create image");
                f.set_len(IMAGE_BYTES).expect("size image");
                let cfg = DriveConfig {
                    path: path.clone(),
                    model: None,
                    serial: Some(format!("FUZZ{i}")),
                    read_only: false,
                };
                let drive = EmulatedDrive::open(&cfg, notifier.clone()).expect("open drive");
                Box::new(Recorded {
                    port: i as u8,
                    inner: drive,
                    areas: areas.clone(),
                    srst: false,
                }) as Box<dyn SataDevice>
            })
            .collect();
        let sink = Arc::new(RecordingSink::default());
        let mut f = AhciFunction::new(devices, mem.clone(), sink, 0xfebf_0000, 11);
        let cmd = command::MEMORY_SPACE | command::BUS_MASTER;
        f.config_write(offset::COMMAND, &cmd.to_le_bytes());
        Machine {
            f,
            mem,
            areas,
            notifier,
            ports,
            ci_written: [0; 2],
            sact_written: [0; 2],
        }
    }

    fn r32(&mut self, at: u64) -> u32 {
        let mut b = [0u8; 4];
        self.f.bar_read(ABAR, at, &mut b);
        u32::from_le_bytes(b)
    }

    fn px(port: usize, reg: u64) -> u64 {
        hba::PORTS_BASE + port as u64 * hba::PORT_SIZE + reg
    }

    fn px_read(&mut self, port: usize, reg: u64) -> u32 {
        self.r32(Self::px(port, reg))
    }

    /// Every MMIO write goes through here, so PxCI/PxSACT writes are tracked at any width.
    fn mmio_write(&mut self, at: u64, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let a = at + i as u64;
            for p in 0..self.ports {
                let shift = 8 * ((a & 3) as u32);
                if a & !3 == Self::px(p, px::CI) {
                    self.ci_written[p] |= u32::from(b) << shift;
                }
                if a & !3 == Self::px(p, px::SACT) {
                    self.sact_written[p] |= u32::from(b) << shift;
                }
            }
        }
        self.f.bar_write(ABAR, at, data);
        self.refresh_bases();
    }

    fn px_write(&mut self, port: usize, reg: u64, v: u32) {
        self.mmio_write(Self::px(port, reg), &v.to_le_bytes());
    }

    /// The command lists and received-FIS areas the registers point at now.
    fn refresh_bases(&mut self) {
        let mut bases = Vec::new();
        for p in 0..self.ports {
            let clb =
                u64::from(self.px_read(p, px::CLB)) | u64::from(self.px_read(p, px::CLBU)) << 32;
            let fb = u64::from(self.px_read(p, px::FB)) | u64::from(self.px_read(p, px::FBU)) << 32;
            bases.push((clb, 0x400));
            bases.push((fb, 0x100));
        }
        self.areas.lock().unwrap_or_else(|e| e.into_inner()).bases = bases;
    }

    /// Store bytes as the guest CPU does (not checked: the guest owns its memory).
    fn guest_store(&self, addr: u64, bytes: &[u8]) {
        let _ = self.mem.inner.write(addr, bytes);
    }

    fn port(&self, p: u8) -> usize {
        usize::from(p) % self.ports
    }

    /// Run one operation.
    pub fn step(&mut self, op: &Op) {
        match op {
            Op::MmioWrite {
                offset,
                width_log2,
                value,
            } => {
                let n = 1usize << (width_log2 % 4);
                let at = u64::from(*offset) % 0x2000;
                self.mmio_write(at, &value.to_le_bytes()[..n]);
            }
            Op::MmioRead { offset, width_log2 } => {
                let n = 1usize << (width_log2 % 4);
                let mut b = [0u8; 8];
                self.f
                    .bar_read(ABAR, u64::from(*offset) % 0x2000, &mut b[..n]);
            }
            Op::MemWrite { addr, bytes } => self.guest_store(u64::from(*addr), bytes),
            Op::Command {
                port,
                slot,
                flags: fl,
                command,
                features,
                lba,
                count,
                control,
                prdtl,
                prds,
            } => {
                let p = self.port(*port);
                let slot = slot % 32;
                let fis = RegisterH2d {
                    c: fl & flags::CONTROL == 0,
                    command: *command,
                    features: *features,
                    lba: u64::from(*lba),
                    device: 0x40,
                    count: *count,
                    control: *control,
                    ..Default::default()
                };
                let ct = u64::from(ctba(p, slot));
                self.guest_store(ct, &Fis::RegisterH2d(fis).encode());
                for (i, prd) in prds.iter().enumerate() {
                    let at = ct + 0x80 + 16 * i as u64;
                    let dbau = u32::from(fl & flags::HIGH_PRDS != 0);
                    let mut e = [0u8; 16];
                    e[0..4].copy_from_slice(&prd.addr.to_le_bytes());
                    e[4..8].copy_from_slice(&dbau.to_le_bytes());
                    e[12..16].copy_from_slice(&prd.dw3.to_le_bytes());
                    self.guest_store(at, &e);
                }
                let n = if fl & flags::RAW_PRDTL != 0 {
                    u32::from(*prdtl)
                } else {
                    prds.len() as u32
                };
                let dw0 = 5
                    | u32::from(fl & flags::WRITE != 0) << 6
                    | u32::from(fl & flags::RESET != 0) << 8
                    | u32::from(fl & flags::CLEAR_BUSY != 0) << 10
                    | n << 16;
                let ctbau = u32::from(fl & flags::HIGH_TABLE != 0);
                let clb = u64::from(self.px_read(p, px::CLB))
                    | u64::from(self.px_read(p, px::CLBU)) << 32;
                let mut h = [0u8; 16];
                h[0..4].copy_from_slice(&dw0.to_le_bytes());
                h[8..12].copy_from_slice(&(ct as u32).to_le_bytes());
                h[12..16].copy_from_slice(&ctbau.to_le_bytes());
                if let Some(at) = clb.checked_add(u64::from(slot) * 32) {
                    self.guest_store(at, &h);
                }
            }
            Op::Issue { port, slots, ncq } => {
                let p = self.port(*port);
                if *ncq {
                    self.px_write(p, px::SACT, *slots);
                }
                self.px_write(p, px::CI, *slots);
            }
            Op::Wait { ms } => {
                let deadline = Instant::now() + Duration::from_millis(u64::from(ms % 32));
                // Waiting only makes sense while a drive holds commands (keeps runs fast).
                while self.notifier.read().is_err()
                    && Instant::now() < deadline
                    && self.drives_busy()
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
                self.f.process_completions();
            }
            Op::HbaReset => self.mmio_write(hba::GHC, &ghc::HR.to_le_bytes()),
            Op::Comreset { port, release } => {
                let p = self.port(*port);
                self.px_write(p, px::SCTL, 1);
                if *release {
                    self.px_write(p, px::SCTL, 0);
                }
            }
            Op::Engine { port, st, fre } => {
                let p = self.port(*port);
                let mut v = self.px_read(p, px::CMD) & !(pxcmd::ST | pxcmd::FRE);
                if *st {
                    v |= pxcmd::ST;
                }
                if *fre {
                    v |= pxcmd::FRE;
                }
                self.px_write(p, px::CMD, v);
            }
            Op::ConfigWrite { offset, len, value } => {
                let n = usize::from(len % 4) + 1;
                self.f
                    .config_write(usize::from(*offset), &value.to_le_bytes()[..n]);
                // Keep MMIO decoding on: with it off the function would see nothing at all.
                let cmd = self.f.config().u16_at(offset::COMMAND) | command::MEMORY_SPACE;
                self.f.config_write(offset::COMMAND, &cmd.to_le_bytes());
            }
            Op::BringUp { port } => {
                let p = self.port(*port);
                self.mmio_write(hba::GHC, &ghc::AE.to_le_bytes());
                let cmd = self.px_read(p, px::CMD);
                self.px_write(p, px::CMD, cmd & !(pxcmd::ST | pxcmd::FRE));
                self.px_write(p, px::CLB, clb(p));
                self.px_write(p, px::CLBU, 0);
                self.px_write(p, px::FB, fb(p));
                self.px_write(p, px::FBU, 0);
                self.px_write(p, px::SERR, u32::MAX);
                self.px_write(p, px::IS, u32::MAX);
                self.mmio_write(hba::IS, &u32::MAX.to_le_bytes());
                let cmd = self.px_read(p, px::CMD);
                self.px_write(p, px::CMD, cmd | pxcmd::FRE);
                let cmd = self.px_read(p, px::CMD);
                self.px_write(p, px::CMD, cmd | pxcmd::ST);
                self.px_write(p, px::IE, pxis::ALL);
                let g = self.r32(hba::GHC);
                self.mmio_write(hba::GHC, &(g | ghc::IE).to_le_bytes());
            }
            Op::SetBases { port, clb, fb } => {
                let p = self.port(*port);
                self.px_write(p, px::CLB, *clb);
                self.px_write(p, px::FB, *fb);
            }
        }
    }

    /// True while a drive holds a command.
    fn drives_busy(&self) -> bool {
        !self
            .areas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .commands
            .is_empty()
    }

    /// The register invariants; panics with the violation.
    pub fn check_registers(&mut self) {
        let g = self.r32(hba::GHC);
        assert_eq!(
            g & !(ghc::AE | ghc::IE | ghc::MRSM),
            0,
            "GHC {g:#x}: reserved bits or HR"
        );
        assert_ne!(g & ghc::AE, 0, "GHC.AE is 1 (CAP.SAM)");
        let pi = self.r32(hba::PI);
        assert_eq!(pi, (1 << self.ports) - 1, "PI");
        let is = self.r32(hba::IS);
        assert_eq!(is & !pi, 0, "IS {is:#x} has a bit of an unimplemented port");
        for p in 0..self.ports {
            let cmd = self.px_read(p, px::CMD);
            let defined = pxcmd::ST
                | pxcmd::SUD
                | pxcmd::POD
                | pxcmd::FRE
                | pxcmd::CCS_MASK
                | pxcmd::FR
                | pxcmd::CR
                | pxcmd::ATAPI
                | pxcmd::DLAE;
            assert_eq!(
                cmd & !defined,
                0,
                "P{p}CMD {cmd:#x}: reserved or self-clearing bits"
            );
            let st = cmd & pxcmd::ST != 0;
            assert_eq!(st, cmd & pxcmd::CR != 0, "P{p}CMD {cmd:#x}: CR follows ST");
            assert_eq!(
                cmd & pxcmd::FRE != 0,
                cmd & pxcmd::FR != 0,
                "P{p}CMD {cmd:#x}: FR follows FRE"
            );
            let ci = self.px_read(p, px::CI);
            let sact = self.px_read(p, px::SACT);
            if !st {
                assert_eq!(
                    ci | sact,
                    0,
                    "P{p}: PxCI {ci:#x} / PxSACT {sact:#x} with ST = 0"
                );
            }
            assert_eq!(
                ci & !self.ci_written[p],
                0,
                "P{p}CI {ci:#x}: a slot never issued"
            );
            assert_eq!(
                sact & !self.sact_written[p],
                0,
                "P{p}SACT {sact:#x}: a tag never set"
            );
            let pis = self.px_read(p, px::IS);
            assert_eq!(pis & !pxis::ALL, 0, "P{p}IS {pis:#x}: reserved bits");
            let ie = self.px_read(p, px::IE);
            assert_eq!(ie & !pxis::ALL, 0, "P{p}IE {ie:#x}: reserved bits");
            let ssts = self.px_read(p, px::SSTS);
            assert!(
                [0, 4, 0x123].contains(&ssts),
                "P{p}SSTS {ssts:#x} is not a defined state"
            );
            let tfd = self.px_read(p, px::TFD);
            assert_eq!(tfd & !0xffff, 0, "P{p}TFD {tfd:#x}");
            let sctl = self.px_read(p, px::SCTL);
            assert_eq!(sctl & !0xfff, 0, "P{p}SCTL {sctl:#x}");
            let sntf = self.px_read(p, px::SNTF);
            assert_eq!(sntf & !0xffff, 0, "P{p}SNTF {sntf:#x}");
            assert_eq!(self.px_read(p, px::CLB) & 0x3ff, 0, "P{p}CLB alignment");
            assert_eq!(self.px_read(p, px::FB) & 0xff, 0, "P{p}FB alignment");
        }
        // An unimplemented port reads 0.
        assert_eq!(self.px_read(self.ports, px::CI), 0);
        assert_eq!(self.px_read(self.ports, px::CMD), 0);
    }
}

/// Run `data` as a program; panics on a violated invariant.
pub fn run(data: &[u8]) {
    let program = Program::decode(data);
    let mut m = Machine::new(program.two_ports);
    m.refresh_bases();
    for (i, op) in program.ops.iter().enumerate() {
        let start = Instant::now();
        m.step(op);
        let took = start.elapsed();
        assert!(took < OP_DEADLINE, "operation {i} {op:?} took {took:?}");
        m.check_registers();
    }
    // Let what is still running finish or be dropped with the drives (their workers are
    // joined); writes until then are checked as well.
    let start = Instant::now();
    drop(m);
    assert!(
        start.elapsed() < OP_DEADLINE,
        "shutting the drives down hung"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::Prd;

    fn mem(m: &Machine, addr: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        m.mem.inner.read(addr, &mut b).unwrap();
        b
    }

    #[test]
    fn identify_and_ncq_programs_do_what_the_seeds_say() {
        let mut m = Machine::new(false);
        m.refresh_bases();
        let ops = [
            Op::BringUp { port: 0 },
            Op::Command {
                port: 0,
                slot: 0,
                flags: 0,
                command: 0xec,
                features: 0,
                lba: 0,
                count: 0,
                control: 0,
                prdtl: 0,
                prds: vec![Prd::new(DATA, 512)],
            },
            Op::Issue {
                port: 0,
                slots: 1,
                ncq: false,
            },
        ];
        for op in &ops {
            m.step(op);
            m.check_registers();
        }
        assert_eq!(m.px_read(0, px::CI), 0);
        assert_ne!(m.px_read(0, px::IS) & pxis::PSS, 0);
        assert_eq!(
            &mem(&m, u64::from(DATA) + 20, 4),
            b"UFZZ",
            "IDENTIFY serial FUZZ0, byte-swapped words"
        );
        for t in 0..4u8 {
            m.step(&Op::Command {
                port: 0,
                slot: t,
                flags: 0,
                command: 0x60,
                features: 8,
                lba: u32::from(t) * 8,
                count: u16::from(t) << 3,
                control: 0,
                prdtl: 0,
                prds: vec![Prd::new(DATA + 0x1000 * u32::from(t), 4096)],
            });
        }
        m.step(&Op::Issue {
            port: 0,
            slots: 0xf,
            ncq: true,
        });
        let start = Instant::now();
        while m.px_read(0, px::SACT) != 0 {
            assert!(start.elapsed() < Duration::from_secs(5));
            m.step(&Op::Wait { ms: 5 });
            m.check_registers();
        }
        assert_eq!(m.px_read(0, px::IS) & pxis::FATAL, 0);
    }

    #[test]
    #[should_panic(expected = "outside the areas")]
    fn a_write_outside_the_given_areas_is_caught() {
        let m = Machine::new(false);
        m.mem.write(0x1_0000, &[1]).unwrap();
    }
}
