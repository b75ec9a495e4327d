//! Runs an `ahci_mmio` [`Program`] against an [`AhciFunction`] with real [`EmulatedDrive`]s
//! over small images, and checks after every operation that:
//! - nothing panicked (libFuzzer's panic hook turns a panic in any thread into a crash);
//! - the operation returned within [`OP_DEADLINE`] (no hang, no deadlock);
//! - every write the HBA or a drive made to guest memory landed inside an area the guest gave
//!   the HBA: a port's command list (PxCLB + 1 KiB), its received-FIS area (PxFB + 256 B), or a
//!   PRDT buffer of a command the drive holds (recorded when the port submits it, dropped when
//!   it completes or is aborted, so a write after an engine stop or a reset is caught);
//! - the registers keep to their defined bits (see [`check_registers`]).
//!
//! Speed (libFuzzer runs this once per input): the drives and their images are made once per
//! process and reused ([`crate::pool`]): each run starts them from a COMRESET after `abort_all`,
//! over an image emptied in place (a memfd, never a file on disk). `Wait` waits for the
//! drives' completion eventfds instead of sleeping in steps, only while a drive holds a
//! command it has not finished ([`crate::checked::Recorded`] counts them), and no longer
//! than [`QUIET`] without a completion (a port
//! in an error state takes no completions, and a drive may drop queued commands after an
//! NCQ error: waiting longer would change nothing). fuzz/README.md has the figures.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use satavm::ahci::regs::{ghc, hba, port as px, pxcmd, pxis};
use satavm::ahci::AhciFunction;
use satavm::irq::RecordingSink;
use satavm::pci::config::{command, offset};
use satavm::pci::PciFunction;
use satavm::sata::{Fis, RegisterH2d, SataDevice};
use vmm_sys_util::eventfd::EventFd;

use crate::checked::{Areas, CheckedMemory, Recorded};
use crate::pool::{lock_slot, take_drive, DriveSlot, Pending, Ram, SharedDrive, DRIVES, RAMS};
use crate::program::{flags, Op, Program};

/// Guest RAM.
pub const MEM_SIZE: usize = 2 << 20;
/// Image size per drive (2048 sectors).
pub const IMAGE_BYTES: u64 = 1 << 20;
/// Longest any single operation may take.
pub const OP_DEADLINE: Duration = Duration::from_secs(5);
/// A `Wait` ends when no drive finished a command for this long.
pub const QUIET: Duration = Duration::from_millis(2);
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

/// The machine a program runs on.
pub struct Machine {
    pub f: AhciFunction,
    mem: Arc<CheckedMemory>,
    areas: Arc<Mutex<Areas>>,
    /// The drives (given back to [`DRIVES`] on drop), their notifiers and pending counts.
    drives: Vec<(SharedDrive, Arc<EventFd>, Arc<Pending>)>,
    ports: usize,
    /// OR of every value written to each port's PxCI and PxSACT: those registers never hold
    /// other bits.
    ci_written: [u32; 2],
    sact_written: [u32; 2],
}

impl Machine {
    /// A machine with one or two ports, PCI memory decoding and bus mastering on.
    pub fn new(two_ports: bool) -> Machine {
        let ports = if two_ports { 2 } else { 1 };
        let areas = Arc::new(Mutex::new(Areas::default()));
        let ram = RAMS.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mem = Arc::new(CheckedMemory {
            inner: ram.unwrap_or_else(|| Arc::new(Ram::new())),
            areas: areas.clone(),
        });
        let mut drives = Vec::new();
        let devices: Vec<Box<dyn SataDevice>> = (0..ports)
            .map(|i| {
                let pooled = take_drive(i);
                let notifier = pooled.notifier.clone();
                let shared = Arc::new(Mutex::new(DriveSlot {
                    pooled: Some(pooled),
                    ready: Vec::new(),
                }));
                let pending = Arc::new(Pending::default());
                drives.push((shared.clone(), notifier, pending.clone()));
                Box::new(Recorded {
                    port: i as u8,
                    inner: shared,
                    areas: areas.clone(),
                    srst: false,
                    pending,
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
            drives,
            ports,
            ci_written: [0; 2],
            sact_written: [0; 2],
        }
    }

    /// Commands the drives hold.
    fn pending(&self) -> usize {
        self.drives.iter().map(|(_, _, p)| p.total()).sum()
    }

    /// Take what the drives finished, for the ports to find when they ask (a port in an
    /// error state does not ask), counting it off the pending commands.
    fn collect_completions(&self) {
        for (d, _, pending) in &self.drives {
            let mut slot = lock_slot(d);
            if let Some(p) = slot.pooled.as_mut() {
                let fresh = p.drive.poll_completions();
                pending.finished(&fresh);
                slot.ready.extend(fresh);
            }
        }
    }

    /// Wait until a drive signals a completion (its notifier or its engine's descriptor), at
    /// most `timeout`; false if none did.
    fn wait_for_completion(&self, timeout: Duration) -> bool {
        let mut fds = Vec::new();
        for (d, n, _) in &self.drives {
            fds.push(n.as_raw_fd());
            if let Some(p) = lock_slot(d).pooled.as_ref() {
                fds.extend(p.drive.ready_fd());
            }
        }
        let woke = wait_readable(&fds, timeout);
        for (_, n, _) in &self.drives {
            let _ = n.read();
        }
        woke
    }

    /// True while a drive's aborted host I/O is still out (the HBA keeps PxCMD.CR, GHC.HR
    /// set meanwhile).
    fn draining(&self, port: Option<usize>) -> bool {
        self.drives.iter().enumerate().any(|(i, (d, _, _))| {
            port.is_none_or(|p| p == i)
                && lock_slot(d)
                    .pooled
                    .as_ref()
                    .is_some_and(|p| p.drive.draining())
        })
    }

    /// Stop whatever still runs in the drives and wait until their aborted I/O is back (writes
    /// until then are checked as well), for the next run.
    fn finish(&mut self) {
        for (d, _, _) in &self.drives {
            if let Some(pooled) = lock_slot(d).pooled.as_mut() {
                pooled.drive.abort_all();
                pooled.drain();
            }
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
        let mut bases_written = false;
        for (i, &b) in data.iter().enumerate() {
            let a = at + i as u64;
            bases_written |= a & !3 == hba::GHC;
            for p in 0..self.ports {
                let shift = 8 * ((a & 3) as u32);
                if a & !3 == Self::px(p, px::CI) {
                    self.ci_written[p] |= u32::from(b) << shift;
                }
                if a & !3 == Self::px(p, px::SACT) {
                    self.sact_written[p] |= u32::from(b) << shift;
                }
                bases_written |= [px::CLB, px::CLBU, px::FB, px::FBU, px::SCTL]
                    .iter()
                    .any(|r| a & !3 == Self::px(p, *r));
            }
        }
        self.f.bar_write(ABAR, at, data);
        // Only these registers move the areas (GHC.HR and COMRESET reset ports, which may
        // clear them): reading them back after every write was 15% of the fuzzer's time.
        if bases_written {
            self.refresh_bases();
        }
    }

    fn px_write(&mut self, port: usize, reg: u64, v: u32) {
        self.mmio_write(Self::px(port, reg), &v.to_le_bytes());
    }

    /// Port `p`'s command list address, as [`Machine::refresh_bases`] last read it.
    fn clb_of(&self, p: usize) -> u64 {
        self.areas.lock().unwrap_or_else(|e| e.into_inner()).bases[2 * p].0
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
                // PxCLB as the last refresh read it (no register access: a Command op is
                // guest memory stores only).
                let clb = self.clb_of(p);
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
                // Waiting only makes sense while a drive holds commands (keeps runs fast), and
                // ends as soon as they finish.
                loop {
                    self.f.process_completions();
                    self.collect_completions();
                    let left = deadline.saturating_duration_since(Instant::now());
                    if (self.pending() == 0 && !self.draining(None))
                        || left.is_zero()
                        || !self.wait_for_completion(left.min(QUIET))
                    {
                        break;
                    }
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

    /// The register invariants; panics with the violation. `wrote` is false after an
    /// operation that wrote no register (then the registers only the guest's writes change
    /// are not read again: IE, SCTL, PxCLB/PxFB alignment, PI, unimplemented ports).
    pub fn check_registers_after(&mut self, wrote: bool) {
        let g = self.r32(hba::GHC);
        // GHC.HR stays set while a drive's aborted I/O drains (AHCI 10.4.3: the reset is not
        // done until the HBA is idle).
        let hr = if self.draining(None) { ghc::HR } else { 0 };
        assert_eq!(
            g & !(ghc::AE | ghc::IE | ghc::MRSM | hr),
            0,
            "GHC {g:#x}: reserved bits or HR"
        );
        assert_ne!(g & ghc::AE, 0, "GHC.AE is 1 (CAP.SAM)");
        let pi = (1 << self.ports) - 1;
        if wrote {
            assert_eq!(self.r32(hba::PI), pi, "PI");
        }
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
            // CR stays set after ST clears while the drive still has aborted I/O out (AHCI
            // 10.3.2: the DMA engine is still running).
            let cr = cmd & pxcmd::CR != 0;
            assert!(
                st == cr || (cr && self.draining(Some(p))),
                "P{p}CMD {cmd:#x}: CR follows ST"
            );
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
            let ssts = self.px_read(p, px::SSTS);
            // Link down (0), Phy offline (4), or up: IPM active, DET 3, the negotiated
            // generation 1-3 in SPD.
            let up = ssts & !0xf0 == 0x103 && (1..=3).contains(&((ssts >> 4) & 0xf));
            assert!(
                ssts == 0 || ssts == 4 || up,
                "P{p}SSTS {ssts:#x} is not a defined state"
            );
            let tfd = self.px_read(p, px::TFD);
            assert_eq!(tfd & !0xffff, 0, "P{p}TFD {tfd:#x}");
            let sntf = self.px_read(p, px::SNTF);
            assert_eq!(sntf & !0xffff, 0, "P{p}SNTF {sntf:#x}");
            if !wrote {
                continue;
            }
            let ie = self.px_read(p, px::IE);
            assert_eq!(ie & !pxis::ALL, 0, "P{p}IE {ie:#x}: reserved bits");
            let sctl = self.px_read(p, px::SCTL);
            assert_eq!(sctl & !0xfff, 0, "P{p}SCTL {sctl:#x}");
            // As refresh_bases read them after the write that changed them.
            let (clb, fb) = {
                let areas = self.areas.lock().unwrap_or_else(|e| e.into_inner());
                (areas.bases[2 * p].0, areas.bases[2 * p + 1].0)
            };
            assert_eq!(clb & 0x3ff, 0, "P{p}CLB alignment");
            assert_eq!(fb & 0xff, 0, "P{p}FB alignment");
        }
        if wrote {
            // An unimplemented port reads 0.
            assert_eq!(self.px_read(self.ports, px::CI), 0);
            assert_eq!(self.px_read(self.ports, px::CMD), 0);
        }
    }

    /// Every register invariant ([`Machine::check_registers_after`] a write).
    pub fn check_registers(&mut self) {
        self.check_registers_after(true);
    }
}

/// Wait until one of `fds` (negative ones are skipped) is readable, at most `timeout`; false
/// if none became readable.
pub(crate) fn wait_readable(fds: &[std::os::fd::RawFd], timeout: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut polled: Vec<PollFd> = fds
        .iter()
        .filter(|fd| **fd >= 0)
        // SAFETY: the caller's descriptors stay open for the call.
        .map(|fd| {
            PollFd::new(
                unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) },
                PollFlags::POLLIN,
            )
        })
        .collect();
    let ms = u16::try_from(timeout.as_millis().max(1)).unwrap_or(u16::MAX);
    matches!(poll(&mut polled, PollTimeout::from(ms)), Ok(n) if n > 0)
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
        // Stores to guest memory touch no register (the HBA reads memory only when a
        // register access or completion processing makes it): the registers are as the last
        // check saw them. Reads and waits change no register only the guest writes.
        match op {
            Op::MemWrite { .. } | Op::Command { .. } => {}
            Op::MmioRead { .. } | Op::Wait { .. } => m.check_registers_after(false),
            _ => m.check_registers_after(true),
        }
    }
    // Stop what is still running in the drives; writes until then are checked as well.
    let start = Instant::now();
    m.finish();
    assert!(start.elapsed() < OP_DEADLINE, "stopping the drives hung");
}

impl Drop for Machine {
    /// The drives go back to [`DRIVES`] (after [`Machine::finish`], or aborted here).
    fn drop(&mut self) {
        for (port, (d, _, _)) in self.drives.iter().enumerate() {
            let taken = lock_slot(d).pooled.take();
            if let Some(mut pooled) = taken {
                pooled.drive.abort_all();
                DRIVES.lock().unwrap_or_else(|e| e.into_inner())[port].push(pooled);
            }
        }
        // Nothing uses the RAM now (the drives are idle): zero what was written, keep it.
        self.mem.inner.clear();
        RAMS.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.mem.inner.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::Prd;
    use satavm::mem::GuestMemory;

    fn mem(m: &Machine, addr: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        m.mem.inner.bytes.read(addr, &mut b).unwrap();
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
