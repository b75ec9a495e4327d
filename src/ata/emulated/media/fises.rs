//! The FISes that end a media command (see [`super`]): Register D2H, PIO Setup per DRQ block,
//! DMA Setup and Set Device Bits for queued commands, with the bytes moved.

use super::{Command, Done, Failure, MediaOp, Report, SECTOR};
use crate::ata::registers::{error, status};
use crate::ata::taskfile::{d2h_error, d2h_good, with_lba};
use crate::sata::{Completion, DmaSetup, Fis, PioSetup, RegisterD2h, SetDeviceBits};

/// Status of a good Set Device Bits FIS (DRDY).
const SDB_GOOD: u8 = status::DRDY;
/// Status after a PIO data block when more blocks follow: the device is busy preparing them.
const STATUS_BUSY: u8 = status::BSY | status::DRDY;

fn pio_setup(device_to_host: bool, interrupt: bool, e_status: u8, bytes: usize) -> Fis {
    Fis::PioSetup(PioSetup {
        interrupt,
        device_to_host,
        status: status::DRDY | status::DRQ,
        e_status,
        transfer_count: bytes as u16,
        ..Default::default()
    })
}

/// The Register D2H FIS that accepts a queued command and releases the link (SATA 3.x
/// 13.6.4.2): DRDY, BSY clear, no interrupt.
pub fn ncq_accepted() -> RegisterD2h {
    RegisterD2h {
        interrupt: false,
        status: status::DRDY,
        ..Default::default()
    }
}

/// The FISes that end `cmd`, failed with `failure` or not.
pub(super) fn finish(cmd: Command, failure: Option<Failure>) -> Done {
    let (start_lba, sectors) = match cmd.op {
        MediaOp::Read { lba, sectors } | MediaOp::Write { lba, sectors, .. } => {
            (lba, u64::from(sectors))
        }
        MediaOp::Flush => (0, 0),
        MediaOp::Trim { blocks } => (0, u64::from(blocks)),
    };
    // Sectors moved before the failure: all without one, those before the bad LBA of a
    // medium error, else none.
    let good = match failure {
        None => sectors,
        Some(Failure {
            error: error::UNC,
            lba: Some(lba),
        }) if !matches!(cmd.op, MediaOp::Trim { .. }) => lba.saturating_sub(start_lba).min(sectors),
        Some(_) => 0,
    };
    let error_d2h = |f: Failure, lba48: bool| match f.lba {
        Some(lba) => with_lba(d2h_error(f.error), lba, lba48),
        None => d2h_error(f.error),
    };
    let (fises, good) = match cmd.report {
        Report::Dma { lba48 } => (
            vec![Fis::RegisterD2h(match failure {
                None => d2h_good(),
                Some(f) => error_d2h(f, lba48),
            })],
            good,
        ),
        Report::SelfTest => (Vec::new(), good),
        Report::DisableWriteCache => (
            vec![Fis::RegisterD2h(match failure {
                None => d2h_good(),
                Some(_) => d2h_error(error::ABRT),
            })],
            0,
        ),
        Report::Pio {
            block_sectors,
            lba48,
            write,
        } => {
            // PIO moves whole DRQ blocks: the block with the bad sector is not delivered.
            let block = u64::from(block_sectors.max(1));
            let good = if failure.is_some() {
                good / block * block
            } else {
                good
            };
            let err = failure.map(|f| error_d2h(f, lba48));
            (pio_fises(sectors, good, block, write, err), good)
        }
        Report::Queued { tag, .. } => {
            let bit = 1u32 << (tag & 0x1f);
            let fises = match failure {
                None => vec![
                    // SATA 3.x 13.6.4.3: the device selects the command's buffer with a DMA
                    // Setup FIS (buffer identifier = tag) before its data.
                    Fis::DmaSetup(DmaSetup {
                        device_to_host: matches!(cmd.op, MediaOp::Read { .. }),
                        auto_activate: !matches!(cmd.op, MediaOp::Read { .. }),
                        buffer_id: u64::from(tag),
                        transfer_count: (good * SECTOR) as u32,
                        ..Default::default()
                    }),
                    Fis::SetDeviceBits(SetDeviceBits {
                        interrupt: true,
                        status: SDB_GOOD,
                        error: 0,
                        sactive: bit,
                        ..Default::default()
                    }),
                ],
                // SATA 3.x 13.6.5: the error with SActive clear for the tag.
                Some(f) => vec![Fis::SetDeviceBits(SetDeviceBits {
                    interrupt: true,
                    status: SDB_GOOD | status::ERR,
                    error: f.error,
                    sactive: 0,
                    ..Default::default()
                })],
            };
            (fises, good)
        }
    };
    Done {
        op: cmd.op,
        report: cmd.report,
        failure,
        start_lba,
        completion: Completion {
            slot: cmd.slot,
            fises,
            bytes_transferred: (good * SECTOR) as u32,
        },
    }
}

/// PIO data-in/out as FISes (SATA 3.x 11.7, 11.8): for each DRQ block the device sends a PIO
/// Setup FIS with the block's byte count; data-in: I=1, D=1 and E_Status the status after the
/// block (the final status after the last block, no Register D2H); data-out: D=0, I=1 for
/// every block but the first, then a Register D2H FIS with I=1 ends the command. An error ends
/// the command with a Register D2H FIS in place of the remaining PIO Setup FISes.
fn pio_fises(
    sectors: u64,
    good: u64,
    block: u64,
    write: bool,
    error: Option<RegisterD2h>,
) -> Vec<Fis> {
    let mut fises = Vec::new();
    let mut done = 0u64;
    while done < sectors {
        let n = (sectors - done).min(block);
        let len = (n * SECTOR) as usize;
        if write {
            // The device asks for the block before it writes it: the failing block too.
            fises.push(pio_setup(false, done != 0, STATUS_BUSY, len));
            if done + n > good {
                break;
            }
        } else {
            if done + n > good {
                break;
            }
            let last = done + n == sectors;
            let e_status = if last {
                crate::ata::taskfile::STATUS_GOOD
            } else {
                STATUS_BUSY
            };
            fises.push(pio_setup(true, true, e_status, len));
        }
        done += n;
    }
    match error {
        Some(d2h) => fises.push(Fis::RegisterD2h(d2h)),
        None if write => fises.push(Fis::RegisterD2h(d2h_good())),
        None => {}
    }
    fises
}
