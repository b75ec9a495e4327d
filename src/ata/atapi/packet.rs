//! The PACKET command protocol (ACS-3 7.18, SATA 3.x 11.10 "ATAPI"): how a PACKET command's
//! Register H2D FIS says how its data moves, and the FISes that end it.
//!
//! - Features bit 0 (DMA): the data moves by DMA; bit 2 (DMADIR): DMA device to host. This
//!   SATA device does not need DMADIR (IDENTIFY PACKET DEVICE word 62 bit 15 is clear), so a
//!   data-in command moves its data to the host with DMADIR either way.
//! - LBA mid/high: the byte count limit of a PIO transfer, the most bytes of one DRQ data
//!   block. 0 is not a valid limit; as QEMU does, the device then takes the largest even one.
//!   An odd limit is rounded down to even for every block but the last.
//! - The device first asks for the command packet: a PIO Setup FIS, D=0, I=0, interrupt
//!   reason C/D=1 in the Count field. The HBA sends the ACMD bytes.
//! - PIO data-in: one PIO Setup FIS per data block, D=1, I=1, the byte count in LBA mid/high,
//!   interrupt reason I/O=1 (Count 2); DMA: the data, no FIS.
//! - The end: a Register D2H FIS, I=1, interrupt reason I/O=1 C/D=1 (Count 3); status
//!   DRDY|DSC, or with ERR for CHECK CONDITION, the sense key in Error bits 7:4.

use super::sense::Sense;
use crate::ata::registers::status;
use crate::ata::taskfile::STATUS_GOOD;
use crate::sata::{Completion, Fis, PioSetup, RegisterD2h, RegisterH2d};

/// Interrupt reason bits in the Count register (ACS-3 table 203): C/D (bit 0), I/O (bit 1).
pub mod reason {
    pub const COMMAND: u16 = 1 << 0;
    pub const TO_HOST: u16 = 1 << 1;
}

/// Features bits of the PACKET command.
pub mod features {
    pub const DMA: u16 = 1 << 0;
    pub const DMADIR: u16 = 1 << 2;
}

/// The largest byte count limit (even, fits the PIO Setup FIS's 16-bit transfer count).
pub const MAX_BYTE_COUNT: u16 = 0xfffe;
/// The command packet is 12 bytes (IDENTIFY PACKET DEVICE word 0 bits 1:0 = 00b).
pub const PACKET_BYTES: u16 = 12;

/// How a PACKET command moves its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketCommand {
    pub dma: bool,
    pub dmadir: bool,
    /// LBA mid/high as the host wrote them.
    pub byte_count_limit: u16,
}

impl PacketCommand {
    /// Decode the PACKET Register H2D FIS.
    pub fn decode(fis: &RegisterH2d) -> Self {
        PacketCommand {
            dma: fis.features & features::DMA != 0,
            dmadir: fis.features & features::DMADIR != 0,
            byte_count_limit: ((fis.lba >> 8) & 0xffff) as u16,
        }
    }

    /// The byte count of each PIO data block: the limit, made valid (see the module docs).
    pub fn pio_block(&self) -> u16 {
        match self.byte_count_limit {
            0 | 0xffff => MAX_BYTE_COUNT,
            n => n,
        }
    }
}

fn pio_setup(device_to_host: bool, interrupt: bool, reason_bits: u16, bytes: u16) -> Fis {
    Fis::PioSetup(PioSetup {
        interrupt,
        device_to_host,
        status: status::DRDY | status::DRQ,
        e_status: status::BSY | status::DRDY,
        lba: u64::from(bytes) << 8,
        count: reason_bits,
        transfer_count: bytes,
        ..Default::default()
    })
}

/// The sizes of the PIO data blocks of a `len`-byte transfer with byte count limit `limit`.
pub fn pio_blocks(len: u32, limit: u16) -> Vec<u16> {
    let limit = u32::from(limit.max(2));
    let even = limit & !1;
    let mut out = Vec::new();
    let mut left = len;
    while left > 0 {
        let n = if left <= limit { left } else { even };
        out.push(n as u16);
        left -= n;
    }
    out
}

/// The FISes and byte count that end a PACKET command that moved `bytes` to the host (0 for
/// a non-data command), or failed with CHECK CONDITION `check`.
pub fn finish(slot: u8, cmd: &PacketCommand, bytes: u32, check: Option<Sense>) -> Completion {
    let mut fises = vec![pio_setup(false, false, reason::COMMAND, PACKET_BYTES)];
    let bytes = if check.is_some() { 0 } else { bytes };
    if !cmd.dma {
        for n in pio_blocks(bytes, cmd.pio_block()) {
            fises.push(pio_setup(true, true, reason::TO_HOST, n));
        }
    }
    let d2h = match check {
        None => RegisterD2h {
            interrupt: true,
            status: STATUS_GOOD,
            count: reason::COMMAND | reason::TO_HOST,
            ..Default::default()
        },
        Some(s) => RegisterD2h {
            interrupt: true,
            status: STATUS_GOOD | status::ERR,
            error: s.error_register(),
            count: reason::COMMAND | reason::TO_HOST,
            ..Default::default()
        },
    };
    fises.push(Fis::RegisterD2h(d2h));
    Completion {
        slot,
        fises,
        bytes_transferred: bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(features: u16, limit: u16) -> PacketCommand {
        PacketCommand::decode(&RegisterH2d {
            c: true,
            command: 0xa0,
            features,
            lba: u64::from(limit) << 8,
            ..Default::default()
        })
    }

    #[test]
    fn decode_features_and_limit() {
        let c = cmd(features::DMA | features::DMADIR, 0x1234);
        assert!(c.dma && c.dmadir);
        assert_eq!(c.byte_count_limit, 0x1234);
        assert_eq!(cmd(0, 0).pio_block(), MAX_BYTE_COUNT);
    }

    #[test]
    fn pio_blocks_respect_the_limit() {
        assert_eq!(pio_blocks(0, 100), Vec::<u16>::new());
        assert_eq!(pio_blocks(2048, 2048), vec![2048]);
        assert_eq!(pio_blocks(5000, 2048), vec![2048, 2048, 904]);
        // An odd limit: even blocks, the last one may be odd-sized.
        assert_eq!(pio_blocks(7, 3), vec![2, 2, 3]);
        assert_eq!(pio_blocks(1, 0), vec![1]);
    }

    #[test]
    fn pio_fises_then_d2h() {
        let c = finish(3, &cmd(0, 1000), 2500, None);
        assert_eq!(c.bytes_transferred, 2500);
        assert_eq!(c.fises.len(), 1 + 3 + 1);
        let Fis::PioSetup(first) = c.fises[0] else {
            panic!()
        };
        assert!(!first.device_to_host && !first.interrupt);
        assert_eq!(first.count, reason::COMMAND);
        let Fis::PioSetup(last) = c.fises[3] else {
            panic!()
        };
        assert_eq!((last.transfer_count, last.lba >> 8), (500, 500));
        assert_eq!(last.count, reason::TO_HOST);
        let Fis::RegisterD2h(d) = c.fises[4] else {
            panic!()
        };
        assert_eq!((d.status, d.count), (0x50, 3));
    }

    #[test]
    fn check_condition_moves_nothing() {
        let c = finish(0, &cmd(features::DMA, 0), 4096, Some(Sense::INVALID_OPCODE));
        assert_eq!(c.bytes_transferred, 0);
        let Some(Fis::RegisterD2h(d)) = c.fises.last() else {
            panic!()
        };
        assert_eq!((d.status, d.error), (0x51, 0x54));
    }
}
