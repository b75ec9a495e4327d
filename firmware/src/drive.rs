//! ATA side: IDENTIFY DEVICE parsing (ACS-3 7.12.7), the commands used, and data patterns.

use crate::ahci::{h2d_fis, CmdError, Port};
use crate::mem::Arena;

/// ATA commands (ACS-3).
pub const IDENTIFY_DEVICE: u8 = 0xec;
pub const READ_SECTORS_EXT: u8 = 0x24;
pub const WRITE_SECTORS_EXT: u8 = 0x34;
pub const READ_DMA_EXT: u8 = 0x25;
pub const WRITE_DMA_EXT: u8 = 0x35;
pub const READ_FPDMA_QUEUED: u8 = 0x60;
pub const WRITE_FPDMA_QUEUED: u8 = 0x61;
/// Device register: LBA mode.
pub const DEV_LBA: u8 = 0x40;
/// ATA error register: ID not found.
pub const ERR_IDNF: u32 = 0x10;
pub const SECTOR: usize = 512;

/// What IDENTIFY DEVICE told us.
pub struct Identity {
    pub model: [u8; 40],
    pub serial: [u8; 20],
    pub sectors: u64,
    pub lba48: bool,
    /// NCQ queue depth (0 if NCQ is not supported).
    pub ncq_depth: u32,
}

/// An ATA string: words of two bytes, first character in the high byte (ACS-3 3.4.9).
fn ata_string<const N: usize>(words: &[u16]) -> [u8; N] {
    let mut out = [b' '; N];
    for (i, w) in words.iter().take(N / 2).enumerate() {
        out[2 * i] = (w >> 8) as u8;
        out[2 * i + 1] = *w as u8;
    }
    for b in out.iter_mut() {
        if !(0x20..0x7f).contains(b) {
            *b = b'?';
        }
    }
    out
}

/// Trimmed printable view of an ATA string.
pub fn trimmed(s: &[u8]) -> &str {
    let s = core::str::from_utf8(s).unwrap_or("?");
    s.trim()
}

impl Identity {
    pub fn parse(data: &[u8]) -> Identity {
        let mut w = [0u16; 256];
        for (i, c) in data.chunks_exact(2).take(256).enumerate() {
            w[i] = u16::from_le_bytes([c[0], c[1]]);
        }
        let lba48 = w[83] & (1 << 10) != 0;
        let sectors = if lba48 {
            u64::from(w[100])
                | u64::from(w[101]) << 16
                | u64::from(w[102]) << 32
                | u64::from(w[103]) << 48
        } else {
            u64::from(w[60]) | u64::from(w[61]) << 16
        };
        // Word 76 bit 8: NCQ supported; word 75 bits 4:0: queue depth - 1.
        let ncq_depth = if w[76] != 0 && w[76] != 0xffff && w[76] & (1 << 8) != 0 {
            u32::from(w[75] & 0x1f) + 1
        } else {
            0
        };
        Identity {
            model: ata_string(&w[27..47]),
            serial: ata_string(&w[10..20]),
            sectors,
            lba48,
            ncq_depth,
        }
    }
}

/// A non-queued LBA48 command FIS.
pub fn h2d(command: u8, lba: u64, count: u16) -> [u8; 20] {
    h2d_fis(command, lba, count, 0, DEV_LBA)
}

/// IDENTIFY DEVICE, PIO data-in, 512 bytes into `buf`.
pub fn identify(port: &Port, buf: u64) -> Result<u32, CmdError> {
    port.run(&h2d_fis(IDENTIFY_DEVICE, 0, 0, 0, 0), false, &[(buf, 512)])
}

/// A non-queued READ/WRITE (PIO or DMA EXT) of `count` sectors at `lba` over `prdt`.
pub fn rw(
    port: &Port,
    command: u8,
    lba: u64,
    count: u16,
    prdt: &[(u64, u32)],
) -> Result<u32, CmdError> {
    let write = matches!(command, WRITE_SECTORS_EXT | WRITE_DMA_EXT);
    port.run(&h2d_fis(command, lba, count, 0, DEV_LBA), write, prdt)
}

/// The FIS of a READ/WRITE FPDMA QUEUED: count in FEATURE, tag in COUNT(7:3) (ACS-3 7.20, 7.59).
pub fn fpdma_fis(write: bool, tag: u32, lba: u64, count: u16) -> [u8; 20] {
    let cmd = if write {
        WRITE_FPDMA_QUEUED
    } else {
        READ_FPDMA_QUEUED
    };
    h2d_fis(cmd, lba, ((tag & 31) << 3) as u16, count, DEV_LBA)
}

/// The test pattern: byte `offset` of a transfer that starts at `lba`, for `salt`. Each 8-byte
/// word holds its sector's LBA, its index and the salt, so misplaced data is caught too.
pub fn pattern_byte(lba: u64, offset: usize, salt: u64) -> u8 {
    let sector = lba + (offset / SECTOR) as u64;
    let word = ((offset % SECTOR) / 8) as u64;
    let v = (sector << 24 | word << 8).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt;
    v.to_le_bytes()[offset % 8]
}

/// A scatter list: PRDT entries (address, bytes) over separately allocated buffers.
pub struct Sg {
    pub prdt: [(u64, u32); crate::ahci::MAX_PRDT],
    pub n: usize,
}

impl Sg {
    /// Fragments of `sizes` bytes, each in its own allocation with a gap after it; a fragment
    /// at an odd index starts 2 bytes past a dword boundary (DBA need only be word aligned).
    pub fn scattered(arena: &mut Arena, sizes: &[u32]) -> Option<Sg> {
        let mut sg = Sg {
            prdt: [(0, 0); crate::ahci::MAX_PRDT],
            n: 0,
        };
        for (i, &len) in sizes.iter().take(crate::ahci::MAX_PRDT).enumerate() {
            let skew = if i % 2 == 1 { 2 } else { 0 };
            let base = arena.alloc(u64::from(len) + 4096, 4096)?;
            sg.prdt[i] = (base + skew, len);
            sg.n = i + 1;
        }
        Some(sg)
    }

    pub fn entries(&self) -> &[(u64, u32)] {
        &self.prdt[..self.n]
    }

    /// Call `f` with (logical offset, byte pointer) for every byte.
    fn each(&self, mut f: impl FnMut(usize, *mut u8) -> bool) {
        let mut off = 0;
        for &(addr, len) in self.entries() {
            for i in 0..len as usize {
                if !f(off, (addr as usize + i) as *mut u8) {
                    return;
                }
                off += 1;
            }
        }
    }

    pub fn fill(&self, lba: u64, salt: u64) {
        // SAFETY: each pointer is inside one of this list's arena buffers.
        self.each(|o, p| {
            unsafe { p.write_volatile(pattern_byte(lba, o, salt)) };
            true
        });
    }

    pub fn zero(&self) {
        // SAFETY: as for fill.
        self.each(|_, p| {
            unsafe { p.write_volatile(0) };
            true
        });
    }

    /// First byte offset that does not hold the pattern.
    pub fn verify(&self, lba: u64, salt: u64) -> Option<usize> {
        let mut bad = None;
        // SAFETY: as for fill.
        self.each(|o, p| {
            if unsafe { p.read_volatile() } != pattern_byte(lba, o, salt) {
                bad = Some(o);
                return false;
            }
            true
        });
        bad
    }
}
