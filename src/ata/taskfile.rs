//! Taskfile decoding: what a command's Register H2D FIS asks for (ACS-3 section 7 field
//! descriptions, SATA 3.x 13.6.4 for the first-party DMA queued commands), and the Register D2H
//! FISes a device answers with.

use crate::sata::RegisterD2h;

use super::command::is_lba48;
use super::registers::{device, error, status};

/// Highest LBA a 28-bit command can address (ACS-3 4.1: LBA 27:0).
pub const LBA28_MAX: u64 = 0x0fff_ffff;

/// Status of a good completion in a Register D2H FIS: DRDY plus the legacy DSC bit that
/// drives traditionally keep set (50h).
pub const STATUS_GOOD: u8 = status::DRDY | status::DSC;
/// Status of a failed command in a Register D2H FIS (51h).
pub const STATUS_ERROR: u8 = STATUS_GOOD | status::ERR;
/// Status of a command the device refuses (ABRT): DRDY|ERR, 41h, what drives (and QEMU's
/// ide-hd) answer: DSC/SERV is only meaningful after a seek or a service request, and ACS-3
/// 6.2 lets it read 0 in the error outputs of every command that does not define it.
pub const STATUS_ABORT: u8 = status::DRDY | status::ERR;

/// The Error register of a write refused because the drive is read-only (`readonly=on`):
/// ABRT and IDNF, the pair Linux's libata does not count against the link (the reasoning is at
/// `EmulatedDrive::refuse_write`, src/ata/emulated/read_only.rs).
pub const WRITE_PROTECTED_ERROR: u8 = error::ABRT | error::IDNF;

/// A command's registers as the device interprets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taskfile {
    pub command: u8,
    /// Features 15:0 (LBA28 commands only look at bits 7:0).
    pub features: u16,
    /// The raw Count register (15:0), before any 0-means-256 rule.
    pub count: u16,
    /// The starting LBA: bits 47:0 for 48-bit commands; for 28-bit commands bits 23:0 from the
    /// LBA fields and bits 27:24 from Device bits 3:0.
    pub lba: u64,
    pub device: u8,
    /// True when the command uses 48-bit addressing.
    pub lba48: bool,
}

impl Taskfile {
    /// Decode the command registers of a Register H2D FIS.
    pub fn decode(fis: &crate::sata::RegisterH2d) -> Self {
        let lba48 = is_lba48(fis.command);
        let (lba, features, count) = if lba48 {
            (fis.lba & 0xffff_ffff_ffff, fis.features, fis.count)
        } else {
            (
                (fis.lba & 0x00ff_ffff) | (u64::from(fis.device & 0x0f) << 24),
                fis.features & 0xff,
                fis.count & 0xff,
            )
        };
        Taskfile {
            command: fis.command,
            features,
            count,
            lba,
            device: fis.device,
            lba48,
        }
    }

    /// Sectors a read/write command transfers: the Count register, where 0 means 256 for a
    /// 28-bit command and 65536 for a 48-bit one (ACS-3 7.x "Count" field descriptions).
    pub fn sector_count(&self) -> u32 {
        match (self.count, self.lba48) {
            (0, false) => 256,
            (0, true) => 65536,
            (n, _) => u32::from(n),
        }
    }

    /// Low byte of the Features register (subcommand of SET FEATURES, SMART, ...).
    pub fn feature(&self) -> u8 {
        self.features as u8
    }

    /// Low byte of the Count register.
    pub fn count_low(&self) -> u8 {
        self.count as u8
    }
}

/// The fields of READ/WRITE FPDMA QUEUED (SATA 3.x 13.6.4.1 / ACS-3 7.21, 7.61).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FpdmaCommand {
    /// NCQ tag: Count bits 7:3.
    pub tag: u8,
    /// Sectors: the Features register, 0 meaning 65536.
    pub sectors: u32,
    pub lba: u64,
    /// FUA: Device bit 7.
    pub fua: bool,
}

impl FpdmaCommand {
    /// Decode a READ/WRITE FPDMA QUEUED taskfile.
    pub fn decode(tf: &Taskfile) -> Self {
        FpdmaCommand {
            tag: ((tf.count >> 3) & 0x1f) as u8,
            sectors: match tf.features {
                0 => 65536,
                n => u32::from(n),
            },
            lba: tf.lba,
            fua: tf.device & device::FPDMA_FUA != 0,
        }
    }
}

/// True when `[lba, lba + sectors)` lies inside a device of `capacity` sectors and, for a
/// 28-bit command, inside the 28-bit address space.
pub fn range_ok(lba: u64, sectors: u64, capacity: u64, lba48: bool) -> bool {
    let limit = if lba48 {
        capacity
    } else {
        capacity.min(LBA28_MAX + 1)
    };
    lba.checked_add(sectors).is_some_and(|end| end <= limit)
}

/// Register D2H FIS ending a command well (I=1).
pub fn d2h_good() -> RegisterD2h {
    RegisterD2h {
        interrupt: true,
        status: STATUS_GOOD,
        device: device::LBA,
        ..Default::default()
    }
}

/// Register D2H FIS ending a command with `error` bits (I=1, status DRDY|ERR; a plain ABRT
/// reads 41h as in [`d2h_abort`], a media error 51h).
pub fn d2h_error(error: u8) -> RegisterD2h {
    RegisterD2h {
        interrupt: true,
        status: if error == error::ABRT {
            STATUS_ABORT
        } else {
            STATUS_ERROR
        },
        error,
        device: device::LBA,
        ..Default::default()
    }
}

/// Register D2H FIS ending a command with ABRT (ACS-3 "Error outputs" of every command:
/// Error ABRT, Status DRDY|ERR = 41h). `device` is the command's Device register, which the
/// device leaves as it was (drives return the Device field they were sent; libata prints it).
pub fn d2h_abort(device: u8) -> RegisterD2h {
    RegisterD2h {
        interrupt: true,
        status: STATUS_ABORT,
        error: error::ABRT,
        device,
        ..Default::default()
    }
}

/// Register D2H FIS reporting `lba` in the LBA fields (for a 28-bit command bits 27:24 go to
/// Device bits 3:0), e.g. the first failing LBA of a media error or READ NATIVE MAX ADDRESS.
pub fn with_lba(mut fis: RegisterD2h, lba: u64, lba48: bool) -> RegisterD2h {
    if lba48 {
        fis.lba = lba & 0xffff_ffff_ffff;
        fis.device = device::LBA;
    } else {
        fis.lba = lba & 0x00ff_ffff;
        fis.device = device::LBA | ((lba >> 24) & 0x0f) as u8;
    }
    fis
}

/// The signature Register D2H FIS of an ATA device after COMRESET, software reset or EXECUTE
/// DEVICE DIAGNOSTIC (SATA 3.x 11.4, ACS-3 table 206): status 50h, error 01h (no error
/// detected / device 0 passed), count 1, LBA 1, device 0.
pub fn signature(interrupt: bool) -> RegisterD2h {
    RegisterD2h {
        interrupt,
        status: STATUS_GOOD,
        error: 0x01,
        lba: super::registers::ATA_SIGNATURE_LBA,
        device: 0,
        count: 1,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ata::command::opcode;
    use crate::sata::RegisterH2d;

    #[test]
    fn lba28_takes_bits_27_24_from_device_and_count_0_is_256() {
        let tf = Taskfile::decode(&RegisterH2d {
            c: true,
            command: opcode::READ_DMA,
            lba: 0xff_12_34_56,
            device: 0xe7,
            count: 0xff00,
            features: 0xab03,
            ..Default::default()
        });
        assert!(!tf.lba48);
        assert_eq!(tf.lba, 0x0712_3456);
        assert_eq!(tf.sector_count(), 256);
        assert_eq!(tf.feature(), 3);
        assert_eq!(tf.features, 3);
    }

    #[test]
    fn lba48_uses_all_bits_and_count_0_is_65536() {
        let tf = Taskfile::decode(&RegisterH2d {
            c: true,
            command: opcode::READ_DMA_EXT,
            lba: 0x0102_0304_0506,
            device: 0x4f,
            count: 0,
            ..Default::default()
        });
        assert!(tf.lba48);
        assert_eq!(tf.lba, 0x0102_0304_0506);
        assert_eq!(tf.sector_count(), 65536);
        let tf = Taskfile {
            count: 0x1234,
            ..tf
        };
        assert_eq!(tf.sector_count(), 0x1234);
    }

    #[test]
    fn fpdma_fields() {
        let tf = Taskfile::decode(&RegisterH2d {
            c: true,
            command: opcode::WRITE_FPDMA_QUEUED,
            lba: 77,
            device: 0xc0,
            count: 29 << 3,
            features: 0,
            ..Default::default()
        });
        let f = FpdmaCommand::decode(&tf);
        assert_eq!(
            f,
            FpdmaCommand {
                tag: 29,
                sectors: 65536,
                lba: 77,
                fua: true
            }
        );
    }

    #[test]
    fn ranges() {
        assert!(range_ok(0, 8, 8, false));
        assert!(!range_ok(1, 8, 8, false));
        assert!(!range_ok(u64::MAX, 2, u64::MAX, true));
        assert!(!range_ok(LBA28_MAX, 2, 1 << 40, false));
        assert!(range_ok(LBA28_MAX, 2, 1 << 40, true));
    }

    #[test]
    fn lba_in_d2h() {
        let f = with_lba(d2h_error(error::UNC), 0x0abc_def1, false);
        assert_eq!((f.lba, f.device), (0xbc_def1, 0x4a));
        let f = with_lba(d2h_good(), 0x0abc_def1, true);
        assert_eq!((f.lba, f.device), (0x0abc_def1, 0x40));
    }
}
