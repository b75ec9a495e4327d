//! The command list in guest memory: command headers, command tables and their PRDT
//! (AHCI 1.3.1 section 4.2).

use thiserror::Error;

use crate::mem::{GuestMemory, MemError};
use crate::sata::{Fis, FisError, PrdEntry, RegisterH2d};

/// Size of one command header (4.2.2).
pub const HEADER_SIZE: u64 = 32;
/// Offset of the ATAPI command (ACMD) in a command table (4.2.3): 12 or 16 bytes, read when
/// the command header's A bit is set.
pub const ACMD_OFFSET: u64 = 0x40;
/// Bytes of the ACMD area.
pub const ACMD_SIZE: usize = 16;
/// Offset of the PRDT in a command table (4.2.3).
pub const PRDT_OFFSET: u64 = 0x80;
/// Size of one PRD entry (4.2.3.3).
pub const PRD_SIZE: u64 = 16;
/// Shortest and longest CFIS the command header's CFL may describe, in dwords (4.2.2).
pub const CFL_MIN: u8 = 2;
pub const CFL_MAX: u8 = 16;

/// Why a command could not be fetched.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum FetchError {
    /// The header, the command table or the PRDT is not in guest RAM (host bus fatal error).
    #[error("command structures outside guest RAM: {0}")]
    Memory(#[from] MemError),
    /// CFL is outside 2..=16 dwords.
    #[error("command FIS length {0} dwords is outside 2..=16")]
    BadCfisLength(u8),
    /// The CFIS is not a Register H2D FIS.
    #[error("command FIS is not a Register H2D FIS: {0}")]
    BadCfis(FisError),
    /// The CFIS decodes, but as another FIS type.
    #[error("command FIS has type {0:#04x}, not Register H2D")]
    NotRegisterH2d(u8),
}

/// A command header (4.2.2, figure 5.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommandHeader {
    /// CFL: command FIS length in dwords.
    pub cfl: u8,
    /// A: ATAPI command (the table's ACMD holds a SCSI CDB).
    pub atapi: bool,
    /// W: data moves host to device.
    pub write: bool,
    /// P: the HBA may prefetch the PRDs.
    pub prefetchable: bool,
    /// R: part of a software reset sequence.
    pub reset: bool,
    /// B: BIST FIS.
    pub bist: bool,
    /// C: clear PxTFD.STS.BSY and this slot's PxCI bit once the FIS is sent (R_OK).
    pub clear_busy: bool,
    /// PMP: port multiplier port.
    pub pmp: u8,
    /// PRDTL: number of PRD entries.
    pub prdtl: u16,
    /// PRDBC: bytes transferred (written back by the HBA).
    pub prdbc: u32,
    /// CTBA/CTBAU: command table base address (128-byte aligned).
    pub ctba: u64,
}

impl CommandHeader {
    /// Decode the 32 header bytes.
    pub fn parse(b: &[u8; HEADER_SIZE as usize]) -> Self {
        let dw =
            |i: usize| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        let dw0 = dw(0);
        CommandHeader {
            cfl: (dw0 & 0x1f) as u8,
            atapi: dw0 & (1 << 5) != 0,
            write: dw0 & (1 << 6) != 0,
            prefetchable: dw0 & (1 << 7) != 0,
            reset: dw0 & (1 << 8) != 0,
            bist: dw0 & (1 << 9) != 0,
            clear_busy: dw0 & (1 << 10) != 0,
            pmp: ((dw0 >> 12) & 0xf) as u8,
            prdtl: (dw0 >> 16) as u16,
            prdbc: dw(1),
            // CTBA bits 6:0 are reserved (128-byte alignment).
            ctba: u64::from(dw(2) & !0x7f) | u64::from(dw(3)) << 32,
        }
    }

    /// Read the header of `slot` from the command list at `clb`.
    pub fn read(mem: &dyn GuestMemory, clb: u64, slot: u8) -> Result<Self, MemError> {
        let mut b = [0u8; HEADER_SIZE as usize];
        mem.read(header_address(clb, slot)?, &mut b)?;
        Ok(Self::parse(&b))
    }
}

fn header_address(clb: u64, slot: u8) -> Result<u64, MemError> {
    clb.checked_add(u64::from(slot) * HEADER_SIZE)
        .ok_or(MemError::OutOfRange {
            addr: clb,
            len: HEADER_SIZE,
        })
}

/// Write PRDBC (header dword 1) of `slot` back to the command list.
pub fn write_prdbc(mem: &dyn GuestMemory, clb: u64, slot: u8, bytes: u32) -> Result<(), MemError> {
    let at = header_address(clb, slot)?
        .checked_add(4)
        .ok_or(MemError::OutOfRange { addr: clb, len: 4 })?;
    mem.write_u32(at, bytes)
}

/// A command fetched from guest memory, ready to send to the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedCommand {
    pub header: CommandHeader,
    /// The CFIS.
    pub fis: RegisterH2d,
    /// The PRDT, one entry per PRD.
    pub prdt: Vec<PrdEntry>,
    /// Some PRD has its I bit set (PxIS.DPS when the command completes).
    pub prd_interrupt: bool,
    /// The ATAPI command bytes (ACMD, 4.2.3) when the header's A bit is set.
    pub acmd: Option<[u8; ACMD_SIZE]>,
}

/// Fetch the header, CFIS and PRDT of `slot` (4.2.2, 4.2.3).
pub fn fetch(mem: &dyn GuestMemory, clb: u64, slot: u8) -> Result<FetchedCommand, FetchError> {
    let header = CommandHeader::read(mem, clb, slot)?;
    if !(CFL_MIN..=CFL_MAX).contains(&header.cfl) {
        return Err(FetchError::BadCfisLength(header.cfl));
    }
    let mut cfis = vec![0u8; usize::from(header.cfl) * 4];
    mem.read(header.ctba, &mut cfis)?;
    let fis = match Fis::decode(&cfis) {
        Ok(Fis::RegisterH2d(f)) => f,
        Ok(other) => return Err(FetchError::NotRegisterH2d(other.fis_type())),
        Err(e) => return Err(FetchError::BadCfis(e)),
    };
    let acmd = if header.atapi {
        let mut a = [0u8; ACMD_SIZE];
        let at = header
            .ctba
            .checked_add(ACMD_OFFSET)
            .ok_or(MemError::OutOfRange {
                addr: header.ctba,
                len: ACMD_OFFSET,
            })?;
        mem.read(at, &mut a)?;
        Some(a)
    } else {
        None
    };
    // PRDTL is 16 bits, so the table is at most 1 MiB; a table outside RAM fails in one read.
    let prdt_addr = header
        .ctba
        .checked_add(PRDT_OFFSET)
        .ok_or(MemError::OutOfRange {
            addr: header.ctba,
            len: PRDT_OFFSET,
        })?;
    let mut raw = vec![0u8; usize::from(header.prdtl) * PRD_SIZE as usize];
    mem.read(prdt_addr, &mut raw)?;
    let mut prd_interrupt = false;
    let prdt = raw
        .chunks_exact(PRD_SIZE as usize)
        .map(|e| {
            let dw =
                |i: usize| u32::from_le_bytes([e[4 * i], e[4 * i + 1], e[4 * i + 2], e[4 * i + 3]]);
            let dw3 = dw(3);
            prd_interrupt |= dw3 & (1 << 31) != 0;
            PrdEntry {
                // DBA bit 0 is reserved (word alignment).
                addr: u64::from(dw(0) & !1) | u64::from(dw(1)) << 32,
                // DBC (bits 21:0) is the byte count minus one.
                len: (dw3 & 0x3f_ffff) + 1,
            }
        })
        .collect();
    Ok(FetchedCommand {
        header,
        fis,
        prdt,
        prd_interrupt,
        acmd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::VecMemory;

    fn put_header(mem: &VecMemory, clb: u64, slot: u8, dw0: u32, ctba: u64) {
        let at = clb + u64::from(slot) * HEADER_SIZE;
        mem.write_u32(at, dw0).unwrap();
        mem.write_u32(at + 4, 0xdead).unwrap();
        mem.write_u32(at + 8, ctba as u32).unwrap();
        mem.write_u32(at + 12, (ctba >> 32) as u32).unwrap();
    }

    fn put_prd(mem: &VecMemory, ctba: u64, i: u64, addr: u64, len: u32, irq: bool) {
        let at = ctba + PRDT_OFFSET + i * PRD_SIZE;
        mem.write_u32(at, addr as u32).unwrap();
        mem.write_u32(at + 4, (addr >> 32) as u32).unwrap();
        mem.write_u32(at + 12, (len - 1) | u32::from(irq) << 31)
            .unwrap();
    }

    #[test]
    fn header_fields_decode() {
        let mut b = [0u8; 32];
        // CFL 5, W, C, PMP 3, PRDTL 2.
        b[0..4].copy_from_slice(&(5u32 | 1 << 6 | 1 << 10 | 3 << 12 | 2 << 16).to_le_bytes());
        b[4..8].copy_from_slice(&512u32.to_le_bytes());
        b[8..12].copy_from_slice(&0x1234_5fffu32.to_le_bytes());
        b[12..16].copy_from_slice(&1u32.to_le_bytes());
        let h = CommandHeader::parse(&b);
        assert_eq!(h.cfl, 5);
        assert!(h.write && h.clear_busy && !h.atapi && !h.reset);
        assert_eq!(h.pmp, 3);
        assert_eq!(h.prdtl, 2);
        assert_eq!(h.prdbc, 512);
        assert_eq!(h.ctba, 0x1_1234_5f80, "CTBA bits 6:0 are reserved");
    }

    #[test]
    fn fetch_reads_cfis_and_prdt() {
        let mem = VecMemory::new(0x10000);
        let h2d = RegisterH2d {
            c: true,
            command: 0x25,
            count: 2,
            lba: 7,
            ..Default::default()
        };
        mem.write(0x2000, &Fis::RegisterH2d(h2d).encode()).unwrap();
        put_prd(&mem, 0x2000, 0, 0x4001, 512, false);
        put_prd(&mem, 0x2000, 1, 0x5000, 512, true);
        put_header(&mem, 0x1000, 3, 5 | 2 << 16, 0x2000);
        let c = fetch(&mem, 0x1000, 3).unwrap();
        assert_eq!(c.fis, h2d);
        assert_eq!(
            c.prdt,
            vec![
                PrdEntry {
                    addr: 0x4000,
                    len: 512
                },
                PrdEntry {
                    addr: 0x5000,
                    len: 512
                }
            ]
        );
        assert!(c.prd_interrupt);
        assert_eq!(c.acmd, None, "no A bit, no ACMD");
        write_prdbc(&mem, 0x1000, 3, 1024).unwrap();
        assert_eq!(CommandHeader::read(&mem, 0x1000, 3).unwrap().prdbc, 1024);
    }

    #[test]
    fn atapi_header_fetches_the_acmd_bytes() {
        let mem = VecMemory::new(0x10000);
        let h2d = RegisterH2d {
            c: true,
            command: 0xa0,
            ..Default::default()
        };
        mem.write(0x2000, &Fis::RegisterH2d(h2d).encode()).unwrap();
        let cdb: [u8; 16] = std::array::from_fn(|i| 0x28 + i as u8);
        mem.write(0x2000 + ACMD_OFFSET, &cdb).unwrap();
        // CFL 5, A.
        put_header(&mem, 0x1000, 1, 5 | 1 << 5, 0x2000);
        let c = fetch(&mem, 0x1000, 1).unwrap();
        assert!(c.header.atapi);
        assert_eq!(c.acmd, Some(cdb));
    }

    #[test]
    fn bad_commands_are_errors_not_panics() {
        let mem = VecMemory::new(0x10000);
        // CFL out of range.
        put_header(&mem, 0x1000, 0, 1, 0x2000);
        assert_eq!(fetch(&mem, 0x1000, 0), Err(FetchError::BadCfisLength(1)));
        // A CFIS that is a D2H FIS.
        mem.write(0x2000, &[0x34; 20]).unwrap();
        put_header(&mem, 0x1000, 0, 5, 0x2000);
        assert_eq!(
            fetch(&mem, 0x1000, 0),
            Err(FetchError::NotRegisterH2d(0x34))
        );
        // Garbage type.
        mem.write(0x2000, &[0x99; 20]).unwrap();
        assert!(matches!(
            fetch(&mem, 0x1000, 0),
            Err(FetchError::BadCfis(_))
        ));
        // Command table outside RAM.
        put_header(&mem, 0x1000, 0, 5, 0xffff_ff80);
        assert!(matches!(fetch(&mem, 0x1000, 0), Err(FetchError::Memory(_))));
        // A huge PRDT that runs off the end of RAM.
        mem.write(0x2000, &Fis::RegisterH2d(RegisterH2d::default()).encode())
            .unwrap();
        put_header(&mem, 0x1000, 0, 5 | 0xffff << 16, 0x2000);
        assert!(matches!(fetch(&mem, 0x1000, 0), Err(FetchError::Memory(_))));
        // Command list outside RAM, and an address that overflows.
        assert!(matches!(
            fetch(&mem, 0xffff_0000, 0),
            Err(FetchError::Memory(_))
        ));
        assert!(matches!(
            fetch(&mem, u64::MAX - 8, 31),
            Err(FetchError::Memory(_))
        ));
    }
}
