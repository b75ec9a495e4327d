//! The FISes the guest sees for a command the host drive answered (SATA 3.x 11: the device
//! protocols), built from the drive's result registers.
//!
//! - Non-data and DMA: one Register D2H FIS with I set.
//! - PIO data-in: one PIO Setup FIS per DRQ block (I set, D set); the last one's E_Status is the
//!   final status and it carries the result registers (no D2H follows, SATA 3.x 11.7).
//! - PIO data-out: one PIO Setup FIS per DRQ block (I clear on the first), then Register D2H.
//! - NCQ: DMA Setup (for data commands, buffer id = tag), then Set Device Bits with the tag's
//!   SActive bit; a failed queued command gets Set Device Bits with ERR and no SActive bit.
//! - Any error on a non-queued command: Register D2H with ERR.
//!
//! Only non-data commands come back with the drive's registers (they are sent with CK_COND,
//! see [`super::cdb::PassThrough::ck_cond`]). A data command that ended GOOD has none: its final
//! status is made up here, DRDY|DSC (50h) in the D2H FIS or the last PIO Setup's E_Status, DRDY
//! (40h) in the Set Device Bits FIS of a queued command.

use super::sense::AtaRegisters;
use crate::ata::command::{Direction, Protocol};
use crate::ata::registers::{error, status};
use crate::sata::{DmaSetup, Fis, PioSetup, RegisterD2h, SetDeviceBits};

/// DRDY | DSC: the status of an idle, healthy drive.
pub const STATUS_OK: u8 = status::DRDY | status::DSC;
/// DRDY | DSC | ERR.
pub const STATUS_ERR: u8 = STATUS_OK | status::ERR;

/// A status with BSY and DRQ cleared (the command is over).
fn settled(s: u8) -> u8 {
    s & !(status::BSY | status::DRQ)
}

/// Register D2H FIS for a command that ended with `regs`.
pub fn d2h(regs: &AtaRegisters) -> RegisterD2h {
    RegisterD2h {
        interrupt: true,
        status: settled(regs.status),
        error: regs.error,
        lba: regs.lba,
        device: regs.device,
        count: regs.count,
        ..Default::default()
    }
}

/// Status satavm reports for an error of its own: ABRT alone as drives answer it (41h, see
/// [`crate::ata::taskfile::STATUS_ABORT`]), anything else 51h.
fn own_error_status(err: u8) -> u8 {
    if err == error::ABRT {
        crate::ata::taskfile::STATUS_ABORT
    } else {
        STATUS_ERR
    }
}

/// Register D2H FIS for an error found without the drive.
pub fn error_d2h(err: u8) -> RegisterD2h {
    RegisterD2h {
        interrupt: true,
        status: own_error_status(err),
        error: err,
        ..Default::default()
    }
}

/// The registers reported for a command aborted without the drive's answer.
pub fn synthetic_error(err: u8) -> AtaRegisters {
    AtaRegisters {
        status: own_error_status(err),
        error: err,
        ..Default::default()
    }
}

/// FISes of a successful non-queued command that moved `bytes` (PIO DRQ blocks of
/// `drq_sectors` sectors).
pub fn success(
    protocol: Protocol,
    regs: Option<AtaRegisters>,
    bytes: u64,
    drq_sectors: u16,
) -> Vec<Fis> {
    let regs = regs.unwrap_or(AtaRegisters {
        status: STATUS_OK,
        ..Default::default()
    });
    let final_status = settled(regs.status) & !(status::ERR | status::DF);
    let block = (u64::from(drq_sectors.max(1)) * 512).min(0xfe00);
    let blocks = bytes.div_ceil(block).max(1);
    let transfer = |i: u64| (bytes - i * block).min(block) as u16;
    // Same conventions as the emulated drive: DRDY|DRQ while the block moves, BSY|DRDY after
    // a block that is not the last.
    let pio_status = status::DRDY | status::DRQ;
    let busy = status::BSY | status::DRDY;
    match protocol {
        Protocol::Pio(Direction::In) => (0..blocks)
            .map(|i| {
                let last = i + 1 == blocks;
                Fis::PioSetup(PioSetup {
                    interrupt: true,
                    device_to_host: true,
                    status: pio_status,
                    error: 0,
                    lba: if last { regs.lba } else { 0 },
                    device: regs.device,
                    count: if last { regs.count } else { 0 },
                    e_status: if last { final_status } else { busy },
                    transfer_count: transfer(i),
                    ..Default::default()
                })
            })
            .collect(),
        Protocol::Pio(Direction::Out) => {
            let mut v: Vec<Fis> = (0..blocks)
                .map(|i| {
                    Fis::PioSetup(PioSetup {
                        interrupt: i > 0,
                        device_to_host: false,
                        status: pio_status,
                        e_status: busy,
                        transfer_count: transfer(i),
                        ..Default::default()
                    })
                })
                .collect();
            v.push(Fis::RegisterD2h(RegisterD2h {
                status: final_status,
                ..d2h(&regs)
            }));
            v
        }
        _ => vec![Fis::RegisterD2h(RegisterD2h {
            status: final_status,
            ..d2h(&regs)
        })],
    }
}

/// FISes of a failed non-queued command.
pub fn failure(regs: &AtaRegisters) -> Vec<Fis> {
    let mut f = d2h(regs);
    f.status |= status::ERR;
    if f.error == 0 {
        f.error = error::ABRT;
    }
    vec![Fis::RegisterD2h(f)]
}

/// FISes of a queued command with guest tag `tag` that completed, moving `bytes` in
/// `direction`.
pub fn ncq_success(tag: u8, direction: Option<Direction>, bytes: u64) -> Vec<Fis> {
    let mut v = Vec::with_capacity(2);
    if let Some(d) = direction {
        v.push(Fis::DmaSetup(DmaSetup {
            device_to_host: d == Direction::In,
            auto_activate: d == Direction::Out,
            buffer_id: u64::from(tag),
            transfer_count: u32::try_from(bytes).unwrap_or(u32::MAX),
            ..Default::default()
        }));
    }
    v.push(Fis::SetDeviceBits(SetDeviceBits {
        interrupt: true,
        status: status::DRDY,
        error: 0,
        sactive: 1u32 << (tag & 0x1f),
        ..Default::default()
    }));
    v
}

/// The Set Device Bits FIS of a failed queued command (SATA 3.x 13.6.3.3): ERR set, no SActive
/// bit; the device now waits for log page 10h.
pub fn ncq_failure(regs: &AtaRegisters) -> Vec<Fis> {
    vec![Fis::SetDeviceBits(SetDeviceBits {
        interrupt: true,
        status: status::DRDY | status::ERR,
        error: if regs.error == 0 {
            error::ABRT
        } else {
            regs.error
        },
        sactive: 0,
        ..Default::default()
    })]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pio_in_has_one_setup_per_block_and_final_status_in_the_last() {
        let r = AtaRegisters {
            status: 0x50,
            ..Default::default()
        };
        let f = success(Protocol::Pio(Direction::In), Some(r), 3 * 512, 1);
        assert_eq!(f.len(), 3);
        let Fis::PioSetup(last) = &f[2] else { panic!() };
        assert_eq!((last.e_status, last.transfer_count), (0x50, 512));
        let Fis::PioSetup(first) = &f[0] else {
            panic!()
        };
        assert_eq!((first.status, first.e_status), (0x48, 0xc0));
        assert!(first.device_to_host && first.interrupt);
        // READ MULTIPLE with 4 sectors per block, 6 sectors: 2048 + 1024.
        let f = success(Protocol::Pio(Direction::In), Some(r), 6 * 512, 4);
        let counts: Vec<u16> = f
            .iter()
            .map(|x| match x {
                Fis::PioSetup(p) => p.transfer_count,
                _ => 0,
            })
            .collect();
        assert_eq!(counts, [2048, 1024]);
    }

    #[test]
    fn pio_out_ends_with_d2h_and_first_setup_has_no_interrupt() {
        let f = success(Protocol::Pio(Direction::Out), None, 1024, 1);
        assert_eq!(f.len(), 3);
        assert!(matches!(&f[0], Fis::PioSetup(p) if !p.interrupt && !p.device_to_host));
        assert!(matches!(&f[1], Fis::PioSetup(p) if p.interrupt));
        assert!(matches!(&f[2], Fis::RegisterD2h(d) if d.interrupt && d.status == 0x50));
    }

    #[test]
    fn dma_and_non_data_report_the_drive_registers() {
        let r = AtaRegisters {
            status: 0x50,
            lba: 0x1d1c_5970,
            device: 0x40,
            ..Default::default()
        };
        let f = success(Protocol::NonData, Some(r), 0, 1);
        assert_eq!(
            f,
            [Fis::RegisterD2h(RegisterD2h {
                interrupt: true,
                status: 0x50,
                lba: 0x1d1c_5970,
                device: 0x40,
                ..Default::default()
            })]
        );
    }

    #[test]
    fn errors_always_carry_err_and_an_error_code() {
        let f = failure(&AtaRegisters {
            status: 0xd9, // BSY|DRQ must not survive
            error: 0,
            ..Default::default()
        });
        assert!(matches!(&f[0], Fis::RegisterD2h(d) if d.status == 0x51 && d.error == 0x04));
        let f = ncq_failure(&AtaRegisters {
            status: 0x41,
            error: 0x40,
            ..Default::default()
        });
        assert!(
            matches!(&f[0], Fis::SetDeviceBits(s) if s.status == 0x41 && s.error == 0x40 && s.sactive == 0)
        );
    }

    #[test]
    fn ncq_success_sets_the_tag_bit() {
        let f = ncq_success(17, Some(Direction::In), 4096);
        assert!(matches!(&f[0], Fis::DmaSetup(d) if d.buffer_id == 17 && d.device_to_host));
        assert_eq!(
            f[1],
            Fis::SetDeviceBits(SetDeviceBits {
                interrupt: true,
                status: 0x40,
                error: 0,
                sactive: 1 << 17,
                ..Default::default()
            })
        );
        assert_eq!(ncq_success(3, None, 0).len(), 1);
    }
}
