//! A small polling AHCI 1.3.1 driver: HBA registers (section 3.1), port registers (3.3),
//! command list / command table / PRDT (4.2), received-FIS area (4.2.1), and the start/stop
//! and error-recovery procedures of section 10.

use core::fmt;
use core::sync::atomic::{fence, Ordering};

use crate::hw::Mmio;
use crate::mem::{Arena, Text};
use crate::text;
use crate::time::{delay_ms, wait_for};

/// Generic host control registers (3.1).
pub mod ghc {
    pub const CAP: u64 = 0x00;
    pub const GHC: u64 = 0x04;
    pub const IS: u64 = 0x08;
    pub const PI: u64 = 0x0c;
    pub const VS: u64 = 0x10;
    /// GHC bits: HBA reset, interrupt enable, AHCI enable.
    pub const GHC_HR: u32 = 1 << 0;
    pub const GHC_AE: u32 = 1 << 31;
    /// CAP bits: 64-bit addressing, NCQ, staggered spin-up, command list override.
    pub const CAP_S64A: u32 = 1 << 31;
    pub const CAP_SNCQ: u32 = 1 << 30;
    pub const CAP_SSS: u32 = 1 << 27;
    pub const CAP_SCLO: u32 = 1 << 24;
}

/// Port registers (3.3), offsets within the port's 0x80-byte block.
pub mod px {
    pub const CLB: u64 = 0x00;
    pub const CLBU: u64 = 0x04;
    pub const FB: u64 = 0x08;
    pub const FBU: u64 = 0x0c;
    pub const IS: u64 = 0x10;
    pub const IE: u64 = 0x14;
    pub const CMD: u64 = 0x18;
    pub const TFD: u64 = 0x20;
    pub const SIG: u64 = 0x24;
    pub const SSTS: u64 = 0x28;
    pub const SCTL: u64 = 0x2c;
    pub const SERR: u64 = 0x30;
    pub const SACT: u64 = 0x34;
    pub const CI: u64 = 0x38;

    /// PxCMD (3.3.7).
    pub const CMD_ST: u32 = 1 << 0;
    pub const CMD_SUD: u32 = 1 << 1;
    pub const CMD_CLO: u32 = 1 << 3;
    pub const CMD_FRE: u32 = 1 << 4;
    pub const CMD_FR: u32 = 1 << 14;
    pub const CMD_CR: u32 = 1 << 15;

    /// PxIS (3.3.5).
    pub const IS_DHRS: u32 = 1 << 0;
    pub const IS_PSS: u32 = 1 << 1;
    pub const IS_SDBS: u32 = 1 << 3;
    pub const IS_IFS: u32 = 1 << 27;
    pub const IS_HBDS: u32 = 1 << 28;
    pub const IS_HBFS: u32 = 1 << 29;
    pub const IS_TFES: u32 = 1 << 30;
    /// Fatal and task-file errors: the command engine stops (6.1.2).
    pub const IS_ERRORS: u32 = IS_TFES | IS_HBFS | IS_HBDS | IS_IFS;

    /// PxTFD.STS bits (ATA status).
    pub const STS_ERR: u32 = 1 << 0;
    pub const STS_DRQ: u32 = 1 << 3;
    pub const STS_BSY: u32 = 1 << 7;
}

/// Largest PRDT this driver builds per command.
pub const MAX_PRDT: usize = 64;
/// Command table: CFIS (64) + ACMD (16) + reserved (48) + PRDT (16 each), 128-byte aligned.
const CMD_TABLE_BYTES: u64 = 0x80 + 16 * MAX_PRDT as u64;
/// Received-FIS area offsets (4.2.1).
pub const RFIS_D2H: usize = 0x40;
pub const RFIS_SDB: usize = 0x58;
/// FIS types (SATA 3.x 10.5).
pub const FIS_H2D: u8 = 0x27;
pub const FIS_D2H: u8 = 0x34;
pub const FIS_SDB: u8 = 0xa1;
/// PxSIG of an ATA device (ATA8-ACS signature: count 1, LBA 1, LBA mid/high 0).
pub const SIG_ATA: u32 = 0x0000_0101;
/// PxSIG of an ATAPI device (LBA mid 14h, high EBh).
pub const SIG_ATAPI: u32 = 0xeb14_0101;

/// Engine handshakes (PxCMD.CR / FR) complete within 500 ms (10.1.2); allow twice that.
const ENGINE_MS: u64 = 1000;
/// Commands complete within this or count as hung.
pub const COMMAND_MS: u64 = 10_000;

/// A report-line string.
pub type Msg = Text<256>;

/// The HBA's generic registers.
#[derive(Clone, Copy)]
pub struct Hba {
    pub regs: Mmio,
    pub cap: u32,
    pub pi: u32,
    pub vs: u32,
}

impl Hba {
    /// Enable AHCI mode (GHC.AE, 10.1.1 step 1) and read CAP/PI/VS.
    pub fn enable(abar: u64) -> Result<Hba, Msg> {
        let regs = Mmio(abar);
        let ghc = regs.read32(ghc::GHC);
        if ghc == 0xffff_ffff {
            return Err(text!(
                "GHC reads all-ones at ABAR {abar:#x}: nothing decodes the BAR"
            ));
        }
        regs.write32(ghc::GHC, ghc | ghc::GHC_AE);
        let ghc = regs.read32(ghc::GHC);
        if ghc & ghc::GHC_AE == 0 {
            return Err(text!("GHC.AE did not stick (GHC={ghc:#010x})"));
        }
        let hba = Hba {
            regs,
            cap: regs.read32(ghc::CAP),
            pi: regs.read32(ghc::PI),
            vs: regs.read32(ghc::VS),
        };
        if hba.pi == 0 {
            return Err(text!(
                "PI is 0: no implemented ports (CAP={:#010x})",
                hba.cap
            ));
        }
        let np = (hba.cap & 0x1f) + 1;
        if 32 - hba.pi.leading_zeros() > np {
            return Err(text!("PI={:#x} names ports beyond CAP.NP+1={np}", hba.pi));
        }
        Ok(hba)
    }

    /// Command slots per port (CAP.NCS + 1).
    pub fn slots(&self) -> u32 {
        ((self.cap >> 8) & 0x1f) + 1
    }

    /// HBA reset (10.4.3): set GHC.HR, wait for the HBA to clear it, re-enable AHCI mode.
    pub fn reset(&self) -> Result<(), Msg> {
        let ghc = self.regs.read32(ghc::GHC);
        self.regs.write32(ghc::GHC, ghc | ghc::GHC_HR);
        // The HBA has 1 s to finish the reset.
        if !wait_for(ENGINE_MS, || self.regs.read32(ghc::GHC) & ghc::GHC_HR == 0) {
            return Err(text!("GHC.HR still set after {ENGINE_MS} ms"));
        }
        self.regs.write32(ghc::GHC, ghc::GHC_AE);
        if self.regs.read32(ghc::GHC) & ghc::GHC_AE == 0 {
            return Err(text!("GHC.AE did not stick after reset"));
        }
        Ok(())
    }

    pub fn port_regs(&self, n: u32) -> Mmio {
        Mmio(self.regs.0 + 0x100 + 0x80 * u64::from(n))
    }
}

impl fmt::Display for Hba {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AHCI {:x}.{:x}{}{} CAP={:#010x} PI={:#x} ports={} slots={} ncq={} 64bit={}",
            self.vs >> 16,
            (self.vs >> 8) & 0xff,
            if self.vs & 0xff != 0 { "." } else { "" },
            VsSub(self.vs & 0xff),
            self.cap,
            self.pi,
            (self.cap & 0x1f) + 1,
            self.slots(),
            if self.cap & ghc::CAP_SNCQ != 0 {
                "yes"
            } else {
                "no"
            },
            if self.cap & ghc::CAP_S64A != 0 {
                "yes"
            } else {
                "no"
            },
        )
    }
}

/// The third component of VS (1.3.1 is 0x00010301), printed only if not zero.
struct VsSub(u32);

impl fmt::Display for VsSub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 != 0 {
            write!(f, "{:x}", self.0)?;
        }
        Ok(())
    }
}

/// Why a command did not complete.
pub enum CmdError {
    /// PxIS reported an error (task file error or fatal): the engine has stopped.
    Error {
        is: u32,
        tfd: u32,
        serr: u32,
        ci: u32,
        sact: u32,
    },
    /// Nothing happened in time.
    Timeout {
        is: u32,
        tfd: u32,
        serr: u32,
        ci: u32,
        sact: u32,
    },
    /// Completed, but the status in PxTFD says ERR.
    Status { tfd: u32 },
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CmdError::Error { is, tfd, serr, ci, sact } => write!(
                f,
                "error: PxIS={is:#010x} PxTFD={tfd:#06x} PxSERR={serr:#010x} PxCI={ci:#x} PxSACT={sact:#x}"
            ),
            CmdError::Timeout { is, tfd, serr, ci, sact } => write!(
                f,
                "timeout after {COMMAND_MS} ms: PxIS={is:#010x} PxTFD={tfd:#06x} PxSERR={serr:#010x} PxCI={ci:#x} PxSACT={sact:#x}"
            ),
            CmdError::Status { tfd } => write!(f, "completed with PxTFD={tfd:#06x} (ERR set)"),
        }
    }
}

/// A Register Host-to-Device FIS (SATA 3.x 10.5.5) with the C bit set.
pub fn h2d_fis(command: u8, lba: u64, count: u16, features: u16, device: u8) -> [u8; 20] {
    let l = lba.to_le_bytes();
    let c = count.to_le_bytes();
    let ft = features.to_le_bytes();
    [
        FIS_H2D, 0x80, command, ft[0], l[0], l[1], l[2], device, l[3], l[4], l[5], ft[1], c[0],
        c[1], 0, 0, 0, 0, 0, 0,
    ]
}

/// One port with its command list, received-FIS area and command tables in arena memory.
pub struct Port {
    pub n: u32,
    pub regs: Mmio,
    pub hba: Hba,
    pub clb: u64,
    pub fb: u64,
    pub ctba: [u64; 32],
}

impl Port {
    /// Allocate the port's memory: command list (1 KiB aligned), received-FIS area (256-byte
    /// aligned), 32 command tables (128-byte aligned).
    pub fn new(hba: Hba, n: u32, arena: &mut Arena) -> Option<Port> {
        let clb = arena.alloc(1024, 1024)?;
        let fb = arena.alloc(256, 256)?;
        let mut ctba = [0u64; 32];
        for t in ctba.iter_mut() {
            *t = arena.alloc(CMD_TABLE_BYTES, 128)?;
        }
        Some(Port {
            n,
            regs: hba.port_regs(n),
            hba,
            clb,
            fb,
            ctba,
        })
    }

    pub fn read(&self, off: u64) -> u32 {
        self.regs.read32(off)
    }

    pub fn write(&self, off: u64, v: u32) {
        self.regs.write32(off, v)
    }

    /// PxSSTS.DET (3.3.10): 3 = device present and PHY communication established.
    pub fn det(&self) -> u32 {
        self.read(px::SSTS) & 0xf
    }

    /// Stop the command engine: clear ST, wait for CR to clear (10.1.2).
    pub fn stop_engine(&self) -> Result<(), Msg> {
        let cmd = self.read(px::CMD);
        if cmd & px::CMD_ST != 0 {
            self.write(px::CMD, cmd & !px::CMD_ST);
        }
        if !wait_for(ENGINE_MS, || self.read(px::CMD) & px::CMD_CR == 0) {
            return Err(text!(
                "PxCMD.CR still set {ENGINE_MS} ms after clearing ST (PxCMD={:#010x})",
                self.read(px::CMD)
            ));
        }
        Ok(())
    }

    /// Stop FIS reception: clear FRE, wait for FR to clear (10.1.2).
    pub fn stop_fis(&self) -> Result<(), Msg> {
        let cmd = self.read(px::CMD);
        if cmd & px::CMD_FRE != 0 {
            self.write(px::CMD, cmd & !px::CMD_FRE);
        }
        if !wait_for(ENGINE_MS, || self.read(px::CMD) & px::CMD_FR == 0) {
            return Err(text!(
                "PxCMD.FR still set {ENGINE_MS} ms after clearing FRE (PxCMD={:#010x})",
                self.read(px::CMD)
            ));
        }
        Ok(())
    }

    /// Clear PxSERR, PxIS and this port's bit in the HBA's IS (all write-1-to-clear).
    pub fn clear_errors(&self) {
        self.write(px::SERR, 0xffff_ffff);
        self.write(px::IS, 0xffff_ffff);
        self.hba.regs.write32(ghc::IS, 1 << self.n);
    }

    /// Wait until PxTFD shows neither BSY nor DRQ.
    pub fn wait_not_busy(&self, ms: u64) -> bool {
        wait_for(ms, || self.read(px::TFD) & (px::STS_BSY | px::STS_DRQ) == 0)
    }

    /// Start the command engine: set ST and expect CR (10.3.1).
    pub fn start_engine(&self) -> Result<(), Msg> {
        let tfd = self.read(px::TFD);
        if tfd & (px::STS_BSY | px::STS_DRQ) != 0 {
            return Err(text!("PxTFD={tfd:#06x}: BSY/DRQ set, must not set ST"));
        }
        self.write(px::CMD, self.read(px::CMD) | px::CMD_ST);
        if !wait_for(ENGINE_MS, || self.read(px::CMD) & px::CMD_CR != 0) {
            return Err(text!(
                "PxCMD.CR not set after setting ST (PxCMD={:#010x})",
                self.read(px::CMD)
            ));
        }
        Ok(())
    }

    /// Full port bring-up (10.1.2): idle the port, program CLB/FB, clear errors, enable FIS
    /// reception, check the link and the device status, start the engine. Ok(false) if no
    /// device is attached.
    pub fn bring_up(&self) -> Result<bool, Msg> {
        self.stop_engine()?;
        self.stop_fis()?;
        self.write(px::CLB, self.clb as u32);
        self.write(px::CLBU, (self.clb >> 32) as u32);
        self.write(px::FB, self.fb as u32);
        self.write(px::FBU, (self.fb >> 32) as u32);
        // Staggered spin-up: spin the device up before looking at the link.
        if self.hba.cap & ghc::CAP_SSS != 0 && self.read(px::CMD) & px::CMD_SUD == 0 {
            self.write(px::CMD, self.read(px::CMD) | px::CMD_SUD);
        }
        self.clear_errors();
        self.write(px::IE, 0); // polled driver
        self.write(px::CMD, self.read(px::CMD) | px::CMD_FRE);
        if !wait_for(ENGINE_MS, || self.read(px::CMD) & px::CMD_FR != 0) {
            return Err(text!(
                "PxCMD.FR not set after setting FRE (PxCMD={:#010x})",
                self.read(px::CMD)
            ));
        }
        if !wait_for(ENGINE_MS, || self.det() == 3) {
            let det = self.det();
            if det == 0 {
                return Ok(false);
            }
            return Err(text!(
                "PxSSTS={:#x}: DET={det}, link not established",
                self.read(px::SSTS)
            ));
        }
        if !self.wait_not_busy(COMMAND_MS) {
            return Err(text!(
                "PxTFD={:#06x}: device stays BSY/DRQ",
                self.read(px::TFD)
            ));
        }
        // The signature FIS sets PxSERR.DIAG.X; clear it before starting.
        self.write(px::SERR, 0xffff_ffff);
        self.start_engine()?;
        Ok(true)
    }

    /// Build command slot `slot`: header (4.2.2) and table (4.2.3) with `fis` and `prdt`
    /// entries of (address, byte count). `write` is the header's W bit (host to device).
    pub fn prepare(&self, slot: u32, fis: &[u8; 20], write: bool, prdt: &[(u64, u32)]) {
        let slot = (slot & 31) as usize;
        let n = prdt.len().min(MAX_PRDT);
        let table = self.ctba[slot];
        // SAFETY: the table and the list are this port's arena memory; the HBA does not
        // read this slot while its PxCI bit is clear.
        unsafe {
            let t = table as *mut u8;
            core::ptr::write_bytes(t, 0, 0x80);
            core::ptr::copy_nonoverlapping(fis.as_ptr(), t, fis.len());
            for (i, &(addr, len)) in prdt.iter().take(n).enumerate() {
                let e = (table + 0x80 + 16 * i as u64) as *mut u32;
                e.write_volatile(addr as u32);
                e.add(1).write_volatile((addr >> 32) as u32);
                e.add(2).write_volatile(0);
                // DBC is the byte count minus one (bit 0 always 1: even counts only).
                e.add(3).write_volatile(len.saturating_sub(1) & 0x3f_ffff);
            }
            let h = (self.clb + 32 * slot as u64) as *mut u32;
            let cfl = (fis.len() / 4) as u32;
            let w = if write { 1 << 6 } else { 0 };
            h.write_volatile(cfl | w | ((n as u32) << 16));
            h.add(1).write_volatile(0); // PRDBC
            h.add(2).write_volatile(table as u32);
            h.add(3).write_volatile((table >> 32) as u32);
            for i in 4..8 {
                h.add(i).write_volatile(0);
            }
        }
    }

    /// Make slot `slot` (prepared already) an ATAPI command: `cdb` in the table's ACMD area
    /// (4.2.3, offset 40h) and the header's A bit (4.2.2).
    pub fn set_acmd(&self, slot: u32, cdb: &[u8; 12]) {
        let slot = (slot & 31) as usize;
        // SAFETY: this slot's table and header in the port's arena memory; the HBA does not
        // read them while the slot's PxCI bit is clear.
        unsafe {
            let acmd = (self.ctba[slot] + 0x40) as *mut u8;
            core::ptr::copy_nonoverlapping(cdb.as_ptr(), acmd, cdb.len());
            let h = (self.clb + 32 * slot as u64) as *mut u32;
            h.write_volatile(h.read_volatile() | 1 << 5);
        }
    }

    /// PRDBC of slot `slot`: bytes the HBA transferred (4.2.2 DW1).
    pub fn prdbc(&self, slot: u32) -> u32 {
        // SAFETY: reading this port's command list.
        unsafe { ((self.clb + 32 * u64::from(slot & 31) + 4) as *const u32).read_volatile() }
    }

    /// Issue the slots in `mask`; NCQ commands get their PxSACT bits first (5.3.1, 10.3.1).
    pub fn issue(&self, mask: u32, ncq: bool) {
        fence(Ordering::SeqCst);
        if ncq {
            self.write(px::SACT, mask);
        }
        self.write(px::CI, mask);
    }

    fn snapshot(&self) -> (u32, u32, u32, u32, u32) {
        (
            self.read(px::IS),
            self.read(px::TFD),
            self.read(px::SERR),
            self.read(px::CI),
            self.read(px::SACT),
        )
    }

    /// Wait for the slots in `mask` to complete: PxCI bits clear (and PxSACT bits, for NCQ).
    pub fn wait(&self, mask: u32, ncq: bool, ms: u64) -> Result<(), CmdError> {
        let mut failed = false;
        let done = wait_for(ms, || {
            if self.read(px::IS) & px::IS_ERRORS != 0 {
                failed = true;
                return true;
            }
            let busy = self.read(px::CI) | if ncq { self.read(px::SACT) } else { 0 };
            busy & mask == 0
        });
        fence(Ordering::SeqCst);
        let (is, tfd, serr, ci, sact) = self.snapshot();
        if failed || is & px::IS_ERRORS != 0 {
            return Err(CmdError::Error {
                is,
                tfd,
                serr,
                ci,
                sact,
            });
        }
        if !done {
            return Err(CmdError::Timeout {
                is,
                tfd,
                serr,
                ci,
                sact,
            });
        }
        if tfd & px::STS_ERR != 0 {
            return Err(CmdError::Status { tfd });
        }
        Ok(())
    }

    /// Prepare slot 0, issue, wait, clear PxIS. Returns PxIS as it was at completion.
    pub fn run(&self, fis: &[u8; 20], write: bool, prdt: &[(u64, u32)]) -> Result<u32, CmdError> {
        self.write(px::IS, 0xffff_ffff);
        self.prepare(0, fis, write, prdt);
        self.issue(1, false);
        self.wait(1, false, COMMAND_MS)?;
        let is = self.read(px::IS);
        self.write(px::IS, is);
        Ok(is)
    }

    /// The received-FIS area.
    pub fn rfis(&self) -> &'static mut [u8] {
        // SAFETY: the 256-byte FIS area is this port's arena memory.
        unsafe { crate::mem::phys_slice(self.fb, 256) }
    }

    /// Error recovery after a task file error (6.2.2.1 / 10.4.1 software steps): clear ST and
    /// wait for CR, clear PxSERR and PxIS, check BSY/DRQ (command list override if set), set
    /// ST. Returns a note of what was needed.
    pub fn recover(&self) -> Result<&'static str, Msg> {
        self.stop_engine()?;
        let ci = self.read(px::CI);
        if ci != 0 {
            return Err(text!(
                "PxCI={ci:#x} after clearing ST (the HBA must clear PxCI when ST goes 0)"
            ));
        }
        self.clear_errors();
        let mut note = "BSY/DRQ already clear";
        if !self.wait_not_busy(50) {
            if self.hba.cap & ghc::CAP_SCLO == 0 {
                return Err(text!(
                    "PxTFD={:#06x} BSY/DRQ stuck and no CAP.SCLO: port reset needed",
                    self.read(px::TFD)
                ));
            }
            self.write(px::CMD, self.read(px::CMD) | px::CMD_CLO);
            if !wait_for(ENGINE_MS, || self.read(px::CMD) & px::CMD_CLO == 0) {
                return Err(text!("PxCMD.CLO did not clear"));
            }
            note = "BSY/DRQ cleared with CLO";
        }
        self.start_engine()?;
        Ok(note)
    }

    /// COMRESET (10.4.2): engine stopped, PxSCTL.DET=1 for at least 1 ms, DET=0, wait for
    /// PxSSTS.DET=3, clear PxSERR.
    pub fn comreset(&self) -> Result<(), Msg> {
        self.stop_engine()?;
        let sctl = self.read(px::SCTL) & !0xf;
        self.write(px::SCTL, sctl | 1);
        delay_ms(2);
        self.write(px::SCTL, sctl);
        if !wait_for(ENGINE_MS, || self.det() == 3) {
            return Err(text!(
                "PxSSTS={:#x}: DET never reached 3 after COMRESET",
                self.read(px::SSTS)
            ));
        }
        self.write(px::SERR, 0xffff_ffff);
        Ok(())
    }
}
