//! From a guest command FIS to the host ATA PASS-THROUGH commands that carry it out.
//!
//! Most commands become one host command with the guest's registers. Two exceptions:
//! - READ/WRITE transfers longer than the host queue's limit (`max_hw_sectors`, and the
//!   segments a bounce buffer may need) are split into several host commands over consecutive
//!   LBA ranges: SG_IO fails with EIO past that limit, and the guest cannot know it.
//! - READ/WRITE MULTIPLE go to the host as READ/WRITE SECTORS (WRITE MULTIPLE FUA EXT as WRITE
//!   DMA FUA EXT): libata moves PIO-multiple data in blocks of *its* multiple count, which a
//!   guest SET MULTIPLE MODE may have made different from the drive's. The guest still sees its
//!   own DRQ block size in the PIO Setup FISes.

use thiserror::Error;

use super::cdb::{HostTaskfile, PassThrough, SatProtocol, TLength};
use crate::ata::command::{is_lba48, opcode, Direction, Protocol};
use crate::ata::registers::SECTOR_SIZE;
use crate::sata::RegisterH2d;

/// One host command of a guest command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub pt: PassThrough,
    /// Where its data sits in the guest command's byte stream.
    pub offset: u64,
    /// Bytes it moves.
    pub len: u32,
}

/// The host commands for one guest command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The guest's protocol (it decides the FISes the guest gets).
    pub protocol: Protocol,
    pub total_bytes: u64,
    /// Run in order; the first that fails ends the command.
    pub segments: Vec<Segment>,
    /// First LBA and length in blocks of a READ/WRITE (to complete the error LBA from
    /// fixed-format sense), `None` for other commands.
    pub range: Option<(u64, u64)>,
}

/// Why a command cannot be sent.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum PlanError {
    /// A count of zero where the command needs data (ACS-3: reserved) -> ABRT.
    #[error("zero transfer length")]
    ZeroLength,
    /// More data than one host command carries, and the command cannot be split -> ABRT.
    #[error("{blocks} blocks exceed the host limit of {max} and the command cannot be split")]
    TooLarge { blocks: u64, max: u32 },
    /// The LBA range leaves the addressable space -> IDNF.
    #[error("LBA range leaves the {bits}-bit address space")]
    OutOfRange { bits: u32 },
    /// The protocol has no ATA PASS-THROUGH form (DEVICE RESET, diagnostics) -> ABRT.
    #[error("protocol {0:?} cannot be passed through")]
    Unsupported(Protocol),
}

/// 28-bit count: 0 means 256. 48-bit: 0 means 65536.
fn sectors(count: u16, lba48: bool) -> u64 {
    match (lba48, count) {
        (false, c) if c & 0xff == 0 => 256,
        (false, c) => u64::from(c & 0xff),
        (true, 0) => 65536,
        (true, c) => u64::from(c),
    }
}

/// Commands that move `count` sectors from `lba` and may be split.
fn is_read_write(command: u8) -> bool {
    use opcode::*;
    matches!(
        command,
        READ_SECTORS
            | READ_SECTORS_EXT
            | READ_MULTIPLE
            | READ_MULTIPLE_EXT
            | READ_DMA
            | READ_DMA_EXT
            | WRITE_SECTORS
            | WRITE_SECTORS_EXT
            | WRITE_MULTIPLE
            | WRITE_MULTIPLE_EXT
            | WRITE_MULTIPLE_FUA_EXT
            | WRITE_DMA
            | WRITE_DMA_EXT
            | WRITE_DMA_FUA_EXT
            | READ_FPDMA_QUEUED
            | WRITE_FPDMA_QUEUED
    )
}

/// The opcode and protocol the host runs for a guest opcode (see the module comment).
fn host_command(command: u8, protocol: SatProtocol) -> (u8, SatProtocol) {
    use opcode::*;
    match command {
        READ_MULTIPLE => (READ_SECTORS, protocol),
        READ_MULTIPLE_EXT => (READ_SECTORS_EXT, protocol),
        WRITE_MULTIPLE => (WRITE_SECTORS, protocol),
        WRITE_MULTIPLE_EXT => (WRITE_SECTORS_EXT, protocol),
        WRITE_MULTIPLE_FUA_EXT => (WRITE_DMA_FUA_EXT, SatProtocol::Dma),
        c => (c, protocol),
    }
}

/// Length in 512-byte blocks of a data command, and whether the COUNT field holds it.
fn data_blocks(fis: &RegisterH2d, protocol: Protocol) -> Result<(u64, bool), PlanError> {
    use opcode::*;
    let c = fis.command;
    let nonzero = |n: u64| {
        if n == 0 {
            Err(PlanError::ZeroLength)
        } else {
            Ok(n)
        }
    };
    Ok(match c {
        _ if protocol.is_queued() => (sectors(fis.features, true), false),
        _ if is_read_write(c) => (sectors(fis.count, is_lba48(c)), true),
        READ_LOG_EXT | READ_LOG_DMA_EXT | WRITE_LOG_EXT | WRITE_LOG_DMA_EXT
        | DATA_SET_MANAGEMENT => (nonzero(u64::from(fis.count))?, true),
        SMART => (nonzero(u64::from(fis.count & 0xff))?, true),
        // Transfer length in COUNT 7:0 and LBA 7:0 (ACS-3 7.10, 7.53-7.57).
        DOWNLOAD_MICROCODE
        | DOWNLOAD_MICROCODE_DMA
        | TRUSTED_RECEIVE
        | TRUSTED_RECEIVE_DMA
        | TRUSTED_SEND
        | TRUSTED_SEND_DMA => (
            nonzero(u64::from(fis.count & 0xff) | (fis.lba & 0xff) << 8)?,
            false,
        ),
        // IDENTIFY (PACKET) DEVICE, READ/WRITE BUFFER, SMART READ DATA/THRESHOLDS, SECURITY *:
        // one block, COUNT is not the length.
        _ => (1, false),
    })
}

/// The plan for `fis`, with host commands of at most `max_blocks` blocks each.
pub fn plan(fis: &RegisterH2d, protocol: Protocol, max_blocks: u32) -> Result<Plan, PlanError> {
    let max_blocks = max_blocks.max(1);
    let extend = is_lba48(fis.command);
    let (sat, t_length) = match protocol {
        Protocol::NonData => (SatProtocol::NonData, TLength::None),
        Protocol::Pio(Direction::In) => (SatProtocol::PioIn, TLength::Count),
        Protocol::Pio(Direction::Out) => (SatProtocol::PioOut, TLength::Count),
        Protocol::Dma(_) => (SatProtocol::Dma, TLength::Count),
        Protocol::Fpdma(Some(_)) => (SatProtocol::Fpdma, TLength::Features),
        Protocol::Fpdma(None) => (SatProtocol::Fpdma, TLength::None),
        p @ (Protocol::DeviceReset | Protocol::Diagnostic) => {
            return Err(PlanError::Unsupported(p))
        }
    };
    let from_device = protocol.direction() == Some(Direction::In);
    let (command, sat) = host_command(fis.command, sat);
    let base = PassThrough {
        protocol: sat,
        extend,
        t_length,
        from_device,
        multiple_count_log2: 0,
        tf: HostTaskfile {
            command,
            features: fis.features,
            count: fis.count,
            lba: fis.lba,
            device: fis.device,
        },
    };
    let single = |len: u64, pt: PassThrough| -> Result<Plan, PlanError> {
        Ok(Plan {
            protocol,
            total_bytes: len,
            segments: vec![Segment {
                pt,
                offset: 0,
                len: u32::try_from(len).map_err(|_| PlanError::TooLarge {
                    blocks: len / SECTOR_SIZE as u64,
                    max: max_blocks,
                })?,
            }],
            range: None,
        })
    };
    if protocol.direction().is_none() {
        return single(0, base);
    }
    let (blocks, count_is_length) = data_blocks(fis, protocol)?;
    if !is_read_write(fis.command) {
        if blocks > u64::from(max_blocks) {
            return Err(PlanError::TooLarge {
                blocks,
                max: max_blocks,
            });
        }
        let mut pt = base;
        if !count_is_length && !protocol.is_queued() && blocks == 1 {
            // T_LENGTH says "the count field": make it say one block. The drive ignores it.
            pt.tf.count = 1;
        }
        return single(blocks * SECTOR_SIZE as u64, pt);
    }
    // A READ/WRITE: split into runs of at most max_blocks.
    let (start, bits) = if extend {
        (fis.lba & 0xffff_ffff_ffff, 48)
    } else {
        (
            u64::from(fis.device & 0x0f) << 24 | (fis.lba & 0xff_ffff),
            28,
        )
    };
    if blocks > u64::from(max_blocks) && start + blocks > 1u64 << bits {
        return Err(PlanError::OutOfRange { bits });
    }
    let mut segments = Vec::new();
    let mut done = 0u64;
    while done < blocks {
        let n = (blocks - done).min(u64::from(max_blocks));
        let lba = start + done;
        let mut pt = base;
        if extend {
            pt.tf.lba = lba;
        } else {
            pt.tf.lba = lba & 0xff_ffff;
            pt.tf.device = (fis.device & 0xf0) | ((lba >> 24) & 0x0f) as u8;
        }
        // 256 (28-bit) and 65536 (48-bit) are encoded as 0 by the truncation.
        if protocol.is_queued() {
            pt.tf.features = n as u16;
        } else {
            pt.tf.count = n as u16;
        }
        segments.push(Segment {
            pt,
            offset: done * SECTOR_SIZE as u64,
            len: (n * SECTOR_SIZE as u64) as u32,
        });
        done += n;
    }
    Ok(Plan {
        protocol,
        total_bytes: blocks * SECTOR_SIZE as u64,
        segments,
        range: Some((start, blocks)),
    })
}

/// DRQ block size in sectors the guest sees for a PIO command (ACS-3 7.25: READ MULTIPLE moves
/// `multiple` sectors per block; everything else one).
pub fn drq_block_sectors(command: u8, multiple: u16) -> u16 {
    use opcode::*;
    match command {
        READ_MULTIPLE
        | READ_MULTIPLE_EXT
        | WRITE_MULTIPLE
        | WRITE_MULTIPLE_EXT
        | WRITE_MULTIPLE_FUA_EXT => multiple.max(1),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ata::command::protocol as proto;

    fn fis(command: u8, features: u16, count: u16, lba: u64, device: u8) -> RegisterH2d {
        RegisterH2d {
            c: true,
            command,
            features,
            count,
            lba,
            device,
            ..Default::default()
        }
    }

    fn plan_of(f: &RegisterH2d, max: u32) -> Result<Plan, PlanError> {
        plan(f, proto(f.command, f.features).unwrap(), max)
    }

    #[test]
    fn small_read_is_one_command_with_guest_registers() {
        let f = fis(0x25, 0, 8, 0x0012_3456_789a, 0x40);
        let p = plan_of(&f, 2048).unwrap();
        assert_eq!(p.total_bytes, 4096);
        assert_eq!(p.segments.len(), 1);
        let s = p.segments[0];
        assert_eq!((s.offset, s.len), (0, 4096));
        assert_eq!(s.pt.tf.lba, 0x0012_3456_789a);
        assert_eq!(s.pt.tf.count, 8);
        assert!(s.pt.extend && s.pt.from_device);
        assert_eq!(p.range, Some((0x0012_3456_789a, 8)));
    }

    #[test]
    fn large_read_dma_ext_is_split_at_the_host_limit() {
        // 65536 sectors (count 0) from LBA 1000, host limit 2560 sectors (1280 KiB).
        let f = fis(0x25, 0, 0, 1000, 0x40);
        let p = plan_of(&f, 2560).unwrap();
        assert_eq!(p.total_bytes, 65536 * 512);
        assert_eq!(p.segments.len(), 26); // 25 * 2560 + 1536
        let mut expect_lba = 1000;
        let mut expect_off = 0;
        for s in &p.segments {
            assert_eq!(s.pt.tf.lba, expect_lba);
            assert_eq!(s.offset, expect_off);
            assert_eq!(u64::from(s.len), u64::from(s.pt.tf.count) * 512);
            expect_lba += u64::from(s.pt.tf.count);
            expect_off += u64::from(s.len);
        }
        assert_eq!(expect_lba, 1000 + 65536);
        assert_eq!(p.segments.last().unwrap().pt.tf.count, 1536);
    }

    #[test]
    fn lba28_split_carries_lba_27_24_in_device() {
        // WRITE DMA, 256 sectors (count 0) from 0x0FFF_FF80, limit 128: the second half starts
        // at 0x1000_0000, which is out of the 28-bit space.
        let f = fis(0xca, 0, 0, 0xff_ff80, 0xef);
        assert_eq!(plan_of(&f, 128), Err(PlanError::OutOfRange { bits: 28 }));
        // From 0x00FF_FFC0: the second piece crosses into device nibble 1.
        let f = fis(0xca, 0, 0, 0xff_ffc0, 0xe0);
        let p = plan_of(&f, 128).unwrap();
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.segments[1].pt.tf.lba, 0x00_0040);
        assert_eq!(p.segments[1].pt.tf.device, 0xe1);
        assert_eq!(p.segments[0].pt.tf.count, 128);
        // 28-bit commands still fit ATA PASS-THROUGH(12).
        assert!(p.segments.iter().all(|s| s.pt.cdb12().is_some()));
    }

    #[test]
    fn fpdma_split_keeps_the_tag_and_moves_the_count_in_features() {
        // READ FPDMA QUEUED tag 9, 1000 sectors, limit 256.
        let f = fis(0x60, 1000, 9 << 3, 0x10_0000, 0x40);
        let p = plan_of(&f, 256).unwrap();
        assert_eq!(
            p.segments
                .iter()
                .map(|s| s.pt.tf.features)
                .collect::<Vec<_>>(),
            [256, 256, 256, 232]
        );
        assert!(p.segments.iter().all(|s| s.pt.tf.count == 9 << 3));
        assert!(p
            .segments
            .iter()
            .all(|s| s.pt.t_length == TLength::Features));
        assert_eq!(p.segments[3].pt.tf.lba, 0x10_0000 + 768);
    }

    #[test]
    fn identify_asks_for_one_block_in_count() {
        let f = fis(0xec, 0, 0, 0, 0xa0);
        let p = plan_of(&f, 8).unwrap();
        assert_eq!(p.total_bytes, 512);
        assert_eq!(p.segments[0].pt.tf.count, 1);
        assert_eq!(p.range, None);
    }

    #[test]
    fn multiple_is_sent_as_sectors() {
        let f = fis(0x29, 0, 16, 0, 0x40);
        assert_eq!(plan_of(&f, 64).unwrap().segments[0].pt.tf.command, 0x24);
        let f = fis(0xce, 0, 16, 0, 0x40);
        let s = plan_of(&f, 64).unwrap().segments[0];
        assert_eq!((s.pt.tf.command, s.pt.protocol), (0x3d, SatProtocol::Dma));
        assert_eq!(drq_block_sectors(0x29, 8), 8);
        assert_eq!(drq_block_sectors(0x24, 8), 1);
    }

    #[test]
    fn unsplittable_commands_over_the_limit_and_zero_counts_are_errors() {
        let f = fis(0x06, 1, 64, 0, 0x40); // DSM of 64 blocks of ranges
        assert_eq!(
            plan_of(&f, 16),
            Err(PlanError::TooLarge {
                blocks: 64,
                max: 16
            })
        );
        assert_eq!(
            plan_of(&fis(0x2f, 0, 0, 0x10, 0), 16),
            Err(PlanError::ZeroLength)
        );
    }

    #[test]
    fn non_data_has_no_segment_data() {
        let p = plan_of(&fis(0xea, 0, 0, 0, 0x40), 16).unwrap();
        assert_eq!(p.total_bytes, 0);
        assert_eq!(p.segments[0].pt.t_length, TLength::None);
        let p = plan_of(&fis(0x63, 0, 3 << 3, 0, 0x40), 16).unwrap(); // NCQ NON-DATA
        assert_eq!(p.segments[0].pt.protocol, SatProtocol::Fpdma);
        assert_eq!(p.segments[0].pt.t_length, TLength::None);
    }
}
